"""Batched RetinaFace (MobileNet-0.25) face detection with 5-point landmarks.

The network (ported from face-alignment, see retinaface_net.py) runs over whole chunks of frames in torch
or in ONNX Runtime (fervideo.runtime). Either way it takes the frames as they come, uint8 RGB [N, H, W, 3]:
the RGB->BGR swap, the mean subtraction and the NCHW transpose are part of the network module, so they run
inside the exported graph too (fused by ONNX Runtime, and only uint8 bytes cross to a GPU). Everything
after the network (score filter, box and landmark decoding, NMS) is numpy on the few anchors that pass the
score threshold, identical for both backends and free of torchvision.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fervideo.errors import ModelError
from fervideo.faces.anchors import VARIANCES, prior_boxes
from fervideo.faces.nms import nms
from fervideo.faces.types import Detections
from fervideo.runtime import Backend, OnnxModel, device_of, load_onnx_model, resolve_backend, torch_device
from fervideo.utils import sha256_file

BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "retinaface_mobilenet0.25.pth"
# RetinaFace-MobileNet0.25 stops finding faces below ~18 px at the detection resolution, so 480 keeps
# faces down to ~3.7% of the frame's longer side (~50 px in 1280x720): smaller faces are too small for a
# reliable expression reading anyway, and 480 runs about twice as fast as 640 on a 2-core CPU.
DEFAULT_DETECT_SIZE = 480


def export_detector_onnx(net, path: Path) -> None:
    """Export the frames-in network (detector_torch.export_detector_onnx; torch is imported only here)."""
    from fervideo.faces import detector_torch

    detector_torch.export_detector_onnx(net, path)


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


def downscale_frames(frames_rgb: np.ndarray, small_h: int, small_w: int) -> np.ndarray:
    """Frames [N, H, W, 3] at the detector's input size (see resized_shape). INTER_AREA avoids aliasing;
    frames already small enough pass through untouched."""
    if (small_h, small_w) == frames_rgb.shape[1:3]:
        return frames_rgb
    return np.stack(
        [cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_AREA) for frame in frames_rgb]
    )


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
        device: Any = "cpu",
        detect_size: int = DEFAULT_DETECT_SIZE,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        if detect_size < 32:
            raise ValueError(f"detect_size must be >= 32, got {detect_size}")
        self.weights = Path(weights)
        self.device = device_of(device)
        self.detect_size = int(detect_size)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.backend: Backend = resolve_backend(backend, self.device.type)
        if not self.weights.is_file():
            raise ModelError(f"RetinaFace weights not found: {self.weights}")
        self._weights_sha256: str | None = None
        self.onnx: OnnxModel | None = None
        self.module: Any = None  # detector_torch.RetinaFaceOnFrames on the torch backend
        if self.backend == "onnx":
            # The network is built (and torch imported) only to export it the first time: a cached export,
            # named by the weights' sha256, is loaded straight into ONNX Runtime.
            self.onnx = load_onnx_model("retinaface", self.weights_sha256,
                                        lambda out: export_detector_onnx(self._load_net(), out), threads)
            self.backend = "onnx" if self.onnx is not None else "torch"
        if self.onnx is None:
            from fervideo.faces import detector_torch

            self.device = torch_device(self.device)  # a torch.device from here on
            self.module = detector_torch.frames_module(self._load_net(), self.device)

    def _load_net(self):
        from fervideo.faces.detector_torch import load_retinaface

        return load_retinaface(self.weights, str(self.device))

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = sha256_file(self.weights)
        return self._weights_sha256

    def upload(self, frames_rgb: np.ndarray):
        """Frames to the GPU as uint8 through pinned memory (4x less traffic than float32)."""
        from fervideo.faces.detector_torch import upload

        return upload(frames_rgb, self.device)

    def detect(self, frames_rgb: np.ndarray, frames_on_device: Any = None,
               source_size: tuple[int, int] | None = None,
               network_lock: AbstractContextManager | None = None) -> list[Detections]:
        """Detect faces in a chunk of RGB uint8 frames [N, H, W, 3]; one Detections per frame.

        frames_on_device: the same frames already uploaded with `upload` (the GPU path), to upload once.
        source_size: (height, width) of the source when the frames were already downscaled for detection.
        network_lock: held around the forward pass only, so threads sharing this detector overlap their
        resizing, decoding of boxes and NMS while one forward pass runs at a time."""
        network_lock = network_lock or nullcontext()
        if frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3:
            raise ValueError(f"expected frames [N, H, W, 3], got shape {frames_rgb.shape}")
        if len(frames_rgb) == 0:
            return []
        height, width = source_size or frames_rgb.shape[1:3]
        small_h, small_w = resized_shape(height, width, self.detect_size)
        if self.module is not None and self.device.type == "cuda":
            uploaded = frames_on_device if frames_on_device is not None else self.upload(frames_rgb)
            from fervideo.faces.detector_torch import run_on_gpu

            with network_lock:
                frame_of, anchor_of, loc, scores, landm = run_on_gpu(self.module, uploaded, small_h, small_w,
                                                                     self.score_threshold)
        else:
            small = downscale_frames(frames_rgb, small_h, small_w)
            with network_lock:
                frame_of, anchor_of, loc, scores, landm = self._run_network(small)
        priors = priors_for(small_h, small_w)[anchor_of]
        # Normalised coordinates times the source size map straight back to source pixels.
        scale = np.array([width, height], np.float32)
        boxes = (decode_boxes(loc, priors) * np.tile(scale, 2)).astype(np.float32)
        points = (decode_landmarks(landm, priors) * scale).astype(np.float32)
        return [
            self._select(boxes[rows], scores[rows], points[rows])
            for rows in (frame_of == i for i in range(len(frames_rgb)))
        ]

    def detect_windows(self, windows: np.ndarray, offsets: np.ndarray, to_source: np.ndarray,
                       network_lock: AbstractContextManager | None = None) -> list[Detections]:
        """Detect in windows of frames already at detection scale [M, h, w, 3] (one shape per call);
        `offsets` [M, 2] is each window's (x0, y0) in the downscaled frame, `to_source` [2] the source
        pixels per detection pixel (x, y): results come back in source pixels, like `detect`'s."""
        if len(windows) == 0:
            return []
        size_h, size_w = windows.shape[1:3]
        with network_lock or nullcontext():
            frame_of, anchor_of, loc, scores, landm = self._run_network(np.ascontiguousarray(windows))
        priors = priors_for(size_h, size_w)[anchor_of]
        extent = np.array([size_w, size_h], np.float32)
        origin = offsets[frame_of].astype(np.float32)
        boxes = (decode_boxes(loc, priors) * np.tile(extent, 2) + np.tile(origin, 2)) * np.tile(to_source, 2)
        points = (decode_landmarks(landm, priors) * extent + origin[:, None]) * to_source
        return [
            self._select(boxes[rows].astype(np.float32), scores[rows], points[rows].astype(np.float32))
            for rows in (frame_of == i for i in range(len(windows)))
        ]

    def raw_outputs(self, frames_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's outputs (loc, conf, landmarks) for already-downscaled frames, as numpy arrays."""
        if self.onnx is not None:
            loc, conf, landm = self.onnx.run(np.ascontiguousarray(frames_rgb))
            return loc, conf, landm
        from fervideo.faces.detector_torch import raw_outputs

        return raw_outputs(self.module, frames_rgb, self.device)

    def _run_network(self, small: np.ndarray) -> tuple[np.ndarray, ...]:
        """Network outputs of the anchors above the score threshold: (frame, anchor, loc, score, landmarks)."""
        loc, conf, landm = self.raw_outputs(small)
        frame_of, anchor_of = np.nonzero(conf[..., 1] > self.score_threshold)
        return frame_of, anchor_of, loc[frame_of, anchor_of], conf[frame_of, anchor_of, 1], landm[frame_of, anchor_of]

    def _select(self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> Detections:
        """NMS over one frame's candidates; results sorted by descending score."""
        if len(scores) == 0:
            return Detections.empty()
        kept = nms(boxes, scores, self.nms_threshold)
        return Detections(boxes=boxes[kept], scores=scores[kept].astype(np.float32), landmarks=points[kept])
