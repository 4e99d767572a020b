"""Findings: judgements over ledgers, oracles and models, as data.

A finding is ``{severity, code, stage, message, evidence}``. Codes are
stable module constants (the dashboard, the CLI and tests key on them);
messages are for people; evidence holds the numbers a message was built
from. Severities:

``error``
    Data was lost or is unusable as it stands (a field vanished, tokens
    collapsed, the time axis is wall-clock, an oracle invariant fails).
``warning``
    Suspicious in a way that usually degrades a model (dead or padded
    feature dimensions, an oracle that cannot recombine, parameters that
    silently changed).
``info``
    Worth knowing; never a fault on its own.

Thresholds are module constants so that a reader can see, and a test can
pin, exactly when a finding fires. Healthy data produces no warnings and no
errors: every check below is tuned against the documented failure it names
(``../shared/DESIGN.md`` §1 and §5), not against "anything unusual".

A condition that persists over consecutive stages (epoch times in events,
join and save, say) is reported once, at the first stage where it appears,
with every affected stage in ``evidence["stages"]``: the first stage is
where the fault was introduced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chandra.ledger import LEDGER_STAGES, TOKEN_FIELD, json_safe

__all__ = [
    "Finding",
    "SEVERITIES",
    # codes
    "FIELD_LOST", "RECORDS_LOST", "TOKEN_COLLAPSE", "TOKENS_MISSING", "TOKENS_OUT_OF_RANGE",
    "EPOCH_TIME", "TIME_OUT_OF_RANGE", "TIME_NOT_MONOTONIC",
    "FEATURES_LOW_DIM", "DEAD_DIMENSIONS", "FEATURES_NONFINITE", "FEATURES_ZERO_ROWS",
    "FEATURES_DUPLICATE", "CONSTANT_CONSONANCE",
    "ORACLE_INVARIANT", "SFX_ALL_ROOT", "SFX_PREVIOUS", "TRANSITIONS_DENSE",
    "PARAM_MISMATCH", "ROUNDTRIP_CHANGED",
    "TOKENS_DESYNC", "STRINGIFIED_CONTAINER", "VOCAB_ENCODER_MISMATCH", "TYPES_CHANGED", "AUDIO_TRUNCATED",
    "VOCAB_TAKE_DOMINANCE", "TAKES_SHARE_NO_TOKENS",
    "SPARSE_VOCABULARY", "TRAINING_FAILED", "PATTERNS_COLLAPSED", "ALL_CODES",
    # what findings mean for the music
    "GUIDE", "explain", "GUIDE_CODES",
    # functions
    "ledger_findings", "entry_findings", "take_vocabulary_findings", "oracle_findings", "provenance_findings", "audio_findings",
    "model_findings", "vocabulary_findings", "musichal_type_findings", "encoder_identity",
    "vocabulary_conflicts", "oracle_check_inputs", "sort_findings", "count_by_severity", "findings_to_dicts",
]

SEVERITIES = ("error", "warning", "info")

# --------------------------------------------------------------------------- codes
#: A field carried at one stage is missing (or carried by fewer records) later.
FIELD_LOST = "FIELD_LOST"
#: Fewer records at a later canonical stage than at the one before it.
RECORDS_LOST = "RECORDS_LOST"
#: Assigned tokens use far fewer ids than the vocabulary (or one id dominates).
TOKEN_COLLAPSE = "TOKEN_COLLAPSE"
#: Records without a gesture token where every record should carry one.
TOKENS_MISSING = "TOKENS_MISSING"
#: Token ids outside [0, K) or not integers.
TOKENS_OUT_OF_RANGE = "TOKENS_OUT_OF_RANGE"
#: The time axis is wall-clock (epoch) time, not seconds from file start.
EPOCH_TIME = "EPOCH_TIME"
#: Times outside [0, audio duration].
TIME_OUT_OF_RANGE = "TIME_OUT_OF_RANGE"
#: Times go backwards in record order.
TIME_NOT_MONOTONIC = "TIME_NOT_MONOTONIC"
#: Features use few dimensions (<= 16 non-zero) or are zero-padded.
FEATURES_LOW_DIM = "FEATURES_LOW_DIM"
#: Many feature dimensions never vary.
DEAD_DIMENSIONS = "DEAD_DIMENSIONS"
#: Feature rows containing NaN or infinity.
FEATURES_NONFINITE = "FEATURES_NONFINITE"
#: All-zero feature rows.
FEATURES_ZERO_ROWS = "FEATURES_ZERO_ROWS"
#: Most feature rows duplicate an earlier row.
FEATURES_DUPLICATE = "FEATURES_DUPLICATE"
#: Consonance has one value for every record (e.g. stuck at 0.5).
CONSTANT_CONSONANCE = "CONSTANT_CONSONANCE"
#: An oracle invariant fails (one finding per invariant code).
ORACLE_INVARIANT = "ORACLE_INVARIANT"
#: (Almost) every suffix link points to the root: nothing can recombine.
SFX_ALL_ROOT = "SFX_ALL_ROOT"
#: (Almost) every suffix link points to the previous state.
SFX_PREVIOUS = "SFX_PREVIOUS"
#: Near-complete transition graph or root out-degree near n.
TRANSITIONS_DENSE = "TRANSITIONS_DENSE"
#: A configured parameter differs from the effective one.
PARAM_MISMATCH = "PARAM_MISMATCH"
#: Save -> load changed record or field counts, value types or tokens.
ROUNDTRIP_CHANGED = "ROUNDTRIP_CHANGED"
#: Saved tokens are not the vocabulary's assignment of the saved features
#: (tokens smoothed or re-assigned after the fact, or computed from other features).
TOKENS_DESYNC = "TOKENS_DESYNC"
#: A field holds the text of a container (``"{'a': 1}"``, ``"[1, 2]"``,
#: ``"[0.1 0.2]"``) instead of the container: ``str()`` was applied on the way in.
STRINGIFIED_CONTAINER = "STRINGIFIED_CONTAINER"
#: The vocabulary was fitted on other features (encoder, model, layer,
#: dimension or normalisation) than the features it is applied to.
VOCAB_ENCODER_MISMATCH = "VOCAB_ENCODER_MISMATCH"
#: Value types or mapping-key types of a field changed between stages, or
#: numbers are stored as text: the marks of a lossy save-load round trip
#: (int keys back as strings, numbers written with ``str()``).
TYPES_CHANGED = "TYPES_CHANGED"
#: The audio decoder delivered fewer frames than the file's header declares.
AUDIO_TRUNCATED = "AUDIO_TRUNCATED"
#: Most gesture tokens label only one or two records (K too large for the take).
SPARSE_VOCABULARY = "SPARSE_VOCABULARY"
#: A trainer's summary says training did not succeed (MusicHal training summaries).
TRAINING_FAILED = "TRAINING_FAILED"
#: A trainer's summary counts one (or very few) distinct patterns for many events.
PATTERNS_COLLAPSED = "PATTERNS_COLLAPSED"

#: A corpus vocabulary in which one take owns (is the main user of) most tokens, far beyond its
#: share of the frames: the other takes are squeezed into few tokens.
VOCAB_TAKE_DOMINANCE = "VOCAB_TAKE_DOMINANCE"
#: A corpus whose takes share no token: a factor oracle can never jump between them.
TAKES_SHARE_NO_TOKENS = "TAKES_SHARE_NO_TOKENS"

ALL_CODES = (
    FIELD_LOST, RECORDS_LOST, TOKEN_COLLAPSE, TOKENS_MISSING, TOKENS_OUT_OF_RANGE,
    EPOCH_TIME, TIME_OUT_OF_RANGE, TIME_NOT_MONOTONIC, FEATURES_LOW_DIM, DEAD_DIMENSIONS,
    FEATURES_NONFINITE, FEATURES_ZERO_ROWS, FEATURES_DUPLICATE, CONSTANT_CONSONANCE,
    ORACLE_INVARIANT, SFX_ALL_ROOT, SFX_PREVIOUS, TRANSITIONS_DENSE, PARAM_MISMATCH,
    ROUNDTRIP_CHANGED, TOKENS_DESYNC, STRINGIFIED_CONTAINER, VOCAB_ENCODER_MISMATCH, TYPES_CHANGED,
    AUDIO_TRUNCATED, VOCAB_TAKE_DOMINANCE, TAKES_SHARE_NO_TOKENS, SPARSE_VOCABULARY, TRAINING_FAILED,
    PATTERNS_COLLAPSED,
)

# --------------------------------------------------------------------------- thresholds
#: Two stages are the same record lineage when the later one carries at least
#: this share of the earlier one's present fields.
LINEAGE_OVERLAP_MIN = 0.5
#: With fewer records at the later stage, a field counts as lost when its
#: fraction falls below this share of its earlier fraction.
FIELD_FRACTION_DROP = 0.5
#: Assigned unique tokens below this share of the reference count collapse.
COLLAPSE_UNIQUE_FRACTION = 0.25
#: Top-token share above which tokens collapse (with enough records and K).
COLLAPSE_TOP_SHARE = 0.5
#: Records needed before the top-share test applies.
COLLAPSE_MIN_RECORDS = 20
#: Vocabulary size needed before collapse tests apply.
COLLAPSE_MIN_TOKENS = 4
#: Any time at or beyond this is wall-clock epoch seconds (2001-09-09).
EPOCH_MIN_S = 1e9
#: ... or the earliest time exceeds the audio duration this many times over.
EPOCH_DURATION_RATIO = 1000.0
#: Share of times outside [0, duration] beyond which the finding is an error.
TIME_OUT_OF_RANGE_ERROR_SHARE = 0.5
#: Stages whose record order need not follow time (a generation jumps).
UNORDERED_STAGES = frozenset({"generated"})
#: At most this many non-zero feature dimensions is "low-dimensional".
LOW_DIM_MAX = 16
#: Share of rows zero-padded (trailing zeros over half the width) to flag.
PADDED_ROWS_SHARE = 0.5
#: Dead dimensions at or above this share of ``dim`` are flagged.
DEAD_DIMS_SHARE = 0.1
#: Rows needed before dead dimensions mean anything.
DEAD_DIMS_MIN_ROWS = 3
#: Duplicate-row share above which features are flagged.
DUPLICATE_RATE_MAX = 0.5
#: Rows needed before the duplicate test applies.
DUPLICATE_MIN_ROWS = 10
#: Records needed before a constant consonance is suspicious.
CONSTANT_MIN_RECORDS = 8
#: Oracle frames needed before suffix-link and density shares mean anything.
ORACLE_MIN_FRAMES = 64
#: Suffix-link-to-root share at or above which the oracle cannot recombine.
SFX_ROOT_SHARE_MAX = 0.95
#: Suffix-link-to-previous share above which the oracle is a chain.
SFX_PREVIOUS_SHARE_MAX = 0.9
#: Root out-degree share of n at or above which transitions are dense.
ROOT_OUT_DEGREE_SHARE_MAX = 0.9
#: Transitions over n(n+1)/2 at or above which the graph is near-complete.
TRANSITION_DENSITY_MAX = 0.5
#: Stages where every record must carry a gesture token.
TOKEN_STAGES = frozenset({"tokens", "events", "oracle", "saved", "reloaded", "model"})
#: (saved, reloaded) stage-name pairs compared for round-trip changes.
ROUNDTRIP_PAIRS = (("saved", "reloaded"), ("saved", "model"), ("save", "reload"),
                   ("save", "load"), ("save", "reloaded"), ("saved", "loaded"))
#: Without the vocabulary's centres, tokens whose consistency with their own
#: mean feature vectors (agreement above chance, see
#: :func:`chandra.ledger.token_feature_agreement`) is below this are
#: desynchronised. Nearest-centre tokens are consistent by construction (a
#: K-means fixed point: 1.0 on both bundled samples at K = 8..64); the
#: measured effect of desynchronising them is in docs/ARCHITECTURE.md.
DESYNC_CENTROID_CONSISTENCY_MIN = 0.9
#: With the centres, a disagreement share at or above this is an error (below: warning).
DESYNC_ERROR_SHARE = 0.01
#: L2-normalised features whose row norms stray further than this from 1 are
#: not what an L2 vocabulary was fitted on.
L2_NORM_TOLERANCE = 1e-3
#: Fields that hold numbers in every trainer's events (MusicHal reads them as
#: numbers); text there is a number written with ``str()``.
NUMBER_FIELDS = frozenset({
    "t", "time", "timestamp", "start", "end", "duration", "gesture_token", "harmonic_token", "percussive_token",
    "consonance", "f0", "midi", "rms", "rms_db", "centroid", "rolloff", "bandwidth", "contrast", "flatness",
    "mfcc_1", "mfcc_2", "mfcc_3", "zcr", "attack_time", "release_time", "ioi", "tempo", "beat_position", "cents",
    "pitch_hz", "fundamental_freq", "midi_note", "barlow_complexity", "midi_relative", "rhythm_ratio",
    "deviation_polarity", "segment_id", "frame_id",
})
#: VOCAB_TAKE_DOMINANCE: one take owns at least this share of the active tokens ...
TAKE_DOMINANCE_TOKEN_SHARE = 0.5
#: ... and at least this many times its share of the frames ...
TAKE_DOMINANCE_RATIO = 2.0
#: ... in a vocabulary of at least this many active tokens. A token's owner is the take with
#: most of its frames (the lowest take on ties).
TAKE_DOMINANCE_MIN_TOKENS = 4
#: Vocabularies smaller than this are never called sparse (chandra.kchoice.K_FLOOR).
SPARSE_MIN_TOKENS = 8
#: Share of the K tokens used at most twice (or never) above which the vocabulary is sparse ("most").
SPARSE_RARE_SHARE = 0.5
#: Consecutive canonical stages that must keep every record.
_COUNT_PRESERVING = ("segments", "features", "normalised", "tokens", "events", "saved", "reloaded")

# --------------------------------------------------------------------------- what findings mean

#: For every finding code: what it means for the music (one sentence) and
#: what to do (one sentence). The technical message and evidence say what
#: was measured; these say why a musician should care. Codes raised outside
#: this module (the dashboard's STAGE_FAILED / STAGE_CANCELLED from
#: :meth:`chandra.rundir.RunDirectory.stage_findings`, FIELD_THINNED from
#: :func:`chandra.figures.stages.lost_fields`, FINDINGS_FAILED) are here too.
GUIDE: dict[str, tuple[str, str]] = {
    FIELD_LOST: (
        "Information the improviser needs (tokens, features, pitch, …) was dropped between two stages, so the "
        "model cannot use it: without gesture_token, for instance, every moment looks like every other.",
        "Find the step between the two stages named that drops the field (a save or join that copies only some "
        "keys) and make it keep the field; the stage × field matrix shows where it disappears."),
    RECORDS_LOST: (
        "Some moments of the recording went missing between stages, so the improviser can neither play nor "
        "reach them.",
        "Check the stage named for a filter, a truncation or a failed join: every segment should become one "
        "event and one oracle frame."),
    TOKEN_COLLAPSE: (
        "Almost every moment got the same gesture token, so the improviser hears the whole piece as one gesture "
        "and recombines it at random.",
        "Check how tokens reach the events (by segment id, never by nearest timestamp) and that they come from "
        "the vocabulary's own features."),
    TOKENS_MISSING: (
        "Some moments carry no gesture token, so the improviser cannot match them or reach them by gesture.",
        "Give every event its token before the oracle is built, and check that saving keeps the gesture_token "
        "field."),
    TOKENS_OUT_OF_RANGE: (
        "Some token numbers name gestures the vocabulary does not have, so matching on them means nothing.",
        "Use tokens from the vocabulary the model was trained with (same K); retrain if the vocabulary "
        "changed."),
    EPOCH_TIME: (
        "Times are clock times (seconds since 1970), not positions in the recording, so nothing lines up with "
        "the audio and every moment seems to happen at once.",
        "Stamp events with seconds from the start of the file (the segment's start), not with the wall clock."),
    TIME_OUT_OF_RANGE: (
        "Some moments are placed outside the recording, so playing them would give silence or the wrong "
        "passage.",
        "Check the time unit (seconds, not frames or samples) and any offset added when events are stamped."),
    TIME_NOT_MONOTONIC: (
        "Moments are out of time order, so 'carry on forward' in the improviser jumps around the recording.",
        "Sort events by time before building the oracle, or find the step that reorders them."),
    FEATURES_LOW_DIM: (
        "The sound descriptions hold only a few numbers, so different gestures can look alike and the "
        "improviser confuses them.",
        "Use the encoder's full output (768 values for Wav2Vec2 or MERT) and check nothing truncates or "
        "zero-pads it."),
    DEAD_DIMENSIONS: (
        "Many descriptor values never change, so they say nothing about the music and dilute the ones that do.",
        "Check the encoder and its layer; a constant channel or a dead layer should be dropped or replaced."),
    FEATURES_NONFINITE: (
        "Some sound descriptions are broken (NaN or infinite), so those moments cannot be compared with any "
        "other.",
        "Look for silent or very short segments reaching the encoder, and for divisions by zero when "
        "normalising."),
    FEATURES_ZERO_ROWS: (
        "Some moments have an all-zero description, so they all sound the same to the model (usually silence "
        "or an encoding that failed).",
        "Trim silence, raise the minimum segment duration, or check that the encoder ran on those segments."),
    FEATURES_DUPLICATE: (
        "Many moments share exactly the same description, so the improviser cannot tell them apart.",
        "Check that each segment is encoded from its own audio, not the same window repeated."),
    CONSTANT_CONSONANCE: (
        "Consonance has one value everywhere, so asking for 'more consonant' material cannot choose anything.",
        "Check that the harmony analysis ran (a default such as 0.5 means it did not) and that its value is "
        "saved."),
    ORACLE_INVARIANT: (
        "The oracle's memory of the piece contradicts itself, so a jump can land on a passage that does not "
        "really continue what was played.",
        "Rebuild the oracle from the events; for a file from another trainer, report the invariant named in "
        "the message."),
    SFX_ALL_ROOT: (
        "The improviser can only restart from the beginning: no passage is recognised as similar to another.",
        "Make passages recur: fewer tokens for a factor oracle (use --tokens auto), or a larger threshold for "
        "an audio oracle."),
    SFX_PREVIOUS: (
        "Every moment is heard as a repeat of the one before, so the improviser has no real alternatives to "
        "jump to.",
        "Tell gestures apart: more tokens for a factor oracle, or a smaller threshold for an audio oracle."),
    TRANSITIONS_DENSE: (
        "Almost any moment can follow any other, so the improvisation loses the piece's own order and sounds "
        "random.",
        "Use fewer tokens (try --tokens auto) or a tighter threshold, so that only passages which really recur "
        "are connected."),
    PARAM_MISMATCH: (
        "The model was trained with other settings than the ones asked for (fewer tokens, say), so it may not "
        "behave as configured.",
        "Read the effective value in the message; change the option or give longer audio if that is not what "
        "you want."),
    ROUNDTRIP_CHANGED: (
        "Saving and loading changed the model, so what the improviser plays from is not what was trained.",
        "Compare the saved and reloaded stages to see what changed, and report it: the format must be "
        "lossless."),
    TOKENS_DESYNC: (
        "The saved tokens do not match the sounds they label, so the improviser matches gestures to the wrong "
        "moments.",
        "Take each token from the vocabulary's nearest centre of the saved features, with no smoothing or "
        "reassignment afterwards."),
    STRINGIFIED_CONTAINER: (
        "A field holds text such as \"{'a': 1}\" instead of the values, so nothing can read them.",
        "Store the dict or list itself; do not apply str() to it before saving."),
    VOCAB_ENCODER_MISMATCH: (
        "The vocabulary was learned on other sound descriptions than the ones it labels, so its tokens do not "
        "mean what they should.",
        "Refit the vocabulary on features from the same encoder, layer, dimension and normalisation."),
    TYPES_CHANGED: (
        "Numbers came back as text (or keys changed type) after a save, so comparisons and requests on them "
        "fail quietly.",
        "Write numbers as numbers and keep dict keys in their own type; check the JSON writer and reader."),
    AUDIO_TRUNCATED: (
        "The audio file is shorter than it claims: the end of the recording is missing from the model.",
        "Export or copy the audio file again, and retrain if the missing part matters."),
    VOCAB_TAKE_DOMINANCE: (
        "One take owns most of the vocabulary: its gestures are told apart finely while the other takes share "
        "a few tokens, so the improviser can hardly recombine the other takes.",
        "Balance the corpus (similar lengths, or more takes like the small ones), or check whether that take "
        "differs in recording level, instrument or noise; normalise its level and retrain."),
    TAKES_SHARE_NO_TOKENS: (
        "No gesture token is used by two takes, so the oracle has no shared context to jump between takes: "
        "each improvisation stays inside the take it starts in.",
        "Train takes of related material together, use fewer tokens (--tokens auto), or check that the takes "
        "were analysed alike (same encoder and level)."),
    SPARSE_VOCABULARY: (
        "Most gesture tokens label only one or two moments, so little repeats and the improviser has almost "
        "nothing to recombine.",
        "Use fewer tokens: the K suggested in the message, or let chandra choose K ('auto': --tokens auto, "
        "the dashboard's default); or record a longer take."),
    TRAINING_FAILED: (
        "The trainer reports that training did not succeed, so the model it wrote (if any) may be incomplete.",
        "Read the trainer's log and train again before performing with this model."),
    PATTERNS_COLLAPSED: (
        "The trainer found one (or very few) distinct patterns in many events, so the model hears the whole "
        "piece as one repeating sound.",
        "Check that tokens and features reached the oracle (a lost gesture_token or constant features do "
        "this): inspect the model file the summary describes."),
    "STAGE_FAILED": (
        "This stage stopped with an error, so the stages after it have nothing to work on.",
        "Read the error: it names the option or input to change (when K was too large, the Home page offers "
        "the largest K that works); then run the stage again."),
    "STAGE_CANCELLED": (
        "The stage was stopped before it finished, so its results are missing.",
        "Run the stage again when you are ready."),
    "FIELD_THINNED": (
        "A field is carried by fewer moments than before, so part of the recording lost that information.",
        "Find the stage that drops the field for some records (missing values, a filter) and keep it for all."),
    "FINDINGS_FAILED": (
        "The checks could not be computed for this run, so problems may go unreported.",
        "Read the error shown; the run's files (run.json) hold what each stage recorded."),
}
#: Every code :data:`GUIDE` explains (the module's :data:`ALL_CODES` and the dashboard's).
GUIDE_CODES = tuple(GUIDE)
_UNKNOWN_GUIDE = ("A check of another tool or version; its message says what was measured.",
                  "Read the message and the evidence below it.")


def explain(code: str) -> dict[str, str]:
    """``{"meaning": …, "action": …}`` for a finding code: what it means for
    the music and what to do, one sentence each (a generic pair for a code
    this version does not know)."""
    meaning, action = GUIDE.get(str(code), _UNKNOWN_GUIDE)
    return {"meaning": meaning, "action": action}


_CANONICAL_NAMES = frozenset(LEDGER_STAGES) | {"model"}
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Finding:
    """One judgement. ``stage`` is None for whole-object findings."""

    severity: str
    code: str
    stage: str | None
    message: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able dict (``evidence`` values are plain Python), with
        ``meaning`` and ``action`` from :data:`GUIDE`."""
        return {"severity": self.severity, "code": self.code, "stage": self.stage,
                "message": self.message, **explain(self.code), "evidence": _plain(self.evidence)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Finding":
        return cls(severity=str(data["severity"]), code=str(data["code"]),
                   stage=data.get("stage"), message=str(data.get("message", "")),
                   evidence=dict(data.get("evidence") or {}))


def _plain(value: Any) -> Any:
    """Strict-JSON copy of finding evidence (numpy to Python, NaN to None)."""
    return json_safe(value)


def findings_to_dicts(findings: Sequence[Finding]) -> list[dict]:
    """``[f.to_dict() for f in findings]``."""
    return [f.to_dict() for f in findings]


def format_findings(findings: Sequence[Mapping], summary: Mapping | None, *, where: str = "[{stage}]") -> list[str]:
    """Text lines: the severity counts, then one line per finding; ``where``
    formats the stage (``"[{stage}]"`` for models, ``"at '{stage}':"`` for traces)."""
    summary = summary or {}
    lines = [f"findings: {summary.get('error', 0)} error(s), {summary.get('warning', 0)} warning(s), "
             f"{summary.get('info', 0)} info"]
    if not findings:
        lines.append("  none")
    for item in findings:
        place = where.format(stage=item.get("stage") or "-")
        lines.append(f"  {item['severity'].upper():<7} {item['code']:<20} {place} {item['message']}")
        guide = explain(item.get("code"))
        lines.append(f"          means:  {item.get('meaning') or guide['meaning']}")
        lines.append(f"          to do:  {item.get('action') or guide['action']}")
    return lines


def sort_findings(findings: Sequence[Finding | Mapping]) -> list:
    """Errors first, then warnings, then info (unknown severities last);
    stable within a severity. Takes findings or their dicts."""

    def rank(f: Finding | Mapping) -> int:
        sev = f.get("severity") if isinstance(f, Mapping) else f.severity
        return _SEVERITY_RANK.get(sev, len(SEVERITIES))

    return sorted(findings, key=rank)


def count_by_severity(findings: Sequence[Finding | Mapping]) -> dict[str, int]:
    """``{"error": n, "warning": n, "info": n}``."""
    counts = {s: 0 for s in SEVERITIES}
    for f in findings:
        sev = f["severity"] if isinstance(f, Mapping) else f.severity
        counts[sev] = counts.get(sev, 0) + 1
    return counts


# --------------------------------------------------------------------------- per-entry checks


def _time_findings(entry: Mapping, stage: str) -> list[tuple[str, Finding]]:
    time = entry.get("time")
    if not time:
        return []
    out = []
    t_min, t_max, duration = time.get("t_min"), time.get("t_max"), time.get("duration")
    field_name = time.get("field", "t")
    epoch = t_max is not None and t_max >= EPOCH_MIN_S
    if not epoch and duration and t_min is not None:
        epoch = t_min > EPOCH_DURATION_RATIO * max(float(duration), 1.0)
    evidence = {"field": field_name, "t_min": t_min, "t_max": t_max, "duration": duration}
    if epoch:
        out.append((EPOCH_TIME, Finding(
            "error", EPOCH_TIME, stage,
            f"'{field_name}' looks like wall-clock epoch time ({t_min:.6g}..{t_max:.6g} s) "
            f"rather than seconds from file start"
            + (f" (audio lasts {duration:.3g} s)" if duration else ""),
            evidence)))
    elif duration is not None and time.get("fraction_in_range") is not None \
            and time["fraction_in_range"] < 1.0:
        share_out = 1.0 - float(time["fraction_in_range"])
        severity = "error" if share_out > TIME_OUT_OF_RANGE_ERROR_SHARE else "warning"
        takes = [item.get("take") for item in (entry.get("per_file") or [])
                 if isinstance(item, Mapping) and isinstance(item.get("time"), Mapping)
                 and item["time"].get("fraction_in_range") is not None and item["time"]["fraction_in_range"] < 1.0]
        where = (f"their own file (takes {', '.join(str(t) for t in takes[:8])}"
                 f"{', ...' if len(takes) > 8 else ''})" if time.get("per_take") else
                 f"the audio (0..{duration:.3g} s; seen {t_min:.6g}..{t_max:.6g} s)")
        out.append((TIME_OUT_OF_RANGE, Finding(
            severity, TIME_OUT_OF_RANGE, stage,
            f"{share_out:.1%} of '{field_name}' values lie outside {where}",
            {**evidence, "share_out_of_range": share_out, **({"takes": takes} if time.get("per_take") else {})})))
    if stage not in UNORDERED_STAGES and time.get("monotonic") is False:
        out.append((TIME_NOT_MONOTONIC, Finding(
            "warning", TIME_NOT_MONOTONIC, stage,
            f"'{field_name}' goes backwards {time.get('n_decreasing')} times in record order",
            {"field": field_name, "n_decreasing": time.get("n_decreasing"), "n": time.get("n")})))
    return out


def _pca_dims(provenance: Mapping | None) -> set[int]:
    """Every ``pca_components`` value found in provenance (a chosen low dim is no fault)."""
    found: set[int] = set()

    def walk(node: Any, depth: int) -> None:
        if depth > 4 or not isinstance(node, Mapping):
            return
        for key, value in node.items():
            if key == "pca_components" and isinstance(value, (int, np.integer)) and value > 0:
                found.add(int(value))
            walk(value, depth + 1)

    walk(provenance, 0)
    return found


def _feature_findings(entry: Mapping, stage: str, *, pca_dims: set[int]) -> list[tuple[str, Finding]]:
    feats = entry.get("features")
    if not feats:
        return []
    out = []
    n, dim = int(feats.get("n_rows", 0)), int(feats.get("dim", 0))
    nonzero = int(feats.get("nonzero_dims", dim))
    padded = int(feats.get("padded_rows", 0))
    evidence = {"dim": dim, "nonzero_dims": nonzero, "used_dim_max": feats.get("used_dim_max"),
                "padded_rows": padded, "n_rows": n}
    if feats.get("ragged"):
        evidence.update(row_dim_min=feats.get("row_dim_min"), row_dim_max=feats.get("row_dim_max"))
    if n >= 2 and dim > 0 and (nonzero <= LOW_DIM_MAX or padded >= PADDED_ROWS_SHARE * n):
        if padded >= PADDED_ROWS_SHARE * n and dim > nonzero:
            message = (f"features are zero-padded: {padded} of {n} rows use at most "
                       f"{feats.get('used_dim_max')} of {dim} dimensions")
        else:
            message = (f"features are {dim}-dimensional with {nonzero} dimensions ever non-zero "
                       f"(a neural encoder gives hundreds)")
        severity = "info" if nonzero in pca_dims or dim in pca_dims else "warning"
        out.append((FEATURES_LOW_DIM, Finding(severity, FEATURES_LOW_DIM, stage, message, evidence)))
    dead = int(feats.get("dead_dims", 0))
    if n >= DEAD_DIMS_MIN_ROWS and dim > 0 and dead > 0 and dead >= DEAD_DIMS_SHARE * dim:
        out.append((DEAD_DIMENSIONS, Finding(
            "warning", DEAD_DIMENSIONS, stage,
            f"{dead} of {dim} feature dimensions never vary over {n} rows",
            {"dead_dims": dead, "dim": dim, "n_rows": n})))
    bad = int(feats.get("nonfinite_rows", 0))
    if bad:
        out.append((FEATURES_NONFINITE, Finding(
            "error", FEATURES_NONFINITE, stage, f"{bad} of {n} feature rows contain NaN or infinity",
            {"nonfinite_rows": bad, "n_rows": n})))
    zero = int(feats.get("zero_rows", 0))
    if zero:
        out.append((FEATURES_ZERO_ROWS, Finding(
            "warning", FEATURES_ZERO_ROWS, stage, f"{zero} of {n} feature rows are all zero",
            {"zero_rows": zero, "n_rows": n})))
    dup = float(feats.get("duplicate_rate", 0.0) or 0.0)
    if n >= DUPLICATE_MIN_ROWS and dup > DUPLICATE_RATE_MAX:
        out.append((FEATURES_DUPLICATE, Finding(
            "warning", FEATURES_DUPLICATE, stage,
            f"{dup:.0%} of feature rows duplicate an earlier row",
            {"duplicate_rate": dup, "n_rows": n})))
    return out


def _consonance_findings(entry: Mapping, stage: str) -> list[tuple[str, Finding]]:
    info = (entry.get("fields") or {}).get("consonance")
    if not info or "constant" not in info or info.get("present", 0) < CONSTANT_MIN_RECORDS:
        return []
    value = info["constant"]
    return [(CONSTANT_CONSONANCE, Finding(
        "warning", CONSTANT_CONSONANCE, stage,
        f"consonance is {value!r} for all {info['present']} records: a default, not a measurement",
        {"value": value, "present": info["present"]}))]


def _token_presence_findings(entry: Mapping, stage: str, *, canonical: bool) -> list[tuple[str, Finding]]:
    out = []
    n = int(entry.get("n_records", 0) or 0)
    info = (entry.get("fields") or {}).get(TOKEN_FIELD)
    present = int(info.get("present", 0)) if info else 0
    # A trace's "events" may be raw analysis output that is joined to tokens
    # later; only chandra's own stage names promise tokens on every record.
    expected = canonical and stage in TOKEN_STAGES
    if n and ((expected and present < n) or (info and 0 < present < n)):
        out.append((TOKENS_MISSING, Finding(
            "error", TOKENS_MISSING, stage,
            f"{present} of {n} {'frames' if stage == 'model' else 'records'} carry a {TOKEN_FIELD}",
            {"present": present, "n_records": n, "missing": n - present})))
    tok = entry.get("tokens") or {}
    bad = int(tok.get("out_of_range", 0) or 0) + int(tok.get("non_integer", 0) or 0)
    if bad:
        out.append((TOKENS_OUT_OF_RANGE, Finding(
            "error", TOKENS_OUT_OF_RANGE, stage,
            _out_of_range_message(tok, bad),
            {"out_of_range": tok.get("out_of_range"), "non_integer": tok.get("non_integer"),
             "n_tokens": tok.get("n_tokens")})))
    return out


def _out_of_range_message(tok: Mapping, bad: int) -> str:
    """Say which rule the token values break without an empty range such as [0, 0)."""
    k = tok.get("n_tokens")
    non_integer = int(tok.get("non_integer", 0) or 0)
    if isinstance(k, int) and k > 0:
        return f"{bad} token values are not integer ids in [0, {k})"
    if non_integer == bad:
        return f"{bad} token values are not integers"
    return f"{bad} token values are not integer ids (no vocabulary size known)"


def _desync_findings(entry: Mapping, stage: str) -> list[tuple[str, Finding]]:
    info = entry.get("token_features")
    if not isinstance(info, Mapping) or info.get("skipped") or not info.get("checked"):
        return []
    checked, disagree = int(info.get("checked", 0)), int(info.get("disagree", 0))
    share = disagree / checked if checked else 0.0
    evidence = {k: info.get(k) for k in ("method", "checked", "agree", "disagree", "agreement", "n_rows",
                                          "examples", "space", "spaces", "n_centres", "n_tokens") if k in info}
    if info.get("method") == "centres":
        if not disagree:
            return []
        severity = "error" if share >= DESYNC_ERROR_SHARE else "warning"
        return [(TOKENS_DESYNC, Finding(
            severity, TOKENS_DESYNC, stage,
            f"{disagree} of {checked} records carry a {TOKEN_FIELD} that is not the vocabulary's nearest "
            f"centre for their features (tokens smoothed or re-assigned after the vocabulary, or features "
            f"replaced)", evidence))]
    if stage in UNORDERED_STAGES:
        # A generation replays a subset of frames, some many times: the fixed
        # point of the vocabulary's K-means holds for the frames it was fitted
        # on, not for a resample, so only centres can judge it.
        return []
    agreement = float(info.get("agreement", 1.0))
    consistency = info.get("consistency")
    if consistency is None or float(consistency) >= DESYNC_CENTROID_CONSISTENCY_MIN:
        return []
    evidence.update(chance_agreement=info.get("chance_agreement"), consistency=consistency)
    evidence["note"] = ("no vocabulary centres here: each token's mean feature vector stands in for its centre "
                        f"(best of {', '.join(sorted(info.get('spaces') or {}))} features); nearest-centre tokens "
                        "agree with their own means everywhere, tokens dealt at random on the chance share")
    return [(TOKENS_DESYNC, Finding(
        "warning", TOKENS_DESYNC, stage,
        f"only {agreement:.0%} of {checked} records are nearest the mean features of their own "
        f"{TOKEN_FIELD} (chance {float(info.get('chance_agreement') or 0):.0%}; {info.get('space')} space; no "
        f"vocabulary centres to check against): tokens look smoothed, re-assigned or computed from other "
        f"features than the ones stored", evidence))]


def _stringified_findings(entry: Mapping, stage: str) -> list[tuple[str, Finding]]:
    out = []
    for name, info in (entry.get("fields") or {}).items():
        found = info.get("stringified") if isinstance(info, Mapping) else None
        if not isinstance(found, Mapping) or not found.get("count"):
            continue
        kinds = found.get("kinds") or {}
        kind = max(kinds, key=kinds.get) if kinds else "container"
        count, checked = int(found["count"]), int(found.get("checked", found["count"]))
        candidates = int(found.get("candidates", checked))
        scope = f"{count} of {checked} checked" + (f" ({candidates} candidates)" if candidates > checked else "")
        out.append((f"{STRINGIFIED_CONTAINER}:{name}", Finding(
            "error", STRINGIFIED_CONTAINER, stage,
            f"field '{name}' holds the text of a {kind} instead of the {kind} ({scope} values, "
            f"e.g. {found.get('example')!r}): str() or repr() was applied on the way in",
            {"field": name, "count": count, "checked": checked, "candidates": candidates, "kinds": dict(kinds),
             "example": found.get("example"), "present": info.get("present")})))
    return out


def _number_text_findings(entry: Mapping, stage: str) -> list[tuple[str, Finding]]:
    out = []
    for name, info in (entry.get("fields") or {}).items():
        if name not in NUMBER_FIELDS or not isinstance(info, Mapping):
            continue
        found = info.get("numeric_strings")
        if not isinstance(found, Mapping) or not found.get("count"):
            continue
        count = int(found["count"])
        out.append((f"{TYPES_CHANGED}:{name}", Finding(
            "error", TYPES_CHANGED, stage,
            f"'{name}' holds numbers written as text in {count} of {info.get('present')} records "
            f"(e.g. {found.get('example')!r}): a save wrote them with str() (numpy scalars through "
            "json's default=str), and readers that compare or add them get text",
            {"field": name, "numeric_strings": count, "present": info.get("present"), "types": info.get("types"),
             "example": found.get("example"), "change": "number -> text"})))
    return out


def _collapse_finding(entry: Mapping, stage: str, reference: int, reference_from: str | None
                      ) -> list[tuple[str, Finding]]:
    tok = entry.get("tokens")
    if not tok:
        return []
    present = int(tok.get("present", 0))
    unique = int(tok.get("unique", 0))
    k = int(tok.get("n_tokens", 0) or 0)
    top_share = float(tok.get("top_share", 0.0))
    evidence = {"unique": unique, "present": present, "n_tokens": k, "top_token": tok.get("top_token"),
                "top_share": top_share, "reference_unique": reference, "reference": reference_from,
                "entropy_bits": tok.get("entropy_bits"), "max_entropy_bits": tok.get("max_entropy_bits")}
    # A short stretch cannot show more ids than it has records.
    expected = min(reference, present)
    if present >= 2 and expected >= COLLAPSE_MIN_TOKENS and unique < COLLAPSE_UNIQUE_FRACTION * expected:
        return [(TOKEN_COLLAPSE, Finding(
            "error", TOKEN_COLLAPSE, stage,
            f"only {unique} distinct tokens in {present} records where {reference_from} had {reference} "
            f"(top token {tok.get('top_token')} takes {top_share:.0%})",
            evidence))]
    if present >= COLLAPSE_MIN_RECORDS and max(k, reference) >= COLLAPSE_MIN_TOKENS \
            and top_share > COLLAPSE_TOP_SHARE:
        severity = "error" if unique <= 1 else "warning"
        return [(TOKEN_COLLAPSE, Finding(
            severity, TOKEN_COLLAPSE, stage,
            f"token {tok.get('top_token')} takes {top_share:.0%} of {present} records "
            f"({unique} distinct of K={k})",
            evidence))]
    return []


def _sparse_findings(entry: Mapping, stage: str) -> list[tuple[str, Finding]]:
    """SPARSE_VOCABULARY: most of the K tokens used at most twice (or never)."""
    from chandra.kchoice import RARE_USES, k_by_count

    tok = entry.get("tokens")
    if not tok or stage in UNORDERED_STAGES:
        return []
    counts = tok.get("counts")
    k = int(tok.get("n_tokens", 0) or 0)
    present = int(tok.get("present", 0) or 0)
    if not isinstance(counts, (list, tuple)) or len(counts) != k or k < SPARSE_MIN_TOKENS or present < 1:
        return []
    counts = [int(c) for c in counts]
    rare = sum(1 for c in counts if c <= RARE_USES)
    if rare <= SPARSE_RARE_SHARE * k:
        return []
    once, twice, unused = counts.count(1), counts.count(2), counts.count(0)
    suggested = k_by_count(present)["k"]
    evidence = {"n_tokens": k, "present": present, "used_once": once, "used_twice": twice, "unused": unused,
                "rare_share": rare / k, "mean_uses": present / k, "suggested_k": suggested}
    parts = [f"{once} once", f"{twice} twice"] + ([f"{unused} never"] if unused else [])
    return [(SPARSE_VOCABULARY, Finding(
        "warning", SPARSE_VOCABULARY, stage,
        f"{rare} of K={k} tokens are used at most twice in {present} records ({', '.join(parts)}; "
        f"{present / k:.1f} records per token on average); K={suggested} suits {present} segments",
        evidence))]


def oracle_findings(summary: Mapping, *, stage: str | None = "oracle") -> list[Finding]:
    """Findings from an oracle summary (:func:`chandra.ledger.oracle_summary` or graph facts).

    Parameters
    ----------
    summary : mapping
        Uses ``n_frames`` (or ``n_states - 1``), ``n_transitions``,
        ``root_out_degree``, ``sfx_to_root_share``, ``sfx_to_previous_share``
        and ``violations`` ({invariant code: count}) where present.
    stage : str or None
    """
    out: list[Finding] = []
    n = summary.get("n_frames")
    if n is None and summary.get("n_states") is not None:
        n = int(summary["n_states"]) - 1
    n = int(n or 0)
    examples = summary.get("violation_examples") or []
    for code, count in sorted((summary.get("violations") or {}).items()):
        first = [e for e in examples if e.get("code") == code][:3]
        message = f"oracle invariant '{code}' fails at {count} states"
        if first and first[0].get("message"):
            message += f" (first: state {first[0].get('state')}: {first[0]['message']})"
        # check_oracle calls an audio oracle's context mismatches warnings:
        # threshold matching is not transitive, so healthy audio oracles show
        # them. They are reported, but as info, so healthy models stay clean.
        severity = "error" if (summary.get("violation_severity") or {}).get(code, "error") == "error" else "info"
        out.append(Finding(severity, ORACLE_INVARIANT, stage, message,
                           {"invariant": code, "count": int(count), "examples": first}))
    if n < ORACLE_MIN_FRAMES:
        return out
    root_share = summary.get("sfx_to_root_share")
    root_out = summary.get("root_out_degree")
    evidence_graph = {"n_frames": n, "n_transitions": summary.get("n_transitions"),
                      "root_out_degree": root_out, "sfx_to_root_share": root_share,
                      "sfx_to_previous_share": summary.get("sfx_to_previous_share"),
                      "kind": summary.get("kind"), "threshold": summary.get("threshold")}
    if root_share is not None and root_share >= SFX_ROOT_SHARE_MAX:
        out.append(Finding(
            "warning", SFX_ALL_ROOT, stage,
            f"{root_share:.1%} of {n} suffix links point to the root: no frame recombines with "
            "an earlier context (threshold too small or tokens all distinct)",
            evidence_graph))
    prev_share = summary.get("sfx_to_previous_share")
    if prev_share is not None and prev_share > SFX_PREVIOUS_SHARE_MAX:
        out.append(Finding(
            "warning", SFX_PREVIOUS, stage,
            f"{prev_share:.1%} of {n} suffix links point to the previous state: the sequence "
            "is (nearly) one repeated symbol, or the threshold is too large",
            evidence_graph))
    n_trn = summary.get("n_transitions")
    dense_root = root_out is not None and root_out >= ROOT_OUT_DEGREE_SHARE_MAX * n
    dense_graph = n_trn is not None and n_trn >= TRANSITION_DENSITY_MAX * n * (n + 1) / 2
    if dense_root or dense_graph:
        what = (f"root out-degree {root_out} of {n} frames" if dense_root
                else f"{n_trn} transitions for {n} frames")
        out.append(Finding(
            "warning", TRANSITIONS_DENSE, stage,
            f"near-complete transition graph: {what}", evidence_graph))
    return out


def entry_findings(entry: Mapping, *, provenance: Mapping | None = None, canonical: bool = True) -> list[Finding]:
    """Checks that need only one ledger entry (no cross-stage comparison, no dedup).

    ``canonical`` says the stage name follows chandra's stage vocabulary
    (then ``tokens``/``events``/``oracle``/``saved``/``reloaded``/``model``
    must carry a token on every record).
    """
    stage = str(entry.get("stage"))
    return [f for _, f in _entry_checks(entry, stage, _pca_dims(provenance), canonical=canonical)]


def _entry_checks(entry: Mapping, stage: str, pca_dims: set[int], *, canonical: bool
                  ) -> list[tuple[str, Finding]]:
    out: list[tuple[str, Finding]] = []
    out += _time_findings(entry, stage)
    out += _feature_findings(entry, stage, pca_dims=pca_dims)
    out += _consonance_findings(entry, stage)
    out += _token_presence_findings(entry, stage, canonical=canonical)
    out += _desync_findings(entry, stage)
    out += _stringified_findings(entry, stage)
    out += _number_text_findings(entry, stage)
    out += _sparse_findings(entry, stage)
    if entry.get("oracle"):
        for f in oracle_findings(entry["oracle"], stage=stage):
            key = f.code + ":" + str(f.evidence.get("invariant", ""))
            out.append((key, f))
    return out


# --------------------------------------------------------------------------- cross-stage checks


def _present_fields(entry: Mapping) -> dict[str, dict]:
    return {k: v for k, v in (entry.get("fields") or {}).items() if int(v.get("present", 0)) > 0}


def _lineage_parent(ledger: Sequence[Mapping], k: int) -> int | None:
    """Nearest earlier stage that stage ``k`` continues (keeps most of its fields,
    adding fewer fields than it drops), or None.

    A stage that carries a different kind of record (events after segments)
    or replaces fields with new ones (tokens replacing vectors) is a
    transformation, not a copy, so fields it lacks are not "lost".
    """
    later = set(_present_fields(ledger[k]))
    for j in range(k - 1, -1, -1):
        earlier = set(_present_fields(ledger[j]))
        if not earlier:
            continue
        overlap = len(earlier & later) / len(earlier)
        if overlap < LINEAGE_OVERLAP_MIN:
            continue
        added, dropped = later - earlier, earlier - later
        if dropped and len(added) >= len(dropped):
            return None
        return j
    return None


def _field_lost_findings(ledger: Sequence[Mapping]) -> list[Finding]:
    out = []
    for k in range(1, len(ledger)):
        j = _lineage_parent(ledger, k)
        if j is None:
            continue
        before, after = ledger[j], ledger[k]
        n_before = int(before.get("n_records", 0) or 0)
        n_after = int(after.get("n_records", 0) or 0)
        fields_after = after.get("fields") or {}
        for name, info in _present_fields(before).items():
            p0 = int(info["present"])
            p1 = int(fields_after.get(name, {}).get("present", 0))
            if n_after == 0:
                continue
            if p1 == 0:
                lost = True
            elif n_after == n_before:
                lost = p1 < p0
            else:
                f0 = p0 / n_before if n_before else 0.0
                lost = p1 / n_after < FIELD_FRACTION_DROP * f0
            takes = _takes_losing(before, after, name)
            if not lost and not takes:
                continue
            severity = "error" if p1 == 0 or (not lost and takes) else "warning"
            in_takes = ""
            if takes and p1 > 0:
                shown = ", ".join(str(t) for t in takes[:8]) + (", ..." if len(takes) > 8 else "")
                in_takes = f"; every record of take(s) {shown} lost it"
            out.append(Finding(
                severity, FIELD_LOST, str(after.get("stage")),
                f"field '{name}' carried by {p0} of {n_before} records at '{before.get('stage')}' "
                f"but {p1} of {n_after} at '{after.get('stage')}'{in_takes}",
                {"field": name, "from_stage": before.get("stage"), "to_stage": after.get("stage"),
                 "present_before": p0, "n_before": n_before, "present_after": p1, "n_after": n_after,
                 **({"takes": takes} if takes else {})}))
    return out


def _takes_losing(before: Mapping, after: Mapping, name: str) -> list[int]:
    """Takes (of a corpus entry's ``per_file``) whose records carried ``name`` before and none after."""
    a, b = before.get("per_file"), after.get("per_file")
    if not isinstance(a, list) or not isinstance(b, list):
        return []
    after_by_take = {item.get("take"): item for item in b if isinstance(item, Mapping)}
    out = []
    for item in a:
        if not isinstance(item, Mapping):
            continue
        later = after_by_take.get(item.get("take"))
        if not isinstance(later, Mapping) or not later.get("n_records"):
            continue
        had = int((item.get("fields") or {}).get(name, 0) or 0)
        has = int((later.get("fields") or {}).get(name, 0) or 0)
        if had > 0 and has == 0:
            out.append(int(item["take"]))
    return out


def take_vocabulary_findings(ledger: Sequence[Mapping], *, provenance: Mapping | None = None) -> list[Finding]:
    """How a corpus vocabulary is shared among its takes (from the ``tokens`` entry's ``per_file``).

    VOCAB_TAKE_DOMINANCE (warning) when one take owns at least
    :data:`TAKE_DOMINANCE_TOKEN_SHARE` of the active tokens and at least
    :data:`TAKE_DOMINANCE_RATIO` times its share of the frames (a token's
    owner is the take with most of its frames), in a vocabulary of at least
    :data:`TAKE_DOMINANCE_MIN_TOKENS` active tokens: the other takes are
    described by a handful of tokens. TAKES_SHARE_NO_TOKENS (warning) when
    two or more takes use no token in common, so a token oracle has no
    shared context to jump between them.
    """
    entry = next((e for e in ledger if e.get("stage") == "tokens" and isinstance(e.get("per_file"), list)), None)
    if entry is None:
        return []
    rows = [item for item in entry["per_file"] if isinstance(item, Mapping)
            and isinstance(item.get("tokens"), Mapping) and isinstance(item["tokens"].get("counts"), list)]
    if len(rows) < 2:
        return []
    try:
        counts = np.asarray([item["tokens"]["counts"] for item in rows], dtype=np.int64)
    except (TypeError, ValueError):
        return []
    if counts.ndim != 2 or counts.shape[1] == 0:
        return []
    files = provenance.get("files") if isinstance(provenance, Mapping) else None

    def name(take: int) -> str:
        if isinstance(files, list) and 0 <= take < len(files) and isinstance(files[take], Mapping):
            return f"take {take} ({files[take].get('name') or files[take].get('path')})"
        return f"take {take}"

    frames = counts.sum(axis=1)
    takes = np.asarray([int(item["take"]) for item in rows])
    active = np.flatnonzero(counts.sum(axis=0) > 0)
    out: list[Finding] = []
    used = counts[:, active] > 0
    shared = int(np.count_nonzero(used.sum(axis=0) >= 2))
    playing = int(np.count_nonzero(frames > 0))
    if playing >= 2 and shared == 0:
        out.append(Finding(
            "warning", TAKES_SHARE_NO_TOKENS, "tokens",
            f"the {playing} takes share no token: every token belongs to one take, so the token oracle "
            "has no shared context to move between takes",
            {"takes": playing, "active_tokens": int(active.size), "shared_tokens": 0}))
    if active.size >= TAKE_DOMINANCE_MIN_TOKENS and frames.sum() > 0:
        owners = np.argmax(counts[:, active], axis=0)
        token_share = np.bincount(owners, minlength=counts.shape[0]) / active.size
        frame_share = frames / frames.sum()
        top = int(np.argmax(token_share))
        if token_share[top] >= TAKE_DOMINANCE_TOKEN_SHARE and \
                token_share[top] >= TAKE_DOMINANCE_RATIO * frame_share[top]:
            out.append(Finding(
                "warning", VOCAB_TAKE_DOMINANCE, "tokens",
                f"{name(int(takes[top]))} owns {token_share[top]:.0%} of the {active.size} active tokens with "
                f"{frame_share[top]:.0%} of the frames; the other takes share the rest",
                {"take": int(takes[top]), "token_share": float(token_share[top]),
                 "frame_share": float(frame_share[top]), "active_tokens": int(active.size),
                 "shared_tokens": shared,
                 "tokens_per_take": [int(c) for c in np.count_nonzero(counts > 0, axis=1)]}))
    return out


def _records_lost_findings(ledger: Sequence[Mapping]) -> list[Finding]:
    out = []
    order = {s: i for i, s in enumerate(_COUNT_PRESERVING)}
    prev = None
    for entry in ledger:
        stage = entry.get("stage")
        if stage not in order:
            continue
        if prev is not None and order[stage] > order[prev.get("stage")]:
            n0, n1 = int(prev.get("n_records", 0)), int(entry.get("n_records", 0))
            if n1 < n0:
                out.append(Finding(
                    "warning", RECORDS_LOST, stage,
                    f"{n0 - n1} of {n0} records from '{prev['stage']}' are missing at '{stage}'",
                    {"from_stage": prev["stage"], "n_before": n0, "n_after": n1}))
        prev = entry
    return out


def _roundtrip_findings(ledger: Sequence[Mapping]) -> list[Finding]:
    out = []
    names = [str(e.get("stage")) for e in ledger]
    for saved_name, loaded_name in ROUNDTRIP_PAIRS:
        for k, name in enumerate(names):
            if name != loaded_name:
                continue
            earlier = [j for j in range(k) if names[j] == saved_name]
            if not earlier:
                continue
            s, r = ledger[earlier[-1]], ledger[k]
            changes = _entry_differences(s, r)
            if changes:
                shown = "; ".join(c["what"] for c in changes[:3])
                out.append(Finding(
                    "error", ROUNDTRIP_CHANGED, loaded_name,
                    f"'{saved_name}' -> '{loaded_name}' changed {len(changes)} thing(s): {shown}"
                    + ("; ..." if len(changes) > 3 else ""),
                    {"from_stage": saved_name, "to_stage": loaded_name, "changes": changes[:20]}))
    return out


def _entry_differences(a: Mapping, b: Mapping) -> list[dict]:
    changes = []
    if a.get("n_records") != b.get("n_records"):
        changes.append({"what": f"records {a.get('n_records')} -> {b.get('n_records')}",
                        "key": "n_records", "before": a.get("n_records"), "after": b.get("n_records")})
    fa, fb = a.get("fields") or {}, b.get("fields") or {}
    for name in list(fa) + [n for n in fb if n not in fa]:
        ia, ib = fa.get(name, {}), fb.get(name, {})
        pa, pb = int(ia.get("present", 0)), int(ib.get("present", 0))
        if pa != pb:
            changes.append({"what": f"'{name}' present {pa} -> {pb}", "key": f"fields.{name}.present",
                            "before": pa, "after": pb})
        ta, tb = ia.get("types"), ib.get("types")
        if ta is not None and tb is not None and pa and pb and list(ta) != list(tb):
            changes.append({"what": f"'{name}' types {ta} -> {tb}", "key": f"fields.{name}.types",
                            "before": list(ta), "after": list(tb)})
        ka, kb = ia.get("key_types"), ib.get("key_types")
        if ka and kb and list(ka) != list(kb):
            changes.append({"what": f"'{name}' key types {ka} -> {kb}", "key": f"fields.{name}.key_types",
                            "before": list(ka), "after": list(kb)})
    ta, tb = a.get("tokens") or {}, b.get("tokens") or {}
    for key in ("present", "unique", "counts"):
        if ta.get(key) != tb.get(key) and (ta or tb):
            changes.append({"what": f"tokens.{key} changed", "key": f"tokens.{key}",
                            "before": ta.get(key) if key != "counts" else None,
                            "after": tb.get(key) if key != "counts" else None})
    xa, xb = a.get("features") or {}, b.get("features") or {}
    for key in ("dim", "n_rows", "nonzero_dims", "zero_rows", "nonfinite_rows"):
        if xa.get(key) != xb.get(key) and (xa or xb):
            changes.append({"what": f"features.{key} {xa.get(key)} -> {xb.get(key)}",
                            "key": f"features.{key}", "before": xa.get(key), "after": xb.get(key)})
    return changes


def _types_changed_findings(ledger: Sequence[Mapping], already: set) -> list[Finding]:
    """TYPES_CHANGED where a field's value or key types differ from the stage it continues.

    chandra's own saved -> reloaded pairs are left to ROUNDTRIP_CHANGED,
    which reports type changes among everything else a round trip changed.
    """
    out = []
    roundtrip = set(ROUNDTRIP_PAIRS)
    for k in range(1, len(ledger)):
        j = _lineage_parent(ledger, k)
        if j is None:
            continue
        before, after = ledger[j], ledger[k]
        s0, s1 = str(before.get("stage")), str(after.get("stage"))
        if (s0, s1) in roundtrip:
            continue
        fields_after = after.get("fields") or {}
        for name, ia in _present_fields(before).items():
            ib = fields_after.get(name) or {}
            if not ib.get("present") or (s1, name) in already:
                continue
            ta, tb = set(ia.get("types") or []), set(ib.get("types") or [])
            ka, kb = set(ia.get("key_types") or []), set(ib.get("key_types") or [])
            changes = []
            if ta and tb and ta != tb:
                changes.append(f"value types {sorted(ta)} -> {sorted(tb)}")
            if ka and kb and ka != kb:
                changes.append(f"key types {sorted(ka)} -> {sorted(kb)}")
            if not changes:
                continue
            number_to_text = "str" in tb - ta and bool(ta & {"int", "float", "bool"})
            keys_to_text = "int" in ka and "int" not in kb and "int-str" in kb
            severity = "error" if number_to_text or keys_to_text else "warning"
            why = []
            if keys_to_text:
                why.append("int keys came back as strings, so lookups by number miss")
            if number_to_text:
                why.append("numbers came back as text")
            out.append(Finding(
                severity, TYPES_CHANGED, s1,
                f"field '{name}' changed from '{s0}' to '{s1}': {'; '.join(changes)}"
                + (f" ({'; '.join(why)})" if why else ""),
                {"field": name, "from_stage": s0, "to_stage": s1, "types_before": sorted(ta),
                 "types_after": sorted(tb), "key_types_before": sorted(ka) or None,
                 "key_types_after": sorted(kb) or None, "stages": [s1]}))
    return out


# --------------------------------------------------------------------------- vocabulary provenance

#: Identity of the features a vocabulary sees, by canonical name: the
#: declaration keys read for each (first found wins). Shared by chandra's
#: provenance, trace checkpoint declarations and MusicHal metadata.
IDENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder", "encoder_name", "feature_extractor", "extractor"),
    "model": ("model", "model_name", "checkpoint", "pretrained", "model_path"),
    "model_type": ("model_type",),
    "layer": ("effective_layer", "layer", "hidden_layer", "layer_index"),
    "pooling": ("pooling",),
    "sample_rate": ("sample_rate", "sampling_rate", "sr"),
    "dim": ("dim", "feature_dim", "feature_dimensions", "n_features_in", "n_features", "input_dim", "dimension"),
    "normalisation": ("normalisation", "normalization"),
    "n_mfcc": ("n_mfcc",),
    "hop_length": ("hop_length",),
    "n_fft": ("n_fft",),
    "quantize": ("quantize", "quantization", "precision"),
}
#: Identity aspects whose mismatch changes the features only slightly (int8
#: against float32 features of the same model: cosine ~0.999, most tokens the
#: same; benchmarks/RESULTS.md): a warning, where any other mismatch is an error.
SOFT_IDENTITY_KEYS = ("quantize",)
_VOCAB_DECL_KEYS = ("vocabulary", "gesture_vocabulary", "vocab", "token_vocabulary", "kmeans")
_ENCODER_DECL_KEYS = ("encoder", "feature_encoder", "features_encoder", "feature_extractor")
_FITTED_ON_KEYS = ("fitted_on", "trained_on", "encoder", "features")


