"""Gesture vocabulary: normalised feature vectors -> K-means tokens.

The vocabulary turns one feature vector per segment into one integer
"gesture token" per segment. Features are normalised (row-wise L2 by
default, the IRCAM choice), optionally reduced with PCA, and clustered with
seeded K-means. :class:`GestureVocabulary` is a scikit-learn estimator (a
transformer and a clusterer that passes
:func:`sklearn.utils.estimator_checks.check_estimator`): ``__init__`` only
stores keyword parameters, ``fit`` returns ``self``, learned state ends in
``_``, and calling it before ``fit`` raises
:class:`VocabularyNotFittedError`, which is both a
:class:`~chandra.errors.VocabularyError` and scikit-learn's
:class:`~sklearn.exceptions.NotFittedError`.

The normalisation step (:func:`normalise`, :data:`NORMALISATIONS`) lives in
:mod:`chandra.normalisation`, which imports without scikit-learn, and is
re-exported here.

Token statistics (:func:`token_metrics`) are kept apart from the estimator on
purpose: the same function must describe the K-means fit set *and* the
tokens that later arrive in events, saved models and generations, because a
vocabulary that looks perfect on its fit set says nothing about whether the
tokens survived the rest of the pipeline.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import NotFittedError

from chandra.errors import VocabularyError, VocabularyParameterError, VocabularyTypeError, first_line
from chandra.ledger import token_stats
from chandra.normalisation import (
    _MAX_ROWS_IN_MESSAGE,
    _ZERO_NORM,
    NORMALISATIONS,
    _check_finite_rows,
    _l2,
    _standard_stats,
    count_zero_rows,
    normalise,
)

__all__ = [
    "ALGORITHMS",
    "MINIBATCH_ABOVE",
    "NORMALISATIONS",
    "normalise",
    "count_zero_rows",
    "GestureVocabulary",
    "VocabularyNotFittedError",
    "token_metrics",
    "validate_tokens",
    "summarize_vocabulary",
    "K_GRID",
    "K_RULE",
    "K_FLOOR",
    "K_CEILING",
    "MIN_USES_PER_TOKEN",
    "SPARSE_TOKEN_SHARE",
    "RARE_USES",
    "k_grid",
    "k_sweep",
    "recommend_k",
    "largest_workable_k",
]

#: K-means flavours of :class:`GestureVocabulary`: ``"auto"`` picks ``"full"`` (Lloyd, all rows
#: every iteration) up to :data:`MINIBATCH_ABOVE` rows and ``"minibatch"`` (Sculley 2010) above.
ALGORITHMS = ("auto", "full", "minibatch")
#: Rows above which ``algorithm="auto"`` fits with mini-batch K-means. Measured with
#: benchmarks/bench_vocabulary.py (benchmarks/RESULTS.md, section 11): mini-batch costs 1-2 % more
#: inertia and agrees with full K-means as well as two full fits with different seeds agree with
#: each other; full K-means at 30k x 768 took 100 s against 18 s, and grows with rows x dim.
MINIBATCH_ABOVE = 50_000
#: Rows per mini-batch (scikit-learn's default is 1024; larger batches give centres closer to full
#: K-means at the same seed).
MINIBATCH_SIZE = 4096

# ---------------------------------------------------------------------------
# estimator
# ---------------------------------------------------------------------------


class VocabularyNotFittedError(VocabularyError, NotFittedError):
    """A :class:`GestureVocabulary` was used before :meth:`~GestureVocabulary.fit`.

    Both a :class:`~chandra.errors.VocabularyError` (so ``except
    ChandraError`` callers keep working) and scikit-learn's
    :class:`~sklearn.exceptions.NotFittedError` (so scikit-learn tooling
    recognises it).
    """


class GestureVocabulary(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """Seeded K-means vocabulary of gesture tokens.

    A scikit-learn transformer and clusterer: :meth:`transform` maps feature
    vectors into the space K-means runs in, :meth:`predict` to tokens.

    Parameters
    ----------
    n_tokens : int
        Configured vocabulary size K (number of K-means clusters).
    normalisation : {"l2", "standard", "none"}
        Applied before PCA and K-means. For ``"standard"`` the statistics of
        the fit set are stored and reused by :meth:`transform`/:meth:`predict`.
    pca_components : int or None
        Reduce the normalised features to this many principal components
        before clustering; ``None`` keeps all dimensions.
    random_state : int
        Seed for K-means initialisation (and PCA, whose full SVD does not use
        it). The same seed on the same data gives byte-identical centres and
        labels. Only integers are accepted (not ``None`` or a
        ``RandomState``): a vocabulary must be reproducible from its
        recorded parameters. Formerly called ``seed``; stored states with
        ``seed`` still load (:meth:`from_state`).
    n_init : int
        K-means restarts; the lowest-inertia run wins.
    max_iter : int
        Maximum Lloyd iterations per restart.
    reduce_k : bool
        When the data cannot support K clusters (fewer samples or fewer
        distinct rows than ``n_tokens``), ``False`` raises
        :class:`~chandra.errors.VocabularyError`; ``True`` lowers K to the
        number of distinct rows and records why in ``effective_params_``.
    algorithm : {"auto", "full", "minibatch"}
        ``"full"``: Lloyd's K-means over every row (scikit-learn ``KMeans``);
        ``"minibatch"``: mini-batch K-means (``MiniBatchKMeans``, batches of
        :data:`MINIBATCH_SIZE` rows, same seed and ``n_init``), for corpora
        where full K-means is too slow; ``"auto"``: full up to
        :data:`MINIBATCH_ABOVE` rows, mini-batch above. Both are
        deterministic for a seed; tokens always come from the nearest
        stored centre. The choice is recorded in ``effective_params_``.

    Attributes
    ----------
    cluster_centers_ : np.ndarray, float32, shape (n_tokens_, d')
        Centres in the transformed space (d' = PCA components or n_features).
    n_tokens_ : int
        Effective K.
    pca_ : sklearn.decomposition.PCA or None
    fit_metrics_ : dict
        :func:`token_metrics` of the fit-set labels (against ``n_tokens_``).
    labels_ : np.ndarray, int64, shape (n_samples,)
        Tokens of the fit set (empty for a vocabulary rebuilt by
        :meth:`from_state`: the fit set is not part of the state).
    inertia_ : float
        Sum of squared distances of fit rows to their centre (transformed space).
    n_features_in_ : int
    feature_names_in_ : np.ndarray of str, shape (n_features_in_,)
        Only when ``X`` given to :meth:`fit` had string column names (a
        pandas DataFrame).
    n_samples_fit_ : int
    n_iter_ : int
        Lloyd iterations of the winning K-means run.
    n_zero_rows_ : int
        Fit rows that were all-zero before normalisation.
    n_distinct_rows_ : int
        Distinct rows of the fit set in the transformed space.
    effective_params_ : dict
        ``{"n_tokens": {"configured", "effective"}, "pca_components":
        {"configured", "effective"}, "algorithm": {"configured", "effective"},
        "reduced": bool, "reason": str | None}``.
    """

    def __init__(
        self,
        *,
        n_tokens: int = 64,
        normalisation: str = "l2",
        pca_components: int | None = None,
        random_state: int = 0,
        n_init: int = 4,
        max_iter: int = 300,
        reduce_k: bool = False,
        algorithm: str = "auto",
    ) -> None:
        self.n_tokens = n_tokens
        self.normalisation = normalisation
        self.pca_components = pca_components
        self.random_state = random_state
        self.n_init = n_init
        self.max_iter = max_iter
        self.reduce_k = reduce_k
        self.algorithm = algorithm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # transform() always returns float32 (the dtype of the stored
        # centres), so only float32 input keeps its dtype.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- parameter checks -------------------------------------------------

    def _check_params(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise VocabularyParameterError(
                f"unknown normalisation {self.normalisation!r}; choose one of {NORMALISATIONS}",
                parameter="normalisation",
            )
        if not _is_int(self.n_tokens) or self.n_tokens < 1:
            raise VocabularyParameterError(
                f"n_tokens must be a positive integer; got {self.n_tokens!r}", parameter="n_tokens"
            )
        if self.pca_components is not None and (
            not _is_int(self.pca_components) or self.pca_components < 1
        ):
            raise VocabularyParameterError(
                f"pca_components must be a positive integer or None; got {self.pca_components!r}",
                parameter="pca_components",
            )
        if not _is_int(self.n_init) or self.n_init < 1:
            raise VocabularyParameterError(
                f"n_init must be a positive integer; got {self.n_init!r}", parameter="n_init"
            )
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise VocabularyParameterError(
                f"max_iter must be a positive integer; got {self.max_iter!r}", parameter="max_iter"
            )
        if not _is_int(self.random_state):
            raise VocabularyParameterError(
                f"random_state must be an integer; got {self.random_state!r}", parameter="random_state"
            )
        if self.algorithm not in ALGORITHMS:
            raise VocabularyParameterError(
                f"unknown algorithm {self.algorithm!r}; choose one of {ALGORITHMS}", parameter="algorithm"
            )

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        """``X`` as a finite 2-D float64 array, through scikit-learn's
        ``validate_data`` (which sets or checks ``n_features_in_`` and
        ``feature_names_in_``); every refusal is a VocabularyError."""
        from scipy import sparse
        from sklearn.utils.validation import validate_data

        if not sparse.issparse(X):
            try:
                shape = np.asarray(X).shape
            except (TypeError, ValueError) as exc:
                raise VocabularyError(f"X must be a numeric 2-D array: {first_line(exc)}") from exc
            if len(shape) != 2:
                hint = ""
                if len(shape) == 1:
                    hint = (". Reshape your data with X.reshape(-1, 1) for one feature or "
                            "X.reshape(1, -1) for one sample")
                raise VocabularyError(
                    f"X must be 2-D (n_samples, n_features); got {len(shape)}-D with shape {shape}{hint}"
                )
            if shape[0] == 0:
                raise VocabularyError("X has no rows (0 segments); give audio with at least one onset")
        try:
            arr = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False)
        except TypeError as exc:
            raise VocabularyTypeError(first_line(exc)) from exc
        except ValueError as exc:
            raise VocabularyError(first_line(exc)) from exc
        _check_finite_rows(arr)
        return arr

    # -- fitting ------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> "GestureVocabulary":
        """Learn normalisation statistics, PCA and K-means centres.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features)
            One feature vector per segment.
        y : ignored
            Present for scikit-learn API compatibility.

        Returns
        -------
        self

        Raises
        ------
        VocabularyParameterError
            A parameter with a bad value or type.
        VocabularyError
            Malformed ``X``; NaN/inf rows; fewer samples or distinct rows
            than ``n_tokens`` (unless ``reduce_k``); ``pca_components`` larger
            than ``min(n_samples, n_features)``.
        """
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        self._check_params()
        arr = self._validate_X(X, reset=True)
        n_samples, n_features = arr.shape
        k_cfg = int(self.n_tokens)
        seed = int(self.random_state)

        if n_samples < k_cfg and not self.reduce_k:
            rec = recommend_k(n_samples)["k"]
            exc = VocabularyError(
                f"cannot fit {k_cfg} tokens to {n_samples} segments (n_samples={n_samples}; K must be "
                f"<= the number of segments): the largest K that works is {n_samples} (n_tokens={n_samples}), "
                f"and the recommended K for {n_samples} segments is {rec} (n_tokens=auto); or enable "
                f"reduce_k, or give longer audio",
                parameter="n_tokens",
            )
            exc.largest_k, exc.recommended_k = n_samples, rec
            raise exc
        if self.pca_components is not None and self.pca_components > min(n_samples, n_features):
            raise VocabularyError(
                f"pca_components={self.pca_components} exceeds min(n_samples={n_samples}, "
                f"n_features={n_features}); lower pca_components or give more segments",
                parameter="pca_components",
            )

        self.n_zero_rows_ = int(np.count_nonzero(np.linalg.norm(arr, axis=1) <= _ZERO_NORM))
        if self.normalisation == "standard":
            self.norm_mean_, self.norm_scale_ = _standard_stats(arr)
        else:
            self.norm_mean_, self.norm_scale_ = None, None
        Z = self._normalise(arr).astype(np.float32)

        # Single-threaded BLAS/OpenMP: parallel reductions sum in a
        # scheduling-dependent order, which would break byte-identical
        # results for a fixed seed. The data sizes here are small.
        with threadpool_limits(limits=1):
            if self.pca_components is not None:
                self.pca_ = PCA(n_components=int(self.pca_components), svd_solver="full", random_state=seed)
                self.pca_.fit(Z.astype(np.float64))
                self.pca_mean_ = self.pca_.mean_.astype(np.float64)
                self.pca_components_matrix_ = self.pca_.components_.astype(np.float64)
            else:
                self.pca_ = None
                self.pca_mean_ = None
                self.pca_components_matrix_ = None
            T = self._project(Z)

            n_distinct = _n_distinct_rows(T)
            self.n_distinct_rows_ = n_distinct
            k_eff, reason = k_cfg, None
            if n_samples < k_cfg:
                k_eff = min(n_samples, n_distinct)
                reason = (
                    f"{n_samples} segments < {k_cfg} tokens; K lowered to {k_eff}, the largest K that works"
                    + (f" ({n_distinct} distinct rows)" if n_distinct < n_samples else "")
                    + f" (the recommended K for {n_samples} segments is {recommend_k(n_samples)['k']})"
                )
            elif n_distinct < k_cfg:
                if not self.reduce_k:
                    hint = ""
                    if n_features == 1 and self.normalisation == "l2":
                        hint = "; with n_features=1, l2 normalisation maps every row to -1, 0 or 1"
                    exc = VocabularyError(
                        f"cannot fit {k_cfg} tokens: only {n_distinct} distinct feature rows among "
                        f"{n_samples} segments (after {self.normalisation} normalisation"
                        f"{' and PCA' if self.pca_ is not None else ''}{hint}): the largest K that works is "
                        f"{n_distinct} (n_tokens={n_distinct}); or enable reduce_k, or give longer / more "
                        f"varied audio",
                        parameter="n_tokens",
                    )
                    exc.largest_k, exc.recommended_k = n_distinct, min(n_distinct, recommend_k(n_samples)["k"])
                    raise exc
                k_eff = n_distinct
                reason = (f"only {n_distinct} distinct rows < {k_cfg} tokens; K lowered to {k_eff}, "
                          "the largest K that works")

            algorithm = self.algorithm
            if algorithm == "auto":
                algorithm = "minibatch" if n_samples > MINIBATCH_ABOVE else "full"
            if algorithm == "minibatch":
                from sklearn.cluster import MiniBatchKMeans

                km = MiniBatchKMeans(
                    n_clusters=k_eff,
                    init="k-means++",
                    n_init=int(self.n_init),
                    max_iter=int(self.max_iter),
                    batch_size=MINIBATCH_SIZE,
                    random_state=seed,
                )
                km.fit(T.astype(np.float64))
            else:
                km = _full_kmeans(T.astype(np.float64), k_eff, n_init=int(self.n_init),
                                  max_iter=int(self.max_iter), seed=seed)

        self.cluster_centers_ = km.cluster_centers_.astype(np.float32)
        self.n_tokens_ = int(k_eff)
        self.n_samples_fit_ = int(n_samples)
        self.n_iter_ = int(km.n_iter_)
        # Labels come from our own nearest-centre rule on the stored float32
        # centres, so predict(X_fit) reproduces labels_ exactly.
        labels, d2 = self._nearest(T)
        self.labels_ = labels
        self.inertia_ = float(d2.sum())
        self.fit_metrics_ = token_metrics(labels, n_tokens=self.n_tokens_)
        self.effective_params_ = {
            "n_tokens": {"configured": k_cfg, "effective": self.n_tokens_},
            "pca_components": {
                "configured": self.pca_components,
                "effective": None if self.pca_ is None else int(self.pca_.n_components_),
            },
            "algorithm": {"configured": self.algorithm, "effective": algorithm},
            "reduced": reason is not None,
            "reason": reason,
        }
        return self

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit and return the fit-set tokens, int64 shape (n_samples,)."""
        return self.fit(X).labels_.copy()

    # -- inference ------------------------------------------------------------

    def transform(self, X: Any) -> np.ndarray:
        """Normalised (and PCA-projected) features: the space K-means runs in.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features_in_)

        Returns
        -------
        np.ndarray, float32, shape (n_samples, d')

        Raises
        ------
        VocabularyNotFittedError
            Before :meth:`fit`.
        VocabularyError
            Malformed ``X``, NaN/inf rows, or a feature count other than
            ``n_features_in_``.
        """
        self._check_fitted()
        arr = self._validate_X(X, reset=False)
        return self._project(self._normalise(arr).astype(np.float32))

    def predict(self, X: Any) -> np.ndarray:
        """Token of each row: index of the nearest centre (ties -> lowest index).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_features_in_)

        Returns
        -------
        np.ndarray, int64, shape (n_samples,)

        Raises
        ------
        VocabularyNotFittedError, VocabularyError
            As for :meth:`transform`.
        """
        return self._nearest(self.transform(X))[0]

    @property
    def _n_features_out(self) -> int:
        """Output width of :meth:`transform` (for ``get_feature_names_out``)."""
        return int(self.cluster_centers_.shape[1])

    # -- persistence without pickle -----------------------------------------

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able metadata and numeric arrays that fully describe the fit.

        Returns
        -------
        meta : dict
            ``{"params", "effective_params", "fit_metrics", ...}`` (JSON-able).
        arrays : dict of str -> np.ndarray
            ``centers`` float32 (K, d'), and where used ``norm_mean``,
            ``norm_scale`` (n_features,), ``pca_mean`` (n_features,),
            ``pca_components`` (d', n_features), ``pca_explained_variance_ratio``.
        """
        self._check_fitted()
        meta = {
            "params": self.get_params(),
            "effective_params": self.effective_params_,
            "fit_metrics": self.fit_metrics_,
            "n_tokens_": self.n_tokens_,
            "n_features_in_": self.n_features_in_,
            "n_samples_fit_": self.n_samples_fit_,
            "n_zero_rows_": self.n_zero_rows_,
            "n_distinct_rows_": self.n_distinct_rows_,
            "inertia_": self.inertia_,
            "n_iter_": getattr(self, "n_iter_", None),
        }
        if hasattr(self, "feature_names_in_"):
            meta["feature_names_in_"] = [str(n) for n in self.feature_names_in_]
        arrays: dict[str, np.ndarray] = {"centers": self.cluster_centers_}
        if self.norm_mean_ is not None:
            arrays["norm_mean"] = self.norm_mean_
            arrays["norm_scale"] = self.norm_scale_
        if self.pca_mean_ is not None:
            arrays["pca_mean"] = self.pca_mean_
            arrays["pca_components"] = self.pca_components_matrix_
            arrays["pca_explained_variance_ratio"] = np.asarray(
                self.pca_.explained_variance_ratio_, dtype=np.float64
            )
        return meta, arrays

    @classmethod
    def from_state(cls, meta: Mapping, arrays: Mapping[str, np.ndarray]) -> "GestureVocabulary":
        """Rebuild a fitted vocabulary from :meth:`get_state` output.

        ``pca_`` is restored as a PCA object carrying ``mean_``,
        ``components_``, ``explained_variance_ratio_`` and ``n_components_``.
        States written before the ``seed`` parameter was renamed
        ``random_state`` load unchanged.

        Raises
        ------
        VocabularyError
            A malformed state.
        """
        try:
            params = dict(meta["params"])
            if "seed" in params:  # states written before the rename to random_state
                if "random_state" in params:
                    raise ValueError("params hold both 'seed' and 'random_state'")
                params["random_state"] = params.pop("seed")
            vocab = cls(**params)
            vocab._check_params()
            vocab.cluster_centers_ = np.asarray(arrays["centers"], dtype=np.float32)
            vocab.n_tokens_ = int(meta["n_tokens_"])
            vocab.n_features_in_ = int(meta["n_features_in_"])
            vocab.n_samples_fit_ = int(meta["n_samples_fit_"])
            vocab.n_zero_rows_ = int(meta["n_zero_rows_"])
            vocab.n_distinct_rows_ = int(meta["n_distinct_rows_"])
            vocab.inertia_ = float(meta["inertia_"])
            vocab.fit_metrics_ = dict(meta["fit_metrics"])
            vocab.effective_params_ = dict(meta["effective_params"])
            if meta.get("n_iter_") is not None:
                vocab.n_iter_ = int(meta["n_iter_"])
            if meta.get("feature_names_in_") is not None:
                vocab.feature_names_in_ = np.asarray([str(n) for n in meta["feature_names_in_"]], dtype=object)
            if "norm_mean" in arrays:
                vocab.norm_mean_ = np.asarray(arrays["norm_mean"], dtype=np.float64)
                vocab.norm_scale_ = np.asarray(arrays["norm_scale"], dtype=np.float64)
            else:
                vocab.norm_mean_, vocab.norm_scale_ = None, None
            if "pca_mean" in arrays:
                from sklearn.decomposition import PCA

                vocab.pca_mean_ = np.asarray(arrays["pca_mean"], dtype=np.float64)
                vocab.pca_components_matrix_ = np.asarray(arrays["pca_components"], dtype=np.float64)
                pca = PCA(n_components=vocab.pca_components_matrix_.shape[0], svd_solver="full")
                pca.mean_ = vocab.pca_mean_
                pca.components_ = vocab.pca_components_matrix_
                pca.n_components_ = vocab.pca_components_matrix_.shape[0]
                pca.explained_variance_ratio_ = np.asarray(
                    arrays.get("pca_explained_variance_ratio", np.full(pca.n_components_, np.nan))
                )
                vocab.pca_ = pca
            else:
                vocab.pca_, vocab.pca_mean_, vocab.pca_components_matrix_ = None, None, None
        except (KeyError, TypeError, ValueError) as exc:
            raise VocabularyError(f"malformed vocabulary state: {exc!r}") from exc
        if vocab.cluster_centers_.shape[0] != vocab.n_tokens_:
            raise VocabularyError(
                f"malformed vocabulary state: {vocab.cluster_centers_.shape[0]} centres for "
                f"n_tokens_={vocab.n_tokens_}"
            )
        vocab.labels_ = np.zeros(0, dtype=np.int64)  # the fit set is not part of the state
        return vocab

    # -- internals ------------------------------------------------------------

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "cluster_centers_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise VocabularyNotFittedError(
                "this GestureVocabulary is not fitted yet; call fit(X) first"
            )

    def _normalise(self, arr: np.ndarray) -> np.ndarray:
        if self.normalisation == "l2":
            return _l2(arr)
        if self.normalisation == "standard":
            return (arr - self.norm_mean_) / self.norm_scale_
        return arr

    def _project(self, Z: np.ndarray) -> np.ndarray:
        """PCA projection done by hand so fitted and restored vocabularies agree exactly."""
        if self.pca_components_matrix_ is None:
            return np.asarray(Z, dtype=np.float32)
        out = (np.asarray(Z, dtype=np.float64) - self.pca_mean_) @ self.pca_components_matrix_.T
        return out.astype(np.float32)

    def _nearest(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest-centre labels (int64) and squared distances (float64)."""
        T64 = np.asarray(T, dtype=np.float64)
        C64 = self.cluster_centers_.astype(np.float64)
        d2 = (
            np.einsum("ij,ij->i", T64, T64)[:, None]
            - 2.0 * (T64 @ C64.T)
            + np.einsum("ij,ij->i", C64, C64)[None, :]
        )
        np.maximum(d2, 0.0, out=d2)
        labels = np.argmin(d2, axis=1).astype(np.int64)
        return labels, d2[np.arange(d2.shape[0]), labels]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _n_distinct_rows(T: np.ndarray) -> int:
    rows = np.ascontiguousarray(np.asarray(T, dtype=np.float32))
    # -0.0 and 0.0 are the same point but differ in bytes.
    rows = rows + np.float32(0.0)
    view = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
    return int(np.unique(view).shape[0])


# ---------------------------------------------------------------------------
# token statistics
# ---------------------------------------------------------------------------


def _token_array(tokens: Any, *, n_tokens: int) -> tuple[np.ndarray, int]:
    """Present tokens as int64 and the number of missing entries.

    Missing: ``None``, ``-1`` or a float NaN. Anything else must be an integer
    in ``[0, n_tokens)``.
    """
    if not _is_int(n_tokens) or n_tokens < 1:
        raise VocabularyError(f"n_tokens must be a positive integer; got {n_tokens!r}")
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1:
            raise VocabularyError(f"tokens must be 1-D; got shape {tokens.shape}")
        seq: Iterable = tokens.tolist() if tokens.dtype == object else tokens
    elif isinstance(tokens, (str, bytes, Mapping)):
        raise VocabularyError(f"tokens must be a sequence of integers; got {type(tokens).__name__}")
    else:
        seq = list(tokens)

    if isinstance(seq, np.ndarray) and seq.dtype.kind in "iu":
        arr = seq.astype(np.int64)
        missing_mask = arr == -1
    else:
        values: list[int] = []
        missing_mask_list: list[bool] = []
        for i, v in enumerate(seq):
            if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
                values.append(-1)
                missing_mask_list.append(True)
                continue
            if isinstance(v, (bool, np.bool_)):
                raise VocabularyError(f"token at index {i} is a boolean ({v!r}), not a token id")
            if isinstance(v, (float, np.floating)):
                if not float(v).is_integer():
                    raise VocabularyError(f"token at index {i} is not an integer: {v!r}")
                v = int(v)
            if not isinstance(v, (int, np.integer)):
                raise VocabularyError(f"token at index {i} is not an integer: {v!r}")
            values.append(int(v))
            missing_mask_list.append(int(v) == -1)
        arr = np.asarray(values, dtype=np.int64)
        missing_mask = np.asarray(missing_mask_list, dtype=bool)

    present = arr[~missing_mask]
    bad = (present < 0) | (present >= n_tokens)
    if bad.any():
        idx = np.flatnonzero(~missing_mask)[bad]
        shown = ", ".join(f"{int(i)}:{int(arr[i])}" for i in idx[:_MAX_ROWS_IN_MESSAGE])
        raise VocabularyError(
            f"{idx.size} tokens outside [0, {n_tokens}) (index:value {shown}"
            f"{', ...' if idx.size > _MAX_ROWS_IN_MESSAGE else ''})"
        )
    return present, int(missing_mask.sum())


def validate_tokens(tokens: Any, *, n_tokens: int, allow_missing: bool = True) -> None:
    """Check that ``tokens`` is a 1-D sequence of ids in ``[0, n_tokens)``.

    Parameters
    ----------
    tokens : sequence of int (may contain None / -1 for missing)
    n_tokens : int
        Vocabulary size K.
    allow_missing : bool
        When False, a missing token (None, -1, NaN) is an error.

    Raises
    ------
    VocabularyError
    """
    _, missing = _token_array(tokens, n_tokens=n_tokens)
    if missing and not allow_missing:
        raise VocabularyError(f"{missing} records have no token (None or -1)")


def token_metrics(tokens: Any, *, n_tokens: int) -> dict:
    """Distribution statistics of a token sequence whose ids must be valid.

    The strict form of :func:`chandra.ledger.token_stats` (which computes
    them, and counts bad ids instead of refusing them): ids outside
    ``[0, n_tokens)`` and non-integers raise here, so the result describes
    a sequence that really belongs to a K-token vocabulary.

    Parameters
    ----------
    tokens : sequence of int, shape (n,)
        Token ids in ``[0, n_tokens)``. ``None``, ``-1`` and NaN mark a record
        without a token; such records are counted in ``missing`` and left out
        of every distribution statistic.
    n_tokens : int
        Vocabulary size K (the entropy ceiling is ``log2(K)``).

    Returns
    -------
    dict
        ``n`` (records given, present + missing), ``present``, ``missing``,
        ``unique`` (distinct tokens present), ``active`` (= unique),
        ``n_tokens``, ``entropy_bits`` (Shannon, base 2, over present tokens),
        ``max_entropy_bits`` (log2 K), ``normalised_entropy`` (H / log2 K, 0
        when K = 1), ``perplexity`` (2**H; 0 when nothing is present),
        ``top_token`` (most frequent id, lowest id on ties; None when nothing
        is present), ``top_share`` (its share of present tokens),
        ``counts`` (list of K ints), ``empty_tokens`` (ids never used); the
        last two are None for K > 65536, as in ``token_stats``.

    Raises
    ------
    VocabularyError
        Token ids outside ``[0, n_tokens)`` or not integers.
    """
    if not isinstance(tokens, (np.ndarray, str, bytes, Mapping)):
        tokens = list(tokens)  # read an iterator once, for both passes
    _token_array(tokens, n_tokens=n_tokens)  # refuses what token_stats would count
    stats = token_stats(tokens, n_tokens=n_tokens)
    del stats["out_of_range"], stats["non_integer"]  # both 0 once validated
    return stats


def summarize_vocabulary(vocab: GestureVocabulary) -> dict:
    """Scalars describing a fitted vocabulary, for dashboards and provenance.

    Returns
    -------
    dict
        ``n_tokens_configured``, ``n_tokens`` (effective), ``reduced``,
        ``reduce_reason``, ``normalisation``, ``pca_components`` (effective or
        None), ``pca_explained_variance`` (summed ratio or None),
        ``n_features_in``, ``n_samples_fit``, ``n_zero_rows``,
        ``n_distinct_rows``, ``inertia``, ``random_state``, and the fit-set
        ``active``, ``empty_tokens`` (count), ``entropy_bits``,
        ``max_entropy_bits``, ``normalised_entropy``, ``perplexity``,
        ``top_share``.
    """
    if not isinstance(vocab, GestureVocabulary):
        raise VocabularyError(f"expected a GestureVocabulary; got {type(vocab).__name__}")
    vocab._check_fitted()
    eff = vocab.effective_params_
    m = vocab.fit_metrics_
    evr = None
    if vocab.pca_ is not None and hasattr(vocab.pca_, "explained_variance_ratio_"):
        total = float(np.sum(vocab.pca_.explained_variance_ratio_))
        evr = total if math.isfinite(total) else None
    return {
        "n_tokens_configured": eff["n_tokens"]["configured"],
        "n_tokens": vocab.n_tokens_,
        "reduced": bool(eff["reduced"]),
        "reduce_reason": eff["reason"],
        "normalisation": vocab.normalisation,
        "pca_components": eff["pca_components"]["effective"],
        "pca_explained_variance": evr,
        "n_features_in": vocab.n_features_in_,
        "n_samples_fit": vocab.n_samples_fit_,
        "n_zero_rows": vocab.n_zero_rows_,
        "n_distinct_rows": vocab.n_distinct_rows_,
        "inertia": vocab.inertia_,
        "random_state": vocab.random_state,
        "active": m["active"],
        "empty_tokens": len(m["empty_tokens"]) if m["empty_tokens"] is not None else None,
        "entropy_bits": m["entropy_bits"],
        "max_entropy_bits": m["max_entropy_bits"],
        "normalised_entropy": m["normalised_entropy"],
        "perplexity": m["perplexity"],
        "top_share": m["top_share"],
    }


# ---------------------------------------------------------------------------
# choosing K
# ---------------------------------------------------------------------------

# The rule's constants and its count-only part live in chandra.kchoice (light: the
# findings use them without importing scikit-learn); they are re-exported here.
from chandra.kchoice import (  # noqa: E402
    IR_TOLERANCE,
    K_CEILING,
    K_FLOOR,
    K_GRID,
    K_RULE,
    MIN_USES_PER_TOKEN,
    RARE_USES,
    SPARSE_TOKEN_SHARE,
    k_by_count,
    k_grid,
    k_reason,
)


def k_sweep(raw_features: Any, ks: Iterable[int], *, normalisation: str = "l2", pca_components: int | None = None,
            random_state: int = 0, progress: Any = None, stage: str = "k_sweep") -> list[dict]:
    """Fit a vocabulary for each K and measure what the tokens would be like.

    Parameters
    ----------
    raw_features : float array (n, d)
        Encoder output, as the vocabulary stage receives it.
    ks : iterable of int
        Vocabulary sizes (each at most n).
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    list of dict
        One per K in ascending order: ``k`` (requested), ``k_effective``
        (lower when there are fewer distinct rows), ``mean_uses`` (n / K),
        ``rare_share`` (share of the K tokens used at most
        :data:`RARE_USES` times, unused ones included), ``used`` (distinct
        tokens assigned) and ``ir`` (Dubnov's information rate of the token
        sequence through its factor oracle, bits per frame).
    """
    from chandra.oracle import ir_tokens
    from chandra.progress import report

    X = np.asarray(raw_features)
    n = int(X.shape[0])
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= n})
    out = []
    for i, k in enumerate(ks):
        report(progress, stage, i, len(ks))
        vocab = GestureVocabulary(n_tokens=k, normalisation=normalisation, pca_components=pca_components,
                                  random_state=random_state, reduce_k=True).fit(X)
        tokens = vocab.labels_
        counts = np.bincount(tokens, minlength=vocab.n_tokens_)
        out.append({"k": k, "k_effective": int(vocab.n_tokens_), "mean_uses": n / k,
                    "rare_share": float(np.mean(counts <= RARE_USES)), "used": int(np.count_nonzero(counts)),
                    "ir": float(ir_tokens(tokens))})
    report(progress, stage, len(ks), len(ks))
    return out


def recommend_k(n_segments: int, *, features: Any = None, normalisation: str = "l2",
                pca_components: int | None = None, random_state: int = 0, max_k: int = K_CEILING,
                sweep: list[dict] | None = None, progress: Any = None) -> dict:
    """The vocabulary size K to use for a take of ``n_segments`` segments.

    The rule (:data:`K_RULE`): the largest K on :data:`K_GRID`, between
    :data:`K_FLOOR` and ``max_k``, with at least
    :data:`MIN_USES_PER_TOKEN` segments per token on average. A take of
    fewer than ``K_FLOOR * MIN_USES_PER_TOKEN`` segments is tiny and gets a
    smaller K (never below 2, or 1 for a single segment). When ``features``
    are given, K-means is fitted for that K and the smaller grid sizes down
    to a quarter of it (:func:`k_sweep`), and the largest K is kept whose
    tokens are not sparse (at most :data:`SPARSE_TOKEN_SHARE` of them used
    once or twice) and whose information rate is within
    :data:`IR_TOLERANCE` of the best smaller K's; if none qualifies, the
    smallest size tried.

    Parameters
    ----------
    n_segments : int
        Segments (= records the tokens label) in the take.
    features : float array (n_segments, d), optional
        Encoder output, for the cross-check.
    normalisation, pca_components, random_state
        As for :class:`GestureVocabulary`.
    max_k : int
        Upper bound (default :data:`K_CEILING`).
    sweep : list of dict, optional
        Precomputed :func:`k_sweep` rows (e.g. from
        :func:`chandra.pipeline.ir_over_k`); used instead of refitting for the
        sizes they cover.

    Returns
    -------
    dict
        ``k`` (int), ``rule`` (:data:`K_RULE`), ``reason`` (what it means for
        this take, in a musician's words), ``bounds`` (``{"min", "max"}``
        for this take), ``evidence`` (``n_segments``, ``by_count`` — the K
        the count alone allows —, ``mean_uses``, ``checked_features``,
        ``candidates``: the :func:`k_sweep` rows looked at, largest first,
        each with ``accepted`` and ``why`` when refused).

    Raises
    ------
    VocabularyParameterError
        ``n_segments`` below 1 or ``max_k`` below 2.
    """
    try:
        count = k_by_count(n_segments, max_k=max_k)
    except ValueError as exc:
        raise VocabularyParameterError(str(exc), parameter=getattr(exc, "parameter", "n_segments")) from None
    n = int(n_segments)
    lo, hi, tiny, allowed = count["min"], count["max"], count["tiny"], count["allowed"]
    k_rule = count["k"]
    evidence: dict[str, Any] = {"n_segments": n, "by_count": k_rule, "min_uses_per_token": MIN_USES_PER_TOKEN,
                                "checked_features": False, "candidates": []}
    k, refused = k_rule, None
    if features is not None or sweep:
        tried = [c for c in allowed if c * 4 >= k_rule] or [k_rule]
        have = {int(row["k"]): row for row in (sweep or [])}
        missing = [c for c in tried if c not in have]
        if missing:
            if features is None:
                tried = [c for c in tried if c in have]
            else:
                for row in k_sweep(features, missing, normalisation=normalisation, pca_components=pca_components,
                                   random_state=random_state, progress=progress, stage="recommend_k"):
                    have[row["k"]] = row
        rows = [dict(have[c]) for c in sorted(tried, reverse=True) if c in have]
        evidence["checked_features"] = bool(rows)
        chosen = None
        for i, row in enumerate(rows):
            smaller = [r["ir"] for r in rows[i + 1:]]
            best_smaller = max(smaller) if smaller else None
            if row["rare_share"] > SPARSE_TOKEN_SHARE:
                row["accepted"], row["why"] = False, (f"{row['rare_share']:.0%} of its tokens would be used once "
                                                      f"or twice")
            elif best_smaller is not None and row["ir"] < (1 - IR_TOLERANCE) * best_smaller:
                row["accepted"], row["why"] = False, (f"its information rate ({row['ir']:.2f} bits per segment) is "
                                                      f"below a smaller K's ({best_smaller:.2f})")
            else:
                row["accepted"], row["why"] = True, None
            if chosen is None and row["accepted"]:
                chosen = row
            if chosen is None and refused is None:
                refused = row
        evidence["candidates"] = rows
        if rows:
            k = int(chosen["k"]) if chosen is not None else int(rows[-1]["k"])
    evidence["mean_uses"] = n / k
    reason = k_reason(n, k, k_rule=k_rule, tiny=tiny, capped=count["capped"], max_k=hi,
                      refused=refused["why"] if refused is not None and k != k_rule else None)
    return {"k": int(k), "rule": K_RULE, "reason": reason, "bounds": {"min": int(lo), "max": int(hi)},
            "evidence": evidence}


def largest_workable_k(n_segments: int, n_distinct: int | None = None) -> int:
    """The largest K a vocabulary can be fitted with: the number of segments
    (or of distinct feature rows, when fewer)."""
    n = int(n_segments)
    return max(1, min(n, int(n_distinct)) if n_distinct is not None else n)


# ---------------------------------------------------------------------------
# full K-means with its initialisations side by side


def _kmeans_kwargs(k: int, *, n_init: int, max_iter: int, random_state: Any) -> dict:
    return {"n_clusters": int(k), "init": "k-means++", "n_init": int(n_init), "max_iter": int(max_iter),
            "random_state": random_state, "algorithm": "lloyd"}


def _kmeans_plusplus_draws(k: int) -> int:
    """Uniform draws one k-means++ initialisation takes from the random state: one for the
    first centre, ``2 + int(log k)`` candidates for each of the others (scikit-learn's rule)."""
    return 1 + (int(k) - 1) * (2 + int(np.log(int(k))))


def _same_clustering(a: np.ndarray, b: np.ndarray) -> bool:
    """Every label of ``a`` maps to one label of ``b`` (scikit-learn's test for a permuted copy)."""
    pairs = np.unique(np.stack([np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)]), axis=1)
    return pairs.shape[1] == np.unique(a).size


