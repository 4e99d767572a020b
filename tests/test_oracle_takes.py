"""Oracles over several takes: exact context within takes, no continuation across them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chandra.errors import ModelFormatError, OracleError
from chandra.oracle import (
    Oracle,
    build_audio_oracle,
    build_factor_oracle,
    check_oracle,
    exact_lrs,
    take_of_frames,
)


def _within_take_lrs(sym: list[int], take: np.ndarray) -> list[int]:
    """Brute force: longest suffix of frames ..i-1 inside its take that also ends earlier inside a take."""
    n = len(sym)
    out = [0]
    for i in range(1, n + 1):
        best = 0
        for length in range(1, i + 1):
            a = i - length
            if take[a] != take[i - 1]:
                break
            if not any(take[j - length] == take[j - 1] and sym[j - length:j] == sym[a:i] for j in range(length, i)):
                break
            best = length
        out.append(best)
    return out


takes_and_tokens = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(takes_and_tokens)
def test_factor_oracle_over_takes_has_exact_context_within_takes(parts):
    sym = [t for part in parts for t in part]
    starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
    oracle = build_factor_oracle(sym, take_starts=starts)
    assert check_oracle(oracle, symbols=sym) == []
    take = take_of_frames(starts if len(parts) > 1 else None, len(sym))
    assert oracle.lrs.tolist() == _within_take_lrs(sym, take)
    lrs, rep = exact_lrs(sym, take_starts=starts)
    assert lrs.tolist() == oracle.lrs.tolist() and rep.tolist() == oracle.rep.tolist()
    assert oracle.n_transitions <= 2 * len(sym) - 1
    for b in starts[1:]:
        assert int(b) + 1 not in oracle.transitions(int(b)).tolist()
    if len(parts) == 1:  # one take: the plain oracle
        plain = build_factor_oracle(sym)
        for key, value in plain.to_arrays().items():
            assert np.array_equal(oracle.to_arrays()[key], value)
        assert oracle.take_starts is None
    else:
        assert oracle.take_starts.tolist() == starts.tolist()


@settings(max_examples=60, deadline=None)
@given(takes_and_tokens, st.sampled_from(["cosine", "euclidean"]))
def test_audio_oracle_over_takes_is_cut_at_take_starts(parts, metric):
    sym = np.asarray([t for part in parts for t in part])
    X = np.eye(4)[sym] + 0.01  # one-hot-like frames: a threshold of 0.1 matches equal tokens only
    starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
    oracle = build_audio_oracle(X, threshold=0.1, metric=metric, take_starts=starts)
    assert [v for v in check_oracle(oracle, features=X) if v["severity"] == "error"] == []
    take = take_of_frames(starts if len(parts) > 1 else None, len(sym))
    for i in range(1, len(sym) + 1):
        k = int(oracle.sfx[i])
        run = 0
        while run < min(i, k) and take[i - 1 - run] == take[i - 1] and take[k - 1 - run] == take[k - 1] \
                and sym[i - 1 - run] == sym[k - 1 - run]:
            run += 1
        assert oracle.lrs[i] == (run if k > 0 else 0)
    for b in starts[1:]:
        assert int(b) + 1 not in oracle.transitions(int(b)).tolist()


def test_take_starts_are_checked():
    for bad, message in (([1, 3], "starts at frame 1"), ([0, 3, 3], "not strictly increasing"),
                         ([0, 9], "names frame 9"), ([], "is empty")):
        with pytest.raises(OracleError, match=message):
            build_factor_oracle([0, 1, 0, 1, 2], take_starts=bad)
    oracle = build_factor_oracle([0, 1, 0, 1, 2], take_starts=[0, 2])
    arrays = oracle.to_arrays()
    arrays["take_starts"] = np.array([0, 7])
    with pytest.raises(ModelFormatError, match="take_starts' names frame 7"):
        Oracle.from_arrays(oracle.to_meta(), arrays)
    back = Oracle.from_arrays(oracle.to_meta(), oracle.to_arrays())
    assert back.take_starts.tolist() == [0, 2]