def _scalar(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, str) and len(value) <= 500:
        return value
    return None


def encoder_identity(declaration: Any) -> dict:
    """Canonical identity (:data:`IDENTITY_KEYS`) of a features/encoder declaration.

    A string is an encoder name; a mapping is read key by key, a nested
    ``"encoder"`` mapping first (chandra nests the encoder's provenance).
    Only scalar values count.
    """
    if isinstance(declaration, str):
        return {"encoder": declaration}
    if not isinstance(declaration, Mapping):
        return {}
    out: dict = {}
    nested = declaration.get("encoder")
    if isinstance(nested, Mapping):
        out.update(encoder_identity(nested))
    for name, aliases in IDENTITY_KEYS.items():
        if name in out:
            continue
        for alias in aliases:
            value = _scalar(declaration.get(alias))
            if value is not None and not (alias == "encoder" and isinstance(nested, Mapping)):
                out[name] = value
                break
    return out


def _vocabulary_identity(declaration: Any) -> dict:
    """Identity of the features a vocabulary declaration says it was fitted on."""
    if not isinstance(declaration, Mapping):
        return {}
    out: dict = {}
    for key in _FITTED_ON_KEYS:
        value = declaration.get(key)
        if isinstance(value, (Mapping, str)):
            out.update({k: v for k, v in encoder_identity(value).items() if k not in out})
    # The vocabulary's own keys (dim of the vectors it was fitted on, normalisation).
    for name, value in encoder_identity({k: v for k, v in declaration.items() if k not in _FITTED_ON_KEYS}).items():
        out.setdefault(name, value)
    return out


