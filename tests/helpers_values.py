"""Exact comparison of JSON-like values for round-trip tests."""

from __future__ import annotations

import math


def same(a, b) -> bool:
    """Equality that also holds for NaN and tells 0.0 from -0.0 and 1 from 1.0 / True (dict order counts)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
