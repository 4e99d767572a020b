"""Training on a corpus: several takes, one vocabulary, one oracle, one model.

A corpus is an ordered list of audio files (takes). Training splits in two:

1. **Per file** (:func:`analyse_file`): decode, segment, encode and analyse
   the harmony of one take. It reads only its file, the configuration and
   (optionally) the feature cache; it is deterministic and returns a
   picklable :class:`FileAnalysis` (arrays and plain values). This is the
   unit an engine maps over files: a loop (``engine="sequential"``), a
   process pool or a cluster.
2. **Corpus** (:func:`build_corpus`): consume the analyses in file order:
   fit one vocabulary on all segments, build every take's events (``take``
   names the file, ``t`` counts from the start of that file), one oracle in
   which a take never continues into the next (:mod:`chandra.oracle`, take
   starts), the file table, per-file ledger sections and token usage.

:func:`train_corpus` runs both and saves the model. The same files in the
same order with the same configuration give the same model, whatever the
engine and whether features came from the cache.

Inputs: :func:`collect_inputs` expands files and folders (recursively,
audio extensions only, each folder's files sorted by path; the arguments
keep their order); :func:`read_manifest` reads ``path[,label]`` lines
(CSV), paths relative to the manifest.

Audio: ``"embed"`` stores every take's audio in the model (FLAC members,
see :mod:`chandra.model`), ``"reference"`` stores only the file table (path
as given and SHA-256) and :func:`attach_audio` finds and checks the files
when audio is needed, ``"none"`` stores no audio.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from chandra.errors import ChandraError, ParameterError, first_line, reading
from chandra.progress import ProgressCallback, report

__all__ = [
    "CorpusFile",
    "FileAnalysis",
    "CorpusResult",
    "CorpusState",
    "ENGINES",
    "AUDIO_STORAGE",
    "MANIFEST_MAX_BYTES",
    "MANIFEST_MAX_ROWS",
    "collect_inputs",
    "read_manifest",
    "analyse_file",
    "build_corpus",
    "train_corpus",
    "attach_audio",
    "references_audio",
    "token_usage",
    "corpus_summary",
]

from chandra.engines import ENGINES  # noqa: E402  (engines that map analyse_file over the files)
#: How a corpus model keeps its audio.
AUDIO_STORAGE = ("embed", "reference", "none")
#: Largest manifest read, in bytes.
MANIFEST_MAX_BYTES = 4 * 1024 * 1024
#: Most rows a manifest may hold.
MANIFEST_MAX_ROWS = 100_000
#: Longest label, in characters.
MAX_LABEL_CHARS = 200
_STORAGE_NAME = {"embed": "embedded", "reference": "reference", "none": "none"}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class CorpusFile:
    """One take of a corpus: ``path`` as given (or as found in a folder), optional ``label``."""

    path: str
    label: str | None = None


def _audio_extensions() -> tuple[str, ...]:
    from chandra.audio import SUPPORTED_EXTENSIONS

    return SUPPORTED_EXTENSIONS


def _folder_files(folder: Path) -> list[Path]:
    """Audio files under ``folder``, recursively, sorted by their path inside it; hidden names skipped."""
    exts = _audio_extensions()
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in exts:
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def corpus_sha256(file_hashes: Sequence[str]) -> str:
    """The corpus's content hash: SHA-256 of its files' SHA-256 hex digests, one per line, in take order."""
    return hashlib.sha256("\n".join(file_hashes).encode()).hexdigest()


def collect_inputs(paths: Iterable[str | os.PathLike], *, label: str | None = None) -> list[CorpusFile]:
    """The takes named by files and folders, in order.

    Parameters
    ----------
    paths : iterable of path
        Audio files (any name :func:`chandra.audio.load_audio` will judge)
        and folders (searched recursively for files with an audio extension,
        :data:`chandra.audio.SUPPORTED_EXTENSIONS`, names starting with "."
        skipped, sorted by path inside the folder). Arguments keep their
        order; a file named twice is kept once, where it first appears.
    label : str, optional
        Label given to every file.

    Returns
    -------
    list of CorpusFile

    Raises
    ------
    ChandraError
        A path that does not exist, a folder without audio files, or no
        paths at all.
    """
    out: list[CorpusFile] = []
    seen: set[str] = set()
    given = [Path(os.fspath(p)) for p in paths]
    if not given:
        raise ChandraError("no audio given: name files or folders, or a manifest")
    for path in given:
        if path.is_dir():
            found = _folder_files(path)
            if not found:
                raise ChandraError(f"{path}: folder holds no audio files ({', '.join(_audio_extensions())})")
        elif path.exists():
            found = [path]
        else:
            raise ChandraError(f"{path}: no such file or folder")
        for item in found:
            key = os.path.realpath(item)
            if key in seen:
                continue
            seen.add(key)
            out.append(CorpusFile(path=str(item), label=label))
    return out


def read_manifest(path: str | os.PathLike) -> list[CorpusFile]:
    """Read a corpus manifest: one take per line, ``path[,label]`` (CSV).

    Blank lines and lines starting with ``#`` are skipped; a first line
    whose first cell is ``path`` is a header. Paths are relative to the
    manifest's folder (absolute paths stay as they are); a folder stands for
    the audio files in it (see :func:`collect_inputs`), all with the line's
    label. The file is read whole, at most :data:`MANIFEST_MAX_BYTES` bytes
    and :data:`MANIFEST_MAX_ROWS` rows, as UTF-8.

    Returns
    -------
    list of CorpusFile
        In manifest order; ``path`` is the manifest's folder joined to the
        line's path.

    Raises
    ------
    ChandraError
        One line naming the manifest, the line and what is wrong (never
        quoting more than a short piece of the file).
    """
    path = Path(os.fspath(path))
    with reading(str(path), expected="a manifest (a CSV file of path[,label] lines)", error=ChandraError):
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MANIFEST_MAX_BYTES:
                raise ChandraError(f"{path}: manifest of {size} bytes exceeds the {MANIFEST_MAX_BYTES}-byte limit")
            data = fh.read(MANIFEST_MAX_BYTES + 1)
    if len(data) > MANIFEST_MAX_BYTES:
        raise ChandraError(f"{path}: manifest exceeds the {MANIFEST_MAX_BYTES}-byte limit")
    if b"\0" in data:
        raise ChandraError(f"{path}: manifest holds NUL bytes; expected a text file of path[,label] lines")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChandraError(f"{path}: manifest is not UTF-8 text (byte {exc.start})") from None
    base = path.parent
    out: list[CorpusFile] = []
    seen: set[str] = set()
    rows = 0
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        for row in reader:
            line = reader.line_num
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if rows == 0 and cells[0].lower() == "path":
                rows += 1
                continue
            rows += 1
            if rows > MANIFEST_MAX_ROWS:
                raise ChandraError(f"{path}: more than {MANIFEST_MAX_ROWS} rows")
            while cells and cells[-1] == "":
                cells.pop()
            if len(cells) > 2:
                raise ChandraError(f"{path} line {line}: expected path[,label], got {len(cells)} columns")
            if not cells[0]:
                raise ChandraError(f"{path} line {line}: the path is empty")
            label = cells[1] if len(cells) == 2 and cells[1] else None
            if label is not None and len(label) > MAX_LABEL_CHARS:
                raise ChandraError(f"{path} line {line}: label of {len(label)} characters; at most "
                                   f"{MAX_LABEL_CHARS}")
            target = Path(cells[0]).expanduser()
            target = target if target.is_absolute() else base / target
            try:
                found = collect_inputs([target], label=label)
            except ChandraError as exc:
                raise ChandraError(f"{path} line {line}: {first_line(exc)}") from None
            for item in found:
                key = os.path.realpath(item.path)
                if key in seen:
                    raise ChandraError(f"{path} line {line}: {item.path} is already in the manifest")
                seen.add(key)
                out.append(item)
    except csv.Error as exc:
        raise ChandraError(f"{path}: not a readable CSV manifest ({first_line(exc)})") from None
    if not out:
        raise ChandraError(f"{path}: the manifest names no audio files")
    return out


def _as_files(inputs: Iterable[Any]) -> list[CorpusFile]:
    out = []
    for item in inputs:
        if isinstance(item, CorpusFile):
            out.append(item)
        else:
            out.append(CorpusFile(path=os.fspath(item)))
    if not out:
        raise ChandraError("no audio given: name files or folders, or a manifest")
    return out


# --------------------------------------------------------------------------- per file


@dataclass
class FileAnalysis:
    """What one take contributes before the corpus-wide steps (plain values and arrays; picklable).

    Attributes
    ----------
    path : str
        As given.
    label : str or None
    sha256 : str
        Of the file's bytes.
    sample_rate : int
        Analysis rate of ``signal`` (Hz), the configuration's.
    duration : float
        Seconds of decoded audio.
    n_samples : int
        Samples of the decoded signal at ``sample_rate``.
    decode : dict
        :meth:`chandra.audio.DecodedAudio.report` (the file's own rate,
        frames declared and read).
    signal : float32 (n_samples,) or None
        The decoded mono signal (None when not kept: referenced or no audio).
    segments : chandra.segment.Segments
        Bounds in seconds from the start of this file.
    raw_features : float32 (n_segments, dim)
        Encoder output.
    encoder_provenance : dict
    harmony : list of dict
        :func:`chandra.harmony.analyse_harmony` rows, one per segment.
    summaries : dict
        Per-stage summaries (``load``, ``segment``, ``encode``, ``harmony``).
    timings : dict
        Seconds per stage.
    feature_cache : str
        ``"hit"``, ``"miss"``, ``"invalid"`` or ``"off"``.
    """

    path: str
    label: str | None
    sha256: str
    sample_rate: int
    duration: float
    n_samples: int
    decode: dict
    signal: np.ndarray | None
    segments: Any
    raw_features: np.ndarray
    encoder_provenance: dict
    harmony: list
    summaries: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    feature_cache: str = "off"

    @property
    def n_segments(self) -> int:
        return len(self.segments)


def analyse_file(path: str | os.PathLike, config: Any, *, label: str | None = None, cache: Any = None,
                 encoder: Any = None, keep_signal: bool = True,
                 progress: ProgressCallback | None = None) -> FileAnalysis:
    """Decode, segment, encode and analyse the harmony of one take.

    The per-file unit of corpus training: it depends on nothing but its
    arguments (no global state), so engines may run it in other processes
    or on other machines and get the same result. The stages are the
    one-file pipeline's own (:func:`chandra.pipeline.run_stage`).

    Parameters
    ----------
    path : path
        Audio file.
    config : chandra.pipeline.TrainConfig
    label : str, optional
    cache : chandra.feature_cache.FeatureCache, optional
        Encoder outputs cache (a hit skips the encoder).
    encoder : Encoder, optional
        An encoder built from ``config`` to reuse (e.g. a loaded neural model).
    keep_signal : bool
        Return the decoded signal (needed to embed audio in the model).
    progress : callable, optional
        Passed to each stage (``"load"``, ``"segment"``, ``"encode"``, ``"harmony"``).

    Returns
    -------
    FileAnalysis

    Raises
    ------
    ChandraError
        The stage's own error, its message starting with the file's path.
    """
    state = run_file_stages(path, config, ("load", "segment", "encode", "harmony"), cache=cache, encoder=encoder,
                            progress=progress)
    return file_analysis(state, label=label, keep_signal=keep_signal)


def named_error(exc: ChandraError, path: str | os.PathLike) -> ChandraError:
    """``exc`` as one line that starts with ``path`` (``exc`` itself when it already names it)."""
    message = first_line(exc)
    if str(path) in message:
        return exc
    try:
        return type(exc)(f"{path}: {message}", parameter=getattr(exc, "parameter", None))
    except TypeError:  # a subclass with its own constructor
        return ChandraError(f"{path}: {message}", parameter=getattr(exc, "parameter", None))


def run_file_stages(path: str | os.PathLike, config: Any, stages: Sequence[str], *, state: Any = None,
                    cache: Any = None, encoder: Any = None,
                    progress: ProgressCallback | None = None) -> Any:
    """Run per-file ``stages`` on one take (a new run state, or ``state`` continued).

    Engines split :func:`analyse_file` with it: ``load``, ``segment`` and
    ``harmony`` in a worker process, ``encode`` where a neural model is
    loaded. Returns the :class:`chandra.pipeline.RunState`; a stage's
    :class:`~chandra.errors.ChandraError` is raised with the file's path
    first (see :func:`named_error`).
    """
    from chandra.pipeline import RunState, run_stage

    if state is None:
        state = RunState(audio_path=os.fspath(path), config=config)
    state.feature_cache, state.encoder = cache, encoder
    try:
        for stage in stages:
            run_stage(state, stage, progress=progress)
    except ChandraError as exc:
        named = named_error(exc, path)
        if named is exc:
            raise
        raise named from exc
    finally:
        state.feature_cache, state.encoder = None, None  # never carried between processes
    return state


def file_analysis(state: Any, *, label: str | None = None, keep_signal: bool = True) -> FileAnalysis:
    """The :class:`FileAnalysis` of a run state that has been through load, segment, encode and harmony."""
    path = state.audio_path
    return FileAnalysis(
        path=os.fspath(path), label=label, sha256=state.audio_sha256, sample_rate=int(state.sample_rate),
        duration=float(state.duration), n_samples=int(len(state.signal)),
        decode=dict((state.summaries.get("load") or {}).get("decode") or {}),
        signal=np.asarray(state.signal, dtype=np.float32) if keep_signal else None,
        segments=state.segments, raw_features=np.asarray(state.raw_features, dtype=np.float32),
        encoder_provenance=dict(state.encoder_provenance or {}), harmony=list(state.harmony),
        summaries={k: state.summaries[k] for k in ("load", "segment", "encode", "harmony") if k in state.summaries},
        timings=dict(state.timings),
        feature_cache=state.feature_cache_status or "off")


# --------------------------------------------------------------------------- corpus


@dataclass
class CorpusState:
    """The corpus-wide results, as :class:`chandra.pipeline.RunState` holds one file's."""

    config: Any
    analyses: list
    audio: str
    vocabulary: Any = None
    raw_features: np.ndarray | None = None
    features: np.ndarray | None = None
    tokens: np.ndarray | None = None
    takes: np.ndarray | None = None
    take_starts: np.ndarray | None = None
    events: list | None = None
    oracle: Any = None
    threshold_curve: dict | None = None
    model: Any = None
    saved_path: str | None = None
    ledger: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    summaries: dict = field(default_factory=dict)

    @property
    def durations(self) -> list[float]:
        return [a.duration for a in self.analyses]


