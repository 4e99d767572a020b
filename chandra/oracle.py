"""Factor oracle and audio oracle: construction, invariants, health, information rate.

The oracle is the memory an improviser navigates: state 0 is the root and state
``i`` (1..n) is reached after frame ``i - 1`` (0-based frame index). Every
transition into state ``j`` is labelled by frame ``j - 1``'s symbol (a token for
the factor oracle, a feature vector for the audio oracle), so a transition is
stored as a (source, destination) pair in CSR form and its label is implied.

Algorithms (implemented from the papers):

* factor oracle: Allauzen, Crochemore & Raffinot, "Factor oracle: a new
  structure for pattern matching" (SOFSEM 1999), online construction;
* exact context: the suffix automaton (Blumer et al., "The smallest automaton
  recognizing the subwords of a text", TCS 40, 1985; Crochemore & Hancart,
  "Automata for matching patterns", 1997), built online alongside the factor
  oracle;
* the Lefebvre & Lecroq ``LengthCommonSuffix`` recursion ("Computing
  repeated factors with a factor oracle", 2000; Lefebvre, Lecroq & Alexandre
  2003), kept for graphs that come without their symbols
  (:func:`lefebvre_lecroq_lrs`, used by the MusicHal importer);
* audio oracle: Dubnov, Assayag & Cont, "Audio oracle: a new algorithm for
  fast learning of audio structures" (ICMC 2007), and its variable-Markov
  form (Wang & Dubnov, VMO): symbols compared by a distance and a threshold;
* information rate: Dubnov, "Audio oracle analysis of musical information
  rate" (2011), code lengths from a compression of the sequence by the oracle.

Context: ``sfx``, ``lrs`` and ``rep``
-------------------------------------
``sfx`` is the textbook suffix link, unchanged. For the factor oracle it is
the state reached by reading ``w_i``, the longest suffix of frames
``0..i-1`` that also ends earlier (ACR 1999); because the oracle also accepts
some non-factors, that state need not *end* with ``w_i``: in ``abbcabcdabc``,
``w_11 = abc`` but ``sfx[11] = 4`` ends with ``bbc``. The Lefebvre-Lecroq
recursion measures the context shared with ``sfx[i]`` through the suffix-link
tree and so falls short of ``|w_i|`` (at 69 % of the states of 2,000 random
two-letter tokens, 27 % with four letters; see benchmarks/RESULTS.md).
chandra therefore stores the context exactly and says where it is:

``lrs[i]``
    factor oracle: ``|w_i|``, the true longest repeated suffix of the prefix
    (occurrences may overlap), from a suffix automaton built in the same
    pass: when frame ``i - 1`` is added, the suffix link of the new
    automaton state is the state of ``w_i`` and its length is ``|w_i|``.
``rep[i]``
    factor oracle: the state where the *first* earlier occurrence of
    ``w_i`` ends (the automaton state's first end position), so frames
    ``rep[i] - lrs[i] .. rep[i] - 1`` equal frames ``i - lrs[i] .. i - 1``;
    ``rep[i] = 0`` when ``lrs[i] = 0`` and ``rep[0] = -1``.

Invariants (checked by :func:`check_oracle`): ``lrs[i] <= sfx[i]`` (reading
``w_i`` takes ``|w_i|`` transitions, each to a later state);
``lrs[i] = 0 <=> sfx[i] = 0 <=> rep[i] = 0`` (a frame whose symbol is new);
``sfx[i] <= rep[i] < i`` (reading a factor from the root ends no later
than its first occurrence, ACR 1999); the ``lrs[i]`` symbols ending at ``i`` equal those
ending at ``rep[i]``; and ``lrs[i]`` is the longest such (no suffix of
length ``lrs[i] + 1`` ends earlier). The context shared with ``sfx[i]``
itself may be shorter than ``lrs[i]``; navigation uses ``rep``.

The links ``i -> rep[i]`` form a tree in which the states sharing a suffix of
length ``>= m`` with any state are exactly its component when edges with
``lrs < m`` are cut (every later end of a word links, through ends of the
same word, to its first end), so the longest common suffix of two states is
the minimum ``lrs`` on the tree path between them. :mod:`chandra.generate`
navigates this tree.

Audio oracle. Threshold matching is not transitive, so "the longest repeated
suffix over all earlier frames" is not a property an automaton can index
(finding it needs every pair of frames, O(n^2)). chandra's choice:
``rep[i] = sfx[i]`` and ``lrs[i]`` is the exact number of consecutive frame
pairs ``(i-1-t, sfx[i]-1-t)``, ``t = 0, 1, ...``, that lie within the
threshold: the context really shared with the frame the oracle links to,
counted pair by pair with the builder's own distance. (The Lefebvre-Lecroq
value can exceed it, as matches do not chain, or fall short of it.) With
one-hot features and a threshold between 0 and the distance of two different
symbols this is a common suffix of the token sequence, and the oracle's
``sfx`` equals the factor oracle's.

Approximate search. On material where few frames recur within the threshold
(noise, or a threshold that is too small) almost every new frame reaches the
root and is compared with all of its children, O(n^2 d) in all. Past a size
threshold :func:`build_audio_oracle` answers that one comparison from an
inverted-file index over the root's children (PCA projection, spherical
K-means lists, exact verification of every link it makes); every other
state's children are few and stay exact, so on material whose root stays
small the oracle is the exact one. ``search="exact"`` forces the exact scan.
An approximate oracle satisfies every invariant of :func:`check_oracle`: it
can miss a match (that frame links further back or to the root), never link
frames farther apart than the threshold. ``Oracle.search`` records how it was
built; agreement with the exact oracle is measured in benchmarks/RESULTS.md.

Construction kernels are compiled with numba (cached on disk); everything the
dashboard or model I/O touches is plain ``int64``/``float64`` numpy arrays.
The kernels that checks and small models need (``check_oracle``, exact
context, information rate) run their own source in the interpreter while
their inputs are small and numba is not loaded yet, so ``chandra inspect`` of
a small model does not pay numba's start-up (about a second per process).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from chandra.errors import ModelFormatError, OracleError
from chandra.progress import ProgressCallback, report

__all__ = [
    "Oracle",
    "build_factor_oracle",
    "exact_lrs",
    "lefebvre_lecroq_lrs",
    "audio_oracle_lrs",
    "build_audio_oracle",
    "check_oracle",
    "oracle_health",
    "information_rate",
    "information_rate_profile",
    "ir_tokens",
    "ir_threshold_sweep",
    "select_threshold",
    "default_thresholds",
    "KINDS",
    "METRICS",
    "SEARCH_MODES",
    "CHECK_CODES",
    "take_of_frames",
]

KINDS = ("tokens", "features")
METRICS = ("cosine", "euclidean")

#: Stable codes returned by :func:`check_oracle`.
CHECK_CODES = (
    "malformed",
    "input_length_mismatch",
    "sfx_out_of_range",
    "lrs_exceeds_sfx",
    "lrs_zero_mismatch",
    "lrs_context_mismatch",
    "lrs_not_longest",
    "rep_out_of_range",
    "too_many_transitions",
    "missing_direct_transition",
    "nondeterministic_transition",
    "sfx_distance_above_threshold",
    "transition_across_takes",
    "context_across_takes",
)

_ARRAY_NAMES = ("sfx", "lrs", "trn_ptr", "trn_dst")
_OPTIONAL_ARRAYS = ("rep",)  # absent from models saved before exact context
_TAKE_ARRAY = "take_starts"  # only oracles over several takes (a corpus) have it
_CHUNK = 1 << 16  # states per kernel call: progress granularity, negligible overhead
_AO_BLOCK = 256  # audio-oracle frames per kernel call (and per Gram block)
_DENSE_RATIO = 16  # a Gram block pays off when a frame is compared with > 1/16 of the past

#: ``build_audio_oracle`` search modes.
SEARCH_MODES = ("auto", "exact", "approximate")
#: ``search="auto"`` indexes the root once scanning its children costs this
#: many multiply-adds per frame (root out-degree x feature dimension; 4,096
#: children of 768-D frames); below it the search is exact.
APPROX_MIN_WORK = 4096 * 768
#: ``search="approximate"`` indexes the root once it has this many children.
APPROX_MIN_ROOT = 256
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
_NO_Y = np.zeros((1, 1), np.float32)


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
        pairs shared with ``sfx[i]`` (audio oracle); see the module
        docstring. ``lrs[0] == 0``.
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


def _take_starts_problem(starts: np.ndarray, n: int) -> str | None:
    """Why ``starts`` (int64, 1-D) is not a take layout over ``n`` frames, or None."""
    if starts.size == 0:
        return "is empty; the first take starts at frame 0"
    if starts[0] != 0:
        return f"starts at frame {int(starts[0])}; the first take starts at frame 0"
    if starts.size > 1 and np.any(np.diff(starts) <= 0):
        return "is not strictly increasing (every take has at least one frame)"
    if int(starts[-1]) >= max(n, 1):
        return f"names frame {int(starts[-1])} of an oracle of {n} frames"
    return None


def _checked_take_starts(take_starts: Any, n: int) -> Optional[np.ndarray]:
    """``take_starts`` as a valid int64 array, or None for one take (raises :class:`OracleError`)."""
    if take_starts is None:
        return None
    arr = np.asarray(take_starts)
    if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu")):
        raise OracleError(f"take_starts must be a 1-D array of frame indices, got dtype {arr.dtype} "
                          f"and shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    problem = _take_starts_problem(arr, n)
    if problem:
        raise OracleError(f"take_starts {problem}")
    return None if arr.size == 1 else arr


def take_of_frames(take_starts: Any, n: int) -> np.ndarray:
    """Take index of every frame, int64 (n,), for a valid ``take_starts`` (zeros when None)."""
    if take_starts is None:
        return np.zeros(n, dtype=np.int64)
    return np.searchsorted(np.asarray(take_starts, dtype=np.int64), np.arange(n, dtype=np.int64),
                           side="right").astype(np.int64) - 1


def _state_positions(take_starts: np.ndarray, n: int) -> np.ndarray:
    """For state i >= 1, how many frames of its own take end at it (frames take_start..i-1); 0 for the root.

    No context ending at state ``i`` may be longer: it would reach into the
    previous take."""
    pos = np.zeros(n + 1, dtype=np.int64)
    if n:
        frames = np.arange(n, dtype=np.int64)
        starts = np.asarray(take_starts, dtype=np.int64)
        pos[1:] = frames - starts[take_of_frames(starts, n)] + 1
    return pos


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


# ---------------------------------------------------------------------------
# numba kernels
#
# numba is imported on the first kernel call, not at import: model I/O, the
# inspector and the CLI import this module for the Oracle container alone.
# ``_kernel`` records the python function and leaves a stand-in under its
# name; the first call compiles (or loads from the on-disk cache) every kernel
# and rebinds the module globals, so kernels calling kernels see dispatchers.
# ---------------------------------------------------------------------------

_KERNEL_SOURCES: dict[str, tuple[Any, dict]] = {}
# Reassociation lets the dot products vectorise; no "no-NaN/inf" assumption,
# so a NaN in the features still surfaces in the squared norms.
_FAST_MATH = {"reassoc", "contract", "nsz", "arcp"}


#: Until the kernels are compiled, a call of a kernel registered with
#: ``interpret_small=True`` (linear work: the checks, exact context, IR)
#: whose array arguments hold at most this many elements in all runs the same
#: source in the interpreter: importing numba and loading compiled kernels
#: from the disk cache costs about a second per process, far more than a
#: small model's checks take interpreted (``chandra inspect`` of a
#: 1,000-frame model).
_INTERPRET_MAX_ELEMENTS = 50_000
_INTERPRETED: dict[str, Any] = {}
_INTERPRETABLE: set[str] = set()


class _LazyKernel:
    def __init__(self, name: str, interpret_small: bool):
        self.name = name
        self.interpret_small = interpret_small

    def __call__(self, *args):
        if self.interpret_small and sum(a.size for a in args if isinstance(a, np.ndarray)) <= _INTERPRET_MAX_ELEMENTS:
            return _interpreted(self.name)(*args)
        _materialise_kernels()
        return globals()[self.name](*args)


def _interpreted(name: str):
    """Kernel ``name`` as plain Python: its source, calling the other kernels' sources."""
    if not _INTERPRETED:
        import types

        namespace = dict(globals())
        for kernel, (fn, _) in _KERNEL_SOURCES.items():
            namespace[kernel] = types.FunctionType(fn.__code__, namespace, kernel, fn.__defaults__, fn.__closure__)

        def entry(fn):
            def run(*args):
                with np.errstate(over="ignore"):  # hashing multiplies wrap around, as compiled
                    return fn(*args)
            return run

        _INTERPRETED.update({kernel: entry(namespace[kernel]) for kernel in _KERNEL_SOURCES})
    return _INTERPRETED[name]