def _same(name: str, a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        a, b = a.strip().lower(), b.strip().lower()
        if name == "model":
            a, b = a.rstrip("/").rsplit("/", 1)[-1], b.rstrip("/").rsplit("/", 1)[-1]
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, str) != isinstance(b, str):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return str(a).strip().lower() == str(b).strip().lower()
    return a == b


def vocabulary_conflicts(vocabulary: Mapping, features: Mapping) -> list[dict]:
    """``[{aspect, vocabulary, features}]`` for every identity key both declare differently."""
    out = []
    for name in IDENTITY_KEYS:
        if name in vocabulary and name in features and not _same(name, vocabulary[name], features[name]):
            out.append({"aspect": name, "vocabulary": vocabulary[name], "features": features[name]})
    return out


def _mismatch_finding(conflicts: list[dict], stage: str, source: str) -> Finding:
    shown = "; ".join(f"{c['aspect']} {c['vocabulary']!r} vs {c['features']!r}" for c in conflicts[:4])
    more = "; ..." if len(conflicts) > 4 else ""
    if all(c["aspect"] in SOFT_IDENTITY_KEYS for c in conflicts):
        return Finding(
            "warning", VOCAB_ENCODER_MISMATCH, stage,
            f"the vocabulary was fitted on features of another precision than the ones it is applied to "
            f"({shown}{more}): the same model, so most tokens agree, but some frames may get a neighbouring "
            "token; refit the vocabulary on features of this precision to remove the doubt",
            {"conflicts": conflicts, "source": source})
    return Finding(
        "error", VOCAB_ENCODER_MISMATCH, stage,
        f"the vocabulary was fitted on other features than the ones it is applied to ({shown}{more}): "
        "its tokens do not mean what the frames hold",
        {"conflicts": conflicts, "source": source})


