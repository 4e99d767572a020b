"""Outputs (issue 9): never replace an input or a foreign file, the user's umask, clean signals,
stale temporary files, one writer per output, one write per save, truncated audio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chandra import io_utils
from chandra.cli import main
from chandra.errors import OutputError
from chandra.generate import write_wav
from chandra.io_utils import (
    TEMP_SUFFIX,
    atomic_write,
    check_output,
    dump_json_atomic,
    exclusive_output,
    remove_stale_temp_files,
    sha256_file,
)
from chandra.model import load_model, save_model
from chandra.musichal import export_musichal
from helpers_audio import SR, melody, write
from helpers_hostile import REPO
from test_hostile_input import small_model


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # NUMBA_CACHE_DIR: the one chandra set on import (tests/conftest.py)
    return subprocess.run([sys.executable, "-m", "chandra.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=timeout)


def only_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("clip") / "clip.wav", melody(12))


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_every_writer_applies_the_umask(tmp_path, umask, mask):
    umask(mask)
    expected = 0o666 & ~mask
    with atomic_write(tmp_path / "a.bin") as fh:
        fh.write(b"x")
    dump_json_atomic({"a": 1}, tmp_path / "b.json")
    model = small_model()
    save_model(model, tmp_path / "m.chandra")
    export_musichal(model, tmp_path / "m.json")
    write_wav(tmp_path / "g.wav", np.zeros(100, dtype=np.float32), SR)
    for name in ("a.bin", "b.json", "m.chandra", "m.json", "g.wav"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


# --------------------------------------------------------------------------- temporary files


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "out.chandra"
    host = io_utils._HOST
    dead = tmp_path / f".out.chandra.{host}.{dead_pid()}.0badc0de{TEMP_SUFFIX}"
    alive = tmp_path / f".out.chandra.{host}.{os.getpid()}.0badc0de{TEMP_SUFFIX}"
    other_host = tmp_path / f".out.chandra.{'f' * 8 if host != 'f' * 8 else 'e' * 8}.{dead_pid()}.0badc0de{TEMP_SUFFIX}"
    other_target = tmp_path / f".other.chandra.{host}.{dead_pid()}.0badc0de{TEMP_SUFFIX}"
    for path in (dead, alive, other_host, other_target):
        path.write_bytes(b"partial model")
    save_model(small_model(), target)
    assert not dead.exists()
    assert alive.exists() and other_host.exists() and other_target.exists()
    assert load_model(target).n_frames == small_model().n_frames
    assert remove_stale_temp_files(target) == []


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "x.json", "w") as fh:
            fh.write("{")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


_KILL_DURING_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, "tests")
    from test_hostile_input import small_model
    from chandra.model import save_model
    real = np.save
    def save(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # no handler, no finally: what a crash or the OOM killer does
    np.save = save
    save_model(small_model(), sys.argv[1])
""")


