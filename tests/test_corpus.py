"""Training on a corpus of takes: inputs, provenance per event, one vocabulary, an oracle that
never continues from one take into the next, per-take audio in the model or by reference, and a
one-file training that stays what it was."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers_audio import SR, melody, tone_bursts, write, write_takes

from chandra.corpus import (
    CorpusFile,
    analyse_file,
    attach_audio,
    build_corpus,
    collect_inputs,
    read_manifest,
    train_corpus,
)
from chandra.errors import ChandraError, ModelFormatError
from chandra.io_utils import sha256_file
from chandra.model import Model, load_model, save_model
from chandra.pipeline import TrainConfig, train

DATA = Path(__file__).parent / "data"


def _write_takes(folder: Path) -> list[Path]:
    """Three short takes: different melodies over a shared scale, one of them at 44.1 kHz."""
    return write_takes(folder)


@pytest.fixture(scope="session")
def takes(tmp_path_factory) -> list[Path]:
    return _write_takes(tmp_path_factory.mktemp("takes") / "session")


@pytest.fixture(scope="session")
def corpus(takes, tmp_path_factory):
    """The three takes trained into one model (dsp, K = 8), through a feature cache."""
    from chandra.feature_cache import FeatureCache

    out = tmp_path_factory.mktemp("corpus") / "corpus.chandra"
    cache = FeatureCache(tmp_path_factory.mktemp("features"))
    result = train_corpus(collect_inputs([takes[0].parent]), TrainConfig(n_tokens=8), output=out, cache=cache)
    return result, out, cache


# --------------------------------------------------------------------------- one file unchanged


@pytest.mark.parametrize("name, extra", [("one_file_before_corpus", {}),
                                         ("one_file_before_corpus_ao", {"oracle": "features", "threshold": 0.02})])
def test_one_file_training_is_what_it_was_before_corpora(tmp_path, name, extra):
    # The reference models were trained by chandra before corpus support (tests/data/README.md).
    wav = write(tmp_path / "take.wav", melody(24, seed=3))
    before = load_model(DATA / f"{name}.chandra")
    result = train(wav, TrainConfig(n_tokens=8, embed_audio=False, **extra), output=tmp_path / "now.chandra")
    now = load_model(tmp_path / "now.chandra")
    assert now.events == before.events
    np.testing.assert_array_equal(now.features, before.features)
    np.testing.assert_array_equal(now.centers, before.centers)
    for key, array in before.oracle.to_arrays().items():
        np.testing.assert_array_equal(now.oracle.to_arrays()[key], array)
    assert now.oracle.take_starts is None and not now.is_corpus and "take" not in now.events[0]
    assert now.ledger == before.ledger
    for section in set(before.provenance) | set(now.provenance):
        if section == "input":  # the file now lies elsewhere; its content is the same
            assert now.provenance["input"]["sha256"] == before.provenance["input"]["sha256"]
        elif section == "config":
            # options added since (neural device, int8, oracle search) carry their defaults, and the
            # neural batch size became "sized for the device" (None); a dsp training uses neither
            now_config, before_config = dict(now.provenance["config"]), dict(before.provenance["config"])
            assert {key: now_config.pop(key) for key in ("device", "quantize", "oracle_search")} == {
                "device": "auto", "quantize": "none", "oracle_search": "auto"}
            assert now_config.pop("batch_size") is None and before_config.pop("batch_size") == 2
            assert now_config == before_config
        elif section == "oracle":  # and the oracle records how its matches were searched
            now_oracle = dict(now.provenance["oracle"])
            searched = {key: now_oracle.pop(key) for key in ("search", "search_configured")}
            assert searched["search_configured"] == "auto"
            if extra.get("oracle") == "features":  # a few frames: the exact search
                assert searched["search"]["mode"] == "exact"
            else:
                assert searched["search"] is None
            assert now_oracle == before.provenance["oracle"]
        elif section != "vocabulary":
            assert now.provenance[section] == before.provenance[section], section
    # the vocabulary gained its (recorded) K-means flavour and its fitted state (format 1.3, so that
    # the model can hear new audio; an l2 vocabulary without PCA needs no arrays), and nothing else
    assert now.vocabulary.pop("state")["n_tokens_"] == 8 and now.vocabulary_arrays == {}
    assert "state" not in before.vocabulary
    params = now.vocabulary["params"]
    assert params.pop("algorithm") == "auto" and params == before.vocabulary["params"]
    assert now.provenance["vocabulary"]["effective"].pop("algorithm") == "full"
    assert now.provenance["vocabulary"] == before.provenance["vocabulary"]
    doc = json.loads(zipfile.ZipFile(tmp_path / "now.chandra").read("model.json"))
    assert doc["format_version"] == "1.3" and "audio" not in doc
    assert not any(name.startswith("vocabulary.") for name in doc["arrays"])
    # the one finding is the later check of a vocabulary too large for 24 segments (K = 8)
    assert [f["code"] for f in result.findings] == ["SPARSE_VOCABULARY"]


def test_old_one_file_models_with_an_audio_array_load_and_generate(tmp_path):
    from chandra.generate import generate_to_wav

    model = load_model(DATA / "one_file_before_corpus.chandra")
    model.audio, model.sample_rate = melody(24, seed=3), SR
    save_model(model, tmp_path / "old.chandra")
    with zipfile.ZipFile(tmp_path / "old.chandra") as zf:
        assert "arrays/audio.npy" in zf.namelist()
        assert json.loads(zf.read("model.json"))["format_version"] == "1.1"
    back = load_model(tmp_path / "old.chandra")
    assert back.files()[0]["sha256"] == model.provenance["input"]["sha256"] and back.take_offsets().tolist() == [
        0, len(model.audio)]
    generation = generate_to_wav(back, tmp_path / "out.wav", n_frames=40, seed=1)
    assert len(generation) == 40 and generation.takes is None
    assert sf.info(str(tmp_path / "out.wav")).frames > 0


# --------------------------------------------------------------------------- inputs


def test_collect_inputs_expands_folders_sorted_and_keeps_argument_order(tmp_path):
    root = tmp_path / "session"
    (root / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for rel in ("b/02.flac", "b/01.WAV", "a.mp3", "notes.txt", "._a.wav", ".hidden/x.wav"):
        (root / rel).write_bytes(b"x")
    lone = tmp_path / "lone.ogg"
    lone.write_bytes(b"x")
    files = collect_inputs([lone, root, root / "a.mp3"])
    assert [Path(f.path).relative_to(tmp_path).as_posix() for f in files] == [
        "lone.ogg", "session/a.mp3", "session/b/01.WAV", "session/b/02.flac"]
    with pytest.raises(ChandraError, match="no such file or folder"):
        collect_inputs([tmp_path / "missing.wav"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ChandraError, match="holds no audio files"):
        collect_inputs([tmp_path / "empty"])
    with pytest.raises(ChandraError, match="no audio given"):
        collect_inputs([])


def test_manifest_with_labels_relative_paths_and_one_line_errors(takes, tmp_path):
    folder = tmp_path / "sessions"
    folder.mkdir()
    for path in takes:
        shutil.copy(path, folder / path.name)
    manifest = folder / "corpus.csv"
    manifest.write_text("path,label\n# the rehearsal\ntake2.wav,\"slow, soft\"\n\ntake0.wav\n"
                        "take1.wav,fast\n", encoding="utf-8")
    files = read_manifest(manifest)
    assert files == [CorpusFile(str(folder / "take2.wav"), "slow, soft"), CorpusFile(str(folder / "take0.wav"), None),
                     CorpusFile(str(folder / "take1.wav"), "fast")]
    result = train_corpus(files, TrainConfig(n_tokens=6), output=tmp_path / "m.chandra", audio="none")
    model = load_model(tmp_path / "m.chandra")
    assert [row["label"] for row in model.files()] == ["slow, soft", None, "fast"]
    assert [row["name"] for row in model.files()] == ["take2.wav", "take0.wav", "take1.wav"]
    assert model.audio is None and model.provenance["audio"] == {"storage": "none"}
    from chandra.inspect import format_report, inspect_model

    report = inspect_model(tmp_path / "m.chandra")
    assert [row["label"] for row in report["files"]] == ["slow, soft", None, "fast"]
    assert "slow, soft" in format_report(report) and result.summary()["files"][2]["label"] == "fast"

    bad = folder / "bad.csv"
    for text, message in (("take0.wav\nmissing.wav\n", "line 2: .*no such file"),
                          ("take0.wav,a,b\n", "line 1: expected path\\[,label\\], got 3 columns"),
                          ("take0.wav\ntake0.wav\n", "line 2: .* already in the manifest"),
                          ("# nothing\n", "names no audio files")):
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ChandraError, match=message):
            read_manifest(bad)
    bad.write_bytes(b"take0.wav\n\xff\xfe\n")
    with pytest.raises(ChandraError, match="not UTF-8"):
        read_manifest(bad)


def test_manifest_size_is_bounded(tmp_path, monkeypatch):
    import chandra.corpus as corpus_module

    manifest = tmp_path / "big.csv"
    manifest.write_text("a.wav\n" * 100, encoding="utf-8")
    monkeypatch.setattr(corpus_module, "MANIFEST_MAX_BYTES", 64)
    with pytest.raises(ChandraError, match="exceeds the 64-byte limit"):
        read_manifest(manifest)


# --------------------------------------------------------------------------- provenance per event


def test_every_event_knows_its_take_and_its_time_in_it_through_save_load_and_export(corpus, takes, tmp_path):
    from chandra.inspect import inspect_model
    from chandra.musichal import export_musichal

    result, path, _ = corpus
    saved = load_model(path)
    durations = [sf.info(str(p)).duration for p in takes]
    rows = saved.files()
    assert [row["path"] for row in rows] == [str(p) for p in takes]
    assert [row["sha256"] for row in rows] == [sha256_file(p) for p in takes]
    assert [row["sample_rate"] for row in rows] == [SR, 44100, SR]
    assert [row["label"] for row in rows] == [None, None, None]
    assert np.allclose([row["duration"] for row in rows], durations, atol=1e-3)
    assert [row["n_events"] for row in rows] == [int(np.sum(saved.takes() == k)) for k in range(3)]

    export = tmp_path / "corpus.json"
    export_musichal(saved, export)
    doc = json.loads(export.read_text())
    reimported = load_model(export)
    for events in (result.model.events, saved.events, reimported.events):
        takes_seen = [e["take"] for e in events]
        assert takes_seen == sorted(takes_seen) and set(takes_seen) == {0, 1, 2}
        for e in events:
            assert 0.0 <= e["t"] <= durations[e["take"]] and e["t"] + e["duration"] <= durations[e["take"]] + 1e-3
    # t restarts at every take: it is never a corpus-global or wall-clock time
    firsts = [next(e for e in saved.events if e["take"] == k)["t"] for k in range(3)]
    assert firsts == [0.0, 0.0, 0.0]
    frames = [doc["audio_frames"][str(i)] for i in range(saved.n_frames)]
    assert [f["audio_data"]["take"] for f in frames] == saved.takes().tolist()
    assert [f["audio_data"]["source_file"] for f in frames] == [rows[t]["path"] for t in saved.takes()]
    assert [f["timestamp"] for f in frames] == [e["t"] for e in saved.events]
    assert reimported.events == saved.events and reimported.files() == saved.files()
    np.testing.assert_array_equal(reimported.oracle.take_starts, saved.oracle.take_starts)
    from chandra.musichal_conformance import check_musichal_conformance

    assert check_musichal_conformance(doc) == []

    # the ledger counts every field per stage and per file
    stages = [e["stage"] for e in saved.ledger]
    assert stages == ["segments", "features", "normalised", "tokens", "events", "oracle", "saved", "reloaded"]
    for entry in saved.ledger:
        per_file = entry["per_file"]
        assert [item["take"] for item in per_file] == [0, 1, 2]
        assert sum(item["n_records"] for item in per_file) == entry["n_records"]
        for name, info in entry["fields"].items():
            assert sum(item["fields"][name] for item in per_file) == info["present"], (entry["stage"], name)
        assert entry["time"]["per_take"] and entry["time"]["monotonic"] and entry["time"]["fraction_in_range"] == 1.0
    tokens = next(e for e in saved.ledger if e["stage"] == "tokens")
    assert all(len(item["tokens"]["counts"]) == 8 for item in tokens["per_file"])
    report = inspect_model(path)
    assert [row["frames"] for row in report["files"]] == [row["n_events"] for row in rows]
    assert report["audio"] == "embedded" and report["findings"] == []
    assert saved.vocabulary["per_file"]["unique"] == [item["tokens"]["unique"] for item in tokens["per_file"]]


def test_a_field_lost_in_one_take_is_found_and_named(corpus):
    from chandra.findings import FIELD_LOST, ledger_findings

    _, path, _ = corpus
    model = load_model(path)
    events = [dict(e) for e in model.events]
    for e in events:
        if e["take"] == 1:
            e.pop("consonance")
    from chandra.ledger import ledger_entry, add_per_file

    durations = [row["duration"] for row in model.files()]
    broken = add_per_file(ledger_entry("saved", events, duration=max(durations)), events, takes=model.takes(),
                          durations=durations)
    ledger = [e for e in model.ledger if e["stage"] in ("events",)] + [broken]
    lost = [f for f in ledger_findings(ledger) if f.code == FIELD_LOST and f.evidence["field"] == "consonance"]
    assert len(lost) == 1 and lost[0].evidence["takes"] == [1] and "take(s) 1" in lost[0].message


# --------------------------------------------------------------------------- the oracle across takes


def test_generation_never_continues_from_one_take_into_the_next(corpus):
    from chandra.generate import improvise

    _, path, _ = corpus
    model = load_model(path)
    starts = model.oracle.take_starts.tolist()
    assert starts[0] == 0 and len(starts) == 3
    ends = set(starts[1:])
    changes = 0
    for seed, taboo in ((0, 0), (1, 8), (2, 64)):
        generation = improvise(model, n_frames=1000, seed=seed, taboo=taboo)
        frames = generation.frames
        crossing = np.flatnonzero((np.diff(frames) == 1) & np.isin(frames[1:], list(ends)))
        assert crossing.size == 0, [generation.steps[int(i) + 1] for i in crossing[:3]]
        for step in generation.steps:
            if step["kind"] == "forward":
                assert step["frame"] not in ends
        takes = model.takes()[frames]
        np.testing.assert_array_equal(generation.takes, takes)
        changes += int(np.count_nonzero(np.diff(takes)))
        assert any(s["kind"] == "restart" and (s["reason"] or "").startswith("end of take") for s in generation.steps)
        summary = generation.summary()
        assert summary["takes_played"] == 3
        entry = generation.ledger_entry(model)
        assert [item["n_records"] for item in entry["per_file"]] == np.bincount(takes, minlength=3).tolist()
        assert entry["time"]["fraction_in_range"] == 1.0
    assert changes > 0  # the takes are joined by shared context: the walk moves between them


def test_oracle_contexts_stop_at_take_starts_and_the_checks_see_a_crossing(corpus):
    from chandra.oracle import Oracle, check_oracle

    _, path, _ = corpus
    model = load_model(path)
    oracle = model.oracle
    tokens = model.tokens()
    assert check_oracle(oracle, symbols=tokens) == []
    starts = oracle.take_starts
    n = oracle.n_frames
    first = starts[np.searchsorted(starts, np.arange(n), side="right") - 1]
    pos = np.concatenate(([0], np.arange(n) - first + 1))
    assert np.all(oracle.lrs <= pos) and np.all(oracle.lrs[1:] <= pos[oracle.rep[1:]])
    for b in starts[1:]:
        assert b + 1 not in oracle.transitions(int(b)).tolist()
    # the same graph without its take starts reads as broken ...
    plain = Oracle(kind="tokens", sfx=oracle.sfx, lrs=oracle.lrs, trn_ptr=oracle.trn_ptr, trn_dst=oracle.trn_dst,
                   rep=oracle.rep)
    assert {v["code"] for v in check_oracle(plain, symbols=tokens)} >= {"missing_direct_transition"}
    # ... and a plain oracle with take starts claimed is one that crosses them
    from chandra.oracle import build_factor_oracle

    joined = build_factor_oracle(tokens)
    claimed = Oracle(kind="tokens", sfx=joined.sfx, lrs=joined.lrs, trn_ptr=joined.trn_ptr, trn_dst=joined.trn_dst,
                     rep=joined.rep, take_starts=starts)
    assert "transition_across_takes" in {v["code"] for v in check_oracle(claimed, symbols=tokens)}


def test_audio_oracle_over_takes(takes, tmp_path):
    from chandra.generate import improvise
    from chandra.oracle import check_oracle

    result = train_corpus(takes, TrainConfig(n_tokens=8, oracle="features", threshold=0.05),
                          output=tmp_path / "ao.chandra")
    model = load_model(tmp_path / "ao.chandra")
    assert model.oracle.kind == "features" and model.oracle.take_starts.tolist() == [
        row["first_event"] for row in model.files()]
    assert [v for v in check_oracle(model.oracle, features=model.features) if v["severity"] == "error"] == []
    ends = set(model.oracle.take_starts[1:].tolist())
    frames = improvise(model, n_frames=600, seed=3).frames
    assert not np.any((np.diff(frames) == 1) & np.isin(frames[1:], list(ends)))
    assert result.findings == [] or all(f["severity"] != "error" for f in result.findings)


def test_resynthesis_cuts_each_frame_from_its_own_take(corpus, takes):
    from chandra.audio import load_audio
    from chandra.generate import Generation, frame_bounds, resynthesise
    from chandra.model import quantize_audio

    _, path, _ = corpus
    model = load_model(path)
    signals = [quantize_audio(load_audio(p, sr=SR)[0]) for p in takes]
    offsets = model.take_offsets()
    assert offsets.tolist() == np.concatenate(([0], np.cumsum([len(s) for s in signals]))).tolist()
    starts, ends = frame_bounds(model)
    for i, event in enumerate(model.events):
        k = event["take"]
        a = int(round(event["t"] * SR))
        np.testing.assert_array_equal(model.audio[starts[i]:ends[i]], signals[k][a:a + ends[i] - starts[i]])
        assert offsets[k] <= starts[i] <= ends[i] <= offsets[k + 1]
    # the last frame of take 0 then the first of take 1: two runs, never one slice across the boundary
    b = int(model.oracle.take_starts[1])
    pair = Generation(frames=np.array([b - 1, b]), steps=[], jumps=np.zeros(0, np.int64), fallbacks=[])
    y, _ = resynthesise(model, pair, crossfade_ms=0.0)
    np.testing.assert_allclose(y[:ends[b - 1] - starts[b - 1]], model.audio[starts[b - 1]:ends[b - 1]], atol=1e-6)
    np.testing.assert_allclose(y[ends[b - 1] - starts[b - 1]:], model.audio[starts[b]:ends[b]], atol=1e-6)


# --------------------------------------------------------------------------- audio in the model


def test_take_audio_is_stored_as_flac_exactly_and_checked_before_decoding(corpus, tmp_path):
    _, path, _ = corpus
    model = load_model(path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        doc = json.loads(zf.read("model.json"))
    assert doc["format_version"] == "1.3" and "audio" not in doc["arrays"]  # 1.2 corpus, 1.3 vocabulary state
    assert [t["member"] for t in doc["audio"]["takes"]] == [f"audio/take-{k:06d}.flac" for k in range(3)]
    assert all(m in names for m in (t["member"] for t in doc["audio"]["takes"]))
    size = sum(zipfile.ZipFile(path).getinfo(t["member"]).file_size for t in doc["audio"]["takes"])
    assert size < model.audio.nbytes / 2  # FLAC saves space ...
    save_model(model, tmp_path / "again.chandra")
    np.testing.assert_array_equal(load_model(tmp_path / "again.chandra").audio, model.audio)  # ... exactly

    def rewrite(change) -> Path:
        out = tmp_path / "hostile.chandra"
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "model.json":
                    document = json.loads(data)
                    change(document)
                    data = json.dumps(document).encode()
                dst.writestr(info, data)
        return out

    def frames(value):
        return lambda d: d["audio"]["takes"][1].update(frames=value)

    for change, message in ((frames(10), "declares .* frames; the model says .* 10 frames"),
                            (frames(10**9), "beyond the 64x a FLAC member may expand"),
                            (lambda d: d["audio"]["takes"][0].update(member="audio/take-000001.flac"),
                             "must name member 'audio/take-000000.flac'"),
                            (lambda d: d.update(sample_rate=44100), "at 22050 Hz"),
                            (lambda d: d["audio"]["takes"].pop(), "the file table declares [0-9]+ samples of audio; the model holds")):
        with pytest.raises(ModelFormatError, match=message):
            load_model(rewrite(change))


def test_a_flac_member_that_is_not_flac_is_refused(corpus, tmp_path):
    _, path, _ = corpus
    out = tmp_path / "junk.chandra"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "audio/take-000002.flac":
                data = bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8))
            dst.writestr(info, data)
    with pytest.raises(ModelFormatError, match="audio member 'audio/take-000002.flac' is not a readable FLAC"):
        load_model(out)


def test_audio_off_the_24_bit_grid_is_stored_as_npy_not_rounded(corpus, tmp_path):
    _, path, _ = corpus
    model = load_model(path)
    model.audio = model.audio + np.float32(1e-9)  # no longer on the 24-bit grid
    save_model(model, tmp_path / "fine.chandra")
    with zipfile.ZipFile(tmp_path / "fine.chandra") as zf:
        assert {t["encoding"] for t in json.loads(zf.read("model.json"))["audio"]["takes"]} == {"npy"}
    np.testing.assert_array_equal(load_model(tmp_path / "fine.chandra").audio, model.audio)


def test_a_corpus_model_must_agree_with_its_file_table(corpus):
    _, path, _ = corpus
    model = load_model(path)
    events = [dict(e) for e in model.events]
    events[3]["take"] = 2
    with pytest.raises(ModelFormatError, match="event 3 has take 2; the file table puts it in take 0"):
        Model(events=events, features=model.features, oracle=model.oracle, provenance=model.provenance,
              audio=model.audio, sample_rate=model.sample_rate).validate()
    rows = [dict(r) for r in model.provenance["files"]]
    rows[1]["sha256"] = "not a hash"
    with pytest.raises(ModelFormatError, match="row 1 field 'sha256'"):
        Model(events=model.events, features=model.features, oracle=model.oracle,
              provenance={**model.provenance, "files": rows}).validate()


# --------------------------------------------------------------------------- referenced audio


def test_referenced_audio_is_found_by_hash_and_a_missing_or_changed_file_is_a_clear_error(takes, tmp_path):
    from chandra.cli import main

    folder = tmp_path / "rehearsal"
    copies = []
    for p in takes:
        folder.mkdir(exist_ok=True)
        copies.append(Path(shutil.copy(p, folder / p.name)))
    out = tmp_path / "ref.chandra"
    train_corpus(copies, TrainConfig(n_tokens=8), output=out, audio="reference")
    with zipfile.ZipFile(out) as zf:
        assert not [n for n in zf.namelist() if n.startswith("audio/") or n == "arrays/audio.npy"]
    model = load_model(out)
    assert model.audio is None and model.provenance["audio"] == {"storage": "reference"}
    with pytest.raises(ModelFormatError, match="references its audio files"):
        model.validate(require=("audio",))
    attach_audio(model, model_path=out)
    embedded = train_corpus(copies, TrainConfig(n_tokens=8)).model
    np.testing.assert_allclose(model.audio, embedded.audio, atol=2 ** -23)

    moved = tmp_path / "elsewhere"
    shutil.move(str(folder), moved)
    with pytest.raises(ChandraError, match=r"take 0 '.*take0\.wav': referenced audio file not found"):
        attach_audio(load_model(out), model_path=out)
    assert attach_audio(load_model(out), model_path=out, search=[moved]).audio is not None
    write(moved / "take1.wav", melody(18, seed=9), sr=44100)
    with pytest.raises(ChandraError, match=r"take 1 '.*take1\.wav': the file at .* has changed since training"):
        attach_audio(load_model(out), model_path=out, search=[moved])
    code = main(["generate", str(out), "-o", str(tmp_path / "gen.wav"), "--seconds", "2"])
    assert code == 1 and not (tmp_path / "gen.wav").exists()


def test_cli_generate_finds_referenced_audio_in_audio_dir(takes, tmp_path, capsys):
    from chandra.cli import main

    out = tmp_path / "ref.chandra"
    assert main(["train", *map(str, takes), "-o", str(out), "--tokens", "8", "--audio", "reference",
                 "--quiet", "--no-cache"]) == 0
    assert "audio reference" in capsys.readouterr().out
    assert main(["generate", str(out), "-o", str(tmp_path / "gen.wav"), "--seconds", "3",
                 "--audio-dir", str(takes[0].parent)]) == 0
    assert sf.info(str(tmp_path / "gen.wav")).duration > 2.0


# --------------------------------------------------------------------------- vocabulary across takes


def test_one_vocabulary_fitted_on_every_segment_with_token_usage_per_take(corpus):
    result, _, _ = corpus
    state = result.state
    assert state.raw_features.shape[0] == sum(a.n_segments for a in state.analyses) == result.model.n_frames
    assert state.vocabulary.n_samples_fit_ == result.model.n_frames
    usage = result.model.vocabulary["per_file"]
    counts = np.asarray(usage["counts"])
    assert counts.shape == (3, 8) and counts.sum() == result.model.n_frames
    np.testing.assert_array_equal(counts.sum(axis=1), [a.n_segments for a in state.analyses])
    assert usage["shared_tokens"] >= 1


def test_take_dominance_and_disjoint_takes_are_findings():
    from chandra.findings import TAKES_SHARE_NO_TOKENS, VOCAB_TAKE_DOMINANCE, take_vocabulary_findings

    def ledger(counts):
        return [{"stage": "tokens", "n_records": int(np.sum(counts)), "fields": {},
                 "per_file": [{"take": k, "n_records": int(sum(row)), "fields": {},
                               "tokens": {"present": int(sum(row)), "unique": int(np.count_nonzero(row)),
                                          "counts": list(row)}} for k, row in enumerate(counts)]}]

    files = {"files": [{"name": "loud.wav"}, {"name": "quiet.wav"}, {"name": "other.wav"}]}
    dominated = [[3, 3, 3, 3, 3, 3, 1, 1], [0, 0, 0, 0, 0, 0, 30, 30], [0, 0, 0, 0, 0, 0, 30, 30]]
    found = take_vocabulary_findings(ledger(dominated), provenance=files)
    assert [f.code for f in found] == [VOCAB_TAKE_DOMINANCE]
    assert found[0].evidence["take"] == 0 and "loud.wav" in found[0].message
    balanced = [[5, 5, 0, 0, 5, 0], [0, 5, 5, 0, 0, 5], [5, 0, 0, 5, 5, 0]]
    assert take_vocabulary_findings(ledger(balanced)) == []
    disjoint = [[5, 5, 0, 0, 0, 0], [0, 0, 5, 5, 0, 0], [0, 0, 0, 0, 5, 5]]
    assert [f.code for f in take_vocabulary_findings(ledger(disjoint))] == [TAKES_SHARE_NO_TOKENS]


def test_a_short_varied_take_dominating_the_vocabulary_is_a_finding(tmp_path):
    # Two long takes that alternate two notes and a short take of bursts at scattered pitches:
    # K-means spends most centres on the short take's variety.
    a = write(tmp_path / "a.wav", melody(40, seed=0, pattern=(0, 7)))
    b = write(tmp_path / "b.wav", melody(40, seed=2, pattern=(0, 7)))
    rng = np.random.default_rng(5)
    onsets = np.cumsum(rng.uniform(0.15, 0.3, size=24))
    bursts = write(tmp_path / "bursts.wav", tone_bursts(onsets, freqs=list(rng.uniform(60.0, 4000.0, size=24)),
                                                         burst=0.1, seed=5))
    result = train_corpus([a, b, bursts], TrainConfig(n_tokens=16), audio="none")
    usage = result.model.vocabulary["per_file"]
    assert usage["frame_share"][2] < 0.3 and usage["token_share"][2] > 0.7
    (finding,) = [f for f in result.findings if f["code"] == "VOCAB_TAKE_DOMINANCE"]
    assert finding["evidence"]["take"] == 2 and "bursts.wav" in finding["message"]
    assert finding["severity"] == "warning"


# --------------------------------------------------------------------------- the per-file unit


def test_analyse_file_is_the_picklable_deterministic_unit(takes):
    import pickle

    config = TrainConfig(n_tokens=8)
    a = analyse_file(takes[1], config, label="x")
    b = pickle.loads(pickle.dumps(a))
    assert b.label == "x" and b.sha256 == sha256_file(takes[1]) and b.decode["file_sample_rate"] == 44100
    np.testing.assert_array_equal(b.raw_features, analyse_file(takes[1], config).raw_features)
    assert b.signal.dtype == np.float32 and len(b.signal) == b.n_samples
    assert analyse_file(takes[1], config, keep_signal=False).signal is None
    with pytest.raises(ChandraError, match="signal was not kept"):
        build_corpus([analyse_file(takes[0], config, keep_signal=False)], config, audio="embed")
    with pytest.raises(ChandraError, match=r"nope\.wav: no such file"):
        analyse_file(takes[0].parent / "nope.wav", config)


def test_build_corpus_in_file_order_equals_train_corpus(corpus, takes):
    result, _, _ = corpus
    config = TrainConfig(n_tokens=8)
    state = build_corpus([analyse_file(p, config) for p in takes], config)
    assert state.model.events == result.model.events
    np.testing.assert_array_equal(state.model.features, result.model.features)
    np.testing.assert_array_equal(state.oracle.sfx, result.model.oracle.sfx)
    np.testing.assert_array_equal(state.model.audio, result.model.audio)


def test_cli_trains_a_corpus_from_a_folder_and_a_manifest(takes, tmp_path, capsys):
    from chandra.cli import main

    out = tmp_path / "cli.chandra"
    assert main(["train", str(takes[0].parent), "-o", str(out), "--tokens", "8", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "corpus      3 files" in text and "take 2" in text and "takes never continue into the next" in text
    assert main(["inspect", str(out)]) == 0
    assert "files (3, audio embedded)" in capsys.readouterr().out
    assert main(["train", "-o", str(out), "--quiet"]) == 1
    assert "give audio files or folders" in capsys.readouterr().err
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{takes[0]},a\n", encoding="utf-8")
    assert main(["train", str(takes[0]), "--manifest", str(manifest), "-o", str(out), "--quiet"]) == 1
    assert "not both" in capsys.readouterr().err
    assert main(["train", "--manifest", str(manifest), "-o", str(out), "--tokens", "8", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_files"] == 1 and summary["files"][0]["label"] == "a"  # a labelled file is a corpus of one


def test_a_corpus_chooses_k_by_the_one_file_rule_over_all_its_segments(takes, tmp_path):
    from chandra.vocabulary import recommend_k

    result = train_corpus(collect_inputs([takes[0].parent]), TrainConfig(n_tokens="auto"),
                          output=tmp_path / "auto.chandra", cache=None)
    model = load_model(tmp_path / "auto.chandra")
    rec = model.provenance["vocabulary"]["recommendation"]
    n = len(model.events)
    assert rec["k"] == recommend_k(n, features=result.state.raw_features)["k"]
    assert model.vocabulary["n_tokens"] == rec["k"] == result.summary()["tokens_recommendation"]["k"]
    assert model.provenance["vocabulary"]["configured"]["n_tokens"] == "auto"
    assert max(e["gesture_token"] for e in model.events) < rec["k"]


def test_respond_hears_a_phrase_from_one_take_and_answers_without_crossing_takes(corpus, takes):
    from chandra.respond import Listener, respond

    _, path, _ = corpus
    model = load_model(path)
    ends = set(model.oracle.take_starts.tolist()[1:])
    listener = Listener(model)  # a corpus model keeps its vocabulary state (format 1.3), so it can hear
    y, sr = sf.read(str(takes[2]), dtype="float32")
    heard = listener.hear(y[: int(2.0 * sr)], sr)  # the start of the last take, as a phrase
    assert len(heard) > 0 and set(heard.tokens.tolist()) <= set(model.tokens().tolist())
    for mode in ("continue", "imitate", "contrast"):
        response = respond(model, (y[: int(2.0 * sr)], sr), mode=mode, seconds=6.0, seed=1, listener=listener)
        frames = np.asarray(response.generation.frames)
        crossing = np.flatnonzero((np.diff(frames) == 1) & np.isin(frames[1:], list(ends)))
        assert crossing.size == 0, mode
        assert response.y.size > 0 and np.all(np.isfinite(response.y))


def test_a_phrase_from_a_quiet_take_is_heard_at_that_take_level(takes, tmp_path):
    # The corpus median level lies between a loud and a quiet take; a phrase from the quiet
    # take must keep its own level (the nearest take's), or every dsp descriptor would move.
    from chandra.respond import Listener

    loud, _ = sf.read(str(takes[0]), dtype="float32")
    quiet, sr = sf.read(str(takes[2]), dtype="float32")
    folder = tmp_path / "levels"
    folder.mkdir()
    write(folder / "a_loud.wav", loud, sr=sr)
    write(folder / "b_quiet.wav", (quiet * 0.05).astype(np.float32), sr=sr)  # -26 dB
    train_corpus(collect_inputs([folder]), TrainConfig(n_tokens=8), output=tmp_path / "levels.chandra", cache=None)
    listener = Listener(load_model(tmp_path / "levels.chandra"))
    assert len(listener.reference_levels_db) == 2
    assert listener.reference_levels_db[0] - listener.reference_levels_db[1] > 20
    heard = listener.hear((quiet * 0.05)[: int(3.0 * sr)], sr)
    assert abs(heard.gain_db) < 3.0  # brought to the quiet take's level, not to the corpus median
    assert heard.coverage.count("never") <= len(heard.coverage) // 4


def test_play_places_a_corpus_frame_in_its_own_take(corpus):
    from chandra.figures.respond import _event_bounds
    from chandra.respond import source_place

    _, path, _ = corpus
    model = load_model(path)
    frame = int(model.take_starts()[2]) + 3  # the fourth frame of the third take
    event = model.events[frame]
    offset_s = model.take_offsets()[2] / model.sample_rate
    start, end = _event_bounds(model, [frame])  # on the waveform of the whole corpus
    assert start[0] == pytest.approx(event["t"] + offset_s) and end[0] == pytest.approx(
        event["t"] + event["duration"] + offset_s)
    own, _ = _event_bounds(model, [frame], on_audio=False)  # in its own file
    assert own[0] == pytest.approx(event["t"])
    assert source_place(model, frame) == f"take2.wav {event['t']:.2f} s"


def test_take_audio_is_rounded_and_encoded_in_blocks(monkeypatch):
    """quantize_audio and the FLAC writer work block by block (bounded temporaries) and give
    exactly what the whole-signal arithmetic and one whole-take write give."""
    import io

    import soundfile as sf

    import chandra.model as model_module

    rng = np.random.default_rng(8)
    y = np.clip(0.3 * rng.standard_normal(50_003), -0.99, 0.99).astype(np.float32)
    whole = (np.round(y.astype(np.float64) * 2.0**23) / 2.0**23).astype(np.float32)
    monkeypatch.setattr(model_module, "_AUDIO_BLOCK", 4096)
    q = model_module.quantize_audio(y)
    np.testing.assert_array_equal(q, whole)
    flac = model_module._flac_bytes(q, 22050)
    reference = io.BytesIO()
    ints = np.round(q.astype(np.float64) * 2.0**23).astype(np.int32) << 8
    sf.write(reference, ints.reshape(-1, 1), 22050, format="FLAC", subtype="PCM_24")
    assert flac == reference.getvalue()
    back, _ = sf.read(io.BytesIO(flac), dtype="int32")
    np.testing.assert_array_equal(back >> 8, ints >> 8)
    off_grid = q.copy()
    off_grid[30_000] = np.float32(0.1)  # one sample off the 24-bit grid, in a later block: not FLAC
    assert model_module._flac_bytes(off_grid, 22050) is None
    assert model_module._flac_bytes(np.zeros(0, dtype=np.float32), 22050) is None
