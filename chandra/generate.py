"""Improvisation: navigate a trained oracle and resynthesise the path from the source audio.

Navigation follows Assayag & Dubnov (2004), "Using factor oracles for machine
improvisation", with the continuity/jump view of Wang & Dubnov's VMO
improviser and a taboo memory in the manner of tabu search (Glover 1989) and
of the Continuator's and Somax's refusal to replay what was just played. The
oracle's states are numbered as in :mod:`chandra.oracle`: state 0 is the
root and state ``i`` (1..n) is reached after playing frame ``i-1``. So
"being in state ``s``" means frame ``s-1`` was just played, and "jumping to
state ``k``" means playing frame ``k`` next (continuing *after* the context
that ends at ``k``); state ``n`` has no continuation.

Context
-------
Jumps follow shared context. The oracle's repeat links ``i -> rep[i]``
(each state to where its longest repeated suffix first ends, weighted by
``lrs[i]``) form a tree in which, for a factor oracle, the longest common
suffix of two states is the smallest ``lrs`` on the tree path between them
(:mod:`chandra.oracle` explains why). The *candidates* of state ``s`` are
found by a best-first walk of that tree from ``s`` along repeat links and
their reverses (they coincide with the suffix links wherever the suffix link
already points at the repeat, and always for audio oracles), in decreasing
shared context (the path minimum), never crossing a link with ``lrs <
min_lrs``. A state ``k`` is *eligible* when ``k < n``, ``k != s`` and frame
``k`` is *playable*: it satisfies a hard constraint and is not taboo
(below). The walk passes through
ineligible states (so a filter or the taboo never cuts a neighbourhood
off) and collects the eligible ones until it holds ``POOL_SIZE`` (8) of
them and the next one would share less context than the last (ties at that
context are kept, up to 64); at most ``MAX_EXPLORE`` states are visited.
The step records the shared context as ``lrs``. For a factor oracle that
is the exact longest common suffix of the two states; for an audio oracle
(and for oracles whose ``lrs`` came from the Lefebvre-Lecroq recursion) a
chain of matched runs.

Taboo memory
------------
A frame played within the last ``T`` steps is *taboo*, where ``T =
min(taboo, F - 1)`` and ``F`` is the number of frames a hard constraint
allows (all frames otherwise). No move lands on a taboo frame: not a
forward step, not a jump, not a restart, not a fallback. Because at most
``T < F`` frames are taboo, a playable frame always exists, so every window
of ``T + 1`` consecutive steps holds ``T + 1`` different frames: the path
has at least ``min(steps, F, taboo + 1)`` distinct frames, no frame takes
more than one step in ``T + 1``, and two frames can never alternate (for
``T >= 2``). Past the window a recency penalty remains: a candidate last
played ``a`` steps ago is drawn with its weight times ``1 - 2^(-a / T)``
(half weight just after it leaves the window, full weight for a frame never
played), which nudges the walk towards material it has not used. ``taboo
= 0`` turns both off (``avoid_repeats`` then still refuses a jump to the
frame just played). In a source of few playable frames (fewer than a few
times ``taboo``) the window makes the walk visit them nearly in turn, which
also evens out weight mode's preferences: lower ``taboo`` there.

One step from state ``s``
-------------------------
Two uniform numbers ``u, v`` are drawn from a seeded
:class:`numpy.random.Generator` at every step, whatever happens, so the random
stream never depends on which branch an earlier step took.

forward
    Play frame ``s`` (move to state ``s+1``). Allowed when ``s < n``, the
    frame is not taboo, fewer than ``max_continuous`` forward moves happened
    in a row, and, with a hard constraint, frame ``s`` satisfies it. Chosen
    when ``u < continuity`` (weight mode: see below).
jump
    Otherwise, one candidate (above) is drawn with ``v``, with probability
    proportional to its recency penalty (times its weight in weight mode).
    When the forward step is excluded (by the constraint, the taboo or
    ``max_continuous``) the same search runs through the whole tree, so the
    walk moves to the qualifying frames that share most context rather than
    bouncing between two neighbours.
fallback
    When the chosen move is impossible and no candidate remains, in this
    order: the forward step if allowed (choice ``"forward"``); else the
    closest playable frame after ``s`` in source order, wrapping round to
    frame 0 (choice ``"next"``: the walk skips ahead through the source);
    else the start frame (choice ``"start"``, a repeat only when a single
    frame qualifies). Every fallback is recorded in
    :attr:`Generation.fallbacks` with its step, reason and choice.
restart
    At the end of the source (``s = n``) there is no forward step. The walk
    continues from a candidate of state ``n`` (shared context, as for a
    jump) whose frame lies more than ``T`` frames before the end, so that
    what follows is not the tail it just played (reason ``"end of source:
    continue after a shared context"``). Without one it goes back to the
    start frame, or the first playable frame after it that is not in those
    last ``T`` frames (reason ``"end of source: back to the start"``, ``lrs
    = 0``). Restarts are steps of kind ``"restart"``, not fallbacks.

Takes
    A model trained on a corpus (several takes laid end to end, the oracle's
    ``take_starts``) ends at the end of every take: the last frame of a take
    is never followed by the first frame of the next one in source order.
    At a take's end state ``b`` the walk restarts as at the end of the
    source (reasons ``"end of take: ..."``; the frames ``b - T .. b`` are
    skipped), and no jump or restart lands on a take's end state (that
    would play the next take's first frame as the continuation of the
    previous take's last). Jumps and restarts between takes by shared
    context are what a corpus is for. Resynthesis cuts every frame from
    its own take's audio.

Constraints (``where``)
    ``where_mode="filter"`` (default) only ever plays frames that satisfy the
    constraint, except where a recorded fallback says otherwise.
    ``where_mode="weight"`` multiplies the probability of each move by
    ``where_weight`` when its frame matches: the forward move has mass
    ``continuity * w(s)``, the jumps together ``(1 - continuity) *
    mean(w(k))``, and ``u`` picks between them. A constraint that no frame
    satisfies raises :class:`~chandra.errors.ConstraintError` in both modes.

Nothing here depends on dict ordering or object identity: candidates are
ordered by (shared context, state number) built from ``rep`` and ``lrs``
alone, so a model saved and reloaded generates exactly the same path for the
same seed.

Quality
-------
:meth:`Generation.summary` measures every path: distinct frames and their
share of ``min(steps, qualifying frames)``, the share of the most played
frame and of the two most played frames, the longest verbatim copy of the
source (consecutive source frames, in frames and seconds), the mean and
median context of the jumps, restarts and fallbacks.
"""

