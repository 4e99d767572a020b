"""How many gesture tokens: the rule behind ``n_tokens="auto"``.

A vocabulary is useful to an improviser when its tokens recur: the factor
oracle can only jump between passages that share tokens. Too few tokens and
different gestures are one sound (K = 2 on a piano piece cannot tell its
melody apart); too many and most tokens label a single segment, so nothing
repeats (K = 64 on a 24 s take of 69 segments used 59 tokens exactly once).
The rule (:data:`K_RULE`) is stated in musicians' terms: each token should
stand for at least :data:`MIN_USES_PER_TOKEN` segments on average, within
bounds that keep a melody expressible (:data:`K_FLOOR`) and gestures no
finer than a listener tells apart (:data:`K_CEILING`, MusicHal 9000's and
IRCAM's 64).

This module is the count-only part and the constants (no scikit-learn: the
findings use it); :func:`chandra.vocabulary.recommend_k` adds the check on the
features (sparse tokens, information rate against smaller K).
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["K_GRID", "MIN_USES_PER_TOKEN", "K_FLOOR", "K_CEILING", "SPARSE_TOKEN_SHARE", "RARE_USES",
           "IR_TOLERANCE", "K_RULE", "k_grid", "k_by_count", "k_reason"]

#: Vocabulary sizes tried (roughly geometric: each about 1.4 times the last).
K_GRID = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
#: Segments a token should stand for on average: K <= n_segments / MIN_USES_PER_TOKEN.
MIN_USES_PER_TOKEN = 4
#: Smallest recommended K unless the take is tiny (fewer than K_FLOOR * MIN_USES_PER_TOKEN segments):
#: fewer tokens cannot tell a melody's gestures apart.
K_FLOOR = 8
#: Largest recommended K by default: MusicHal 9000's and IRCAM's gesture vocabularies use 64; more
#: tokens split gestures finer than a listener tells apart while making exact repeats rarer.
K_CEILING = 64
#: A K whose tokens are used once or twice (or never) for more than this share is too sparse to recommend.
SPARSE_TOKEN_SHARE = 0.25
#: Uses at or below which a token counts as rarely used ("once or twice").
RARE_USES = 2
#: A K is kept when its information rate is at least (1 - IR_TOLERANCE) times the best smaller K's.
IR_TOLERANCE = 0.05

#: The rule, in one sentence (shown beside every recommendation).
K_RULE = (f"K is the largest vocabulary between {K_FLOOR} and {K_CEILING} tokens in which each token stands for "
          f"at least {MIN_USES_PER_TOKEN} segments on average (K ≤ segments / {MIN_USES_PER_TOKEN}); measured on "
          f"the features, a K that would leave more than {SPARSE_TOKEN_SHARE:.0%} of its tokens used once or twice, "
          f"or whose information rate falls more than {IR_TOLERANCE:.0%} below a smaller K's, gives way to the next "
          f"smaller size.")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith(("int", "uint"))


def k_grid(n_segments: int, *, max_k: int = 128, include: Iterable[int] = ()) -> list[int]:
    """Vocabulary sizes worth trying on ``n_segments`` segments: :data:`K_GRID`
    values up to ``min(max_k, n_segments // 2)`` (2 when there are only 2 or
    3 segments), plus every value of ``include`` with ``1 <= k <= n``.

    Returns
    -------
    list of int
        Ascending, without duplicates.
    """
    n = int(n_segments)
    top = min(int(max_k), max(2, n // 2))
    ks = {k for k in K_GRID if k <= top and k <= n}
    ks |= {int(k) for k in include if 1 <= int(k) <= n}
    return sorted(ks)


def k_by_count(n_segments: int, *, max_k: int = K_CEILING) -> dict:
    """The count-only part of the rule.

    Returns
    -------
    dict
        ``k`` (the largest :data:`K_GRID` size with at least
        :data:`MIN_USES_PER_TOKEN` segments per token, within the bounds),
        ``min`` / ``max`` (the bounds for this take: :data:`K_FLOOR` …
        ``max_k``, or 2 … :data:`K_FLOOR` for a tiny take, 1 … 1 for one
        segment), ``tiny`` (fewer than ``K_FLOOR * MIN_USES_PER_TOKEN``
        segments), ``capped`` (the count alone would allow more than
        ``max_k``), ``allowed`` (the grid sizes within the bounds, ascending).

    Raises
    ------
    ValueError
        ``n_segments`` below 1 or ``max_k`` below 2 (with ``.parameter``).
    """
    if not _whole(n_segments) or int(n_segments) < 1:
        exc = ValueError(f"n_segments must be a positive integer; got {n_segments!r}")
        exc.parameter = "n_segments"
        raise exc
    if not _whole(max_k) or int(max_k) < 2:
        exc = ValueError(f"max_k must be an integer of at least 2; got {max_k!r}")
        exc.parameter = "max_k"
        raise exc
    n = int(n_segments)
    by_count = n // MIN_USES_PER_TOKEN
    tiny = by_count < K_FLOOR
    if n == 1:
        lo = hi = 1
    elif tiny:
        lo, hi = 2, K_FLOOR
    else:
        lo, hi = K_FLOOR, int(max_k)
    allowed = [k for k in K_GRID if lo <= k <= min(hi, max(by_count, lo), n)] or [lo]
    return {"k": max(allowed), "min": lo, "max": hi, "tiny": tiny, "capped": not tiny and by_count > hi,
            "allowed": allowed}


def k_reason(n: int, k: int, *, k_rule: int, tiny: bool, capped: bool, max_k: int, refused: str | None) -> str:
    """The recommendation in a musician's words (one sentence)."""
    per = round(n / k)
    text = (f"{n} segment{'s' * (n != 1)}: with K = {k} each gesture token stands for about {per} "
            f"segment{'s' * (per != 1)}, so similar gestures share a token and recur for the improviser to "
            "recombine")
    if refused is not None:
        text += f"; K = {k_rule} was tried first, but {refused}"
    if tiny:
        text += (f"; the take is short, so the vocabulary is small (a longer recording allows {K_FLOOR} or more "
                 "tokens)")
    elif capped:
        text += (f"; more than {max_k} tokens would split gestures finer than a listener tells apart and make "
                 "exact repeats rarer")
    return text + "."
