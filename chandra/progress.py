"""Progress reporting shared by the CLI, the dashboard and tests.

A progress callback has the signature ``progress(stage, done, total)``; long
functions accept ``progress=None`` and report through :func:`report`.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Callable[[str, int, int], None]

__all__ = ["ProgressCallback", "report", "note", "Cancelled"]


class Cancelled(Exception):
    """Raised by a progress callback to stop a running stage (not a ChandraError:
    cancelling is a user decision, not a fault)."""


def report(progress: Optional[ProgressCallback], stage: str, done: int, total: int) -> None:
    """Call ``progress(stage, done, total)`` when a callback is given."""
    if progress is not None:
        progress(stage, int(done), int(total))


def note(progress: Optional[ProgressCallback], stage: str, text: str) -> None:
    """Tell a progress callback something about ``stage`` beyond counts (e.g.
    "compiling (first run only)"): calls ``progress.note(stage, text)`` when
    the callback has such a method; plain callables ignore it."""
    handler = getattr(progress, "note", None)
    if callable(handler):
        handler(stage, text)
