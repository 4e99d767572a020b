"""Size and build time of the recording player (Audio and segments page).

Run: ``.venv/bin/python benchmarks/bench_player.py [--minutes 5 60] [--runs 3]``

For each length, real music is arranged from the bundled pieces
(``scripts/long_track.py``) and segmented with chandra's segmenter (the
onsets the page draws; token ids are random, they only colour the rug).
Then, as the page does on its first visit, it times the fine log-mel
spectrogram, the zoom detail, the audio encoding and the page itself
(:func:`chandra.figures.player.recording_view` given the other three, which
is also what a change of highlight or drawing bounds costs), and prints the
page's size by part and the onset ticks drawn. Times are medians of
``--runs``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))

from chandra.figures.player import FINE_FRAMES, encode_audio, recording_detail, recording_view  # noqa: E402
from chandra.figures.stages import log_mel  # noqa: E402
from chandra.segment import segment_audio  # noqa: E402
from scripts.long_track import SR, build_track  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 60.0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for minutes in args.minutes:
        y = build_track(minutes, seed=0)
        segs = segment_audio(y, SR)
        tokens = np.random.default_rng(0).integers(0, 64, len(segs))
        arrays = {"onsets": segs.start, "ends": segs.end, "segment_ids": segs.id, "tokens": tokens}
        times: dict[str, list[float]] = {"mel": [], "detail": [], "audio": [], "page": []}
        view = None
        for _ in range(args.runs):
            mel, t = timed(lambda: log_mel(y, SR, max_frames=FINE_FRAMES))
            times["mel"].append(t)
            detail, t = timed(lambda: recording_detail(y, SR, mel=mel, **arrays))
            times["detail"].append(t)
            audio, t = timed(lambda: encode_audio(y, SR))
            times["audio"].append(t)
            view, t = timed(lambda: recording_view(y, SR, mel=mel, audio=audio, detail=detail,
                                                   highlight_token=5, **arrays))
            times["page"].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        mb = {k: v / 1e6 for k, v in view.payload_bytes.items()}
        print(f"{minutes:g} min, {len(segs)} segments: log-mel {med['mel']:.2f} s, detail {med['detail']:.2f} s, "
              f"audio {med['audio']:.2f} s, page {med['page']:.2f} s; page {mb['total']:.2f} MB "
              f"(plotly.js {mb['plotly_js']:.2f}, audio {mb['audio']:.2f}, figure {mb['figure']:.2f}, "
              f"detail {mb['detail']:.2f}); onset ticks drawn {view.onsets_drawn} of {view.onsets_total}; "
              f"audio {view.audio.sample_rate} Hz, {view.audio.start:.0f}-{view.audio.end:.0f} s"
              + (f" ({view.audio.note})" if view.audio.note else ""), flush=True)


if __name__ == "__main__":
    main()
