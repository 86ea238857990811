"""Run every ``bench/bench_*.py`` and write ``bench/RESULTS.md``.

Each module exposes ``main()``: it returns a list of result rows (dicts, one table per module,
columns in the order of the first row's keys) or ``None`` when it prints its own output, which
is then copied into the results. ``make bench`` calls this after starting the services and
migrating the database.

    python bench/run.py [NAME ...]     # NAME: bench_http or http; default: all
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import io
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "RESULTS.md"


class Tee(io.TextIOBase):
    """Print to the console and keep a copy."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.stream.flush()
        return self.copy.write(text)


def machine() -> list[str]:
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        commit += " (with uncommitted changes)" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{mem_kib / 1024 / 1024:.1f} GiB memory, {platform.platform()}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- commit: {commit}",
    ]


def table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for r in rows:
        columns.extend(c for c in r if c not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return lines


def production_summary() -> list[str]:
    """Issue 19's table: each goal in the production configuration, from ``bench.common.SUMMARY``
    (filled by the benchmarks as they ran). Any 429 makes the run INVALID: the load was meant to
    stay under every limit, so a 429 means the figures measured the limiter refusing requests."""
    from bench.common import SUMMARY

    if not SUMMARY:
        return []
    too_many = sum(int(row["429s"]) for row in SUMMARY)
    lines = [
        "",
        "## Production configuration",
        "",
        "Limits on (security.md §3), INFO JSON request log lines written to bench/out/, Prometheus "
        "multiprocess mode (`gunicorn -c python:app.gunicorn_conf`), `TRUSTED_PROXY_COUNT=1`, load spread "
        "over many signed-in users and client IPs (bench/README.md). Measured: req/s as a ratio to the "
        "baseline in the same interleaved run; former bench config: the same target with limits off, "
        "WARNING logs and one user (ratio and per-round range).",
        "",
        f"**INVALID: {too_many} answers were 429.**" if too_many else "Valid: no 429 in any target.",
        "",
    ]
    return lines + table(SUMMARY)


def modules(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    if selected:
        wanted = {s if s.startswith("bench_") else f"bench_{s}" for s in selected}
        unknown = wanted - set(names)
        if unknown:
            raise SystemExit(f"no such benchmark: {', '.join(sorted(unknown))}")
        names = [n for n in names if n in wanted]
    return names


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    out = ["# Benchmark results", "", "Written by `make bench` (`bench/run.py`); see bench/README.md.", ""]
    out += machine()
    head = len(out)  # the production summary goes here, once every benchmark has run
    failed = 0
    for name in modules(argv):
        print(f"== {name}", flush=True)
        started = time.monotonic()
        tee = Tee(sys.stdout)
        out += ["", f"## {name}", ""]
        try:
            module = importlib.import_module(f"bench.{name}")
            doc = (module.__doc__ or "").strip().splitlines()
            with contextlib.redirect_stdout(tee):
                rows = module.main()
        except Exception:
            failed += 1
            traceback.print_exc()
            out += ["FAILED:", "", "```", traceback.format_exc().rstrip(), "```"]
            continue
        if doc:
            out += [doc[0], ""]
        if rows:
            out += table(rows)
        else:
            out += ["```", tee.copy.getvalue().rstrip(), "```"]
        out.append(f"\n({time.monotonic() - started:.0f} s)")
    out[head:head] = production_summary()
    RESULTS.write_text("\n".join(out) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
