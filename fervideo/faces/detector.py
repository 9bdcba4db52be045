"""Batched RetinaFace (MobileNet-0.25) face detection with 5-point landmarks.

We reuse face-alignment's network class so the bundled weights load strictly, but not its detector
wrapper: that one runs one image at a time and drops the landmarks, and we need both batching (speed
on CPU) and the landmarks (for alignment)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from face_alignment.detection.retinaface.net_retinaface import RetinaFace, cfg_mnet
from face_alignment.detection.retinaface.prior_box import PriorBox
from torchvision.ops import nms

from fervideo.errors import ModelError
from fervideo.faces.types import Detections
from fervideo.utils import sha256_file

BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "retinaface_mobilenet0.25.pth"
# The network was trained on BGR images with these per-channel means subtracted (no scaling).
BGR_MEAN = (104.0, 117.0, 123.0)
# RetinaFace-MobileNet0.25 stops finding faces below ~18 px at the detection resolution, so 480 keeps
# faces down to ~3.7% of the frame's longer side (~50 px in 1280x720): smaller faces are too small for a
# reliable expression reading anyway, and 480 runs about twice as fast as 640 on a 2-core CPU.
DEFAULT_DETECT_SIZE = 480


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
    net = RetinaFace(cfg=cfg_mnet)
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"RetinaFace weights {weights} do not fit the MobileNet-0.25 network: {first_line}"
        ) from exc
    return net.to(device).eval()


@lru_cache(maxsize=8)
def priors_for(height: int, width: int) -> torch.Tensor:
    """Anchor boxes (cx, cy, w, h; normalised) for one input size; cached since a video keeps its size."""
    return PriorBox(cfg_mnet, image_size=(height, width)).forward()


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """[B, P, 4] regressions -> [B, P, 4] normalised (x1, y1, x2, y2)."""
    centres = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat((centres - sizes / 2, centres + sizes / 2), dim=-1)


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """[B, P, 10] regressions -> [B, P, 5, 2] normalised points (the standard RetinaFace decode_landm)."""
    offsets = pre.reshape(*pre.shape[:-1], 5, 2)
    return priors[:, None, :2] + offsets * variances[0] * priors[:, None, 2:]


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
    """

    name = "retinaface_mobilenet0.25"

    def __init__(
        self,
        weights: str | Path = BUNDLED_WEIGHTS,
        device: str | torch.device = "cpu",
        detect_size: int = DEFAULT_DETECT_SIZE,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
    ) -> None:
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32, got {detect_size}")
        self.weights = Path(weights)
        self.device = torch.device(device)
        self.detect_size = int(detect_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.variances = tuple(cfg_mnet["variance"])
        self.net = load_retinaface(self.weights, self.device)
        self._weights_sha256: str | None = None

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = sha256_file(self.weights)
        return self._weights_sha256

    def detect(self, frames_rgb: np.ndarray) -> list[Detections]:
        """Detect faces in a chunk of RGB uint8 frames [N, H, W, 3]; one Detections per frame."""
        if frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3:
            raise ValueError(f"expected frames [N, H, W, 3], got shape {frames_rgb.shape}")
        if len(frames_rgb) == 0:
            return []
        height, width = frames_rgb.shape[1:3]
        small_h, small_w = resized_shape(height, width, self.detect_size)
        batch = self._prepare(frames_rgb, small_h, small_w)
        with torch.inference_mode():
            loc, conf, landm = self.net(batch)
            priors = priors_for(small_h, small_w).to(self.device)
            boxes = decode_boxes(loc, priors, self.variances)
            points = decode_landmarks(landm, priors, self.variances)
            scores = conf[..., 1]
        # Normalised coordinates times the source size map straight back to source pixels.
        scale = torch.tensor([width, height], dtype=torch.float32, device=self.device)
        boxes = boxes * scale.repeat(2)
        points = points * scale
        return [self._select(boxes[i], scores[i], points[i]) for i in range(len(frames_rgb))]

    def _prepare(self, frames_rgb: np.ndarray, small_h: int, small_w: int) -> torch.Tensor:
        """Downscale (INTER_AREA avoids aliasing), RGB->BGR, subtract the training mean, NCHW float."""
        if (small_h, small_w) != frames_rgb.shape[1:3]:
            frames_rgb = np.stack(
                [cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_AREA) for frame in frames_rgb]
            )
        batch = torch.from_numpy(np.ascontiguousarray(frames_rgb[..., ::-1])).to(self.device)
        batch = batch.float() - torch.tensor(BGR_MEAN, device=self.device)
        return batch.permute(0, 3, 1, 2).contiguous()

    def _select(self, boxes: torch.Tensor, scores: torch.Tensor, points: torch.Tensor) -> Detections:
        """Score filter then NMS for one frame; results sorted by score."""
        keep = scores > self.score_threshold
        if not bool(keep.any()):
            return Detections.empty()
        boxes, scores, points = boxes[keep], scores[keep], points[keep]
        kept = nms(boxes, scores, self.nms_threshold)  # already sorted by descending score
        return Detections(
            boxes=boxes[kept].cpu().numpy().astype(np.float32),
            scores=scores[kept].cpu().numpy().astype(np.float32),
            landmarks=points[kept].cpu().numpy().astype(np.float32),
        )
