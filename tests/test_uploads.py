"""The one upload saver (chandra.uploads) and the generation record format."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chandra.errors import AudioError, ChandraError
from chandra.uploads import UploadError, probe_audio, safe_name, store_upload

from helpers_audio import melody

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wav_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("up") / "m.wav"
    sf.write(path, melody(8), 22050)
    return path.read_bytes()


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_good_audio_is_kept_content_addressed_with_its_name(tmp_path, wav_bytes):
    out = store_upload(tmp_path / "up", "My Take (1).wav", wav_bytes)
    assert out.name == "My_Take_1_.wav" and out.read_bytes() == wav_bytes
    assert out.parent.parent == tmp_path / "up" and len(out.parent.name) == 16
    again = store_upload(tmp_path / "up", "My Take (1).wav", wav_bytes)
    assert again == out and len(_files(tmp_path / "up")) == 1  # same bytes, one file
    other = store_upload(tmp_path / "up", "My Take (1).wav", wav_bytes + b"\0\0")
    assert other != out  # different bytes never share a path
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode == 0o666 & ~_umask()  # the process umask, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("name,data,match", [
    ("take.wav", b"", "empty"),
    ("take.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 4, "not a readable audio file"),
    ("take.flac", b"fLaC" + os.urandom(200), "not a readable audio file"),
    ("take.mp3", b"\x00" * 4096, "not a readable audio file"),
    ("take.exe", b"MZ....", "unsupported audio file type"),
    ("take", b"abc", "unsupported audio file type"),
])
def test_bad_uploads_are_refused_and_leave_nothing(tmp_path, name, data, match):
    folder = tmp_path / "up"
    folder.mkdir()
    with pytest.raises((UploadError, AudioError), match=match):
        store_upload(folder, name, data)
    assert list(folder.rglob("*")) == []


def test_size_limit_and_model_kind(tmp_path, wav_bytes):
    with pytest.raises(UploadError, match="more than the limit"):
        store_upload(tmp_path, "a.wav", wav_bytes, max_bytes=100)
    model = store_upload(tmp_path, "m.json", b'{"anything": 1}', kind="model")
    assert model.name == "m.json"  # content is checked by the loader when opened
    with pytest.raises(UploadError, match="unsupported model file type"):
        store_upload(tmp_path, "m.wav", wav_bytes, kind="model")


@pytest.mark.parametrize("name,expected", [
    ("../../etc/passwd.wav", "passwd.wav"),
    ("..\\..\\win.wav", "win.wav"),
    (".hidden.wav", "hidden.wav"),
    ("a b\nc\x00.wav", "a_b_c_.wav"),
    ("x" * 300 + ".flac", "x" * 95 + ".flac"),
    ("", "upload"),
])
def test_safe_name(name, expected):
    assert safe_name(name) == expected


def test_concurrent_uploads_of_the_same_file(tmp_path, wav_bytes):
    results, errors = [], []

    def up():
        try:
            results.append(store_upload(tmp_path / "up", "same.wav", wav_bytes))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=up) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(set(results)) == 1
    assert _files(tmp_path / "up") == {results[0]}  # no temp file left behind
    assert results[0].read_bytes() == wav_bytes


def test_probe_reads_header_and_a_short_stretch():
    info = probe_audio(REPO / "sample_audio" / "bach_prelude_c.flac")
    assert info["sample_rate"] > 0 and info["frames"] > 0
    assert info["probed_frames"] == min(info["frames"], int(round(2.0 * info["sample_rate"])))


def test_probe_refuses_nan_audio(tmp_path):
    path = tmp_path / "nan.wav"
    y = np.zeros(22050, dtype=np.float32)
    y[100] = np.nan
    sf.write(path, y, 22050, subtype="FLOAT")
    with pytest.raises(AudioError, match="non-finite"):
        probe_audio(path)


# --------------------------------------------------------------------------- generation records


def test_generation_record_round_trip(tmp_path, prepared_run):
    from chandra.generate import generate_to_wav
    from chandra.generation_record import generation_record, read_generation_record, write_generation_record
    from chandra.model import load_model

    model = load_model(prepared_run.model_path())
    wav = tmp_path / "g.wav"
    gen = generate_to_wav(model, wav, n_frames=20, seed=3)
    record = generation_record(model, gen, wav_path=wav, model_path=prepared_run.model_path())
    path = write_generation_record(record, tmp_path / "g.json")
    back = read_generation_record(path)
    assert back == record
    assert back["generation"]["frames"] == [int(f) for f in gen.frames]
    assert back["summary"] == {k: v for k, v in gen.summary(model).items()}
    assert back["wav"] == "g.wav" and back["sample_rate"] == model.sample_rate
    assert back["ledger_entry"]["stage"] == "generated" and back["ledger_entry"]["n_records"] == 20


@pytest.mark.parametrize("text,match", [
    ("[1, 2]", "not a chandra generation record"),
    ('{"format": "chandra-generation", "version": "9.0"}', "version"),
    ('{"format": "chandra-generation", "version": "1.0"}', "without"),
    ("{" * 100000, "nested deeper than 64 levels"),   # the bounded reader's own limits
    ("not json", "malformed JSON"),
    ('{"format": "chandra-generation", "version": "1.0", "wav": "../../etc/x.wav", "generation": {}, '
     '"ledger_entry": {}}', "file name in the record's folder"),
])
def test_bad_generation_records(tmp_path, text, match):
    from chandra.generation_record import read_generation_record

    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ChandraError, match=match):
        read_generation_record(path)
