"""Where edgekd keeps files it can rebuild: trained built-in teachers, teacher logits.

The root is ``platformdirs.user_cache_dir("edgekd")`` (e.g. ``~/.cache/edgekd`` on Linux),
or the folder named by the environment variable ``EDGEKD_CACHE_DIR`` when it is set (tests
point it at a temporary folder). Deleting the cache is always safe: its content is rebuilt
on demand.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "EDGEKD_CACHE_DIR"


def cache_root() -> Path:
    """The cache root: ``$EDGEKD_CACHE_DIR`` if set, else the user cache dir for edgekd."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("edgekd"))
