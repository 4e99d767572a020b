"""chandra: train machine-improvisation models from recordings, every stage visible."""

from __future__ import annotations

__version__ = "0.1.0"

from chandra.errors import ChandraError  # noqa: E402

__all__ = ["__version__", "ChandraError"]
