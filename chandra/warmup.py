"""Compile every numba kernel chandra uses once, at install time.

librosa (onset strength, feature extraction), umap/pynndescent (the
Features page's projection) and chandra's own oracle kernels are numba
functions compiled on first call. Cold, that cost a fresh clone's first
``chandra train`` on the bundled 38 s sample about 26 s of CPU (3 s warm) and
the first dashboard Run all about two minutes. numba keeps what it compiles
in ``$NUMBA_CACHE_DIR`` (one folder for every entry point, chosen by
``import chandra``; see ``chandra/__init__.py``), so compiling everything
once, here, is what users then load.

``python -m chandra.warmup`` (run by ``make venv``; ``--if-cold`` by ``make
run`` and ``make test``) runs the real code on a short synthetic recording:
the whole pipeline with both oracle kinds (a factor oracle over tokens, an
audio oracle with the information-rate threshold sweep), the information
rate over K, the K recommendation, an improvisation, and a small UMAP. It
then writes a marker (:func:`marker_path`) keyed on everything that
invalidates numba's cache: Python, numba, llvmlite, librosa, umap-learn,
pynndescent and numpy versions, the interpreter prefix, and the location and
modification times of chandra's own kernel sources.

:func:`compile_note` is the cheap question the pipeline asks before a stage:
``"compiling (first run only)"`` when that stage's kernels have not been
compiled into this cache yet (no warm-up, or versions changed), else None.
A stage that runs cold marks itself warm when it ends, so the note appears
once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["COMPILING_NOTE", "MARKER_FORMAT", "numba_cache_dir", "cache_key", "marker_path", "warm_keys",
           "is_warm", "jit_key", "compile_note", "mark_warm", "warm_up", "ALL_KEYS", "main"]

#: What a stage's progress says while numba compiles its kernels.
COMPILING_NOTE = "compiling (first run only)"
#: ``format`` of the marker file.
MARKER_FORMAT = "chandra-numba-warm-1"
#: The JIT keys the warm-up covers (see :func:`jit_key`).
ALL_KEYS = ("segment", "encode:dsp", "harmony", "oracle:tokens", "oracle:features", "ir_over_k", "umap")

# Packages whose numba functions chandra calls, and packages that decide how they compile.
_VERSIONED = ("numba", "llvmlite", "numpy", "librosa", "umap-learn", "pynndescent", "scikit-learn")
# chandra's own modules with numba kernels (numba's cache is invalidated when their source changes).
_KERNEL_MODULES = ("oracle/_kernels.py",)


def numba_cache_dir() -> Path:
    """The numba cache folder every chandra entry point uses (``$NUMBA_CACHE_DIR``)."""
    import chandra  # noqa: F401  (sets NUMBA_CACHE_DIR when the user has not)

    return Path(os.environ["NUMBA_CACHE_DIR"])


@functools.lru_cache(maxsize=1)
def cache_key() -> dict:
    """Everything that, changed, makes numba recompile: versions, where the
    packages live, and chandra's kernel sources (path and mtime)."""
    from chandra.io_utils import installed_versions

    versions = installed_versions(_VERSIONED, missing=None)
    here = Path(__file__).resolve().parent
    sources = {}
    for name in _KERNEL_MODULES:
        try:
            sources[name] = os.stat(here / name).st_mtime_ns
        except OSError:
            sources[name] = None
    return {"python": sys.version.split()[0], "prefix": sys.prefix, "package": str(here),
            "versions": versions, "sources": sources}


def marker_path() -> Path:
    """The warm-up marker of this checkout and environment, inside the cache folder."""
    key = cache_key()
    digest = hashlib.sha256(f"{key['package']}\0{key['prefix']}".encode()).hexdigest()[:16]
    return numba_cache_dir() / f"chandra-warm-{digest}.json"


