"""Video stage: stream a video's frames, sampled by timestamp, in chunks (opening and probing it:
fervideo/video_probe.py).

decord indexes the file (timestamps, key frames); PyAV decodes it front to back (fervideo/video_pyav.py, on
several decoders at once where asked: fervideo/video_parallel.py), decord by its index where asked or where
PyAV stops short, OpenCV front to back where decord cannot index the file. We sample on the container's own
presentation timestamps (not on frame indices), so variable-frame-rate recordings, common from phones and
telehealth apps, are sampled evenly in time. Chunks keep memory flat however long the recording is.

Frames are delivered upright, turned exactly once (see fervideo/video_probe.py for decord's half of it).

A damaged file is read as far as it decodes, and the stream counts what it planned and what it
decoded: `warnings` says so when frames were lost, so a truncated recording never looks complete.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fervideo.errors import InputVideoError, InvalidArgumentError
from fervideo.video_container import ContainerHeader, TimeGrid, rotate_clockwise, sequential_frames
from fervideo.video_decord import decode_batch
from fervideo.video_parallel import decode_sampled_parallel
from fervideo.video_probe import (  # noqa: F401  VideoInfo, check_video_file, MIN_FRAME_SIDE: imported from here
    MIN_FRAME_SIDE,
    VideoInfo,
    check_video_file,
    frame_timeline,
    open_video,
    probe_info,
    probe_video,
)
from fervideo.video_pyav import decode_sampled, demuxer_names, pyav_available

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_FPS = 5.0
DEFAULT_CHUNK_SIZE = 32
# A chunk holds at most this many bytes of decoded frames: 32 frames up to 1280x720 (the largest size
# decoded by default), fewer when `max_side` lets larger frames through. Each frame lives several times
# over while a chunk is decoded, queued, detected and classified (~11 MB per 720p frame in a chunk, measured
# with the ViT in ONNX Runtime: 8-frame chunks 0.50 GB peak, 32-frame 1.04 GB), but smaller chunks cost speed
# (baseline at 720p: 8-frame chunks ~15 % slower, per-chunk work and smaller detector batches).
MAX_CHUNK_BYTES = 96_000_000
MIN_CHUNK_FRAMES = 4
# With several decoders per video (fervideo.video_parallel, the GPU path), each may hold this many bytes of
# frames decoded ahead of the consumer: a decoder stalls once its buffer is full, so the buffer must hold most
# of a run between key frames (~42 sampled frames at 5 fps with a key frame every 250) for the runs to overlap.
DECODE_AHEAD_BYTES = 256_000_000
# Frames larger than this on their long side are decoded downscaled: a 224-px face crop needs no more,
# and 4K frames would otherwise cost ~25 MB each.
DEFAULT_MAX_DECODE_SIDE = 1280
# A header may count a frame or two more than decode (edit lists); more than this missing is a truncation.
HEADER_COUNT_TOLERANCE = 2


@dataclass(frozen=True)
class FrameChunk:
    """A run of sampled frames: the contract between the video stage and the faces stage."""

    timestamps: np.ndarray  # float64[N], seconds from the container's timestamps
    indices: np.ndarray  # int64[N], decoded frame indices
    rgb: np.ndarray  # uint8[N, H, W, 3], upright

    def __len__(self) -> int:
        return len(self.indices)


class FrameBuffers:
    """Chunk arrays lent by a stream and handed back by their consumer once nothing refers to them, reused
    for later chunks of the same shape. Why: stacking a 32-frame 1280x720 chunk into a fresh 88-MB array
    page-faults it in, 0.4-5.9 ms a frame as the kernel finds huge pages or not, vs 0.25 ms into a reused
    one (docs/speed.md, seventh pass; end to end within run-to-run noise, +2-4 % at 720p). Only arrays
    this pool lent are taken back (not views of them, not other arrays), each at most once, at most `keep`."""

    def __init__(self, keep: int = 3) -> None:
        self.keep = keep
        self._lent: dict[int, weakref.ref] = {}  # id -> the lent array, while it lives
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()  # lent on the decoding thread, handed back on the faces stage's

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A uint8 array of this shape: a handed-back one where there is one, else a new one (uninitialised)."""
        with self._lock:
            for position, array in enumerate(self._free):
                if array.shape == shape:
                    return self._free.pop(position)
            self._lent = {key: ref for key, ref in self._lent.items() if ref() is not None}
        array = np.empty(shape, np.uint8)
        with self._lock:
            self._lent[id(array)] = weakref.ref(array)
        return array

    def give_back(self, array: np.ndarray) -> None:
        """Let a later `take` reuse `array`; the caller must hold no reference it still reads through."""
        with self._lock:
            ref = self._lent.get(id(array))
            if ref is None or ref() is not array or any(kept is array for kept in self._free):
                return
            self._free.append(array)
            del self._free[: -self.keep]  # the oldest go first: chunk shapes change only at the ends

    def stacked(self, frames: Sequence[np.ndarray], turn: int) -> np.ndarray:
        """The frames as one array [N, H, W, 3], turned `turn` degrees clockwise, in a lent array."""
        stacked = np.stack(frames, out=self.take((len(frames), *frames[0].shape)))
        if turn == 0:
            return stacked
        turned = rotate_clockwise(stacked, turn, copy=False)
        lent = self.take(turned.shape)
        np.copyto(lent, turned)
        self.give_back(stacked)
        return lent


