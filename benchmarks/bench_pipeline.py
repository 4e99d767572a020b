"""Pipeline speed: real-time factor per stage and overall, and peak memory.

Usage::

    python benchmarks/bench_pipeline.py [--minutes 10] [--runs 3] [--encoder dsp|wav2vec2|both]
    python benchmarks/bench_pipeline.py --encoder wav2vec2 --minutes 60 --runs 1   # the 1-hour RSS goal

The audio is the sample pieces looped to the requested length (real music,
not noise). The wav2vec2 case uses a full-size ``Wav2Vec2Config()`` with
random weights saved to a temporary directory: the same compute as
wav2vec2-base, loaded through the real loading code. Each run happens in a
fresh subprocess so peak RSS (``ru_maxrss``) belongs to that run alone.
RTF = processing seconds / audio seconds (lower is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_audio(path: Path, minutes: float) -> float:
    import numpy as np
    import soundfile as sf

    from chandra.audio import load_audio

    pieces = [load_audio(p, sr=22050)[0] for p in sorted((REPO / "sample_audio").glob("*.flac"))]
    loop = np.concatenate(pieces)
    n = int(minutes * 60 * 22050)
    reps = int(np.ceil(n / len(loop)))
    y = np.tile(loop, reps)[:n]
    sf.write(str(path), y, 22050, subtype="PCM_16")
    return n / 22050


def make_wav2vec2_dir(path: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(path)
    return path


def child(audio: str, encoder: str, model_dir: str | None, out: str) -> None:
    """One timed training run (in its own process)."""
    import resource

    from chandra.pipeline import TrainConfig, train

    config = TrainConfig(encoder=encoder, model=model_dir, n_tokens=64)
    from _common import time_forward_passes

    # the encoder's forward passes alone, to compare with the whole pipeline
    forward = time_forward_passes() if encoder != "dsp" else {"seconds": 0.0, "calls": 0}
    t0 = time.perf_counter()
    result = train(audio, config, output=Path(out).with_suffix(".chandra"))
    total = time.perf_counter() - t0
    state = result.state
    record = {
        "audio_seconds": state.duration,
        "total_seconds": total,
        "stage_seconds": state.timings,
        "forward_seconds": forward["seconds"] if encoder != "dsp" else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "segments": len(state.segments),
    }
    Path(out).write_text(json.dumps(record))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--encoder", default="both", choices=["dsp", "wav2vec2", "both"])
    parser.add_argument("--child", nargs=4, metavar=("AUDIO", "ENCODER", "MODEL", "OUT"))
    args = parser.parse_args()
    if args.child:
        audio, encoder, model_dir, out = args.child
        child(audio, encoder, None if model_dir == "-" else model_dir, out)
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    encoders = ["dsp", "wav2vec2"] if args.encoder == "both" else [args.encoder]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio = tmp / "audio.wav"
        seconds = make_audio(audio, args.minutes)
        model_dir = make_wav2vec2_dir(tmp / "w2v") if "wav2vec2" in encoders else None
        for encoder in encoders:
            records = []
            for run in range(args.runs):
                out = tmp / f"{encoder}-{run}.json"
                cmd = [sys.executable, __file__, "--child", str(audio), encoder,
                       str(model_dir) if encoder != "dsp" else "-", str(out)]
                subprocess.run(cmd, check=True)
                records.append(json.loads(out.read_text()))
            med = lambda key: statistics.median(r[key] for r in records)  # noqa: E731
            stages = records[0]["stage_seconds"].keys()
            print(f"\n== {encoder}: {seconds / 60:.1f} min of audio, {records[0]['segments']} segments, "
                  f"median of {args.runs} runs")
            print(f"total        {med('total_seconds'):8.2f} s   RTF {med('total_seconds') / seconds:.4f}")
            for stage in stages:
                s = statistics.median(r["stage_seconds"][stage] for r in records)
                print(f"  {stage:<10} {s:8.2f} s   RTF {s / seconds:.4f}")
            if encoder != "dsp":
                fwd = med("forward_seconds")
                print(f"forward only {fwd:8.2f} s   RTF {fwd / seconds:.4f}   "
                      f"total/forward = {med('total_seconds') / fwd:.2f}")
            print(f"peak RSS     {max(r['peak_rss_mb'] for r in records):8.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
