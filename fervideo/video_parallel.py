"""Decoding one video on several threads: its sampled frames cut into runs that each begin at a key frame,
decoded by a pool of PyAV decoders at once and handed on in video order.

One decoder per video bounds the GPU path (docs/speed.md: 62-78 % of the end-to-end time waited for frames,
the GPU 2-5 % busy), and FFmpeg's own frame threads gave 1.0-1.4x because one Python thread still demuxed every
packet and converted every sampled frame. Here each run is demuxed, decoded and converted by its own
decoder, PyAV releasing the GIL inside FFmpeg. A run starts at a key frame, which nothing before it is needed to
decode; frames shown before it (an open GOP's leading pictures) belong to the previous run and are dropped
there, and the run ends at the next run's key frame. The frames are those of the one-decoder path, byte for
byte (tests/test_video_parallel.py).

One trial seek decides whether the file seeks well (the first frame after it is the key frame, with a
timestamp); a file that does not gets one decoder. A run whose own seek still lands wrong (a damaged key frame)
is decoded again from the start of the file: slow, never wrong. A damaged packet loses its own frames, as
on the one-decoder path; a damaged timestamp that points past the run's end ends the run early, and the frames
lost are counted like any other (VideoStream.warnings).
Memory: each decoder holds at most `buffer_frames` converted frames ahead of the consumer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from fervideo.utils import put_unless_stopped
from fervideo.video_pyav import decode_sampled, frame_tolerance, index_offset, indexed_frames, to_rgb

log = logging.getLogger(__name__)

_RUN_DONE = object()


class _SeekNotTrusted(Exception):
    """The first frame after a seek is not the run's key frame: decode the run from the file's start."""


def key_frame_runs(key_indices: np.ndarray, wanted: np.ndarray, frame_count: int,
                   min_wanted: int) -> list[tuple[int, int]]:
    """[first, end) frame-index ranges that tile [0, frame_count): each but the first begins at a key frame,
    and each holds at least `min_wanted` of the (sorted) `wanted` indices, except perhaps the last. A run is
    the unit one decoder takes: long enough that its seek is cheap beside its decoding."""
    runs, first = [], 0
    for key in np.unique(np.asarray(key_indices, dtype=np.int64)):
        if 0 < key < frame_count and np.searchsorted(wanted, key) - np.searchsorted(wanted, first) >= min_wanted:
            runs.append((first, int(key)))
            first = int(key)
    runs.append((first, frame_count))
    return runs


def _frames_from(container, start_times: np.ndarray, tolerance: float, first: int,
                 seek: bool = True, wanted: set[int] | None = None) -> Iterator[tuple[int, object]]:
    """(index, frame) from frame `first` on: after a seek to its key frame, or (seek=False) from the file's start;
    with `wanted`, H.264 non-reference frames outside it may be skipped (video_pyav.indexed_frames).
    Raises _SeekNotTrusted when the seek does not land on frame `first`."""
    import av

    stream = container.streams.video[0]
    if not stream.codec_context.is_open:  # a reused container's codec is open already
        stream.thread_count = 1  # the decoders are the threads
    if not seek or first == 0:
        yield from ((i, f) for i, f in indexed_frames(container, stream, start_times, tolerance, wanted=wanted)
                    if i is not None and i >= first)
        return
    try:
        # Backward from half a frame past the key frame's start: lands on that key frame, whatever the rounding.
        offset = index_offset(stream, start_times, tolerance)  # the container's times, not the index's
        container.seek(int((start_times[first] + offset + tolerance) / stream.time_base), stream=stream,
                       backward=True)
    except av.error.FFmpegError as exc:
        raise _SeekNotTrusted from exc
    placed = False  # counting frames without a timestamp needs a placed frame first
    for index, frame in indexed_frames(container, stream, start_times, tolerance, counter=None, wanted=wanted):
        if not placed:
            if index is None or index > first:
                raise _SeekNotTrusted
            placed = index == first
            if not placed:
                continue  # a leading picture of the previous run
        yield index, frame


def _seeks_land_on_key_frames(path: Path, start_times: np.ndarray, first: int) -> bool:
    """One trial seek before any decoder starts: a file whose frames carry no timestamps, or whose container
    seeks imprecisely, gets one decoder rather than every run decoded again from the start."""
    import av

    try:
        with av.open(str(path)) as container:
            return next(_frames_from(container, start_times, frame_tolerance(start_times), first), None) is not None
    except (_SeekNotTrusted, av.error.FFmpegError):
        return False


class _OpenContainers:
    """One open container per decoder thread, reused from run to run: opening an hour-long MP4 parses its
    index (~15 ms measured), once per run otherwise. Closed when the video is done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_thread: dict[int, object] = {}
        self._lock = threading.Lock()

    def get(self):
        import av

        with self._lock:
            container = self._by_thread.get(threading.get_ident())
        if container is None:
            container = av.open(str(self.path))
            with self._lock:
                self._by_thread[threading.get_ident()] = container
        return container

    def discard(self) -> None:
        """Close this thread's container (after a failure its state is unknown)."""
        with self._lock:
            container = self._by_thread.pop(threading.get_ident(), None)
        if container is not None:
            container.close()

    def close_all(self) -> None:
        with self._lock:
            containers, self._by_thread = list(self._by_thread.values()), {}
        for container in containers:
            container.close()


