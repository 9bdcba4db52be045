"""Write real video containers for tests and benchmarks (PyAV: libx264, libx265, libvpx-vp9, ...).

Frames carry a visible frame counter so decoding order can be checked, and timestamps are set
explicitly so variable-frame-rate files can be made on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# (container suffix, codec, pixel format) combinations the project promises to read.
CONTAINER_CODECS = {
    "mp4": ("libx264", "yuv420p"),
    "mov": ("libx265", "yuv420p"),
    "avi": ("mpeg4", "yuv420p"),
    "mkv": ("libx264", "yuv420p"),
    "webm": ("libvpx-vp9", "yuv420p"),
}


# Per-codec encoder options: realtime VP9 needs no lookahead and encodes fast; x265 is quiet.
CODEC_OPTIONS = {
    "libvpx-vp9": {"lag-in-frames": "0", "deadline": "realtime", "cpu-used": "8"},
    "libx265": {"x265-params": "log-level=error"},
}


def pattern_frame(index: int, width: int, height: int) -> np.ndarray:
    """A deterministic RGB frame whose brightness encodes its index (steps of 4, wrapping after 50)."""
    value = 20 + 4 * (index % 50)
    frame = np.full((height, width, 3), value, dtype=np.uint8)
    frame[: height // 4, : width // 4] = (255, 0, 0)  # a corner marker, to catch rotation/flip errors
    return frame


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    timestamps_s: Iterable[float] | None = None,
    fps: float = 30.0,
    codec: str | None = None,
    pix_fmt: str | None = None,
    options: dict | None = None,
    container_options: dict | None = None,
    display_rotation: int = 0,
) -> Path:
    """Encode RGB frames; `timestamps_s` gives each frame's presentation time (VFR when uneven);
    `display_rotation` is the clockwise turn a player applies (a display matrix, as phones write it)."""
    suffix = path.suffix.lstrip(".")
    default_codec, default_pix = CONTAINER_CODECS.get(suffix, ("libx264", "yuv420p"))
    codec, pix_fmt = codec or default_codec, pix_fmt or default_pix
    time_base = Fraction(1, 1000)
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    with av.open(str(path), mode="w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {**CODEC_OPTIONS.get(codec, {}), **(options or {})}
        if display_rotation:
            stream.set_display_rotation(-display_rotation)  # PyAV takes counter-clockwise degrees
        stamps = iter(timestamps_s) if timestamps_s is not None else None
        for index, rgb in enumerate(_chain(first, frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if stamps is not None:
                frame.pts = round(next(stamps) / time_base)
                frame.time_base = time_base
            else:
                frame.pts = None
            for packet in stream.encode(frame):
                container.mux(packet)
            del index
        for packet in stream.encode():
            container.mux(packet)
    return path


def _chain(first, rest):
    yield first
    yield from rest


def assert_pattern_frames(indices: np.ndarray, frames: np.ndarray, atol: float = 3.0) -> None:
    """Each decoded frame is the `pattern_frame` its index says (mean grey of the unmarked lower right, within
    `atol` of lossy coding): frames checked by their content, whatever the decoder's own numbering."""
    height, width = frames.shape[1:3]
    grey = frames[:, height // 2:, width // 2:].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grey, 20 + 4 * (np.asarray(indices) % 50), atol=atol)


def pattern_video(path: Path, n_frames: int = 60, width: int = 160, height: int = 120, fps: float = 30.0,
                  **kwargs) -> Path:
    return write_video(path, (pattern_frame(i, width, height) for i in range(n_frames)), fps=fps, **kwargs)


def looped_clip_video(path: Path, source_frames: np.ndarray, seconds: float, fps: float = 30.0,
                      preset: str = "ultrafast") -> Path:
    """A long video made by playing `source_frames` forwards and backwards (real faces, any length);
    libx264's `preset` ("ultrafast": no B-frames; "medium", its default: B-frames, as most encoders write)."""
    cycle = np.concatenate([source_frames, source_frames[::-1]])
    n_frames = round(seconds * fps)
    return write_video(path, (cycle[i % len(cycle)] for i in range(n_frames)), fps=fps,
                       options={"preset": preset})


def upright_marker_frame(width: int = 96, height: int = 128) -> np.ndarray:
    """A portrait frame with a red top-left quarter: shows at a glance which way up a decoder put it."""
    frame = np.full((height, width, 3), 110, dtype=np.uint8)
    frame[: height // 4, : width // 4] = (255, 0, 0)
    return frame


def rotated_video(path: Path, clockwise: int, n_frames: int = 6, width: int = 96, height: int = 128) -> Path:
    """A phone-style recording: `upright_marker_frame` stored turned, with a display matrix saying to turn
    it `clockwise` degrees when playing (what a phone held upright writes), so it *displays* upright."""
    stored = np.ascontiguousarray(np.rot90(upright_marker_frame(width, height), k=clockwise // 90))  # k>0: ccw
    return write_video(path, (stored for _ in range(n_frames)), display_rotation=clockwise)


def audio_only_file(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """An AAC audio track in an MP4 container, no video stream."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.zeros((1, int(seconds * rate)), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def faststart_noise_video(path: Path, n_frames: int = 50, width: int = 128, height: int = 96) -> Path:
    """An MP4 with its index (moov) at the start and a key frame every 10 frames: the layout in which a
    file cut short still has a readable index. Noise frames make the payload large next to the index."""
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(n_frames))
    return write_video(path, frames, options={"g": "10"}, container_options={"movflags": "faststart"})


def damaged_copy(source: Path, target: Path, keep_fraction: float = 1.0, corrupt_at: float | None = None,
                 corrupt_bytes: int = 2000) -> Path:
    """A copy of `source` cut to `keep_fraction` of its bytes, optionally with random bytes written over
    `corrupt_bytes` at relative position `corrupt_at`."""
    data = bytearray(source.read_bytes()[: int(source.stat().st_size * keep_fraction)])
    if corrupt_at is not None:
        start = int(len(data) * corrupt_at)
        data[start : start + corrupt_bytes] = np.random.default_rng(1).integers(0, 255, corrupt_bytes,
                                                                                   dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target
