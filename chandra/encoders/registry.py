"""Encoders by name: the names the CLI and dashboard offer, and :func:`make_encoder`."""

from __future__ import annotations

import inspect
from typing import Any

from chandra.encoders.base import Encoder
from chandra.encoders.dsp import DSPEncoder
from chandra.encoders.neural import Wav2Vec2Encoder
from chandra.errors import EncoderError

__all__ = ["ENCODER_NAMES", "available_encoders", "make_encoder"]


_ALIASES: dict[str, tuple[type, dict]] = {
    "dsp": (DSPEncoder, {}),
    "wav2vec2": (Wav2Vec2Encoder, {"model": "facebook/wav2vec2-base"}),
    "hubert": (Wav2Vec2Encoder, {"model": "facebook/hubert-base-ls960"}),
    "wavlm": (Wav2Vec2Encoder, {"model": "microsoft/wavlm-base-plus"}),
    # MERT's model code ships with its weights; running it stays an explicit
    # opt-in (trust_remote_code=True / --trust-remote-code), never a default.
    "mert": (Wav2Vec2Encoder, {"model": "m-a-p/MERT-v1-95M"}),
}

#: Names :func:`make_encoder` accepts (the CLI's and dashboard's choices).
ENCODER_NAMES: tuple[str, ...] = tuple(_ALIASES)


def available_encoders() -> dict[str, dict]:
    """Encoder names accepted by :func:`make_encoder` with their default options.

    Returns
    -------
    dict
        ``{name: {"class": class name, "defaults": {option: value}}}``.
    """
    return {name: {"class": cls.__name__, "defaults": dict(defaults)} for name, (cls, defaults) in _ALIASES.items()}


def make_encoder(name: str, **options: Any) -> Encoder:
    """Build an encoder by name.

    Parameters
    ----------
    name : str
        ``"dsp"``, ``"wav2vec2"``, or an alias of the transformer encoder with
        its own default model: ``"hubert"`` (facebook/hubert-base-ls960),
        ``"wavlm"`` (microsoft/wavlm-base-plus), ``"mert"``
        (m-a-p/MERT-v1-95M, ``trust_remote_code=True``). Case-insensitive.
    **options
        Constructor options; they override the alias defaults (e.g.
        ``model=DIR``).

    Returns
    -------
    Encoder

    Raises
    ------
    EncoderError
        Unknown name or an option the encoder does not take.
    """
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise EncoderError(f"unknown encoder {name!r}; choose one of: {', '.join(_ALIASES)}")
    cls, defaults = _ALIASES[key]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise EncoderError(
            f"encoder {key!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(sorted(accepted))}"
        )
    return cls(**{**defaults, **options})
