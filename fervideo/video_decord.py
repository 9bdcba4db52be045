"""decord's quirks, kept apart from the video stage's logic: its error messages, the rotation it applies
for MP4/MOV but not for Matroska/WebM, the padded rows it returns at some widths, and batch decoding
that falls back frame by frame past a damaged frame."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fervideo.video_container import rotate_clockwise


def decoder_message(exc: Exception) -> str:
    """decord's messages start with a timestamp and its own source path; keep the part a user can use."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else "unknown decoder error"
    text = re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", text)
    text = text.replace(str(Path.cwd()) + "/", "")
    if text.startswith("Error reading "):  # decord's words for "FFmpeg found no container it knows"
        return "no known container format, or its index is missing"
    return text[:100]


def turn_still_needed(decoded: np.ndarray, displayed: np.ndarray | None, rotation: int) -> int:
    """The clockwise turn decord left undone: none for MP4/MOV (it applies their display matrix), the
    whole rotation for Matroska/WebM (it ignores theirs). Decided by which of the two makes decord's first
    frame match OpenCV's, which FFmpeg turns as a player would."""
    if displayed is None:
        return 0

    def distance(turn: int) -> float:
        turned = rotate_clockwise(decoded[None], turn)[0]
        if turned.shape != displayed.shape:
            return np.inf
        return float(np.abs(turned[::4, ::4].astype(np.int16) - displayed[::4, ::4]).mean())

    return min((0, rotation), key=distance)


def unpadded_rgb(frames: np.ndarray) -> np.ndarray:
    """decord 0.6 reports frames whose rows it padded (some widths, e.g. 48 or 72 px) as having 4 or 6
    channels; the true layout is rows of `width * 3` bytes followed by padding. Strip the padding."""
    if frames.shape[-1] <= 3:
        return frames
    *lead, height, width, channels = frames.shape
    rows = frames.reshape(*lead, height, width * channels)[..., : width * 3]
    return np.ascontiguousarray(rows.reshape(*lead, height, width, 3))


def decode_batch(reader, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode `indices`; on a decoder error fall back frame by frame, skipping the frames that fail.

    Returns the frames decoded and their indices (a subset of `indices`, in order).
    """
    import decord

    try:
        return unpadded_rgb(reader.get_batch(indices.tolist()).asnumpy()), indices
    except (decord.DECORDError, RuntimeError):
        frames, kept = [], []
        for index in indices.tolist():
            try:
                frames.append(reader[index].asnumpy())
                kept.append(index)
            except (decord.DECORDError, RuntimeError):
                continue
        if not frames:
            return np.empty((0,), dtype=np.uint8), np.empty((0,), dtype=np.int64)
        return unpadded_rgb(np.stack(frames)), np.asarray(kept, dtype=np.int64)
