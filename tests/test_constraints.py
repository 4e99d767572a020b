"""The --where parser: grammar, precedence, missing values, errors with positions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chandra.constraints import Constraint, WhereSyntaxError, event_fields, parse_where
from chandra.errors import ChandraError, ConstraintError

EVENTS = [
    {"consonance": 0.8, "f0": None, "gesture_token": 3, "label": "a", "rms_db": -20.0},
    {"consonance": 0.2, "f0": 200.0, "gesture_token": 17, "label": "b", "rms_db": -50.0},
    {"consonance": float("nan"), "f0": 500.0, "gesture_token": 5, "rms_db": -30.0},
    {"consonance": 0.95, "f0": 110.0, "gesture_token": 17, "label": "a"},
]


def mask(text: str, events=EVENTS) -> list[bool]:
    return parse_where(text).mask(events).tolist()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("consonance > 0.7", [True, False, False, True]),
        ("consonance >= 0.8", [True, False, False, True]),
        ("consonance < 0.5", [False, True, False, False]),
        ("consonance <= 0.2", [False, True, False, False]),
        ("gesture_token == 17", [False, True, False, True]),
        ("gesture_token != 17", [True, False, True, False]),
        ("0.7 < consonance", [True, False, False, True]),
        ("gesture_token in {3, 17}", [True, True, False, True]),
        ("gesture_token not in {3, 17}", [False, False, True, False]),
        ("gesture_token in [5]", [False, False, True, False]),
        ("gesture_token in {}", [False, False, False, False]),
        ("100 <= f0 <= 400", [False, True, False, True]),
        ("label == 'a'", [True, False, False, True]),
        ('label in {"b"}', [False, True, False, False]),
        ("f0 == None", [True, False, False, False]),
        ("f0 != None", [False, True, True, True]),
        ("label in {'b', None}", [False, True, True, False]),
        ("rms_db > -40", [True, False, True, False]),
        ("consonance > 7e-1", [True, False, False, True]),
        ("consonance > 0.7 AND gesture_token == 3", [True, False, False, False]),
    ],
)
def test_comparisons(text, expected):
    assert mask(text) == expected


def test_missing_values_never_match_even_under_not():
    # f0 is None in event 0 and consonance NaN in event 2: both are missing.
    assert mask("f0 > 150") == [False, True, True, False]
    assert mask("not f0 > 150") == [False, False, False, True]
    assert mask("not consonance > 0.7") == [False, True, False, False]
    assert mask("not not consonance > 0.7") == [True, False, False, True]
    # unknown or true is true; unknown and false is false (Kleene logic)
    assert mask("f0 > 150 or gesture_token == 3") == [True, True, True, False]
    assert mask("not (f0 > 150 and gesture_token == 3)") == [False, True, True, True]


def test_event_lacking_a_key_is_missing():
    # event 2 has no "label" key at all
    assert mask("label != 'a'") == [False, True, False, False]
    assert mask("not label == 'a'") == [False, True, False, False]


def test_precedence_not_and_or():
    a = "gesture_token == 3 or gesture_token == 17 and consonance > 0.9"
    b = "gesture_token == 3 or (gesture_token == 17 and consonance > 0.9)"
    c = "(gesture_token == 3 or gesture_token == 17) and consonance > 0.9"
    assert mask(a) == mask(b) == [True, False, False, True]
    assert mask(c) == [False, False, False, True]
    assert parse_where(a).describe() == "(gesture_token == 3) or ((gesture_token == 17) and (consonance > 0.9))"
    d = parse_where("not consonance > 0.7 and gesture_token == 17")
    assert d.describe() == "(not (consonance > 0.7)) and (gesture_token == 17)"
    assert d.mask(EVENTS).tolist() == [False, True, False, False]


def test_describe_round_trips():
    texts = ["100 <= f0 <= 400 or f0 == None", "gesture_token not in {3, 17} and label == 'a'",
             "not (consonance > 0.5 or rms_db < -40)", "rms_db > -40.5"]
    for text in texts:
        c = parse_where(text)
        again = parse_where(c.describe())
        assert again.describe() == c.describe()
        assert again.mask(EVENTS).tolist() == c.mask(EVENTS).tolist()


def test_fields_and_event_fields():
    c = parse_where("consonance > 0.5 and (f0 < 300 or consonance < 0.9)")
    assert c.fields == ["consonance", "f0"]
    assert event_fields(EVENTS) == ["consonance", "f0", "gesture_token", "label", "rms_db"]


def test_field_against_field():
    events = [{"a": 1, "b": 2}, {"a": 3, "b": 2}, {"a": None, "b": 2}]
    assert parse_where("a > b").mask(events).tolist() == [False, True, False]


@pytest.mark.parametrize(
    "text, position, reason",
    [
        ("consonance >", 12, "expected a field name or a value after '>'"),
        ("consonance = 0.7", 11, "use '=='"),
        ("gesture_token in {3, 17", 23, "expected ',' or '}'"),
        ("(consonance > 0.7", 17, "expected ')'"),
        ("consonance > 0.7)", 16, "unmatched ')'"),
        ("consonance 0.7", 11, "expected a comparison"),
        ("", 0, "empty expression"),
        ("   ", 3, "empty expression"),
        ("0.3 < 0.7", 0, "needs a field name"),
        ("100 <= f0 <= 400 <= 1000", 13, "needs a field name"),
        ("f0 > None", 5, "None can only be used"),
        ("a > 1 && b > 2", 6, "use 'and'"),
        ("a > 1 || b > 2", 6, "use 'or'"),
        ("!a", 0, "use 'not'"),
        ("a ~ 1", 2, "unexpected character"),
        ("label == 'a", 9, "unterminated string"),
        ("x in y", 5, "expected a set"),
        ("x in {y}", 6, "set members must be"),
        ("a not b", 6, "expected 'in' after 'not'"),
        ("a > 1 and", 9, "expected a field name or a value"),
        ("a > 1 or or b > 1", 9, "expected a field name or a value"),
        ("a > - b", 6, "expected a number after '-'"),
        ("__import__('os').system('true')", 10, "expected a comparison"),
    ],
)
def test_syntax_errors_point_at_position(text, position, reason):
    with pytest.raises(WhereSyntaxError) as info:
        parse_where(text)
    err = info.value
    assert isinstance(err, ConstraintError) and isinstance(err, ChandraError)
    assert err.position == position
    assert reason in str(err)
    message = str(err)
    assert "\n" not in message
    assert f"column {position + 1}" in message
    # the marker sits exactly at the problem
    marked = message.split("(marked ^): ", 1)[1]
    assert marked == text[:position] + "^" + text[position:]


def test_unknown_field_lists_available_fields():
    c = parse_where("consonanse > 0.7")
    with pytest.raises(ConstraintError) as info:
        c.mask(EVENTS)
    message = str(info.value)
    assert "unknown field 'consonanse'" in message
    assert "did you mean 'consonance'" in message
    assert "available fields: consonance, f0, gesture_token, label, rms_db" in message


def test_unknown_field_checked_at_parse_time_when_fields_given():
    with pytest.raises(ConstraintError, match="available fields: a, b"):
        parse_where("c > 1", fields=["a", "b"])
    assert isinstance(parse_where("a > 1", fields=["a", "b"]), Constraint)


def test_list_fields_and_type_mismatch_are_refused():
    with pytest.raises(ConstraintError, match="'ratios' holds list"):
        parse_where("ratios > 1").mask([{"ratios": [1.5, 2.0]}])
    with pytest.raises(ConstraintError, match="cannot order field 'consonance'"):
        parse_where("consonance > 'high'").mask(EVENTS)
    # equality with a different type is simply false, not an error
    assert mask("consonance == 'high'") == [False, False, False, False]


def test_weights_and_explain_empty():
    c = parse_where("consonance > 0.7")
    assert c.weights(EVENTS, factor=3.0).tolist() == [3.0, 1.0, 1.0, 3.0]
    with pytest.raises(ConstraintError):
        c.weights(EVENTS, factor=0.0)
    msg = parse_where("consonance > 2").explain_empty(EVENTS)
    assert msg.startswith("no frame satisfies 'consonance > 2'")
    assert "0.95" in msg and "3 of 4 frames" in msg
    assert "missing in all" in parse_where("x > 1").explain_empty([{"x": None}])


def test_non_string_is_refused():
    with pytest.raises(ConstraintError):
        parse_where(3)  # type: ignore[arg-type]


# ----------------------------------------------------------------- property test

_FIELDS = ["x", "y"]
_OPS = [">", ">=", "<", "<=", "==", "!="]


def _reference(node, event):
    """Kleene three-valued reference: True, False or None (unknown)."""
    kind = node[0]
    if kind == "cmp":
        _, fld, op, c = node
        v = event.get(fld)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return {">": v > c, ">=": v >= c, "<": v < c, "<=": v <= c, "==": v == c, "!=": v != c}[op]
    if kind == "not":
        r = _reference(node[1], event)
        return None if r is None else not r
    left, right = _reference(node[1], event), _reference(node[2], event)
    if kind == "and":
        if left is False or right is False:
            return False
        return True if (left and right) else None
    if left is True or right is True:
        return True
    return False if (left is False and right is False) else None


def _render(node) -> str:
    kind = node[0]
    if kind == "cmp":
        return f"{node[1]} {node[2]} {node[3]}"
    if kind == "not":
        return f"not ({_render(node[1])})"
    return f"({_render(node[1])}) {kind} ({_render(node[2])})"


_leaf = st.tuples(st.just("cmp"), st.sampled_from(_FIELDS), st.sampled_from(_OPS), st.integers(-2, 2))
_tree = st.recursive(
    _leaf,
    lambda children: st.one_of(
        st.tuples(st.just("not"), children),
        st.tuples(st.sampled_from(["and", "or"]), children, children),
    ),
    max_leaves=6,
)
_value = st.one_of(st.none(), st.integers(-3, 3), st.just(float("nan")))
_events = st.lists(st.fixed_dictionaries({"x": _value, "y": _value}), min_size=1, max_size=8)


@settings(max_examples=80, deadline=None)
@given(_tree, _events)
def test_matches_three_valued_reference(tree, events):
    got = parse_where(_render(tree)).mask(events)
    want = np.array([_reference(tree, ev) is True for ev in events])
    assert got.tolist() == want.tolist()
