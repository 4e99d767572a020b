# Per-operator CPU profile of one forward pass (2 x 15 s chunks), full-size Wav2Vec2Config with random weights, float32 then int8.
import os, sys, tempfile, time
sys.path[:0] = [".", "scripts"]
import numpy as np, torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
from chandra.encoders import Wav2Vec2Encoder
print(torch.__version__, torch.get_num_threads(), torch.backends.quantized.engine, torch.backends.quantized.supported_engines)
x = torch.randn(2, 240000)
tmp = tempfile.mkdtemp()
if not os.path.exists(tmp + "/config.json"):
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(tmp)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(tmp)
for q in ("none", "int8"):
    m = Wav2Vec2Encoder(model=tmp, quantize=q, device="cpu").load().model_
    with torch.inference_mode():
        m(x)
        with torch.profiler.profile() as p:
            m(x)
    print(q)
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
