"""Constraints on event fields for guided improvisation (the ``--where`` option).

A constraint is a small boolean expression over the fields of a model's
events, for example::

    consonance > 0.7
    gesture_token in {3, 17} and not rms_db < -40
    100 <= f0 <= 400 or f0 == None
    (centroid < 2000 or consonance >= 0.9) and gesture_token != 5

Grammar (keywords are case-insensitive, field names are not)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" expr ")" | comparison
    comparison := operand (cmp operand)+            # chains like Python: a < b < c
                | operand ["not"] "in" set
    cmp        := ">" | ">=" | "<" | "<=" | "==" | "!="
    set        := "{" [literal ("," literal)*] "}"   # "[...]" also accepted
    operand    := field | literal
    literal    := number | 'string' | "string" | None | True | False

Precedence is ``not`` over ``and`` over ``or``, as in Python. The text is
tokenised and parsed by hand; nothing is ever evaluated by Python.

Missing values
    A field that an event lacks, that is ``None``, or that is a NaN number is
    *missing*. Comparisons against a missing value are *unknown*, not false,
    and logic is three-valued (Kleene): ``not unknown`` is unknown, so
    ``not consonance > 0.7`` does not match events without a consonance
    either. Only definitely-true events match. The one way to select missing
    values is the explicit test ``field == None`` (and ``field != None`` for
    present ones).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from chandra.errors import ConstraintError, ParameterError

__all__ = [
    "Constraint",
    "WhereSyntaxError",
    "parse_where",
    "event_fields",
    "MAX_WHERE_CHARS",
    "MAX_WHERE_DEPTH",
]

#: Longest ``--where`` expression accepted (characters).
MAX_WHERE_CHARS = 4096
#: Deepest nesting of parentheses and ``not`` accepted.
MAX_WHERE_DEPTH = 32
#: Longest number literal accepted (characters).
MAX_NUMBER_CHARS = 100
_CONTEXT_CHARS = 60

_COMPARATORS = (">=", "<=", "==", "!=", ">", "<")
_KEYWORDS = {"and", "or", "not", "in"}
_CONSTANTS = {"none": None, "null": None, "true": True, "false": False}


class WhereSyntaxError(ConstraintError):
    """A ``--where`` expression that cannot be parsed.

    Attributes
    ----------
    text : str
        The full expression.
    position : int
        0-based character offset of the problem in ``text``.
    """

    def __init__(self, message: str, text: str, position: int) -> None:
        self.text = text
        self.position = int(position)
        self.reason = message
        # Long expressions are shown as a window around the problem, so the
        # message stays one readable line.
        a, b = max(0, self.position - _CONTEXT_CHARS), self.position + _CONTEXT_CHARS
        marked = (("..." if a else "") + text[a: self.position] + "^" + text[self.position: b]
                  + ("..." if b < len(text) else ""))
        super().__init__(
            f"invalid where expression: {message} at column {self.position + 1} "
            f"(marked ^): {marked}"
        )


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num" | "str" | "const" | "ident" | "kw" | "op" | "punct" | "end"
    value: Any
    pos: int
    text: str


_NUMBER_RE = re.compile(r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tokenise(text: str) -> list[_Tok]:
    """Tokens of ``text``; a lexical error becomes a final ``"error"`` token.

    Deferring the error lets the parser report whichever problem comes
    first in the text.
    """
    toks: list[_Tok] = []
    try:
        _lex(text, toks)
    except WhereSyntaxError as exc:
        toks.append(_Tok("error", exc, exc.position, ""))
        return toks
    toks.append(_Tok("end", None, len(text), ""))
    return toks


def _lex(text: str, toks: list[_Tok]) -> None:
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        m = _NUMBER_RE.match(text, i)
        if m:
            raw = m.group(0)
            if len(raw) > MAX_NUMBER_CHARS:
                raise WhereSyntaxError(f"number literal longer than {MAX_NUMBER_CHARS} characters", text, i)
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
            toks.append(_Tok("num", value, i, raw))
            i = m.end()
            continue
        m = _IDENT_RE.match(text, i)
        if m:
            word = m.group(0)
            low = word.lower()
            if low in _KEYWORDS:
                toks.append(_Tok("kw", low, i, word))
            elif low in _CONSTANTS:
                toks.append(_Tok("const", _CONSTANTS[low], i, word))
            else:
                toks.append(_Tok("ident", word, i, word))
            i = m.end()
            continue
        if ch in "'\"":
            end = text.find(ch, i + 1)
            if end < 0:
                raise WhereSyntaxError("unterminated string", text, i)
            toks.append(_Tok("str", text[i + 1 : end], i, text[i : end + 1]))
            i = end + 1
            continue
        two = text[i : i + 2]
        if two in _COMPARATORS:
            toks.append(_Tok("op", two, i, two))
            i += 2
            continue
        if ch in "<>":
            toks.append(_Tok("op", ch, i, ch))
            i += 1
            continue
        if ch == "=":
            raise WhereSyntaxError("use '==' to test equality", text, i)
        if two in ("&&", "||"):
            word = "and" if two == "&&" else "or"
            raise WhereSyntaxError(f"use '{word}' instead of '{two}'", text, i)
        if ch == "!":
            raise WhereSyntaxError("use 'not' (or '!=') instead of '!'", text, i)
        if ch in "(){}[],-+":
            toks.append(_Tok("punct", ch, i, ch))
            i += 1
            continue
        raise WhereSyntaxError(f"unexpected character {ch!r}", text, i)


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class _Field:
    name: str
    pos: int


@dataclass(frozen=True)
class _Literal:
    value: Any
    pos: int


@dataclass(frozen=True)
class _Compare:
    # operands[i] op[i] operands[i+1]; a chain is the conjunction of the pairs
    operands: tuple
    ops: tuple


@dataclass(frozen=True)
class _Member:
    field: _Field
    values: tuple
    negated: bool


@dataclass(frozen=True)
class _Not:
    child: Any


@dataclass(frozen=True)
class _BoolOp:
    op: str  # "and" | "or"
    children: tuple


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenise(text)
        self.i = 0
        self.depth = 0  # open parentheses and pending 'not's (bounded: the parser recurses on them)

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_WHERE_DEPTH:
            raise self.error(f"nested deeper than {MAX_WHERE_DEPTH} levels of parentheses and 'not'", tok)

    @property
    def tok(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind == "error":
            raise tok.value
        return tok

    def advance(self) -> _Tok:
        tok = self.tok
        self.i += 1
        return tok

    def error(self, message: str, at: _Tok | int | None = None) -> WhereSyntaxError:
        """A syntax error at a token, a character offset, or the current token."""
        if at is None:
            at = self.toks[self.i]
        pos = at if isinstance(at, int) else at.pos
        return WhereSyntaxError(message, self.text, pos)

    def describe_tok(self, tok: _Tok) -> str:
        return "end of expression" if tok.kind == "end" else repr(tok.text)

    def parse(self) -> Any:
        if self.tok.kind == "end":
            raise self.error("empty expression")
        node = self.parse_or()
        if self.tok.kind != "end":
            if self.tok.kind == "punct" and self.tok.value == ")":
                raise self.error("unmatched ')'")
            raise self.error(f"expected 'and', 'or' or end of expression, found {self.describe_tok(self.tok)}")
        return node

    def parse_or(self) -> Any:
        children = [self.parse_and()]
        while self.tok.kind == "kw" and self.tok.value == "or":
            self.advance()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else _BoolOp("or", tuple(children))

    def parse_and(self) -> Any:
        children = [self.parse_not()]
        while self.tok.kind == "kw" and self.tok.value == "and":
            self.advance()
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else _BoolOp("and", tuple(children))

    def parse_not(self) -> Any:
        if self.tok.kind == "kw" and self.tok.value == "not":
            self.enter(self.advance())
            node = _Not(self.parse_not())
            self.depth -= 1
            return node
        return self.parse_primary()

    def parse_primary(self) -> Any:
        tok = self.tok
        if tok.kind == "punct" and tok.value == "(":
            self.enter(self.advance())
            node = self.parse_or()
            self.depth -= 1
            if not (self.tok.kind == "punct" and self.tok.value == ")"):
                raise self.error(f"expected ')' to close the '(' at column {tok.pos + 1}, "
                                 f"found {self.describe_tok(self.tok)}")
            self.advance()
            return node
        return self.parse_comparison()

    def parse_operand(self, after: str | None) -> Any:
        tok = self.tok
        if tok.kind == "ident":
            self.advance()
            return _Field(tok.value, tok.pos)
        if tok.kind in ("num", "str", "const"):
            self.advance()
            return _Literal(tok.value, tok.pos)
        if tok.kind == "punct" and tok.value in "-+":
            self.advance()
            num = self.tok
            if num.kind != "num":
                raise self.error(f"expected a number after '{tok.value}'")
            self.advance()
            return _Literal(-num.value if tok.value == "-" else num.value, tok.pos)
        what = f"after {after!r}" if after else "here"
        raise self.error(f"expected a field name or a value {what}, found {self.describe_tok(tok)}")

    def parse_comparison(self) -> Any:
        first_tok = self.tok
        left = self.parse_operand(None)
        tok = self.tok
        negated = False
        if tok.kind == "kw" and tok.value == "not":
            self.advance()
            nxt = self.tok
            if not (nxt.kind == "kw" and nxt.value == "in"):
                raise self.error("expected 'in' after 'not'", nxt)
            negated = True
            tok = self.tok
        if tok.kind == "kw" and tok.value == "in":
            self.advance()
            if not isinstance(left, _Field):
                raise self.error("the left side of 'in' must be a field name", first_tok)
            return _Member(left, self.parse_set(), negated)
        if tok.kind != "op":
            if isinstance(left, _Field):
                raise self.error(f"expected a comparison (>, >=, <, <=, ==, !=, in) after "
                                 f"field {left.name!r}, found {self.describe_tok(tok)}")
            raise self.error(f"expected a comparison operator, found {self.describe_tok(tok)}")
        operands = [left]
        ops = []
        while self.tok.kind == "op":
            op_tok = self.advance()
            operands.append(self.parse_operand(op_tok.value))
            ops.append(op_tok.value)
        for a, b, op in zip(operands[:-1], operands[1:], ops):
            if not isinstance(a, _Field) and not isinstance(b, _Field):
                raise self.error("a comparison needs a field name on at least one side",
                                 a.pos)
            for side in (a, b):
                if isinstance(side, _Literal) and side.value is None and op not in ("==", "!="):
                    raise self.error(f"None can only be used with '==' or '!=', not {op!r}",
                                     side.pos)
        return _Compare(tuple(operands), tuple(ops))

    def parse_set(self) -> tuple:
        open_tok = self.tok
        closers = {"{": "}", "[": "]", "(": ")"}
        if not (open_tok.kind == "punct" and open_tok.value in closers):
            raise self.error(f"expected a set like {{3, 17}} after 'in', found {self.describe_tok(open_tok)}")
        close = closers[open_tok.value]
        self.advance()
        values: list[Any] = []
        if self.tok.kind == "punct" and self.tok.value == close:
            self.advance()
            return tuple(values)
        while True:
            lit = self.parse_operand("in")
            if isinstance(lit, _Field):
                raise self.error("set members must be numbers, strings, None, True or False",
                                 lit.pos)
            values.append(lit.value)
            if self.tok.kind == "punct" and self.tok.value == ",":
                self.advance()
                continue
            if self.tok.kind == "punct" and self.tok.value == close:
                self.advance()
                return tuple(values)
            raise self.error(f"expected ',' or '{close}' in the set opened at column "
                             f"{open_tok.pos + 1}, found {self.describe_tok(self.tok)}")


# --------------------------------------------------------------------------- evaluation


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class _Column:
    """One operand's values over n events: numeric float64 or generic object."""

    def __init__(self, values: np.ndarray, present: np.ndarray, numeric: bool, label: str,
                 *, literal: bool = False, literal_value: Any = None) -> None:
        self.values = values
        self.present = present
        self.numeric = numeric
        self.label = label
        self.literal = literal
        self.literal_value = literal_value
        self.none_literal = literal and literal_value is None

    @classmethod
    def from_field(cls, name: str, events: Sequence[dict]) -> "_Column":
        raw = [ev.get(name) for ev in events]
        present = np.fromiter((not _is_missing(v) for v in raw), dtype=bool, count=len(raw))
        for v in raw:
            if isinstance(v, (list, tuple, dict, np.ndarray)):
                raise ConstraintError(
                    f"field {name!r} holds {type(v).__name__} values, which a where expression cannot compare; "
                    "use a scalar field"
                )
        if all(_is_number(v) for v, p in zip(raw, present) if p):
            vals = np.array([float(v) if p else np.nan for v, p in zip(raw, present)], dtype=np.float64)
            return cls(vals, present, True, name)
        obj = np.empty(len(raw), dtype=object)
        obj[:] = raw
        return cls(obj, present, False, name)

    @classmethod
    def from_literal(cls, value: Any, n: int) -> "_Column":
        present = np.full(n, value is not None)
        if _is_number(value):
            return cls(np.full(n, float(value)), present, True, repr(value),
                       literal=True, literal_value=value)
        obj = np.empty(n, dtype=object)
        obj[:] = [value] * n
        return cls(obj, present, False, _fmt_literal(value), literal=True, literal_value=value)


