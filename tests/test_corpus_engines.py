"""Corpus engines: the local process pool and Ray give the sequential engine's model (dsp bit for
bit, a neural encoder within float tolerance), in file order, with the same one-line error for a
bad file, progress per file, and no worker left running after an interrupt.

Ray is a test dependency (``make test`` installs the ``cluster`` extra): one local Ray instance
(2 CPUs, no dashboard) serves the whole session and is shut down at its end."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers_audio import melody, write
from test_corpus import _write_takes

from chandra import engines
from chandra.corpus import CorpusFile, collect_inputs, train_corpus
from chandra.errors import ChandraError, ParameterError
from chandra.pipeline import TrainConfig


@pytest.fixture(scope="session")
def engine_takes(tmp_path_factory) -> list[CorpusFile]:
    return collect_inputs(_write_takes(tmp_path_factory.mktemp("engine_takes")))


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance for the session (num_cpus=2, no dashboard), shut down at the end."""
    import ray

    engines.start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sequential_dsp(engine_takes):
    return train_corpus(engine_takes, TrainConfig(n_tokens=8), engine="sequential").model


def _assert_same_model(a, b, *, exact: bool = True) -> None:
    if exact:
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.centers, b.centers)
    else:
        np.testing.assert_allclose(a.features, b.features, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.centers, b.centers, rtol=1e-4, atol=1e-5)
    assert [e["gesture_token"] for e in a.events] == [e["gesture_token"] for e in b.events]
    assert [e["take"] for e in a.events] == [e["take"] for e in b.events]
    if exact:
        assert a.events == b.events
    arrays_a, arrays_b = a.oracle.to_arrays(), b.oracle.to_arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for key, array in arrays_a.items():
        np.testing.assert_array_equal(arrays_b[key], array, err_msg=key)
    np.testing.assert_array_equal(a.oracle.take_starts, b.oracle.take_starts)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.provenance["files"] == b.provenance["files"]
    if exact:
        assert a.provenance == b.provenance and a.vocabulary == b.vocabulary


# --------------------------------------------------------------------------- same model on every engine


def test_the_local_pool_gives_the_sequential_model_bit_for_bit(engine_takes, sequential_dsp):
    seen = []
    result = train_corpus(engine_takes, TrainConfig(n_tokens=8), engine="local", workers=2,
                          progress=lambda stage, done, total: seen.append((done, total)) if stage == "files" else None)
    _assert_same_model(sequential_dsp, result.model)
    assert result.model.ledger == sequential_dsp.ledger
    # progress per file, from 0 to all of them, never backwards
    assert seen[0] == (0, 3) and seen[-1] == (3, 3) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert [a.path for a in result.state.analyses] == [f.path for f in engine_takes]  # file order


def test_ray_gives_the_sequential_model_bit_for_bit(engine_takes, sequential_dsp, ray_instance):
    result = train_corpus(engine_takes, TrainConfig(n_tokens=8), engine="ray")
    _assert_same_model(sequential_dsp, result.model)
    assert result.model.ledger == sequential_dsp.ledger
    assert ray_instance.is_initialized()  # a Ray chandra did not start is left running


def test_results_follow_file_order_not_completion_order(tmp_path, engine_takes):
    # a long take first: it finishes last in the pool, yet stays take 0
    long = write(tmp_path / "long.wav", melody(160, seed=9))
    files = [CorpusFile(str(long))] + list(engine_takes)
    local = train_corpus(files, TrainConfig(n_tokens=8), engine="local", workers=2, audio="none")
    assert [a.path for a in local.state.analyses] == [f.path for f in files]
    assert local.model.provenance["files"][0]["name"] == "long.wav"
    seq = train_corpus(files, TrainConfig(n_tokens=8), engine="sequential", audio="none")
    _assert_same_model(seq.model, local.model)


