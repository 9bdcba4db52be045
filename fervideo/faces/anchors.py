"""RetinaFace MobileNet-0.25 anchor boxes and box-coding constants, in numpy (no torch: the ONNX path
decodes the network's outputs without importing it). From face-alignment's prior_box.py (see
retinaface_net.py for the licence)."""

from __future__ import annotations

import numpy as np

# The MobileNet-0.25 configuration the bundled weights were trained with.
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)


def prior_boxes(height: int, width: int) -> np.ndarray:
    """Anchors (cx, cy, w, h), normalised to the input size, in the heads' output order: float32[P, 4].

    Per level: rows, then columns, then the level's two anchor sizes (the original's nested loops)."""
    levels = []
    for step, sizes in zip(STEPS, MIN_SIZES, strict=True):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step / height, (np.arange(cols) + 0.5) * step / width,
                             indexing="ij")
        per_size = [
            np.stack([cx, cy, np.full_like(cx, size / width), np.full_like(cy, size / height)], axis=-1)
            for size in sizes
        ]
        levels.append(np.stack(per_size, axis=2).reshape(-1, 4))
    return np.concatenate(levels).astype(np.float32)
