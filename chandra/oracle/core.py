"""The :class:`Oracle` container and what every part of :mod:`chandra.oracle` shares:
the oracle kinds and metrics, and the coercion of symbol and feature inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from chandra.errors import ModelFormatError, OracleError
from chandra.oracle import _kernels as _k
from chandra.oracle.takes import _take_starts_problem


KINDS = ("tokens", "features")
METRICS = ("cosine", "euclidean")

_ARRAY_NAMES = ("sfx", "lrs", "trn_ptr", "trn_dst")
_OPTIONAL_ARRAYS = ("rep",)  # absent from models saved before exact context
_TAKE_ARRAY = "take_starts"  # only oracles over several takes (a corpus) have it


# ---------------------------------------------------------------------------
# The Oracle container
# ---------------------------------------------------------------------------


@dataclass
class Oracle:
    """A factor oracle (``kind="tokens"``) or audio oracle (``kind="features"``).

    Attributes
    ----------
    kind : {"tokens", "features"}
        Factor oracle over tokens, or audio oracle over feature vectors.
    sfx : np.ndarray, int64, shape (n + 1,)
        Suffix link of every state; ``sfx[0] == -1``.
    lrs : np.ndarray, int64, shape (n + 1,)
        Context length in frames: the longest repeated suffix of frames
        ``0..i-1`` (factor oracle), or the run of within-threshold frame
        pairs shared with ``sfx[i]`` (audio oracle); see
        :mod:`chandra.oracle`. ``lrs[0] == 0``.
    trn_ptr : np.ndarray, int64, shape (n + 2,)
        CSR row pointer: the forward transitions of state ``i`` are
        ``trn_dst[trn_ptr[i]:trn_ptr[i + 1]]``.
    trn_dst : np.ndarray, int64, shape (n_transitions,)
        Transition destinations, sorted ascending within each state. The
        label of a transition into ``j`` is frame ``j - 1``.
    threshold : float or None
        Audio oracle distance threshold (a match is ``distance < threshold``).
    metric : {"cosine", "euclidean"} or None
        Audio oracle distance.
    rep : np.ndarray, int64, shape (n + 1,), optional
        Where the context ends earlier: the ``lrs[i]`` frames ending at state
        ``i`` equal those ending at state ``rep[i]`` (``rep[i] < i``;
        ``rep[0] == -1``, ``rep[i] == 0`` when ``lrs[i] == 0``). The builders
        set it; when omitted (an oracle saved before chandra stored exact
        context, or one imported from a graph without symbols, whose ``lrs``
        is the Lefebvre-Lecroq context shared with the suffix link) it is a
        copy of ``sfx``.
    take_starts : np.ndarray, int64, shape (T,), optional
        For an oracle over a corpus of T takes (sequences) laid end to end:
        the frame index where each take begins (``take_starts[0] == 0``,
        strictly increasing, all ``< n``). The frames of one take never
        continue into the next: there is no direct transition ``b -> b + 1``
        from a take's last state ``b`` (``b`` in ``take_starts[1:]``) and no
        context (``lrs``) counts frames across a take start. None for one
        sequence. See :func:`build_factor_oracle` and
        :func:`build_audio_oracle`.
    search : dict or None
        How an audio oracle's matches were searched (:func:`build_audio_oracle`):
        ``mode`` "exact" or "approximate", the mode ``requested``, and for an
        approximate build the index's figures. None when unknown (factor
        oracles, imported graphs, models saved before it was recorded).
    """

    kind: str
    sfx: np.ndarray
    lrs: np.ndarray
    trn_ptr: np.ndarray
    trn_dst: np.ndarray
    threshold: Optional[float] = None
    metric: Optional[str] = None
    rep: Optional[np.ndarray] = None
    take_starts: Optional[np.ndarray] = None
    search: Optional[dict] = None

    def __post_init__(self) -> None:
        if self.rep is None:
            self.rep = np.array(self.sfx, dtype=np.int64, copy=True)

    @property
    def n_frames(self) -> int:
        """Number of frames ``n`` (states are 0..n)."""
        return int(self.sfx.shape[0]) - 1

    @property
    def n_states(self) -> int:
        """Number of states, ``n + 1`` (the root included)."""
        return int(self.sfx.shape[0])

    @property
    def n_transitions(self) -> int:
        """Number of forward transitions."""
        return int(self.trn_dst.shape[0])

    def transitions(self, i: int) -> np.ndarray:
        """Destinations of state ``i``'s forward transitions, ascending (a view)."""
        if not 0 <= i <= self.n_frames:
            raise OracleError(f"state {i} out of range 0..{self.n_frames}")
        return self.trn_dst[self.trn_ptr[i] : self.trn_ptr[i + 1]]

    def out_degree(self) -> np.ndarray:
        """Number of forward transitions per state, int64 (n + 1,)."""
        return np.diff(self.trn_ptr)[: self.n_states]

    def rsfx(self) -> list[np.ndarray]:
        """Reverse suffix links: element ``j`` lists the states whose ``sfx`` is ``j``, ascending."""
        n_states = self.n_states
        src = np.arange(1, n_states, dtype=np.int64)
        tgt = self.sfx[1:]
        ok = (tgt >= 0) & (tgt < n_states)
        src, tgt = src[ok], tgt[ok]
        order = np.argsort(tgt, kind="stable")
        counts = np.bincount(tgt, minlength=n_states)
        return np.split(src[order], np.cumsum(counts)[:-1])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The int64 arrays (``sfx``, ``lrs``, ``trn_ptr``, ``trn_dst``, ``rep``, and ``take_starts``
        when the oracle spans several takes) for ``.npy`` storage."""
        out = {name: np.ascontiguousarray(getattr(self, name), dtype=np.int64)
               for name in _ARRAY_NAMES + _OPTIONAL_ARRAYS}
        if self.take_starts is not None:
            out[_TAKE_ARRAY] = np.ascontiguousarray(self.take_starts, dtype=np.int64)
        return out

    def to_meta(self) -> dict[str, Any]:
        """JSON-able description: ``kind``, ``threshold``, ``metric``, ``n_frames`` (and ``search`` when known)."""
        meta = {
            "kind": self.kind,
            "threshold": None if self.threshold is None else float(self.threshold),
            "metric": self.metric,
            "n_frames": self.n_frames,
        }
        if self.search is not None:
            meta["search"] = dict(self.search)
        return meta

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "Oracle":
        """Rebuild an oracle from :meth:`to_meta` and :meth:`to_arrays` output.

        Checks the layout (keys, dtypes, shapes, CSR consistency, index ranges)
        so that nothing downstream can index out of bounds; semantic
        invariants are :func:`check_oracle`'s job.

        Raises
        ------
        ModelFormatError
            On any inconsistency.
        """
        if not isinstance(meta, dict):
            raise ModelFormatError("oracle meta must be a JSON object")
        kind = meta.get("kind")
        if kind not in KINDS:
            raise ModelFormatError(f"oracle kind {kind!r} is not one of {KINDS}")
        metric = meta.get("metric")
        threshold = meta.get("threshold")
        if kind == "features":
            if metric not in METRICS:
                raise ModelFormatError(f"audio oracle metric {metric!r} is not one of {METRICS}")
            if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
                raise ModelFormatError(f"audio oracle threshold {threshold!r} is not a finite number")
            threshold = float(threshold)
        else:
            if metric is not None or threshold is not None:
                raise ModelFormatError("a factor oracle (kind 'tokens') has no metric or threshold")
        out: dict[str, np.ndarray] = {}
        for name in _ARRAY_NAMES + _OPTIONAL_ARRAYS:
            if name not in arrays:
                if name in _OPTIONAL_ARRAYS:
                    continue
                raise ModelFormatError(f"oracle array {name!r} is missing")
            arr = np.asarray(arrays[name])
            if arr.dtype.kind not in "iu":
                raise ModelFormatError(f"oracle array {name!r} has dtype {arr.dtype}, expected an integer type")
            if arr.ndim != 1:
                raise ModelFormatError(f"oracle array {name!r} has shape {arr.shape}, expected 1-D")
            out[name] = np.ascontiguousarray(arr, dtype=np.int64)
        sfx, lrs, ptr, dst = out["sfx"], out["lrs"], out["trn_ptr"], out["trn_dst"]
        n_states = sfx.shape[0]
        if n_states < 1:
            raise ModelFormatError("oracle 'sfx' is empty: the root state is missing")
        n = n_states - 1
        if "n_frames" in meta and meta["n_frames"] != n:
            raise ModelFormatError(f"oracle meta says {meta['n_frames']} frames, arrays hold {n}")
        if lrs.shape[0] != n_states:
            raise ModelFormatError(f"oracle 'lrs' has {lrs.shape[0]} entries, expected {n_states}")
        if ptr.shape[0] != n_states + 1:
            raise ModelFormatError(f"oracle 'trn_ptr' has {ptr.shape[0]} entries, expected {n_states + 1}")
        if ptr[0] != 0 or ptr[-1] != dst.shape[0] or np.any(np.diff(ptr) < 0):
            raise ModelFormatError("oracle 'trn_ptr' is not a valid CSR pointer over 'trn_dst'")
        if dst.size and (dst.min() < 1 or dst.max() > n):
            raise ModelFormatError(f"oracle 'trn_dst' holds states outside 1..{n}")
        if sfx[0] != -1 or np.any(sfx < -1) or np.any(sfx > n):
            raise ModelFormatError(f"oracle 'sfx' must start with -1 and hold states in -1..{n}")
        if lrs[0] != 0 or np.any(lrs < 0):
            raise ModelFormatError("oracle 'lrs' must start with 0 and be non-negative")
        rep = out.get("rep")
        if rep is not None:
            if rep.shape[0] != n_states:
                raise ModelFormatError(f"oracle 'rep' has {rep.shape[0]} entries, expected {n_states}")
            if rep[0] != -1 or np.any(rep < -1) or np.any(rep > n):
                raise ModelFormatError(f"oracle 'rep' must start with -1 and hold states in -1..{n}")
        starts = None
        if arrays.get(_TAKE_ARRAY) is not None:
            starts = np.asarray(arrays[_TAKE_ARRAY])
            if starts.dtype.kind not in "iu" or starts.ndim != 1:
                raise ModelFormatError(f"oracle 'take_starts' has dtype {starts.dtype} and shape {starts.shape}; "
                                       "expected 1-D integers")
            starts = np.ascontiguousarray(starts, dtype=np.int64)
            problem = _take_starts_problem(starts, n)
            if problem:
                raise ModelFormatError(f"oracle 'take_starts' {problem}")
        search = meta.get("search")
        if search is not None:
            # Descriptive only: keep short scalar entries, drop anything else.
            search = {str(key)[:64]: value for key, value in search.items()
                      if isinstance(value, (str, int, float, bool)) and not (isinstance(value, str) and len(value) > 64)
                      } if isinstance(search, dict) and len(search) <= 32 else None
        return cls(kind=kind, sfx=sfx, lrs=lrs, trn_ptr=ptr, trn_dst=dst, threshold=threshold, metric=metric,
                   rep=rep, take_starts=starts, search=search)


def _empty_oracle(kind: str, threshold: Optional[float] = None, metric: Optional[str] = None) -> Oracle:
    return Oracle(
        kind=kind,
        sfx=np.array([-1], dtype=np.int64),
        lrs=np.zeros(1, dtype=np.int64),
        trn_ptr=np.zeros(2, dtype=np.int64),
        trn_dst=np.zeros(0, dtype=np.int64),
        threshold=threshold,
        metric=metric,
        rep=np.array([-1], dtype=np.int64),
    )


def _as_symbols(symbols: Any) -> np.ndarray:
    arr = np.asarray(symbols)
    if arr.ndim != 1:
        raise OracleError(f"symbols must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iu":
        raise OracleError(f"symbols must be integers (tokens), got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _dense_codes(sym: np.ndarray) -> tuple[np.ndarray, int]:
    # Tokens are usually 0..K-1 already; only sparse or negative ids pay for np.unique.
    lo, hi = int(sym.min()), int(sym.max())
    if lo >= 0 and hi < max(2 * sym.size, 1024):
        return sym, hi + 1
    uniq, inverse = np.unique(sym, return_inverse=True)
    return inverse.astype(np.int64, copy=False), int(uniq.size)


def _as_features(features: Any, *, check_finite: bool = True) -> np.ndarray:
    X = np.asarray(features)
    if X.ndim != 2:
        raise OracleError(f"features must be 2-D (n_frames, dim), got shape {X.shape}")
    if X.dtype.kind not in "fiu" or X.dtype.kind == "b":
        raise OracleError(f"features must be numeric, got dtype {X.dtype}")
    if X.shape[1] == 0 and X.shape[0] > 0:
        raise OracleError("features have dimension 0")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    X = np.ascontiguousarray(X)
    if check_finite and X.size and not np.all(np.isfinite(X)):
        raise OracleError("features contain NaN or infinite values")
    return X


def _metric_code(metric: str) -> int:
    if metric not in METRICS:
        raise OracleError(f"metric {metric!r} is not one of {METRICS}")
    return METRICS.index(metric)


def _sqnorms(X: np.ndarray) -> np.ndarray:
    """Squared row norms, float64 (n,), accumulated in the features' precision like the distances."""
    if X.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return _k._row_sqnorms(X)


def _checked_sqnorms(X: np.ndarray) -> np.ndarray:
    # A NaN or inf anywhere in a row makes its squared norm non-finite, so the
    # full scan over n x d values only runs when something is off.
    sq = _sqnorms(X)
    if not np.all(np.isfinite(sq)) and not np.all(np.isfinite(X)):
        raise OracleError("features contain NaN or infinite values")
    return sq
