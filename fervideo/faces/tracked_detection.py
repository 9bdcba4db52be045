"""Face detection on a window around the tracked face, with a full-frame pass every k frames and on loss.

An interview shows one patient who barely moves between two frames 0.2 s apart, so most of a full-frame
detection is spent on empty background. Here only every `full_every`-th frame of a chunk is searched
whole; the frames between are searched in a window (about two face widths) around the target face found
in the last full frame. The window is cut from the frame as the full pass downscales it, at a corner on
the detector's coarsest anchor grid (32 px), so the network sees exactly the pixels, and places exactly
the anchors, that a full pass would there; what differs is only the context beyond the window's edge.
A window that finds no face, or a face near its edge, is searched again in the full frame: a patient
who moved away or a track that was lost costs one ordinary detection, never a missed face.

It can change results slightly, so it is opt-in (`--detect-region tracked`), enters the session's
settings key, and its agreement with full-frame detection (face found, top-1 emotion, box offsets) is
printed per clip by benchmarks/bench_tracked_detection.py.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import Counter
from contextlib import AbstractContextManager

import numpy as np

from fervideo.faces.detector import RetinaFaceDetector, downscale_frames, resized_shape
from fervideo.faces.tracking import TargetFaceTracker
from fervideo.faces.types import Detections

DEFAULT_FULL_EVERY = 8  # a full-frame pass every 8 sampled frames: 1.6 s at the default 5 fps
# Window side, in face widths: room for the head to move until the next full pass (a face near the
# window's edge is searched again in the full frame, so a narrow window costs retries, not misses).
WINDOW_FACE_WIDTHS = 2.0
GRID = 32  # the detector's largest anchor stride: windows start on it so the anchors coincide
MIN_WINDOW = 128  # detector pixels; RetinaFace needs some context around a small face
MAX_WINDOW_SHARE = 0.6  # of the frame's area: a close-up gains too little from a window
EDGE_MARGIN = 4.0  # detector pixels: a face this close to an inner window edge may be cut


class TrackedDetection:
    """Detects a chunk's faces with the window strategy above; one Detections per frame, source pixels."""

    def __init__(self, detector: RetinaFaceDetector, full_every: int = DEFAULT_FULL_EVERY) -> None:
        if full_every < 1:
            raise ValueError(f"full_every must be >= 1, got {full_every}")
        self.detector = detector
        self.full_every = int(full_every)
        # Frames searched in full, in a window, and in a window then again in full, over every call; a
        # total under a lock because --streams runs several videos' chunks through one analyzer at once.
        self.counts: Counter[str] = Counter(full=0, window=0, window_retried=0)
        self._counts_lock = threading.Lock()

    def detect(self, frames_rgb: np.ndarray, tracker: TargetFaceTracker,
               network_lock: AbstractContextManager | None = None) -> list[Detections]:
        """`tracker` is the video's track (only a copy of it is advanced here); `network_lock` is held
        around each forward pass, as in RetinaFaceDetector.detect."""
        n = len(frames_rgb)
        height, width = frames_rgb.shape[1:3]
        small_h, small_w = resized_shape(height, width, self.detector.detect_size)
        small = downscale_frames(frames_rgb, small_h, small_w)
        to_source = np.array([width / small_w, height / small_h], np.float32)
        results: list[Detections | None] = [None] * n
        anchors = list(range(0, n, self.full_every))
        for index, found in zip(anchors, self.detector.detect(small[anchors], source_size=(height, width),
                                                                    network_lock=network_lock),
                                strict=True):
            results[index] = found
        # The target at each anchor is what the tracker would choose there: found on a copy of it that
        # also sees the window results in between (the real tracker sees every frame later, in order).
        dry_run = copy.deepcopy(tracker)
        retry, windowed = [], 0
        for anchor in anchors:
            members = list(range(anchor + 1, min(anchor + self.full_every, n)))
            chosen = dry_run.select(results[anchor])
            window = None if chosen is None else _window_around(
                results[anchor].boxes[chosen] / np.tile(to_source, 2), small_w, small_h)
            if window is None or not members:
                retry.extend(members)
                continue
            windowed += len(members)
            x0, y0, x1, y1 = window
            offsets = np.tile(np.array([x0, y0], np.float32), (len(members), 1))
            found_in_windows = self.detector.detect_windows(small[members, y0:y1, x0:x1], offsets, to_source,
                                                            network_lock)
            for index, found in zip(members, found_in_windows, strict=True):
                if _trustworthy(found, window, (small_h, small_w), to_source):
                    results[index] = found
                    dry_run.select(found)
                else:
                    retry.append(index)
        if retry:
            for index, found in zip(retry, self.detector.detect(small[retry], source_size=(height, width),
                                                                  network_lock=network_lock),
                                    strict=True):
                results[index] = found
        with self._counts_lock:
            self.counts.update(full=len(anchors) + len(retry), window=windowed,
                               window_retried=windowed - (n - len(anchors) - len(retry)))
        return results  # type: ignore[return-value]  (every frame filled by one of the passes)


def _window_around(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The grid-aligned window of about two face widths around `box`, or None for a close-up."""
    side = max(MIN_WINDOW, WINDOW_FACE_WIDTHS * max(box[2] - box[0], box[3] - box[1]))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = max(0, GRID * math.floor((cx - side / 2) / GRID))
    y0 = max(0, GRID * math.floor((cy - side / 2) / GRID))
    x1 = min(width, GRID * math.ceil((cx + side / 2) / GRID))
    y1 = min(height, GRID * math.ceil((cy + side / 2) / GRID))
    if (x1 - x0) * (y1 - y0) > MAX_WINDOW_SHARE * width * height:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _trustworthy(found: Detections, window: tuple, shape: tuple[int, int], to_source: np.ndarray) -> bool:
    """A window's result stands when it has a face and none lies near an edge inside the frame."""
    if len(found) == 0:
        return False
    height, width = shape
    x0, y0, x1, y1 = window
    boxes = found.boxes / np.tile(to_source, 2)  # detection pixels
    near = [(x0 > 0, boxes[:, 0] <= x0 + EDGE_MARGIN), (y0 > 0, boxes[:, 1] <= y0 + EDGE_MARGIN),
            (x1 < width, boxes[:, 2] >= x1 - EDGE_MARGIN), (y1 < height, boxes[:, 3] >= y1 - EDGE_MARGIN)]
    return not any(inside and touches.any() for inside, touches in near)
