"""The recording player: waveform, onset rug and spectrogram with a playhead,
in one self-contained HTML page (no streamlit, no network).

A playhead that follows the audio needs the ``<audio>`` element and the chart
in one browser context, so the dashboard embeds this page in an iframe
(``streamlit.components.v1.html``). The page carries

* plotly.js from the installed plotly package (:func:`plotly.offline.get_plotlyjs`),
  inline: nothing is fetched from a network;
* the figure of :func:`chandra.figures.stages.waveform_spectrogram_figure`
  (a min/max envelope, a bounded onset rug, a time-decimated spectrogram);
* finer detail for zooming (:func:`recording_detail`): a min/max envelope of
  up to :data:`FINE_COLUMNS` columns quantised to 8 bits, the spectrogram at
  up to :data:`FINE_FRAMES` columns quantised to 8 bits, and every onset
  (start, end, id, token) as packed arrays. When the view is zoomed, the
  script redraws the envelope, spectrogram and rug of the visible window
  from this detail with the same rules as the Python builders (min/max per
  column, mean power per column, :func:`~chandra.figures.stages.thin_indices`),
  so no more than ``n_columns`` columns and ``max_markers`` onset ticks are
  ever drawn;
* the analysis signal as compressed audio (:func:`encode_audio`: OGG Vorbis,
  16-bit WAV where libsndfile lacks Vorbis) in a ``data:`` URI, capped at
  :data:`PLAYER_MAX_SECONDS` (long recordings are played a window at a time)
  and resampled to 16 kHz beyond ten minutes to keep the page small.

In the page, clicking the waveform, the rug or the spectrogram plays from
there (a rug tick plays from its onset); the playhead follows playback on
``timeupdate`` and animation frames, and the zoomed view pages along with
it; the space bar plays and pauses.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chandra.figures.palette import PALETTE
from chandra.figures.stages import (
    MAX_MARKERS,
    RUG_COLOUR,
    RUG_DIM_COLOUR,
    envelope,
    segment_ends,
    waveform_spectrogram_figure,
)

__all__ = [
    "FINE_COLUMNS",
    "FINE_FRAMES",
    "PLAYER_MAX_SECONDS",
    "FULL_RATE_SECONDS",
    "WAV_MAX_SECONDS",
    "PlayerAudio",
    "RecordingView",
    "encode_audio",
    "recording_detail",
    "player_html",
    "recording_view",
]

#: Columns of the fine envelope sent for zooming (8-bit min/max pairs).
FINE_COLUMNS = 65_536
#: Spectrogram columns sent for zooming (8-bit dB).
FINE_FRAMES = 6000
#: Longest stretch of audio one player page carries (seconds).
PLAYER_MAX_SECONDS = 1200.0
#: Up to this length the player keeps the analysis rate; beyond, 16 kHz.
FULL_RATE_SECONDS = 600.0
#: Longest stretch of 16-bit WAV (the fallback without Vorbis) one page carries.
WAV_MAX_SECONDS = 300.0
_LONG_RATE = 16_000
_BLOCK = 32_768  # frames per write: libsndfile 1.2 crashes on one huge Vorbis write


@dataclass(frozen=True)
class PlayerAudio:
    """Compressed audio for the browser player.

    Attributes
    ----------
    data : bytes
        The encoded file.
    mime : str
        ``audio/ogg`` or ``audio/wav``.
    sample_rate : int
        Rate of the encoded audio (Hz).
    start, end : float
        The stretch of the recording it holds (seconds).
    note : str or None
        What was left out or resampled, in one sentence (None when the whole
        recording is there at its own rate).
    """

    data: bytes
    mime: str
    sample_rate: int
    start: float
    end: float
    note: str | None = None

    def data_uri(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.data).decode("ascii")


def _fmt_time(seconds: float) -> str:
    m, s = divmod(max(0.0, float(seconds)), 60.0)
    return f"{int(m)}:{s:04.1f}"


def _window(y: np.ndarray, sr: int, start: float, max_seconds: float, full_rate_seconds: float,
            rate_cap: int) -> tuple[np.ndarray, int, float, float, list[str]]:
    total = y.size / float(sr) if sr else 0.0
    a = float(min(max(0.0, start), total))
    b = float(min(total, a + max_seconds))
    clip = y[int(round(a * sr)): int(round(b * sr))]
    notes = []
    if a > 0 or b < total:
        notes.append(f"the player holds {_fmt_time(a)}–{_fmt_time(b)} of {_fmt_time(total)} "
                     f"(at most {max_seconds / 60:.0f} min per page)")
    rate = int(sr)
    target = min(rate_cap, _LONG_RATE if (b - a) > full_rate_seconds else rate_cap)
    if sr > target and clip.size:
        import soxr

        clip = soxr.resample(clip, sr, target).astype(np.float32)
        rate = target
        notes.append(f"resampled to {rate / 1000:g} kHz for the player (analysis used {sr} Hz)")
    return np.clip(clip, -1.0, 1.0), rate, a, b, notes


def encode_audio(y: np.ndarray, sr: int, *, start: float = 0.0, max_seconds: float = PLAYER_MAX_SECONDS,
                 full_rate_seconds: float = FULL_RATE_SECONDS, fmt: str = "ogg") -> PlayerAudio:
    """Encode ``y[start : start + max_seconds]`` for the player.

    Parameters
    ----------
    y : float array (n_samples,)
        Mono signal in [-1, 1].
    sr : int
        Its sample rate (Hz).
    start : float
        First second to include (clipped to the signal).
    max_seconds : float
        Longest stretch encoded.
    full_rate_seconds : float
        Stretches longer than this are resampled to 16 kHz (when ``sr`` is
        higher) and compressed harder.
    fmt : {"ogg", "wav"}
        OGG Vorbis, or 16-bit WAV. WAV is ten times larger, so it holds at
        most :data:`WAV_MAX_SECONDS` at no more than 16 kHz; it is also the
        fallback when libsndfile cannot write Vorbis.

    Returns
    -------
    PlayerAudio
    """
    import soundfile as sf

    if fmt not in ("ogg", "wav"):
        raise ValueError(f"fmt must be 'ogg' or 'wav', got {fmt!r}")
    y = np.asarray(y, dtype=np.float32).ravel()
    if fmt == "ogg":
        clip, rate, a, b, notes = _window(y, sr, start, max_seconds, full_rate_seconds, int(sr))
        long = (b - a) > full_rate_seconds
        try:
            buf = io.BytesIO()
            with sf.SoundFile(buf, "w", rate, 1, format="OGG", subtype="VORBIS",
                              compression_level=0.95 if long else 0.7) as f:
                for i in range(0, clip.size, _BLOCK):
                    f.write(clip[i: i + _BLOCK])
            return PlayerAudio(buf.getvalue(), "audio/ogg", rate, a, b, "; ".join(notes) or None)
        except (sf.LibsndfileError, ValueError, TypeError):  # no Vorbis in this libsndfile
            pass
    clip, rate, a, b, notes = _window(y, sr, start, min(max_seconds, WAV_MAX_SECONDS), full_rate_seconds,
                                      _LONG_RATE)
    buf = io.BytesIO()
    sf.write(buf, clip, rate, format="WAV", subtype="PCM_16")
    return PlayerAudio(buf.getvalue(), "audio/wav", rate, a, b, "; ".join(notes) or None)


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def recording_detail(y: np.ndarray, sr: int, *, mel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                     onsets: Sequence[float] | None = None, ends: Sequence[float] | None = None,
                     segment_ids: Sequence[int] | None = None, tokens: Sequence[int] | None = None,
                     fine_columns: int = FINE_COLUMNS, fine_frames: int = FINE_FRAMES) -> dict[str, Any]:
    """The data the player redraws a zoomed view from (JSON-ready, arrays packed as base64).

    Returns
    -------
    dict
        ``duration`` (s); ``env``: ``n`` columns, ``dt`` (s per column),
        ``scale`` (amplitude of one quantisation step), ``b64`` (int8
        pairs lo, hi); ``mel`` (or None): ``n_mels``, ``n`` columns, ``t0``,
        ``dt`` (s), ``freqs`` (Hz), ``b64`` (uint8, band-major, 0 = -80 dB,
        255 = 0 dB); ``onsets`` (or None): ``n``, ``start``/``end`` (float32
        seconds), ``id``/``token`` (int32; token -1 when unknown).
    """
    from chandra.figures.stages import pool_spectrogram

    y = np.asarray(y, dtype=np.float32).ravel()
    duration = y.size / float(sr) if sr else 0.0
    out: dict[str, Any] = {"duration": duration}
    _t, lo, hi = envelope(y, sr, n_columns=fine_columns)
    peak = float(max(np.abs(lo).max(initial=0.0), np.abs(hi).max(initial=0.0), 1e-9))
    scale = peak / 127.0
    q = np.empty(2 * lo.size, dtype=np.int8)
    q[0::2] = np.clip(np.floor(lo / scale), -127, 127)  # floor/ceil: the quantised band still covers the samples
    q[1::2] = np.clip(np.ceil(hi / scale), -127, 127)
    out["env"] = {"n": int(lo.size), "dt": duration / max(1, lo.size), "scale": scale, "b64": _b64(q)}
    out["mel"] = None
    if mel is not None and np.asarray(mel[2]).size:
        times, freqs, S_db = pool_spectrogram(mel, fine_frames)
        S = np.round((np.clip(S_db, -80.0, 0.0) + 80.0) * (255.0 / 80.0)).astype(np.uint8)
        dt = float(times[1] - times[0]) if times.size > 1 else max(duration, 1e-3)
        out["mel"] = {"n_mels": int(S.shape[0]), "n": int(S.shape[1]), "t0": float(times[0]), "dt": dt,
                      "freqs": [float(f) for f in freqs], "b64": _b64(S)}
    out["onsets"] = None
    if onsets is not None and len(onsets):
        on = np.asarray(onsets, dtype=np.float64)
        n = on.size
        ids = np.arange(n) if segment_ids is None else np.asarray(segment_ids)
        toks = np.full(n, -1) if tokens is None or len(tokens) != n else np.asarray(tokens)
        out["onsets"] = {"n": int(n), "start": _b64(on.astype(np.float32)),
                         "end": _b64(segment_ends(on, ends, duration).astype(np.float32)),
                         "id": _b64(ids.astype(np.int32)), "token": _b64(toks.astype(np.int32))}
    return out


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element (no '</script>' or '<!--' can close it)."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_CSS = """
html, body { margin: 0; padding: 0; font-family: "Source Sans Pro", "Helvetica Neue", Arial, sans-serif;
             color: #1f2430; background: #ffffff; }
#chandra-bar { display: flex; align-items: center; gap: 12px; padding: 2px 4px 4px 4px; }
#chandra-audio { height: 36px; flex: 0 0 420px; }
#chandra-status { font-size: 13px; color: #50586a; white-space: nowrap; overflow: hidden;
                  text-overflow: ellipsis; }
