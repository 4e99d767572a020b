"""Long recordings (issue 15 items 2 and 3): block-wise dsp analysis equals the
whole-file analysis, and the overlapped neural pipeline equals the sequential one."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chandra.errors import ChandraError, EncoderError, SegmentationError  # noqa: E402

SR = 22050
HOP = 512


def _chandra_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("chandra-")]


def _tone_bursts(onsets: np.ndarray, *, seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes starting at ``onsets`` (s), over quiet noise."""
    rng = np.random.default_rng(seed)
    y = 1e-3 * rng.standard_normal(int(seconds * sr))
    t = np.arange(int(0.8 * sr)) / sr  # decays by 87 dB: no click at its end
    for k, start in enumerate(onsets):
        f0 = 220.0 * 2 ** ((k % 7) / 12)
        note = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 5)) * np.exp(-t / 0.08)
        a = int(round(start * sr))
        b = min(len(y), a + note.size)
        y[a:b] += 0.3 * note[: b - a]
    return y.astype(np.float32)


# ---------------------------------------------------------------------------
# item 3: block-wise dsp path


def _librosa_whole_file_frames(y: np.ndarray, sr: int, *, n_mfcc: int = 20, n_fft: int = 2048,
                               hop: int = HOP, n_bands: int = 6) -> np.ndarray:
    """The dsp frame descriptors as librosa computes them over the whole file (the pre-block code)."""
    import librosa

    mag = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True))
    power = mag.astype(np.float64) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=128)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, ref=1.0, top_db=None), n_mfcc=n_mfcc)
    width = min(9, mag.shape[1] if mag.shape[1] % 2 else mag.shape[1] - 1)
    d1 = librosa.feature.delta(mfcc, width=width, order=1)
    d2 = librosa.feature.delta(mfcc, width=width, order=2)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, tuning=0.0, n_chroma=12)
    contrast = librosa.feature.spectral_contrast(S=mag, sr=sr, n_fft=n_fft, fmin=200.0, n_bands=n_bands)
    rms_db = 20.0 * np.log10(librosa.feature.rms(S=mag, frame_length=n_fft) + 1e-5)
    flatness = librosa.feature.spectral_flatness(S=mag)
    centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=n_fft) / (0.5 * sr)
    return np.vstack([mfcc, d1, d2, chroma, contrast, rms_db, flatness, centroid]).T


