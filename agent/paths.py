"""The one cache root, ``DH_CACHE`` (default ``~/.cache/dh-agent``), shared by the agent, the
avatar worker, the admin and the set-up scripts: models, the recorder's spool, calls fetched
from the admin, built-in avatars, service data. Read when asked, so a process started with
another ``DH_CACHE`` (the tests' stacks) sees its own."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("DH_CACHE") or Path.home() / ".cache" / "dh-agent").expanduser()


def models_dir() -> Path:
    """``DH_MODELS_DIR``, else ``<cache root>/models`` (where ``make models`` puts them)."""
    given = os.environ.get("DH_MODELS_DIR")
    return Path(given).expanduser() if given else cache_root() / "models"
