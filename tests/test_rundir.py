"""Run directories: persisted stages, stale detection, failures and cancel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chandra.errors import ChandraError
from chandra.pipeline import STAGES, TrainConfig
from chandra.progress import Cancelled
from chandra.rundir import RunDirectory, list_runs

from helpers_audio import melody, tone_bursts, write


@pytest.fixture()
def audio(tmp_path):
    return write(tmp_path / "m.wav", melody(40))


def test_execute_all_persists_every_stage(tmp_path, audio):
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))
    seen = []
    status = run.execute("all", progress=lambda s, d, t: seen.append(s))
    assert all(info["status"] == "done" for info in status.values())
    assert set(STAGES) <= set(seen) | {"load"}
    state = RunDirectory(run.path).load_state()  # a fresh handle, as another page would have
    n = len(state.segments)
    assert state.signal is not None and state.features.shape[0] == n and state.tokens.shape == (n,)
    assert len(state.events) == n and state.oracle.n_frames == n
    assert [e["stage"] for e in state.ledger] == ["segments", "features", "normalised", "tokens", "events",
                                                   "oracle", "saved", "reloaded"]
    assert run.model_path().exists()
    meta = run.meta()
    assert meta["findings"] == [] or all(f["severity"] == "info" for f in meta["findings"])
    assert list_runs(tmp_path / "runs")[0].run_id == run.run_id


def test_changed_option_marks_downstream_stale(tmp_path, audio):
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))
    run.execute("all")
    run.set_config(TrainConfig(n_tokens=6))
    status = run.status()
    assert [status[s]["status"] for s in STAGES] == ["done", "done", "done", "stale", "done", "stale", "stale",
                                                      "stale"]
    run.execute("stale")
    assert all(info["status"] == "done" for info in run.status().values())
    assert int(run.load_state().tokens.max()) < 6


def test_rerunning_an_upstream_stage_invalidates_downstream(tmp_path, audio):
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))
    run.execute("all")
    run.execute(["segment"])
    status = run.status()
    assert status["segment"]["status"] == "done"
    assert all(status[s]["status"] == "stale" for s in STAGES[STAGES.index("segment") + 1:])  # all read segments


def test_failure_is_recorded_and_raised(tmp_path):
    audio = write(tmp_path / "few.wav", tone_bursts([0.2, 0.7, 1.2], duration=1.8))
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=64))
    with pytest.raises(ChandraError, match="64"):
        run.execute("all")
    status = run.status()
    assert status["vocabulary"]["status"] == "failed" and "64" in status["vocabulary"]["error"]
    assert status["encode"]["status"] == "done" and status["events"]["status"] == "not run"


def test_cancel_stops_at_next_progress_report(tmp_path, audio):
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))

    def cancel_during_encode(stage, done, total):
        if stage == "encode" or stage == "dsp":
            run.request_cancel()

    with pytest.raises(Cancelled):
        run.execute("all", progress=cancel_during_encode)
    status = run.status()
    assert status["segment"]["status"] == "done"
    assert "cancelled" in {info["status"] for info in status.values()}
    assert not (run.path / "cancel").exists()


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ChandraError, match="run.json"):
        RunDirectory(tmp_path)
    with pytest.raises(ChandraError, match="no such audio"):
        RunDirectory.create(tmp_path, tmp_path / "missing.wav")


def test_run_json_is_plain_json(tmp_path, audio):
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))
    run.execute(["load", "segment"])
    meta = json.loads((run.path / "run.json").read_text())
    assert meta["stages"]["segment"]["status"] == "done"
    with np.load(run.path / "segments.npz", allow_pickle=False) as z:
        assert set(z.files) == {"id", "start", "end", "rms", "f0", "centroid"}


def test_generated_stage_joins_the_run_ledger(tmp_path, audio):
    from chandra.generate import improvise
    from chandra.model import load_model

    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))
    run.execute("all")
    model = load_model(run.model_path())
    entry = improvise(model, n_frames=30, seed=1).ledger_entry(model)
    run.record_ledger_entry(entry)
    stages = [e["stage"] for e in run.meta()["ledger"]]
    assert stages[-1] == "generated" and stages.count("generated") == 1
    assert run.load_state().ledger[-1]["n_records"] == 30
    run.record_ledger_entry(entry)  # replacing, not appending
    assert [e["stage"] for e in run.meta()["ledger"]].count("generated") == 1


# --------------------------------------------------------------------------- concurrency and run state


from helpers_jobs import append_many as _append_many  # noqa: E402


@pytest.fixture()
def bare_run(tmp_path, audio):
    return RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))


def test_threads_lose_no_metadata_update(bare_run):
    import threading

    n_threads, n_each = 8, 40
    threads = [threading.Thread(target=_append_many, args=(str(bare_run.path), f"t{k}-", n_each))
               for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    hammer = bare_run.meta()["hammer"]
    assert len(hammer) == n_threads * n_each and len(set(hammer)) == len(hammer)
    for k in range(n_threads):  # each writer's own updates stay in its order
        mine = [h for h in hammer if h.startswith(f"t{k}-")]
        assert mine == [f"t{k}-{i}" for i in range(n_each)]


def test_two_processes_and_threads_lose_no_metadata_update(bare_run):
    import os
    import subprocess
    import sys
    import threading

    # Plain interpreters (not multiprocessing, whose spawned child would re-run
    # whatever __main__ is, e.g. an AppTest script): no inherited locks.
    helper = Path(__file__).with_name("helpers_jobs.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]))
    n = 60
    procs = [subprocess.Popen([sys.executable, str(helper), str(bare_run.path), f"p{k}-", str(n)], env=env)
             for k in range(2)]
    local = threading.Thread(target=_append_many, args=(str(bare_run.path), "main-", n))
    local.start()
    for p in procs:
        assert p.wait(120) == 0
    local.join(60)
    hammer = bare_run.meta()["hammer"]
    assert sorted(hammer) == sorted([f"p{k}-{i}" for k in range(2) for i in range(n)]
                                    + [f"main-{i}" for i in range(n)])
    json.loads((bare_run.path / "run.json").read_text())  # still one well-formed document


def test_changes_made_while_stages_run_are_kept(bare_run):
    """A config change and a "generated" entry made from another thread while
    stages finish survive; the stage that ran under the old options shows stale."""
    import threading

    done = threading.Event()
    errors = []

    def meddle():
        i = 0
        try:
            while not done.is_set():
                bare_run.update_meta(lambda meta, i=i: meta.setdefault("hammer", []).append(i))
                i += 1
            cfg = bare_run.config()
            cfg.n_tokens = 6
            bare_run.set_config(cfg)
            bare_run.record_ledger_entry({"stage": "generated", "n_records": 3, "fields": {}})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            meddle.count = i

    meddle.count = 0
    t = threading.Thread(target=meddle)
    t.start()
    try:
        bare_run.execute(["load", "segment", "encode", "vocabulary"])
    finally:
        done.set()
        t.join(60)
    assert not errors
    meta = bare_run.meta()
    assert meta["hammer"] == list(range(meddle.count))  # not one update overwritten by a stage
    assert meta["config"]["n_tokens"] == 6
    assert meta["ledger"][-1]["stage"] == "generated"
    status = bare_run.status()
    assert status["vocabulary"]["status"] == "stale" and status["encode"]["status"] == "done"


def test_progress_stays_out_of_run_json(bare_run, monkeypatch):
    import chandra.rundir as rundir

    writes = []
    real = rundir.dump_json_atomic
    monkeypatch.setattr(rundir, "dump_json_atomic",
                        lambda obj, path, **kw: (writes.append(Path(path).name), real(obj, path, **kw))[1])
    seen = []

    def progress(stage, done, total):
        seen.append(bare_run.progress())

    bare_run.execute(["load", "segment", "encode"], progress=progress)
    # Two run.json writes per stage (running, done), whatever the number of ticks.
    assert writes.count("run.json") == 2 * 3
    ticks = [p for p in seen if p is not None]
    assert ticks and {"stage", "done", "total", "time"} <= set(ticks[-1])
    assert "progress" not in bare_run.meta()
    assert bare_run.progress() is None and not (bare_run.path / "progress.json").exists()


def test_reloaded_vocabulary_is_the_fitted_estimator(tmp_path, audio):
    from chandra.vocabulary import GestureVocabulary

    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=6, normalisation="standard",
                                                                     pca_components=4))
    run.execute(["load", "segment", "encode", "vocabulary"])
    state = RunDirectory(run.path).load_state()
    vocab = state.vocabulary
    assert isinstance(vocab, GestureVocabulary)
    np.testing.assert_array_equal(vocab.predict(state.raw_features), state.tokens)
    np.testing.assert_allclose(vocab.transform(state.raw_features), state.features, rtol=1e-5, atol=1e-6)
    assert vocab.n_tokens_ == 6 and vocab.cluster_centers_.shape == (6, 4)
    assert vocab.fit_metrics_ == json.loads((run.path / "vocabulary.json").read_text())["fit_metrics"]


def test_runs_from_before_the_vocabulary_state_still_load(tmp_path, audio):
    from chandra.errors import VocabularyError
    from chandra.vocabulary import GestureVocabulary

    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=6))  # l2, no PCA
    run.execute(["load", "segment", "encode", "vocabulary"])
    for name in ("vocabulary_state.json", "vocabulary_state.npz"):
        (run.path / name).unlink()
    state = RunDirectory(run.path).load_state()
    assert isinstance(state.vocabulary, GestureVocabulary)
    np.testing.assert_array_equal(state.vocabulary.predict(state.raw_features), state.tokens)

    std = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=6, normalisation="standard"))
    std.execute(["load", "segment", "encode", "vocabulary"])
    for name in ("vocabulary_state.json", "vocabulary_state.npz"):
        (std.path / name).unlink()
    with pytest.raises(VocabularyError, match="run the vocabulary stage again"):
        RunDirectory(std.path).load_state()


def test_failed_stage_is_a_finding(tmp_path):
    from chandra.rundir import STAGE_FAILED

    audio = write(tmp_path / "few.wav", tone_bursts([0.2, 0.7, 1.2], duration=1.8))
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=64))
    with pytest.raises(ChandraError):
        run.execute("all")
    found = run.stage_findings()
    assert [(f["severity"], f["code"], f["stage"]) for f in found] == [("error", STAGE_FAILED, "vocabulary")]
    assert "64" in found[0]["message"]


def test_list_runs_skips_non_runs_and_links(tmp_path, audio):
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=8))
    (tmp_path / "runs" / "_uploads").mkdir()
    elsewhere = RunDirectory.create(tmp_path / "elsewhere", audio, TrainConfig(n_tokens=8))
    (tmp_path / "runs" / "linked").symlink_to(elsewhere.path)
    assert [r.run_id for r in list_runs(tmp_path / "runs")] == [run.run_id]
