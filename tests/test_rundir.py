"""Run directories: persisted stages, stale detection, failures and cancel."""

from __future__ import annotations

import json

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
