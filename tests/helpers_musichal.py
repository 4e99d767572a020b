"""A MusicHal-9000-shaped model file of any size, streamed to disk.

Shared by the MusicHal tests and the model-I/O and inspect benchmarks. The
file has the base shape (DESIGN.md §5): a factor-oracle-like graph (each state
linked to the previous occurrence of its token), wall-clock epoch timestamps
and ``audio_data`` events with a ``gesture_token``, like the real files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

__all__ = ["write_musichal_file", "frames_for_size", "MusicHalStandIn", "musichal_resave"]


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


# ---------------------------------------------------------------------------
# A MusicHal 9000 stand-in: load, perform a little, save again.
#
# Written from docs/MUSICHAL.md ("What MusicHal reads" and "What a MusicHal
# re-save keeps"), not from MusicHal's code: its v2.0 loader turns the id
# strings of states, next labels, suffix links, frames and the per-state maps
# into ints (and the map values into floats), keeps `stats` and `audio_data`
# as they are, and its save writes a fixed list of keys back (no `chandra`
# block, no `sequence`, no `pattern_counter`), ids as strings again.


class MusicHalStandIn:
    """The parts of MusicHal's v2.0 oracle that touch the file: its load, its
    distance test (which counts distances in ``stats``) and its save."""

    def __init__(self, obj: dict):
        self.distance_threshold = obj.get("distance_threshold", 0.15)
        self.distance_function = obj.get("distance_function", "euclidean")
        self.max_pattern_length = obj.get("max_pattern_length", 50)
        self.feature_dimensions = obj.get("feature_dimensions", 12)
        self.adaptive_threshold = obj.get("adaptive_threshold", True)
        self.chord_similarity_weight = obj.get("chord_similarity_weight", 0.3)
        self.size = obj.get("size", 0)
        self.last = obj.get("last", 0)
        self.frame_counter = obj.get("frame_counter", 0)
        self.sequence_length = obj.get("sequence_length", 0)
        self.is_trained = obj.get("is_trained", False)
        self.last_update = obj.get("last_update", 0.0)
        self.stats = obj.get("stats", {})
        self.chord_progressions = dict(obj.get("chord_progressions", {}))
        self.harmonic_patterns = dict(obj.get("harmonic_patterns", {}))
        self.distance_history = list(obj.get("distance_history", []))[-1000:]
        self.threshold_adjustments = obj.get("threshold_adjustments", 0)
        self.fundamentals = {int(k): float(v) for k, v in obj.get("fundamentals", {}).items()}
        self.consonances = {int(k): float(v) for k, v in obj.get("consonances", {}).items()}
        self.transitions = {}
        for key, target in obj.get("transitions", {}).items():
            state, symbol = key.split("_", 1)
            self.transitions[(int(state), symbol)] = target
        self.suffix_links = {int(k): v for k, v in obj.get("suffix_links", {}).items()}
        self.states = {int(k): {"len": v["len"], "link": v["link"], "next": {int(a): b for a, b in v["next"].items()}}
                       for k, v in obj.get("states", {}).items()}
        self.frames = {int(k): {"timestamp": f["timestamp"], "features": np.array(f["features"]),
                                "audio_data": f["audio_data"], "frame_id": f["frame_id"]}
                       for k, f in obj.get("audio_frames", {}).items()}

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """MusicHal's distance: inf when its statistics cannot be updated."""
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        m = min(len(a), len(b))
        a, b = a[:m], b[:m]
        if self.distance_function == "euclidean":
            d = float(np.linalg.norm(a - b))
        elif self.distance_function == "cosine":
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            d = 1.0 if na == 0 or nb == 0 else float(1.0 - np.dot(a, b) / (na * nb))
        else:
            raise ValueError(self.distance_function)
        try:
            self.distance_history = (self.distance_history + [d])[-1000:]
            self.stats["total_distances_calculated"] += 1
            self.stats["average_distance"] = float(np.mean(self.distance_history))
        except (KeyError, TypeError):
            return math.inf
        if m >= 15 and self.chord_similarity_weight:
            chord = float(np.linalg.norm(a[-3:] - b[-3:]))
            d = (1.0 - self.chord_similarity_weight) * d + self.chord_similarity_weight * chord
        return d

    def similar_frames(self, features: np.ndarray) -> list[int]:
        """Frame ids whose features lie within the threshold (``distance < threshold``)."""
        return [fid for fid, frame in self.frames.items()
                if self.distance(features, frame["features"]) < self.distance_threshold]

    def save(self) -> dict:
        return {
            "format_version": "2.0",
            "distance_threshold": self.distance_threshold,
            "distance_function": self.distance_function,
            "max_pattern_length": self.max_pattern_length,
            "feature_dimensions": self.feature_dimensions,
            "adaptive_threshold": self.adaptive_threshold,
            "chord_similarity_weight": self.chord_similarity_weight,
            "size": self.size,
            "last": self.last,
            "frame_counter": self.frame_counter,
            "sequence_length": self.sequence_length,
            "is_trained": self.is_trained,
            "last_update": self.last_update,
            "stats": dict(self.stats),
            "chord_progressions": dict(self.chord_progressions),
            "harmonic_patterns": {str(k): v for k, v in self.harmonic_patterns.items()},
            "distance_history": list(self.distance_history),
            "threshold_adjustments": self.threshold_adjustments,
            "fundamentals": {str(k): float(v) for k, v in self.fundamentals.items()},
            "consonances": {str(k): float(v) for k, v in self.consonances.items()},
            "audio_frames": {str(fid): {"timestamp": f["timestamp"], "features": f["features"].tolist(),
                                        "audio_data": dict(f["audio_data"]), "frame_id": f["frame_id"]}
                             for fid, f in self.frames.items()},
            "transitions": {f"{s}_{sym}": int(t) for (s, sym), t in self.transitions.items()},
            "suffix_links": {str(k): v for k, v in self.suffix_links.items()},
            "states": {str(k): {"len": v["len"], "link": v["link"], "next": {str(a): b for a, b in v["next"].items()}}
                       for k, v in self.states.items()},
        }


def musichal_resave(path: Path, out: Path, *, queries: int = 0) -> dict:
    """Load ``path`` as MusicHal would, run ``queries`` similarity searches
    (frames 0, 1, ... as queries), save to ``out`` (indent 2, NaN allowed, as
    MusicHal writes) and return the saved object."""
    standin = MusicHalStandIn(json.loads(Path(path).read_text()))
    for fid in list(standin.frames)[:queries]:
        standin.similar_frames(standin.frames[fid]["features"])
    saved = standin.save()
    Path(out).write_text(json.dumps(saved, indent=2))
    return saved