def _declared_vocabulary_check(entry: Mapping, stage: str, declared: dict) -> list[tuple[str, Finding]]:
    """Compare the vocabulary and encoder declared so far (trace checkpoints' ``provenance``)."""
    prov = entry.get("provenance")
    if isinstance(prov, Mapping):
        for key in _ENCODER_DECL_KEYS:
            if key in prov:
                declared["encoder"] = encoder_identity(prov[key])
                break
        for key in _VOCAB_DECL_KEYS:
            if isinstance(prov.get(key), Mapping):
                declared["vocabulary"] = _vocabulary_identity(prov[key])
                break
    vocab, enc = declared.get("vocabulary"), declared.get("encoder")
    if not vocab or not enc:
        return []
    conflicts = vocabulary_conflicts(vocab, enc)
    if not conflicts:
        return []
    return [(VOCAB_ENCODER_MISMATCH, _mismatch_finding(conflicts, stage, "declared at checkpoints"))]


def _walk_declarations(node: Any, depth: int = 0) -> tuple[list[dict], list[dict]]:
    """Vocabulary and encoder declarations anywhere in a metadata tree (depth <= 4)."""
    vocabs: list[dict] = []
    encoders: list[dict] = []
    if depth > 4 or not isinstance(node, Mapping):
        return vocabs, encoders
    for key, value in node.items():
        name = str(key).lower()
        if name in _VOCAB_DECL_KEYS and isinstance(value, Mapping):
            ident = _vocabulary_identity(value)
            if ident:
                vocabs.append(ident)
            continue
        if name in _ENCODER_DECL_KEYS and isinstance(value, (Mapping, str)):
            ident = encoder_identity(value)
            if ident:
                encoders.append(ident)
            continue
        if isinstance(value, Mapping):
            v, e = _walk_declarations(value, depth + 1)
            vocabs += v
            encoders += e
    return vocabs, encoders


