"""The batch runner, between the CLI and the pipeline: it hands planned work items to workers (local
processes here, Ray actors in fervideo.batch.ray_pool), enforces the per-video time limit, retries a
video whose worker died, forwards SIGINT/SIGTERM, and collects one outcome per item for the final table.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from fervideo.batch.local import STOP_GRACE_S, LocalPool, WorkerProcess, WorkerSlot
from fervideo.batch.plan import WorkItem
from fervideo.batch.work import BUSY, DONE, FAILED, INTERRUPTED, SKIPPED, ItemOutcome, WorkerSettings
from fervideo.errors import FervideoError
from fervideo.runtime import available_cores

DEFAULT_VIDEO_TIMEOUT_S = 6 * 3600.0  # generous: hours of video on a slow CPU still fit; 0 = no limit
DEFAULT_RETRIES = 1  # a video whose worker died (OOM killer, lost node) is handed on once more
THREADS_PER_CPU_WORKER = 4  # torch gains little beyond ~4 intra-op threads on these small batches


def default_workers(device: str) -> int:
    """Workers that fit this machine: one on a GPU (it is the bottleneck and holds the networks once);
    on CPU as many as give each worker ~4 torch threads (workers x threads = cores)."""
    if device.startswith("cuda"):
        return 1
    if _counting_imports_torch(device):
        import torch

        if torch.cuda.is_available():
            return 1
    return max(1, available_cores() // THREADS_PER_CPU_WORKER)


def _counting_imports_torch(device: str) -> bool:
    """Whether `default_workers` must import torch (~2 s) to ask for a GPU: `auto` with an NVIDIA driver."""
    from fervideo.runtime import cuda_driver_present

    return device == "auto" and cuda_driver_present()


def workers_needed(workers: int, streams: int, items: int) -> int:
    """No more workers than the videos fill, at `streams` videos per worker."""
    return max(1, min(workers, -(-items // max(1, streams))))


def threads_per_worker(workers: int) -> int:
    return max(1, available_cores() // max(1, workers))


class BatchObserver:
    """What the runner tells its caller (the CLI draws progress from it). Every method may be left as is."""

    def model_ready(self, info: dict) -> None: ...

    def video_started(self, index: int, item: WorkItem) -> None: ...

    def video_progress(self, index: int, done: int, planned: int) -> None: ...

    def video_finished(self, index: int, item: WorkItem, outcome: ItemOutcome) -> None: ...


@dataclass
class BatchResult:
    items: list[WorkItem]
    outcomes: list[ItemOutcome | None]  # None: not run (the batch was stopped first)
    stop_signal: int | None = None
    model: dict = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o is not None and o.status == status)

    @property
    def exit_code(self) -> int:
        """128+signal when stopped; a single video's own error code; 1 when any video failed; else 0."""
        if self.stop_signal:
            return 128 + self.stop_signal
        failed = [o for o in self.outcomes if o is None or o.status in (FAILED, INTERRUPTED)]
        if len(self.items) == 1 and failed and failed[0] is not None:
            return failed[0].exit_code or 1
        return 1 if failed else 0


def worker_startup_error(name: str, message: str, exit_code: int) -> FervideoError:
    """The error a worker hit while loading, rebuilt in the runner with its class and exit code."""
    import fervideo.errors as errors

    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, FervideoError):
        try:
            return cls(message)
        except TypeError:
            pass
    error = FervideoError(message)
    error.exit_code = exit_code
    return error


class _StopSignals:
    """SIGINT/SIGTERM during a batch: remember the first, forward it to the workers (which finish their
    chunk and mark their session interrupted), dispatch nothing more."""

    def __init__(self, forward) -> None:
        self.signal: int | None = None
        self.at = 0.0
        self.forward = forward
        self.previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, _frame) -> None:
        if self.signal is None:
            self.signal, self.at = number, time.monotonic()
        self.forward(number)

    def __exit__(self, *exc_info) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def mark_abandoned(db_url: str | None, session_id: int | None, status: str, reason: str) -> None:
    """Record in the database why a killed worker's session ended (its frames are dropped)."""
    if session_id is None:
        return
    from fervideo.store import open_database
    from fervideo.store.queries import abandon_session

    factory = open_database(db_url)
    with factory.begin() as db:
        abandon_session(db, session_id, status, reason)