@dataclass
class CorpusResult:
    """What :func:`train_corpus` returns: the model, where it went, the record, the findings."""

    model: Any
    path: Path | None
    state: CorpusState
    findings: list

    def summary(self) -> dict:
        return corpus_summary(self.state, self.findings)


def token_usage(tokens: np.ndarray, takes: np.ndarray, *, n_tokens: int, n_takes: int) -> dict:
    """How the takes of a corpus use the vocabulary.

    Returns
    -------
    dict
        ``counts`` (T lists of K ints: frames of take t with token k),
        ``unique`` (tokens each take uses), ``exclusive`` (tokens only that
        take uses), ``owned`` (tokens for which the take has the most frames,
        lowest take on ties), ``frame_share``, ``token_share`` (owned /
        active tokens), ``shared_tokens`` (tokens two or more takes use).
    """
    counts = np.zeros((n_takes, n_tokens), dtype=np.int64)
    np.add.at(counts, (np.asarray(takes, dtype=np.int64), np.asarray(tokens, dtype=np.int64)), 1)
    used = counts > 0
    active = np.flatnonzero(used.any(axis=0))
    users = used.sum(axis=0)
    owners = np.argmax(counts[:, active], axis=0) if active.size else np.zeros(0, dtype=np.int64)
    owned = np.bincount(owners, minlength=n_takes)
    frames = counts.sum(axis=1)
    return {
        "counts": counts.tolist(),
        "unique": [int(u) for u in used.sum(axis=1)],
        "exclusive": [int(np.count_nonzero(used[t] & (users == 1))) for t in range(n_takes)],
        "owned": [int(o) for o in owned],
        "frame_share": [float(f / frames.sum()) if frames.sum() else 0.0 for f in frames],
        "token_share": [float(o / active.size) if active.size else 0.0 for o in owned],
        "shared_tokens": int(np.count_nonzero(users >= 2)),
        "active_tokens": int(active.size),
    }


