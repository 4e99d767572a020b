"""Progress reporting shared by the CLI, the dashboard and tests.

A progress callback has the signature ``progress(stage, done, total)``; long
functions accept ``progress=None`` and report through :func:`report`.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Callable[[str, int, int], None]

__all__ = ["ProgressCallback", "report", "Cancelled"]


class Cancelled(Exception):
    """Raised by a progress callback to stop a running stage (not a ChandraError:
    cancelling is a user decision, not a fault)."""


def report(progress: Optional[ProgressCallback], stage: str, done: int, total: int) -> None:
    """Call ``progress(stage, done, total)`` when a callback is given."""
    if progress is not None:
        progress(stage, int(done), int(total))
