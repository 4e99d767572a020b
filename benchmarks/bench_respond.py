"""Latency of answering a played phrase: from the recorded phrase to the answer's WAV.

Run: ``.venv/bin/python benchmarks/bench_respond.py [--minutes 34] [--repeats 15] [--keep DIR]``

Goal (issue 12): after the phrase is recorded, the answer is ready within
0.5 s for a 10,000-frame dsp model on the 2-core machine, the model's
encoder already loaded.

Models. *dsp*: :func:`scripts.long_track.build_track` (the bundled Bach
prelude and tabla loops arranged into ``--minutes`` of music, seed 0)
trained with the default pipeline (dsp, K = 64, factor oracle); 34 minutes
give about 10,000 frames. *wav2vec2*: a full-size ``Wav2Vec2Config()``
(wav2vec2-base geometry, 12 layers, 768-D, ~94M parameters) with random
weights, saved with ``save_pretrained`` to a temporary folder and loaded
through the real loading code (as ``bench_encoders.py`` does), trained on
``--w2v-minutes`` of the same music (its encoding of 34 minutes would take
most of the benchmark's time without changing what is measured per phrase).

Per model the listener is built once (encoder loaded, vocabulary rebuilt:
timed separately as "listener"), then for each phrase length (``--phrases``,
seconds, cut from the training track at 40 % of its length and written as a
44.1 kHz WAV, as a browser recording arrives) and each mode it times
:func:`chandra.respond.respond_to_wav` with a ``--answer``-second answer,
``--repeats`` times, and prints the median and the slowest of the end-to-end
time and the median of each part (decode + hear, match, improvise,
resynthesise, write). ``--keep DIR`` keeps the trained models there and
reuses them on the next run.

``--robustness`` instead measures how a phrase cut from a bundled sample is
heard after a gain or a low-pass (:func:`robustness`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402


def _track(minutes: float, folder: Path) -> Path:
    import soundfile as sf

    from scripts.long_track import SR, build_track

    path = folder / f"long_track_{minutes:g}min.wav"
    if not path.exists():
        sf.write(str(path), build_track(minutes, seed=0), SR, subtype="PCM_16")
    return path


def _trained(name: str, audio: Path, config, folder: Path):
    from chandra.model import load_model
    from chandra.pipeline import train

    path = folder / f"{name}.chandra"
    if not path.exists():
        t0 = time.perf_counter()
        train(audio, config, output=path)
        print(f"trained {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    return load_model(path), path


def _full_size_wav2vec2(folder: Path) -> Path:
    target = folder / "wav2vec2_base_random"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(target)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(target)
    return target


def _phrase_file(model, seconds: float, folder: Path) -> Path:
    """``seconds`` of the model's source from 40 % of its length, as a 44.1 kHz WAV (a browser recording)."""
    import soundfile as sf

    from chandra.encoders import resample

    sr = int(model.sample_rate)
    a = int(0.4 * len(model.audio))
    y = np.asarray(model.audio[a:a + int(seconds * sr)], dtype=np.float32)
    path = folder / f"phrase_{seconds:g}s.wav"
    sf.write(str(path), resample(y, sr, 44100), 44100, subtype="PCM_16")
    return path


def _bench(name: str, model, args, folder: Path) -> list[dict]:
    from chandra.respond import MODES, get_listener, respond_to_wav

    phrases = [_phrase_file(model, s, folder) for s in args.phrases]
    out = folder / "answer.wav"

    t0 = time.perf_counter()
    listener = get_listener(model)
    built = time.perf_counter() - t0
    print(f"\n{name}: {model.n_frames} frames, dim {model.feature_dim}, listener built in {built:.2f} s")
    rows = []
    for phrase in phrases:
        for mode in MODES:
            respond_to_wav(model, phrase, out, mode=mode, seconds=args.answer, listener=listener)  # warm caches
            totals, parts = [], {}
            for r in range(args.repeats if name == "dsp" else args.w2v_repeats):
                t0 = time.perf_counter()
                response = respond_to_wav(model, phrase, out, mode=mode, seconds=args.answer, seed=r,
                                          listener=listener)
                totals.append(time.perf_counter() - t0)
                for key, value in response.timings.items():
                    parts.setdefault(key, []).append(value)
            row = {"model": name, "frames": model.n_frames, "phrase_s": float(phrase.stem.split("_")[1][:-1]),
                   "segments": len(response.phrase), "mode": mode, "median_s": statistics.median(totals),
                   "max_s": max(totals), **{f"{k}_s": statistics.median(v) for k, v in parts.items() if k != "listener"},
                   "context": response.match.context}
            rows.append(row)
            print(f"  phrase {row['phrase_s']:>4g} s ({row['segments']:>2} segments) {mode:<9} median "
                  f"{row['median_s']:.3f} s, max {row['max_s']:.3f} s | hear {row['hear_s']:.3f}  match "
                  f"{row['match_s']:.3f}  improvise {row['improvise_s']:.3f}  resynth "
                  f"{row['resynthesise_s']:.3f}  write {row['write_s']:.3f} | context {row['context']}",
                  flush=True)
    return rows