def _corpus_entry(stage: str, records: list, state: CorpusState, **options: Any) -> dict:
    from chandra.ledger import add_per_file, ledger_entry

    histogram = options.pop("histogram", False)
    durations = state.durations
    entry = ledger_entry(stage, records, duration=max(durations), **options)
    return add_per_file(entry, records, takes=state.takes, durations=durations, features=options.get("features"),
                        tokens=options.get("tokens"), n_tokens=options.get("n_tokens"), histogram=histogram)


def _set_entry(state: CorpusState, entry: dict) -> None:
    from chandra.ledger import LEDGER_STAGES

    state.ledger = [e for e in state.ledger if e["stage"] != entry["stage"]]
    state.ledger.append(entry)
    order = {name: i for i, name in enumerate(LEDGER_STAGES)}
    state.ledger.sort(key=lambda e: order.get(e["stage"], len(order)))


def build_corpus(analyses: Sequence[FileAnalysis], config: Any, *, audio: str = "embed",
                 progress: ProgressCallback | None = None) -> CorpusState:
    """The corpus-wide steps over per-file analyses in file order: vocabulary, events, oracle, model.

    Parameters
    ----------
    analyses : sequence of FileAnalysis
        From :func:`analyse_file`, in corpus order (the order decides take
        numbers, the oracle and so the model).
    config : chandra.pipeline.TrainConfig
    audio : {"embed", "reference", "none"}
        Embedding needs every analysis's ``signal``.
    progress : callable, optional
        ``"vocabulary"``, ``"events"``, ``"oracle"``.

    Returns
    -------
    CorpusState
        With ``model`` (a :class:`chandra.model.Model`, not yet saved) and
        the ledger up to ``oracle``.
    """
    from chandra.events import build_events, validate_events
    from chandra.model import Model, quantize_audio
    from chandra.pipeline import build_checked_oracle, choose_k, fitted_on, package_versions
    from chandra.vocabulary import GestureVocabulary, token_metrics

    if audio not in AUDIO_STORAGE:
        raise ParameterError(f"audio must be one of {', '.join(AUDIO_STORAGE)}, got {audio!r}", parameter="audio")
    analyses = list(analyses)
    if not analyses:
        raise ChandraError("a corpus needs at least one file")
    cfg = config
    state = CorpusState(config=cfg, analyses=analyses, audio=audio)
    dims = {a.raw_features.shape[1] for a in analyses}
    rates = {a.sample_rate for a in analyses}
    if len(dims) != 1 or len(rates) != 1:
        raise ChandraError(f"the takes were analysed differently (feature dims {sorted(dims)}, sample rates "
                           f"{sorted(rates)}); analyse every file with the same configuration")
    if audio == "embed" and any(a.signal is None for a in analyses):
        missing = next(a.path for a in analyses if a.signal is None)
        raise ChandraError(f"{missing}: its signal was not kept; analyse it with keep_signal=True to embed audio")
    n_per = [a.n_segments for a in analyses]
    starts = np.concatenate(([0], np.cumsum(n_per)[:-1])).astype(np.int64)
    state.take_starts = starts
    state.takes = np.repeat(np.arange(len(analyses), dtype=np.int64), n_per)
    sample_rate = int(next(iter(rates)))

    # segments and features, as ledger boundaries over every take
    seg_records = []
    feat_records = []
    for k, a in enumerate(analyses):
        for r in a.segments.to_records():
            seg_records.append({**r, "t": r["start"], "duration": r["end"] - r["start"], "take": k})
        feat_records += [{"segment_id": i, "t": float(t), "take": k} for i, t in enumerate(a.segments.start)]
    state.raw_features = np.vstack([a.raw_features for a in analyses]).astype(np.float32)
    _set_entry(state, _corpus_entry("segments", seg_records, state))
    _set_entry(state, _corpus_entry("features", feat_records, state, features=state.raw_features))

    # one vocabulary over all segments
    started = time.perf_counter()
    n_tokens, recommendation = choose_k(state.raw_features, cfg, progress=progress)  # the one-file rule
    report(progress, "vocabulary", 0, 2)
    vocab = GestureVocabulary(n_tokens=n_tokens, normalisation=cfg.normalisation,
                              pca_components=cfg.pca_components, random_state=cfg.seed, reduce_k=cfg.reduce_k)
    vocab.fit(state.raw_features)
    report(progress, "vocabulary", 1, 2)
    state.vocabulary = vocab
    state.features = np.asarray(vocab.transform(state.raw_features), dtype=np.float32)
    state.tokens = np.asarray(vocab.predict(state.raw_features), dtype=np.int64)
    k_eff = int(vocab.n_tokens_)
    _set_entry(state, _corpus_entry("normalised", feat_records, state, features=state.features))
    tok_records = [{**r, "gesture_token": int(t)} for r, t in zip(feat_records, state.tokens)]
    _set_entry(state, _corpus_entry("tokens", tok_records, state, tokens=state.tokens, n_tokens=k_eff,
                                    histogram=True))
    usage = token_usage(state.tokens, state.takes, n_tokens=k_eff, n_takes=len(analyses))
    assigned = token_metrics(state.tokens, n_tokens=k_eff)
    state.summaries["vocabulary"] = {
        "n_tokens": k_eff, "fit_active": int(vocab.fit_metrics_["active"]),
        "fit_entropy_bits": float(vocab.fit_metrics_["entropy_bits"]),
        "assigned_unique": int(assigned["unique"]), "assigned_entropy_bits": float(assigned["entropy_bits"]),
        "max_entropy_bits": float(assigned["max_entropy_bits"]),
        "algorithm": vocab.effective_params_.get("algorithm", {}).get("effective"),
        "shared_tokens": usage["shared_tokens"], "tokens_per_take": usage["unique"],
    }
    if recommendation is not None:
        state.summaries["vocabulary"]["recommendation"] = recommendation
    report(progress, "vocabulary", 2, 2)
    state.timings["vocabulary"] = time.perf_counter() - started

    # events, take by take (joined by segment id within the take), then the take's index
    started = time.perf_counter()
    report(progress, "events", 0, len(analyses))
    events: list[dict] = []
    for k, a in enumerate(analyses):
        lo, hi = int(starts[k]), int(starts[k]) + a.n_segments
        take_events = build_events(a.segments, state.tokens[lo:hi], a.harmony)
        validate_events(take_events, duration=a.duration)
        for event in take_events:
            event["take"] = k
        events += take_events
        report(progress, "events", k + 1, len(analyses))
    state.events = events
    _set_entry(state, _corpus_entry("events", events, state, features=state.features, n_tokens=k_eff,
                                    centers=vocab.cluster_centers_))
    state.timings["events"] = time.perf_counter() - started

    # one oracle; a take never continues into the next
    started = time.perf_counter()
    take_starts = starts if len(analyses) > 1 else None
    oracle, curve = build_checked_oracle(state.tokens, state.features, cfg, take_starts=take_starts,
                                         progress=progress)
    if curve is not None:
        state.threshold_curve = curve
    state.oracle = oracle
    _set_entry(state, _corpus_entry("oracle", events, state, features=state.features, n_tokens=k_eff,
                                    oracle=oracle, symbols=state.tokens if oracle.kind == "tokens" else None,
                                    centers=vocab.cluster_centers_))
    state.summaries["oracle"] = {"kind": oracle.kind, "states": oracle.n_frames + 1,
                                 "transitions": int(oracle.n_transitions), "threshold": oracle.threshold}
    state.timings["oracle"] = time.perf_counter() - started

    # the model
    files = []
    for k, a in enumerate(analyses):
        files.append({"path": a.path, "name": Path(a.path).name, "sha256": a.sha256, "duration": a.duration,
                      "sample_rate": a.decode.get("file_sample_rate"), "n_samples": a.n_samples,
                      "label": a.label, "n_events": a.n_segments, "first_event": int(starts[k]),
                      "decode": a.decode})
    effective = {key: (value["effective"] if isinstance(value, dict) and "effective" in value else value)
                 for key, value in (getattr(vocab, "effective_params_", {}) or {}).items()}
    corpus_hash = corpus_sha256([a.sha256 for a in analyses])
    encoder_provenance = analyses[0].encoder_provenance
    provenance = {
        "created_by": "chandra train (corpus)",
        "input": {"corpus": True, "n_files": len(analyses), "sha256": corpus_hash,
                  "duration": float(sum(a.duration for a in analyses)), "sample_rate": sample_rate},
        "files": files,
        "audio": {"storage": _STORAGE_NAME[audio]},
        "encoder": encoder_provenance,
        "segmentation": dict(analyses[0].segments.params),
        "vocabulary": {"configured": {"n_tokens": cfg.n_tokens, "normalisation": cfg.normalisation,
                                      "pca_components": cfg.pca_components, "seed": cfg.seed},
                       "effective": effective,
                       **({"recommendation": state.summaries["vocabulary"]["recommendation"]}
                          if "recommendation" in state.summaries["vocabulary"] else {})},
        "oracle": {"kind": oracle.kind, "threshold": oracle.threshold, "metric": oracle.metric,
                   "threshold_configured": cfg.threshold, "search_configured": cfg.oracle_search,
                   "search": oracle.search},
        "config": cfg.to_dict(),
        "versions": package_versions(neural=cfg.encoder != "dsp"),
    }
    vocabulary = {
        "params": dict(vocab.get_params()),
        "fitted_on": fitted_on(encoder_provenance, dim=int(state.raw_features.shape[1])),
        "n_tokens": k_eff,
        "fit_metrics": vocab.fit_metrics_,
        "assigned_metrics": assigned,
        "per_file": usage,
    }
    # the fitted state (format 1.3), as for one file: the model can hear new audio (chandra.respond)
    state_meta, state_arrays = vocab.get_state()
    vocabulary["state"] = state_meta
    signal = None
    if audio == "embed":
        signal = quantize_audio(np.concatenate([a.signal for a in analyses]))
    state.model = Model(events=[dict(e) for e in events], features=state.features, oracle=oracle,
                        provenance=provenance, vocabulary=vocabulary,
                        centers=np.asarray(vocab.cluster_centers_, dtype=np.float32), ledger=list(state.ledger),
                        audio=signal, sample_rate=sample_rate,
                        vocabulary_arrays={k: np.asarray(v, dtype=np.float64) for k, v in state_arrays.items()
                                           if k != "centers"})
    return state


