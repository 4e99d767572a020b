"""Respond: a model hears a phrase, finds where it is in its source, and answers."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from chandra.cli import main
from chandra.errors import AudioError, ChandraError, ParameterError, WeightsNotFoundError
from chandra.generate import improvise
from chandra.model import FORMAT_VERSION, load_model
from chandra.oracle import build_factor_oracle
from chandra.pipeline import TrainConfig, train
from chandra.respond import (
    COVERAGE_LEVELS,
    Listener,
    ListenerError,
    _suffix_clusters,
    get_listener,
    list_responses,
    listening_spec,
    match_phrase,
    read_response,
    respond,
    respond_to_wav,
    store_response,
)

from helpers_audio import SR
from helpers_models import save_tiny_wav2vec2
from helpers_respond import cut, noise_bursts, random_melody, write_random_melody

CUTS = [(0, 11), (10, 22), (20, 30), (35, 47)]  # (first, last) event of a phrase cut from the training audio


@pytest.fixture(scope="module")
def melody_wav(tmp_path_factory) -> Path:
    return write_random_melody(tmp_path_factory.mktemp("respond_audio") / "random_melody.wav")


@pytest.fixture(scope="module")
def dsp_model(melody_wav, tmp_path_factory):
    """A dsp model (K = 16, factor oracle) of the random melody, saved and loaded back."""
    path = tmp_path_factory.mktemp("respond_models") / "dsp.chandra"
    train(melody_wav, TrainConfig(n_tokens=16), output=path)
    return load_model(path), path


@pytest.fixture(scope="module")
def tiny_w2v_dir(tmp_path_factory) -> Path:
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("respond_tiny") / "w2v")


@pytest.fixture(scope="module")
def w2v_model(melody_wav, tiny_w2v_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("respond_models") / "w2v.chandra"
    train(melody_wav, TrainConfig(encoder="wav2vec2", model=str(tiny_w2v_dir), n_tokens=8), output=path)
    return load_model(path), path


def _phrase_file(tmp_path: Path, y: np.ndarray, name: str = "phrase.wav") -> Path:
    path = tmp_path / name
    sf.write(str(path), y, SR)
    return path


# --------------------------------------------------------------------------- the model keeps its ears


def test_saved_model_rebuilds_its_vocabulary_exactly_with_standardisation_and_pca(melody_wav, tmp_path):
    result = train(melody_wav, TrainConfig(n_tokens=12, normalisation="standard", pca_components=6),
                   output=tmp_path / "m.chandra")
    model = load_model(tmp_path / "m.chandra")
    assert FORMAT_VERSION == "1.3"
    assert set(model.vocabulary_arrays) == {"norm_mean", "norm_scale", "pca_mean", "pca_components",
                                            "pca_explained_variance_ratio"}
    names = set(json.loads(zipfile.ZipFile(tmp_path / "m.chandra").read("model.json"))["arrays"])
    assert {"vocabulary.norm_mean", "vocabulary.pca_components"} <= names
    listener = Listener(model)
    raw = result.state.raw_features
    assert np.array_equal(listener.vocabulary.transform(raw), model.features)
    assert np.array_equal(listener.vocabulary.predict(raw), model.tokens())
    spec = listening_spec(model)
    assert spec["vocabulary"] == {"normalisation": "standard", "pca_components": 6, "source": "state"}
    assert spec["segmentation"] == {"min_duration": 0.1, "max_duration": 2.0, "hop_length": 512}
    assert spec["encoder"]["name"] == "dsp" and spec["sample_rate"] == 22050


def _rezip(src: Path, dst: Path, *, drop=(), replace=None):
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name not in drop:
                zout.writestr(name, replace.get(name, zin.read(name)))
        for name, data in replace.items():
            if name not in zin.namelist():
                zout.writestr(name, data)


def test_vocabulary_arrays_are_checked_like_every_array(melody_wav, tmp_path):
    import io

    from chandra.errors import ModelFormatError

    train(melody_wav, TrainConfig(n_tokens=8, normalisation="standard"), output=tmp_path / "m.chandra")
    doc = json.loads(zipfile.ZipFile(tmp_path / "m.chandra").read("model.json"))
    # an array name outside the list is refused before anything is read
    evil = dict(doc, arrays={**doc["arrays"], "vocabulary.evil": {"member": "arrays/vocabulary.evil.npy",
                                                                   "dtype": "<f8", "shape": [2]}})
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(2))
    _rezip(tmp_path / "m.chandra", tmp_path / "evil.chandra",
           replace={"model.json": json.dumps(evil), "arrays/vocabulary.evil.npy": buffer.getvalue()})
    with pytest.raises(ModelFormatError, match="unknown array 'vocabulary.evil'"):
        load_model(tmp_path / "evil.chandra")
    # a known name with too many dimensions
    wide = json.loads(json.dumps(doc))
    wide["arrays"]["vocabulary.norm_mean"]["shape"] = [1, 1, 102]
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 1, 102)))
    _rezip(tmp_path / "m.chandra", tmp_path / "wide.chandra",
           replace={"model.json": json.dumps(wide), "arrays/vocabulary.norm_mean.npy": buffer.getvalue()})
    with pytest.raises(ModelFormatError, match="vocabulary.norm_mean"):
        load_model(tmp_path / "wide.chandra")
    # non-finite statistics
    nan = np.full(102, np.nan)
    buffer = io.BytesIO()
    np.save(buffer, nan)
    _rezip(tmp_path / "m.chandra", tmp_path / "nan.chandra", replace={"arrays/vocabulary.norm_mean.npy":
                                                                      buffer.getvalue()})
    with pytest.raises(ModelFormatError, match="non-finite"):
        load_model(tmp_path / "nan.chandra")
    # a 1.1 file (no vocabulary state) still loads
    old = {k: v for k, v in doc.items()}
    old["format_version"] = "1.1"
    old["arrays"] = {k: v for k, v in doc["arrays"].items() if not k.startswith("vocabulary.")}
    old["vocabulary"] = {k: v for k, v in doc["vocabulary"].items() if k != "state"}
    _rezip(tmp_path / "m.chandra", tmp_path / "old.chandra", replace={"model.json": json.dumps(old)},
           drop=[v["member"] for k, v in doc["arrays"].items() if k.startswith("vocabulary.")])
    back = load_model(tmp_path / "old.chandra")
    assert back.vocabulary_arrays == {} and "state" not in back.vocabulary


def _as_older_format(model):
    """The model as a pre-1.3 file holds it: no vocabulary state, no vocabulary arrays."""
    import dataclasses

    vocabulary = {k: v for k, v in model.vocabulary.items() if k != "state"}
    return dataclasses.replace(model, vocabulary=vocabulary, vocabulary_arrays={})


def test_older_l2_model_is_rebuilt_from_its_centres(dsp_model, melody_wav):
    model, _ = dsp_model
    old = _as_older_format(model)
    assert listening_spec(old)["vocabulary"]["source"] == "centres"
    y = random_melody()
    phrase = cut(y, model.events, 10, 22)
    a = Listener(model).hear(phrase, SR)
    b = Listener(old).hear(phrase, SR)
    assert np.array_equal(a.tokens, b.tokens) and np.allclose(a.distances, b.distances)


def test_older_model_with_standardisation_or_pca_says_what_is_missing(melody_wav, tmp_path):
    train(melody_wav, TrainConfig(n_tokens=8, normalisation="standard", pca_components=4), output=tmp_path / "m.chandra")
    old = _as_older_format(load_model(tmp_path / "m.chandra"))
    with pytest.raises(ListenerError) as info:
        Listener(old)
    message = str(info.value)
    assert "standardisation statistics" in message and "PCA" in message and "1.3" in message
    kept = load_model(tmp_path / "m.chandra")
    kept.vocabulary_arrays.pop("pca_components")
    with pytest.raises(ListenerError, match=r"PCA \(pca_mean, pca_components\)"):
        Listener(kept)


def test_musichal_import_cannot_listen():
    from chandra.musichal import load_musichal

    ref = Path(__file__).resolve().parents[2] / "shared" / "reference" / "musichal_base_model_test_error_fix.json"
    if not ref.exists():
        pytest.skip("the reference MusicHal file is not here")
    with pytest.raises(ListenerError, match="MusicHal"):
        Listener(load_musichal(ref))


def test_tokens_that_do_not_follow_the_centres_are_refused(dsp_model):
    import copy

    model, _ = dsp_model
    broken = copy.deepcopy(model)
    for i, event in enumerate(broken.events):
        if i % 3 == 0:
            event["gesture_token"] = (event["gesture_token"] + 1) % 16
    with pytest.raises(ListenerError, match="do not follow"):
        Listener(broken)


def test_missing_encoder_weights_name_the_encoder_and_where_it_looked(w2v_model, tiny_w2v_dir, tmp_path):
    model, _ = w2v_model
    missing = tmp_path / "gone"
    with pytest.raises(WeightsNotFoundError) as info:
        Listener(model, encoder_model=missing)
    message = str(info.value)
    assert "wav2vec2" in message and str(missing) in message and "\n" not in message
    assert info.value.parameter == "encoder_model"
    # the directory the model recorded, moved away: both it and the name are named
    moved = tmp_path / "moved"
    shutil.copytree(tiny_w2v_dir, moved)
    import dataclasses

    prov = json.loads(json.dumps(model.provenance))
    prov["encoder"]["model_path"] = str(tmp_path / "elsewhere")
    prov["encoder"]["model"] = str(tmp_path / "elsewhere_too")
    with pytest.raises(WeightsNotFoundError) as info:
        Listener(dataclasses.replace(model, provenance=prov))
    assert str(tmp_path / "elsewhere") in str(info.value) and str(tmp_path / "elsewhere_too") in str(info.value)
    assert Listener(dataclasses.replace(model, provenance=prov), encoder_model=moved).encoder.model == str(moved)


def test_remote_code_is_never_taken_from_the_model_file(w2v_model):
    import dataclasses

    model, _ = w2v_model
    prov = json.loads(json.dumps(model.provenance))
    prov["encoder"]["trust_remote_code"] = True
    hostile = dataclasses.replace(model, provenance=prov)
    with pytest.raises(ListenerError, match="trust_remote_code=True"):
        Listener(hostile)
    assert Listener(hostile, trust_remote_code=True).encoder.trust_remote_code is True


# --------------------------------------------------------------------------- hearing and matching


@pytest.mark.parametrize("first,last", CUTS)
def test_dsp_phrase_cut_from_the_source_is_matched_to_its_own_position(dsp_model, first, last):
    model, _ = dsp_model
    listener = get_listener(model)
    phrase = listener.hear(cut(random_melody(), model.events, first, last), SR)
    assert len(phrase) == last - first + 1  # segmented as in training
    match = match_phrase(listener, phrase)
    assert match.end_frame == last and match.state == last + 1
    assert match.context >= len(phrase) - 1
    assert match.frames.tolist() == list(range(first, last + 1))
    assert phrase.coverage.count("often") >= len(phrase) // 2


@pytest.mark.parametrize("first,last", CUTS)
def test_wav2vec2_phrase_cut_from_the_source_is_matched_to_its_own_position(w2v_model, first, last):
    model, _ = w2v_model
    listener = get_listener(model)
    phrase = listener.hear(cut(random_melody(), model.events, first, last), SR)
    match = match_phrase(listener, phrase)
    assert match.end_frame == last
    assert match.context >= len(phrase) - 1


@pytest.mark.parametrize("gain_db", [-18.0, -6.0, 6.0])
def test_a_phrase_played_louder_or_softer_is_brought_to_the_training_level(dsp_model, gain_db):
    model, _ = dsp_model
    listener = get_listener(model)
    y = cut(random_melody(), model.events, 10, 22)
    same = listener.hear(y, SR)
    scaled = listener.hear(y * np.float32(10 ** (gain_db / 20)), SR)
    assert scaled.gain_db == pytest.approx(same.gain_db - gain_db, abs=0.01)
    assert np.array_equal(scaled.tokens, same.tokens) and scaled.coverage == same.coverage
    assert match_phrase(listener, scaled).end_frame == 22
    raw = Listener(model, match_level=False).hear(y * np.float32(10 ** (-18 / 20)), SR)
    assert raw.gain_db == 0.0 and raw.coverage_summary()["often"] < same.coverage_summary()["often"]


def test_the_listener_is_built_once_per_model(dsp_model):
    model, _ = dsp_model
    assert get_listener(model) is get_listener(model)


def test_phrase_from_other_music_has_low_coverage_and_still_gets_an_answer(dsp_model):
    model, _ = dsp_model
    own = get_listener(model).hear(cut(random_melody(), model.events, 10, 22), SR)
    response = respond(model, (noise_bursts(3.0), SR), seconds=4.0, seed=0)
    other = response.phrase.coverage_summary()
    assert set(response.phrase.coverage) <= set(COVERAGE_LEVELS)
    assert other["often"] <= 0.2 and other["never"] >= 0.5
    assert own.coverage_summary()["often"] >= 0.5
    assert response.match.context == 0  # nothing in the source matches it
    assert len(response.generation) > 0 and response.y.size > SR
    assert response.generation.summary()["duration_s"] >= 4.0


def test_coverage_follows_its_definition(dsp_model):
    model, _ = dsp_model
    listener = get_listener(model)
    phrase = listener.hear(noise_bursts(2.0), SR)
    for level, count, ratio in zip(phrase.coverage, phrase.token_counts, phrase.ratios):
        if count == 0 or ratio > 2.0:
            assert level == "never"
        elif count < listener.rare_count or ratio > 1.0:
            assert level == "rarely"
        else:
            assert level == "often"


def test_bad_phrases_get_the_training_messages(dsp_model, tmp_path):
    model, _ = dsp_model
    with pytest.raises(AudioError, match="silent"):
        respond(model, (np.zeros(SR * 2, dtype=np.float32), SR))
    with pytest.raises(AudioError, match="at least 0.50 s"):
        respond(model, (random_melody()[: SR // 5], SR))
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="cannot decode"):
        respond(model, bad)
    import dataclasses

    with pytest.raises(ChandraError, match="no source audio"):
        respond(dataclasses.replace(model, audio=None), (random_melody()[: SR * 2], SR))
    with pytest.raises(ParameterError, match="mode"):
        respond(model, (random_melody()[: SR * 2], SR), mode="echo")


# --------------------------------------------------------------------------- query matching, known answers


def _toy_listener(tokens, *, cap=4.0):
    """A listener whose local cost is 0 for the same token and ``cap`` otherwise."""
    tokens = np.asarray(tokens, dtype=np.int64)
    oracle = build_factor_oracle(tokens)

    def local_costs(phrase, first=0):
        q = np.asarray(phrase.tokens[first:])
        return np.where(q[:, None] == tokens[None, :], 0.0, cap)

    return SimpleNamespace(local_costs=local_costs, clusters=_suffix_clusters(oracle), tokens=tokens,
                           oracle_kind="tokens")


class _ToyPhrase:
    name = "toy"

    def __init__(self, tokens):
        self.tokens = np.asarray(tokens, dtype=np.int64)

    def __len__(self):
        return len(self.tokens)


def test_suffix_clusters_of_a_factor_oracle_are_the_tokens():
    tokens = np.array([0, 1, 2, 3, 1, 2, 4, 0, 0, 2])
    clusters = _suffix_clusters(build_factor_oracle(tokens))
    first = {int(t): int(np.flatnonzero(tokens == t)[0]) + 1 for t in np.unique(tokens)}
    assert clusters.tolist() == [first[int(t)] for t in tokens]


@pytest.mark.parametrize("query,frames,moves,context,suffix", [
    # a b c d e a b c x y: "b c x" occurs once, at 6..8
    ([1, 2, 5], [6, 7, 8], ["start", "continue", "continue"], 3, 3),
    # "a b c d" only at 0..3 (a b c also at 5..7)
    ([0, 1, 2, 3], [0, 1, 2, 3], ["start", "continue", "continue", "continue"], 4, 4),
    # a segment heard twice (the phrase split it): stay, a repair inside the run
    ([1, 2, 2, 5], [6, 7, 7, 8], ["start", "continue", "stay", "continue"], 4, 2),
    # a segment missing (the phrase merged it): skip
    ([1, 5, 6], [6, 8, 9], ["start", "skip", "continue"], 3, 2),
    # nothing shared between "d" and "b c x": restart
    ([3, 1, 2, 5], [3, 6, 7, 8], ["start", "restart", "continue", "continue"], 3, 3),
    # a last segment the source never had: the run keeps the context, the suffix is lost
    ([1, 2, 5, 9], [6, 7, 8, 9], ["start", "continue", "continue", "continue"], 3, 0),
])
def test_query_matching_known_answers(query, frames, moves, context, suffix):
    listener = _toy_listener([0, 1, 2, 3, 4, 0, 1, 2, 5, 6])
    match = match_phrase(listener, _ToyPhrase(query))
    assert match.frames.tolist() == frames and match.moves == moves
    assert match.end_frame == frames[-1] and match.context == context and match.suffix_context == suffix


def test_query_matching_jumps_within_a_cluster_and_keeps_the_shared_context():
    # a b c d b c e: "a b c e" -> a b, then a jump from b (frame 1) to c (frame
    # 5, preceded by b: the same cluster), then e; cost 1 (one jump), where a
    # restart would cost 2. (a b c, jump to e costs the same; ties keep the
    # longer final run.)
    listener = _toy_listener([0, 1, 2, 3, 1, 2, 4])
    match = match_phrase(listener, _ToyPhrase([0, 1, 2, 4]))
    assert match.frames.tolist() == [0, 1, 5, 6]
    assert match.moves == ["start", "continue", "jump", "continue"]
    assert match.total_cost == 1.0 and match.run_length == 2 and match.context == 2
    assert match.suffix_context == 3 and match.token_context == 3  # "b c e" ends at frame 6 in the source


def test_query_matching_uses_only_the_last_segments():
    listener = _toy_listener([0, 1, 2, 3, 4, 0, 1, 2, 5, 6])
    match = match_phrase(listener, _ToyPhrase([3, 4, 0, 1, 2, 5]), max_segments=3)
    assert match.first_segment == 3 and match.frames.tolist() == [6, 7, 8]


# --------------------------------------------------------------------------- answering


def test_continue_picks_up_where_the_phrase_leaves_off(dsp_model):
    model, _ = dsp_model
    response = respond(model, (cut(random_melody(), model.events, 10, 22), SR), continuity=1.0, seconds=2.0)
    frames = response.generation.frames.tolist()
    assert frames[:5] == [23, 24, 25, 26, 27]
    assert response.generation.steps[0]["from_frame"] == 22
    assert not set(frames[:40]) & set(range(10, 23))  # the matched frames are in the taboo history


def test_imitate_follows_the_phrase_tokens_more_than_continue(dsp_model):
    model, _ = dsp_model
    phrase = get_listener(model).hear(cut(random_melody(), model.events, 20, 30), SR)
    agreement = {mode: [respond(model, phrase, mode=mode, seconds=6.0, seed=seed).follow()["guide_agreement"]
                        for seed in range(4)] for mode in ("continue", "imitate")}
    assert np.mean(agreement["imitate"]) >= np.mean(agreement["continue"]) + 0.2
    assert min(agreement["imitate"]) > max(agreement["continue"])


def test_contrast_plays_fewer_of_the_phrase_tokens_than_continue(dsp_model):
    model, _ = dsp_model
    phrase = get_listener(model).hear(cut(random_melody(), model.events, 20, 30), SR)
    share = {mode: np.mean([respond(model, phrase, mode=mode, seconds=6.0, seed=seed).follow()["phrase_token_share"]
                            for seed in range(4)]) for mode in ("continue", "contrast")}
    assert share["contrast"] < share["continue"]
    response = respond(model, phrase, mode="contrast", seconds=2.0)
    preferred = response.params["contrast_tokens"]
    assert preferred and not set(preferred) & set(phrase.tokens.tolist())


def test_same_seed_gives_identical_bytes(dsp_model, tmp_path):
    model, _ = dsp_model
    phrase = _phrase_file(tmp_path, cut(random_melody(), model.events, 10, 22))
    for mode in ("continue", "imitate", "contrast"):
        a = respond_to_wav(model, phrase, tmp_path / f"a_{mode}.wav", mode=mode, seed=3, seconds=4.0)
        b = respond_to_wav(load_model(dsp_model[1]), phrase, tmp_path / f"b_{mode}.wav", mode=mode, seed=3,
                           seconds=4.0)
        assert (tmp_path / f"a_{mode}.wav").read_bytes() == (tmp_path / f"b_{mode}.wav").read_bytes()
        assert a.generation.frames.tolist() == b.generation.frames.tolist()
    other = respond(model, phrase, mode="continue", seed=4, seconds=4.0, continuity=0.5)
    assert other.generation.frames.tolist() != respond(model, phrase, seed=3, seconds=4.0,
                                                       continuity=0.5).generation.frames.tolist()


# --------------------------------------------------------------------------- improvise's new options


def _toy_model(tokens):
    from chandra.model import Model

    tokens = list(tokens)
    events = [{"t": float(i), "duration": 1.0, "gesture_token": int(k)} for i, k in enumerate(tokens)]
    return Model(events=events, features=np.eye(max(tokens) + 1, dtype=np.float32)[tokens],
                 oracle=build_factor_oracle(tokens))


def test_improvise_after_begins_in_a_state_without_a_start_step():
    model = _toy_model([0, 1, 2, 3, 0, 1, 2, 4, 0, 1, 2, 3])
    gen = improvise(model, n_frames=3, after=5, continuity=1.0)
    assert gen.frames.tolist() == [5, 6, 7] and gen.steps[0]["kind"] == "forward"
    assert gen.steps[0]["from_frame"] == 4 and gen.params["after"] == 5
    end = improvise(model, n_frames=2, after=12, seed=0)  # the end of the source: a restart
    assert end.steps[0]["kind"] == "restart"
    with pytest.raises(ParameterError, match="at most one of start and after"):
        improvise(model, n_frames=2, start=0, after=3)
    with pytest.raises(ParameterError, match="after must be"):
        improvise(model, n_frames=2, after=0)


def test_improvise_history_is_taboo_at_first():
    model = _toy_model([0, 1, 2, 3, 0, 1, 2, 4, 0, 1, 2, 3])
    gen = improvise(model, n_frames=1, after=4, continuity=1.0, history=[4, 5, 6], taboo=8)
    assert gen.frames[0] not in (4, 5, 6) and gen.params["history"] == [4, 5, 6]
    with pytest.raises(ParameterError, match="history"):
        improvise(model, n_frames=2, history=[99])


def test_improvise_guide_plays_the_guide_tokens_when_it_can():
    tokens = [0, 1, 2, 3, 4, 5] * 4
    model = _toy_model(tokens)
    guide = [5, 3, 1]
    gen = improvise(model, n_frames=12, guide=guide, seed=0, taboo=4)
    played = [tokens[f] for f in gen.frames[1:]]
    assert played == [guide[(t + 1) % 3] for t in range(11)]
    with pytest.raises(ParameterError, match="guide"):
        improvise(model, n_frames=2, guide=[])
    assert improvise(model, n_frames=12, guide=guide, seed=0, taboo=4).frames.tolist() == gen.frames.tolist()


# --------------------------------------------------------------------------- kept pairs


def test_store_list_and_read_response(dsp_model, tmp_path):
    model, path = dsp_model
    phrase_path = _phrase_file(tmp_path, cut(random_melody(), model.events, 10, 22))
    response = respond(model, phrase_path, seconds=3.0)
    folder = tmp_path / "responses"
    record = store_response(folder, response, phrase_bytes=phrase_path.read_bytes(), phrase_name="my phrase.wav",
                            model_path=path)
    doc = read_response(record)
    assert doc["summary"]["match"]["end_frame"] == 22 and doc["phrase_name"] == "my_phrase.wav"
    assert (folder / doc["phrase_file"]).read_bytes() == phrase_path.read_bytes()
    y, sr = sf.read(str(folder / doc["answer_file"]), dtype="float32")
    assert sr == model.sample_rate and abs(len(y) - len(response.y)) == 0
    assert store_response(folder, response, phrase_bytes=phrase_path.read_bytes(), phrase_name="my phrase.wav",
                          model_path=path) == record  # the same request keeps one pair
    listed = list_responses(folder)
    assert [d["id"] for d in listed] == [doc["id"]]
    assert not [p for p in folder.iterdir() if p.name.endswith(".chandra-tmp")]
    hostile = dict(doc, phrase_file="../../etc/passwd")
    (folder / "resp_hostile.json").write_text(json.dumps(hostile))
    with pytest.raises(ChandraError, match="not a file name"):
        read_response(folder / "resp_hostile.json")
    assert [d["id"] for d in list_responses(folder)] == [doc["id"]]


# --------------------------------------------------------------------------- CLI


def test_cli_respond_json(dsp_model, tmp_path, capsys):
    _, model_path = dsp_model
    phrase = _phrase_file(tmp_path, cut(random_melody(), load_model(model_path).events, 20, 30))
    out = tmp_path / "answer.wav"
    assert main(["respond", str(model_path), str(phrase), "-o", str(out), "--seconds", "3", "--mode", "imitate",
                 "--seed", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "imitate" and doc["match"]["end_frame"] == 30 and doc["match"]["state"] == 31
    assert doc["match"]["context"] >= 10
    assert [s["token"] for s in doc["phrase"]["segments"]] and doc["phrase"]["coverage"]["n_segments"] == 11
    assert doc["generation"]["n_frames"] > 0 and sf.info(str(out)).duration >= 3.0
    assert main(["respond", str(model_path), str(phrase), "-o", str(out), "--seconds", "3"]) == 0
    text = capsys.readouterr().out
    assert "matched     frame 30" in text and "coverage" in text


def test_cli_respond_errors_are_one_line(dsp_model, tmp_path, capsys):
    _, model_path = dsp_model
    silent = _phrase_file(tmp_path, np.zeros(SR, dtype=np.float32), "silent.wav")
    phrase = _phrase_file(tmp_path, random_melody()[: 2 * SR])
    capsys.readouterr()
    for argv, fragment in [
        (["respond", model_path, silent, "-o", tmp_path / "a.wav"], "silent"),
        (["respond", model_path, phrase, "-o", phrase], "refusing to overwrite"),
        (["respond", tmp_path / "nope.chandra", phrase, "-o", tmp_path / "b.wav"], "no such file"),
        (["respond", model_path, phrase, "-o", tmp_path / "c.wav", "--seconds", "0"], "--seconds"),
    ]:
        assert main([str(a) for a in argv]) == 1
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err and err.startswith("chandra respond: error:")
