"""chandra inspect: the real MusicHal reference model and a clean chandra model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chandra import findings as F
from chandra.errors import ModelFormatError
from chandra.inspect import format_report, inspect_loaded, inspect_model
from chandra.ledger import model_ledger_entry
from chandra.model import Model, save_model
from chandra.oracle import build_factor_oracle

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "musichal_base_model_test_error_fix.json"


@pytest.fixture(scope="module")
def reference_report():
    if not REFERENCE.exists():
        pytest.skip(f"reference model not available at {REFERENCE}")
    return inspect_model(REFERENCE)


def _codes(report, severity=None):
    return {f["code"] for f in report["findings"] if severity is None or f["severity"] == severity}


def test_reference_counts(reference_report):
    r = reference_report
    assert r["format"] == "musichal-base"
    assert r["frames"] == 1000
    assert r["feature_dim"] == 6
    assert r["fields"]["gesture_token"] == {"present": 0, "fraction": 0.0}
    assert r["fields"]["features"] == {"present": 1000, "fraction": 1.0}
    assert r["fields"]["t"]["present"] == 1000
    assert r["tokens"]["unique"] == 0 and r["tokens"]["present"] == 0
    assert r["oracle"]["states"] == 1001
    assert r["oracle"]["root_out_degree"] == 1000
    assert r["oracle"]["sfx_to_root_share"] == 1.0
    assert r["time"]["t_min"] > 1e9


def test_reference_findings(reference_report):
    r = reference_report
    errors = _codes(r, "error")
    assert {F.TOKENS_MISSING, F.EPOCH_TIME} <= errors
    assert {F.FEATURES_LOW_DIM, F.SFX_ALL_ROOT, F.TRANSITIONS_DENSE} <= _codes(r)
    by_code = {f["code"]: f for f in r["findings"]}
    assert by_code[F.TOKENS_MISSING]["evidence"]["present"] == 0
    assert by_code[F.TOKENS_MISSING]["evidence"]["n_records"] == 1000
    assert by_code[F.FEATURES_LOW_DIM]["evidence"]["dim"] == 6
    assert by_code[F.TRANSITIONS_DENSE]["evidence"]["root_out_degree"] == 1000
    assert by_code[F.SFX_ALL_ROOT]["evidence"]["sfx_to_root_share"] == 1.0
    assert r["summary"]["error"] >= 2


def test_reference_report_is_strict_json(reference_report):
    text = json.dumps(reference_report, allow_nan=False)
    assert json.loads(text)["frames"] == 1000


def test_reference_text_report(reference_report):
    text = format_report(reference_report)
    lines = text.splitlines()
    assert "frames: 1000" in lines[1] and "feature dim: 6" in lines[1]
    # findings come before the field table
    first_finding = next(i for i, line in enumerate(lines) if "TOKENS_MISSING" in line)
    field_table = next(i for i, line in enumerate(lines) if line.startswith("fields over"))
    assert first_finding < field_table
    assert "0 of 1000 frames carry a gesture_token" in text
    assert "EPOCH_TIME" in text and "SFX_ALL_ROOT" in text
    assert "root out-degree 1000" in text
    assert "6-dimensional" in text


def test_padded_modular_musichal_import(tmp_path):
    """15 real values zero-padded to 768, consonance stuck at 0.5, in the modular shape."""
    if not REFERENCE.exists():
        pytest.skip(f"reference model not available at {REFERENCE}")
    doc = json.loads(REFERENCE.read_text())
    rng = np.random.default_rng(0)
    for key, frame in doc["audio_frames"].items():
        frame["features"] = rng.normal(size=15).tolist() + [0.0] * (768 - 15)
        frame["audio_data"]["consonance"] = 0.5
        frame["audio_data"]["t"] = 0.5 * int(key)
    doc["format_version"] = "2.0"
    path = tmp_path / "modular.json"
    path.write_text(json.dumps({"metadata": {"trainer": "test"}, "data": {"audio_oracle": doc}}))
    report = inspect_model(path)
    assert report["format"] == "musichal-modular"
    assert report["feature_dim"] == 768
    by_code = {f["code"]: f for f in report["findings"]}
    assert by_code[F.FEATURES_LOW_DIM]["evidence"]["used_dim_max"] == 15
    assert by_code[F.FEATURES_LOW_DIM]["evidence"]["padded_rows"] == 1000
    assert by_code[F.CONSTANT_CONSONANCE]["evidence"]["value"] == 0.5
    assert F.EPOCH_TIME not in by_code


def _clean_model(n=150, k=8, dim=24, seed=0) -> Model:
    rng = np.random.default_rng(seed)
    tokens = rng.permutation(np.arange(n) % k)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    sr = 8000
    duration = 0.25 * n + 1.0
    events = [{"t": 0.25 * i, "duration": 0.25, "segment_id": i, "gesture_token": int(tokens[i]),
               "consonance": float(rng.uniform()), "ratios": [1.0, 2.0], "rms": 0.1, "rms_db": -20.0,
               "f0": None if i % 5 == 0 else 220.0, "midi": None if i % 5 == 0 else 57.0,
               "centroid": 900.0} for i in range(n)]
    model = Model(events=events, features=X, oracle=build_factor_oracle(tokens),
                  provenance={"vocabulary": {"configured": {"n_tokens": k}, "effective": {"n_tokens": k}}},
                  vocabulary={"params": {"n_tokens": k}, "n_tokens": k,
                              "fit_metrics": {"active": k, "n_tokens": k, "entropy_bits": 3.0}},
                  centers=np.zeros((k, dim), np.float32),
                  audio=np.zeros(int(duration * sr), np.float32), sample_rate=sr)
    model.ledger = [model_ledger_entry(model, stage="saved")]
    return model


def test_clean_chandra_model_inspects_cleanly(tmp_path):
    path = save_model(_clean_model(), tmp_path / "clean.chandra")
    report = inspect_model(path)
    serious = [f for f in report["findings"] if f["severity"] in ("error", "warning")]
    assert serious == []
    assert report["format"] == "chandra"
    assert report["frames"] == 150 and report["feature_dim"] == 24
    assert report["fields"]["gesture_token"]["present"] == 150
    assert report["fields"]["f0"]["present"] == 120
    assert report["tokens"]["unique"] == 8 and report["tokens"]["n_tokens"] == 8
    assert report["oracle"]["kind"] == "tokens" and report["oracle"]["violations"] == {}
    assert report["ledger_stages"] == ["saved"]
    assert report["time"]["fraction_in_range"] == 1.0
    json.dumps(report, allow_nan=False)
    assert "findings: 0 error(s), 0 warning(s)" in format_report(report)


def test_model_that_lost_tokens_after_save_is_flagged():
    model = _clean_model()
    model.events = [{k: v for k, v in e.items() if k != "gesture_token"} for e in model.events]
    report = inspect_loaded(model)
    codes = _codes(report, "error")
    assert {F.FIELD_LOST, F.TOKENS_MISSING, F.ROUNDTRIP_CHANGED} <= codes
    assert report["fields"]["gesture_token"]["present"] == 0


def test_unreadable_file_raises_model_format_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelFormatError):
        inspect_model(bad)
