"""The --where parser: grammar, precedence, missing values, errors with positions."""

from __future__ import annotations

import math

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
    with pytest.raises(ChandraError):  # an argument error (ParameterError), see below
        c.weights(EVENTS, factor=0.0)
    msg = parse_where("consonance > 2").explain_empty(EVENTS)
    assert msg.startswith("no frame satisfies 'consonance > 2'")
    assert "0.95" in msg and "3 of 4 frames" in msg
    assert "missing in all" in parse_where("x > 1").explain_empty([{"x": None}])


def test_non_string_is_refused():
    with pytest.raises(ConstraintError):
        parse_where(3)  # type: ignore[arg-type]


# --------------------------------------------------- property test: the whole grammar
#
# Random expressions over every construct of the grammar -- chained
# comparisons, field-to-field comparisons, ``in`` / ``not in`` sets with
# numbers, strings, booleans and None, ``== None`` / ``!= None``, strings
# and booleans as literals, not/and/or with minimal or extra parentheses,
# keywords in any case -- against events whose fields mix numbers, strings,
# booleans, None, NaN and absent keys. The reference below is written from
# the module docstring's rules, independently of the implementation.
# Expressions stay small (at most 5 comparisons).

_G_FIELDS = ["x", "y", "s"]
_G_ORDER = (">", ">=", "<", "<=")
_G_OPS = _G_ORDER + ("==", "!=")
_G_MISSING = object()  # an absent key


def _g_missing(v) -> bool:
    return v is _G_MISSING or v is None or (isinstance(v, float) and math.isnan(v))


def _g_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _g_same_kind(a, b) -> bool:
    return (_g_number(a) and _g_number(b)) or type(a) is type(b)


def _g_kleene_and(values):
    values = list(values)
    if any(v is False for v in values):
        return False
    return True if all(v is True for v in values) else None


def _g_kleene_or(values):
    values = list(values)
    if any(v is True for v in values):
        return True
    return False if all(v is False for v in values) else None


def _g_pair(a, op, b, event):
    """One comparison of a chain: True, False or None (unknown)."""
    (ka, va), (kb, vb) = a, b
    if (ka == "lit" and va is None) or (kb == "lit" and vb is None):
        other_kind, other = (kb, vb) if ka == "lit" and va is None else (ka, va)
        missing = _g_missing(event.get(other, _G_MISSING))
        return missing if op == "==" else not missing  # "field == None" is two-valued
    x = event.get(va, _G_MISSING) if ka == "field" else va
    y = event.get(vb, _G_MISSING) if kb == "field" else vb
    if _g_missing(x) or _g_missing(y):
        return None
    if op == "==":
        return _g_same_kind(x, y) and x == y
    if op == "!=":
        return not (_g_same_kind(x, y) and x == y)
    if not _g_same_kind(x, y):
        return None  # numbers and text (or booleans) do not order
    return {">": x > y, ">=": x >= y, "<": x < y, "<=": x <= y}[op]


def _g_eval(node, event):
    kind = node[0]
    if kind == "cmp":
        operands, ops = node[1], node[2]
        return _g_kleene_and(_g_pair(operands[i], ops[i], operands[i + 1], event) for i in range(len(ops)))
    if kind == "in":
        _, field, members, negated, _ = node
        v = event.get(field, _G_MISSING)
        if _g_missing(v):
            hit = any(m is None for m in members)  # missing is "in" a set holding None
        else:
            hit = any(m is not None and _g_same_kind(v, m) and v == m for m in members)
        return (not hit) if negated else hit
    if kind == "not":
        r = _g_eval(node[1], event)
        return None if r is None else not r
    values = [_g_eval(child, event) for child in node[1:]]
    return _g_kleene_and(values) if kind == "and" else _g_kleene_or(values)


def _g_refused(node, events) -> bool:
    """Ordering a numeric field against a text literal is refused (an error,
    not a filter); a field is numeric when all its present values are numbers."""
    kind = node[0]
    if kind == "cmp":
        operands, ops = node[1], node[2]
        for (ka, va), op, (kb, vb) in zip(operands, ops, operands[1:]):
            if op not in _G_ORDER:
                continue
            for (k1, v1), (k2, v2) in (((ka, va), (kb, vb)), ((kb, vb), (ka, va))):
                if k1 == "lit" and isinstance(v1, str) and k2 == "field":
                    present = [ev[v2] for ev in events if not _g_missing(ev.get(v2, _G_MISSING))]
                    if all(_g_number(v) for v in present):
                        return True
        return False
    if kind == "in":
        return False
    return any(_g_refused(child, events) for child in node[1:])


def _g_fields(node) -> list[str]:
    if node[0] == "cmp":
        return [v for k, v in node[1] if k == "field"]
    if node[0] == "in":
        return [node[1]]
    return [name for child in node[1:] for name in _g_fields(child)]


def _g_literal(value, draw_style) -> str:
    if value is None:
        return draw_style(["None", "none", "NULL", "null"])
    if isinstance(value, bool):
        return draw_style(["True", "true", "TRUE"] if value else ["False", "false"])
    if isinstance(value, str):
        return draw_style([f"'{value}'", f'"{value}"'])
    return repr(value)


