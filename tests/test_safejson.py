"""The bounded JSON reader: the screen agrees with a byte-by-byte reference, limits hold at every
chunking, and errors are one line that never quotes the document."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chandra import safejson
from chandra.errors import ModelFormatError
from chandra.safejson import JSONLimitError, JSONScreen, JSONSyntaxError, ScreenedFile

SECRET = "s3cr3t-c0ntent"


def reference_scan(data: bytes, max_depth: int, max_number: int) -> tuple[str, int] | None:
    """First problem as (kind, offset), byte by byte; None when within the limits.

    Stops (returning None) at a backslash outside a string: that is not
    JSON, and the parser reports it before anything after it matters.
    """
    depth, inside, escaped, run = 0, False, False, 0
    for i, c in enumerate(data):
        if inside:
            if escaped:
                escaped = False
            elif c == 0x5C:
                escaped = True
            elif c == 0x22:
                inside = False
            continue
        if c == 0x22:
            inside, run = True, 0
            continue
        if c == 0x5C:
            return None
        if c in b"[{":
            depth += 1
            if depth > max_depth:
                return ("depth", i)
        elif c in b"]}":
            depth -= 1
            if depth < 0:
                return ("unbalanced", i)
        if c in b"0123456789+-.eE":
            run += 1
            if run > max_number:
                return ("number", i - run + 1)
        else:
            run = 0
    return None


def screen_in_chunks(data: bytes, cuts: list[int], max_depth: int, max_number: int) -> tuple[str, int] | None:
    screen = JSONScreen("doc", max_depth=max_depth, max_number_chars=max_number)
    pos = 0
    try:
        for cut in cuts:
            screen.feed(data[pos:pos + cut])
            pos += cut
        screen.feed(data[pos:])
    except JSONLimitError as exc:
        return (exc.limit, exc.offset)
    except JSONSyntaxError as exc:
        return ("unbalanced", int(str(exc).rsplit(" ", 1)[1]))
    return None


def truncated_at_invalid(data: bytes) -> bytes:
    inside = escaped = False
    for i, c in enumerate(data):
        if inside:
            escaped, inside = (False, inside) if escaped else (c == 0x5C, c != 0x22)
        elif c == 0x22:
            inside = True
        elif c == 0x5C:
            return data[:i]
    return data


PIECES = [b"[", b"]", b"{", b"}", b'"', b"\\", b'\\"', b"\\\\", b"1", b"23", b"e", b"-", b".", b",", b" ", b":",
          b"a", b"\xc3\xa9", b"9" * 7]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=120),
       cuts=st.lists(st.integers(0, 9), max_size=12),
       max_depth=st.integers(1, 8), max_number=st.integers(1, 12))
def test_screen_agrees_with_a_byte_by_byte_reference_at_any_chunking(pieces, cuts, max_depth, max_number):
    data = truncated_at_invalid(b"".join(pieces))
    assert screen_in_chunks(data, cuts, max_depth, max_number) == reference_scan(data, max_depth, max_number)


def test_limits_at_block_boundaries():
    # a number split across two feeds, and an escaped quote split after its backslash
    number = b'{"a": [' + b"1" * 60 + b"]}"
    for cut in range(1, len(number)):
        assert screen_in_chunks(number, [cut], 64, 100) is None
        assert screen_in_chunks(number, [cut], 64, 59) == ("number", 7)
    escaped = b'{"a": "x\\"[[[[\\\\", "b": [[[1]]]}'
    for cut in range(1, len(escaped)):
        assert screen_in_chunks(escaped, [cut], 4, 100) is None
        assert screen_in_chunks(escaped, [cut], 3, 100) == ("depth", escaped.index(b"[[[1") + 2)


def test_long_digit_strings_and_deep_brackets_inside_strings_are_fine():
    doc = json.dumps({"id": "7" * 5000, "text": "[" * 500, "n": 1}).encode()
    assert safejson.loads(doc, "doc")["n"] == 1


@pytest.mark.parametrize("doc, limit", [
    (b'{"a": ' + b"9" * 4400 + b"}", "number"),
    (b'{"a": -' + b"1" * 101 + b"}", "number"),
    (b'{"a": 1.' + b"0" * 200 + b"e5}", "number"),
    (b"[" * 100_000 + b"]" * 100_000, "depth"),
    (b'{"a": ' + b'{"b": ' * 70 + b"1" + b"}" * 71, "depth"),
])
def test_limits_are_json_limit_errors_in_every_reader(doc, limit):
    with pytest.raises(JSONLimitError) as caught:
        safejson.loads(doc, "doc.json")
    assert caught.value.limit == limit and "doc.json" in str(caught.value)
    with pytest.raises(JSONLimitError):
        with safejson.events(io.BytesIO(doc), "doc.json") as (tokens, _reader):
            list(tokens)
    # the same through a file object that only has read() (no readinto)
    with pytest.raises(JSONLimitError):
        with safejson.events(_ReadOnly(doc), "doc.json") as (tokens, _reader):
            list(tokens)


class _ReadOnly:
    def __init__(self, data: bytes) -> None:
        self._fh = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._fh.read(size)


def test_limit_holds_far_into_a_stream():
    body = b'{"frames": [' + b", ".join([b"[0.125, -3.5e-05, 7]"] * 100_000) + b"], "
    doc = body + b'"deep": ' + b"[" * 65 + b"]" * 65 + b"}"
    with pytest.raises(JSONLimitError) as caught:
        with safejson.events(io.BytesIO(doc), "big.json") as (tokens, _reader):
            for _ in tokens:
                pass
    # the outer object is level 1, so the 64th bracket opens level 65
    assert caught.value.offset == len(body) + len(b'"deep": ') + 63
    assert f"byte offset {caught.value.offset}" in str(caught.value)


@pytest.mark.parametrize("doc", [
    b'{"a": "' + SECRET.encode() + b'", "b": tru}',
    b'{"' + SECRET.encode() + b'": [1, 2,, 3]}',
    b'{"a": "' + SECRET.encode() + b'\xff\xfe"}',
    b'{"a": 1} ' + SECRET.encode(),
])
def test_syntax_errors_are_one_line_and_never_quote_the_document(doc):
    for read in (lambda: safejson.loads(doc, "doc.json"),
                 lambda: _drain(safejson.events(io.BytesIO(doc), "doc.json"))):
        with pytest.raises(ModelFormatError) as caught:
            read()
        message = str(caught.value)
        assert "\n" not in message and SECRET not in message and "doc.json" in message


def test_stream_parser_errors_do_not_quote_the_document():
    # yajl's own message repeats the input around the error; only its first line survives
    doc = b'{"a": ' + b"1" * 25 + b', "' + SECRET.encode() + b'": 1}'
    with pytest.raises(JSONSyntaxError) as caught:
        _drain(safejson.events(io.BytesIO(doc), "doc.json"))
    assert str(caught.value) == "doc.json: malformed JSON (parse error: integer overflow) near byte offset 53"


def _drain(context):
    with context as (tokens, _reader):
        for _ in tokens:
            pass


def test_load_checks_size_before_reading(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b"0," * 1000 + b"0]")
    assert len(safejson.load(path)) == 1001
    with pytest.raises(JSONLimitError, match="exceeds the 100-byte limit") as caught:
        safejson.load(path, max_bytes=100)
    assert caught.value.limit == "size"
    with pytest.raises(ModelFormatError, match="no such file"):
        safejson.load(tmp_path / "missing.json")


def test_nan_and_big_ints_within_the_limits_parse():
    value = safejson.loads(b'{"a": NaN, "b": -Infinity, "c": ' + b"9" * 99 + b"}", "doc")
    assert value["a"] != value["a"] and value["b"] == float("-inf") and value["c"] == int("9" * 99)


def test_screened_file_hands_out_exactly_the_file():
    data = bytes(range(256)) * 5000
    data = b'"' + data.replace(b'"', b"x").replace(b"\\", b"y") + b'"'
    reader = ScreenedFile(io.BytesIO(data), JSONScreen("doc"), block_size=4096)
    got = bytearray()
    buffer = bytearray(1000)
    while True:
        n = reader.readinto(buffer)
        if not n:
            break
        got += buffer[:n]
        got += reader.read(333)
    assert bytes(got) == data and reader.tell() == len(data)


@pytest.mark.parametrize("value, shown", [
    (float("nan"), "nan"), (1e30, "1e+30"), ("abc", "'abc'"), ("x" * 500, "a text of 500 characters"),
    ([1, 2], "a list of 2 items"), (10 ** 4000, "an int of about 4001 digits"), (None, "None"),
])
def test_brief_shows_short_values_and_sizes_of_long_ones(value, shown):
    assert safejson.brief(value) == shown