def warm_keys() -> set[str]:
    """JIT keys already compiled into this cache for the current :func:`cache_key`."""
    try:
        data = json.loads(marker_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("format") != MARKER_FORMAT or data.get("key") != cache_key():
        return set()
    keys = data.get("warm")
    return {k for k in keys if isinstance(k, str)} if isinstance(keys, list) else set()


def is_warm(keys: tuple[str, ...] = ALL_KEYS) -> bool:
    """True when every one of ``keys`` is compiled into the cache."""
    return set(keys) <= warm_keys()


def jit_key(stage: str, config: Any = None) -> str | None:
    """The JIT key of a pipeline stage under ``config`` (a
    :class:`~chandra.pipeline.TrainConfig`), or None for a stage that
    compiles nothing (load, vocabulary, events, save, neural encoders)."""
    if stage in ("segment", "harmony"):
        return stage
    if stage == "encode":
        return "encode:dsp" if getattr(config, "encoder", "dsp") == "dsp" else None
    if stage == "oracle":
        return f"oracle:{getattr(config, 'oracle', 'tokens')}"
    if stage in ("ir_over_k", "umap"):
        return stage
    return None


def compile_note(key: str | None) -> str | None:
    """:data:`COMPILING_NOTE` when ``key``'s kernels are not in the cache yet, else None."""
    if key is None or os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return None
    return None if key in warm_keys() else COMPILING_NOTE


def mark_warm(*keys: str) -> None:
    """Record ``keys`` as compiled (atomically; a lost race only repeats a note)."""
    keys = tuple(k for k in keys if k)
    if not keys:
        return
    have = warm_keys()
    if set(keys) <= have:
        return
    path = marker_path()
    doc = {"format": MARKER_FORMAT, "key": cache_key(), "warm": sorted(have | set(keys)),
           "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".chandra-warm.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only means the note shows again


def _synthetic_take(path: Path, *, seconds: float = 8.0, sr: int = 22050) -> Path:
    """Harmonic notes (a repeating phrase) over soft clicks: onsets, pitch,
    chords and repetition for every stage to work on."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    y = 1e-3 * rng.standard_normal(int(seconds * sr)).astype(np.float64)
    note_s = 0.25
    t = np.arange(int(note_s * sr)) / sr
    env = np.exp(-t * 10.0) * np.minimum(1.0, t / 0.004)
    phrase = [0, 4, 7, 12, 7, 4, 2, 5, 9, 5, 0, -5]
    for i in range(int(seconds / note_s) - 1):
        f = 220.0 * 2 ** (phrase[i % len(phrase)] / 12)
        chord = f * 2 ** (4 / 12) if i % 3 == 0 else None
        note = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 6))
        if chord is not None:
            note = note + 0.5 * np.sin(2 * np.pi * chord * t)
        start = int(i * note_s * sr)
        y[start: start + t.size] += 0.25 * note * env
        y[start: start + 64] += 0.2 * rng.standard_normal(64)  # a click on each onset
    sf.write(str(path), y.astype(np.float32), sr)
    return path


def warm_up(*, umap: bool = True, log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Run every numba-compiled path once on a synthetic take and mark the cache warm.

    Parameters
    ----------
    umap : bool
        Also compile UMAP (the Features page's projection; about half the time).
    log : callable, optional
        Receives one line per step.

    Returns
    -------
    dict
        Seconds per step.
    """
    from chandra.generate import improvise
    from chandra.pipeline import TrainConfig, ir_over_k, train
    from chandra.vocabulary import recommend_k

    say = log or (lambda line: None)
    times: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - started
        say(f"{name:<22} {times[name]:6.1f} s")
        return out

    with tempfile.TemporaryDirectory(prefix="chandra-warmup-") as tmp:
        audio = _synthetic_take(Path(tmp) / "take.wav")
        tokens = step("train, factor oracle", lambda: train(audio, TrainConfig(n_tokens=8, embed_audio=True)))
        mark_warm("segment", "encode:dsp", "harmony", "oracle:tokens")
        step("train, audio oracle", lambda: train(audio, TrainConfig(n_tokens=8, oracle="features",
                                                                      threshold="auto")))
        mark_warm("oracle:features")
        raw = tokens.state.raw_features
        step("information rate / K", lambda: (ir_over_k(raw, ks=[2, 4, 8]),
                                              recommend_k(raw.shape[0], features=raw)))
        mark_warm("ir_over_k")
        step("improvise", lambda: improvise(tokens.model, n_frames=32, seed=0))
        if umap:
            from chandra.projection import compute_umap

            step("UMAP", lambda: compute_umap(tokens.state.features, {"n_neighbors": 5}))
            mark_warm("umap")
    return times


def main(argv: list[str] | None = None) -> int:
    """``python -m chandra.warmup [--if-cold] [--no-umap] [--quiet]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m chandra.warmup",
                                     description="Compile and cache every numba kernel chandra uses.")
    parser.add_argument("--if-cold", action="store_true", help="do nothing when the cache is already warm")
    parser.add_argument("--no-umap", action="store_true", help="skip UMAP (the dashboard's projection)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    keys = tuple(k for k in ALL_KEYS if not (args.no_umap and k == "umap"))
    say = (lambda line: None) if args.quiet else (lambda line: print(f"chandra warm-up: {line}", flush=True))
    if args.if_cold and is_warm(keys):
        say(f"numba cache already warm ({numba_cache_dir()})")
        return 0
    say(f"compiling numba kernels into {numba_cache_dir()} (one to two minutes, once per install)")
    started = time.perf_counter()
    try:
        warm_up(umap=not args.no_umap, log=say)
    except Exception as exc:  # noqa: BLE001 - the install goes on; the first run compiles instead
        print(f"chandra warm-up: failed ({type(exc).__name__}: {exc}); the first run will compile instead",
              file=sys.stderr)
        return 1
    say(f"done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