_NUMPY_CMP = {
    ">": np.greater, ">=": np.greater_equal, "<": np.less,
    "<=": np.less_equal, "==": np.equal, "!=": np.not_equal,
}


def _py_compare(a: Any, op: str, b: Any) -> bool | None:
    """Compare two present scalars; ``None`` when ordering types do not mix."""
    if op == "==":
        return bool(a == b) if _same_kind(a, b) else False
    if op == "!=":
        return bool(a != b) if _same_kind(a, b) else True
    if not _same_kind(a, b):
        return None
    return bool(_NUMPY_CMP[op](a, b))


def _same_kind(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return True
    return type(a) is type(b)


def _compare_pair(a: _Column, op: str, b: _Column) -> tuple[np.ndarray, np.ndarray]:
    """Return (definitely_true, definitely_false) boolean arrays."""
    if a.none_literal or b.none_literal:
        missing = ~(b if a.none_literal else a).present
        if op == "==":
            return missing, ~missing
        return ~missing, missing  # the parser only lets "==" and "!=" meet None
    both = a.present & b.present
    if a.numeric and b.numeric:
        with np.errstate(invalid="ignore"):
            res = _NUMPY_CMP[op](a.values, b.values)
        return both & res, both & ~res
    if op not in ("==", "!="):
        # ordering a numeric field against a text literal is a typo, not a filter
        for lit, other in ((a, b), (b, a)):
            if lit.literal and isinstance(lit.literal_value, str) and other.numeric:
                raise ConstraintError(
                    f"cannot order field {other.label!r} (numbers) against the text {lit.label} with {op!r}"
                )
    t = np.zeros(len(a.present), dtype=bool)
    f = np.zeros(len(a.present), dtype=bool)
    for i in np.flatnonzero(both):
        r = _py_compare(a.values[i], op, b.values[i])
        if r is True:
            t[i] = True
        elif r is False:
            f[i] = True
    return t, f


def _fmt_literal(value: Any) -> str:
    return "None" if value is None else repr(value)


def _fields_of(node: Any, out: list[str]) -> None:
    if isinstance(node, _Field):
        if node.name not in out:
            out.append(node.name)
    elif isinstance(node, _Compare):
        for o in node.operands:
            _fields_of(o, out)
    elif isinstance(node, _Member):
        _fields_of(node.field, out)
    elif isinstance(node, _Not):
        _fields_of(node.child, out)
    elif isinstance(node, _BoolOp):
        for c in node.children:
            _fields_of(c, out)


def _field_nodes(node: Any, out: list[_Field]) -> None:
    if isinstance(node, _Field):
        out.append(node)
    elif isinstance(node, _Compare):
        for o in node.operands:
            _field_nodes(o, out)
    elif isinstance(node, _Member):
        out.append(node.field)
    elif isinstance(node, _Not):
        _field_nodes(node.child, out)
    elif isinstance(node, _BoolOp):
        for c in node.children:
            _field_nodes(c, out)


def event_fields(events: Iterable[dict]) -> list[str]:
    """Sorted union of the keys of ``events`` (the fields a constraint may use)."""
    keys: set[str] = set()
    for ev in events:
        keys.update(ev.keys())
    return sorted(keys)


class Constraint:
    """A parsed ``--where`` expression; build it with :func:`parse_where`.

    Attributes
    ----------
    text : str
        The expression as written.
    fields : list of str
        Field names the expression uses, in order of first appearance.
    """

    def __init__(self, text: str, node: Any) -> None:
        self.text = text
        self._node = node
        names: list[str] = []
        _fields_of(node, names)
        self.fields = names

    def __repr__(self) -> str:
        return f"Constraint({self.text!r})"

    def describe(self) -> str:
        """Canonical, fully parenthesised form, e.g. ``(consonance > 0.7) and (f0 != None)``."""
        return self._describe(self._node, top=True)

    def _describe(self, node: Any, *, top: bool = False) -> str:
        if isinstance(node, _Field):
            return node.name
        if isinstance(node, _Literal):
            return _fmt_literal(node.value)
        if isinstance(node, _Compare):
            parts = [self._describe(node.operands[0])]
            for op, operand in zip(node.ops, node.operands[1:]):
                parts += [op, self._describe(operand)]
            s = " ".join(parts)
        elif isinstance(node, _Member):
            members = ", ".join(_fmt_literal(v) for v in node.values)
            s = f"{node.field.name} {'not in' if node.negated else 'in'} {{{members}}}"
        elif isinstance(node, _Not):
            s = f"not {self._describe(node.child)}"
        else:
            s = f" {node.op} ".join(self._describe(c) for c in node.children)
        return s if top else f"({s})"

    def validate(self, events: Sequence[dict]) -> None:
        """Raise :class:`ConstraintError` if a field is absent from every event.

        The message lists the fields that do exist and the closest match.
        """
        available = event_fields(events)
        nodes: list[_Field] = []
        _field_nodes(self._node, nodes)
        for node in nodes:
            if node.name not in available:
                close = difflib.get_close_matches(node.name, available, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                listing = ", ".join(available) if available else "none: there are no events"
                raise ConstraintError(
                    f"unknown field {node.name!r} at column {node.pos + 1} of where expression "
                    f"{self.text!r}{hint}; available fields: {listing}"
                )

    def mask(self, events: Sequence[dict]) -> np.ndarray:
        """Which events satisfy the constraint.

        Parameters
        ----------
        events : sequence of dict, length n

        Returns
        -------
        mask : ndarray of bool, shape (n,)
            True where the expression is definitely true; missing values never
            match (see the module docstring).
        """
        self.validate(events)
        columns: dict[str, _Column] = {name: _Column.from_field(name, events) for name in self.fields}
        t, _ = self._eval(self._node, columns, len(events))
        return t

    def weights(self, events: Sequence[dict], *, factor: float) -> np.ndarray:
        """Soft form: ``factor`` for matching events, 1.0 for the others.

        Returns
        -------
        weights : ndarray of float64, shape (n,)
        """
        if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)) \
                or not (factor > 0 and math.isfinite(factor)):
            raise ParameterError(f"where_weight must be a positive finite number, got {factor!r}",
                                 parameter="where_weight")
        return np.where(self.mask(events), float(factor), 1.0)

    def explain_empty(self, events: Sequence[dict]) -> str:
        """One line for when no event matches: the observed range of each field used."""
        parts = []
        for name in self.fields:
            col = _Column.from_field(name, events)
            n_present = int(col.present.sum())
            if n_present == 0:
                parts.append(f"{name} is missing in all {len(events)} frames")
            elif col.numeric:
                vals = col.values[col.present]
                parts.append(f"{name} ranges {vals.min():.4g} to {vals.max():.4g} "
                             f"in {n_present} of {len(events)} frames")
            else:
                distinct = sorted({repr(v) for v in col.values[col.present]})
                shown = ", ".join(distinct[:8]) + (", ..." if len(distinct) > 8 else "")
                parts.append(f"{name} takes {shown}")
        return f"no frame satisfies {self.text!r} ({'; '.join(parts)})"

    def _eval(self, node: Any, cols: dict[str, _Column], n: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(node, _Compare):
            t = np.ones(n, dtype=bool)
            f = np.zeros(n, dtype=bool)
            operands = [self._operand(o, cols, n) for o in node.operands]
            for a, op, b in zip(operands[:-1], node.ops, operands[1:]):
                pt, pf = _compare_pair(a, op, b)
                t &= pt
                f |= pf
            return t, f
        if isinstance(node, _Member):
            col = cols[node.field.name]
            t = np.zeros(n, dtype=bool)
            f = np.zeros(n, dtype=bool)
            has_none = any(v is None for v in node.values)
            t |= ~col.present & has_none
            f |= ~col.present & (not has_none)
            members = [v for v in node.values if v is not None]
            if col.numeric:
                nums = [float(v) for v in members if _is_number(v)]
                hit = np.isin(col.values, nums) & col.present
            else:
                hit = np.zeros(n, dtype=bool)
                for i in np.flatnonzero(col.present):
                    v = col.values[i]
                    hit[i] = any(_same_kind(v, m) and v == m for m in members)
            t |= hit
            f |= col.present & ~hit
            if node.negated:
                t, f = f, t
            return t, f
        if isinstance(node, _Not):
            t, f = self._eval(node.child, cols, n)
            return f, t
        if isinstance(node, _BoolOp):
            results = [self._eval(c, cols, n) for c in node.children]
            if node.op == "and":
                t = np.logical_and.reduce([r[0] for r in results])
                f = np.logical_or.reduce([r[1] for r in results])
            else:
                t = np.logical_or.reduce([r[0] for r in results])
                f = np.logical_and.reduce([r[1] for r in results])
            return t, f
        raise ConstraintError(f"internal: cannot evaluate {type(node).__name__}")

    @staticmethod
    def _operand(node: Any, cols: dict[str, _Column], n: int) -> _Column:
        if isinstance(node, _Field):
            return cols[node.name]
        return _Column.from_literal(node.value, n)


def parse_where(text: str, *, fields: Sequence[str] | None = None) -> Constraint:
    """Parse a ``--where`` expression into a :class:`Constraint`.

    Parameters
    ----------
    text : str
        The expression (grammar in the module docstring).
    fields : sequence of str, optional
        When given, field names are checked now against these; otherwise they
        are checked when the constraint meets events (:meth:`Constraint.mask`).

    Raises
    ------
    WhereSyntaxError
        (a :class:`ConstraintError`) with the column of the problem,
        including nesting deeper than :data:`MAX_WHERE_DEPTH` and number
        literals longer than 100 characters.
    ConstraintError
        For an unknown field when ``fields`` is given, or an expression
        longer than :data:`MAX_WHERE_CHARS`.
    """
    if not isinstance(text, str):
        raise ConstraintError(f"where must be a string, got {type(text).__name__}", parameter="where")
    if len(text) > MAX_WHERE_CHARS:
        raise ConstraintError(f"where expression of {len(text)} characters is longer than the "
                              f"{MAX_WHERE_CHARS}-character limit", parameter="where")
    constraint = Constraint(text, _Parser(text).parse())
    if fields is not None:
        constraint.validate([{name: None for name in fields}])
    return constraint
