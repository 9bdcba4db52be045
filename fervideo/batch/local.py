"""Local parallelism: N worker processes on this machine, each holding one loaded SessionProcessor.

Each worker is a spawned child (nothing of the parent's threads or CUDA state is inherited) with its own
pipe to the runner, so a worker killed at any moment (a per-video timeout, the OOM killer, kill -9)
breaks only its own pipe; the runner notices by the process's sentinel, starts a fresh worker and
hands the video on once more, like Ray's task retries. Workers never talk to each other: their results
meet in the database.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from fervideo.batch.plan import WorkItem
from fervideo.batch.work import INTERRUPTED, ItemOutcome, WorkerSettings, build_processor, describe_model, one_line
from fervideo.errors import FervideoError

STOP_GRACE_S = 120.0  # how long a stopped worker may take to finish its chunk before it is killed


# ------------------------------------------------------------------------------------------- the child
class _WorkerState:
    busy = False


def _on_stop_signal(signal_number: int, _frame) -> None:
    from fervideo.interrupts import request_stop

    if not _WorkerState.busy:  # idle or loading: nothing to finish, leave now
        raise SystemExit(128 + signal_number)
    request_stop(signal_number)  # the pipeline stops after the current chunk's transaction


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the runner dies, so no orphan goes on writing (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _sender(conn: Connection):
    """conn.send that ignores a runner gone away: the parent-death SIGTERM then stops the worker cleanly
    at the next chunk boundary, instead of a broken pipe failing the session."""

    def send(message: tuple) -> None:
        try:
            conn.send(message)
        except OSError:
            pass

    return send


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """A worker's life: load the networks once, then process the videos the runner sends until None."""
    _die_with_parent()
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    from fervideo.batch.work import run_item
    from fervideo.interrupts import ProcessingInterrupted

    send = _sender(conn)
    try:
        processor = build_processor(settings)
    except FervideoError as error:
        send(("startup_failed", type(error).__name__, one_line(error), error.exit_code))
        return
    send(("ready", describe_model(processor)))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the runner is gone
        if message is None:
            return
        index, item = message
        _WorkerState.busy = True
        try:
            outcome = run_item(
                processor, index, item, force=settings.force,
                progress=lambda done, planned, i=index: send(("progress", i, done, planned)),
                on_session=lambda session_id, i=index: send(("session", i, session_id)),
            )
        except ProcessingInterrupted as stop:
            send(("outcome", ItemOutcome(index, INTERRUPTED, reason=str(stop), exit_code=stop.exit_code)))
            sys.exit(stop.exit_code)
        _WorkerState.busy = False
        send(("outcome", outcome))


# ------------------------------------------------------------------------------------------ the parent
@dataclass
class WorkerSlot:
    """One worker process as the runner sees it, and the video it is working on."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    index: int | None = None  # the work item in hand
    started: float = 0.0
    session_id: int | None = None
    attempts: dict[int, int] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return self.ready and self.index is None


class LocalPool:
    """Worker processes on this machine; the runner drives them through `start`, `send`, `events`."""

    def __init__(self, settings: WorkerSettings, workers: int) -> None:
        self.settings, self.size = settings, workers
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[WorkerSlot] = []

    def start(self) -> None:
        self.slots = [self._spawn() for _ in range(self.size)]

    def _spawn(self) -> WorkerSlot:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(child_end, self.settings),
                                       name="fervideo-worker", daemon=True)
        process.start()
        child_end.close()
        return WorkerSlot(process, parent_end)

    def replace(self, slot: WorkerSlot) -> WorkerSlot:
        """Kill a worker (if still alive) and put a fresh one in its place."""
        self.kill(slot)
        fresh = self._spawn()
        self.slots[self.slots.index(slot)] = fresh
        return fresh

    def kill(self, slot: WorkerSlot) -> None:
        if slot.process.is_alive():
            slot.process.kill()
        slot.process.join(timeout=10)
        slot.conn.close()

    def send(self, slot: WorkerSlot, index: int, item: WorkItem) -> None:
        slot.index, slot.started, slot.session_id = index, time.monotonic(), None
        slot.conn.send((index, item))

    def events(self, timeout: float) -> list[tuple[WorkerSlot, tuple | None]]:
        """Messages that arrived, as (slot, message); message None means the worker process ended."""
        by_handle = {}
        for slot in self.slots:
            if not slot.conn.closed:
                by_handle[slot.conn] = slot
                by_handle[slot.process.sentinel] = slot
        arrived = []
        for slot in {id(by_handle[h]): by_handle[h] for h in wait(list(by_handle), timeout=timeout)}.values():
            try:
                while slot.conn.poll():
                    arrived.append((slot, slot.conn.recv()))
            except (EOFError, OSError):
                arrived.append((slot, None))
                continue
            if not slot.process.is_alive():
                arrived.append((slot, None))
        return arrived

    def signal_all(self, signal_number: int) -> None:
        for slot in self.slots:
            if slot.process.is_alive() and slot.process.pid:
                try:
                    os.kill(slot.process.pid, signal_number)
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        for slot in self.slots:
            if not slot.conn.closed:
                try:
                    slot.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
        deadline = time.monotonic() + 10
        for slot in self.slots:
            slot.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(timeout=5)
            if not slot.conn.closed:
                slot.conn.close()