def _save_corpus(state: CorpusState, output: str | os.PathLike | None,
                 progress: ProgressCallback | None) -> None:
    """Saved and reloaded ledger entries, and the model written once (see ``pipeline._stage_save``)."""
    from chandra.model import save_model

    started = time.perf_counter()
    report(progress, "save", 0, 2)
    model = state.model
    k_eff = int(state.vocabulary.n_tokens_)
    state.ledger = [e for e in state.ledger if e["stage"] != "reloaded"]
    _set_entry(state, _corpus_entry("saved", model.events, state, features=model.features, n_tokens=k_eff,
                                    centers=model.centers))
    model.ledger = list(state.ledger)
    if output is not None:
        reloaded: dict[str, dict] = {}

        def reload_check(back) -> dict:
            reloaded["entry"] = _corpus_entry("reloaded", back.events, state, features=back.features,
                                              n_tokens=k_eff, centers=back.centers)
            report(progress, "save", 1, 2)
            return reloaded["entry"]

        save_model(model, output, reload_check=reload_check)
        _set_entry(state, reloaded["entry"])
        model.ledger = list(state.ledger)
        state.saved_path = str(output)
    report(progress, "save", 2, 2)
    state.timings["save"] = time.perf_counter() - started


def _analyse_all(files: Sequence[CorpusFile], config: Any, *, engine: str, cache: Any, keep_signal: bool,
                 progress: ProgressCallback | None, workers: int | None = None,
                 ray_address: str | None = None) -> list[FileAnalysis]:
    from chandra.engines import analyse_files

    return analyse_files(files, config, engine=engine, workers=workers, ray_address=ray_address, cache=cache,
                         keep_signal=keep_signal, progress=progress)


