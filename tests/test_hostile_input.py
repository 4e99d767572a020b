"""Hostile and foreign input (issue 9): nothing crashes, fills memory or prints a traceback.

Crash and out-of-memory cases run ``python -m chandra.cli`` in a child with a
2 GB address-space limit and a 60 s timeout, and expect exit status 1 with one
line on stderr. Field-validation cases run the CLI in process. Property tests
mutate valid chandra and MusicHal documents and ``--where`` strings: every
reader and consumer either succeeds or raises ChandraError.
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chandra.cli import main
from chandra.constraints import MAX_WHERE_CHARS, MAX_WHERE_DEPTH, parse_where
from chandra.errors import ChandraError, ConstraintError, ModelFormatError
from chandra.generate import improvise, resynthesise
from chandra.inspect import inspect_model
from chandra.model import MAX_ARCHIVE_MEMBERS, Model, load_model, save_model
from chandra.musichal import export_musichal
from chandra.oracle import build_factor_oracle
from helpers_hostile import deflated_zeros, run_limited, stored, write_zip

SR = 8000
TOKENS = [0, 1, 2, 0, 1, 3, 0, 1, 2, 0, 1, 3, 2, 2, 0, 1]


def small_model() -> Model:
    """A complete, playable model: events inside its audio, a factor oracle, vocabulary, ledger."""
    n, dur = len(TOKENS), 0.1
    events = [{"t": round(i * dur, 6), "duration": dur, "segment_id": i, "gesture_token": tok,
               "consonance": 0.2 + 0.1 * tok, "ratios": [1.0, 1.5], "rms_db": -12.0,
               "f0": None if tok == 3 else 220.0 * (1 + tok), "midi": None, "centroid": 900.0 + tok}
              for i, tok in enumerate(TOKENS)]
    t = np.arange(int(n * dur * SR)) / SR
    audio = (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    features = np.eye(4, dtype=np.float32)[TOKENS] + 0.01
    from chandra.ledger import ledger_entry

    ledger = [ledger_entry("events", events, features=features, n_tokens=4, duration=n * dur)]
    return Model(events=events, features=features, oracle=build_factor_oracle(TOKENS),
                 provenance={"created_by": "test", "config": {"n_tokens": 4}},
                 vocabulary={"params": {"n_tokens": 4}, "n_tokens": 4, "fit_metrics": {"active": 4}},
                 centers=np.eye(4, dtype=np.float32), ledger=ledger, audio=audio, sample_rate=SR)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return save_model(small_model(), tmp_path_factory.mktemp("good") / "good.chandra")


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def document_of(path: Path) -> dict:
    return json.loads(members_of(path)["model.json"])


def rezip(good: Path, out: Path, *, document: dict | None = None, text: str | None = None,
          replace: dict[str, bytes] | None = None) -> Path:
    """Copy ``good`` with model.json (and members) replaced, all stored as the format says."""
    members = members_of(good)
    if document is not None:
        text = json.dumps(document)
    if text is not None:
        members["model.json"] = text.encode("utf-8", "surrogatepass")
    members.update(replace or {})
    return write_zip(out, [stored(name, data) for name, data in members.items()])


def one_line_error(result_or_err: str, command: str) -> str:
    lines = [line for line in result_or_err.splitlines() if line.strip()]
    assert len(lines) == 1, result_or_err
    assert lines[0].startswith(f"chandra {command}: error:"), lines[0]
    assert "Traceback" not in result_or_err
    return lines[0]


def assert_refused(proc, command: str, *fragments: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    line = one_line_error(proc.stderr, command)
    for fragment in fragments:
        assert fragment in line, line
    return line


# --------------------------------------------------------------------------- crashes and OOM, in a limited child


def musichal_with_digits(path: Path, digits: int = 4400) -> Path:
    """A 4.4 KB MusicHal file whose frame id is an integer literal of ``digits`` digits."""
    path.write_text('{"audio_frames": {"0": {"timestamp": 1.0, "features": [0.5, 0.25], '
                    '"audio_data": {"t": 0.0, "duration": 0.5}, "frame_id": ' + "9" * digits + "}}, "
                    '"states": {"0": {"len": 0, "link": -1, "next": {"0": 1}}, '
                    '"1": {"len": 1, "link": 0, "next": {}}}}')
    return path


@pytest.mark.parametrize("command", ["inspect", "generate", "export"])
def test_huge_integer_literal_is_refused_not_a_segfault(tmp_path, command):
    path = musichal_with_digits(tmp_path / "digits.json")
    assert 4300 < path.stat().st_size < 5000
    out = {"inspect": [], "generate": ["-o", str(tmp_path / "out.wav")], "export": ["-o", str(tmp_path / "o.json")]}
    proc = run_limited(command, str(path), *out[command])
    assert_refused(proc, command, str(path), "number literal longer than 100 characters", "byte offset")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.json"]


def test_musichal_nested_100000_levels_is_refused_within_memory(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"audio_frames": {}, "stats": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert path.stat().st_size > 190_000
    proc = run_limited("inspect", str(path))
    assert_refused(proc, "inspect", "nested deeper than 64 levels", "byte offset")


@pytest.mark.parametrize("rate", [1, 999])
def test_audio_declaring_a_tiny_sample_rate_is_refused_before_resampling(tmp_path, rate):
    """A 200 kB WAV at 1 Hz would resample to 9 GB at 22 050 Hz: refused at its header, in one line."""
    import soundfile as sf

    path = tmp_path / "slow.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 100_000).astype(np.float32), rate,
             subtype="PCM_16")
    proc = run_limited("train", str(path), "-o", str(tmp_path / "m.chandra"), "--quiet")
    assert_refused(proc, "train", f"sample rate {rate} Hz is below 1,000 Hz", "is it an audio recording?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slow.wav"]


def test_model_json_nested_100000_levels_is_refused(tmp_path, good):
    text = json.dumps(document_of(good)).replace('"provenance": {', '"provenance": {"deep": '
                                                  + "[" * 100_000 + "]" * 100_000 + ", ", 1)
    path = rezip(good, tmp_path / "deep.chandra", text=text)
    proc = run_limited("inspect", str(path))
    assert_refused(proc, "inspect", "model.json", "nested deeper than 64 levels")


def test_zip_bomb_array_is_refused_before_inflating(tmp_path, good):
    """A valid 25 MB archive whose deflated member inflates to 4 GB of float32 zeros."""
    n = 1_000_000_000
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    document = document_of(good)
    document["arrays"]["extra.bomb"] = {"member": "arrays/extra.bomb.npy", "dtype": "<f4", "shape": [n]}
    members = [stored(name, data) for name, data in members_of(good).items() if name != "model.json"]
    members.insert(0, stored("model.json", json.dumps(document).encode()))
    members.append(deflated_zeros("arrays/extra.bomb.npy", header.getvalue(), 4 * n))
    path = write_zip(tmp_path / "bomb.chandra", members)
    assert path.stat().st_size < 30_000_000
    with zipfile.ZipFile(path) as zf:  # a genuine archive: the member really inflates to 4 GB
        assert zf.getinfo("arrays/extra.bomb.npy").file_size == len(header.getvalue()) + 4 * n
    for command, extra in (("inspect", []), ("generate", ["-o", str(tmp_path / "g.wav")])):
        proc = run_limited(command, str(path), *extra)
        assert_refused(proc, command, "arrays/extra.bomb.npy", "is compressed")


def test_deflated_huge_model_json_is_refused(tmp_path, good):
    prefix = b'{"format": "chandra-model", "format_version": "1.0", "pad": "'
    members = [deflated_zeros("model.json", prefix, 4_000_000_000)]
    members += [stored(name, data) for name, data in members_of(good).items() if name != "model.json"]
    path = write_zip(tmp_path / "json-bomb.chandra", members)
    proc = run_limited("inspect", str(path))
    assert_refused(proc, "inspect", "'model.json' is compressed")


def test_index_listing_one_member_20000_times_is_refused_at_once(tmp_path, good):
    document = document_of(good)
    entry = document["arrays"]["features"]
    for i in range(20_000):
        document["arrays"][f"extra.copy{i}"] = dict(entry)
    path = rezip(good, tmp_path / "repeat.chandra", document=document)
    proc = run_limited("inspect", str(path))
    assert_refused(proc, "inspect", "'extra.copy0' must point at member 'arrays/extra.copy0.npy'")


# --------------------------------------------------------------------------- archive limits, in process


def test_archive_index_rules(tmp_path, good):
    document = document_of(good)

    def refused(doc: dict | None = None, *, replace=None, match: str) -> None:
        path = rezip(good, tmp_path / "bad.chandra", document=doc, replace=replace)
        with pytest.raises(ModelFormatError, match=match):
            load_model(path)

    unknown = json.loads(json.dumps(document))
    unknown["arrays"]["weights"] = {"member": "arrays/weights.npy", "dtype": "<f4", "shape": [1]}
    refused(unknown, replace={"arrays/weights.npy": members_of(good)["arrays/features.npy"]},
            match="unknown array 'weights'")
    elsewhere = json.loads(json.dumps(document))
    elsewhere["arrays"]["centers"]["member"] = "arrays/features.npy"
    refused(elsewhere, match="must point at member 'arrays/centers.npy'")
    bigger = json.loads(json.dumps(document))
    bigger["arrays"]["features"]["shape"] = [16, 4000]
    refused(bigger, match=r"'features' declares 256000 bytes \(<f4 \[16, 4000\]\) but its member holds")
    smaller = json.loads(json.dumps(document))
    smaller["arrays"]["features"]["shape"] = [16, 3]
    refused(smaller, match=r"holds <f4 \[16, 4\], the index says <f4 \[16, 3\]")
    odd_dtype = json.loads(json.dumps(document))
    odd_dtype["arrays"]["features"]["dtype"] = "|O"
    refused(odd_dtype, match="expected a numeric NumPy dtype")
    bad_shape = json.loads(json.dumps(document))
    bad_shape["arrays"]["audio"]["shape"] = [800, 2]
    refused(bad_shape, match="'audio' declares shape")
    # a member with trailing bytes beyond its header and data
    padded = members_of(good)["arrays/features.npy"] + b"\0" * 64
    refused(None, replace={"arrays/features.npy": padded}, match="'arrays/features.npy' is .* bytes; its header")


def test_archive_with_too_many_members_is_refused(tmp_path, good):
    members = [stored(name, data) for name, data in members_of(good).items()]
    members += [stored(f"junk/{i}", b"") for i in range(MAX_ARCHIVE_MEMBERS)]
    path = write_zip(tmp_path / "many.chandra", members)
    with pytest.raises(ModelFormatError, match=f"declares {len(members)} members"):
        load_model(path)


def test_deflated_member_of_an_ordinary_size_is_refused_too(tmp_path, good):
    path = tmp_path / "deflated.chandra"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members_of(good).items():
            zf.writestr(name, data)
    with pytest.raises(ModelFormatError, match="'model.json' is compressed .* store every member uncompressed"):
        load_model(path)


def test_tagged_integer_with_thousands_of_digits_is_a_format_error(tmp_path, good):
    document = document_of(good)
    document["provenance"]["big"] = {"$int": "7" * 5000}
    with pytest.raises(ModelFormatError, match="tagged integer holds a text of 5000 characters"):
        load_model(rezip(good, tmp_path / "int.chandra", document=document))


def test_a_non_model_file_is_never_quoted(tmp_path, capsys):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cr3tHashValue:19000:0:99999:7:::\n")
    assert main(["inspect", str(secret)]) == 1
    line = one_line_error(capsys.readouterr().err, "inspect")
    assert "$6$" not in line and "s3cr3t" not in line and "19000" not in line and "not a chandra model" in line


def test_malformed_musichal_json_is_never_quoted(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"audio_frames": {"0": {"features": [1, 2], "audio_data": {"name": "s3cr3t" tru}}}}')
    assert main(["inspect", str(path)]) == 1
    line = one_line_error(capsys.readouterr().err, "inspect")
    assert "s3cr3t" not in line and "malformed JSON" in line


def test_python_json_fallback_is_bounded_too(tmp_path):
    """NaN literals and 30-digit ints send a MusicHal file to the whole-file reader, which keeps the limits."""
    frames = '"audio_frames": {"0": {"features": [NaN, 1.0], "audio_data": {"t": 0.0, "n": ' + "1" * 30 + "}}}"
    ok = tmp_path / "ok.json"
    ok.write_text("{" + frames + "}")
    model = load_model(ok)
    assert model.events[0]["n"] == int("1" * 30) and math.isnan(model.features[0, 0])
    assert any("read whole with Python's json" in note for note in model.provenance["import_notes"])
    deep = tmp_path / "deep.json"
    deep.write_text("{" + frames + ', "x": ' + "[" * 3000 + "]" * 3000 + "}")
    with pytest.raises(ModelFormatError, match="nested deeper than 64 levels"):
        load_model(deep)
    cut = tmp_path / "cut.json"  # cut short: no second, whole-file read (it could only fail the same way)
    cut.write_text('{"audio_frames": {"0": {"features": [0.5, 1.0], "audio_data": {"t"')
    with pytest.raises(ModelFormatError, match=r"malformed JSON \(parse error: premature EOF\)"):
        load_model(cut)


def test_trace_files_are_read_within_the_limits(tmp_path):
    from chandra.errors import TraceError
    from chandra.trace import Tracer, trace_report

    Tracer(tmp_path / "trace").checkpoint("a", [{"t": 0.0}])
    index = tmp_path / "trace" / "index.json"
    index.write_text('{"format": "chandra-trace", "version": 1, "checkpoints": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(TraceError, match="nested deeper than 64 levels"):
        trace_report(tmp_path / "trace")


def test_encoder_config_is_read_within_the_limits(tmp_path):
    from chandra.encoders import Wav2Vec2Encoder
    from chandra.errors import EncoderError

    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2", "x": ' + "9" * 6000 + "}")
    encoder = Wav2Vec2Encoder(model=str(tmp_path))
    with pytest.raises(EncoderError, match="number literal longer than 100 characters"):
        encoder._check_remote_code(str(tmp_path), "a local directory")


# --------------------------------------------------------------------------- field validation, one line each


def with_field(good: Path, tmp_path: Path, text_edit) -> Path:
    return rezip(good, tmp_path / "edited.chandra", text=text_edit(json.dumps(document_of(good))))


def set_key(key: str, literal: str):
    def edit(text: str) -> str:
        document = json.loads(text)
        document[key] = json.loads(literal)
        return json.dumps(document)
    return edit


@pytest.mark.parametrize("literal, shown", [
    ("NaN", "sample_rate nan"), ("Infinity", "sample_rate inf"), ('"fast"', "sample_rate 'fast'"),
    ("0", "sample_rate 0 "), ("-8000", "sample_rate -8000"), ("1e30", "sample_rate 1e+30"),
    ("8000.5", "sample_rate 8000.5"), ("true", "sample_rate True"),
])
@pytest.mark.parametrize("command", ["inspect", "generate"])
def test_bad_sample_rate_is_one_line(tmp_path, good, capsys, literal, shown, command):
    path = with_field(good, tmp_path, set_key("sample_rate", literal))
    args = [command, str(path)] + (["-o", str(tmp_path / "out.wav")] if command == "generate" else [])
    assert main(args) == 1
    line = one_line_error(capsys.readouterr().err, command)
    assert shown in line and "1..768000 Hz" in line


@pytest.mark.parametrize("key, literal, expected", [
    ("provenance", "[1, 2]", "provenance is a list; expected dict"),
    ("vocabulary", '"k-means"', "vocabulary is a str; expected dict or None"),
    ("ledger", '{"stage": "x"}', "ledger is a dict; expected list"),
    ("source_format", "[]", "source_format is a list; expected str"),
])
def test_wrongly_typed_sections_are_one_line(tmp_path, good, capsys, key, literal, expected):
    path = with_field(good, tmp_path, set_key(key, literal))
    assert main(["inspect", str(path)]) == 1
    assert expected in one_line_error(capsys.readouterr().err, "inspect")


def test_two_dimensional_audio_given_to_generate_is_one_line(tmp_path, capsys):
    model = small_model()
    model.audio = np.stack([model.audio, model.audio], axis=1)
    path = tmp_path / "stereo.chandra"
    with pytest.raises(ModelFormatError, match="expected mono float samples"):
        save_model(model, path)
    # written by hand, the archive is refused on load
    good_path = save_model(small_model(), tmp_path / "mono.chandra")
    document = document_of(good_path)
    stereo = io.BytesIO()
    np.save(stereo, np.stack([small_model().audio] * 2, axis=1))
    document["arrays"]["audio"]["shape"] = [len(small_model().audio), 2]
    rezip(good_path, path, document=document, replace={"arrays/audio.npy": stereo.getvalue()})
    assert main(["generate", str(path), "-o", str(tmp_path / "out.wav")]) == 1
    assert "'audio' declares shape" in one_line_error(capsys.readouterr().err, "generate")


@pytest.mark.parametrize("value, shown", [
    ('"0.5"', "is '0.5'"), ("null", "None"), ("NaN", "nan"), ("-1.0", "-1.0"), ("[1]", "a list of 1 items"),
])
def test_bad_event_time_given_to_generate_is_one_line(tmp_path, good, capsys, value, shown):
    path = with_field(good, tmp_path, lambda text: text.replace('"t": 0.3,', f'"t": {value},', 1))
    assert main(["inspect", str(path)]) == 0  # loading and diagnosing still work
    capsys.readouterr()
    assert main(["generate", str(path), "-o", str(tmp_path / "out.wav")]) == 1
    line = one_line_error(capsys.readouterr().err, "generate")
    assert "event 3 field 't'" in line and shown in line


def test_event_past_the_end_of_the_audio_is_one_line(tmp_path, good, capsys):
    path = with_field(good, tmp_path, lambda text: text.replace('"t": 0.3,', '"t": 30.0,', 1))
    assert main(["generate", str(path), "-o", str(tmp_path / "out.wav")]) == 1
    assert "event 3 ends at 30.1 s, after the end" in one_line_error(capsys.readouterr().err, "generate")


def test_export_of_nan_features_is_one_line(tmp_path, capsys):
    model = small_model()
    model.features[5, 1] = np.nan
    path = save_model(model, tmp_path / "nan.chandra")
    assert main(["inspect", str(path)]) == 0  # a finding, not a refusal
    assert "FEATURES_NONFINITE" in capsys.readouterr().out
    assert main(["export", str(path), "-o", str(tmp_path / "out.json")]) == 1
    line = one_line_error(capsys.readouterr().err, "export")
    assert "features of 1 frames hold NaN or infinity (first: frame 5)" in line
    assert not (tmp_path / "out.json").exists()


def test_export_is_deterministic_and_stamps_time_only_when_asked(tmp_path):
    model = small_model()
    a = export_musichal(model, tmp_path / "a.json").read_bytes()
    b = export_musichal(model, tmp_path / "b.json").read_bytes()
    assert a == b and json.loads(a)["last_update"] == 0.0
    stamped = export_musichal(model, tmp_path / "c.json", timestamp=1_700_000_000.5)
    assert json.loads(stamped.read_text())["last_update"] == 1_700_000_000.5
    with pytest.raises(ModelFormatError, match="timestamp"):
        export_musichal(model, tmp_path / "d.json", timestamp=math.nan)


# --------------------------------------------------------------------------- --where limits


@pytest.mark.parametrize("text, fragment", [
    ("(" * 1000 + "consonance > 0.5" + ")" * 1000, f"nested deeper than {MAX_WHERE_DEPTH} levels"),
    ("not " * 100_000 + "consonance > 0.5", f"longer than the {MAX_WHERE_CHARS}-character limit"),
    ("not " * 500 + "consonance > 0.5", f"nested deeper than {MAX_WHERE_DEPTH} levels"),
    ("consonance > " + "9" * 5000, f"longer than the {MAX_WHERE_CHARS}-character limit"),
    ("consonance > " + "9" * 4000, "number literal longer than 100 characters"),
    ("consonance > 0." + "5" * 200, "number literal longer than 100 characters"),
    ("consonance > 0.5 or " * 10_000 + "f0 > 1", f"longer than the {MAX_WHERE_CHARS}-character limit"),
])
def test_hostile_where_expressions_are_one_line_constraint_errors(tmp_path, good, capsys, text, fragment):
    with pytest.raises(ConstraintError, match=re.escape(fragment)) as caught:
        parse_where(text)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400
    assert main(["generate", str(good), "-o", str(tmp_path / "out.wav"), "--where", text]) == 1
    assert fragment in one_line_error(capsys.readouterr().err, "generate")


def test_where_within_the_limits_still_works(good):
    text = "(" * MAX_WHERE_DEPTH + "consonance > 0.25" + ")" * MAX_WHERE_DEPTH
    assert parse_where(text).mask(load_model(good).events).sum() == sum(0.2 + 0.1 * t > 0.25 for t in TOKENS)
    assert parse_where("not " * (MAX_WHERE_DEPTH - 1) + "f0 > 1").fields == ["f0"]


WHERE_PIECES = ["consonance", "f0", "gesture_token", "rms_db", "t", " ", "(", ")", "not ", " and ", " or ",
                ">", ">=", "<", "==", "!=", " in ", "{", "}", ",", "0.5", "3", "-", "1e308", "9" * 120, "'x'",
                '"', "None", "True", "[", "]", "=", "!", "&&", "é", "\x00"]


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from(WHERE_PIECES), max_size=40), repeat=st.integers(1, 300))
def test_where_fuzz_parses_or_raises_constraint_error(pieces, repeat):
    text = "".join(pieces) * (repeat if len(pieces) < 4 else 1)
    events = small_model().events
    try:
        constraint = parse_where(text)
        constraint.mask(events)
    except ConstraintError as exc:
        assert "\n" not in str(exc)


# --------------------------------------------------------------------------- fuzzing documents

HOSTILE_VALUES = [None, True, False, "text", "", [], {}, [1, "a", None], {"k": [1]}, math.nan, math.inf, -math.inf,
                  1e308, -1e308, -1, 0, 1.5, -0.0, 10 ** 30, 2 ** 63, -(2 ** 63) - 1, 2 ** 64, "1e999", "\ud800"]

MUTATION = st.tuples(st.sampled_from(["swap", "drop", "add", "deepen"]), st.integers(0, 10 ** 6),
                     st.sampled_from(range(len(HOSTILE_VALUES))), st.integers(1, 80))


def paths_of(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:6]):  # a few list items suffice; keeps the path count small
            yield from paths_of(item, prefix + (i,))


def mutate(document, mutations):
    for op, where, pick, depth in mutations:
        value_picked = copy.deepcopy(HOSTILE_VALUES[pick])  # never share (or nest) one object twice
        paths = [p for p in paths_of(document) if p]
        if not paths:
            break
        path = paths[where % len(paths)]
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "swap":
            parent[key] = value_picked
        elif op == "drop":
            del parent[key]
        elif op == "add":
            target = parent[key]
            if isinstance(target, dict):
                target[f"zz{pick}"] = value_picked
            elif isinstance(target, list):
                target.append(value_picked)
            else:
                parent[key] = [target, value_picked]
        else:
            value = parent[key]
            for _ in range(depth):
                value = [value]
            parent[key] = value
    return document


def lengthen_numbers(text: str, which: int, digits: int) -> str:
    numbers = list(re.finditer(r"(?<![\w.\"])-?\d+(\.\d+)?([eE][-+]?\d+)?(?![\w.\"])", text))
    if not numbers or digits == 0:
        return text
    m = numbers[which % len(numbers)]
    return text[:m.start()] + "7" * digits + text[m.end():]


def exercise(path: Path, out_dir: Path) -> None:
    """Every consumer of a user's model file: each must succeed or raise ChandraError."""
    try:
        model = load_model(path)
    except ChandraError:
        model = None
    try:
        inspect_model(path)
    except ChandraError:
        pass
    if model is None:
        return
    try:
        generation = improvise(model, n_frames=24, seed=1, where="gesture_token != 3")
        resynthesise(model, generation)
    except ChandraError:
        pass
    try:
        export_musichal(model, out_dir / "export.json")
    except ChandraError:
        pass


