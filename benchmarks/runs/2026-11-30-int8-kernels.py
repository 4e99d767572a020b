# fp32 Linear against torch dynamic-int8 Linear (fbgemm) and torch._int_mm, on the GEMM shapes of the full-size wav2vec2 forward (2 x 15 s chunks).
import torch, time
torch.manual_seed(0)
def bench(f, n=5):
    f(); ts=[]
    for _ in range(n):
        s=time.perf_counter(); f(); ts.append(time.perf_counter()-s)
    return sorted(ts)[n//2]
from torch.ao.nn.quantized.dynamic import Linear as QL
for (m,k,n) in [(1500,768,3072),(1500,3072,768),(1500,768,768),(24000,1536,512),(6000,1536,512)]:
    a=torch.randn(m,k); w=torch.randn(n,k)
    lin=torch.nn.Linear(k,n); 
    with torch.inference_mode():
        tf=bench(lambda: lin(a))
        ql=torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin),{torch.nn.Linear},dtype=torch.qint8)
        tq=bench(lambda: ql(a))
        aq=torch.randint(-127,127,(m,k),dtype=torch.int8); wq=torch.randint(-127,127,(k,n),dtype=torch.int8)
        try:
            ti=bench(lambda: torch._int_mm(aq,wq))
        except Exception as e: ti=str(e)[:80]
        # per-row quant cost
        def rowq():
            s=a.abs().amax(1,keepdim=True)/127
            return torch.round(a/s).to(torch.int8)
        tr=bench(rowq)
    print(m,k,n, "float %.4f qdyn %.4f (x%.2f) int_mm %s rowquant %.4f"%(tf,tq,tf/tq, ti if isinstance(ti,str) else "%.4f (x%.2f)"%(ti,tf/ti), tr))