_G_PRECEDENCE = {"or": 0, "and": 1, "not": 2, "cmp": 3, "in": 3}


def _g_render(node, draw_style, parent: int = 0) -> str:
    kind = node[0]
    kw = lambda word: draw_style([word, word.upper(), word.capitalize()])  # noqa: E731
    if kind == "cmp":
        operands, ops = node[1], node[2]
        parts = [v if k == "field" else _g_literal(v, draw_style) for k, v in operands]
        text = parts[0] + "".join(f" {op} {p}" for op, p in zip(ops, parts[1:]))
    elif kind == "in":
        _, field, members, negated, bracket = node
        close = "}" if bracket == "{" else "]"
        inner = ", ".join(_g_literal(m, draw_style) for m in members)
        text = f"{field} {kw('not') + ' ' if negated else ''}{kw('in')} {bracket}{inner}{close}"
    elif kind == "not":
        text = f"{kw('not')} {_g_render(node[1], draw_style, _G_PRECEDENCE['not'])}"
    else:
        mine = _G_PRECEDENCE[kind]
        text = f" {kw(kind)} ".join(_g_render(c, draw_style, mine + 1) for c in node[1:])
    needs = _G_PRECEDENCE[kind] < parent
    if needs or draw_style([False, False, False, True]):  # sometimes redundant parentheses
        text = f"({text})"
    return text


_g_value = st.one_of(
    st.integers(-2, 2), st.sampled_from([0.5, -1.5]), st.sampled_from(["a", "b"]), st.booleans(),
    st.none(), st.just(float("nan")),
)
_g_literal_value = st.one_of(st.integers(-2, 2), st.sampled_from([0.5, -1.5]), st.sampled_from(["a", "b"]),
                             st.booleans())


@st.composite
def _g_comparison(draw):
    n = draw(st.integers(2, 3))
    ops = [draw(st.sampled_from(_G_OPS)) for _ in range(n - 1)]
    operands = []
    for i in range(n):
        prev_field = i > 0 and operands[i - 1][0] == "field"
        around = ops[max(i - 1, 0): i + 1]
        # every adjacent pair needs a field; None only next to == / !=
        if i > 0 and not prev_field:
            kind = "field"
        else:
            kind = draw(st.sampled_from(["field", "lit"]))
        if kind == "field":
            operands.append(("field", draw(st.sampled_from(_G_FIELDS))))
        elif all(op in ("==", "!=") for op in around) and draw(st.booleans()):
            operands.append(("lit", None))
        else:
            operands.append(("lit", draw(_g_literal_value)))
    if all(k == "lit" for k, _ in operands[:2]):  # pragma: no cover - excluded above
        operands[1] = ("field", "x")
    return ("cmp", operands, ops)


@st.composite
def _g_membership(draw):
    members = draw(st.lists(st.one_of(_g_literal_value, st.none()), max_size=4))
    return ("in", draw(st.sampled_from(_G_FIELDS)), members, draw(st.booleans()), draw(st.sampled_from("{[")))


_g_tree = st.recursive(
    st.one_of(_g_comparison(), _g_membership()),
    lambda children: st.one_of(
        st.tuples(st.just("not"), children),
        st.tuples(st.sampled_from(["and", "or"]), children, children),
    ),
    max_leaves=5,
)
_g_event = st.fixed_dictionaries({name: st.one_of(_g_value, st.just(_G_MISSING)) for name in _G_FIELDS}).map(
    lambda ev: {k: v for k, v in ev.items() if v is not _G_MISSING})  # some keys absent


@settings(max_examples=300, deadline=None)
@given(tree=_g_tree, events=st.lists(_g_event, min_size=1, max_size=8), data=st.data())
def test_whole_grammar_matches_reference_evaluator(tree, events, data):
    style = lambda options: data.draw(st.sampled_from(options))  # noqa: E731
    text = _g_render(tree, style)
    constraint = parse_where(text)
    if not set(_g_fields(tree)) <= {key for ev in events for key in ev}:
        with pytest.raises(ConstraintError, match="unknown field"):  # no event has that key at all
            constraint.mask(events)
        return
    if _g_refused(tree, events):
        with pytest.raises(ConstraintError, match="cannot order field"):
            constraint.mask(events)
        return
    got = constraint.mask(events).tolist()
    want = [_g_eval(tree, ev) is True for ev in events]
    assert got == want, (text, events)
    # describe() is a faithful rendering: parsing it again selects the same events
    assert parse_where(constraint.describe()).mask(events).tolist() == got


def test_a_bad_weight_is_a_parameter_error_naming_where_weight():
    from chandra.errors import ParameterError

    constraint = parse_where("consonance > 0.5")
    for bad in (0, -1.0, float("nan"), "2", True):
        with pytest.raises(ParameterError) as info:
            constraint.weights([{"consonance": 0.7}], factor=bad)
        assert info.value.parameter == "where_weight"
