"""The training pipeline, stage by stage, shared by the CLI and the dashboard.

Each stage is a pure function of its inputs and the :class:`TrainConfig`;
:func:`run_stage` applies one to a :class:`RunState` (the in-memory bag of
intermediate results), times it and appends its ledger entry. :func:`train`
runs every stage and saves the model. :class:`RunDirectory` persists a run's
intermediates so the dashboard can reload them on any page.

Stage order (``STAGES``)::

    load -> segment -> encode -> vocabulary -> harmony -> events -> oracle -> save

The ledger (see :mod:`chandra.ledger`) gets one entry per boundary:
segments, features, normalised, tokens, events, oracle, saved, reloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from chandra.errors import ChandraError, OracleError, ParameterError
from chandra.progress import ProgressCallback, report

__all__ = [
    "STAGES",
    "STAGE_DEPENDENCIES",
    "TrainConfig",
    "RunState",
    "TrainResult",
    "run_stage",
    "run_all",
    "train",
    "build_model",
    "fitted_on",
    "package_versions",
    "stage_params",
    "stage_hash",
    "ir_over_k",
    "encoder_options",
    "segment_preview",
]

STAGES = ("load", "segment", "encode", "vocabulary", "harmony", "events", "oracle", "save")

#: Which upstream stages each stage reads.
STAGE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "load": (),
    "segment": ("load",),
    "encode": ("load", "segment"),
    "vocabulary": ("encode",),
    "harmony": ("load", "segment"),
    "events": ("segment", "vocabulary", "harmony"),
    "oracle": ("events", "vocabulary"),
    "save": ("oracle",),
}

#: Which configuration fields each stage's output depends on directly.
_STAGE_CONFIG_FIELDS: dict[str, tuple[str, ...]] = {
    "load": ("sample_rate",),
    "segment": ("min_duration", "max_duration", "hop_length"),
    "encode": ("encoder", "model", "layer", "trust_remote_code", "chunk_seconds", "batch_size", "device", "quantize"),
    "vocabulary": ("n_tokens", "normalisation", "pca_components", "seed", "reduce_k"),
    "harmony": ("max_partials",),
    "events": (),
    "oracle": ("oracle", "threshold", "metric", "oracle_search"),
    "save": ("embed_audio",),
}


@dataclass
class TrainConfig:
    """Every training option, with the defaults users get from the CLI.

    Attributes
    ----------
    encoder : str
        Feature encoder, one of :data:`chandra.encoders.ENCODER_NAMES`
        (``dsp``, librosa descriptors, works offline).
    model : str or None
        Hub name (resolved from the local cache only) or local directory for
        neural encoders.
    layer : int
        Hidden layer of a neural encoder (-1 = last).
    batch_size : int or None
        Chunks per forward pass of a neural encoder; None sizes it for the
        device (see :class:`chandra.encoders.Wav2Vec2Encoder`).
    device : str
        One of :data:`chandra.encoders.DEVICES` (neural encoders; "auto" =
        a CUDA GPU when torch sees one, else the CPU).
    quantize : str
        One of :data:`chandra.encoders.QUANTIZE_MODES`: "int8" runs a neural
        encoder with dynamic int8 quantisation on the CPU.
    n_tokens : int or "auto"
        Vocabulary size K; ``"auto"`` picks it from the segments and their
        features by :func:`chandra.vocabulary.recommend_k` (the rule, the K
        chosen and the evidence go into the summary and the provenance).
    normalisation : str
        One of :data:`chandra.normalisation.NORMALISATIONS`.
    pca_components : int or None
    seed : int
        Seeds K-means and everything random downstream.
    reduce_k : bool
        Allow an explicit, recorded reduction of K when there are fewer
        segments than tokens (otherwise that is an error).
    min_duration, max_duration : float
        Segment duration bounds in seconds.
    sample_rate : int
        Analysis rate in Hz for loading, segmentation and dsp features.
    oracle : str
        One of :data:`chandra.oracle.KINDS`: factor oracle over gesture
        tokens, or audio oracle over features.
    threshold : float, "auto" or None
        Audio-oracle distance threshold; "auto" (or None) picks it by
        information rate.
    metric : str
        One of :data:`chandra.oracle.METRICS`.
    oracle_search : str
        One of :data:`chandra.oracle.SEARCH_MODES`: how the audio oracle
        matches a frame against the root's children ("auto": exact until
        that gets expensive, then an approximate index; "exact"; or
        "approximate"); see :func:`chandra.oracle.build_audio_oracle`.
    embed_audio : bool
        Store the mono source signal in the model for resynthesis.
    """

    encoder: str = "dsp"
    model: str | None = None
    layer: int = -1
    trust_remote_code: bool = False
    chunk_seconds: float = 15.0
    batch_size: int | None = None
    device: str = "auto"
    quantize: str = "none"
    n_tokens: int | str = 64
    normalisation: str = "l2"
    pca_components: int | None = None
    seed: int = 0
    reduce_k: bool = False
    min_duration: float = 0.1
    max_duration: float = 2.0
    hop_length: int = 512
    sample_rate: int = 22050
    max_partials: int = 12
    oracle: str = "tokens"
    threshold: float | str | None = None
    metric: str = "cosine"
    oracle_search: str = "auto"
    embed_audio: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ChandraError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**data)

    def validate(self) -> None:
        """Check every option's value.

        Raises
        ------
        ParameterError
            (a :class:`ChandraError` and a ``ValueError``) naming the first
            bad option in :attr:`~chandra.errors.ChandraError.parameter`.
        """
        from chandra.encoders import DEVICES, ENCODER_NAMES, QUANTIZE_MODES
        from chandra.normalisation import NORMALISATIONS
        from chandra.oracle import KINDS, METRICS, SEARCH_MODES

        def bad(name: str, message: str) -> ParameterError:
            return ParameterError(f"{name} {message}", parameter=name)

        def whole(value: Any) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        def one_of(*checks: tuple[str, Sequence[str]]) -> None:
            for name, choices in checks:
                value = getattr(self, name)
                if value not in choices:
                    raise bad(name, f"must be one of {', '.join(choices)}, got {value!r}")

        one_of(("encoder", ENCODER_NAMES), ("device", DEVICES), ("quantize", QUANTIZE_MODES))
        if self.encoder == "dsp" and self.quantize != "none":
            raise bad("quantize", f"applies to neural encoders, not to encoder 'dsp' (got {self.quantize!r})")
        if self.encoder == "dsp" and self.device == "cuda":
            raise bad("device", "'cuda' applies to neural encoders; the dsp encoder runs on the CPU")
        if self.quantize == "int8" and self.device == "cuda":
            raise bad("quantize", "'int8' runs on the CPU only; use device 'cpu' or 'auto'")
        if self.batch_size is not None and (not whole(self.batch_size) or self.batch_size < 1):
            raise bad("batch_size", f"must be a positive integer or None, got {self.batch_size!r}")
        if self.n_tokens != "auto" and (not whole(self.n_tokens) or self.n_tokens < 1):
            raise bad("n_tokens", f"must be a positive integer or 'auto', got {self.n_tokens!r}")
        if self.pca_components is not None and (not whole(self.pca_components) or self.pca_components < 1):
            raise bad("pca_components", f"must be a positive integer or None, got {self.pca_components!r}")
        if not whole(self.seed):
            raise bad("seed", f"must be an integer, got {self.seed!r}")
        one_of(("oracle", KINDS), ("normalisation", NORMALISATIONS), ("metric", METRICS),
               ("oracle_search", SEARCH_MODES))
        if isinstance(self.threshold, str) and self.threshold != "auto":
            raise bad("threshold", f"must be a number or 'auto', got {self.threshold!r}")
        if isinstance(self.threshold, (int, float)) and not (self.threshold > 0 and math.isfinite(self.threshold)):
            raise bad("threshold", f"must be a positive number, got {self.threshold}")
        if not (0 < self.min_duration < self.max_duration):
            raise ParameterError(
                f"need 0 < min_duration < max_duration, got {self.min_duration} and {self.max_duration}",
                parameter="min_duration",
            )


def stage_params(config: TrainConfig, stage: str) -> dict:
    """The configuration values a stage depends on directly."""
    return {name: getattr(config, name) for name in _STAGE_CONFIG_FIELDS[stage]}


def stage_hash(config: TrainConfig, stage: str, *, audio_sha256: str = "") -> str:
    """Hash of everything a stage's output depends on (its own parameters and,
    recursively, its upstream stages'), so a changed option marks exactly the
    affected stages stale."""
    seen: dict[str, Any] = {}

    def collect(name: str) -> None:
        if name in seen:
            return
        seen[name] = stage_params(config, name)
        for dep in STAGE_DEPENDENCIES[name]:
            collect(dep)

    collect(stage)
    payload = json.dumps({"audio": audio_sha256, "params": seen}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def package_versions(*, neural: bool = False) -> dict[str, str]:
    """Versions of the packages whose behaviour shapes a model."""
    from chandra.io_utils import installed_versions

    names = ["chandra", "numpy", "scipy", "librosa", "scikit-learn", "soundfile", "numba"]
    if neural:
        names += ["torch", "transformers"]
    return installed_versions(names)


@dataclass
class RunState:
    """Intermediate results of one training run (filled stage by stage)."""

    audio_path: str
    config: TrainConfig
    audio_sha256: str = ""
    signal: np.ndarray | None = None
    sample_rate: int | None = None
    duration: float | None = None
    segments: Any = None  # chandra.segment.Segments
    raw_features: np.ndarray | None = None
    encoder_provenance: dict | None = None
    vocabulary: Any = None  # fitted chandra.vocabulary.GestureVocabulary
    features: np.ndarray | None = None  # normalised features (n, d)
    tokens: np.ndarray | None = None
    harmony: list | None = None
    events: list | None = None
    oracle: Any = None
    threshold_curve: dict | None = None
    model: Any = None
    saved_path: str | None = None
    ledger: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    summaries: dict = field(default_factory=dict)
    #: Encoder outputs cache (chandra.feature_cache.FeatureCache) or None; not part of the model.
    feature_cache: Any = None
    #: "hit" | "miss" | "invalid" | "off" after the encode stage.
    feature_cache_status: str | None = None
    #: An encoder to reuse (e.g. a neural model already loaded); built from the config when None.
    encoder: Any = None

    def set_ledger(self, entry: dict) -> None:
        """Insert or replace the ledger entry of ``entry["stage"]``, keeping
        canonical order."""
        from chandra.ledger import LEDGER_STAGES

        self.ledger = [e for e in self.ledger if e["stage"] != entry["stage"]]
        self.ledger.append(entry)
        order = {name: i for i, name in enumerate(LEDGER_STAGES)}
        self.ledger.sort(key=lambda e: order.get(e["stage"], len(order)))


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, where it went, and the record."""

    model: Any
    path: Path | None
    state: RunState
    findings: list  # of finding dicts {severity, code, stage, message, evidence}

    def summary(self) -> dict:
        return training_summary(self.state, self.findings)


