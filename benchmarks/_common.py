"""What the benchmarks share: offline settings with the repository on ``sys.path``, and browser pages.

Imported as ``from _common import ...`` (a benchmark runs as a script, so its
folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1400, "height": 1000}


def offline() -> dict[str, str]:
    """Hub access off and chandra's numba cache, in this process and its children; the repository importable.

    Returns a copy of the environment for child processes.
    """
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "NUMBA_CACHE_DIR": str(REPO / ".numba_cache")})
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return dict(os.environ)


def open_page(browser, *, timeout_ms: int):
    """A new browser session (``VIEWPORT``) and its page, every wait bounded by ``timeout_ms``.

    Returns ``(context, page)``; the caller closes the context.
    """
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.set_default_timeout(timeout_ms)
    except BaseException:
        ctx.close()
        raise
    return ctx, page


def goto_home(page, base: str) -> None:
    """Open the dashboard's Home page and wait for its title."""
    page.goto(base + "/", wait_until="domcontentloaded")
    page.get_by_role("heading", name="chandra", exact=False).first.wait_for()


class Timing(NamedTuple):
    """Wall seconds of repeated calls: the median, the fastest, every one, and the last call's result."""

    median: float
    best: float
    times: list[float]
    result: Any


def timed(fn: Callable[[], Any], repeats: int, *, warm_up: bool = True) -> Timing:
    """Call ``fn`` ``repeats`` times (after one untimed call with ``warm_up``: numba compilation, caches,
    allocator) and time each call with ``time.perf_counter``."""
    if warm_up:
        fn()
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), min(times), times, result)


def time_forward_passes() -> dict:
    """Wrap ``transformers.Wav2Vec2Model.forward`` (every wav2vec2-family
    model chandra loads) so each call adds its wall time to the returned
    dict's ``"seconds"`` and counts in ``"calls"``: the encoder's forward
    passes alone, to compare with the whole pipeline. For a benchmark
    process that measures one run (the wrapper stays)."""
    import transformers

    forward = {"seconds": 0.0, "calls": 0}
    original = transformers.Wav2Vec2Model.forward

    def timed_forward(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            forward["seconds"] += time.perf_counter() - t0
            forward["calls"] += 1

    transformers.Wav2Vec2Model.forward = timed_forward
    return forward