def test_sigkill_during_a_save_leaves_a_temp_file_the_next_write_removes(tmp_path):
    target = tmp_path / "model.chandra"
    proc = subprocess.run([sys.executable, "-c", _KILL_DURING_SAVE, str(target)], cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.chandra.") and leftovers[0].endswith(TEMP_SUFFIX)
    assert not target.exists()
    save_model(small_model(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["model.chandra"]


_TERM_DURING_TRAIN_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from chandra.cli import main
    real = np.save
    calls = []
    def save(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # inside the save stage, with the temporary model half written
            os.kill(os.getpid(), signal.SIGTERM)
    np.save = save
    sys.exit(main(["train", sys.argv[1], "-o", sys.argv[2], "--tokens", "4", "--quiet"]))
""")


def test_sigterm_during_the_save_stage_exits_143_and_leaves_nothing(tmp_path, clip):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "model.chandra"
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", _TERM_DURING_TRAIN_SAVE, str(clip), str(target)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert only_line(proc.stderr) == "chandra train: terminated"
    assert list(out_dir.iterdir()) == []  # no model, no temporary file or directory, no lock file


# --------------------------------------------------------------------------- what -o may replace


def test_check_output_sniffs_what_it_may_replace(tmp_path):
    model = save_model(small_model(), tmp_path / "model.chandra")
    export = export_musichal(small_model(), tmp_path / "export.json")
    ours = tmp_path / "ours.wav"
    write_wav(ours, np.zeros(100, dtype=np.float32), SR)
    recording = write(tmp_path / "recording.wav", melody(4))
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "foreign.json").write_text('{"states": {}}')
    assert check_output(model, kind="model") == model
    assert check_output(export, kind="musichal") == export
    assert check_output(ours, kind="wav") == ours
    assert check_output(tmp_path / "empty.wav", kind="wav")
    assert check_output(tmp_path / "new.wav", kind="wav")
    assert check_output(tmp_path / "foreign.json", kind="json")
    refusals = [
        (recording, "wav", "is not a WAV file"), (tmp_path / "notes.txt", "model", "is not a chandra model"),
        (ours, "model", "is not a chandra model"), (model, "wav", "is not a WAV file"),
        (tmp_path / "foreign.json", "musichal", "is not a MusicHal export written by chandra"),
        (tmp_path, "model", "is a directory"),
    ]
    for path, kind, message in refusals:
        with pytest.raises(OutputError, match=message):
            check_output(path, kind=kind)
    link = tmp_path / "link.chandra"
    link.symlink_to(model)
    hard = tmp_path / "hard.chandra"
    os.link(model, hard)
    for alias in (model, link, hard, tmp_path / "." / "model.chandra"):
        with pytest.raises(OutputError, match="is the input"):
            check_output(alias, kind="model", inputs=[model])


def test_train_refuses_to_overwrite_its_input(tmp_path, clip, capsys):
    audio = tmp_path / "take.flac"
    sf.write(audio, sf.read(clip)[0], SR)
    before = sha256_file(audio)
    assert main(["train", str(audio), "-o", str(audio), "--quiet"]) == 1
    assert "is the input" in only_line(capsys.readouterr().err)
    assert sha256_file(audio) == before
    (tmp_path / "notes2.txt").write_text("keep me")
    assert main(["train", str(audio), "-o", str(tmp_path / "notes2.txt"), "--quiet"]) == 1
    assert "is not a chandra model" in only_line(capsys.readouterr().err)
    assert (tmp_path / "notes2.txt").read_text() == "keep me"


def test_generate_and_export_refuse_inputs_and_foreign_files(tmp_path, capsys):
    model = save_model(small_model(), tmp_path / "m.chandra")
    recording = write(tmp_path / "recording.wav", melody(4))
    before = sha256_file(recording)
    for args, message in (
        (["generate", str(model), "-o", str(model)], "is the input"),
        (["generate", str(model), "-o", str(recording)], "is not a WAV file"),
        (["export", str(model), "-o", str(model)], "is the input"),
        (["export", str(model), "-o", str(recording)], "is not a MusicHal export"),
    ):
        assert main(args) == 1
        assert message in only_line(capsys.readouterr().err)
    assert sha256_file(recording) == before and load_model(model).n_frames == small_model().n_frames
    # chandra's own outputs may be replaced
    out = tmp_path / "g.wav"
    assert main(["generate", str(model), "-o", str(out), "--seconds", "0.5"]) == 0
    assert main(["generate", str(model), "-o", str(out), "--seconds", "0.5", "--seed", "2"]) == 0
    assert main(["export", str(model), "-o", str(tmp_path / "e.json")]) == 0
    assert main(["export", str(model), "-o", str(tmp_path / "e.json")]) == 0


# --------------------------------------------------------------------------- one writer per output


def test_exclusive_output_refuses_a_second_writer_in_process(tmp_path):
    target = tmp_path / "m.chandra"
    with exclusive_output(target):
        with pytest.raises(OutputError, match="another chandra process is writing"):
            with exclusive_output(target):
                pass
    with exclusive_output(target):  # released: free again
        pass
    assert list(tmp_path.iterdir()) == []


_HOLD_LOCK = textwrap.dedent("""
    import sys
    from chandra.io_utils import exclusive_output
    with exclusive_output(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
""")


def test_a_second_train_to_the_same_output_is_told_at_once(tmp_path, clip):
    target = tmp_path / "same.chandra"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(target)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = cli("train", str(clip), "-o", str(target), "--quiet")
        assert proc.returncode == 1
        line = only_line(proc.stderr)
        assert "another chandra process is writing this file" in line and "saved" not in proc.stdout
        assert not target.exists()
    finally:
        holder.communicate("done\n", timeout=30)
    assert holder.returncode == 0 and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- one write per save


def test_save_stage_writes_the_model_once_and_records_the_reload(tmp_path, clip, monkeypatch):
    import chandra.model as model_module
    from chandra.pipeline import TrainConfig, train

    writes, reads = [], []
    real_atomic_path, real_load = model_module.atomic_path, model_module.load_model

    def counting_atomic_path(path):
        writes.append(Path(path).name)
        return real_atomic_path(path)

    def counting_load(path, **kwargs):
        reads.append(Path(path).name)
        return real_load(path, **kwargs)

    monkeypatch.setattr(model_module, "atomic_path", counting_atomic_path)
    monkeypatch.setattr(model_module, "load_model", counting_load)
    target = tmp_path / "once.chandra"
    result = train(clip, TrainConfig(n_tokens=4), output=target)
    assert writes == ["once.chandra"] and len(reads) == 1 and reads[0].endswith(TEMP_SUFFIX)
    assert [p.name for p in tmp_path.iterdir()] == ["once.chandra"]
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        assert names[0] == "model.json" and names[-1] == "reloaded.json"
        stored_ledger = json.loads(zf.read("model.json"))["ledger"]
    assert [e["stage"] for e in stored_ledger][-1] == "saved"
    loaded = real_load(target)
    stages = [e["stage"] for e in loaded.ledger]
    assert stages[-2:] == ["saved", "reloaded"] and stages.count("reloaded") == 1
    assert json.dumps(loaded.ledger, sort_keys=True) == json.dumps(result.state.ledger, sort_keys=True)
    assert not any(f["code"] == "ROUNDTRIP_CHANGED" for f in result.findings)
    # re-saved without a reload check, the "reloaded" entry travels inside model.json
    again = tmp_path / "again.chandra"
    save_model(result.model, again)
    assert zipfile.ZipFile(again).namelist()[-1] != "reloaded.json"
    assert real_load(again).ledger == loaded.ledger


# --------------------------------------------------------------------------- truncated audio


def test_truncated_wav_trains_with_a_warning(tmp_path, clip, capsys):
    data = clip.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    declared = (len(data) - 44) // 2
    read = (int(len(data) * 0.7) - 44) // 2
    assert main(["train", str(cut), "-o", str(tmp_path / "cut.chandra"), "--tokens", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = [f for f in summary["findings"] if "AUDIO_TRUNCATED" in f]
    assert len(lines) == 1 and lines[0].startswith("warning:")
    assert f"declares {declared} frames but the decoder delivered {read}" in lines[0]
    model = load_model(tmp_path / "cut.chandra")
    assert model.provenance["input"]["decode"] == {"frames_declared": declared, "frames_read": read,
                                                   "file_sample_rate": SR, "truncated": True,
                                                   "decode_error": None}
    assert main(["inspect", str(tmp_path / "cut.chandra")]) == 0
    assert "AUDIO_TRUNCATED" in capsys.readouterr().out


def test_decode_reports_frames_declared_and_read(tmp_path):
    from chandra.audio import decode_audio

    y = melody(8)
    whole = write(tmp_path / "whole.wav", y)
    assert decode_audio(whole).report() == {"frames_declared": len(y), "frames_read": len(y),
                                            "file_sample_rate": SR, "truncated": False, "decode_error": None}
    for fmt, ext in (("AIFF", "aiff"), ("WAV", "wav")):
        full = write(tmp_path / f"full.{ext}", y, fmt=fmt, subtype="PCM_24")
        data = full.read_bytes()
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(data[: len(data) // 2])
        decoded = decode_audio(cut)
        assert decoded.truncated and decoded.frames_declared == len(y)
        assert 0 < decoded.frames_read < len(y) // 2 + 10
        np.testing.assert_allclose(decoded.y, y[: decoded.frames_read], atol=1e-6)
    flac = write(tmp_path / "full.flac", y, fmt="FLAC")
    data = flac.read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    decoded = decode_audio(tmp_path / "cut.flac")
    assert decoded.truncated and decoded.frames_declared == len(y) and decoded.decode_error
    np.testing.assert_allclose(decoded.y, y[: decoded.frames_read], atol=1e-4)
