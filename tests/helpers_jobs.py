"""Functions run in job worker processes by tests/test_jobs.py (importable
in a spawned child, unlike functions defined in a test module)."""

from __future__ import annotations

import os


def crash_during_a_stage(path: str, stages) -> None:
    """Mark a stage running, then die the way a native crash would."""
    from chandra.rundir import RunDirectory

    RunDirectory(path)._set_stage("segment", status="running")
    os._exit(139)


def pid_and_nice(path: str, stages) -> list[int]:
    print("stray output must not break the worker protocol")
    return [os.getpid(), os.nice(0)]


def raise_plain(path: str, stages) -> None:
    raise KeyError("boom")
