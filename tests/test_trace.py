"""Tracer checkpoints, trace reports, and the deliberately faulty trainer."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chandra import findings as F
from chandra.errors import TraceError
from chandra.trace import Tracer, format_trace_report, trace_report

ROOT = Path(__file__).resolve().parents[1]
FAULTY = ROOT / "examples" / "faulty_trainer.py"


def _load_faulty_trainer():
    spec = importlib.util.spec_from_file_location("faulty_trainer", FAULTY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def faulty_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("faulty") / "trace"
    _load_faulty_trainer().main(out)
    return trace_report(out)


def _where(report, code):
    return [f["stage"] for f in report["findings"] if f["code"] == code]


def test_faulty_trainer_faults_are_named_at_their_checkpoints(faulty_report):
    assert _where(faulty_report, F.EPOCH_TIME) == ["events"]
    assert _where(faulty_report, F.TOKEN_COLLAPSE) == ["join"]
    assert _where(faulty_report, F.FIELD_LOST) == ["save"]
    (lost,) = [f for f in faulty_report["findings"] if f["code"] == F.FIELD_LOST]
    assert lost["evidence"]["field"] == "gesture_token"
    assert lost["evidence"]["from_stage"] == "join"
    (collapse,) = [f for f in faulty_report["findings"] if f["code"] == F.TOKEN_COLLAPSE]
    assert collapse["evidence"]["unique"] == 1 and collapse["evidence"]["reference_unique"] == 16


def test_faulty_trainer_has_no_other_serious_findings(faulty_report):
    serious = {(f["code"], f["stage"]) for f in faulty_report["findings"] if f["severity"] != "info"}
    assert serious == {(F.EPOCH_TIME, "events"), (F.TOKEN_COLLAPSE, "join"), (F.FIELD_LOST, "save")}


def test_faulty_trainer_report_matrix(faulty_report):
    m = faulty_report["matrix"]
    assert m["stages"] == ["segments", "tokens", "events", "join", "save"]
    col = m["fields"].index("gesture_token")
    assert [row[col] for row in m["present"]] == [0, 120, 0, 120, 0]
    assert [c["name"] for c in faulty_report["checkpoints"]] == m["stages"]
    json.dumps(faulty_report, allow_nan=False)


def test_faulty_trainer_text_report(faulty_report):
    text = format_trace_report(faulty_report)
    lines = text.splitlines()
    assert lines[1].startswith("findings: 3 error(s)")
    assert any("EPOCH_TIME" in line and "'events'" in line for line in lines)
    assert any("TOKEN_COLLAPSE" in line and "'join'" in line for line in lines)
    assert any("FIELD_LOST" in line and "'save'" in line and "gesture_token" in line for line in lines)


def test_faulty_trainer_runs_as_a_script(tmp_path):
    out = tmp_path / "trace"
    # The checkout's chandra, whichever one the environment has installed.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(FAULTY), str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Gesture tokens: 1 unique patterns" in proc.stdout
    assert json.loads((out / "index.json").read_text())["checkpoints"][-1]["name"] == "save"


def test_checkpoint_files(tmp_path):
    tracer = Tracer(tmp_path / "t", sample_size=3, n_tokens=4)
    records = [{"t": 0.1 * i, "gesture_token": i % 4, "features": np.arange(20, dtype=np.float32) + i,
                "f0": np.float64("nan"), "name": "x" * 500} for i in range(10)]
    doc = tracer.checkpoint("tokens", records, duration=2.0)
    tracer.checkpoint("again", records[:4])
    index = json.loads((tmp_path / "t" / "index.json").read_text())
    assert index["format"] == "chandra-trace"
    assert [c["name"] for c in index["checkpoints"]] == ["tokens", "again"]
    assert [c["file"] for c in index["checkpoints"]] == ["000_tokens.json", "001_again.json"]
    on_disk = json.loads((tmp_path / "t" / "000_tokens.json").read_text())
    assert on_disk == json.loads(json.dumps(doc))
    entry = on_disk["ledger"]
    assert entry["n_records"] == 10
    assert entry["fields"]["f0"]["present"] == 0
    assert entry["tokens"]["counts"] == [3, 3, 2, 2]
    assert entry["features"]["dim"] == 20
    assert entry["time"]["t_max"] == pytest.approx(0.9)
    assert set(on_disk["timing"]) == {"wall_s", "since_last_s"}
    assert on_disk["timing"]["wall_s"] >= on_disk["timing"]["since_last_s"] >= 0
    sample = on_disk["sample"]
    assert [s["index"] for s in sample] == [0, 4, 9] or [s["index"] for s in sample] == [0, 5, 9]
    rec = sample[0]["record"]
    assert rec["features"][:3] == [0.0, 1.0, 2.0] and rec["features"][-1] == "... (20 items)"
    assert rec["f0"] is None
    assert len(rec["name"]) < 300
    assert tracer.checkpoints == ["tokens", "again"]


def test_checkpoint_accepts_dataframe_and_objects(tmp_path):
    @dataclass
    class Seg:
        t: float
        gesture_token: int

    class Ev:
        def __init__(self, t):
            self.t = t

    tracer = Tracer(tmp_path / "t")
    tracer.checkpoint("frame", pd.DataFrame({"t": [0.0, 1.0], "gesture_token": [1, 2]}))
    tracer.checkpoint("dataclasses", [Seg(0.0, 1), Seg(1.0, 2)])
    tracer.checkpoint("objects", [Ev(0.0), Ev(1.0)])
    report = trace_report(tmp_path / "t")
    fields = [set(c["ledger"]["fields"]) for c in report["checkpoints"]]
    assert fields == [{"t", "gesture_token"}, {"t", "gesture_token"}, {"t"}]
    assert report["checkpoints"][0]["sample"][1]["record"] == {"t": 1.0, "gesture_token": 2}


def test_restarted_tracer_replaces_old_checkpoints(tmp_path):
    first = Tracer(tmp_path / "t")
    first.checkpoint("a", [{"t": 0.0}])
    first.checkpoint("b", [{"t": 0.0}])
    (tmp_path / "t" / "notes.txt").write_text("mine")
    second = Tracer(tmp_path / "t")
    second.checkpoint("c", [{"t": 0.0}])
    names = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert names == ["000_c.json", "index.json", "notes.txt"]
    assert [c["name"] for c in trace_report(tmp_path / "t")["checkpoints"]] == ["c"]


def test_bad_checkpoint_arguments(tmp_path):
    tracer = Tracer(tmp_path / "t")
    with pytest.raises(TraceError, match="non-empty name"):
        tracer.checkpoint("  ", [])
    with pytest.raises(TraceError, match="'x'"):
        tracer.checkpoint("x", 42)


def test_tracer_refuses_a_file_as_directory(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(TraceError, match="not a directory"):
        Tracer(tmp_path / "f")


def _good_trace(tmp_path) -> Path:
    tracer = Tracer(tmp_path / "t")
    tracer.checkpoint("a", [{"t": 0.0}])
    return tmp_path / "t"


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.rename(d.with_name("gone")), "does not exist"),
    (lambda d: (d / "index.json").unlink(), "no index.json"),
    (lambda d: (d / "index.json").write_text("{oops"), "not valid JSON"),
    (lambda d: (d / "index.json").write_text('{"format": "other"}'), "not a chandra trace index"),
    (lambda d: (d / "index.json").write_text('{"format": "chandra-trace", "version": 99}'), "version"),
    (lambda d: (d / "000_a.json").unlink(), "missing"),
    (lambda d: (d / "000_a.json").write_text("[1, 2"), "not valid JSON"),
    (lambda d: (d / "000_a.json").write_text('{"format": "chandra-trace-checkpoint"}'), "no ledger entry"),
    (lambda d: (d / "index.json").write_text(
        '{"format": "chandra-trace", "version": 1, "checkpoints": [{"file": "../x.json"}]}'), "malformed"),
])
def test_malformed_trace_raises_trace_error(tmp_path, damage, message):
    directory = _good_trace(tmp_path)
    damage(directory)
    with pytest.raises(TraceError, match=message):
        trace_report(directory)


def test_trace_report_of_a_file_is_a_trace_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(TraceError, match="not a directory"):
        trace_report(tmp_path / "f")


def test_importing_trace_is_light():
    code = ("import sys, chandra.trace; "
            "heavy = [m for m in ('torch', 'sklearn', 'numba', 'transformers', 'librosa', 'pandas') "
            "if m in sys.modules]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
