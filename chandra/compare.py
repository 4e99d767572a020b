"""Compare two runs, models, MusicHal files or traces: what survived on each side.

Any two of: a chandra model file (``.chandra``), a run directory
(:mod:`chandra.rundir`), a MusicHal 9000 JSON model of any shape, a trace
directory (:mod:`chandra.trace`). The ledger is the common ground: each side
becomes a list of ledger entries (stages), its findings, its parameters and
provenance, its oracle health and, where there is one, its generation's
quality figures. :func:`compare` lines the two ledgers up stage by stage and
diffs everything; :func:`format_comparison` is the text of that document.

How the sides' stages line up
-----------------------------
Stages are matched by name, in order (a longest-common-subsequence match, so
a stage present on one side only does not shift the rest):

* a chandra **model file** contributes its training ledger (``segments`` …
  ``saved``, ``reloaded``) plus ``model``: the frames the file holds now;
* a **run directory** contributes its ledger (``segments`` … ``reloaded``,
  and ``generated`` after an improvisation);
* a **MusicHal file** contributes ``model`` (its frames), after the training
  ledger of a chandra export when the file still carries it;
* a **trace** contributes its checkpoints, by name.

A ``model`` entry with no ``model`` on the other side lines up with the
other side's ``saved`` (else ``save``, ``reloaded``, ``reload``, ``loaded``,
``load``, else its last stage): a MusicHal file compared with a chandra run
of the same audio compares what the MusicHal file holds with what chandra
saved. Unmatched stages are listed as present on one side only.

Token ids of two independently fitted vocabularies are arbitrary labels, so
two histogram distances are given: Jensen–Shannon distance id by id (for two
sides sharing one vocabulary) and between the rank-ordered histograms (shape
only, invariant to relabelling).
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chandra.errors import ChandraError
from chandra.ledger import FEATURE_FIELD, TOKEN_FIELD, json_safe

__all__ = [
    "COMPARE_FORMAT",
    "Side",
    "load_side",
    "side_from_model",
    "side_from_run",
    "side_from_trace",
    "align_stages",
    "compare",
    "compare_sides",
    "format_comparison",
    "js_distance",
    "FINAL_STAGE_ALIASES",
]

#: ``format`` of the :func:`compare` document.
COMPARE_FORMAT = "chandra-compare-1"
#: Stages a lone ``model`` entry lines up with, in order of preference.
FINAL_STAGE_ALIASES = ("saved", "save", "reloaded", "reload", "loaded", "load")
#: Fields whose loss matters most (ranked first among equal losses).
CORE_FIELDS = (TOKEN_FIELD, FEATURE_FIELD)
#: Fraction changes below this are not a change (rounding of equal counts over different n).
FRACTION_EPS = 1e-9
# Provenance keys that name where a file was read from, not what it is.
_VOLATILE_PROVENANCE = ("imported_from", "import_notes", "musichal", "input.path")
_FEATURE_KEYS = ("n_rows", "dim", "nonzero_dims", "dead_dims", "norm_min", "norm_mean", "norm_max",
                 "zero_rows", "nonfinite_rows", "duplicate_rate", "padded_rows")
_TOKEN_KEYS = ("present", "missing", "unique", "n_tokens", "entropy_bits", "max_entropy_bits",
               "normalised_entropy", "top_token", "top_share")
_TIME_KEYS = ("field", "t_min", "t_max", "duration", "monotonic", "fraction_in_range")
_ORACLE_KEYS = ("kind", "n_states", "n_frames", "n_transitions", "root_out_degree", "sfx_to_root_share",
                "sfx_to_previous_share", "transition_density", "lrs_mean", "lrs_max", "threshold", "metric",
                "violations")
_VOCAB_KEYS = ("n_tokens", "fit_active", "fit_entropy_bits", "assigned_unique", "assigned_entropy_bits")
_FLATTEN_MAX_ITEMS = 16


@dataclass
class Side:
    """One side of a comparison, reduced to what can be compared.

    Attributes
    ----------
    kind : {"model", "musichal", "run", "trace"}
    path : str
    label : str
        Short name for headings (file or directory name).
    source_format : str
        ``chandra``, ``musichal-base`` / ``-v2`` / ``-modular``, ``run``, ``trace``.
    ledger : list of dict
        Ledger entries in stage order.
    findings : list of dict
        Finding dicts (errors first).
    parameters : dict
        Training parameters, flattened to dotted keys.
    provenance : dict
        Provenance other than the parameters, flattened to dotted keys.
    oracle : dict or None
        Oracle health (:func:`chandra.ledger.oracle_summary` keys).
    vocabulary : dict or None
        Vocabulary figures (K, fit-set active tokens and entropy, assigned).
    generation : dict or None
        Quality figures of the latest improvisation (:meth:`Generation.summary`).
    n_frames : int or None
    notes : list of str
    """

    kind: str
    path: str
    label: str
    source_format: str
    ledger: list[dict]
    findings: list[dict]
    parameters: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    oracle: dict | None = None
    vocabulary: dict | None = None
    generation: dict | None = None
    n_frames: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"kind": self.kind, "path": self.path, "label": self.label, "format": self.source_format,
                "n_frames": self.n_frames, "stages": [str(e.get("stage")) for e in self.ledger],
                "notes": list(self.notes)}


# --------------------------------------------------------------------------- flattening


def _flatten(value: Any, prefix: str = "", out: dict | None = None, depth: int = 0) -> dict:
    """Dotted keys for nested mappings; short lists kept whole, long ones as their length."""
    out = {} if out is None else out
    if isinstance(value, Mapping) and depth < 8:
        if not value and prefix:
            out[prefix] = {}
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out, depth + 1)
        return out
    if isinstance(value, (list, tuple)) and len(value) > _FLATTEN_MAX_ITEMS:
        out[prefix] = f"<list of {len(value)}>"
        return out
    out[prefix] = json_safe(value, max_items=_FLATTEN_MAX_ITEMS, max_chars=200)
    return out


def _drop_volatile(flat: dict) -> dict:
    return {k: v for k, v in flat.items()
            if not any(k == p or k.startswith(p + ".") for p in _VOLATILE_PROVENANCE)}


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


# --------------------------------------------------------------------------- sides


def _findings_dicts(findings: Sequence[Any]) -> list[dict]:
    return [f if isinstance(f, dict) else f.to_dict() for f in findings]


def _oracle_view(summary: Mapping | None) -> dict | None:
    if not summary:
        return None
    return {k: summary.get(k) for k in _ORACLE_KEYS if k in summary}


def _vocabulary_view(vocab: Any) -> dict | None:
    if not isinstance(vocab, Mapping):
        return None
    fit = vocab.get("fit_metrics") or {}
    assigned = vocab.get("assigned_metrics") or {}
    params = vocab.get("params") or {}
    out = {
        "n_tokens": vocab.get("n_tokens", params.get("n_tokens")),
        "fit_active": fit.get("active"),
        "fit_entropy_bits": fit.get("entropy_bits"),
        "assigned_unique": assigned.get("unique"),
        "assigned_entropy_bits": assigned.get("entropy_bits"),
    }
    return {k: v for k, v in out.items() if v is not None} or None


def side_from_model(model: Any, *, path: str = "", label: str | None = None) -> Side:
    """A :class:`Side` for a loaded :class:`chandra.model.Model` (chandra or MusicHal)."""
    from chandra.findings import model_findings, oracle_check_inputs
    from chandra.ledger import model_ledger_entry, oracle_summary

    entry = model_ledger_entry(model, stage="model")
    summary = None
    if getattr(model, "oracle", None) is not None:
        summary = oracle_summary(model.oracle, **oracle_check_inputs(model))
    findings = model_findings(model, entry=entry, oracle_summary_=summary)
    provenance = dict(getattr(model, "provenance", None) or {})
    source_format = str(getattr(model, "source_format", "chandra"))
    musichal = provenance.get("musichal") if isinstance(provenance.get("musichal"), Mapping) else None
    if summary is None and musichal is not None:
        summary = {k: v for k, v in musichal.items() if not isinstance(v, (list, dict))}
    parameters: dict = {}
    config = provenance.pop("config", None)
    if isinstance(config, Mapping):
        parameters.update(_flatten(config))
    if musichal is not None and isinstance(musichal.get("declared"), Mapping):
        declared = {k: v for k, v in musichal["declared"].items() if k != "stats"}
        parameters.update(_flatten(declared))
    vocab = getattr(model, "vocabulary", None)
    if isinstance(vocab, Mapping) and isinstance(vocab.get("params"), Mapping):
        parameters.update(_flatten(vocab["params"], "vocabulary"))
    history = [json_safe(e) for e in (getattr(model, "ledger", None) or []) if isinstance(e, Mapping)]
    notes = []
    if source_format.startswith("musichal") and not history:
        notes.append("MusicHal file without a training ledger: one 'model' stage (its frames)")
    p = Path(path) if path else None
    return Side(
        kind="musichal" if source_format.startswith("musichal") else "model",
        path=str(path),
        label=label or (p.name if p else source_format),
        source_format=source_format,
        ledger=history + [json_safe(entry)],
        findings=_findings_dicts(findings),
        parameters=parameters,
        provenance=_drop_volatile(_flatten(provenance)),
        oracle=_oracle_view(summary),
        vocabulary=_vocabulary_view(vocab),
        n_frames=int(entry.get("n_records") or 0),
        notes=notes,
    )


def _latest_generation(run_path: Path) -> dict | None:
    """Quality figures of the newest generation record of a run (``generations/gen_*.json``)."""
    folder = run_path / "generations"
    if not folder.is_dir():
        return None
    records = sorted(folder.glob("gen_*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    from chandra.generation_record import read_generation_record

    for record in records[:4]:
        try:
            data = read_generation_record(record)
        except (ChandraError, OSError):
            continue  # an unreadable record is skipped; the newest readable one is compared
        summary = data.get("summary") if isinstance(data, dict) else None
        if isinstance(summary, dict):
            return {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return None


def side_from_run(path: str | os.PathLike) -> Side:
    """A :class:`Side` for a run directory (its ledger, config, saved model and latest generation)."""
    from chandra.findings import ledger_findings, sort_findings, vocabulary_findings, Finding
    from chandra.rundir import RunDirectory

    run = RunDirectory(path)
    meta = run.meta()
    ledger = [json_safe(e) for e in meta.get("ledger") or [] if isinstance(e, Mapping)]
    model = None
    notes = []
    if run.model_path().exists():
        from chandra.model import load_model

        try:
            model = load_model(run.model_path())
        except ChandraError as exc:
            notes.append(f"saved model not readable: {exc}")
    provenance = dict(getattr(model, "provenance", None) or {}) if model is not None else {}
    provenance.pop("config", None)
    vocab = getattr(model, "vocabulary", None) if model is not None else None
    findings = list(ledger_findings(ledger, provenance=provenance or None, vocabulary=vocab))
    if model is not None:
        findings += vocabulary_findings(model)
    oracle = None
    for entry in ledger:
        if entry.get("stage") == "oracle" and entry.get("oracle"):
            oracle = _oracle_view(entry["oracle"])
    if not run.model_path().exists():
        notes.append("no saved model yet: provenance and vocabulary from the run's files only")
    parameters = _flatten(meta.get("config") or {})
    status = {stage: (info or {}).get("status") for stage, info in (meta.get("stages") or {}).items()}
    if any(s != "done" for s in status.values()):
        notes.append("stages not done: " + ", ".join(f"{k} ({v})" for k, v in status.items() if v != "done"))
    saved = [e for e in ledger if e.get("stage") in ("saved", "reloaded")]
    identity = {"input.name": meta.get("audio_name"), "input.sha256": meta.get("audio_sha256")}
    flat_prov = _drop_volatile(_flatten(provenance))
    for key, value in identity.items():
        flat_prov.setdefault(key, value)
    return Side(
        kind="run",
        path=str(run.path),
        label=f"run {meta.get('run_id', run.path.name)}",
        source_format="run",
        ledger=ledger,
        findings=_findings_dicts(sort_findings([f if isinstance(f, Finding) else Finding.from_dict(f)
                                                for f in findings])),
        parameters=parameters,
        provenance=flat_prov,
        oracle=oracle,
        vocabulary=_vocabulary_view(vocab) or _vocabulary_view({"fit_metrics": (meta.get("summaries") or {})
                                                                .get("vocabulary")}),
        generation=_latest_generation(run.path),
        n_frames=int(saved[-1].get("n_records") or 0) if saved else None,
        notes=notes,
    )


def side_from_trace(path: str | os.PathLike) -> Side:
    """A :class:`Side` for a trace directory (its checkpoints and their declarations)."""
    from chandra.trace import trace_report

    report = trace_report(path)
    checkpoints = report.get("checkpoints") or []
    ledger = [c["ledger"] for c in checkpoints]
    provenance: dict = {}
    for entry in ledger:
        if isinstance(entry.get("provenance"), Mapping):
            provenance.update(_flatten(entry["provenance"], str(entry.get("stage"))))
    return Side(
        kind="trace",
        path=str(report.get("directory")),
        label=Path(str(report.get("directory"))).name,
        source_format="trace",
        ledger=ledger,
        findings=list(report.get("findings") or []),
        provenance=provenance,
        n_frames=int(ledger[-1].get("n_records") or 0) if ledger else None,
    )


def load_side(path: str | os.PathLike) -> Side:
    """Read any comparable input: a trace or run directory, a chandra model or a MusicHal file.

    Raises
    ------
    ChandraError
        The path does not exist or is none of those (one line naming it).
    """
    p = Path(path)
    if not p.exists():
        raise ChandraError(f"{p}: no such file or directory")
    if p.is_dir():
        if (p / "index.json").is_file():
            return side_from_trace(p)
        if (p / "run.json").is_file():
            return side_from_run(p)
        raise ChandraError(f"{p}: a directory that is neither a trace (no index.json) nor a run (no run.json)")
    from chandra.model import load_model

    return side_from_model(load_model(p), path=str(p))


# --------------------------------------------------------------------------- alignment


def align_stages(a: Sequence[str], b: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Pairs of stage indices (``None`` where a stage has no partner), in order.

    Names are matched as a longest common subsequence; then a lone ``model``
    (no ``model`` on the other side) is paired with the other side's first
    unmatched stage among :data:`FINAL_STAGE_ALIASES`, else its last
    unmatched stage, when that keeps the order.
    """
    a, b = [str(x) for x in a], [str(x) for x in b]
    pairs: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            pairs[block.a + k] = block.b + k

    def lone_model(x: list[str], y: list[str], taken_x: set, taken_y: set) -> tuple[int, int] | None:
        if "model" not in x or "model" in y:
            return None
        i = x.index("model")
        if i in taken_x:
            return None
        free = [j for j in range(len(y)) if j not in taken_y]
        if not free:
            return None
        for alias in FINAL_STAGE_ALIASES:
            for j in free:
                if y[j] == alias:
                    return i, j
        return i, free[-1]

    extra = lone_model(a, b, set(pairs), set(pairs.values()))
    if extra is not None:
        i, j = extra
        if all((ai < i) == (bj < j) for ai, bj in pairs.items()):
            pairs[i] = j
    else:
        swapped = lone_model(b, a, set(pairs.values()), set(pairs))
        if swapped is not None:
            j, i = swapped
            if all((ai < i) == (bj < j) for ai, bj in pairs.items()):
                pairs[i] = j
    rows: list[tuple[int | None, int | None]] = []
    ia = ib = 0
    for i, j in sorted(pairs.items()):
        while ia < i:
            rows.append((ia, None))
            ia += 1
        while ib < j:
            rows.append((None, ib))
            ib += 1
        rows.append((i, j))
        ia, ib = i + 1, j + 1
    rows += [(k, None) for k in range(ia, len(a))]
    rows += [(None, k) for k in range(ib, len(b))]
    return rows


