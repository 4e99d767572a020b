"""Respond: hear a played phrase the way the model heard its training audio, and answer it.

A trained model carries everything needed to hear new audio (format 1.3,
:mod:`chandra.model`): the segmentation parameters, the encoder and its
settings (``provenance["encoder"]``, ``provenance["config"]``), and the
fitted vocabulary (``vocabulary["state"]``, ``centers`` and
``vocabulary_arrays``: normalisation statistics, PCA). :class:`Listener`
rebuilds them once per model and then, for each phrase,

1. **listens** (:meth:`Listener.hear`): loads the phrase at the model's
   analysis rate, checks it as training checks its input
   (:func:`chandra.audio.validate_signal`: silent, too short, non-finite),
   trims its silent edges, segments it with the model's onset parameters,
   brings it to the training recording's level (below), encodes the
   segments with the model's encoder, and assigns each one the
   vocabulary's nearest token;
2. says **how familiar** each segment is (*coverage*, below);
3. **matches** the phrase's ending in the oracle (:func:`match_phrase`,
   query matching, below);
4. **answers** (:func:`respond`): improvises onward from the matched state
   with the navigation of :func:`chandra.generate.improvise` (continuity,
   minimum context, taboo) in one of :data:`MODES`, and resynthesises the
   path from the source audio.

Edges
-----
A recording starts before the first note and stops after the last one;
those silences are not part of the phrase (a last segment of silence, or
of the last note's tail and a second of silence, would otherwise be "the
phrase's ending"). The phrase is trimmed to the span whose frames (2048
samples, hop 512) are within :data:`EDGE_SILENCE_DB` (35 dB) of its
loudest frame, plus :data:`EDGE_MARGIN_S` (25 ms) each side, before it is segmented
(``trimmed`` gives the seconds dropped); silences inside the phrase stay.

Level
-----
A musician plays into a microphone at whatever level the room gives, but
the dsp descriptors are absolute (MFCC c0 and ``rms_db`` follow the gain:
measured on the test melody, the same phrase 6 dB quieter is heard as a
different gesture in most segments, 12 dB quieter is not found at all). So
before encoding, the phrase is scaled by ``gain_db`` = (median segment
level of the training recording, from its events' ``rms_db``) - (median
segment level of the phrase), both over segments above -70 dBFS, clipped to
+/- :data:`MAX_GAIN_DB`. The onset segmentation does not depend on the gain
(spectral flux of log power), and transformer encoders normalise each file
anyway. ``match_level=False`` turns it off; the gain is reported.

Coverage
--------
For each phrase segment with token ``k`` at distance ``d`` from centre
``k`` (in the vocabulary's space, where K-means ran), against the training
frames: ``count`` = frames of the model with token ``k``; ``spread`` = the
95th percentile of the training frames' distances to their own centre,
token ``k``'s own when it has at least :data:`MIN_FRAMES_FOR_SPREAD` frames,
else over all frames; ``ratio = d / spread``. Then

``"never"``
    ``count == 0``, or ``ratio > NEVER_RATIO`` (2): farther from its token
    than almost anything the model heard under that token, by twice;
``"rarely"``
    ``count < rare_count`` (a quarter of the uniform share ``n / K``, at
    least 3), or ``ratio > 1``;
``"often"``
    otherwise.

For audio-oracle models (``oracle.kind == "features"``) the oracle's own
comparison decides instead: ``within`` = training frames whose distance
(the oracle's metric) to the segment is below the oracle's threshold;
``"never"`` when none, ``"rarely"`` when fewer than ``rare_count``, else
``"often"``. Tokens, distances and ratios are reported either way.

Query matching
--------------
Wang & Dubnov's query matching on the variable Markov oracle (C. Wang and
S. Dubnov, "Guided music synthesis with variable Markov oracle", AIIDE
Musical Metacreation workshop, 2014; and Wang, Hsu & Dubnov, "Machine
improvisation with variable Markov oracle", Computers in Entertainment
14(3), 2016) finds the sequence of source frames closest to a query by
following the oracle: from the frame matched to one query frame, the next
one is reached by a forward transition or within the *cluster* its suffix
links define (frames the oracle treats as the same symbol). Their algorithm
keeps one greedy path per cluster; here the same moves are solved exactly
by dynamic programming (a Viterbi alignment, as subsequence dynamic time
warping aligns a query to a stretch of a longer recording: Müller,
*Fundamentals of Music Processing*, 2015, §7.2), with two more moves that
absorb segmentation differences. Phrase segment ``i`` (of the last
:data:`MAX_QUERY_SEGMENTS`) is aligned to one source frame ``j``; the local
cost is ``min(dist(q_i, x_j) / scale, COST_CAP)`` (token oracles: Euclidean
distance in the vocabulary's space over the median distance of a training
frame to its centre; audio oracles: the oracle's metric over its
threshold). From frame ``j'`` (segment ``i - 1``) to ``j`` (segment ``i``):

============  ==================================================  ===========
move          allowed when                                        penalty
============  ==================================================  ===========
``continue``  ``j = j' + 1`` (the oracle's forward transition)      0
``stay``      ``j = j'`` (the phrase split a source segment)        0.5
``skip``      ``j = j' + 2`` (the phrase merged two)                0.5
``jump``      frame ``j - 1`` in the cluster of ``j'``: state ``j``  1.0
              shares context with state ``j' + 1``, as an
              improviser's jump
``restart``   any ``j`` (no shared context)                         2.0
============  ==================================================  ===========

The segment may start anywhere. The matched frame is the end of the
cheapest alignment (lowest frame on ties), the *matched state* is the
state after it. The match's ``context`` counts the segments of the
alignment's final run (no jump or restart; stays and skips are repairs of
segmentation and stay in the run) that match their frames as the oracle
matches frames: a factor oracle, the same token or a local cost below
sqrt(2) (as close as two frames of one token typically are); an audio
oracle, a distance below its threshold. A phrase cut from the training
recording aligns contiguously to its own position (context = its length,
or one less when an edge segment was cut differently); a phrase the model
never heard has context 0. ``suffix_context`` is the strict form (trailing
segments matching the frames that end at the matched one, up to the first
mismatch), ``token_context`` the same with exact tokens (the factor
oracle's context there), and ``run_length`` the final run's length.

Modes
-----
``"continue"``
    Improvise from the matched state: the answer picks up where the phrase
    leaves off in the source.
``"imitate"``
    The same, guided by the phrase's tokens (repeated over the answer):
    step ``t`` plays a frame with the phrase's ``t``-th token when it can,
    forward if the source continues with it, else by a jump to the frames
    with it sharing most context (``guide`` of :func:`improvise`).
``"contrast"``
    The same, with frames whose tokens the phrase did not use made
    :data:`CONTRAST_WEIGHT` times likelier (``where_mode="weight"``);
    when the phrase used every token, those it used least are preferred.

The frames the phrase was matched to are the walk's ``history``, so the
taboo window keeps the answer from replaying them. Same model, phrase,
mode and seed: the same answer, to the byte.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from chandra.errors import ChandraError, ModelFormatError, ParameterError, VocabularyError, WeightsNotFoundError, \
    first_line

__all__ = [
    "source_place",
    "take_name",
    "MODES",
    "COVERAGE_LEVELS",
    "ListenerError",
    "Listener",
    "Phrase",
    "Match",
    "Response",
    "listening_spec",
    "get_listener",
    "match_phrase",
    "respond",
    "respond_to_wav",
    "guide_agreement",
    "token_share",
    "RESPONSE_FORMAT",
    "response_id",
    "store_response",
    "read_response",
    "list_responses",
    "MAX_QUERY_SEGMENTS",
    "PENALTIES",
    "COST_CAP",
    "NEVER_RATIO",
    "CONTRAST_WEIGHT",
    "MIN_FRAMES_FOR_SPREAD",
    "MAX_GAIN_DB",
    "EDGE_SILENCE_DB",
    "EDGE_MARGIN_S",
]

#: Answer modes (see the module docstring).
MODES = ("continue", "imitate", "contrast")
#: Coverage levels, most familiar first.
COVERAGE_LEVELS = ("often", "rarely", "never")
#: Trailing phrase segments aligned by :func:`match_phrase`.
MAX_QUERY_SEGMENTS = 64
#: Move penalties of the alignment, in units of the local cost.
PENALTIES = {"continue": 0.0, "stay": 0.5, "skip": 0.5, "jump": 1.0, "restart": 2.0}
_MOVES = ("continue", "stay", "skip", "jump", "restart")  # np.argmin order: ties go to the earlier move
#: Largest local cost of one aligned segment (one foreign segment cannot outweigh the rest).
COST_CAP = 4.0
#: Distance ratio beyond which a segment counts as never heard.
NEVER_RATIO = 2.0
#: Weight of frames with tokens the phrase did not use, in ``contrast`` mode.
CONTRAST_WEIGHT = 8.0
#: Frames a token needs for its own spread (else the spread over all frames is used).
MIN_FRAMES_FOR_SPREAD = 20
#: Largest gain (dB, either way) applied to bring a phrase to the training recording's level.
MAX_GAIN_DB = 40.0
#: Leading and trailing stretches this far (dB) below the phrase's loudest frame are silence, not phrase.
EDGE_SILENCE_DB = 35.0
#: Seconds of the trimmed silence kept on each side of a phrase.
EDGE_MARGIN_S = 0.025
#: Segments quieter than this (dB re full scale) are left out of level estimates.
_LEVEL_FLOOR_DB = -70.0
#: Agreement of the rebuilt vocabulary with the model's own tokens below which it is refused.
_MIN_TOKEN_AGREEMENT = 0.99


class ListenerError(ModelFormatError):
    """A model cannot hear new audio: it lacks (or contradicts) what listening needs."""


# --------------------------------------------------------------------------- what the model says


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _whole(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def listening_spec(model: Any) -> dict:
    """How ``model`` heard its training audio, from its provenance and vocabulary.

    Returns
    -------
    dict
        ``sample_rate`` (Hz, the analysis rate audio is loaded at),
        ``segmentation`` (``min_duration``, ``max_duration`` in seconds,
        ``hop_length`` in samples), ``encoder`` (``name`` "dsp" or
        "wav2vec2", the training alias ``alias``, and the options to rebuild
        it: dsp ``sr``, ``n_mfcc``, ``hop_length``, ``n_fft``; transformer
        ``model``, ``model_path``, ``layer``, ``chunk_seconds``,
        ``overlap_seconds``, ``batch_size``, ``trust_remote_code``),
        ``vocabulary`` (``normalisation``, ``pca_components``, ``source``:
        "state" for format 1.3 models, "centres" where an l2/none vocabulary
        without PCA is rebuilt exactly from its centres), ``oracle``
        (``kind``, ``metric``, ``threshold``).

    Raises
    ------
    ListenerError
        Naming everything missing (e.g. a MusicHal import, which records no
        encoder or segmentation; a model saved before format 1.3 with
        standardisation or PCA, whose statistics were not kept).
    """
    prov = model.provenance if isinstance(getattr(model, "provenance", None), dict) else {}
    config = prov.get("config") if isinstance(prov.get("config"), dict) else {}
    encoder = prov.get("encoder") if isinstance(prov.get("encoder"), dict) else {}
    segmentation = prov.get("segmentation") if isinstance(prov.get("segmentation"), dict) else {}
    vocab = model.vocabulary if isinstance(getattr(model, "vocabulary", None), dict) else {}
    params = vocab.get("params") if isinstance(vocab.get("params"), dict) else {}
    missing: list[str] = []

    sample_rate = _whole(config.get("sample_rate")) or _whole((prov.get("input") or {}).get("sample_rate")
                                                              if isinstance(prov.get("input"), dict) else None)
    if sample_rate is None:
        sample_rate = _whole(getattr(model, "sample_rate", None))
    if sample_rate is None or sample_rate <= 0:
        missing.append("the analysis sample rate")

    seg = {}
    for key, kind in (("min_duration", _number), ("max_duration", _number), ("hop_length", _whole)):
        value = kind(segmentation.get(key, config.get(key)))
        if value is None or value <= 0:
            missing.append(f"segmentation {key}")
        seg[key] = value

    name = encoder.get("encoder")
    enc: dict[str, Any] = {"name": name, "alias": config.get("encoder") or name}
    if name == "dsp":
        for key, source in (("sr", "sample_rate"), ("n_mfcc", "n_mfcc"), ("hop_length", "hop_length"),
                            ("n_fft", "n_fft")):
            value = _whole(encoder.get(source))
            if value is None:
                missing.append(f"dsp encoder {source}")
            enc[key] = value
    elif name == "wav2vec2":
        enc["model"] = encoder.get("model") if isinstance(encoder.get("model"), str) else config.get("model")
        enc["model_path"] = encoder.get("model_path") if isinstance(encoder.get("model_path"), str) else None
        if not isinstance(enc["model"], str) and enc["model_path"] is None:
            missing.append("the encoder's model name or directory")
        layer = _whole(encoder.get("layer", config.get("layer")))
        if layer is None:
            missing.append("the encoder layer")
        enc["layer"] = layer
        enc["model_type"] = encoder.get("model_type")
        for key, default in (("chunk_seconds", 15.0), ("overlap_seconds", 1.0)):
            enc[key] = _number(encoder.get(key, config.get(key))) or default
        enc["batch_size"] = _whole(encoder.get("batch_size", config.get("batch_size"))) or 2
        enc["trust_remote_code"] = bool(encoder.get("trust_remote_code") or config.get("trust_remote_code"))
    else:
        missing.append("the encoder (provenance['encoder'])")

    normalisation = params.get("normalisation")
    state = vocab.get("state") if isinstance(vocab.get("state"), dict) else None
    pca = params.get("pca_components")
    effective = ((state or {}).get("effective_params") or {}).get("pca_components") if state else None
    if isinstance(effective, dict) and "effective" in effective:
        pca = effective["effective"]
    voc = {"normalisation": normalisation, "pca_components": pca, "source": None}
    if getattr(model, "centers", None) is None:
        missing.append("the vocabulary's centres")
    elif state is not None:
        arrays = getattr(model, "vocabulary_arrays", None) or {}
        if normalisation == "standard" and not {"norm_mean", "norm_scale"} <= set(arrays):
            missing.append("the vocabulary's standardisation statistics (norm_mean, norm_scale)")
        if pca is not None and not {"pca_mean", "pca_components"} <= set(arrays):
            missing.append("the vocabulary's PCA (pca_mean, pca_components)")
        voc["source"] = "state"
    elif normalisation in ("l2", "none") and pca is None:
        voc["source"] = "centres"  # transform is l2 (or nothing): exact from the centres alone
    else:
        what = []
        if normalisation == "standard":
            what.append("standardisation statistics")
        if pca is not None:
            what.append("PCA mean and components")
        if normalisation not in ("l2", "none", "standard"):
            what.append("its normalisation")
        missing.append("the vocabulary's " + " and ".join(what or ["state"]) + " (saved since model format 1.3; "
                       "retrain to respond)")

    oracle = getattr(model, "oracle", None)
    if oracle is None:
        missing.append("an oracle")
    spec = {"sample_rate": sample_rate, "segmentation": seg, "encoder": enc, "vocabulary": voc,
            "oracle": None if oracle is None else {"kind": oracle.kind, "metric": oracle.metric,
                                                   "threshold": oracle.threshold}}
    if missing:
        origin = ""
        if prov.get("imported_from") or str(getattr(model, "source_format", "chandra")).startswith("musichal"):
            origin = " (an imported MusicHal model records no encoder, segmentation or vocabulary state)"
        raise ListenerError(f"this model cannot hear new audio: it does not record {', '.join(missing)}{origin}")
    return spec


def _rebuild_vocabulary(model: Any, spec: dict):
    from chandra.vocabulary import GestureVocabulary

    vocab = model.vocabulary
    centers = np.asarray(model.centers, dtype=np.float32)
    if spec["vocabulary"]["source"] == "state":
        arrays = {"centers": centers, **{k: np.asarray(v) for k, v in (model.vocabulary_arrays or {}).items()}}
        try:
            return GestureVocabulary.from_state(vocab["state"], arrays)
        except VocabularyError as exc:
            raise ListenerError(f"this model's vocabulary state cannot be rebuilt: {first_line(exc)}") from None
    # Before format 1.3 only the centres were kept; for an l2 (or no)
    # normalisation without PCA, transform() needs nothing else.
    params = dict(vocab.get("params") or {})
    k = int(centers.shape[0])
    dim = _whole((vocab.get("fitted_on") or {}).get("dim") if isinstance(vocab.get("fitted_on"), dict) else None)
    if dim is None:
        dim = _whole((model.provenance.get("encoder") or {}).get("dim"))
    if dim is None or dim != centers.shape[1]:
        dim = int(centers.shape[1])  # without PCA the centres live in the encoder's space
    meta = {
        "params": params,
        "effective_params": {"n_tokens": {"configured": params.get("n_tokens", k), "effective": k},
                             "pca_components": {"configured": None, "effective": None},
                             "reduced": False, "reason": None},
        "fit_metrics": dict(vocab.get("fit_metrics") or {}),
        "n_tokens_": k, "n_features_in_": dim, "n_samples_fit_": len(model.events),
        "n_zero_rows_": 0, "n_distinct_rows_": len(model.events), "inertia_": float("nan"),
    }
    try:
        return GestureVocabulary.from_state(meta, {"centers": centers})
    except VocabularyError as exc:
        raise ListenerError(f"this model's vocabulary cannot be rebuilt from its centres: {first_line(exc)}") from None


def _build_encoder(spec: dict, *, encoder_model: str | os.PathLike | None, trust_remote_code: bool,
                   device: str):
    from chandra.encoders import DSPEncoder, Wav2Vec2Encoder

    enc = spec["encoder"]
    if enc["name"] == "dsp":
        return DSPEncoder(sr=enc["sr"], n_mfcc=enc["n_mfcc"], hop_length=enc["hop_length"], n_fft=enc["n_fft"])
    if enc["trust_remote_code"] and not trust_remote_code:
        raise ListenerError(f"this model's encoder ({enc['alias']}, '{enc['model']}') runs code from its model "
                            "directory; respond runs it only when asked (trust_remote_code=True)")
    candidates: list[str] = []
    if encoder_model is not None:
        candidates = [os.fspath(encoder_model)]
    else:
        for value in (enc.get("model_path"), enc.get("model")):
            if isinstance(value, str) and value and value not in candidates:
                candidates.append(value)
    looked: list[str] = []
    for source in candidates:
        encoder = Wav2Vec2Encoder(model=source, layer=enc["layer"], chunk_seconds=enc["chunk_seconds"],
                                  overlap_seconds=enc["overlap_seconds"],
                                  batch_size=enc["batch_size"], trust_remote_code=trust_remote_code, device=device)
        try:
            return encoder.load()
        except WeightsNotFoundError:
            path = Path(source).expanduser()
            looked.append(f"directory {path.absolute()}" if path.is_absolute() or path.exists() or "/" not in source
                          or source.startswith((".", "~")) else f"the Hugging Face cache (for '{source}')")
    where = "; ".join(looked) or "nowhere (the model names no weights)"
    label = enc.get("model") or enc.get("model_path")
    raise WeightsNotFoundError(
        f"this model listens with the {enc['alias']} encoder '{label}' (layer {enc['layer']}), whose weights are not "
        f"available here: looked in {where}. Point encoder_model at a copy of that model's directory "
        "(config.json, weights, preprocessor_config.json)", parameter="encoder_model")


def _suffix_clusters(oracle: Any) -> np.ndarray:
    """Cluster of each frame: the root-side end of its suffix-link chain (VMO's symbol).

    State ``s`` gets ``s`` when ``sfx[s] == 0``, else its suffix link's
    cluster; frame ``j`` is state ``j + 1``. For a factor oracle this is the
    first occurrence of the frame's token.
    """
    sfx = np.asarray(oracle.sfx, dtype=np.int64)
    label = np.arange(len(sfx), dtype=np.int64)
    for s in range(1, len(sfx)):
        t = int(sfx[s])
        if 0 < t < s:
            label[s] = label[t]
    return label[1:]


# --------------------------------------------------------------------------- the phrase


@dataclass
class Phrase:
    """A phrase as the model hears it.

    Attributes
    ----------
    name : str
    y : ndarray of float32, shape (n_samples,)
        The phrase at the model's analysis rate.
    sample_rate : int
        Hz.
    segments : chandra.segment.Segments
        Onset segments (seconds from the phrase's start).
    features : ndarray of float32, shape (m, d')
        In the vocabulary's space (normalised, PCA'd): the space of the
        model's ``features`` and ``centers``.
    tokens : ndarray of int64, shape (m,)
        Nearest centre.
    distances : ndarray of float64, shape (m,)
        Distance to that centre (Euclidean, vocabulary space).
    ratios : ndarray of float64, shape (m,)
        ``distances`` over the token's spread (module docstring).
    token_counts : ndarray of int64, shape (m,)
        Frames of the model with the segment's token.
    within : ndarray of int64, shape (m,) or None
        Audio oracles: training frames within the oracle's threshold.
    nearest_frames : ndarray of int64, shape (m,)
        The training frame nearest each segment (local cost of the matching).
    coverage : list of str
        One of :data:`COVERAGE_LEVELS` per segment.
    gain_db : float
        Gain applied to bring the phrase to the training recording's level (dB).
    trimmed : tuple of float
        Seconds of silence dropped at the start and at the end (module docstring, "Edges");
        ``y`` and the segment times start after the leading silence.
    frame_distances : ndarray of float64, shape (m, n_frames), optional
        Distance of each segment to every training frame (the listener's
        metric), kept for the matching.
    """

    name: str
    y: np.ndarray
    sample_rate: int
    segments: Any
    features: np.ndarray
    tokens: np.ndarray
    distances: np.ndarray
    ratios: np.ndarray
    token_counts: np.ndarray
    within: np.ndarray | None
    nearest_frames: np.ndarray
    coverage: list[str]
    gain_db: float = 0.0
    trimmed: tuple[float, float] = (0.0, 0.0)
    frame_distances: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(len(self.tokens))

    @property
    def duration(self) -> float:
        """Seconds."""
        return len(self.y) / float(self.sample_rate)

    def coverage_summary(self) -> dict:
        """``{"often", "rarely", "never"}``: share of the segments at each level, and ``n_segments``."""
        m = max(len(self.coverage), 1)
        out = {level: self.coverage.count(level) / m for level in COVERAGE_LEVELS}
        out["n_segments"] = len(self.coverage)
        return out

    def to_dict(self) -> dict:
        """JSON-able analysis: one row per segment and the coverage summary."""
        rows = []
        offset = float(self.trimmed[0])  # times in the recording as given, before its silence was trimmed
        for i in range(len(self)):
            rows.append({
                "index": i, "start": offset + float(self.segments.start[i]),
                "end": offset + float(self.segments.end[i]),
                "token": int(self.tokens[i]), "distance": float(self.distances[i]),
                "distance_ratio": float(self.ratios[i]), "token_count": int(self.token_counts[i]),
                "within_threshold": None if self.within is None else int(self.within[i]),
                "nearest_frame": int(self.nearest_frames[i]), "coverage": self.coverage[i],
            })
        return {"name": self.name, "duration_s": self.duration, "sample_rate": int(self.sample_rate),
                "gain_db": float(self.gain_db), "trimmed_s": [float(t) for t in self.trimmed],
                "n_segments": len(self), "tokens_used": sorted({int(t) for t in self.tokens}),
                "coverage": self.coverage_summary(), "segments": rows}


@dataclass
class Match:
    """Where a phrase's ending was found in the model (see the module docstring).

    Attributes
    ----------
    first_segment : int
        Index of the first phrase segment aligned (the last
        :data:`MAX_QUERY_SEGMENTS` are).
    frames : ndarray of int64, shape (q,)
        Source frame aligned to each of those segments.
    moves : list of str
        ``"start"`` then one of ``continue | stay | skip | jump | restart`` per segment.
    costs : ndarray of float64, shape (q,)
        Local cost of each aligned segment.
    total_cost : float
        Local costs plus move penalties.
    end_frame : int
        Frame matched to the phrase's last segment.
    context : int
        Segments of the alignment's final run (no jump or restart) that match
        their frames (same token or close enough; audio oracles: within the
        threshold): how much of the phrase's ending the model recognises at
        the matched state.
    suffix_context : int
        Trailing phrase segments that match, in order, the source frames
        ending at ``end_frame`` (no repairs: stops at the first mismatch).
    token_context : int
        Trailing phrase tokens equal to the source tokens ending at ``end_frame``.
    run_length : int
        Segments in the alignment's final run without a jump or restart
        (stays and skips included: segmentation repairs).
    """

    first_segment: int
    frames: np.ndarray
    moves: list[str]
    costs: np.ndarray
    total_cost: float
    end_frame: int
    context: int
    token_context: int
    run_length: int = 0
    suffix_context: int = 0
    method: str = "query matching (Wang & Dubnov 2014) by dynamic programming"

    @property
    def state(self) -> int:
        """Oracle state after the matched frame: where the answer begins."""
        return int(self.end_frame) + 1

    def to_dict(self) -> dict:
        return {"method": self.method, "end_frame": int(self.end_frame), "state": self.state,
                "context": int(self.context), "suffix_context": int(self.suffix_context),
                "token_context": int(self.token_context), "run_length": int(self.run_length),
                "total_cost": float(self.total_cost), "mean_cost": float(np.mean(self.costs)) if len(self.costs)
                else None, "first_segment": int(self.first_segment), "frames": [int(f) for f in self.frames],
                "moves": list(self.moves), "costs": [float(c) for c in self.costs]}


# --------------------------------------------------------------------------- the listener


class Listener:
    """A model's ears: its segmentation, encoder and vocabulary, rebuilt once.

    Parameters
    ----------
    model : Model
        A chandra model with an oracle, saved in format 1.3 (or an older one
        whose vocabulary is l2 / none without PCA).
    encoder_model : str or path, optional
        Where a transformer encoder's weights are, overriding what the model
        recorded (a model trained on another machine).
    trust_remote_code : bool
        Allow a transformer whose code lives in its model directory (MERT);
        never taken from the model file.
    device : str
        torch device for a transformer encoder.
    match_level : bool
        Bring each phrase to the training recording's level before encoding
        (module docstring, "Level").

    Raises
    ------
    ListenerError
        The model lacks what listening needs, or its tokens do not follow its
        centres.
    WeightsNotFoundError
        A transformer encoder's weights are not where the model (or
        ``encoder_model``) says; the message names the encoder and where it
        looked.
    """

    def __init__(self, model: Any, *, encoder_model: str | os.PathLike | None = None,
                 trust_remote_code: bool = False, device: str = "cpu", match_level: bool = True):
        model.validate()
        self.match_level = bool(match_level)
        self.model = model
        self.spec = listening_spec(model)
        if model.n_frames < 1:
            raise ListenerError("this model has no frames to answer from")
        self.vocabulary = _rebuild_vocabulary(model, self.spec)
        self.centers = np.asarray(self.vocabulary.cluster_centers_, dtype=np.float64)
        features = np.asarray(model.features, dtype=np.float32)  # float32: a 100k x 768 model stays 300 MB
        if features.shape[1] != self.centers.shape[1]:
            raise ListenerError(f"this model's features have {features.shape[1]} dimensions but its vocabulary's "
                                f"centres {self.centers.shape[1]}")
        if not np.all(np.isfinite(features)):
            raise ListenerError("this model's features hold NaN or infinity; it cannot compare new audio with them")
        self.features = features
        self.sqnorms = np.einsum("ij,ij->i", features, features, dtype=np.float64)
        self.tokens = model.tokens()
        k = int(self.centers.shape[0])
        nearest = _nearest_centres(features, self.centers)[0]
        has_token = self.tokens >= 0
        agreement = float(np.mean(nearest[has_token] == self.tokens[has_token])) if has_token.any() else 0.0
        if agreement < _MIN_TOKEN_AGREEMENT:
            raise ListenerError(f"this model's tokens do not follow its vocabulary's centres (only {agreement:.1%} "
                                "of frames carry their nearest centre's token), so new audio cannot be tokenised "
                                "the way its frames were")
        self.n_tokens = k
        valid = self.tokens[has_token]
        self.token_counts = np.bincount(valid, minlength=k).astype(np.int64)[:k]
        own = np.linalg.norm(features[has_token].astype(np.float64) - self.centers[valid], axis=1)
        self.global_spread = float(np.quantile(own, 0.95)) if own.size else 1.0
        self.median_spread = float(np.median(own)) if own.size else 1.0
        if not self.global_spread > 0:
            self.global_spread = max(float(own.max()) if own.size else 0.0, 1e-9)
        if not self.median_spread > 0:
            self.median_spread = self.global_spread
        spread = np.full(k, self.global_spread)
        for t in np.flatnonzero(self.token_counts >= MIN_FRAMES_FOR_SPREAD):
            q = float(np.quantile(own[valid == t], 0.95))
            spread[t] = q if q > 0 else self.global_spread
        self.token_spread = spread
        n = model.n_frames
        self.rare_count = max(3, int(math.ceil(0.25 * n / k)))
        self.oracle_kind = model.oracle.kind
        self.metric = model.oracle.metric
        self.threshold = model.oracle.threshold
        self.clusters = _suffix_clusters(model.oracle)
        rows = [(float(e["rms_db"]), e.get("take", 0)) for e in model.events if _number(e.get("rms_db")) is not None]
        levels = np.array([level for level, _ in rows], dtype=np.float64)
        takes = np.array([take if isinstance(take, (int, np.integer)) and not isinstance(take, bool) else 0
                          for _, take in rows], dtype=np.int64)
        audible = levels > _LEVEL_FLOOR_DB
        levels, takes = levels[audible], takes[audible]
        #: Median segment level of the training recording (dB re full scale), None when unknown.
        self.reference_level_db = float(np.median(levels)) if levels.size else None
        #: The same per take of a corpus (one value for one file): a phrase is brought to the
        #: level of the take whose level is nearest its own, not to the corpus's median, which
        #: may lie between a quiet and a loud take and fit neither.
        self.reference_levels_db = [float(np.median(levels[takes == t])) for t in np.unique(takes)]
        # What answering needs (audio, event times inside it) is judged once
        # here, not once per phrase (Model.validate walks every event and sample).
        try:
            model.validate(require=("oracle", "audio", "timing"))
            self.answer_problem: ModelFormatError | None = None
        except ModelFormatError as exc:
            self.answer_problem = exc
        self.encoder = _build_encoder(self.spec, encoder_model=encoder_model, trust_remote_code=trust_remote_code,
                                      device=device)

    # -- hearing ------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return int(self.spec["sample_rate"])

    def hear_file(self, path: str | os.PathLike) -> Phrase:
        """Load an audio file (any format :func:`chandra.audio.decode_audio` reads) and :meth:`hear` it."""
        from chandra.audio import decode_audio

        decoded = decode_audio(path, sr=self.sample_rate)
        return self.hear(decoded.y, decoded.sr, name=Path(path).name)

    def hear(self, y: np.ndarray, sr: int, *, name: str = "phrase") -> Phrase:
        """Segment, encode and tokenise a phrase as the model did its training audio.

        Parameters
        ----------
        y : ndarray of float, shape (n_samples,)
            Mono signal.
        sr : int
            Its sample rate (Hz); resampled to the model's analysis rate.
        name : str
            Named in error messages.

        Raises
        ------
        AudioError
            Silent, too short or non-finite (the messages training gives).
        SegmentationError, EncoderError
            As in training.
        """
        from chandra.audio import validate_signal
        from chandra.encoders import resample
        from chandra.segment import segment_audio, validate_segments

        seg = self.spec["segmentation"]
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            raise ParameterError(f"{name}: expected a mono signal of shape (n_samples,), got {y.shape}",
                                 parameter="y")
        sr = int(sr)
        min_duration = max(0.5, 2 * seg["min_duration"])
        validate_signal(y, sr, min_duration=min_duration, name=name)
        if sr != self.sample_rate:
            y = np.asarray(resample(y, sr, self.sample_rate), dtype=np.float32)
            sr = self.sample_rate
        y, trimmed = _trim_silence(y, sr)
        validate_signal(y, sr, min_duration=min_duration, name=f"{name} (without its silent start and end)")
        segments = segment_audio(y, sr, min_duration=seg["min_duration"], max_duration=seg["max_duration"],
                                 hop_length=seg["hop_length"])
        validate_segments(segments, duration=len(y) / float(sr))
        gain_db = 0.0
        if self.match_level and self.reference_level_db is not None:
            levels = 20.0 * np.log10(np.maximum(segments.rms, 1e-10))
            levels = levels[levels > _LEVEL_FLOOR_DB]
            if levels.size:
                own = float(np.median(levels))
                target = min(self.reference_levels_db, key=lambda level: abs(level - own))
                gain_db = float(np.clip(target - own, -MAX_GAIN_DB, MAX_GAIN_DB))
                gain = np.float32(10.0 ** (gain_db / 20.0))
                y = y * gain
                segments.rms = segments.rms * float(gain)
        raw = np.asarray(self.encoder.encode(y, sr, segments), dtype=np.float32)
        try:
            Z = np.asarray(self.vocabulary.transform(raw), dtype=np.float64)
        except VocabularyError as exc:
            raise ListenerError(f"{name}: the encoder's vectors do not fit the model's vocabulary "
                                f"({first_line(exc)})") from None
        tokens, d2 = _nearest_centres(Z, self.centers)
        distances = np.sqrt(d2)
        ratios = distances / self.token_spread[tokens]
        counts = self.token_counts[tokens]
        D = self._distances(Z)
        nearest = np.argmin(D, axis=1).astype(np.int64)
        within = None
        coverage: list[str] = []
        if self.oracle_kind == "features" and self.threshold is not None:
            within = np.count_nonzero(D < float(self.threshold), axis=1).astype(np.int64)
            for w in within:
                coverage.append("never" if w == 0 else "rarely" if w < self.rare_count else "often")
        else:
            for c, r in zip(counts, ratios):
                coverage.append("never" if c == 0 or r > NEVER_RATIO else
                                "rarely" if c < self.rare_count or r > 1.0 else "often")
        return Phrase(name=name, y=y, sample_rate=sr, segments=segments, features=Z.astype(np.float32),
                      tokens=tokens, distances=distances, ratios=ratios, token_counts=counts, within=within,
                      nearest_frames=nearest, coverage=coverage, gain_db=gain_db, trimmed=trimmed,
                      frame_distances=D)

    def _distances(self, Z: np.ndarray) -> np.ndarray:
        """Distance of each phrase segment to every training frame, shape (m, n).

        Token oracles: Euclidean in the vocabulary's space. Audio oracles: the
        oracle's metric (cosine distance 1 - cos, 0 between two zero vectors,
        1 between a zero and a non-zero one; or Euclidean).
        """
        dot = (np.asarray(Z, dtype=np.float32) @ self.features.T).astype(np.float64)
        Z = np.asarray(Z, dtype=np.float64)
        zn = np.einsum("ij,ij->i", Z, Z)
        if self.oracle_kind == "features" and self.metric == "cosine":
            denom = np.sqrt(np.outer(zn, self.sqnorms))
            with np.errstate(invalid="ignore", divide="ignore"):
                d = 1.0 - dot / denom
            zero_z, zero_f = zn == 0, self.sqnorms == 0
            d[zero_z[:, None] | zero_f[None, :]] = 1.0
            d[zero_z[:, None] & zero_f[None, :]] = 0.0
            return d
        return np.sqrt(np.maximum(zn[:, None] + self.sqnorms[None, :] - 2.0 * dot, 0.0))

    def local_costs(self, phrase: Phrase, first: int = 0) -> np.ndarray:
        """Alignment costs of segments ``first..`` against every frame, shape (q, n)."""
        D = phrase.frame_distances
        if D is not None and D.shape == (len(phrase), len(self.features)):
            D = D[first:]
        else:
            D = self._distances(np.asarray(phrase.features[first:], dtype=np.float64))
        if self.oracle_kind == "features" and self.threshold:
            scale = float(self.threshold)
        else:
            scale = self.median_spread
        return np.minimum(D / max(scale, 1e-12), COST_CAP)


def take_name(model: Any, frame: int) -> str | None:
    """The file name of frame ``frame``'s take in a corpus model; None for one file."""
    if not getattr(model, "is_corpus", False):
        return None
    events = getattr(model, "events", None) or []
    take = events[frame].get("take") if 0 <= frame < len(events) else None
    files = model.files()
    return str(files[take].get("name")) if isinstance(take, int) and 0 <= take < len(files) else None


