"""The feature cache: a second training with other vocabulary or oracle settings never re-encodes,
the key follows everything that changes the vectors, and a damaged entry is recomputed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_audio import melody, write

from chandra.corpus import collect_inputs, train_corpus
from chandra.encoders import DSPEncoder
from chandra.feature_cache import FeatureCache, default_cache_dir
from chandra.pipeline import TrainConfig, train


@pytest.fixture()
def counted(monkeypatch):
    """Count calls to the dsp encoder (the real one still runs)."""
    calls = []
    real = DSPEncoder.encode

    def encode(self, y, sr, segments, *, progress=None):
        calls.append(len(segments))
        return real(self, y, sr, segments, progress=progress)

    monkeypatch.setattr(DSPEncoder, "encode", encode)
    return calls


@pytest.fixture()
def clips(tmp_path):
    return [write(tmp_path / f"c{k}.wav", melody(14 + 2 * k, seed=k)) for k in range(3)]


def test_a_second_corpus_training_with_another_k_does_not_encode(clips, tmp_path, counted):
    cache = FeatureCache(tmp_path / "cache")
    files = collect_inputs(clips)
    # sequential: the counting encoder lives in this process (pool workers would not see it)
    first = train_corpus(files, TrainConfig(n_tokens=8), cache=cache, audio="none", engine="sequential")
    assert len(counted) == 3 and [a.feature_cache for a in first.state.analyses] == ["miss"] * 3
    for config in (TrainConfig(n_tokens=5), TrainConfig(n_tokens=6, normalisation="standard"),
                   TrainConfig(n_tokens=8, oracle="features", threshold=0.1)):
        again = train_corpus(files, config, cache=cache, audio="none", engine="sequential")
        assert len(counted) == 3, config  # the encoder was not called
        assert [a.feature_cache for a in again.state.analyses] == ["hit"] * 3
        np.testing.assert_array_equal(again.state.raw_features, first.state.raw_features)
    assert cache.info()["entries"] == 3 and cache.info()["by_encoder"] == {"dsp": 3}
    # the model does not depend on the cache
    uncached = train_corpus(files, TrainConfig(n_tokens=5), audio="none")
    cached = train_corpus(files, TrainConfig(n_tokens=5), cache=cache, audio="none")
    assert uncached.model.events == cached.model.events and uncached.model.provenance == cached.model.provenance


def test_the_key_follows_what_changes_the_vectors(clips, tmp_path, counted):
    cache = FeatureCache(tmp_path / "cache")
    train(clips[0], TrainConfig(n_tokens=4), feature_cache=cache)
    assert len(counted) == 1
    train(clips[0], TrainConfig(n_tokens=6, seed=3, reduce_k=True), feature_cache=cache)
    assert len(counted) == 1
    train(clips[0], TrainConfig(n_tokens=4, max_duration=0.5), feature_cache=cache)  # other segments
    assert len(counted) == 2
    train(clips[0], TrainConfig(n_tokens=4, sample_rate=16000), feature_cache=cache)  # other rate
    assert len(counted) == 3
    same_sound = write(tmp_path / "renamed.wav", melody(14, seed=0))  # same bytes, other name: a hit
    train(same_sound, TrainConfig(n_tokens=4), feature_cache=cache)
    assert len(counted) == 3
    write(clips[0], melody(14, seed=7))  # same name, other bytes: a miss
    train(clips[0], TrainConfig(n_tokens=4), feature_cache=cache)
    assert len(counted) == 4


def test_a_damaged_entry_is_recomputed_never_trusted(clips, tmp_path, counted):
    cache = FeatureCache(tmp_path / "cache")
    reference = train(clips[0], TrainConfig(n_tokens=4), feature_cache=cache).state.raw_features
    (npy,) = list((tmp_path / "cache").glob("*/*.npy"))
    meta = npy.with_suffix(".json")
    damages = [
        lambda: npy.write_bytes(npy.read_bytes()[:-8]),                                   # truncated
        lambda: np.save(npy, np.full_like(reference, np.nan)),                            # not finite
        lambda: np.save(npy, reference[:-1]),                                             # wrong shape
        lambda: np.save(npy, reference.astype(np.float64)),                               # wrong dtype
        lambda: np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True),      # a pickle
        lambda: meta.write_text(json.dumps({**json.loads(meta.read_text()), "key": "0" * 64})),  # other key
        lambda: meta.write_text("{" * 100),                                               # not JSON
    ]
    for k, damage in enumerate(damages, start=2):
        damage()
        state = train(clips[0], TrainConfig(n_tokens=4), feature_cache=cache).state
        assert state.feature_cache_status == "invalid" and len(counted) == k, k
        np.testing.assert_array_equal(state.raw_features, reference)
        # the recomputed entry was written back and is good again
        assert train(clips[0], TrainConfig(n_tokens=5), feature_cache=cache).state.feature_cache_status == "hit"
        assert len(counted) == k


def test_cache_info_and_clear_from_the_cli(clips, tmp_path, capsys, monkeypatch):
    from chandra.cli import main

    monkeypatch.setenv("CHANDRA_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "features"
    assert main(["train", str(clips[0]), str(clips[1]), "-o", str(tmp_path / "m.chandra"), "--tokens", "6",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["cache", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == 2 and info["directory"] == str(tmp_path / "root" / "features")
    (tmp_path / "root" / "features" / "keep.txt").write_text("not ours")
    assert main(["cache", "clear"]) == 0
    assert "removed 2 cached feature entries" in capsys.readouterr().out
    assert (tmp_path / "root" / "features" / "keep.txt").exists()
    assert main(["cache", "info"]) == 0
    assert "entries        0" in capsys.readouterr().out
    # --no-cache neither reads nor writes; --cache-dir picks another folder
    assert main(["train", str(clips[0]), "-o", str(tmp_path / "n.chandra"), "--tokens", "6", "--quiet",
                 "--no-cache"]) == 0
    assert FeatureCache.default().info()["entries"] == 0
    assert main(["train", str(clips[0]), "-o", str(tmp_path / "n.chandra"), "--tokens", "6", "--quiet",
                 "--cache-dir", str(tmp_path / "other")]) == 0
    assert FeatureCache(tmp_path / "other").info()["entries"] == 1