@pytest.fixture(scope="module")
def music():
    """20 s of the bundled real music (scripts/long_track.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from long_track import build_track

    return build_track(20 / 60, seed=3)


def test_dsp_block_frames_equal_librosa_whole_file(music):
    from chandra.encoders import DSPEncoder

    reference = _librosa_whole_file_frames(music, SR)
    # the default block: the same arithmetic as librosa.stft, bit for bit
    frames, times = DSPEncoder().frame_features(music, SR)
    np.testing.assert_array_equal(frames, reference)
    # blocks much shorter than the file: only the mel matrix product's rounding may differ
    for block in (37, 256):
        small, small_times = DSPEncoder(block_frames=block).frame_features(music, SR)
        np.testing.assert_allclose(small, reference, rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(small_times, times)


def test_dsp_spectral_contrast_floor_is_whole_file(music):
    """librosa floors contrast at 80 dB below the loudest peak of the whole file:
    a quiet passage must get the same contrast whichever block it falls in."""
    from chandra.encoders import DSPEncoder

    y = music.copy()
    y[: len(y) // 2] *= 1e-4  # the first half 80 dB down: the floor matters there
    reference = _librosa_whole_file_frames(y, SR)
    frames, _ = DSPEncoder(block_frames=64).frame_features(y, SR)
    cols = slice(3 * 20 + 12, 3 * 20 + 12 + 7)
    np.testing.assert_allclose(frames[:, cols], reference[:, cols], rtol=1e-12, atol=1e-9)


def test_onsets_across_block_edges_are_found_once():
    from chandra.segment import detect_onsets, spectral_frames

    block = 50  # frames: a block edge every 50 * 512 / 22050 = 1.16 s
    edge = block * HOP / SR
    # notes right at, just before and just after block edges, and in between
    truth = np.array([0.5, edge - 0.01, edge + 0.3, 2 * edge, 2 * edge + 0.5, 3 * edge + 0.012,
                      4 * edge - 0.05, 5 * edge + 0.2])
    y = _tone_bursts(truth, seconds=6 * edge + 0.5)
    whole_mel, whole_centroid = spectral_frames(y, SR, block_frames=10**6)
    whole = detect_onsets(y, SR, mel_power=whole_mel)
    for b in (block, 7, 333):
        mel, centroid = spectral_frames(y, SR, block_frames=b)
        # the float32 mel matrix product rounds by block: a few ulps (stated tolerance 1e-6 relative)
        np.testing.assert_allclose(mel, whole_mel, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(centroid, whole_centroid, rtol=1e-9)
        np.testing.assert_array_equal(detect_onsets(y, SR, mel_power=mel), whole)
    # every true onset found once (backtracking moves it up to a few frames earlier)
    for t in truth:
        near = whole[(whole > t - 0.08) & (whole <= t + 0.03)]
        assert near.size == 1, (t, whole)
    assert whole[whole > 0.2].size == truth.size, whole  # (the noise floor starting at 0 s is an onset)


def test_segment_rms_and_f0_in_blocks_equal_whole(monkeypatch, music):
    import chandra.segment as seg

    edges = np.concatenate([[0.0], np.sort(np.random.default_rng(0).uniform(0, len(music) / SR, 300)),
                            [len(music) / SR]])
    starts, ends = edges[:-1], edges[1:]
    a = np.clip(np.round(starts * SR).astype(np.int64), 0, len(music))
    b = np.minimum(np.maximum(np.clip(np.round(ends * SR).astype(np.int64), 0, len(music)), a + 1), len(music))
    direct = np.array([np.sqrt(np.mean(music[i:j].astype(np.float64) ** 2)) if j > i else 0.0
                       for i, j in zip(a, b)])
    whole_rms = seg.segment_rms(music, SR, starts, ends)
    # prefix sums over a run lose a little to cancellation in quiet segments: 1e-6 relative
    np.testing.assert_allclose(whole_rms, direct, rtol=1e-6, atol=1e-12)
    whole_f0 = seg.estimate_f0(music, SR, starts, ends)
    monkeypatch.setattr(seg, "_RMS_BLOCK", 5000)  # runs of a few segments; some segments longer than a run
    monkeypatch.setattr(seg, "_F0_BATCH", 7)
    np.testing.assert_allclose(seg.segment_rms(music, SR, starts, ends), direct, rtol=1e-6, atol=1e-12)
    # batched FFTs round differently in the last bits; the pitched/unpitched pattern is the same
    np.testing.assert_allclose(seg.estimate_f0(music, SR, starts, ends), whole_f0, rtol=1e-12)


@pytest.mark.parametrize("channels,file_sr", [(2, 44100), (1, 22050), (3, 16000)])
def test_streamed_decode_equals_whole_file_decode(tmp_path, monkeypatch, channels, file_sr):
    import librosa

    import chandra.audio as audio

    rng = np.random.default_rng(channels)
    x = (0.2 * rng.standard_normal((int(2.3 * file_sr) + 17, channels))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, x, file_sr, subtype="FLOAT")
    monkeypatch.setattr(audio, "_STREAM_FRAMES", 4000)  # many blocks, a short last one
    mono = np.ascontiguousarray(x.mean(axis=1), dtype=np.float32)
    for target in (None, 22050, 16000):
        got = audio.decode_audio(path, sr=target)
        want = mono
        if target is not None and target != file_sr:
            want = librosa.resample(mono, orig_sr=file_sr, target_sr=target, res_type="soxr_hq").astype(np.float32)
        assert got.sr == (target or file_sr) and got.frames_read == len(x) and not got.truncated
        np.testing.assert_array_equal(got.y, want)


def test_dsp_pipeline_tokens_do_not_depend_on_blocks(synthetic_audio):
    from chandra.encoders import DSPEncoder
    from chandra.pipeline import RunState, TrainConfig, run_all

    cfg = TrainConfig(n_tokens=8)
    whole = run_all(RunState(audio_path=str(synthetic_audio), config=cfg,
                             encoder=DSPEncoder(block_frames=10**6)))
    blocks = run_all(RunState(audio_path=str(synthetic_audio), config=cfg, encoder=DSPEncoder(block_frames=29)))
    np.testing.assert_allclose(blocks.raw_features, whole.raw_features, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(blocks.tokens, whole.tokens)
    assert [e["stage"] for e in blocks.ledger] == [e["stage"] for e in whole.ledger]


# ---------------------------------------------------------------------------
# item 2: forward passes beside segmentation and harmony


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from helpers_models import save_tiny_wav2vec2

    return save_tiny_wav2vec2(tmp_path_factory.mktemp("tiny") / "w2v")


def _neural_config(model_dir) -> "object":
    from chandra.pipeline import TrainConfig

    return TrainConfig(encoder="wav2vec2", model=str(model_dir), n_tokens=8, chunk_seconds=2.0)


def test_overlapped_pipeline_equals_sequential(tiny_model, synthetic_audio):
    from chandra.pipeline import RunState, run_all

    cfg = _neural_config(tiny_model)
    threads = []

    def progress(stage, done, total):
        threads.append((stage, threading.current_thread().name))

    over = run_all(RunState(audio_path=str(synthetic_audio), config=cfg), progress=progress)
    seq = run_all(RunState(audio_path=str(synthetic_audio), config=cfg), overlap=False)
    np.testing.assert_array_equal(over.raw_features, seq.raw_features)
    np.testing.assert_array_equal(over.tokens, seq.tokens)
    np.testing.assert_array_equal(over.segments.start, seq.segments.start)
    assert over.harmony == seq.harmony
    assert over.encoder_provenance == seq.encoder_provenance
    assert [e["stage"] for e in over.ledger] == [e["stage"] for e in seq.ledger]
    assert [e.get("count") for e in over.ledger] == [e.get("count") for e in seq.ledger]
    assert over.summaries["encode"]["overlapped_with"] == ["segment", "harmony"]
    assert over.encoder is None  # the model built for the run is not kept in the state
    # every report reached the caller, and only in the caller's thread
    assert {name for _, name in threads} == {threading.current_thread().name}
    assert {"load", "segment", "encode", "harmony", "save"} <= {stage for stage, _ in threads}
    assert _chandra_threads() == []


def test_producer_error_is_the_same_one_line_error(tiny_model, synthetic_audio, monkeypatch):
    import chandra.segment
    from chandra.pipeline import RunState, run_all

    def broken(*args, **kwargs):
        raise SegmentationError("no onsets: the signal is one held tone")

    monkeypatch.setattr(chandra.segment, "segment_audio", broken)
    cfg = _neural_config(tiny_model)
    errors = []
    for overlap in (True, False):
        with pytest.raises(ChandraError) as info:
            run_all(RunState(audio_path=str(synthetic_audio), config=cfg), overlap=overlap)
        errors.append(info.value)
    assert type(errors[0]) is type(errors[1]) is SegmentationError
    assert str(errors[0]) == str(errors[1]) == "no onsets: the signal is one held tone"
    assert "\n" not in str(errors[0])
    assert _chandra_threads() == []


def test_forward_error_stops_the_producer(tiny_model, synthetic_audio, monkeypatch):
    from chandra.encoders import Wav2Vec2Encoder
    from chandra.pipeline import RunState, run_all

    def failing(self, y, sr, *, progress=None):
        progress("encode", 0, 3)
        raise EncoderError("model returned 3 frames for 32000 samples")

    monkeypatch.setattr(Wav2Vec2Encoder, "encode_frames", failing)
    state = RunState(audio_path=str(synthetic_audio), config=_neural_config(tiny_model))
    with pytest.raises(EncoderError, match="^model returned 3 frames"):
        run_all(state)
    assert _chandra_threads() == []
    assert state.raw_features is None


def test_producer_relays_and_reraises():
    from chandra.encoders.overlap import Producer

    seen = []
    started = threading.Event()
    release = threading.Event()

    def work(progress):
        progress("segment", 0, 1)
        started.set()
        release.wait(5)
        raise SegmentationError("broken in the producer")

    producer = Producer(work, progress=lambda s, d, t: seen.append((s, threading.current_thread().name)))
    with pytest.raises(SegmentationError, match="broken in the producer"):
        with producer:
            started.wait(5)
            producer.relay("encode", 0, 2)
            release.set()
            while not producer.failed:
                threading.Event().wait(0.01)
            producer.relay("encode", 1, 2)  # raises the producer's error here
    assert seen == [("segment", "MainThread"), ("encode", "MainThread")]
    assert _chandra_threads() == []


def test_onset_envelope_in_blocks_is_librosas(music):
    import librosa

    from chandra.segment import onset_envelope, spectral_frames

    y = music.copy()
    y[: len(y) // 3] *= 1e-5  # a passage 100 dB down: the whole-file 80 dB floor decides its envelope
    mel, _ = spectral_frames(y, SR)
    reference = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=SR, hop_length=HOP)
    for block in (None, 100, 7, 2, 1):  # (1 is raised to 2)
        np.testing.assert_array_equal(onset_envelope(mel, hop_length=HOP, block_frames=block), reference)


# ---------------------------------------------------------------------------
# item 2: pooling beside the forward passes


def _random_segments(rng, n_frames, hop_s, n_seg):
    from types import SimpleNamespace

    edges = np.sort(rng.uniform(0.0, n_frames * hop_s, size=2 * n_seg))
    start, end = edges[0::2], edges[1::2]
    end[::7] = start[::7]  # some segments shorter than a frame hop take the nearest frame
    return SimpleNamespace(start=start, end=end)


@pytest.mark.parametrize("block", [1, 3, 64, 4096])
def test_incremental_pooler_is_pool_frames_bit_for_bit(monkeypatch, block):
    import chandra.encoders.pooling as pooling

    monkeypatch.setattr(pooling, "_POOL_BLOCK", block)
    rng = np.random.default_rng(block)
    n_frames, dim, hop_s = 3000, 5, 0.02
    frames = rng.standard_normal((n_frames, dim)).astype(np.float32)
    times = (np.arange(n_frames) + 0.5) * hop_s
    segments = _random_segments(rng, n_frames, hop_s, 400)
    expected, _ = pooling.pool_frames(frames, times, segments)
    pooler = pooling.IncrementalPooler(times, segments, dim)
    ready, pooled = 0, 0
    for step in rng.integers(1, 400, size=40):  # frames becoming final in uneven steps
        ready = min(n_frames, ready + int(step))
        partial = frames.copy()
        partial[ready:] = np.nan  # rows not final yet: never read
        pooled += pooler.advance(partial, ready)
    pooled += pooler.advance(frames, n_frames)
    assert pooler.done and pooled > 0
    np.testing.assert_array_equal(pooler.mean, expected)
    assert pooler.planned_for(segments, n_frames)
    assert not pooler.planned_for(segments, n_frames + 1)


def test_frame_feed_pools_while_frames_arrive():
    from chandra.encoders.overlap import FrameFeed
    from chandra.encoders.pooling import pool_frames

    rng = np.random.default_rng(3)
    n_frames, dim, hop_s = 20000, 4, 0.02
    frames = np.full((n_frames, dim), np.nan, dtype=np.float32)
    final = rng.standard_normal((n_frames, dim)).astype(np.float32)
    times = (np.arange(n_frames) + 0.5) * hop_s
    segments = _random_segments(rng, n_frames, hop_s, 900)
    feed = FrameFeed()
    out = {}
    worker = threading.Thread(target=lambda: out.update(pooler=feed.pool(segments, None)), name="chandra-test-pool")
    worker.start()
    feed.publish(frames, times, 0)
    for ready in range(1000, n_frames + 1, 1000):
        frames[ready - 1000:ready] = final[ready - 1000:ready]
        feed.publish(frames, times, ready)
    feed.close()
    worker.join(10)
    assert not worker.is_alive()
    pooler = out["pooler"]
    pooler.advance(frames, n_frames)
    np.testing.assert_array_equal(pooler.mean, pool_frames(final, times, segments)[0])


def test_overlapped_run_pools_in_the_producer(tiny_model, synthetic_audio, monkeypatch):
    """The encode stage gets segment means the producer pooled while the forward passes ran
    (many pooling groups, so most are pooled before the last batch), equal to the sequential run's."""
    import chandra.encoders.pooling as pooling
    from chandra.encoders import overlap
    from chandra.pipeline import RunState, run_all

    monkeypatch.setattr(pooling, "_POOL_BLOCK", 8)
    seen = {}
    original = overlap.PrecomputedFrames.encode

    def encode(self, y, sr, segments, *, progress=None):
        seen["pooler"] = self.pooler
        seen["pooled_before_encode"] = getattr(self.pooler, "_next", 0)
        return original(self, y, sr, segments, progress=progress)

    monkeypatch.setattr(overlap.PrecomputedFrames, "encode", encode)
    cfg = _neural_config(tiny_model)
    over = run_all(RunState(audio_path=str(synthetic_audio), config=cfg))
    seq = run_all(RunState(audio_path=str(synthetic_audio), config=cfg), overlap=False)
    assert seen["pooler"] is not None and seen["pooled_before_encode"] > 0
    np.testing.assert_array_equal(over.raw_features, seq.raw_features)
    assert _chandra_threads() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_producer_thread_runs_at_lower_priority(monkeypatch):
    """The producer lowers its own thread's priority (not the process's: the forward passes keep theirs)."""
    from chandra.encoders.overlap import Producer

    seen = {}

    def work(progress):
        seen["producer"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    for env, steps in (("", 10), ("3", 3), ("0", 0), ("junk", 10)):
        monkeypatch.setenv("CHANDRA_PRODUCER_NICE", env)
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with Producer(work):
            pass
        assert seen["producer"] == min(19, before + steps)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert _chandra_threads() == []
