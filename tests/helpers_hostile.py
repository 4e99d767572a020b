"""Hostile files for tests: zip bombs, deep JSON, long numbers, and a bounded subprocess runner.

Zip bombs are built without compressing gigabytes: a raw DEFLATE stream of
one fixed-Huffman block in which, after a prefix of literals, every 258 bytes
of zeros are one <length 258, distance 1> pair (13 bits). Eight pairs are 13
whole bytes, so the stream is a short head, one 13-byte pattern repeated,
and a tail. The CRC-32 of the inflated member is computed by shifting the
prefix's CRC through the zeros with GF(2) matrix powers (as zlib's
``crc32_combine`` does), so the archives are valid zips that really inflate
to gigabytes.
"""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

__all__ = ["deflate_zeros", "crc32_zeros", "write_zip", "run_limited", "REPO", "AS_LIMIT", "TIMEOUT_S"]

REPO = Path(__file__).resolve().parents[1]
#: Address-space limit of the child processes (bytes).
AS_LIMIT = 2 * 1024**3
#: Wall-clock limit of the child processes (seconds).
TIMEOUT_S = 60


class _Bits:
    """DEFLATE bit writer: raw values LSB first, Huffman codes MSB first."""

    def __init__(self) -> None:
        self.acc = 0
        self.n = 0
        self.out = bytearray()

    def put(self, value: int, nbits: int) -> None:
        self.acc |= value << self.n
        self.n += nbits
        while self.n >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.n -= 8

    def code(self, code: int, nbits: int) -> None:
        self.put(int(format(code, f"0{nbits}b")[::-1], 2), nbits)

    def literal(self, byte: int) -> None:
        if byte < 144:
            self.code(0x30 + byte, 8)
        else:
            self.code(0x190 + byte - 144, 9)

    def repeat258(self) -> None:
        self.code(0xC0 + 5, 8)  # length code 285 = 258 bytes, no extra bits
        self.code(0, 5)         # distance code 0 = 1 byte back

    def flush(self) -> bytes:
        if self.n:
            self.out.append(self.acc & 0xFF)
            self.acc = self.n = 0
        return bytes(self.out)


def deflate_zeros(prefix: bytes, n_zeros: int) -> bytes:
    """Raw DEFLATE (``zlib.decompress(data, -15)``) of ``prefix + bytes(n_zeros)``."""
    head = _Bits()
    head.put(1, 1)  # BFINAL
    head.put(1, 2)  # BTYPE = fixed Huffman
    for byte in prefix:
        head.literal(byte)
    remaining = n_zeros
    if remaining:
        head.literal(0)
        remaining -= 1
    while remaining >= 258 and head.n:
        head.repeat258()
        remaining -= 258
    pattern = _Bits()
    for _ in range(8):
        pattern.repeat258()
    tile = pattern.flush()
    assert len(tile) == 13
    repeats = remaining // (8 * 258) if head.n == 0 else 0
    remaining -= repeats * 8 * 258
    tail = _Bits()
    tail.n, tail.acc = head.n, head.acc  # continue an unaligned head (only when repeats == 0)
    head_bytes = bytes(head.out)
    while remaining >= 258:
        tail.repeat258()
        remaining -= 258
    for _ in range(remaining):
        tail.literal(0)
    tail.code(0, 7)  # end of block
    return head_bytes + tile * repeats + tail.flush()


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[i]) for i in range(32)]


def crc32_zeros(crc: int, n_zeros: int) -> int:
    """``zlib.crc32(bytes(n_zeros), crc)`` without touching ``n_zeros`` bytes."""
    one_bit = [0xEDB88320] + [1 << i for i in range(31)]
    power = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # one zero byte
    register = crc ^ 0xFFFFFFFF
    n = n_zeros
    while n:
        if n & 1:
            register = _gf2_times(power, register)
        n >>= 1
        if n:
            power = _gf2_square(power)
    return register ^ 0xFFFFFFFF


def write_zip(path: Path, members: list[dict]) -> Path:
    """Write a zip from members ``{"name", "method" (0 stored, 8 deflated), "data" (as stored in the
    archive), "crc", "size" (inflated)}``; sizes below 4 GiB (no zip64)."""
    local = bytearray()
    central = bytearray()
    for m in members:
        name = m["name"].encode()
        offset = len(local)
        fields = (20, 0, m["method"], 0, 0x21, m["crc"], len(m["data"]), m["size"], len(name), 0)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name + m["data"]
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, m["method"], 0, 0x21, m["crc"],
                               len(m["data"]), m["size"], len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(local), 0)
    path.write_bytes(bytes(local) + bytes(central) + end)
    return path


def stored(name: str, data: bytes) -> dict:
    """A stored member for :func:`write_zip`."""
    return {"name": name, "method": 0, "data": data, "crc": zlib.crc32(data), "size": len(data)}


def deflated_zeros(name: str, prefix: bytes, n_zeros: int) -> dict:
    """A deflated member inflating to ``prefix + bytes(n_zeros)``, for :func:`write_zip`."""
    return {"name": name, "method": 8, "data": deflate_zeros(prefix, n_zeros),
            "crc": crc32_zeros(zlib.crc32(prefix), n_zeros), "size": len(prefix) + n_zeros}


def _limits() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_limited(*args: str, cwd: Path | None = None, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """``python -m chandra.cli ARGS`` under a 2 GB address-space limit and a 60 s timeout."""
    env = dict(os.environ)  # NUMBA_CACHE_DIR: the one chandra set on import (tests/conftest.py)
    # BLAS thread pools reserve address space per thread; one thread keeps the child well inside the limit.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "chandra.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=timeout, preexec_fn=_limits)