def sample_frame_indices(frame_start_times: np.ndarray, sample_fps: float) -> np.ndarray:
    """Pick the frames to keep so that kept frames are `1/sample_fps` seconds apart in *time*.

    With `sample_fps == 0` every frame is kept. Works for variable frame rates because it never
    assumes frames are evenly spaced (see TimeGrid). Frames timed before 0 are never kept (but see
    `presented`).
    """
    if sample_fps < 0:
        raise InvalidArgumentError(f"--fps must be >= 0 (0 = every frame), got {sample_fps}")
    grid = TimeGrid(sample_fps)
    shown = presented(frame_start_times)
    kept = [index for index, start in enumerate(frame_start_times) if shown[index] and grid.keep(float(start))]
    return np.asarray(kept, dtype=np.int64)


def presented(frame_start_times: np.ndarray) -> np.ndarray:
    """Which frames a viewer of the recording sees: those timed from 0 on. An MP4 edit list may start the
    presentation after the first frames (pre-roll); players, OpenCV and PyAV never show them, while decord
    indexes them with negative times (tests/data/no_face.mp4: three). A file whose every frame is timed
    before 0 has merely offset times, and all its frames are presented."""
    times = np.asarray(frame_start_times, dtype=np.float64)
    shown = times >= -TimeGrid.SLACK_S  # timestamp rounding is not an edit list
    return shown if shown.any() else np.ones(len(times), dtype=bool)


def _header_timeline(start_times: np.ndarray, header: ContainerHeader) -> np.ndarray:
    """The frame start times the file *should* have: decord's index, extended to the header's frame
    count when the header counts frames exactly and the index falls short (a file cut short)."""
    missing = header.frame_count - len(start_times)
    if not header.exact_count or header.fps <= 0 or missing <= HEADER_COUNT_TOLERANCE:
        return start_times
    last = float(start_times[-1]) if len(start_times) else 0.0
    return np.concatenate([start_times, last + np.arange(1, missing + 1) / header.fps])


