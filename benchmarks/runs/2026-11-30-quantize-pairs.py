# Paired forward timings, float32 vs int8 (channels-last WindowLinear), one batch of 2 x 15 s chunks of real music, interleaved.
import os, sys, tempfile, time, json, statistics
sys.path[:0] = [".", "scripts"]
import numpy as np, torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
from chandra.encoders import Wav2Vec2Encoder, resample
from long_track import SR, build_track
y = resample(build_track(0.5, seed=0), SR, 16000)
y = (y - y.mean()) / np.sqrt(y.var() + 1e-7)
x = torch.from_numpy(np.stack([y[:240000], y[240000:480000]]).astype(np.float32))
with tempfile.TemporaryDirectory() as tmp:
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(tmp)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(tmp)
    enc = {q: Wav2Vec2Encoder(model=tmp, quantize=q, device="cpu").load() for q in ("none", "int8")}
    out = {"load_start": os.getloadavg(), "pairs": []}
    with torch.inference_mode():
        for q in enc: enc[q].model_(x)
        for i in range(7):
            t = {}
            for q in (("none", "int8") if i % 2 == 0 else ("int8", "none")):
                s = time.perf_counter(); enc[q].model_(x); t[q] = time.perf_counter() - s
            out["pairs"].append(t); print(i, {k: round(v, 2) for k, v in t.items()}, round(t["none"] / t["int8"], 2), os.getloadavg()[0], flush=True)
    r = [p["none"] / p["int8"] for p in out["pairs"]]
    out.update(ratio_median=statistics.median(r), none_median=statistics.median(p["none"] for p in out["pairs"]),
               int8_median=statistics.median(p["int8"] for p in out["pairs"]), load_end=os.getloadavg())
    print(json.dumps(out)); open("benchmarks/runs/2026-11-30-quantize-pairs.json", "w").write(json.dumps(out, indent=1))
