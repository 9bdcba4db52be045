"""Similarity alignment of a face to a 224x224 RGB crop from its 5 landmarks.

The target positions are the standard ArcFace 112x112 five-point template scaled to 224. That template
is tight (made for identity: the chin and forehead are cut off), while an expression classifier needs
the brows, the mouth and the chin, so the template is shrunk towards the crop centre by `margin`:
with margin m the template occupies 1 / (1 + m) of the crop side. The default 0.2 leaves the chin and
the brows inside the crop with a little background around them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import cv2
import numpy as np

from fervideo.runtime import available_cores

CROP_SIZE = 224
DEFAULT_MARGIN = 0.2
# ArcFace (insightface) template for 112x112 crops: left eye, right eye, nose tip, mouth left, mouth right.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template_points(margin: float = DEFAULT_MARGIN, size: int = CROP_SIZE) -> np.ndarray:
    """Where the 5 landmarks land in a `size` crop for a given margin (float64[5, 2])."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    centre = size / 2.0
    scaled = ARCFACE_TEMPLATE_112 * (size / 112.0)
    return centre + (scaled - centre) / (1.0 + margin)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation from source to target points (Umeyama).

    Closed form rather than cv2.estimateAffinePartial2D: it uses all five points, is deterministic and
    never returns None, which a RANSAC/LMEDS fit can for nearly collinear points.
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src_c, dst_c = source - src_mean, target - dst_mean
    covariance = dst_c.T @ src_c / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # forbid mirroring; faces are never flipped
        reflection[1, 1] = -1
    rotation = u @ reflection @ vt
    src_var = (src_c**2).sum() / len(source)
    scale = (singular * np.diag(reflection)).sum() / src_var if src_var > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def similarity_transforms(sources: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`similarity_transform` for M point sets at once: sources [M, K, 2] -> [M, 2, 3].

    One batched SVD instead of M small ones: on the GPU path the per-face fits were a tenth of the CPU time."""
    sources = np.asarray(sources, np.float64)
    target = np.asarray(target, np.float64)
    count = sources.shape[1]
    src_mean, dst_mean = sources.mean(axis=1), target.mean(axis=0)
    src_c, dst_c = sources - src_mean[:, None], target - dst_mean
    covariance = np.einsum("kd,mke->mde", dst_c, src_c) / count
    u, singular, vt = np.linalg.svd(covariance)
    flip = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)  # forbid mirroring
    reflection = np.stack([np.ones_like(flip), flip], axis=1)  # the diagonal
    rotation = u @ (reflection[:, :, None] * vt)
    src_var = (src_c**2).sum(axis=(1, 2)) / count
    scale = np.where(src_var > 0, (singular * reflection).sum(axis=1) / np.where(src_var > 0, src_var, 1), 1.0)
    translation = dst_mean - scale[:, None] * np.einsum("mij,mj->mi", rotation, src_mean)
    return np.concatenate([scale[:, None, None] * rotation, translation[:, :, None]], axis=2)


def alignment_matrix(
    landmarks5: np.ndarray, margin: float = DEFAULT_MARGIN, size: int = CROP_SIZE
) -> np.ndarray:
    """The 2x3 matrix mapping source-frame pixels to crop pixels for one face."""
    return similarity_transform(np.asarray(landmarks5).reshape(5, 2), template_points(margin, size))


def align_face(
    frame_rgb: np.ndarray, landmarks5: np.ndarray, margin: float = DEFAULT_MARGIN, size: int = CROP_SIZE
) -> np.ndarray:
    """Crop and align one face: uint8[size, size, 3] RGB. Border replication avoids black wedges
    (which a classifier may read as features) when the face is near the frame edge."""
    matrix = alignment_matrix(landmarks5, margin, size)
    return cv2.warpAffine(
        frame_rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def align_faces(
    frames_rgb: np.ndarray,
    landmarks5: np.ndarray,
    margin: float = DEFAULT_MARGIN,
    size: int = CROP_SIZE,
    frame_indices: np.ndarray | None = None,
) -> np.ndarray:
    """One aligned crop per landmark set: landmarks [M, 5, 2] -> uint8[M, size, size, 3].

    Crop j comes from frames_rgb[frame_indices[j]] (default: frames_rgb[j], then M frames are needed).
    Taking indices rather than a pre-selected stack spares copying whole frames (2.7 MB each at 720p).
    Large batches are warped on a few threads (OpenCV releases the GIL): on a GPU machine the warps are
    what the CPU does per frame, and one core cannot keep up with the GPU."""
    if frame_indices is None:
        frame_indices = np.arange(len(frames_rgb))
    if len(frame_indices) != len(landmarks5):
        raise ValueError(f"{len(frame_indices)} frames but {len(landmarks5)} landmark sets")
    crops = np.empty((len(landmarks5), size, size, 3), dtype=np.uint8)
    if len(crops) == 0:
        return crops
    matrices = similarity_transforms(np.asarray(landmarks5).reshape(-1, 5, 2), template_points(margin, size))

    def warp(j: int) -> None:
        crops[j] = cv2.warpAffine(frames_rgb[frame_indices[j]], matrices[j], (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)

    if len(crops) >= PARALLEL_MIN_FACES and (workers := worker_pool()) is not None:
        list(workers.map(warp, range(len(crops))))
    else:
        for j in range(len(crops)):
            warp(j)
    return crops


# Below this many faces a thread pool costs more than it saves.
PARALLEL_MIN_FACES = 64


@lru_cache(maxsize=1)
def worker_pool() -> ThreadPoolExecutor | None:
    """A small shared pool, only where there are cores to spare (not on the 2-core machines)."""
    cores = available_cores()
    return ThreadPoolExecutor(max_workers=min(8, cores), thread_name_prefix="fervideo-align") if cores > 4 else None