def _kernel(*, interpret_small: bool = False, **options):
    def register(fn):
        _KERNEL_SOURCES[fn.__name__] = (fn, options)
        if interpret_small:
            _INTERPRETABLE.add(fn.__name__)
        return _LazyKernel(fn.__name__, interpret_small)

    return register


def _materialise_kernels() -> None:
    namespace = globals()
    if not any(isinstance(namespace[name], _LazyKernel) for name in _KERNEL_SOURCES):
        return
    from numba import njit

    for name, (fn, options) in _KERNEL_SOURCES.items():
        namespace[name] = njit(cache=True, **options)(fn)


@_kernel()
def _append_edge(src, dst, head, tail, e_next, e_src, e_dst, ne):
    # Append keeps each state's list in ascending destination order, which is
    # what makes "closest match, ties to the earliest" deterministic.
    if ne >= e_dst.shape[0]:
        cap = 2 * e_dst.shape[0] + 16
        nn = np.empty(cap, np.int64)
        nn[:ne] = e_next[:ne]
        e_next = nn
        ns = np.empty(cap, np.int64)
        ns[:ne] = e_src[:ne]
        e_src = ns
        nd = np.empty(cap, np.int64)
        nd[:ne] = e_dst[:ne]
        e_dst = nd
    e_next[ne] = -1
    e_src[ne] = src
    e_dst[ne] = dst
    if tail[src] < 0:
        head[src] = ne
    else:
        e_next[tail[src]] = ne
    tail[src] = ne
    return e_next, e_src, e_dst, ne + 1


@_kernel()
def _hash_slot(key, shift):
    # Fibonacci hashing: multiply by 2^64 / golden ratio, keep the top bits.
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(shift))


@_kernel()
def _fo_kernel(codes, n_codes, start, stop, sfx, root_next, tab_key, tab_val, e_src, e_dst, ne):
    # Non-root transitions live in an open-addressing table keyed by
    # (state, code): one probe per lookup instead of a walk along the state's
    # list, which dominated on rich alphabets.
    mask = tab_key.shape[0] - 1
    shift = 64
    size = tab_key.shape[0]
    while size > 1:
        size >>= 1
        shift -= 1
    for i in range(start + 1, stop + 1):
        c = codes[i - 1]
        e_src[ne] = i - 1
        e_dst[ne] = i
        ne += 1
        if i == 1:
            root_next[c] = i
        else:
            key = (i - 1) * n_codes + c
            h = _hash_slot(key, shift)
            while tab_key[h] >= 0:
                h = (h + 1) & mask
            tab_key[h] = key
            tab_val[h] = i
        k = sfx[i - 1]
        found = -1
        while k > -1:
            if k == 0:
                found = root_next[c]
            else:
                key = k * n_codes + c
                h = _hash_slot(key, shift)
                while tab_key[h] >= 0:
                    if tab_key[h] == key:
                        found = tab_val[h]
                        break
                    h = (h + 1) & mask
            if found >= 0:
                break
            e_src[ne] = k
            e_dst[ne] = i
            ne += 1
            if k == 0:
                root_next[c] = i
            else:
                tab_key[h] = key
                tab_val[h] = i
            k = sfx[k]
        sfx[i] = found if found >= 0 else 0
    return ne


@_kernel(interpret_small=True)
def _sam_kernel(codes, n_codes, start, stop, cursor, st, e_code, e_next, root_next, tab_key, tab_val, lrs, rep):
    # Online suffix automaton (Blumer et al. 1985) over frames start..stop-1,
    # written for the exact longest repeated suffix: when frame i is added,
    # the new state's suffix link is the state of the longest suffix that
    # also ends earlier; its length is lrs[i + 1] and its first end position
    # rep[i + 1].
    #
    # st[s] = (length, link, first end position, code1, target1, code2,
    # target2, head of the overflow list): a state's first two transitions
    # are stored inline (most states have one or two), the others in an
    # open-addressing table keyed by (state, code) and listed per state for
    # cloning; the root's transitions are a dense table.
    # cursor = (n_states, last, n_overflow).
    mask = tab_key.shape[0] - 1
    shift = 64
    size = tab_key.shape[0]
    while size > 1:
        size >>= 1
        shift -= 1
    nst = cursor[0]
    last = cursor[1]
    ne = cursor[2]
    for i in range(start, stop):
        c = codes[i]
        cur = nst
        nst += 1
        st[cur, 0] = st[last, 0] + 1
        st[cur, 1] = -1
        st[cur, 2] = i + 1
        st[cur, 3] = -1
        st[cur, 5] = -1
        st[cur, 7] = -1
        p = last
        q = -1
        while p != -1:
            if p == 0:
                q = root_next[c]
                if q >= 0:
                    break
                root_next[c] = cur
            elif st[p, 3] == c:
                q = st[p, 4]
                break
            elif st[p, 5] == c:
                q = st[p, 6]
                break
            elif st[p, 3] < 0:
                st[p, 3] = c
                st[p, 4] = cur
            elif st[p, 5] < 0:
                st[p, 5] = c
                st[p, 6] = cur
            else:
                key = p * n_codes + c
                h = _hash_slot(key, shift)
                if st[p, 7] >= 0:
                    while tab_key[h] >= 0:
                        if tab_key[h] == key:
                            q = tab_val[h]
                            break
                        h = (h + 1) & mask
                    if q >= 0:
                        break
                else:
                    while tab_key[h] >= 0:
                        h = (h + 1) & mask
                tab_key[h] = key
                tab_val[h] = cur
                e_code[ne] = c
                e_next[ne] = st[p, 7]
                st[p, 7] = ne
                ne += 1
            p = st[p, 1]
        if p == -1:
            st[cur, 1] = 0
        elif st[p, 0] + 1 == st[q, 0]:
            st[cur, 1] = q
        else:
            clone = nst
            nst += 1
            st[clone, 0] = st[p, 0] + 1
            st[clone, 1] = st[q, 1]
            st[clone, 2] = st[q, 2]
            st[clone, 3] = st[q, 3]
            st[clone, 4] = st[q, 4]
            st[clone, 5] = st[q, 5]
            st[clone, 6] = st[q, 6]
            st[clone, 7] = -1
            e = st[q, 7]
            while e >= 0:
                d = e_code[e]
                key = q * n_codes + d
                h = _hash_slot(key, shift)
                while tab_key[h] != key:
                    h = (h + 1) & mask
                target = tab_val[h]
                key = clone * n_codes + d
                h = _hash_slot(key, shift)
                while tab_key[h] >= 0:
                    h = (h + 1) & mask
                tab_key[h] = key
                tab_val[h] = target
                e_code[ne] = d
                e_next[ne] = st[clone, 7]
                st[clone, 7] = ne
                ne += 1
                e = e_next[e]
            while p != -1:
                if p == 0:
                    if root_next[c] != q:
                        break
                    root_next[c] = clone
                elif st[p, 3] == c:
                    if st[p, 4] != q:
                        break
                    st[p, 4] = clone
                elif st[p, 5] == c:
                    if st[p, 6] != q:
                        break
                    st[p, 6] = clone
                else:
                    key = p * n_codes + c
                    h = _hash_slot(key, shift)
                    while tab_key[h] != key:
                        h = (h + 1) & mask
                    if tab_val[h] != q:
                        break
                    tab_val[h] = clone
                p = st[p, 1]
            st[q, 1] = clone
            st[cur, 1] = clone
        u = st[cur, 1]
        lrs[i + 1] = st[u, 0]
        rep[i + 1] = st[u, 2] if st[u, 0] > 0 else 0
        last = cur
    cursor[0] = nst
    cursor[1] = last
    cursor[2] = ne


@_kernel(fastmath=_FAST_MATH)
def _dist_from_dot(dot, na, nb, metric):
    # metric 0: cosine distance 1 - cos; 1: euclidean, from squared norms.
    if metric == 0:
        if na == 0.0 or nb == 0.0:
            # Cosine is undefined for a zero vector: two silences are the same
            # thing, a silence and a sound are not.
            return 0.0 if (na == 0.0 and nb == 0.0) else 1.0
        return 1.0 - dot / math.sqrt(na * nb)
    return math.sqrt(max(na + nb - 2.0 * dot, 0.0))


@_kernel(fastmath=_FAST_MATH)
def _dist(X, a, b, sqnorm, metric):
    # Accumulate in the features' own precision: float32 halves the cost and
    # its rounding (~1e-6 relative) is far below any useful threshold.
    d = X.shape[1]
    acc = X[a, 0] - X[a, 0]
    if metric == 0:
        for t in range(d):
            acc += X[a, t] * X[b, t]
        return _dist_from_dot(np.float64(acc), sqnorm[a], sqnorm[b], 0)
    for t in range(d):
        diff = X[a, t] - X[b, t]
        acc += diff * diff
    return math.sqrt(np.float64(acc))