#chandra-wrap { position: relative; width: 100%; }
#chandra-plot { width: 100%; }
#chandra-playhead { position: absolute; display: none; width: 0; border-left: 2px solid #e4002b;
                    pointer-events: none; z-index: 5; }
"""

# The script is plain ES2017 with no imports: the page must work offline.
_JS = r"""
(function () {
  "use strict";
  const P = JSON.parse(document.getElementById("chandra-payload").textContent);
  const gd = document.getElementById("chandra-plot");
  const audio = document.getElementById("chandra-audio");
  const statusEl = document.getElementById("chandra-status");
  const wrap = document.getElementById("chandra-wrap");
  const head = document.getElementById("chandra-playhead");
  const D = P.detail || {};
  const A = P.audio;

  function bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const env = D.env ? new Int8Array(bytes(D.env.b64).buffer) : null;
  const mel = D.mel ? bytes(D.mel.b64) : null;
  const on = D.onsets ? {
    start: new Float32Array(bytes(D.onsets.start).buffer),
    end: new Float32Array(bytes(D.onsets.end).buffer),
    id: new Int32Array(bytes(D.onsets.id).buffer),
    token: new Int32Array(bytes(D.onsets.token).buffer),
  } : null;

  const idx = {};
  P.figure.data.forEach(function (t, i) { if (typeof t.meta === "string") idx[t.meta] = i; });
  const duration = D.duration || (A.end || 0);
  let view = [0, duration];
  let drawn = { onsets: 0, inView: 0 };
  if (on) { drawn.onsets = Math.min(on.start.length, P.max_markers); drawn.inView = on.start.length; }

  function fmt(t) {
    t = Math.max(0, t);
    const m = Math.floor(t / 60), s = t - 60 * m;
    return m + ":" + (s < 10 ? "0" : "") + s.toFixed(1);
  }

  function lowerBound(arr, x) {
    let lo = 0, hi = arr.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (arr[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
  }

  // Even thinning, as chandra.figures.stages.thin_indices does it.
  function thin(i0, i1, maxN) {
    const n = i1 - i0, out = [];
    if (n <= 0 || maxN <= 0) return out;
    if (n <= maxN) { for (let i = i0; i < i1; i++) out.push(i); return out; }
    let last = -1;
    for (let k = 0; k < maxN; k++) {
      const i = i0 + Math.round(k * (n - 1) / (maxN - 1 || 1));
      if (i !== last) { out.push(i); last = i; }
    }
    return out;
  }

  function envelopeView(a, b) {
    const n = D.env.n, dt = D.env.dt, sc = D.env.scale;
    let c0 = Math.max(0, Math.floor(a / dt)), c1 = Math.min(n, Math.ceil(b / dt));
    if (c1 <= c0) { c0 = Math.max(0, Math.min(c0, n - 1)); c1 = c0 + 1; }
    const span = c1 - c0, group = Math.max(1, Math.ceil(span / P.n_columns));
    const ts = [], los = [], his = [];
    for (let g = c0; g < c1; g += group) {
      const e = Math.min(c1, g + group);
      let lo = 127, hi = -127;
      for (let c = g; c < e; c++) { if (env[2 * c] < lo) lo = env[2 * c]; if (env[2 * c + 1] > hi) hi = env[2 * c + 1]; }
      ts.push((g + e) / 2 * dt); los.push(lo * sc); his.push(hi * sc);
    }
    const x = ts.concat(ts.slice().reverse()), y = his.concat(los.slice().reverse());
    return { x: x, y: y };
  }

  function melView(a, b) {
    const M = D.mel, n = M.n, nm = M.n_mels;
    let c0 = Math.max(0, Math.floor((a - M.t0) / M.dt)), c1 = Math.min(n, Math.ceil((b - M.t0) / M.dt) + 1);
    if (c1 <= c0) { c0 = Math.max(0, Math.min(c0, n - 1)); c1 = c0 + 1; }
    const group = Math.max(1, Math.ceil((c1 - c0) / P.max_frames));
    const xs = [], z = [];
    for (let r = 0; r < nm; r++) z.push([]);
    for (let g = c0; g < c1; g += group) {
      const e = Math.min(c1, g + group);
      xs.push(M.t0 + M.dt * (g + e - 1) / 2);
      for (let r = 0; r < nm; r++) {
        let p = 0;
        for (let c = g; c < e; c++) p += Math.pow(10, (mel[r * n + c] * 80 / 255 - 80) / 10);
        z[r].push(Math.max(-80, 10 * Math.log10(p / (e - g))));
      }
    }
    return { x: xs, z: z };
  }

  // As chandra.figures.stages.rug_colours.
  function colourOf(tok) {
    if (tok < 0) return P.rug_colour;
    if (P.highlight === null) return P.palette[tok % P.palette.length];
    return tok === P.highlight ? P.palette[tok % P.palette.length] : P.rug_dim_colour;
  }

  function rugView(a, b) {
    const i0 = lowerBound(on.start, a), i1 = lowerBound(on.start, b);
    const pick = thin(i0, i1, P.max_markers);
    const x = [], y = [], color = [], cd = [];
    for (const i of pick) {
      const tok = on.token[i];
      x.push(on.start[i]); y.push(0); color.push(colourOf(tok)); cd.push([on.id[i], tok]);
    }
    drawn = { onsets: pick.length, inView: i1 - i0 };
    return { x: x, y: y, color: color, customdata: cd };
  }

  function highlightView(a, b, amp) {
    // Segments follow one another, so the one covering a starts at most one onset earlier.
    const i0 = Math.max(0, lowerBound(on.start, a) - 1), i1 = lowerBound(on.start, b);
    const mine = [];
    for (let i = i0; i < i1; i++) if (on.token[i] === P.highlight && on.end[i] >= a) mine.push(i);
    const x = [], y = [];
    for (const k of thin(0, mine.length, P.max_markers)) {
      const i = mine[k], s = on.start[i], e = on.end[i];
      x.push(s, e, e, s, s, null); y.push(-amp, -amp, amp, amp, -amp, null);
    }
    return { x: x, y: y };
  }

  function currentRange() {
    const ax = gd.layout && gd.layout[P.xaxis];
    if (!ax || ax.autorange || !ax.range) return [0, duration];
    return [Number(ax.range[0]), Number(ax.range[1])];
  }

  function redraw() {
    const r = view;
    const width = r[1] - r[0];
    // Draw a little beyond the view so a short pan does not show a gap.
    const a = Math.max(0, r[0] - 0.25 * width), b = Math.min(duration, r[1] + 0.25 * width);
    const updates = [];
    if (env && idx.wave !== undefined) {
      const v = envelopeView(a, b);
      updates.push([{ x: [v.x], y: [v.y] }, [idx.wave]]);
    }
    if (mel && idx.mel_detail !== undefined) {
      if (width >= duration - 1e-6) {
        updates.push([{ x: [[]], z: [[]] }, [idx.mel_detail]]);
      } else {
        const v = melView(a, b);
        updates.push([{ x: [v.x], z: [v.z] }, [idx.mel_detail]]);
      }
    }
    if (on && idx.onsets !== undefined) {
      const v = rugView(r[0], r[1]);
      updates.push([{ x: [v.x], y: [v.y], "marker.color": [v.color], customdata: [v.customdata] },
                    [idx.onsets]]);
    }
    if (on && idx.highlight !== undefined && P.highlight !== null) {
      const v = highlightView(a, b, P.amp);
      updates.push([{ x: [v.x], y: [v.y] }, [idx.highlight]]);
    }
    let chain = Promise.resolve();
    updates.forEach(function (u) { chain = chain.then(function () { return Plotly.restyle(gd, u[0], u[1]); }); });
    return chain.then(function () { showStatus(); });
  }

  // One redraw at a time; a range change during a redraw is drawn after it.
  let busy = false, pending = false;
  function requestRedraw() {
    view = currentRange();
    placeHead();
    if (busy) { pending = true; return; }
    busy = true;
    redraw().catch(function () {}).then(function () {
      busy = false;
      if (pending) { pending = false; requestRedraw(); }
    });
  }

  function playable() { return A.end - A.start; }

  function now() { return A.start + (audio.currentTime || 0); }

  function showStatus(extra) {
    const r = view;
    let s = (audio.paused ? "\u25A0 " : "\u25B6 ") + fmt(now()) + " / " + fmt(duration);
    s += " \u00B7 view " + fmt(r[0]) + "\u2013" + fmt(r[1]);
    if (on) {
      s += " \u00B7 " + drawn.inView + " onsets in view" +
           (drawn.onsets < drawn.inView ? " (" + drawn.onsets + " drawn, zoom in for all)" : "");
    }
    if (extra) s += " \u00B7 " + extra;
    statusEl.textContent = s;
    gd.setAttribute("data-onsets-drawn", String(drawn.onsets));
    gd.setAttribute("data-onsets-in-view", String(drawn.inView));
  }

  // The playhead is a positioned element over the plot, not a plotly shape:
  // moving a shape re-lays out the whole figure (hundreds of ms without a GPU).
  let geom = null;
  function measure() {
    const top = gd.querySelector(".draglayer .xy .nsewdrag");
    const bottom = gd.querySelector(".draglayer ." + P.subplot + " .nsewdrag");
    if (!top || !bottom) { geom = null; return; }
    const w = wrap.getBoundingClientRect(), a = top.getBoundingClientRect(), b = bottom.getBoundingClientRect();
    geom = { left: a.left - w.left, width: a.width, top: a.top - w.top, height: b.bottom - a.top };
  }
  function placeHead() {
    if (!geom) measure();
    const t = now(), r = view, f = (t - r[0]) / ((r[1] - r[0]) || 1);
    gd.setAttribute("data-playhead", t.toFixed(3));
    if (!geom || f < 0 || f > 1) { head.style.display = "none"; return; }
    head.style.display = "block";
    head.style.left = (geom.left + f * geom.width - 1) + "px";
    head.style.top = geom.top + "px";
    head.style.height = geom.height + "px";
  }

  let lastHead = -1, paging = false;
  function movePlayhead(force) {
    const t = now();
    if (!force && Math.abs(t - lastHead) < 1e-3) return;
    lastHead = t;
    const r = currentRange(), w = r[1] - r[0];
    const zoomed = w < duration - 1e-6;
    if (zoomed && !audio.paused && !paging && (t > r[1] || t < r[0])) {  // page along with playback
      const a = Math.max(0, Math.min(t - 0.02 * w, duration - w));
      const upd = {};
      upd[P.xaxis + ".range"] = [a, a + w];
      paging = true;
      Plotly.relayout(gd, upd).then(function () { paging = false; }, function () { paging = false; });
    }
    placeHead();
    showStatus();
  }

  function seek(t, play) {
    let rel = t - A.start, note = null;
    if (rel < 0 || rel > playable()) {
      note = "outside the audio in this player (" + fmt(A.start) + "\u2013" + fmt(A.end) + ")";
      rel = Math.min(Math.max(rel, 0), playable());
    }
    audio.currentTime = rel;
    if (play) { const p = audio.play(); if (p && p.catch) p.catch(function () {}); }
    movePlayhead(true);
    if (note) showStatus(note);
  }

  const config = { responsive: true, displaylogo: false, scrollZoom: false, doubleClick: "reset",
                   modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"] };
  Plotly.newPlot(gd, P.figure.data, P.figure.layout, config).then(function () {
    // A click plays from where it lands; a double click (plotly fires a
    // click, the double click, then another click) only resets the zoom.
    let clickTimer = null, lastDouble = -1e9;
    gd.on("plotly_click", function (ev) {
      const p = ev && ev.points && ev.points[0];
      if (!p || p.x === undefined || p.x === null) return;
      if (performance.now() - lastDouble < 400) return;
      const t = Number(p.x);
      window.clearTimeout(clickTimer);
      clickTimer = window.setTimeout(function () { clickTimer = null; seek(t, true); }, 250);
    });
    gd.on("plotly_doubleclick", function () {
      window.clearTimeout(clickTimer);
      clickTimer = null;
      lastDouble = performance.now();
    });
    gd.on("plotly_relayout", function (ev) {
      if (ev && Object.keys(ev).some(function (k) { return k.indexOf("axis") >= 0; })) requestRedraw();
    });
    gd.on("plotly_afterplot", function () { measure(); placeHead(); });
    window.addEventListener("resize", function () { geom = null; placeHead(); });
    audio.addEventListener("timeupdate", function () { movePlayhead(false); });
    audio.addEventListener("seeked", function () { movePlayhead(true); });
    audio.addEventListener("pause", function () { showStatus(); });
    let lastFrame = 0;
    function tick(ts) {
      if (!audio.paused && ts - lastFrame > 50) { lastFrame = ts; movePlayhead(false); }
      window.requestAnimationFrame(tick);
    }
    window.requestAnimationFrame(tick);
    document.addEventListener("keydown", function (e) {
      if (e.code === "Space" && e.target === document.body) {
        e.preventDefault();
        if (audio.paused) { const p = audio.play(); if (p && p.catch) p.catch(function () {}); } else audio.pause();
      }
    });
    measure();
    placeHead();
    showStatus(P.note || null);
    gd.setAttribute("data-ready", "1");
  });
})();
"""


def player_html(figure: Any, *, audio: PlayerAudio, detail: dict | None = None, n_columns: int = 2000,
                max_frames: int = 800, max_markers: int = MAX_MARKERS, highlight_token: int | None = None,
                note: str | None = None) -> str:
    """A self-contained HTML page: ``figure`` with a playhead, an ``<audio>``
    element and the script that ties them (see the module docstring).

    Parameters
    ----------
    figure : plotly Figure
        From :func:`~chandra.figures.stages.waveform_spectrogram_figure`
        (three rows; the playhead spans the first to the third).
    audio : PlayerAudio
    detail : dict, optional
        :func:`recording_detail`; without it zooming magnifies the overview.
    n_columns, max_frames, max_markers : int
        Bounds of every redraw: envelope columns, spectrogram columns, rug ticks.
    highlight_token : int, optional
        The token whose segments the figure highlights.
    note : str, optional
        Shown in the status line.

    Returns
    -------
    str
        The page; plotly.js is inline and no URL outside the page is referenced.
    """
    from plotly.offline import get_plotlyjs

    layout = figure.to_plotly_json().get("layout", {})
    xaxis = "xaxis3" if "xaxis3" in layout else "xaxis"
    amp = 1.0
    yr = (layout.get("yaxis") or {}).get("range")
    if yr:
        amp = float(yr[1]) / 1.05
    payload = {
        "figure": json.loads(figure.to_json()),  # plotly's own encoder (numpy arrays, NaN gaps)
        "detail": detail,
        "audio": {"start": audio.start, "end": audio.end, "sample_rate": audio.sample_rate, "mime": audio.mime},
        "n_columns": int(n_columns), "max_frames": int(max_frames), "max_markers": int(max_markers),
        "highlight": None if highlight_token is None else int(highlight_token),
        "palette": list(PALETTE), "rug_colour": RUG_COLOUR, "rug_dim_colour": RUG_DIM_COLOUR, "xaxis": xaxis,
        "subplot": "x3y3" if xaxis == "xaxis3" else "xy", "amp": amp, "note": note or audio.note,
    }
    height = int(layout.get("height") or 560)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<style>{_CSS}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>"
        "</head><body>"
        "<div id=\"chandra-bar\">"
        f"<audio id=\"chandra-audio\" controls preload=\"auto\" src=\"{audio.data_uri()}\"></audio>"
        "<span id=\"chandra-status\"></span></div>"
        f"<div id=\"chandra-wrap\"><div id=\"chandra-plot\" style=\"height:{height}px\"></div>"
        "<div id=\"chandra-playhead\"></div></div>"
        f"<script type=\"application/json\" id=\"chandra-payload\">{_script_json(payload)}</script>"
        f"<script type=\"text/javascript\">{_JS}</script>"
        "</body></html>"
    )


@dataclass(frozen=True)
class RecordingView:
    """What :func:`recording_view` built.

    Attributes
    ----------
    html : str
        The player page.
    height : int
        Pixels the page needs (figure plus the audio bar).
    figure : plotly Figure
        The overview figure inside it.
    audio : PlayerAudio
    onsets_total, onsets_drawn : int
        Onsets in the recording and ticks drawn in the overview.
    payload_bytes : dict
        Bytes of the page by part: ``plotly_js``, ``audio``, ``figure``, ``detail``, ``total``.
    """

    html: str
    height: int
    figure: Any
    audio: PlayerAudio
    onsets_total: int
    onsets_drawn: int
    payload_bytes: dict


def recording_view(y: np.ndarray, sr: int, *, onsets: Sequence[float] | None = None,
                   ends: Sequence[float] | None = None, segment_ids: Sequence[int] | None = None,
                   tokens: Sequence[int] | None = None, highlight_token: int | None = None,
                   mel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, n_columns: int = 2000,
                   max_frames: int = 800, max_markers: int = MAX_MARKERS, audio_start: float = 0.0,
                   max_audio_seconds: float = PLAYER_MAX_SECONDS, height: int = 560,
                   fine_columns: int = FINE_COLUMNS, fine_frames: int = FINE_FRAMES,
                   audio: PlayerAudio | None = None, detail: dict | None = None) -> RecordingView:
    """The whole player for a recording: figure, zoom detail, audio and page.

    ``mel`` should be a fine :func:`~chandra.figures.stages.log_mel` (e.g.
    ``max_frames=FINE_FRAMES``); the overview pools it to ``max_frames``.
    See :func:`~chandra.figures.stages.waveform_spectrogram_figure` for the
    other parameters and :func:`encode_audio` for ``audio_start`` and
    ``max_audio_seconds``. ``audio`` (:func:`encode_audio`) and ``detail``
    (:func:`recording_detail`) may be passed in when already made: neither
    depends on the highlighted token or the drawing bounds, so a page can
    keep them while those change.
    """
    from plotly.offline import get_plotlyjs

    from chandra.figures.stages import log_mel

    if mel is None:
        mel = log_mel(y, sr, max_frames=fine_frames)
    fig = waveform_spectrogram_figure(y, sr, onsets=onsets, ends=ends, segment_ids=segment_ids, tokens=tokens,
                                      highlight_token=highlight_token, n_columns=n_columns, max_frames=max_frames,
                                      mel=mel, max_markers=max_markers, height=height)
    if detail is None:
        detail = recording_detail(y, sr, mel=mel, onsets=onsets, ends=ends, segment_ids=segment_ids,
                                  tokens=tokens, fine_columns=fine_columns, fine_frames=fine_frames)
    if audio is None:
        audio = encode_audio(y, sr, start=audio_start, max_seconds=max_audio_seconds)
    html = player_html(fig, audio=audio, detail=detail, n_columns=n_columns, max_frames=max_frames,
                       max_markers=max_markers, highlight_token=highlight_token)
    rug = [t for t in fig.data if getattr(t, "meta", None) == "onsets"]
    drawn = len(rug[0].x) if rug else 0
    sizes = {"plotly_js": len(get_plotlyjs()), "audio": math.ceil(len(audio.data) / 3) * 4,
             "figure": len(fig.to_json()), "detail": len(json.dumps(detail)), "total": len(html)}
    return RecordingView(html=html, height=height + 48, figure=fig, audio=audio,
                         onsets_total=0 if onsets is None else len(onsets), onsets_drawn=drawn,
                         payload_bytes=sizes)
