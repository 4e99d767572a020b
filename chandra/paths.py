"""Allowed roots: the rule for paths a user hands a server.

The dashboard lets whoever can reach it type or pick paths on the server
(an audio file, a model, a trace folder). Such a path is *untrusted*: it may
be absolute, contain ``..``, or pass through a symbolic link that points
anywhere. :func:`resolve_allowed` resolves it the way the operating system
will (every symlink followed, ``..`` collapsed) and accepts it only when the
result lies inside one of the allowed roots, before anything is read, hashed,
listed or written. A refused path is reported with the text the user typed
and the roots, never with anything read from the file; whether a path
outside the roots exists is not revealed either (nothing outside is even
stat-ed).

Roots are directories (everything below them is allowed) or single files
(exactly that file is allowed, e.g. a bundled example model).

This module is streamlit-free so the rule is tested on its own; the
dashboard builds its list of roots in ``dashboard/common.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from chandra.errors import ChandraError

__all__ = ["PathNotAllowedError", "resolve_allowed", "is_within", "describe_path", "MAX_PATH_CHARS"]

#: Longest path text accepted (Linux PATH_MAX).
MAX_PATH_CHARS = 4096


class PathNotAllowedError(ChandraError):
    """A path lies outside the folders the server may use (or is not a path at all)."""


def describe_path(text: object, *, limit: int = 160) -> str:
    """The user's path text made safe to show in one line: control characters
    escaped, long text shortened in the middle."""
    s = str(text)
    s = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in s)
    if len(s) > limit:
        half = (limit - 1) // 2
        s = s[:half] + "…" + s[-half:]
    return s


def _real(path: Path) -> Path:
    # os.path.realpath follows every symlink that exists and collapses "..";
    # components that do not exist are kept as written (strict=False).
    return Path(os.path.realpath(path))


def is_within(path: Path, root: Path) -> bool:
    """True when resolved ``path`` is ``root`` or lies below it (both already resolved)."""
    return path == root or root in path.parents


def resolve_allowed(
    path: str | os.PathLike,
    roots: Iterable[str | os.PathLike],
    *,
    must_exist: bool = True,
    kind: str | None = "file",
    base: str | os.PathLike | None = None,
) -> Path:
    """Resolve ``path`` and accept it only inside ``roots``.

    Parameters
    ----------
    path : str or path-like
        What the user typed or picked. ``~`` is expanded; a relative path is
        taken relative to ``base`` (default: the current directory).
    roots : iterable of path-like
        Allowed directories (anything below them) or files (exactly them).
        Roots are resolved too, so a root that is itself a symlink is
        compared by its target. Roots that do not exist allow nothing.
    must_exist : bool
        Also require the resolved path to exist (checked only after it was
        found inside a root).
    kind : {"file", "dir", None}
        When ``must_exist``, the kind of thing the path must be.
    base : path-like, optional
        Directory that relative paths are relative to.

    Returns
    -------
    Path
        The resolved, absolute path (open this one, not ``path``).

    Raises
    ------
    PathNotAllowedError
        Empty text, a NUL byte, text longer than :data:`MAX_PATH_CHARS`, or a
        resolved path outside every root. The message quotes the user's text
        and names the roots; it says nothing about the file.
    ChandraError
        Inside a root but missing (``must_exist``) or of the wrong kind.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    shown = describe_path(text)
    if not text.strip():
        raise PathNotAllowedError("empty path")
    if "\x00" in text:
        raise PathNotAllowedError(f"{shown}: a path cannot contain a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise PathNotAllowedError(f"path of {len(text)} characters is longer than the limit of {MAX_PATH_CHARS}")
    if kind not in ("file", "dir", None):
        raise ValueError(f"kind must be 'file', 'dir' or None, got {kind!r}")
    candidate = Path(text.strip()).expanduser()
    if not candidate.is_absolute():
        candidate = Path(base if base is not None else os.getcwd()) / candidate
    resolved = _real(candidate)
    allowed: list[tuple[Path, bool]] = []  # (resolved root, is a directory root)
    for root in roots:
        if root is None:
            continue
        r = _real(Path(root).expanduser())
        if r.is_dir():
            allowed.append((r, True))
        elif r.is_file():
            allowed.append((r, False))
    if not any(is_within(resolved, r) if is_dir else resolved == r for r, is_dir in allowed):
        names = ", ".join(str(r) for r, _ in allowed) or "none"
        raise PathNotAllowedError(f"{shown}: outside the folders this server may use (allowed: {names})")
    if must_exist:
        if not resolved.exists():
            raise ChandraError(f"{shown}: no such {'folder' if kind == 'dir' else 'file'}")
        if kind == "file" and not resolved.is_file():
            raise ChandraError(f"{shown}: not a file")
        if kind == "dir" and not resolved.is_dir():
            raise ChandraError(f"{shown}: not a folder")
    return resolved
