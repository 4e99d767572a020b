"""A deliberately faulty trainer, and its fixed twin, instrumented with chandra.trace.

It reproduces, in miniature, the MusicHal 9000 failure documented in
DESIGN.md §1: the vocabulary is fine on its fit set, yet the saved model
ends up with no ``gesture_token`` at all. Two faults cause it:

1. events are stamped with wall-clock epoch times while segments use
   seconds from file start, so a *nearest-time* join maps every event to the
   same (last) segment and the tokens collapse to one;
2. the save path writes a fixed whitelist of fields that forgot
   ``gesture_token``.

The ``fixed`` variant is the same trainer with both faults repaired: events
keep seconds from file start, the join goes by segment id, and the save
keeps ``gesture_token``. Both write the same checkpoint names, so the two
traces line up checkpoint by checkpoint.

Run them and read the traces::

    python examples/faulty_trainer.py trace_faulty
    python examples/faulty_trainer.py trace_fixed --fixed
    chandra trace-report trace_faulty
    chandra compare trace_faulty trace_fixed      # or: chandra trace-report trace_faulty --against trace_fixed

The faulty report names the checkpoint where each fault first appears:
EPOCH_TIME at ``events``, TOKEN_COLLAPSE at ``join``, FIELD_LOST at
``save``; the fixed trace has none of them, and the comparison lists all
three as resolved and ``gesture_token`` at ``save`` as lost -> present.
Only numpy and :mod:`chandra.trace` are used, as in any foreign trainer that
drops in a checkpoint per step.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from chandra.trace import Tracer

DURATION_S = 60.0
N_SEGMENTS = 120
N_TOKENS = 16
FEATURE_DIM = 32
# The fault: the event analyser stamps time.time(), the segmenter file time.
WALL_CLOCK_START = 1_758_384_986.0
# The faulty "save" keeps only these fields: gesture_token was forgotten.
SAVED_FIELDS = ("t", "f0", "midi", "rms_db", "consonance", "segment_id")
# The fixed save keeps the token too.
FIXED_SAVED_FIELDS = SAVED_FIELDS + ("gesture_token",)
#: What this stand-in encoder and vocabulary declare in the trace.
ENCODER = {"encoder": "toy-gestures", "dim": FEATURE_DIM, "normalisation": "l2"}


def make_segments(rng: np.random.Generator) -> list[dict]:
    """Onset segments with ``t`` in seconds from file start, and their features.

    Each segment is one of ``N_TOKENS`` gestures: its unit feature vector
    lies near that gesture's direction, as encoder features of a recurring
    gesture do.
    """
    starts = np.sort(rng.uniform(0.0, DURATION_S - 0.5, size=N_SEGMENTS))
    starts[0] = 0.0
    ends = np.append(starts[1:], DURATION_S)
    directions = rng.normal(size=(N_TOKENS, FEATURE_DIM))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    gestures = rng.permutation(np.arange(N_SEGMENTS) % N_TOKENS)
    feats = directions[gestures] + 0.2 * rng.normal(size=(N_SEGMENTS, FEATURE_DIM))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return [{"segment_id": i, "t": float(s), "start": float(s), "end": float(e), "features": feats[i]}
            for i, (s, e) in enumerate(zip(starts, ends))]


def fit_vocabulary(segments: list[dict], rng: np.random.Generator, *, iterations: int = 20) -> np.ndarray:
    """A stand-in vocabulary: K-means (Lloyd) centres of the segment features, shape (N_TOKENS, dim)."""
    X = np.stack([seg["features"] for seg in segments])
    centres = X[rng.choice(len(X), N_TOKENS, replace=False)]
    for _ in range(iterations):
        labels = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        for k in range(N_TOKENS):
            if np.any(labels == k):
                centres[k] = X[labels == k].mean(axis=0)
    return centres


def assign_tokens(segments: list[dict], centres: np.ndarray) -> list[dict]:
    """Each segment's token: the nearest vocabulary centre to its features."""
    X = np.stack([seg["features"] for seg in segments])
    tokens = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return [{**seg, "gesture_token": int(k)} for seg, k in zip(segments, tokens)]


