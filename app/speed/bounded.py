"""Room in a bounded in-process cache: the oldest quarter goes, not everything.

The process-local caches (parsed sessions, near-cache entries, content snapshots, presigned
URLs) are plain dicts with a size bound. Emptying one when it reaches the bound was simple, but
with more active users than the bound it made every user miss at once, each miss a parse, a
Redis round trip or a query, right when the process is busiest. ``make_room`` drops only the
entries added first (a dict keeps insertion order), so the users of the last minutes stay warm
and a full cache costs a steady trickle of misses instead of a burst.
"""

from __future__ import annotations

import itertools
from typing import Any

KEEP = 0.75  # share of the bound left after making room


def make_room(entries: dict[Any, Any], limit: int) -> None:
    """Before adding to ``entries``: when it holds ``limit`` entries or more, drop the oldest
    (first inserted) until ``KEEP`` of ``limit`` are left.

    Safe without a lock where the cache had none (the GIL makes each step atomic): another
    thread's insert or removal meanwhile at worst leaves it a few entries off, and a dict changed
    while its keys are copied (possible only if a finaliser runs mid-copy) is emptied instead.
    """
    excess = len(entries) - int(limit * KEEP)
    if len(entries) < limit or excess <= 0:
        return
    try:
        oldest = list(itertools.islice(entries, excess))
    except RuntimeError:  # changed size during the copy
        entries.clear()
        return
    for key in oldest:
        entries.pop(key, None)