def train_corpus(inputs: Iterable[CorpusFile | str | os.PathLike], config: Any = None, *,
                 output: str | os.PathLike | None = None, audio: str | None = None, cache: Any = None,
                 engine: str = "local", workers: int | None = None, ray_address: str | None = None,
                 progress: ProgressCallback | None = None) -> CorpusResult:
    """Train one model from a corpus of takes.

    Parameters
    ----------
    inputs : iterable of CorpusFile or path
        The takes, in order (see :func:`collect_inputs` and
        :func:`read_manifest`; plain paths must be files).
    config : chandra.pipeline.TrainConfig
    output : path, optional
        Where to write the model (atomically); nothing is saved when None.
    audio : {"embed", "reference", "none"}, optional
        Default: ``"embed"`` when ``config.embed_audio``, else ``"none"``.
    cache : chandra.feature_cache.FeatureCache, optional
        Encoder outputs cache; the model is the same with or without it.
    engine : {"local", "sequential", "ray"}
        How :func:`analyse_file` is mapped over the files (see
        :mod:`chandra.engines`): a process pool here (``"local"``, the
        default), one file after another in this process
        (``"sequential"``), or Ray tasks and actors (``"ray"``). The model
        is the same on every engine.
    workers : int, optional
        Pool processes (``local``) or CPUs of a local Ray instance
        (``ray``); default: the CPUs.
    ray_address : str, optional
        A running Ray cluster to use (``engine="ray"``).
    progress : callable, optional
        ``"files"`` (done / total files), then ``"vocabulary"``,
        ``"events"``, ``"oracle"``, ``"save"``.

    Returns
    -------
    CorpusResult

    Raises
    ------
    ChandraError
        A bad input (naming the file), a bad option, or a stage's error.
    OutputError
        ``output`` is one of the inputs, a file chandra did not write, or
        being written by another process (checked before any work).
    """
    from chandra.findings import findings_to_dicts, ledger_findings
    from chandra.io_utils import check_output, exclusive_output
    from chandra.pipeline import TrainConfig

    config = config or TrainConfig()
    config.validate()
    if audio is None:
        audio = "embed" if config.embed_audio else "none"
    if audio not in AUDIO_STORAGE:
        raise ParameterError(f"audio must be one of {', '.join(AUDIO_STORAGE)}, got {audio!r}", parameter="audio")
    if audio == "embed" and not config.embed_audio:
        raise ParameterError("audio='embed' contradicts embed_audio=False", parameter="audio")
    if engine not in ENGINES:
        raise ParameterError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", parameter="engine")
    files = _as_files(inputs)
    if audio == "embed":
        from chandra.model import MAX_EMBEDDED_TAKES

        if len(files) > MAX_EMBEDDED_TAKES:
            raise ParameterError(f"a model embeds the audio of at most {MAX_EMBEDDED_TAKES} takes, this corpus has "
                                 f"{len(files)}; use audio='reference'", parameter="audio")

    def run() -> CorpusState:
        analyses = _analyse_all(files, config, engine=engine, cache=cache, keep_signal=audio == "embed",
                                progress=progress, workers=workers, ray_address=ray_address)
        state = build_corpus(analyses, config, audio=audio, progress=progress)
        _save_corpus(state, output, progress)
        return state

    if output is None:
        state = run()
    else:
        check_output(output, kind="model", inputs=[f.path for f in files])
        with exclusive_output(output):
            state = run()
    findings = findings_to_dicts(ledger_findings(state.ledger, provenance=state.model.provenance,
                                                 vocabulary=state.model.vocabulary))
    return CorpusResult(model=state.model, path=Path(output) if output is not None else None, state=state,
                        findings=findings)


