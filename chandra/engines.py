"""Engines: how corpus training maps the per-file work over the takes.

Corpus training (:mod:`chandra.corpus`) splits into per-file work
(:func:`chandra.corpus.analyse_file`: decode, segment, encode, harmony) and
corpus-wide steps that need every file (vocabulary, events, oracle). An
engine runs the per-file work and hands back one
:class:`~chandra.corpus.FileAnalysis` per file, **in file order** whatever
order the files finish in, so the model does not depend on the engine:

``"sequential"``
    One file after another in this process (the baseline; easiest to debug).
``"local"`` (the default for corpora)
    A process pool over files (workers forked from a clean ``forkserver``
    process that has chandra and librosa imported, ``spawn`` where there is
    no fork server: they never inherit a loaded model or its threads). For the
    dsp encoder a worker does all of a file's work. For a neural encoder
    workers decode, segment and analyse harmony, and the encoder -- one model,
    loaded once -- runs here in the main process on each file as it arrives
    (the pool keeps decoding the next files meanwhile).
``"ray"``
    Ray tasks for the per-file work and, for a neural encoder, Ray actors
    that each hold a loaded model (one per GPU when the cluster has GPUs,
    else one per two CPUs). Without ``ray_address`` a local Ray instance is
    started (``num_cpus=workers``, no dashboard) and shut down afterwards;
    a Ray already initialised in this process (a running cluster) is used
    and left running. Ray is an optional extra: ``pip install
    chandra[cluster]``.

Same results on every engine: the per-file functions are the same and take
only explicit arguments, so dsp features are bit-identical, neural features
equal within float tolerance (the same model code on possibly another
thread count), and tokens and oracle identical for the same seed.

A file's error is the same one line on every engine (the stage's own
:class:`~chandra.errors.ChandraError`, naming the file); when several files
fail, the first in file order is reported, as the sequential engine would.
An interrupt (Ctrl-C, or SIGTERM turned into an exception by the CLI) stops
the pool's processes or cancels the Ray tasks before it propagates.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any, Sequence

from chandra.errors import ChandraError, ParameterError, first_line
from chandra.progress import ProgressCallback, report

__all__ = ["ENGINES", "EncoderHolder", "default_workers", "analyse_files", "import_ray", "start_local_ray"]

#: Engines that map :func:`chandra.corpus.analyse_file` over the files.
ENGINES = ("local", "sequential", "ray")

_PRE_ENCODE = ("load", "segment", "harmony")
_ALL = ("load", "segment", "encode", "harmony")


def default_workers() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def import_ray() -> Any:
    """``ray``, or a clear error naming the extra that installs it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ChandraError(f"the ray engine needs Ray, which is not installed ({first_line(exc)}); "
                           "install it with: pip install chandra[cluster]") from None


# --------------------------------------------------------------------------- the per-file work


def _error_record(exc: ChandraError) -> dict:
    """A ChandraError as plain values (exceptions with keyword constructors do not pickle faithfully)."""
    return {"module": type(exc).__module__, "name": type(exc).__qualname__, "message": first_line(exc),
            "parameter": getattr(exc, "parameter", None)}


def _raise_record(record: dict) -> None:
    cls: Any = ChandraError
    try:
        found = getattr(importlib.import_module(record["module"]), record["name"])
        if isinstance(found, type) and issubclass(found, ChandraError):
            cls = found
    except (ImportError, AttributeError):
        pass
    try:
        exc = cls(record["message"], parameter=record["parameter"])
    except TypeError:  # a subclass with its own constructor
        exc = ChandraError(record["message"], parameter=record["parameter"])
    raise exc


def _file_task(path: str, config: Any, label: str | None, cache: Any, keep_signal: bool,
               encode: bool) -> tuple[str, Any]:
    """One file's work in a worker: ``("ok", FileAnalysis)``, ``("ok", RunState)`` before encoding
    (``encode=False``), or ``("error", record)`` for a ChandraError."""
    from chandra.corpus import file_analysis, run_file_stages

    try:
        if encode:
            state = run_file_stages(path, config, _ALL, cache=cache)
            return "ok", file_analysis(state, label=label, keep_signal=keep_signal)
        return "ok", run_file_stages(path, config, _PRE_ENCODE)
    except ChandraError as exc:
        return "error", _error_record(exc)


