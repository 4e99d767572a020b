"""int8 against float32: speed, segment vectors and tokens of the full-size wav2vec2 architecture.

A full-size ``Wav2Vec2Config()`` (wav2vec2-base geometry, ~94M parameters)
with random weights is saved to a temporary directory and loaded through
:class:`chandra.encoders.Wav2Vec2Encoder` twice: ``quantize="none"``
(float32) and ``quantize="int8"``. The audio is real music: the bundled
pieces arranged by ``scripts/long_track.build_track`` (``--minutes``),
segmented by chandra's onset segmentation.

Measured (float32 and int8 interleaved, so both see the same machine load;
medians of ``--repeats``):

* forward passes only, over exactly the chunks and batches ``encode`` uses
  (the speed-up goal: >= 1.8x);
* the full ``encode`` (resample, normalise, chunk, forward, stitch, pool);
* cosine similarity of every segment vector to its float32 twin (goal:
  median >= 0.99), next to the cosine between *different* segments'
  float32 vectors (random weights make hidden states anisotropic, so the
  second figure says how much the first one means);
* token agreement: a vocabulary (K = ``--tokens``, L2, seeded K-means)
  fitted on the float32 vectors, applied to both; the share of segments
  that get the same token (goal >= 95 %), and the same with a vocabulary
  refitted on the int8 vectors (label-matched), for comparison.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_quantize.py [--minutes 3] [--repeats 3] [--tokens 64]
        [--json out.json]
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

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))

from chandra.encoders import Wav2Vec2Encoder, resample  # noqa: E402
from chandra.segment import segment_audio  # noqa: E402
from chandra.vocabulary import GestureVocabulary  # noqa: E402
from long_track import SR, build_track  # noqa: E402


def forward_batches(enc: Wav2Vec2Encoder, y: np.ndarray, sr: int):
    """The model inputs ``encode`` would build (normalised, chunked, batched)."""
    import torch

    x = resample(y, sr, enc.sample_rate)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    chunk, starts = enc.chunk_plan(x.size)
    x = np.concatenate([x, np.zeros(max(0, starts[-1] + chunk - x.size), np.float32)]).astype(np.float32)
    size = enc.batch_size_
    return [torch.from_numpy(np.stack([x[s: s + chunk] for s in starts[i: i + size]]))
            for i in range(0, len(starts), size)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch
    import transformers
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    y = build_track(args.minutes, seed=0)
    segments = segment_audio(y, SR)
    seconds = y.size / SR
    out: dict = {"audio_seconds": seconds, "segments": len(segments), "torch": torch.__version__,
                 "transformers": transformers.__version__, "torch_threads": torch.get_num_threads(),
                 "quantized_engine": torch.backends.quantized.engine, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(tmp)
        Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(tmp)
        encoders = {q: Wav2Vec2Encoder(model=tmp, quantize=q, device="cpu").load() for q in ("none", "int8")}
        out["quantized_modules"] = encoders["int8"].provenance()["quantized_modules"]
        batches = forward_batches(encoders["none"], y, SR)
        layer = encoders["none"].effective_layer

        def forward(enc):
            with torch.inference_mode():
                for batch in batches:
                    enc.model_(batch, output_hidden_states=True).hidden_states[layer].float().numpy()

        times: dict = {("forward", q): [] for q in encoders} | {("encode", q): [] for q in encoders}
        vectors = {}
        for q, enc in encoders.items():  # warm-up
            forward(enc)
        for _ in range(args.repeats):
            for q, enc in encoders.items():  # interleaved: both see the same load
                t = time.perf_counter()
                forward(enc)
                times[("forward", q)].append(time.perf_counter() - t)
                t = time.perf_counter()
                vectors[q] = enc.encode(y, SR, segments)
                times[("encode", q)].append(time.perf_counter() - t)
    med = {key: statistics.median(v) for key, v in times.items()}
    for (what, q), v in times.items():
        out[f"{what}_{q}_s"] = med[(what, q)]
        out[f"{what}_{q}_runs_s"] = v
    out["forward_speedup"] = med[("forward", "none")] / med[("forward", "int8")]
    out["encode_speedup"] = med[("encode", "none")] / med[("encode", "int8")]
    out["forward_rtf_none"] = med[("forward", "none")] / seconds
    out["forward_rtf_int8"] = med[("forward", "int8")] / seconds

    A, B = vectors["none"].astype(np.float64), vectors["int8"].astype(np.float64)
    unit_a = A / np.linalg.norm(A, axis=1, keepdims=True)
    unit_b = B / np.linalg.norm(B, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", unit_a, unit_b)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(A), 20000), rng.integers(0, len(A), 20000)
    keep = i != j
    between = np.einsum("ij,ij->i", unit_a[i[keep]], unit_a[j[keep]])
    out.update(cosine_median=float(np.median(cos)), cosine_p05=float(np.quantile(cos, 0.05)),
               cosine_min=float(cos.min()), cosine_between_segments_median=float(np.median(between)),
               cosine_between_segments_p95=float(np.quantile(between, 0.95)))
    vocab = GestureVocabulary(n_tokens=args.tokens, random_state=0).fit(vectors["none"])
    ta, tb = vocab.predict(vectors["none"]), vocab.predict(vectors["int8"])
    out["token_agreement"] = float(np.mean(ta == tb))
    out["tokens_active_float32"] = int(np.unique(ta).size)
    refit = GestureVocabulary(n_tokens=args.tokens, random_state=0).fit(vectors["int8"])
    tr = refit.predict(vectors["int8"])
    # label-match the refitted vocabulary to the float32 one (majority vote per token)
    mapping = {k: np.bincount(ta[tr == k]).argmax() for k in np.unique(tr)}
    out["token_agreement_refit"] = float(np.mean(np.array([mapping[k] for k in tr]) == ta))

    print(f"audio: {seconds / 60:.1f} min of real music (bundled pieces), {len(segments)} segments; "
          f"torch {torch.__version__} ({out['torch_threads']} threads, engine {out['quantized_engine']})")
    print(f"int8 modules: {out['quantized_modules']}")
    for what in ("forward", "encode"):
        a, b = med[(what, "none")], med[(what, "int8")]
        print(f"{what:8s} float32 {a:7.2f} s (RTF {a / seconds:.4f})   int8 {b:7.2f} s (RTF {b / seconds:.4f})   "
              f"speed-up {a / b:.2f}x")
    print(f"segment vectors int8 vs float32: cosine median {out['cosine_median']:.4f}, 5th pct "
          f"{out['cosine_p05']:.4f}, min {out['cosine_min']:.4f} (between different segments: median "
          f"{out['cosine_between_segments_median']:.4f}, 95th pct {out['cosine_between_segments_p95']:.4f})")
    print(f"tokens (K={args.tokens}, {out['tokens_active_float32']} active): float32 vocabulary on int8 vectors "
          f"agrees {100 * out['token_agreement']:.1f} %; a vocabulary refitted on int8 "
          f"{100 * out['token_agreement_refit']:.1f} %")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