def corpus_summary(state: CorpusState, findings: list | None = None) -> dict:
    """The closing summary the CLI prints for a corpus (JSON-able)."""
    vocab = state.summaries.get("vocabulary", {})
    oracle = state.summaries.get("oracle", {})
    usage = (state.model.vocabulary or {}).get("per_file", {}) if state.model is not None else {}
    files = []
    for k, a in enumerate(state.analyses):
        files.append({"take": k, "name": Path(a.path).name, "label": a.label, "duration_s": a.duration,
                      "segments": a.n_segments, "tokens_used": (usage.get("unique") or [None] * (k + 1))[k],
                      "feature_cache": a.feature_cache})
    seconds: dict[str, float] = {}
    for a in state.analyses:
        for name, value in a.timings.items():
            seconds[name] = seconds.get(name, 0.0) + value
    seconds.update(state.timings)
    return {
        "files": files,
        "n_files": len(state.analyses),
        "duration_s": float(sum(a.duration for a in state.analyses)),
        "segments": int(sum(a.n_segments for a in state.analyses)),
        "feature_dim": int(state.features.shape[1]) if state.features is not None else 0,
        "tokens_k": vocab.get("n_tokens"),
        "tokens_fit_active": vocab.get("fit_active"),
        "tokens_assigned_unique": vocab.get("assigned_unique"),
        "entropy_fit_bits": vocab.get("fit_entropy_bits"),
        "entropy_assigned_bits": vocab.get("assigned_entropy_bits"),
        "entropy_max_bits": vocab.get("max_entropy_bits"),
        "vocabulary_algorithm": vocab.get("algorithm"),
        "tokens_recommendation": vocab.get("recommendation"),
        "shared_tokens": vocab.get("shared_tokens"),
        "oracle_kind": oracle.get("kind"),
        "oracle_states": oracle.get("states"),
        "oracle_transitions": oracle.get("transitions"),
        "oracle_threshold": oracle.get("threshold"),
        "audio": _STORAGE_NAME.get(state.audio, state.audio),
        "feature_cache": {status: sum(a.feature_cache == status for a in state.analyses)
                          for status in ("hit", "miss", "invalid", "off")
                          if any(a.feature_cache == status for a in state.analyses)},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "findings": [f"{f['severity']}: {f['code']} ({f['stage']}): {f['message']}" for f in (findings or [])],
        "saved": state.saved_path,
    }


