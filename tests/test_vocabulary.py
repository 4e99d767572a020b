"""Tests for chandra.vocabulary: normalisation, the K-means estimator, token metrics."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from chandra.errors import ChandraError, ParameterError, VocabularyError, VocabularyParameterError
from chandra.vocabulary import (
    GestureVocabulary,
    VocabularyNotFittedError,
    count_zero_rows,
    normalise,
    summarize_vocabulary,
    token_metrics,
    validate_tokens,
)


def blobs(n_per: int = 30, dim: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated clusters on different axes (distinct after L2 too)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in range(4):
        centre = np.zeros(dim)
        centre[c] = 10.0
        X.append(centre + rng.normal(scale=0.3, size=(n_per, dim)))
        y.extend([c] * n_per)
    return np.vstack(X).astype(np.float32), np.asarray(y)


# ---------------------------------------------------------------- normalise


def test_l2_rows_have_unit_norm_and_zero_rows_stay_zero():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 8))
    X[3] = 0.0
    X[11] = 0.0
    Z = normalise(X, method="l2")
    assert Z.dtype == np.float32 and Z.shape == (20, 8)
    norms = np.linalg.norm(Z.astype(np.float64), axis=1)
    keep = np.ones(20, bool)
    keep[[3, 11]] = False
    np.testing.assert_allclose(norms[keep], 1.0, atol=1e-6)
    assert np.all(Z[[3, 11]] == 0.0)
    assert np.isfinite(Z).all()
    assert count_zero_rows(X) == 2


def test_standard_zscores_and_constant_dims_become_zero():
    rng = np.random.default_rng(0)
    X = rng.normal(loc=5.0, scale=3.0, size=(50, 4))
    X[:, 2] = 7.25
    Z = normalise(X, method="standard").astype(np.float64)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z[:, [0, 1, 3]].std(axis=0), 1.0, atol=1e-5)
    assert np.all(Z[:, 2] == 0.0)


def test_none_is_identity_as_float32():
    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    Z = normalise(X, method="none")
    assert Z.dtype == np.float32
    np.testing.assert_array_equal(Z, X.astype(np.float32))


def test_normalise_rejects_bad_input():
    with pytest.raises(VocabularyError, match="2-D"):
        normalise(np.zeros(5))
    with pytest.raises(VocabularyError, match="unknown normalisation"):
        normalise(np.zeros((2, 2)), method="max")
    X = np.ones((10, 3))
    X[4, 1] = np.nan
    X[7, 0] = np.inf
    with pytest.raises(VocabularyError, match=r"2 of 10 rows.*rows 4, 7"):
        normalise(X)


# ---------------------------------------------------------------- estimator


def test_known_clusters_recovered_each_pure():
    X, y = blobs()
    vocab = GestureVocabulary(n_tokens=4, random_state=0)
    assert vocab.fit(X) is vocab
    tokens = vocab.predict(X)
    assert tokens.dtype == np.int64 and tokens.shape == (120,)
    # each true cluster maps to exactly one token, and the mapping is a bijection
    mapping = {c: set(tokens[y == c].tolist()) for c in range(4)}
    assert all(len(s) == 1 for s in mapping.values())
    assert len({next(iter(s)) for s in mapping.values()}) == 4
    np.testing.assert_array_equal(vocab.labels_, tokens)
    assert vocab.n_tokens_ == 4
    assert vocab.cluster_centers_.dtype == np.float32
    assert vocab.cluster_centers_.shape == (4, 16)
    assert vocab.n_features_in_ == 16
    assert vocab.fit_metrics_["active"] == 4
    assert vocab.fit_metrics_["entropy_bits"] == pytest.approx(2.0)
    assert vocab.effective_params_["reduced"] is False
    assert vocab.inertia_ > 0
    np.testing.assert_array_equal(vocab.fit_predict(X), tokens)


def test_transform_is_l2_normalised_space():
    X, _ = blobs()
    vocab = GestureVocabulary(n_tokens=4).fit(X)
    T = vocab.transform(X)
    assert T.dtype == np.float32 and T.shape == X.shape
    np.testing.assert_allclose(np.linalg.norm(T.astype(np.float64), axis=1), 1.0, atol=1e-6)


def test_same_seed_is_byte_identical():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    a = GestureVocabulary(n_tokens=8, random_state=3).fit(X)
    b = GestureVocabulary(n_tokens=8, random_state=3).fit(X)
    assert a.cluster_centers_.tobytes() == b.cluster_centers_.tobytes()
    assert a.predict(X).tobytes() == b.predict(X).tobytes()
    assert a.inertia_ == b.inertia_


def test_different_seed_differs_on_ambiguous_data():
    # isotropic noise has no true clusters, so the seeded initialisation shows
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 12)).astype(np.float32)
    a = GestureVocabulary(n_tokens=8, random_state=0, n_init=1).fit(X)
    b = GestureVocabulary(n_tokens=8, random_state=1, n_init=1).fit(X)
    assert a.cluster_centers_.tobytes() != b.cluster_centers_.tobytes()


def test_k_larger_than_segments_raises_with_both_numbers():
    X = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(VocabularyError) as info:
        GestureVocabulary(n_tokens=64).fit(X)
    msg = str(info.value)
    assert "64" in msg and "10" in msg and "n_tokens" in msg and "--" not in msg and "longer audio" in msg
    assert isinstance(info.value, ChandraError)


def test_reduce_k_records_reduction_for_few_samples():
    X = np.random.default_rng(0).normal(size=(10, 4))
    vocab = GestureVocabulary(n_tokens=64, reduce_k=True).fit(X)
    assert vocab.n_tokens_ == 10
    eff = vocab.effective_params_
    assert eff["n_tokens"] == {"configured": 64, "effective": 10}
    assert eff["reduced"] is True
    assert "10" in eff["reason"] and "64" in eff["reason"]
    assert vocab.fit_metrics_["n_tokens"] == 10
    assert set(vocab.predict(X).tolist()) == set(range(10))


def test_too_few_distinct_rows():
    base = np.random.default_rng(0).normal(size=(3, 4))
    # 30 rows but only 3 distinct directions (scaled copies coincide after L2)
    X = np.vstack([base * s for s in np.linspace(1, 5, 10)])
    with pytest.raises(VocabularyError, match=r"only 3 distinct"):
        GestureVocabulary(n_tokens=5).fit(X)
    vocab = GestureVocabulary(n_tokens=5, reduce_k=True).fit(X)
    assert vocab.n_tokens_ == 3
    assert vocab.effective_params_["reduced"] is True
    assert vocab.n_distinct_rows_ == 3


def test_fit_rejects_nan_rows_and_bad_shapes():
    X, _ = blobs()
    X = X.astype(np.float64)
    X[[5, 17, 90]] = np.nan
    with pytest.raises(VocabularyError, match=r"3 of 120 rows.*rows 5, 17, 90"):
        GestureVocabulary(n_tokens=4).fit(X)
    with pytest.raises(VocabularyError, match="2-D"):
        GestureVocabulary(n_tokens=4).fit(np.zeros((2, 3, 4)))
    with pytest.raises(VocabularyParameterError, match="n_tokens") as info:
        GestureVocabulary(n_tokens=0).fit(np.zeros((3, 3)))
    assert info.value.parameter == "n_tokens"
    assert isinstance(info.value, ParameterError) and isinstance(info.value, ValueError)
    with pytest.raises(VocabularyParameterError, match="normalisation"):
        GestureVocabulary(normalisation="l1").fit(np.zeros((3, 3)))
    with pytest.raises(VocabularyParameterError, match="random_state must be an integer") as info:
        GestureVocabulary(n_tokens=2, random_state=None).fit(np.eye(3))
    assert info.value.parameter == "random_state"
    with pytest.raises(VocabularyError, match="Reshape your data"):
        GestureVocabulary(n_tokens=2).fit(np.zeros(5))
    with pytest.raises(VocabularyError, match="no rows"):
        GestureVocabulary(n_tokens=2).fit(np.zeros((0, 3)))
    with pytest.raises(VocabularyError, match="Complex data not supported"):
        GestureVocabulary(n_tokens=2).fit(np.eye(3) * 1j)
    with pytest.raises(TypeError, match="not 'dict'") as info:
        GestureVocabulary(n_tokens=2).fit(np.array([[1.0, {"a": 1}], [2.0, 3.0]], dtype=object))
    assert isinstance(info.value, VocabularyError)


def test_errors_name_parameters_not_cli_flags():
    X = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(VocabularyError) as info:
        GestureVocabulary(n_tokens=64).fit(X)
    assert info.value.parameter == "n_tokens"
    assert "the largest K that works is 10 (n_tokens=10)" in str(info.value) and "--" not in str(info.value)
    assert info.value.largest_k == 10 and info.value.recommended_k == 2
    with pytest.raises(VocabularyError) as info:
        GestureVocabulary(n_tokens=2, pca_components=9).fit(X)
    assert info.value.parameter == "pca_components" and "--" not in str(info.value)


def test_predict_before_fit_and_dimension_mismatch():
    from sklearn.exceptions import NotFittedError

    for method in ("predict", "transform", "get_state"):
        with pytest.raises(VocabularyNotFittedError, match="not fitted") as info:
            getattr(GestureVocabulary(), method)(*([np.zeros((2, 3))] if method != "get_state" else []))
        # one error, three ways to catch it: the project root, the vocabulary
        # family and scikit-learn's own type
        assert isinstance(info.value, ChandraError)
        assert isinstance(info.value, VocabularyError)
        assert isinstance(info.value, NotFittedError)
    X, _ = blobs()
    vocab = GestureVocabulary(n_tokens=4).fit(X)
    with pytest.raises(VocabularyError, match="16"):
        vocab.predict(np.zeros((2, 3)))


def test_zero_rows_counted_and_tokenised():
    X, _ = blobs()
    X = X.copy()
    X[:2] = 0.0
    vocab = GestureVocabulary(n_tokens=4).fit(X)
    assert vocab.n_zero_rows_ == 2
    assert np.isfinite(vocab.cluster_centers_).all()


def test_pca_path():
    X, y = blobs(dim=32)
    vocab = GestureVocabulary(n_tokens=4, pca_components=3, random_state=0).fit(X)
    T = vocab.transform(X)
    assert T.shape == (120, 3) and T.dtype == np.float32
    assert vocab.cluster_centers_.shape == (4, 3)
    assert vocab.pca_ is not None
    assert vocab.effective_params_["pca_components"] == {"configured": 3, "effective": 3}
    tokens = vocab.predict(X)
    assert all(len(set(tokens[y == c].tolist())) == 1 for c in range(4))
    with pytest.raises(VocabularyError, match=r"pca_components=40 exceeds"):
        GestureVocabulary(n_tokens=4, pca_components=40).fit(X)


def test_standard_normalisation_reuses_fit_statistics():
    X, _ = blobs()
    vocab = GestureVocabulary(n_tokens=4, normalisation="standard").fit(X)
    # one row alone must land where it landed in the fit set, which needs the
    # fit-set mean and scale rather than its own (which would zero it out)
    np.testing.assert_array_equal(vocab.predict(X[7:8]), vocab.labels_[7:8])
    np.testing.assert_allclose(vocab.transform(X).mean(axis=0), 0.0, atol=1e-5)


def test_get_params_set_params_and_clone():
    from sklearn.base import clone

    vocab = GestureVocabulary(n_tokens=16, pca_components=8, random_state=7, reduce_k=True)
    params = vocab.get_params()
    assert params == {
        "n_tokens": 16,
        "normalisation": "l2",
        "pca_components": 8,
        "random_state": 7,
        "n_init": 4,
        "max_iter": 300,
        "reduce_k": True,
        "algorithm": "auto",
    }
    json.dumps(params)  # usable as a provenance / cache key
    assert vocab.set_params(n_tokens=4) is vocab
    assert vocab.n_tokens == 4
    assert clone(vocab).get_params() == vocab.get_params()
    with pytest.raises(TypeError):
        GestureVocabulary(16)  # options are keyword-only


def test_state_round_trip_without_pickle():
    X, _ = blobs(dim=20)
    vocab = GestureVocabulary(n_tokens=4, pca_components=5, normalisation="standard").fit(X)
    meta, arrays = vocab.get_state()
    meta = json.loads(json.dumps(meta))
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    again = GestureVocabulary.from_state(meta, arrays)
    np.testing.assert_array_equal(again.predict(X), vocab.predict(X))
    assert again.transform(X).tobytes() == vocab.transform(X).tobytes()
    assert summarize_vocabulary(again)["pca_components"] == 5
    with pytest.raises(VocabularyError, match="malformed"):
        GestureVocabulary.from_state({"params": {}}, arrays)


def test_state_written_with_seed_param_still_loads():
    # States stored before the seed -> random_state rename carry "seed".
    X, _ = blobs(dim=20)
    vocab = GestureVocabulary(n_tokens=4, random_state=5).fit(X)
    meta, arrays = vocab.get_state()
    old = json.loads(json.dumps(meta))
    old["params"]["seed"] = old["params"].pop("random_state")
    del old["n_iter_"]
    again = GestureVocabulary.from_state(old, arrays)
    assert again.random_state == 5 and "seed" not in again.get_params()
    np.testing.assert_array_equal(again.predict(X), vocab.predict(X))
    both = json.loads(json.dumps(meta))
    both["params"]["seed"] = 5
    with pytest.raises(VocabularyError, match="both 'seed' and 'random_state'"):
        GestureVocabulary.from_state(both, arrays)


def test_restored_vocabulary_is_a_fitted_estimator():
    from sklearn.utils.validation import check_is_fitted

    import pandas as pd
    X, _ = blobs(dim=6)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    vocab = GestureVocabulary(n_tokens=4).fit(frame)
    assert list(vocab.feature_names_in_) == [f"f{i}" for i in range(6)]
    meta, arrays = vocab.get_state()
    again = GestureVocabulary.from_state(json.loads(json.dumps(meta)), arrays)
    check_is_fitted(again)
    assert list(again.feature_names_in_) == list(vocab.feature_names_in_)
    assert again.n_iter_ == vocab.n_iter_
    np.testing.assert_array_equal(again.predict(frame), vocab.predict(frame))
    assert list(again.get_feature_names_out()) == [f"gesturevocabulary{i}" for i in range(6)]


def test_summarize_vocabulary_is_scalars():
    X, _ = blobs()
    s = summarize_vocabulary(GestureVocabulary(n_tokens=4, pca_components=2).fit(X))
    assert s["n_tokens"] == 4 and s["n_tokens_configured"] == 4
    assert s["active"] == 4 and s["empty_tokens"] == 0
    assert 0.0 < s["pca_explained_variance"] <= 1.0
    assert all(v is None or isinstance(v, (int, float, str, bool)) for v in s.values())
    assert s["random_state"] == 0 and "seed" not in s
    json.dumps(s)


# ---------------------------------------------------------------- scikit-learn's own checks

# K = 3: the checks fit on 10-50 samples, so the default K = 64 would only
# exercise the "too few segments" refusal. The three instances cover each
# normalisation, the PCA path and reduce_k.
_CHECKED = [
    GestureVocabulary(n_tokens=3),
    GestureVocabulary(n_tokens=3, normalisation="standard", pca_components=2),
    GestureVocabulary(n_tokens=3, normalisation="none", reduce_k=True),
]


@parametrize_with_checks(_CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    if name == "check_array_api_input" and os.environ.get("SCIPY_ARRAY_API") != "1":
        # This check needs SCIPY_ARRAY_API=1 set before scipy is first
        # imported, and skips itself otherwise; run it where that holds.
        _run_array_api_check_in_subprocess(estimator)
        return
    check(estimator)


def _run_array_api_check_in_subprocess(estimator) -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import warnings\n"
        "from sklearn.utils.estimator_checks import check_estimator\n"
        "from chandra.vocabulary import GestureVocabulary\n"
        f"est = GestureVocabulary(**{estimator.get_params()!r})\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    res = [r for r in check_estimator(est, on_fail=None)\n"
        "           if r['check_name'] == 'check_array_api_input']\n"
        "assert res, 'check_array_api_input was not run'\n"
        "bad = [(r['status'], str(r['exception'])) for r in res if r['status'] != 'passed']\n"
        "assert not bad, bad\n"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "PYTHONPATH": str(repo)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---------------------------------------------------------------- token metrics


def test_token_metrics_uniform_over_four():
    m = token_metrics([0, 1, 2, 3] * 5, n_tokens=4)
    assert m["n"] == 20 and m["present"] == 20 and m["missing"] == 0
    assert m["unique"] == 4 and m["active"] == 4
    assert m["entropy_bits"] == 2.0
    assert m["max_entropy_bits"] == 2.0
    assert m["normalised_entropy"] == 1.0
    assert m["perplexity"] == 4.0
    assert m["top_share"] == 0.25 and m["top_token"] == 0
    assert m["counts"] == [5, 5, 5, 5]
    assert m["empty_tokens"] == []


def test_token_metrics_single_token_collapse():
    m = token_metrics(np.full(50, 3, dtype=np.int64), n_tokens=64)
    assert m["entropy_bits"] == 0.0
    assert m["perplexity"] == 1.0
    assert m["top_token"] == 3 and m["top_share"] == 1.0
    assert m["unique"] == 1
    assert m["max_entropy_bits"] == 6.0
    assert len(m["counts"]) == 64 and m["counts"][3] == 50
    assert len(m["empty_tokens"]) == 63 and 3 not in m["empty_tokens"]


def test_token_metrics_known_skewed_distribution():
    m = token_metrics([0, 0, 1, 2], n_tokens=8)
    # H = 0.5*1 + 0.25*2 + 0.25*2
    assert m["entropy_bits"] == pytest.approx(1.5)
    assert m["perplexity"] == pytest.approx(2**1.5)
    assert m["normalised_entropy"] == pytest.approx(0.5)
    assert m["empty_tokens"] == [3, 4, 5, 6, 7]


def test_token_metrics_counts_missing():
    m = token_metrics([None, 1, -1, 1, float("nan"), 2], n_tokens=4)
    assert m["n"] == 6 and m["missing"] == 3 and m["present"] == 3
    assert m["counts"] == [0, 2, 1, 0]
    assert m["top_token"] == 1 and m["top_share"] == pytest.approx(2 / 3)
    all_missing = token_metrics([None] * 5, n_tokens=4)
    assert all_missing["missing"] == 5 and all_missing["unique"] == 0
    assert all_missing["entropy_bits"] == 0.0 and all_missing["top_token"] is None


def test_token_metrics_empty_input():
    m = token_metrics([], n_tokens=64)
    assert m["n"] == 0 and m["unique"] == 0 and m["missing"] == 0
    assert m["entropy_bits"] == 0.0 and m["perplexity"] == 0.0 and m["top_share"] == 0.0
    assert m["counts"] == [0] * 64
    json.dumps(m)


def test_token_metrics_and_validate_reject_out_of_range():
    with pytest.raises(VocabularyError, match=r"outside \[0, 4\)"):
        token_metrics([0, 4], n_tokens=4)
    with pytest.raises(VocabularyError, match="not an integer"):
        token_metrics([0, 1.5], n_tokens=4)
    with pytest.raises(VocabularyError, match="n_tokens"):
        token_metrics([0], n_tokens=0)
    validate_tokens([0, 1, None], n_tokens=2)
    with pytest.raises(VocabularyError, match="1 records have no token"):
        validate_tokens([0, 1, None], n_tokens=2, allow_missing=False)
    with pytest.raises(VocabularyError, match="-2"):
        validate_tokens(np.array([0, -2]), n_tokens=2)
    with pytest.raises(VocabularyError, match="1-D"):
        validate_tokens(np.zeros((2, 2), dtype=int), n_tokens=2)


def test_entropy_matches_definition_on_random_tokens():
    rng = np.random.default_rng(3)
    toks = rng.integers(0, 10, size=500)
    m = token_metrics(toks.tolist(), n_tokens=16)
    p = np.bincount(toks, minlength=16) / 500
    p = p[p > 0]
    assert m["entropy_bits"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert math.isclose(m["perplexity"], 2 ** m["entropy_bits"])


# ---------------------------------------------------------------------------
# K-means initialisations side by side


@pytest.mark.parametrize("n, d, k, seed, n_init", [(300, 8, 7, 0, 4), (500, 32, 16, 11, 4), (200, 5, 64, 3, 3),
                                                   (120, 3, 2, 9, 6), (400, 16, 33, 2, 1)])
def test_kmeans_runs_side_by_side_are_scikit_learns_loop(n, d, k, seed, n_init):
    """The n_init runs on two threads give scikit-learn's sequential result bit for bit."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    from chandra import vocabulary

    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(c, 1.0 + c % 3, size=(n // 10, d)) for c in range(10)])
    with threadpool_limits(limits=1):
        ref = KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=300, random_state=seed,
                     algorithm="lloyd").fit(X)
    got = vocabulary._kmeans_runs_side_by_side(X, k, n_init=n_init, max_iter=300, seed=seed, workers=2)
    np.testing.assert_array_equal(got.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    assert got.n_iter_ == ref.n_iter_ and got.inertia_ == ref.inertia_
    assert vocabulary._side_by_side_is_exact()


def test_vocabulary_is_the_same_with_runs_side_by_side(monkeypatch):
    from chandra import vocabulary

    X = np.random.default_rng(5).normal(size=(600, 24)).astype(np.float32)
    fits = []
    for exact in (False, True):  # False: scikit-learn's own loop
        monkeypatch.setattr(vocabulary, "_SIDE_BY_SIDE_EXACT", exact)
        fits.append(GestureVocabulary(n_tokens=12, random_state=4).fit(X))
    np.testing.assert_array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    np.testing.assert_array_equal(fits[0].labels_, fits[1].labels_)
    assert fits[0].n_iter_ == fits[1].n_iter_


def test_same_clustering_is_a_label_permutation_test():
    from chandra.vocabulary import _same_clustering

    a = np.array([0, 0, 1, 2, 2])
    assert _same_clustering(a, np.array([2, 2, 0, 1, 1]))
    assert not _same_clustering(a, np.array([2, 2, 0, 1, 0]))
    # scikit-learn's rule looks one way only: a merge seen from the finer side is "the same"
    assert _same_clustering(a, np.array([1, 1, 0, 0, 0]))
