"""A process-wide job queue with a concurrency limit (for servers such as the dashboard).

Training is CPU-bound: ten sessions that each start a run at once on two
cores make every run ten times slower and starve the pages of CPU. A
:class:`JobQueue` runs at most ``max_workers`` jobs at a time, in
submission order; the others wait, each knowing its position, and can be
cancelled before they start. A job that fails (or raises anything) is
recorded on its :class:`Job` and never stops the queue.

:func:`default_queue` is the queue of the process (created on first use);
its size is ``max_workers=`` from :func:`configure`, else
``$CHANDRA_MAX_JOBS``, else one job per two cores (at least one).
:func:`submit_run` puts a run directory's stages on a queue and mirrors the
job's state into the run's ``run.json`` (``job``: status, position), so any
page or process sees "queued, position 3" or "running".

Run jobs execute in worker *processes* by default (``isolate=True``): up to
``max_workers`` long-lived ``python -m chandra.jobs --worker`` processes,
started on first use, reused, and run at a lower scheduling priority
(``nice`` :data:`JOB_NICE`, ``$CHANDRA_JOB_NICE``). The server's own
process then only renders pages: a stage that holds the GIL for seconds
(numba kernels, feature loops) cannot stall every session, the operating
system gives page requests the CPU first, and a decoder that crashes on a
hostile file takes down one worker (the job and its stage fail, a new
worker is started for the next job), not the server. The cost is one
process start (imports, about 2 s) per worker, not per job.

Streamlit-free; nothing here imports the pipeline until a run job starts.
"""

from __future__ import annotations

import collections
import datetime as _dt
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pathlib import Path

from chandra.errors import ChandraError, first_line

__all__ = [
    "Job",
    "JobQueue",
    "JobBusyError",
    "QUEUED",
    "RUNNING",
    "DONE",
    "FAILED",
    "CANCELLED",
    "default_max_jobs",
    "default_queue",
    "configure",
    "submit_run",
    "JOB_NICE",
    "WorkerDied",
    "shutdown_worker_pool",
]

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
_LIVE = (QUEUED, RUNNING)


#: Niceness added to job worker processes (pages first, training second).
JOB_NICE = 10


