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


def append_many(path: str, tag: str, n: int) -> None:
    """``n`` locked read-modify-writes of a run's run.json, each appending
    ``f"{tag}{i}"`` to its "hammer" list (run from several threads and
    processes by tests/test_rundir.py)."""
    from chandra.rundir import RunDirectory

    run = RunDirectory(path)
    for i in range(n):
        run.update_meta(lambda meta, i=i: meta.setdefault("hammer", []).append(f"{tag}{i}"))


if __name__ == "__main__":
    import sys

    append_many(sys.argv[1], sys.argv[2], int(sys.argv[3]))


def loaded_modules(path: str, stages) -> list:
    """Which of the pipeline's heavy modules this worker process has loaded, and its pid."""
    import sys

    return [os.getpid(), sorted(m for m in ("librosa", "sklearn.cluster", "chandra.pipeline", "soundfile")
                                if m in sys.modules)]