from __future__ import annotations

import heapq
import io
import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from chandra.constraints import Constraint, parse_where
from chandra.errors import ChandraError, ConstraintError, ModelFormatError, OracleError, ParameterError
from chandra.io_utils import atomic_write

__all__ = [
    "Generation",
    "improvise",
    "path_quality",
    "DEFAULT_TABOO",
    "POOL_SIZE",
    "resynthesise",
    "write_wav",
    "generate_to_wav",
    "frame_bounds",
]

_MAX_STEPS = 10_000_000

#: Default taboo memory in steps: about 10 s of typical onset segments (0.1-0.2 s).
#: On a 5-minute real track it keeps a filter that ~10 % of frames satisfy
#: from circling a few of them (benchmarks/bench_improviser.py).
DEFAULT_TABOO = 64
#: Eligible candidates collected per jump before the context may drop.
POOL_SIZE = 8
#: Ties at the pool's last context kept up to this many candidates.
_MAX_POOL = 64
#: States visited per candidate search at most.
MAX_EXPLORE = 4096


@dataclass
class Generation:
    """A path through a model's frames and how each step was taken.

    Attributes
    ----------
    frames : ndarray of int64, shape (m,)
        Event (frame) indices played, in order.
    steps : list of dict, length m
        One per played frame: ``step`` (int), ``frame`` (int), ``kind``
        (``"start" | "forward" | "jump" | "fallback" | "restart"``),
        ``from_frame`` (int, or None for the first step), ``lrs`` (shared
        context length in frames for jumps and restarts, else None),
        ``reason`` (str for fallbacks, restarts and a moved start, else None).
    jumps : ndarray of int64
        Indices into ``steps`` of the steps of kind ``"jump"``.
    fallbacks : list of dict
        ``{"step", "frame", "reason", "choice"}`` for every fallback taken,
        including a start frame moved because it failed the constraint.
    params : dict
        The effective parameters (JSON-able).
    tokens : ndarray of int64, shape (m,), optional
        ``gesture_token`` of each played frame, -1 where the event has none.
    durations : ndarray of float64, shape (m,), optional
        ``duration`` (seconds) of each played event, NaN where it has none.
    takes : ndarray of int64, shape (m,), optional
        Take (row of the model's file table) of each played frame, for a
        model trained on a corpus; None otherwise.
    """

    frames: np.ndarray
    steps: list[dict]
    jumps: np.ndarray
    fallbacks: list[dict]
    params: dict = field(default_factory=dict)
    tokens: np.ndarray | None = None
    durations: np.ndarray | None = None
    takes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.frames))

    def summary(self, model: Any = None) -> dict:
        """Scalars describing the path and its quality.

        Parameters
        ----------
        model : Model, optional
            Source of tokens and durations when the generation does not carry
            them (one built by hand); :func:`improvise` fills both.

        Returns
        -------
        dict
            ``n_frames``, ``n_forward``, ``n_jumps``, ``n_restarts``,
            ``n_fallbacks``, ``mean_jump_lrs`` and ``median_jump_lrs``
            (shared context of the jumps in frames, None without jumps),
            ``unique_frames``, ``unique_tokens`` (distinct gesture tokens
            played, None when unknown), ``duration_s`` (sum of the played
            events' durations in seconds, None when unknown), and the
            quality measures of :func:`path_quality`: ``qualifying_frames``,
            ``coverage``, ``max_frame_share``, ``top2_share``,
            ``longest_copy_frames``, ``longest_copy_s``. From a corpus
            model also ``takes_played`` (distinct takes) and
            ``take_changes`` (steps that move to another take).
        """
        kinds = [s["kind"] for s in self.steps]
        jump_lrs = [self.steps[int(i)]["lrs"] for i in self.jumps]
        tokens, durations = self.tokens, self.durations
        if model is not None:
            tokens, durations = _played_tokens_and_durations(model, self.frames)
        unique_tokens = None
        if tokens is not None:
            unique_tokens = int(len(np.unique(tokens[tokens >= 0])))
        duration_s = None
        if durations is not None and len(durations) and np.all(np.isfinite(durations)):
            duration_s = float(np.sum(durations))
        out = {
            "n_frames": len(self),
            "n_forward": kinds.count("forward"),
            "n_jumps": len(self.jumps),
            "n_restarts": kinds.count("restart"),
            "n_fallbacks": len(self.fallbacks),
            "mean_jump_lrs": float(np.mean(jump_lrs)) if jump_lrs else None,
            "median_jump_lrs": float(np.median(jump_lrs)) if jump_lrs else None,
            "unique_frames": int(len(np.unique(self.frames))),
            "unique_tokens": unique_tokens,
            "duration_s": duration_s,
        }
        out.update(path_quality(self.frames, durations=durations,
                                qualifying_frames=self.params.get("qualifying_frames"), takes=self.takes))
        if self.takes is not None:
            takes = np.asarray(self.takes, dtype=np.int64)
            out["takes_played"] = int(len(np.unique(takes)))
            out["take_changes"] = int(np.count_nonzero(np.diff(takes)))
        return out

    def to_dict(self) -> dict:
        """JSON-able form (frames as a list)."""
        return {
            "frames": [int(f) for f in self.frames],
            "steps": [dict(s) for s in self.steps],
            "jumps": [int(j) for j in self.jumps],
            "fallbacks": [dict(f) for f in self.fallbacks],
            "params": dict(self.params),
            "tokens": None if self.tokens is None else [int(t) for t in self.tokens],
            "durations": None if self.durations is None else
            [None if not np.isfinite(d) else float(d) for d in self.durations],
            "takes": None if self.takes is None else [int(t) for t in self.takes],
        }

    def ledger_entry(self, model: Any) -> dict:
        """The ``"generated"`` ledger stage: the events of the played frames, in order.

        The events keep their source times ``t``, so the time axis is judged
        against the source audio's duration (when the model has audio), not
        the generation's.
        """
        from chandra.ledger import ledger_entry

        idx = np.asarray(self.frames, dtype=np.int64)
        records = [model.events[int(i)] for i in idx]
        features = None
        if getattr(model, "features", None) is not None and len(model.features) == len(model.events):
            features = np.asarray(model.features)[idx]
        tokens, _ = _played_tokens_and_durations(model, idx)
        n_tokens = _n_tokens(model)
        audio, sr = getattr(model, "audio", None), getattr(model, "sample_rate", None)
        duration = float(len(audio)) / float(sr) if audio is not None and sr else None
        centers = getattr(model, "centers", None)
        if not getattr(model, "is_corpus", False):
            return ledger_entry("generated", records, features=features, tokens=tokens,
                                n_tokens=n_tokens, duration=duration, centers=centers)
        # A corpus: each played event's t is judged against its own take's duration.
        from chandra.ledger import add_per_file

        durations = [float(row["duration"]) for row in model.provenance["files"]]
        entry = ledger_entry("generated", records, features=features, tokens=tokens, n_tokens=n_tokens,
                             duration=max(durations), centers=centers)
        return add_per_file(entry, records, takes=model.takes()[idx], durations=durations, features=features,
                            tokens=tokens, n_tokens=n_tokens)


