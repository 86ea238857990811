"""Waveform JSON for audio media (jobs.md §6.3).

Input: the normalised audio as raw mono 8 kHz signed 16-bit little-endian PCM (written by the
pass-2 ffmpeg run). Output: one peak per 100 ms window, ``|sample| / 32768`` rounded to 3 decimals::

    {"version": 1, "points_per_second": 10, "duration_seconds": 42, "peaks": [0.12, 0.5, ...]}

``len(peaks) == ceil(duration * 10)`` for the probed duration: a short decode is padded with
zeros and extra samples are dropped, so players can map peaks to time without surprises.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from pathlib import Path
from typing import Any

VERSION = 1
SAMPLE_RATE = 8000
POINTS_PER_SECOND = 10
WINDOW = SAMPLE_RATE // POINTS_PER_SECOND  # 800 samples = 100 ms
_BYTES_PER_SAMPLE = 2
_CHUNK_WINDOWS = 1200  # 2 minutes of audio per read (~1.9 MB)


def point_count(duration: float) -> int:
    return max(1, math.ceil(round(duration * POINTS_PER_SECOND, 6)))


def peaks_from_pcm(path: Path, duration: float) -> list[float]:
    """Peaks of ``path`` (s16le mono 8 kHz), exactly ``point_count(duration)`` of them."""
    wanted = point_count(duration)
    peaks: list[float] = []
    with path.open("rb") as handle:
        while len(peaks) < wanted:
            data = handle.read(_CHUNK_WINDOWS * WINDOW * _BYTES_PER_SAMPLE)
            if not data:
                break
            samples = array("h")
            samples.frombytes(data[: len(data) - len(data) % _BYTES_PER_SAMPLE])
            if sys.byteorder == "big":  # pragma: no cover - the data is little-endian
                samples.byteswap()
            for start in range(0, len(samples), WINDOW):
                window = samples[start : start + WINDOW]
                peak = max(-min(window), max(window))
                peaks.append(round(peak / 32768, 3))
    del peaks[wanted:]
    peaks.extend([0.0] * (wanted - len(peaks)))
    return peaks


def waveform_document(peaks: list[float], duration: float) -> dict[str, Any]:
    return {
        "version": VERSION,
        "points_per_second": POINTS_PER_SECOND,
        "duration_seconds": max(1, round(duration)),
        "peaks": peaks,
    }


def write_waveform(pcm: Path, duration: float, target: Path) -> dict[str, Any]:
    """Compute the peaks of ``pcm`` and write the JSON document to ``target``; returns it."""
    document = waveform_document(peaks_from_pcm(pcm, duration), duration)
    target.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    return document