@_kernel()
def _ao_kernel(X, sqnorm, metric, theta, start, stop, G, g_row0, sfx, lrs, head, tail, e_next, e_src, e_dst, ne,
               stats, idx_edge, Y, theta_p2, cand, cand_lo, cand_hi, ctl):
    # G: when it has rows, G[f - g_row0, j] = X[f] . X[j] for the frames f of
    # this block and every earlier frame j (one matrix product per block,
    # chosen by the caller when most comparisons hit the root).
    # Root index (idx_edge >= 0): the root's children up to and including
    # edge ``idx_edge`` are in the caller's index; for frame f in
    # [cand_lo, cand_hi) ``cand[f - cand_lo]`` lists the index's candidates
    # (ascending frame ids, -1 padded), and later root children are compared
    # directly after a projected-distance prefilter: Y holds every frame's
    # coordinates under an orthonormal projection of the search space, so
    # |Y[f] - Y[j]|^2 >= theta_p2 proves the pair is not within the threshold.
    # A walk that reaches the indexed root without candidates pauses:
    # ctl[0] = its state on return (-1: the block is done); passing that
    # state back in ctl[0] resumes it at the root (its earlier transitions
    # are already added).
    # stats: 0 distance evaluations, 1 root searches through the index,
    # 2 root transitions added, 3 index candidates verified, 4 prefiltered pairs.
    dense = G.shape[0] > 0
    indexed = idx_edge >= 0
    resume = ctl[0]
    ctl[0] = -1
    n_eval = 0
    for i in range(start + 1, stop + 1):
        f = i - 1
        if i == resume:
            k = 0
        else:
            e_next, e_src, e_dst, ne = _append_edge(i - 1, i, head, tail, e_next, e_src, e_dst, ne)
            k = sfx[i - 1]
        found = -1
        while k > -1:
            best = theta
            e = head[k]
            prefilter = False
            if k == 0 and indexed:
                if f < cand_lo or f >= cand_hi:
                    ctl[0] = i
                    stats[0] += n_eval
                    return e_next, e_src, e_dst, ne
                stats[1] += 1
                # Candidates come in ascending frame order and the later
                # children follow, so "closest, earliest on ties" holds.
                for c in range(cand.shape[1]):
                    j = cand[f - cand_lo, c]
                    if j < 0:
                        break
                    n_eval += 1
                    stats[3] += 1
                    dd = _dist(X, f, j, sqnorm, metric)
                    if dd < best:
                        best = dd
                        found = j + 1
                e = e_next[idx_edge]
                prefilter = True
            while e >= 0:
                j = e_dst[e] - 1
                if prefilter:
                    stats[4] += 1
                    acc = Y[f, 0] - Y[f, 0]
                    for t in range(Y.shape[1]):
                        diff = Y[f, t] - Y[j, t]
                        acc += diff * diff
                    if acc >= theta_p2:
                        e = e_next[e]
                        continue
                n_eval += 1
                if dense:
                    # The product's rounding (and, for euclidean, cancellation
                    # in |a|^2 + |b|^2 - 2 a.b) could move a pair across the
                    # threshold, so anything near ``best`` is recomputed
                    # directly: both paths then take the same decisions.
                    dot = np.float64(G[f - g_row0, j])
                    if metric == 0:
                        if _dist_from_dot(dot, sqnorm[f], sqnorm[j], 0) >= best + 1e-4:
                            e = e_next[e]
                            continue
                    elif sqnorm[f] + sqnorm[j] - 2.0 * dot >= best * best + 1e-4 * (sqnorm[f] + sqnorm[j]):
                        e = e_next[e]
                        continue
                dd = _dist(X, f, j, sqnorm, metric)
                if dd < best:
                    best = dd
                    found = j + 1
                e = e_next[e]
            if found >= 0:
                break
            e_next, e_src, e_dst, ne = _append_edge(k, i, head, tail, e_next, e_src, e_dst, ne)
            if k == 0:
                stats[2] += 1
            k = sfx[k]
        if found < 0:
            sfx[i] = 0
            lrs[i] = 0
        else:
            sfx[i] = found
            lrs[i] = _matched_run(X, sqnorm, metric, theta, i, found, sfx, lrs)
    stats[0] += n_eval
    return e_next, e_src, e_dst, ne


@_kernel()
def _children_after(e, head, e_next, e_dst, k):
    # Frames labelling state k's transitions after edge e (all of them when
    # e < 0), in order, and the last edge seen (e when there is none).
    e = head[k] if e < 0 else e_next[e]
    count = 0
    probe = e
    while probe >= 0:
        count += 1
        probe = e_next[probe]
    out = np.empty(count, np.int64)
    last = -1
    for c in range(count):
        out[c] = e_dst[e] - 1
        last = e
        e = e_next[e]
    return out, last


@_kernel(fastmath=_FAST_MATH)
def _ivf_scan(Y, frames, dc, nprobe, list_start, list_len, pack_y, pack_id, theta_p2, out, home):
    # dc[q, c]: squared distance (up to a per-row constant) of query q to
    # list centre c; the nprobe nearest lists are scanned (ties to the lower
    # list) and home[f] records the nearest. For each query frame: the
    # members whose projected squared distance is below theta_p2, the
    # out.shape[1] closest kept (ties to the earlier frame), written in
    # ascending frame order, -1 padded. Lists are packed: list c's members
    # are pack_id[list_start[c]:][:list_len[c]] with their coordinates in the
    # same rows of pack_y (a sequential scan).
    k = out.shape[1]
    m = Y.shape[1]
    n_lists = dc.shape[1]
    bd = np.empty(k, np.float64)
    bj = np.empty(k, np.int64)
    pd = np.empty(nprobe, np.float64)
    pc = np.empty(nprobe, np.int64)
    n_scanned = 0
    for q in range(frames.shape[0]):
        f = frames[q]
        npb = 0
        for c in range(n_lists):
            v = dc[q, c]
            if npb < nprobe or v < pd[npb - 1]:
                pos = npb if npb < nprobe else nprobe - 1
                while pos > 0 and pd[pos - 1] > v:
                    pd[pos] = pd[pos - 1]
                    pc[pos] = pc[pos - 1]
                    pos -= 1
                pd[pos] = v
                pc[pos] = c
                if npb < nprobe:
                    npb += 1
        for h in range(home.shape[1]):
            home[f, h] = pc[min(h, npb - 1)]
        nb = 0
        for p in range(npb):
            c = pc[p]
            lo = list_start[c]
            n_scanned += list_len[c]
            for r in range(lo, lo + list_len[c]):
                acc = Y[f, 0] - Y[f, 0]
                for t in range(m):
                    diff = Y[f, t] - pack_y[r, t]
                    acc += diff * diff
                dd = np.float64(acc)
                if dd >= theta_p2:
                    continue
                j = pack_id[r]
                if nb < k or dd < bd[nb - 1] or (dd == bd[nb - 1] and j < bj[nb - 1]):
                    seen = False
                    for b in range(nb):  # a member spilled into two probed lists
                        if bj[b] == j:
                            seen = True
                    if seen:
                        continue
                    pos = nb if nb < k else k - 1
                    while pos > 0 and (bd[pos - 1] > dd or (bd[pos - 1] == dd and bj[pos - 1] > j)):
                        bd[pos] = bd[pos - 1]
                        bj[pos] = bj[pos - 1]
                        pos -= 1
                    bd[pos] = dd
                    bj[pos] = j
                    if nb < k:
                        nb += 1
        sel = np.sort(bj[:nb])
        for c in range(k):
            out[q, c] = sel[c] if c < nb else -1
    return n_scanned


@_kernel()
def _smallest_columns(scores, s):
    # The s columns of each row with the smallest scores, ascending (ties to the lower column).
    out = np.empty((scores.shape[0], s), np.int64)
    best = np.empty(s, np.float64)
    for q in range(scores.shape[0]):
        nb = 0
        for c in range(scores.shape[1]):
            v = scores[q, c]
            if nb < s or v < best[nb - 1]:
                pos = nb if nb < s else s - 1
                while pos > 0 and best[pos - 1] > v:
                    best[pos] = best[pos - 1]
                    out[q, pos] = out[q, pos - 1]
                    pos -= 1
                best[pos] = v
                out[q, pos] = c
                if nb < s:
                    nb += 1
        for h in range(nb, s):
            out[q, h] = out[q, nb - 1]
    return out


@_kernel()
def _ivf_insert(Y, members, assign, list_start, list_len, list_cap, pack_y, pack_id):
    # Append members to their packed lists; returns how many were placed
    # (fewer than all when a list is full: the caller repacks and goes on).
    for a in range(members.shape[0]):
        c = assign[a]
        if list_len[c] >= list_cap[c]:
            return a
        r = list_start[c] + list_len[c]
        pack_id[r] = members[a]
        for t in range(Y.shape[1]):
            pack_y[r, t] = Y[members[a], t]
        list_len[c] += 1
    return members.shape[0]


@_kernel()
def _kmeans_update(Y, assign, C):
    # Lloyd step: every centre with members moves to their mean.
    sums = np.zeros(C.shape, np.float64)
    counts = np.zeros(C.shape[0], np.int64)
    for a in range(Y.shape[0]):
        c = assign[a]
        counts[c] += 1
        for t in range(Y.shape[1]):
            sums[c, t] += Y[a, t]
    for c in range(C.shape[0]):
        if counts[c] > 0:
            for t in range(C.shape[1]):
                C[c, t] = sums[c, t] / counts[c]


@_kernel()
def _matched_run(X, sqnorm, metric, theta, i, k, sfx, lrs):
    # Consecutive frame pairs within the threshold ending at states i and
    # k = sfx[i] (frames i-1 and k-1 match: that is why k is the link). Where
    # the walk reaches a pair of states already linked, a < i with
    # sfx[a] == b, that pair's run lrs[a] is known and ends the walk, so a
    # repeat that continues a repeat costs one step.
    m = 1
    a = i - 1
    b = k - 1
    while b > 0:
        if sfx[a] == b:
            return m + lrs[a]
        if _dist(X, a - 1, b - 1, sqnorm, metric) >= theta:
            return m
        m += 1
        a -= 1
        b -= 1
    return m


@_kernel(interpret_small=True, fastmath=_FAST_MATH)
def _row_sqnorms(X):
    out = np.empty(X.shape[0], np.float64)
    for a in range(X.shape[0]):
        acc = X[a, 0] - X[a, 0]
        for t in range(X.shape[1]):
            acc += X[a, t] * X[a, t]
        out[a] = acc
    return out


