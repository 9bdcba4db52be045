"""Local parallelism: N worker processes on this machine, each holding one loaded SessionProcessor.

Each worker is a spawned child (nothing of the parent's threads or CUDA state is inherited) with its own
pipe to the runner, so a worker killed at any moment (a per-video timeout, the OOM killer, kill -9)
breaks only its own pipe; the runner notices by the process's sentinel, starts a fresh worker and
hands the video on once more, like Ray's task retries. Workers never talk to each other: their results
meet in the database.

With `--streams K` a worker runs K videos at once on K threads sharing its networks (one forward pass
at a time, fervideo/pipeline.py); the runner sees it as K slots of one process, and a kill or a crash of
that process ends all K videos in flight (fervideo/batch/runner.py decides which are retried).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from multiprocessing.connection import Connection, wait

from fervideo.batch.plan import WorkItem
from fervideo.batch.work import INTERRUPTED, ItemOutcome, WorkerSettings, build_processor, describe_model, one_line
from fervideo.errors import FervideoError

STOP_GRACE_S = 120.0  # how long a stopped worker may take to finish its chunk before it is killed
START = ("start",)  # to a worker spawned early: open the database, load the networks, take videos


# ------------------------------------------------------------------------------------------- the child
class _WorkerState:
    """What the signal handler (main thread) and the stream threads share in one worker process."""

    lock = threading.Lock()
    in_flight = 0  # videos received and not yet answered
    exit_code: int | None = None  # set once a video was stopped on request: the worker leaves when idle


def _on_stop_signal(signal_number: int, _frame) -> None:
    from fervideo.interrupts import request_stop

    if not _WorkerState.in_flight:  # idle or loading: nothing to finish, leave now
        raise SystemExit(128 + signal_number)
    request_stop(signal_number)  # every video in flight stops after its current chunk's transaction


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the runner dies, so no orphan goes on writing (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _sender(conn: Connection):
    """conn.send for several threads (one message at a time on the pipe) that ignores a runner gone
    away: the parent-death SIGTERM then stops the worker cleanly at the next chunk boundary, instead of
    a broken pipe failing the session."""
    lock = threading.Lock()

    def send(message: tuple) -> None:
        try:
            with lock:
                conn.send(message)
        except OSError:
            pass

    return send


def _run_streams(processor, settings: WorkerSettings, jobs: queue.Queue, send) -> None:
    """One stream thread: take the next video, run it, answer; stop taking videos once a stop came."""
    from fervideo.batch.work import run_item
    from fervideo.interrupts import ProcessingInterrupted, stop_requested

    while True:
        index, item = jobs.get()
        try:
            if stop_requested() is not None:  # arrived with the stop: never started, nothing to mark
                raise ProcessingInterrupted(stop_requested())
            outcome = run_item(
                processor, index, item, force=settings.force,
                progress=lambda done, planned, i=index: send(("progress", i, done, planned)),
                on_session=lambda session_id, i=index: send(("session", i, session_id)),
            )
        except ProcessingInterrupted as stop:
            _WorkerState.exit_code = stop.exit_code
            outcome = ItemOutcome(index, INTERRUPTED, reason=str(stop), exit_code=stop.exit_code)
        send(("outcome", outcome))
        with _WorkerState.lock:
            _WorkerState.in_flight -= 1


def worker_main(conn: Connection, settings: WorkerSettings, wait_for_start: bool = False) -> None:
    """A worker's life: load the networks once, then process the videos the runner sends until None,
    `settings.streams` at once on threads sharing the networks (the runner sends no more than that).

    `wait_for_start`: spawned early (LocalPool.spawn_early), the worker imports its modules, then waits
    for the runner's START before it opens the database or loads a network; None or a gone runner ends it."""
    _die_with_parent()
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    send = _sender(conn)
    if wait_for_start:
        import fervideo.pipeline  # noqa: F401  the imports (~0.6 s) overlap the runner's own checks

        try:
            if conn.recv() != START:
                return
        except (EOFError, OSError):
            return
    try:
        processor = build_processor(settings)
    except FervideoError as error:
        send(("startup_failed", type(error).__name__, one_line(error), error.exit_code))
        return
    send(("ready", describe_model(processor)))
    jobs: queue.Queue = queue.Queue()
    for number in range(max(1, settings.streams)):
        threading.Thread(target=_run_streams, args=(processor, settings, jobs, send), daemon=True,
                         name=f"fervideo-stream-{number}").start()
    done_receiving = False  # the runner said None, or is gone
    while True:
        if _WorkerState.exit_code is not None and not _WorkerState.in_flight:
            sys.exit(_WorkerState.exit_code)  # stopped on request, every video in flight answered
        if done_receiving:
            # Returning now would end the stream threads (daemons) mid-chunk, leaving their sessions
            # `running`: wait for them (a gone runner's SIGTERM, PR_SET_PDEATHSIG, stops them after a chunk).
            if not _WorkerState.in_flight:
                return
            time.sleep(0.2)
            continue
        try:
            if not conn.poll(0.2):  # a short wait, so the checks above run while videos end
                continue
            message = conn.recv()
        except (EOFError, OSError):
            done_receiving = True  # the runner is gone
            continue
        if message is None:
            done_receiving = True
            continue
        with _WorkerState.lock:
            _WorkerState.in_flight += 1
        jobs.put(message)


