"""The one place that wires the stages: video -> faces -> emotion -> store, chunk by chunk.

The stages run as a pipeline of threads with one-chunk hand-offs: decoding (a thread), the faces stage
(a thread: detection, tracking, alignment, quality) and the classifier with the database write (the
caller's thread), so while the classifier runs on chunk k the faces of chunk k+1 are found and chunk k+2
is decoded (PyAV, ONNX Runtime and torch release the GIL). Each network runs one forward pass at a time
under its own lock (the faces' `network_lock`, the classifier's `classifier_lock`), so the detector and
the classifier overlap but a network is never entered twice at once. A chunk's results do not depend on
the overlap: each stage sees the chunks in video order, one at a time (tests/test_pipeline_stages.py).
A SessionProcessor holds only what videos share (the networks, the database); one video's state is a
`VideoRun`, so a worker may call `process` from several threads at once (`--streams`,
fervideo/batch/local.py). The session's rows in the database: fervideo/session_records.py.
Each chunk's rows are written in their own transaction; the session turns `done` only after the last
one, and a failure marks it `failed` with the error, so a half-processed session never looks complete.

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
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from sqlalchemy import insert

from fervideo import __version__
from fervideo.emotion import EmotionClassifier, load_classifier
from fervideo.errors import InvalidArgumentError
from fervideo.faces import FaceAnalyzer, FaceBatch, TargetFaceTracker
from fervideo.interrupts import raise_if_stop_requested
from fervideo.labels import CANONICAL_LABELS
from fervideo.runtime import apply_thread_policy, decode_threads
from fervideo.session_records import (  # noqa: F401  SessionBusyError: re-exported, callers import it from here
    SessionBusyError,
    fail_session,
    find_done_session,
    finish_session,
    start_session,
    writing,
)
from fervideo.store import FRAME_QUALITY_COLUMNS, FRAME_TABLE_COLUMNS, Frame, VideoSession, frame_table, open_database
from fervideo.store.leases import Heartbeat
from fervideo.store.queries import ensure_subject
from fervideo.utils import put_unless_stopped, sha256_file
from fervideo.video import DEFAULT_CHUNK_SIZE, DEFAULT_SAMPLE_FPS, FrameChunk, VideoStream

if TYPE_CHECKING:
    import pandas as pd

# Frame-table quality column -> key in FaceBatch.quality.
QUALITY_SOURCE_KEYS = {"face_size": "face_size", "sharpness": "sharpness", "yaw": "yaw_proxy"}
# The first chunk is short so that the first results (and the progress bar) come in about a second rather
# than after a whole 32-frame chunk has been through both networks beside the next chunk's faces stage
# (issue 10's start-up target). Both networks give the same bits whatever the batch (ONNX Runtime, tested:
# tests/test_pipeline_stages.py), and 8 is a multiple of tracked detection's full-frame period, so its
# full-frame passes fall on the same frames as with equal chunks.
FIRST_CHUNK_SIZE = 8
ProgressCallback = Callable[[int, int], None]  # (sampled frames done, sampled frames planned)
# One chunk's rows, column -> values, in FRAME_ROW_COLUMNS order. Plain arrays, not a DataFrame: pandas
# (~0.3-0.4 s of imports with pyarrow) then loads only once a video's last chunk is stored, so a worker
# reaches its first stored frame that much sooner (issue 10's start-up target).
ChunkRows = dict[str, np.ndarray]
FRAME_ROW_COLUMNS = (*FRAME_TABLE_COLUMNS, *FRAME_QUALITY_COLUMNS)
T = TypeVar("T")


@dataclass
class ProcessResult:
    session_id: int
    frames: pd.DataFrame
    skipped: bool = False  # True when an identical earlier run was reused
    warnings: list[str] = field(default_factory=list)  # e.g. "decode_incomplete: 45 of 50 planned frames decoded"
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class VideoRun:
    """The per-video state of one `process` call; the loaded networks stay in the SessionProcessor, so
    threads of one process can each run a video with their own VideoRun (`--streams`)."""

    stream: VideoStream
    session_id: int
    tracker: TargetFaceTracker  # the target face, carried from chunk to chunk of this video only
    tables: list[ChunkRows] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"faces_s": 0.0, "emotion_s": 0.0, "store_s": 0.0})

    @property
    def frames_done(self) -> int:
        return sum(len(rows["frame_index"]) for rows in self.tables)


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


def _prefetched(items: Iterator[T], depth: int = 1, name: str = "fervideo-decode") -> Generator[T, None, None]:
    """Run the iterator `items` up to `depth` items ahead in a thread; re-raise its errors in the caller.
    A stage of the pipeline: `items` may itself be a stage running on its own thread."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    finished = object()
    stop = threading.Event()

    def hand_on(item: object) -> bool:
        return put_unless_stopped(handoff, item, stop)

    def produce() -> None:
        try:
            for item in items:
                if not hand_on(item):
                    return
            hand_on(finished)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            hand_on(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # stops an upstream stage's thread now, not when collected
                close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while (item := handoff.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


def frame_rows(chunk: FrameChunk, faces: FaceBatch, probs: np.ndarray, scale: float) -> ChunkRows:
    """The per-frame rows of one chunk: every sampled frame, face or not; NaN where there is no face."""
    found = faces.found
    rows: ChunkRows = {"frame_index": chunk.indices.astype(np.int64), "t": chunk.timestamps, "face_found": found,
                       "face_score": np.where(found, faces.scores, np.nan)}
    boxes = np.where(found[:, None], faces.boxes * scale, np.nan)
    rows.update(zip(("x1", "y1", "x2", "y2"), boxes.T, strict=True))
    full_probs = np.full((len(found), len(CANONICAL_LABELS)), np.nan, dtype=np.float64)
    full_probs[found] = probs
    rows.update(zip(CANONICAL_LABELS, full_probs.T, strict=True))
    for column in FRAME_QUALITY_COLUMNS:  # float32, as the faces stage measures them
        values = faces.quality.get(QUALITY_SOURCE_KEYS[column], np.full(len(found), np.nan))
        rows[column] = np.where(found, values, np.nan)
    rows["face_size"] = rows["face_size"] * scale
    return rows  # in FRAME_ROW_COLUMNS order


def frames_table(chunks: list[ChunkRows]) -> pd.DataFrame:
    """The chunks' rows as one DataFrame, in video order (columns FRAME_ROW_COLUMNS)."""
    import pandas as pd

    if not chunks:
        kinds = {"frame_index": np.int64, "face_found": bool}
        return pd.DataFrame({column: np.empty(0, kinds.get(column, np.float64)) for column in FRAME_ROW_COLUMNS})
    return pd.DataFrame({column: np.concatenate([rows[column] for rows in chunks]) for column in FRAME_ROW_COLUMNS})


def _records_for_insert(session_id: int, rows: ChunkRows) -> list[dict]:
    # NaN -> None so the database stores NULL for "no face" rather than a float NaN.
    columns = {column: [None if value != value else value for value in values.tolist()]  # NaN != NaN
               if values.dtype.kind == "f" else values.tolist() for column, values in rows.items()}
    return [{"session_id": session_id, **dict(zip(columns, values, strict=True))}
            for values in zip(*columns.values(), strict=True)]


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
        # Not in the settings key: threaded decoding gives the same frames (tests/test_video_pyav.py).
        self.decode_threads = decode_threads(str(self.classifier.device))
        # One forward pass at a time per network, whichever thread calls it (the faces stage, `--streams`):
        # the detector and the classifier overlap, but each keeps all its threads to one pass.
        self.classifier_lock = threading.Lock()

    @property
    def settings(self) -> dict:
        """Everything that changes the stored result; hashed into the session's settings_key."""
        quantize = self.classifier.quantize_setting  # "int8" (torch) or "int8-onnxruntime"
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

    def session_provenance(self, stream: VideoStream) -> dict:
        """The columns of a new session that say how it was made (fervideo.session_records.start_session)."""
        parameters = self.faces.parameters()
        return {
            "sample_fps": self.sample_fps,
            "settings_key": self.settings_key,
            "package_version": __version__,
            "classifier_name": self.classifier.result_name,  # "+int8" when quantised
            "classifier_sha256": self.classifier.weights_sha256,
            "detector_name": parameters.get("detector", "retinaface"),
            "detector_params": {**parameters, "chunk_size": stream.chunk_size,
                                "first_chunk_size": stream.first_chunk_size, "decode_scale": stream.scale},
            "device": str(self.classifier.device),
        }

    def _start_session(self, path: Path, video_sha256: str, subject_code: str,
                       recorded_at: dt.datetime | None, stream: VideoStream) -> int:
        return start_session(self.db, path, video_sha256, subject_code, recorded_at, stream,
                             self.session_provenance(stream))

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
        stream = VideoStream(path, self.sample_fps, self.chunk_size, decode_threads=self.decode_threads,
                             first_chunk_size=FIRST_CHUNK_SIZE)
        video_sha256 = sha256_file(path)
        existing = None if force else find_done_session(self.db, subject, video_sha256, self.settings_key)
        if existing is not None:
            with self.db() as db:
                table = frame_table(db, existing)
                warnings = db.get(VideoSession, existing).warnings or []  # e.g. decode_incomplete, said again
            return ProcessResult(existing, table, skipped=True, warnings=warnings)

        ensure_subject(self.db, subject)  # before the session's transaction: safe when workers race
        session_id = self._start_session(path, video_sha256, subject, recorded_at, stream)
        if on_session:
            on_session(session_id)
        run = VideoRun(stream, session_id, self.faces.new_tracker())
        try:
            with Heartbeat(self.db, session_id):
                decoded = _prefetched(iter(stream), name="fervideo-decode")
                # closing(): a failure here stops both stage threads now, not when the traceback is freed.
                with closing(_prefetched(self._faces_stage(run, decoded), name="fervideo-faces")) as analyzed:
                    for chunk, faces in analyzed:
                        run.tables.append(self._classify_and_store(run, chunk, faces))
                        raise_if_stop_requested()
                        if progress:
                            progress(run.frames_done, len(stream))
            table = frames_table(run.tables)
            elapsed = time.perf_counter() - started
            finish_session(self.db, session_id, table, elapsed, stream.decode_record())
        except BaseException as error:  # KeyboardInterrupt too: the session must not stay "running"
            fail_session(self.db, session_id, error)
            raise
        from fervideo.features import store_session_features  # pandas: loaded here, after the last chunk

        store_session_features(self.db, session_id, recompute=True, frames=table)  # docs/features.md
        run.timings["total_s"] = elapsed
        return ProcessResult(session_id, table[list(FRAME_TABLE_COLUMNS)], timings=run.timings,
                             warnings=stream.warnings)

    def _faces_stage(self, run: VideoRun,
                     chunks: Generator[FrameChunk, None, None]) -> Iterator[tuple[FrameChunk, FaceBatch]]:
        """The faces of each chunk, in video order (the track carries over); the frames are dropped
        here, the crops are all the classifier needs, so a chunk's frames live no longer than this stage."""
        try:
            for chunk in chunks:
                tick = time.perf_counter()
                faces = self.faces.analyze(chunk.rgb, run.tracker)
                run.stream.recycle(chunk.rgb)  # the crops are new arrays: nothing reads the frames any more
                chunk = FrameChunk(chunk.timestamps, chunk.indices, np.empty((0, *chunk.rgb.shape[1:]), np.uint8))
                release_freed_memory()  # the frames and the detector's buffers, freed on this thread
                run.timings["faces_s"] += time.perf_counter() - tick
                yield chunk, faces
        finally:  # on this stage's thread: a failure or a stop here also stops the decoding thread
            chunks.close()

    def _classify_and_store(self, run: VideoRun, chunk: FrameChunk, faces: FaceBatch) -> ChunkRows:
        tock = time.perf_counter()
        with self.classifier_lock:
            probs = self.classifier.predict(faces.crops)
        run.timings["emotion_s"] += (tick := time.perf_counter()) - tock
        rows = frame_rows(chunk, faces, probs, run.stream.scale)
        with writing(self.db, "frames") as db:
            db.execute(insert(Frame), _records_for_insert(run.session_id, rows))
        release_freed_memory()
        run.timings["store_s"] += time.perf_counter() - tick
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
