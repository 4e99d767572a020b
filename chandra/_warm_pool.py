"""Imported by the local engine's fork server (:mod:`chandra.engines`): run the per-file stages once
on a second of synthetic sound, so that librosa's numba functions are compiled (or loaded from
their cache) in the server and every forked pool worker starts with them ready, instead of each
worker paying about a second for it on its first file. Nothing here is kept or returned."""

from __future__ import annotations


def _warm() -> None:
    import numpy as np

    from chandra.encoders import DSPEncoder
    from chandra.harmony import analyse_harmony
    from chandra.segment import segment_audio

    sr = 22050
    t = np.arange(sr, dtype=np.float32) / sr
    y = (0.3 * np.sin(2 * np.pi * 440.0 * t) * (1.0 + np.sign(np.sin(2 * np.pi * 4.0 * t))) / 2).astype(np.float32)
    y += np.random.default_rng(0).normal(0.0, 1e-3, sr).astype(np.float32)
    segments = segment_audio(y, sr, min_duration=0.1, max_duration=2.0, hop_length=512)
    DSPEncoder(sr=sr, hop_length=512).encode(y, sr, segments)
    analyse_harmony(y, sr, segments)


try:
    _warm()
except Exception as _exc:  # a warm-up only: a worker that starts cold is slower, never wrong
    import sys as _sys

    print(f"chandra pool worker: warm-up skipped ({type(_exc).__name__}: {_exc})", file=_sys.stderr)
