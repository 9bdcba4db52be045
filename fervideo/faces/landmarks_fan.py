"""Optional 68-point landmark refinement with face-alignment's 2DFAN4 network.

The 2DFAN4 weights are not bundled (face-alignment downloads them from its author's site into the torch
hub cache), so this module only ever uses a copy already in that cache and otherwise raises ModelError
saying how to fetch it. Downloading happens only through the explicit `fetch_fan_weights()`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fervideo.errors import ModelError
from fervideo.faces.detector import BUNDLED_WEIGHTS

FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
FAN_FILENAME = "2DFAN4-11f355bf06.pth.tar"
FETCH_HINT = "python -c 'from fervideo.faces.landmarks_fan import fetch_fan_weights; fetch_fan_weights()'"
# 68-point (iBUG) indices: eye contours, nose tip, mouth corners.
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54


def fan_weights_path() -> Path:
    """Where face-alignment looks for 2DFAN4 (torch hub dir, which follows TORCH_HOME)."""
    import torch  # lazily: `process` without FAN landmarks never needs torch here

    return Path(torch.hub.get_dir()) / "checkpoints" / FAN_FILENAME


def fan_weights_available() -> bool:
    return fan_weights_path().is_file()


def offline() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in ("FERVIDEO_OFFLINE", "HF_HUB_OFFLINE"))


def fetch_fan_weights() -> Path:
    """Download 2DFAN4 into face-alignment's cache (explicit user action; refused when offline)."""
    target = fan_weights_path()
    if target.is_file():
        return target
    if offline():
        raise ModelError(f"offline mode is set; copy {FAN_FILENAME} into {target.parent} by hand")
    target.parent.mkdir(parents=True, exist_ok=True)
    import torch

    torch.hub.download_url_to_file(FAN_URL, str(target), hash_prefix="11f355bf06", progress=True)
    return target


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """The 5 alignment points (eye centres, nose tip, mouth corners) from 68 landmarks [..., 68, 2]."""
    return np.stack(
        [
            points68[..., LEFT_EYE, :].mean(axis=-2),
            points68[..., RIGHT_EYE, :].mean(axis=-2),
            points68[..., NOSE_TIP, :],
            points68[..., MOUTH_LEFT, :],
            points68[..., MOUTH_RIGHT, :],
        ],
        axis=-2,
    ).astype(np.float32)


class FanLandmarker:
    """68-point landmarks for faces whose boxes we already have.

    flip_input: also run the mirrored crop and average, as face-alignment does by default; off by default
    because it doubles the cost on CPU for a small gain.
    """

    def __init__(self, device: str = "cpu", flip_input: bool = False) -> None:
        if not fan_weights_available():
            raise ModelError(
                f"2DFAN4 landmark weights are not in {fan_weights_path()}; fetch them with: {FETCH_HINT}"
            )
        from face_alignment import FaceAlignment, LandmarksType

        # Its own detector is required by the constructor but never used (we pass boxes). The retinaface
        # one built from our bundled weights downloads nothing, and its reference scale matches our boxes,
        # which face-alignment uses to size the FAN crop.
        self.model = FaceAlignment(
            LandmarksType.TWO_D,
            device=str(device),
            flip_input=flip_input,
            face_detector="retinaface",
            face_detector_kwargs={"path_to_detector": str(BUNDLED_WEIGHTS)},
            compile=False,
        )

    def landmarks(self, frame_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """float32[68, 2] in source pixels for the face in `box` (x1, y1, x2, y2)."""
        # Python floats: face-alignment writes box-derived scalars into torch tensors, which rejects float32.
        box_floats = [float(value) for value in box]
        result = self.model.get_landmarks_from_image(frame_rgb, detected_faces=[box_floats])
        if not result:  # it returns None only when given no boxes; kept as a guard against API changes
            raise RuntimeError("face-alignment returned no landmarks for a given box")
        return np.asarray(result[0][:, :2], np.float32)