def test_a_neural_encoder_local_and_ray_match_sequential(tmp_path, engine_takes, ray_instance):
    from helpers_models import save_tiny_wav2vec2

    config = TrainConfig(encoder="wav2vec2", model=str(save_tiny_wav2vec2(tmp_path / "tiny")), layer=1,
                         n_tokens=8, device="cpu")
    seq = train_corpus(engine_takes, config, engine="sequential", audio="none")
    local = train_corpus(engine_takes, config, engine="local", workers=2, audio="none")
    ray_result = train_corpus(engine_takes, config, engine="ray", audio="none")
    for other in (local, ray_result):
        np.testing.assert_allclose(other.state.raw_features, seq.state.raw_features, rtol=1e-4, atol=1e-5)
        _assert_same_model(seq.model, other.model, exact=False)
        assert other.model.provenance["encoder"] == seq.model.provenance["encoder"]


def test_the_local_pool_fills_and_reads_the_feature_cache(tmp_path, engine_takes, sequential_dsp):
    from chandra.feature_cache import FeatureCache

    cache = FeatureCache(tmp_path / "cache")
    first = train_corpus(engine_takes, TrainConfig(n_tokens=8), engine="local", cache=cache)
    assert [a.feature_cache for a in first.state.analyses] == ["miss"] * 3 and cache.misses == 3
    again = train_corpus(engine_takes, TrainConfig(n_tokens=5), engine="local", cache=cache)
    assert [a.feature_cache for a in again.state.analyses] == ["hit"] * 3 and cache.hits == 3
    _assert_same_model(sequential_dsp, first.model)


# --------------------------------------------------------------------------- errors


@pytest.fixture()
def with_bad_files(tmp_path, engine_takes):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file at all")
    short = write(tmp_path / "short.wav", melody(1, note_seconds=0.1))
    return [engine_takes[0], CorpusFile(str(short)), engine_takes[1], CorpusFile(str(bad))], short


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_bad_file_is_the_sequential_engines_one_line_error(with_bad_files, engine, request):
    if engine == "ray":
        request.getfixturevalue("ray_instance")
    files, short = with_bad_files
    with pytest.raises(ChandraError) as expected:
        train_corpus(files, TrainConfig(n_tokens=4), engine="sequential", audio="none")
    with pytest.raises(ChandraError) as got:
        train_corpus(files, TrainConfig(n_tokens=4), engine=engine, workers=2, audio="none")
    # the first bad file in file order, whichever worker failed first; same class, same line
    assert str(got.value) == str(expected.value)
    assert type(got.value) is type(expected.value)
    assert str(got.value).startswith(str(short)) and "\n" not in str(got.value)


def test_engine_options_are_checked(engine_takes):
    with pytest.raises(ParameterError, match="engine must be one of local, sequential, ray"):
        train_corpus(engine_takes, TrainConfig(n_tokens=4), engine="spark")
    with pytest.raises(ParameterError, match="workers must be a positive integer"):
        engines.analyse_files(engine_takes, TrainConfig(n_tokens=4), workers=0)
    with pytest.raises(ParameterError, match="ray_address needs engine='ray'"):
        engines.analyse_files(engine_takes, TrainConfig(n_tokens=4), ray_address="auto")


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ChandraError, match=r"pip install chandra\[cluster\]"):
        engines.import_ray()


def test_an_interrupt_stops_the_pool_workers(tmp_path, engine_takes, monkeypatch):
    files = [CorpusFile(str(write(tmp_path / f"t{k}.wav", melody(40, seed=k)))) for k in range(6)]
    stopped: list[int] = []
    real_stop = engines._stop_pool

    def spy(executor):
        stopped.extend(p.pid for p in (executor._processes or {}).values())
        real_stop(executor)

    monkeypatch.setattr(engines, "_stop_pool", spy)

    def interrupt(stage, done, total):
        if stage == "files" and done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_corpus(files, TrainConfig(n_tokens=4), engine="local", workers=2, audio="none", progress=interrupt)
    assert stopped, "the pool was not stopped"
    for pid in stopped:  # terminated and reaped by their parent (the fork server)
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text(), pid


# --------------------------------------------------------------------------- CLI


