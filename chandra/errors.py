"""Exception hierarchy.

Every error chandra raises on purpose derives from :class:`ChandraError`, so a
caller (the CLI, the dashboard) can catch one type and show its message as a
single readable line.
"""

from __future__ import annotations

__all__ = [
    "ChandraError",
    "AudioError",
    "SegmentationError",
    "EncoderError",
    "WeightsNotFoundError",
    "VocabularyError",
    "OracleError",
    "ModelFormatError",
    "ConstraintError",
    "TraceError",
    "OutputError",
    "first_line",
]


class ChandraError(Exception):
    """Root of every deliberate chandra error."""


class AudioError(ChandraError):
    """Audio that cannot be read or is unusable (empty, silent, NaN, too short)."""


class SegmentationError(ChandraError):
    """Onset segmentation could not produce usable segments."""


class EncoderError(ChandraError):
    """A feature encoder failed or was configured inconsistently."""


class WeightsNotFoundError(EncoderError):
    """Neural encoder weights are not available locally."""


class VocabularyError(ChandraError):
    """The token vocabulary cannot be fitted as asked (e.g. K > segments)."""


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