class EncoderHolder:
    """One loaded encoder that encodes files decoded and segmented elsewhere.

    Used in the main process by the local engine and as a Ray actor by the
    ray engine (one per GPU or pair of CPUs). The model is loaded on the
    first file, once.
    """

    def __init__(self, config: Any):
        from chandra.encoders import make_encoder
        from chandra.pipeline import encoder_options

        self.config = config
        self.encoder = make_encoder(config.encoder, **encoder_options(config))

    def encode(self, outcome: tuple[str, Any], label: str | None, cache: Any,
               keep_signal: bool) -> tuple[str, Any]:
        """Finish a :func:`_file_task` outcome made with ``encode=False`` (errors pass through)."""
        from chandra.corpus import file_analysis, run_file_stages

        if outcome[0] != "ok":
            return outcome
        state = outcome[1]
        try:
            state = run_file_stages(state.audio_path, state.config, ("encode",), state=state, cache=cache,
                                    encoder=self.encoder)
            return "ok", file_analysis(state, label=label, keep_signal=keep_signal)
        except ChandraError as exc:
            return "error", _error_record(exc)


def _tally_cache(cache: Any, analyses: Sequence[Any]) -> None:
    """Count other processes' cache lookups on this process's cache object."""
    if cache is None:
        return
    for a in analyses:
        if a.feature_cache == "hit":
            cache.hits += 1
        elif a.feature_cache == "miss":
            cache.misses += 1
        elif a.feature_cache == "invalid":
            cache.invalid += 1


class _Collector:
    """Outcomes by file index, the first error in file order, progress per file."""

    def __init__(self, files: Sequence[Any], progress: ProgressCallback | None):
        self.files = files
        self.results: list[Any] = [None] * len(files)
        self.errors: dict[int, dict] = {}
        self.done = 0
        self.progress = progress
        report(progress, "files", 0, len(files))

    def add(self, k: int, outcome: tuple[str, Any]) -> None:
        if outcome[0] == "ok":
            self.results[k] = outcome[1]
        else:
            self.errors[k] = outcome[1]
        self.done += 1
        report(self.progress, "files", self.done, len(self.files))

    @property
    def first_error(self) -> int | None:
        return min(self.errors) if self.errors else None

    def settled_before(self, k: int) -> bool:
        """Every file before ``k`` has an outcome."""
        return all(self.results[i] is not None or i in self.errors for i in range(k))


# --------------------------------------------------------------------------- engines


def analyse_files(files: Sequence[Any], config: Any, *, engine: str = "local", workers: int | None = None,
                  ray_address: str | None = None, cache: Any = None, keep_signal: bool = True,
                  progress: ProgressCallback | None = None) -> list[Any]:
    """Run :func:`chandra.corpus.analyse_file` on every file with an engine.

    Parameters
    ----------
    files : sequence of chandra.corpus.CorpusFile
    config : chandra.pipeline.TrainConfig
    engine : {"local", "sequential", "ray"}
    workers : int, optional
        ``local``: processes in the pool (default: the CPUs, one fewer with
        a neural encoder, whose model runs here; never more than the
        files). ``ray``: CPUs of a local Ray instance (default: the CPUs);
        ignored with ``ray_address`` or a Ray already initialised.
    ray_address : str, optional
        A running Ray cluster (``ray.init(address=...)``), e.g.
        ``"ray://head:10001"`` or ``"auto"``.
    cache : chandra.feature_cache.FeatureCache, optional
        Shared by the workers (on a cluster it must be on shared storage to
        be of use); hits and misses are counted on this object.
    keep_signal : bool
        Keep each file's decoded signal (needed to embed audio).
    progress : callable, optional
        ``progress("files", done, total)`` as files finish.

    Returns
    -------
    list of chandra.corpus.FileAnalysis
        In the order of ``files``.

    Raises
    ------
    ChandraError
        The first failing file's error (in file order), as the sequential
        engine raises it; a worker that died, naming its file.
    ParameterError
        An unknown engine or a bad worker count.
    """
    if engine not in ENGINES:
        raise ParameterError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", parameter="engine")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ParameterError(f"workers must be a positive integer, got {workers!r}", parameter="workers")
    if ray_address is not None and engine != "ray":
        raise ParameterError("ray_address needs engine='ray'", parameter="ray_address")
    files = list(files)
    neural = config.encoder != "dsp"
    if engine == "ray":
        out = _ray(files, config, address=ray_address, workers=workers, cache=cache, keep_signal=keep_signal,
                   neural=neural, progress=progress)
        _tally_cache(cache, out)
        return out
    n_pool = workers or max(1, default_workers() - (1 if neural else 0))
    n_pool = min(n_pool, len(files))
    if engine == "sequential" or n_pool <= 1 and not neural or len(files) <= 1:
        return _sequential(files, config, cache=cache, keep_signal=keep_signal, neural=neural, progress=progress)
    out = _pool(files, config, workers=n_pool, cache=cache, keep_signal=keep_signal, neural=neural,
                progress=progress)
    if not neural:  # a neural encoder's cache lookups happened here, on this very object
        _tally_cache(cache, out)
    return out


