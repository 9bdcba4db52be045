"""The one place that wires the stages: video -> faces -> emotion -> store, chunk by chunk.

Decoding runs one chunk ahead in a background thread (decord and torch both release the GIL), so the
two cores stay busy with decoding and the networks at once. Each chunk's rows are written in their
own transaction; the session turns `done` only after the last one, and a failure marks it `failed`
with the error, so a half-processed session never looks complete.

While it runs, a session holds a lease (fervideo/store/leases.py) renewed by a heartbeat thread. A
session left `running` by a killed process is seen as interrupted and redone by the next run; the redo
is a new session, and the superseded ones (interrupted, failed, or replaced with --force) are deleted
only once it is done. A stop request (SIGINT/SIGTERM, fervideo.interrupts) is honoured between chunks:
the current chunk's transaction completes, the session is marked `interrupted`, ProcessingInterrupted
is raised.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fervideo import __version__
from fervideo.emotion import EmotionClassifier, load_classifier
from fervideo.errors import DatabaseError, FervideoError, InvalidArgumentError
from fervideo.faces import FaceAnalyzer, FaceBatch
from fervideo.features import store_session_features
from fervideo.interrupts import ProcessingInterrupted, raise_if_stop_requested
from fervideo.labels import CANONICAL_LABELS
from fervideo.runtime import apply_thread_policy
from fervideo.store import (
    FRAME_QUALITY_COLUMNS,
    FRAME_TABLE_COLUMNS,
    Frame,
    SessionStatus,
    Subject,
    VideoSession,
    frame_table,
    get_or_create_subject,
    open_database,
)
from fervideo.store.leases import Heartbeat, lease_expired, lease_values
from fervideo.store.queries import ensure_subject
from fervideo.utils import sha256_file
from fervideo.video import DEFAULT_CHUNK_SIZE, DEFAULT_SAMPLE_FPS, FrameChunk, VideoStream

log = logging.getLogger(__name__)

# Frame-table quality column -> key in FaceBatch.quality.
QUALITY_SOURCE_KEYS = {"face_size": "face_size", "sharpness": "sharpness", "yaw": "yaw_proxy"}
ProgressCallback = Callable[[int, int], None]  # (sampled frames done, sampled frames planned)


class SessionBusyError(FervideoError):
    """Another live process holds the lease of a running session of the same video and settings."""


@dataclass
class ProcessResult:
    session_id: int
    frames: pd.DataFrame
    skipped: bool = False  # True when an identical earlier run was reused
    warnings: list[str] = field(default_factory=list)  # e.g. "decode_incomplete: 45 of 50 planned frames decoded"
    timings: dict[str, float] = field(default_factory=dict)


def _load_malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim, or a no-op where there is none (macOS, musl)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):
        return lambda: None


# Interleaving the detector's, the classifier's and the decoder's allocations of different sizes
# fragments glibc's heap: freed memory is not returned and RSS creeps up chunk after chunk (measured:
# +0.7 GB over 10 minutes of video with the ViT). Trimming after each chunk keeps memory flat, at a
# cost of milliseconds per chunk.
release_freed_memory = _load_malloc_trim()


def _prefetched(chunks: Iterator[FrameChunk], depth: int = 1) -> Iterator[FrameChunk]:
    """Decode up to `depth` chunks ahead in a thread; re-raise its errors in the caller."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    finished = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        handoff.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(finished)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            handoff.put(exc)

    worker = threading.Thread(target=produce, name="fervideo-decode", daemon=True)
    worker.start()
    try:
        while (item := handoff.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def frame_rows(chunk: FrameChunk, faces: FaceBatch, probs: np.ndarray, scale: float) -> pd.DataFrame:
    """The per-frame table rows of one chunk: every sampled frame, face or not."""
    found = faces.found
    table = pd.DataFrame({"frame_index": chunk.indices.astype(np.int64), "t": chunk.timestamps})
    table["face_found"] = found
    table["face_score"] = np.where(found, faces.scores, np.nan)
    boxes = np.where(found[:, None], faces.boxes * scale, np.nan)
    for column, values in zip(("x1", "y1", "x2", "y2"), boxes.T, strict=True):
        table[column] = values
    full_probs = np.full((len(found), len(CANONICAL_LABELS)), np.nan, dtype=np.float64)
    full_probs[found] = probs
    for column, values in zip(CANONICAL_LABELS, full_probs.T, strict=True):
        table[column] = values
    for column in FRAME_QUALITY_COLUMNS:
        values = faces.quality.get(QUALITY_SOURCE_KEYS[column], np.full(len(found), np.nan))
        table[column] = np.where(found, values, np.nan)
    table["face_size"] *= scale
    return table


def _records_for_insert(session_id: int, rows: pd.DataFrame) -> list[dict]:
    # NaN -> None so the database stores NULL for "no face" rather than a float NaN.
    records = rows.astype(object).where(rows.notna(), None).to_dict("records")
    for record in records:
        record["session_id"] = session_id
    return records


@contextmanager
def _writing(factory: sessionmaker, what: str) -> Iterator[Session]:
    """One transaction; a locked or read-only database becomes a one-line DatabaseError."""
    try:
        with factory.begin() as db:
            yield db
    except OperationalError as exc:
        from fervideo.store.engine import describe_database_error  # says read-only, locked, full, ...

        where = factory.kw["bind"].url.render_as_string()  # password hidden
        raise DatabaseError(f"cannot write {what}: {describe_database_error(exc, where)}") from None


class SessionProcessor:
    """Holds the loaded networks and the database, so a batch of videos loads each model once."""

    def __init__(
        self,
        db_url: str | None = None,
        model: str = "auto",
        device: str = "auto",
        batch_size: int = 64,
        sample_fps: float = DEFAULT_SAMPLE_FPS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        landmarks: str = "retinaface",
        classifier: EmotionClassifier | None = None,
        face_analyzer: FaceAnalyzer | None = None,
        backend: str | None = None,
        threads: int | None = None,
        quantize: str | None = None,
        detect_region: str = "full",
    ) -> None:
        if sample_fps < 0:
            raise InvalidArgumentError(f"--fps must be >= 0 (0 = every frame), got {sample_fps}")
        if batch_size < 1:
            raise InvalidArgumentError(f"--batch-size must be >= 1, got {batch_size}")
        self.sample_fps = float(sample_fps)
        self.chunk_size = chunk_size
        self.db = open_database(db_url)
        # backend (auto/torch/onnx) and threads (0 = all cores): fervideo.runtime, docs/speed.md.
        apply_thread_policy(threads)
        # quantize (None/"none", "int8"): fervideo.emotion.quantize; a given classifier carries its own.
        self.classifier = classifier or load_classifier(
            model, device=device, batch_size=batch_size, backend=backend, threads=threads, quantize=quantize
        )
        self.faces = face_analyzer or FaceAnalyzer(
            device=str(self.classifier.device), landmarks=landmarks, backend=backend, threads=threads,
            detect_region=detect_region,  # "tracked": faces/tracked_detection.py, in the settings key when on
        )

    @property
    def settings(self) -> dict:
        """Everything that changes the stored result; hashed into the session's settings_key."""
        quantize = self.classifier.quantize
        return {
            "sample_fps": self.sample_fps,
            "classifier_sha256": self.classifier.weights_sha256,
            "detector": self.faces.parameters(),
            # Only when on, so that sessions processed before the option existed keep their keys.
            **({"classifier_quantize": quantize} if quantize else {}),
        }

    @property
    def settings_key(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()

    def _find_done_session(self, subject_code: str, video_sha256: str) -> int | None:
        """The done session of this video and settings; SessionBusyError if another process holds one."""
        with self.db() as db:
            earlier = db.scalars(
                select(VideoSession)
                .join(Subject)
                .where(
                    Subject.code == subject_code,
                    VideoSession.video_sha256 == video_sha256,
                    VideoSession.settings_key == self.settings_key,
                )
                .order_by(VideoSession.id.desc())
            ).all()
        live = [s for s in earlier if s.status == SessionStatus.RUNNING and not lease_expired(s)]
        if live:
            raise SessionBusyError(
                f"session {live[0].id} of this video is being processed by {live[0].lease_host} "
                f"(pid {live[0].lease_pid}); retry once it is done or its lease has expired"
            )
        return next((s.id for s in earlier if s.status == SessionStatus.DONE), None)

    def _start_session(self, path: Path, video_sha256: str, subject_code: str,
                       recorded_at: dt.datetime | None, stream: VideoStream) -> int:
        info = stream.info
        with _writing(self.db, "the new session") as db:
            subject = get_or_create_subject(db, subject_code)
            session = VideoSession(
                subject_id=subject.id,
                video_path=str(path.resolve()),
                video_sha256=video_sha256,
                recorded_at=recorded_at,
                duration_s=info.duration_s,
                video_fps=info.fps,
                frame_count=info.frame_count,
                width=info.width,
                height=info.height,
                codec=info.codec,
                rotation=info.rotation,
                sample_fps=self.sample_fps,
                frames_planned=len(stream),
                settings_key=self.settings_key,
                status=SessionStatus.RUNNING,
                started_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                **lease_values(),
                package_version=__version__,
                classifier_name=self.classifier.result_name,  # "+int8" when quantised
                classifier_sha256=self.classifier.weights_sha256,
                detector_name=self.faces.parameters().get("detector", "retinaface"),
                detector_params={**self.faces.parameters(), "chunk_size": self.chunk_size,
                                 "decode_scale": stream.scale},
                device=str(self.classifier.device),
            )
            db.add(session)
            db.flush()
            return session.id

    def _finish_session(self, session_id: int, table: pd.DataFrame, elapsed: float, decode_record: dict) -> None:
        with _writing(self.db, "the session's completion") as db:
            session = db.get(VideoSession, session_id)
            for column, value in decode_record.items():  # frames planned vs decoded, warnings
                setattr(session, column, value)
            session.status = SessionStatus.DONE
            session.finished_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            session.processing_s = elapsed
            session.sampled_frames = len(table)
            session.face_frames = int(table["face_found"].sum())
            # The new run is complete, so the runs it replaces (interrupted, failed, or done ones a --force
            # redoes) can go now, not before. A run still live elsewhere is left to finish.
            earlier = db.scalars(
                select(VideoSession).where(
                    VideoSession.subject_id == session.subject_id,
                    VideoSession.video_sha256 == session.video_sha256,
                    VideoSession.settings_key == session.settings_key,
                    VideoSession.id != session_id,
                )
            ).all()
            superseded = [s.id for s in earlier if s.status != SessionStatus.RUNNING or lease_expired(s)]
            if superseded:
                db.execute(delete(VideoSession).where(VideoSession.id.in_(superseded)))

    def _fail_session(self, session_id: int, error: BaseException) -> None:
        """Mark the session failed (or interrupted, when stopped on request) and drop its partial frames,
        so nothing half-done can be exported."""
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        stopped = isinstance(error, ProcessingInterrupted | KeyboardInterrupt)
        try:
            with self.db.begin() as db:
                db.execute(delete(Frame).where(Frame.session_id == session_id))
                session = db.get(VideoSession, session_id)
                session.status = SessionStatus.INTERRUPTED if stopped else SessionStatus.FAILED
                session.error = f"{type(error).__name__}: {message}"[:2000]
                session.finished_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        except OperationalError:
            # The database itself is the problem (e.g. locked); the session stays "running", never "done".
            log.warning("could not mark session %d as failed: the database is not writable", session_id)

    def process(
        self,
        path: str | Path,
        subject: str,
        recorded_at: dt.datetime | None = None,
        force: bool = False,
        progress: ProgressCallback | None = None,
        on_session: Callable[[int], None] | None = None,
    ) -> ProcessResult:
        """Process one video into a stored session and return its per-frame table.

        `on_session` is told the new session's id as soon as it exists (a batch runner uses it to mark
        the session of a worker it had to kill). A stop request raises ProcessingInterrupted after the
        current chunk; another live process on the same video raises SessionBusyError.
        """
        path = Path(path)
        started = time.perf_counter()
        # Opening the stream probes the file: it fails fast, before anything is written.
        stream = VideoStream(path, self.sample_fps, self.chunk_size)
        video_sha256 = sha256_file(path)
        existing = None if force else self._find_done_session(subject, video_sha256)
        if existing is not None:
            with self.db() as db:
                table = frame_table(db, existing)
                warnings = db.get(VideoSession, existing).warnings or []  # e.g. decode_incomplete, said again
            return ProcessResult(existing, table, skipped=True, warnings=warnings)

        ensure_subject(self.db, subject)  # before the session's transaction: safe when workers race
        session_id = self._start_session(path, video_sha256, subject, recorded_at, stream)
        if on_session:
            on_session(session_id)
        self.faces.reset()
        tables: list[pd.DataFrame] = []
        timings = {"faces_s": 0.0, "emotion_s": 0.0, "store_s": 0.0}
        try:
            with Heartbeat(self.db, session_id):
                for chunk in _prefetched(iter(stream)):
                    tables.append(self._process_chunk(session_id, chunk, stream.scale, timings))
                    raise_if_stop_requested()
                    if progress:
                        progress(sum(len(t) for t in tables), len(stream))
            table = pd.concat(tables, ignore_index=True)
            elapsed = time.perf_counter() - started
            self._finish_session(session_id, table, elapsed, stream.decode_record())
        except BaseException as error:  # KeyboardInterrupt too: the session must not stay "running"
            self._fail_session(session_id, error)
            raise
        store_session_features(self.db, session_id, recompute=True, frames=table)  # docs/features.md
        timings["total_s"] = elapsed
        return ProcessResult(session_id, table[list(FRAME_TABLE_COLUMNS)], timings=timings,
                             warnings=stream.warnings)

    def _process_chunk(self, session_id: int, chunk: FrameChunk, scale: float, timings: dict) -> pd.DataFrame:
        tick = time.perf_counter()
        faces = self.faces.analyze(chunk.rgb)
        timings["faces_s"] += (tock := time.perf_counter()) - tick
        probs = self.classifier.predict(faces.crops)
        timings["emotion_s"] += (tick := time.perf_counter()) - tock
        rows = frame_rows(chunk, faces, probs, scale)
        with _writing(self.db, "frames") as db:
            db.execute(insert(Frame), _records_for_insert(session_id, rows))
        release_freed_memory()
        timings["store_s"] += time.perf_counter() - tick
        return rows


def process_video(
    path: str | Path,
    subject: str,
    *,
    recorded_at: dt.datetime | None = None,
    fps: float = DEFAULT_SAMPLE_FPS,
    model: str = "auto",
    device: str = "auto",
    batch_size: int = 64,
    db: str | None = None,
    force: bool = False,
    landmarks: str = "retinaface",
    progress: ProgressCallback | None = None,
    quantize: str | None = None,
) -> tuple[pd.DataFrame, int]:
    """Process one recording into the database; return (per-frame table, session id).

    The library entry point, with no CLI involved. For many videos, build one SessionProcessor and
    call its `process` so the networks load once.
    """
    processor = SessionProcessor(
        db_url=db, model=model, device=device, batch_size=batch_size, sample_fps=fps, landmarks=landmarks,
        quantize=quantize,
    )
    result = processor.process(path, subject, recorded_at=recorded_at, force=force, progress=progress)
    return result.frames, result.session_id
