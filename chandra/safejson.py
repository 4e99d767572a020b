"""Reading JSON that somebody else wrote: bounded, streaming, crash-free.

Every JSON document a user hands chandra (a ``.chandra`` archive's
``model.json``, MusicHal 9000 files of every shape, trace files, a neural
encoder's ``config.json``) is read through this module. Before a parser sees
any byte, :class:`JSONScreen` checks it against three limits:

nesting depth (:data:`MAX_DEPTH`)
    A document nested 100,000 levels makes ijson build a prefix string per
    level for every event (quadratic memory: tens of GB) and makes Python's
    ``json`` raise ``RecursionError``. chandra and MusicHal documents nest
    about ten levels; 64 leaves room for user metadata.
number-literal length (:data:`MAX_NUMBER_CHARS`)
    ijson's C backend (yajl2_c) crashes the interpreter with a segmentation
    fault on an integer literal of more than 4,300 digits (Python's
    ``int``-from-text limit raises inside a C callback), and Python's
    ``json`` raises ``ValueError`` on it. A float64 needs at most 24
    characters and an int64 20; 100 is generous.
size (:data:`MAX_DOCUMENT_BYTES`, whole-document reads only)
    Reading a document whole costs roughly ten times its size in Python
    objects; streaming readers have no size limit.

The screen is a byte-level scan that tracks only what the limits need (inside
a string or not, the current depth, the length of the current run of number
characters), vectorised with NumPy over each chunk, so it adds little to a
streaming parse (see ``benchmarks/RESULTS.md``). It does not validate JSON;
the parser does that on bytes the screen has already passed. On a valid
prefix of a document the screen and the parser agree on what is inside a
string, so nothing a parser accepts has escaped the limits.

Errors are :class:`JSONLimitError` (a :class:`~chandra.errors.ModelFormatError`)
or :class:`~chandra.errors.ModelFormatError`: one line naming the file, the
limit and the byte offset where it was hit. They never quote the file's
contents (parser messages that would are replaced by the error's kind and
the offset).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from chandra.errors import ModelFormatError, reading

__all__ = [
    "MAX_DEPTH",
    "MAX_NUMBER_CHARS",
    "MAX_DOCUMENT_BYTES",
    "JSONLimitError",
    "JSONSyntaxError",
    "JSONScreen",
    "ScreenedFile",
    "screen_bytes",
    "loads",
    "load",
    "events",
    "brief",
]

#: Deepest nesting of arrays and objects accepted (the top-level value is depth 1).
MAX_DEPTH = 64
#: Longest run of number characters (``0-9 + - . e E``) accepted outside strings.
MAX_NUMBER_CHARS = 100
#: Largest document read whole (``loads``/``load``) rather than streamed.
MAX_DOCUMENT_BYTES = 512 * 1024 * 1024

_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPEN = (0x5B, 0x7B)   # [ {
_CLOSE = (0x5D, 0x7D)  # ] }
_NUMBER_BYTES = b"0123456789+-.eE"
_RUN_TABLE = bytes(0x44 if bytes([i]) in _NUMBER_BYTES else 0x20 for i in range(256))


class JSONLimitError(ModelFormatError):
    """A JSON document exceeds one of the reader's limits (depth, number length, size).

    Attributes
    ----------
    limit : str
        ``"depth"``, ``"number"`` or ``"size"``.
    offset : int
        Byte offset in the document where the limit was hit.
    """

    def __init__(self, message: str, *, limit: str, offset: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.offset = int(offset)


class JSONSyntaxError(ModelFormatError):
    """A document that is not JSON (or not UTF-8), as the parser found it."""


class JSONScreen:
    """Incremental limit check of a JSON byte stream.

    Feed the bytes in order with :meth:`feed` (any chunking gives the same
    result) and call :meth:`close` at the end.

    Parameters
    ----------
    name : str
        Named in error messages (usually the file path).
    max_depth : int
        Deepest nesting accepted.
    max_number_chars : int
        Longest number literal accepted.

    Raises
    ------
    JSONLimitError
        From :meth:`feed`/:meth:`close`, at the first byte that breaks a limit.
    ModelFormatError
        A closing bracket with nothing open (the document is malformed).
    """

    def __init__(self, name: str, *, max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS) -> None:
        self.name = str(name)
        self.max_depth = int(max_depth)
        self.max_number_chars = int(max_number_chars)
        self.offset = 0          # bytes fed so far
        self.depth = 0           # open arrays/objects at the end of the fed bytes
        self.in_string = False   # the fed bytes end inside a string
        self._escaped = False    # ... and the next byte is escaped by a backslash
        self._run = 0            # length of the number-character run the fed bytes end with
        self._long_run = b"D" * (self.max_number_chars + 1)

    # -- errors ---------------------------------------------------------------

    def _too_deep(self, offset: int) -> JSONLimitError:
        return JSONLimitError(
            f"{self.name}: JSON nested deeper than {self.max_depth} levels at byte offset {offset}",
            limit="depth", offset=offset)

    def _too_long(self, offset: int) -> JSONLimitError:
        return JSONLimitError(
            f"{self.name}: JSON number literal longer than {self.max_number_chars} characters "
            f"at byte offset {offset}", limit="number", offset=offset)

    # -- scanning -------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Check the next bytes of the document."""
        n = len(data)
        if n == 0:
            return
        base = self.offset
        arr = np.frombuffer(data, dtype=np.uint8)
        start = 1 if self._escaped else 0  # byte 0 is escaped: a literal character in a string

        quotes = np.flatnonzero(arr == _QUOTE)
        if start and quotes.size and quotes[0] == 0:
            quotes = quotes[1:]
        if quotes.size and data.find(b"\\", start) >= 0:
            quotes = self._unescaped(arr, quotes, start)
        in_string = self.in_string
        end_in_string = in_string ^ bool(quotes.size & 1)

        # nesting: brackets outside strings
        problems: list[tuple[int, ModelFormatError]] = []
        brackets = np.flatnonzero((arr | 0x20) >= 0x7B)  # 0x5B/0x5D/0x7B/0x7D, and bytes >= 0x7B
        if brackets.size:
            kinds = arr[brackets]
            keep = (kinds == 0x5B) | (kinds == 0x5D) | (kinds == 0x7B) | (kinds == 0x7D)
            brackets, kinds = brackets[keep], kinds[keep]
        if brackets.size and (quotes.size or in_string):
            inside = (np.searchsorted(quotes, brackets) & 1).astype(bool) ^ in_string
            brackets, kinds = brackets[~inside], kinds[~inside]
        if brackets.size:
            step = np.where((kinds == 0x5B) | (kinds == 0x7B), 1, -1)
            depth = self.depth + np.cumsum(step)
            if depth.max() > self.max_depth:
                at = base + int(brackets[np.argmax(depth > self.max_depth)])
                problems.append((at, self._too_deep(at)))
            if depth.min() < 0:
                at = base + int(brackets[np.argmax(depth < 0)])
                problems.append((at, JSONSyntaxError(
                    f"{self.name}: malformed JSON: closing bracket with nothing open at byte offset {at}")))
            new_depth = int(depth[-1])
        else:
            new_depth = self.depth

        # number literals: runs of number characters outside strings
        lead = n - len(data.lstrip(_NUMBER_BYTES))
        if self._run and lead and self._run + lead > self.max_number_chars:
            problems.append((base - self._run, self._too_long(base - self._run)))
        first = self._first_long_run(data, arr, quotes, in_string, start)
        if first is not None:
            problems.append((base + first, self._too_long(base + first)))
        if problems:
            raise min(problems, key=lambda p: p[0])[1]
        self.depth = new_depth
        tail = n - len(data.rstrip(_NUMBER_BYTES))
        if end_in_string:
            self._run = 0
        elif tail == n:
            self._run += n
        else:
            self._run = tail

        # escape state for the next chunk: an odd run of backslashes at the end of a string
        if end_in_string:
            trailing = n - len(data.rstrip(b"\\"))
            if start and trailing == n:
                trailing -= 1
            self._escaped = bool(trailing & 1)
        else:
            self._escaped = False
        self.in_string = end_in_string
        self.offset = base + n

    def _first_long_run(self, data: bytes, arr: np.ndarray, quotes: np.ndarray, in_string: bool,
                        start: int) -> int | None:
        """Offset in ``data`` of the first too-long number-character run outside strings, or None."""
        limit = self.max_number_chars
        # A run of number characters holds no comma, so a too-long run lies
        # in a stretch between commas longer than the limit: only those
        # stretches (rare in real files) are examined byte by byte.
        commas = np.flatnonzero(arr == 0x2C)
        if commas.size:
            edges = np.concatenate(([-1], commas, [len(data)]))
            wide = np.flatnonzero(np.diff(edges) > limit + 1)
            if wide.size == 0:
                return None
            regions = zip((edges[wide] + 1).tolist(), edges[wide + 1].tolist())
        else:
            regions = [(0, len(data))]
        for lo, hi in regions:
            marks = data[lo:hi].translate(_RUN_TABLE)  # number characters -> "D", all else -> " "
            pos = marks.find(self._long_run)
            while pos >= 0:
                at = lo + pos
                inside = bool(np.searchsorted(quotes, at) & 1) ^ in_string or (start and at == 0)
                if not inside:
                    return lo + marks.rfind(b" ", 0, pos) + 1
                end = marks.find(b" ", pos)
                if end < 0:
                    break
                pos = marks.find(self._long_run, end)
        return None

    @staticmethod
    def _unescaped(arr: np.ndarray, quotes: np.ndarray, start: int) -> np.ndarray:
        """Drop quotes preceded by an odd run of backslashes (``\\"`` inside a string)."""
        slashes = np.flatnonzero(arr == _BACKSLASH)
        if start and slashes.size and slashes[0] == 0:
            slashes = slashes[1:]
        if slashes.size == 0:
            return quotes
        # first position of the backslash run each backslash belongs to
        run_start = np.ones(slashes.size, dtype=bool)
        run_start[1:] = np.diff(slashes) != 1
        first = slashes[run_start][np.cumsum(run_start) - 1]
        idx = np.searchsorted(slashes, quotes - 1)
        idx_c = np.minimum(idx, slashes.size - 1)
        preceded = (idx < slashes.size) & (slashes[idx_c] == quotes - 1)
        run_length = np.where(preceded, quotes - first[idx_c], 0)
        return quotes[(run_length & 1) == 0]

    def close(self) -> None:
        """End of input (nothing more to check: runs and depth are checked as they grow)."""


