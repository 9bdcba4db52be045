"""Opening a video: fail fast on what cannot be processed, read what the container says about itself, and the
first frame upright (decord applies an MP4/MOV display matrix itself but ignores Matroska/WebM rotation, which
is then applied here, checked against OpenCV's display orientation). The streaming of frames: fervideo/video.py.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fervideo.errors import InputVideoError
from fervideo.video_container import (
    ContainerHeader,
    quiet_stderr,
    read_first_frame,
    read_header,
    rotate_clockwise,
    timeline_rate,
)
from fervideo.video_decord import decoder_message, turn_still_needed, unpadded_rgb

# decord reports FFmpeg's "no time" (-2^63 ticks, e.g. -3.07e17 s) for frames of a container that stores none
# (H.264 in AVI); no recording has a frame ~11 days from its start.
MAX_PLAUSIBLE_TIME_S = 1e6


def plausible_times(times: np.ndarray) -> bool:
    return bool(np.isfinite(times).all() and (np.abs(times) < MAX_PLAUSIBLE_TIME_S).all())


def frame_timeline(start_times: np.ndarray, fps: float) -> tuple[np.ndarray, float | None]:
    """(frame start times, None) as decord indexed them, or, where the file stores none usable, (frame
    number / rate, rate): AVI stores no frame times at all, its frames being 1/fps apart by definition."""
    times = np.asarray(start_times, dtype=np.float64)
    if plausible_times(times):
        return times, None
    rate = timeline_rate(fps)
    return np.arange(len(times)) / rate, rate


# The face detector finds nothing in a smaller frame (a face needs ~20 px), and below 32 px decord returns
# malformed arrays (16x16 frames come out with 6 channels).
MIN_FRAME_SIDE = 32


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about itself (frame_count may over-report; see VideoStream)."""

    path: str
    duration_s: float
    fps: float
    frame_count: int
    width: int  # as displayed (after rotation)
    height: int
    codec: str
    rotation: int  # degrees clockwise the player applies; frames are delivered already rotated

    def as_dict(self) -> dict:
        return asdict(self)



def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise InputVideoError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputVideoError(f"{path}: is a directory, not a video file; pass the video files inside it")
    if not os.access(path, os.R_OK):
        raise InputVideoError(f"{path}: not readable; check the file's permissions")
    if path.stat().st_size == 0:
        raise InputVideoError(f"{path}: the file is empty (0 bytes); copy the recording again")


def _undecodable(path: Path, header: ContainerHeader, failure: str) -> InputVideoError:
    if header.unsupported_codec:
        return InputVideoError(
            f"{path}: unsupported codec {header.unsupported_codec}; re-encode it, e.g. "
            f"`ffmpeg -i {path.name} -c:v libx264 out.mp4`"
        )
    if "cannot find video stream" in failure:
        return InputVideoError(f"{path}: cannot be decoded as a video: no video stream found (an audio-only "
                               "file, or one cut short); pass the complete video recording")
    return InputVideoError(
        f"{path}: cannot be decoded as a video ({failure}); "
        "the file is not a video, or is truncated or corrupt: copy or export it again"
    )


def _check_frame(path: Path, frame: np.ndarray) -> None:
    height, width = frame.shape[:2]
    if min(height, width) < MIN_FRAME_SIDE:
        raise InputVideoError(
            f"{path}: frames are {width}x{height} pixels, too small for face detection; "
            f"the minimum is {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}"
        )
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputVideoError(f"{path}: the decoder returns frames of shape {frame.shape}, not RGB images; "
                              "re-encode the file to H.264")


def open_video(path: Path):
    """(header, decord reader or None when only the salvage reader can read it, first upright frame,
    the clockwise turn decord's frames still need)."""
    # decord is imported lazily: it loads its own ffmpeg, which we don't want at `import fervideo`.
    import decord

    # Its FFmpeg would print every damaged macroblock, mid progress bar; the stream counts losses itself.
    decord.logging.set_level(decord.logging.QUIET)
    _check_readable_file(path)
    with quiet_stderr():
        header = read_header(path)
        if header.is_text:
            raise InputVideoError(f"{path}: a text file, not a video; pass the video recording")
        reader, first, failure = None, None, "no video frames"
        try:
            reader = decord.VideoReader(str(path), num_threads=1)
            first = unpadded_rgb(reader[0].asnumpy()) if len(reader) else None
            if first is not None:
                # Reading a frame starts decord's worker decoding ahead, holding every frame it decodes
                # (dmlc/decord#157): 1.5 GB within 2 s of opening a 720p file. A seek stops it.
                reader.seek(0)
        except (decord.DECORDError, RuntimeError) as exc:  # RuntimeError when no video stream is found
            failure = decoder_message(exc)
        if first is None:
            # decord indexes the whole file first and gives up on a missing tail or a damaged index;
            # reading front to back still gets what is there.
            reader, first = None, read_first_frame(path)
            if first is None:
                raise _undecodable(path, header, failure)
        turn = 0
        if reader is not None and header.rotation:
            turn = turn_still_needed(first, read_first_frame(path), header.rotation)
            first = rotate_clockwise(first[None], turn)[0]
    _check_frame(path, first)
    return header, reader, first, turn


def probe_info(path: Path, header: ContainerHeader, reader, first: np.ndarray) -> VideoInfo:
    height, width = first.shape[:2]  # upright: this is the displayed size
    if reader is not None:
        frame_count = len(reader)
        fps = float(reader.get_avg_fps())
        duration = float(reader.get_frame_timestamp(frame_count - 1)[1])
        if not plausible_times(np.array([duration])):  # no usable times: see frame_timeline
            duration = frame_count / fps if fps > 0 else 0.0
    else:
        frame_count, fps = header.frame_count, header.fps
        duration = frame_count / fps if fps else 0.0
    return VideoInfo(
        path=str(path),
        duration_s=duration,
        fps=fps,
        frame_count=frame_count,
        width=int(width),
        height=int(height),
        codec=header.codec,
        rotation=header.rotation,
    )


def check_video_file(path: str | os.PathLike) -> None:
    """Fail fast on a file that cannot be processed: milliseconds (the header and one frame, no index of
    the whole file), so a wrong path is reported before any network loads. Raises InputVideoError."""
    path = Path(path)
    _check_readable_file(path)
    with quiet_stderr():
        header = read_header(path)
        first = read_first_frame(path) if header.opened and not header.is_text else None
    if first is None:
        open_video(path)  # says precisely why (text, audio only, unsupported codec, ...), or decord reads it
    else:
        _check_frame(path, first)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the container's metadata, decoding only the first frame."""
    path = Path(path)
    header, reader, first, _ = open_video(path)
    return probe_info(path, header, reader, first)
