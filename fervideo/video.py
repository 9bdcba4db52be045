"""Video stage: probe a container and stream its frames, sampled by timestamp, in fixed-size chunks.

Decoding is decord's. We sample on the container's own presentation timestamps (not on frame
indices), so variable-frame-rate recordings, common from phones and telehealth apps, are sampled
evenly in time. Chunks keep memory flat however long the recording is.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from fervideo.errors import InputVideoError, InvalidArgumentError

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_FPS = 5.0
DEFAULT_CHUNK_SIZE = 32
# Frames larger than this on their long side are decoded downscaled: a 224-px face crop needs no more,
# and 4K frames would otherwise cost ~25 MB each.
DEFAULT_MAX_DECODE_SIDE = 1280


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about itself (frame_count may over-report; see VideoStream)."""

    path: str
    duration_s: float
    fps: float
    frame_count: int
    width: int
    height: int
    codec: str
    rotation: int  # degrees clockwise the player applies; frames are delivered already rotated

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameChunk:
    """A run of sampled frames: the contract between the video stage and the faces stage."""

    timestamps: np.ndarray  # float64[N], seconds from the container's timestamps
    indices: np.ndarray  # int64[N], decoded frame indices
    rgb: np.ndarray  # uint8[N, H, W, 3]

    def __len__(self) -> int:
        return len(self.indices)


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise InputVideoError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputVideoError(f"{path}: is a directory, not a video file; pass the video files inside it")
    if path.stat().st_size == 0:
        raise InputVideoError(f"{path}: the file is empty (0 bytes); copy the recording again")
    if not os.access(path, os.R_OK):
        raise InputVideoError(f"{path}: not readable; check the file's permissions")


def _open_reader(path: Path):
    # decord is imported lazily: it loads its own ffmpeg, which we don't want at `import fervideo`.
    import decord

    _check_readable_file(path)
    try:
        return decord.VideoReader(str(path), num_threads=1)
    except (decord.DECORDError, RuntimeError) as exc:  # RuntimeError when no video stream is found
        raise InputVideoError(
            f"{path}: cannot be decoded as a video ({_decoder_message(exc)}); "
            "the file is not a video, or is truncated or corrupt: copy or export it again"
        ) from None


def _decoder_message(exc: Exception) -> str:
    """decord's messages start with a timestamp and its own source path; keep the part a user can use."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else "unknown decoder error"
    text = re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", text)
    text = text.replace(str(Path.cwd()) + "/", "")
    return text[:100]


def _probe_codec_and_rotation(path: Path) -> tuple[str, int]:
    """decord exposes neither the codec nor the rotation flag; OpenCV's FFmpeg backend does."""
    capture = cv2.VideoCapture(str(path))
    try:
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ").lower()
        rotation = int(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 360
    finally:
        capture.release()
    return codec or "unknown", rotation


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the container's metadata without decoding the whole stream."""
    path = Path(path)
    return _probe(path, _open_reader(path))


def _probe(path: Path, reader) -> VideoInfo:
    frame_count = len(reader)
    if frame_count == 0:
        raise InputVideoError(f"{path}: the container holds no video frames")
    fps = float(reader.get_avg_fps())
    height, width = reader[0].shape[:2]
    last_end = float(reader.get_frame_timestamp(frame_count - 1)[1])
    codec, rotation = _probe_codec_and_rotation(path)
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=str(path),
        duration_s=last_end,
        fps=fps,
        frame_count=frame_count,
        width=int(width),
        height=int(height),
        codec=codec,
        rotation=rotation,
    )


def sample_frame_indices(frame_start_times: np.ndarray, sample_fps: float) -> np.ndarray:
    """Pick the frames to keep so that kept frames are `1/sample_fps` seconds apart in *time*.

    A frame is kept when its timestamp reaches the next point of a regular time grid; the grid then
    advances past it. With `sample_fps == 0` every frame is kept. Works for variable frame rates
    because it never assumes frames are evenly spaced.
    """
    if sample_fps < 0:
        raise InvalidArgumentError(f"--fps must be >= 0 (0 = every frame), got {sample_fps}")
    if sample_fps == 0:
        return np.arange(len(frame_start_times), dtype=np.int64)
    period = 1.0 / sample_fps
    # Half a millisecond of slack absorbs timestamp rounding (e.g. 0.0333 s steps at 30 fps).
    slack = 5e-4
    kept: list[int] = []
    next_time = float(frame_start_times[0]) if len(frame_start_times) else 0.0
    for index, start in enumerate(frame_start_times):
        if start + slack >= next_time:
            kept.append(index)
            steps = np.floor((start + slack - next_time) / period) + 1
            next_time += steps * period
    return np.asarray(kept, dtype=np.int64)


