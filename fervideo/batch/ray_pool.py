"""The same per-video work on Ray: one actor per worker keeps a SessionProcessor loaded; Ray places the
actors (a GPU each where the cluster has GPUs), moves the work items and restarts a lost actor, retrying
its task (max_restarts / max_task_retries). Nothing here schedules or transports on its own: the runner
only hands each idle actor the next video and enforces the per-video time limit with ray.kill.
With `--streams K` an actor has max_concurrency=K and runs K videos at once on threads sharing its
networks; the runner sees it as K slots, and killing it (a time limit) hands its other videos on again.
Results meet in the database, which every actor reaches by its URL (PostgreSQL on a real cluster).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fervideo.batch.plan import WorkItem
from fervideo.batch.runner import BatchObserver, BatchResult, _StopSignals, worker_startup_error
from fervideo.batch.work import FAILED, INTERRUPTED, SKIPPED, ItemOutcome, WorkerSettings
from fervideo.errors import FervideoError

KILLED_ACTOR_WAIT_S = 30.0  # how long a stop waits for killed actors' tasks to end before marking their sessions


class VideoWorker:
    """A Ray actor: the networks load in __init__, once; `run` processes one video."""

    def __init__(self, settings: WorkerSettings) -> None:
        from fervideo.batch.work import build_processor, describe_model, one_line

        self.settings, self.processor, self.startup_error = settings, None, None
        try:
            self.processor = build_processor(settings)
            self.model = describe_model(self.processor)
        except FervideoError as error:
            self.startup_error = (type(error).__name__, one_line(error), error.exit_code)

    def ready(self) -> dict | tuple:
        return self.startup_error or self.model

    def lease_holder(self) -> tuple[str, int]:
        """The (host, pid) this actor writes into the leases of the sessions it runs."""
        import os

        from fervideo.store.leases import this_host

        return this_host(), os.getpid()

    def run(self, index: int, item: WorkItem) -> ItemOutcome:
        from fervideo.batch.work import run_item

        return run_item(self.processor, index, item, force=self.settings.force)


@dataclass
class _Slot:
    actor: object
    ref: object = None
    index: int | None = None
    started: float = 0.0
    holder_ref: object = None  # the actor's (host, pid) in its sessions' leases, asked before any run


def _new_slots(actor_class, settings: WorkerSettings) -> list[_Slot]:
    """A new actor as `settings.streams` slots: Ray runs that many of its `run` calls at once
    (max_concurrency), on threads sharing its networks, as a local worker's streams."""
    actor = actor_class.remote(settings)
    holder_ref = actor.lease_holder.remote()  # queued first: answered before any video
    return [_Slot(actor, holder_ref=holder_ref) for _ in range(max(1, settings.streams))]


def _actors(slots: list[_Slot]) -> list[_Slot]:
    """One slot per actor (the first of its streams)."""
    return list({id(slot.actor): slot for slot in slots}.values())


def interrupt_sessions_held_by(db_url: str | None, holders: list[tuple[str, int]], reason: str) -> list[int]:
    """Mark `interrupted` (partial frames dropped) every session still `running` whose lease names one of
    `holders`: the actors a stopped runner killed, so their sessions show as interrupted at once rather
    than when their leases expire. Returns the ids marked."""
    if not holders:
        return []
    from sqlalchemy import and_, or_, select

    from fervideo.store import SessionStatus, VideoSession, open_database
    from fervideo.store.queries import abandon_session

    held = or_(*(and_(VideoSession.lease_host == host, VideoSession.lease_pid == pid) for host, pid in holders))
    with open_database(db_url).begin() as db:
        ids = list(db.scalars(select(VideoSession.id).where(VideoSession.status == SessionStatus.RUNNING, held)))
        return [i for i in ids if abandon_session(db, i, SessionStatus.INTERRUPTED, reason)]