# --------------------------------------------------------------------------- statistics


def js_distance(p: Sequence[float] | None, q: Sequence[float] | None) -> float | None:
    """Jensen–Shannon distance (base 2, in [0, 1]) of two count histograms.

    Shorter histograms are padded with zeros. None when either is empty.
    """
    if p is None or q is None:
        return None
    a = np.asarray(p, dtype=np.float64).ravel()
    b = np.asarray(q, dtype=np.float64).ravel()
    n = max(a.size, b.size)
    if n == 0:
        return None
    a = np.pad(a, (0, n - a.size))
    b = np.pad(b, (0, n - b.size))
    if a.sum() <= 0 or b.sum() <= 0:
        return None
    a, b = a / a.sum(), b / b.sum()
    m = 0.5 * (a + b)

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return float(math.sqrt(max(0.0, 0.5 * kl(a) + 0.5 * kl(b))))


def _token_row(ta: Mapping | None, tb: Mapping | None) -> dict:
    ca = (ta or {}).get("counts")
    cb = (tb or {}).get("counts")
    ranked_a = sorted(ca, reverse=True) if ca else None
    ranked_b = sorted(cb, reverse=True) if cb else None
    return {
        "a": {k: (ta or {}).get(k) for k in _TOKEN_KEYS} if ta else None,
        "b": {k: (tb or {}).get(k) for k in _TOKEN_KEYS} if tb else None,
        "js_distance": js_distance(ca, cb),
        "js_distance_ranked": js_distance(ranked_a, ranked_b),
        "counts_a": list(ca) if ca else None,
        "counts_b": list(cb) if cb else None,
    }


