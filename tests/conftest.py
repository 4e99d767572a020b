"""Shared pytest fixtures.

* ``tests/`` is put on ``sys.path`` so helper modules import as
  ``helpers_models`` / ``helpers_audio``.
* The model hub is never contacted (``HF_HUB_OFFLINE``). numba's cache is
  the one every entry point uses (``$NUMBA_CACHE_DIR``, else
  ``~/.cache/chandra/numba``: set by ``import chandra``, imported here before
  anything can import numba), so ``make venv``'s warm-up serves the tests.
* ``prepared_run``: a run directory on a short synthetic melody (dsp
  encoder, K = 16) with every stage executed, made once per session in a
  temporary runs root that ``CHANDRA_RUNS_DIR`` points at.
* ``lost_field_run``: a copy of it whose ledger says ``gesture_token`` was on
  every record at "events" and on none at "saved" / "reloaded" — the
  documented MusicHal failure — so pages must show the loss.
* ``failed_run``: a run whose vocabulary stage failed (K larger than the
  number of segments).
* ``feature_cache_root`` (automatic): ``CHANDRA_CACHE_DIR`` points at a
  temporary folder for the session, so ``chandra train``'s default feature
  cache never writes to the user's home.
* Under ``CI=true`` a skip is a failure unless its reason says it needs
  hardware CI lacks (``"needs GPU ..."``): the hooks of :mod:`ci_skips`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402,F401  (hooks)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# AppTest sessions and test servers start job processes only when a job needs one
# (tests/test_jobs.py covers the warmed prestart itself).
os.environ.setdefault("CHANDRA_PRESTART_WORKERS", "0")
import chandra  # noqa: E402,F401  (sets NUMBA_CACHE_DIR before numba is imported)

PREPARED_RUN_ID = "prepared-k16"
LOST_FIELD_RUN_ID = "lost-gesture-token"
FAILED_RUN_ID = "failed-vocabulary"


def _synthetic_clip(path: Path, *, seconds: float = 10.0, sr: int = 22050) -> Path:
    """A repetitive melody of harmonic notes (enough distinct segments for
    K = 16 and recurring structure for the oracle)."""
    import soundfile as sf

    try:
        from helpers_audio import melody

        y = melody(int(seconds / 0.25), sr=sr)
    except ImportError:  # pragma: no cover - helpers_audio belongs to another suite
        rng = np.random.default_rng(0)
        t = np.arange(int(0.25 * sr)) / sr
        env = np.exp(-t * 12.0) * np.minimum(1.0, t / 0.003)
        notes = [220.0 * 2 ** (k / 12) for k in (0, 4, 7, 12, 7, 4, 2, 5, 9, 11)]
        y = 1e-4 * rng.standard_normal(int(seconds * sr))
        for i in range(int(seconds / 0.25) - 1):
            f = notes[i % len(notes)]
            note = sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 5)) * env * 0.3
            a = int(i * 0.25 * sr)
            y[a: a + note.size] += note
    sf.write(path, np.asarray(y, dtype=np.float32), sr)
    return path


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):
    """Temporary runs root; ``CHANDRA_RUNS_DIR`` points at it for the session."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHANDRA_RUNS_DIR", str(root))
        yield root


@pytest.fixture(scope="session", autouse=True)
def feature_cache_root(tmp_path_factory):
    """``CHANDRA_CACHE_DIR`` for the session: the CLI's default feature cache
    (``chandra train``) lands in a temporary folder, never in the user's home."""
    root = tmp_path_factory.mktemp("chandra-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHANDRA_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="session")
def synthetic_audio(tmp_path_factory) -> Path:
    return _synthetic_clip(tmp_path_factory.mktemp("audio") / "melody.wav")


@pytest.fixture(scope="session")
def prepared_run(runs_root, synthetic_audio):
    """A :class:`chandra.rundir.RunDirectory` with every stage done (dsp, K = 16)."""
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    os.environ["CHANDRA_RUNS_DIR"] = str(runs_root)
    run = RunDirectory.create(runs_root, synthetic_audio, TrainConfig(encoder="dsp", n_tokens=16, seed=0),
                              run_id=PREPARED_RUN_ID)
    run.execute("all")
    status = run.status()
    assert all(info["status"] == "done" for info in status.values()), status
    return run


@pytest.fixture(scope="session")
def lost_field_run(prepared_run):
    """A copy of ``prepared_run`` whose ledger loses ``gesture_token`` at "saved"."""
    from chandra.rundir import RunDirectory

    path = prepared_run.path.parent / LOST_FIELD_RUN_ID
    if not path.exists():
        shutil.copytree(prepared_run.path, path)
        meta = json.loads((path / "run.json").read_text())
        meta["run_id"] = LOST_FIELD_RUN_ID
        stages = [e["stage"] for e in meta["ledger"]]
        assert meta["ledger"][stages.index("events")]["fields"]["gesture_token"]["present"] > 0
        for entry in meta["ledger"]:
            if entry["stage"] in ("saved", "reloaded"):
                entry["fields"]["gesture_token"] = {"present": 0, "fraction": 0.0, "types": []}
                entry["tokens"] = None
        meta["findings"] = []
        (path / "run.json").write_text(json.dumps(meta, indent=1))
    return RunDirectory(path)


@pytest.fixture(scope="session")
def failed_run(runs_root, synthetic_audio):
    """A run whose vocabulary stage failed: K = 1000 and too few segments."""
    from chandra.errors import ChandraError
    from chandra.pipeline import TrainConfig
    from chandra.rundir import RunDirectory

    path = runs_root / FAILED_RUN_ID
    if path.exists():
        return RunDirectory(path)
    run = RunDirectory.create(runs_root, synthetic_audio, TrainConfig(n_tokens=1000), run_id=FAILED_RUN_ID)
    with pytest.raises(ChandraError):
        run.execute("all")
    assert run.status()["vocabulary"]["status"] == "failed"
    return run


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory) -> dict:
    """Each bundled sample (sample_audio/*.flac) trained with the defaults and
    K chosen by the rule (``n_tokens="auto"``: 32 on both; K = 64 would leave
    most tokens used once or twice) and saved: ``{audio path: model path}``."""
    from chandra.pipeline import TrainConfig, train

    root = tmp_path_factory.mktemp("sample_models")
    out = {}
    for audio in sorted((REPO / "sample_audio").glob("*.flac")):
        path = root / f"{audio.stem}.chandra"
        train(audio, TrainConfig(n_tokens="auto"), output=path)
        out[audio] = path
    return out
