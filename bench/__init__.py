"""Benchmarks: ``make bench`` runs every ``bench_*.py`` through ``bench/run.py``."""
