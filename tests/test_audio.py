import numpy as np
import pytest
import soundfile as sf

from chandra.audio import load_audio, summarize_signal, validate_signal
from chandra.errors import AudioError, ChandraError

from helpers_audio import SR, tone_bursts, write


@pytest.mark.parametrize("ext,fmt,subtype", [
    (".wav", "WAV", "PCM_16"), (".wav", "WAV", "PCM_24"), (".wav", "WAV", "FLOAT"),
    (".flac", "FLAC", "PCM_16"), (".ogg", "OGG", "VORBIS"), (".aiff", "AIFF", "PCM_16"),
    (".aif", "AIFF", "PCM_24"), (".mp3", "MP3", "MPEG_LAYER_III"),
])
def test_formats_decode_to_mono_float32(tmp_path, ext, fmt, subtype):
    y = tone_bursts([0.1, 0.5], duration=1.0)
    stereo = np.stack([y, 0.5 * y], axis=1)
    path = tmp_path / f"x{ext}"
    sf.write(path, stereo, SR, format=fmt, subtype=subtype)
    out, sr = load_audio(path)
    assert sr == SR and out.dtype == np.float32 and out.ndim == 1
    # Lossy codecs pad or shift a little; the length stays within 0.1 s.
    assert abs(len(out) - len(y)) < 0.1 * SR
    if fmt in ("WAV", "FLAC", "AIFF"):
        np.testing.assert_allclose(out, 0.75 * y, atol=2e-4)


def test_resampling_and_channels(tmp_path):
    y = tone_bursts([0.1], duration=1.0)
    path = write(tmp_path / "a.wav", np.stack([y, y, y, y], axis=1), sr=SR)
    out, sr = load_audio(path, sr=16000)
    assert sr == 16000 and abs(len(out) - 16000) <= 1
    multi, _ = load_audio(path, mono=False)
    assert multi.shape == (4, SR)


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"this is not audio\n" * 20, "cannot decode"),
])
def test_bad_files(tmp_path, content, needle):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=needle):
        load_audio(path)


def test_truncated_wav(tmp_path):
    path = write(tmp_path / "t.wav", tone_bursts([0.1], duration=1.0))
    data = path.read_bytes()
    path.write_bytes(data[:30])
    with pytest.raises(AudioError):
        load_audio(path)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    other = tmp_path / "x.txt"
    other.write_text("hello")
    with pytest.raises(AudioError, match="unsupported extension"):
        load_audio(other)
    assert issubclass(AudioError, ChandraError)


def test_validate_signal():
    y = tone_bursts([0.1], duration=1.0)
    validate_signal(y, SR)
    with pytest.raises(AudioError, match="0.30 s"):
        validate_signal(y[: int(0.3 * SR)], SR)
    with pytest.raises(AudioError, match="silent"):
        validate_signal(np.zeros(SR), SR)
    bad = y.copy()
    bad[SR // 2] = np.nan
    with pytest.raises(AudioError, match="non-finite"):
        validate_signal(bad, SR)
    info = summarize_signal(y, SR)
    assert info["duration"] == pytest.approx(1.0) and info["sample_rate"] == SR
