"""Choosing K: the documented rule, ``n_tokens="auto"`` / ``--tokens auto`` on
20 s, 3 min and 30 min of real music, and the sparse-vocabulary finding."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from chandra import findings as F
from chandra.cli import main
from chandra.errors import VocabularyParameterError
from chandra.kchoice import K_CEILING, K_FLOOR, K_GRID, K_RULE, MIN_USES_PER_TOKEN, k_by_count, k_grid
from chandra.pipeline import RunState, TrainConfig, run_stage, train
from chandra.vocabulary import recommend_k

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from scripts.long_track import SR, build_track  # noqa: E402


def _write(path: Path, minutes: float) -> Path:
    sf.write(str(path), build_track(minutes), SR)
    return path


@pytest.fixture(scope="module")
def take_20s(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("k20") / "take_20s.flac", 20 / 60)


# --------------------------------------------------------------------------- the rule


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 200_000))
def test_recommendation_stays_inside_the_rule(n):
    rec = recommend_k(n)
    k, lo, hi = rec["k"], rec["bounds"]["min"], rec["bounds"]["max"]
    assert rec["rule"] == K_RULE and rec["reason"].endswith(".") and str(n) in rec["reason"]
    assert lo <= k <= hi and k <= n and k in K_GRID + (1,)
    if n >= K_FLOOR * MIN_USES_PER_TOKEN:  # not a tiny take: 8 ... 64, each token at least 4 segments
        assert (lo, hi) == (K_FLOOR, K_CEILING) and n / k >= MIN_USES_PER_TOKEN
        bigger = [g for g in K_GRID if k < g <= K_CEILING]
        assert not bigger or n / bigger[0] < MIN_USES_PER_TOKEN  # and it is the largest such grid size
    elif n == 1:
        assert k == lo == hi == 1
    else:
        assert hi == K_FLOOR and k >= 2
    assert recommend_k(n + 1)["k"] >= k  # more segments never recommend fewer tokens


def test_the_numbers_musicians_see():
    assert [recommend_k(n)["k"] for n in (1, 3, 22, 69, 176, 926, 9000)] == [1, 2, 4, 16, 32, 64, 64]
    assert "about 4 segments" in recommend_k(69)["reason"]
    assert "finer than a listener tells apart" in recommend_k(9000)["reason"]
    assert "the take is short" in recommend_k(22)["reason"]
    with pytest.raises(VocabularyParameterError):
        recommend_k(0)
    with pytest.raises(VocabularyParameterError):
        recommend_k(10, max_k=1)
    assert k_grid(40) == [2, 3, 4, 6, 8, 12, 16] and k_grid(40, include=(40,))[-1] == 40
    assert k_by_count(100)["allowed"] == [8, 12, 16, 24]


def test_features_lower_a_k_whose_tokens_would_be_used_once():
    # 6 distinct gestures, each heard exactly 12 times (72 segments): the count alone allows
    # K = 16, but 16 clusters of 6 sounds leave 10 tokens on single stray segments.
    rng = np.random.default_rng(3)
    prototypes = rng.standard_normal((6, 20)) * 4
    X = prototypes[np.tile(np.arange(6), 12)] + 0.05 * rng.standard_normal((72, 20))
    rec = recommend_k(len(X), features=X)
    ev = rec["evidence"]
    assert ev["by_count"] == 16 and ev["checked_features"]
    assert rec["k"] < 16 and "was tried first" in rec["reason"]
    top = ev["candidates"][0]
    assert top["k"] == 16 and top["accepted"] is False and top["why"]
    chosen = next(c for c in ev["candidates"] if c["k"] == rec["k"])
    assert chosen["accepted"] and chosen["rare_share"] <= 0.25


# --------------------------------------------------------------------------- auto on real music


def test_tokens_auto_on_a_20_second_take(take_20s, tmp_path, capsys):
    out = tmp_path / "m.chandra"
    assert main(["train", str(take_20s), "-o", str(out), "--tokens", "auto", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rec = summary["tokens_recommendation"]
    assert summary["tokens_k_configured"] == "auto" and summary["tokens_k"] == rec["k"]
    assert rec["bounds"]["min"] <= rec["k"] <= rec["bounds"]["max"]
    assert rec["evidence"]["n_segments"] == summary["segments"] and rec["evidence"]["checked_features"]
    assert not [f for f in summary["finding_details"] if f["code"] in (F.PARAM_MISMATCH, F.SPARSE_VOCABULARY)]

    from chandra.model import load_model

    model = load_model(out)
    vocab = model.provenance["vocabulary"]
    assert vocab["configured"]["n_tokens"] == "auto" and vocab["effective"]["n_tokens"] == rec["k"]
    assert vocab["recommendation"]["rule"] == K_RULE and vocab["recommendation"]["k"] == rec["k"]
    assert model.provenance["config"]["n_tokens"] == "auto" and model.vocabulary["n_tokens"] == rec["k"]
    assert not [f for f in F.model_findings(model) if f.code == F.PARAM_MISMATCH]


def test_tokens_auto_on_three_minutes():
    # Up to the vocabulary stage: what "auto" decides and records on a longer take.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        audio = _write(Path(tmp) / "take_3min.flac", 3.0)
        state = RunState(audio_path=str(audio), config=TrainConfig(n_tokens="auto"))
        for stage in ("load", "segment", "encode", "vocabulary"):
            run_stage(state, stage)
    summary = state.summaries["vocabulary"]
    rec = summary["recommendation"]
    n = len(state.segments)
    assert n > 600 and rec["evidence"]["n_segments"] == n
    assert K_FLOOR <= rec["k"] <= K_CEILING and n / rec["k"] >= MIN_USES_PER_TOKEN
    assert summary["n_tokens"] == rec["k"] == state.vocabulary.n_tokens_
    assert rec["evidence"]["candidates"] and rec["evidence"]["candidates"][0]["k"] == rec["evidence"]["by_count"]


def test_recommendation_on_thirty_minutes_of_segments():
    # Kept cheap: segmentation and the count rule (what the Home page shows before training).
    from chandra.segment import segment_audio

    segments = segment_audio(build_track(30.0), SR)
    n = len(segments)
    rec = recommend_k(n)
    assert n > 5000
    assert rec["k"] == K_CEILING and rec["bounds"] == {"min": K_FLOOR, "max": K_CEILING}
    assert f"{n} segments" in rec["reason"] and "finer than a listener" in rec["reason"]


# --------------------------------------------------------------------------- the sparse vocabulary


def test_sparse_vocabulary_on_a_short_take(take_20s):
    result = train(take_20s, TrainConfig(n_tokens=64))
    sparse = [f for f in result.findings if f["code"] == F.SPARSE_VOCABULARY]
    assert len(sparse) == 1
    (hit,) = sparse
    n = len(result.state.segments)
    ev = hit["evidence"]
    assert hit["severity"] == "warning" and hit["stage"] == "tokens"
    assert ev["present"] == n and ev["n_tokens"] == 64 and ev["rare_share"] > 0.5
    assert ev["used_once"] + ev["used_twice"] + ev["unused"] > 32
    assert ev["suggested_k"] == recommend_k(n)["k"] < 64
    assert f"K={ev['suggested_k']} suits {n} segments" in hit["message"]
    assert hit["meaning"] and hit["action"] and "fewer tokens" in hit["action"]
    assert "saved" in ev["stages"]  # reported once, where it began, with every stage it persists through

    auto = train(take_20s, TrainConfig(n_tokens="auto"))
    assert not [f for f in auto.findings if f["code"] == F.SPARSE_VOCABULARY]


def test_collapsed_tokens_are_not_also_called_sparse():
    from chandra.ledger import ledger_entry

    tokens = [3] * 40
    entry = ledger_entry("tokens", [{"gesture_token": t, "t": i * 0.1} for i, t in enumerate(tokens)],
                         tokens=tokens, n_tokens=16)
    found = F.ledger_findings([entry], vocabulary={"fit_metrics": {"active": 16}})
    codes = {f.code for f in found}
    assert F.TOKEN_COLLAPSE in codes and F.SPARSE_VOCABULARY not in codes
