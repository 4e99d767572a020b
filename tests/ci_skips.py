"""Pytest plugin: under ``CI=true`` a skipped test is a failed test.

A test that skips because a dependency, a browser or a reference file is
missing would let a broken CI machine pass in silence. When the environment
variable ``CI`` is ``"true"`` (as GitHub Actions, GitLab CI and most other CI
services set it), every skip becomes a failure that shows the skip's reason,
except skips whose reason says they need hardware CI machines lack: the
reason starts with one of :data:`HARDWARE_REASONS` (``"needs GPU"`` ...).
Expected failures (``xfail``) are not skips and are left alone.

Loaded by ``tests/conftest.py``; also usable on its own as ``-p ci_skips``
with ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["HARDWARE_REASONS", "under_ci", "pytest_runtest_makereport", "pytest_make_collect_report"]

#: Skip reasons that stay skips under CI: hardware a CI machine does not have.
HARDWARE_REASONS = ("needs GPU", "needs CUDA", "needs hardware")


def under_ci() -> bool:
    """True when ``CI`` is set to ``"true"`` (case-insensitive)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, lineno, message)
        text = str(longrepr[2])
    else:
        text = str(longrepr)
    return text.removeprefix("Skipped: ").strip()


def _fail_skip_under_ci(report) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not under_ci():
        return
    reason = _reason(report)
    if reason.startswith(HARDWARE_REASONS):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI=true: {reason} -- CI must provide every dependency and reference file; "
        f"only a skip whose reason starts with one of {', '.join(map(repr, HARDWARE_REASONS))} may stay a skip"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # module-level pytest.importorskip(...) skips the whole module at collection
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())
