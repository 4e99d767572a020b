"""Run directories: a training run's intermediates on disk.

The dashboard runs stages one at a time (possibly in a background thread),
and any page, reload or second browser tab must see the same results, so
every stage's output is persisted under ``<root>/<run_id>/``::

    run.json            config, per-stage status/time/hash/error, ledger,
                        summaries, findings, progress
    signal.npy          float32 mono signal
    segments.npz        Segments arrays
    raw_features.npy    encoder output (n, d)
    features.npy        normalised features (n, d')
    tokens.npy          int64 (n,)
    centers.npy         vocabulary centres
    vocabulary.json     fitted vocabulary summary (params, metrics)
    harmony.json        per-segment consonance / ratios
    events.json         events
    oracle.json + oracle_<name>.npy
    model.chandra       the saved model (after "save")
    cancel              present while a cancel is requested

Nothing here is pickled; arrays are ``.npy``/``.npz`` loaded with
``allow_pickle=False``, and every write is atomic.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from chandra.errors import ChandraError
from chandra.io_utils import atomic_write, dump_json_atomic, sha256_file
from chandra.pipeline import STAGE_DEPENDENCIES, STAGES, RunState, TrainConfig, run_stage, stage_hash
from chandra.progress import Cancelled

__all__ = ["RunDirectory", "list_runs", "STATUS_NOT_RUN", "STATUS_DONE", "STATUS_STALE", "STATUS_FAILED",
           "STATUS_RUNNING", "STATUS_CANCELLED"]

STATUS_NOT_RUN = "not run"
STATUS_RUNNING = "running"
STATUS_DONE = "done"
STATUS_STALE = "stale"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"

_lock = threading.Lock()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


class RunDirectory:
    """A persisted training run.

    Parameters
    ----------
    path : path
        The run's own directory (``<root>/<run_id>``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "run.json").exists():
            raise ChandraError(f"{self.path}: not a chandra run directory (no run.json)")
        self._state: RunState | None = None
        self._state_mtime: float | None = None

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(cls, root: str | os.PathLike, audio_path: str | os.PathLike, config: TrainConfig | None = None,
               *, run_id: str | None = None) -> "RunDirectory":
        """Make a new run for ``audio_path`` under ``root``."""
        audio_path = Path(audio_path).resolve()
        if not audio_path.is_file():
            raise ChandraError(f"{audio_path}: no such audio file")
        config = config or TrainConfig()
        config.validate()
        run_id = run_id or (_dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
        path = Path(root) / run_id
        path.mkdir(parents=True, exist_ok=False)
        meta = {
            "run_id": run_id,
            "created": _now(),
            "audio_path": str(audio_path),
            "audio_name": audio_path.name,
            "audio_sha256": sha256_file(audio_path),
            "config": config.to_dict(),
            "stages": {name: {"status": STATUS_NOT_RUN} for name in STAGES},
            "ledger": [],
            "summaries": {},
            "findings": [],
            "progress": None,
        }
        dump_json_atomic(meta, path / "run.json")
        return cls(path)

    # ------------------------------------------------------------------ metadata

    @property
    def run_id(self) -> str:
        return self.path.name

    def meta(self) -> dict:
        """The current ``run.json`` (read fresh from disk)."""
        try:
            with open(self.path / "run.json", encoding="utf-8") as fh:
                return json.load(fh)
        except json.JSONDecodeError as exc:
            raise ChandraError(f"{self.path / 'run.json'}: malformed JSON ({exc})") from exc

    def _update_meta(self, **changes: Any) -> dict:
        with _lock:
            meta = self.meta()
            meta.update(changes)
            dump_json_atomic(meta, self.path / "run.json")
            return meta

    def _set_stage(self, stage: str, **info: Any) -> None:
        with _lock:
            meta = self.meta()
            meta["stages"][stage] = {**meta["stages"].get(stage, {}), **info}
            dump_json_atomic(meta, self.path / "run.json")

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.meta()["config"])

    def set_config(self, config: TrainConfig) -> None:
        """Change the options; stages whose inputs changed become stale."""
        config.validate()
        self._update_meta(config=config.to_dict())

    def status(self) -> dict[str, dict]:
        """Per stage: status (not run / running / done / stale / failed /
        cancelled), seconds, error, headline summary."""
        meta = self.meta()
        config = TrainConfig.from_dict(meta["config"])
        out: dict[str, dict] = {}
        for stage in STAGES:  # pipeline order: dependencies come first
            info = dict(meta["stages"].get(stage, {"status": STATUS_NOT_RUN}))
            if info.get("status") == STATUS_DONE:
                # The hash covers this stage's options and, recursively, its
                # upstream stages' options; a dependency that is itself no
                # longer done makes this result stale too.
                current = stage_hash(config, stage, audio_sha256=meta["audio_sha256"])
                deps_ok = all(out[d]["status"] == STATUS_DONE for d in STAGE_DEPENDENCIES[stage])
                if info.get("hash") != current or not deps_ok:
                    info["status"] = STATUS_STALE
            out[stage] = info
        return out

    def is_done(self, stage: str) -> bool:
        return self.status()[stage]["status"] == STATUS_DONE

    # ------------------------------------------------------------------ state I/O

    def _persist(self, state: RunState, stage: str) -> None:
        p = self.path
        if stage == "load":
            _save_npy(p / "signal.npy", state.signal)
        elif stage == "segment":
            with atomic_write(p / "segments.npz") as fh:
                np.savez(fh, **state.segments.to_arrays())
            dump_json_atomic(state.segments.params, p / "segments_params.json")
        elif stage == "encode":
            _save_npy(p / "raw_features.npy", state.raw_features)
            dump_json_atomic(state.encoder_provenance, p / "encoder.json")
        elif stage == "vocabulary":
            _save_npy(p / "features.npy", state.features)
            _save_npy(p / "tokens.npy", state.tokens)
            _save_npy(p / "centers.npy", np.asarray(state.vocabulary.cluster_centers_, dtype=np.float32))
            vocab = state.vocabulary
            dump_json_atomic({"params": vocab.get_params(), "n_tokens": int(vocab.n_tokens_),
                              "fit_metrics": vocab.fit_metrics_,
                              "effective": getattr(vocab, "effective_params_", {})}, p / "vocabulary.json")
        elif stage == "harmony":
            dump_json_atomic(state.harmony, p / "harmony.json")
        elif stage == "events":
            dump_json_atomic(state.events, p / "events.json", indent=None)
        elif stage == "oracle":
            arrays = state.oracle.to_arrays()
            for name, arr in arrays.items():
                _save_npy(p / f"oracle_{name}.npy", arr)
            dump_json_atomic({"meta": state.oracle.to_meta(), "arrays": sorted(arrays),
                              "threshold_curve": state.threshold_curve}, p / "oracle.json")

    def load_state(self) -> RunState:
        """Rebuild a :class:`RunState` from the files of the stages that are
        done (stale stages are loaded too, so pages can still show them)."""
        meta = self.meta()
        mtime = (self.path / "run.json").stat().st_mtime
        if self._state is not None and self._state_mtime == mtime:
            return self._state
        from chandra.segment import Segments

        p = self.path
        state = RunState(audio_path=meta["audio_path"], config=TrainConfig.from_dict(meta["config"]),
                         audio_sha256=meta["audio_sha256"])
        done = {s for s, info in meta["stages"].items() if info.get("status") == STATUS_DONE}
        if "load" in done and (p / "signal.npy").exists():
            state.signal = _load_npy(p / "signal.npy")
            state.sample_rate = int(meta["summaries"].get("load", {}).get("sample_rate", state.config.sample_rate))
            state.duration = len(state.signal) / float(state.sample_rate)
        if "segment" in done and (p / "segments.npz").exists():
            with np.load(p / "segments.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            params = json.loads((p / "segments_params.json").read_text()) if (p / "segments_params.json").exists() else {}
            state.segments = Segments.from_arrays(arrays, params=params)
        if "encode" in done and (p / "raw_features.npy").exists():
            state.raw_features = _load_npy(p / "raw_features.npy")
            state.encoder_provenance = json.loads((p / "encoder.json").read_text())
        if "vocabulary" in done and (p / "tokens.npy").exists():
            state.features = _load_npy(p / "features.npy")
            state.tokens = _load_npy(p / "tokens.npy")
            state.vocabulary = _StoredVocabulary(p)
        if "harmony" in done and (p / "harmony.json").exists():
            state.harmony = json.loads((p / "harmony.json").read_text())
        if "events" in done and (p / "events.json").exists():
            state.events = json.loads((p / "events.json").read_text())
        if "oracle" in done and (p / "oracle.json").exists():
            from chandra.oracle import Oracle

            info = json.loads((p / "oracle.json").read_text())
            arrays = {name: _load_npy(p / f"oracle_{name}.npy") for name in info["arrays"]}
            state.oracle = Oracle.from_arrays(info["meta"], arrays)
            state.threshold_curve = info.get("threshold_curve")
        if "save" in done and (p / "model.chandra").exists():
            state.saved_path = str(p / "model.chandra")
        state.ledger = list(meta.get("ledger", []))
        state.timings = {s: info["seconds"] for s, info in meta["stages"].items() if "seconds" in info}
        state.summaries = dict(meta.get("summaries", {}))
        self._state, self._state_mtime = state, mtime
        return state

    def record_ledger_entry(self, entry: dict) -> None:
        """Add (or replace) one ledger entry, e.g. the "generated" stage after
        an improvisation, keeping the canonical stage order."""
        from chandra.ledger import LEDGER_STAGES

        order = {name: i for i, name in enumerate(LEDGER_STAGES)}
        with _lock:
            meta = self.meta()
            ledger = [e for e in meta.get("ledger", []) if e.get("stage") != entry.get("stage")]
            ledger.append(entry)
            ledger.sort(key=lambda e: order.get(e.get("stage"), len(order)))
            meta["ledger"] = ledger
            dump_json_atomic(meta, self.path / "run.json")

    def model_path(self) -> Path:
        return self.path / "model.chandra"

    # ------------------------------------------------------------------ execution

    def request_cancel(self) -> None:
        (self.path / "cancel").touch()

    def execute(self, stages: str | list[str] = "all", *, progress=None) -> dict:
        """Run ``stages`` ("all", "stale" — every stage not done — or a list)
        in pipeline order, persisting each as it finishes.

        Progress is written to ``run.json`` so another thread or page can
        poll it; a ``cancel`` file stops the run at the next progress report.
        Errors are recorded on the failing stage and re-raised.
        """
        if stages == "all":
            todo = list(STAGES)
        elif stages == "stale":
            status = self.status()
            todo = [s for s in STAGES if status[s]["status"] != STATUS_DONE]
        else:
            todo = [s for s in STAGES if s in stages]
        cancel_file = self.path / "cancel"
        cancel_file.unlink(missing_ok=True)
        meta = self.meta()
        config = TrainConfig.from_dict(meta["config"])
        self._state = None
        state = self.load_state()
        state.config = config
        last_write = [0.0]

        def on_progress(stage: str, done: int, total: int) -> None:
            if cancel_file.exists():
                raise Cancelled(f"cancelled during {stage}")
            now = time.monotonic()
            if now - last_write[0] > 0.25 or done >= total:
                last_write[0] = now
                self._update_meta(progress={"stage": stage, "done": done, "total": total})
            if progress is not None:
                progress(stage, done, total)

        for stage in todo:
            self._set_stage(stage, status=STATUS_RUNNING, started=_now(), error=None)
            try:
                run_stage(state, stage, progress=on_progress,
                          output=self.path / "model.chandra" if stage == "save" else None)
                self._persist(state, stage)
            except Cancelled as exc:
                self._set_stage(stage, status=STATUS_CANCELLED, error=str(exc))
                self._update_meta(progress=None)
                cancel_file.unlink(missing_ok=True)
                raise
            except Exception as exc:
                self._set_stage(stage, status=STATUS_FAILED, error=f"{type(exc).__name__}: {exc}"
                                if not isinstance(exc, ChandraError) else str(exc))
                self._update_meta(progress=None)
                raise
            findings = []
            if stage == "save":
                from chandra.findings import ledger_findings

                findings = [dict(f) if isinstance(f, dict) else f.to_dict() for f in
                            ledger_findings(state.ledger, provenance=state.model.provenance,
                                            vocabulary=state.model.vocabulary)]
            meta = self.meta()
            meta["stages"][stage] = {"status": STATUS_DONE, "seconds": state.timings.get(stage),
                                     "hash": stage_hash(config, stage, audio_sha256=meta["audio_sha256"]),
                                     "finished": _now(), "error": None}
            # A re-run stage invalidates the stages that read its output
            # (directly or transitively) unless they are about to run too.
            for later in _dependents(stage):
                if later not in todo and meta["stages"][later].get("status") == STATUS_DONE:
                    meta["stages"][later]["hash"] = "invalidated"
            meta["ledger"] = state.ledger
            meta["summaries"] = {**meta.get("summaries", {}), **state.summaries}
            if stage == "save":
                meta["findings"] = findings
            meta["progress"] = None
            with _lock:
                dump_json_atomic(meta, self.path / "run.json")
        self._state = None
        return self.status()


def _dependents(stage: str) -> list[str]:
    """Stages that read ``stage``'s output, directly or transitively."""
    out: list[str] = []
    for later in STAGES:
        if any(dep == stage or dep in out for dep in STAGE_DEPENDENCIES[later]):
            out.append(later)
    return out


class _StoredVocabulary:
    """A fitted vocabulary read back from a run directory: exposes what
    downstream stages and pages need (``n_tokens_``, ``cluster_centers_``,
    ``fit_metrics_``, ``get_params``) without refitting."""

    def __init__(self, path: Path):
        info = json.loads((path / "vocabulary.json").read_text())
        self._params = info["params"]
        self.n_tokens_ = int(info["n_tokens"])
        self.fit_metrics_ = info["fit_metrics"]
        self.effective_params_ = info.get("effective", {})
        self.cluster_centers_ = _load_npy(path / "centers.npy")

    def get_params(self, deep: bool = True) -> dict:
        return dict(self._params)


def list_runs(root: str | os.PathLike) -> list[RunDirectory]:
    """Runs under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [RunDirectory(p) for p in root.iterdir() if (p / "run.json").exists()]
    return sorted(runs, key=lambda r: r.meta().get("created", ""), reverse=True)
