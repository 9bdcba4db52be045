"""Faces stage: detect (RetinaFace), optionally refine landmarks (2DFAN4), track the target face,
similarity-align it to 224x224 crops and measure per-face quality.

`FaceAnalyzer.analyze` takes a chunk of frames and returns a `FaceBatch` with one entry per frame (a
frame without the target face is kept, marked found=False), so frame bookkeeping stays with the caller.

The analyzer holds the loaded networks; the one piece of per-video state, the target-face track, is a
`TargetFaceTracker` the caller owns (`new_tracker()`, passed to `analyze`), so several videos can be
analysed at once on threads sharing one analyzer. The network calls take `network_lock`, which a
caller shares with its classifier so only one forward pass runs at a time (fervideo/pipeline.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fervideo.faces.align import DEFAULT_MARGIN, align_face, align_faces
from fervideo.faces.detector import DEFAULT_DETECT_SIZE, RetinaFaceDetector
from fervideo.faces.landmarks_fan import FAN_FILENAME, FanLandmarker, fan_weights_available, five_from_68
from fervideo.faces.quality import QUALITY_KEYS, face_quality
from fervideo.faces.tracked_detection import DEFAULT_FULL_EVERY, TrackedDetection
from fervideo.faces.tracking import TargetFaceTracker
from fervideo.faces.types import Detections

__all__ = [
    "Detections",
    "FaceAnalyzer",
    "FaceBatch",
    "RetinaFaceDetector",
    "TargetFaceTracker",
    "align_face",
    "align_faces",
    "fan_weights_available",
]

LandmarksMode = Literal["retinaface", "fan"]
DETECT_REGIONS = ("full", "tracked")


@dataclass
class FaceBatch:
    """The target face in each of N frames.

    found: bool[N]. boxes: float32[N, 4] (x1, y1, x2, y2, source pixels; NaN where not found).
    scores: float32[N] (NaN where not found). landmarks: float32[N, K, 2], K = 5 (retinaface) or 68 (fan),
    NaN where not found. crops: uint8[M, 224, 224, 3] RGB, M = found.sum(), one per found frame in frame
    order, i.e. crops[j] belongs to frame np.flatnonzero(found)[j]. quality: name -> float32[N]
    (face_size, det_score, sharpness, yaw_proxy; NaN where not found).
    """

    found: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    crops: np.ndarray
    quality: dict[str, np.ndarray]

    @property
    def frame_of_crop(self) -> np.ndarray:
        """int64[M]: the frame index (within the chunk) of each crop."""
        return np.flatnonzero(self.found)


class FaceAnalyzer:
    """Per-chunk face analysis; the target-face track that persists across the chunks of one video is
    the caller's (`new_tracker`), or the analyzer's own `tracker` for a caller with one video at a time."""

    # On CUDA, warp the crops on the GPU from the frames uploaded for detection (fervideo/faces/align_gpu.py).
    # Off by default: measured slower on an H200 (638 vs 886 frames/s at 720p), the per-batch float copy of
    # whole frames and the synchronisation cost more than OpenCV's warps on a thread pool.
    align_on_device = False

    def __init__(
        self,
        device: str = "cpu",
        landmarks: LandmarksMode = "retinaface",
        detect_size: int = DEFAULT_DETECT_SIZE,
        score_threshold: float = 0.6,
        margin: float = DEFAULT_MARGIN,
        nms_threshold: float = 0.4,
        iou_threshold: float = 0.3,
        max_lost: int = 5,
        backend: str | None = None,
        threads: int | None = None,
        detect_region: str = "full",
        full_every: int = DEFAULT_FULL_EVERY,
    ) -> None:
        if landmarks not in ("retinaface", "fan"):
            raise ValueError(f"landmarks must be 'retinaface' or 'fan', got {landmarks!r}")
        if detect_region not in DETECT_REGIONS:
            raise ValueError(f"detect_region must be 'full' or 'tracked', got {detect_region!r}")
        self.landmarks_mode = landmarks
        self.margin = float(margin)
        self.detector = RetinaFaceDetector(
            device=device,
            detect_size=detect_size,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            backend=backend,
            threads=threads,
        )
        self.tracker = self.new_tracker(iou_threshold, max_lost)
        self.fan = FanLandmarker(device=device) if landmarks == "fan" else None
        # Held around each forward pass (detector, FAN); shared with the classifier by SessionProcessor.
        self.network_lock = threading.Lock()
        # Opt-in: search a window around the tracked face between full-frame passes (tracked_detection.py).
        self.tracked = TrackedDetection(self.detector, full_every) if detect_region == "tracked" else None

    @property
    def num_landmarks(self) -> int:
        return 68 if self.fan is not None else 5

    def new_tracker(self, iou_threshold: float | None = None, max_lost: int | None = None) -> TargetFaceTracker:
        """A fresh target-face track for one video, with this analyzer's tracking parameters."""
        return TargetFaceTracker(
            iou_threshold=self.tracker.iou_threshold if iou_threshold is None else iou_threshold,
            max_lost=self.tracker.max_lost if max_lost is None else max_lost,
        )

    def reset(self) -> None:
        """Start a new video on the analyzer's own tracker: forget the tracked face."""
        self.tracker.reset()

    def parameters(self) -> dict:
        """Everything that determines the output, for provenance records."""
        params = {
            "detector": self.detector.name,
            "detector_weights_sha256": self.detector.weights_sha256,
            "detect_size": self.detector.detect_size,
            "score_threshold": self.detector.score_threshold,
            "nms_threshold": self.detector.nms_threshold,
            "margin": self.margin,
            "landmarks": self.landmarks_mode,
            "tracker_iou_threshold": self.tracker.iou_threshold,
            "tracker_max_lost": self.tracker.max_lost,
        }
        if self.fan is not None:
            params["fan_weights"] = FAN_FILENAME
        if self.tracked is not None:  # only when on: sessions of the default keep their settings key
            params["detect_region"] = "tracked"
            params["full_frame_every"] = self.tracked.full_every
        return params

    def analyze(self, frames_rgb: np.ndarray, tracker: TargetFaceTracker | None = None) -> FaceBatch:
        """Faces for a chunk of RGB uint8 frames [N, H, W, 3]; frames must come in video order.

        tracker: the video's target-face track (from `new_tracker`), carried from chunk to chunk; default
        the analyzer's own, which suits one video at a time only."""
        tracker = self.tracker if tracker is None else tracker
        # On a GPU the frames go up once, for detection and for the warps (fervideo/faces/align_gpu.py).
        on_gpu = self.align_on_device and self.detector.device.type == "cuda" and self.detector.module is not None
        frames_on_device = self.detector.upload(frames_rgb) if on_gpu else None
        if self.tracked is not None and frames_on_device is None:
            detections = self.tracked.detect(frames_rgb, tracker, network_lock=self.network_lock)
        else:
            detections = self.detector.detect(frames_rgb, frames_on_device, network_lock=self.network_lock)
        n = len(frames_rgb)
        batch = self._empty_batch(n)
        five = np.full((n, 5, 2), np.nan, np.float32)
        for i, frame_detections in enumerate(detections):
            target = tracker.select(frame_detections)
            if target is None:
                continue
            batch.found[i] = True
            batch.boxes[i] = frame_detections.boxes[target]
            batch.scores[i] = frame_detections.scores[target]
            five[i] = frame_detections.landmarks[target]
            if self.fan is not None:
                with self.network_lock:
                    batch.landmarks[i] = self.fan.landmarks(frames_rgb[i], batch.boxes[i])
                five[i] = five_from_68(batch.landmarks[i])
            else:
                batch.landmarks[i] = five[i]
        found = batch.found
        if frames_on_device is not None:
            from fervideo.faces.align_gpu import align_faces_on_device

            batch.crops = align_faces_on_device(frames_on_device, five[found], np.flatnonzero(found), self.margin)
        else:
            batch.crops = align_faces(frames_rgb, five[found], margin=self.margin, frame_indices=np.flatnonzero(found))
        measured = face_quality(batch.boxes[found], batch.scores[found], five[found], batch.crops)
        for key in QUALITY_KEYS:
            batch.quality[key][found] = measured[key]
        return batch

    def _empty_batch(self, n: int) -> FaceBatch:
        return FaceBatch(
            found=np.zeros(n, bool),
            boxes=np.full((n, 4), np.nan, np.float32),
            scores=np.full(n, np.nan, np.float32),
            landmarks=np.full((n, self.num_landmarks, 2), np.nan, np.float32),
            crops=np.zeros((0, 224, 224, 3), np.uint8),
            quality={key: np.full(n, np.nan, np.float32) for key in QUALITY_KEYS},
        )