def vocabulary_findings(model: Any) -> list[Finding]:
    """VOCAB_ENCODER_MISMATCH for a model whose vocabulary does not fit its features.

    Checked, where the model carries what is needed:

    * the vocabulary's centres and the saved features differ in dimension;
    * ``vocabulary["fitted_on"]`` (what chandra records when it fits) names
      another encoder, model, layer, pooling, sample rate or dimension than
      ``provenance["encoder"]``;
    * an L2 vocabulary without PCA, applied to features whose rows are not
      unit vectors (the features were not normalised the way the vocabulary
      was fitted);
    * a MusicHal file whose metadata declares a vocabulary (``vocabulary``,
      ``gesture_vocabulary``, ...) fitted on other features than its declared
      encoder, or on another dimension than its frames hold.

    The finding's stage is ``"tokens"`` when the model's ledger has that
    stage (where the vocabulary was applied), else ``"model"``.
    """
    provenance = getattr(model, "provenance", None) or {}
    vocab = getattr(model, "vocabulary", None)
    vocab = vocab if isinstance(vocab, Mapping) else {}
    features = getattr(model, "features", None)
    centers = getattr(model, "centers", None)
    history = [e for e in (getattr(model, "ledger", None) or []) if isinstance(e, Mapping)]
    stage = "tokens" if any(e.get("stage") == "tokens" for e in history) else "model"
    X = np.asarray(features) if features is not None else None
    has_rows = X is not None and X.ndim == 2 and X.shape[0] > 0
    lengths = (getattr(model, "extra_arrays", None) or {}).get("feature_lengths")
    features_dim = None
    if has_rows:
        features_dim = int(np.max(lengths)) if lengths is not None and len(lengths) else int(X.shape[1])
    conflicts: list[dict] = []
    source = []
    if centers is not None and has_rows:
        C = np.asarray(centers)
        if C.ndim == 2 and C.shape[1] != X.shape[1]:
            conflicts.append({"aspect": "dim", "vocabulary": int(C.shape[1]), "features": int(X.shape[1]),
                              "what": "centre dimension against saved feature dimension"})
            source.append("centres")
    fitted = vocab.get("fitted_on")
    encoder = provenance.get("encoder") if isinstance(provenance, Mapping) else None
    if isinstance(fitted, Mapping) and isinstance(encoder, Mapping):
        found = vocabulary_conflicts(_vocabulary_identity({"fitted_on": fitted}), encoder_identity(encoder))
        conflicts += [c for c in found if c["aspect"] not in {x["aspect"] for x in conflicts}]
        if found:
            source.append("vocabulary.fitted_on against provenance.encoder")
    params = vocab.get("params") if isinstance(vocab.get("params"), Mapping) else {}
    if params.get("normalisation") == "l2" and params.get("pca_components") in (None, 0) and has_rows \
            and (centers is None or np.asarray(centers).shape[-1] == X.shape[1]):
        norms = np.linalg.norm(np.asarray(X, dtype=np.float64), axis=1)
        norms = norms[np.isfinite(norms) & (norms > 0)]
        if norms.size and (norms.min() < 1 - L2_NORM_TOLERANCE or norms.max() > 1 + L2_NORM_TOLERANCE):
            conflicts.append({"aspect": "normalisation", "vocabulary": "l2",
                              "features": f"row norms {norms.min():.4g}..{norms.max():.4g}",
                              "what": "an L2 vocabulary applied to features that are not unit vectors"})
            source.append("feature norms")
    musichal = provenance.get("musichal") if isinstance(provenance, Mapping) else None
    if isinstance(musichal, Mapping):
        vocabs, encoders = [], []
        for part in ("metadata", "other_keys", "data_keys", "outer_keys"):
            v, e = _walk_declarations(musichal.get(part))
            vocabs += v
            encoders += e
        for ident in vocabs:
            for enc in encoders:
                found = vocabulary_conflicts(ident, enc)
                conflicts += [c for c in found if c not in conflicts]
            if features_dim is not None and "dim" in ident and not _same("dim", ident["dim"], features_dim):
                item = {"aspect": "dim", "vocabulary": ident["dim"], "features": features_dim,
                        "what": "declared vocabulary dimension against the frames' feature length"}
                if item not in conflicts:
                    conflicts.append(item)
        if vocabs:
            source.append("MusicHal metadata")
    if not conflicts:
        return []
    finding = _mismatch_finding(conflicts, stage, ", ".join(source))
    finding.evidence["stages"] = [stage]
    return [finding]


