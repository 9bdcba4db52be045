"""Session features: per-frame table -> named, interpretable session measures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fervideo.labels import CANONICAL_LABELS


def basic_summary(frames: pd.DataFrame) -> dict:
    """Coverage and the mean emotion distribution over frames with a face: the CLI's end-of-run screen."""
    face_rows = frames[frames["face_found"].astype(bool)]
    mean_distribution = {label: float(face_rows[label].mean()) if len(face_rows) else float("nan")
                         for label in CANONICAL_LABELS}
    dominant = max(mean_distribution, key=mean_distribution.get) if len(face_rows) else None
    timestamps = frames["t"].to_numpy(dtype=np.float64)
    return {
        "sampled_frames": int(len(frames)),
        "face_frames": int(len(face_rows)),
        "face_found_fraction": float(len(face_rows) / len(frames)) if len(frames) else 0.0,
        "span_s": float(timestamps[-1] - timestamps[0]) if len(timestamps) else 0.0,
        "mean_distribution": mean_distribution,
        "dominant_emotion": dominant,
    }
