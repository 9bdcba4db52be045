"""What the container says about itself, a quiet decoder, and the sequential reader that salvages frames.

decord (the main decoder) exposes neither the codec, the rotation flag nor the header's frame count;
OpenCV's FFmpeg backend does, and it can also read a damaged file front to back where decord refuses to
open it at all (e.g. an MP4 whose index is at the start but whose second half is missing).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# FFmpeg's own logging (inside OpenCV's wheel) would print "partial file" and macroblock errors on a
# damaged file, in the middle of the progress bar; the stream reports what was lost itself. Read by
# OpenCV when its FFmpeg backend first starts, so it is set before cv2 is used.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

log = logging.getLogger(__name__)

# Codecs FFmpeg can name but decord's FFmpeg cannot decode, by the FourCC OpenCV reports. Such a file is read
# front to back by OpenCV where its FFmpeg decodes the codec (AV1 through dav1d in OpenCV >= 5) and refused
# by name where it does not.
UNSUPPORTED_CODECS = {"av01": "AV1"}
# FFmpeg's text-art "video" demuxers: they read any text file as a video of rendered characters.
TEXT_ART_CODECS = {"ansi", "bintext", "xbin", "idf"}

_stderr_lock = threading.Lock()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence what native code writes to file descriptor 2 (FFmpeg, decord's C++ logging).

    Used while a file is opened and probed, before any progress bar is drawn: a damaged or foreign file
    makes the decoders print lines that would bury the one-line error that follows. What they said is
    kept at debug level.
    """
    with _stderr_lock, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            noise = sink.read(4000).decode(errors="replace").strip()
            if noise:
                log.debug("decoder messages while probing: %s", noise)


@dataclass(frozen=True)
class ContainerHeader:
    """What OpenCV's FFmpeg backend reads from the container (nothing decoded yet)."""

    opened: bool
    codec: str  # FourCC, lower case, e.g. "h264", "hevc", "av01"; "unknown" when none
    rotation: int  # degrees clockwise the player applies (display matrix)
    frame_count: int  # as the header states it (an estimate from the duration where `exact_count` is False)
    fps: float
    exact_count: bool  # True for containers whose header counts frames (MP4/MOV family, AVI)

    @property
    def unsupported_codec(self) -> str | None:
        return UNSUPPORTED_CODECS.get(self.codec)

    @property
    def is_text(self) -> bool:
        return self.codec in TEXT_ART_CODECS


def _states_exact_frame_count(path: Path) -> bool:
    """ISO base media (MP4, MOV, M4V, 3GP) and AVI headers count the frames; Matroska/WebM only
    state a duration, from which OpenCV estimates a count that may differ from the real one (VFR)."""
    with open(path, "rb") as file:
        head = file.read(12)
    return head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def read_header(path: Path) -> ContainerHeader:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            return ContainerHeader(False, "unknown", 0, 0, 0.0, False)
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
        codec = fourcc.to_bytes(4, "little").decode("latin-1").strip("\x00 ").lower()
        rotation = int(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 360
        frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        fps = float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    exact = _states_exact_frame_count(path)
    return ContainerHeader(True, codec or "unknown", rotation, frame_count, fps if fps > 0 else 0.0, exact)


FALLBACK_FPS = 30.0  # the timeline's rate for a file that stores neither frame times nor a frame rate


def timeline_rate(fps: float) -> float:
    """The frame rate a file without frame times is timed by: its own where it states a plausible one."""
    return fps if 0 < fps < 1000 else FALLBACK_FPS


class TimeGrid:
    """Decides, frame by frame in presentation order, whether a frame starts the next sampling slot.

    A frame is kept when its timestamp reaches the next point of a regular time grid; the grid then
    advances past it. `sample_fps == 0` keeps every frame. Never assumes evenly spaced frames (VFR).
    """

    # Half a millisecond of slack absorbs timestamp rounding (e.g. 0.0333 s steps at 30 fps).
    SLACK_S = 5e-4

    def __init__(self, sample_fps: float) -> None:
        self.period = 1.0 / sample_fps if sample_fps > 0 else 0.0
        self.next_time: float | None = None

    def keep(self, start: float) -> bool:
        if self.period == 0.0:
            return True
        if self.next_time is None:
            self.next_time = start
        if start + self.SLACK_S < self.next_time:
            return False
        steps = np.floor((start + self.SLACK_S - self.next_time) / self.period) + 1
        self.next_time += float(steps) * self.period
        return True


def read_first_frame(path: Path) -> np.ndarray | None:
    """The first displayable frame (RGB, upright) as OpenCV reads it, or None when none decodes."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        ok, bgr = capture.read() if capture.isOpened() else (False, None)
    finally:
        capture.release()
    return np.ascontiguousarray(bgr[..., ::-1]) if ok else None


def sequential_frames(path: Path, sample_fps: float, max_side: int | None,
                      on_timed_by_rate: Callable[[float], None] | None = None,
                      ) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, start time in s, RGB frame) of the sampled frames, read front to back.

    The salvage reader: it needs no index of the whole file, so it reads a file cut short for as long as
    the data lasts. OpenCV turns frames upright itself (CAP_PROP_ORIENTATION_AUTO is on by default).
    A file whose second frame is timed no later than its first stores no frame times (a raw H.264 stream:
    OpenCV times every frame 0, so --fps 5 kept the first frame only): its frames are then timed by frame
    number / frame rate, and `on_timed_by_rate` is told the rate.
    """
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    rate = timeline_rate(capture.get(cv2.CAP_PROP_FPS))
    grid = TimeGrid(sample_fps)
    index, first, by_rate = 0, 0.0, False
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            start = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if index == 0:
                first = start
            elif index == 1 and start <= first:
                by_rate = True
                if on_timed_by_rate:
                    on_timed_by_rate(rate)
            if by_rate:
                start = first + index / rate
            if grid.keep(start):
                height, width = bgr.shape[:2]
                if max_side and max(height, width) > max_side:
                    factor = max_side / max(height, width)
                    size = (round(width * factor), round(height * factor))
                    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
                yield index, start, np.ascontiguousarray(bgr[..., ::-1])
            index += 1
    finally:
        capture.release()


def rotate_clockwise(frames: np.ndarray, clockwise: int, copy: bool = True) -> np.ndarray:
    """Frames [N, H, W, C] turned `clockwise` degrees (a multiple of 90): a lossless turn; a contiguous
    copy, or with `copy=False` a view of `frames`."""
    if clockwise == 0:
        return frames
    # np.rot90 turns counter-clockwise for positive k.
    turned = np.rot90(frames, k=-(clockwise // 90), axes=(1, 2))
    return np.ascontiguousarray(turned) if copy else turned