def source_place(model: Any, frame: int) -> str:
    """Where frame ``frame`` is in the training audio, in words: "12.34 s", or for a corpus
    "take.wav 12.34 s" (seconds from the start of that take's file)."""
    events = getattr(model, "events", None) or []
    t = events[frame].get("t") if 0 <= frame < len(events) else None
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return "?"
    name = take_name(model, frame)
    return f"{name} {float(t):.2f} s" if name else f"{float(t):.2f} s"


def _trim_silence(y: np.ndarray, sr: int) -> tuple[np.ndarray, tuple[float, float]]:
    """``y`` without leading and trailing stretches more than EDGE_SILENCE_DB below its loudest frame.

    Frames of 2048 samples every 512 (RMS, :func:`librosa.effects.trim`);
    :data:`EDGE_MARGIN_S` of margin is kept on each side, so an attack is
    never clipped and the last note keeps a little of its decay.

    Returns
    -------
    y : ndarray of float32
    trimmed : (float, float)
        Seconds dropped at the start and at the end.
    """
    import librosa

    _, (a, b) = librosa.effects.trim(y, top_db=EDGE_SILENCE_DB, frame_length=2048, hop_length=512)
    margin = int(round(EDGE_MARGIN_S * sr))
    a, b = max(0, int(a) - margin), min(len(y), int(b) + margin)
    if b <= a:
        return y, (0.0, 0.0)
    return y[a:b], (a / float(sr), (len(y) - b) / float(sr))