class RayRunner:
    def __init__(self, items: list[WorkItem], settings: WorkerSettings, workers: int, video_timeout_s: float,
                 observer: BatchObserver | None, retries: int, address: str | None) -> None:
        from fervideo.batch.runner import workers_needed

        self.items, self.settings = items, settings
        self.workers = workers_needed(workers, settings.streams, len(items))
        self.video_timeout_s, self.retries, self.address = video_timeout_s, retries, address
        self.observer = observer or BatchObserver()
        self.result = BatchResult(items, [None] * len(items))
        from fervideo.store.leases import lease_timeout_s

        self.busy_wait_s = lease_timeout_s() + 30  # as the local runner: until the other lease could expire
        self.busy_since: dict[int, float] = {}
        self.not_before: dict[int, float] = {}

    def _actor_class(self, ray):
        gpus = ray.cluster_resources().get("GPU", 0)
        wants_gpu = self.settings.device != "cpu" and gpus >= 1
        return ray.remote(
            num_cpus=0 if wants_gpu else self.settings.threads or 1, num_gpus=1 if wants_gpu else 0,
            max_restarts=self.retries, max_task_retries=self.retries, max_concurrency=max(1, self.settings.streams),
        )(VideoWorker)

    def run(self) -> BatchResult:
        try:
            import ray
        except ImportError:
            raise FervideoError("--ray needs the ray package: pip install 'fervideo[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            # No address: RAY_ADDRESS if set, else a local cluster on this machine's cores.
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        slots: list[_Slot] = []
        # Installed after ray.init, which may set handlers of its own; a signal only sets stop.signal.
        with _StopSignals(lambda _number: None) as stop:
            try:
                actor_class = self._actor_class(ray)
                for _ in range(self.workers):
                    slots += _new_slots(actor_class, self.settings)
                for slot in _actors(slots):
                    ready = ray.get(slot.actor.ready.remote())
                    if isinstance(ready, tuple):
                        raise worker_startup_error(*ready)
                    if not self.result.model:
                        self.result.model = ready
                        self.observer.model_ready(ready)
                self._loop(ray, slots, actor_class, stop)
                if stop.signal is not None:
                    self._stop(ray, slots, stop.signal)
            finally:
                if started_here:
                    ray.shutdown()
            self.result.stop_signal = stop.signal
        return self.result

    def _stop(self, ray, slots: list[_Slot], signal_number: int) -> None:
        """SIGINT/SIGTERM: kill the actors (a chunk's transaction cut short rolls back), then mark the
        sessions their leases name interrupted at once, as a stopped local worker marks its own."""
        holders = self._holders(ray, _actors(slots))
        for slot in _actors(slots):
            ray.kill(slot.actor, no_restart=True)
        in_flight = [slot.ref for slot in slots if slot.ref is not None]
        if in_flight:  # the killed tasks end with an error once their processes are gone
            ray.wait(in_flight, num_returns=len(in_flight), timeout=KILLED_ACTOR_WAIT_S)
        reason = f"interrupted by signal {signal_number}"
        interrupt_sessions_held_by(self.settings.db_url, holders, reason)
        for slot in slots:
            if slot.index is not None:
                self._finish(slot, ItemOutcome(slot.index, INTERRUPTED, reason=reason, exit_code=128 + signal_number))

    @staticmethod
    def _holders(ray, actors: list[_Slot]) -> list[tuple[str, int]]:
        """The (host, pid) of each actor, as written in its sessions' leases."""
        asked = [slot.holder_ref for slot in actors]
        answered = ray.wait(asked, num_returns=len(asked), timeout=1.0)[0] if asked else []
        holders = []
        for ref in answered:  # a busy actor answered before its video started
            try:
                holders.append(tuple(ray.get(ref)))
            except ray.exceptions.RayError:  # an actor that died while loading holds nothing
                pass
        return holders

    def _time_out(self, ray, slots: list[_Slot], late: _Slot, actor_class, pending: list[int]) -> None:
        """Kill the actor of a video past --video-timeout: that video fails; its other videos in flight
        (`--streams`) are handed on again, and every session the actor held is marked interrupted."""
        sharing = [slot for slot in slots if slot.actor is late.actor]
        holders = self._holders(ray, sharing[:1])
        ray.kill(late.actor, no_restart=True)
        in_flight = [slot.ref for slot in sharing if slot.ref is not None]
        ray.wait(in_flight, num_returns=len(in_flight), timeout=KILLED_ACTOR_WAIT_S)
        reason = f"timed out after {self.video_timeout_s:g} s (--video-timeout)"
        interrupt_sessions_held_by(self.settings.db_url, holders, f"the Ray actor was killed: {reason}")
        self._finish(late, ItemOutcome(late.index, FAILED, reason=reason, exit_code=1))
        pending[:0] = [slot.index for slot in sharing if slot.index is not None]
        fresh = _new_slots(actor_class, self.settings)
        for slot, new in zip(sharing, fresh, strict=True):
            slots[slots.index(slot)] = new

    def _loop(self, ray, slots: list[_Slot], actor_class, stop: _StopSignals) -> None:
        pending = list(range(len(self.items)))
        while (pending or any(slot.ref is not None for slot in slots)) and stop.signal is None:
            if not any(slot.ref is not None for slot in slots):
                time.sleep(0.2)  # only videos waiting on another process's lease are left
            for slot in slots:
                ready = [i for i in pending if self.not_before.get(i, 0) <= time.monotonic()]
                if slot.ref is None and ready:
                    slot.index = ready[0]
                    pending.remove(slot.index)
                    slot.ref, slot.started = slot.actor.run.remote(slot.index, self.items[slot.index]), time.monotonic()
                    self.observer.video_started(slot.index, self.items[slot.index])
            refs = {slot.ref: slot for slot in slots if slot.ref is not None}
            finished = ray.wait(list(refs), num_returns=1, timeout=0.5)[0] if refs else []
            for ref in finished:
                slot = refs[ref]
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as error:  # the actor was lost for good after Ray's retries
                    outcome = ItemOutcome(slot.index, FAILED, reason=f"Ray worker lost: {type(error).__name__}",
                                          exit_code=1)
                if outcome.status == "busy":
                    first = self.busy_since.setdefault(outcome.index, time.monotonic())
                    if time.monotonic() - first < self.busy_wait_s:  # try again later
                        self.not_before[outcome.index] = time.monotonic() + min(10.0, self.busy_wait_s / 4)
                        pending.append(outcome.index)
                        slot.ref, slot.index = None, None
                        continue
                    outcome.status = SKIPPED  # still live in another process, which will finish it
                self._finish(slot, outcome)
            now = time.monotonic()
            late = next((slot for slot in slots if slot.ref is not None and self.video_timeout_s
                         and now - slot.started > self.video_timeout_s), None)
            if late is not None:
                self._time_out(ray, slots, late, actor_class, pending)

    def _finish(self, slot: _Slot, outcome: ItemOutcome) -> None:
        self.result.outcomes[outcome.index] = outcome
        self.observer.video_finished(outcome.index, self.items[outcome.index], outcome)
        slot.ref, slot.index = None, None


__all__ = ["RayRunner", "VideoWorker"]