#: Top-level MusicHal keys and ``stats`` keys that hold numbers.
_MUSICHAL_NUMBER_KEYS = frozenset({
    "distance_threshold", "max_pattern_length", "feature_dimensions", "size", "last", "frame_counter",
    "sequence_length", "threshold_adjustments", "chord_similarity_weight", "pattern_counter", "last_update",
    "total_distances_calculated", "average_distance", "total_patterns", "total_states", "memory_usage",
    "harmonic_patterns", "polyphonic_patterns", "chord_progressions", "rhythmic_patterns",
    "musical_insights_used", "polyphonic_frames", "average_pitches_per_frame",
})


def musichal_type_findings(model: Any) -> list[Finding]:
    """TYPES_CHANGED for a MusicHal file holding numbers as text outside its events.

    JSON keeps numbers numbers; text where MusicHal writes numbers (the
    top-level counters and threshold, ``stats``, the per-state
    ``fundamentals`` / ``consonances`` values) is what a save that passed
    numpy scalars through ``str()`` leaves behind. Event fields are judged
    by the ledger (``numeric_strings``).
    """
    provenance = getattr(model, "provenance", None) or {}
    musichal = provenance.get("musichal") if isinstance(provenance, Mapping) else None
    if not isinstance(musichal, Mapping):
        return []
    from chandra.ledger import is_number_text

    declared = musichal.get("declared") if isinstance(musichal.get("declared"), Mapping) else {}
    keys = [k for k, v in declared.items() if k in _MUSICHAL_NUMBER_KEYS and is_number_text(v)]
    stats = declared.get("stats") if isinstance(declared.get("stats"), Mapping) else {}
    keys += [f"stats.{k}" for k, v in stats.items() if k in _MUSICHAL_NUMBER_KEYS and is_number_text(v)]
    per_state = {}
    for name in ("fundamentals", "consonances"):
        values = musichal.get(name)
        if isinstance(values, list):
            count = sum(1 for v in values if is_number_text(v))
            if count:
                per_state[name] = count
    if not keys and not per_state:
        return []
    parts = []
    if keys:
        parts.append(f"{', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}")
    parts += [f"{count} '{name}' values" for name, count in per_state.items()]
    return [Finding(
        "error", TYPES_CHANGED, "model",
        f"numbers stored as text in {'; '.join(parts)}: a save wrote them with str() (numpy scalars through "
        "json's default=str); MusicHal reads them as text",
        {"keys": keys, "per_state": per_state, "change": "number -> text", "stages": ["model"]})]