def test_cli_engines_and_their_options(tmp_path, engine_takes, sequential_dsp, capsys):
    from chandra.cli import main
    from chandra.model import load_model

    names = [f.path for f in engine_takes]
    out = tmp_path / "local.chandra"
    assert main(["train", *names, "-o", str(out), "--tokens", "8", "--workers", "2", "--quiet"]) == 0
    _assert_same_model(sequential_dsp, load_model(out))
    capsys.readouterr()
    assert main(["train", *names, "-o", str(tmp_path / "x.chandra"), "--ray-address", "auto", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["chandra train: error: --ray-address needs --engine ray"]
    with pytest.raises(SystemExit):
        main(["train", *names, "-o", str(tmp_path / "y.chandra"), "--workers", "0"])


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_killed_training_leaves_no_worker_running(tmp_path, signal_name):
    import signal
    import subprocess
    import time

    takes = [str(write(tmp_path / f"t{k}.wav", melody(400, seed=k))) for k in range(6)]
    proc = subprocess.Popen([sys.executable, "-m", "chandra.cli", "train", *takes, "-o", str(tmp_path / "m.chandra"),
                             "--engine", "local", "--workers", "2", "--audio", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).resolve().parents[1]))
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        seen |= _descendants(proc.pid)
        if len(seen) >= 3:  # the fork server and two workers
            break
        time.sleep(0.2)
    assert proc.poll() is None and len(seen) >= 3, (seen, proc.poll())
    time.sleep(1.0)
    seen |= _descendants(proc.pid)
    proc.send_signal(getattr(signal, signal_name))
    _, err = proc.communicate(timeout=60)
    if signal_name == "SIGTERM":
        assert proc.returncode == 143 and err.strip().splitlines()[-1] == "chandra train: terminated"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in seen):
        time.sleep(0.2)
    assert not [pid for pid in seen if _alive(pid)]
    assert not (tmp_path / "m.chandra").exists()


def test_pool_workers_never_run_the_parents_main_script(tmp_path, engine_takes, sequential_dsp, monkeypatch):
    # Streamlit runs a page as sys.modules["__main__"] with the page's __file__; spawned and
    # fork-server children would run it again before their first task
    import types

    script = tmp_path / "page.py"
    script.write_text("raise SystemExit('a worker ran the parent script')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    page.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", page)
    result = train_corpus(engine_takes, TrainConfig(n_tokens=8), engine="local", workers=2)
    _assert_same_model(sequential_dsp, result.model)


def test_ray_work_that_cannot_be_stopped_is_said_not_passed_over():
    import warnings

    from chandra.engines import _stop_ray

    class FakeRay:
        def __init__(self, initialized):
            self.initialized, self.shut = initialized, False

        def cancel(self, ref, force):
            raise ValueError("force=True is not supported for actor tasks")

        def kill(self, actor):
            raise RuntimeError("actor handle not found")

        def is_initialized(self):
            return self.initialized

        def shutdown(self):
            self.shut = True

    with pytest.warns(RuntimeWarning, match="encoder actor: actor handle not found"):
        _stop_ray(FakeRay(True), {"ref": 2}, ["actor"], False)  # a cluster we did not start
    with pytest.warns(RuntimeWarning, match="the task for file 3: force=True"):
        _stop_ray(FakeRay(True), {"ref": 2}, [], False)
    ray = FakeRay(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _stop_ray(ray, {"ref": 2}, ["actor"], True)  # our own instance: shut down, nothing left behind
    assert ray.shut


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_unreachable_ray_address_is_a_clear_error_at_once(form):
    # ray.init itself retries an unreachable head node for minutes without a word
    import socket

    from chandra.engines import _check_reachable

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = form.format(port=port)
    with pytest.raises(ChandraError, match=r"cannot reach the Ray cluster at .*check --ray-address"):
        _check_reachable(address)
    with socket.socket() as server:  # and one that does: no error
        server.bind(("127.0.0.1", 0))
        server.listen()
        _check_reachable(form.format(port=server.getsockname()[1]))
    _check_reachable("auto")  # Ray's own forms are left to Ray
