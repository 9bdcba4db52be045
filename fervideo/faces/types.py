"""Plain data types shared by the face modules, so that detector, tracker and quality code can
exchange detections without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """All faces found in one frame, in source-frame pixel coordinates, highest score first.

    boxes: float32[M, 4] as (x1, y1, x2, y2); scores: float32[M]; landmarks: float32[M, 5, 2] in the
    order left eye, right eye (as seen in the image), nose tip, left mouth corner, right mouth corner.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