@_kernel(interpret_small=True)
def _pair_dist_kernel(X, a, b, sqnorm, metric):
    out = np.empty(a.shape[0], np.float64)
    for k in range(a.shape[0]):
        out[k] = _dist(X, a[k], b[k], sqnorm, metric)
    return out


@_kernel()
def _edges_to_csr(e_src, e_dst, ne, n_states):
    # Edges were created in ascending destination order, so a stable counting
    # sort by source leaves every row sorted by destination.
    ptr = np.zeros(n_states + 1, np.int64)
    for e in range(ne):
        ptr[e_src[e] + 1] += 1
    for s in range(n_states):
        ptr[s + 1] += ptr[s]
    fill = ptr[:-1].copy()
    dst = np.empty(ne, np.int64)
    for e in range(ne):
        s = e_src[e]
        dst[fill[s]] = e_dst[e]
        fill[s] += 1
    return ptr, dst


@_kernel(interpret_small=True, fastmath=_FAST_MATH)
def _context_check(sym, X, sqnorm, metric, theta, use_symbols, sfx, lrs, valid, verified):
    # verified[i] = min(lrs[i], M(i, sfx[i])) where M(a, b) is the number of
    # consecutive matching frame pairs ending at states a and b, and ``sfx``
    # is whichever link the context is claimed for (the oracle's ``rep``).
    # When sfx[i-1] == sfx[i] - 1 the pair chain of i extends the one of
    # i-1, so one comparison suffices; only "jumps" walk the context.
    # Returns the number of comparisons made.
    n = sfx.shape[0] - 1
    n_cmp = 0
    for i in range(1, n + 1):
        verified[i] = -1
        if not valid[i]:
            continue
        s = sfx[i]
        want = lrs[i]
        shortcut = False
        if i >= 2 and valid[i - 1] and sfx[i - 1] == s - 1 and s - 1 >= 1:
            if verified[i - 1] < lrs[i - 1] or want - 1 <= lrs[i - 1]:
                shortcut = True
        if shortcut:
            n_cmp += 1
            if use_symbols:
                ok = sym[i - 1] == sym[s - 1]
            else:
                ok = _dist(X, i - 1, s - 1, sqnorm, metric) < theta
            verified[i] = min(want, 1 + verified[i - 1]) if ok else 0
            continue
        m = 0
        while m < want:
            n_cmp += 1
            if use_symbols:
                ok = sym[i - 1 - m] == sym[s - 1 - m]
            else:
                ok = _dist(X, i - 1 - m, s - 1 - m, sqnorm, metric) < theta
            if not ok:
                break
            m += 1
        verified[i] = m
    return n_cmp


@_kernel(interpret_small=True)
def _ir_profile(lrs, alphabet):
    # See information_rate_profile for the formula.
    n = lrs.shape[0] - 1
    ir = np.zeros(n, np.float64)
    i = 1
    while i <= n:
        length = 0
        while i + length <= n and lrs[i + length] >= length + 1:
            length += 1
        if length == 0:
            i += 1
            continue
        share = math.log2(i) / length
        for j in range(i, i + length):
            gain = math.log2(alphabet[j - 1]) - share if alphabet[j - 1] > 0 else 0.0
            ir[j - 1] = gain if gain > 0.0 else 0.0
        i += length
    return ir


# ---------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------


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


class _ExactContext:
    """The suffix automaton pass of :func:`build_factor_oracle`, fed chunk by chunk."""

    def __init__(self, codes: np.ndarray, n_codes: int):
        n = codes.shape[0]
        cap = 2 * n + 2  # a suffix automaton has at most 2n - 1 states
        # int32 halves the memory traffic whenever (state, code) keys fit.
        small = cap * max(n_codes, 1) < 2**31 - 1
        dt = np.int32 if small else np.int64
        self.codes = codes.astype(dt, copy=False)
        self.n_codes = n_codes
        self.st = np.empty((cap, 8), dt)
        self.st[0] = (0, -1, 0, -1, -1, -1, -1, -1)
        # Overflow transitions (beyond each state's two inline ones): fewer
        # than the automaton's 3n - 4 transitions minus one per state.
        self.e_code = np.empty(2 * n + 8, dt)
        self.e_next = np.empty(2 * n + 8, dt)
        self.root_next = np.full(max(n_codes, 1), -1, dt)
        size = 1 << max(4, int(4 * n).bit_length())  # load <= 1/2
        self.tab_key = np.full(size, -1, dt)
        self.tab_val = np.empty(size, dt)
        self.cursor = np.array([1, 0, 0], np.int64)
        self.lrs = np.zeros(n + 1, np.int64)
        self.rep = np.zeros(n + 1, np.int64)
        self.rep[0] = -1

    def feed(self, start: int, stop: int) -> None:
        _sam_kernel(self.codes, self.n_codes, start, stop, self.cursor, self.st, self.e_code, self.e_next,
                    self.root_next, self.tab_key, self.tab_val, self.lrs, self.rep)