def _field_cell(name: str, stage: str, ea: Mapping, eb: Mapping, known_a: set, known_b: set) -> dict:
    fa, fb = ea.get("fields") or {}, eb.get("fields") or {}
    na, nb = int(ea.get("n_records") or 0), int(eb.get("n_records") or 0)
    ia, ib = fa.get(name), fb.get(name)
    pa = int(ia.get("present", 0)) if ia else 0
    pb = int(ib.get("present", 0)) if ib else 0
    fra = pa / na if na else 0.0
    frb = pb / nb if nb else 0.0
    if pa and not pb:
        change = "lost"
    elif pb and not pa:
        change = "restored"
    elif pa and pb:
        change = "thinned" if frb < fra - FRACTION_EPS else ("thickened" if frb > fra + FRACTION_EPS else "same")
    else:
        change = "absent"
    types_a = list((ia or {}).get("types") or [])
    types_b = list((ib or {}).get("types") or [])
    keys_a = list((ia or {}).get("key_types") or [])
    keys_b = list((ib or {}).get("key_types") or [])
    types_changed = bool(pa and pb and (types_a != types_b or (keys_a and keys_b and keys_a != keys_b)))
    return {
        "stage": stage, "field": name, "change": change, "types_changed": types_changed,
        "records": {"a": na, "b": nb},
        # Which sides carry this field at any stage (a field one trainer never records is a
        # difference of schema, not a loss).
        "known": "both" if name in known_a and name in known_b else ("a" if name in known_a else "b"),
        "a": {"present": pa, "n": na, "fraction": fra, "types": types_a, "key_types": keys_a or None}
        if ia is not None else None,
        "b": {"present": pb, "n": nb, "fraction": frb, "types": types_b, "key_types": keys_b or None}
        if ib is not None else None,
    }


