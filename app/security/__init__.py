"""Signed tokens and other cross-cutting security helpers."""