class JobBusyError(ChandraError):
    """A job for the same key is already queued or running."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_max_jobs() -> int:
    """``$CHANDRA_MAX_JOBS`` when set (a positive integer), else one job per
    two cores, at least one.

    Raises
    ------
    ChandraError
        ``$CHANDRA_MAX_JOBS`` is not a positive integer.
    """
    text = os.environ.get("CHANDRA_MAX_JOBS", "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise ChandraError(f"CHANDRA_MAX_JOBS must be a positive integer, got {text!r}")
        return value
    return max(1, _cpu_count() // 2)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(eq=False)
class Job:
    """One unit of work on a :class:`JobQueue`.

    Attributes
    ----------
    key : str
        Identity: at most one live (queued or running) job per key.
    label : str
        Free text for display (e.g. the stages of a run).
    status : str
        ``"queued"``, ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``.
    error : BaseException or None
        What the job raised (``"failed"``), or the cancellation.
    result : any
        What the job's function returned (``"done"``).
    submitted, started, finished : float or None
        ``time.time()`` stamps.
    """

    key: str
    fn: Callable[["Job"], Any] = field(repr=False)
    label: str = ""
    on_change: Callable[["Job", dict], None] | None = field(default=None, repr=False)
    status: str = QUEUED
    error: BaseException | None = None
    result: Any = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    position: int | None = None
    seq: int = 0
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def alive(self) -> bool:
        """Queued or running."""
        return self.status in _LIVE

    def cancel_requested(self) -> bool:
        """True once :meth:`JobQueue.cancel` was called for this job (a
        running job's function polls this to stop early)."""
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; True when it has."""
        return self._done.wait(timeout)

    def snapshot(self) -> dict:
        """JSON-able state: ``status``, ``position`` (1-based among queued
        jobs, None otherwise), ``label``, times, the error message and
        ``seq`` (increases with every change, across the queue's jobs)."""
        return {"status": self.status, "position": self.position, "label": self.label, "seq": self.seq,
                "submitted": self.submitted, "started": self.started, "finished": self.finished,
                "error": None if self.error is None else (str(self.error) if isinstance(self.error, ChandraError)
                                                          else f"{type(self.error).__name__}: {self.error}")}


class JobQueue:
    """First-in first-out jobs, at most ``max_workers`` running at once.

    Parameters
    ----------
    max_workers : int, optional
        Concurrency limit (default :func:`default_max_jobs`).
    name : str
        Prefix of the worker threads' names.

    Notes
    -----
    Worker threads are daemons started on demand (at most ``max_workers``);
    a worker that finds the queue empty exits. ``on_change(job, snapshot)``
    callbacks run outside the queue's lock, in the thread that made the
    change, with the :meth:`Job.snapshot` taken under the lock at the
    change; callbacks of different threads may arrive out of order, so a
    callback that stores state should keep the highest ``seq``. An
    exception in a callback is swallowed (it must not stop the queue).
    """

    def __init__(self, max_workers: int | None = None, *, name: str = "chandra-job"):
        self._max = self._check_max(default_max_jobs() if max_workers is None else max_workers)
        self._name = name
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._latest: dict[str, Job] = {}
        self._workers = 0
        self._closed = False
        self._seq = 0

    # ------------------------------------------------------------------ config

    @staticmethod
    def _check_max(value: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ChandraError(f"max_workers must be a positive integer, got {value!r}")
        return value

    @property
    def max_workers(self) -> int:
        return self._max

    @max_workers.setter
    def max_workers(self, value: int) -> None:
        """Change the limit; more workers start at once when it grows, and
        running jobs finish when it shrinks."""
        with self._cond:
            self._max = self._check_max(value)
            self._spawn_locked()

    # ------------------------------------------------------------------ submit / cancel

    def submit(self, key: str, fn: Callable[[Job], Any], *, label: str = "",
               on_change: Callable[[Job, dict], None] | None = None) -> Job:
        """Queue ``fn(job)`` under ``key``.

        Raises
        ------
        JobBusyError
            A job for ``key`` is already queued or running.
        ChandraError
            The queue was shut down.
        """
        key = str(key)
        with self._cond:
            if self._closed:
                raise ChandraError("the job queue is shut down")
            current = self._latest.get(key)
            if current is not None and current.alive:
                raise JobBusyError(f"{key}: a job is already {current.status}")
            job = Job(key=key, fn=fn, label=label, on_change=on_change)
            self._queue.append(job)
            self._latest[key] = job
            changed = self._renumber_locked()
            self._spawn_locked()
            changed = self._stamp_locked(changed)
        self._notify(changed)
        return job

    def cancel(self, key: str) -> bool:
        """Cancel the live job of ``key``: a queued job is removed at once
        (status ``"cancelled"``); a running job is asked to stop (its
        function sees :meth:`Job.cancel_requested`). False when no job is live.
        """
        with self._cond:
            job = self._latest.get(str(key))
            if job is None or not job.alive:
                return False
            job._cancel.set()
            changed: list = []
            if job.status == QUEUED:
                self._queue.remove(job)
                job.status, job.finished, job.position = CANCELLED, time.time(), None
                job.error = None
                changed = self._stamp_locked([job] + self._renumber_locked())
                job._done.set()
                self._cond.notify_all()
        self._notify(changed)
        return True

    # ------------------------------------------------------------------ queries

    def get(self, key: str) -> Job | None:
        """The latest job submitted under ``key`` (live or finished), or None."""
        with self._cond:
            return self._latest.get(str(key))

    def position(self, key: str) -> int | None:
        """1-based place of ``key``'s job among the queued jobs, or None."""
        job = self.get(key)
        return job.position if job is not None and job.status == QUEUED else None

    def counts(self) -> dict[str, int]:
        """``{"queued": n, "running": m, "max_workers": k}``."""
        with self._cond:
            return {"queued": len(self._queue), "running": len(self._running), "max_workers": self._max}

    def jobs(self) -> list[Job]:
        """Live jobs: running first, then queued in order."""
        with self._cond:
            return sorted(self._running, key=lambda j: j.started or 0.0) + list(self._queue)

    def wait(self, key: str, timeout: float | None = None) -> bool:
        """Block until ``key``'s latest job ends (True), or ``timeout`` (False).
        True when there is no job."""
        job = self.get(key)
        return True if job is None else job.wait(timeout)

    def wait_all(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def shutdown(self, *, cancel_queued: bool = True, timeout: float | None = None) -> None:
        """Refuse new jobs, cancel queued ones (by default) and wait for the
        running ones."""
        with self._cond:
            self._closed = True
            keys = [j.key for j in self._queue] if cancel_queued else []
        for key in keys:
            self.cancel(key)
        self.wait_all(timeout)

    # ------------------------------------------------------------------ internals

    def _renumber_locked(self) -> list[Job]:
        changed = []
        for i, job in enumerate(self._queue, start=1):
            if job.position != i:
                job.position = i
                changed.append(job)
        return changed

    def _stamp_locked(self, jobs: list[Job]) -> list[tuple[Job, dict]]:
        out = []
        for job in jobs:
            self._seq += 1
            job.seq = self._seq
            out.append((job, job.snapshot()))
        return out

    def _spawn_locked(self) -> None:
        while self._workers < self._max and len(self._queue) > self._workers - len(self._running):
            self._workers += 1
            threading.Thread(target=self._work, name=f"{self._name}-{self._workers}", daemon=True).start()

    def _notify(self, changes: list[tuple[Job, dict]]) -> None:
        for job, snapshot in changes:
            if job.on_change is not None:
                try:
                    job.on_change(job, snapshot)
                except Exception as exc:  # noqa: BLE001 - a display hook must not stop the queue
                    print(f"chandra jobs: the progress display of job {job.key!r} failed "
                          f"({type(exc).__name__}: {first_line(exc)})", file=sys.stderr)

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._queue or len(self._running) >= self._max:
                    self._workers -= 1
                    self._cond.notify_all()
                    return
                job = self._queue.popleft()
                job.status, job.started, job.position = RUNNING, time.time(), None
                self._running.add(job)
                changed = self._stamp_locked([job] + self._renumber_locked())
            self._notify(changed)
            try:
                job.result = job.fn(job)
            except BaseException as exc:  # noqa: BLE001 - recorded on the job; the queue goes on
                job.error = exc
                from chandra.progress import Cancelled

                status = CANCELLED if isinstance(exc, Cancelled) else FAILED
            else:
                status = DONE
            with self._cond:
                self._running.discard(job)
                job.status, job.finished = status, time.time()
                changed = self._stamp_locked([job])
                self._cond.notify_all()
            self._notify(changed)
            job._done.set()


_default: JobQueue | None = None
_default_guard = threading.Lock()


def default_queue() -> JobQueue:
    """The process-wide queue (created on first use; see :func:`configure`)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = JobQueue()
        return _default


def configure(max_workers: int | None = None) -> JobQueue:
    """Set the process-wide queue's limit (``None``: :func:`default_max_jobs`)."""
    queue = default_queue()
    queue.max_workers = default_max_jobs() if max_workers is None else max_workers
    return queue


# --------------------------------------------------------------------------- worker processes
#
# A worker is ``python -m chandra.jobs --worker``: it reads one JSON request
# per line on stdin ({"path", "stages"} or {"call": "module:function", ...}
# for tests), runs it, and answers one JSON line on its own copy of stdout
# (the real stdout is pointed at stderr, so nothing the pipeline prints can
# corrupt the protocol). Workers are long-lived and reused; one that dies is
# replaced. Plain subprocesses rather than multiprocessing: a spawned
# multiprocessing child re-runs the parent's __main__, which under streamlit
# is the app script itself.

_idle: list["_Worker"] = []
_all_workers: "set[_Worker]" = set()
_workers_guard = threading.Lock()


def _job_nice() -> int:
    text = os.environ.get("CHANDRA_JOB_NICE", "").strip()
    try:
        return int(text) if text else JOB_NICE
    except ValueError:
        return JOB_NICE


class WorkerDied(ChandraError):
    """A job's worker process ended without answering (a crash in native
    code, killed for memory or by a signal)."""


class _Worker:
    def __init__(self, *, warm: bool = False) -> None:
        import subprocess

        # The worker imports what this process imports (chandra from the
        # same checkout first), as a spawned multiprocessing child would.
        package_root = str(Path(__file__).resolve().parents[1])
        paths = [package_root] + [p for p in sys.path if p and os.path.isdir(p)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.proc = subprocess.Popen([sys.executable, "-m", "chandra.jobs", "--worker", str(_job_nice())]
                                     + (["--warm"] if warm else []),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                     encoding="utf-8", bufsize=1)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, message: dict) -> dict:
        import json

        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError, ValueError):
            line = ""
        if not line:
            code = self.proc.wait()
            raise WorkerDied(f"the job's worker process died (exit status {code})")
        return json.loads(line)

    def stop(self) -> None:
        if self.alive:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - then it is killed
                self.proc.kill()
                self.proc.wait(timeout=5)


def _checkout() -> _Worker:
    with _workers_guard:
        while _idle:
            worker = _idle.pop()
            if worker.alive:
                return worker
            _all_workers.discard(worker)
    worker = _Worker()
    with _workers_guard:
        _all_workers.add(worker)
    return worker


def _checkin(worker: _Worker, keep: int) -> None:
    with _workers_guard:
        if worker.alive and len(_idle) < keep:
            _idle.append(worker)
            return
        _all_workers.discard(worker)
    worker.stop()


def prestart_workers(n: int = 1) -> int:
    """Start up to ``n`` idle job processes now, each warming itself up
    (:func:`_warm_worker`) before it takes work, so the first Run all after a
    server start does not pay for importing and loading the pipeline.

    Returns how many were started. Off when ``$CHANDRA_PRESTART_WORKERS`` is
    "0" (the test suite sets it so AppTest sessions start no processes).
    """
    if os.environ.get("CHANDRA_PRESTART_WORKERS", "").strip() == "0":
        return 0
    started = 0
    with _workers_guard:
        missing = max(0, n - len(_idle))
    for _ in range(missing):
        worker = _Worker(warm=True)
        with _workers_guard:
            _all_workers.add(worker)
            _idle.append(worker)
        started += 1
    return started


def _warm_worker() -> None:
    """Train a 2-second synthetic take once (dsp, K = 2, into a temporary
    folder), so this process has imported and loaded everything a run needs
    (librosa, scikit-learn, numba kernels from their cache). Never fails: a
    problem here shows up, with its real message, in the first real run."""
    import tempfile

    try:
        import numpy as np
        import soundfile as sf

        from chandra.pipeline import TrainConfig, train

        sr = 22050
        t = np.arange(2 * sr) / sr
        y = np.zeros_like(t)
        for k, start in enumerate((0.1, 0.6, 1.1, 1.6)):
            on = (t >= start) & (t < start + 0.35)
            y[on] += 0.4 * np.sin(2 * np.pi * (220 + 110 * k) * t[on]) * np.exp(-6 * (t[on] - start))
        with tempfile.TemporaryDirectory(prefix="chandra-worker-warm-") as folder:
            path = os.path.join(folder, "warm.wav")
            sf.write(path, y.astype(np.float32), sr)
            train(path, TrainConfig(n_tokens=2), output=os.path.join(folder, "warm.chandra"))
    except Exception as exc:  # noqa: BLE001 - warming is best effort; the first real run shows the real error
        print(f"chandra job worker: warm-up skipped ({type(exc).__name__}: {first_line(exc)})", file=sys.stderr)


def shutdown_worker_pool() -> None:
    """Stop the idle job processes (busy ones stop after their job)."""
    with _workers_guard:
        idle = list(_idle)
        _idle.clear()
        for worker in idle:
            _all_workers.discard(worker)
    for worker in idle:
        worker.stop()


def _run_isolated(job: Job, queue: JobQueue, path: str, stages: Any, *, call: str | None = None) -> Any:
    """Execute in a worker process; a cancel request becomes the run's
    ``cancel`` file, which the worker sees at its next progress report.
    (``call`` = ``"module:function"`` runs ``function(path, stages)``
    instead, for tests.)"""
    from chandra.progress import Cancelled
    from chandra.rundir import STATUS_CANCELLED, STATUS_FAILED, STATUS_RUNNING, RunDirectory

    worker = _checkout()
    answer: dict = {}
    done = threading.Event()

    def watch_cancel() -> None:
        while not done.wait(0.2):
            if job.cancel_requested():
                RunDirectory(path).request_cancel()
                return

    watcher = threading.Thread(target=watch_cancel, daemon=True)
    watcher.start()
    try:
        answer = worker.request({"path": path, "stages": stages, "call": call})
    except WorkerDied:
        # The stage it was running cannot say so itself.
        run = RunDirectory(path) if Path(path, "run.json").exists() else None
        if run is not None:
            for stage, info in run.status().items():
                if info.get("status") == STATUS_RUNNING:
                    run._set_stage(stage, status=STATUS_CANCELLED if job.cancel_requested() else STATUS_FAILED,
                                   error="the worker process running this stage died "
                                         "(a crash in native code, out of memory or killed)")
        raise
    finally:
        done.set()
        _checkin(worker, queue.max_workers)
    if "result" in answer:
        return answer["result"]
    kind, message = answer.get("kind"), answer.get("error", "unknown error")
    if kind == "cancelled":
        raise Cancelled(message)
    raise ChandraError(message)


def _worker_main(nice: int, *, warm: bool = False) -> int:  # python -m chandra.jobs --worker NICE [--warm]
    import importlib
    import json

    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:
            pass
    from chandra.progress import Cancelled

    if warm:  # before the first request is read: a job sent meanwhile waits for a ready process
        _warm_worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            if request.get("call"):
                module, name = request["call"].split(":")
                result = getattr(importlib.import_module(module), name)(request["path"], request["stages"])
            else:
                from chandra.rundir import RunDirectory

                result = RunDirectory(request["path"]).execute(request["stages"])
            reply = {"result": result}
        except Cancelled as exc:
            reply = {"kind": "cancelled", "error": str(exc)}
        except ChandraError as exc:
            reply = {"kind": "chandra", "error": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - reported to the server, the worker lives on
            reply = {"kind": "other", "error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps(reply, default=str) + "\n")
    return 0


def submit_run(run: Any, stages: str | list[str] = "all", *, queue: JobQueue | None = None,
               isolate: bool = True) -> Job:
    """Queue ``run.execute(stages)`` for a :class:`~chandra.rundir.RunDirectory`.

    The job's key is the run directory's real path. While it waits, the
    run's ``run.json`` says ``job: {"status": "queued", "position": n}``;
    then ``running``, and finally ``done``, ``failed`` or ``cancelled``.
    Cancelling a running job stops it at its next progress report.

    Parameters
    ----------
    isolate : bool
        Run in a worker process (default; see the module notes) rather than
        in the queue's worker thread.

    Raises
    ------
    JobBusyError
        The run already has a queued or running job.
    """
    from chandra.rundir import RunDirectory

    queue = queue or default_queue()
    path = os.path.realpath(run.path)
    label = stages if isinstance(stages, str) else ",".join(stages)

    def work(job: Job) -> Any:
        if isolate:
            return _run_isolated(job, queue, path, stages)
        return RunDirectory(path).execute(stages, should_cancel=job.cancel_requested)

    pid = os.getpid()

    def mirror(job: Job, snapshot: dict) -> None:
        info = {**snapshot, "stages": label, "pid": pid, "updated": _now()}

        def change(meta: dict) -> None:
            old = meta.get("job")
            # Hooks of different threads may arrive out of order: keep the newest.
            if isinstance(old, dict) and old.get("pid") == pid and int(old.get("seq") or 0) > info["seq"]:
                return
            meta["job"] = info

        RunDirectory(path).update_meta(change)

    return queue.submit(path, work, label=label, on_change=mirror)


if __name__ == "__main__":

    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        words = sys.argv[2:]
        numbers = [w for w in words if w != "--warm"]
        sys.exit(_worker_main(int(numbers[0]) if numbers else JOB_NICE, warm="--warm" in words))
    sys.exit("usage: python -m chandra.jobs --worker [NICE] [--warm]  (a job worker, started by the dashboard)")