class LocalRunner:
    """Runs a batch on a LocalPool; see module docstring."""

    def __init__(self, items: list[WorkItem], settings: WorkerSettings, workers: int,
                 video_timeout_s: float = DEFAULT_VIDEO_TIMEOUT_S, observer: BatchObserver | None = None,
                 retries: int = DEFAULT_RETRIES, busy_wait_s: float | None = None,
                 pool: LocalPool | None = None) -> None:
        from fervideo.store.leases import lease_timeout_s

        self.items, self.settings = items, settings
        self.observer = observer or BatchObserver()
        self.video_timeout_s, self.retries = video_timeout_s, retries
        # A video busy in another live process is retried until that lease could have expired.
        self.busy_wait_s = lease_timeout_s() + 30 if busy_wait_s is None else busy_wait_s
        self.pool = pool or LocalPool(settings, workers)
        self.pool.size = workers_needed(workers, settings.streams, len(items))
        self.result = BatchResult(items, [None] * len(items))
        self.pending: deque[int] = deque(range(len(items)))
        self.busy_since: dict[int, float] = {}
        self.not_before: dict[int, float] = {}
        self.attempts: dict[int, int] = {}
        self.early_deaths = 0

    def run(self) -> BatchResult:
        with _StopSignals(self.pool.signal_all) as stop:
            self.pool.start()
            try:
                self._loop(stop)
            finally:
                self.pool.close()
            self.result.stop_signal = stop.signal
        return self.result

    def _loop(self, stop: _StopSignals) -> None:
        while True:
            if stop.signal is None:
                self._dispatch()
            in_flight = [slot for slot in self.pool.slots if slot.index is not None]
            if not in_flight and (stop.signal is not None or not self.pending):
                return
            for worker, message in self.pool.events(timeout=0.5):
                if worker in self.pool.workers:  # not one replaced by an earlier message of this round
                    self._handle(worker, message, stop)
            self._enforce_limits(stop)

    def _dispatch(self) -> None:
        now = time.monotonic()
        for slot in self.pool.slots:
            if not slot.idle:
                continue
            index = next((i for i in self.pending if self.not_before.get(i, 0) <= now), None)
            if index is None:
                return
            self.pending.remove(index)
            self.pool.send(slot, index, self.items[index])
            self.observer.video_started(index, self.items[index])

    def _finish(self, slot: WorkerSlot | None, outcome: ItemOutcome) -> None:
        if slot is not None:
            slot.index = None
        self.result.outcomes[outcome.index] = outcome
        self.observer.video_finished(outcome.index, self.items[outcome.index], outcome)

    def _handle(self, worker: WorkerProcess, message: tuple | None, stop: _StopSignals) -> None:
        if message is None:
            self._worker_ended(worker, stop)
            return
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            if not self.result.model:
                self.result.model = message[1]
                self.observer.model_ready(message[1])
        elif kind == "startup_failed":
            raise worker_startup_error(*message[1:])
        elif kind == "session" and (slot := worker.slot_of(message[1])) is not None:
            slot.session_id = message[2]
        elif kind == "progress":
            self.observer.video_progress(message[1], message[2], message[3])
        elif kind == "outcome" and (slot := worker.slot_of(message[1].index)) is not None:
            self._outcome(slot, message[1])

    def _outcome(self, slot: WorkerSlot, outcome: ItemOutcome) -> None:
        if outcome.status == BUSY:
            first = self.busy_since.setdefault(outcome.index, time.monotonic())
            if time.monotonic() - first < self.busy_wait_s:
                slot.index = None
                self.not_before[outcome.index] = time.monotonic() + min(10.0, self.busy_wait_s / 4)
                self.pending.append(outcome.index)
                return
            outcome.status = SKIPPED  # still held by a live process elsewhere: that one will finish it
        self._finish(slot, outcome)

    def _worker_ended(self, worker: WorkerProcess, stop: _StopSignals, killed_for: WorkItem | None = None) -> None:
        """A worker process is gone (crashed, killed by us): settle every video still in flight in it.

        Stopped on request: interrupted. Killed because another of its videos timed out (`killed_for`):
        handed on again without counting an attempt, since the kill was not its doing. Died on its own:
        each video in it counts an attempt (which one caused the crash is unknown), retried up to
        `retries` times, then failed."""
        code = worker.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        in_flight = [s for s in worker.slots if s.index is not None and self.result.outcomes[s.index] is None]
        for slot in in_flight:
            index = slot.index
            if stop.signal is not None:
                reason = f"interrupted by signal {stop.signal}"
                mark_abandoned(self.settings.db_url, slot.session_id, INTERRUPTED, reason)
                self._finish(slot, ItemOutcome(index, INTERRUPTED, slot.session_id, reason=reason,
                                               exit_code=128 + stop.signal))
                continue
            if killed_for is not None:
                reason = f"the worker process was killed: {killed_for.name} in it timed out (--video-timeout)"
            else:
                self.attempts[index] = self.attempts.get(index, 0) + 1
                reason = f"the worker process died ({how})"
            mark_abandoned(self.settings.db_url, slot.session_id, INTERRUPTED, reason)
            if killed_for is not None or self.attempts[index] <= self.retries:
                slot.index = None
                self.pending.appendleft(index)
            else:
                self._finish(slot, ItemOutcome(index, FAILED, slot.session_id, reason=reason, exit_code=1))
        if not worker.ready and stop.signal is None:
            self.early_deaths += 1
            if self.early_deaths > 2 * self.pool.size + 2:
                raise FervideoError(f"worker processes keep dying while loading the networks ({how})")
        if stop.signal is None:
            self.pool.replace(worker)
        else:
            for slot in worker.slots:
                slot.index = None
            self.pool.kill(worker)

    def _enforce_limits(self, stop: _StopSignals) -> None:
        now = time.monotonic()
        for worker in list(self.pool.workers):
            busy = [slot for slot in worker.slots if slot.index is not None]
            if not busy:
                continue
            if stop.signal is not None:
                if now - stop.at > STOP_GRACE_S:
                    self.pool.kill(worker)
                    self._worker_ended(worker, stop)
                continue
            late = next((s for s in busy if self.video_timeout_s and now - s.started > self.video_timeout_s), None)
            if late is not None:
                self._time_out(worker, late, stop)

    def _time_out(self, worker: WorkerProcess, late: WorkerSlot, stop: _StopSignals) -> None:
        """Kill the process of a video past --video-timeout: that video fails; the others in flight in the
        same process (`--streams`) are handed on again."""
        self.pool.kill(worker)  # first, so no chunk of it commits after its session is marked
        reason = f"timed out after {self.video_timeout_s:g} s (--video-timeout)"
        mark_abandoned(self.settings.db_url, late.session_id, FAILED, reason)
        item = self.items[late.index]
        self._finish(late, ItemOutcome(late.index, FAILED, late.session_id, reason=reason, exit_code=1))
        self._worker_ended(worker, stop, killed_for=item)


