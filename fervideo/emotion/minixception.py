"""A PyTorch port of the Keras mini-Xception (oarriaga/face_classification), the FER2013 model.

The layer graph mirrors the Keras `model_config` of `fer2013_mini_xception.hdf5` one to one, so the
converter can copy weights by position. Two Keras habits need care to reproduce the numbers exactly:
TensorFlow's 'same' padding puts the odd extra pixel at the bottom/right (PyTorch pads symmetrically),
and Keras' BatchNormalization epsilon is 1e-3, not PyTorch's 1e-5.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN_EPSILON = 1e-3
MINI_XCEPTION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
MINI_XCEPTION_TO_CANONICAL: dict[str, str] = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad like TensorFlow's padding='same': total = max((ceil(n/s)-1)*s + k - n, 0), extra at the end."""
    height, width = x.shape[-2:]
    pad_h = max((math.ceil(height / stride) - 1) * stride + kernel - height, 0)
    pad_w = max((math.ceil(width / stride) - 1) * stride + kernel - width, 0)
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=value)


def keras_batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPSILON)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth_multiplier=1, no bias): a depthwise 3x3 then a pointwise 1x1."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(tf_same_pad(x, self.kernel, 1)))


class ResidualBlock(nn.Module):
    """Two separable convs + a stride-2 max-pool, added to a strided 1x1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = keras_batch_norm(out_channels)
        self.sep1 = SeparableConv2d(in_channels, out_channels)
        self.bn1 = keras_batch_norm(out_channels)
        self.sep2 = SeparableConv2d(out_channels, out_channels)
        self.bn2 = keras_batch_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut_bn(self.shortcut(tf_same_pad(x, 1, 2)))
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        # -inf padding: TensorFlow's max-pool ignores padded cells rather than treating them as zeros.
        y = F.max_pool2d(tf_same_pad(y, 3, 2, value=float("-inf")), 3, stride=2)
        return y + residual


class MiniXception(nn.Module):
    """mini-Xception for 64x64x1 input in [-1, 1]; returns logits (Keras applies the softmax as a layer)."""

    def __init__(self, num_classes: int = 7, in_channels: int = 1) -> None:
        super().__init__()
        # The stem uses 'valid' padding in Keras, which is PyTorch's default of no padding.
        self.conv1 = nn.Conv2d(in_channels, 8, 3, bias=False)
        self.bn1 = keras_batch_norm(8)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = keras_batch_norm(8)
        self.blocks = nn.ModuleList(ResidualBlock(c, 2 * c) for c in (8, 16, 32, 64))
        self.head = nn.Conv2d(128, num_classes, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return self.head(tf_same_pad(x, 3, 1)).mean(dim=(2, 3))