def _finding_key(f: Mapping, stage_row: Mapping[str, str]) -> tuple:
    ev = f.get("evidence") or {}
    disc = ev.get("field") or ev.get("invariant") or ev.get("parameter") or ev.get("path")
    stage = f.get("stage")
    return (f.get("code"), stage_row.get(str(stage), str(stage)), str(disc) if disc is not None else None)


def _diff_mapping(a: Mapping, b: Mapping) -> list[dict]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key in a and key in b:
            if not _equal(a[key], b[key]):
                out.append({"key": key, "a": a[key], "b": b[key], "change": "changed"})
        elif key in a:
            out.append({"key": key, "a": a[key], "b": None, "change": "only in A"})
        else:
            out.append({"key": key, "a": None, "b": b[key], "change": "only in B"})
    return out


def _side_by_side(a: Mapping | None, b: Mapping | None, keys: Sequence[str] | None = None) -> dict | None:
    if not a and not b:
        return None
    a, b = a or {}, b or {}
    names = list(keys) if keys is not None else [k for k in a if k in b]
    rows = []
    for k in names:
        if k not in a and k not in b:
            continue
        va, vb = a.get(k), b.get(k)
        rows.append({"key": k, "a": va, "b": vb, "changed": not _equal(va, vb)})
    return {"rows": rows, "changed": sum(1 for r in rows if r["changed"])}


# --------------------------------------------------------------------------- compare


