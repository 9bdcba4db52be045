"""The similarity alignment of align.py, batched on the GPU for frames already uploaded for detection.

cv2.warpAffine maps each crop pixel back through the inverse of the 2x3 matrix and samples bilinearly with
replicated borders; grid_sample does the same given the same source positions (align_corners=True puts
pixel centres at integer coordinates, as OpenCV does). OpenCV interpolates with 1/32-pixel fixed-point
weights, so the crops differ by a grey level or two; the CPU path stays the reference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fervideo.faces.align import CROP_SIZE, DEFAULT_MARGIN, alignment_matrix

# Faces warped per grid_sample call: bounds the float copy of their frames (11 MB per 720p frame).
FACES_PER_CALL = 64


def inverse_affine(matrices: np.ndarray) -> np.ndarray:
    """[M, 2, 3] source->crop matrices -> [M, 2, 3] crop->source matrices."""
    full = np.concatenate([matrices, np.tile([[[0.0, 0.0, 1.0]]], (len(matrices), 1, 1))], axis=1)
    return np.linalg.inv(full)[:, :2]


@torch.inference_mode()
def align_faces_on_device(
    frames: torch.Tensor,
    landmarks5: np.ndarray,
    frame_indices: np.ndarray,
    margin: float = DEFAULT_MARGIN,
    size: int = CROP_SIZE,
) -> np.ndarray:
    """frames: uint8 [N, H, W, 3] on the GPU; crop j from frames[frame_indices[j]] and landmarks5[j]
    -> uint8 [M, size, size, 3] on the host."""
    crops = np.empty((len(landmarks5), size, size, 3), np.uint8)
    if len(landmarks5) == 0:
        return crops
    height, width = frames.shape[1:3]
    inverse = inverse_affine(np.stack([alignment_matrix(points, margin, size) for points in landmarks5]))
    ys, xs = torch.meshgrid(torch.arange(size, device=frames.device, dtype=torch.float64),
                            torch.arange(size, device=frames.device, dtype=torch.float64), indexing="ij")
    crop_points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # [S, S, 3]
    to_unit = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], device=frames.device, dtype=torch.float64)
    for start in range(0, len(landmarks5), FACES_PER_CALL):
        stop = min(start + FACES_PER_CALL, len(landmarks5))
        maps = torch.from_numpy(inverse[start:stop]).to(frames.device)  # [m, 2, 3]
        source = torch.einsum("hwk,mjk->mhwj", crop_points, maps)  # [m, S, S, 2] source pixels (x, y)
        grid = (source * to_unit - 1.0).float()
        chosen = torch.from_numpy(np.asarray(frame_indices[start:stop])).to(frames.device)
        images = frames.index_select(0, chosen).permute(0, 3, 1, 2).float()
        warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
        crops[start:stop] = warped.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return crops
