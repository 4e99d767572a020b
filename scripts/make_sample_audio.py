"""Rebuild the files in ``sample_audio/`` from redistributable Debian sources.

* ``bach_prelude_c.flac``: the opening bars of J. S. Bach's Prelude in C major,
  BWV 846 (public-domain composition), written here as a Standard MIDI File and
  rendered with Debian's ``fluidsynth`` and the FluidR3 GM soundfont
  (``fluid-soundfont-gm``, MIT licence).
* ``tabla_safari_loops.flac``: CC0 loops from Debian's ``sonic-pi-samples``
  (``loop_tabla`` twice, then ``loop_safari``), mixed to mono.

Usage: ``python scripts/make_sample_audio.py [OUTDIR]`` (needs the packages
``fluidsynth fluid-soundfont-gm sonic-pi-samples``).
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SONIC_PI = Path("/usr/share/sonic-pi/samples")

NOTE = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6,
        "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}

# Each bar of the prelude arpeggiates five notes: 1 2 3 4 5 3 4 5, played twice.
BARS = [
    "C4 E4 G4 C5 E5", "C4 D4 A4 D5 F5", "B3 D4 G4 D5 F5", "C4 E4 G4 C5 E5",
    "C4 E4 A4 E5 A5", "C4 D4 F#4 A4 D5", "B3 D4 G4 D5 G5", "B3 C4 E4 G4 C5",
    "A3 C4 E4 G4 C5", "D3 A3 D4 F#4 C5", "G3 B3 D4 G4 B4",
]


def midi_number(name: str) -> int:
    pitch, octave = name[:-1], int(name[-1])
    return 12 * (octave + 1) + NOTE[pitch]


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def prelude_midi(*, bpm: float = 76.0, ticks: int = 480) -> bytes:
    """A type-0 Standard MIDI File of the prelude's opening bars (piano)."""
    sixteenth = ticks // 4
    events: list[tuple[int, bytes]] = []
    time = 0
    for bar in BARS:
        notes = [midi_number(n) for n in bar.split()]
        for _half in range(2):
            # The two lowest notes are held through the half bar, as in the score.
            events.append((time, bytes([0x90, notes[0], 70])))
            events.append((time + 8 * sixteenth - 1, bytes([0x80, notes[0], 0])))
            events.append((time + sixteenth, bytes([0x90, notes[1], 64])))
            events.append((time + 8 * sixteenth - 1, bytes([0x80, notes[1], 0])))
            for k, idx in enumerate([2, 3, 4, 2, 3, 4]):
                start = time + (k + 2) * sixteenth
                events.append((start, bytes([0x90, notes[idx], 60])))
                events.append((start + sixteenth - 1, bytes([0x80, notes[idx], 0])))
            time += 8 * sixteenth
    events.sort(key=lambda e: (e[0], e[1][0] == 0x90))
    tempo = int(60_000_000 / bpm)
    track = b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big") + b"\x00\xc0\x00"
    last = 0
    for t, msg in events:
        track += _varlen(t - last) + msg
        last = t
    track += _varlen(ticks * 2) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def render_prelude(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mid = Path(tmp) / "prelude.mid"
        wav = Path(tmp) / "prelude.wav"
        mid.write_bytes(prelude_midi())
        subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(SR), "-F", str(wav),
                        SOUNDFONT, str(mid)], check=True, capture_output=True)
        y, sr = sf.read(wav, dtype="float32", always_2d=True)
    write_mono(out, y.mean(axis=1), sr)


def render_loops(out: Path) -> None:
    parts = []
    for name in ["loop_tabla", "loop_tabla", "loop_safari"]:
        y, sr = sf.read(SONIC_PI / f"{name}.flac", dtype="float32", always_2d=True)
        if sr != SR:
            import librosa

            y = librosa.resample(y.T, orig_sr=sr, target_sr=SR).T
        parts.append(y.mean(axis=1))
    write_mono(out, np.concatenate(parts), SR)


def write_mono(out: Path, y: np.ndarray, sr: int) -> None:
    peak = float(np.max(np.abs(y))) or 1.0
    y = (0.9 * y / peak).astype(np.float32)
    sf.write(out, y, sr, format="FLAC", subtype="PCM_16")
    print(f"{out}: {len(y) / sr:.1f} s, {out.stat().st_size / 1e6:.2f} MB")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    outdir = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "sample_audio"
    outdir.mkdir(parents=True, exist_ok=True)
    render_prelude(outdir / "bach_prelude_c.flac")
    render_loops(outdir / "tabla_safari_loops.flac")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