def compare(a: str | os.PathLike | Side, b: str | os.PathLike | Side) -> dict:
    """Compare two inputs (paths or :class:`Side` objects).

    Parameters
    ----------
    a, b : path or Side
        A chandra model file, a run directory, a MusicHal JSON file or a
        trace directory, in any combination.

    Returns
    -------
    dict
        JSON-able, ``format`` = :data:`COMPARE_FORMAT`:

        ``a``, ``b``
            Side summaries (kind, path, label, format, frames, stages, notes).
        ``stages``
            Aligned rows ``{name, a, b}`` (a stage name or None per side).
        ``fields``
            One cell per aligned stage and field: ``{stage, field, a, b,
            records, change, types_changed, known}`` where ``a``/``b`` are
            ``{present, n, fraction, types, key_types}`` (None when that side
            does not list the field), ``records`` the records at that stage
            on each side, and ``change`` is ``lost`` (present in
            A, absent in B), ``restored`` (absent in A, present in B),
            ``thinned`` / ``thickened`` (a smaller / larger share of records
            carries it in B), ``same`` or ``absent``; ``known`` says which
            sides list the field at all.
        ``records``
            Per aligned stage: records on each side.
        ``tokens``
            Per aligned stage with tokens on a side: statistics side by side,
            ``js_distance`` and ``js_distance_ranked``, both histograms.
        ``features``, ``time``
            Per aligned stage: feature health and the time axis side by side
            (``{stage, rows: [{key, a, b, changed}], changed}``).
        ``oracle``, ``vocabulary``, ``generation``
            Side-by-side figures (``{rows: [{key, a, b, changed}], changed}``
            or None).
        ``parameters``, ``provenance``
            ``[{key, a, b, change}]`` for dotted keys that differ.
        ``findings``
            ``{resolved, introduced, unchanged}`` (finding dicts; a finding
            is the same on both sides when its code, aligned stage and
            subject — field, invariant or parameter — agree).
        ``differences``
            Everything that changed, most important first (``{kind, stage,
            subject, message, score}``); empty when the two are the same.
        ``regression``
            ``{regressed, reasons}``: B loses (or thins) a field A carried at
            an aligned stage, or has an error finding A does not.
    """
    side_a = a if isinstance(a, Side) else load_side(a)
    if not isinstance(b, Side) and not isinstance(a, Side) and _same_file(a, b):
        side_b = side_a  # one read of a large file is enough
    else:
        side_b = b if isinstance(b, Side) else load_side(b)
    return compare_sides(side_a, side_b)


def _same_file(a: Any, b: Any) -> bool:
    try:
        return Path(a).resolve(strict=True) == Path(b).resolve(strict=True)
    except (OSError, RuntimeError, TypeError):
        return False


def compare_sides(a: Side, b: Side) -> dict:
    """:func:`compare` for two loaded :class:`Side` objects."""
    names_a = [str(e.get("stage")) for e in a.ledger]
    names_b = [str(e.get("stage")) for e in b.ledger]
    rows = []
    for i, j in align_stages(names_a, names_b):
        sa = names_a[i] if i is not None else None
        sb = names_b[j] if j is not None else None
        name = sa if sb is None or sa == sb else (sb if sa is None else f"{sa} ↔ {sb}")
        rows.append({"name": name, "a": sa, "b": sb, "ia": i, "ib": j})

    known_a = {n for e in a.ledger for n, i in (e.get("fields") or {}).items()}
    known_b = {n for e in b.ledger for n, i in (e.get("fields") or {}).items()}
    fields: list[dict] = []
    records: list[dict] = []
    times: list[dict] = []
    tokens: list[dict] = []
    features: list[dict] = []
    for row in rows:
        ea = a.ledger[row["ia"]] if row["ia"] is not None else None
        eb = b.ledger[row["ib"]] if row["ib"] is not None else None
        records.append({"stage": row["name"], "a": ea.get("n_records") if ea else None,
                        "b": eb.get("n_records") if eb else None})
        if ea is not None and eb is not None:
            names = list(ea.get("fields") or {})
            names += [n for n in (eb.get("fields") or {}) if n not in names]
            fields += [_field_cell(n, row["name"], ea, eb, known_a, known_b) for n in names]
        else:
            only = ea if ea is not None else eb
            side = "a" if ea is not None else "b"
            for name, info in (only.get("fields") or {}).items():
                cell = {"stage": row["name"], "field": name, "change": f"stage only in {side.upper()}",
                        "types_changed": False, "known": side, "a": None, "b": None}
                cell[side] = {"present": int(info.get("present", 0)), "n": int(only.get("n_records") or 0),
                              "fraction": float(info.get("fraction", 0.0)), "types": list(info.get("types") or []),
                              "key_types": info.get("key_types")}
                fields.append(cell)
        ta = (ea or {}).get("tokens")
        tb = (eb or {}).get("tokens")
        if ta or tb:
            tokens.append({"stage": row["name"], **_token_row(ta, tb)})
        xa = (ea or {}).get("features")
        xb = (eb or {}).get("features")
        if xa or xb:
            features.append({"stage": row["name"], **_side_by_side(xa, xb, _FEATURE_KEYS)})
        ya = (ea or {}).get("time")
        yb = (eb or {}).get("time")
        if ya or yb:
            times.append({"stage": row["name"], **_side_by_side(ya, yb, _TIME_KEYS)})

    stage_row_a = {r["a"]: r["name"] for r in rows if r["a"] is not None}
    stage_row_b = {r["b"]: r["name"] for r in rows if r["b"] is not None}
    keyed_a = {}
    for f in a.findings:
        keyed_a.setdefault(_finding_key(f, stage_row_a), f)
    keyed_b = {}
    for f in b.findings:
        keyed_b.setdefault(_finding_key(f, stage_row_b), f)
    findings = {
        "resolved": [f for k, f in keyed_a.items() if k not in keyed_b],
        "introduced": [f for k, f in keyed_b.items() if k not in keyed_a],
        "unchanged": [f for k, f in keyed_b.items() if k in keyed_a],
    }

    parameters = _diff_mapping(a.parameters, b.parameters)
    provenance = _diff_mapping(a.provenance, b.provenance)
    oracle = _side_by_side(a.oracle, b.oracle, _ORACLE_KEYS)
    vocabulary = _side_by_side(a.vocabulary, b.vocabulary, _VOCAB_KEYS)
    generation = _side_by_side(a.generation, b.generation) if a.generation and b.generation else None
    differences = _rank_differences(fields, records, tokens, features, times, findings, parameters, provenance,
                                    oracle, vocabulary, generation)
    regression = _regression(fields, findings)
    return json_safe({
        "format": COMPARE_FORMAT,
        "a": a.summary(),
        "b": b.summary(),
        "stages": [{"name": r["name"], "a": r["a"], "b": r["b"]} for r in rows],
        "fields": fields,
        "records": records,
        "tokens": tokens,
        "features": features,
        "time": times,
        "oracle": oracle,
        "vocabulary": vocabulary,
        "generation": generation,
        "parameters": parameters,
        "provenance": provenance,
        "findings": findings,
        "differences": differences,
        "regression": regression,
    })


