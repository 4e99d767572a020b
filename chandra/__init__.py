"""chandra: train machine-improvisation models from recordings, every stage visible."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__version__ = "0.1.0"


def _default_numba_cache_dir() -> str:
    """``$XDG_CACHE_HOME/chandra/numba`` (``~/.cache/chandra/numba``), or a
    per-user folder under the temporary directory when that is not writable.

    One folder for every entry point (CLI, dashboard, job workers, tests,
    ``python -m chandra.warmup``), so what the install-time warm-up compiles
    is what the first run loads. numba files each cache under the absolute
    path of its source, so several checkouts or virtual environments share
    the folder without clashing.
    """
    try:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except RuntimeError:  # no home directory
        base = tempfile.gettempdir()
    for folder in (Path(base) / "chandra" / "numba",
                   Path(tempfile.gettempdir()) / f"chandra-numba-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK | os.X_OK):
            return str(folder)
    return str(Path(tempfile.gettempdir()))


# numba reads NUMBA_CACHE_DIR once, when it is first imported, so it is set
# here, before anything in chandra (or librosa, umap) can import numba. An
# existing value (the user's own choice) is kept.
if not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = _default_numba_cache_dir()

from chandra.errors import ChandraError  # noqa: E402

__all__ = ["__version__", "ChandraError"]
