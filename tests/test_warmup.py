"""One numba cache for every entry point, the install-time warm-up's marker,
the "compiling (first run only)" note, and progress that stays quiet in logs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chandra import warmup
from chandra.pipeline import RunState, TrainConfig, run_stage

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, env: dict) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_chandra_chooses_numbas_cache_before_numba_loads(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    code = "import chandra, numba; print(numba.config.CACHE_DIR)"
    assert _python(code, env) == str(tmp_path / "xdg" / "chandra" / "numba")
    # the job worker, the dashboard and the CLI all start by importing chandra
    code = "import chandra.jobs, chandra.cli, os; print(os.environ['NUMBA_CACHE_DIR'])"
    assert _python(code, env) == str(tmp_path / "xdg" / "chandra" / "numba")
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")  # a user's own choice is kept
    assert _python("import chandra, numba; print(numba.config.CACHE_DIR)", env) == str(tmp_path / "mine")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    return tmp_path / "numba"


def test_marker_records_warm_keys_for_these_versions(cache):
    assert warmup.warm_keys() == set() and not warmup.is_warm()
    assert warmup.compile_note("segment") == warmup.COMPILING_NOTE
    warmup.mark_warm("segment", "oracle:tokens")
    assert warmup.warm_keys() == {"segment", "oracle:tokens"} and warmup.compile_note("segment") is None
    marker = warmup.marker_path()
    assert marker.parent == cache and json.loads(marker.read_text())["key"] == warmup.cache_key()
    doc = json.loads(marker.read_text())
    doc["key"]["versions"]["numba"] = "0.0.1"  # another numba: its cache is not ours
    marker.write_text(json.dumps(doc))
    assert warmup.warm_keys() == set() and warmup.compile_note("segment") == warmup.COMPILING_NOTE
    warmup.mark_warm(*warmup.ALL_KEYS)
    assert warmup.is_warm()


def test_jit_keys_name_what_compiles():
    assert warmup.jit_key("segment") == "segment" and warmup.jit_key("load") is None
    assert warmup.jit_key("encode", TrainConfig()) == "encode:dsp"
    assert warmup.jit_key("encode", TrainConfig(encoder="wav2vec2")) is None
    assert warmup.jit_key("oracle", TrainConfig(oracle="features")) == "oracle:features"
    assert warmup.jit_key("vocabulary", TrainConfig()) is None
    assert set(warmup.ALL_KEYS) >= {warmup.jit_key(s, TrainConfig()) for s in ("segment", "encode", "oracle")}


class _Recorder:
    def __init__(self):
        self.notes = []

    def __call__(self, stage, done, total):
        pass

    def note(self, stage, text):
        self.notes.append((stage, text))


def test_a_cold_stage_says_it_is_compiling_once(cache, tmp_path):
    from helpers_audio import melody, write

    audio = write(tmp_path / "m.wav", melody(12))
    progress = _Recorder()
    state = RunState(audio_path=str(audio), config=TrainConfig(n_tokens=4))
    run_stage(state, "load", progress=progress)
    run_stage(state, "segment", progress=progress)
    assert progress.notes == [("segment", warmup.COMPILING_NOTE)]
    assert "segment" in warmup.warm_keys()  # marked warm when it ended
    run_stage(state, "segment", progress=progress)
    assert progress.notes == [("segment", warmup.COMPILING_NOTE)]  # not again


def test_run_directory_progress_carries_the_note(cache, tmp_path):
    from helpers_audio import melody, write

    from chandra.rundir import RunDirectory

    audio = write(tmp_path / "m.wav", melody(12))
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=4))
    seen = []
    original = run.write_progress

    def spy(record):
        seen.append(record)
        original(record)

    run.write_progress = spy
    run.execute(["load", "segment"])
    assert any(r and r.get("stage") == "segment" and r.get("note") == warmup.COMPILING_NOTE for r in seen)
    assert not any(r and r.get("stage") == "load" and r.get("note") for r in seen)


def test_progress_in_a_log_is_a_few_lines_not_one_per_tick():
    from chandra.cli import _Bars

    log = io.StringIO()
    bars = _Bars(enabled=True, stream=log)
    bars.note("segment", warmup.COMPILING_NOTE)
    for i in range(1001):
        bars("segment", i, 1000)
    for i in range(501):
        bars("encode", i, 500)
    bars.close()
    lines = log.getvalue().splitlines()
    assert lines == [f"segment: {warmup.COMPILING_NOTE}", "segment: started", lines[2], "encode: started", lines[4]]
    assert lines[2].startswith("segment: done in") and lines[4].startswith("encode: done in")
    assert "\r" not in log.getvalue()


def test_warm_up_entry_point_does_nothing_when_warm(cache, capsys):
    warmup.mark_warm(*warmup.ALL_KEYS)
    assert warmup.main(["--if-cold"]) == 0
    assert "already warm" in capsys.readouterr().out