def analyse_events(segments: list[dict], rng: np.random.Generator, *, fixed: bool = False) -> list[dict]:
    """Pitch and loudness per onset, stamped with wall-clock time (the first
    fault) or, fixed, with seconds from file start."""
    events = []
    for seg in segments:
        f0 = float(rng.uniform(80.0, 800.0))
        events.append({
            "t": seg["t"] if fixed else WALL_CLOCK_START + seg["t"],
            "f0": f0,
            "midi": int(round(69 + 12 * np.log2(f0 / 440.0))),
            "rms_db": float(rng.uniform(-40.0, -6.0)),
            "consonance": float(rng.uniform(0.0, 1.0)),
        })
    return events


def nearest_time_join(events: list[dict], segments: list[dict]) -> list[dict]:
    """Join each event to the segment nearest in time: every epoch time is nearest the last one."""
    seg_t = np.array([s["t"] for s in segments])
    joined = []
    for ev in events:
        j = int(np.argmin(np.abs(seg_t - ev["t"])))
        joined.append({**ev, "segment_id": segments[j]["segment_id"],
                       "gesture_token": segments[j]["gesture_token"]})
    return joined


def segment_id_join(events: list[dict], segments: list[dict]) -> list[dict]:
    """The fix: event i was analysed from segment i, so join by that id, never by time."""
    return [{**ev, "segment_id": seg["segment_id"], "gesture_token": seg["gesture_token"]}
            for ev, seg in zip(events, segments)]


def save_and_reload(events: list[dict], path: Path, *, fields: tuple[str, ...] = SAVED_FIELDS) -> list[dict]:
    """Write a whitelist of fields (the faulty one forgot the token) and read the file back."""
    path.write_text(json.dumps([{k: ev[k] for k in fields if k in ev} for ev in events]))
    return json.loads(path.read_text())


def main(outdir: str | Path, *, seed: int = 0, fixed: bool = False) -> Path:
    """Run the faulty (or, with ``fixed=True``, the repaired) training and
    write its trace to ``outdir``.

    Returns
    -------
    Path
        The trace directory.
    """
    outdir = Path(outdir)
    rng = np.random.default_rng(seed)
    tracer = Tracer(outdir, n_tokens=N_TOKENS)

    segments = make_segments(rng)
    tracer.checkpoint("segments", segments, duration=DURATION_S, provenance={"encoder": ENCODER})

    centres = fit_vocabulary(segments, rng)
    segments = assign_tokens(segments, centres)
    tracer.checkpoint("tokens", segments, duration=DURATION_S, centers=centres,
                      provenance={"vocabulary": {"fitted_on": ENCODER, "n_tokens": N_TOKENS}})

    events = analyse_events(segments, rng, fixed=fixed)
    tracer.checkpoint("events", events, duration=DURATION_S)

    joined = segment_id_join(events, segments) if fixed else nearest_time_join(events, segments)
    tracer.checkpoint("join", joined, duration=DURATION_S)

    with tempfile.TemporaryDirectory() as tmp:
        saved = save_and_reload(joined, Path(tmp) / "model.json",
                                fields=FIXED_SAVED_FIELDS if fixed else SAVED_FIELDS)
    tracer.checkpoint("save", saved, duration=DURATION_S)

    unique = len({ev.get("gesture_token") for ev in joined})
    print(f"Gesture tokens: {unique} unique patterns")
    print(f"trace written to {outdir}; read it with: chandra trace-report {outdir}")
    return outdir


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--fixed"]
    if len(args) != 1:
        print("usage: python examples/faulty_trainer.py OUTDIR [--fixed]", file=sys.stderr)
        sys.exit(2)
    main(args[0], fixed="--fixed" in sys.argv[1:])
