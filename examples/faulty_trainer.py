"""A deliberately faulty trainer, instrumented with chandra.trace.

It reproduces, in miniature, the MusicHal 9000 failure documented in
DESIGN.md §1: the vocabulary is fine on its fit set, yet the saved model
ends up with no ``gesture_token`` at all. Two faults cause it:

1. events are stamped with wall-clock epoch times while segments use
   seconds from file start, so a *nearest-time* join maps every event to the
   same (last) segment and the tokens collapse to one;
2. the save path writes a fixed whitelist of fields that forgot
   ``gesture_token``.

Run it and read the trace::

    python examples/faulty_trainer.py OUTDIR
    chandra trace-report OUTDIR

The report names the checkpoint where each fault first appears:
EPOCH_TIME at ``events``, TOKEN_COLLAPSE at ``join``, FIELD_LOST at
``save``. Only numpy and :mod:`chandra.trace` are used, as in any foreign
trainer that drops in a checkpoint per step.
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
# The "save" keeps only these fields: gesture_token was forgotten.
SAVED_FIELDS = ("t", "f0", "midi", "rms_db", "consonance", "segment_id")


def make_segments(rng: np.random.Generator) -> list[dict]:
    """Onset segments with ``t`` in seconds from file start, and their features."""
    starts = np.sort(rng.uniform(0.0, DURATION_S - 0.5, size=N_SEGMENTS))
    starts[0] = 0.0
    ends = np.append(starts[1:], DURATION_S)
    feats = rng.normal(size=(N_SEGMENTS, FEATURE_DIM))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return [{"segment_id": i, "t": float(s), "start": float(s), "end": float(e), "features": feats[i]}
            for i, (s, e) in enumerate(zip(starts, ends))]


def assign_tokens(segments: list[dict], rng: np.random.Generator) -> list[dict]:
    """A stand-in vocabulary: every token used, none dominant."""
    tokens = rng.permutation(np.arange(N_SEGMENTS) % N_TOKENS)
    return [{**seg, "gesture_token": int(k)} for seg, k in zip(segments, tokens)]


def analyse_events(segments: list[dict], rng: np.random.Generator) -> list[dict]:
    """Pitch and loudness per onset, stamped with wall-clock time (the first fault)."""
    events = []
    for seg in segments:
        f0 = float(rng.uniform(80.0, 800.0))
        events.append({
            "t": WALL_CLOCK_START + seg["t"],
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


def save_and_reload(events: list[dict], path: Path) -> list[dict]:
    """Write a whitelist of fields (the second fault) and read the file back."""
    path.write_text(json.dumps([{k: ev[k] for k in SAVED_FIELDS if k in ev} for ev in events]))
    return json.loads(path.read_text())


def main(outdir: str | Path, *, seed: int = 0) -> Path:
    """Run the faulty training and write its trace to ``outdir``.

    Returns
    -------
    Path
        The trace directory.
    """
    outdir = Path(outdir)
    rng = np.random.default_rng(seed)
    tracer = Tracer(outdir, n_tokens=N_TOKENS)

    segments = make_segments(rng)
    tracer.checkpoint("segments", segments, duration=DURATION_S)

    segments = assign_tokens(segments, rng)
    tracer.checkpoint("tokens", segments, duration=DURATION_S)

    events = analyse_events(segments, rng)
    tracer.checkpoint("events", events, duration=DURATION_S)

    joined = nearest_time_join(events, segments)
    tracer.checkpoint("join", joined, duration=DURATION_S)

    with tempfile.TemporaryDirectory() as tmp:
        saved = save_and_reload(joined, Path(tmp) / "model.json")
    tracer.checkpoint("save", saved, duration=DURATION_S)

    unique = len({ev.get("gesture_token") for ev in joined})
    print(f"Gesture tokens: {unique} unique patterns")
    print(f"trace written to {outdir}; read it with: chandra trace-report {outdir}")
    return outdir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python examples/faulty_trainer.py OUTDIR", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
