"""RTF of the full-size wav2vec2 architecture on a CUDA GPU against the CPU (``--device``).

A full-size ``Wav2Vec2Config()`` (wav2vec2-base geometry, ~94M parameters)
with random weights is saved to a temporary directory and loaded through
:class:`chandra.encoders.Wav2Vec2Encoder` with ``device="cuda"`` (batch size
sized for the device by the encoder) and ``device="cpu"``. The audio is
synthetic music made here at 16 kHz (harmonic notes with decaying envelopes
and a noise floor; no decoding or resampling, so the script needs only
numpy, torch and transformers and runs on a machine without librosa); the
segments are a fixed 0.25 s grid (the encoder's cost does not depend on
them). Times are the whole ``encode`` (normalise, chunk, forward passes,
stitch, pool), medians of ``--repeats`` after a warm-up; RTF = seconds /
audio seconds. The GPU vectors are compared with the CPU ones (cosine).

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/bench_device.py [--minutes 10 60] [--cpu-minutes 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SR = 16000


def music(minutes: float, seed: int = 0) -> np.ndarray:
    """Harmonic notes (1-4 partials, 0.1-0.6 s, exponential decay) over a noise floor; float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * SR)
    y = 0.01 * rng.standard_normal(n).astype(np.float32)
    t = 0
    while t < n:
        dur = int(rng.uniform(0.1, 0.6) * SR)
        m = min(dur, n - t)
        tt = np.arange(m, dtype=np.float32) / SR
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        note = sum(np.sin(2 * np.pi * f0 * k * tt) / k for k in range(1, rng.integers(2, 6)))
        y[t: t + m] += (0.3 * np.exp(-tt * rng.uniform(2, 8)) * note).astype(np.float32)
        t += dur
    return y


def grid(seconds: float, step: float = 0.25) -> SimpleNamespace:
    start = np.arange(0.0, seconds - step / 2, step)
    return SimpleNamespace(start=start, end=np.minimum(start + step, seconds))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--cpu-minutes", type=float, default=2.0, help="audio for the CPU reference (0: none)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch
    import transformers
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from chandra.encoders import Wav2Vec2Encoder

    out: dict = {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                 "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                 "repeats": args.repeats, "runs": []}

    def timed(enc, y):
        segs = grid(y.size / SR)
        vec = enc.encode(y, SR, segs)  # warm-up (cuDNN autotune, allocator)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            vec = enc.encode(y, SR, segs)
            times.append(time.perf_counter() - t)
        return vec, times

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(tmp)
        Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True).save_pretrained(tmp)
        cases = [("cuda", m) for m in args.minutes] + ([("cpu", args.cpu_minutes)] if args.cpu_minutes else [])
        vectors = {}
        for device, minutes in cases:
            enc = Wav2Vec2Encoder(model=tmp, device=device).load()
            y = music(minutes)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            vec, times = timed(enc, y)
            med = statistics.median(times)
            row = {"device": enc.device_, "batch_size": enc.batch_size_, "minutes": minutes, "median_s": med,
                   "runs_s": times, "rtf": med / (y.size / SR), "segments": int(vec.shape[0])}
            if device == "cuda":
                row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
            if minutes == args.cpu_minutes or device == "cpu":
                vectors.setdefault(device, vec)
        if args.cpu_minutes and args.cpu_minutes not in args.minutes:
            enc = Wav2Vec2Encoder(model=tmp, device="cuda").load()
            vectors["cuda"] = enc.encode(music(args.cpu_minutes), SR, grid(args.cpu_minutes * 60))
        if "cuda" in vectors and "cpu" in vectors:
            a, b = vectors["cuda"].astype(np.float64), vectors["cpu"].astype(np.float64)
            cos = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            out["cosine_cuda_cpu"] = {"median": float(np.median(cos)), "min": float(cos.min())}
            print(json.dumps(out["cosine_cuda_cpu"]), flush=True)
    out["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
