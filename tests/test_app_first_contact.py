"""AppTest of what a new user meets first: "Home" in the sidebar, the segment
count and recommended K before training, the largest K that works offered in
one click, findings in plain words, and MusicHal training summaries in the
Model inspector."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
INSPECTOR = str(REPO / "pages" / "6_Model_inspector.py")
TIMEOUT = 120


def _texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_the_sidebar_starts_with_home_and_lists_every_page(runs_root):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    labels = [link.label for link in at.get("page_link") if link.label]
    pages = sorted(p.name for p in (REPO / "pages").glob("*.py"))
    assert labels[0] == "Home" and "app" not in labels
    assert {"Audio and segments", "Oracle", "Model inspector"} <= set(labels)
    assert len([label for label in labels if label != "Home"]) >= len(pages)


def test_home_shows_segments_and_the_recommended_k_before_training(runs_root):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert at.radio(key="p_k_mode").value == "auto"
    text = " ".join(_texts(at.markdown))
    # The default sample (Bach, 176 segments): K = 32 by the rule, before anything is trained.
    assert "**176 segments**" in text and "recommended **K = 32**" in text, text
    assert any(c.startswith("The rule: K is the largest vocabulary") for c in _texts(at.caption))
    at.radio(key="p_k_mode").set_value("number").run()
    at.number_input(key="p_k").set_value(500).run()
    assert any("K = 500 is more than the 176 segments" in w for w in _texts(at.warning)), _texts(at.warning)
    at.button(key="use_largest_k").click().run()
    assert not at.exception
    assert at.number_input(key="p_k").value == 176 and at.radio(key="p_k_mode").value == "number"
    at.number_input(key="p_k").set_value(500).run()
    at.button(key="use_auto_k").click().run()
    assert at.radio(key="p_k_mode").value == "auto"


def test_a_failed_vocabulary_offers_the_largest_k_that_works(failed_run, runs_root):
    from chandra.rundir import RunDirectory
    from dashboard import common

    path = runs_root / "too-many-tokens"
    if not path.exists():
        shutil.copytree(failed_run.path, path)
        meta = json.loads((path / "run.json").read_text())
        meta["run_id"] = path.name
        (path / "run.json").write_text(json.dumps(meta))
    run = RunDirectory(path)
    n = run.meta()["summaries"]["segment"]["n_segments"]
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["run_id"] = run.run_id
    at.run()
    assert not at.exception
    assert any(f"The largest K that works is {n}" in i for i in _texts(at.info)), _texts(at.info)
    errors = _texts(at.error)
    assert any("STAGE_FAILED" in e and "**What it means:**" in e and "**What to do:**" in e for e in errors), errors
    at.button(key="rerun_largest_k").click().run()
    assert not at.exception
    assert common.wait_for_job(run, timeout=120)
    assert run.config().n_tokens == n
    status = run.status()
    assert status["vocabulary"]["status"] == "done" and status["save"]["status"] == "done", status


def _summary(path: Path) -> Path:
    path.write_text(json.dumps({
        "training_successful": True, "events_processed": 3000,
        "audio_oracle_stats": {"total_patterns": 1, "total_states": 3001, "sequence_length": 3000,
                               "distance_threshold": 0.15, "distance_function": "euclidean",
                               "feature_dimensions": 768, "is_trained": True},
        "training_statistics": {"total_training_time": 812.5, "frames_with_gesture_token": 0}}))
    return path


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("CHANDRA_DATA_DIRS", str(folder))
    monkeypatch.setenv("CHANDRA_RUNS_DIR", str(tmp_path / "runs"))
    return folder


def test_inspector_shows_a_training_summary_for_what_it_is(data_folder):
    summary = _summary(data_folder / "Georgia_summary.json")
    (data_folder / "Georgia_model.json").write_text("{}")
    at = AppTest.from_file(INSPECTOR, default_timeout=TIMEOUT)
    at.run()
    at.text_input(key="inspector_path_input").set_value(str(summary)).run()
    assert not at.exception, at.exception
    assert any("MusicHal 9000 training summary" in i for i in _texts(at.info)), _texts(at.info)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["events processed"] == "3000" and metrics["distinct patterns"] == "1"
    assert metrics["distance threshold"] == "0.15" and metrics["training successful"] == "yes"
    errors = _texts(at.error)
    assert any("PATTERNS_COLLAPSED" in e and "**What it means:**" in e for e in errors), errors
    assert any("TOKENS_MISSING" in e for e in errors)
    assert not any("not a MusicHal model" in e for e in errors)
    at.button(key="inspect_described_model").click().run()  # the model the trainer wrote beside it
    assert at.text_input(key="inspector_path_input").value == str(data_folder / "Georgia_model.json")


def test_inspector_prompt_names_only_buttons_that_exist(data_folder, monkeypatch, tmp_path):
    from dashboard import common

    at = AppTest.from_file(INSPECTOR, default_timeout=TIMEOUT)
    at.run()
    prompt = next(i for i in _texts(at.info) if i.startswith("To inspect a model"))
    has_example = any(b.label.startswith("Example") for b in at.button)
    assert ("MusicHal example" in prompt) == has_example
    # A fresh clone: no ../shared/reference beside the repository.
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path / "clone" / "chandra")
    at = AppTest.from_file(INSPECTOR, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert not any(b.label.startswith("Example") for b in at.button)
    prompt = next(i for i in _texts(at.info) if i.startswith("To inspect a model"))
    assert "example" not in prompt.lower() and "upload a file" in prompt
