"""Tests for chandra.encoders: DSP descriptors and the transformer encoder.

Transformer tests use tiny random models saved to disk (tests/helpers_models.py)
and loaded back through the real loading code; nothing touches the network.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_models import TINY_HIDDEN_SIZE, TINY_HOP, TINY_LAYERS, TINY_RECEPTIVE_FIELD, save_tiny_wav2vec2  # noqa: E402

from chandra.encoders import (  # noqa: E402
    DSPEncoder,
    Encoder,
    Wav2Vec2Encoder,
    available_encoders,
    make_encoder,
    pool_frames,
    resample,
)
from chandra.errors import ChandraError, EncoderError, WeightsNotFoundError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def segs(start, end):
    return SimpleNamespace(start=np.asarray(start, dtype=np.float64), end=np.asarray(end, dtype=np.float64))


def even_segments(duration, length):
    starts = np.arange(0.0, duration - 1e-9, length)
    return segs(starts, np.minimum(starts + length, duration))


def sine_noise_signal(sr, *, seconds_each=1.0, blocks=("sine", "noise", "sine", "noise"), seed=0):
    rng = np.random.default_rng(seed)
    n = int(sr * seconds_each)
    t = np.arange(n) / sr
    parts = []
    for i, kind in enumerate(blocks):
        if kind == "sine":
            parts.append(0.5 * np.sin(2 * np.pi * (440.0 + 3 * i) * t))
        elif kind == "noise":
            parts.append(0.3 * rng.standard_normal(n))
        else:
            parts.append(np.zeros(n))
    return np.concatenate(parts).astype(np.float32)


# ---------------------------------------------------------------------------
# DSP


@pytest.fixture(scope="module")
def dsp():
    return DSPEncoder()


def test_dsp_shape_dtype_finite_including_silence_and_tiny_segments(dsp):
    sr = 22050
    y = sine_noise_signal(sr, blocks=("sine", "silence", "noise"))
    s = segs(
        [0.0, 0.5, 1.0, 1.2, 1.5, 1.5, 2.0, 2.9999],
        [0.5, 1.0, 1.2, 1.5, 1.5, 1.501, 3.0, 3.0],
    )  # includes silence, a zero-length and two sub-frame segments
    calls = []
    X = dsp.encode(y, sr, s, progress=lambda *a: calls.append(a))
    assert X.shape == (8, dsp.dim) == (8, 102)
    assert X.dtype == np.float32
    assert np.all(np.isfinite(X))
    assert calls[0] == ("encode", 0, 2) and calls[-1] == ("encode", 2, 2)


def test_dsp_all_zero_signal_is_finite(dsp):
    X = dsp.encode(np.zeros(22050, dtype=np.float32), 22050, even_segments(1.0, 0.1))
    assert np.all(np.isfinite(X))
    names = dsp.feature_names()
    # absolute dB floor: silence reads as very quiet, not as NaN
    assert np.all(X[:, names.index("rms_db")] <= -99.0)
    assert np.all(X[:, [i for i, n in enumerate(names) if n.startswith("chroma_mean")]] == 0.0)


def test_dsp_distinguishes_sine_from_noise(dsp):
    sr = 22050
    y = sine_noise_signal(sr)
    s = even_segments(4.0, 0.25)
    X = dsp.encode(y, sr, s).astype(np.float64)
    label = (s.start // 1.0).astype(int) % 2  # 0 sine, 1 noise
    Z = (X - X.mean(0)) / (X.std(0) + 1e-9)
    D = np.linalg.norm(Z[:, None, :] - Z[None, :, :], axis=-1)
    same = label[:, None] == label[None, :]
    off_diag = ~np.eye(len(label), dtype=bool)
    within = D[same & off_diag].mean()
    between = D[~same].mean()
    assert between > 1.5 * within
    nearest = np.where(off_diag, D, np.inf).argmin(axis=1)
    assert np.all(label[nearest] == label)
    names = dsp.feature_names()
    flat = X[:, names.index("flatness")]
    assert flat[label == 1].min() > flat[label == 0].max()


def test_dsp_resamples_input_to_its_rate(dsp):
    # sines only: white noise at 44.1 kHz has power above 11 kHz that 22.05 kHz cannot hold
    y22 = sine_noise_signal(22050, blocks=("sine", "silence", "sine"))
    y44 = sine_noise_signal(44100, blocks=("sine", "silence", "sine"))
    s = even_segments(3.0, 0.5)
    a = dsp.encode(y22, 22050, s)
    b = dsp.encode(y44, 44100, s)
    assert a.shape == b.shape
    names = dsp.feature_names()
    sounding = [0, 1, 4, 5]  # the silent middle second has no meaningful centroid
    for name in ("rms_db", "centroid_norm"):
        col = names.index(name)
        # same content at another rate gives (nearly) the same description
        np.testing.assert_allclose(a[sounding, col], b[sounding, col], atol=1.0 if name == "rms_db" else 0.02)
    assert np.all(np.isfinite(b))


def test_dsp_sub_frame_segment_takes_nearest_frame(dsp):
    sr = 22050
    y = sine_noise_signal(sr, blocks=("noise",))
    frames, times = dsp.frame_features(y, sr)
    mid = 0.5 * (times[10] + times[11]) - 0.001  # nearer frame 10, no centre inside
    X = dsp.encode(y, sr, segs([mid - 0.0005], [mid + 0.0005]))
    m = dsp.n_mfcc
    np.testing.assert_allclose(X[0, :m], frames[10, :m], rtol=1e-5, atol=1e-4)
    assert np.all(X[0, m : 2 * m] == 0.0)  # std of a single frame


def test_dsp_feature_names_layout():
    enc = DSPEncoder(n_mfcc=13)
    names = enc.feature_names()
    assert len(names) == len(set(names)) == enc.dim == 4 * 13 + 12 + 7 + 3
    assert names[0] == "mfcc_mean_00" and names[13] == "mfcc_std_00"
    assert names[52] == "chroma_mean_C" and names[63] == "chroma_mean_B"
    assert names[-3:] == ["rms_db", "flatness", "centroid_norm"]
    low = DSPEncoder(sr=8000)
    assert low.n_contrast_bands < 6 and len(low.feature_names()) == low.dim
    X = low.encode(sine_noise_signal(8000, blocks=("sine",)), 8000, even_segments(1.0, 0.25))
    assert X.shape == (4, low.dim) and np.all(np.isfinite(X))


def test_dsp_empty_segments_and_provenance(dsp):
    X = dsp.encode(np.zeros(4000, dtype=np.float32), 22050, segs([], []))
    assert X.shape == (0, dsp.dim) and X.dtype == np.float32
    prov = dsp.provenance()
    json.dumps(prov)
    assert prov["encoder"] == "dsp" and prov["dim"] == 102 and prov["sample_rate"] == 22050
    assert sum(b["size"] for b in prov["blocks"]) == 102


@pytest.mark.parametrize(
    "y, sr, s, fragment",
    [
        (np.zeros((2, 1000), np.float32), 22050, segs([0], [0.01]), "mono"),
        (np.array([0.0, np.nan] * 500, np.float32), 22050, segs([0], [0.01]), "NaN"),
        (np.zeros(1000, np.float32), 0, segs([0], [0.01]), "sample rate"),
        (np.zeros(1000, np.float32), 22050, segs([0.02], [0.01]), "ends before it starts"),
        (np.zeros(1000, np.float32), 22050, segs([0, 1], [0.01]), "start times but"),
        (np.zeros(1000, np.float32), 22050, segs([-1.0], [0.01]), "seconds from file start"),
        (np.zeros(1000, np.float32), 22050, object(), "'start' and 'end'"),
    ],
)
def test_dsp_rejects_bad_input(dsp, y, sr, s, fragment):
    with pytest.raises(EncoderError, match=fragment):
        dsp.encode(y, sr, s)


def test_dsp_rejects_bad_options():
    with pytest.raises(EncoderError, match="n_mfcc"):
        DSPEncoder(n_mfcc=0)
    with pytest.raises(EncoderError, match="too low"):
        DSPEncoder(sr=300)


def test_pool_frames_means_and_nearest():
    frames = np.arange(10, dtype=np.float64)[:, None] * np.array([[1.0, 2.0]])
    times = np.arange(10) * 0.1  # centres 0.0 .. 0.9 s
    mean, std = pool_frames(frames, times, segs([0.0, 0.25, 0.52, 5.0], [0.3, 0.45, 0.53, 6.0]), with_std=True)
    np.testing.assert_allclose(mean[:, 0], [1.0, 3.5, 5.0, 9.0])  # frames 0-2; 3-4; nearest 5; last
    np.testing.assert_allclose(mean[:, 1], 2 * mean[:, 0])
    np.testing.assert_allclose(std[:, 0], [np.std([0, 1, 2]), 0.5, 0.0, 0.0])


# ---------------------------------------------------------------------------
# transformer encoder


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "wav2vec2": save_tiny_wav2vec2(root / "wav2vec2"),
        "local": save_tiny_wav2vec2(root / "local", feat_extract_norm="layer"),
        "hubert": save_tiny_wav2vec2(root / "hubert", model_type="hubert"),
        "wavlm": save_tiny_wav2vec2(root / "wavlm", model_type="wavlm"),
        "remote": save_tiny_wav2vec2(root / "remote", remote_code_config=True),
    }


@pytest.fixture(scope="module")
def audio16():
    rng = np.random.default_rng(1)
    sr = 16000
    t = np.arange(3 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (t < 1.5) + 0.2 * rng.standard_normal(t.size) * (t >= 1.5)
    return y.astype(np.float32), sr


def test_wav2vec2_shape_deterministic_and_protocol(tiny_dirs, audio16):
    y, sr = audio16
    s = even_segments(3.0, 0.1)
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=1.0, overlap_seconds=0.2, batch_size=2)
    assert isinstance(enc, Encoder)
    a = enc.encode(y, sr, s)
    b = enc.encode(y, sr, s)
    c = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=1.0, overlap_seconds=0.2, batch_size=2).encode(y, sr, s)
    assert a.shape == (30, TINY_HIDDEN_SIZE) and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    # sine and noise halves should not collapse to one vector
    assert np.linalg.norm(a[:15].mean(0) - a[15:].mean(0)) > 1e-3


def test_wav2vec2_layer_selection(tiny_dirs, audio16):
    y, sr = audio16
    s = even_segments(3.0, 0.25)
    out = {
        layer: Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], layer=layer).encode(y, sr, s)
        for layer in (0, 1, TINY_LAYERS, -1, -3)
    }
    assert not np.allclose(out[0], out[-1])
    assert not np.allclose(out[1], out[-1])
    np.testing.assert_array_equal(out[TINY_LAYERS], out[-1])
    np.testing.assert_array_equal(out[0], out[-3])


def test_wav2vec2_chunked_equals_unchunked_when_overlap_covers_context(tiny_dirs, audio16):
    # layer 0 of a layer-norm front end is local in time (conv + positional conv),
    # so with enough overlap, chunking must not change it
    y, sr = audio16
    kw = dict(model=tiny_dirs["local"], layer=0)
    chunked = Wav2Vec2Encoder(chunk_seconds=0.5, overlap_seconds=0.2, batch_size=3, **kw)
    whole = Wav2Vec2Encoder(chunk_seconds=60.0, **kw)
    fa, ta = chunked.encode_frames(y, sr)
    fb, tb = whole.encode_frames(y, sr)
    assert len(chunked.chunk_plan(y.size)[1]) > 4
    np.testing.assert_array_equal(ta, tb)
    np.testing.assert_allclose(fa, fb, atol=1e-4)


def _normalised(enc, y):
    """The signal as the encoder feeds it to the model: zero mean, unit variance
    over the whole file (``do_normalize``), float32."""
    x = y.astype(np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


def _hidden(enc, x):
    import torch

    with torch.inference_mode():
        out = enc.model_(torch.from_numpy(x[None]), output_hidden_states=True)
    return out.hidden_states[enc._effective_layer][0].float().numpy()


# Tolerance for "the same float32 input through the same weights": only the
# batch shape differs (one chunk vs a batch of chunks), which may change the
# order of float32 sums in the convolutions and matmuls. Hidden states of the
# tiny model are O(1) (layer-normed), accumulated over <= 37 terms per
# product: rounding stays within ~37 * 2**-24 * O(1) ~ 2e-6; 1e-5 leaves
# headroom and is still far below any real difference (a chunk boundary
# changes values by O(0.1)).
_SAME_INPUT_ATOL = 1e-5


def test_wav2vec2_unchunked_equals_one_direct_forward(tiny_dirs, audio16):
    # When the file fits one chunk, encode_frames is exactly one forward pass
    # of the normalised signal: the frames must be that pass's hidden states.
    y, sr = audio16
    y = y[: sr + 137]
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=60.0)
    frames, _ = enc.encode_frames(y, sr)
    assert enc.chunk_plan(y.size)[1] == [0]
    direct = _hidden(enc, _normalised(enc, y))
    assert frames.shape == direct.shape == (enc.n_frames(y.size), TINY_HIDDEN_SIZE)
    np.testing.assert_allclose(frames, direct, rtol=0, atol=_SAME_INPUT_ATOL)


def test_wav2vec2_chunk_stitching_keeps_every_frame(tiny_dirs, audio16):
    y, sr = audio16
    y = y[: sr * 2 + 137]  # length not a multiple of chunk, step or hop
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=0.3, overlap_seconds=0.05, batch_size=4)
    frames, times = enc.encode_frames(y, sr)
    x = _normalised(enc, y)
    whole = _hidden(enc, x)  # one unchunked pass over the whole file
    assert frames.shape == (whole.shape[0], TINY_HIDDEN_SIZE) == (enc.n_frames(y.size), TINY_HIDDEN_SIZE)
    assert np.all(np.isfinite(frames))
    hop_s = TINY_HOP / sr
    np.testing.assert_allclose(np.diff(times), hop_s)
    assert times[0] == pytest.approx(TINY_RECEPTIVE_FIELD / 2 / sr)  # centre of the first window
    assert y.size / sr - TINY_RECEPTIVE_FIELD / sr - hop_s < times[-1] < y.size / sr
    # the chunks overlap and the file end is reached by the last chunk, so every frame is covered
    chunk, starts = enc.chunk_plan(y.size)
    assert len(starts) >= 7 and starts[-1] + chunk >= y.size

    # Values. This model's GroupNorm front end and attention see the whole
    # chunk, so a chunked pass is not the unchunked one (that equality holds
    # only for a time-local layer: see the layer-0 test above). What must
    # hold: every stitched frame is, to float32 rounding, the hidden state of
    # one chunk computed on its own -- the chunk in which the frame lies
    # farthest from an edge (the overlap is split at its middle; at the
    # split point two chunks are within one frame of a tie, so either may
    # win).
    per_chunk = enc.n_frames(chunk)
    first = [s // TINY_HOP for s in starts]
    alone = []
    for s in starts:
        piece = np.zeros(chunk, dtype=np.float32)
        piece[: x[s: s + chunk].size] = x[s: s + chunk]
        alone.append(_hidden(enc, piece))
    assert all(h.shape[0] == per_chunk for h in alone)
    for j in range(frames.shape[0]):
        covering = [k for k in range(len(starts)) if first[k] <= j < first[k] + per_chunk]
        margin = {k: min(j - first[k], first[k] + per_chunk - 1 - j) for k in covering}
        best = max(margin.values())
        errors = [np.abs(frames[j] - alone[k][j - first[k]]).max() for k in covering if margin[k] >= best - 1]
        assert min(errors) <= _SAME_INPUT_ATOL, (j, covering, margin, errors)
    # and the stitched result really differs from the unchunked pass near
    # chunk boundaries (otherwise this test could not tell them apart)
    assert np.abs(frames - whole).max() > 100 * _SAME_INPUT_ATOL


def test_wav2vec2_one_forward_per_batch_of_chunks_not_per_segment(tiny_dirs, audio16):
    y, sr = audio16
    s = even_segments(3.0, 0.05)  # 60 segments
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=0.4, overlap_seconds=0.1, batch_size=3).load()
    n_chunks = len(enc.chunk_plan(y.size)[1])
    calls = []
    handle = enc.model_.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    progress = []
    try:
        X = enc.encode(y, sr, s, progress=lambda *a: progress.append(a))
    finally:
        handle.remove()
    n_batches = math.ceil(n_chunks / 3)
    assert n_chunks == 10 and len(s.start) == 60
    assert len(calls) == n_batches
    assert [shape[0] for shape in calls] == [3, 3, 3, 1]
    assert len({shape[1] for shape in calls}) == 1  # equal-length chunks, no padding mask
    assert progress == [("encode", i, n_batches) for i in range(n_batches + 1)]
    assert X.shape == (60, TINY_HIDDEN_SIZE)


def test_wav2vec2_resamples_22050_input(tiny_dirs):
    import librosa

    sr = 22050
    t = np.arange(2 * sr) / sr
    y = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=0.7, overlap_seconds=0.1)
    frames, times = enc.encode_frames(y, sr)
    y16 = librosa.resample(y, orig_sr=sr, target_sr=16000)
    assert frames.shape[0] == enc.n_frames(y16.size)
    assert times[-1] < 2.0
    X = enc.encode(y, sr, even_segments(2.0, 0.2))
    assert X.shape == (10, TINY_HIDDEN_SIZE) and np.all(np.isfinite(X))
    np.testing.assert_allclose(X, enc.encode(y16, 16000, even_segments(2.0, 0.2)), atol=1e-5)


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_hubert_and_wavlm_load_through_same_path(tiny_dirs, audio16, kind):
    y, sr = audio16
    enc = make_encoder(kind, model=tiny_dirs[kind], chunk_seconds=1.0, overlap_seconds=0.25)
    X = enc.encode(y, sr, even_segments(3.0, 0.5))
    assert X.shape == (6, TINY_HIDDEN_SIZE) and np.all(np.isfinite(X))
    assert enc.provenance()["model_type"] == kind


def test_wav2vec2_provenance(tiny_dirs):
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], layer=-2, chunk_seconds=5.0, overlap_seconds=0.5, batch_size=2)
    prov = enc.provenance()
    json.dumps(prov)
    assert prov["encoder"] == "wav2vec2" and prov["model_type"] == "wav2vec2"
    assert prov["layer"] == -2 and prov["effective_layer"] == 1 and prov["n_hidden_states"] == 3
    assert prov["pooling"] == "mean" and prov["sample_rate"] == 16000
    assert prov["hop_seconds"] == pytest.approx(TINY_HOP / 16000)
    assert prov["dim"] == TINY_HIDDEN_SIZE
    assert (prov["chunk_seconds"], prov["overlap_seconds"], prov["batch_size"]) == (5.0, 0.5, 2)
    assert prov["model_path"] == str(Path(tiny_dirs["wav2vec2"]).resolve())
    assert prov["versions"]["torch"] and prov["versions"]["transformers"]


def test_wav2vec2_is_lazy_and_loads_once(tiny_dirs):
    enc = Wav2Vec2Encoder(model="/definitely/not/here")  # no error until used
    assert enc.model_ is None
    good = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"])
    assert good.load() is good
    model = good.model_
    good.load()
    assert good.model_ is model and not model.training


def test_wav2vec2_no_segments_and_unusable_device(tiny_dirs):
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"])
    X = enc.encode(np.zeros(4000, np.float32), 16000, segs([], []))
    assert X.shape == (0, TINY_HIDDEN_SIZE) and X.dtype == np.float32
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="device 'cuda'"):
            Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], device="cuda").load()


@pytest.mark.timeout(60)
def test_missing_directory_raises_weights_not_found(tmp_path):
    missing = tmp_path / "no_model_here"
    enc = Wav2Vec2Encoder(model=missing)
    with pytest.raises(WeightsNotFoundError) as info:
        enc.encode(np.zeros(16000, np.float32), 16000, segs([0.0], [0.5]))
    msg = str(info.value)
    assert str(missing) in msg
    assert "local_files_only" in msg and "HF_HUB_OFFLINE" in msg
    assert "save_pretrained" in msg and "model=DIR" in msg and "--model" not in msg
    assert "\n" not in msg


@pytest.mark.timeout(60)
def test_unknown_hub_name_raises_weights_not_found_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    with pytest.raises(WeightsNotFoundError) as info:
        Wav2Vec2Encoder(model="nobody-chandra/no-such-model").load()
    msg = str(info.value)
    assert "'nobody-chandra/no-such-model'" in msg
    assert str(constants.HF_HUB_CACHE) in msg
    assert "huggingface-cli download nobody-chandra/no-such-model" in msg
    assert "models--nobody-chandra--no-such-model" in msg
    assert "local_files_only" in msg and "HF_HUB_OFFLINE" in msg and "model=DIR" in msg and "--model" not in msg
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path)):
        Wav2Vec2Encoder(model="facebook/wav2vec2-base", cache_dir=tmp_path).load()


def test_directory_without_weights_or_extractor(tiny_dirs, tmp_path):
    cfg_only = tmp_path / "cfg_only"
    cfg_only.mkdir()
    shutil.copy(tiny_dirs["wav2vec2"] / "config.json", cfg_only)
    with pytest.raises(WeightsNotFoundError, match="model.safetensors"):
        Wav2Vec2Encoder(model=cfg_only).load()
    no_fe = tmp_path / "no_fe"
    shutil.copytree(tiny_dirs["wav2vec2"], no_fe)
    (no_fe / "preprocessor_config.json").unlink()
    with pytest.raises(WeightsNotFoundError, match="preprocessor_config.json"):
        Wav2Vec2Encoder(model=no_fe).load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError, match="no config.json"):
        Wav2Vec2Encoder(model=empty).load()


def test_hub_name_resolves_from_local_cache(tiny_dirs, tmp_path):
    repo = tmp_path / "models--someone--tiny"
    shutil.copytree(tiny_dirs["wav2vec2"], repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    enc = Wav2Vec2Encoder(model="someone/tiny", cache_dir=tmp_path)
    X = enc.encode(np.zeros(8000, np.float32) + 0.01, 16000, segs([0.0], [0.5]))
    assert X.shape == (1, TINY_HIDDEN_SIZE)
    prov = enc.provenance()
    assert prov["model"] == "someone/tiny" and prov["model_source"] == "huggingface cache"


@pytest.mark.parametrize("layer", [3, -4, 100])
def test_bad_layer_raises_with_valid_range(tiny_dirs, layer):
    with pytest.raises(EncoderError, match=r"valid layers are 0\.\.2 or -3\.\.-1"):
        Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], layer=layer).load()


def test_remote_code_model_refused_without_flag(tiny_dirs):
    with pytest.raises(EncoderError, match="trust_remote_code=True") as info:
        Wav2Vec2Encoder(model=tiny_dirs["remote"]).load()
    assert not isinstance(info.value, WeightsNotFoundError)
    assert "mert_model" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"layer": 1.5}, "layer"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_seconds": 0.0}, "chunk_seconds"),
        ({"chunk_seconds": 1.0, "overlap_seconds": 1.0}, "overlap_seconds"),
        ({"model": ""}, "model"),
    ],
)
def test_wav2vec2_rejects_bad_options(kwargs, fragment):
    with pytest.raises(EncoderError, match=fragment):
        Wav2Vec2Encoder(**kwargs)


# ---------------------------------------------------------------------------
# registry and import cost


def test_make_encoder_and_aliases(tiny_dirs):
    assert isinstance(make_encoder("dsp", n_mfcc=13), DSPEncoder)
    assert make_encoder("DSP").dim == 102
    w = make_encoder("wav2vec2", model=tiny_dirs["wav2vec2"], layer=1)
    assert isinstance(w, Wav2Vec2Encoder) and w.layer == 1
    assert make_encoder("hubert").model == "facebook/hubert-base-ls960"
    assert make_encoder("wavlm").model == "microsoft/wavlm-base-plus"
    mert = make_encoder("mert")
    # Remote code is never trusted by default, not even for the MERT alias.
    assert mert.trust_remote_code is False and "MERT" in mert.model
    assert make_encoder("mert", trust_remote_code=True).trust_remote_code is True
    names = available_encoders()
    assert {"dsp", "wav2vec2", "hubert", "wavlm", "mert"} <= set(names)
    with pytest.raises(EncoderError, match="unknown encoder 'mfcc'.*dsp"):
        make_encoder("mfcc")
    with pytest.raises(EncoderError, match="does not take option.*window"):
        make_encoder("dsp", window=3)
    assert issubclass(EncoderError, ChandraError)


def test_import_is_cheap():
    code = (
        "import sys, chandra.encoders as e; e.DSPEncoder(); e.Wav2Vec2Encoder(); "
        "heavy = [m for m in ('torch', 'transformers', 'librosa') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == ""


def test_pool_frames_blocks_do_not_change_results(monkeypatch):
    import chandra.encoders as enc
    import chandra.encoders.pooling as pooling
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    frames = rng.standard_normal((997, 7)).astype(np.float32)
    times = (np.arange(997) + 0.5) * 0.02
    edges = np.sort(rng.uniform(0, times[-1], 120))
    segs = SimpleNamespace(start=np.concatenate([[0.0], edges]), end=np.concatenate([edges, [times[-1] + 0.01]]))
    whole_mean, whole_std = enc.pool_frames(frames, times, segs, with_std=True)
    monkeypatch.setattr(pooling, "_POOL_BLOCK", 13)  # many small blocks, some segments longer than a block
    mean, std = enc.pool_frames(frames, times, segs, with_std=True)
    np.testing.assert_allclose(mean, whole_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, whole_std, rtol=1e-9, atol=1e-9)
    # and against a direct per-segment mean
    for k in (0, 50, 120):
        sel = (times >= segs.start[k]) & (times < segs.end[k])
        if sel.any():
            np.testing.assert_allclose(mean[k], frames[sel].astype(np.float64).mean(axis=0), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------
# int8 quantisation and devices


def test_window_linear_is_the_convolution():
    import torch

    from chandra.encoders import _WindowLinear, _unfoldable

    torch.manual_seed(0)
    for c_in, c_out, k, stride, bias in ((32, 48, 3, 2, False), (16, 8, 4, 1, True), (64, 64, 2, 2, False)):
        conv = torch.nn.Conv1d(c_in, c_out, k, stride=stride, bias=bias)
        assert _unfoldable(conv)
        x = torch.randn(2, c_in, 101)
        channels_last = torch.randn(2, 101, c_in).transpose(1, 2)  # what the previous WindowLinear hands on
        with torch.no_grad():
            torch.testing.assert_close(_WindowLinear(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(_WindowLinear(conv)(channels_last), conv(channels_last), rtol=1e-5,
                                       atol=1e-5)
    # two layers as in the feature encoder (conv, GELU, conv): the first output feeds the second as is
    first, second = torch.nn.Conv1d(16, 24, 3, stride=2), torch.nn.Conv1d(24, 24, 2, stride=2)
    x = torch.randn(3, 16, 257)
    with torch.no_grad():
        expected = second(torch.nn.functional.gelu(first(x)))
        got = _WindowLinear(second)(torch.nn.functional.gelu(_WindowLinear(first)(x)))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not _unfoldable(torch.nn.Conv1d(1, 8, 10, stride=5))  # the first layer stays float
    assert not _unfoldable(torch.nn.Conv1d(32, 32, 8, padding=4, groups=4))  # positional convolution


def test_int8_window_linear_keeps_quiet_frames():
    """Per-window scaling: a frame 60 dB below the loudest keeps its precision after int8 quantisation."""
    import torch

    from chandra.encoders import _WindowLinear
    from chandra.encoders.quantize import _quantize_int8

    torch.manual_seed(1)
    conv = torch.nn.Conv1d(64, 32, 3, stride=2, bias=False)
    x = torch.randn(1, 64, 400)
    x[:, :, 200:] *= 1e-3  # the second half 60 dB down
    holder = torch.nn.Sequential(_WindowLinear(conv))
    quantized, counts = _quantize_int8(holder)
    with torch.no_grad():
        expected, got = conv(x), quantized(x)
    assert counts["linear"] == 1 and counts["conv_as_linear"] == 0
    quiet = slice(101, None)  # windows entirely inside the quiet half
    error = (got[..., quiet] - expected[..., quiet]).norm() / expected[..., quiet].norm()
    assert error < 0.05, float(error)


def test_int8_encoder_is_close_to_float32_and_says_so(tiny_dirs, audio16):
    y, sr = audio16
    s = even_segments(3.0, 0.1)
    f32 = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=1.0, overlap_seconds=0.2)
    i8 = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], chunk_seconds=1.0, overlap_seconds=0.2, quantize="int8")
    a, b = f32.encode(y, sr, s), i8.encode(y, sr, s)
    assert a.shape == b.shape and b.dtype == np.float32 and np.all(np.isfinite(b))
    assert not np.array_equal(a, b)  # really another computation
    cos = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert np.median(cos) > 0.98, np.median(cos)
    np.testing.assert_array_equal(b, i8.encode(y, sr, s))  # deterministic
    p32, p8 = f32.provenance(), i8.provenance()
    assert p32["quantize"] == "none" and "quantized_modules" not in p32
    assert p8["quantize"] == "int8" and p8["device"] == "cpu" and p8["device_configured"] == "auto"
    # the tiny model: every Linear of 2 transformer layers and the projection, and its second conv layer
    assert p8["quantized_modules"]["conv_as_linear"] == 1 and p8["quantized_modules"]["linear"] >= 13
    assert p8["batch_size"] == 2 and p8["batch_size_configured"] is None
    import torch

    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in i8.model_.modules())
    assert not any(isinstance(m, torch.nn.Linear) and type(m) is torch.nn.Linear for m in i8.model_.modules())


def test_devices_resolve_or_fail_clearly(tiny_dirs):
    import torch

    from chandra.encoders import DEVICES, QUANTIZE_MODES, _batch_for, resolve_device

    assert DEVICES == ("auto", "cpu", "cuda") and QUANTIZE_MODES == ("none", "int8")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto", quantize="int8") == "cpu"
    assert _batch_for("cpu", 15.0, (512,)) == 2
    with pytest.raises(EncoderError, match="CPU only"):
        Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], device="cuda", quantize="int8")
    with pytest.raises(EncoderError, match="quantize"):
        Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], quantize="int4")
    with pytest.raises(EncoderError, match="device"):
        Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], device="tpu")
    if torch.cuda.is_available():
        assert resolve_device("auto") == "cuda"
    else:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(EncoderError, match="device 'cuda' was asked for"):
            resolve_device("cuda")
        with pytest.raises(EncoderError, match="device 'cuda:1' was asked for"):
            Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], device="cuda:1").load()


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs GPU: CUDA batch sizing")
def test_cuda_batches_are_sized_by_free_memory(tiny_dirs, audio16):
    enc = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], device="cuda").load()
    assert enc.device_ == "cuda" and 1 <= enc.batch_size_ <= 32
    y, sr = audio16
    cpu = Wav2Vec2Encoder(model=tiny_dirs["wav2vec2"], device="cpu").encode(y, sr, even_segments(3.0, 0.1))
    gpu = enc.encode(y, sr, even_segments(3.0, 0.1))
    assert np.allclose(cpu, gpu, atol=1e-3)


@pytest.mark.parametrize("orig_sr, target_sr", [(22050, 16000), (44100, 16000), (8000, 16000), (48000, 24000),
                                                (16000, 22050), (96000, 16000)])
@pytest.mark.parametrize("n", [1, 7, 1001, 123457])
def test_resample_equals_librosa_sample_for_sample(orig_sr, target_sr, n):
    """resample calls soxr directly (no librosa import before the first forward
    pass) and must give librosa.resample's samples and length exactly."""
    import librosa

    y = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr).astype(np.float32)
    got = resample(y, orig_sr, target_sr)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_neural_encoder_resamples_without_importing_librosa(tiny_dirs):
    """The neural path reaches its forward passes without librosa (a two-second import)."""
    code = ("import sys, numpy as np\n"
            "from chandra.encoders import Wav2Vec2Encoder\n"
            f"enc = Wav2Vec2Encoder(model={str(tiny_dirs['wav2vec2'])!r}).load()\n"
            "enc.encode_frames(np.sin(np.arange(22050 * 2) / 20.0).astype(np.float32), 22050)\n"
            "print('librosa' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