# --------------------------------------------------------------------------- provenance


def provenance_findings(provenance: Mapping | None, *, stage: str | None = None) -> list[Finding]:
    """PARAM_MISMATCH for every configured value that differs from its effective value.

    Three shapes are read anywhere in the provenance tree (depth <= 4):
    ``{"configured": {...}, "effective": {...}}`` (keys present in both are
    compared), per parameter ``{name: {"configured": c, "effective": e}}``,
    and sibling keys ``<name>_configured`` / ``<name>``. A
    configured value of None or ``"auto"`` asks the stage to choose, so it
    never mismatches.
    """
    out: list[Finding] = []
    if not isinstance(provenance, Mapping):
        return out

    def differs(conf: Any, eff: Any) -> bool:
        if conf is None or (isinstance(conf, str) and conf.lower() == "auto"):
            return False
        if isinstance(conf, (int, float, np.number)) and isinstance(eff, (int, float, np.number)) \
                and not isinstance(conf, bool) and not isinstance(eff, bool):
            return not math.isclose(float(conf), float(eff), rel_tol=1e-9, abs_tol=1e-12)
        return _plain(conf) != _plain(eff)

    def report(path: str, key: str, conf: Any, eff: Any) -> None:
        out.append(Finding(
            "warning", PARAM_MISMATCH, stage,
            f"{path + '.' if path else ''}{key}: configured {conf!r} but effective {eff!r}",
            {"path": path, "parameter": key, "configured": conf, "effective": eff}))

    def walk(node: Mapping, path: str, depth: int) -> None:
        if depth > 4:
            return
        conf, eff = node.get("configured"), node.get("effective")
        if isinstance(conf, Mapping) and isinstance(eff, Mapping):
            for key in conf:
                if key not in eff:
                    continue
                value = eff[key]
                if isinstance(value, Mapping) and "effective" in value:
                    value = value["effective"]  # the per-parameter shape nested in an "effective" block
                if differs(conf[key], value):
                    report(path, str(key), conf[key], value)
        elif "configured" in node and "effective" in node and not isinstance(conf, Mapping) \
                and not isinstance(eff, Mapping):
            # per-parameter shape {"n_tokens": {"configured": 64, "effective": 12}}
            parent, _, name = path.rpartition(".")
            if differs(conf, eff):
                report(parent, name or path, conf, eff)
        for key, value in node.items():
            if isinstance(key, str) and key.endswith("_configured"):
                base = key[: -len("_configured")]
                if base in node and differs(value, node[base]):
                    report(path, base, value, node[base])
            if isinstance(value, Mapping) and key not in ("configured", "effective"):
                walk(value, f"{path}.{key}" if path else str(key), depth + 1)

    walk(provenance, "", 0)
    return out