def _pct(x: Any) -> str:
    return f"{100.0 * float(x):.0f}%" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def _rank_differences(fields, records, tokens, features, times, findings, parameters, provenance, oracle,
                      vocabulary, generation) -> list[dict]:
    """Every difference as ``{kind, stage, subject, message, score}``, most important first.

    Order: a field present on one side and absent on the other where both
    sides know the field (core fields first, bigger shares first); new or
    resolved errors; type changes; thinned fields; record counts; token
    statistics; warnings; fields only one side records at all; oracle,
    vocabulary and generation figures; parameters; provenance.
    """
    out = []
    # A stage on one side only is one difference ("stage X only in B"), not one per figure.
    one_sided = {r["stage"] for r in records if (r["a"] is None) != (r["b"] is None)}

    def add(kind: str, stage: Any, subject: Any, message: str, score: float) -> None:
        out.append({"kind": kind, "stage": stage, "subject": subject, "message": message,
                    "score": round(float(score), 4)})

    for c in fields:
        if c["stage"] in one_sided:
            continue
        a, b, change = c["a"] or {}, c["b"] or {}, c["change"]
        core = 5.0 if c["field"] in CORE_FIELDS else 0.0
        both = c["known"] == "both"
        n = c.get("records") or {}
        what = (f"'{c['field']}' at {c['stage']}: {a.get('present', 0)} of {a.get('n', n.get('a', '-'))} in A, "
                f"{b.get('present', 0)} of {b.get('n', n.get('b', '-'))} in B")
        delta = abs(float(b.get("fraction", 0.0)) - float(a.get("fraction", 0.0)))
        if change == "lost":
            add("field", c["stage"], c["field"], f"present -> lost: {what}",
                (100.0 if both else 30.0) + 10 * delta + core)
        elif change == "restored":
            add("field", c["stage"], c["field"], f"lost -> present: {what}",
                (90.0 if both else 28.0) + 10 * delta + core)
        elif change == "thinned":
            add("field", c["stage"], c["field"], f"thinned: {what}", 60.0 + 10 * delta + core)
        elif change == "thickened":
            add("field", c["stage"], c["field"], f"thickened: {what}", 25.0 + 10 * delta + core)
        if c["types_changed"]:
            add("types", c["stage"], c["field"],
                f"'{c['field']}' at {c['stage']}: types {a.get('types')} -> {b.get('types')}"
                + (f", key types {a.get('key_types')} -> {b.get('key_types')}"
                   if a.get("key_types") != b.get("key_types") else ""), 70.0 + core)
    for r in records:
        if r["a"] is not None and r["b"] is not None and r["a"] != r["b"]:
            add("records", r["stage"], "n_records", f"records at {r['stage']}: {r['a']} -> {r['b']}", 55.0)
    for side in ("a", "b"):
        only = [r["stage"] for r in records if r[side] is not None and r["b" if side == "a" else "a"] is None]
        if only:
            add("stage", None, only, f"stage(s) only in {side.upper()}: {', '.join(map(str, only))}", 45.0)
    for f in findings["introduced"]:
        score = {"error": 80.0, "warning": 35.0}.get(f.get("severity"), 5.0)
        add("finding", f.get("stage"), f.get("code"),
            f"introduced {f.get('severity')} {f.get('code')} at {f.get('stage')}: {f.get('message')}", score)
    for f in findings["resolved"]:
        score = {"error": 75.0, "warning": 32.0}.get(f.get("severity"), 4.0)
        add("finding", f.get("stage"), f.get("code"),
            f"resolved {f.get('severity')} {f.get('code')} at {f.get('stage')}: {f.get('message')}", score)
    for t in tokens:
        if t["stage"] in one_sided:
            continue
        a, b = t["a"] or {}, t["b"] or {}
        ua, ub = a.get("unique"), b.get("unique")
        if ua != ub:
            ratio = abs(math.log2((float(ub or 0) + 1) / (float(ua or 0) + 1)))
            add("tokens", t["stage"], "unique",
                f"tokens at {t['stage']}: {_num(ua)} -> {_num(ub)} distinct, entropy "
                f"{_num(a.get('entropy_bits'))} -> {_num(b.get('entropy_bits'))} bits", 40.0 + 5 * min(ratio, 4))
        elif t["js_distance"] is not None and t["js_distance"] > 1e-9:
            add("tokens", t["stage"], "histogram",
                f"token histogram at {t['stage']}: JS distance {t['js_distance']:.3f} "
                f"(rank-ordered {t['js_distance_ranked']:.3f})", 20.0 + 20 * t["js_distance"])
    for x in features:
        if x["stage"] in one_sided:
            continue
        for r in x["rows"]:
            if r["changed"]:
                add("features", x["stage"], r["key"], f"features at {x['stage']}: {r['key']} "
                    f"{_num(r['a'])} -> {_num(r['b'])}", 15.0)
    for x in times:
        if x["stage"] in one_sided:
            continue
        changed = [r for r in x["rows"] if r["changed"] and r["key"] != "duration"]
        if changed:
            add("time", x["stage"], "time", f"time axis at {x['stage']}: " + ", ".join(
                f"{r['key']} {_num(r['a'])} -> {_num(r['b'])}" for r in changed), 16.0)
    for kind, block in (("oracle", oracle), ("vocabulary", vocabulary), ("generation", generation)):
        for r in (block or {}).get("rows", []):
            if r["changed"]:
                add(kind, None, r["key"], f"{kind} {r['key']}: {_num(r['a'])} -> {_num(r['b'])}", 18.0)
    for kind, items, score in (("parameter", parameters, 12.0), ("provenance", provenance, 8.0)):
        for p in items:
            left = "(absent)" if p["change"] == "only in B" else _short(p["a"])
            right = "(absent)" if p["change"] == "only in A" else _short(p["b"])
            add(kind, None, p["key"], f"{kind} {p['key']}: {left} -> {right}", score)
    out.sort(key=lambda d: -d["score"])
    return out


