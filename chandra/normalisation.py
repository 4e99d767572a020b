"""Feature normalisation before the vocabulary's PCA and K-means.

Kept apart from :mod:`chandra.vocabulary` so that the list of
normalisations (:data:`NORMALISATIONS`, which the CLI offers as choices)
and :func:`normalise` import without scikit-learn. Both are re-exported by
:mod:`chandra.vocabulary`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chandra.errors import VocabularyError

__all__ = ["NORMALISATIONS", "normalise", "count_zero_rows"]

#: Feature normalisations the vocabulary applies before PCA and K-means.
NORMALISATIONS = ("l2", "standard", "none")

# A row whose L2 norm is below this is treated as all-zero: dividing by a
# denormal norm would blow tiny noise up to a unit vector.
_ZERO_NORM = 1e-12
# How many offending row indices an error message lists before "...".
_MAX_ROWS_IN_MESSAGE = 5


# ---------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------


def _check_matrix(X: Any, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite 2-D float64 array or raise VocabularyError."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise VocabularyError(f"{name} must be a numeric 2-D array: {exc}") from exc
    if arr.ndim != 2:
        raise VocabularyError(
            f"{name} must be 2-D (n_samples, n_features); got {arr.ndim}-D with shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise VocabularyError(f"{name} has no rows (0 segments); give audio with at least one onset")
    if arr.shape[1] == 0:
        raise VocabularyError(f"{name} has rows of dimension 0")
    _check_finite_rows(arr, name=name)
    return arr


def _check_finite_rows(arr: np.ndarray, *, name: str = "X") -> None:
    """Raise VocabularyError naming the rows of ``arr`` that hold NaN or inf."""
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(int(r)) for r in rows[:_MAX_ROWS_IN_MESSAGE])
        more = ", ..." if rows.size > _MAX_ROWS_IN_MESSAGE else ""
        raise VocabularyError(
            f"{name} has {rows.size} of {arr.shape[0]} rows containing NaN or inf "
            f"(rows {shown}{more}); fix the encoder output or drop those segments"
        )


def count_zero_rows(X: Any) -> int:
    """Number of rows of ``X`` whose L2 norm is (numerically) zero.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)

    Returns
    -------
    int
    """
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise VocabularyError(f"X must be 2-D; got shape {arr.shape}")
    return int(np.count_nonzero(np.linalg.norm(arr, axis=1) <= _ZERO_NORM))


def normalise(X: Any, *, method: str = "l2") -> np.ndarray:
    """Normalise feature vectors.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        One feature vector per segment. Must be finite.
    method : {"l2", "standard", "none"}
        ``"l2"``: divide each row by its Euclidean norm; rows whose norm is
        zero stay zero (never NaN; count them with :func:`count_zero_rows`).
        ``"standard"``: per-dimension z-score using the statistics of ``X``
        itself; constant dimensions become 0. ``"none"``: unchanged.

    Returns
    -------
    np.ndarray, float32, shape (n_samples, n_features)

    Raises
    ------
    VocabularyError
        If ``X`` is not 2-D, has NaN/inf rows, or ``method`` is unknown.
    """
    if method not in NORMALISATIONS:
        raise VocabularyError(f"unknown normalisation {method!r}; choose one of {NORMALISATIONS}")
    arr = _check_matrix(X)
    if method == "l2":
        return _l2(arr).astype(np.float32)
    if method == "standard":
        mean, scale = _standard_stats(arr)
        return ((arr - mean) / scale).astype(np.float32)
    return arr.astype(np.float32)


def _l2(arr: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    safe = np.where(norms > _ZERO_NORM, norms, 1.0)
    out = arr / safe
    out[norms[:, 0] <= _ZERO_NORM] = 0.0
    return out


def _standard_stats(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and scale; constant dimensions get scale 1 so they map to 0."""
    mean = arr.mean(axis=0)
    std = arr.std(axis=0)
    # Relative tolerance: a dimension that is constant up to rounding must not
    # turn rounding noise into unit-variance signal.
    tol = 1e-12 * np.maximum(1.0, np.abs(mean))
    scale = np.where(std > tol, std, 1.0)
    return mean, scale