def dumps(document) -> str:
    return json.dumps(document, ensure_ascii=False)  # NaN/Infinity literals as Python writes them


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4), which=st.integers(0, 10 ** 6),
       digits=st.sampled_from([0, 0, 30, 101, 5000]))
def test_fuzzed_chandra_documents_load_or_fail_cleanly(tmp_path, good, mutations, which, digits):
    document = mutate(document_of(good), mutations)
    text = lengthen_numbers(dumps(document), which, digits)
    exercise(rezip(good, tmp_path / "fuzz.chandra", text=text), tmp_path)


@pytest.fixture(scope="module")
def musichal_documents(tmp_path_factory) -> dict[str, dict]:
    path = export_musichal(small_model(), tmp_path_factory.mktemp("mh") / "export.json")
    v2 = json.loads(path.read_text())
    base = {k: v for k, v in v2.items() if k not in ("format_version", "chandra")}
    modular = {"metadata": {"trainer": "MusicHal 9000", "version": 3},
               "data": {"audio_oracle": dict(base, format_version="2.0"), "rhythm_oracle": {"patterns": []}}}
    summary = {"training_summary": {"frames": 16, "epochs": [1, 2]}, "audio_frames": v2["audio_frames"]}
    # A MusicHal *training summary* (statistics, no frames): recognised, described, never a traceback.
    training = {"training_successful": True, "events_processed": 16,
                "audio_oracle_stats": {"total_patterns": 1, "total_states": 17, "sequence_length": 16,
                                       "distance_threshold": 0.15, "distance_function": "euclidean",
                                       "feature_dimensions": 15, "is_trained": True},
                "training_statistics": {"total_training_time": 1.5, "frames_with_gesture_token": 0,
                                        "model_file": "take_model.json"},
                "sample_harmonic_patterns": [[["D", "D"], 12]]}
    modular_training = {"metadata": {"version": "2.0", "training_source": "take.wav"}, "data": training}
    return {"v2": v2, "base": base, "modular": modular, "summary": summary, "training_summary": training,
            "modular_training_summary": modular_training}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(["v2", "base", "modular", "summary", "training_summary", "modular_training_summary"]),
       mutations=st.lists(MUTATION, min_size=1, max_size=4), which=st.integers(0, 10 ** 6),
       digits=st.sampled_from([0, 0, 25, 101, 5000]))