def _regression(fields: list[dict], findings: dict) -> dict:
    reasons = []
    for c in fields:
        if c["change"] in ("lost", "thinned"):
            a, b = c["a"] or {}, c["b"] or {}
            n = c.get("records") or {}
            reasons.append(f"B {'loses' if c['change'] == 'lost' else 'thins'} '{c['field']}' at {c['stage']} "
                           f"({a.get('present')} of {a.get('n')} -> {b.get('present', 0)} of "
                           f"{b.get('n', n.get('b', '-'))})")
    for f in findings["introduced"]:
        if f.get("severity") == "error":
            subject = (f.get("evidence") or {}).get("field")
            reasons.append(f"B has error {f.get('code')} at {f.get('stage')}"
                           + (f" ('{subject}')" if subject else "") + " that A does not")
    return {"regressed": bool(reasons), "reasons": reasons}


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x + 0.0:.4g}"
    if isinstance(x, (dict, list)):
        return _short(x)
    return str(x)


def _short(x: Any, limit: int = 60) -> str:
    text = json.dumps(x, default=str) if not isinstance(x, str) else x
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- text


def format_comparison(doc: Mapping, *, max_differences: int = 12, all_fields: bool = False) -> str:
    """Human-readable text of a :func:`compare` document: the verdict and top
    differences first, then stages, changed field cells, tokens, features,
    oracle, findings, parameters and provenance.

    Parameters
    ----------
    doc : dict
    max_differences : int
        Differences listed under "top differences".
    all_fields : bool
        List every field cell, not only the changed ones.
    """
    a, b = doc.get("a") or {}, doc.get("b") or {}
    lines = [
        f"A: {a.get('path') or a.get('label')}  ({a.get('kind')}, {a.get('format')}, {a.get('n_frames')} frames)",
        f"B: {b.get('path') or b.get('label')}  ({b.get('kind')}, {b.get('format')}, {b.get('n_frames')} frames)",
    ]
    for side, info in (("A", a), ("B", b)):
        for note in info.get("notes") or []:
            lines.append(f"   {side}: {note}")
    diffs = doc.get("differences") or []
    reg = doc.get("regression") or {}
    lines.append("")
    if not diffs:
        lines.append("no differences")
    else:
        lines.append(f"{len(diffs)} difference(s); "
                     + ("B REGRESSES: " + "; ".join(reg.get("reasons", [])[:3])
                        + ("; ..." if len(reg.get("reasons", [])) > 3 else "")
                        if reg.get("regressed") else "no regression (B loses no field and gains no error)"))
        lines.append("top differences:")
        for k, d in enumerate(diffs[:max_differences], start=1):
            lines.append(f"  {k:>2}. {d['message']}")
        if len(diffs) > max_differences:
            lines.append(f"      ... {len(diffs) - max_differences} more (--json has all)")

    stages = doc.get("stages") or []
    lines.append("")
    lines.append("stages (A | B): " + ", ".join(
        f"{s['a'] or '-'}|{s['b'] or '-'}" if s["a"] != s["b"] else str(s["a"]) for s in stages))

    one_sided = [s for s in stages if (s["a"] is None) != (s["b"] is None)]
    for s in one_sided:
        side = "A" if s["a"] is not None else "B"
        n = next((r[side.lower()] for r in doc.get("records") or [] if r["stage"] == s["name"]), None)
        lines.append(f"  {s['name']}: only in {side} ({n} records)")
    one_sided_names = {s["name"] for s in one_sided}
    cells = doc.get("fields") or []
    shown = [c for c in cells if c["stage"] not in one_sided_names
             and (all_fields or c["change"] not in ("same", "absent") or c["types_changed"])]
    lines.append("")
    if shown:
        lines.append("fields (records carrying each field, A -> B)" + ("" if all_fields else ", changed cells only")
                     + ":")
        sw = max(len(str(c["stage"])) for c in shown)
        fw = max(len(str(c["field"])) for c in shown)
        for c in shown:
            ca, cb = c["a"], c["b"]
            n = c.get("records") or {}
            left = f"{ca['present']}/{ca['n']}" if ca else (f"-/{n['a']}" if n.get("a") is not None else "-")
            right = f"{cb['present']}/{cb['n']}" if cb else (f"-/{n['b']}" if n.get("b") is not None else "-")
            note = c["change"] + ("; types changed" if c["types_changed"] else "")
            if c["known"] != "both" and c["change"] in ("lost", "restored"):
                other = "B" if c["known"] == "a" else "A"
                note = f"{c['known'].upper()} only: {other} never records this field"
            lines.append(f"  {c['stage']:<{sw}}  {c['field']:<{fw}}  {left:>11} -> {right:<11}  {note}")
    else:
        lines.append("fields: every field carried by the same share of records on both sides")

    toks = [t for t in doc.get("tokens") or [] if t["stage"] not in one_sided_names]
    if toks:
        lines.append("")
        lines.append("tokens (A -> B): distinct, entropy bits, top share; JS distance id-by-id / rank-ordered")
        for t in toks:
            ta, tb = t["a"] or {}, t["b"] or {}
            js = t.get("js_distance")
            jr = t.get("js_distance_ranked")
            lines.append(
                f"  {t['stage']}: {ta.get('unique', '-')} -> {tb.get('unique', '-')} distinct "
                f"(K {ta.get('n_tokens', '-')} -> {tb.get('n_tokens', '-')}), "
                f"{_num(ta.get('entropy_bits'))} -> {_num(tb.get('entropy_bits'))} bits, "
                f"top {_pct(ta.get('top_share'))} -> {_pct(tb.get('top_share'))}; "
                f"JS {'-' if js is None else f'{js:.3f}'} / {'-' if jr is None else f'{jr:.3f}'}")

    for key, title in (("features", "feature health"), ("time", "time axis")):
        blocks = [x for x in doc.get(key) or [] if x.get("changed") and x["stage"] not in one_sided_names]
        if blocks:
            lines.append("")
            lines.append(f"{title} (changed figures):")
            for x in blocks:
                changed = [r for r in x["rows"] if r["changed"]]
                lines.append(f"  {x['stage']}: " + ", ".join(f"{r['key']} {_num(r['a'])} -> {_num(r['b'])}"
                                                             for r in changed))
    for title, key in (("oracle", "oracle"), ("vocabulary", "vocabulary"), ("generation", "generation")):
        block = doc.get(key)
        if block and block.get("rows"):
            lines.append("")
            lines.append(f"{title} (A -> B):")
            for r in block["rows"]:
                mark = "  *" if r["changed"] else "   "
                lines.append(f"{mark} {r['key']}: {_num(r['a'])} -> {_num(r['b'])}")

    fnd = doc.get("findings") or {}
    lines.append("")
    lines.append(f"findings: {len(fnd.get('resolved', []))} resolved, {len(fnd.get('introduced', []))} introduced, "
                 f"{len(fnd.get('unchanged', []))} unchanged")
    for label, key in (("resolved  ", "resolved"), ("introduced", "introduced"), ("unchanged ", "unchanged")):
        for f in fnd.get(key, []):
            lines.append(f"  {label} {f.get('severity', '').upper():<7} {f.get('code'):<22} "
                         f"[{f.get('stage') or '-'}] {f.get('message')}")

    for title, key in (("parameters", "parameters"), ("provenance", "provenance")):
        items = doc.get(key) or []
        lines.append("")
        if not items:
            lines.append(f"{title}: same")
            continue
        lines.append(f"{title} that differ (A -> B):")
        for p in items[:40]:
            left = "(absent)" if p["change"] == "only in B" else _short(p["a"])
            right = "(absent)" if p["change"] == "only in A" else _short(p["b"])
            lines.append(f"  {p['key']}: {left} -> {right}")
        if len(items) > 40:
            lines.append(f"  ... {len(items) - 40} more")
    return "\n".join(lines)
