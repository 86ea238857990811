"""Moved to ``app.speed.nearcache``; this name stays for the importers not yet updated
(``app/access/fast_path.py``). New code imports ``app.speed.nearcache``."""

from app.speed.nearcache import MISS, Miss, NearCache

__all__ = ["MISS", "Miss", "NearCache"]
