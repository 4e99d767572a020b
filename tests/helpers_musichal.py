"""A MusicHal-9000-shaped model file of any size, streamed to disk.

Shared by the MusicHal tests and the model-I/O and inspect benchmarks. The
file has the base shape (DESIGN.md §5): a factor-oracle-like graph (each state
linked to the previous occurrence of its token), wall-clock epoch timestamps
and ``audio_data`` events with a ``gesture_token``, like the real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["write_musichal_file", "frames_for_size"]


def frames_for_size(size_mb: float, dim: int) -> int:
    """Frame count that makes a file of about ``size_mb`` MB at ``dim`` features."""
    # ~20 characters per feature value plus ~700 per frame of events and graph
    return max(10, int(size_mb * 1e6 / (dim * 20 + 700)))


def write_musichal_file(path: Path, *, n_frames: int, dim: int, seed: int = 0) -> int:
    """Write a base-shape MusicHal model of ``n_frames`` frames without building
    it in memory; return the frame count."""
    rng = np.random.default_rng(seed)
    n = int(n_frames)
    n_tokens = 64
    symbols = rng.integers(0, n_tokens, n)
    # A cheap factor-oracle-like graph: link each state to the previous
    # occurrence of its symbol (root on first occurrence).
    last_seen: dict[int, int] = {}
    links = np.zeros(n + 1, dtype=np.int64)
    for i, s in enumerate(symbols.tolist(), start=1):
        links[i] = last_seen.get(s, 0)
        last_seen[s] = i
    t0 = 1_758_384_986.0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"states": {')
        first_state = {}
        for i, s in enumerate(symbols.tolist()):
            first_state.setdefault(s, i + 1)
        root_next = ", ".join(f'"{f - 1}": {f}' for f in first_state.values())
        fh.write(f'"0": {{"len": 0, "link": -1, "next": {{{root_next}}}}}')
        for i in range(1, n + 1):
            nxt = f'"{i}": {i + 1}' if i < n else ""
            fh.write(f', "{i}": {{"len": {i}, "link": {int(links[i])}, "next": {{{nxt}}}}}')
        fh.write('}, "transitions": {')
        fh.write(", ".join(f'"0_{f - 1}": {f}' for f in first_state.values()))
        for i in range(1, n):
            fh.write(f', "{i}_{i}": {i + 1}')
        fh.write('}, "suffix_links": {')
        fh.write(", ".join(f'"{i}": {int(links[i])}' for i in range(1, n + 1)))
        fh.write('}, "sequence": [')
        fh.write(", ".join(str(i) for i in range(n)))
        fh.write(f'], "sequence_length": {n}, "audio_frames": {{')
        for i in range(n):
            feats = rng.normal(size=dim)
            event = {"t": t0 + 0.5 * i, "midi": 60, "f0": 261.6, "rms_db": -20.0, "centroid": 2000.0,
                     "gesture_token": int(symbols[i]), "consonance": float(rng.uniform()),
                     "ioi": 0.5, "onset": True, "duration": 0.5, "tempo": 120.0}
            sep = ", " if i else ""
            fh.write(f'{sep}"{i}": {{"timestamp": {t0 + 0.5 * i + 0.01}, "features": [')
            fh.write(", ".join(map(repr, feats.tolist())))
            fh.write(f'], "audio_data": {json.dumps(event)}, "frame_id": {i}}}')
        fh.write(f'}}, "frame_counter": {n}, "distance_threshold": 0.15, "distance_function": "euclidean", '
                 f'"pattern_counter": 0, "max_pattern_length": 50, "is_trained": true, '
                 f'"stats": {{"total_states": {n + 1}, "sequence_length": {n}, "feature_dimensions": {dim}}}}}')
    return n