class ScreenedFile:
    """A binary file wrapper whose reads pass through a :class:`JSONScreen` first.

    Give it to a streaming parser (ijson) in place of the file: a limit is hit
    before the parser sees the offending bytes. The file is screened in
    blocks of ``block_size`` (1 MiB: few NumPy calls per megabyte) and handed
    out in whatever sizes the parser asks for (ijson's C backend is fastest
    with its default 64 KiB; larger reads make it buffer more events).
    """

    def __init__(self, fh: IO[bytes], screen: JSONScreen, *, block_size: int = 1 << 20) -> None:
        self._fh = fh
        self.screen = screen
        self._block_size = int(block_size)
        self._block = b""
        self._pos = 0
        self._consumed = 0

    def _fill(self) -> bool:
        if self._pos < len(self._block):
            return True
        data = self._fh.read(self._block_size)
        if not data:
            return False
        self.screen.feed(data)
        self._block, self._pos = data, 0
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while self._fill():
                parts.append(self._block[self._pos:])
                self._pos = len(self._block)
            data = b"".join(parts)
        elif size == 0 or not self._fill():
            return b""
        else:
            data = self._block[self._pos:self._pos + size]
            self._pos += len(data)
        self._consumed += len(data)
        return data

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if not len(view) or not self._fill():
            return 0
        n = min(len(view), len(self._block) - self._pos)
        view[:n] = self._block[self._pos:self._pos + n]
        self._pos += n
        self._consumed += n
        return n

    def tell(self) -> int:
        """Bytes handed to the parser so far."""
        return self._consumed


