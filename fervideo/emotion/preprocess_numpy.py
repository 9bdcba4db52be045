"""The classifier's preprocessing in numpy, for the ONNX Runtime path without torch.

The same arithmetic as preprocess.to_model_input (float32, BT.601 luma, antialiased bilinear resize with
PyTorch's/PIL's triangle filter, per-channel normalisation); tests/test_speed_paths.py checks the two
agree to float32 rounding."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fervideo.emotion.config import ModelConfig
from fervideo.emotion.preprocess import LUMA


@lru_cache(maxsize=8)
def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of torch's F.interpolate(mode="bilinear", antialias=True, align_corners=False)
    along one axis: a triangle filter widened by the downscale factor, normalised per output pixel."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        centre = scale * (i + 0.5)
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), in_size)
        taps = np.arange(first, last)
        w = np.clip(1.0 - np.abs((taps - centre + 0.5) * inv), 0.0, None)
        weights[i, first:last] = w / w.sum()
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def normalised_levels(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """[C, 256] float32: (level / 255 - mean) / std for every uint8 level, in the float32 steps of the
    arithmetic path below, so a look-up gives the same bits."""
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return (levels - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def to_model_input_numpy(crops: np.ndarray, config: ModelConfig) -> np.ndarray:
    """uint8 [N, H, W, 3] RGB -> float32 [N, C, S, S] normalised as the model was trained."""
    size = config.input_size
    if not config.grayscale and crops.shape[1:3] == (size, size):
        # Colour crops already at the input size (the ViT-Tiny): one table look-up per value, written
        # straight into NCHW, instead of five float passes (~1 ms of the ~17 ms per frame, measured).
        table = normalised_levels(tuple(config.mean), tuple(config.std))
        out = np.empty((len(crops), 3, size, size), np.float32)
        for channel in range(3):
            np.take(table[channel], crops[..., channel], out=out[:, channel])
        return out
    x = crops.astype(np.float32) / np.float32(255.0)
    if config.grayscale:
        x = (x @ np.asarray(LUMA, np.float32))[..., None]
    height, width = x.shape[1:3]
    if (height, width) != (size, size):
        rows, cols = resize_weights(height, size), resize_weights(width, size)
        x = np.einsum("sh,nhwc,tw->nstc", rows, x, cols, optimize=True)
    mean = np.asarray(config.mean, np.float32)
    std = np.asarray(config.std, np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(0, 3, 1, 2), dtype=np.float32)
