"""Turn uint8 RGB face crops into a model's input tensor, on the model's device.

Done in torch rather than numpy so that on a GPU the resize and normalisation run there too, and only
uint8 bytes cross the bus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fervideo.emotion.config import ModelConfig

if TYPE_CHECKING:
    import torch

# ITU-R BT.601 luma, the weights OpenCV's RGB2GRAY uses, which the FER2013 models were trained with.
LUMA = (0.299, 0.587, 0.114)


def check_crops(crops: np.ndarray) -> None:
    """Crops come from the faces stage, so a wrong layout is a programming error, not a user error."""
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected uint8 crops of shape [N, H, W, 3], got {crops.dtype} {crops.shape}")


def to_model_input(crops: np.ndarray, config: ModelConfig, device: torch.device) -> torch.Tensor:
    """uint8 [N, H, W, 3] RGB -> float32 [N, C, S, S] normalised as the model was trained."""
    import torch  # here, not at the top: check_crops and LUMA serve the torch-free ONNX path too
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(crops))
    if device.type == "cuda":  # page-locked memory lets the copy run asynchronously, at full bus speed
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if config.grayscale:
        luma = torch.tensor(LUMA, device=device).view(1, 3, 1, 1)
        x = (x * luma).sum(dim=1, keepdim=True)
    size = config.input_size
    if x.shape[-2:] != (size, size):
        # antialias keeps a 224 -> 64 shrink from aliasing fine texture into the small model's input.
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(config.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(config.std, device=device).view(1, -1, 1, 1)
    return (x - mean) / std
