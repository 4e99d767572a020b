"""Exception hierarchy.

Every error chandra raises on purpose derives from :class:`ChandraError`, so a
caller (the CLI, the dashboard) can catch one type and show its message as a
single readable line.

Messages name the library's parameters (``n_tokens``, ``where``), never a
command-line flag; an error about one parameter carries its name in
:attr:`ChandraError.parameter` so a front end can say it its own way (the CLI
turns ``n_tokens`` into ``--tokens``). An argument with a bad value or type is
a :class:`ParameterError`, which is also a :class:`ValueError`, as Python and
scikit-learn callers expect.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

__all__ = [
    "first_line",
    "shown",
    "MAX_SHOWN_CHARS",
    "ChandraError",
    "ParameterError",
    "AudioError",
    "SegmentationError",
    "EncoderError",
    "WeightsNotFoundError",
    "VocabularyError",
    "VocabularyParameterError",
    "VocabularyTypeError",
    "OracleError",
    "ModelFormatError",
    "ConstraintError",
    "TraceError",
    "OutputError",
    "reading",
]


class ChandraError(Exception):
    """Root of every deliberate chandra error.

    Parameters
    ----------
    *args
        As for :class:`Exception`; the first is the one-line message.
    parameter : str, optional
        Name of the library parameter the error is about (``"n_tokens"``,
        ``"seed"``, ``"where"``), when there is one.

    Attributes
    ----------
    parameter : str or None
    """

    parameter: str | None = None

    def __init__(self, *args: object, parameter: str | None = None) -> None:
        super().__init__(*args)
        if parameter is not None:
            self.parameter = parameter


class ParameterError(ChandraError, ValueError):
    """An argument has a bad value or type (a seed that is not an integer, a
    non-positive length, a continuity outside [0, 1], an unknown option)."""


class AudioError(ChandraError):
    """Audio that cannot be read or is unusable (empty, silent, NaN, too short)."""


class SegmentationError(ChandraError):
    """Onset segmentation could not produce usable segments."""


class EncoderError(ChandraError):
    """A feature encoder failed or was configured inconsistently."""


class WeightsNotFoundError(EncoderError):
    """Neural encoder weights are not available locally."""


class VocabularyError(ChandraError, ValueError):
    """The token vocabulary cannot be fitted as asked (e.g. K > segments), or
    its input is malformed. A :class:`ValueError`, as scikit-learn expects of
    an estimator refusing its data."""


class VocabularyParameterError(VocabularyError, ParameterError):
    """A :class:`~chandra.vocabulary.GestureVocabulary` parameter has a bad
    value or type."""


class VocabularyTypeError(VocabularyError, TypeError):
    """Input of a kind the vocabulary cannot use at all (values that are not
    numbers, a sparse matrix); also a :class:`TypeError`, as scikit-learn
    expects."""


class OracleError(ChandraError):
    """An oracle could not be built or violates its invariants."""


class ModelFormatError(ChandraError):
    """A model file is malformed, of an unknown format or version."""


class ConstraintError(ChandraError):
    """A generation constraint is malformed or cannot be satisfied."""


class TraceError(ChandraError):
    """A trace directory or checkpoint is malformed."""


class OutputError(ChandraError):
    """An output cannot be written as asked: it would replace an input or a
    file chandra did not write, or another process is writing it."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when empty).

    Library errors from other packages (zipfile, ijson, transformers) often
    spread over several lines; chandra's own messages are one line.
    """
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


#: Longest error text shown to a user (CLI line, dashboard box): a 5,000-character path quoted
#: by the operating system stays readable.
MAX_SHOWN_CHARS = 1000


def shown(exc: BaseException | str, *, limit: int = MAX_SHOWN_CHARS) -> str:
    """An error as one readable line for a user: white space folded, at most ``limit`` characters
    (the cut says how much was left out); the exception's type name when it has no text."""
    text = " ".join(str(exc).split()) or (type(exc).__name__ if isinstance(exc, BaseException) else "")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


@contextlib.contextmanager
def reading(name: str, *, expected: str, error: type[ChandraError] | None = None) -> Iterator[None]:
    """Open and read ``name`` inside the block: a missing file, a directory or
    an OS error becomes a one-line ``error`` (default
    :class:`ModelFormatError`; ``expected`` says what the file should have
    been, e.g. ``"a JSON file"``)."""
    cls = ModelFormatError if error is None else error
    try:
        yield
    except FileNotFoundError:
        raise cls(f"{name}: no such file") from None
    except IsADirectoryError:
        raise cls(f"{name}: is a directory, not {expected}") from None
    except OSError as exc:
        raise cls(f"{name}: cannot be read ({first_line(exc)})") from None
