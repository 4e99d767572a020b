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
from typing import Any

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
    "encode": ("encoder", "model", "layer", "trust_remote_code", "chunk_seconds", "batch_size"),
    "vocabulary": ("n_tokens", "normalisation", "pca_components", "seed", "reduce_k"),
    "harmony": ("max_partials",),
    "events": (),
    "oracle": ("oracle", "threshold", "metric"),
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
    n_tokens : int
        Vocabulary size K.
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
    embed_audio : bool
        Store the mono source signal in the model for resynthesis.
    """

    encoder: str = "dsp"
    model: str | None = None
    layer: int = -1
    trust_remote_code: bool = False
    chunk_seconds: float = 15.0
    batch_size: int = 2
    n_tokens: int = 64
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
        from chandra.encoders import ENCODER_NAMES
        from chandra.normalisation import NORMALISATIONS
        from chandra.oracle import KINDS, METRICS

        def bad(name: str, message: str) -> ParameterError:
            return ParameterError(f"{name} {message}", parameter=name)

        def whole(value: Any) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        if self.encoder not in ENCODER_NAMES:
            raise bad("encoder", f"must be one of {', '.join(ENCODER_NAMES)}, got {self.encoder!r}")
        if not whole(self.n_tokens) or self.n_tokens < 1:
            raise bad("n_tokens", f"must be a positive integer, got {self.n_tokens!r}")
        if self.pca_components is not None and (not whole(self.pca_components) or self.pca_components < 1):
            raise bad("pca_components", f"must be a positive integer or None, got {self.pca_components!r}")
        if not whole(self.seed):
            raise bad("seed", f"must be an integer, got {self.seed!r}")
        if self.oracle not in KINDS:
            raise bad("oracle", f"must be one of {', '.join(KINDS)}, got {self.oracle!r}")
        if self.normalisation not in NORMALISATIONS:
            raise bad("normalisation", f"must be one of {', '.join(NORMALISATIONS)}, got {self.normalisation!r}")
        if self.metric not in METRICS:
            raise bad("metric", f"must be one of {', '.join(METRICS)}, got {self.metric!r}")
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
    from importlib.metadata import PackageNotFoundError, version

    names = ["chandra", "numpy", "scipy", "librosa", "scikit-learn", "soundfile", "numba"]
    if neural:
        names += ["torch", "transformers"]
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


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


def _stage_encode(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.encoders import make_encoder
    from chandra.ledger import ledger_entry

    cfg = state.config
    options: dict[str, Any] = {}
    if cfg.encoder != "dsp":
        options = {"layer": cfg.layer, "chunk_seconds": cfg.chunk_seconds, "batch_size": cfg.batch_size}
        if cfg.trust_remote_code:
            # Only an explicit opt-in is passed on; the "mert" alias carries its
            # own default, and running repository code must be a user's choice.
            options["trust_remote_code"] = True
        if cfg.model:
            options["model"] = cfg.model
    else:
        options = {"sr": cfg.sample_rate, "hop_length": cfg.hop_length}
    encoder = make_encoder(cfg.encoder, **options)
    feats = encoder.encode(state.signal, state.sample_rate, state.segments, progress=progress)
    feats = np.asarray(feats, dtype=np.float32)
    if feats.shape[0] != len(state.segments):
        raise ChandraError(f"encoder returned {feats.shape[0]} vectors for {len(state.segments)} segments")
    state.raw_features = feats
    state.encoder_provenance = encoder.provenance()
    records = [{"segment_id": i, "t": float(t)} for i, t in enumerate(state.segments.start)]
    state.set_ledger(ledger_entry("features", records, features=feats, duration=state.duration))
    state.summaries["encode"] = {"dim": int(feats.shape[1]), "encoder": cfg.encoder}


def _stage_vocabulary(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.ledger import ledger_entry
    from chandra.vocabulary import GestureVocabulary, token_metrics

    cfg = state.config
    report(progress, "vocabulary", 0, 2)
    vocab = GestureVocabulary(n_tokens=cfg.n_tokens, normalisation=cfg.normalisation,
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
    report(progress, "vocabulary", 2, 2)


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


def _stage_oracle(state: RunState, progress: ProgressCallback | None) -> None:
    from chandra.ledger import ledger_entry
    from chandra.oracle import build_audio_oracle, build_factor_oracle, check_oracle, ir_threshold_sweep

    cfg = state.config
    if cfg.oracle == "tokens":
        oracle = build_factor_oracle(state.tokens, progress=progress)
        violations = check_oracle(oracle, symbols=state.tokens)
    else:
        threshold = cfg.threshold
        if threshold is None or threshold == "auto":
            curve = ir_threshold_sweep(state.features, metric=cfg.metric, progress=progress)
            state.threshold_curve = curve
            threshold = float(curve["best_threshold"])
        oracle = build_audio_oracle(state.features, threshold=float(threshold), metric=cfg.metric,
                                    progress=progress)
        violations = check_oracle(oracle, features=state.features)
    # Threshold matching is not transitive, so on audio oracles a context
    # mismatch is a warning (reported by the findings), not a broken oracle.
    errors = [v for v in violations if v.get("severity", "error") == "error"]
    if errors:
        first = errors[0]
        raise OracleError(f"oracle invariant violated ({first['code']} at state {first['state']}): {first['message']}")
    state.oracle = oracle
    n = oracle.n_frames
    records = state.events[:n]
    state.set_ledger(ledger_entry("oracle", records, features=state.features[:n],
                                  n_tokens=state.vocabulary.n_tokens_, duration=state.duration, oracle=oracle,
                                  symbols=state.tokens if oracle.kind == "tokens" else None,
                                  centers=state.vocabulary.cluster_centers_))
    state.summaries["oracle"] = {"kind": oracle.kind, "states": n + 1, "transitions": int(oracle.n_transitions),
                                 "threshold": oracle.threshold}


#: Encoder provenance keys that identify the features a vocabulary is fitted on.
FITTED_ON_KEYS = ("encoder", "model", "model_type", "layer", "effective_layer", "pooling", "sample_rate", "dim",
                  "n_mfcc", "hop_length", "n_fft")


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
                       "effective": effective},
        "oracle": {"kind": state.oracle.kind, "threshold": state.oracle.threshold, "metric": state.oracle.metric,
                   "threshold_configured": cfg.threshold},
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
    started = time.perf_counter()
    if stage == "save":
        _stage_save(state, progress, output)
    else:
        _STAGE_FUNCTIONS[stage](state, progress)
    state.timings[stage] = time.perf_counter() - started


def run_all(state: RunState, *, progress: ProgressCallback | None = None,
            output: str | os.PathLike | None = None) -> RunState:
    """Run every stage in order."""
    state.config.validate()
    for stage in STAGES:
        run_stage(state, stage, progress=progress, output=output)
    return state


def train(audio_path: str | os.PathLike, config: TrainConfig | None = None, *,
          output: str | os.PathLike | None = None, progress: ProgressCallback | None = None) -> TrainResult:
    """Train a model from one audio file.

    Parameters
    ----------
    audio_path : path
        Audio file (see :func:`chandra.audio.load_audio`).
    config : TrainConfig
    output : path, optional
        Where to write the model (atomically). When ``None`` nothing is saved
        and the "reloaded" ledger stage is absent.

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
    state = RunState(audio_path=str(audio_path), config=config)
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
              pca_components: int | None = None, seed: int = 0,
              progress: ProgressCallback | None = None) -> dict:
    """Dubnov's information rate of the token sequence for a sweep of K.

    For each K a :class:`~chandra.vocabulary.GestureVocabulary` is fitted to
    the same features and the factor oracle of the assigned token sequence
    gives its IR (:func:`chandra.oracle.ir_tokens`). Too small a K makes every
    frame predictable and uninformative; too large a K makes nothing repeat;
    the IR peak marks the vocabulary size at which tokens carry the most
    predictable structure.

    Parameters
    ----------
    raw_features : float array (n, d)
        Encoder output (before normalisation), as in the vocabulary stage.
    ks : list of int, optional
        Vocabulary sizes; default powers of two from 2 to 256 that are at
        most half the number of segments.

    Returns
    -------
    dict
        ``k`` (list), ``ir`` (bits/frame, list), ``best_k``, ``best_ir``.
    """
    from chandra.oracle import ir_tokens
    from chandra.vocabulary import GestureVocabulary

    X = np.asarray(raw_features)
    n = X.shape[0]
    if ks is None:
        ks = [k for k in (2, 4, 8, 16, 32, 64, 128, 256) if k <= max(2, n // 2)]
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= n})
    if not ks:
        raise ChandraError(f"no vocabulary size to try with {n} segments")
    irs = []
    for i, k in enumerate(ks):
        report(progress, "ir_over_k", i, len(ks))
        vocab = GestureVocabulary(n_tokens=k, normalisation=normalisation, pca_components=pca_components,
                                  random_state=seed, reduce_k=True).fit(X)
        irs.append(float(ir_tokens(vocab.predict(X))))
    report(progress, "ir_over_k", len(ks), len(ks))
    best = int(np.argmax(irs))
    return {"k": ks, "ir": irs, "best_k": ks[best], "best_ir": irs[best]}


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
        "tokens_fit_active": vocab.get("fit_active"),
        "tokens_assigned_unique": vocab.get("assigned_unique"),
        "entropy_fit_bits": vocab.get("fit_entropy_bits"),
        "entropy_assigned_bits": vocab.get("assigned_entropy_bits"),
        "entropy_max_bits": vocab.get("max_entropy_bits"),
        "oracle_kind": oracle.get("kind"),
        "oracle_states": oracle.get("states"),
        "oracle_transitions": oracle.get("transitions"),
        "oracle_threshold": oracle.get("threshold"),
        "seconds": {k: round(v, 3) for k, v in state.timings.items()},
        "findings": [f"{f['severity']}: {f['code']} ({f['stage']}): {f['message']}" for f in (findings or [])],
        "saved": state.saved_path,
    }
