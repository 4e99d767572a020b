"""The job queue (chandra.jobs): limit, order, position, cancel, failure isolation,
and run jobs mirrored into run.json."""

from __future__ import annotations

import os
import threading
import time

import pytest

from chandra import jobs
from chandra.errors import ChandraError
from chandra.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobBusyError, JobQueue


def _gate_job(log, name, gate: threading.Event, state):
    def fn(job):
        with state["lock"]:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
            log.append(("start", name))
        try:
            assert gate.wait(20), "gate never opened"
        finally:
            with state["lock"]:
                state["running"] -= 1
                log.append(("end", name))
        return name
    return fn


def _wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_limit_is_respected_and_order_is_fifo(limit):
    q = JobQueue(limit)
    log, state, gate = [], {"lock": threading.Lock(), "running": 0, "peak": 0}, threading.Event()
    submitted = [q.submit(f"k{i}", _gate_job(log, i, gate, state)) for i in range(7)]
    assert _wait_until(lambda: q.counts()["running"] == limit)
    time.sleep(0.05)  # nothing more starts while the slots are full
    assert q.counts() == {"queued": 7 - limit, "running": limit, "max_workers": limit}
    assert [j.status for j in submitted] == [RUNNING] * limit + [QUEUED] * (7 - limit)
    assert [j.position for j in submitted[limit:]] == list(range(1, 8 - limit))
    assert q.position(f"k{limit}") == 1 and q.position("k0") is None
    gate.set()
    assert q.wait_all(20)
    assert state["peak"] == limit
    assert [j.status for j in submitted] == [DONE] * 7 and [j.result for j in submitted] == list(range(7))
    starts = [name for kind, name in log if kind == "start"]
    assert starts == sorted(starts)  # first in, first started


def test_positions_move_up_and_cancel_of_a_queued_job():
    q = JobQueue(1)
    gate = threading.Event()
    ran = []
    first = q.submit("a", lambda job: gate.wait(20))
    assert _wait_until(lambda: first.status == RUNNING)
    b = q.submit("b", lambda job: ran.append("b"))
    c = q.submit("c", lambda job: ran.append("c"))
    d = q.submit("d", lambda job: ran.append("d"))
    assert (b.position, c.position, d.position) == (1, 2, 3)
    assert q.cancel("c") is True
    assert c.status == CANCELLED and c.position is None and c.wait(0)
    assert (b.position, d.position) == (1, 2)
    assert q.cancel("c") is False  # no live job any more
    gate.set()
    assert q.wait_all(20)
    assert ran == ["b", "d"] and b.status == DONE and d.status == DONE


def test_cancel_of_a_running_job_is_a_request_it_polls():
    q = JobQueue(1)
    started = threading.Event()

    def fn(job):
        started.set()
        while not job.cancel_requested():
            time.sleep(0.01)
        from chandra.progress import Cancelled

        raise Cancelled("stopped")

    job = q.submit("x", fn)
    assert started.wait(10)
    assert q.cancel("x") is True
    assert job.wait(10) and job.status == CANCELLED


def test_a_failing_job_does_not_stop_the_queue():
    q = JobQueue(1)

    def boom(job):
        raise RuntimeError("kaput")

    def crash(job):
        raise SystemExit(3)  # even BaseException is contained

    bad = q.submit("bad", boom)
    worse = q.submit("worse", crash)
    good = q.submit("good", lambda job: 42)
    assert q.wait_all(20)
    assert bad.status == FAILED and isinstance(bad.error, RuntimeError)
    assert bad.snapshot()["error"] == "RuntimeError: kaput"
    assert worse.status == FAILED and good.status == DONE and good.result == 42


def test_one_live_job_per_key_and_resubmit_after_it_ends():
    q = JobQueue(1)
    gate = threading.Event()
    j1 = q.submit("k", lambda job: gate.wait(20))
    with pytest.raises(JobBusyError):
        q.submit("k", lambda job: None)
    gate.set()
    assert j1.wait(10)
    j2 = q.submit("k", lambda job: "again")
    assert j2.wait(10) and j2.result == "again" and q.get("k") is j2


def test_on_change_sees_every_state_in_order_of_seq():
    q = JobQueue(1)
    gate = threading.Event()
    seen: dict[str, list] = {}
    lock = threading.Lock()

    def hook(job, snap):
        with lock:
            seen.setdefault(job.key, []).append((snap["seq"], snap["status"], snap["position"]))

    q.submit("a", lambda job: gate.wait(20), on_change=hook)
    assert _wait_until(lambda: q.counts()["running"] == 1)
    q.submit("b", lambda job: None, on_change=hook)
    gate.set()
    assert q.wait_all(20)
    time.sleep(0.05)
    for key in ("a", "b"):
        states = [s for _, s, _ in sorted(seen[key])]
        assert states[0] == QUEUED and states[-1] == DONE and RUNNING in states, states
    assert sorted(seen["b"])[0][2] == 1  # queued at position 1


def test_limit_can_grow_while_jobs_wait():
    q = JobQueue(1)
    gate = threading.Event()
    a = q.submit("a", lambda job: gate.wait(20))
    b = q.submit("b", lambda job: gate.wait(20))
    assert _wait_until(lambda: a.status == RUNNING)
    assert b.status == QUEUED
    q.max_workers = 2
    assert _wait_until(lambda: b.status == RUNNING)
    gate.set()
    assert q.wait_all(20)


