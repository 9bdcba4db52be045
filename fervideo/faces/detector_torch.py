"""The torch side of the face detector: the frames-in network, loading its weights, exporting it to ONNX
and the GPU forward pass. Imported only when torch is needed (the torch backend, a GPU, or the first ONNX
export), so that `process` with cached ONNX exports starts without importing torch (docs/speed.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fervideo.errors import ModelError
from fervideo.faces.retinaface_net import RetinaFace
from fervideo.runtime import export_onnx

# The network was trained on BGR images with these per-channel means subtracted (no scaling).
BGR_MEAN = (104.0, 117.0, 123.0)


class RetinaFaceOnFrames(nn.Module):
    """RetinaFace taking uint8 RGB frames [N, H, W, 3] as decoded, preprocessing included."""

    def __init__(self, net: RetinaFace) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("bgr_mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bgr = frames.permute(0, 3, 1, 2).flip(1).float()
        return self.net(bgr - self.bgr_mean)


def load_retinaface(weights: Path, device: str | torch.device) -> RetinaFace:
    """Build the network and load `weights` strictly; any problem becomes a one-line ModelError."""
    if not weights.is_file():
        raise ModelError(f"RetinaFace weights not found: {weights}")
    try:
        state_dict = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a corrupt/unsafe file
        raise ModelError(f"cannot read RetinaFace weights {weights}: {type(exc).__name__}") from exc
    if not isinstance(state_dict, dict):
        raise ModelError(f"RetinaFace weights {weights} are not a state_dict")
    # Checkpoints saved from nn.DataParallel carry a 'module.' prefix on every key.
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    net = RetinaFace()
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"RetinaFace weights {weights} do not fit the MobileNet-0.25 network: {first_line}"
        ) from exc
    return net.to(device).eval()


def export_detector_onnx(net: RetinaFace, path: Path) -> None:
    """Export the frames-in network with a free batch size and frame size (one file serves every video)."""
    module = RetinaFaceOnFrames(net).cpu().eval()
    example = torch.zeros((1, 96, 128, 3), dtype=torch.uint8)
    anchors = {0: "batch", 1: "anchors"}
    export_onnx(module, example, path, ["frames"], ["loc", "conf", "landmarks"],
                {"frames": {0: "batch", 1: "height", 2: "width"}, "loc": anchors, "conf": anchors,
                 "landmarks": anchors})


def frames_module(net: RetinaFace, device: torch.device) -> RetinaFaceOnFrames:
    module = RetinaFaceOnFrames(net).to(device).eval()
    if device.type == "cpu":
        # The prototype measured +18-46 % for NHWC on the torch CPU path; here the uint8 NHWC input
        # permuted is channels_last already. Numerically the same (tests/test_speed_paths.py).
        module = module.to(memory_format=torch.channels_last)
    return module


def upload(frames_rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """Frames to the GPU as uint8 through pinned memory (4x less traffic than float32)."""
    return torch.from_numpy(np.ascontiguousarray(frames_rgb)).pin_memory().to(device, non_blocking=True)


def raw_outputs(module: RetinaFaceOnFrames, frames_rgb: np.ndarray, device: torch.device) -> tuple[np.ndarray, ...]:
    with torch.inference_mode():
        outputs = module(torch.from_numpy(np.ascontiguousarray(frames_rgb)).to(device))
    return tuple(output.float().cpu().numpy() for output in outputs)


@torch.inference_mode()
def run_on_gpu(module: RetinaFaceOnFrames, batch: torch.Tensor, small_h: int, small_w: int,
               score_threshold: float) -> tuple[np.ndarray, ...]:
    """The GPU path: full uint8 frames (uploaded by `upload`) are downscaled on the GPU (antialiased
    bilinear, rounded to whole grey levels like the CPU's INTER_AREA bytes), run under fp16 autocast,
    and only the few anchors above the score threshold come back over the bus. Agrees with the CPU
    path to about a pixel (benchmarks/bench_gpu.py reports the measured difference)."""
    if (small_h, small_w) != tuple(batch.shape[1:3]):
        nchw = batch.permute(0, 3, 1, 2).float()
        nchw = F.interpolate(nchw, size=(small_h, small_w), mode="bilinear", antialias=True, align_corners=False)
        batch = nchw.round_().clamp_(0, 255).permute(0, 2, 3, 1)
    with torch.autocast("cuda", dtype=torch.float16):
        loc, conf, landm = module(batch)
    scores = conf[..., 1].float()
    frame_of, anchor_of = torch.nonzero(scores > score_threshold, as_tuple=True)
    picked = (loc[frame_of, anchor_of].float(), scores[frame_of, anchor_of], landm[frame_of, anchor_of].float())
    return (frame_of.cpu().numpy(), anchor_of.cpu().numpy(), *(tensor.cpu().numpy() for tensor in picked))
