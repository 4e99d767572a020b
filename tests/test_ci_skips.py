"""The CI=true rule: a skipped test fails, unless it needs hardware CI lacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


TESTS_DIR = Path(__file__).resolve().parent

INNER = '''
import pytest

def test_passes():
    pass

def test_skips_for_a_missing_file():
    pytest.skip("reference model not available at /nowhere.json")

@pytest.mark.skipif(True, reason="chromium is not installed")
def test_skipif_marker():
    pass

def test_needs_a_gpu():
    pytest.skip("needs GPU: CUDA kernels")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
'''

INNER_MODULE_SKIP = '''
import pytest
pytest.importorskip("chandra_no_such_module_for_ci_test")

def test_never_collected():
    pass
'''


def _outcomes(tmp_path: Path, ci: str | None) -> dict[str, int]:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "test_inner_module.py").write_text(INNER_MODULE_SKIP)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only ci_skips: faster and independent of installed plugins
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "ci_skips", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), "--continue-on-collection-errors", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    last = proc.stdout.strip().splitlines()[-1]
    counts = {word.removesuffix("s") if word == "errors" else word: int(n)
              for n, word in re.findall(r"(\d+) (\w+)", last)}
    counts["_stdout"] = proc.stdout  # for the assertion messages
    return counts


def test_without_ci_skips_stay_skips(tmp_path):
    got = _outcomes(tmp_path, "false")
    assert (got.get("passed"), got.get("skipped"), got.get("xfailed"), got.get("failed"), got.get("error")) == \
        (1, 4, 1, None, None), got["_stdout"]


def test_under_ci_a_skip_is_a_failure_unless_it_needs_hardware(tmp_path):
    got = _outcomes(tmp_path, "true")
    out = got["_stdout"]
    # A skip in the test body fails; a skipif marker (setup) and a module-level
    # importorskip (collection; without --continue-on-collection-errors it
    # stops the whole run) are errors. Nothing passes silently.
    assert (got.get("passed"), got.get("skipped"), got.get("xfailed"), got.get("failed"), got.get("error")) == \
        (1, 1, 1, 1, 2), out
    assert "skipped under CI=true: reference model not available" in out
    assert "skipped under CI=true: chromium is not installed" in out
    assert "chandra_no_such_module_for_ci_test" in out
    assert "test_needs_a_gpu" not in out  # still a plain skip, not reported as a failure