def test_fuzzed_musichal_files_load_or_fail_cleanly(tmp_path, musichal_documents, shape, mutations, which, digits):
    document = mutate(json.loads(json.dumps(musichal_documents[shape])), mutations)
    text = lengthen_numbers(dumps(document), which, digits)
    path = tmp_path / "fuzz.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    exercise(path, tmp_path)


def test_unmutated_fuzz_seeds_are_healthy(good, musichal_documents, tmp_path):
    model = load_model(good)
    assert model.n_frames == len(TOKENS) and model.sample_rate == SR
    for shape, document in musichal_documents.items():
        path = tmp_path / f"{shape}.json"
        path.write_text(dumps(document))
        if shape == "summary":
            assert load_model(path).n_frames == len(TOKENS)  # frames without a graph still import
        elif shape.endswith("training_summary"):
            with pytest.raises(ModelFormatError, match="a MusicHal training summary, not a model"):
                load_model(path)
            report = inspect_model(path)
            assert report["format"] == "musichal-summary" and report["training"]["events_processed"] == 16
            # 16 events are too few for one pattern to mean a collapse (MIN_EVENTS_FOR_PATTERNS = 20)
            assert {f["code"] for f in report["findings"]} == {"TOKENS_MISSING", "FEATURES_LOW_DIM"}
        else:
            assert load_model(path).oracle is not None
