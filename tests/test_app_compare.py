"""AppTest for the Compare page: two runs from the URL, a changed cell, the three-column findings diff."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMPARE = str(REPO / "pages" / "9_Compare.py")
TIMEOUT = 180


def test_compare_page_opens_two_runs_from_the_url(prepared_run, lost_field_run):
    at = AppTest.from_file(COMPARE, default_timeout=TIMEOUT)
    at.query_params["a"] = f"run:{prepared_run.run_id}"
    at.query_params["b"] = f"run:{lost_field_run.run_id}"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="cmp_a_run").value == prepared_run.run_id
    assert at.selectbox(key="cmp_b_run").value == lost_field_run.run_id
    assert any("B regresses" in e.value and "gesture_token" in e.value for e in at.error)
    columns = {m.value.split("**")[1]: m.value.rsplit("— ", 1)[1] for m in at.markdown
               if m.value.startswith("**") and "— " in m.value}
    assert columns["Resolved (A only)"] == "0"
    assert int(columns["Introduced (B only)"]) >= 1  # FIELD_LOST and TOKENS_MISSING at saved
    # the link that reopens this comparison
    assert any(f"?a=run:{prepared_run.run_id}&b=run:{lost_field_run.run_id}" in c.value for c in at.caption)


def test_compare_page_refuses_paths_outside_the_allowed_folders(prepared_run, tmp_path):
    outside = tmp_path / "elsewhere.chandra"
    outside.write_bytes(prepared_run.model_path().read_bytes())
    at = AppTest.from_file(COMPARE, default_timeout=TIMEOUT)
    at.query_params["a"] = f"run:{prepared_run.run_id}"
    at.query_params["b"] = f"path:{outside}"
    at.run()
    assert not at.exception
    assert any("outside the folders this server may use" in e.value for e in at.error)
    # a path inside the runs folder is fine
    at.text_input(key="cmp_b_path").set_value(str(prepared_run.model_path())).run()
    assert not at.exception
    assert not [e.value for e in at.error if "outside" in e.value]
    assert any("difference" in s.value or "No differences" in s.value for s in at.success)


def test_compare_sources_refuse_names_that_leave_their_folder(runs_root, prepared_run, tmp_path, monkeypatch):
    from chandra.errors import ChandraError
    from dashboard import common

    assert common.compare_source_path(f"run:{prepared_run.run_id}") == prepared_run.path
    for spec in ("run:../etc", "run:", "upload:../../x.json", "upload:sub/x.json", "upload:.hidden.json",
                 "path:/etc/passwd", "nonsense:x", "run:_uploads"):
        with pytest.raises(ChandraError):
            common.compare_source_path(spec)
    saved = common.save_upload("my model.chandra", prepared_run.model_path().read_bytes(), kind="model")
    assert saved.parent.parent == common.upload_dir() and saved.name == "my_model.chandra"
    spec = f"{saved.parent.name}/{saved.name}"
    assert common.compare_source_path(f"upload:{spec}") == saved
    assert spec in common.model_uploads()
    with pytest.raises(ChandraError, match="notes.txt"):
        common.save_upload("notes.txt", b"x", kind="model")
    # a symlink inside the runs folder that points outside is still outside
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    link = runs_root / "link.json"
    link.symlink_to(outside)
    with pytest.raises(ChandraError, match="outside"):
        common.compare_source_path(f"path:{link}")
    monkeypatch.setenv("CHANDRA_DATA_DIRS", str(tmp_path))
    assert common.compare_source_path(f"path:{link}") == outside.resolve()
    link.unlink()
