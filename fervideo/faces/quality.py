"""Per-face quality numbers, so later stages (and users) can drop or down-weight frames where the
emotion estimate is unreliable: tiny faces, weak detections, motion blur, strongly turned heads."""

from __future__ import annotations

import cv2
import numpy as np

from fervideo.faces.align import PARALLEL_MIN_FACES, worker_pool

QUALITY_KEYS = ("face_size", "det_score", "sharpness", "yaw_proxy")


def face_size(boxes: np.ndarray) -> np.ndarray:
    """Short side of each box [M, 4] in source pixels; the short side is what limits the detail we get."""
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).astype(np.float32)


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each gray crop [M, S, S, 3]; low values mean blur. Measured on the
    aligned crop so the number is comparable across face sizes."""
    def variance_of_laplacian(crop: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())

    # OpenCV releases the GIL: large batches (the GPU path's) use the alignment's thread pool.
    workers = worker_pool() if len(crops) >= PARALLEL_MIN_FACES else None
    values = list(workers.map(variance_of_laplacian, crops)) if workers else [variance_of_laplacian(c) for c in crops]
    return np.asarray(values, dtype=np.float32).reshape(len(crops))


def yaw_proxy(landmarks5: np.ndarray) -> np.ndarray:
    """Signed horizontal offset of the nose tip from the eye midpoint, over the inter-ocular distance.

    About 0 for a frontal face, growing towards +-0.5 and beyond as the head turns. Measured along the
    eye line so that in-plane head roll does not read as yaw.
    """
    left_eye, right_eye, nose = landmarks5[:, 0], landmarks5[:, 1], landmarks5[:, 2]
    eye_vector = right_eye - left_eye
    inter_ocular = np.linalg.norm(eye_vector, axis=1)
    unit = eye_vector / np.maximum(inter_ocular, 1e-6)[:, None]
    offset = ((nose - (left_eye + right_eye) / 2) * unit).sum(axis=1)
    return (offset / np.maximum(inter_ocular, 1e-6)).astype(np.float32)


def face_quality(
    boxes: np.ndarray, scores: np.ndarray, landmarks5: np.ndarray, crops: np.ndarray
) -> dict[str, np.ndarray]:
    """All quality numbers for M faces, as float32[M] arrays keyed by QUALITY_KEYS."""
    return {
        "face_size": face_size(boxes),
        "det_score": np.asarray(scores, np.float32),
        "sharpness": sharpness(crops),
        "yaw_proxy": yaw_proxy(landmarks5),
    }