def _sequential(files, config, *, cache, keep_signal, neural, progress) -> list[Any]:
    from chandra.corpus import analyse_file

    encoder = None
    if neural:  # one model for every file, loaded on the first
        encoder = EncoderHolder(config).encoder
    out = []
    report(progress, "files", 0, len(files))
    for k, item in enumerate(files):
        out.append(analyse_file(item.path, config, label=item.label, cache=cache, encoder=encoder,
                                keep_signal=keep_signal))
        report(progress, "files", k + 1, len(files))
    return out


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` (Linux ``/proc``), None when it is gone or a zombie; "" elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # pragma: no cover - no /proc: fall back on the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    return None if fields[0] in ("Z", "X") else fields[19]


def _exit_with_owner(owner: int, started: str | None) -> None:
    import time

    while _process_start(owner) == started:
        time.sleep(1.0)
    os._exit(1)  # the process that owns the pool is gone (killed without a chance to stop it)


def _worker_init(owner: int) -> None:
    """Pool workers: one BLAS/OpenMP thread each (the pool already fills the CPUs), and no life after
    the pool's owner: a worker whose owner was killed (SIGKILL, no chance to stop the pool) exits
    within a second instead of waiting forever for work (the fork server then exits too: it lives
    as long as any of its children)."""
    threading.Thread(target=_exit_with_owner, args=(owner, _process_start(owner)), daemon=True,
                     name="chandra-owner-watch").start()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    except Exception:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


#: Imported once by the fork server, so each pool worker starts with them loaded.
_PRELOAD = ["chandra.corpus", "chandra.pipeline", "chandra.audio", "chandra.segment", "chandra.encoders",
            "chandra.harmony", "chandra.feature_cache", "librosa", "scipy.signal", "threadpoolctl",
            "chandra._warm_pool"]


_SUBMITTING = threading.local()


def _guard_main_module() -> None:
    """Keep pool workers from running the parent's ``__main__`` script (once per process).

    ``spawn`` and ``forkserver`` children re-import the parent's main module
    before they run anything. For chandra's workers that is never needed
    (they run functions of :mod:`chandra.engines`), and it can be harmful: a
    Streamlit page or any script without an ``if __name__ == "__main__"``
    guard would run again in every worker. While this module starts workers
    (:func:`_starting_workers`), the preparation data sent to the child
    leaves the main module out; everyone else's processes are untouched.
    """
    from multiprocessing import spawn

    if getattr(spawn.get_preparation_data, "_chandra_guard", False):
        return
    original = spawn.get_preparation_data

    def get_preparation_data(name: str) -> dict:
        data = original(name)
        if getattr(_SUBMITTING, "active", False):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data._chandra_guard = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = get_preparation_data


class _starting_workers:
    """Context in which processes the pool starts skip the parent's main module."""

    def __enter__(self) -> None:
        _SUBMITTING.active = True

    def __exit__(self, *exc_info: Any) -> None:
        _SUBMITTING.active = False


def _pool_context() -> Any:
    """``forkserver`` where there is one (workers forked from a clean server process that has chandra
    and librosa imported: no threads or loaded model inherited, no import cost per worker), else ``spawn``."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)  # takes effect when this process's fork server starts
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - Windows


def _stop_pool(executor: Any) -> None:
    """Stop a process pool now: queued work cancelled, running workers terminated and reaped."""
    processes = list((getattr(executor, "_processes", None) or {}).values())  # shutdown forgets them
    executor.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)
        if proc.is_alive():  # pragma: no cover - a worker ignoring SIGTERM
            proc.kill()
            proc.join(timeout=5)


def _pool(files, config, *, workers, cache, keep_signal, neural, progress) -> list[Any]:
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    _guard_main_module()
    holder = EncoderHolder(config) if neural else None
    collect = _Collector(files, progress)
    executor = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                      initializer=_worker_init, initargs=(os.getpid(),))
    pending: dict[Any, int] = {}
    # Files in flight at most: enough to keep every worker busy while results are consumed,
    # few enough that decoded signals waiting for the encoder do not pile up.
    window = 2 * workers
    submitted = 0
    try:
        while collect.done < len(files):
            stop = collect.first_error is not None
            while not stop and submitted < len(files) and len(pending) < window:
                item = files[submitted]
                with _starting_workers():  # a submit may start a worker process
                    future = executor.submit(_file_task, item.path, config, item.label,
                                             None if neural else cache, keep_signal, not neural)
                pending[future] = submitted
                submitted += 1
            if not pending:
                break
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in sorted(finished, key=pending.get):
                k = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    outcome = ("error", _error_record(ChandraError(
                        f"{files[k].path}: the worker process analysing it died (out of memory, or killed)")))
                first = collect.first_error
                if holder is not None and (first is None or k < first):  # an earlier file's error comes first
                    outcome = holder.encode(outcome, files[k].label, cache, keep_signal)
                collect.add(k, outcome)
            first = collect.first_error
            if first is not None and collect.settled_before(first):
                break
    except BaseException:
        _stop_pool(executor)
        raise
    first = collect.first_error
    if first is not None:
        _stop_pool(executor)
        _raise_record(collect.errors[first])
    executor.shutdown(wait=True)
    return collect.results


# --------------------------------------------------------------------------- ray


def _package_root() -> str:
    import chandra

    return os.path.dirname(os.path.dirname(os.path.abspath(chandra.__file__)))


#: Seconds to wait for a TCP connection to a Ray cluster's address before saying it cannot be reached
#: (``ray.init`` itself retries an unreachable head node for minutes, silently).
RAY_CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """A clear error, within :data:`RAY_CONNECT_TIMEOUT_S`, when ``host:port`` (or ``ray://host:port``)
    accepts no connection; other forms ("auto", "local") are left to Ray."""
    import re
    import socket

    found = re.fullmatch(r"(?:ray://)?\[?([^\]/\s]+?)\]?:(\d{1,5})/?", address.strip())
    if found is None:
        return
    host, port = found.group(1), int(found.group(2))
    try:
        with socket.create_connection((host, port), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ChandraError(f"cannot reach the Ray cluster at {address!r} ({first_line(exc) or type(exc).__name__}; "
                           f"waited up to {RAY_CONNECT_TIMEOUT_S:g} s); check --ray-address and that the head node "
                           "is running ('ray status' on it)") from None


def _ray(files, config, *, address, workers, cache, keep_signal, neural, progress) -> list[Any]:
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        if address:
            _check_reachable(address)
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError from Ray
                raise ChandraError(f"cannot connect to the Ray cluster at {address!r}: {first_line(exc)}") from None
        else:
            start_local_ray(num_cpus=workers or default_workers())
        started_here = True
    actors: list[Any] = []
    pending: dict[Any, int] = {}
    try:
        task = ray.remote(_file_task)
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        gpus = int(resources.get("GPU", 0))
        if neural:
            actor_class = ray.remote(EncoderHolder)
            if gpus >= 1:
                actors = [actor_class.options(num_gpus=1, num_cpus=1).remote(config) for _ in range(gpus)]
            else:  # half the CPUs hold models, half decode and segment
                actors = [actor_class.options(num_cpus=1).remote(config) for _ in range(max(1, cpus // 2))]
        collect = _Collector(files, progress)
        window = 2 * (cpus + len(actors))
        submitted = 0
        cache_arg = None if neural else cache
        while collect.done < len(files):
            stop = collect.first_error is not None
            while not stop and submitted < len(files) and len(pending) < window:
                item = files[submitted]
                ref = task.remote(item.path, config, item.label, cache_arg, keep_signal, not neural)
                if neural:
                    ref = actors[submitted % len(actors)].encode.remote(ref, item.label, cache, keep_signal)
                pending[ref] = submitted
                submitted += 1
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                k = pending.pop(ref)
                collect.add(k, _ray_outcome(ray, ref, files[k].path))
            first = collect.first_error
            if first is not None and collect.settled_before(first):
                break
    finally:
        _stop_ray(ray, pending, actors, started_here)
    first = collect.first_error
    if first is not None:
        _raise_record(collect.errors[first])
    return collect.results


def _ray_outcome(ray: Any, ref: Any, path: str) -> tuple[str, Any]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError:
        raise  # a bug in a worker, not a bad file: its own traceback
    except ray.exceptions.RayError as exc:  # a worker or node died, the object was lost
        return "error", _error_record(ChandraError(f"{path}: the Ray worker analysing it failed "
                                                   f"({type(exc).__name__}: {first_line(exc)})"))


def _stop_ray(ray: Any, pending: dict, actors: list, started_here: bool) -> None:
    """Cancel what is still running and kill the encoder actors; anything that
    could not be stopped is said (a warning), never passed over."""
    left: list[str] = []
    for ref in list(pending):
        try:
            ray.cancel(ref, force=True)
        except Exception as exc:  # noqa: BLE001 - Ray raises several kinds here
            if not actors:  # an actor's tasks cannot be force-cancelled: they end with the actor, below
                left.append(f"the task for file {pending[ref] + 1}: {first_line(exc)}")
    pending.clear()
    for actor in actors:
        try:
            ray.kill(actor)
        except Exception as exc:  # noqa: BLE001
            left.append(f"encoder actor: {first_line(exc)}")
    actors.clear()
    if started_here and ray.is_initialized():
        ray.shutdown()
        left = []  # this process's own Ray instance is gone, and everything in it
    if left:
        import warnings

        warnings.warn(f"Ray work could not be stopped and may still run on the cluster: {'; '.join(left[:3])}"
                      + (f" (and {len(left) - 3} more)" if len(left) > 3 else ""), RuntimeWarning, stacklevel=2)


def _warm_worker() -> int:
    import chandra._warm_pool  # noqa: F401  (compiles librosa's numba functions in this worker)

    return os.getpid()


def start_local_ray(*, num_cpus: int | None = None, warm: bool = True) -> Any:
    """Start a local Ray instance for chandra (``num_cpus``, no dashboard, quiet); returns ``ray``.

    Its workers import chandra from the same place as this process. With
    ``warm``, one warm-up task per CPU runs the per-file stages on a second of
    synthetic sound (:mod:`chandra._warm_pool`), so the one-off cost of a
    fresh worker (imports, numba compilation) is part of the start, not of
    the first files.
    """
    ray = import_ray()
    cpus = num_cpus or default_workers()
    path = [_package_root()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    # Ray lowers its workers to nice 15 so its daemons win on a dedicated node; on a machine shared
    # with other work that starves them (2x slower than the pool in bench_corpus.py): run them at
    # normal priority, as the local engine's pool runs.
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(path)}},
             _system_config={"worker_niceness": 0})
    if warm:
        ray.get([ray.remote(_warm_worker).remote() for _ in range(cpus)])
    return ray