def path_quality(frames: Any, *, durations: Any = None, qualifying_frames: int | None = None,
                 takes: Any = None) -> dict:
    """How varied a path is and how much of it copies the source verbatim.

    Parameters
    ----------
    frames : array_like of int, shape (m,)
        Frame indices played, in order.
    durations : array_like of float, shape (m,), optional
        Duration in seconds of each played frame (NaN where unknown).
    qualifying_frames : int, optional
        How many frames the walk could play (those a hard constraint allows);
        unknown when None.
    takes : array_like of int, shape (m,), optional
        Take of each played frame (a corpus model): a copy never runs from
        one take into the next.

    Returns
    -------
    dict
        ``qualifying_frames`` (as given), ``coverage`` (distinct frames /
        ``min(m, qualifying_frames)``, None without ``qualifying_frames``),
        ``max_frame_share`` and ``top2_share`` (share of the steps taken by
        the most played frame, and by the two most played frames together),
        ``longest_copy_frames`` (longest run of consecutive source frames
        ``f, f+1, ...``: a verbatim copy of the source) and
        ``longest_copy_s`` (the largest summed duration of such a run in
        seconds; None when durations are unknown). Shares are 0.0 for an
        empty path.
    """
    f = np.asarray(frames, dtype=np.int64).reshape(-1)
    m = int(f.size)
    out: dict[str, Any] = {"qualifying_frames": None if qualifying_frames is None else int(qualifying_frames)}
    if m == 0:
        out.update(coverage=None, max_frame_share=0.0, top2_share=0.0, longest_copy_frames=0,
                   longest_copy_s=None if durations is None else 0.0)
        return out
    counts = np.sort(np.unique(f, return_counts=True)[1])[::-1]
    distinct = int(counts.size)
    out["coverage"] = (None if not qualifying_frames else
                       float(distinct / min(m, int(qualifying_frames))))
    out["max_frame_share"] = float(counts[0] / m)
    out["top2_share"] = float(counts[:2].sum() / m)
    breaks = np.diff(f) != 1
    if takes is not None:
        breaks |= np.diff(np.asarray(takes, dtype=np.int64).reshape(-1)) != 0
    run_id = np.concatenate(([0], np.cumsum(breaks)))
    lengths = np.bincount(run_id)
    out["longest_copy_frames"] = int(lengths.max())
    longest_s = None
    if durations is not None:
        d = np.asarray(durations, dtype=np.float64).reshape(-1)
        if d.shape == f.shape and np.all(np.isfinite(d)):
            longest_s = float(np.bincount(run_id, weights=d).max())
    out["longest_copy_s"] = longest_s
    return out