class VideoStream:
    """Sampled frames of one video, yielded in chunks of at most `chunk_size`, in presentation order.

    Memory is bounded by one chunk of decoded frames whatever the video's length. Frames whose long
    side exceeds `max_side` are decoded downscaled (by the decoder, before they reach Python);
    `scale` maps decoded pixels back to source pixels. A damaged file is read as far as it decodes;
    after iterating, `frames_planned`, `frames_decoded` and `warnings` say what was lost. A file with
    no decodable frame at all raises InputVideoError.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_fps: float = DEFAULT_SAMPLE_FPS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_side: int | None = DEFAULT_MAX_DECODE_SIDE,
        decoder: str | None = None,
        decode_threads: int = 1,  # PyAV decoders of this video at once (fervideo.runtime.decode_threads)
        first_chunk_size: int | None = None,  # a shorter first chunk (the first results sooner); default chunk_size
    ) -> None:
        decoder = decoder or os.environ.get("FERVIDEO_DECODER") or "auto"  # docs/speed.md
        if decoder not in ("auto", "pyav", "decord"):
            raise InvalidArgumentError(f"decoder (FERVIDEO_DECODER) must be auto, pyav or decord, got {decoder!r}")
        if chunk_size < 1:
            raise InvalidArgumentError(f"chunk size must be >= 1, got {chunk_size}")
        if first_chunk_size is not None and first_chunk_size < 1:
            raise InvalidArgumentError(f"first chunk size must be >= 1, got {first_chunk_size}")
        if sample_fps < 0:
            raise InvalidArgumentError(f"--fps must be >= 0 (0 = every frame), got {sample_fps}")
        self.path = Path(path)
        # Opening indexes the whole file, so the probe's reader is reused unless frames must be downscaled.
        self.header, reader, first, self.turn = open_video(self.path)
        self.info = probe_info(self.path, self.header, reader, first)
        self.sample_fps = sample_fps
        self.chunk_size = chunk_size  # the largest chunk asked for; see the frame budget below
        self.max_side, self.decode_threads = max_side, decode_threads
        self.scale = 1.0
        if max_side and max(self.info.width, self.info.height) > max_side:
            self.scale = max(self.info.width, self.info.height) / max_side
        # None: decord cannot read this file; frames are salvaged front to back (see video_container).
        self.salvaged = reader is None
        # Indexed files stream front to back through PyAV (video_pyav) where it is installed (auto), or
        # are decoded chunk by chunk from decord's index (FERVIDEO_DECODER=decord). PyAV was once seen
        # to stop yielding frames after a damaged spot; whatever it leaves after its last frame is then
        # decoded by decord (_pyav_chunks), so the faster path never loses a file's tail.
        self.decoder = "opencv" if self.salvaged else decoder if decoder != "auto" else "pyav"
        if self.decoder == "pyav" and not pyav_available():
            self.decoder = "decord"
        if self.decoder == "pyav":
            self._reader = reader
        else:
            self._reader = None if self.salvaged else reader if self.scale == 1.0 else self._open_scaled_reader()
        if self._reader is not None:
            indexed = self._reader.get_frame_timestamp(range(len(self._reader)))[:, 0]
            self.start_times, self.synthesized_fps = frame_timeline(indexed, self.info.fps)
            self.sampled_indices = sample_frame_indices(self.start_times, sample_fps)
            planned_timeline = _header_timeline(self.start_times, self.header)
            # Where decoding may start on its own (fervideo.video_parallel, decode_threads > 1).
            self.key_indices = np.asarray(self._reader.get_key_indices(), dtype=np.int64)
            if self.decoder == "decord" and not self.decord_seeks and pyav_available():
                self.decoder = "pyav"  # front to back
            if self.decoder == "pyav":
                self._reader = None  # PyAV reads the frames; decord's reader is done with
        else:
            self.start_times = self.sampled_indices = self.synthesized_fps = None
            planned_timeline = _header_timeline(np.empty(0), self.header)
        self.frames_planned = len(sample_frame_indices(planned_timeline, sample_fps))
        frame_bytes = 3 * round(self.info.width / self.scale) * round(self.info.height / self.scale)
        self.chunk_size = max(min(chunk_size, MIN_CHUNK_FRAMES), min(chunk_size, MAX_CHUNK_BYTES // frame_bytes))
        self.first_chunk_size = min(first_chunk_size or self.chunk_size, self.chunk_size)
        self.decode_ahead_frames = max(self.chunk_size, DECODE_AHEAD_BYTES // frame_bytes)  # per decoder
        self.frames_decoded = 0
        self.finished = False
        self._buffers = FrameBuffers()  # chunk arrays handed back with `recycle`, reused (PyAV and salvage paths)

    @functools.cached_property
    def decord_seeks(self) -> bool:
        """Whether decord's random access gives the frames asked for: not in a file without frame times (H.264
        in AVI) nor in MPEG-TS, where it handed back others (tests/test_video.py). Such a file is read by PyAV,
        and frames PyAV leaves are lost rather than taken from decord."""
        return self.start_times is not None and not (self.synthesized_fps or "mpegts" in demuxer_names(self.path))

    def recycle(self, frames: np.ndarray) -> None:
        """Hand back a chunk's `rgb` once nothing reads it any more: a later chunk may reuse its memory
        (the pipeline's faces stage does, after finding the faces). Arrays the stream did not yield are ignored."""
        self._buffers.give_back(frames)

    def _decord_reader(self):
        """A fresh decord reader of this file, at the decoding scale."""
        import decord

        return decord.VideoReader(str(self.path), num_threads=1) if self.scale == 1.0 else self._open_scaled_reader()

    def _open_scaled_reader(self):
        import decord

        # decord scales the frame it outputs: turned already (MP4/MOV), or still to be turned by `turn`.
        width, height = round(self.info.width / self.scale), round(self.info.height / self.scale)
        if self.turn in (90, 270):
            width, height = height, width
        return decord.VideoReader(str(self.path), width=width, height=height, num_threads=1)

    def _chunk_sizes(self) -> Iterator[int]:
        """How many frames each chunk holds, in order: the first may be shorter, then chunk_size."""
        yield self.first_chunk_size
        while True:
            yield self.chunk_size

    def __len__(self) -> int:
        """Frames the sampling plan asks for (the stream may end earlier on a truncated file)."""
        return self.frames_planned

    @property
    def warnings(self) -> list[str]:
        """What the user must know about the decoded frames; complete once the stream is exhausted."""
        notes = []
        if self.salvaged and self.header.unsupported_codec:
            # OpenCV's FFmpeg decodes AV1 (dav1d, OpenCV >= 5) where decord's cannot.
            notes.append(f"fallback_decoder: decord cannot decode {self.header.unsupported_codec}; "
                         "frames were read front to back")
        elif self.salvaged:
            notes.append("fallback_decoder: the file's index could not be read; frames were read front to back")
        if self.synthesized_fps:
            notes.append("timestamps_synthesized: the file stores no usable frame times; times are frame number"
                         f" / {self.synthesized_fps:g} frames/s")
        if self.finished and self.frames_decoded < self.frames_planned:
            notes.append(f"decode_incomplete: {self.frames_decoded} of {self.frames_planned} planned frames decoded")
        return notes

    def decode_record(self) -> dict:
        """The session columns that say what decoding planned and got (store.VideoSession)."""
        return {"frames_planned": self.frames_planned, "frames_decoded": self.frames_decoded,
                "warnings": self.warnings}

    def __iter__(self) -> Iterator[FrameChunk]:
        chunks = (self._sequential_chunks() if self.salvaged else
                  self._pyav_chunks() if self.decoder == "pyav" else self._indexed_chunks())
        self.frames_decoded, self.finished = 0, False
        for chunk in chunks:
            self.frames_decoded += len(chunk)
            yield chunk
        self.frames_planned = max(self.frames_planned, self.frames_decoded)
        self.finished = True
        if self.frames_decoded == 0:
            raise InputVideoError(f"{self.path}: no frame could be decoded; the file is corrupt or truncated")
        if self.frames_decoded < self.frames_planned:
            log.info("%s: %d of %d planned frames decoded", self.path, self.frames_decoded, self.frames_planned)

    def _indexed_chunks(self, indices: np.ndarray | None = None) -> Iterator[FrameChunk]:
        """Chunks of `indices` (default: the whole sampling plan) decoded by decord from its index."""
        indices = self.sampled_indices if indices is None else indices
        chunk_start, sizes = 0, self._chunk_sizes()
        while chunk_start < len(indices):
            wanted = indices[chunk_start : (chunk_start := chunk_start + next(sizes))]
            frames, kept = decode_batch(self._reader, wanted)
            # decord 0.6's worker thread keeps decoding ahead while we are busy elsewhere, until the
            # whole video sits in memory (dmlc/decord#157). A seek stops the worker and drops its
            # queue; the next batch seeks from the nearest key frame. Costs decode speed, keeps memory flat.
            self._reader.seek(0)
            if not len(kept):
                return  # a whole chunk undecodable: the rest of the file is lost
            yield FrameChunk(timestamps=self.start_times[kept], indices=kept, rgb=rotate_clockwise(frames, self.turn))

    def _pyav_chunks(self) -> Iterator[FrameChunk]:
        # PyAV leaves every frame as stored: the container's whole rotation is applied here.
        size = None
        if self.scale != 1.0:
            width, height = round(self.info.width / self.scale), round(self.info.height / self.scale)
            size = (height, width) if self.header.rotation in (90, 270) else (width, height)
        batch: list[tuple[int, float, np.ndarray]] = []
        last, sizes = -1, self._chunk_sizes()
        wanted = next(sizes)
        plan = (self.path, self.start_times, self.sampled_indices)
        # Without frame times of its own (synthesized_fps) a file's frames are placed by counting, on one decoder.
        frames = (decode_sampled(*plan, size, by_time=False) if self.synthesized_fps else
                  decode_sampled_parallel(*plan, self.key_indices, size, self.decode_threads, self.chunk_size,
                                          self.decode_ahead_frames))
        for index, rgb in frames:
            if last < 0 and index > self.sampled_indices[0] and self.decord_seeks:
                # Planned frames before PyAV's first (a damaged start; frames an edit list hides are never
                # planned, see `presented`): decord decodes them, as it does those after PyAV's last.
                yield from self._decord_chunks(self.sampled_indices[self.sampled_indices < index])
            batch.append((index, float(self.start_times[index]), rgb))
            last = index
            if len(batch) == wanted:
                yield _chunk_of(batch, self.header.rotation, self._buffers)
                batch, wanted = [], next(sizes)
        if batch:
            yield _chunk_of(batch, self.header.rotation, self._buffers)
        tail = self.sampled_indices[self.sampled_indices > last]
        if len(tail) and self.decord_seeks:
            # PyAV stopped short of the end (damage, or a demuxer that gave up): decord, which seeks by
            # its index, decodes what is left. Indices stay increasing; a frame neither reads is lost.
            log.info("%s: PyAV stopped before %d planned frames; decoding them with decord", self.path, len(tail))
            yield from self._decord_chunks(tail)

    def _decord_chunks(self, indices: np.ndarray) -> Iterator[FrameChunk]:
        """Chunks of `indices` decoded by a decord reader opened for them (the frames PyAV did not give)."""
        self._reader = self._decord_reader()
        try:
            yield from self._indexed_chunks(indices)
        finally:
            self._reader = None

    def _timed_by_rate(self, rate: float) -> None:
        self.synthesized_fps = rate  # said in `warnings`

    def _sequential_chunks(self) -> Iterator[FrameChunk]:
        batch: list[tuple[int, float, np.ndarray]] = []
        max_side = self.max_side if self.scale != 1.0 else None
        sizes = self._chunk_sizes()
        wanted = next(sizes)
        for item in sequential_frames(self.path, self.sample_fps, max_side, self._timed_by_rate):
            batch.append(item)
            if len(batch) == wanted:
                yield _chunk_of(batch, buffers=self._buffers)
                batch, wanted = [], next(sizes)
        if batch:
            yield _chunk_of(batch, buffers=self._buffers)


def _chunk_of(batch: list[tuple[int, float, np.ndarray]], turn: int = 0,
              buffers: FrameBuffers | None = None) -> FrameChunk:
    indices, times, frames = zip(*batch, strict=True)
    rgb = buffers.stacked(frames, turn) if buffers is not None else rotate_clockwise(np.stack(frames), turn)
    return FrameChunk(timestamps=np.asarray(times, dtype=np.float64), indices=np.asarray(indices, dtype=np.int64),
                      rgb=rgb)