def run_batch(items: list[WorkItem], settings: WorkerSettings, workers: int | None = None,
              video_timeout_s: float = DEFAULT_VIDEO_TIMEOUT_S, observer: BatchObserver | None = None,
              retries: int = DEFAULT_RETRIES, ray_address: str | None = None, use_ray: bool = False,
              busy_wait_s: float | None = None, streams: int | None = None,
              early: LocalPool | None = None) -> BatchResult:
    """Process `items` with `workers` local processes (default: what fits the machine) or on Ray, each
    running `streams` videos at once (default: settings.streams) on threads sharing its networks.

    A video whose session is live in another process is retried for `busy_wait_s` (default: until its
    lease could have expired), then reported as skipped: that process will finish it. `early`: a pool
    from `spawn_workers_early` with the same settings, workers and streams."""
    from fervideo.store import open_database

    open_database(settings.db_url)  # create or check it once here: workers starting together must not race
    workers, settings = batch_settings(settings, workers, streams)
    if use_ray:
        from fervideo.batch.ray_pool import RayRunner

        if early is not None:
            early.discard()
        return RayRunner(items, settings, workers, video_timeout_s, observer, retries, ray_address).run()
    return LocalRunner(items, settings, workers, video_timeout_s, observer, retries, busy_wait_s, early).run()


def batch_settings(settings: WorkerSettings, workers: int | None,
                   streams: int | None) -> tuple[int, WorkerSettings]:
    """The worker count and the settings every worker gets: `streams` and the threads per worker filled in."""
    from dataclasses import replace

    workers = workers or default_workers(settings.device)
    if streams is not None:
        settings = replace(settings, streams=streams)
    if not settings.threads:
        settings = replace(settings, threads=threads_per_worker(workers))
    return workers, settings


def spawn_workers_early(settings: WorkerSettings, workers: int | None = None,
                        streams: int | None = None) -> LocalPool | None:
    """One local worker spawned now, to import its modules while the caller checks the database and the
    videos (issue 10: `fervideo process` reaches its first frame ~0.5 s sooner on 2 cores). It opens
    nothing until `run_batch(..., early=pool)` starts it; `pool.discard()` ends it if the checks fail.
    None where counting the workers would import torch first: a bad file must still fail in milliseconds."""
    if workers is None and _counting_imports_torch(settings.device):
        return None
    workers, settings = batch_settings(settings, workers, streams)
    pool = LocalPool(settings, workers)
    pool.spawn_early(1)
    return pool


__all__ = ["BatchObserver", "BatchResult", "DONE", "FAILED", "INTERRUPTED", "SKIPPED", "run_batch",
           "spawn_workers_early"]