def _rotate(frames: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return frames
    # rotation is clockwise; np.rot90 turns counter-clockwise for positive k.
    return np.ascontiguousarray(np.rot90(frames, k=-(rotation // 90), axes=(1, 2)))


def _decode_batch(reader, indices: np.ndarray) -> tuple[np.ndarray, int]:
    """Decode `indices`; on a decoder error fall back frame by frame and stop at the first failure.

    Returns the frames decoded and how many of `indices` they cover. Headers that over-report the
    frame count are common in real recordings; their missing tail is not an error.
    """
    import decord

    try:
        return reader.get_batch(indices.tolist()).asnumpy(), len(indices)
    except decord.DECORDError:
        frames = []
        for index in indices.tolist():
            try:
                frames.append(reader[index].asnumpy())
            except decord.DECORDError:
                break
        if not frames:
            return np.empty((0,), dtype=np.uint8), 0
        return np.stack(frames), len(frames)


class VideoStream:
    """Sampled frames of one video, yielded in chunks of at most `chunk_size`, in presentation order.

    Memory is bounded by one chunk of decoded frames whatever the video's length. Frames whose long
    side exceeds `max_side` are decoded downscaled (by the decoder, before they reach Python);
    `scale` maps decoded pixels back to source pixels. The stream ends cleanly at the last
    decodable frame; a file with no decodable frame at all raises InputVideoError.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_fps: float = DEFAULT_SAMPLE_FPS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_side: int | None = DEFAULT_MAX_DECODE_SIDE,
    ) -> None:
        if chunk_size < 1:
            raise InvalidArgumentError(f"chunk size must be >= 1, got {chunk_size}")
        if sample_fps < 0:
            raise InvalidArgumentError(f"--fps must be >= 0 (0 = every frame), got {sample_fps}")
        self.path = Path(path)
        # Opening indexes the whole file, so the probe's reader is reused unless frames must be downscaled.
        reader = _open_reader(self.path)
        self.info = _probe(self.path, reader)
        self.sample_fps = sample_fps
        self.chunk_size = chunk_size
        self.scale = 1.0
        if max_side and max(self.info.width, self.info.height) > max_side:
            self.scale = max(self.info.width, self.info.height) / max_side
        self._reader = reader if self.scale == 1.0 else self._open_scaled_reader()
        self.start_times = self._reader.get_frame_timestamp(range(len(self._reader)))[:, 0].astype(np.float64)
        self.sampled_indices = sample_frame_indices(self.start_times, sample_fps)

    def _open_scaled_reader(self):
        import decord

        # decord takes the size of the stored (unrotated) frame.
        stored_w, stored_h = self.info.width, self.info.height
        if self.info.rotation in (90, 270):
            stored_w, stored_h = stored_h, stored_w
        return decord.VideoReader(
            str(self.path), width=round(stored_w / self.scale), height=round(stored_h / self.scale), num_threads=1
        )

    def __len__(self) -> int:
        """Frames the sampling plan asks for (the stream may end earlier on a truncated file)."""
        return len(self.sampled_indices)

    def __iter__(self) -> Iterator[FrameChunk]:
        yielded = 0
        for chunk_start in range(0, len(self.sampled_indices), self.chunk_size):
            wanted = self.sampled_indices[chunk_start : chunk_start + self.chunk_size]
            frames, decoded = _decode_batch(self._reader, wanted)
            # decord 0.6's worker thread keeps decoding ahead while we are busy elsewhere, until the
            # whole video sits in memory (dmlc/decord#157). A seek stops the worker and drops its
            # queue; the next batch seeks from the nearest key frame. Costs decode speed, keeps memory flat.
            self._reader.seek(0)
            if decoded:
                yielded += decoded
                kept = wanted[:decoded]
                yield FrameChunk(
                    timestamps=self.start_times[kept], indices=kept, rgb=_rotate(frames, self.info.rotation)
                )
            if decoded < len(wanted):
                log.info("stream ends after %d sampled frames, before the header's %d frames", yielded,
                         self.info.frame_count)
                break
        if yielded == 0:
            raise InputVideoError(f"{self.path}: no frame could be decoded; the file is corrupt or truncated")