def robustness() -> list[dict]:
    """How a phrase cut from the training audio is heard after a gain or a low-pass.

    Each bundled sample trained with dsp, K = 32 (at 22050 Hz, and the Bach
    prelude also at 16000 Hz); the phrase is events 60-72; it is played
    back louder or softer, or through an 8th-order Butterworth low-pass (what
    a resampler's anti-alias filter or a browser's capture chain does near
    the top of the band). Prints the share of segments heard often, whether
    the phrase's ending was found at its own frame, and the context.
    """
    from scipy.signal import butter, sosfiltfilt

    from chandra.audio import load_audio
    from chandra.pipeline import TrainConfig, train
    from chandra.respond import get_listener, match_phrase

    rows = []
    for name, rate in (("bach_prelude_c.flac", 22050), ("tabla_safari_loops.flac", 22050),
                       ("bach_prelude_c.flac", 16000)):
        path = REPO / "sample_audio" / name
        model = train(path, TrainConfig(n_tokens=32, sample_rate=rate)).model
        listener = get_listener(model)
        y, sr = load_audio(path, sr=44100)
        ev = model.events
        phrase = y[int(ev[60]["t"] * sr): int((ev[72]["t"] + ev[72]["duration"]) * sr)]
        print(f"\n{name} at {rate} Hz ({model.n_frames} frames): phrase = events 60-72")
        for label, signal in [("as cut", phrase), ("-12 dB", phrase * 0.25), ("+6 dB", phrase * 2.0)] + [
                (f"low-pass {fc / 1000:g} kHz", sosfiltfilt(butter(8, fc, fs=sr, output="sos"), phrase))
                for fc in (10500, 9000, 7000)]:
            heard = listener.hear(np.asarray(signal, dtype=np.float32), sr)
            match = match_phrase(listener, heard)
            row = {"audio": name, "rate": rate, "case": label, "often": heard.coverage_summary()["often"],
                   "found": match.end_frame == 72, "context": match.context, "segments": len(heard)}
            rows.append(row)
            print(f"  {label:<18} heard often {row['often']:.0%}, ending found at its own frame: "
                  f"{'yes' if row['found'] else 'no'}, context {row['context']} of {row['segments']}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=34.0, help="dsp model's track (34 min: ~10,000 frames)")
    parser.add_argument("--w2v-minutes", type=float, default=5.0, help="wav2vec2 model's track")
    parser.add_argument("--phrases", type=float, nargs="+", default=[5.0, 10.0], help="phrase lengths (s)")
    parser.add_argument("--answer", type=float, default=10.0, help="answer length (s)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--w2v-repeats", type=int, default=5, help="repeats for the wav2vec2 model (seconds each)")
    parser.add_argument("--skip-wav2vec2", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="keep (and reuse) the trained models here")
    parser.add_argument("--json", action="store_true", help="print every row as JSON at the end")
    parser.add_argument("--robustness", action="store_true",
                        help="only: how a phrase is heard after a gain or a low-pass (bundled samples)")
    args = parser.parse_args(argv)
    if args.robustness:
        rows = robustness()
        if args.json:
            print(json.dumps(rows, indent=1))
        return 0

    import torch

    from chandra.pipeline import TrainConfig

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; torch threads {torch.get_num_threads()}; "
          f"python {platform.python_version()}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        track = _track(args.minutes, folder)
        model, _ = _trained(f"dsp_{args.minutes:g}min", track, TrainConfig(), folder)
        rows += _bench("dsp", model, args, Path(tmp))
        if not args.skip_wav2vec2:
            w2v = _full_size_wav2vec2(folder)
            track = _track(args.w2v_minutes, folder)
            model, _ = _trained(f"w2v_{args.w2v_minutes:g}min", track,
                                TrainConfig(encoder="wav2vec2", model=str(w2v)), folder)
            rows += _bench("wav2vec2 (full size, random)", model, args, Path(tmp))
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if args.json:
            print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
