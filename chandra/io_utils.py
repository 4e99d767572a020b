"""Small I/O helpers: atomic writes, output checks and locks, hashing, JSON encoding of numpy values.

Writing a file
--------------
:func:`atomic_write` (and :func:`atomic_path` beneath it) writes to a
temporary file beside the target and renames it over the target only when
the write succeeded, so a reader never sees half a file and a failed write
leaves the old file untouched. The temporary file

* is created with mode ``0o666`` minus the process umask, like any file the
  user creates (``tempfile.mkstemp`` would give ``0600``);
* is named ``.<target name>.<host>.<pid>.<random>.chandra-tmp``, so a run
  killed with SIGKILL (which no handler can catch) leaves a file the next
  write to the same target recognises: it removes such files whose process
  is gone;
* is removed on any exception, including ``KeyboardInterrupt`` and the
  :class:`Terminated` the CLI raises on SIGTERM.

:func:`check_output` refuses an output path that is an input or an existing
file chandra did not write; :func:`exclusive_output` holds an ``fcntl`` lock
beside the target so that of two processes writing the same output, the
second is told at once instead of silently losing its work.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import numpy as np

from chandra.errors import OutputError

__all__ = [
    "atomic_write",
    "atomic_path",
    "sha256_file",
    "installed_versions",
    "json_default",
    "dump_json_atomic",
    "remove_stale_temp_files",
    "check_output",
    "exclusive_output",
    "OUTPUT_KINDS",
    "TEMP_SUFFIX",
    "LOCK_SUFFIX",
    "WAV_SOFTWARE_TAG",
]

#: Suffix of the temporary files :func:`atomic_path` writes.
TEMP_SUFFIX = ".chandra-tmp"
#: Suffix of the lock files :func:`exclusive_output` holds.
LOCK_SUFFIX = ".chandra-lock"
#: Start of the software string chandra writes into its WAVs' INFO chunk.
WAV_SOFTWARE_TAG = b"chandra"
#: What :func:`check_output` recognises as a file chandra wrote.
OUTPUT_KINDS = ("model", "wav", "musichal", "json")

_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(r"^\." + re.escape(name) + r"\.([0-9a-f]{8})\.(\d+)\.[0-9a-f]+" + re.escape(TEMP_SUFFIX) + "$")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of earlier writes to ``path`` whose process is gone.

    Only files named as :func:`atomic_path` names them, written on this host
    by a process that no longer exists, are removed (a live writer's file is
    never touched).

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(path)
    pattern = _temp_pattern(path.name)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or m.group(1) != _HOST or _pid_alive(int(m.group(2))):
            continue
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; rename it over ``path`` on success.

    The caller writes (and may read back) the temporary file; it is fsynced
    and renamed when the block ends without an exception, and removed
    otherwise. See the module docstring for its name and mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    while True:
        tmp = path.parent / f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            # O_EXCL: never follow or reuse an existing name; 0o666 lets the umask decide.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (best effort; not every platform can open a directory)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched,
    so a failed write never leaves a partial file behind. The file gets the
    process umask (``0644`` typically). ``mode`` is ``"wb"`` or ``"w"``
    (UTF-8 text).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()


# ---------------------------------------------------------------------------
# outputs


def _is_musichal_export(head: bytes) -> bool:
    return head.startswith(b'{"format_version":"2.0","chandra":{"format":"chandra-musichal-export"')


def _sniff_output(head: bytes) -> str | None:
    """Which kind of chandra output a file's first bytes show, or None."""
    if head.startswith(b"PK\x03\x04") and len(head) >= 30:
        name_len = int.from_bytes(head[26:28], "little")
        if head[30:30 + name_len] == b"model.json":
            return "model"
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        # chandra's WAVs carry an INFO chunk whose software (ISFT) string
        # starts with "chandra", ahead of the samples (see generate.write_wav).
        at = head.find(b"ISFT")
        if at >= 0 and head[at + 8:at + 8 + len(WAV_SOFTWARE_TAG)] == WAV_SOFTWARE_TAG:
            return "wav"
        return None
    if _is_musichal_export(head):
        return "musichal"
    return None


def check_output(path: str | os.PathLike, *, kind: str, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output path that would destroy something that is not ours to replace.

    Parameters
    ----------
    path : path-like
        Where the caller is about to write.
    kind : {"model", "wav", "musichal", "json"}
        What the caller writes. An existing file at ``path`` may be replaced
        only when it is empty or a file of that kind as chandra writes it
        (sniffed from its first bytes: a zip whose first member is
        ``model.json``; a WAV whose INFO software string starts with
        ``chandra``, so a recording is never replaced; a MusicHal export
        carrying chandra's block). For ``"json"`` any existing JSON object
        is accepted.
    inputs : iterable of path-like
        Files the command reads; ``path`` must not be any of them (compared
        by device and inode, so links and ``..`` are seen through).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        ``path`` is a directory, is one of ``inputs``, or is an existing
        file of another kind.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {OUTPUT_KINDS}, not {kind!r}")
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name to write")
    if not path.exists():
        return path
    for source in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, source):
                raise OutputError(f"{path}: is the input {source}; refusing to overwrite it (choose another "
                                  "output name)")
    if not path.is_file():
        raise OutputError(f"{path}: exists and is not a regular file; refusing to replace it")
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError as exc:
        raise OutputError(f"{path}: exists and cannot be read to check what it is ({exc.strerror})") from None
    found = _sniff_output(head)
    if not head:
        ok = True  # an empty file holds nothing to lose
    elif kind == "json":
        ok = head.lstrip(b" \t\r\n").startswith(b"{")
    elif kind == "musichal":
        ok = found == "musichal"
    else:
        ok = found == kind
    if not ok:
        what = {"model": "a chandra model", "wav": "a WAV file", "musichal": "a MusicHal export written by chandra",
                "json": "a JSON file"}[kind]
        raise OutputError(f"{path}: exists and is not {what}; refusing to replace it (delete it first or "
                          "choose another output name)")
    return path


@contextlib.contextmanager
def exclusive_output(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on writing ``path`` for the duration of the block.

    The lock is an ``fcntl.flock`` on ``.<name>.chandra-lock`` beside
    ``path``, so it covers threads and processes (on one host, and on file
    systems with working flock). A second writer gets :class:`OutputError`
    at once rather than waiting, so it can tell its user that its result
    would replace another one. The lock file is removed on release; a process
    killed with SIGKILL leaves an unlocked file the next writer reuses.

    Raises
    ------
    OutputError
        Another process (or another block in this one) holds the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking available
        yield path
        return
    lock = path.parent / f".{path.name}{LOCK_SUFFIX}"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"{path}: another chandra process is writing this file; not starting a second "
                                  "write that would replace its result (wait for it, or choose another "
                                  "output name)") from None
            raise
        # The holder before us may have removed the file between our open and
        # our lock: then we hold a lock on a deleted file; start again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


# ---------------------------------------------------------------------------
# hashing and JSON


def installed_versions(names: Iterable[str], *, missing: Any = "not installed") -> dict[str, Any]:
    """Installed version of each distribution in ``names`` (``missing`` for those not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = missing
    return out


def sha256_file(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` hook for numpy scalars and arrays."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json_atomic(obj: Any, path: str | os.PathLike, *, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=indent, default=json_default, allow_nan=False)
