"""MusicHal 9000 model files that each show one fault chandra names.

Starts from a clean model (a chandra model, exported as ``clean.json`` the
way ``chandra export --format musichal`` does) and writes one file per fault
class, each the way a trainer or a save path really produces it:

``desync.json``  (TOKENS_DESYNC)
    the ``gesture_token`` sequence smoothed after the vocabulary assigned it
    (every fourth frame takes its predecessor's token; the oracle is built on
    the smoothed tokens), saved without the vocabulary and without the
    ``chandra`` block, as a MusicHal re-save leaves it: no centres are left,
    so chandra judges the tokens against their own mean features.
``stringified.json``  (STRINGIFIED_CONTAINER)
    ``ratios`` written as ``str(list)`` and a ``chord`` dict written as
    ``str(dict)`` in every frame's ``audio_data``.
``vocab_mismatch.json``  (VOCAB_ENCODER_MISMATCH)
    the modular shape, whose ``metadata`` says the gesture vocabulary was
    fitted on 768-D wav2vec2 layer-12 features while the encoder it is
    applied with is layer 6, and the frames hold the model's own features.
``types_roundtrip.json``  (TYPES_CHANGED)
    numbers written as text, as ``json.dump(..., default=str)`` writes numpy
    scalars: ``midi``, ``f0`` and ``consonance`` in every frame,
    and ``distance_threshold`` and two ``stats`` counters at the top level.

Run::

    python examples/musichal_fault_files.py OUTDIR [AUDIO]

then ``chandra inspect OUTDIR/desync.json`` (and the others), or
``chandra compare OUTDIR/clean.json OUTDIR/desync.json``.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

__all__ = ["FAULTS", "desync", "stringified", "vocab_mismatch", "types_roundtrip", "write_fault_files", "main"]

#: Declared in the vocabulary-mismatch file's metadata.
VOCABULARY_DECLARATION = {"fitted_on": {"encoder": "wav2vec2", "model": "facebook/wav2vec2-base", "layer": 12,
                                        "dim": 768}, "normalisation": "l2", "n_tokens": 64}
ENCODER_DECLARATION = {"encoder": "wav2vec2", "model": "facebook/wav2vec2-base", "layer": 6, "dim": 768}


def _frames(doc: dict) -> list[dict]:
    return [doc["audio_frames"][key] for key in sorted(doc["audio_frames"], key=int)]


def desync(model, *, every: int = 4) -> dict:
    """Tokens smoothed after the vocabulary assigned them (the oracle then built
    on the smoothed tokens, as a trainer that smooths before learning does),
    saved without the vocabulary: no centres are left to check against."""
    import dataclasses
    import tempfile

    import numpy as np

    from chandra.musichal import export_musichal
    from chandra.oracle import build_factor_oracle

    events = [dict(e) for e in model.events]
    for i in range(every - 1, len(events), every):
        events[i]["gesture_token"] = events[i - 1]["gesture_token"]
    tokens = np.asarray([e["gesture_token"] for e in events], dtype=np.int64)
    smoothed = dataclasses.replace(model, events=events, oracle=build_factor_oracle(tokens), vocabulary=None,
                                   centers=None, ledger=[])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "desync.json"
        export_musichal(smoothed, path)
        doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("chandra", None)  # as MusicHal's own save drops it
    return doc


def stringified(doc: dict) -> dict:
    """``ratios`` and a ``chord`` dict turned into their ``str()``."""
    out = copy.deepcopy(doc)
    out.pop("chandra", None)
    for frame in _frames(out):
        data = frame["audio_data"]
        data["ratios"] = str(data.get("ratios") or [1.0])
        data["chord"] = str({"root": data.get("midi", 60), "quality": "single"})
    return out


def vocab_mismatch(doc: dict) -> dict:
    """The modular shape declaring a vocabulary fitted on other features than the encoder's."""
    inner = copy.deepcopy(doc)
    inner.pop("chandra", None)
    return {"metadata": {"trainer": "example", "gesture_vocabulary": VOCABULARY_DECLARATION,
                         "feature_extractor": ENCODER_DECLARATION},
            "data": {"audio_oracle": inner, "rhythm_oracle": {}}}


def types_roundtrip(doc: dict) -> dict:
    """Numbers written as text (numpy scalars through ``json.dump(default=str)``)."""
    out = copy.deepcopy(doc)
    out.pop("chandra", None)
    # A file MusicHal's own trainer wrote carries no chandra export marker (whose
    # restore of chandra's values would put the numbers back on import).
    out.get("stats", {}).pop("chandra_export", None)
    for frame in _frames(out):
        data = frame["audio_data"]
        for key in ("midi", "f0", "consonance"):
            if isinstance(data.get(key), (int, float)) and not isinstance(data.get(key), bool):
                data[key] = str(data[key])
    out["distance_threshold"] = str(out.get("distance_threshold"))
    stats = out.setdefault("stats", {})
    for key in ("total_states", "sequence_length"):
        if key in stats:
            stats[key] = str(stats[key])
    return out


#: File name -> (transform, finding code it shows).
FAULTS = {
    "desync.json": (desync, "TOKENS_DESYNC"),
    "stringified.json": (stringified, "STRINGIFIED_CONTAINER"),
    "vocab_mismatch.json": (vocab_mismatch, "VOCAB_ENCODER_MISMATCH"),
    "types_roundtrip.json": (types_roundtrip, "TYPES_CHANGED"),
}


def write_fault_files(model, outdir: str | Path) -> dict[str, Path]:
    """Export the clean :class:`chandra.model.Model` as ``clean.json`` and write
    every fault file derived from it into ``outdir``.

    Returns
    -------
    dict
        File name -> path written (``clean.json`` first).
    """
    from chandra.musichal import export_musichal

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    clean = outdir / "clean.json"
    export_musichal(model, clean)
    doc = json.loads(clean.read_text(encoding="utf-8"))
    written = {"clean.json": clean}
    for name, (transform, _) in FAULTS.items():
        path = outdir / name
        path.write_text(json.dumps(transform(model if transform is desync else doc)), encoding="utf-8")
        written[name] = path
    return written


def main(outdir: str | Path, audio: str | Path | None = None, *, n_tokens: int = 8) -> dict[str, Path]:
    """Train a small model on ``audio`` (default: the Bach sample) and write
    ``clean.json`` and the fault files into ``outdir``."""
    from chandra.pipeline import TrainConfig, train

    audio = Path(audio) if audio else Path(__file__).resolve().parents[1] / "sample_audio" / "bach_prelude_c.flac"
    # Few tokens, so each has enough frames to be judged without the vocabulary's centres.
    model = train(audio, TrainConfig(n_tokens=n_tokens)).model
    written = write_fault_files(model, outdir)
    for name, path in written.items():
        code = FAULTS.get(name, (None, "no fault"))[1]
        print(f"{path}  ({code})")
    return written


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print("usage: python examples/musichal_fault_files.py OUTDIR [AUDIO]", file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)