# --------------------------------------------------------------------------- stages


def _stage_load(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.audio import decode_audio, summarize_signal, validate_signal
    from chandra.io_utils import sha256_file

    cfg = state.config
    report(progress, "load", 0, 1)
    decoded = decode_audio(state.audio_path, sr=cfg.sample_rate)
    y, sr = decoded.y, decoded.sr
    name = Path(state.audio_path).name
    validate_signal(y, sr, min_duration=max(0.5, 2 * cfg.min_duration), name=name)
    state.signal, state.sample_rate = y, sr
    state.duration = len(y) / float(sr)
    state.audio_sha256 = sha256_file(state.audio_path)
    # A file cut short trains on what is there; the shortfall travels in the
    # summary and the provenance, where findings.AUDIO_TRUNCATED reports it.
    state.summaries["load"] = {**summarize_signal(y, sr), "decode": decoded.report()}
    report(progress, "load", 1, 1)


def _stage_segment(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.ledger import ledger_entry
    from chandra.segment import segment_audio, summarize_segments, validate_segments

    cfg = state.config
    segs = segment_audio(state.signal, state.sample_rate, min_duration=cfg.min_duration,
                         max_duration=cfg.max_duration, hop_length=cfg.hop_length, progress=progress)
    validate_segments(segs, duration=state.duration)
    state.segments = segs
    records = [{**r, "t": r["start"], "duration": r["end"] - r["start"]} for r in segs.to_records()]
    state.set_ledger(ledger_entry("segments", records, duration=state.duration))
    state.summaries["segment"] = summarize_segments(segs)


def encoder_options(config: TrainConfig) -> dict[str, Any]:
    """The :func:`chandra.encoders.make_encoder` options a configuration asks for."""
    cfg = config
    options: dict[str, Any] = {}
    if cfg.encoder != "dsp":
        options = {"layer": cfg.layer, "chunk_seconds": cfg.chunk_seconds, "batch_size": cfg.batch_size,
                   "device": cfg.device, "quantize": cfg.quantize}
        if cfg.trust_remote_code:
            # Only an explicit opt-in is passed on; the "mert" alias carries its
            # own default, and running repository code must be a user's choice.
            options["trust_remote_code"] = True
        if cfg.model:
            options["model"] = cfg.model
    else:
        options = {"sr": cfg.sample_rate, "hop_length": cfg.hop_length}
    return options


def _stage_encode(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.feature_cache import cached_encode
    from chandra.ledger import ledger_entry

    cfg = state.config
    feats, provenance, status = cached_encode(
        state.signal, state.sample_rate, state.segments, encoder_name=cfg.encoder,
        encoder_options=encoder_options(cfg), audio_sha256=state.audio_sha256, cache=state.feature_cache,
        encoder=state.encoder, progress=progress)
    state.raw_features = feats
    state.encoder_provenance = provenance
    state.feature_cache_status = status
    records = [{"segment_id": i, "t": float(t)} for i, t in enumerate(state.segments.start)]
    state.set_ledger(ledger_entry("features", records, features=feats, duration=state.duration))
    state.summaries["encode"] = {"dim": int(feats.shape[1]), "encoder": cfg.encoder}
    if state.feature_cache is not None:
        state.summaries["encode"]["feature_cache"] = status


def _stage_vocabulary(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.ledger import ledger_entry
    from chandra.vocabulary import GestureVocabulary, token_metrics

    cfg = state.config
    n_tokens, recommendation = choose_k(state.raw_features, cfg, progress=progress)
    report(progress, "vocabulary", 0, 2)
    vocab = GestureVocabulary(n_tokens=n_tokens, normalisation=cfg.normalisation,
                              pca_components=cfg.pca_components, random_state=cfg.seed,
                              reduce_k=cfg.reduce_k)
    vocab.fit(state.raw_features)
    report(progress, "vocabulary", 1, 2)
    state.vocabulary = vocab
    state.features = np.asarray(vocab.transform(state.raw_features), dtype=np.float32)
    state.tokens = np.asarray(vocab.predict(state.raw_features), dtype=np.int64)
    records = [{"segment_id": i, "t": float(t)} for i, t in enumerate(state.segments.start)]
    state.set_ledger(ledger_entry("normalised", records, features=state.features, duration=state.duration))
    tok_records = [{**r, "gesture_token": int(k)} for r, k in zip(records, state.tokens)]
    state.set_ledger(ledger_entry("tokens", tok_records, tokens=state.tokens, n_tokens=vocab.n_tokens_,
                                  duration=state.duration))
    assigned = token_metrics(state.tokens, n_tokens=vocab.n_tokens_)
    state.summaries["vocabulary"] = {
        "n_tokens": int(vocab.n_tokens_),
        "fit_active": int(vocab.fit_metrics_["active"]),
        "fit_entropy_bits": float(vocab.fit_metrics_["entropy_bits"]),
        "assigned_unique": int(assigned["unique"]),
        "assigned_entropy_bits": float(assigned["entropy_bits"]),
        "max_entropy_bits": float(assigned["max_entropy_bits"]),
    }
    if recommendation is not None:
        state.summaries["vocabulary"]["recommendation"] = recommendation
    report(progress, "vocabulary", 2, 2)


def choose_k(raw_features: np.ndarray, config: "TrainConfig", *,
             progress: ProgressCallback | None = None) -> tuple[int, dict | None]:
    """The vocabulary size to fit: ``config.n_tokens``, or for ``"auto"`` the
    K of :func:`chandra.vocabulary.recommend_k` on these (raw) features.

    Returns ``(k, recommendation)``; ``recommendation`` is None unless K was
    chosen (it goes into the summary and the provenance).
    """
    if config.n_tokens != "auto":
        return config.n_tokens, None
    from chandra.vocabulary import recommend_k

    recommendation = recommend_k(int(raw_features.shape[0]), features=raw_features,
                                 normalisation=config.normalisation, pca_components=config.pca_components,
                                 random_state=config.seed, progress=progress)
    return recommendation["k"], recommendation


def _stage_harmony(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.harmony import analyse_harmony

    state.harmony = analyse_harmony(state.signal, state.sample_rate, state.segments,
                                    max_partials=state.config.max_partials, progress=progress)
    cons = np.array([h["consonance"] for h in state.harmony], dtype=float)
    state.summaries["harmony"] = {"consonance_mean": float(cons.mean()) if cons.size else 0.0,
                                  "consonance_std": float(cons.std()) if cons.size else 0.0}


def _stage_events(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.events import build_events, validate_events
    from chandra.ledger import ledger_entry

    report(progress, "events", 0, 1)
    events = build_events(state.segments, state.tokens, state.harmony)
    validate_events(events, duration=state.duration)
    state.events = events
    state.set_ledger(ledger_entry("events", events, features=state.features, n_tokens=state.vocabulary.n_tokens_,
                                  duration=state.duration, centers=state.vocabulary.cluster_centers_))
    state.summaries["events"] = {"n_events": len(events)}
    report(progress, "events", 1, 1)


def build_checked_oracle(tokens: np.ndarray, features: np.ndarray, config: "TrainConfig", *,
                         take_starts: Any = None, progress: ProgressCallback | None = None) -> tuple[Any, Any]:
    """The oracle training builds, with its invariants checked (one file or a corpus).

    Parameters
    ----------
    tokens : int64 (n,)
        Gesture tokens (the factor oracle's symbols).
    features : float32 (n, d)
        Normalised features (the audio oracle's frames).
    config : TrainConfig
        ``oracle``, ``threshold`` (None or "auto": chosen by information
        rate), ``metric`` and ``oracle_search``.
    take_starts : array_like of int, optional
        Frame where each take begins, for a corpus (see
        :func:`chandra.oracle.build_factor_oracle`).

    Returns
    -------
    oracle : chandra.oracle.Oracle
    curve : dict or None
        The information-rate sweep when the threshold was chosen by it.

    Raises
    ------
    OracleError
        An invariant does not hold (a bug, never the user's input). Threshold
        matching is not transitive, so on audio oracles a context mismatch is
        a warning (reported by the findings), not a broken oracle.
    """
    from chandra.oracle import build_audio_oracle, build_factor_oracle, check_oracle, ir_threshold_sweep

    curve = None
    if config.oracle == "tokens":
        oracle = build_factor_oracle(tokens, take_starts=take_starts, progress=progress)
        violations = check_oracle(oracle, symbols=tokens)
    else:
        threshold = config.threshold
        if threshold is None or threshold == "auto":
            curve = ir_threshold_sweep(features, metric=config.metric, search=config.oracle_search,
                                       progress=progress)
            threshold = float(curve["best_threshold"])
        oracle = build_audio_oracle(features, threshold=float(threshold), metric=config.metric,
                                    search=config.oracle_search, progress=progress, take_starts=take_starts)
        violations = check_oracle(oracle, features=features)
    errors = [v for v in violations if v.get("severity", "error") == "error"]
    if errors:
        first = errors[0]
        raise OracleError(f"oracle invariant violated ({first['code']} at state {first['state']}): {first['message']}")
    return oracle, curve


def _stage_oracle(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.ledger import ledger_entry

    oracle, curve = build_checked_oracle(state.tokens, state.features, state.config, progress=progress)
    if curve is not None:
        state.threshold_curve = curve
    state.oracle = oracle
    n = oracle.n_frames
    records = state.events[:n]
    state.set_ledger(ledger_entry("oracle", records, features=state.features[:n],
                                  n_tokens=state.vocabulary.n_tokens_, duration=state.duration, oracle=oracle,
                                  symbols=state.tokens if oracle.kind == "tokens" else None,
                                  centers=state.vocabulary.cluster_centers_))
    state.summaries["oracle"] = {"kind": oracle.kind, "states": n + 1, "transitions": int(oracle.n_transitions),
                                 "threshold": oracle.threshold}
    if oracle.search is not None:
        state.summaries["oracle"]["search"] = oracle.search["mode"]


#: Encoder provenance keys that identify the features a vocabulary is fitted on.
FITTED_ON_KEYS = ("encoder", "model", "model_type", "layer", "effective_layer", "pooling", "sample_rate", "dim",
                  "n_mfcc", "hop_length", "n_fft", "quantize")


def fitted_on(encoder_provenance: dict | None, *, dim: int | None = None) -> dict:
    """The identity of the features a vocabulary was fitted on (for ``vocabulary["fitted_on"]``)."""
    prov = encoder_provenance or {}
    out = {k: prov[k] for k in FITTED_ON_KEYS if prov.get(k) is not None}
    if dim is not None:
        out["dim"] = int(dim)
    return out


def build_model(state: RunState):
    """Assemble a :class:`chandra.model.Model` from a run's results."""
    from chandra.model import Model
    from chandra.vocabulary import token_metrics

    cfg = state.config
    vocab = state.vocabulary
    neural = cfg.encoder != "dsp"
    # Flatten the vocabulary's {"n_tokens": {"configured", "effective"}, ...}
    # into plain effective values, comparable key by key with "configured".
    effective = {key: (value["effective"] if isinstance(value, dict) and "effective" in value else value)
                 for key, value in (getattr(vocab, "effective_params_", {}) or {}).items()}
    provenance = {
        "created_by": "chandra train",
        "input": {"path": str(state.audio_path), "name": Path(state.audio_path).name,
                  "sha256": state.audio_sha256, "duration": state.duration, "sample_rate": state.sample_rate,
                  "decode": (state.summaries.get("load") or {}).get("decode")},
        "encoder": state.encoder_provenance,
        "segmentation": dict(state.segments.params),
        "vocabulary": {"configured": {"n_tokens": cfg.n_tokens, "normalisation": cfg.normalisation,
                                      "pca_components": cfg.pca_components, "seed": cfg.seed},
                       "effective": effective,
                       **({"recommendation": (state.summaries.get("vocabulary") or {})["recommendation"]}
                          if "recommendation" in (state.summaries.get("vocabulary") or {}) else {})},
        "oracle": {"kind": state.oracle.kind, "threshold": state.oracle.threshold, "metric": state.oracle.metric,
                   "threshold_configured": cfg.threshold,
                   # configured search and what the builder did ("exact" or "approximate", index figures)
                   "search_configured": cfg.oracle_search, "search": state.oracle.search},
        "config": cfg.to_dict(),
        "versions": package_versions(neural=neural),
    }
    vocabulary = {
        "params": {k: v for k, v in vocab.get_params().items()},
        # What the vocabulary was fitted on, so a vocabulary later applied to
        # other features (another encoder, layer or dimension) is detectable.
        "fitted_on": fitted_on(state.encoder_provenance,
                               dim=None if state.raw_features is None else int(state.raw_features.shape[1])),
        "n_tokens": int(vocab.n_tokens_),
        "fit_metrics": vocab.fit_metrics_,
        "assigned_metrics": token_metrics(state.tokens, n_tokens=vocab.n_tokens_),
    }
    # The fitted state (format 1.2): with the centres it rebuilds the vocabulary,
    # so the model can assign tokens to audio it has not heard (chandra.respond).
    state_meta, state_arrays = vocab.get_state()
    vocabulary["state"] = state_meta
    return Model(
        events=[dict(e) for e in state.events],
        features=state.features,
        oracle=state.oracle,
        provenance=provenance,
        vocabulary=vocabulary,
        centers=np.asarray(vocab.cluster_centers_, dtype=np.float32),
        ledger=list(state.ledger),
        audio=state.signal if cfg.embed_audio else None,
        sample_rate=state.sample_rate,
        vocabulary_arrays={k: np.asarray(v, dtype=np.float64) for k, v in state_arrays.items() if k != "centers"},
    )


def _stage_save(state: RunState, progress: ProgressCallback | None, output: str | os.PathLike | None = None) -> None:
    """Save once, verify by reading back: the ledger gets "saved" (what we wrote)
    and "reloaded" (what came back from the written bytes).

    The model is written once to a temporary file beside ``output``; that
    file is read back and the "reloaded" entry computed from it is appended
    to the archive as its small ``reloaded.json`` member (see
    :func:`chandra.model.save_model`) before the file is renamed into place.
    Nothing else is written, so no model copy can be left behind: a failed,
    interrupted or terminated save removes its temporary file, and one
    killed outright leaves a recognisable temporary file that the next write
    to ``output`` removes.
    """
    from chandra.ledger import ledger_entry
    from chandra.model import save_model

    report(progress, "save", 0, 2)
    # A re-run of the stage must not carry the previous save's reload check.
    state.ledger = [e for e in state.ledger if e["stage"] != "reloaded"]
    model = build_model(state)
    n_tokens = int(state.vocabulary.n_tokens_)
    state.set_ledger(ledger_entry("saved", model.events, features=model.features, n_tokens=n_tokens,
                                  duration=state.duration, centers=model.centers))
    model.ledger = list(state.ledger)
    if output is None:
        state.model = model
        report(progress, "save", 2, 2)
        return
    output = Path(output)
    reloaded: dict[str, dict] = {}

    def reload_check(back) -> dict:
        reloaded["entry"] = ledger_entry("reloaded", back.events, features=back.features, n_tokens=n_tokens,
                                         duration=state.duration, centers=back.centers)
        report(progress, "save", 1, 2)
        return reloaded["entry"]

    save_model(model, output, reload_check=reload_check)
    state.set_ledger(reloaded["entry"])
    model.ledger = list(state.ledger)
    state.model = model
    state.saved_path = str(output)
    report(progress, "save", 2, 2)


_STAGE_FUNCTIONS = {
    "load": _stage_load,
    "segment": _stage_segment,
    "encode": _stage_encode,
    "vocabulary": _stage_vocabulary,
    "harmony": _stage_harmony,
    "events": _stage_events,
    "oracle": _stage_oracle,
}


def run_stage(state: RunState, stage: str, *, progress: ProgressCallback | None = None,
              output: str | os.PathLike | None = None) -> None:
    """Run one stage on ``state`` in place, recording its wall time.

    Raises
    ------
    ChandraError
        The stage's own error, or a missing upstream result.
    """
    if stage not in STAGES:
        raise ChandraError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    needs = {"segment": "signal", "encode": "segments", "vocabulary": "raw_features", "harmony": "segments",
             "events": "tokens", "oracle": "events", "save": "oracle"}
    if stage in needs and getattr(state, needs[stage]) is None:
        raise ChandraError(f"stage {stage!r} needs {', '.join(STAGE_DEPENDENCIES[stage])} to run first")
    if stage == "events" and state.harmony is None:
        raise ChandraError("stage 'events' needs harmony to run first")
    from chandra import warmup
    from chandra.progress import note

    # numba compiles a stage's kernels on their first call in a fresh cache
    # (seconds to a minute); say so rather than look frozen.
    jit = warmup.jit_key(stage, state.config)
    compiling = warmup.compile_note(jit)
    if compiling:
        note(progress, stage, compiling)
    started = time.perf_counter()
    if stage == "save":
        _stage_save(state, progress, output)
    else:
        _STAGE_FUNCTIONS[stage](state, progress)
    state.timings[stage] = time.perf_counter() - started
    if compiling:
        warmup.mark_warm(jit)


def run_all(state: RunState, *, progress: ProgressCallback | None = None,
            output: str | os.PathLike | None = None, overlap: bool = True) -> RunState:
    """Run every stage in order.

    With a neural encoder (and no feature cache) and ``overlap=True``, the
    segment and harmony stages run in a producer thread while the calling
    thread runs the encoder's forward passes over the whole file (they need
    the signal, not the segments); the encode stage then pools the frames
    computed (:mod:`chandra.encoders.overlap`). The results are those of the
    sequential order; ``overlap=False`` forces it.
    """
    state.config.validate()
    done: set[str] = set()
    if overlap and state.config.encoder != "dsp" and state.feature_cache is None:
        done = _run_overlapped(state, progress)
    for stage in STAGES:
        if stage not in done:
            run_stage(state, stage, progress=progress, output=output)
    return state


#: Modules the stages after the encoder import: loaded by the producer thread
#: while the forward passes run (scikit-learn alone takes about a second).
_LATER_STAGE_MODULES = ("chandra.vocabulary", "chandra.events", "chandra.oracle", "chandra.findings",
                        "chandra.model", "chandra.io_utils")


def _run_overlapped(state: RunState, progress: ProgressCallback | None) -> set[str]:
    """load; then the forward passes here, beside segment + harmony + pooling in a producer thread; then encode.

    The producer segments, analyses harmony, imports the modules of the
    later stages, then pools segment means from the frames already final
    (:class:`chandra.encoders.overlap.FrameFeed`) until the forward passes
    end; the encode stage pools what is left. Nothing waits on the producer
    but the end of the forward passes.
    """
    import importlib
    import inspect

    from chandra.encoders import make_encoder
    from chandra.encoders.overlap import FrameFeed, PrecomputedFrames, Producer

    run_stage(state, "load", progress=progress)
    cfg = state.config
    given = state.encoder
    encoder = given if given is not None else make_encoder(cfg.encoder, **encoder_options(cfg))
    encoder.load()  # a missing model fails here, before any thread starts
    feed = FrameFeed()
    try:
        feeds = "on_frames" in inspect.signature(encoder.encode_frames).parameters
    except (TypeError, ValueError):
        feeds = False
    result: dict[str, Any] = {}

    def beside_forward(queued: ProgressCallback) -> None:
        run_stage(state, "segment", progress=queued)
        run_stage(state, "harmony", progress=queued)
        for name in _LATER_STAGE_MODULES:
            importlib.import_module(name)
        if feeds:
            result["pooler"] = feed.pool(state.segments, queued)

    started = time.perf_counter()
    with Producer(beside_forward, progress=progress, name="chandra-beside-forward") as producer:
        try:
            if feeds:
                frames, times = encoder.encode_frames(state.signal, state.sample_rate, progress=producer.relay,
                                                      on_frames=feed.publish)
            else:
                frames, times = encoder.encode_frames(state.signal, state.sample_rate, progress=producer.relay)
        finally:
            feed.close()
    forward = time.perf_counter() - started
    state.encoder = PrecomputedFrames(encoder, frames, times, pooler=result.get("pooler"))
    try:
        run_stage(state, "encode", progress=progress)
    finally:
        state.encoder = given  # a model built here is not kept in the state (nor its weights in memory)
    del frames, times
    # the encode stage's time includes the forward passes (segment and harmony ran beside them)
    state.timings["encode"] += forward
    state.summaries["encode"]["overlapped_with"] = ["segment", "harmony"]
    return {"load", "segment", "harmony", "encode"}


def train(audio_path: str | os.PathLike, config: TrainConfig | None = None, *,
          output: str | os.PathLike | None = None, progress: ProgressCallback | None = None,
          feature_cache: Any = None) -> TrainResult:
    """Train a model from one audio file.

    Parameters
    ----------
    audio_path : path
        Audio file (see :func:`chandra.audio.load_audio`).
    config : TrainConfig
    output : path, optional
        Where to write the model (atomically). When ``None`` nothing is saved
        and the "reloaded" ledger stage is absent.
    feature_cache : chandra.feature_cache.FeatureCache, optional
        Reuse (and store) the encoder's output for this file and settings;
        the model is the same with or without it. See
        :mod:`chandra.feature_cache`. For several files see
        :func:`chandra.corpus.train_corpus`.

    Returns
    -------
    TrainResult

    Raises
    ------
    OutputError
        ``output`` is the audio file, an existing file that is not a chandra
        model, or being written by another process (checked before training).
    """
    from chandra.findings import findings_to_dicts, ledger_findings
    from chandra.io_utils import check_output, exclusive_output

    config = config or TrainConfig()
    state = RunState(audio_path=str(audio_path), config=config, feature_cache=feature_cache)
    if output is None:
        run_all(state, progress=progress)
    else:
        check_output(output, kind="model", inputs=[audio_path])
        # Held for the whole run: a second train to the same file fails at once.
        with exclusive_output(output):
            run_all(state, progress=progress, output=output)
    findings = findings_to_dicts(ledger_findings(state.ledger, provenance=state.model.provenance,
                                                 vocabulary=state.model.vocabulary))
    return TrainResult(model=state.model, path=Path(output) if output else None, state=state, findings=findings)


def ir_over_k(raw_features: np.ndarray, *, ks: list[int] | None = None, normalisation: str = "l2",
              pca_components: int | None = None, seed: int = 0, include: tuple[int, ...] = (),
              progress: ProgressCallback | None = None) -> dict:
    """Dubnov's information rate of the token sequence for a sweep of K, and
    the K to recommend.

    For each K a :class:`~chandra.vocabulary.GestureVocabulary` is fitted to
    the same features and the factor oracle of the assigned token sequence
    gives its IR (:func:`chandra.oracle.ir_tokens`). Too small a K makes
    every frame predictable and uninformative; too large a K makes nothing
    repeat. The raw maximum is not a recommendation on its own (on some
    material it is K = 2, which cannot tell a melody's gestures apart): the
    recommendation is :func:`chandra.vocabulary.recommend_k`'s, which reads
    this sweep (segments per token, sparse tokens, IR against smaller K).

    Parameters
    ----------
    raw_features : float array (n, d)
        Encoder output (before normalisation), as in the vocabulary stage.
    ks : list of int, optional
        Vocabulary sizes; default :func:`chandra.vocabulary.k_grid` (the
        grid 2, 3, 4, 6, 8, 12 … 128 up to half the number of segments).
    include : tuple of int
        Sizes added to the default grid (e.g. the K a run uses).

    Returns
    -------
    dict
        ``k`` (list, ascending), ``ir`` (bits/frame, list), ``rare_share``
        (share of tokens used once or twice, list), ``best_k`` and
        ``best_ir`` (the raw IR maximum), ``recommended`` (the
        :func:`~chandra.vocabulary.recommend_k` dict) and ``recommended_k``.
    """
    from chandra.vocabulary import k_grid, k_sweep, recommend_k

    X = np.asarray(raw_features)
    n = X.shape[0]
    if ks is None:
        ks = k_grid(n, include=include)
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= n})
    if not ks:
        raise ChandraError(f"no vocabulary size to try with {n} segments")
    rows = k_sweep(X, ks, normalisation=normalisation, pca_components=pca_components, random_state=seed,
                   progress=progress, stage="ir_over_k")
    irs = [row["ir"] for row in rows]
    best = int(np.argmax(irs))
    recommended = recommend_k(n, features=X, normalisation=normalisation, pca_components=pca_components,
                              random_state=seed, sweep=rows)
    return {"k": ks, "ir": irs, "rare_share": [row["rare_share"] for row in rows], "best_k": ks[best],
            "best_ir": irs[best], "recommended": recommended, "recommended_k": recommended["k"]}


def segment_preview(audio_path: str | os.PathLike, config: TrainConfig | None = None, *,
                    progress: ProgressCallback | None = None) -> dict:
    """What a take gives before training: its segments and the K to use.

    Runs the load and segment stages only (a few seconds a minute of audio;
    no features), so a front end can show the segment count and the
    recommended vocabulary size (:func:`chandra.vocabulary.recommend_k` on the
    count alone) as soon as audio is chosen.

    Parameters
    ----------
    audio_path : path
    config : TrainConfig, optional
        Its ``sample_rate``, ``min_duration``, ``max_duration`` and
        ``hop_length`` are used (the segment stage's parameters).

    Returns
    -------
    dict
        ``n_segments``, ``duration`` (s), ``sample_rate``, ``params`` (the
        segmentation parameters used), ``recommendation`` (the
        :func:`~chandra.vocabulary.recommend_k` dict), ``largest_k`` (the
        largest K a vocabulary can be fitted with: the segment count).

    Raises
    ------
    ChandraError
        Unreadable or too short audio, as the load and segment stages raise.
    """
    from chandra.vocabulary import recommend_k

    cfg = config or TrainConfig()
    state = RunState(audio_path=str(audio_path), config=cfg)
    run_stage(state, "load", progress=progress)
    run_stage(state, "segment", progress=progress)
    n = len(state.segments)
    recommendation = recommend_k(n)
    return {"n_segments": n, "duration": state.duration, "sample_rate": state.sample_rate,
            "params": stage_params(cfg, "segment"), "recommendation": recommendation, "largest_k": n}


def training_summary(state: RunState, findings: list | None = None) -> dict:
    """The closing summary the CLI prints and the dashboard shows."""
    vocab = state.summaries.get("vocabulary", {})
    oracle = state.summaries.get("oracle", {})
    return {
        "audio": Path(state.audio_path).name,
        "duration_s": state.duration,
        "segments": len(state.segments) if state.segments is not None else 0,
        "feature_dim": int(state.features.shape[1]) if state.features is not None else 0,
        "tokens_k": vocab.get("n_tokens"),
        "tokens_k_configured": state.config.n_tokens,
        "tokens_recommendation": vocab.get("recommendation"),
        "tokens_fit_active": vocab.get("fit_active"),
        "tokens_assigned_unique": vocab.get("assigned_unique"),
        "entropy_fit_bits": vocab.get("fit_entropy_bits"),
        "entropy_assigned_bits": vocab.get("assigned_entropy_bits"),
        "entropy_max_bits": vocab.get("max_entropy_bits"),
        "oracle_kind": oracle.get("kind"),
        "oracle_states": oracle.get("states"),
        "oracle_transitions": oracle.get("transitions"),
        "oracle_threshold": oracle.get("threshold"),
        "oracle_search": oracle.get("search"),
        "seconds": {k: round(v, 3) for k, v in state.timings.items()},
        "findings": [f"{f['severity']}: {f['code']} ({f['stage']}): {f['message']}" for f in (findings or [])],
        "finding_details": [{"severity": f["severity"], "code": f["code"], "stage": f["stage"],
                             "message": f["message"], **_explained(f)} for f in (findings or [])],
        "saved": state.saved_path,
    }


def _explained(finding: dict) -> dict:
    from chandra.findings import explain

    guide = explain(finding.get("code"))
    return {"meaning": finding.get("meaning") or guide["meaning"], "action": finding.get("action") or guide["action"]}
