"""Corpus engines: sequential against the local pool against Ray, and memory against corpus size.

Usage::

    python benchmarks/bench_corpus.py [--takes 12] [--rss-takes 12 48] [--runs 3] [--workers N]
    python benchmarks/bench_corpus.py --stage-costs [--minutes 2]   # per-minute costs for docs/SCALE.md

The corpus: ``--takes`` takes of 2-5 minutes each (lengths drawn with a fixed
seed), each built by ``scripts/long_track.py`` ``build_track(minutes, seed)``
from the bundled pieces transformed -- sections at another speed (varispeed:
pitch and tempo together, within +-4 semitones), at another level, layered,
recurring -- written as 16-bit FLAC at 22.05 kHz. Encoder: dsp (K = 64,
factor oracle), audio kept by reference (``audio="reference"``: an embedded
corpus keeps every sample in the model, which grows with the corpus by
design).

Every measurement runs in a fresh subprocess; the parent samples the whole
process tree of that subprocess (pool workers, the fork server, Ray's GCS,
raylet and workers) every 0.1 s and reports the peak of the summed RSS and of
the summed PSS (proportional set size: pages shared between processes counted
once, split between them -- the tree's real share of memory). Wall time is
the child's own ``train_corpus`` call (imports excluded); for Ray the one-off
start of a local instance (``ray.init``) is timed separately, as users of a
running cluster do not pay it. The load average is recorded before each
measurement (the machine may be shared).
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]


def make_corpus(folder: Path, n_takes: int, *, seed: int = 2024) -> list[Path]:
    """``n_takes`` takes of 2-5 minutes (FLAC); existing files of the right name are reused."""
    import numpy as np
    import soundfile as sf
    from long_track import SR, build_track

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    minutes = rng.uniform(2.0, 5.0, size=n_takes)
    paths = []
    for k, m in enumerate(minutes):
        path = folder / f"take{k:03d}_{m:.2f}min.flac"
        if not path.exists():
            sf.write(str(path), build_track(float(m), seed=1000 + k), SR, subtype="PCM_16", format="FLAC")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- the measured child


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    from chandra.corpus import collect_inputs, train_corpus
    from chandra.pipeline import TrainConfig

    files = collect_inputs(sorted(Path(args.corpus).glob("*.flac"))[: args.n])
    out: dict = {"engine": args.engine, "takes": len(files)}
    if args.engine == "ray":
        from chandra.engines import start_local_ray

        started = time.perf_counter()
        ray = start_local_ray(num_cpus=args.workers)
        out["ray_start_s"] = time.perf_counter() - started
    started = time.perf_counter()
    result = train_corpus(files, TrainConfig(n_tokens=64), engine=args.engine, workers=args.workers,
                          audio="reference")
    out["wall_s"] = time.perf_counter() - started
    state = result.state
    out["audio_s"] = float(sum(a.duration for a in state.analyses))
    out["segments"] = int(sum(a.n_segments for a in state.analyses))
    seconds: dict[str, float] = {}
    for a in state.analyses:
        for name in ("load", "segment", "encode", "harmony"):
            seconds[name] = seconds.get(name, 0.0) + float(a.timings.get(name, 0.0))
    out["stage_cpu_s"] = seconds  # summed over files (in whichever process ran them)
    out["corpus_steps_s"] = {k: float(v) for k, v in state.timings.items()}
    model = result.model
    arrays = {"features": model.features.nbytes, "centers": model.centers.nbytes,
              "raw_features": state.raw_features.nbytes, "tokens": state.tokens.nbytes}
    arrays.update({f"oracle.{k}": v.nbytes for k, v in model.oracle.to_arrays().items()})
    out["model_arrays_mb"] = sum(arrays.values()) / 1e6
    out["events"] = len(model.events)
    out["tokens_digest"] = __import__("hashlib").sha256(state.tokens.tobytes()).hexdigest()[:16]
    out["features_digest"] = __import__("hashlib").sha256(state.raw_features.tobytes()).hexdigest()[:16]
    if args.engine == "ray":
        ray.shutdown()
    print("RESULT " + json.dumps(out))


# --------------------------------------------------------------------------- the parent: process-tree memory


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _memory(pids: list[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return rss * 1024, pss * 1024


def measure(corpus: Path, engine: str, n: int, workers: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--corpus", str(corpus), "--engine", engine, "--n", str(n)]
    if workers:
        cmd += ["--workers", str(workers)]
    load = os.getloadavg()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    peak = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = _memory(_tree(proc.pid))
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            done.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({engine}, {n} takes):\n{stderr[-3000:]}")
    line = next(l for l in stdout.splitlines() if l.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    out.update(peak_rss_mb=peak["rss"] / 1e6, peak_pss_mb=peak["pss"] / 1e6, load_before=load[0])
    return out


# --------------------------------------------------------------------------- per-minute stage costs


def stage_costs(minutes: float, folder: Path) -> dict:
    """Decode, segment, dsp encode, harmony and full-size wav2vec2 (random weights) per minute of audio."""
    import numpy as np
    import soundfile as sf
    from long_track import SR, build_track

    from chandra.audio import decode_audio
    from chandra.encoders import make_encoder
    from chandra.harmony import analyse_harmony
    from chandra.segment import segment_audio

    path = folder / "stage_costs.flac"
    sf.write(str(path), build_track(minutes, seed=7), SR, subtype="PCM_16", format="FLAC")
    out: dict = {"minutes": minutes}

    def timed(name, fn, runs=3):
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - started)
        out[name] = statistics.median(times) / minutes
        return value

    y = timed("decode_s_per_min", lambda: decode_audio(path, sr=22050).y)
    segments = timed("segment_s_per_min", lambda: segment_audio(y, 22050))
    out["segments_per_min"] = len(segments) / minutes
    timed("dsp_encode_s_per_min", lambda: make_encoder("dsp").encode(y, 22050, segments))
    timed("harmony_s_per_min", lambda: analyse_harmony(y, 22050, segments))
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    model_dir = folder / "wav2vec2-random"
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(model_dir)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(model_dir)
    encoder = make_encoder("wav2vec2", model=str(model_dir), device="cpu")
    started = time.perf_counter()
    encoder.load()
    out["wav2vec2_load_s"] = time.perf_counter() - started
    timed("wav2vec2_encode_s_per_min", lambda: encoder.encode(y, 22050, segments), runs=1)
    out["wav2vec2_dim"] = int(encoder.dim)
    out["torch_threads"] = torch.get_num_threads()
    # the token factor oracle against corpus size (iid tokens, K = 64: its worst case for links)
    from chandra.oracle import build_factor_oracle

    rng = np.random.default_rng(0)
    growth = []
    for n in (100_000, 1_000_000, 4_000_000):
        symbols = rng.integers(0, 64, size=n)
        build_factor_oracle(symbols[:1000])
        started = time.perf_counter()
        oracle = build_factor_oracle(symbols)
        seconds = time.perf_counter() - started
        growth.append({"n": n, "s": seconds,
                       "array_mb": sum(v.nbytes for v in oracle.to_arrays().values()) / 1e6})
        del oracle
    out["factor_oracle"] = growth
    return out


# --------------------------------------------------------------------------- main


def _versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("numpy", "librosa", "scikit-learn", "ray", "torch", "transformers"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--takes", type=int, default=12, help="takes in the engine comparison")
    p.add_argument("--rss-takes", type=int, nargs="*", default=[12, 48], help="corpus sizes for the memory check")
    p.add_argument("--runs", type=int, default=3, help="runs per engine (medians reported)")
    p.add_argument("--engines", nargs="*", default=["sequential", "local", "ray"])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--corpus-dir", default=None, help="where the takes are written (default: a temp folder)")
    p.add_argument("--stage-costs", action="store_true", help="only the per-minute stage costs")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--json", default=None, help="also write the results here")
    # child mode
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    header = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
              "versions": _versions()}
    print(json.dumps(header))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.corpus_dir or tmp)
        if args.stage_costs:
            result = {**header, "stage_costs": stage_costs(args.minutes, folder)}
            print(json.dumps(result, indent=1))
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=1))
            return
        n_max = max([args.takes] + list(args.rss_takes))
        started = time.perf_counter()
        make_corpus(folder / "takes", n_max)
        print(f"corpus of {n_max} takes ready in {time.perf_counter() - started:.1f} s", flush=True)
        rows = []
        for run in range(args.runs):
            for engine in args.engines:
                row = measure(folder / "takes", engine, args.takes, args.workers)
                row["run"] = run
                rows.append(row)
                print(json.dumps(row), flush=True)
        rss_rows = []
        for n in args.rss_takes:
            row = measure(folder / "takes", "local", n, args.workers)
            rss_rows.append(row)
            print(json.dumps(row), flush=True)
        summary = {}
        for engine in args.engines:
            mine = [r for r in rows if r["engine"] == engine]
            summary[engine] = {"wall_s_median": statistics.median(r["wall_s"] for r in mine),
                               "wall_s_all": [round(r["wall_s"], 2) for r in mine],
                               "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in mine),
                               "peak_pss_mb_median": statistics.median(r["peak_pss_mb"] for r in mine),
                               "load_before": [round(r["load_before"], 2) for r in mine]}
            if engine == "ray":
                summary[engine]["ray_start_s_median"] = statistics.median(r["ray_start_s"] for r in mine)
        digests = {(r["tokens_digest"], r["features_digest"]) for r in rows}
        summary["identical_across_engines"] = len(digests) == 1
        if "ray" in summary and "local" in summary:
            summary["ray_over_local"] = summary["ray"]["wall_s_median"] / summary["local"]["wall_s_median"]
        result = {**header, "takes": args.takes, "audio_minutes": rows[0]["audio_s"] / 60 if rows else None,
                  "runs": rows, "summary": summary, "rss": rss_rows}
        print(json.dumps(summary, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