def _played_tokens_and_durations(model: Any, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gesture token (-1 when absent) and duration (s, NaN when absent) of each played frame."""
    tokens = np.full(len(frames), -1, dtype=np.int64)
    durations = np.full(len(frames), np.nan, dtype=np.float64)
    for i, f in enumerate(np.asarray(frames, dtype=np.int64)):
        ev = model.events[int(f)]
        tok = ev.get("gesture_token")
        if isinstance(tok, (int, np.integer)) and not isinstance(tok, (bool, np.bool_)) and -(2**63) <= tok < 2**63:
            tokens[i] = int(tok)
        d = ev.get("duration")
        if isinstance(d, (int, float, np.integer, np.floating)) and not isinstance(d, bool) and abs(d) < 1e300:
            durations[i] = float(d)
    return tokens, durations


def _n_tokens(model: Any) -> int | None:
    centers = getattr(model, "centers", None)
    if centers is not None:
        return int(len(centers))
    vocab = getattr(model, "vocabulary", None)
    params = vocab.get("params") if isinstance(vocab, dict) else None
    value = params.get("n_tokens") if isinstance(params, dict) else None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value > 0:
        return int(value)
    return None


# --------------------------------------------------------------------------- navigation


class _ContextTree:
    """The repeat-link tree of an oracle, searched for states sharing context.

    Parent of state ``i >= 1`` is ``rep[i]`` through an edge of weight
    ``lrs[i]``; children lists are ordered by weight, descending, then state.
    """

    def __init__(self, rep: np.ndarray, lrs: np.ndarray):
        self.rep = rep
        self.lrs = lrs
        n_states = len(rep)
        parents = rep[1:]
        children = np.arange(1, n_states, dtype=np.int64)
        order = np.lexsort((children, -lrs[1:], parents))
        counts = np.bincount(parents, minlength=n_states)
        self.ptr = np.zeros(n_states + 1, dtype=np.int64)
        np.cumsum(counts, out=self.ptr[1:])
        self.kids = children[order]
        self.rep_list = rep.tolist()
        self.lrs_list = lrs.tolist()

    def candidates(self, s: int, min_lrs: int, eligible, *, pool: int = POOL_SIZE) -> tuple[list[int], list[int]]:
        """Eligible states sharing the most context with ``s``, best first.

        Returns ``(states, contexts)``; ``contexts[j]`` is the smallest link
        weight on the tree path from ``s`` to ``states[j]``.
        """
        floor = max(int(min_lrs), 0)
        rep, lrs, ptr, kids = self.rep_list, self.lrs_list, self.ptr, self.kids
        top = len(rep) + 1  # more context than any state has
        heap: list[tuple[int, int, int]] = [(-top, s, -1)]
        states: list[int] = []
        contexts: list[int] = []
        visited = 0
        while heap and visited < MAX_EXPLORE:
            neg, x, came = heapq.heappop(heap)
            bound = -neg
            if len(states) >= pool and bound < contexts[-1]:
                break
            visited += 1
            if x != s and eligible(x):
                states.append(x)
                contexts.append(bound)
                if len(states) >= _MAX_POOL:
                    break
            if x >= 1:
                parent, w = rep[x], lrs[x]
                if parent != came and w >= floor:
                    heapq.heappush(heap, (-min(bound, w), parent, x))
            for c in kids[ptr[x]:ptr[x + 1]].tolist():
                w = lrs[c]
                if w < floor:
                    break  # the rest of the list has less context
                if c != came:
                    heapq.heappush(heap, (-min(bound, w), c, x))
        return states, contexts


def _check_fields(model: Any, require: tuple[str, ...]) -> None:
    """Judge a :class:`~chandra.model.Model`'s fields before use (:meth:`Model.validate`)."""
    from chandra.model import Model

    if isinstance(model, Model):
        model.validate(require=require)


def _validate_model(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    oracle = getattr(model, "oracle", None)
    if oracle is None:
        raise OracleError("model has no oracle; build one before improvising")
    sfx = np.asarray(oracle.sfx, dtype=np.int64)
    lrs = np.asarray(oracle.lrs, dtype=np.int64)
    rep = getattr(oracle, "rep", None)
    rep = sfx.copy() if rep is None else np.asarray(rep, dtype=np.int64)
    n = len(sfx) - 1
    if n < 1:
        raise OracleError("the oracle has no frames to improvise from")
    if len(lrs) != n + 1:
        raise OracleError(f"oracle lrs has {len(lrs)} entries, expected {n + 1}")
    if len(rep) != n + 1:
        raise OracleError(f"oracle rep has {len(rep)} entries, expected {n + 1}")
    if len(model.events) != n:
        raise ModelFormatError(
            f"model has {len(model.events)} events but its oracle has {n} frames; they must match"
        )
    backwards = np.arange(1, n + 1)
    if sfx[0] != -1 or np.any(sfx[1:] < 0) or np.any(sfx[1:] >= backwards):
        raise OracleError("oracle suffix links violate 0 <= sfx[i] < i")
    if np.any(rep[1:] < 0) or np.any(rep[1:] >= backwards):
        raise OracleError("oracle repeat links violate 0 <= rep[i] < i")
    if np.any(lrs < 0):
        raise OracleError("oracle lrs holds negative lengths")
    rep = rep.copy()
    rep[0] = -1
    return sfx, lrs, rep, n


def _durations(events: Sequence[dict]) -> np.ndarray:
    try:  # the common case at once; the loop below names the first bad event
        fast = np.fromiter((ev["duration"] for ev in events), dtype=np.float64, count=len(events))
        if np.all(np.isfinite(fast)) and np.all(fast >= 0):
            return fast
    except (KeyError, TypeError, ValueError):
        pass
    out = np.empty(len(events), dtype=np.float64)
    for i, ev in enumerate(events):
        d = ev.get("duration")
        if d is None or not math.isfinite(float(d)) or float(d) < 0:
            raise ModelFormatError(f"event {i} has no usable 'duration' ({d!r}); cannot generate by seconds")
        out[i] = float(d)
    return out


def improvise(
    model: Any,
    *,
    n_frames: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    continuity: float = 0.8,
    min_lrs: int = 1,
    max_continuous: int | None = None,
    avoid_repeats: bool = True,
    taboo: int = DEFAULT_TABOO,
    where: str | Constraint | None = None,
    where_mode: str = "filter",
    where_weight: float = 4.0,
    start: int | None = None,
    after: int | None = None,
    history: Sequence[int] | None = None,
    guide: Sequence[int] | None = None,
    validate: bool = True,
) -> Generation:
    """Walk the model's oracle and return the frames to play.

    The rules for each step are in the module docstring.

    Parameters
    ----------
    model : Model
        Needs ``events`` and ``oracle`` (``sfx``, ``lrs``, ``rep`` over the same n frames).
    n_frames : int, optional
        Number of frames to play. Give exactly one of ``n_frames`` and ``seconds``.
    seconds : float, optional
        Play frames until the sum of their event ``duration`` values (seconds)
        reaches ``seconds``.
    seed : int
        Seed of the :class:`numpy.random.Generator`; same model and seed, same path.
    continuity : float in [0, 1]
        Probability of a forward (source-order) step when one is possible.
    min_lrs : int >= 0
        Minimum shared context (frames) for a jump candidate.
    max_continuous : int >= 1, optional
        At most this many forward steps in a row; then a jump (or fallback) is forced.
    avoid_repeats : bool
        Never jump to the frame just played (implied by ``taboo >= 1``).
    taboo : int >= 0
        Frames played in the last ``taboo`` steps are not played again (capped
        at one less than the number of playable frames); 0 turns it off.
    where : str or Constraint, optional
        Constraint over event fields (see :mod:`chandra.constraints`).
    where_mode : {"filter", "weight"}
        Hard filter, or soft weight of ``where_weight`` for matching frames.
    where_weight : float > 0
        Weight factor in weight mode.
    start : int, optional
        Frame index to play first (default 0). If it fails a hard constraint,
        the next satisfying frame in source order is used and a fallback recorded.
    after : int, optional
        Begin in oracle state ``after`` (1..n) instead: frame ``after - 1``
        counts as just played and the first step is an ordinary step from
        that state (forward, jump, or restart when ``after == n``), so there
        is no step of kind ``"start"``. What :mod:`chandra.respond` uses to
        continue where a phrase was matched. Give at most one of ``start``
        and ``after``.
    history : sequence of int, optional
        Frames played before the first step, oldest first (e.g. the frames a
        phrase was matched to): they count for the taboo window and the
        recency penalty as if played in the steps just before, so the walk
        does not replay them at once.
    guide : sequence of int, optional
        Gesture tokens to follow, one per step and repeated when the walk is
        longer (-1: no preference at that step). At step ``t`` with target
        ``g``: the forward step is taken when frame ``s`` has token ``g`` and
        ``u < continuity``; else a jump to the candidates with token ``g``
        sharing most context (search as above, only they are eligible); else
        the forward step if its token is ``g``; else a jump to a playable
        frame with token ``g`` drawn over all of them (``lrs = 0``, reason
        ``"guide: ..."``); when no playable frame has token ``g`` the step is
        an ordinary one. At the end of the source the restart looks for
        token ``g`` the same way (among frames before the tail).
    validate : bool
        Judge the model's fields first (:meth:`Model.validate`). ``False``
        is for a caller that has already done so for this very model
        (:class:`chandra.respond.Listener` does, once, instead of once per
        answer); the oracle is checked either way.

    Returns
    -------
    Generation

    Raises
    ------
    ParameterError
        A bad argument (length, seed, continuity, ...); a ``ValueError``.
    ConstraintError
        A malformed constraint, or one no frame satisfies.
    OracleError, ModelFormatError
        The model has no usable oracle, or events and oracle disagree.
    """
    if validate:
        _check_fields(model, ("durations",) if seconds is not None else ())
    sfx, lrs, rep, n = _validate_model(model)
    events = model.events
    def real(value: Any) -> bool:
        return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                and math.isfinite(value))

    def whole(value: Any) -> bool:
        return real(value) and float(value).is_integer()

    if (n_frames is None) == (seconds is None):
        raise ParameterError("give exactly one of n_frames and seconds", parameter="n_frames")
    if n_frames is not None and not (whole(n_frames) and n_frames >= 1):
        raise ParameterError(f"n_frames must be a positive integer, got {n_frames!r}", parameter="n_frames")
    if seconds is not None and not (real(seconds) and seconds > 0):
        raise ParameterError(f"seconds must be a positive number, got {seconds!r}", parameter="seconds")
    if not (real(continuity) and 0.0 <= continuity <= 1.0):
        raise ParameterError(f"continuity must be in [0, 1], got {continuity!r}", parameter="continuity")
    if not (whole(min_lrs) and min_lrs >= 0):
        raise ParameterError(f"min_lrs must be a non-negative integer, got {min_lrs!r}", parameter="min_lrs")
    if max_continuous is not None and not (whole(max_continuous) and max_continuous >= 1):
        raise ParameterError(f"max_continuous must be a positive integer or None, got {max_continuous!r}",
                             parameter="max_continuous")
    if not (whole(taboo) and taboo >= 0):
        raise ParameterError(f"taboo must be a non-negative integer (steps), got {taboo!r}", parameter="taboo")
    if where_mode not in ("filter", "weight"):
        raise ParameterError(f"where_mode must be 'filter' or 'weight', got {where_mode!r}", parameter="where_mode")

    if where is not None and not isinstance(where, (str, Constraint)):
        raise ParameterError(f"where must be an expression string or a Constraint, not {type(where).__name__}",
                             parameter="where")
    if start is not None and after is not None:
        raise ParameterError("give at most one of start and after", parameter="after")
    if after is not None and not (whole(after) and 1 <= after <= n):
        raise ParameterError(f"after must be an oracle state in 1..{n}, got {after!r}", parameter="after")
    history_list: list[int] = []
    if history is not None:
        history_list = [int(f) for f in np.asarray(history, dtype=np.int64).reshape(-1)] \
            if all(whole(f) for f in np.asarray(history, dtype=object).reshape(-1)) else [-1]
        if any(not 0 <= f < n for f in history_list):
            raise ParameterError(f"history must hold frame indices in 0..{n - 1}", parameter="history")
    guide_list: list[int] = []
    if guide is not None:
        raw_guide = np.asarray(guide, dtype=object).reshape(-1)
        if raw_guide.size == 0 or not all(whole(g) and g >= -1 for g in raw_guide):
            raise ParameterError("guide must be a non-empty sequence of token ids (-1: no preference)",
                                 parameter="guide")
        guide_list = [int(g) for g in raw_guide]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed must be an integer, got {seed!r}", parameter="seed")
    constraint = parse_where(where) if isinstance(where, str) else where
    if constraint is not None:
        satisfied = constraint.mask(events)
        if not satisfied.any():
            raise ConstraintError(constraint.explain_empty(events))
    else:
        satisfied = np.ones(n, dtype=bool)
    if where_mode == "filter":
        allowed = satisfied
        weight = np.ones(n, dtype=np.float64)
    else:
        allowed = np.ones(n, dtype=bool)
        weight = (constraint.weights(events, factor=float(where_weight))
                  if constraint is not None else np.ones(n, dtype=np.float64))
    allowed_idx = np.flatnonzero(allowed)
    n_allowed = int(allowed_idx.size)
    memory = min(int(taboo), n_allowed - 1)  # T: below the number of playable frames

    durations = _durations(events) if seconds is not None else None
    if durations is not None and durations.sum() <= 0:
        raise ModelFormatError("every event has zero duration; cannot generate by seconds")

    take_starts = _take_starts(model, n)
    take_end = [False] * (n + 1)  # state b ends a take: its forward frame b opens the next take
    for b in ([] if take_starts is None else take_starts[1:].tolist()):
        take_end[b] = True

    tree = _ContextTree(rep, lrs)
    rng = np.random.default_rng(seed)
    min_lrs = int(min_lrs)
    allowed_list = allowed.tolist()
    weight_list = weight.tolist()
    last_played = [-(10**18)] * n  # step at which each frame was last played
    for i, f in enumerate(history_list):  # the most recent history frame was "played" at step -1
        last_played[f] = i - len(history_list)
    token_list = model.tokens().tolist() if guide_list else []
    frames_of_token: dict[int, list[int]] = {}
    for f, k in enumerate(token_list):
        if k >= 0 and allowed_list[f]:
            frames_of_token.setdefault(k, []).append(f)

    frames: list[int] = []
    steps: list[dict] = []
    fallbacks: list[dict] = []

    def is_taboo(f: int) -> bool:
        return len(frames) - last_played[f] <= memory

    def playable(f: int) -> bool:
        return allowed_list[f] and not is_taboo(f)

    def next_playable(target: int, exclude: tuple[int, ...], *, skip: tuple[int, int] = (n, n)) -> int | None:
        """First playable frame at or after ``target`` in source order, wrapping, outside ``skip[0]..skip[1]``."""
        pos = int(np.searchsorted(allowed_idx, target % n))
        # Without `skip`, at most `memory` taboo frames and the excluded
        # ones are skipped before a playable one turns up.
        for step in range(n_allowed):
            f = int(allowed_idx[(pos + step) % n_allowed])
            if not skip[0] <= f <= skip[1] and f not in exclude and not is_taboo(f):
                return f
        return None

    def record(frame: int, kind: str, from_frame: int | None, shared: int | None,
               reason: str | None = None) -> None:
        last_played[frame] = len(frames)
        steps.append({"step": len(steps), "frame": int(frame), "kind": kind,
                      "from_frame": None if from_frame is None else int(from_frame),
                      "lrs": None if shared is None else int(shared), "reason": reason})
        frames.append(int(frame))

    def pick(states: list[int], v: float) -> int:
        if len(states) == 1:
            return 0
        w = np.asarray([weight_list[k] for k in states])
        if memory > 0:
            # recency penalty past the taboo window: half weight for a frame
            # played T steps before it left the window, fading with age
            age = np.asarray([len(frames) - last_played[k] for k in states], dtype=np.float64)
            w = w * -np.expm1(-np.log(2.0) * age / memory)
        cdf = np.cumsum(w) / w.sum()
        return min(int(np.searchsorted(cdf, v, side="right")), len(states) - 1)

    def guided_move(goal: int, u: float, v: float, forward_ok: bool, eligible_jump) -> tuple | None:
        """The move a guide asks for at this step (see ``guide``), or None for an ordinary step."""
        pool = frames_of_token.get(goal)
        if not pool:
            return None
        forward_fits = forward_ok and s < n and token_list[s] == goal
        if forward_fits and u < continuity:
            return s, "forward", None, None
        cand, ctx = tree.candidates(s, min_lrs, lambda k: eligible_jump(k) and token_list[k] == goal)
        if cand:
            idx = pick(cand, v)
            return cand[idx], "jump", ctx[idx], None
        if forward_fits:
            return s, "forward", None, None
        anywhere = [k for k in pool if eligible_jump(k)]
        if not anywhere:
            return None
        return (anywhere[pick(anywhere, v)], "jump", 0,
                f"guide: token {goal} shares no context here; jumped to a frame with it")

    # start
    start_frame = 0 if start is None else start
    if int(start_frame) != start_frame or not (0 <= start_frame < n):
        raise ConstraintError(f"start frame must be in 0..{n - 1}, got {start!r}")
    start_frame = int(start_frame)
    if after is not None:
        # No start step: the walk begins in state `after`; "back to the start"
        # restarts and fallbacks go to frame 0.
        played_s = 0.0
        s = int(after)
    elif allowed[start_frame]:
        record(start_frame, "start", None, None)
    else:
        moved = next_playable(start_frame, ())
        reason = f"start frame {start_frame} does not satisfy the constraint"
        fallbacks.append({"step": 0, "frame": moved, "reason": reason, "choice": "next"})
        record(moved, "start", None, None, reason)
        start_frame = moved
    if frames:
        played_s = 0.0 if durations is None else float(durations[frames[0]])
        s = frames[0] + 1
    run = 0  # consecutive forward moves

    def done() -> bool:
        if n_frames is not None:
            return len(frames) >= n_frames
        return played_s >= seconds or len(frames) >= _MAX_STEPS

    while not done():
        u, v = rng.random(2)
        prev = s - 1
        if s == n or take_end[s]:
            # end of the source or of a take: continue after a shared context, away from the
            # tail just played (and, at a take's end, not into the next take's first frame s)
            tail = s - memory
            where_ = "end of source" if s == n else "end of take"

            def eligible_restart(k: int) -> bool:
                return not tail <= k <= s and k < n and not take_end[k] and playable(k) \
                    and not (avoid_repeats and k == prev)

            goal = guide_list[len(steps) % len(guide_list)] if guide_list else -1
            guided = guided_move(goal, u, v, False, eligible_restart) if goal >= 0 else None
            cand, ctx = ([], []) if guided is not None else tree.candidates(s, min_lrs, eligible_restart)
            if guided is not None:
                record(guided[0], "restart", prev, guided[2], "end of source: "
                       + (guided[3] or f"continue after a shared context with token {goal} (guide)"))
            elif cand:
                idx = pick(cand, v)
                record(cand[idx], "restart", prev, ctx[idx], f"{where_}: continue after a shared context")
            else:
                exclude = (prev,) if avoid_repeats else ()
                target = next_playable(start_frame, exclude, skip=(tail, s))
                if target is None:
                    target = next_playable(start_frame, exclude + (s,))
                if target is None:
                    target = start_frame
                record(target, "restart", prev, 0, f"{where_}: back to the start")
            run = 0
        else:
            forward_ok = playable(s) and (max_continuous is None or run < max_continuous)

            def eligible_jump(k: int) -> bool:
                return k < n and k != s and not take_end[k] and playable(k) and not (avoid_repeats and k == prev)

            goal = guide_list[len(steps) % len(guide_list)] if guide_list else -1
            guided = guided_move(goal, u, v, forward_ok, eligible_jump) if goal >= 0 else None
            cand, ctx, wants_forward = [], [], False
            if guided is not None:
                pass
            elif where_mode == "weight":
                cand, ctx = tree.candidates(s, min_lrs, eligible_jump)
                fw = continuity * weight_list[s] if forward_ok else 0.0
                jw = (1.0 - continuity) * float(np.mean([weight_list[k] for k in cand])) if cand else 0.0
                wants_forward = (fw + jw) > 0 and u * (fw + jw) < fw
            else:
                wants_forward = u < continuity
                cand, ctx = ([], []) if (forward_ok and wants_forward) else \
                    tree.candidates(s, min_lrs, eligible_jump)

            if guided is not None:
                frame, kind, shared, why_guided = guided
                record(frame, kind, prev, shared, why_guided)
                run = run + 1 if kind == "forward" else 0
            elif forward_ok and wants_forward:
                record(s, "forward", prev, None)
                run += 1
            elif cand:
                idx = pick(cand, v)
                record(cand[idx], "jump", prev, ctx[idx])
                run = 0
            else:
                why = [f"no jump candidate with lrs >= {min_lrs}"]
                if constraint is not None and where_mode == "filter":
                    why.append("satisfying the constraint")
                if memory > 0:
                    why.append(f"outside the last {memory} steps")
                reason = " ".join(why)
                if forward_ok:
                    choice, target = "forward", s
                    run += 1
                else:
                    reason += " and forward step not allowed"
                    exclude = (s, prev) if avoid_repeats else (s,)
                    target = next_playable(s + 1, exclude)
                    choice = "next"
                    if target is None:
                        choice, target = "start", start_frame
                    run = 0
                fallbacks.append({"step": len(steps), "frame": int(target), "reason": reason,
                                  "choice": choice})
                record(target, "fallback", prev, None, reason)
        s = frames[-1] + 1
        if durations is not None:
            played_s += float(durations[frames[-1]])

    frames_arr = np.asarray(frames, dtype=np.int64)
    jumps = np.array([st["step"] for st in steps if st["kind"] == "jump"], dtype=np.int64)
    params = {
        "n_frames": None if n_frames is None else int(n_frames),
        "seconds": None if seconds is None else float(seconds),
        "seed": int(seed),
        "continuity": float(continuity),
        "min_lrs": min_lrs,
        "max_continuous": None if max_continuous is None else int(max_continuous),
        "avoid_repeats": bool(avoid_repeats),
        "taboo": int(taboo),
        "taboo_effective": int(max(memory, 0)),
        "where": None if constraint is None else constraint.text,
        "where_mode": where_mode,
        "where_weight": float(where_weight) if where_mode == "weight" else None,
        "start": None if start is None else int(start),
        "after": None if after is None else int(after),
        "history": history_list or None,
        "guide": guide_list or None,
        "oracle_kind": getattr(model.oracle, "kind", None),
        "source_frames": int(n),
        "qualifying_frames": n_allowed,
    }
    if take_starts is not None:
        params["take_starts"] = [int(b) for b in take_starts]
    played_tokens, played_durations = _played_tokens_and_durations(model, frames_arr)
    played_takes = None
    if take_starts is not None:
        from chandra.oracle import take_of_frames

        played_takes = take_of_frames(take_starts, n)[frames_arr]
    return Generation(frames=frames_arr, steps=steps, jumps=jumps, fallbacks=fallbacks, params=params,
                      tokens=played_tokens, durations=played_durations, takes=played_takes)


def _take_starts(model: Any, n: int) -> np.ndarray | None:
    """Frame index where each take begins (two or more takes), from the oracle or the model's file table."""
    starts = getattr(model.oracle, "take_starts", None)
    if starts is None and callable(getattr(model, "take_starts", None)):
        starts = model.take_starts()
    if starts is None or len(starts) < 2:
        return None
    starts = np.asarray(starts, dtype=np.int64)
    if starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= n:
        raise OracleError(f"take starts {starts[:8].tolist()} are not increasing frame indices below {n}")
    return starts


# --------------------------------------------------------------------------- resynthesis


def frame_bounds(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Sample bounds of every event in ``model.audio``.

    Returns
    -------
    starts, ends : ndarray of int64, shape (n,)
        ``round(t * sr)`` and ``round((t + duration) * sr)`` plus the
        offset of the event's take in ``model.audio`` (a corpus model holds
        its takes one after another; ``t`` counts from the start of the
        event's own file), clipped to that take's samples; ``ends >= starts``.
    """
    audio = getattr(model, "audio", None)
    sr = getattr(model, "sample_rate", None)
    if audio is None or sr is None:
        raise ModelFormatError("model has no source audio; retrain with audio embedded to resynthesise")
    lo, hi = _take_sample_ranges(model)
    n = len(model.events)
    try:  # every event has numeric t and duration (validated models): whole arrays at once
        t = np.fromiter((ev["t"] for ev in model.events), dtype=np.float64, count=n)
        d = np.fromiter((ev["duration"] for ev in model.events), dtype=np.float64, count=n)
    except (KeyError, TypeError, ValueError):
        t = d = None
    if t is not None and np.all(np.isfinite(t)) and np.all(np.isfinite(d)):
        # round half to even on the same float products as the loop below
        starts = np.minimum(np.maximum(lo + np.round(t * sr).astype(np.int64), lo), hi)
        ends = np.minimum(np.maximum(lo + np.round((t + d) * sr).astype(np.int64), starts), hi)
        return starts, ends
    starts = np.empty(n, dtype=np.int64)
    ends = np.empty(n, dtype=np.int64)
    for i, ev in enumerate(model.events):
        t, d = ev.get("t"), ev.get("duration")
        if t is None or d is None:
            raise ModelFormatError(f"event {i} lacks 't' or 'duration'; cannot cut its audio")
        a = int(lo[i]) + int(round(float(t) * sr))
        b = int(lo[i]) + int(round((float(t) + float(d)) * sr))
        starts[i] = min(max(a, int(lo[i])), int(hi[i]))
        ends[i] = min(max(b, starts[i]), int(hi[i]))
    return starts, ends


def _take_sample_ranges(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """First and end sample (exclusive) in ``model.audio`` of every event's take, int64 (n,) each."""
    n = len(model.events)
    length = len(model.audio)
    offsets = model.take_offsets() if callable(getattr(model, "take_offsets", None)) else None
    if offsets is None or len(offsets) <= 2:
        return np.zeros(n, dtype=np.int64), np.full(n, length, dtype=np.int64)
    takes = model.takes()
    return np.asarray(offsets[takes], dtype=np.int64), np.asarray(offsets[takes + 1], dtype=np.int64)


def _ramps(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power fade-in (sin) and fade-out (cos) of ``length`` samples; in² + out² = 1."""
    theta = (np.arange(length, dtype=np.float64) + 0.5) * (np.pi / 2.0 / length)
    return np.sin(theta), np.cos(theta)


def resynthesise(model: Any, generation: Generation, *, crossfade_ms: float = 20.0,
                 validate: bool = True) -> tuple[np.ndarray, int]:
    """Render a generation by splicing the source audio of its frames.

    Consecutive frames that are consecutive in the source (``f, f+1``, ...)
    form a *run* and are copied as one continuous slice from the start of the
    first event to the end of the last (so a forward step has no fade and no
    artefact at all); a run never spans two takes of a corpus model, and a
    fade never reads audio from outside a run's own take. Runs are joined
    with an equal-power crossfade (``sin`` in,
    ``cos`` out) of ``crossfade_ms``: the outgoing run continues past its end
    with the source audio that follows it, fading out over the first
    ``crossfade_ms`` of the incoming run, which fades in. When the source has
    no audio after the outgoing run (it ended at the end of the file), the
    incoming run's preceding source audio fades in over the outgoing run's
    last samples instead. The fade is shortened to at most half of either
    run and to the audio available. Either way the output has exactly the
    summed length of the runs, so frame ``i`` of the path starts at the
    cumulative run lengths. The whole output gets the same fade in at its
    start and out at its end.

    The result is scaled to a peak of 0.99 only if it would exceed 1.0
    (clip); otherwise the source level is kept.

    Parameters
    ----------
    model : Model
        With ``audio`` (float32 mono, shape (N,)) and ``sample_rate`` (Hz).
    generation : Generation
    crossfade_ms : float >= 0
        Crossfade length in milliseconds.
    validate : bool
        Judge the model's fields first (``False``: the caller just did; see
        :func:`improvise`).

    Returns
    -------
    y : ndarray of float32, shape (m,)
    sr : int
        ``model.sample_rate``.

    Raises
    ------
    ModelFormatError
        The model has no source audio, or events lack ``t``/``duration``.
    """
    if isinstance(crossfade_ms, bool) or not isinstance(crossfade_ms, (int, float, np.integer, np.floating)) \
            or not (crossfade_ms >= 0 and math.isfinite(crossfade_ms)):
        raise ParameterError(f"crossfade_ms must be a non-negative number, got {crossfade_ms!r}",
                             parameter="crossfade_ms")
    if validate:
        _check_fields(model, ("audio", "timing"))
    starts, ends = frame_bounds(model)
    take_lo, take_hi = _take_sample_ranges(model)
    # Slices are widened to float64 where they are mixed; converting the whole
    # source (minutes of audio) for a few seconds of output cost more than the rest.
    audio = np.asarray(model.audio)
    sr = int(model.sample_rate)
    frames = np.asarray(generation.frames, dtype=np.int64)
    if len(frames) == 0:
        return np.zeros(0, dtype=np.float32), sr
    if frames.min() < 0 or frames.max() >= len(starts):
        raise ModelFormatError("generation refers to frames this model does not have")

    breaks = np.flatnonzero((np.diff(frames) != 1) | (np.diff(take_lo[frames]) != 0)) + 1
    firsts = np.concatenate(([0], breaks))
    lasts = np.concatenate((breaks - 1, [len(frames) - 1]))
    src_a = starts[frames[firsts]]
    src_b = np.maximum(ends[frames[lasts]], src_a)
    lens = src_b - src_a
    offsets = np.concatenate(([0], np.cumsum(lens)))
    total = int(offsets[-1])
    y = np.zeros(total, dtype=np.float64)
    envelopes = [np.ones(int(m), dtype=np.float64) for m in lens]
    extras: list[tuple[int, int, int, np.ndarray]] = []  # (out_start, src_start, length, gain)

    fade = int(round(crossfade_ms * sr / 1000.0))
    for r in range(1, len(lens)):
        p_len, q_len = int(lens[r - 1]), int(lens[r])
        cap = min(fade, p_len // 2, q_len // 2)
        after_p = min(cap, int(take_hi[frames[lasts[r - 1]]]) - int(src_b[r - 1]))
        before_q = min(cap, int(src_a[r]) - int(take_lo[frames[firsts[r]]]))
        if after_p >= before_q and after_p > 0:
            fin, fout = _ramps(after_p)
            extras.append((int(offsets[r]), int(src_b[r - 1]), after_p, fout))
            envelopes[r][:after_p] *= fin
        elif before_q > 0:
            fin, fout = _ramps(before_q)
            extras.append((int(offsets[r]) - before_q, int(src_a[r]) - before_q, before_q, fin))
            envelopes[r - 1][p_len - before_q:] *= fout
    edge = min(fade, int(lens[0]) // 2, int(lens[-1]) // 2)
    if edge > 0:
        fin, fout = _ramps(edge)
        envelopes[0][:edge] *= fin
        envelopes[-1][len(envelopes[-1]) - edge:] *= fout

    for r in range(len(lens)):
        o = int(offsets[r])
        y[o:o + int(lens[r])] += audio[int(src_a[r]):int(src_b[r])] * envelopes[r]
    for out_start, src_start, length, gain in extras:
        y[out_start:out_start + length] += audio[src_start:src_start + length] * gain

    peak = float(np.max(np.abs(y))) if total else 0.0
    if peak > 1.0:
        y *= 0.99 / peak
    return y.astype(np.float32), sr


# --------------------------------------------------------------------------- writing


def _zero_peak_timestamp(data: bytes) -> bytes:
    """libsndfile stamps the wall-clock time into a float WAV's PEAK chunk; zero it."""
    buf = bytearray(data)
    pos = 12  # after "RIFF", size, "WAVE"
    while pos + 8 <= len(buf):
        cid = bytes(buf[pos:pos + 4])
        size = struct.unpack("<I", buf[pos + 4:pos + 8])[0]
        if cid == b"PEAK" and size >= 8:
            buf[pos + 12:pos + 16] = b"\x00\x00\x00\x00"
        pos += 8 + size + (size & 1)
    return bytes(buf)


def write_wav(path: str | os.PathLike, y: np.ndarray, sr: int, *, subtype: str = "PCM_16") -> None:
    """Write a mono WAV atomically with deterministic bytes.

    Parameters
    ----------
    path : path-like
    y : ndarray of float, shape (m,)
        Samples in [-1, 1]; PCM subtypes clip outside.
    sr : int
        Sample rate in Hz.
    subtype : {"PCM_16", "PCM_24", "FLOAT"}
        Sample format. Identical input gives identical file bytes.

    Notes
    -----
    The file's INFO chunk names chandra as its software (``ISFT``), which is
    how :func:`chandra.io_utils.check_output` knows it may be replaced.
    """
    import soundfile as sf

    if subtype not in ("PCM_16", "PCM_24", "FLOAT"):
        raise ChandraError(f"unsupported WAV subtype {subtype!r}; use PCM_16, PCM_24 or FLOAT")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ChandraError(f"write_wav expects mono samples of shape (m,), got {y.shape}")
    from chandra import __version__

    mem = io.BytesIO()
    with sf.SoundFile(mem, "w", samplerate=int(sr), channels=1, format="WAV", subtype=subtype) as out:
        # The software tag marks the file as chandra's: `chandra generate -o`
        # may replace it, but never a recording (io_utils.check_output).
        out.software = f"chandra {__version__}"
        out.write(y)
    data = _zero_peak_timestamp(mem.getvalue())
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def generate_to_wav(
    model: Any,
    out_path: str | os.PathLike,
    *,
    seconds: float | None = 30.0,
    n_frames: int | None = None,
    seed: int = 0,
    continuity: float = 0.8,
    min_lrs: int = 1,
    max_continuous: int | None = None,
    avoid_repeats: bool = True,
    taboo: int = DEFAULT_TABOO,
    where: str | Constraint | None = None,
    where_mode: str = "filter",
    where_weight: float = 4.0,
    start: int | None = None,
    crossfade_ms: float = 20.0,
    subtype: str = "PCM_16",
) -> Generation:
    """Improvise, resynthesise and write a WAV in one call (what ``chandra generate`` runs).

    ``n_frames``, when given, takes the place of ``seconds``. The remaining
    parameters are those of :func:`improvise`, :func:`resynthesise` and
    :func:`write_wav`. Returns the :class:`Generation` so the caller can report it.
    """
    if n_frames is not None:
        seconds = None
    gen = improvise(model, n_frames=n_frames, seconds=seconds, seed=seed, continuity=continuity,
                    min_lrs=min_lrs, max_continuous=max_continuous, avoid_repeats=avoid_repeats,
                    taboo=taboo, where=where, where_mode=where_mode, where_weight=where_weight, start=start)
    y, sr = resynthesise(model, gen, crossfade_ms=crossfade_ms)
    write_wav(out_path, y, sr, subtype=subtype)
    gen.params["crossfade_ms"] = float(crossfade_ms)
    gen.params["output"] = str(out_path)
    return gen
