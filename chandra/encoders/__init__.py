"""Segment encoders: one feature vector per onset segment.

Two encoders share one interface (:class:`Encoder`):

* :class:`DSPEncoder` (``"dsp"``, the default) — librosa descriptors computed
  once over the whole signal, then pooled per segment. Needs no weights.
* :class:`Wav2Vec2Encoder` (``"wav2vec2"``; aliases ``"hubert"``, ``"wavlm"``,
  ``"mert"``) — hidden states of a self-supervised speech/music transformer
  loaded with ``transformers`` from a local directory or the local Hugging Face
  cache only (never the network). The whole file is run in overlapping chunks,
  several chunks per forward pass; segment vectors are means of the frames
  whose centre lies inside the segment.

Both encoders see the whole signal once and pool afterwards, so the cost does
not grow with the number of segments and a short segment still gets context.

Segments are duck-typed: any object with float arrays ``start`` and ``end``
(seconds from file start) of equal length works, e.g.
:class:`chandra.segment.Segments`.

Frame-to-segment rule (both encoders): frame ``i`` has a centre time
``c_i`` in seconds; segment ``[start, end)`` takes the frames with
``start <= c_i < end``; when there are none (a segment shorter than a frame
hop) it takes the single frame whose centre is nearest the segment midpoint.

Modules (one thing each):

* :mod:`chandra.encoders.base` — the :class:`Encoder` protocol, signal checks, :func:`resample`;
* :mod:`chandra.encoders.pooling` — :func:`segment_bounds`, :func:`pool_frames` (the rule above);
* :mod:`chandra.encoders.dsp` — :class:`DSPEncoder`;
* :mod:`chandra.encoders.neural` — :class:`Wav2Vec2Encoder` (loading, chunking, stitching);
* :mod:`chandra.encoders.devices` — :data:`DEVICES`, :data:`QUANTIZE_MODES`, :func:`resolve_device`;
* :mod:`chandra.encoders.quantize` — int8 dynamic quantisation;
* :mod:`chandra.encoders.registry` — :data:`ENCODER_NAMES`, :func:`make_encoder`;
* :mod:`chandra.encoders.overlap` — forward passes beside other work (a producer thread), precomputed frames.

Everything public (and the private helpers tests use) is re-exported here, so
``from chandra.encoders import X`` keeps working.
"""

from __future__ import annotations

from chandra.encoders.base import Encoder, _check_signal, _versions, resample  # noqa: F401
from chandra.encoders.devices import DEVICES, QUANTIZE_MODES, _batch_for, resolve_device  # noqa: F401
from chandra.encoders.dsp import DSPEncoder
from chandra.encoders.neural import Wav2Vec2Encoder, _conv_output_length, _receptive_field  # noqa: F401
from chandra.encoders.pooling import _frame_ranges, pool_frames, segment_bounds  # noqa: F401
from chandra.encoders.quantize import _quantize_int8, _unfoldable, _WindowLinear  # noqa: F401
from chandra.encoders.registry import ENCODER_NAMES, available_encoders, make_encoder

__all__ = [
    "Encoder",
    "DSPEncoder",
    "Wav2Vec2Encoder",
    "ENCODER_NAMES",
    "DEVICES",
    "QUANTIZE_MODES",
    "resolve_device",
    "make_encoder",
    "available_encoders",
    "segment_bounds",
    "pool_frames",
    "resample",
]