def screen_bytes(data: bytes, name: str, *, max_depth: int = MAX_DEPTH,
                 max_number_chars: int = MAX_NUMBER_CHARS) -> None:
    """Check a whole document held in memory (see :class:`JSONScreen`)."""
    screen = JSONScreen(name, max_depth=max_depth, max_number_chars=max_number_chars)
    screen.feed(bytes(data))
    screen.close()


def brief(value: Any, *, limit: int = 40) -> str:
    """A value read from a file, fit for a one-line error message.

    Short scalars are shown as their ``repr`` (``nan``, ``'abc'``, ``1e+30``);
    anything longer or any container only as its type and size, so an error
    never carries more than a few characters of the file.
    """
    if value is None or isinstance(value, (bool, int, float, np.integer, np.floating)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
            return f"an int of about {int(value.bit_length() * 0.30103) + 1} digits"
        text = repr(value.item() if isinstance(value, np.generic) else value)
        return text if len(text) <= limit else f"a {type(value).__name__}"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit and text.isprintable() else f"a text of {len(value)} characters"
    if isinstance(value, (dict, list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def _decode_error(name: str, exc: BaseException, offset: int | None = None) -> JSONSyntaxError:
    """One line for a parser's complaint, without quoting the document."""
    if isinstance(exc, UnicodeDecodeError):
        where = exc.start if offset is None else f"about {offset}"
        return JSONSyntaxError(f"{name}: not UTF-8 text (invalid byte at offset {where})")
    if isinstance(exc, json.JSONDecodeError):
        return JSONSyntaxError(f"{name}: malformed JSON ({exc.msg} at character {exc.pos})")
    # ijson/yajl put the kind of error on the first line and a quote of the
    # document on the following ones; keep the first line only, without quotes.
    text = str(exc).strip()
    if text[:2] in ("b'", 'b"'):  # yajl2_c gives the repr of a bytes message
        text = text[2:]
    kind = re.split(r"\\n|\n|['\"`]", text, maxsplit=1)[0]
    kind = re.sub(r"[^A-Za-z0-9 ,.:;()_-]", "", kind).strip().rstrip(":")[:80] or "parse error"
    where = f" near byte offset {offset}" if offset is not None else ""
    return JSONSyntaxError(f"{name}: malformed JSON ({kind}){where}")


def loads(data: bytes | bytearray | str, name: str, *, object_hook: Callable[[dict], Any] | None = None,
          max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH,
          max_number_chars: int = MAX_NUMBER_CHARS) -> Any:
    """Parse a whole JSON document after screening it.

    Parameters
    ----------
    data : bytes or str
        The document (UTF-8 when bytes; a leading BOM is ignored).
    name : str
        Named in error messages.
    object_hook : callable, optional
        As in :func:`json.loads`.
    max_bytes, max_depth, max_number_chars : int
        The limits (module defaults).

    Returns
    -------
    Any
        The parsed value. ``NaN``/``Infinity`` literals are accepted (Python
        writes them); callers validate values.

    Raises
    ------
    JSONLimitError
        Too large, too deep, or a too-long number literal.
    ModelFormatError
        Not UTF-8 or not JSON.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise JSONLimitError(f"{name}: JSON document of {len(data)} bytes exceeds the {max_bytes}-byte limit",
                             limit="size", offset=max_bytes)
    screen_bytes(data, name, max_depth=max_depth, max_number_chars=max_number_chars)
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _decode_error(name, exc) from None
    try:
        return json.loads(text.removeprefix("\ufeff"), object_hook=object_hook)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise _decode_error(name, exc) from None


def load(path: str | os.PathLike, *, name: str | None = None, object_hook: Callable[[dict], Any] | None = None,
         max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH,
         max_number_chars: int = MAX_NUMBER_CHARS) -> Any:
    """Read and parse a JSON file whole, after checking its size and screening it.

    Raises
    ------
    JSONLimitError, ModelFormatError
        As :func:`loads`; also for a missing or unreadable file.
    """
    path = Path(path)
    name = str(path) if name is None else name
    with reading(name, expected="a JSON file"), open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > max_bytes:
            raise JSONLimitError(f"{name}: JSON file of {size} bytes exceeds the {max_bytes}-byte limit",
                                 limit="size", offset=max_bytes)
        data = fh.read(max_bytes + 1)
    return loads(data, name, object_hook=object_hook, max_bytes=max_bytes, max_depth=max_depth,
                 max_number_chars=max_number_chars)


@contextlib.contextmanager
def events(fh: IO[bytes], name: str, *, use_float: bool = True, buf_size: int = 64 * 1024,
           max_depth: int = MAX_DEPTH, max_number_chars: int = MAX_NUMBER_CHARS
           ) -> Iterator[tuple[Iterator[tuple[str, str, Any]], ScreenedFile]]:
    """Stream ijson ``(prefix, event, value)`` events of a screened binary file.

    A context manager: iterate the events inside the ``with`` block, where
    parser errors become one-line :class:`JSONSyntaxError`::

        with open(path, "rb") as fh, safejson.events(fh, str(path)) as (tokens, reader):
            for prefix, event, value in tokens:
                ...

    Parameters
    ----------
    fh : binary file
        Read from its current position.
    name : str
        Named in error messages.
    use_float : bool
        As in :func:`ijson.parse` (floats rather than Decimals).
    buf_size : int
        Bytes per parser read (the screen works in 1 MiB blocks).

    Yields
    ------
    tokens : iterator of (str, str, Any)
        The parser's events (ijson's own iterator: no per-event overhead).
    reader : ScreenedFile
        Its ``tell()`` is the number of bytes parsed so far (for progress).

    Raises
    ------
    JSONLimitError
        A limit hit; the parser never saw the offending bytes.
    JSONSyntaxError
        Malformed JSON: the parser's kind of error and the byte offset reached.
    """
    import ijson

    reader = ScreenedFile(fh, JSONScreen(name, max_depth=max_depth, max_number_chars=max_number_chars))
    try:
        yield ijson.parse(reader, use_float=use_float, buf_size=buf_size), reader
    except (ijson.JSONError, UnicodeDecodeError, RecursionError) as exc:
        raise _decode_error(name, exc, reader.tell()) from None
