"""The RetinaFace MobileNet-0.25 network (backbone, FPN, SSH, heads) and its anchor boxes.

Ported from face-alignment 1.5.0 (face_alignment/detection/retinaface/{net_retinaface,mobilenet,
prior_box}.py, BSD-3-Clause, Copyright (c) 2017 Adrian Bulat), itself adapted from
biubug6/Pytorch_Retinaface (MIT, Copyright (c) 2019 biubug6). Ported rather than imported because
face-alignment's module pulls in torchvision (for IntermediateLayerGetter), and torchvision pulls in
torch._dynamo: ~2 s of start-up for a 100-line network. The module names are kept exactly, so the
bundled checkpoint (keys `body.stage1.*`, `fpn.*`, `ssh1.*`, `ClassHead.0.*`, ...) loads strictly.
The backbone's ImageNet classifier (`avg`, `fc`) is not part of the detector's checkpoint and is left out,
as IntermediateLayerGetter left it out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The anchors (and the constants they come from) are numpy, in anchors.py, so the ONNX path needs no torch.
from fervideo.faces.anchors import MIN_SIZES, STEPS, VARIANCES, prior_boxes  # noqa: F401 (re-exported)

IN_CHANNEL = 32
OUT_CHANNEL = 64


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_bn_no_relu(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp: int, oup: int, stride: int, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, stride, padding=0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetBody(nn.Module):
    """MobileNetV1-0.25's three stages; returns the output of each (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1), conv_dw(8, 16, 1), conv_dw(16, 32, 2),
            conv_dw(32, 32, 1), conv_dw(32, 64, 2), conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *(conv_dw(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.stage1(x)
        second = self.stage2(first)
        return [first, second, self.stage3(second)]


class SSH(nn.Module):
    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = conv_bn_no_relu(in_channel, out_channel // 2, stride=1)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, stride=1, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(out_channel // 4, out_channel // 4, stride=1)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, stride=1, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(out_channel // 4, out_channel // 4, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv5x5_1 = self.conv5X5_1(x)
        conv7x7_2 = self.conv7X7_2(conv5x5_1)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(conv5x5_1), self.conv7x7_3(conv7x7_2)], dim=1)
        return F.relu(out)


class FPN(nn.Module):
    def __init__(self, in_channels_list: list[int], out_channels: int) -> None:
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = conv_bn1x1(in_channels_list[0], out_channels, stride=1, leaky=leaky)
        self.output2 = conv_bn1x1(in_channels_list[1], out_channels, stride=1, leaky=leaky)
        self.output3 = conv_bn1x1(in_channels_list[2], out_channels, stride=1, leaky=leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        output1, output2, output3 = self.output1(x[0]), self.output2(x[1]), self.output3(x[2])
        output2 = self.merge2(output2 + F.interpolate(output3, size=output2.shape[-2:], mode="nearest"))
        output1 = self.merge1(output1 + F.interpolate(output2, size=output1.shape[-2:], mode="nearest"))
        return [output1, output2, output3]


class Head(nn.Module):
    """A 1x1 conv predicting `values` numbers per anchor, flattened to [B, anchors, values]."""

    def __init__(self, inchannels: int, values: int, num_anchors: int = 2) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(inchannels, num_anchors * values, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x)
        return out.permute(0, 2, 3, 1).reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """Returns (box regressions [B, P, 4], class probabilities [B, P, 2], landmark regressions [B, P, 10])
    for a BGR float input with the training mean subtracted, [B, 3, H, W]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNetBody()
        self.fpn = FPN([IN_CHANNEL * 2, IN_CHANNEL * 4, IN_CHANNEL * 8], OUT_CHANNEL)
        self.ssh1 = SSH(OUT_CHANNEL, OUT_CHANNEL)
        self.ssh2 = SSH(OUT_CHANNEL, OUT_CHANNEL)
        self.ssh3 = SSH(OUT_CHANNEL, OUT_CHANNEL)
        self.ClassHead = nn.ModuleList([Head(OUT_CHANNEL, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([Head(OUT_CHANNEL, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([Head(OUT_CHANNEL, 10) for _ in range(3)])

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fpn = self.fpn(self.body(inputs))
        features = [self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2])]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features, strict=True)], dim=1)
        classes = torch.cat([head(f) for head, f in zip(self.ClassHead, features, strict=True)], dim=1)
        points = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features, strict=True)], dim=1)
        return boxes, F.softmax(classes, dim=-1), points


# The network definition above is a port of face-alignment's, distributed under this licence:
#
# BSD 3-Clause License
#
# Copyright (c) 2017, Adrian Bulat
# All rights reserved.
#
# Redistribution and use in source and binary forms, with or without modification, are permitted provided
# that the following conditions are met:
# * Redistributions of source code must retain the above copyright notice, this list of conditions and the
#   following disclaimer.
# * Redistributions in binary form must reproduce the above copyright notice, this list of conditions and the
#   following disclaimer in the documentation and/or other materials provided with the distribution.
# * Neither the name of the copyright holder nor the names of its contributors may be used to endorse or
#   promote products derived from this software without specific prior written permission.
#
# THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED
# WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
# PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY
# DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
# PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
# CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR
# OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH
# DAMAGE.
#
# It was adapted from biubug6/Pytorch_Retinaface, MIT licence, Copyright (c) 2019 biubug6 (the MIT text is in
# fervideo/assets/NOTICE, with the bundled weights from the same project).
