"""Encoder speed: real-time factors of the DSP and wav2vec2 encoders.

A full-size ``Wav2Vec2Config()`` (wav2vec2-base geometry: 12 layers, 768-D,
~94M parameters) with random weights has the real compute cost, so it stands
in for downloaded weights. It is saved to a temporary directory and loaded
back through :class:`chandra.encoders.Wav2Vec2Encoder` like a real model.

Measured, each as the median of ``--repeats`` runs on ``--seconds`` of audio
at 22050 Hz (the encoder resamples to 16 kHz):

* ``forward only``: the model's forward passes over exactly the chunks and
  batches ``encode`` uses (inputs prepared beforehand);
* ``forward, one pass``: a single forward over the whole file, no chunking;
* ``encode``: the full :meth:`Wav2Vec2Encoder.encode` (resample, normalise,
  chunk, forward, stitch, pool to segments);
* ``dsp encode``: :meth:`DSPEncoder.encode` on the same audio and segments.

RTF = processing seconds / audio seconds (lower is faster; < 1 is faster
than real time). Also printed: how far chunked segment vectors are from the
one-pass ones (cosine similarity; random weights, so indicative only).

Usage::

    HF_HUB_OFFLINE=1 python benchmarks/bench_encoders.py [--seconds 60] [--repeats 3]
        [--device cpu] [--threads N] [--chunk-seconds 20] [--overlap-seconds 1] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chandra.encoders import DSPEncoder, Wav2Vec2Encoder  # noqa: E402
from _common import timed  # noqa: E402


def synthetic_music(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Notes with harmonics, decays and a little noise: a stand-in for music."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n, dtype=np.float64)
    t0 = 0.0
    while t0 < seconds:
        dur = rng.uniform(0.15, 0.8)
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        a, b = int(t0 * sr), min(n, int((t0 + dur) * sr))
        t = np.arange(b - a) / sr
        note = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        y[a:b] += 0.2 * note * np.exp(-3.0 * t)
        t0 += dur
    y += 0.005 * rng.standard_normal(n)
    return (y / np.max(np.abs(y)) * 0.8).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--chunk-seconds", type=float, default=15.0)
    ap.add_argument("--overlap-seconds", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--segment-seconds", type=float, default=0.25, help="segment length for pooling")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import torch
    import transformers
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    if args.threads:
        torch.set_num_threads(args.threads)
    sr = 22050
    y = synthetic_music(args.seconds, sr)
    starts = np.arange(0.0, args.seconds - 1e-9, args.segment_seconds)
    segments = SimpleNamespace(start=starts, end=np.minimum(starts + args.segment_seconds, args.seconds))
    results: dict = {
        "audio_seconds": args.seconds,
        "input_sr": sr,
        "n_segments": int(starts.size),
        "repeats": args.repeats,
        "device": args.device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if args.device.startswith("cuda") and torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name(0)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    dsp = DSPEncoder()
    dsp.encode(y[: sr * 2], sr, SimpleNamespace(start=np.array([0.0]), end=np.array([1.0])))  # numba warm-up
    t_dsp, _, all_dsp, _ = timed(lambda: dsp.encode(y, sr, segments), args.repeats, warm_up=False)
    results["dsp_encode_s"] = t_dsp
    results["dsp_encode_rtf"] = t_dsp / args.seconds
    results["dsp_runs_s"] = all_dsp

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = Wav2Vec2Model(Wav2Vec2Config())
        results["parameters"] = int(sum(p.numel() for p in model.parameters()))
        model.save_pretrained(tmp)
        Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(tmp)
        del model

        enc = Wav2Vec2Encoder(
            model=tmp,
            chunk_seconds=args.chunk_seconds,
            overlap_seconds=args.overlap_seconds,
            batch_size=args.batch_size,
            device=args.device,
        ).load()
        from chandra.encoders import resample

        x = resample(y, sr, enc.sample_rate)
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        chunk, chunk_starts = enc.chunk_plan(x.size)
        x = np.concatenate([x, np.zeros(max(0, chunk_starts[-1] + chunk - x.size), np.float32)])
        batches = [
            torch.from_numpy(np.stack([x[s : s + chunk] for s in chunk_starts[i : i + args.batch_size]])).to(args.device)
            for i in range(0, len(chunk_starts), args.batch_size)
        ]
        results["chunks"] = len(chunk_starts)
        results["chunk_samples"] = chunk
        results["forward_batches"] = len(batches)
        layer = enc.effective_layer

        def forward_only():
            with torch.inference_mode():
                for batch in batches:
                    enc.model_(batch, output_hidden_states=True).hidden_states[layer].float().cpu()
            sync()

        whole = torch.from_numpy(x[: int(args.seconds * enc.sample_rate)][None]).to(args.device)

        def forward_one_pass():
            with torch.inference_mode():
                enc.model_(whole, output_hidden_states=True).hidden_states[layer].float().cpu()
            sync()

        forward_only()  # warm-up (allocator, kernels)
        t_fwd, _, all_fwd, _ = timed(forward_only, args.repeats, warm_up=False)
        t_one, _, all_one, _ = timed(forward_one_pass, args.repeats, warm_up=False)
        X = None

        def full_encode():
            nonlocal X
            X = enc.encode(y, sr, segments)

        t_enc, _, all_enc, _ = timed(full_encode, args.repeats, warm_up=False)
        results.update(
            forward_only_s=t_fwd,
            forward_only_rtf=t_fwd / args.seconds,
            forward_only_runs_s=all_fwd,
            forward_one_pass_s=t_one,
            forward_one_pass_rtf=t_one / args.seconds,
            forward_one_pass_runs_s=all_one,
            encode_s=t_enc,
            encode_rtf=t_enc / args.seconds,
            encode_runs_s=all_enc,
            encode_overhead_s=t_enc - t_fwd,
            dim=int(X.shape[1]),
        )

        one_pass = Wav2Vec2Encoder(model=tmp, chunk_seconds=args.seconds + 1, device=args.device)
        Y = one_pass.encode(y, sr, segments)
        cos = np.sum(X * Y, axis=1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1) + 1e-12)
        results["chunked_vs_one_pass_cosine_median"] = float(np.median(cos))
        results["chunked_vs_one_pass_cosine_min"] = float(np.min(cos))

    print(f"audio: {args.seconds:g} s synthetic music at {sr} Hz, {results['n_segments']} segments; "
          f"device {args.device}{' (' + results['gpu'] + ')' if 'gpu' in results else ''}, "
          f"torch threads {results['torch_threads']} of {results['cpu_count']} cores")
    print(f"dsp encode:              {t_dsp:7.2f} s   RTF {results['dsp_encode_rtf']:.4f}")
    print(f"wav2vec2-base (random, {results['parameters'] / 1e6:.1f}M params), "
          f"{results['chunks']} chunks of {args.chunk_seconds:g} s / overlap {args.overlap_seconds:g} s "
          f"in {results['forward_batches']} forward batch(es) of <= {args.batch_size}:")
    print(f"  forward only (chunks): {t_fwd:7.2f} s   RTF {results['forward_only_rtf']:.4f}")
    print(f"  forward, one pass:     {t_one:7.2f} s   RTF {results['forward_one_pass_rtf']:.4f}")
    print(f"  full encode:           {t_enc:7.2f} s   RTF {results['encode_rtf']:.4f}   "
          f"(overhead vs forward only {t_enc - t_fwd:+.2f} s)")
    print(f"  chunked vs one-pass segment vectors: cosine median "
          f"{results['chunked_vs_one_pass_cosine_median']:.4f}, min {results['chunked_vs_one_pass_cosine_min']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
