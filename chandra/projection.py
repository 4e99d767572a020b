"""2-D projections and neighbours of feature vectors, for the dashboard.

Pure computation (``compute_*(array, params) -> coords``, after Renumics
Spotlight): PCA is cheap and runs at once; UMAP is imported lazily because it
pays numba compilation on first use, and it is seeded so the same params give
the same picture.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chandra.errors import ChandraError

__all__ = ["UMAP_DEFAULTS", "umap_params", "compute_pca", "compute_umap", "nearest_neighbours"]

#: Default UMAP parameters (shown on screen with the seed).
UMAP_DEFAULTS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": 0}


def _matrix(X: Any) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ChandraError(f"projection needs a 2-D feature matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ChandraError("projection: the feature matrix contains NaN or inf")
    return arr


def compute_pca(X: Any, *, seed: int = 0, n_components: int = 2) -> np.ndarray:
    """Principal-component coordinates, float32 (n, n_components).

    Fewer rows or dimensions than components are padded with zero columns,
    so one or two segments still plot.
    """
    arr = _matrix(X)
    n, d = arr.shape
    out = np.zeros((n, n_components), dtype=np.float32)
    k = min(n_components, n, d)
    if n == 0 or k == 0:
        return out
    if n == 1:
        return out
    from sklearn.decomposition import PCA

    coords = PCA(n_components=k, svd_solver="full", random_state=seed).fit_transform(arr)
    # Fix the sign of each component (SVD signs are arbitrary) so reruns agree.
    for j in range(k):
        col = coords[:, j]
        if col[np.argmax(np.abs(col))] < 0:
            coords[:, j] = -col
    out[:, :k] = coords
    return out


def umap_params(params: dict | None = None, *, n_rows: int | None = None) -> dict:
    """UMAP parameters with defaults filled in and ``n_neighbors`` clamped
    below the number of rows (UMAP needs ``n_neighbors < n``)."""
    p = {**UMAP_DEFAULTS, **(params or {})}
    p["n_neighbors"] = int(p["n_neighbors"])
    p["min_dist"] = float(p["min_dist"])
    p["seed"] = int(p["seed"])
    if n_rows is not None:
        p["n_neighbors"] = max(2, min(p["n_neighbors"], n_rows - 1))
    return p


def compute_umap(X: Any, params: dict | None = None) -> np.ndarray:
    """UMAP coordinates, float32 (n, 2), seeded by ``params["seed"]``.

    Parameters
    ----------
    X : array (n, d)
    params : dict, optional
        ``n_neighbors``, ``min_dist``, ``metric``, ``seed`` (see
        :data:`UMAP_DEFAULTS`).

    Raises
    ------
    ChandraError
        Fewer than 4 rows (UMAP's spectral init needs more), or umap-learn
        not installed.
    """
    arr = _matrix(X)
    if arr.shape[0] < 4:
        raise ChandraError(f"UMAP needs at least 4 segments, got {arr.shape[0]}; use PCA")
    p = umap_params(params, n_rows=arr.shape[0])
    # numba (under umap) compiles on first use, into the cache `import chandra`
    # chose (see chandra/__init__.py); `python -m chandra.warmup` fills it at install.
    try:
        import umap  # noqa: PLC0415 - deliberately lazy (seconds of import + JIT)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ChandraError("UMAP needs the optional package umap-learn (pip install 'chandra[dashboard]')") from exc
    reducer = umap.UMAP(n_components=2, n_neighbors=p["n_neighbors"], min_dist=p["min_dist"],
                        metric=p["metric"], random_state=p["seed"])
    return np.asarray(reducer.fit_transform(arr), dtype=np.float32)


def nearest_neighbours(X: Any, index: int, *, k: int = 8, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows nearest to row ``index`` (itself excluded).

    Returns
    -------
    indices : int64 (m,), m = min(k, n - 1), nearest first
    distances : float64 (m,); cosine distance ``1 - cos`` or euclidean
    """
    arr = _matrix(X)
    n = arr.shape[0]
    if not 0 <= index < n:
        raise ChandraError(f"segment {index} is out of range (0..{n - 1})")
    if metric == "cosine":
        norms = np.linalg.norm(arr, axis=1)
        safe = np.where(norms > 0, norms, 1.0)
        unit = arr / safe[:, None]
        dist = 1.0 - unit @ unit[index]
        dist[norms == 0] = 1.0
    elif metric == "euclidean":
        dist = np.linalg.norm(arr - arr[index], axis=1)
    else:
        raise ChandraError(f"metric must be cosine or euclidean, got {metric!r}")
    dist[index] = np.inf
    m = min(int(k), n - 1)
    if m <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    order = np.argsort(dist, kind="stable")[:m]
    return order.astype(np.int64), dist[order].astype(np.float64)
