"""Long recordings: peak memory against minutes, and the neural pipeline against its forward passes.

Usage::

    python benchmarks/bench_long.py --encoder dsp --minutes 10 60 120 [--no-embed]
    python benchmarks/bench_long.py --encoder wav2vec2 --minutes 10 30 [--sequential]
    python benchmarks/bench_long.py --plot          # table + log-log figure from the records so far

Each configuration trains one model in a fresh subprocess, so the peak RSS
(``ru_maxrss``) is that of the whole training process alone. The audio is
real music arranged from the bundled samples by ``scripts/long_track.py``
(``build_track(minutes, seed=0)``), written as 16-bit WAV at 22 050 Hz. The
wav2vec2 case is a full-size ``Wav2Vec2Config()`` (94.4 M parameters, the
compute of wav2vec2-base) with random weights saved by ``save_pretrained`` to
a temporary directory and loaded through the real code; never a hub
download. The forward passes are timed inside the run by wrapping
``Wav2Vec2Model.forward``. ``--sequential`` runs the stages one after the
other (``run_all(overlap=False)``) for comparison with the default
overlapped run. Records (one JSON line per run, with the load average before
and after, since the machine is shared) are appended to
``benchmarks/long_records.jsonl``; ``--plot`` writes
``benchmarks/plots/pipeline_minutes.png`` (pipeline seconds against minutes
of audio, log-log, with fitted slopes) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "benchmarks" / "long_records.jsonl"
FIGURE = REPO / "benchmarks" / "plots" / "pipeline_minutes.png"


def make_wav2vec2_dir(path: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(path)
    return path


def child(audio: str, encoder: str, model_dir: str, out: str, embed: bool, overlap: bool, device: str) -> None:
    """One timed training run, in its own process."""
    import resource

    sys.path.insert(0, str(REPO))
    from chandra.pipeline import RunState, TrainConfig, run_all

    load_before = os.getloadavg()
    config = TrainConfig(encoder=encoder, model=None if model_dir == "-" else model_dir, n_tokens=64,
                         embed_audio=embed, **({"device": device} if encoder != "dsp" else {}))
    from _common import time_forward_passes

    # the encoder's forward passes alone, to compare with the whole pipeline
    forward = time_forward_passes() if encoder != "dsp" else {"seconds": 0.0, "calls": 0}
    state = RunState(audio_path=audio, config=config)
    t0 = time.perf_counter()
    run_all(state, output=Path(out).with_suffix(".chandra"), overlap=overlap)
    total = time.perf_counter() - t0
    record = {
        "encoder": encoder, "embed_audio": embed, "overlap": overlap, "device": device,
        "torch_threads": _torch_threads() if encoder != "dsp" else None,
        "audio_minutes": state.duration / 60.0, "segments": len(state.segments),
        "total_seconds": total, "stage_seconds": state.timings,
        "forward_seconds": forward["seconds"] if encoder != "dsp" else None,
        "forward_calls": forward["calls"] if encoder != "dsp" else None,
        # VmHWM is this process's own high-water mark: ru_maxrss would also carry the
        # parent's (Linux copies it into the child at exec when spawning by vfork)
        "peak_rss_mb": _vm_hwm_mb(),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "signal_mb": state.signal.nbytes / 2**20,
        "load_before": load_before, "load_after": os.getloadavg(),
    }
    Path(out).write_text(json.dumps(record))


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process (``VmHWM`` of /proc/self/status), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    for name in ("numpy", "librosa", "torch", "transformers", "soxr"):
        try:
            out[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is reported as such
            out[name] = "not installed"
    return out


def run(args) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = make_wav2vec2_dir(tmp / "w2v") if args.encoder != "dsp" else None
        for minutes in args.minutes:
            audio = tmp / f"track-{minutes:g}.wav"
            t0 = time.perf_counter()
            # in a separate process, so this one never holds the track
            subprocess.run([sys.executable, str(REPO / "scripts" / "long_track.py"), str(minutes), str(audio),
                            "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
            print(f"built {minutes:g} min of music in {time.perf_counter() - t0:.1f} s", flush=True)
            for _ in range(args.runs):
                out = tmp / "record.json"
                cmd = [sys.executable, __file__, "--child", str(audio), args.encoder,
                       str(model_dir) if model_dir else "-", str(out), "1" if args.embed else "0",
                       "0" if args.sequential else "1", args.device]
                subprocess.run(cmd, check=True)
                record = {**json.loads(out.read_text()), "versions": versions(),
                          "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                with Path(args.records).open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                line = (f"{record['encoder']:8} {record['audio_minutes']:6.1f} min  embed={int(record['embed_audio'])}"
                        f"  overlap={int(record['overlap'])}  total {record['total_seconds']:8.1f} s  "
                        f"peak RSS {record['peak_rss_mb']:7.0f} MB  load {record['load_before'][0]:.1f}")
                if record["forward_seconds"]:
                    line += (f"  forward {record['forward_seconds']:.1f} s  "
                             f"total/forward {record['total_seconds'] / record['forward_seconds']:.3f}")
                print(line, flush=True)
                (tmp / "record.chandra").unlink(missing_ok=True)
            audio.unlink()


def plot(path: Path) -> None:
    import numpy as np

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    series: dict[str, list] = {}
    for r in records:
        key = (f"{r['encoder']}, {'overlapped' if r['overlap'] else 'sequential'}"
               f"{'' if r['embed_audio'] else ', no embedded audio'}") if r["encoder"] != "dsp" else \
            f"dsp{'' if r['embed_audio'] else ', no embedded audio'}"
        key = r.get("label") or key  # a record may name its series (e.g. an earlier version of the code)
        series.setdefault(key, []).append(r)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8))
    print("| series | minutes | segments | total s | RTF | forward s | total/forward | peak RSS MB | signal MB | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, rows in sorted(series.items()):
        rows.sort(key=lambda r: r["audio_minutes"])
        for r in rows:
            fwd = r["forward_seconds"]
            fwd_s = f"{fwd:.1f}" if fwd else ""
            ratio = f"{r['total_seconds'] / fwd:.3f}" if fwd else ""
            print(f"| {key} | {r['audio_minutes']:.0f} | {r['segments']:,} | {r['total_seconds']:.1f} | "
                  f"{r['total_seconds'] / (60 * r['audio_minutes']):.4f} | {fwd_s} | {ratio} | "
                  f"{r['peak_rss_mb']:,.0f} | {r['signal_mb']:.0f} | {r['load_before'][0]:.1f} |")
        m = np.array([r["audio_minutes"] for r in rows])
        t = np.array([r["total_seconds"] for r in rows])
        label = key
        if len(set(np.round(m))) >= 2:
            slope, _ = np.polyfit(np.log(m), np.log(t), 1)
            label += f" (slope {slope:.2f})"
            print(f"\n{key}: fitted log-log slope {slope:.3f}\n")
        ax.loglog(m, t, "o-", label=label)
    ax.set_xlabel("minutes of audio")
    ax.set_ylabel("pipeline seconds (train, all stages)")
    ax.set_title("chandra train against the length of the recording")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    print(f"wrote {FIGURE.relative_to(REPO)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="dsp", choices=["dsp", "wav2vec2"])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-embed", dest="embed", action="store_false",
                        help="train with embed_audio=False (the model keeps no copy of the signal)")
    parser.add_argument("--sequential", action="store_true", help="run_all(overlap=False)")
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--device", default="cpu", help="neural encoder device (cpu, auto, cuda)")
    parser.add_argument("--records", default=str(RECORDS), help="JSON-lines file the records are appended to")
    parser.add_argument("--child", nargs="+", help="AUDIO ENCODER MODEL OUT EMBED OVERLAP [DEVICE] (internal)")
    args = parser.parse_args()
    if args.child:
        audio, encoder, model_dir, out, embed, overlap, device = (args.child + ["cpu"])[:7]
        child(audio, encoder, model_dir, out, embed == "1", overlap == "1", device)
        return 0
    if args.plot:
        plot(Path(args.records))
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
