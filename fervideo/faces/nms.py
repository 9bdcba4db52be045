"""Greedy non-maximum suppression in numpy, with torchvision.ops.nms's semantics.

torchvision is not imported for this: its `ops` module pulls in torch._dynamo, about 2 s of start-up for
a loop over a handful of boxes (after the score threshold a frame has tens of candidates, not thousands).
"""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes [M, 4] (x1, y1, x2, y2) to keep, by descending score.

    A box is dropped when its IoU with a higher-scoring kept box is above `iou_threshold`. Areas are
    (x2 - x1) * (y2 - y1) without the +1 of pixel-inclusive conventions, as in torchvision. Ties in score
    keep the earlier box first (a stable sort), so the result does not depend on the sort's whims.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, np.finfo(np.float64).tiny)
        order = rest[iou <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)