# --------------------------------------------------------------------------- referenced audio


def references_audio(model: Any) -> bool:
    """True for a corpus model that keeps its audio as references to the files (``audio="reference"``)."""
    prov = getattr(model, "provenance", None) or {}
    return isinstance(prov.get("audio"), dict) and prov["audio"].get("storage") == "reference" \
        and isinstance(prov.get("files"), list)


def attach_audio(model: Any, *, model_path: str | os.PathLike | None = None,
                 search: Sequence[str | os.PathLike] = (), progress: ProgressCallback | None = None) -> Any:
    """Load the audio a model references, checking every file's content hash; returns ``model``.

    Each take's file is looked for at its path as given when training
    (absolute, or relative to the current folder), relative to the model
    file's folder, and in each ``search`` folder (by its path, then by its
    name). A candidate is used only when its SHA-256 is the one recorded;
    it is decoded at the model's sample rate and must give the recorded
    number of samples.

    Raises
    ------
    ChandraError
        Naming the take and its file: not found anywhere (with the places
        looked), found but changed (a different hash), or decoding to a
        different length.
    """
    from chandra.audio import decode_audio
    from chandra.io_utils import sha256_file

    if not references_audio(model):
        return model
    if model.audio is not None:
        return model
    rows = model.provenance["files"]
    places: list[Path] = []
    if model_path is not None:
        places.append(Path(model_path).resolve().parent)
    places += [Path(p) for p in search]
    signals = []
    report(progress, "audio", 0, len(rows))
    for k, row in enumerate(rows):
        given = Path(str(row["path"]))
        candidates = [given] if given.is_absolute() else [given] + [place / given for place in places]
        candidates += [place / given.name for place in places if place / given.name not in candidates]
        found = changed = None
        for candidate in candidates:
            if not candidate.is_file():
                continue
            digest = sha256_file(candidate)
            if digest == row["sha256"]:
                found = candidate
                break
            changed = changed or (candidate, digest)
        if found is None:
            if changed is not None:
                raise ChandraError(
                    f"take {k} '{row['path']}': the file at {changed[0]} has changed since training (sha256 "
                    f"{changed[1][:12]}..., the model expects {row['sha256'][:12]}...); restore it or retrain")
            looked = ", ".join(str(c) for c in candidates[:6]) + (", ..." if len(candidates) > 6 else "")
            raise ChandraError(f"take {k} '{row['path']}': referenced audio file not found (looked at {looked}); "
                               "put it back or name its folder")
        y = decode_audio(found, sr=int(model.sample_rate)).y
        if len(y) != int(row["n_samples"]):
            raise ChandraError(f"take {k} '{row['path']}': decodes to {len(y)} samples at {model.sample_rate} Hz, "
                               f"the model was trained on {row['n_samples']} (another decoder version?)")
        signals.append(np.asarray(y, dtype=np.float32))
        report(progress, "audio", k + 1, len(rows))
    model.audio = np.concatenate(signals) if signals else np.zeros(0, dtype=np.float32)
    model.validate(require=("audio",))
    return model
