"""End-to-end: the `chandra` command on real sample audio and on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chandra.cli import main
from chandra.model import load_model

from helpers_audio import SR, melody, tone_bursts, write

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted((REPO / "sample_audio").glob("*.flac"))


def run_cli(*args, capsys=None):
    code = main([str(a) for a in args])
    out = capsys.readouterr() if capsys is not None else None
    return code, out


@pytest.fixture(scope="module")
def trained_samples(tmp_path_factory):
    out = {}
    root = tmp_path_factory.mktemp("models")
    for audio in SAMPLES:
        model = root / f"{audio.stem}.chandra"
        # K chosen by the rule (K = 64 on these 30-40 s samples would leave most tokens used once or twice).
        assert main(["train", str(audio), "-o", str(model), "--tokens", "auto", "--quiet"]) == 0
        out[audio] = model
    return out


def test_samples_exist_and_are_long_enough():
    assert len(SAMPLES) >= 2
    total = 0
    for path in SAMPLES:
        info = sf.info(str(path))
        assert info.duration >= 20.0
        total += path.stat().st_size
    assert total <= 10 * 1024 * 1024


@pytest.mark.parametrize("index", [0, 1])
def test_train_then_inspect_every_frame_has_token_and_features(trained_samples, capsys, index):
    audio = SAMPLES[index]
    model_path = trained_samples[audio]
    capsys.readouterr()
    assert main(["inspect", str(model_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    frames = report["frames"]
    assert frames > 50
    for field in ("gesture_token", "features", "t", "consonance", "ratios"):
        assert report["fields"][field]["present"] == frames, field
        assert report["fields"][field]["fraction"] == 1.0
    assert report["tokens"]["unique"] >= 16
    assert report["feature_dim"] > 16
    assert report["oracle"]["states"] == frames + 1
    assert report["provenance"]["encoder"]["encoder"] == "dsp"
    assert not [f for f in report["findings"] if f["severity"] in ("error", "warning")], report["findings"]
    model = load_model(model_path)
    duration = sf.info(str(audio)).duration
    t = np.array([e["t"] for e in model.events])
    assert t.min() >= 0 and t.max() <= duration
    assert all(e["t"] + e["duration"] <= duration + 1e-6 for e in model.events)


def test_train_prints_a_summary(tmp_path):
    audio = write(tmp_path / "m.wav", melody(40))
    proc = subprocess.run([sys.executable, "-m", "chandra.cli", "train", str(audio), "-o", str(tmp_path / "m.chandra"),
                           "--tokens", "8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "segments" in proc.stdout and "tokens" in proc.stdout and "oracle" in proc.stdout
    assert "K=8" in proc.stdout
    assert "vocabulary" in proc.stderr  # the per-stage progress bars


def test_same_seed_gives_identical_tokens_and_oracle(tmp_path):
    audio = write(tmp_path / "m.wav", melody(48))
    models = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.chandra"
        assert main(["train", str(audio), "-o", str(path), "--tokens", "8", "--seed", "3", "--quiet"]) == 0
        models.append(load_model(path))
    a, b = models
    assert a.tokens().tobytes() == b.tokens().tobytes()
    for name, arr in a.oracle.to_arrays().items():
        assert arr.tobytes() == b.oracle.to_arrays()[name].tobytes(), name
    assert a.features.tobytes() == b.features.tobytes()


def test_audio_oracle_with_auto_threshold(tmp_path, capsys):
    audio = write(tmp_path / "m.wav", melody(48))
    path = tmp_path / "f.chandra"
    assert main(["train", str(audio), "-o", str(path), "--tokens", "8", "--oracle", "features",
                 "--threshold", "auto", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    model = load_model(path)
    assert model.oracle.kind == "features" and model.oracle.threshold == pytest.approx(summary["oracle_threshold"])
    assert model.provenance["oracle"]["threshold_configured"] == "auto"
    assert model.provenance["oracle"]["search_configured"] == "auto"
    assert model.oracle.search["mode"] == model.provenance["oracle"]["search"]["mode"] == summary["oracle_search"]


def test_oracle_search_options(tmp_path, capsys):
    from chandra.cli import build_parser

    parser = build_parser()
    base = ["train", "a.wav", "-o", "m.chandra"]
    assert parser.parse_args(base).oracle_search == "auto"
    assert parser.parse_args(base + ["--exact"]).oracle_search == "exact"
    assert parser.parse_args(base + ["--oracle-search", "approximate"]).oracle_search == "approximate"
    audio = write(tmp_path / "m.wav", melody(24))
    path = tmp_path / "e.chandra"
    assert main(["train", str(audio), "-o", str(path), "--tokens", "4", "--oracle", "features", "--threshold",
                 "0.2", "--exact", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    model = load_model(path)
    assert summary["oracle_search"] == "exact" and model.oracle.search == {"mode": "exact", "requested": "exact"}
    assert model.provenance["config"]["oracle_search"] == "exact"


def _nan_wav(path: Path) -> Path:
    y = tone_bursts([0.1, 0.6], duration=2.0)
    y[SR // 2] = np.nan
    sf.write(str(path), y, SR, subtype="FLOAT")
    return path


BAD_INPUTS = {
    "empty": lambda p: (p / "empty.wav").write_bytes(b"") or p / "empty.wav",
    "text": lambda p: (p / "text.wav").write_text("not audio at all\n" * 10) or p / "text.wav",
    "truncated": lambda p: _truncate(write(p / "trunc.wav", melody(8))),
    "short": lambda p: write(p / "short.wav", tone_bursts([0.05], duration=0.3)),
    "silence": lambda p: write(p / "silence.wav", np.zeros(3 * SR, dtype=np.float32)),
    "nan": lambda p: _nan_wav(p / "nan.wav"),
}


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:40])
    return path


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_and_no_model(tmp_path, kind):
    audio = BAD_INPUTS[kind](tmp_path)
    out = tmp_path / "out" / "model.chandra"
    out.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "chandra.cli", "train", str(audio), "-o", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("chandra train: error:")
    assert "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []  # no model, no temp file


def test_k_larger_than_segments(tmp_path, capsys):
    audio = write(tmp_path / "few.wav", tone_bursts([0.2, 0.7, 1.2], duration=1.8))
    out = tmp_path / "few.chandra"
    assert main(["train", str(audio), "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "64" in err and not out.exists()
    # the library says n_tokens / reduce_k; the CLI says its own options
    assert "the largest K that works is 4 (--tokens 4)" in err and "(--tokens auto)" in err
    assert "--reduce-k" in err and "n_tokens" not in err
    assert main(["train", str(audio), "-o", str(out), "--quiet", "--reduce-k"]) == 0
    model = load_model(out)
    vocab = model.provenance["vocabulary"]
    assert vocab["effective"]["reduced"] is True
    assert vocab["configured"]["n_tokens"] == 64 and vocab["effective"]["n_tokens"] < 64
    assert model.vocabulary["n_tokens"] == vocab["effective"]["n_tokens"]


def test_inspect_bad_model_file(tmp_path, capsys):
    bad = tmp_path / "bad.chandra"
    bad.write_text("{ not json")
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("chandra inspect: error:")


def test_wav2vec2_trains_end_to_end_from_local_dir(tmp_path, capsys):
    from helpers_models import save_tiny_wav2vec2

    model_dir = save_tiny_wav2vec2(tmp_path / "tiny")
    audio = write(tmp_path / "m.wav", melody(40))
    out = tmp_path / "w.chandra"
    assert main(["train", str(audio), "-o", str(out), "--encoder", "wav2vec2", "--model", str(model_dir),
                 "--layer", "1", "--tokens", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fields"]["gesture_token"]["present"] == report["frames"]
    enc = report["provenance"]["encoder"]
    assert enc["encoder"] == "wav2vec2" and enc["model_type"] == "wav2vec2"
    assert report["feature_dim"] == 32


def test_wav2vec2_missing_weights_is_one_clear_line(tmp_path, capsys):
    audio = write(tmp_path / "m.wav", melody(16))
    out = tmp_path / "w.chandra"
    assert main(["train", str(audio), "-o", str(out), "--encoder", "wav2vec2", "--model",
                 "no-such-org/no-such-model", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-org/no-such-model" in err[0]
    assert "pass --model DIR" in err[0] and "model=DIR" not in err[0]
    assert not out.exists()


def test_inspect_text_shows_encoder_provenance(trained_samples, capsys):
    model_path = trained_samples[SAMPLES[0]]
    capsys.readouterr()
    assert main(["inspect", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "encoder: encoder=dsp" in out and "dim=102" in out
    assert f"input: {SAMPLES[0].name}" in out


def test_generate_is_deterministic_and_reports_fallbacks(trained_samples, tmp_path, capsys):
    model_path = trained_samples[SAMPLES[0]]
    a, b, c = tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        assert main(["generate", str(model_path), "-o", str(out), "--seconds", "8", "--seed", str(seed),
                     "--continuity", "0.6"]) == 0
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    info = sf.info(str(a))
    assert info.samplerate == 22050 and 7.5 < info.duration < 10.0
    capsys.readouterr()
    assert main(["generate", str(model_path), "-o", str(tmp_path / "d.wav"), "--seconds", "8", "--json",
                 "--where", "consonance > 0.1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_fallbacks"] == len(summary["fallbacks"])
    assert all({"step", "reason", "choice"} <= set(fb) for fb in summary["fallbacks"])


def test_generate_writes_the_generation_record_the_dashboard_reads(trained_samples, tmp_path, capsys):
    from chandra.generation_record import read_generation_record

    model_path = trained_samples[SAMPLES[0]]
    out, record = tmp_path / "g.wav", tmp_path / "g.json"
    capsys.readouterr()
    assert main(["generate", str(model_path), "-o", str(out), "--seconds", "4", "--seed", "3",
                 "--record", str(record), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    doc = read_generation_record(record)
    assert doc["wav"] == out.name and doc["model_path"] == str(model_path.resolve())
    assert doc["summary"]["n_frames"] == printed["n_frames"] == len(doc["generation"]["frames"])
    assert doc["ledger_entry"]["stage"] == "generated"
    # the record names its WAV beside it: another folder is refused, and nothing is written
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    assert main(["generate", str(model_path), "-o", str(tmp_path / "h.wav"), "--seconds", "2",
                 "--record", str(elsewhere / "h.json")]) == 1
    assert "same folder" in capsys.readouterr().err and not (tmp_path / "h.wav").exists()


def test_a_closed_output_pipe_ends_quietly(trained_samples):
    # `chandra inspect m --json | head -c 1`: the reader goes away; no traceback,
    # no "Broken pipe" error line.
    proc = subprocess.Popen([sys.executable, "-m", "chandra.cli", "inspect", str(trained_samples[SAMPLES[0]]),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 1 and err == ""


@pytest.mark.parametrize("args, expected", [
    (["--continuity", "1.5"], "--continuity must be in [0, 1], got 1.5"),
    (["--seconds", "-2"], "--seconds must be a positive number, got -2.0"),
    (["--min-lrs", "-1"], "--min-lrs must be a non-negative integer, got -1"),
    (["--max-continuous", "0"], "--max-continuous must be a positive integer or None, got 0"),
])
def test_generate_argument_errors_name_the_options(trained_samples, tmp_path, capsys, args, expected):
    # improvise() checks its arguments (one rule) and names its parameters;
    # the CLI reports them as the options the user typed.
    out = tmp_path / "bad.wav"
    assert main(["generate", str(trained_samples[SAMPLES[0]]), "-o", str(out), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"chandra generate: error: {expected}"] and not out.exists()


def test_cli_terms_leave_quoted_text_and_other_words_alone():
    from chandra.cli import _in_cli_terms, _option_names, build_parser

    train = _option_names(build_parser(), "train")
    assert _in_cli_terms("pca_components=40 exceeds min(n_samples=10, n_features=4); lower pca_components",
                         train) == "--pca 40 exceeds min(n_samples=10, n_features=4); lower --pca"
    assert _in_cli_terms("re-run with trust_remote_code=True if you trust it", train) == \
        "re-run with --trust-remote-code if you trust it"
    assert _in_cli_terms("random_state must be an integer", train) == "--seed must be an integer"
    assert _in_cli_terms("unknown field 'n_tokens'; n_tokens_=8", train) == "unknown field 'n_tokens'; n_tokens_=8"
    assert _in_cli_terms("model 'x' needs code; a model directory", train) == "model 'x' needs code; a model directory"


def test_generate_weight_mode_taboo_and_quality_report(trained_samples, tmp_path, capsys):
    model_path = trained_samples[SAMPLES[0]]
    capsys.readouterr()
    assert main(["generate", str(model_path), "-o", str(tmp_path / "w.wav"), "--seconds", "8", "--json",
                 "--where", "consonance > 0.1", "--where-mode", "weight", "--weight", "8", "--taboo", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("unique_frames", "coverage", "max_frame_share", "top2_share", "longest_copy_s",
                "longest_copy_frames", "mean_jump_lrs", "median_jump_lrs", "n_restarts", "n_fallbacks"):
        assert key in summary, key
    assert summary["qualifying_frames"] == load_model(model_path).n_frames  # weight mode: every frame playable
    assert 0.0 < summary["top2_share"] <= 1.0 and summary["longest_copy_s"] > 0
    # usage mistakes are one readable line each
    for extra, message in ((["--weight", "3"], "--weight applies to --where-mode weight"),
                           (["--where-mode", "weight", "--weight", "0", "--where", "consonance > 0.1"],
                            "--weight must be positive"),
                           (["--where-mode", "weight"], "needs a --where"),
                           (["--taboo", "-2"], "--taboo must be")):
        out = tmp_path / "bad.wav"
        assert main(["generate", str(model_path), "-o", str(out), "--seconds", "2", *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and not out.exists()


def test_generate_with_an_impossible_constraint_fails_clearly(trained_samples, tmp_path, capsys):
    out = tmp_path / "x.wav"
    assert main(["generate", str(trained_samples[SAMPLES[0]]), "-o", str(out), "--where", "consonance > 5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no frame satisfies" in err[0] and not out.exists()


def test_export_musichal_round_trips(trained_samples, tmp_path, capsys):
    model_path = trained_samples[SAMPLES[1]]
    out = tmp_path / "mh.json"
    assert main(["export", str(model_path), "--format", "musichal", "-o", str(out)]) == 0
    original, back = load_model(model_path), load_model(out)
    assert back.source_format == "musichal-v2"
    assert back.events == original.events
    assert np.array_equal(back.features, original.features)
    assert np.array_equal(back.oracle.sfx, original.oracle.sfx)
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fields"]["gesture_token"]["present"] == report["frames"]


HEAVY = ("numpy", "numba", "scipy", "sklearn", "librosa", "torch", "transformers", "pandas", "plotly", "umap")


def _imported_by(args: list[str], cwd: Path) -> tuple[set[str], str]:
    """Top-level heavy packages a fresh ``chandra`` process imports for ``args`` (and its stdout)."""
    code = ("import json, sys, runpy\n"
            f"sys.argv = ['chandra'] + {args!r}\n"
            "try:\n    runpy.run_module('chandra.cli', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            f"print('IMPORTED', json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("IMPORTED")][-1]
    return set(json.loads(line[len("IMPORTED "):])), out


def test_help_and_inspect_import_only_what_they_need(trained_samples):
    # `chandra --help` needs no numpy at all; inspecting a small model loads
    # numpy but none of the pipeline stack (no numba: small checks run
    # interpreted; no scipy, scikit-learn, librosa, torch).
    root = Path(__file__).resolve().parents[1]
    imported, out = _imported_by(["--help"], root)
    assert imported == set() and "inspect" in out and "train" in out
    model = next(iter(trained_samples.values()))
    imported, out = _imported_by(["inspect", str(model)], root)
    assert imported == {"numpy"}, imported
    assert "gesture_token" in out
    imported, _ = _imported_by(["train", "--help"], root)
    assert "numpy" in imported  # the train options' choices come from the library


def test_an_error_quoting_a_huge_path_stays_one_readable_line(tmp_path, capsys):
    from chandra.errors import MAX_SHOWN_CHARS

    manifest = tmp_path / "long.csv"
    manifest.write_text("a" * 5000 + ".wav\n")  # the operating system quotes the whole name back
    assert main(["train", "--manifest", str(manifest), "-o", str(tmp_path / "m.chandra")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more characters)" in err
    assert len(err) < MAX_SHOWN_CHARS + 200