def exact_lrs(symbols: Any, *, take_starts: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact longest repeated suffix of every prefix of a token sequence, and where it ends first.

    Parameters
    ----------
    symbols : array_like of int, shape (n,)
    take_starts : array_like of int, shape (T,), optional
        The sequence is T takes laid end to end (see :class:`Oracle`): a
        repeated suffix then never reaches across a take start, at either of
        its ends (computed with a unique separator between takes).

    Returns
    -------
    lrs : np.ndarray, int64, shape (n + 1,)
        ``lrs[i]`` is the length of the longest suffix of ``symbols[:i]``
        that also ends at an earlier position (occurrences may overlap);
        ``lrs[0] = 0``.
    rep : np.ndarray, int64, shape (n + 1,)
        ``rep[i]`` is the smallest ``j < i`` with ``symbols[j - lrs[i]:j] ==
        symbols[i - lrs[i]:i]`` (0 when ``lrs[i] = 0``); ``rep[0] = -1``.

    Notes
    -----
    One online suffix-automaton pass, linear in ``n`` for a fixed alphabet;
    this is what :func:`build_factor_oracle` stores as ``lrs`` and ``rep``.
    """
    sym = _as_symbols(symbols)
    if sym.size == 0:
        return np.zeros(1, np.int64), np.full(1, -1, np.int64)
    codes, n_codes = _dense_codes(sym)
    starts = _checked_take_starts(take_starts, sym.size)
    if starts is not None:
        codes, n_codes, keep = _with_separators(codes, n_codes, starts)
    ctx = _ExactContext(codes, n_codes)
    ctx.feed(0, codes.size)
    if starts is None:
        return ctx.lrs, ctx.rep
    new_index = np.cumsum(keep) - 1
    return ctx.lrs[keep], _renumber(ctx.rep[keep], keep, new_index, "rep")


def _with_separators(codes: np.ndarray, n_codes: int, starts: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """The codes with a unique separator symbol before every take but the first.

    Returns ``(codes', n_codes', keep)``: ``keep`` (bool, one per state of
    the separated sequence, n + B + 1) is False for the states reached by
    reading a separator. A separator occurs once, so no repeated suffix
    contains one: every context stays inside a take.
    """
    n_sep = starts.size - 1
    at = starts[1:] + np.arange(n_sep, dtype=np.int64)  # separator positions in the longer sequence
    out = np.empty(codes.size + n_sep, dtype=np.int64)
    frame = np.ones(out.size, dtype=bool)
    frame[at] = False
    out[frame] = codes
    out[at] = n_codes + np.arange(n_sep, dtype=np.int64)
    keep = np.ones(out.size + 1, dtype=bool)
    keep[at + 1] = False
    return out, n_codes + n_sep, keep


def _renumber(links: np.ndarray, keep: np.ndarray, new_index: np.ndarray, name: str) -> np.ndarray:
    """State links (``-1`` for none) of the kept states, in the numbering without separator states."""
    out = links.copy()
    linked = out >= 0
    if np.any(~keep[out[linked]]):
        # A link into a separator state would mean a context holding a separator.
        raise OracleError(f"internal error: a {name} link points at a take separator")
    out[linked] = new_index[out[linked]]
    return out


def build_factor_oracle(symbols: Any, *, take_starts: Any = None,
                        progress: Optional[ProgressCallback] = None) -> Oracle:
    """Build the factor oracle of a token sequence, online, with exact context.

    Parameters
    ----------
    symbols : array_like of int, shape (n,)
        Token per frame (any integers; they are only compared for equality).
    take_starts : array_like of int, shape (T,), optional
        The frames are T takes laid end to end, take ``t`` starting at frame
        ``take_starts[t]`` (``0`` first, strictly increasing). The oracle is
        then built over the takes with a unique separator symbol between
        them, and the separator states are removed: no direct transition
        leads from a take's last frame into the next take, and ``lrs``/``rep``
        are the exact longest repeated suffix *within* takes (a shared
        context never spans a take start, at either end; jumps between takes
        by shared context remain). The oracle records ``take_starts``.
    progress : callable, optional
        ``progress("oracle", done_frames, n)`` (``n + T - 1`` with takes:
        the separators count as frames).

    Returns
    -------
    Oracle
        ``kind="tokens"``, n + 1 states, at most 2n - 1 transitions, with
        exact ``lrs`` and ``rep`` (see the module docstring).

    Notes
    -----
    Allauzen-Crochemore-Raffinot construction: adding frame ``i - 1`` creates
    state ``i`` and the transition ``i-1 -> i``; the suffix chain of ``i - 1``
    is walked, adding ``k -> i`` from each state lacking a transition on the
    new symbol; the first state that has one gives ``sfx[i]`` (its target),
    else ``sfx[i] = 0``. Linear time for a fixed alphabet (root lookups use a
    dense table, other states an open-addressing hash table).

    ``lrs`` and ``rep`` come from a suffix automaton built in the same pass
    (:func:`exact_lrs`): ``lrs[i]`` is the true longest repeated suffix, not
    the Lefebvre-Lecroq lower bound read off the suffix links (in
    ``abbcabcdabc``, ``sfx[11] = 4`` shares only ``bc`` with state 11, but
    ``lrs[11] = 3`` and ``rep[11] = 7``: ``abc`` ends at 7).
    """
    sym = _as_symbols(symbols)
    n = sym.size
    if n == 0:
        _checked_take_starts(take_starts, 0)
        report(progress, "oracle", 0, 0)
        return _empty_oracle("tokens")
    starts = _checked_take_starts(take_starts, n)
    if starts is not None:
        return _separated_factor_oracle(sym, starts, progress)
    codes, n_codes = _dense_codes(sym)
    sfx = np.empty(n + 1, np.int64)
    sfx[0] = -1
    root_next = np.full(n_codes, -1, np.int64)
    # At most 2n - 1 transitions (ACR 1999); a power-of-two table of more
    # than 4n slots keeps the load under 1/2 and probe sequences short.
    size = 1 << max(4, int(4 * n).bit_length())
    # int32 halves the table's memory traffic whenever (state, code) keys fit.
    dt = np.int32 if (n + 1) * max(n_codes, 1) < 2**31 - 1 else np.int64
    tab_key = np.full(size, -1, dt)
    tab_val = np.empty(size, dt)
    cap = 2 * n + 1
    e_src = np.empty(cap, np.int64)
    e_dst = np.empty(cap, np.int64)
    ne = 0
    context = _ExactContext(codes, n_codes)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        ne = _fo_kernel(codes, n_codes, start, stop, sfx, root_next, tab_key, tab_val, e_src, e_dst, ne)
        context.feed(start, stop)
        report(progress, "oracle", stop, n)
    ptr, dst = _edges_to_csr(e_src, e_dst, ne, n + 1)
    return Oracle(kind="tokens", sfx=sfx, lrs=context.lrs, trn_ptr=ptr, trn_dst=dst, rep=context.rep)


def _separated_factor_oracle(sym: np.ndarray, starts: np.ndarray, progress: Optional[ProgressCallback]) -> Oracle:
    """The factor oracle of takes joined by unique separators, without the separator states.

    A separator state ``s`` (reached by reading separator ``j``) has
    ``sfx = lrs = rep = 0`` and no state links to it (every link is reached
    by reading a suffix that ends with a frame's own token); its transitions
    are the ones labelled by the separator (into it) and one into the next
    take's first state, so dropping it and renumbering keeps every oracle
    invariant, removes the direct transition across the take boundary, and
    leaves at most ``2n - 1`` transitions.
    """
    codes, n_codes = _dense_codes(sym)
    joined, _, keep = _with_separators(codes, n_codes, starts)
    inner = build_factor_oracle(joined, progress=progress)
    new_index = np.cumsum(keep) - 1
    sfx = _renumber(inner.sfx[keep], keep, new_index, "suffix")
    rep = _renumber(inner.rep[keep], keep, new_index, "repeat")
    lrs = inner.lrs[keep].copy()
    n_joined = joined.size
    src = np.repeat(np.arange(n_joined + 1, dtype=np.int64), np.diff(inner.trn_ptr))
    dst = inner.trn_dst
    ok = keep[src] & keep[dst]
    # Renumbering is monotonic, so CSR order (by source, destinations ascending) survives.
    new_src, new_dst = new_index[src[ok]], new_index[dst[ok]]
    n = sym.size
    ptr = np.zeros(n + 2, dtype=np.int64)
    np.cumsum(np.bincount(new_src, minlength=n + 1), out=ptr[1:n + 2])
    return Oracle(kind="tokens", sfx=sfx, lrs=lrs, trn_ptr=ptr, trn_dst=np.ascontiguousarray(new_dst),
                  rep=rep, take_starts=starts.copy())


@_kernel()
def _matched_runs_kernel(X, sqnorm, metric, theta, sfx, lrs):
    for i in range(1, sfx.shape[0]):
        k = sfx[i]
        if k <= 0:
            lrs[i] = 0
        else:
            lrs[i] = _matched_run(X, sqnorm, metric, theta, i, k, sfx, lrs)


def audio_oracle_lrs(features: Any, sfx: Any, *, threshold: float, metric: str) -> Optional[np.ndarray]:
    """The audio oracle's exact context for a graph whose features are known.

    For every state ``i`` with ``sfx[i] > 0``: the number of consecutive
    frame pairs ending at ``i`` and ``sfx[i]`` within ``threshold`` (the
    value :func:`build_audio_oracle` stores). An imported audio oracle (a
    MusicHal file: graph and features, no LRS) gets the same context back
    this way, rather than the graph-only estimate of
    :func:`lefebvre_lecroq_lrs`.

    Parameters
    ----------
    features : array_like of float, shape (n, d)
    sfx : array_like of int, shape (n + 1,)
    threshold : float
    metric : {"cosine", "euclidean"}

    Returns
    -------
    np.ndarray of int64, shape (n + 1,), or None
        None when the links are not strictly backwards (``0 <= sfx[i] < i``)
        or the features do not have one row per frame.
    """
    X = _as_features(features, check_finite=False)
    sfx = np.ascontiguousarray(sfx, dtype=np.int64)
    n_states = sfx.shape[0]
    if X.shape[0] != n_states - 1:
        return None
    if n_states > 1 and (np.any(sfx[1:] < 0) or np.any(sfx[1:] >= np.arange(1, n_states))):
        return None
    lrs = np.zeros(n_states, np.int64)
    if n_states > 1:
        _matched_runs_kernel(X, _sqnorms(X), _metric_code(metric), float(threshold), sfx, lrs)
    return lrs


def lefebvre_lecroq_lrs(sfx: Any, trn_ptr: Any, trn_dst: Any) -> Optional[np.ndarray]:
    """Context lengths from an oracle graph alone (Lefebvre & Lecroq's common-suffix recursion).

    For graphs that come without their symbols (a MusicHal 9000 file holds
    the transitions and suffix links of an audio oracle but neither the
    features' matches nor any LRS), this is the best available estimate:
    ``lrs[i] = LengthCommonSuffix(p, sfx[i] - 1) + 1``, where ``p`` is the
    last state on the suffix-link path from ``i - 1`` that received a
    transition into ``i`` during online construction (those transitions are
    in the graph, so ``p`` is found by walking the path while the next state
    still points to ``i``), and ``LengthCommonSuffix`` reads the suffix-link
    tree (Lefebvre & Lecroq 2000; Lefebvre, Lecroq & Alexandre 2003). It is
    the context shared with ``sfx[i]`` as far as the tree can tell: a lower
    bound of the longest repeated suffix on a factor oracle (see
    :func:`exact_lrs` for the exact value when symbols are known).

    Parameters
    ----------
    sfx : array_like of int, shape (n + 1,)
    trn_ptr : array_like of int, shape (n + 2,)
    trn_dst : array_like of int, shape (n_transitions,)
        The oracle's suffix links and CSR transitions.

    Returns
    -------
    np.ndarray of int64, shape (n + 1,), or None
        None when some link is not strictly backwards (``0 <= sfx[i] < i``),
        where the recursion is undefined.
    """
    sfx = np.asarray(sfx, dtype=np.int64)
    trn_ptr = np.asarray(trn_ptr, dtype=np.int64)
    trn_dst = np.asarray(trn_dst, dtype=np.int64)
    n_states = sfx.shape[0]
    if n_states > 1:
        tail = sfx[1:]
        if np.any(tail < 0) or np.any(tail >= np.arange(1, n_states)):
            return None
    stride = n_states + 1
    sources = np.repeat(np.arange(n_states, dtype=np.int64), np.diff(trn_ptr)[:n_states])
    edges = set((sources * stride + trn_dst[: sources.size]).tolist())
    s = sfx.tolist()
    lrs = [0] * n_states
    for i in range(1, n_states):
        k = s[i]
        if k <= 0:
            continue
        p1 = i - 1
        while s[p1] >= 0 and s[p1] * stride + i in edges:
            p1 = s[p1]
        p2 = k - 1
        if p2 == s[p1]:
            common = lrs[p1]
        else:
            while p2 > 0 and s[p2] != s[p1]:
                p2 = s[p2]
            common = 0 if p2 <= 0 else min(lrs[p1], lrs[p2])
        lrs[i] = common + 1
    return np.asarray(lrs, dtype=np.int64)


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
    return _row_sqnorms(X)


def _checked_sqnorms(X: np.ndarray) -> np.ndarray:
    # A NaN or inf anywhere in a row makes its squared norm non-finite, so the
    # full scan over n x d values only runs when something is off.
    sq = _sqnorms(X)
    if not np.all(np.isfinite(sq)) and not np.all(np.isfinite(X)):
        raise OracleError("features contain NaN or infinite values")
    return sq


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
            _kmeans_update(Ys, _smallest_columns(self._scores(Ys, self._directions(C)), 1)[:, 0], C)
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
            done += int(_ivf_insert(self.Y, frames[done:], assign[done:], self.list_start, self.list_len,
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
                assign[part] = _smallest_columns(self._scores(self.Y[frames[part]], self.D), assign.shape[1])
        return assign

    def query(self, frames: np.ndarray) -> np.ndarray:
        """Candidate root children for each frame: int64 (len(frames), k), ascending, -1 padded."""
        d = self._scores(self.Y[frames], self.D)
        out = np.empty((frames.size, _ANN_K), np.int64)
        self.scanned += int(_ivf_scan(self.Y, frames, d, min(_ANN_NPROBE, self.C.shape[0]), self.list_start,
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


@contextlib.contextmanager
def _one_blas_thread():
    """Limit BLAS to one thread for the duration (threadpoolctl, a scikit-learn dependency; no-op without it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _index_pays_off(n_root: int, dim: int) -> bool:
    """``search="auto"``: index the root once scanning it costs more than ``APPROX_MIN_WORK`` multiply-adds."""
    return n_root * dim >= APPROX_MIN_WORK


def build_audio_oracle(
    features: Any,
    *,
    threshold: float,
    metric: str = "cosine",
    search: str = "auto",
    progress: Optional[ProgressCallback] = None,
    take_starts: Any = None,
) -> Oracle:
    """Build the audio oracle (variable Markov oracle) of a feature sequence.

    Parameters
    ----------
    features : array_like of float, shape (n, d)
        One feature vector per frame (float32 or float64; not assumed to be
        L2-normalised).
    threshold : float
        Two frames match when their distance is strictly below it
        (cosine distance in [0, 2]; euclidean in feature units).
    metric : {"cosine", "euclidean"}
        ``cosine`` is ``1 - a.b / (|a| |b|)`` (0 between two zero vectors, 1
        between a zero and a non-zero vector); ``euclidean`` is ``|a - b|``.
    search : {"auto", "exact", "approximate"}
        How a new frame is matched against the root's children (see Notes):
        ``exact`` compares it with every one; ``approximate`` asks an index
        as soon as the root has ``APPROX_MIN_ROOT`` children; ``auto`` (the
        default) asks it once comparing with every child would cost more
        than ``APPROX_MIN_WORK`` multiply-adds per frame (root out-degree x
        d), and is exact below that.
    progress : callable, optional
        ``progress("oracle", done_frames, n)``.
    take_starts : array_like of int, shape (T,), optional
        The frames are T takes laid end to end (see :class:`Oracle`). The
        oracle is built over the whole sequence, then the direct transition
        from each take's last frame into the next take is removed and every
        ``lrs`` is cut at take starts: the matched run shared with
        ``sfx[i]`` stops where either run would cross into the previous
        take, which is the exact run within takes. Suffix links may still
        join frames of different takes (that is what lets the improviser
        move between takes).

    Returns
    -------
    Oracle
        ``kind="features"`` with ``threshold`` and ``metric`` recorded, and
        ``search`` describing how it was built (``mode``: "exact" or
        "approximate"; for an approximate build the root searches the index
        answered and its parameters).

    Notes
    -----
    Dubnov-Assayag-Cont construction: adding frame ``i - 1`` creates state
    ``i`` and ``i-1 -> i``; the suffix chain of ``i - 1`` is walked and at
    each state ``k`` the new frame is compared with the frames labelling all
    of ``k``'s transitions. If one or more are within the threshold the
    closest one's destination (earliest on ties) becomes ``sfx[i]``; else
    ``k -> i`` is added and the walk goes on; reaching past the root gives
    ``sfx[i] = 0``. ``lrs[i]`` is the number of consecutive frame pairs
    ending at ``i`` and ``sfx[i]`` within the threshold (exact, counted with
    the builder's distance; see the module docstring for why this is the
    audio oracle's "exact" context) and ``rep`` equals ``sfx``. With one-hot
    (or otherwise well separated) frames and a threshold between within- and
    between-symbol distances ``sfx`` and the transitions equal the factor
    oracle's of the symbol sequence, and ``lrs[i]`` is the common suffix of
    states ``i`` and ``sfx[i]``.

    Cost. Each comparison is one ``d``-dimensional distance (squared norms are
    precomputed). On structured material (frames recurring within the
    threshold) the suffix chain is short and out-degrees are small, so the
    cost is about linear in ``n``. On unstructured material (few frames
    within the threshold of an earlier one: noise, or a threshold that is too
    small) most frames reach the root, whose out-degree grows towards ``n``:
    the exact search costs ``n (n - 1) / 2`` distance evaluations, O(n^2 d)
    (done in blocks whose dot products with the past come from one BLAS
    product; 10k x 768 takes about half a second, 100k about a minute).

    Approximate search replaces only the root's scan (every other state's
    children are few and always compared exactly): the children up to the
    previous block of 256 frames are in an inverted-file index
    (:class:`_RootIndex`: PCA projection of the search space to 64
    dimensions, spherical K-means lists, each child in its 2 nearest lists,
    the 24 lists nearest the new frame scanned, the 8 closest candidates in
    projection verified with the builder's own distance); children added
    since are compared exactly after a projected-distance filter that cannot
    reject a match. Every link is verified with the exact distance, so an
    approximate oracle never links frames farther apart than the threshold
    and passes :func:`check_oracle`; what it can do is miss a match, so that
    frame's link goes to a farther-back state or to the root. Its cost grows
    like ``n^1.5`` on unstructured input (100k x 768 in seconds instead of
    minutes); on material whose root stays below the switch it is the exact
    oracle. The index is deterministic (no random state; evenly spaced
    samples and seeds), so the same input gives the same oracle on the same
    machine and BLAS. Agreement with the exact oracle is measured in
    benchmarks/RESULTS.md.
    """
    X = _as_features(features, check_finite=False)
    code = _metric_code(metric)
    if search not in SEARCH_MODES:
        raise OracleError(f"search {search!r} is not one of {SEARCH_MODES}")
    theta = float(threshold)
    if not math.isfinite(theta) or theta < 0:
        raise OracleError(f"threshold must be a finite number >= 0, got {threshold!r}")
    n = X.shape[0]
    starts = _checked_take_starts(take_starts, n)
    if starts is not None:
        return _split_at_takes(build_audio_oracle(X, threshold=theta, metric=metric, search=search, progress=progress),
                               starts)
    if n == 0:
        report(progress, "oracle", 0, 0)
        out = _empty_oracle("features", theta, metric)
        out.search = {"mode": "exact", "requested": search}
        return out
    sqnorm = _checked_sqnorms(X)
    sfx = np.empty(n + 1, np.int64)
    lrs = np.empty(n + 1, np.int64)
    sfx[0], lrs[0] = -1, 0
    head = np.full(n + 1, -1, np.int64)
    tail = np.full(n + 1, -1, np.int64)
    cap = 2 * n + 16
    e_next = np.empty(cap, np.int64)
    e_src = np.empty(cap, np.int64)
    e_dst = np.empty(cap, np.int64)
    ne = 0
    stats = np.zeros(5, np.int64)
    ctl = np.full(1, -1, np.int64)
    no_gram = np.zeros((0, 0), dtype=X.dtype)
    no_cand = np.zeros((0, _ANN_K), np.int64)
    dense = False
    index: Optional[_RootIndex] = None
    searching, fallback = search != "exact", None
    idx_edge = -1
    speculate = True
    indexed_from = None
    with contextlib.ExitStack() as threads:
        for start in range(0, n, _AO_BLOCK):
            stop = min(n, start + _AO_BLOCK)
            n_root = int(stats[2]) + (1 if start > 0 else 0)  # frame 0's direct transition leaves the root
            if index is None and searching and start > 0 and (
                _index_pays_off(n_root, X.shape[1]) if search == "auto" else n_root >= APPROX_MIN_ROOT
            ):
                index = _RootIndex(X, metric, theta)
                indexed_from = start
                # From here on the matrix products are small (a block of queries
                # against the list centres): one BLAS thread is as fast, and
                # several spin against each other on a busy machine (measured 2x
                # slower wall time at a load of 6 on 2 cores).
                threads.enter_context(_one_blas_thread())
            if index is not None:
                frames, last = _children_after(idx_edge, head, e_next, e_dst, 0)
                if frames.size:
                    index.add(frames)
                    idx_edge = last
                index.extend(stop)
                if not index.usable:  # rows too large for float32 coordinates: exact from here on
                    index, idx_edge, searching, fallback = None, -1, False, "features too large for the index"
            # One BLAS product for the whole block beats frame-by-frame dots once
            # the walks compare each frame with a sizeable share of the past.
            gram = X[start:stop] @ X[:stop].T if dense and index is None else no_gram
            before_eval, before_idx = int(stats[0]), int(stats[1])
            cand, cand_lo = no_cand, 0
            ctl[0] = -1
            begin = start
            while True:
                e_next, e_src, e_dst, ne = _ao_kernel(
                    X, sqnorm, code, theta, begin, stop, gram, start, sfx, lrs, head, tail, e_next, e_src, e_dst, ne,
                    stats, idx_edge, _NO_Y if index is None else index.Y, 0.0 if index is None else index.theta_p2,
                    cand, cand_lo, cand_lo + cand.shape[0], ctl,
                )
                if ctl[0] < 0:
                    break
                # A walk reached the indexed root: ask the index for this frame
                # and, when most frames of the last block got that far, for the
                # rest of the block in the same batch.
                begin = int(ctl[0]) - 1
                span = stop - begin if speculate else min(stop - begin, 8)
                cand_lo = begin
                cand = index.query(np.arange(begin, begin + span, dtype=np.int64))
            per_frame = (int(stats[0]) - before_eval) / (stop - start)
            dense = per_frame * _DENSE_RATIO > stop
            speculate = (int(stats[1]) - before_idx) * 4 >= stop - start
            report(progress, "oracle", stop, n)
    ptr, dst = _edges_to_csr(e_src, e_dst, ne, n + 1)
    # Approximate only where the index answered a root search: until then
    # (or when no walk reached the indexed root) the oracle is the exact one.
    how: dict[str, Any] = {"mode": "approximate" if stats[1] > 0 else "exact", "requested": search}
    if stats[1] > 0:
        how.update({"indexed_from_frame": int(indexed_from), "index_searches": int(stats[1]),
                    "candidates_verified": int(stats[3])})
        if index is not None:
            how.update(index.describe())
    if fallback:
        how["fallback"] = fallback
    return Oracle(kind="features", sfx=sfx, lrs=lrs, trn_ptr=ptr, trn_dst=dst, threshold=theta, metric=metric,
                  rep=sfx.copy(), search=how)


def _split_at_takes(oracle: Oracle, starts: np.ndarray) -> Oracle:
    """An audio oracle over takes laid end to end, cut at the take starts (see :func:`build_audio_oracle`)."""
    n = oracle.n_frames
    pos = _state_positions(starts, n)
    sfx = oracle.sfx
    lrs = oracle.lrs.copy()
    linked = np.flatnonzero(sfx > 0)
    lrs[linked] = np.minimum(lrs[linked], np.minimum(pos[linked], pos[sfx[linked]]))
    ptr, dst = oracle.trn_ptr, oracle.trn_dst
    src = np.repeat(np.arange(n + 1, dtype=np.int64), np.diff(ptr))
    crossing = np.zeros(n + 1, dtype=bool)
    crossing[starts[1:]] = True  # state b (after a take's last frame) -> b + 1 (the next take's first)
    ok = ~(crossing[src] & (dst == src + 1))
    new_ptr = np.zeros(n + 2, dtype=np.int64)
    np.cumsum(np.bincount(src[ok], minlength=n + 1), out=new_ptr[1:n + 2])
    return Oracle(kind=oracle.kind, sfx=sfx, lrs=lrs, trn_ptr=new_ptr, trn_dst=np.ascontiguousarray(dst[ok]),
                  threshold=oracle.threshold, metric=oracle.metric, rep=oracle.rep, take_starts=starts.copy(),
                  search=oracle.search)


# ---------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------


class _Collector:
    def __init__(self, cap: int):
        self.cap = cap
        self.records: list[dict] = []

    def add(self, code: str, states: np.ndarray, describe, *, severity: str = "error") -> None:
        states = np.asarray(states, dtype=np.int64)
        total = int(states.size)
        if total == 0:
            return
        for s in states[: self.cap]:
            self.records.append(
                {
                    "code": code,
                    "state": int(s),
                    "message": f"{describe(int(s))} ({total} state(s) with {code})",
                    "count": total,
                    "severity": severity,
                }
            )

    def add_global(self, code: str, message: str, *, severity: str = "error") -> None:
        self.records.append({"code": code, "state": None, "message": message, "count": 1, "severity": severity})


def check_oracle(
    oracle: Oracle,
    *,
    symbols: Any = None,
    features: Any = None,
    max_per_code: int = 20,
) -> list[dict]:
    """List violated oracle invariants (empty when the oracle is healthy).

    Parameters
    ----------
    oracle : Oracle
    symbols : array_like of int, shape (n,), optional
        The token sequence a ``"tokens"`` oracle was built from; enables the
        context and determinism checks.
    features : array_like of float, shape (n, d), optional
        The frames a ``"features"`` oracle was built from; enables the
        distance checks.
    max_per_code : int
        At most this many records per code; every record carries the total.

    Returns
    -------
    list of dict
        ``{"code", "state", "message", "count", "severity"}``; ``count`` is the
        total number of states violating that code, ``state`` is None for
        whole-oracle findings. Codes (stable, see ``CHECK_CODES``):

        ``malformed``  arrays inconsistent with the layout (nothing else checked);
        ``input_length_mismatch``  symbols/features length differs from n;
        ``sfx_out_of_range``  not ``0 <= sfx[i] < i`` (i >= 1) or ``sfx[0] != -1``;
        ``lrs_exceeds_sfx``  ``lrs[i] > sfx[i]``;
        ``lrs_zero_mismatch``  ``lrs[i] == 0`` but ``sfx[i] != 0`` or vice versa;
        ``rep_out_of_range``  ``rep[0] != -1``, or for i >= 1 not
        ``sfx[i] <= rep[i] < i`` (``rep[i] == 0`` when ``sfx[i] == 0``);
        ``lrs_context_mismatch``  the ``lrs[i]`` frames ending at ``i`` differ
        from those ending at ``rep[i]``: exact symbol equality for tokens; for
        an audio oracle each aligned pair should be within the threshold, but
        an imported graph's Lefebvre-Lecroq values can exceed the pairwise
        run (matching is not transitive), so there it is a ``"warning"``;
        ``lrs_not_longest``  (``"warning"``) the context is underestimated:
        with symbols, a longer suffix of the prefix ends earlier
        (:func:`exact_lrs`); with features, the pair before the ``lrs[i]``
        matched pairs also matches. Oracles saved before chandra stored exact
        context, and imported graphs, show it; rebuilding the oracle fixes it;
        ``too_many_transitions``  more than ``2n - 1`` (factor oracle);
        ``missing_direct_transition``  no ``i-1 -> i``;
        ``nondeterministic_transition``  two transitions of one state with the
        same token (factor oracle, with symbols);
        ``sfx_distance_above_threshold``  ``d(frame i-1, frame sfx[i]-1) >= θ``
        with ``sfx[i] > 0`` (audio oracle, with features);
        ``transition_across_takes``  (oracles over takes) a direct transition
        ``b -> b + 1`` from a take's last frame into the next take; there the
        missing direct transition is expected and not reported;
        ``context_across_takes``  (oracles over takes) ``lrs[i]`` counts
        frames before the start of the take of state ``i`` or of ``rep[i]``.
        With takes, "longest" (``lrs_not_longest``) means longest within
        takes.

    Notes
    -----
    Linear in ``n`` plus the transitions (and one suffix-automaton pass with
    symbols); the context check compares one pair per state while the
    ``rep`` links advance in step and walks the context only where they jump.
    """
    col = _Collector(max(0, int(max_per_code)))
    try:
        arrays = oracle.to_arrays()
        Oracle.from_arrays(
            {"kind": oracle.kind, "threshold": oracle.threshold, "metric": oracle.metric}
            if oracle.kind == "features"
            else {"kind": oracle.kind},
            arrays,
        )
    except ModelFormatError as exc:
        col.add_global("malformed", str(exc))
        return col.records
    sfx, lrs, ptr, dst = arrays["sfx"], arrays["lrs"], arrays["trn_ptr"], arrays["trn_dst"]
    rep = arrays["rep"]
    n = sfx.shape[0] - 1
    idx = np.arange(n + 1, dtype=np.int64)
    starts = arrays.get(_TAKE_ARRAY)
    if starts is not None and starts.size <= 1:
        starts = None

    sym = None
    if symbols is not None:
        sym = _as_symbols(symbols)
        if sym.size != n:
            col.add_global("input_length_mismatch", f"{sym.size} symbols for an oracle of {n} frames")
            sym = None
    X = None
    sqnorm = None
    if features is not None:
        X = _as_features(features, check_finite=False)
        if X.shape[0] == n and n > 0:
            sqnorm = _checked_sqnorms(X)
        if X.shape[0] != n:
            col.add_global("input_length_mismatch", f"{X.shape[0]} feature rows for an oracle of {n} frames")
            X = None

    # Suffix links and LRS.
    bad = np.flatnonzero((sfx < 0) | (sfx >= idx))
    bad = bad[bad >= 1]
    if sfx[0] != -1:
        bad = np.concatenate([[0], bad])
    col.add("sfx_out_of_range", bad, lambda s: f"sfx[{s}] = {sfx[s]} is not in 0..{s - 1}")
    in_range = np.zeros(n + 1, dtype=bool)
    in_range[1:] = (sfx[1:] >= 0) & (sfx[1:] < idx[1:])
    col.add(
        "lrs_exceeds_sfx",
        np.flatnonzero(in_range & (lrs > sfx)),
        lambda s: f"lrs[{s}] = {lrs[s]} exceeds sfx[{s}] = {sfx[s]}",
    )
    zero_bad = np.flatnonzero(in_range & ((lrs == 0) != (sfx == 0)))
    col.add("lrs_zero_mismatch", zero_bad, lambda s: f"lrs[{s}] = {lrs[s]} but sfx[{s}] = {sfx[s]}")
    rep_ok = np.zeros(n + 1, dtype=bool)
    rep_ok[0] = rep[0] == -1
    rep_ok[1:] = np.where(sfx[1:] == 0, rep[1:] == 0, (rep[1:] >= sfx[1:]) & (rep[1:] < idx[1:]))
    rep_bad = np.flatnonzero(~rep_ok & (in_range | (idx == 0)))
    col.add(
        "rep_out_of_range",
        rep_bad,
        lambda s: f"rep[{s}] = {rep[s]} is not -1" if s == 0 else
        f"rep[{s}] = {rep[s]} is not in {sfx[s]}..{s - 1}" if sfx[s] > 0 else f"rep[{s}] = {rep[s]} but sfx[{s}] = 0",
    )

    # Transitions.
    if oracle.kind == "tokens" and n >= 1 and dst.size > 2 * n - 1:
        col.add_global("too_many_transitions", f"{dst.size} transitions exceed the factor-oracle bound 2n-1 = {2 * n - 1}")
    src = np.repeat(np.arange(n + 1, dtype=np.int64), np.diff(ptr))
    has_direct = np.zeros(n + 1, dtype=bool)
    has_direct[src[dst == src + 1]] = True
    take_ends = np.zeros(n + 1, dtype=bool)
    if starts is not None:
        take_ends[starts[1:]] = True
        col.add("transition_across_takes", np.flatnonzero(take_ends & has_direct) + 1,
                lambda s: f"transition {s - 1} -> {s} continues from the end of a take into the next take")
    missing = np.flatnonzero(~has_direct[:n] & ~take_ends[:n]) + 1
    col.add("missing_direct_transition", missing, lambda s: f"no transition {s - 1} -> {s}")
    if oracle.kind == "tokens" and sym is not None and dst.size:
        label = sym[dst - 1]
        order = np.lexsort((label, src))
        s_sorted, l_sorted = src[order], label[order]
        dup = np.flatnonzero((s_sorted[1:] == s_sorted[:-1]) & (l_sorted[1:] == l_sorted[:-1]))
        dup_states = np.unique(s_sorted[dup])
        col.add(
            "nondeterministic_transition",
            dup_states,
            lambda s: f"state {s} has two transitions labelled by the same token",
        )

    pos = None
    if starts is not None:
        pos = _state_positions(starts, n)
        rep_pos = np.where(rep_ok & (rep >= 0), pos[np.clip(rep, 0, n)], 0)
        across = np.flatnonzero(in_range & rep_ok & (idx >= 1) & ((lrs > pos) | ((rep > 0) & (lrs > rep_pos))))
        col.add("context_across_takes", across,
                lambda s: f"lrs[{s}] = {lrs[s]} reaches past the start of the take of state {s} "
                f"({pos[s]} frames) or of rep = {rep[s]} ({pos[rep[s]] if 0 <= rep[s] <= n else '?'} frames)")

    # Context of the repeated suffix: it ends at rep[i] too, and is the longest.
    valid = in_range & rep_ok & (sfx >= 1) & (lrs >= 1) & (lrs <= rep)
    use_symbols = oracle.kind == "tokens" and sym is not None
    use_features = oracle.kind == "features" and X is not None and n > 0
    if use_symbols or use_features:
        verified = np.empty(n + 1, np.int64)
        dummy_sym = np.zeros(1, np.int64)
        dummy_X = np.zeros((1, 1), np.float64)
        if use_symbols:
            _context_check(sym, dummy_X, np.zeros(1), 0, 0.0, True, rep, lrs, valid, verified)
        else:
            _context_check(
                dummy_sym, X, sqnorm, _metric_code(oracle.metric), float(oracle.threshold), False,
                rep, lrs, valid, verified,
            )
        ctx_bad = np.flatnonzero(valid & (verified < lrs))
        what = "symbols" if use_symbols else "frame pairs within the threshold"
        col.add(
            "lrs_context_mismatch",
            ctx_bad,
            lambda s: f"only {verified[s]} of the lrs[{s}] = {lrs[s]} {what} ending at {s} and rep = {rep[s]} agree",
            severity="error" if use_symbols else "warning",
        )
        # A context that holds but is not the longest (a wrong one is a
        # mismatch above, a missing one a zero mismatch).
        holds = valid & (verified == lrs)
        if use_symbols:
            longest, first_end = exact_lrs(sym, take_starts=starts)
            short = np.flatnonzero(holds & (lrs < longest))
            col.add(
                "lrs_not_longest",
                short,
                lambda s: f"lrs[{s}] = {lrs[s]} but the longest repeated suffix has {longest[s]} symbols "
                f"(first ending at {first_end[s]})",
                severity="warning",
            )
        else:
            # The run is the longest when the pair just before it fails (or
            # one side reaches the first frame).
            room = holds & (rep - lrs >= 1)
            if pos is not None:  # within takes: the run cannot grow past either take's start
                room &= (lrs < pos) & (lrs < pos[np.clip(rep, 0, n)])
            full = np.flatnonzero(room)
            longer = full[:0]
            if full.size:
                d = _pair_distances(X, full - 1 - lrs[full], rep[full] - 1 - lrs[full], oracle.metric, sqnorm)
                longer = full[d < float(oracle.threshold)]
            col.add(
                "lrs_not_longest",
                longer,
                lambda s: f"lrs[{s}] = {lrs[s]} but frames {s - 1 - lrs[s]} and {rep[s] - 1 - lrs[s]} "
                "also match: the run shared with rep is longer",
                severity="warning",
            )

    if use_features:
        linked = np.flatnonzero(in_range & (sfx > 0))
        if linked.size:
            d = _pair_distances(X, linked - 1, sfx[linked] - 1, oracle.metric, sqnorm)
            far = d >= float(oracle.threshold)
            far_states = linked[far]
            far_d = dict(zip(far_states[: col.cap].tolist(), d[far][: col.cap].tolist()))
            col.add(
                "sfx_distance_above_threshold",
                far_states,
                lambda s: f"d(frame {s - 1}, frame {sfx[s] - 1}) = {far_d.get(s, float('nan')):.4g} "
                f">= threshold {oracle.threshold:.4g}",
            )
    return col.records


def _pair_distances(X: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str, sqnorm: np.ndarray) -> np.ndarray:
    """Distances between rows ``a[k]`` and ``b[k]`` of ``X``, float64 (len(a),), as the builder computes them."""
    return _pair_dist_kernel(X, np.ascontiguousarray(a), np.ascontiguousarray(b), sqnorm, _metric_code(metric))


# ---------------------------------------------------------------------------
# Health
# ---------------------------------------------------------------------------


def oracle_health(oracle: Oracle, *, lrs_bins: int = 32) -> dict[str, Any]:
    """Summary scalars of an oracle's shape, for the ledger and the dashboard.

    Parameters
    ----------
    oracle : Oracle
    lrs_bins : int
        LRS histogram has one bin per value ``0..lrs_bins - 1`` and a last bin
        for ``>= lrs_bins``.

    Returns
    -------
    dict
        ``kind``, ``n_states`` (n + 1), ``n_frames``, ``n_transitions``,
        ``transitions_per_state_mean``, ``transitions_per_state_max``,
        ``root_out_degree``, ``root_out_degree_share`` (/ n),
        ``sfx_to_root_share`` and ``sfx_to_previous_share`` (shares of the n
        states 1..n with ``sfx[i] == 0``, and with ``sfx[i] == i - 1`` for
        i >= 2, as state 1's link to the root is not a "previous" link),
        ``lrs_mean``,
        ``lrs_max``, ``lrs_median`` (states 1..n, in frames),
        ``lrs_histogram`` (list of ``lrs_bins + 1`` counts),
        ``lrs_histogram_cap`` (= ``lrs_bins``), ``transition_density``
        (``n_transitions / (n (n + 1) / 2)``, 1.0 = every forward pair),
        ``threshold``, ``metric``. Shares are NaN-free: 0.0 when n = 0.
    """
    n = oracle.n_frames
    deg = oracle.out_degree()
    sfx = oracle.sfx[1:]
    lrs = oracle.lrs[1:]
    states = np.arange(1, n + 1)
    hist = np.bincount(np.minimum(lrs, lrs_bins), minlength=lrs_bins + 1) if n else np.zeros(lrs_bins + 1, np.int64)
    return {
        "kind": oracle.kind,
        "n_states": n + 1,
        "n_frames": n,
        "n_transitions": oracle.n_transitions,
        "transitions_per_state_mean": float(deg.mean()) if deg.size else 0.0,
        "transitions_per_state_max": int(deg.max()) if deg.size else 0,
        "root_out_degree": int(deg[0]) if deg.size else 0,
        "root_out_degree_share": float(deg[0] / n) if n else 0.0,
        "sfx_to_root_share": float(np.mean(sfx == 0)) if n else 0.0,
        "sfx_to_previous_share": float(np.sum((sfx == states - 1) & (states >= 2)) / n) if n else 0.0,
        "lrs_mean": float(lrs.mean()) if n else 0.0,
        "lrs_max": int(lrs.max()) if n else 0,
        "lrs_median": float(np.median(lrs)) if n else 0.0,
        "lrs_histogram": [int(c) for c in hist[: lrs_bins + 1]],
        "lrs_histogram_cap": int(lrs_bins),
        "transition_density": float(oracle.n_transitions / (n * (n + 1) / 2)) if n else 0.0,
        "threshold": oracle.threshold,
        "metric": oracle.metric,
    }


# ---------------------------------------------------------------------------
# Information rate
# ---------------------------------------------------------------------------


def information_rate_profile(oracle: Oracle) -> np.ndarray:
    """Per-frame information rate in bits, float64 (n,).

    Notes
    -----
    Dubnov's information rate ``IR(past, present) = C(present) -
    C(present | past)`` with code lengths read off the oracle:

    * unconditional ``C_u(i) = log2 a_i`` bits, where ``a_i`` is the number
      of distinct symbols seen up to frame ``i - 1`` (the root's out-degree
      counting transitions into states ``<= i``: new tokens, or new clusters
      for the audio oracle) — a uniform code over the alphabet so far;
    * conditional: the sequence is parsed left to right into blocks, as in a
      Lempel-Ziv compressor driven by the oracle (Lefebvre & Lecroq's
      Compror). At state ``i`` the block is the longest ``i..i+L-1`` with
      ``lrs[i + m] >= m + 1`` for every ``m < L`` (each prefix of the block
      ends a suffix that already occurred). A block costs one pointer into
      the past, ``log2 i`` bits, shared by its ``L`` frames:
      ``C_c = log2(i) / L``. A frame with ``lrs[i] = 0`` (a new symbol) is
      coded literally, ``C_c = C_u`` and gains nothing.

    ``IR_i = max(0, C_u(i) - C_c(i))``: an encoder never pays more for a
    pointer than for a literal. A sequence of one repeated symbol and a
    sequence with no repeats both get 0; long recurring motifs over a rich
    alphabet get close to ``log2 a``.
    """
    n = oracle.n_frames
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    root = oracle.transitions(0)
    alphabet = np.searchsorted(root, np.arange(1, n + 1), side="right").astype(np.int64)
    return _ir_profile(np.ascontiguousarray(oracle.lrs, dtype=np.int64), alphabet)


def information_rate(oracle: Oracle) -> float:
    """Mean information rate per frame, in bits (see :func:`information_rate_profile`); 0.0 when empty."""
    prof = information_rate_profile(oracle)
    return float(prof.mean()) if prof.size else 0.0


def ir_tokens(symbols: Any) -> float:
    """Mean information rate (bits per frame) of a token sequence through its factor oracle.

    Used to compare vocabularies (a K sweep): the same audio tokenised with
    different K gives different IR.
    """
    return information_rate(build_factor_oracle(symbols))


def default_thresholds(
    features: Any, *, metric: str = "cosine", n_thresholds: int = 20, max_rows: int = 512, seed: int = 0
) -> np.ndarray:
    """A grid of candidate thresholds spanning the data's distance scale, float64 (n_thresholds,).

    ``n_thresholds`` points evenly spaced from the 5th percentile of
    nearest-neighbour distances to the 90th percentile of pairwise distances,
    both estimated on at most ``max_rows`` rows drawn with ``seed``. Even
    spacing (not quantiles) keeps points inside the gap between within- and
    between-cluster distances, where the best threshold usually lies.
    """
    X = _as_features(features)
    _metric_code(metric)
    n = X.shape[0]
    if n < 2:
        # No distances to learn a scale from: any grid gives the same one-state oracle.
        return np.linspace(0.05, 1.0, n_thresholds)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, max_rows), replace=False))
    S = X[rows].astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(S, axis=1)
        safe = np.where(norms > 0, norms, 1.0)
        U = S / safe[:, None]
        D = 1.0 - U @ U.T
        zero = norms == 0
        D[zero, :] = 1.0
        D[:, zero] = 1.0
        D[np.ix_(zero, zero)] = 0.0
        np.clip(D, 0.0, 2.0, out=D)
    else:
        sq = np.einsum("ij,ij->i", S, S)
        D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (S @ S.T), 0.0))
    np.fill_diagonal(D, np.inf)
    nn = D.min(axis=1)
    pairs = D[np.triu_indices(D.shape[0], k=1)]
    lo = float(np.percentile(nn, 5))
    hi = float(np.percentile(pairs, 90))
    if not hi > lo:
        hi = lo + 1e-6 if lo > 0 else 1e-6
    lo = max(lo, hi * 1e-3)
    return np.linspace(lo, hi, n_thresholds)


