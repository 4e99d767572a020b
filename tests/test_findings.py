"""Fault injection: each finding code fires on exactly its fault, at the right stage.

A clean pipeline ledger (canonical stages, healthy tokens, 24-D unit
features, times inside the audio, a factor oracle over the tokens) must give
no warnings and no errors. Each case copies it, injects one fault and checks
that the named code is reported at the stage where the fault was introduced.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from chandra import findings as F
from chandra.findings import (
    Finding,
    ledger_findings,
    model_findings,
    oracle_findings,
    provenance_findings,
)
from chandra.ledger import ledger_entry, model_ledger_entry
from chandra.model import Model
from chandra.oracle import build_audio_oracle, build_factor_oracle

N, K, DIM, DURATION = 120, 8, 24, 60.0


def _base(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0.0, DURATION - 1.0, N))
    tokens = rng.permutation(np.arange(N) % K)
    # Features clustered around K directions: the tokens are their nearest-centre
    # assignment, as a vocabulary's tokens are (else TOKENS_DESYNC fires).
    centres = rng.normal(size=(K, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X = centres[tokens] + 0.15 * rng.normal(size=(N, DIM))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    events = [
        {"t": float(s), "duration": 0.4, "segment_id": i, "gesture_token": int(tokens[i]),
         "consonance": float(rng.uniform()), "ratios": [1.0, 1.5], "rms": 0.1,
         "f0": float(rng.uniform(80, 800)), "midi": 60.0}
        for i, s in enumerate(starts)
    ]
    segments = [{"segment_id": i, "start": float(s), "end": float(s) + 0.4, "t": float(s), "duration": 0.4,
                 "rms": 0.1, "centroid": 1000.0} for i, s in enumerate(starts)]
    path = rng.integers(0, N, 40)
    return {"segments": segments, "tokens": tokens, "X": X.astype(np.float32), "events": events,
            "oracle": build_factor_oracle(tokens), "generated": [dict(events[i]) for i in path],
            "generated_X": X[path].astype(np.float32), "provenance": {}, "symbols": None}


def _ledger(d: dict) -> list[dict]:
    basic = [{"segment_id": s["segment_id"], "t": s["t"]} for s in d["segments"]]
    tok_records = [{**r, "gesture_token": int(k)} for r, k in zip(basic, d["tokens"])]
    kw = {"duration": DURATION}
    return [
        ledger_entry("segments", d["segments"], **kw),
        ledger_entry("features", basic, features=d["X"], **kw),
        ledger_entry("normalised", basic, features=d["X"], **kw),
        ledger_entry("tokens", tok_records, tokens=d["tokens"], n_tokens=K, **kw),
        ledger_entry("events", d["events"], features=d["X"], n_tokens=K, **kw),
        ledger_entry("oracle", d["events"], features=d["X"], n_tokens=K, oracle=d["oracle"],
                     symbols=d["symbols"], **kw),
        ledger_entry("saved", d.get("saved", d["events"]), features=d.get("X_saved", d["X"]), n_tokens=K, **kw),
        ledger_entry("reloaded", d.get("reloaded", d.get("saved", d["events"])), features=d.get("X_saved", d["X"]),
                     n_tokens=K, **kw),
        ledger_entry("generated", d["generated"], features=d["generated_X"], n_tokens=K, **kw),
    ]


def _serious(findings):
    return [f for f in findings if f.severity in ("error", "warning")]


def test_clean_ledger_has_no_warnings_or_errors():
    d = _base()
    found = ledger_findings(_ledger(d), provenance={"vocabulary": {
        "configured": {"n_tokens": K, "seed": 0}, "effective": {"n_tokens": K, "seed": 0}}},
        vocabulary={"fit_metrics": {"active": K}})
    assert _serious(found) == [], [f.message for f in found]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_ledger_other_seeds(seed):
    assert _serious(ledger_findings(_ledger(_base(seed)))) == []


# ---------------------------------------------------------------- fault injectors
# Each returns the data with one fault; the expected (code, stage) follows.


def _drop_token_on_save(d):
    d["saved"] = [{k: v for k, v in e.items() if k != "gesture_token"} for e in d["events"]]
    return d


def _drop_half_consonance_on_save(d):
    d["saved"] = [{k: v for k, v in e.items() if not (k == "consonance" and i % 2)}
                  for i, e in enumerate(d["events"])]
    return d


def _lose_records_on_save(d):
    d["saved"] = d["events"][:-10]
    d["reloaded"] = d["events"][:-10]
    d["X_saved"] = d["X"][:-10]
    return d


def _collapse_tokens_in_events(d):
    d["events"] = [{**e, "gesture_token": 3} for e in d["events"]]
    d["generated"] = [{**e, "gesture_token": 3} for e in d["generated"]]
    return d


def _missing_tokens_in_events(d):
    d["events"] = [{**e, "gesture_token": None if i % 2 else e["gesture_token"]}
                   for i, e in enumerate(d["events"])]
    return d


def _token_out_of_range(d):
    d["events"] = [{**e, "gesture_token": 99 if i == 5 else e["gesture_token"]} for i, e in enumerate(d["events"])]
    return d


def _epoch_times_in_events(d):
    d["events"] = [{**e, "t": e["t"] + 1_758_384_986.0} for e in d["events"]]
    return d


def _times_beyond_audio(d):
    d["events"] = [{**e, "t": e["t"] * 3.0} for e in d["events"]]
    return d


def _times_out_of_order(d):
    ev = d["events"]
    ev[10], ev[11] = ev[11], ev[10]
    return d


def _six_dim_features(d):
    d["X"] = np.ascontiguousarray(d["X"][:, :6])
    return d


def _padded_features(d):
    X = np.zeros((N, 768), dtype=np.float32)
    X[:, :15] = np.random.default_rng(5).normal(size=(N, 15))
    d["X"] = X
    return d


def _dead_dimensions(d):
    d["X"] = d["X"].copy()
    d["X"][:, :5] = 0.3
    return d


def _nonfinite_features(d):
    d["X"] = d["X"].copy()
    d["X"][7, 3] = np.nan
    return d


def _zero_rows(d):
    d["X"] = d["X"].copy()
    d["X"][4] = 0.0
    return d


def _duplicate_rows(d):
    d["X"] = d["X"][np.arange(N) % 10].copy()
    return d


def _constant_consonance(d):
    d["events"] = [{**e, "consonance": 0.5} for e in d["events"]]
    return d


def _broken_oracle(d):
    sfx = d["oracle"].sfx.copy()
    sfx[20] = 25  # sfx[i] must be < i
    d["oracle"] = dataclasses.replace(d["oracle"], sfx=sfx)
    return d


def _all_sfx_to_root(d):
    d["oracle"] = build_audio_oracle(d["X"], threshold=1e-6)
    return d


def _sfx_to_previous(d):
    d["oracle"] = build_factor_oracle(np.zeros(N, dtype=np.int64))
    d["symbols"] = np.zeros(N, dtype=np.int64)
    return d


def _dense_transitions(d):
    d["oracle"] = build_factor_oracle(np.arange(N))
    d["symbols"] = np.arange(N)
    return d


def _roundtrip_types_change(d):
    d["saved"] = d["events"]
    d["reloaded"] = [{**e, "midi": str(e["midi"])} for e in d["events"]]
    return d


LEDGER_FAULTS = [
    (_drop_token_on_save, F.FIELD_LOST, "saved", "error"),
    (_drop_half_consonance_on_save, F.FIELD_LOST, "saved", "warning"),
    (_lose_records_on_save, F.RECORDS_LOST, "saved", "warning"),
    (_collapse_tokens_in_events, F.TOKEN_COLLAPSE, "events", "error"),
    (_missing_tokens_in_events, F.TOKENS_MISSING, "events", "error"),
    (_token_out_of_range, F.TOKENS_OUT_OF_RANGE, "events", "error"),
    (_epoch_times_in_events, F.EPOCH_TIME, "events", "error"),
    (_times_beyond_audio, F.TIME_OUT_OF_RANGE, "events", None),
    (_times_out_of_order, F.TIME_NOT_MONOTONIC, "events", "warning"),
    (_six_dim_features, F.FEATURES_LOW_DIM, "features", "warning"),
    (_padded_features, F.FEATURES_LOW_DIM, "features", "warning"),
    (_dead_dimensions, F.DEAD_DIMENSIONS, "features", "warning"),
    (_nonfinite_features, F.FEATURES_NONFINITE, "features", "error"),
    (_zero_rows, F.FEATURES_ZERO_ROWS, "features", "warning"),
    (_duplicate_rows, F.FEATURES_DUPLICATE, "features", "warning"),
    (_constant_consonance, F.CONSTANT_CONSONANCE, "events", "warning"),
    (_broken_oracle, F.ORACLE_INVARIANT, "oracle", "error"),
    (_all_sfx_to_root, F.SFX_ALL_ROOT, "oracle", "warning"),
    (_sfx_to_previous, F.SFX_PREVIOUS, "oracle", "warning"),
    (_dense_transitions, F.TRANSITIONS_DENSE, "oracle", "warning"),
    (_roundtrip_types_change, F.ROUNDTRIP_CHANGED, "reloaded", "error"),
]


@pytest.mark.parametrize("inject, code, stage, severity", LEDGER_FAULTS,
                         ids=[f[0].__name__.strip("_") for f in LEDGER_FAULTS])
def test_ledger_fault_is_flagged_at_its_stage(inject, code, stage, severity):
    found = ledger_findings(_ledger(inject(_base())))
    hits = [f for f in found if f.code == code]
    assert hits, f"{code} not reported; got {[(f.code, f.stage) for f in found]}"
    # Reported once, at the stage where the fault was introduced.
    assert [f.stage for f in hits] == [stage]
    if severity is not None:
        assert hits[0].severity == severity
    assert hits[0].message
    # Findings are data: they survive JSON.
    assert Finding.from_dict(hits[0].to_dict()).code == code


def test_persisting_fault_reported_once_with_all_stages():
    found = ledger_findings(_ledger(_epoch_times_in_events(_base())))
    (epoch,) = [f for f in found if f.code == F.EPOCH_TIME]
    # the generation was drawn from the clean events, so its times are fine
    assert epoch.evidence["stages"] == ["events", "oracle", "saved", "reloaded"]
    assert epoch.evidence["t_min"] > 1e9
    # epoch times are not also reported as merely out of range
    assert not [f for f in found if f.code == F.TIME_OUT_OF_RANGE]


def test_field_lost_names_field_stages_and_counts():
    found = ledger_findings(_ledger(_drop_token_on_save(_base())))
    (lost,) = [f for f in found if f.code == F.FIELD_LOST]
    assert lost.evidence["field"] == "gesture_token"
    assert lost.evidence["from_stage"] == "oracle" and lost.evidence["to_stage"] == "saved"
    assert lost.evidence["present_before"] == N and lost.evidence["present_after"] == 0
    assert "gesture_token" in lost.message


def test_collapse_against_vocabulary_fit_set():
    d = _base()
    d["tokens"] = np.zeros(N, dtype=np.int64)
    d["events"] = [{**e, "gesture_token": 0} for e in d["events"]]
    d["generated"] = [{**e, "gesture_token": 0} for e in d["generated"]]
    d["oracle"] = build_factor_oracle(np.arange(N) % K)
    found = ledger_findings(_ledger(d)[3:5], vocabulary={"fit_metrics": {"active": 64}})
    (hit,) = [f for f in found if f.code == F.TOKEN_COLLAPSE]
    assert hit.stage == "tokens"
    assert hit.evidence["reference_unique"] == 64
    assert hit.evidence["unique"] == 1


def test_time_out_of_range_severity_depends_on_share():
    d = _base()
    d["events"] = [{**e, "t": e["t"] + (DURATION if i == 0 else 0)} for i, e in enumerate(d["events"])]
    found = ledger_findings(_ledger(d))
    (hit,) = [f for f in found if f.code == F.TIME_OUT_OF_RANGE]
    assert hit.severity == "warning"
    found = ledger_findings(_ledger(_times_beyond_audio(_base())))
    (hit,) = [f for f in found if f.code == F.TIME_OUT_OF_RANGE]
    assert hit.severity == "error"


def test_generated_stage_may_jump_in_time():
    d = _base()
    assert not [f for f in ledger_findings(_ledger(d)) if f.code == F.TIME_NOT_MONOTONIC]


def test_low_dim_chosen_by_pca_is_info():
    d = _six_dim_features(_base())
    found = ledger_findings(_ledger(d), provenance={"vocabulary": {"configured": {"pca_components": 6}}})
    (hit,) = [f for f in found if f.code == F.FEATURES_LOW_DIM]
    assert hit.severity == "info"


def test_a_transform_stage_does_not_lose_fields():
    # tokens replace the feature vectors in the records: a new record shape, not a loss
    ledger = [
        ledger_entry("normalised", [{"segment_id": 0, "t": 0.0}, {"segment_id": 1, "t": 1.0}],
                     features=np.eye(2, 20)),
        ledger_entry("tokens", [{"segment_id": 0, "t": 0.0, "gesture_token": 0},
                                {"segment_id": 1, "t": 1.0, "gesture_token": 1}]),
    ]
    assert not [f for f in ledger_findings(ledger) if f.code == F.FIELD_LOST]


# ---------------------------------------------------------------- provenance


def test_param_mismatch_from_configured_effective():
    prov = {"vocabulary": {"configured": {"n_tokens": 64, "seed": 0, "pca_components": None},
                           "effective": {"n_tokens": 12, "seed": 0, "pca_components": 10}},
            "oracle": {"threshold": 0.3, "threshold_configured": "auto",
                       "metric": "cosine", "metric_configured": "euclidean"}}
    found = provenance_findings(prov)
    got = sorted((f.evidence["path"], f.evidence["parameter"]) for f in found)
    assert got == [("oracle", "metric"), ("vocabulary", "n_tokens")]
    assert all(f.code == F.PARAM_MISMATCH and f.severity == "warning" for f in found)
    (k,) = [f for f in found if f.evidence["parameter"] == "n_tokens"]
    assert k.evidence["configured"] == 64 and k.evidence["effective"] == 12
    assert [f.code for f in ledger_findings([], provenance=prov)].count(F.PARAM_MISMATCH) == 2


def test_param_match_is_clean():
    prov = {"vocabulary": {"configured": {"n_tokens": 8, "threshold": 0.1},
                           "effective": {"n_tokens": 8, "threshold": 0.1 + 1e-15}}}
    assert provenance_findings(prov) == []


# ---------------------------------------------------------------- oracle summaries


def test_oracle_findings_from_graph_facts():
    facts = {"n_states": 1001, "n_transitions": 1999, "root_out_degree": 1000, "sfx_to_root_share": 1.0}
    codes = {f.code for f in oracle_findings(facts)}
    assert codes == {F.SFX_ALL_ROOT, F.TRANSITIONS_DENSE}
    assert oracle_findings({**facts, "n_states": 11, "root_out_degree": 10}) == []  # too small to judge


def test_audio_oracle_context_warnings_are_info():
    summary = {"n_frames": 100, "violations": {"lrs_context_mismatch": 4, "sfx_out_of_range": 1},
               "violation_severity": {"lrs_context_mismatch": "warning", "sfx_out_of_range": "error"}}
    got = {f.evidence["invariant"]: f.severity for f in oracle_findings(summary)}
    assert got == {"lrs_context_mismatch": "info", "sfx_out_of_range": "error"}


# ---------------------------------------------------------------- models


def _model(d: dict, **overrides) -> Model:
    m = Model(events=[dict(e) for e in d["events"]], features=d["X"], oracle=d["oracle"],
              provenance={"input": {"duration": DURATION}},
              vocabulary={"n_tokens": K, "fit_metrics": {"active": K, "n_tokens": K}},
              centers=np.zeros((K, DIM), np.float32))
    for key, value in overrides.items():
        setattr(m, key, value)
    return m


def test_clean_model_has_no_warnings_or_errors():
    d = _base()
    m = _model(d)
    m.ledger = [model_ledger_entry(m, stage="saved")]
    assert _serious(model_findings(m)) == []


def _model_without_tokens(d):
    return _model(d, events=[{k: v for k, v in e.items() if k != "gesture_token"} for e in d["events"]],
                  oracle=build_audio_oracle(d["X"], threshold=0.5))


def _model_collapsed(d):
    return _model(d, events=[{**e, "gesture_token": 2} for e in d["events"]],
                  oracle=build_factor_oracle(np.full(N, 2)))


def _model_broken_oracle(d):
    lrs = d["oracle"].lrs.copy()
    lrs[30] = lrs[30] + 50
    return _model(d, oracle=dataclasses.replace(d["oracle"], lrs=lrs))


def _model_lost_on_load(d):
    m = _model(d)
    m.ledger = [model_ledger_entry(m, stage="saved")]
    m.events = [{k: v for k, v in e.items() if k != "consonance"} for e in m.events]
    return m


def _model_musichal_consonance(d):
    return _model(d, provenance={"musichal": {"consonances": [0.5] * N}})


def _model_epoch(d):
    return _model(d, events=[{**e, "t": e["t"] + 1.7e9} for e in d["events"]])


MODEL_FAULTS = [
    (_model_without_tokens, F.TOKENS_MISSING, "model"),
    (_model_collapsed, F.TOKEN_COLLAPSE, "model"),
    (_model_broken_oracle, F.ORACLE_INVARIANT, "oracle"),
    (_model_lost_on_load, F.FIELD_LOST, "model"),
    (_model_lost_on_load, F.ROUNDTRIP_CHANGED, "model"),
    (_model_musichal_consonance, F.CONSTANT_CONSONANCE, "model"),
    (_model_epoch, F.EPOCH_TIME, "model"),
]


@pytest.mark.parametrize("make, code, stage", MODEL_FAULTS,
                         ids=[f"{m.__name__.strip('_')}-{c}" for m, c, _ in MODEL_FAULTS])
def test_model_fault_is_flagged(make, code, stage):
    found = model_findings(make(_base()))
    hits = [f for f in found if f.code == code]
    assert hits, f"{code} not reported; got {[(f.code, f.stage) for f in found]}"
    assert hits[0].stage == stage


def test_model_tokens_missing_counts_frames():
    found = model_findings(_model_without_tokens(_base()))
    (hit,) = [f for f in found if f.code == F.TOKENS_MISSING]
    assert hit.message == f"0 of {N} frames carry a gesture_token"
    assert hit.evidence == {"present": 0, "n_records": N, "missing": N, "stages": ["model"]}


# ---------------------------------------------------------------- traces


def test_trace_fault_is_flagged_at_its_checkpoint(tmp_path):
    from chandra.trace import Tracer, trace_report

    d = _base()
    tracer = Tracer(tmp_path / "trace")
    tracer.checkpoint("analysed", d["events"], duration=DURATION)
    tracer.checkpoint("filtered", d["events"], duration=DURATION)
    tracer.checkpoint("exported", [{k: v for k, v in e.items() if k != "f0"} for e in d["events"]],
                      duration=DURATION)
    report = trace_report(tmp_path / "trace")
    serious = [f for f in report["findings"] if f["severity"] != "info"]
    assert [(f["code"], f["stage"], f["evidence"]["field"]) for f in serious] == [
        (F.FIELD_LOST, "exported", "f0")]


def test_clean_trace_has_no_findings(tmp_path):
    from chandra.trace import Tracer, trace_report

    d = _base()
    tracer = Tracer(tmp_path / "trace", n_tokens=K)
    tracer.checkpoint("segments", d["segments"], duration=DURATION)
    tracer.checkpoint("events", d["events"], duration=DURATION, features=d["X"])
    tracer.checkpoint("saved", copy.deepcopy(d["events"]), duration=DURATION, features=d["X"])
    assert trace_report(tmp_path / "trace")["findings"] == []


def test_every_code_is_a_documented_constant():
    assert len(set(F.ALL_CODES)) == len(F.ALL_CODES)
    for code in F.ALL_CODES:
        assert getattr(F, code) == code


def test_param_mismatch_reads_the_per_parameter_shape():
    from chandra.findings import PARAM_MISMATCH, provenance_findings

    same = {"vocabulary": {"configured": {"n_tokens": 64}, "effective": {"n_tokens": {"configured": 64,
                                                                                     "effective": 64}}}}
    assert provenance_findings(same) == []
    reduced = {"vocabulary": {"n_tokens": {"configured": 64, "effective": 12}}}
    found = provenance_findings(reduced)
    assert [f.code for f in found] == [PARAM_MISMATCH]
    assert found[0].evidence["parameter"] == "n_tokens" and found[0].evidence["effective"] == 12


def test_sort_and_count_take_findings_or_their_dicts():
    # the one severity order (F.SEVERITIES) serves the library and the dashboard alike
    raw = [{"severity": "info", "code": "A"}, {"severity": "bogus", "code": "B"},
           {"severity": "error", "code": "C"}, {"severity": "warning", "code": "D"},
           {"severity": "error", "code": "E"}]
    assert [f["code"] for f in F.sort_findings(raw)] == ["C", "E", "D", "A", "B"]
    objs = [F.Finding(f["severity"], f["code"], None, "m") for f in raw if f["severity"] != "bogus"]
    assert [f.code for f in F.sort_findings(objs)] == ["C", "E", "D", "A"]
    assert F.count_by_severity(raw[:1] + raw[2:]) == {"error": 2, "warning": 1, "info": 1}
    assert F.SEVERITIES == ("error", "warning", "info")


def test_token_values_that_are_all_text_say_so_without_an_empty_range():
    from chandra.ledger import ledger_entry

    records = [{"t": 0.1 * i, "gesture_token": "a"} for i in range(30)]
    found = [f for f in F.ledger_findings([ledger_entry("events", records)]) if f.code == F.TOKENS_OUT_OF_RANGE]
    assert found and "[0, 0)" not in found[0].message and "not integers" in found[0].message
# --------------------------------------------------------------------------- precision of the features


def test_float32_vocabulary_on_int8_features_is_a_warning(tmp_path):
    # A vocabulary fitted on float32 features of a model, applied to the
    # same model's int8 features (quantize="int8"): the provenance says so,
    # and the finding is a warning (the features are close), not the error
    # of a vocabulary from another encoder.
    from helpers_models import save_tiny_wav2vec2

    from chandra.encoders import Wav2Vec2Encoder
    from chandra.normalisation import normalise
    from chandra.pipeline import fitted_on
    from chandra.vocabulary import GestureVocabulary

    directory = save_tiny_wav2vec2(tmp_path / "tiny")
    rng = np.random.default_rng(3)
    sr = 16000
    t = np.arange(4 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * (220 + 110 * (t > 2)) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    starts = np.arange(0.0, 4.0, 0.1)
    segments = type("S", (), {"start": starts, "end": starts + 0.1})()
    f32 = Wav2Vec2Encoder(model=directory, chunk_seconds=1.0, overlap_seconds=0.2)
    i8 = Wav2Vec2Encoder(model=directory, chunk_seconds=1.0, overlap_seconds=0.2, quantize="int8")
    X32, X8 = f32.encode(y, sr, segments), i8.encode(y, sr, segments)
    vocab = GestureVocabulary(n_tokens=4, random_state=0).fit(X32)
    recorded = fitted_on(f32.provenance(), dim=X32.shape[1])
    assert recorded["quantize"] == "none" and fitted_on(i8.provenance())["quantize"] == "int8"

    def model_with(features, encoder_provenance):
        events = [{"t": float(s), "gesture_token": int(k)} for s, k in zip(starts, vocab.predict(features))]
        return Model(events=events, features=normalise(features, method="l2").astype(np.float32), oracle=None,
                     provenance={"encoder": encoder_provenance},
                     vocabulary={"params": vocab.get_params(), "fitted_on": recorded},
                     centers=vocab.cluster_centers_.astype(np.float32), ledger=[])

    assert F.vocabulary_findings(model_with(X32, f32.provenance())) == []
    (hit,) = F.vocabulary_findings(model_with(X8, i8.provenance()))
    assert hit.code == F.VOCAB_ENCODER_MISMATCH and hit.severity == "warning"
    assert hit.evidence["conflicts"] == [{"aspect": "quantize", "vocabulary": "none", "features": "int8"}]
    assert "precision" in hit.message
    other_layer = dict(i8.provenance(), effective_layer=0, layer=0)
    (hit,) = F.vocabulary_findings(model_with(X8, other_layer))
    assert hit.severity == "error" and {c["aspect"] for c in hit.evidence["conflicts"]} == {"quantize", "layer"}
    # declared at trace checkpoints, the same rule
    entry = {"stage": "tokens", "provenance": {"encoder": i8.provenance(), "vocabulary": {"fitted_on": recorded}}}
    ((code, finding),) = F._declared_vocabulary_check(entry, "tokens", {})
    assert code == F.VOCAB_ENCODER_MISMATCH and finding.severity == "warning"