# ------------------------------------------------------------------------------------------ the parent
@contextmanager
def _children_skip_the_main_script() -> Iterator[None]:
    """While a worker is spawned, have the parent's `__main__` look like `python -m`'s: spawn then skips it
    in the child, where it would otherwise run a script `__main__` again (for `fervideo process` the
    console script, i.e. the whole CLI: ~0.2 s of every worker's start-up). The workers need nothing
    from it: their target, settings and messages live in fervideo.batch. Restored at once."""
    main_module = sys.modules.get("__main__")
    if main_module is None or getattr(main_module, "__spec__", None) is not None:
        yield  # already a module (`python -m`): spawn handles it as it should
        return
    main_module.__spec__ = ModuleSpec("fervideo.batch.__main__", None)  # a `.__main__` name is never re-run
    try:
        yield
    finally:
        main_module.__spec__ = None


@dataclass(eq=False)  # compared by identity: a process and its slots refer to each other
class WorkerProcess:
    """One worker process as the runner sees it: its pipe and its `streams` slots (videos at once)."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    slots: list[WorkerSlot] = field(default_factory=list)
    ready: bool = False

    def slot_of(self, index: int) -> WorkerSlot | None:
        """The slot working on item `index` (None: a late message about a video already handed on)."""
        return next((slot for slot in self.slots if slot.index == index), None)


@dataclass(eq=False)
class WorkerSlot:
    """One video stream of a worker process, and the video it is working on. The slots of one process
    share its fate: a kill or a crash ends every video in flight in it."""

    worker: WorkerProcess
    index: int | None = None  # the work item in hand
    started: float = 0.0
    session_id: int | None = None

    @property
    def idle(self) -> bool:
        return self.worker.ready and self.index is None

    @property
    def process(self) -> multiprocessing.process.BaseProcess:
        return self.worker.process


class LocalPool:
    """Worker processes on this machine, `streams` slots each; the runner drives them through `start`,
    `send`, `events`."""

    def __init__(self, settings: WorkerSettings, workers: int) -> None:
        self.settings, self.size = settings, workers
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[WorkerProcess] = []

    @property
    def slots(self) -> list[WorkerSlot]:
        """Every slot, the first stream of each worker before the second, so videos spread over workers."""
        streams = max(1, self.settings.streams)
        return [worker.slots[k] for k in range(streams) for worker in self.workers]

    def spawn_early(self, count: int = 1) -> None:
        """Spawn up to `count` workers before the caller has checked its inputs: they import their modules
        meanwhile (a second core's worth of start-up, issue 10) and wait for `start`; `discard` ends them."""
        self.workers = [self._spawn(wait_for_start=True) for _ in range(min(count, self.size))]

    def start(self) -> None:
        """Start the workers spawned early, and spawn the rest."""
        for worker in self.workers:
            try:
                worker.conn.send(START)
            except OSError:  # it died meanwhile: the runner sees its sentinel and replaces it
                pass
        self.workers += [self._spawn() for _ in range(self.size - len(self.workers))]

    def discard(self) -> None:
        """End workers spawned early that will never be started (the caller's checks failed)."""
        for worker in self.workers:
            self.kill(worker)
        self.workers = []

    def _spawn(self, wait_for_start: bool = False) -> WorkerProcess:
        parent_end, child_end = self.context.Pipe()
        args = (child_end, self.settings) + ((True,) if wait_for_start else ())
        process = self.context.Process(target=worker_main, args=args, name="fervideo-worker", daemon=True)
        with _children_skip_the_main_script():
            process.start()
        child_end.close()
        worker = WorkerProcess(process, parent_end)
        worker.slots = [WorkerSlot(worker) for _ in range(max(1, self.settings.streams))]
        return worker

    def replace(self, worker: WorkerProcess) -> WorkerProcess:
        """Kill a worker (if still alive) and put a fresh one in its place."""
        self.kill(worker)
        fresh = self._spawn()
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def kill(self, worker: WorkerProcess) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()

    def send(self, slot: WorkerSlot, index: int, item: WorkItem) -> None:
        slot.index, slot.started, slot.session_id = index, time.monotonic(), None
        slot.worker.conn.send((index, item))

    def events(self, timeout: float) -> list[tuple[WorkerProcess, tuple | None]]:
        """Messages that arrived, as (worker, message); message None means the worker process ended."""
        by_handle = {}
        for worker in self.workers:
            if not worker.conn.closed:
                by_handle[worker.conn] = worker
                by_handle[worker.process.sentinel] = worker
        arrived = []
        for worker in {id(by_handle[h]): by_handle[h] for h in wait(list(by_handle), timeout=timeout)}.values():
            try:
                while worker.conn.poll():
                    arrived.append((worker, worker.conn.recv()))
            except (EOFError, OSError):
                arrived.append((worker, None))
                continue
            if not worker.process.is_alive():
                arrived.append((worker, None))
        return arrived

    def signal_all(self, signal_number: int) -> None:
        for worker in self.workers:
            if worker.process.is_alive() and worker.process.pid:
                try:
                    os.kill(worker.process.pid, signal_number)
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        for worker in self.workers:
            if not worker.conn.closed:
                try:
                    worker.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
        deadline = time.monotonic() + 10
        for worker in self.workers:
            worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            if not worker.conn.closed:
                worker.conn.close()
