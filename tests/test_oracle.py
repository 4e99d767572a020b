"""Factor oracle, audio oracle, invariant checks, health and information rate."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chandra.oracle as oracle_mod
from chandra.oracle import _kernels
from chandra.oracle import audio as audio_mod
from helpers_oracle import motif_frames
from chandra.errors import ModelFormatError, OracleError
from chandra.oracle import (
    CHECK_CODES,
    Oracle,
    build_audio_oracle,
    build_factor_oracle,
    check_oracle,
    default_thresholds,
    exact_lrs,
    information_rate,
    information_rate_profile,
    ir_threshold_sweep,
    ir_tokens,
    lefebvre_lecroq_lrs,
    oracle_health,
    select_threshold,
)

ARRAYS = ("sfx", "lrs", "trn_ptr", "trn_dst", "rep")


def codes_of(text: str) -> np.ndarray:
    return np.array([ord(c) - ord("a") for c in text], dtype=np.int64)


def transition_lists(o: Oracle) -> list[list[int]]:
    return [o.transitions(i).tolist() for i in range(o.n_states)]


def assert_same_oracle(a: Oracle, b: Oracle) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def brute_longest_repeated_suffix(s) -> list[int]:
    """lrs_true[i]: longest suffix of s[:i] that also ends at some earlier position (overlap allowed)."""
    return brute_repeats(s)[0]


def brute_repeats(s) -> tuple[list[int], list[int]]:
    """(lrs_true, rep_true): the longest repeated suffix of every prefix and its first earlier end (0 if none)."""
    s = list(s)
    out, first = [0], [-1]
    for i in range(1, len(s) + 1):
        best, where = 0, 0
        for length in range(1, i):
            suffix = s[i - length : i]
            ends = [j for j in range(length, i) if s[j - length : j] == suffix]
            if not ends:
                break  # a longer suffix contains this one, so it cannot repeat either
            best, where = length, ends[0]
        out.append(best)
        first.append(where)
    return out, first


def brute_common_suffix(s, a: int, b: int) -> int:
    """Length of the longest common suffix of s[:a] and s[:b]."""
    m = 0
    while m < min(a, b) and s[a - 1 - m] == s[b - 1 - m]:
        m += 1
    return m


def with_edges(o: Oracle, edges: list[tuple[int, int]], **changes) -> Oracle:
    """A copy of ``o`` whose transitions are exactly ``edges`` (CSR rebuilt)."""
    n_states = o.n_states
    edges = sorted(set(edges))
    src = np.array([e[0] for e in edges], dtype=np.int64)
    dst = np.array([e[1] for e in edges], dtype=np.int64)
    ptr = np.zeros(n_states + 1, dtype=np.int64)
    np.add.at(ptr, src + 1, 1)
    fields = dict(
        kind=o.kind, sfx=o.sfx.copy(), lrs=o.lrs.copy(), trn_ptr=np.cumsum(ptr), trn_dst=dst,
        threshold=o.threshold, metric=o.metric, rep=o.rep.copy(),
    )
    fields.update(changes)
    return Oracle(**fields)


def edges_of(o: Oracle) -> list[tuple[int, int]]:
    return [(i, int(j)) for i in range(o.n_states) for j in o.transitions(i)]


def codes_found(records) -> set[str]:
    return {r["code"] for r in records}


# ---------------------------------------------------------------------------
# Known strings. Derived by hand from the ACR construction (walk the suffix
# chain of state i-1, add transitions until a state already has one on the new
# letter) and Lefebvre-Lecroq's LengthCommonSuffix; cross-checked against the
# brute-force repeated suffix below. States: a=1, b=2, ... in the string.
# ---------------------------------------------------------------------------


def test_factor_oracle_abbbaab():
    o = build_factor_oracle(codes_of("abbbaab"))
    # e.g. state 4 ("abbb"): "bb" ends at 3 too -> sfx 3, lrs 2;
    # state 5 ("abbba"): chain 3, 2 gain transitions on 'a', root has 'a' -> sfx 1.
    assert o.sfx.tolist() == [-1, 0, 0, 2, 3, 1, 1, 2]
    assert o.lrs.tolist() == [0, 0, 0, 1, 2, 1, 1, 2]
    assert o.rep.tolist() == [-1, 0, 0, 2, 3, 1, 1, 2]  # here every repeat ends where its link points
    assert transition_lists(o) == [[1, 2], [2, 6], [3, 5], [4, 5], [5], [6], [7], []]
    assert o.lrs.tolist() == brute_longest_repeated_suffix("abbbaab")
    assert check_oracle(o, symbols=codes_of("abbbaab")) == []


def test_factor_oracle_abbcabcdabc():
    text = "abbcabcdabc"
    o = build_factor_oracle(codes_of(text))
    assert o.sfx.tolist() == [-1, 0, 0, 2, 0, 1, 2, 4, 0, 1, 2, 4]
    assert transition_lists(o) == [[1, 2, 4, 8], [2], [3, 4], [4], [5, 8], [6], [7], [8], [9], [10], [11], []]
    # The factor oracle reads "abc" as 0 -a-> 1 -b-> 2 -c-> 4 (2 -> 4 was added
    # for the first 'c'), so state 11's suffix link is 4, which shares only
    # "bc" with it: the Lefebvre-Lecroq recursion gives 2 although "abc"
    # (ending at 7) repeats. The stored context is exact and says where it ends.
    assert lefebvre_lecroq_lrs(o.sfx, o.trn_ptr, o.trn_dst).tolist() == [0, 0, 0, 1, 0, 1, 2, 2, 0, 1, 2, 2]
    assert o.lrs.tolist() == [0, 0, 0, 1, 0, 1, 2, 2, 0, 1, 2, 3]
    assert o.rep.tolist() == [-1, 0, 0, 2, 0, 1, 2, 4, 0, 1, 2, 7]
    assert (o.lrs.tolist(), o.rep.tolist()) == brute_repeats(text)
    assert brute_common_suffix(text, 11, int(o.sfx[11])) == 2 < o.lrs[11]
    assert check_oracle(o, symbols=codes_of(text)) == []


def test_symbols_may_be_any_integers():
    a = build_factor_oracle(codes_of("abbcabcdabc"))
    b = build_factor_oracle(codes_of("abbcabcdabc") * 1_000_003 - 7)  # sparse, negative ids
    assert_same_oracle(a, b)


# ---------------------------------------------------------------------------
# Random sequences
# ---------------------------------------------------------------------------


sequences = st.integers(1, 5).flatmap(lambda k: st.lists(st.integers(0, k - 1), min_size=0, max_size=60))


@st.composite
def motif_sequences(draw):
    """Recurring motifs with occasional substitutions, over alphabets of 1 to 200 symbols (sparse ids)."""
    k = draw(st.integers(1, 200))
    letters = st.integers(0, k - 1)
    motifs = draw(st.lists(st.lists(letters, min_size=1, max_size=8), min_size=1, max_size=5))
    picks = draw(st.lists(st.tuples(st.integers(0, len(motifs) - 1), st.booleans(), letters), max_size=14))
    out: list[int] = []
    for m, mutate, letter in picks:
        piece = list(motifs[m])
        if mutate:
            piece[len(piece) // 2] = letter
        out.extend(piece)
    return [7 * x - 3 for x in out[:80]]


any_sequences = st.one_of(sequences, motif_sequences(),
                          st.lists(st.integers(-(2**40), 2**40), max_size=40))  # all distinct, mostly


@settings(max_examples=200, deadline=None)
@given(any_sequences)
def test_factor_oracle_invariants_and_exact_context(seq):
    sym = np.array(seq, dtype=np.int64)
    o = build_factor_oracle(sym)
    n = len(seq)
    assert o.n_frames == n
    # Compiled kernel == straight pseudo-code (suffix links and transitions
    # of the textbook construction; context from brute force).
    assert_same_oracle(o, reference_factor_oracle(sym))
    # Every invariant (check_oracle verifies them all, including that lrs is the longest).
    assert check_oracle(o, symbols=sym) == []
    assert o.n_transitions <= max(0, 2 * n - 1)
    # The context is exact: the true longest repeated suffix and its first earlier end.
    lrs_true, rep_true = brute_repeats(seq)
    assert o.lrs.tolist() == lrs_true
    assert o.rep.tolist() == rep_true
    assert exact_lrs(sym)[0].tolist() == lrs_true
    # Relative to the suffix link: never longer than it (lrs <= sfx), the link
    # never later than the first end of the repeat, and the Lefebvre-Lecroq
    # context shared with the link is a lower bound (equal whenever <= 1).
    ll = lefebvre_lecroq_lrs(o.sfx, o.trn_ptr, o.trn_dst)
    for i in range(1, n + 1):
        assert o.lrs[i] <= o.sfx[i] <= o.rep[i] < i or o.lrs[i] == o.sfx[i] == o.rep[i] == 0
        assert ll[i] <= brute_common_suffix(seq, i, int(o.sfx[i])) <= o.lrs[i]
        if lrs_true[i] <= 1:
            assert ll[i] == lrs_true[i]


def test_exact_context_on_long_sequences_of_every_alphabet_size():
    rng = np.random.default_rng(5)
    for k in (1, 2, 3, 8, 64, 5000):
        sym = rng.integers(0, k, 3000)
        o = build_factor_oracle(sym)
        # brute force is quadratic; spot-check 150 states against it
        for i in rng.choice(np.arange(1, 3001), 150, replace=False):
            prefix = sym[:i].tolist()
            length = int(o.lrs[i])
            end = int(o.rep[i])
            assert prefix[i - length:] == prefix[end - length:end] if length else end == 0
            longer = prefix[i - length - 1:] if length < i else None
            assert longer is None or all(prefix[j - length - 1:j] != longer for j in range(length + 1, i))
        assert check_oracle(o, symbols=sym) == []
    # on two letters the Lefebvre-Lecroq value falls short at many states
    sym = rng.integers(0, 2, 2000)
    o = build_factor_oracle(sym)
    ll = lefebvre_lecroq_lrs(o.sfx, o.trn_ptr, o.trn_dst)
    assert np.all(ll <= o.lrs) and np.mean(ll[1:] < o.lrs[1:]) > 0.3


@settings(max_examples=60, deadline=None)
@given(sequences)
def test_factor_oracle_recognises_every_factor(seq):
    o = build_factor_oracle(np.array(seq, dtype=np.int64))
    table = [{seq[j - 1]: j for j in o.transitions(i).tolist()} for i in range(o.n_states)]
    for start in range(len(seq)):
        state = 0
        for letter in seq[start:]:
            assert letter in table[state]
            state = table[state][letter]


def test_factor_oracle_is_deterministic_and_sorted():
    rng = np.random.default_rng(3)
    sym = rng.integers(0, 7, 3000)
    a, b = build_factor_oracle(sym), build_factor_oracle(sym)
    assert_same_oracle(a, b)
    for i in range(a.n_states):
        row = a.transitions(i)
        assert np.all(np.diff(row) > 0)
    assert all(getattr(a, name).dtype == np.int64 for name in ARRAYS)


def test_factor_oracle_progress_reaches_total():
    calls = []
    build_factor_oracle(np.arange(100) % 5, progress=lambda *a: calls.append(a))
    assert calls[-1] == ("oracle", 100, 100)


# ---------------------------------------------------------------------------
# Audio oracle
# ---------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(sequences, st.sampled_from(["cosine", "euclidean"]))
def test_audio_oracle_on_one_hot_equals_factor_oracle(seq, metric):
    sym = np.array(seq, dtype=np.int64)
    dim = 5
    X = np.zeros((len(seq), dim), dtype=np.float32)
    X[np.arange(len(seq)), sym] = 1.0
    if metric == "cosine":
        # Cosine ignores scale; the audio oracle must not assume unit rows.
        X *= np.linspace(0.5, 3.0, max(1, len(seq)), dtype=np.float32)[: len(seq), None]
        threshold = 0.5  # distances are exactly 0 (same token) or 1 (different)
    else:
        threshold = 1.0  # distances are 0 or sqrt(2)
    ao = build_audio_oracle(X, threshold=threshold, metric=metric)
    fo = build_factor_oracle(sym)
    # the same graph; the audio oracle's context is the run shared with its link
    for name in ("sfx", "trn_ptr", "trn_dst"):
        np.testing.assert_array_equal(getattr(ao, name), getattr(fo, name), err_msg=name)
    np.testing.assert_array_equal(ao.rep, ao.sfx)
    assert ao.lrs.tolist() == [0] + [brute_common_suffix(seq, i, int(ao.sfx[i])) for i in range(1, len(seq) + 1)]
    assert np.all(ao.lrs <= fo.lrs)
    assert ao.kind == "features" and ao.threshold == threshold and ao.metric == metric
    assert check_oracle(ao, features=X) == []


def reference_factor_oracle(symbols) -> Oracle:
    """Dictionary-based factor oracle straight from the pseudo-code (Allauzen,
    Crochemore & Raffinot 1999), for cross-checks of the compiled kernel."""
    sym = [int(s) for s in symbols]
    n = len(sym)
    sfx = [-1] + [0] * n
    trans: list[dict[int, int]] = [dict() for _ in range(n + 1)]
    for i in range(1, n + 1):
        c = sym[i - 1]
        trans[i - 1][c] = i
        k = sfx[i - 1]
        while k > -1 and c not in trans[k]:
            trans[k][c] = i
            k = sfx[k]
        sfx[i] = 0 if k == -1 else trans[k][c]
    rows = [sorted(t.values()) for t in trans]
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    dst = np.array([d for r in rows for d in r], dtype=np.int64)
    lrs, rep = brute_repeats(sym)
    return Oracle(kind="tokens", sfx=np.array(sfx, dtype=np.int64), lrs=np.array(lrs, dtype=np.int64),
                  trn_ptr=ptr, trn_dst=dst, rep=np.array(rep, dtype=np.int64))


def reference_audio_oracle(X: np.ndarray, threshold: float, metric: str) -> Oracle:
    """Plain-python audio oracle straight from the description, for cross-checks."""
    X = X.astype(np.float64)

    def dist(a, b):
        if metric == "cosine":
            na, nb = np.linalg.norm(X[a]), np.linalg.norm(X[b])
            if na == 0 or nb == 0:
                return 0.0 if na == nb else 1.0
            return 1.0 - float(X[a] @ X[b]) / (na * nb)
        return float(np.linalg.norm(X[a] - X[b]))

    n = X.shape[0]
    sfx, lrs = [-1] + [0] * n, [0] * (n + 1)
    out: list[list[int]] = [[] for _ in range(n + 1)]

    for i in range(1, n + 1):
        out[i - 1].append(i)
        k = sfx[i - 1]
        found = -1
        while k > -1:
            scored = [(dist(i - 1, j - 1), j) for j in out[k]]
            close = [(d, j) for d, j in scored if d < threshold]
            if close:
                found = min(close)[1]
                break
            out[k].append(i)
            k = sfx[k]
        if found < 0:
            sfx[i], lrs[i] = 0, 0
        else:
            # the run of within-threshold pairs ending at frames i-1 and found-1
            run = 0
            while run < found and dist(i - 1 - run, found - 1 - run) < threshold:
                run += 1
            sfx[i], lrs[i] = found, run
    edges = [(s, j) for s in range(n + 1) for j in out[s]]
    base = Oracle(kind="features", sfx=np.array(sfx), lrs=np.array(lrs), trn_ptr=np.zeros(n + 2, np.int64),
                  trn_dst=np.zeros(0, np.int64), threshold=threshold, metric=metric)
    return with_edges(base, edges)


@pytest.mark.parametrize("metric,threshold", [("cosine", 0.15), ("cosine", 0.6), ("euclidean", 0.8), ("euclidean", 2.5)])
@pytest.mark.parametrize("block", [8, 256])
def test_audio_oracle_matches_reference(monkeypatch, metric, threshold, block):
    # block=8 forces several kernel calls so the Gram-matrix path is exercised
    # (it switches on once most comparisons reach the root).
    monkeypatch.setattr(audio_mod, "_AO_BLOCK", block)
    rng = np.random.default_rng(11)
    protos = rng.standard_normal((4, 6))
    labels = rng.integers(0, 4, 90)
    X = protos[labels] + 0.3 * rng.standard_normal((90, 6))
    got = build_audio_oracle(X, threshold=threshold, metric=metric)
    assert_same_oracle(got, reference_audio_oracle(X, threshold, metric))
    assert got.sfx.dtype == np.int64


def test_audio_oracle_unstructured_input_puts_everything_on_the_root(monkeypatch):
    monkeypatch.setattr(audio_mod, "_AO_BLOCK", 16)
    X = np.random.default_rng(0).standard_normal((200, 32)).astype(np.float32)
    build_audio_oracle(X[:2], threshold=0.01)  # compile, so the kernel can be wrapped
    original = _kernels._ao_kernel
    gram_rows = []

    def spy(*args):
        gram_rows.append(args[6].shape[0])
        return original(*args)

    monkeypatch.setattr(_kernels, "_ao_kernel", spy)
    o = build_audio_oracle(X, threshold=0.01)
    assert gram_rows[0] == 0 and max(gram_rows) == 16  # the blocked product path ran
    assert_same_oracle(o, reference_audio_oracle(X, 0.01, "cosine"))
    h = oracle_health(o)
    assert h["root_out_degree"] == 200
    assert h["sfx_to_root_share"] == 1.0
    assert h["lrs_max"] == 0
    assert information_rate(o) == 0.0
    assert check_oracle(o, features=X) == []


def test_audio_oracle_handles_zero_vectors_under_cosine():
    X = np.array([[0, 0], [1, 0], [0, 0], [1, 0]], dtype=np.float64)
    o = build_audio_oracle(X, threshold=0.5)
    assert o.sfx.tolist() == [-1, 0, 0, 1, 2]
    assert check_oracle(o, features=X) == []


def test_audio_oracle_progress_and_validation():
    calls = []
    X = np.random.default_rng(0).standard_normal((600, 4))
    build_audio_oracle(X, threshold=0.2, progress=lambda *a: calls.append(a))
    assert calls[-1] == ("oracle", 600, 600)
    with pytest.raises(OracleError):
        build_audio_oracle(X[:, 0], threshold=0.2)
    with pytest.raises(OracleError):
        build_audio_oracle(X, threshold=0.2, metric="manhattan")
    with pytest.raises(OracleError):
        build_audio_oracle(X, threshold=float("nan"))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(OracleError):
        build_audio_oracle(bad, threshold=0.2)
    with pytest.raises(OracleError):
        build_audio_oracle(np.zeros((3, 0)), threshold=0.2)
    with pytest.raises(OracleError):
        build_factor_oracle(np.array([0.5, 1.5]))
    with pytest.raises(OracleError):
        build_factor_oracle(np.zeros((2, 2), dtype=np.int64))


# ---------------------------------------------------------------------------
# check_oracle: each code on a deliberately corrupted oracle
# ---------------------------------------------------------------------------


TEXT = "abbcabcdabc"


@pytest.fixture
def healthy():
    return build_factor_oracle(codes_of(TEXT))


def corrupted(o: Oracle, **arrays) -> Oracle:
    fields = {name: getattr(o, name).copy() for name in ARRAYS}
    if "sfx" in arrays and "rep" not in arrays:
        fields["rep"] = np.where(o.rep == o.sfx, arrays["sfx"], o.rep)
    fields.update(arrays)
    return Oracle(kind=o.kind, threshold=o.threshold, metric=o.metric, **fields)


def test_check_flags_sfx_out_of_range(healthy):
    sfx = healthy.sfx.copy()
    sfx[5] = 7
    found = check_oracle(corrupted(healthy, sfx=sfx), symbols=codes_of(TEXT))
    assert [(r["code"], r["state"]) for r in found] == [("sfx_out_of_range", 5)]


def test_check_flags_lrs_exceeds_sfx(healthy):
    lrs = healthy.lrs.copy()
    lrs[3] = 3  # sfx[3] = 2
    found = check_oracle(corrupted(healthy, lrs=lrs), symbols=codes_of(TEXT))
    assert [(r["code"], r["state"]) for r in found] == [("lrs_exceeds_sfx", 3)]


def test_check_flags_lrs_zero_mismatch(healthy):
    lrs = healthy.lrs.copy()
    lrs[5] = 0  # sfx[5] = 1
    found = check_oracle(corrupted(healthy, lrs=lrs), symbols=codes_of(TEXT))
    assert [(r["code"], r["state"]) for r in found] == [("lrs_zero_mismatch", 5)]


def test_check_flags_lrs_context_mismatch(healthy):
    rep = healthy.rep.copy()
    rep[11] = 4  # "abc" at 11 vs "bbc" at sfx = 4 (the repeat ends at 7)
    found = check_oracle(corrupted(healthy, rep=rep), symbols=codes_of(TEXT))
    assert [(r["code"], r["state"]) for r in found] == [("lrs_context_mismatch", 11)]
    assert found[0]["severity"] == "error"
    # Without the symbols the context cannot be checked.
    assert check_oracle(corrupted(healthy, rep=rep)) == []


def test_check_flags_lrs_not_longest(healthy):
    # The Lefebvre-Lecroq values with rep = sfx (what a model saved before
    # exact context holds) are genuine but short: a warning, not an error.
    legacy = corrupted(healthy, lrs=lefebvre_lecroq_lrs(healthy.sfx, healthy.trn_ptr, healthy.trn_dst),
                       rep=healthy.sfx.copy())
    found = check_oracle(legacy, symbols=codes_of(TEXT))
    assert [(r["code"], r["state"], r["severity"]) for r in found] == [("lrs_not_longest", 11, "warning")]
    assert "has 3 symbols (first ending at 7)" in found[0]["message"]
    # audio oracle: a run cut short while the pair before it still matches
    X = np.eye(4)[codes_of(TEXT)]
    ao = build_audio_oracle(X, threshold=0.5)
    lrs = ao.lrs.copy()
    lrs[10] = 1  # states 10 and sfx = 2 share "ab"
    found = check_oracle(corrupted(ao, lrs=lrs), features=X)
    assert [(r["code"], r["state"], r["severity"]) for r in found] == [("lrs_not_longest", 10, "warning")]


def test_check_flags_rep_out_of_range(healthy):
    rep = healthy.rep.copy()
    rep[11] = 3  # before sfx[11] = 4
    rep[8] = 2  # sfx[8] = 0: a new symbol has no earlier context
    found = check_oracle(corrupted(healthy, rep=rep), symbols=codes_of(TEXT))
    assert {(r["code"], r["state"]) for r in found} == {("rep_out_of_range", 8), ("rep_out_of_range", 11)}


def test_check_flags_too_many_transitions():
    o = build_factor_oracle(codes_of("abc"))
    full = with_edges(o, [(i, j) for i in range(4) for j in range(i + 1, 4)])  # 6 > 2n-1 = 5
    assert codes_found(check_oracle(full)) == {"too_many_transitions"}


def test_check_flags_missing_direct_transition(healthy):
    edges = [e for e in edges_of(healthy) if e != (6, 7)]
    found = check_oracle(with_edges(healthy, edges), symbols=codes_of(TEXT))
    assert [(r["code"], r["state"]) for r in found] == [("missing_direct_transition", 7)]


def test_check_flags_nondeterministic_transition(healthy):
    # State 0 already reaches 'a' at 1; a second 'a'-labelled transition to 5.
    found = check_oracle(with_edges(healthy, edges_of(healthy) + [(0, 5)]), symbols=codes_of(TEXT))
    assert [(r["code"], r["state"]) for r in found] == [("nondeterministic_transition", 0)]


def test_check_flags_sfx_distance_above_threshold():
    sym = codes_of(TEXT)
    X = np.eye(4)[sym]
    o = build_audio_oracle(X, threshold=0.5)
    assert check_oracle(o, features=X) == []
    sfx = o.sfx.copy()
    sfx[5] = 2  # frame 4 is 'a', frame 1 is 'b': cosine distance 1
    found = check_oracle(corrupted(o, sfx=sfx), features=X)
    assert {r["code"] for r in found} >= {"sfx_distance_above_threshold"}
    record = next(r for r in found if r["code"] == "sfx_distance_above_threshold")
    assert record["state"] == 5 and record["count"] == 1
    # The audio oracle's context check is a warning: matching is not transitive.
    ctx = [r for r in found if r["code"] == "lrs_context_mismatch"]
    assert all(r["severity"] == "warning" for r in ctx)


def test_check_flags_malformed_and_length_mismatch(healthy):
    bad = corrupted(healthy, trn_ptr=healthy.trn_ptr[:-1])
    assert codes_found(check_oracle(bad)) == {"malformed"}
    found = check_oracle(healthy, symbols=codes_of(TEXT)[:-1])
    assert codes_found(found) == {"input_length_mismatch"}


def test_check_caps_records_but_reports_totals():
    sym = np.random.default_rng(0).integers(0, 3, 500)
    o = build_factor_oracle(sym)
    lrs = o.lrs.copy()
    lrs[o.sfx > 0] = 0
    total = int(np.sum(o.sfx[1:] > 0))
    found = check_oracle(corrupted(o, lrs=lrs), symbols=sym, max_per_code=20)
    assert len(found) == 20
    assert {r["code"] for r in found} == {"lrs_zero_mismatch"}
    assert all(r["count"] == total and str(total) in r["message"] for r in found)


def test_every_check_code_is_listed():
    assert len(set(CHECK_CODES)) == len(CHECK_CODES)
    assert {
        "sfx_out_of_range", "lrs_exceeds_sfx", "lrs_zero_mismatch", "lrs_context_mismatch",
        "lrs_not_longest", "rep_out_of_range",
        "too_many_transitions", "missing_direct_transition", "sfx_distance_above_threshold",
    } <= set(CHECK_CODES)


# ---------------------------------------------------------------------------
# Layout, round trip, empty input, health
# ---------------------------------------------------------------------------


def npy_round_trip(arr: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


@pytest.mark.parametrize("kind", ["tokens", "features"])
def test_round_trip_through_npy_and_json(kind):
    sym = np.random.default_rng(5).integers(0, 4, 300)
    o = build_factor_oracle(sym) if kind == "tokens" else build_audio_oracle(np.eye(4)[sym], threshold=0.5)
    arrays = {k: npy_round_trip(v) for k, v in o.to_arrays().items()}
    assert all(v.dtype == np.int64 for v in arrays.values())
    meta = json.loads(json.dumps(o.to_meta()))
    assert meta["n_frames"] == 300 and meta["kind"] == kind
    back = Oracle.from_arrays(meta, arrays)
    assert_same_oracle(back, o)
    assert (back.kind, back.threshold, back.metric) == (o.kind, o.threshold, o.metric)


def test_arrays_saved_before_exact_context_load_with_rep_on_the_suffix_link():
    o = build_factor_oracle(codes_of(TEXT))
    legacy = {k: v for k, v in o.to_arrays().items() if k != "rep"}
    legacy["lrs"] = lefebvre_lecroq_lrs(o.sfx, o.trn_ptr, o.trn_dst)  # what such files hold
    back = Oracle.from_arrays(o.to_meta(), legacy)
    np.testing.assert_array_equal(back.rep, o.sfx)
    # consistent: every context holds; state 11's is merely shorter than the longest
    assert codes_found(check_oracle(back, symbols=codes_of(TEXT))) == {"lrs_not_longest"}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m, a: a.pop("lrs"),
        lambda m, a: a.__setitem__("sfx", a["sfx"].astype(np.float64)),
        lambda m, a: a.__setitem__("lrs", a["lrs"][:-1]),
        lambda m, a: a.__setitem__("trn_ptr", a["trn_ptr"][::-1].copy()),
        lambda m, a: a.__setitem__("trn_dst", a["trn_dst"] + 100),
        lambda m, a: a.__setitem__("sfx", a["sfx"].reshape(1, -1)),
        lambda m, a: a.__setitem__("rep", a["rep"][:-1]),
        lambda m, a: a.__setitem__("rep", a["rep"] + 100),
        lambda m, a: m.__setitem__("n_frames", 3),
        lambda m, a: m.__setitem__("kind", "chords"),
        lambda m, a: m.__setitem__("threshold", 0.3),
    ],
)
def test_from_arrays_rejects_inconsistent_input(mutate):
    o = build_factor_oracle(codes_of(TEXT))
    meta, arrays = o.to_meta(), o.to_arrays()
    mutate(meta, arrays)
    with pytest.raises(ModelFormatError):
        Oracle.from_arrays(meta, arrays)


def test_from_arrays_requires_audio_oracle_threshold_and_metric():
    o = build_audio_oracle(np.eye(3), threshold=0.5)
    meta = o.to_meta()
    meta["metric"] = "hamming"
    with pytest.raises(ModelFormatError):
        Oracle.from_arrays(meta, o.to_arrays())
    meta = o.to_meta()
    meta["threshold"] = None
    with pytest.raises(ModelFormatError):
        Oracle.from_arrays(meta, o.to_arrays())


def test_empty_input():
    fo = build_factor_oracle(np.zeros(0, dtype=np.int64))
    ao = build_audio_oracle(np.zeros((0, 8), dtype=np.float32), threshold=0.3)
    for o in (fo, ao):
        assert o.n_frames == 0 and o.n_transitions == 0
        assert o.sfx.tolist() == [-1] and o.lrs.tolist() == [0] and o.trn_ptr.tolist() == [0, 0]
        assert o.transitions(0).size == 0
        assert check_oracle(o) == []
        assert information_rate(o) == 0.0
        h = oracle_health(o)
        assert h["n_states"] == 1 and h["root_out_degree_share"] == 0.0 and h["transition_density"] == 0.0
        assert_same_oracle(Oracle.from_arrays(o.to_meta(), o.to_arrays()), o)
    assert build_factor_oracle([]).n_frames == 0
    assert ir_tokens([]) == 0.0


def test_single_frame():
    o = build_factor_oracle([7])
    assert o.sfx.tolist() == [-1, 0] and transition_lists(o) == [[1], []]
    assert check_oracle(o, symbols=[7]) == []


def test_transitions_and_rsfx(healthy):
    with pytest.raises(OracleError):
        healthy.transitions(healthy.n_states)
    rs = healthy.rsfx()
    assert len(rs) == healthy.n_states
    for j, members in enumerate(rs):
        assert members.tolist() == [i for i in range(1, healthy.n_states) if healthy.sfx[i] == j]


def test_health_of_constant_and_known_sequences(healthy):
    o = build_factor_oracle(np.zeros(50, dtype=np.int64))
    h = oracle_health(o)
    assert h["root_out_degree"] == 1
    assert h["sfx_to_previous_share"] == pytest.approx(49 / 50)
    assert h["lrs_max"] == 49
    assert sum(h["lrs_histogram"]) == 50 and h["lrs_histogram"][-1] == 50 - 32
    h = oracle_health(healthy)
    assert h["n_states"] == 12 and h["n_transitions"] == healthy.n_transitions
    assert h["root_out_degree"] == 4 and h["root_out_degree_share"] == pytest.approx(4 / 11)
    assert h["sfx_to_root_share"] == pytest.approx(4 / 11)
    assert h["transitions_per_state_max"] == 4
    assert h["transition_density"] == pytest.approx(healthy.n_transitions / 66)
    json.dumps(h)


# ---------------------------------------------------------------------------
# Information rate
# ---------------------------------------------------------------------------


def test_information_rate_extremes_are_zero():
    # Nothing repeats: every frame is a literal, no gain over the unconditional code.
    assert ir_tokens(np.arange(200)) == 0.0
    # One symbol: the unconditional code is already 0 bits.
    assert ir_tokens(np.zeros(200, dtype=np.int64)) == 0.0


def test_information_rate_prefers_recurring_motifs_to_noise():
    motif = np.random.default_rng(0).integers(0, 8, 16)
    periodic = np.tile(motif, 25)
    ir_periodic = ir_tokens(periodic)
    assert ir_periodic > 1.0
    for seed in range(5):
        noise = np.random.default_rng(100 + seed).integers(0, 8, periodic.size)
        assert ir_periodic > ir_tokens(noise)


def test_information_rate_profile_is_bounded_by_the_alphabet():
    sym = np.random.default_rng(2).integers(0, 6, 400)
    o = build_factor_oracle(sym)
    prof = information_rate_profile(o)
    assert prof.shape == (400,) and prof.dtype == np.float64
    seen = np.array([len(set(sym[: i + 1].tolist())) for i in range(400)])
    assert np.all(prof >= 0) and np.all(prof <= np.log2(seen) + 1e-12)
    assert information_rate(o) == pytest.approx(prof.mean())
    assert ir_tokens(sym) == information_rate(o)


def clustered_motifs(seed=0, n=600, dim=20, noise=0.01):
    rng = np.random.default_rng(seed)
    protos = np.eye(dim)[:5] * 2.0  # orthogonal: every between-cluster cosine distance is ~1
    motifs = [rng.integers(0, 5, 7) for _ in range(3)]
    labels = np.concatenate([motifs[i] for i in rng.integers(0, 3, n // 7 + 1)])[:n]
    X = protos[labels] + noise * rng.standard_normal((n, dim))
    return X, labels


def cosine_matrix(X):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    return 1.0 - U @ U.T


def test_threshold_sweep_lands_between_within_and_between_cluster_distances():
    X, labels = clustered_motifs()
    D = cosine_matrix(X)
    same = labels[:, None] == labels[None, :]
    max_within = D[same].max()
    min_between = D[~same].min()
    assert max_within < min_between  # the data really are separated
    calls = []
    sweep = ir_threshold_sweep(X, progress=lambda *a: calls.append(a))
    assert len(sweep["thresholds"]) == len(sweep["ir"]) == 20 == len(sweep["root_out_degree"])
    assert max_within < sweep["best_threshold"] < min_between
    assert sweep["best_ir"] == max(sweep["ir"]) > 0
    assert calls[-1] == ("ir_sweep", 20, 20)
    best, curve = select_threshold(X, thresholds=sweep["thresholds"])
    assert best == sweep["best_threshold"] and curve["ir"] == sweep["ir"]
    # At the chosen threshold the audio oracle sees exactly the five clusters.
    assert curve["root_out_degree"][curve["thresholds"].index(best)] == 5


def test_default_thresholds_span_the_distance_scale():
    X, _ = clustered_motifs(seed=1)
    grid = default_thresholds(X)
    assert grid.shape == (20,) and np.all(np.diff(grid) > 0) and grid[0] > 0
    with pytest.raises(OracleError):
        ir_threshold_sweep(X, thresholds=[])


def test_importing_the_module_does_not_import_numba():
    import subprocess
    import sys

    code = "import sys, chandra.oracle; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# Audio oracle: approximate root search
# ---------------------------------------------------------------------------


def assert_same_audio_oracle(a: Oracle, b: Oracle) -> None:
    for name in ("sfx", "lrs", "trn_ptr", "trn_dst", "rep"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.n_states == b.n_states and a.threshold == b.threshold and a.metric == b.metric


@pytest.mark.parametrize("metric,threshold,zero_every", [("cosine", 0.3, 0), ("cosine", 0.3, 97),
                                                          ("euclidean", 0.6, 0)])
def test_approximate_search_equals_exact_on_structured_frames(metric, threshold, zero_every):
    # 700 prototypes in 96-D: the root grows well past APPROX_MIN_ROOT, so
    # thousands of root searches go through the index, and every one must
    # find the same closest match as the exact scan.
    X, _ = motif_frames(6000, 96, 700, noise=0.01, seed=5, zero_every=zero_every)
    exact = build_audio_oracle(X, threshold=threshold, metric=metric, search="exact")
    approx = build_audio_oracle(X, threshold=threshold, metric=metric, search="approximate")
    assert exact.search == {"mode": "exact", "requested": "exact"}
    assert approx.search["mode"] == "approximate" and approx.search["requested"] == "approximate"
    assert exact.transitions(0).size > oracle_mod.APPROX_MIN_ROOT
    assert approx.search["index_searches"] > 1000
    assert approx.search["indexed"] >= oracle_mod.APPROX_MIN_ROOT
    assert_same_audio_oracle(approx, exact)
    assert check_oracle(approx, features=X) == check_oracle(exact, features=X)


def test_auto_search_switches_to_the_index_above_its_threshold_and_equals_exact(monkeypatch):
    X, _ = motif_frames(5000, 768, 400, noise=0.01, seed=8)
    exact = build_audio_oracle(X, threshold=0.3, search="exact")
    auto_small = build_audio_oracle(X, threshold=0.3)  # 400 root children x 768: below the threshold
    assert auto_small.search == {"mode": "exact", "requested": "auto"}
    assert_same_audio_oracle(auto_small, exact)
    monkeypatch.setattr(audio_mod, "APPROX_MIN_WORK", 300 * 768)
    auto = build_audio_oracle(X, threshold=0.3)
    assert auto.search["mode"] == "approximate" and auto.search["requested"] == "auto"
    assert auto.search["indexed_from_frame"] > 0 and auto.search["projected_dim"] == 64
    assert_same_audio_oracle(auto, exact)


def test_approximate_search_on_low_rank_frames_equals_exact(monkeypatch):
    # Frames in a 3-D subspace of 100-D: the projection has fewer axes than
    # it asks for, which must not change a single decision.
    monkeypatch.setattr(audio_mod, "_AO_BLOCK", 64)
    rng = np.random.default_rng(3)
    protos = rng.standard_normal((600, 3)) @ rng.standard_normal((3, 100))
    labels = rng.integers(0, 600, 3000)
    X = protos[labels] + 1e-4 * (rng.standard_normal((3000, 3)) @ rng.standard_normal((3, 100)))
    exact = build_audio_oracle(X, threshold=0.05, metric="euclidean", search="exact")
    approx = build_audio_oracle(X, threshold=0.05, metric="euclidean", search="approximate")
    assert approx.search["mode"] == "approximate" and approx.search["projected_dim"] <= 3
    assert_same_audio_oracle(approx, exact)


def test_approximate_oracle_on_noise_keeps_every_invariant_and_is_deterministic():
    # iid rows with a threshold in the tail of the distance distribution:
    # the exact oracle links some frames, the index may miss some of them,
    # but a link it makes is always within the threshold and the oracle is
    # a valid one, the same on every run.
    X = np.random.default_rng(4).standard_normal((3000, 48)).astype(np.float32)
    d = 1.0 - (X[:300] / np.linalg.norm(X[:300], axis=1, keepdims=True)) @ \
        (X[:300] / np.linalg.norm(X[:300], axis=1, keepdims=True)).T
    theta = float(np.quantile(d[np.triu_indices(300, 1)], 0.002))
    exact = build_audio_oracle(X, threshold=theta, search="exact")
    a = build_audio_oracle(X, threshold=theta, search="approximate")
    b = build_audio_oracle(X, threshold=theta, search="approximate")
    assert a.search["mode"] == "approximate"
    assert_same_audio_oracle(a, b)
    assert a.search == b.search
    assert [v for v in check_oracle(a, features=X) if v["severity"] == "error"] == []
    linked = np.flatnonzero(a.sfx[1:] > 0) + 1
    assert linked.size > 0 and np.sum(exact.sfx[1:] > 0) > 0
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    dist = 1.0 - np.einsum("ij,ij->i", Xn[linked - 1], Xn[a.sfx[linked] - 1])
    assert np.all(dist < theta)
    # where both found a match for a frame whose history agrees, it is the same closest one
    agree = np.mean(a.sfx == exact.sfx)
    assert agree > 0.5


def test_search_option_validation_and_threshold_sweep():
    X, _ = motif_frames(400, 16, 6, noise=0.01, seed=1)
    with pytest.raises(OracleError, match="search"):
        build_audio_oracle(X, threshold=0.3, search="fast")
    exact = ir_threshold_sweep(X, thresholds=[0.1, 0.3], search="exact")
    auto = ir_threshold_sweep(X, thresholds=[0.1, 0.3])
    assert exact == auto
    empty = build_audio_oracle(np.zeros((0, 4)), threshold=0.3, search="approximate")
    assert empty.search == {"mode": "exact", "requested": "approximate"}


def test_search_record_survives_meta_and_drops_junk():
    X, _ = motif_frames(3000, 32, 700, noise=0.01, seed=2)
    o = build_audio_oracle(X, threshold=0.3, search="approximate")
    meta = json.loads(json.dumps(o.to_meta()))
    back = Oracle.from_arrays(meta, o.to_arrays())
    assert back.search == o.search and back.search["mode"] == "approximate"
    meta["search"] = {"mode": "exact", "nested": {"a": 1}, "long": "x" * 500}
    assert Oracle.from_arrays(meta, o.to_arrays()).search == {"mode": "exact"}
    meta["search"] = ["not", "a", "dict"]
    assert Oracle.from_arrays(meta, o.to_arrays()).search is None
    assert build_factor_oracle(codes_of(TEXT)).to_meta().get("search") is None


def test_small_checks_run_interpreted_with_the_compiled_results(monkeypatch):
    # Small inputs run the kernels' own source in the interpreter (no numba
    # start-up for `chandra inspect`); they must decide exactly as compiled.
    rng = np.random.default_rng(12)
    sym = rng.integers(0, 3, 700)
    X, _ = motif_frames(600, 24, 9, noise=0.05, seed=12)
    fo = build_factor_oracle(sym)
    ao = build_audio_oracle(X, threshold=0.2)
    broken = Oracle(kind="tokens", sfx=fo.sfx, lrs=fo.lrs + (np.arange(fo.n_states) % 7 == 3), trn_ptr=fo.trn_ptr,
                    trn_dst=fo.trn_dst, rep=fo.rep)
    far = Oracle(kind="features", sfx=ao.sfx, lrs=ao.lrs, trn_ptr=ao.trn_ptr, trn_dst=ao.trn_dst,
                 threshold=0.01, metric="cosine", rep=ao.rep)

    def decisions(found):  # messages quote distances, summed in another order when interpreted
        return [(v["code"], v["state"], v["count"], v["severity"]) for v in found]

    def results():
        return (exact_lrs(sym), decisions(check_oracle(fo, symbols=sym)), decisions(check_oracle(broken, symbols=sym)),
                decisions(check_oracle(ao, features=X)), decisions(check_oracle(far, features=X)),
                information_rate(fo), information_rate_profile(ao).tolist(), oracle_health(ao))

    _kernels._materialise_kernels()  # whatever ran before, compile now
    compiled = results()
    assert _kernels._INTERPRETABLE == {"_sam_kernel", "_row_sqnorms", "_pair_dist_kernel", "_context_check",
                                      "_ir_profile"}
    for name in _kernels._INTERPRETABLE:  # what a fresh process runs for small inputs
        monkeypatch.setattr(_kernels, name, _kernels._interpreted(name))
    with np.errstate(over="raise"):  # the interpreted hashing must not warn (it wraps on purpose)
        interpreted = results()
    assert not hasattr(_kernels._context_check, "py_func")  # really the interpreter this time
    np.testing.assert_array_equal(interpreted[0][0], compiled[0][0])
    np.testing.assert_array_equal(interpreted[0][1], compiled[0][1])
    assert interpreted[1:] == compiled[1:]
    assert interpreted[2] and interpreted[4]  # the corrupted oracles are caught both ways