def ir_threshold_sweep(
    features: Any,
    *,
    thresholds: Any = None,
    metric: str = "cosine",
    search: str = "auto",
    progress: Optional[ProgressCallback] = None,
) -> dict[str, Any]:
    """Information rate of the audio oracle over a grid of thresholds.

    Parameters
    ----------
    features : array_like of float, shape (n, d)
    thresholds : array_like of float, optional
        Default: :func:`default_thresholds` (20 points).
    metric : {"cosine", "euclidean"}
    search : {"auto", "exact", "approximate"}
        Passed to :func:`build_audio_oracle`.
    progress : callable, optional
        ``progress("ir_sweep", done_thresholds, n_thresholds)``.

    Returns
    -------
    dict
        ``thresholds`` (list), ``ir`` (list, mean bits per frame),
        ``root_out_degree`` (list: clusters the oracle found),
        ``best_threshold`` and ``best_ir``: the maximum IR; when several
        consecutive thresholds tie (they give the same oracle), the middle of
        the longest such run.
    """
    X = _as_features(features)
    _metric_code(metric)
    grid = default_thresholds(X, metric=metric) if thresholds is None else np.asarray(thresholds, dtype=np.float64).ravel()
    if grid.size == 0:
        raise OracleError("the threshold grid is empty")
    irs: list[float] = []
    roots: list[int] = []
    for k, theta in enumerate(grid):
        oracle = build_audio_oracle(X, threshold=float(theta), metric=metric, search=search)
        irs.append(information_rate(oracle))
        roots.append(int(oracle.transitions(0).size))
        report(progress, "ir_sweep", k + 1, grid.size)
    best = _plateau_centre(np.asarray(irs))
    return {
        "thresholds": [float(t) for t in grid],
        "ir": irs,
        "root_out_degree": roots,
        "best_threshold": float(grid[best]),
        "best_ir": float(irs[best]),
    }


def _plateau_centre(values: np.ndarray, *, rtol: float = 1e-9) -> int:
    """Index in the middle of the longest run of grid points that reach the maximum.

    Thresholds inside the gap between within- and between-cluster distances
    all give the same oracle and the same IR; the middle of that run is the
    choice least sensitive to noise in new material.
    """
    top = values.max()
    at_top = values >= top - rtol * max(1.0, abs(top))
    best_start, best_len, start = 0, 0, None
    for k, flag in enumerate(np.append(at_top, False)):
        if flag and start is None:
            start = k
        elif not flag and start is not None:
            if k - start > best_len:
                best_start, best_len = start, k - start
            start = None
    return best_start + (best_len - 1) // 2


def select_threshold(
    features: Any,
    *,
    thresholds: Any = None,
    metric: str = "cosine",
    progress: Optional[ProgressCallback] = None,
) -> tuple[float, dict[str, Any]]:
    """The information-rate-maximising threshold and the whole curve.

    Returns
    -------
    (best_threshold, curve)
        ``curve`` is :func:`ir_threshold_sweep`'s dict.
    """
    curve = ir_threshold_sweep(features, thresholds=thresholds, metric=metric, progress=progress)
    return curve["best_threshold"], curve
