"""The approximate search of :func:`chandra.oracle.build_audio_oracle`: an
inverted-file index over the root's children (PCA projection, spherical K-means
lists, exact verification of every link it makes).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from chandra.oracle import _kernels as _k


_ANN_DIM = 64  # projected dimension of the root index
_ANN_MAX_LISTS = 8192
_ANN_MIN_LIST = 16  # members per list, on average, at least
_ANN_NPROBE = 24  # lists scanned per query
_ANN_K = 8  # candidates verified per query
_ANN_SPILL = 2  # lists each indexed child goes into
_ANN_REFIT = 4  # refit the lists when the index has grown this many times
_ANN_REPROJECT = 4  # refit the projection when it has grown this many times (until it had a full sample)
_ANN_SAMPLE = 16384  # rows for the projection and the K-means fit
_ANN_KMEANS_ITERS = 4


class _RootIndex:
    """Inverted-file index over the root's children, in a PCA-projected search space.

    The search space is where the metric is euclidean: unit rows for cosine
    (``|u - v|^2 = 2 (1 - cos)``; a zero row stays zero), the rows themselves
    for euclidean. An orthonormal projection ``P`` (the top principal axes of
    a sample of the indexed rows) never lengthens a difference, so a
    projected squared distance at or above the search-space threshold proves
    a pair is not within it: the filter loses no match among the rows it
    scans. Rows are grouped by spherical K-means in the projected space
    (lists scored by the cosine to their centre), each row in its
    ``_ANN_SPILL`` best lists; a query scans the ``_ANN_NPROBE`` best lists
    and returns at most ``_ANN_K`` members that pass the filter (nearest in
    projection first). Matches in other lists are what the approximation can
    miss. About ``sqrt(nprobe x spill x size)`` lists balance the centre
    scan against the list scans (at least 16 members per list while the
    index is small).

    Deterministic: evenly spaced samples, evenly spaced K-means seeds, a
    seeded range finder for the projection; the lists are refitted when the
    index has grown ``_ANN_REFIT``-fold, the projection ``_ANN_REPROJECT``-fold
    until it has seen ``_ANN_SAMPLE`` rows.
    """

    def __init__(self, X: np.ndarray, metric: str, theta: float):
        self.X = X
        self.cosine = metric == "cosine"
        self.thr_e2 = 2.0 * theta if self.cosine else theta * theta
        self.dim = min(_ANN_DIM, X.shape[1])
        self.members = np.zeros(0, np.int64)
        self.n_fit = 0
        self.n_projected = 0
        self.Y = np.zeros((X.shape[0], self.dim), np.float32)
        self.y_hi = 0
        self.biggest = 0.0
        self.theta_p2 = 0.0
        self.n_lists = 0
        self.refits = 0
        self.scanned = 0

    def _search_rows(self, rows: np.ndarray) -> np.ndarray:
        Z = self.X[rows].astype(np.float32)
        if self.cosine:
            norms = np.sqrt(np.einsum("ij,ij->i", Z, Z, dtype=np.float64)).astype(np.float32)
            Z /= np.where(norms > 0, norms, 1.0)[:, None]
        return Z

    def add(self, frames: np.ndarray) -> None:
        """Index more root children (ascending frames)."""
        if frames.size == 0:
            return
        self.members = np.concatenate([self.members, frames])
        if self.members.size >= _ANN_REFIT * max(self.n_fit, 1):
            if self.members.size >= _ANN_REPROJECT * max(self.n_projected, 1) and self.n_projected < _ANN_SAMPLE:
                self._project()
            self.extend(int(frames[-1]) + 1)
            self._fit()
        else:
            self.extend(int(frames[-1]) + 1)
            self._insert(frames, self._assign(frames))

    def _sample(self) -> np.ndarray:
        members = self.members
        return members[np.unique(np.linspace(0, members.size - 1, min(members.size, _ANN_SAMPLE)).astype(np.int64))]

    def _project(self) -> None:
        self.n_projected = self.members.size
        Zs = self._search_rows(self._sample())
        self.mean = Zs.mean(axis=0, dtype=np.float64).astype(np.float32)
        Zs -= self.mean
        self.P = _principal_axes(Zs, self.dim)
        if self.P.shape[1] != self.Y.shape[1]:  # fewer axes when the sample has lower rank
            self.Y = np.zeros((self.X.shape[0], self.P.shape[1]), np.float32)
        hi, self.y_hi, self.biggest = self.y_hi, 0, 0.0
        self.extend(max(hi, int(self.members[-1]) + 1))

    def extend(self, stop: int) -> None:
        """Project frames up to ``stop`` (rows of ``Y`` are filled ahead of the build, 8,192 at a time)."""
        if stop <= self.y_hi:
            return
        stop = min(self.X.shape[0], max(stop, self.y_hi + 8192))
        for lo in range(self.y_hi, stop, 8192):
            hi = min(stop, lo + 8192)
            Zb = self._search_rows(np.arange(lo, hi)) - self.mean
            self.biggest = max(self.biggest, float(np.einsum("ij,ij->i", Zb, Zb, dtype=np.float64).max()))
            self.Y[lo:hi] = Zb @ self.P
        self.y_hi = max(self.y_hi, stop)
        # float32 coordinates: allow for their rounding (1e-3 of the largest
        # norm on the distance, far above it), so the filter never rejects a
        # match. Not finite: the rows overflow float32, and the index is not used.
        self.theta_p2 = (math.sqrt(self.thr_e2) + 1e-3 * math.sqrt(self.biggest)) ** 2

    @property
    def usable(self) -> bool:
        return math.isfinite(self.theta_p2)

    def _fit(self) -> None:
        members = self.members
        self.n_fit = members.size
        self.refits += 1
        # A query compares with every centre and the members of nprobe lists
        # (each child is in _ANN_SPILL of them): sqrt(nprobe x spill x size)
        # lists balance the two (size: halfway to the next refit).
        # A small index gets fewer, fuller lists (at least _ANN_MIN_LIST
        # members each): there the scan is cheap and recall is what counts.
        size = (1 + _ANN_REFIT) / 2 * members.size
        balanced = math.sqrt(_ANN_NPROBE * _ANN_SPILL * size)
        self.n_lists = int(min(_ANN_MAX_LISTS, max(1, round(min(balanced, size / _ANN_MIN_LIST)))))
        Ys = self.Y[self._sample()]
        seeds = np.unique(np.linspace(0, Ys.shape[0] - 1, self.n_lists).astype(np.int64))
        C = Ys[seeds].copy()
        for _ in range(_ANN_KMEANS_ITERS):
            _k._kmeans_update(Ys, _k._smallest_columns(self._scores(Ys, self._directions(C)), 1)[:, 0], C)
        self.C = C
        self.D = self._directions(C)
        self.home = np.full((self.X.shape[0], min(_ANN_SPILL, C.shape[0])), -1, np.int64)
        assign = self._assign(members)
        self._pack(np.bincount(assign.ravel(), minlength=C.shape[0]))
        self._insert(members, assign)

    def _pack(self, counts: np.ndarray, old: Optional[tuple] = None) -> None:
        # Room for twice each list's members (and 8 more), so most lists
        # never move before the next refit.
        cap = 2 * counts + 8
        start = np.concatenate([[0], np.cumsum(cap)[:-1]]).astype(np.int64)
        pack_y = np.empty((int(cap.sum()), self.dim), np.float32)
        pack_id = np.empty(int(cap.sum()), np.int64)
        length = np.zeros(counts.size, np.int64)
        if old is not None:
            o_start, o_len, o_y, o_id = old
            for c in np.flatnonzero(o_len):
                pack_y[start[c] : start[c] + o_len[c]] = o_y[o_start[c] : o_start[c] + o_len[c]]
                pack_id[start[c] : start[c] + o_len[c]] = o_id[o_start[c] : o_start[c] + o_len[c]]
            length[:] = o_len
        self.list_start, self.list_len, self.list_cap = start, length, cap.astype(np.int64)
        self.pack_y, self.pack_id = pack_y, pack_id

    def _insert(self, frames: np.ndarray, assign: np.ndarray) -> None:
        # Every frame goes into each of its lists; lists stay in ascending frame order.
        frames = np.repeat(frames, assign.shape[1])
        assign = assign.ravel()
        done = 0
        while done < frames.size:
            done += int(_k._ivf_insert(self.Y, frames[done:], assign[done:], self.list_start, self.list_len,
                                    self.list_cap, self.pack_y, self.pack_id))
            if done < frames.size:
                counts = self.list_len + np.bincount(assign[done:], minlength=self.list_len.size)
                self._pack(counts, (self.list_start, self.list_len, self.pack_y, self.pack_id))

    @staticmethod
    def _directions(C: np.ndarray) -> np.ndarray:
        # Lists are scored by the cosine to their centre (spherical K-means):
        # the euclidean distance would favour the centres of large lists,
        # whose norms shrink in high dimension, and make them hubs that
        # every query scans.
        norms = np.sqrt(np.einsum("ij,ij->i", C, C))
        return np.ascontiguousarray((C / np.where(norms > 0, norms, 1.0)[:, None]).T, dtype=np.float32)

    @staticmethod
    def _scores(Y: np.ndarray, D: np.ndarray) -> np.ndarray:
        """Lower is nearer: minus the projected rows' dot products with the list directions (d, n_lists)."""
        out = Y @ D
        np.negative(out, out=out)
        return out

    def _assign(self, frames: np.ndarray) -> np.ndarray:
        """The lists each frame goes into: int64 (len(frames), spill), nearest first."""
        # Frames that queried the current lists already know them.
        assign = self.home[frames]
        todo = assign[:, 0] < 0
        if np.any(todo):
            rows = np.flatnonzero(todo)
            for lo in range(0, rows.size, 8192):  # bounded score matrices
                part = rows[lo : lo + 8192]
                assign[part] = _k._smallest_columns(self._scores(self.Y[frames[part]], self.D), assign.shape[1])
        return assign

    def query(self, frames: np.ndarray) -> np.ndarray:
        """Candidate root children for each frame: int64 (len(frames), k), ascending, -1 padded."""
        d = self._scores(self.Y[frames], self.D)
        out = np.empty((frames.size, _ANN_K), np.int64)
        self.scanned += int(_k._ivf_scan(self.Y, frames, d, min(_ANN_NPROBE, self.C.shape[0]), self.list_start,
                                      self.list_len, self.pack_y, self.pack_id, self.theta_p2, out, self.home))
        return out

    def describe(self) -> dict[str, Any]:
        return {"indexed": int(self.members.size), "lists": int(self.n_lists), "nprobe": _ANN_NPROBE,
                "spill": _ANN_SPILL, "projected_dim": int(self.Y.shape[1]), "candidates": _ANN_K,
                "refits": int(self.refits), "scanned": int(self.scanned)}


