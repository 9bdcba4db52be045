"""Batched RetinaFace (MobileNet-0.25) face detection with 5-point landmarks.

The network (ported from face-alignment, see retinaface_net.py) runs over whole chunks of frames in torch
or in ONNX Runtime (fervideo.runtime). Either way it takes the frames as they come, uint8 RGB [N, H, W, 3]:
the RGB->BGR swap, the mean subtraction and the NCHW transpose are part of the network module, so they run
inside the exported graph too (fused by ONNX Runtime, and only uint8 bytes cross to a GPU). Everything
after the network (score filter, box and landmark decoding, NMS) is numpy on the few anchors that pass the
score threshold, identical for both backends and free of torchvision.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fervideo.errors import ModelError
from fervideo.faces.nms import nms
from fervideo.faces.retinaface_net import VARIANCES, RetinaFace, prior_boxes
from fervideo.faces.types import Detections
from fervideo.runtime import Backend, OnnxModel, export_onnx, load_onnx_model, resolve_backend
from fervideo.utils import sha256_file

BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "retinaface_mobilenet0.25.pth"
# The network was trained on BGR images with these per-channel means subtracted (no scaling).
BGR_MEAN = (104.0, 117.0, 123.0)
# RetinaFace-MobileNet0.25 stops finding faces below ~18 px at the detection resolution, so 480 keeps
# faces down to ~3.7% of the frame's longer side (~50 px in 1280x720): smaller faces are too small for a
# reliable expression reading anyway, and 480 runs about twice as fast as 640 on a 2-core CPU.
DEFAULT_DETECT_SIZE = 480


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


@lru_cache(maxsize=8)
def priors_for(height: int, width: int) -> np.ndarray:
    """Anchor boxes (cx, cy, w, h; normalised) for one input size; cached since a video keeps its size."""
    return prior_boxes(height, width)


def decode_boxes(loc: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """[M, 4] regressions of M anchors [M, 4] -> [M, 4] normalised (x1, y1, x2, y2)."""
    centres = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    return np.concatenate((centres - sizes / 2, centres + sizes / 2), axis=1)


def decode_landmarks(pre: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """[M, 10] regressions -> [M, 5, 2] normalised points (the standard RetinaFace decode_landm)."""
    return priors[:, None, :2] + pre.reshape(-1, 5, 2) * VARIANCES[0] * priors[:, None, 2:]


def resized_shape(height: int, width: int, detect_size: int) -> tuple[int, int]:
    """Shape the frame is detected at: longer side `detect_size`, never upscaled."""
    scale = min(1.0, detect_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class RetinaFaceDetector:
    """RetinaFace MobileNet-0.25 over whole chunks of frames in one forward pass.

    detect_size: the longer side every frame is downscaled to before detection (frames already smaller
    are not upscaled). Faces under about 18 px at that resolution are missed, so the smallest face found is
    about 18 / detect_size of the frame's longer side: ~50 px in 1280x720 at the default 480. Raise it for
    wide shots with small faces, at roughly quadratic cost. Results are always in source-frame pixels.
    backend: auto, torch or onnx (fervideo.runtime.resolve_backend); threads: ONNX Runtime intra-op threads.
    """

    name = "retinaface_mobilenet0.25"

    def __init__(
        self,
        weights: str | Path = BUNDLED_WEIGHTS,
        device: str | torch.device = "cpu",
        detect_size: int = DEFAULT_DETECT_SIZE,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32, got {detect_size}")
        self.weights = Path(weights)
        self.device = torch.device(device)
        self.detect_size = int(detect_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.backend: Backend = resolve_backend(backend, self.device.type)
        net = load_retinaface(self.weights, self.device)
        self._weights_sha256: str | None = None
        self.onnx: OnnxModel | None = None
        self.module: RetinaFaceOnFrames | None = None
        if self.backend == "onnx":
            self.onnx = load_onnx_model("retinaface", self.weights_sha256,
                                        lambda out: export_detector_onnx(net, out), threads)
            self.backend = "onnx" if self.onnx is not None else "torch"
        if self.onnx is None:
            self.module = RetinaFaceOnFrames(net).to(self.device).eval()
            if self.device.type == "cpu":
                # The prototype measured +18-46 % for NHWC on the torch CPU path; here the uint8 NHWC
                # input permuted is channels_last already. Numerically the same (tests/test_speed_paths.py).
                self.module = self.module.to(memory_format=torch.channels_last)

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = sha256_file(self.weights)
        return self._weights_sha256

    def upload(self, frames_rgb: np.ndarray) -> torch.Tensor:
        """Frames to the GPU as uint8 through pinned memory (4x less traffic than float32)."""
        return torch.from_numpy(np.ascontiguousarray(frames_rgb)).pin_memory().to(self.device, non_blocking=True)

    def detect(self, frames_rgb: np.ndarray, frames_on_device: torch.Tensor | None = None) -> list[Detections]:
        """Detect faces in a chunk of RGB uint8 frames [N, H, W, 3]; one Detections per frame.

        frames_on_device: the same frames already uploaded with `upload` (the GPU path), to upload once."""
        if frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3:
            raise ValueError(f"expected frames [N, H, W, 3], got shape {frames_rgb.shape}")
        if len(frames_rgb) == 0:
            return []
        height, width = frames_rgb.shape[1:3]
        small_h, small_w = resized_shape(height, width, self.detect_size)
        if self.module is not None and self.device.type == "cuda":
            uploaded = frames_on_device if frames_on_device is not None else self.upload(frames_rgb)
            frame_of, anchor_of, loc, scores, landm = self._run_on_gpu(uploaded, small_h, small_w)
        else:
            frame_of, anchor_of, loc, scores, landm = self._run_network(self._downscale(frames_rgb, small_h, small_w))
        priors = priors_for(small_h, small_w)[anchor_of]
        # Normalised coordinates times the source size map straight back to source pixels.
        scale = np.array([width, height], np.float32)
        boxes = (decode_boxes(loc, priors) * np.tile(scale, 2)).astype(np.float32)
        points = (decode_landmarks(landm, priors) * scale).astype(np.float32)
        return [
            self._select(boxes[rows], scores[rows], points[rows])
            for rows in (frame_of == i for i in range(len(frames_rgb)))
        ]

    def raw_outputs(self, frames_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's outputs (loc, conf, landmarks) for already-downscaled frames, as numpy arrays."""
        if self.onnx is not None:
            loc, conf, landm = self.onnx.run(np.ascontiguousarray(frames_rgb))
            return loc, conf, landm
        with torch.inference_mode():
            outputs = self.module(torch.from_numpy(np.ascontiguousarray(frames_rgb)).to(self.device))
        return tuple(output.float().cpu().numpy() for output in outputs)

    def _run_network(self, small: np.ndarray) -> tuple[np.ndarray, ...]:
        """Network outputs of the anchors above the score threshold: (frame, anchor, loc, score, landmarks)."""
        loc, conf, landm = self.raw_outputs(small)
        frame_of, anchor_of = np.nonzero(conf[..., 1] > self.score_threshold)
        return frame_of, anchor_of, loc[frame_of, anchor_of], conf[frame_of, anchor_of, 1], landm[frame_of, anchor_of]

    @torch.inference_mode()
    def _run_on_gpu(self, batch: torch.Tensor, small_h: int, small_w: int) -> tuple[np.ndarray, ...]:
        """The GPU path: full uint8 frames (uploaded by `upload`) are downscaled on the GPU (antialiased
        bilinear, rounded to whole grey levels like the CPU's INTER_AREA bytes), run under fp16 autocast,
        and only the few anchors above the score threshold come back over the bus. Agrees with the CPU
        path to about a pixel (benchmarks/bench_gpu.py reports the measured difference)."""
        if (small_h, small_w) != tuple(batch.shape[1:3]):
            nchw = batch.permute(0, 3, 1, 2).float()
            nchw = F.interpolate(nchw, size=(small_h, small_w), mode="bilinear", antialias=True, align_corners=False)
            batch = nchw.round_().clamp_(0, 255).permute(0, 2, 3, 1)
        with torch.autocast("cuda", dtype=torch.float16):
            loc, conf, landm = self.module(batch)
        scores = conf[..., 1].float()
        frame_of, anchor_of = torch.nonzero(scores > self.score_threshold, as_tuple=True)
        picked = (loc[frame_of, anchor_of].float(), scores[frame_of, anchor_of], landm[frame_of, anchor_of].float())
        return (frame_of.cpu().numpy(), anchor_of.cpu().numpy(), *(tensor.cpu().numpy() for tensor in picked))

    @staticmethod
    def _downscale(frames_rgb: np.ndarray, small_h: int, small_w: int) -> np.ndarray:
        """INTER_AREA avoids aliasing; frames already small enough pass through untouched."""
        if (small_h, small_w) == frames_rgb.shape[1:3]:
            return frames_rgb
        return np.stack(
            [cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_AREA) for frame in frames_rgb]
        )

    def _select(self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> Detections:
        """NMS over one frame's candidates; results sorted by descending score."""
        if len(scores) == 0:
            return Detections.empty()
        kept = nms(boxes, scores, self.nms_threshold)
        return Detections(boxes=boxes[kept], scores=scores[kept].astype(np.float32), landmarks=points[kept])