def _decode_run(containers: _OpenContainers, start_times: np.ndarray, wanted_set: set[int], run: tuple[int, int],
                size: tuple[int, int] | None, hand_on: Callable[[object], bool], seek: bool = True,
                skip_unsampled: bool = True) -> None:
    """Hand on (index, RGB frame) for the wanted frames of `run` in presentation order, then _RUN_DONE.
    A run that starts at the file's start, or is decoded from it, gets a fresh container (no seek needed)."""
    import av

    first, end = run
    last_handed = first - 1
    fresh = not seek or first == 0
    with av.open(str(containers.path)) if fresh else nullcontext(containers.get()) as container:
        frames = _frames_from(container, start_times, frame_tolerance(start_times), first, seek,
                              wanted_set if skip_unsampled else None)
        for index, frame in frames:
            if index >= end:
                break
            if index in wanted_set and index > last_handed:
                last_handed = index
                if not hand_on((index, to_rgb(frame, size))):
                    return
    hand_on(_RUN_DONE)


def _fill(containers: _OpenContainers, start_times: np.ndarray, wanted_set: set[int], run: tuple[int, int],
          size: tuple[int, int] | None, into: queue.Queue, stop: threading.Event, skip_unsampled: bool) -> None:
    def hand_on(item: object) -> bool:
        return put_unless_stopped(into, item, stop)

    if stop.is_set():  # the consumer is gone: a run that had not started stays undecoded
        return
    try:
        try:
            _decode_run(containers, start_times, wanted_set, run, size, hand_on, skip_unsampled=skip_unsampled)
        except _SeekNotTrusted:
            containers.discard()
            log.info("%s: seek to frame %d not trusted; decoding that run from the start", containers.path.name,
                     run[0])
            _decode_run(containers, start_times, wanted_set, run, size, hand_on, False, skip_unsampled)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        containers.discard()
        hand_on(exc)


def decode_sampled_parallel(
    path: Path, start_times: np.ndarray, wanted: np.ndarray, key_indices: np.ndarray,
    size: tuple[int, int] | None = None, workers: int = 2, min_run: int = 32, buffer_frames: int = 32,
    skip_unsampled: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) for each index in `wanted` that decodes, in presentation order, decoded by up to
    `workers` decoders at once (see the module's docstring). With one worker, a file whose key frames make a
    single run, or one whose trial seek does not land on its key frame, this is decode_sampled with FFmpeg's
    frame threads. `skip_unsampled`: as in decode_sampled."""
    runs = key_frame_runs(key_indices, wanted, len(start_times), min_run)
    if workers < 2 or len(runs) < 2 or not _seeks_land_on_key_frames(path, start_times, runs[1][0]):
        yield from decode_sampled(path, start_times, wanted, size, workers, skip_unsampled)
        return
    wanted_set = set(wanted.tolist())
    containers = _OpenContainers(path)
    stop = threading.Event()
    upcoming = iter(runs)
    in_flight: deque[queue.Queue] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="fervideo-decode-run") as pool:

        def start_next_run() -> None:
            run = next(upcoming, None)
            if run is not None:
                frames: queue.Queue = queue.Queue(maxsize=buffer_frames)
                pool.submit(_fill, containers, start_times, wanted_set, run, size, frames, stop, skip_unsampled)
                in_flight.append(frames)

        try:
            for _ in range(workers):
                start_next_run()
            while in_flight:
                frames = in_flight.popleft()
                start_next_run()
                while (item := frames.get()) is not _RUN_DONE:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
        finally:  # the consumer stopped or failed: the decoders stop at their next frame, queued runs never start
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
    containers.close_all()  # after the pool's threads have ended