def audio_findings(provenance: Mapping | None) -> list[Finding]:
    """AUDIO_TRUNCATED when ``provenance["input"]["decode"]`` shows fewer frames read than declared.

    The decode record is :meth:`chandra.audio.DecodedAudio.report`
    (``frames_declared``, ``frames_read``, ``file_sample_rate``,
    ``decode_error``), stored by the training pipeline. Training went on
    with the frames that were there; the warning says how much is missing.
    """
    if not isinstance(provenance, Mapping):
        return []
    sources = [(None, provenance.get("input"))]
    if isinstance(provenance.get("files"), list):  # a corpus: one decode record per take
        sources = [(k, row) for k, row in enumerate(provenance["files"])]
    out = []
    for take, source in sources:
        decode = source.get("decode") if isinstance(source, Mapping) else None
        if not isinstance(decode, Mapping):
            continue
        declared, read = decode.get("frames_declared"), decode.get("frames_read")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (declared, read)) or not read < declared:
            continue
        rate = decode.get("file_sample_rate")
        seconds = (f" ({read / rate:.3f} s of {declared / rate:.3f} s)"
                   if isinstance(rate, int) and not isinstance(rate, bool) and rate > 0 else "")
        error = decode.get("decode_error")
        which = "the audio file" if take is None else f"take {take} ({source.get('name')})"
        out.append(Finding(
            "warning", AUDIO_TRUNCATED, "load",
            f"{which} declares {declared} frames but the decoder delivered {read}{seconds}, "
            f"{1 - read / declared:.1%} missing" + (f" (decoder: {error})" if error else "")
            + "; trained on the frames that were there",
            {"frames_declared": declared, "frames_read": read, "file_sample_rate": rate,
             "decode_error": error, "file": source.get("name"), **({"take": take} if take is not None else {})}))
    return out


# --------------------------------------------------------------------------- ledger

_SECTION_OF = {
    EPOCH_TIME: "time", TIME_OUT_OF_RANGE: "time", TIME_NOT_MONOTONIC: "time",
    FEATURES_LOW_DIM: "features", DEAD_DIMENSIONS: "features", FEATURES_NONFINITE: "features",
    FEATURES_ZERO_ROWS: "features", FEATURES_DUPLICATE: "features",
    TOKENS_OUT_OF_RANGE: "tokens", TOKEN_COLLAPSE: "tokens", SPARSE_VOCABULARY: "tokens",
}


def _has_section(entry: Mapping, key: str) -> bool:
    """Whether ``entry`` holds the data the check named by ``key`` reads."""
    code, _, field_name = key.partition(":")
    if code in (STRINGIFIED_CONTAINER, TYPES_CHANGED) and field_name:
        return bool(((entry.get("fields") or {}).get(field_name) or {}).get("present"))
    if code == TOKENS_DESYNC:
        info = entry.get("token_features")
        return isinstance(info, Mapping) and not info.get("skipped") and bool(info.get("checked"))
    if code == VOCAB_ENCODER_MISMATCH:
        return True
    if code == CONSTANT_CONSONANCE:
        return bool((entry.get("fields") or {}).get("consonance", {}).get("present"))
    if code == TOKENS_MISSING:
        return TOKEN_FIELD in (entry.get("fields") or {})
    if code in (ORACLE_INVARIANT, SFX_ALL_ROOT, SFX_PREVIOUS, TRANSITIONS_DENSE):
        return bool(entry.get("oracle"))
    section = _SECTION_OF.get(code)
    return bool(entry.get(section)) if section else True


def _fit_reference(vocabulary: Mapping | None) -> int:
    if not isinstance(vocabulary, Mapping):
        return 0
    fit = vocabulary.get("fit_metrics") or {}
    value = fit.get("active", fit.get("unique"))
    return int(value) if isinstance(value, (int, np.integer)) else 0


def ledger_findings(
    ledger: Sequence[Mapping],
    *,
    provenance: Mapping | None = None,
    vocabulary: Mapping | None = None,
) -> list[Finding]:
    """All findings over a ledger (stage entries in order).

    Parameters
    ----------
    ledger : sequence of dict
        Entries from :func:`chandra.ledger.ledger_entry`, in stage order; stage
        names may be canonical or a trace's checkpoint names.
    provenance : dict, optional
        Read for configured/effective parameters (PARAM_MISMATCH) and PCA size
        (a chosen low feature dimension is info, not a warning).
    vocabulary : dict, optional
        ``{"fit_metrics": {"active": ...}}``: the fit-set active token count,
        the reference a collapse of assigned tokens is measured against.

    Returns
    -------
    list of Finding
        Errors first, then warnings, then info.
    """
    pca_dims = _pca_dims(provenance)
    fit_active = _fit_reference(vocabulary)
    canonical = all(str(e.get("stage")) in _CANONICAL_NAMES for e in ledger)
    findings: list[Finding] = []
    # check key -> the finding that opened the run, while the run is open
    open_runs: dict[str, Finding] = {}
    best_unique, best_from = (fit_active, "the vocabulary fit set") if fit_active else (0, None)
    declared: dict[str, dict] = {}
    for entry in ledger:
        stage = str(entry.get("stage"))
        checks = _entry_checks(entry, stage, pca_dims, canonical=canonical)
        checks += _collapse_finding(entry, stage, best_unique, best_from)
        if any(key == TOKEN_COLLAPSE for key, _ in checks):
            # Collapsed tokens leave most of K unused: the collapse is the fault, not the vocabulary size.
            checks = [(key, f) for key, f in checks if key != SPARSE_VOCABULARY]
        checks += _declared_vocabulary_check(entry, stage, declared)
        fired = set()
        for key, finding in checks:
            fired.add(key)
            run = open_runs.get(key)
            if run is not None:
                run.evidence["stages"].append(stage)
                continue
            finding.evidence.setdefault("stages", [stage])
            findings.append(finding)
            open_runs[key] = finding
        # A stage that could have shown the fault but did not ends its run; a
        # stage without the data (no time axis, no vectors) leaves it open.
        for key in list(open_runs):
            if key not in fired and _has_section(entry, key):
                del open_runs[key]
        tok = entry.get("tokens")
        if tok and int(tok.get("unique", 0)) > best_unique:
            best_unique, best_from = int(tok["unique"]), f"'{stage}'"
    findings += _field_lost_findings(ledger)
    # A field already named as text-of-a-container or numbers-as-text at a stage is not
    # reported again as a bare type change there.
    already = {(f.stage, f.evidence.get("field")) for f in findings
               if f.code in (TYPES_CHANGED, STRINGIFIED_CONTAINER)}
    findings += _types_changed_findings(ledger, already)
    findings += _records_lost_findings(ledger)
    findings += _roundtrip_findings(ledger)
    findings += provenance_findings(provenance)
    findings += audio_findings(provenance)
    findings += take_vocabulary_findings(ledger, provenance=provenance)
    return sort_findings(findings)


# --------------------------------------------------------------------------- models


def _musichal_graph_summary(provenance: Mapping) -> dict | None:
    facts = provenance.get("musichal") if isinstance(provenance, Mapping) else None
    if not isinstance(facts, Mapping):
        return None
    keys = ("n_states", "n_frames", "n_transitions", "root_out_degree", "sfx_to_root_share",
            "sfx_to_previous_share", "kind", "threshold")
    summary = {k: facts[k] for k in keys if k in facts}
    n = summary.get("n_frames")
    # The importer counts links to the root; the checks read shares.
    if "sfx_to_root_share" not in summary and isinstance(facts.get("suffix_links_to_root"), int) and n:
        summary["sfx_to_root_share"] = facts["suffix_links_to_root"] / n
    return summary or None


def _musichal_consonance(provenance: Mapping, stage: str) -> list[Finding]:
    facts = provenance.get("musichal") if isinstance(provenance, Mapping) else None
    if not isinstance(facts, Mapping):
        return []
    values = facts.get("consonances")
    if isinstance(values, Mapping):
        values = list(values.values())
    if not isinstance(values, (list, tuple)) or len(values) < CONSTANT_MIN_RECORDS:
        return []
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values) and len(set(numbers)) == 1:
        return [Finding(
            "warning", CONSTANT_CONSONANCE, stage,
            f"graph consonances are {numbers[0]!r} for all {len(numbers)} states",
            {"value": numbers[0], "present": len(numbers), "source": "musichal consonances",
             "stages": [stage]})]
    return []


def model_findings(model: Any, *, entry: Mapping | None = None,
                   oracle_summary_: Mapping | None = None) -> list[Finding]:
    """Every applicable check on a :class:`chandra.model.Model`.

    The model's frames become a ledger entry with stage ``"model"`` appended
    to the model's own training ledger (so a field dropped at save time shows
    as FIELD_LOST / ROUNDTRIP_CHANGED against the ``"saved"`` entry). The
    oracle is summarised and checked (symbols = the frames' tokens for a
    ``"tokens"`` oracle, features for a ``"features"`` one); a MusicHal import
    without an :class:`~chandra.oracle.Oracle` is judged on the graph facts
    in ``provenance["musichal"]``.

    Parameters
    ----------
    model : chandra.model.Model
    entry : dict, optional
        A precomputed ``model_ledger_entry(model, stage="model")``.
    oracle_summary_ : dict, optional
        A precomputed :func:`chandra.ledger.oracle_summary`.

    Returns
    -------
    list of Finding
    """
    from chandra.ledger import model_ledger_entry, oracle_summary

    if entry is None:
        entry = model_ledger_entry(model, stage="model")
    provenance = getattr(model, "provenance", None) or {}
    history = [e for e in (getattr(model, "ledger", None) or []) if isinstance(e, Mapping)]
    findings = ledger_findings(history + [dict(entry)], provenance=provenance,
                               vocabulary=getattr(model, "vocabulary", None))
    summary = oracle_summary_
    if summary is None and getattr(model, "oracle", None) is not None:
        summary = oracle_summary(model.oracle, **oracle_check_inputs(model))
    if summary is None:
        summary = _musichal_graph_summary(provenance)
    if summary is not None:
        findings += oracle_findings(summary, stage="oracle")
    if not any(f.code == CONSTANT_CONSONANCE for f in findings):
        findings += _musichal_consonance(provenance, "model")
    findings += vocabulary_findings(model)
    findings += musichal_type_findings(model)
    return sort_findings(_dedupe(findings))


def oracle_check_inputs(model: Any) -> dict:
    """symbols / features for check_oracle, matching the oracle's kind."""
    oracle = model.oracle
    n = int(np.asarray(oracle.sfx).shape[0] - 1)
    if oracle.kind == "tokens":
        tokens = [e.get(TOKEN_FIELD) for e in model.events[:n]]
        if len(tokens) == n and all(isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_))
                                    and -(2**63) <= t < 2**63 for t in tokens):
            return {"symbols": np.asarray(tokens, dtype=np.int64)}
        return {}
    features = getattr(model, "features", None)
    if features is not None and np.asarray(features).shape[0] >= n and n > 0:
        return {"features": np.asarray(features)[:n]}
    return {}


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen = set()
    out = []
    for f in findings:
        key = (f.code, f.stage, f.evidence.get("invariant"), f.evidence.get("field"),
               f.evidence.get("parameter"), f.evidence.get("path"), f.evidence.get("take"))
        if key in seen:
            continue
        seen.add(key)
        out.append(f)
    return out