def _principal_axes(Z: np.ndarray, m: int) -> np.ndarray:
    """Top ``m`` principal axes of centred rows, float32 (d, m), orthonormal columns.

    Randomised range finder with two power iterations (Halko, Martinsson &
    Tropp 2011) from a fixed seed: thin matrix products and factorisations
    of (m + 16)-square matrices only (no d x d or tall LAPACK call). Any
    orthonormal basis keeps the filter exact; the principal one makes it
    tight.
    """
    d = Z.shape[1]
    if m >= d:
        return np.eye(d, dtype=np.float32)
    Z64 = Z.astype(np.float64)
    Q = Z64 @ np.random.default_rng(0).standard_normal((d, min(d, m + 16)))
    for it in range(3):
        Q = _orthonormal_columns(Q)
        if it < 2:
            Q = Z64 @ (Z64.T @ Q)
    P = np.zeros((d, 0))
    if Q.shape[1]:
        B = Q.T @ Z64  # (l, d): the rows' coordinates in the found range, transposed
        w, U = np.linalg.eigh(B @ B.T)
        order = np.argsort(w)[::-1][: min(m, Q.shape[1])]
        P = _orthonormal_columns(B.T @ U[:, order])
    if P.shape[1] == 0:  # every sampled row is the same: any one axis will do
        P = np.eye(d, 1)
    # A fixed sign per axis, so the projection does not depend on LAPACK's choice.
    flip = np.sign(P[np.argmax(np.abs(P), axis=0), np.arange(P.shape[1])])
    return np.ascontiguousarray(P * np.where(flip == 0, 1.0, flip), dtype=np.float32)


def _orthonormal_columns(A: np.ndarray) -> np.ndarray:
    """Orthonormalise the columns of a tall matrix (Cholesky QR, twice for accuracy; rank-deficient columns dropped)."""
    for _ in range(2):
        G = A.T @ A
        w, V = np.linalg.eigh(G)
        keep = w > w.max() * 1e-12 if w.size and w.max() > 0 else np.zeros(w.shape, bool)
        # A (V diag(w)^-1/2) has orthonormal columns: a symmetric-eigen form of Cholesky QR that tolerates rank loss.
        A = A @ (V[:, keep] / np.sqrt(w[keep]))
    return A