def test_default_limit_and_configuration(monkeypatch):
    monkeypatch.setenv("CHANDRA_MAX_JOBS", "3")
    assert jobs.default_max_jobs() == 3
    for bad in ("0", "-1", "many"):
        monkeypatch.setenv("CHANDRA_MAX_JOBS", bad)
        with pytest.raises(ChandraError, match="CHANDRA_MAX_JOBS"):
            jobs.default_max_jobs()
    monkeypatch.delenv("CHANDRA_MAX_JOBS")
    assert jobs.default_max_jobs() == max(1, jobs._cpu_count() // 2)
    with pytest.raises(ChandraError):
        JobQueue(0)


def test_shutdown_cancels_queued_and_refuses_new():
    q = JobQueue(1)
    gate = threading.Event()
    q.submit("a", lambda job: gate.wait(20))
    b = q.submit("b", lambda job: None)
    threading.Timer(0.1, gate.set).start()
    q.shutdown(timeout=20)
    assert b.status == CANCELLED
    with pytest.raises(ChandraError, match="shut down"):
        q.submit("c", lambda job: None)


# --------------------------------------------------------------------------- run jobs


@pytest.mark.parametrize("isolate", [False, True])
def test_submit_run_mirrors_the_job_into_run_json(tmp_path, isolate):
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    from helpers_audio import melody, write

    audio = write(tmp_path / "m.wav", melody(24))
    q = JobQueue(1)
    gate = threading.Event()
    q.submit("blocker", lambda job: gate.wait(30))
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=4))
    other = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=4))
    job = jobs.submit_run(run, ["load", "segment"], queue=q, isolate=isolate)
    job2 = jobs.submit_run(other, ["load"], queue=q, isolate=isolate)
    assert run.job()["status"] == "queued" and run.job()["position"] == 1
    assert other.job()["position"] == 2 and other.job()["stages"] == "load"
    with pytest.raises(JobBusyError):
        jobs.submit_run(run, "all", queue=q)
    assert q.cancel(job2.key)
    assert other.job()["status"] == "cancelled"
    gate.set()
    assert job.wait(120)
    assert job.status == DONE, job.error
    assert _wait_until(lambda: run.job()["status"] == "done")
    status = run.status()
    assert status["segment"]["status"] == "done" and status["encode"]["status"] == "not run"
    assert run.progress() is None  # cleared at the end
    assert other.status()["load"]["status"] == "not run"  # a cancelled queued run never started


def test_worker_processes_are_reused_and_run_at_lower_priority():
    q = JobQueue(1)
    own = os.nice(0)
    call = "helpers_jobs:pid_and_nice"
    first = jobs._run_isolated(jobs.Job(key="a", fn=None), q, "unused", None, call=call)
    second = jobs._run_isolated(jobs.Job(key="b", fn=None), q, "unused", None, call=call)
    assert first[0] != os.getpid() and first[0] == second[0]  # one long-lived worker
    assert first[1] == min(19, own + jobs.JOB_NICE)
    with pytest.raises(ChandraError, match="KeyError: 'boom'"):  # an error is an answer; the worker lives
        jobs._run_isolated(jobs.Job(key="c", fn=None), q, "unused", None, call="helpers_jobs:raise_plain")
    third = jobs._run_isolated(jobs.Job(key="d", fn=None), q, "unused", None, call=call)
    assert third[0] == first[0]


def test_a_dead_worker_fails_its_job_and_the_next_job_runs(tmp_path):
    """A worker that dies (native crash, OOM kill) fails the job and its
    running stage; the pool is rebuilt for the next job."""
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    from helpers_audio import melody, write

    audio = write(tmp_path / "m.wav", melody(24))
    run = RunDirectory.create(tmp_path / "runs", audio, TrainConfig(n_tokens=4))
    q = JobQueue(1)
    with pytest.raises(jobs.WorkerDied, match="worker process died"):
        jobs._run_isolated(jobs.Job(key="c", fn=None), q, str(run.path), "all",
                           call="helpers_jobs:crash_during_a_stage")
    info = run.status()["segment"]
    assert info["status"] == "failed" and "worker process" in info["error"]
    job = jobs.submit_run(run, ["load"], queue=q)
    assert job.wait(120) and job.status == DONE, job.error
    assert run.status()["load"]["status"] == "done"


def test_a_prestarted_worker_warms_up_before_its_first_job(monkeypatch):
    """The dashboard starts one job process when the server starts; it trains a tiny
    synthetic take before reading work, so the first real Run all pays for no imports."""
    monkeypatch.delenv("CHANDRA_PRESTART_WORKERS", raising=False)
    jobs.shutdown_worker_pool()
    assert jobs.prestart_workers(1) == 1
    assert jobs.prestart_workers(1) == 0  # one idle process is enough
    q = JobQueue(1)
    pid, loaded = jobs._run_isolated(jobs.Job(key="w", fn=None), q, "unused", None,
                                     call="helpers_jobs:loaded_modules")
    assert pid != os.getpid()
    assert loaded == ["chandra.pipeline", "librosa", "sklearn.cluster", "soundfile"]  # warmed by training
    monkeypatch.setenv("CHANDRA_PRESTART_WORKERS", "0")
    assert jobs.prestart_workers(1) == 0
    jobs.shutdown_worker_pool()


def test_an_unwarmed_worker_has_not_loaded_the_pipeline():
    jobs.shutdown_worker_pool()
    q = JobQueue(1)
    _, loaded = jobs._run_isolated(jobs.Job(key="u", fn=None), q, "unused", None,
                                   call="helpers_jobs:loaded_modules")
    assert "librosa" not in loaded and "sklearn.cluster" not in loaded
    jobs.shutdown_worker_pool()
