"""Work beside the forward passes: a producer thread and precomputed frames.

A neural encoder's forward passes need only the signal, not the segments:
the frames of the whole file can be computed while segmentation and harmony
run. :class:`Producer` runs such work in one background thread while the
calling thread keeps torch (and torch keeps its own intra-op threads);
:class:`PrecomputedFrames` then pools the frames already computed as if it
were the encoder. :func:`chandra.pipeline.run_all` uses both.

The producer thread runs at a lower scheduling priority than the forward
passes (:data:`PRODUCER_NICE`): on a machine whose cores torch already
fills, equal priority would make the forward passes wait for the work beside
them; lowered, that work fills what the forward passes leave.

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

import os
import queue
import sys
import threading
from typing import Any, Callable, Optional

import numpy as np

from chandra.encoders.pooling import IncrementalPooler, pool_frames, segment_bounds
from chandra.progress import ProgressCallback, report

__all__ = ["Producer", "PrecomputedFrames", "FrameFeed"]


#: How much lower than its process the producer thread runs (Linux ``nice``
#: steps; ``$CHANDRA_PRODUCER_NICE``, 0 = the same priority). The forward
#: passes keep the cores torch asked for and the producer takes what they
#: leave: on 2 cores at equal priority the producer's 12 CPU-seconds per
#: 10 minutes of audio cost the forward passes 10.6 s (torch's threads
#: wait for the one that shared its core); at nice 10 the forward passes
#: ran within the noise of their solo time at 10 minutes (~5 % slower at
#: 60) and the producer still finished half-way through them
#: (benchmarks/RESULTS.md, section 15).
PRODUCER_NICE = 10


def _producer_nice() -> int:
    text = os.environ.get("CHANDRA_PRODUCER_NICE", "").strip()
    try:
        return max(0, int(text)) if text else PRODUCER_NICE
    except ValueError:
        return PRODUCER_NICE


def _lower_this_threads_priority(steps: int) -> None:
    """Raise the calling thread's nice value by ``steps`` (Linux only: elsewhere a
    thread id is no process id, and ``setpriority`` would aim at a process)."""
    if steps <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except (AttributeError, OSError):
        pass  # a priority is an optimisation, never a reason to fail


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

    def check(self) -> None:
        """Raise (stopping the work) if the calling thread has failed."""
        if self._owner._stop.is_set():
            raise _Stopped()


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
        _lower_this_threads_priority(_producer_nice())
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


class FrameFeed:
    """Frames handed from the forward passes (calling thread) to the producer as they become final.

    The calling thread passes :meth:`publish` as ``on_frames`` to
    ``encode_frames`` and calls :meth:`close` when the forward passes end
    (or fail); the producer calls :meth:`pool` to pool segment means while
    the rest of the frames are computed. Only rows already final are read,
    so the two threads never touch the same rows.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: Optional[np.ndarray] = None
        self._times: Optional[np.ndarray] = None
        self._ready = 0
        self._closed = False

    def publish(self, frames: np.ndarray, frame_times: np.ndarray, ready: int) -> None:
        """``frames[:ready]`` are final (the ``on_frames`` callback of ``encode_frames``)."""
        with self._cond:
            self._frames, self._times, self._ready = frames, frame_times, int(ready)
            self._cond.notify_all()

    def close(self) -> None:
        """No more frames will come (the forward passes ended or failed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def pool(self, segments: Any, progress: Any) -> Optional[IncrementalPooler]:
        """Pool segment means as frames become final, until every segment is pooled or the feed closes.

        ``progress`` is the producer's callback: its ``check()`` stops the
        work when the calling thread has failed. Returns the pooler (None if
        no frame was ever published); the caller finishes what is left
        with :meth:`IncrementalPooler.advance` on the final frames.
        """
        pooler = None
        seen = -1
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._ready > seen or self._closed, timeout=0.25)
                frames, times, ready, closed = self._frames, self._times, self._ready, self._closed
            check = getattr(progress, "check", None)
            if callable(check):
                check()
            if frames is not None and ready > seen:
                if pooler is None:
                    pooler = IncrementalPooler(times, segments, frames.shape[1])
                pooler.advance(frames, ready)
                seen = ready
                if pooler.done:
                    return pooler
            if closed:
                return pooler


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

    pooler : IncrementalPooler, optional
        Segment means already pooled (some or all) while the frames were
        computed; the rest are pooled here with the same arithmetic.

    The result of :meth:`encode` is the same as ``encoder.encode`` on the
    signal the frames came from (the neural encoder's ``encode`` is
    ``encode_frames`` then the mean of :func:`pool_frames`).
    """

    def __init__(self, encoder: Any, frames: np.ndarray, frame_times: np.ndarray,
                 pooler: Optional[IncrementalPooler] = None):
        self.encoder = encoder
        self.name = encoder.name
        self.frames = frames
        self.frame_times = frame_times
        self.pooler = pooler

    def encode(self, y: np.ndarray, sr: int, segments: Any, *,
               progress: Optional[ProgressCallback] = None) -> np.ndarray:
        """Mean of the precomputed frames inside each segment, float32 ``(n_segments, dim)``."""
        start, _ = segment_bounds(segments)
        report(progress, "encode", 0, 1)
        if start.size == 0:
            out = np.zeros((0, self.frames.shape[1]), dtype=np.float32)
        elif self.pooler is not None and self.pooler.planned_for(segments, self.frames.shape[0]):
            self.pooler.advance(self.frames, self.frames.shape[0])
            out = self.pooler.mean.astype(np.float32)
        else:
            mean, _ = pool_frames(self.frames, self.frame_times, segments)
            out = mean.astype(np.float32)
        report(progress, "encode", 1, 1)
        return out

    def provenance(self) -> dict:
        return self.encoder.provenance()