def _nearest_centres(Z: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centre labels and squared distances, the vocabulary's own rule (ties: lowest id)."""
    Z = np.asarray(Z, dtype=np.float64)
    C = np.asarray(centers, dtype=np.float64)
    d2 = np.einsum("ij,ij->i", Z, Z)[:, None] - 2.0 * (Z @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
    np.maximum(d2, 0.0, out=d2)
    labels = np.argmin(d2, axis=1).astype(np.int64)
    return labels, d2[np.arange(len(labels)), labels]


_CACHE: dict[tuple, tuple[Any, Listener]] = {}
_CACHE_SIZE = 4


def get_listener(model: Any, *, encoder_model: str | os.PathLike | None = None, trust_remote_code: bool = False,
                 device: str = "cpu", match_level: bool = True) -> Listener:
    """The :class:`Listener` of ``model``, built once per model object and options.

    Up to four listeners are kept (a transformer encoder stays loaded), for
    models still alive; the phrase after the first is heard without paying
    for loading the encoder or rebuilding the vocabulary again.
    """
    key = (id(model), None if encoder_model is None else os.fspath(encoder_model), bool(trust_remote_code),
           str(device), bool(match_level))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    listener = Listener(model, encoder_model=encoder_model, trust_remote_code=trust_remote_code, device=device,
                        match_level=match_level)
    for stale in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
        del _CACHE[stale]
    while len(_CACHE) >= _CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    _CACHE[key] = (weakref.ref(model), listener)
    return listener


# --------------------------------------------------------------------------- matching


def match_phrase(listener: Listener, phrase: Phrase, *, max_segments: int = MAX_QUERY_SEGMENTS) -> Match:
    """Align the phrase's last ``max_segments`` segments to the model's frames.

    The dynamic programme of the module docstring ("Query matching"): the
    cost of the cheapest alignment ending at each frame is computed segment
    by segment (``O(q n)`` time with numpy, ``q`` segments, ``n`` frames;
    ``O(q n)`` memory for the backtrace), then the cheapest end is traced
    back.

    Returns
    -------
    Match
    """
    m = len(phrase)
    if m == 0:
        raise ListenerError(f"{phrase.name}: no segments to match")
    if not (isinstance(max_segments, (int, np.integer)) and max_segments >= 1):
        raise ParameterError(f"max_segments must be a positive integer, got {max_segments!r}",
                             parameter="max_segments")
    first = max(0, m - int(max_segments))
    D = listener.local_costs(phrase, first)
    q, n = D.shape
    clusters = listener.clusters
    uniq, cluster_idx = np.unique(clusters, return_inverse=True)
    order = np.argsort(cluster_idx, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(cluster_idx[order]) != 0])
    prev_cluster = np.r_[-1, cluster_idx[:-1]]  # cluster of frame j - 1
    pen = np.array([PENALTIES[k] for k in _MOVES])
    A = np.empty((q, n), dtype=np.float64)
    move = np.zeros((q, n), dtype=np.int8)
    A[0] = D[0]
    options = np.empty((len(_MOVES), n), dtype=np.float64)
    for i in range(1, q):
        prev = A[i - 1]
        options[0, 0] = np.inf
        options[0, 1:] = prev[:-1]
        options[1] = prev + pen[1]
        options[2, :2] = np.inf
        options[2, 2:] = prev[:-2] + pen[2]
        cmin = np.minimum.reduceat(prev[order], starts)
        options[3, 0] = np.inf
        options[3, 1:] = cmin[prev_cluster[1:]] + pen[3]
        options[4] = prev.min() + pen[4]
        best = np.argmin(options, axis=0)
        move[i] = best
        A[i] = D[i] + options[best, np.arange(n)]
    end = int(np.argmin(A[-1]))
    frames = np.empty(q, dtype=np.int64)
    moves = ["start"] * q
    j = end
    for i in range(q - 1, 0, -1):
        frames[i] = j
        kind = _MOVES[int(move[i, j])]
        moves[i] = kind
        prev = A[i - 1]
        if kind == "continue":
            j = j - 1
        elif kind == "skip":
            j = j - 2
        elif kind == "jump":
            members = np.flatnonzero(cluster_idx == prev_cluster[j])
            j = int(members[np.argmin(prev[members])])
        elif kind == "restart":
            j = int(np.argmin(prev))
    frames[0] = j
    costs = D[np.arange(q), frames]
    tokens = listener.tokens
    run_length = q
    for i in range(q - 1, 0, -1):
        if moves[i] in ("jump", "restart"):
            run_length = q - i
            break
    # A segment matches a frame as the oracle matches frames: within the
    # threshold (audio oracle, cost < 1), or the same token (factor oracle),
    # which also accepts a segment as close to the frame as two frames of one
    # token typically are (sqrt(2) median radii: independent residuals add
    # their variances).
    phrase_tokens = phrase.tokens[first:]

    def matches(i: int, j: int) -> bool:
        if listener.oracle_kind == "features":
            return bool(D[i, j] < 1.0)
        return bool(D[i, j] < math.sqrt(2.0) or int(phrase_tokens[i]) == int(tokens[j]))

    context = sum(matches(i, int(frames[i])) for i in range(q - run_length, q))
    suffix_context = 0
    while suffix_context < q and end - suffix_context >= 0 and matches(q - 1 - suffix_context, end - suffix_context):
        suffix_context += 1
    token_context = 0
    while (token_context < m and end - token_context >= 0
           and int(phrase.tokens[m - 1 - token_context]) == int(tokens[end - token_context])):
        token_context += 1
    return Match(first_segment=first, frames=frames, moves=moves, costs=costs, total_cost=float(A[-1, end]),
                 end_frame=end, context=context, token_context=token_context, run_length=run_length,
                 suffix_context=suffix_context)


# --------------------------------------------------------------------------- answering


@dataclass
class Response:
    """A phrase, where it was matched, and the answer.

    Attributes
    ----------
    phrase : Phrase
    match : Match
    generation : chandra.generate.Generation
    y : ndarray of float32, shape (n_samples,)
        The answer, spliced from the source audio.
    sample_rate : int
    mode : str
    params : dict
        Effective options of :func:`respond`.
    timings : dict
        Seconds spent hearing, matching, improvising and resynthesising.
    """

    phrase: Phrase
    match: Match
    generation: Any
    y: np.ndarray
    sample_rate: int
    mode: str
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def follow(self) -> dict:
        """How the answer relates to the phrase's tokens.

        ``guide_agreement``: share of answer steps whose token is the
        phrase's token at that position (the phrase repeated over the
        answer), what ``imitate`` aims at; ``phrase_token_share``: share of
        answer steps playing a token the phrase used (``contrast`` lowers it).
        """
        played = np.asarray(self.generation.tokens, dtype=np.int64)
        return {"guide_agreement": guide_agreement(played, self.phrase.tokens),
                "phrase_token_share": token_share(played, self.phrase.tokens)}

    def summary(self) -> dict:
        """What ``chandra respond --json`` prints: phrase analysis, match, generation summary."""
        return {
            "mode": self.mode,
            "params": dict(self.params),
            "phrase": self.phrase.to_dict(),
            "match": self.match.to_dict(),
            "generation": self.generation.summary(),
            "follow": self.follow(),
            "answer": {"duration_s": len(self.y) / float(self.sample_rate), "sample_rate": int(self.sample_rate)},
            "timings_s": {k: round(float(v), 4) for k, v in self.timings.items()},
        }


def guide_agreement(played: Sequence[int], phrase_tokens: Sequence[int]) -> float | None:
    """Share of steps ``t`` whose token is ``phrase_tokens[t % len(phrase_tokens)]`` (None when empty)."""
    played = np.asarray(played, dtype=np.int64).reshape(-1)
    guide = np.asarray(phrase_tokens, dtype=np.int64).reshape(-1)
    if played.size == 0 or guide.size == 0:
        return None
    target = guide[np.arange(played.size) % guide.size]
    return float(np.mean(played == target))


def token_share(played: Sequence[int], phrase_tokens: Sequence[int]) -> float | None:
    """Share of steps playing a token that occurs in ``phrase_tokens`` (None when nothing was played)."""
    played = np.asarray(played, dtype=np.int64).reshape(-1)
    if played.size == 0:
        return None
    return float(np.mean(np.isin(played, np.asarray(phrase_tokens, dtype=np.int64))))


def _contrast_tokens(listener: Listener, phrase: Phrase) -> list[int]:
    """Tokens of the model the phrase used least (not at all, when it left any out)."""
    present = np.flatnonzero(listener.token_counts > 0)
    used = np.bincount(phrase.tokens, minlength=listener.n_tokens)[present]
    if used.size == 0 or used.min() == used.max():
        return []
    return [int(t) for t in present[used == used.min()]]


def respond(
    model: Any,
    phrase: Any,
    *,
    mode: str = "continue",
    seconds: float = 10.0,
    seed: int = 0,
    continuity: float = 0.8,
    min_lrs: int = 1,
    taboo: int | None = None,
    contrast_weight: float = CONTRAST_WEIGHT,
    crossfade_ms: float = 20.0,
    listener: Listener | None = None,
    encoder_model: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
) -> Response:
    """Hear ``phrase`` and answer it from ``model``.

    Parameters
    ----------
    model : Model
        With an oracle, source audio and event times (see :class:`Listener`).
    phrase : path, Phrase or (y, sr)
        An audio file, a phrase already heard, or a mono signal and its rate.
    mode : {"continue", "imitate", "contrast"}
    seconds : float > 0
        Length of the answer (summed event durations).
    seed : int
        Seed of the improviser: same inputs and seed, same answer.
    continuity, min_lrs, taboo
        As for :func:`chandra.generate.improvise` (``taboo`` None: its default).
    contrast_weight : float > 1
        ``contrast`` mode: how much likelier frames with the preferred tokens are.
    crossfade_ms : float
        Resynthesis crossfade (milliseconds).
    listener : Listener, optional
        Default: :func:`get_listener` of the model (cached). A listener
        judged its model's fields when it was built; a model changed after
        that needs a new listener.
    encoder_model, trust_remote_code
        Passed to the listener when it is built.

    Returns
    -------
    Response

    Raises
    ------
    ParameterError
        A bad option.
    ModelFormatError
        A model without source audio, an oracle or event times.
    ListenerError, WeightsNotFoundError, AudioError
        See :class:`Listener` and :meth:`Listener.hear`.
    """
    from chandra.generate import DEFAULT_TABOO, improvise, resynthesise

    if mode not in MODES:
        raise ParameterError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", parameter="mode")
    if not (_number(seconds) is not None and seconds > 0):
        raise ParameterError(f"seconds must be a positive number, got {seconds!r}", parameter="seconds")
    if not (_number(contrast_weight) is not None and contrast_weight > 1):
        raise ParameterError(f"contrast_weight must be a number above 1, got {contrast_weight!r}",
                             parameter="contrast_weight")
    # What an answer needs, said before any listening; the fields themselves
    # are judged by improvise and resynthesise (Model.validate).
    if getattr(model, "oracle", None) is None or model.n_frames == 0:
        raise ModelFormatError("model: the model has no oracle over its frames; build one first")
    if getattr(model, "audio", None) is None:
        raise ModelFormatError("model: the model has no source audio; retrain with audio embedded")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if listener is None:
        listener = get_listener(model, encoder_model=encoder_model, trust_remote_code=trust_remote_code)
    elif listener.model is not model:
        raise ParameterError("listener belongs to another model", parameter="listener")
    timings["listener"] = time.perf_counter() - t0
    if listener.answer_problem is not None:
        raise listener.answer_problem
    t0 = time.perf_counter()
    if isinstance(phrase, Phrase):
        heard = phrase
    elif isinstance(phrase, tuple) and len(phrase) == 2:
        heard = listener.hear(phrase[0], phrase[1])
    else:
        heard = listener.hear_file(phrase)
    timings["hear"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    match = match_phrase(listener, heard)
    timings["match"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    history = list(dict.fromkeys(int(f) for f in reversed(match.frames)))[::-1]  # each once, last use last
    options: dict[str, Any] = {}
    preferred: list[int] | None = None
    if mode == "imitate":
        options["guide"] = [int(t) for t in heard.tokens]
    elif mode == "contrast":
        preferred = _contrast_tokens(listener, heard)
        if preferred:
            options.update(where="gesture_token in {" + ", ".join(map(str, preferred)) + "}",
                           where_mode="weight", where_weight=float(contrast_weight))
    generation = improvise(model, seconds=float(seconds), seed=seed, continuity=continuity, min_lrs=min_lrs,
                           taboo=DEFAULT_TABOO if taboo is None else taboo, after=match.state,
                           history=history, validate=False, **options)
    timings["improvise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    y, sr = resynthesise(model, generation, crossfade_ms=crossfade_ms, validate=False)
    timings["resynthesise"] = time.perf_counter() - t0
    params = {"mode": mode, "seconds": float(seconds), "seed": int(seed), "continuity": float(continuity),
              "min_lrs": int(min_lrs), "taboo": int(generation.params["taboo"]),
              "crossfade_ms": float(crossfade_ms), "contrast_weight": float(contrast_weight),
              "contrast_tokens": preferred, "start_state": match.state}
    return Response(phrase=heard, match=match, generation=generation, y=y, sample_rate=sr, mode=mode,
                    params=params, timings=timings)


def respond_to_wav(model: Any, phrase: Any, out_path: str | os.PathLike, *, subtype: str = "PCM_16",
                   **options: Any) -> Response:
    """:func:`respond` and write the answer as a WAV (deterministic bytes, atomic); what ``chandra respond`` runs."""
    from chandra.generate import write_wav

    response = respond(model, phrase, **options)
    t0 = time.perf_counter()
    write_wav(out_path, response.y, response.sample_rate, subtype=subtype)
    response.timings["write"] = time.perf_counter() - t0
    response.params["output"] = str(out_path)
    return response


# --------------------------------------------------------------------------- kept pairs

RESPONSE_FORMAT = "chandra-response"
_RESPONSE_VERSION = "1.0"
#: Largest response record read back.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


#: Options of :func:`respond` that name a pair (with the phrase and the model file).
_ID_OPTIONS = ("mode", "seconds", "seed", "continuity", "min_lrs", "taboo", "crossfade_ms", "contrast_weight")


def response_id(phrase_bytes: bytes, *, model_path: str | os.PathLike | None, options: dict) -> str:
    """``resp_<12 hex>``: the name of a kept pair, from the phrase's bytes, the
    model file (path, modification time, size) and the answer's options
    (:data:`_ID_OPTIONS`, defaults filled in), so a page can find an answer
    it already made before making it again."""
    from chandra.generate import DEFAULT_TABOO

    stat_key = None
    if model_path is not None and Path(model_path).exists():
        st = Path(model_path).stat()
        stat_key = [str(Path(model_path)), st.st_mtime_ns, st.st_size]
    defaults = {"mode": "continue", "seconds": 10.0, "seed": 0, "continuity": 0.8, "min_lrs": 1,
                "taboo": DEFAULT_TABOO, "crossfade_ms": 20.0, "contrast_weight": CONTRAST_WEIGHT}
    chosen = {k: options.get(k, defaults[k]) if options.get(k) is not None else defaults[k] for k in _ID_OPTIONS}
    chosen = {k: (float(v) if isinstance(v, float) or k in ("seconds", "continuity", "crossfade_ms",
                                                             "contrast_weight") else v) for k, v in chosen.items()}
    digest = hashlib.sha256(hashlib.sha256(phrase_bytes).digest())
    digest.update(json.dumps({"model": stat_key, "options": chosen}, sort_keys=True, default=str).encode())
    return "resp_" + digest.hexdigest()[:12]


def store_response(folder: str | os.PathLike, response: Response, *, phrase_bytes: bytes, phrase_name: str,
                   model_path: str | os.PathLike | None = None) -> Path:
    """Keep a phrase / answer pair in ``folder`` so a demo can be replayed.

    Writes ``<id>.phrase<ext>`` (the phrase's bytes as received),
    ``<id>.answer.wav`` and, last, ``<id>.json`` (the record: format
    ``chandra-response`` 1.0, ``created`` in UTC, ``model_path``, file names,
    :meth:`Response.summary`, the generation's frames), each atomically; the
    record's presence marks a complete pair. ``<id>`` is :func:`response_id`
    (phrase bytes, model file, options), so the same request keeps one pair.

    Returns
    -------
    Path
        The record.
    """
    from chandra.generate import write_wav
    from chandra.io_utils import atomic_write, dump_json_atomic
    from chandra.uploads import safe_name

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rid = response_id(phrase_bytes, model_path=model_path, options=response.params)
    ext = Path(safe_name(phrase_name)).suffix.lower() or ".wav"
    phrase_file = folder / f"{rid}.phrase{ext}"
    answer_file = folder / f"{rid}.answer.wav"
    with atomic_write(phrase_file, "wb") as fh:
        fh.write(phrase_bytes)
    write_wav(answer_file, response.y, response.sample_rate)
    record = {
        "format": RESPONSE_FORMAT, "version": _RESPONSE_VERSION, "id": rid,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_path": None if model_path is None else str(model_path),
        "phrase_file": phrase_file.name, "phrase_name": safe_name(phrase_name),
        "phrase_sha256": hashlib.sha256(phrase_bytes).hexdigest(), "answer_file": answer_file.name,
        "summary": response.summary(), "frames": [int(f) for f in response.generation.frames],
        "steps": [dict(s) for s in response.generation.steps],
    }
    path = folder / f"{rid}.json"
    dump_json_atomic(record, path)
    return path


def read_response(path: str | os.PathLike) -> dict:
    """Read a record written by :func:`store_response` (bounded, checked).

    Raises
    ------
    ChandraError
        Missing, too large, not JSON, not a response record, or naming files
        outside its own folder.
    """
    from chandra import safejson

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ChandraError(f"{path}: no such response record") from None
    if size > MAX_RESPONSE_BYTES:
        raise ChandraError(f"{path}: {size} bytes is more than a response record may hold ({MAX_RESPONSE_BYTES})")
    doc = safejson.loads(path.read_bytes(), str(path), max_bytes=MAX_RESPONSE_BYTES)
    if not isinstance(doc, dict) or doc.get("format") != RESPONSE_FORMAT:
        raise ChandraError(f"{path}: not a chandra response record")
    if str(doc.get("version", "")).split(".")[0] != _RESPONSE_VERSION.split(".")[0]:
        raise ChandraError(f"{path}: response record version {doc.get('version')!r}; this chandra reads "
                           f"{_RESPONSE_VERSION}")
    for key in ("phrase_file", "answer_file"):
        name = doc.get(key)
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise ChandraError(f"{path}: response record {key} is not a file name in its folder")
    if not isinstance(doc.get("summary"), dict):
        raise ChandraError(f"{path}: response record without its summary")
    return doc


def list_responses(folder: str | os.PathLike) -> list[dict]:
    """The complete pairs in ``folder``, newest first: each record with ``path`` added.

    Records that cannot be read, or whose audio files are gone, are left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for path in folder.glob("resp_*.json"):
        try:
            doc = read_response(path)
        except ChandraError:
            continue
        if (folder / doc["phrase_file"]).is_file() and (folder / doc["answer_file"]).is_file():
            doc["path"] = str(path)
            out.append(doc)
    out.sort(key=lambda d: (str(d.get("created", "")), d["path"]), reverse=True)
    return out
