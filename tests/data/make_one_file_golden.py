import sys, json
sys.path.insert(0, "tests")
from pathlib import Path
from helpers_audio import melody, write
from chandra.pipeline import TrainConfig, train
out = Path(sys.argv[1])
wav = Path("/tmp/golden_take.wav")
write(wav, melody(24, seed=3))
cfg = TrainConfig(n_tokens=8, embed_audio=False, **json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))
res = train(wav, cfg, output=out)
print(res.model.n_frames, out.stat().st_size)