def _kmeans_runs_side_by_side(X: np.ndarray, k: int, *, n_init: int, max_iter: int, seed: int,
                              workers: int) -> Any:
    """``KMeans(n_init=n_init, random_state=seed).fit(X)`` as ``n_init`` single fits on ``workers`` threads.

    scikit-learn runs its ``n_init`` initialisations one after the other,
    each k-means++ seeding drawing a fixed number of uniforms
    (:func:`_kmeans_plusplus_draws`) from one random state. Run ``i`` here
    starts from a random state advanced by exactly the draws of runs
    ``0..i-1``, so it has the same initial centres; each run is
    single-threaded (byte-reproducible sums), and the best run is chosen by
    scikit-learn's own rule (lower inertia, and not the same clustering
    with permuted labels), in the same order. :func:`_side_by_side_is_exact`
    checks the equivalence once per process before it is used.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    draws = _kmeans_plusplus_draws(k)

    def run(i: int):
        state = np.random.RandomState(seed)
        if i:
            state.random_sample(i * draws)
        # OpenMP's thread count is per thread: limit this worker's own
        with threadpool_limits(limits=1):
            return KMeans(**_kmeans_kwargs(k, n_init=1, max_iter=max_iter, random_state=state)).fit(X)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chandra-kmeans") as pool:
        fits = list(pool.map(run, range(n_init)))
    best = None
    for fit in fits:
        if best is None or (fit.inertia_ < best.inertia_ and not _same_clustering(fit.labels_, best.labels_)):
            best = fit
    return best


_SIDE_BY_SIDE_EXACT: bool | None = None


def _side_by_side_is_exact() -> bool:
    """Whether :func:`_kmeans_runs_side_by_side` gives scikit-learn's result bit for bit with the
    scikit-learn installed (checked once per process on a small problem with several runs)."""
    global _SIDE_BY_SIDE_EXACT
    if _SIDE_BY_SIDE_EXACT is None:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        # 10 separated clusters, 7 centres: the runs end in different clusterings
        rng = np.random.default_rng(12345)
        X = np.concatenate([rng.normal(c, 1.0, size=(40, 6)) for c in range(0, 50, 5)])
        try:
            with threadpool_limits(limits=1):
                ref = KMeans(**_kmeans_kwargs(7, n_init=5, max_iter=300, random_state=3)).fit(X)
            got = _kmeans_runs_side_by_side(X, 7, n_init=5, max_iter=300, seed=3, workers=2)
            _SIDE_BY_SIDE_EXACT = bool(np.array_equal(ref.cluster_centers_, got.cluster_centers_)
                                       and ref.n_iter_ == got.n_iter_ and ref.inertia_ == got.inertia_)
        except Exception:  # noqa: BLE001 - any surprise means: use scikit-learn's own loop
            _SIDE_BY_SIDE_EXACT = False
    return _SIDE_BY_SIDE_EXACT


def _full_kmeans(X: np.ndarray, k: int, *, n_init: int, max_iter: int, seed: int) -> Any:
    """Fitted ``KMeans(init="k-means++", algorithm="lloyd", random_state=seed)`` on float64 ``X``.

    With several initialisations and more than one core, the runs go side
    by side (:func:`_kmeans_runs_side_by_side`): the same centres, labels and
    inertia as scikit-learn's sequential loop, in about half the time on two
    cores (the vocabulary fit is the longest stage after a neural encoder's
    forward passes). Otherwise, and whenever the installed scikit-learn
    does not reproduce exactly, scikit-learn's own loop.
    """
    from sklearn.cluster import KMeans

    workers = min(int(n_init), os.cpu_count() or 1)
    if workers > 1 and _side_by_side_is_exact():
        return _kmeans_runs_side_by_side(X, k, n_init=n_init, max_iter=max_iter, seed=seed, workers=workers)
    return KMeans(**_kmeans_kwargs(k, n_init=n_init, max_iter=max_iter, random_state=seed)).fit(X)

