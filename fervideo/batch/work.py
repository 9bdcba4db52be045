"""The per-video work, the same in every mode (one local process, a pool of them, Ray actors): a worker
builds one SessionProcessor (networks loaded once) and calls `run_item` for each video it is handed,
from `streams` threads at once when asked to (SessionProcessor.process keeps each video's state apart).
Everything here crosses process boundaries, so it is plain data.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fervideo.batch.plan import WorkItem
from fervideo.errors import FervideoError

log = logging.getLogger(__name__)

DONE, SKIPPED, FAILED, BUSY, INTERRUPTED = "done", "skipped", "failed", "busy", "interrupted"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to build its SessionProcessor (mirrors the `process` options)."""

    db_url: str | None = None
    model: str = "auto"
    device: str = "auto"
    batch_size: int = 64
    sample_fps: float = 5.0
    landmarks: str = "retinaface"
    threads: int = 0  # torch/ONNX threads per worker; 0 = the runtime's default (every core)
    backend: str | None = None  # auto/torch/onnx (fervideo.runtime)
    quantize: str | None = None  # None or "int8" (fervideo.emotion.quantize)
    detect_region: str = "full"  # full or tracked (fervideo.faces.tracked_detection)
    force: bool = False
    chunk_size: int | None = None
    streams: int = 1  # videos a worker runs at once on threads sharing its networks (--streams)


@dataclass
class ItemOutcome:
    """What became of one work item. `reason` is one line; `exit_code` is the error's own code."""

    index: int
    status: str
    session_id: int | None = None
    sampled_frames: int = 0
    face_frames: int = 0
    seconds: float = 0.0
    reason: str | None = None
    exit_code: int = 0
    warnings: list[str] = field(default_factory=list)  # e.g. decode_incomplete
    worker: str = ""


def build_processor(settings: WorkerSettings):
    """Load the networks and open the database once per worker."""
    from fervideo.runtime import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads OpenMP: idle threads must not spin on shared cores
    from fervideo.pipeline import SessionProcessor

    processor = SessionProcessor(
        db_url=settings.db_url, model=settings.model, device=settings.device, batch_size=settings.batch_size,
        sample_fps=settings.sample_fps, landmarks=settings.landmarks, backend=settings.backend,
        threads=settings.threads or None, quantize=settings.quantize,
        detect_region=settings.detect_region,
    )
    if settings.chunk_size:
        processor.chunk_size = settings.chunk_size
    return processor


def describe_model(processor) -> dict:
    classifier = processor.classifier
    return {"name": classifier.result_name, "source": str(classifier.source), "device": str(classifier.device),
            "fallback": bool(classifier.fallback_reason)}


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run_item(
    processor,
    index: int,
    item: WorkItem,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_session: Callable[[int], None] | None = None,
) -> ItemOutcome:
    """Process one video and say what became of it. Errors a user can cause (a bad file, a busy
    session) become a failed/busy outcome; a stop request propagates as ProcessingInterrupted after
    the session was marked interrupted."""
    from fervideo.interrupts import ProcessingInterrupted
    from fervideo.pipeline import SessionBusyError

    started = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        result = processor.process(item.path, item.subject, recorded_at=item.recorded_at, force=force,
                                   progress=progress, on_session=on_session)
    except ProcessingInterrupted:
        raise  # not a failure of this video: the worker reports it interrupted and stops
    except SessionBusyError as error:
        return ItemOutcome(index, BUSY, reason=one_line(error), exit_code=error.exit_code, worker=worker)
    except FervideoError as error:
        return ItemOutcome(index, FAILED, reason=one_line(error), exit_code=error.exit_code, worker=worker,
                           seconds=time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001  one video's crash must not end the batch; logged in full
        log.exception("processing %s failed", item.path)
        return ItemOutcome(index, FAILED, reason=f"{type(error).__name__}: {one_line(error)}", exit_code=1,
                           worker=worker, seconds=time.perf_counter() - started)
    frames = result.frames
    return ItemOutcome(
        index, SKIPPED if result.skipped else DONE, session_id=result.session_id,
        sampled_frames=len(frames), face_frames=int(frames["face_found"].sum()) if len(frames) else 0,
        seconds=time.perf_counter() - started, warnings=list(getattr(result, "warnings", [])), worker=worker,
    )
