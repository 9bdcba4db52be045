"""Keeps one target face (the patient) across the frames of a video.

The largest face on first sight is the target; afterwards the face overlapping the last target box
the most keeps the track, so a larger face entering (a clinician leaning in) cannot steal it while
the target is still visible. After `max_lost` consecutive frames without the target, the largest face
is acquired afresh, since by then the last box says little about where the target is.
"""

from __future__ import annotations

import numpy as np

from fervideo.faces.types import Detections


def box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def iou_with(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with each of `boxes` [M, 4]."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = box_area(box[None])[0] + box_area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class TargetFaceTracker:
    """Chooses the target face in each frame's detections; state carries over between calls.

    iou_threshold: the minimum overlap with the last target box for a face to continue the track.
    max_lost: frames (sampled frames, not video frames) the target may be missing before re-acquiring.
    """

    def __init__(self, iou_threshold: float = 0.3, max_lost: int = 5) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_lost = int(max_lost)
        self.reset()

    def reset(self) -> None:
        """Forget the target, e.g. before a new video."""
        self.last_box: np.ndarray | None = None
        self.lost = 0

    def select(self, detections: Detections) -> int | None:
        """Index of the target face in `detections`, or None when the target is not in this frame."""
        if self.last_box is not None and self.lost > self.max_lost:
            self.reset()
        index = self._match(detections) if self.last_box is not None else self._largest(detections)
        if index is None:
            self.lost += 1
        else:
            self.last_box = np.asarray(detections.boxes[index], np.float32).copy()
            self.lost = 0
        return index

    def _largest(self, detections: Detections) -> int | None:
        if len(detections) == 0:
            return None
        return int(np.argmax(box_area(detections.boxes)))

    def _match(self, detections: Detections) -> int | None:
        if len(detections) == 0:
            return None
        overlaps = iou_with(self.last_box, detections.boxes)
        best = int(np.argmax(overlaps))
        return best if overlaps[best] >= self.iou_threshold else None
