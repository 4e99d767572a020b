"""Encode RTF of the full-size wav2vec2 architecture on a CUDA GPU against the CPU (``--device``).

Exactly the script that was run on the borrowed H200 on 2026-11-29 (kept
compact: the device command line is limited to 2,000 characters, so it went
gzip+base64 inline). A full-size ``Wav2Vec2Config()`` with random weights,
``Wav2Vec2Encoder(device=...)`` with the batch sized by the encoder for the
device; whole ``encode`` on synthetic music made at 16 kHz (no decoding or
resampling, so only numpy, torch and transformers are needed) with 0.25 s
segments: cuda at 2, 10 and 60 minutes, cpu at 2 minutes; median of 3 after
a warm-up; then the cosine of the cuda and cpu vectors of the 2-minute piece.
Needs a CUDA GPU. Run from the repository root: ``HF_HUB_OFFLINE=1 python
benchmarks/bench_device.py``. Results: benchmarks/RESULTS.md section 17.
"""
import json,os,statistics as st,sys,tempfile,time
from types import SimpleNamespace as NS
import numpy as np,torch,transformers as T
sys.path.insert(0,'.')
from chandra.encoders import Wav2Vec2Encoder as E
R=16000
def music(m,seed=0):
 g=np.random.default_rng(seed);n=int(m*60*R);y=.01*g.standard_normal(n).astype(np.float32);t=0
 while t<n:
  d=int(g.uniform(.1,.6)*R);k=min(d,n-t);tt=np.arange(k,dtype=np.float32)/R;f=110*2**(g.integers(0,36)/12)
  y[t:t+k]+=(.3*np.exp(-tt*g.uniform(2,8))*sum(np.sin(2*np.pi*f*h*tt)/h for h in range(1,g.integers(2,6)))).astype(np.float32);t+=d
 return y
def grid(s):
 a=np.arange(0,s-.125,.25);return NS(start=a,end=np.minimum(a+.25,s))
o={'torch':torch.__version__,'tf':T.__version__,'gpu':torch.cuda.get_device_name(0),'thr':torch.get_num_threads(),'load':os.getloadavg()}
print(o,flush=True)
V={}
with tempfile.TemporaryDirectory() as d:
 torch.manual_seed(0);T.Wav2Vec2Model(T.Wav2Vec2Config()).save_pretrained(d);T.Wav2Vec2FeatureExtractor(sampling_rate=R,do_normalize=True).save_pretrained(d)
 for dev,m in [('cuda',2),('cuda',10),('cuda',60),('cpu',2)]:
  e=E(model=d,device=dev).load();y=music(m);s=grid(y.size/R);v=e.encode(y,R,s);ts=[]
  torch.cuda.reset_peak_memory_stats()
  for _ in range(3 if m<60 or dev=='cuda' else 1):
   t=time.perf_counter();v=e.encode(y,R,s);ts.append(time.perf_counter()-t)
  me=st.median(ts);r={'dev':e.device_,'batch':e.batch_size_,'min':m,'med':me,'runs':ts,'rtf':me/(y.size/R),'gpu_mb':torch.cuda.max_memory_allocated()/2**20,'load':os.getloadavg()}
  print(json.dumps(r),flush=True)
  if m==2:V[dev]=v.astype(np.float64)
a,b=V['cuda'],V['cpu'];c=(a*b).sum(1)/np.linalg.norm(a,axis=1)/np.linalg.norm(b,axis=1)
print('cos',np.median(c),c.min())
