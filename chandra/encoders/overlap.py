"""Work beside the forward passes: a producer thread and precomputed frames.

A neural encoder's forward passes need only the signal, not the segments:
the frames of the whole file can be computed while segmentation and harmony
run. :class:`Producer` runs such work in one background thread while the
calling thread keeps torch (and torch keeps its own intra-op threads);
:class:`PrecomputedFrames` then pools the frames already computed as if it
were the encoder. :func:`chandra.pipeline.run_all` uses both.

Rules the producer keeps:

* progress is never reported from the background thread: its reports are
  queued and delivered by the calling thread (a dashboard's callbacks must run
  in the thread that owns the page), at the calling thread's own reports and
  after :meth:`Producer.join`;
* an error in the producer is raised again, the same exception object, in the
  calling thread (so a ``ChandraError`` keeps its one-line message and
  class), and it stops the forward passes at their next batch;
* an error in the calling thread stops the producer at its next progress
  report, and :meth:`Producer.join` always waits for the thread: no thread
  outlives the call.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional

import numpy as np

from chandra.encoders.pooling import pool_frames, segment_bounds
from chandra.progress import ProgressCallback, report

__all__ = ["Producer", "PrecomputedFrames"]


class _Stopped(BaseException):
    """Raised inside the producer when the calling thread asked it to stop."""


class _QueuedProgress:
    """A progress callback for the producer thread: queues ``(stage, done, total)`` and notes."""

    def __init__(self, owner: "Producer"):
        self._owner = owner

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._owner._stop.is_set():
            raise _Stopped()
        self._owner._events.put(("report", stage, done, total))

    def note(self, stage: str, text: str) -> None:
        self._owner._events.put(("note", stage, text, None))


class Producer:
    """Run ``work(progress)`` in a background thread beside the caller's own work.

    Parameters
    ----------
    work : callable
        ``work(progress)``; ``progress`` is a callback to report through (it
        raises to stop the work when the caller has failed).
    progress : callable, optional
        The caller's callback; it receives the producer's reports, but only
        from the calling thread (see :meth:`relay` and :meth:`join`).
    name : str
        Thread name (shown by debuggers and ``threading.enumerate()``).

    Use as a context manager around the caller's work::

        with Producer(segment_and_harmony, progress=progress) as producer:
            frames = encoder.encode_frames(y, sr, progress=producer.relay)
        # the thread has ended here; its error, if any, was raised

    """

    def __init__(self, work: Callable[[Any], None], *, progress: Optional[ProgressCallback] = None,
                 name: str = "chandra-producer"):
        self._work = work
        self._progress = progress
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._work(_QueuedProgress(self))
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the calling thread, raised there
            self._error = exc

    def start(self) -> "Producer":
        self._thread.start()
        return self

    @property
    def failed(self) -> bool:
        """The producer has ended with an error."""
        return self._error is not None

    def _deliver(self) -> None:
        while True:
            try:
                kind, stage, a, b = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "report":
                report(self._progress, stage, a, b)
            else:
                handler = getattr(self._progress, "note", None)
                if callable(handler):
                    handler(stage, a)

    def relay(self, stage: str, done: int, total: int) -> None:
        """The caller's progress callback: raises the producer's error if it has
        failed (stopping the caller's loop), delivers the producer's queued
        reports, then the caller's own."""
        if self._error is not None:
            raise self._error
        self._deliver()
        report(self._progress, stage, done, total)

    def join(self) -> None:
        """Wait for the thread, deliver its remaining reports, raise its error."""
        self._thread.join()
        self._deliver()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> "Producer":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            # The caller failed (or was cancelled): stop the producer at its next
            # report, wait for it, and let the caller's error through. A
            # producer error that caused the caller's failure is that error.
            self._stop.set()
            self._thread.join()
            self._error = None
            return False
        self.join()
        return False


class PrecomputedFrames:
    """An encoder whose frames are already computed: :meth:`encode` pools them.

    Parameters
    ----------
    encoder : Encoder
        The encoder that computed the frames (its name and provenance are
        reported as its own).
    frames : np.ndarray, float32 (n_frames, dim)
    frame_times : np.ndarray, float64 (n_frames,)
        Frame centres in seconds from file start.

    The result of :meth:`encode` is the same as ``encoder.encode`` on the
    signal the frames came from (the neural encoder's ``encode`` is
    ``encode_frames`` then the mean of :func:`pool_frames`).
    """

    def __init__(self, encoder: Any, frames: np.ndarray, frame_times: np.ndarray):
        self.encoder = encoder
        self.name = encoder.name
        self.frames = frames
        self.frame_times = frame_times

    def encode(self, y: np.ndarray, sr: int, segments: Any, *,
               progress: Optional[ProgressCallback] = None) -> np.ndarray:
        """Mean of the precomputed frames inside each segment, float32 ``(n_segments, dim)``."""
        start, _ = segment_bounds(segments)
        report(progress, "encode", 0, 1)
        if start.size == 0:
            out = np.zeros((0, self.frames.shape[1]), dtype=np.float32)
        else:
            mean, _ = pool_frames(self.frames, self.frame_times, segments)
            out = mean.astype(np.float32)
        report(progress, "encode", 1, 1)
        return out

    def provenance(self) -> dict:
        return self.encoder.provenance()
