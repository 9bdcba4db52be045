"""Pure computations behind the dashboard's charts: smoothing, downsampling, valence/arousal, summaries.

No Streamlit and no database here, so the benchmark and the tests can call them directly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fervideo.export import face_gaps
from fervideo.export.quality_notes import processing_warning_texts
from fervideo.features import CIRCUMPLEX, compute_session_features
from fervideo.labels import CANONICAL_LABELS

FACE = "face"
NO_FACE = "no face"
NO_SAMPLE = "not sampled"  # a stretch of the video without any decoded frame
MAX_DISPLAY_POINTS = 1200  # a chart never holds more bins than this, whatever the session length
# [7, 2] (valence, arousal) per canonical label, from fervideo.features' circumplex table.
CIRCUMPLEX_MATRIX = np.array([CIRCUMPLEX[label] for label in CANONICAL_LABELS], dtype=np.float64)


def time_unit(span_s: float) -> tuple[str, float]:
    """Minutes for anything longer than five minutes, else seconds: (unit name, divisor)."""
    return ("min", 60.0) if span_s > 300 else ("s", 1.0)


def smooth(frames: pd.DataFrame, window_s: float) -> np.ndarray:
    """Centred moving average of the probabilities over face frames within `window_s` seconds.

    Frames without a face stay NaN, so smoothing never invents data inside a gap.
    """
    probs = frames[list(CANONICAL_LABELS)].to_numpy(dtype=np.float64)
    if window_s <= 0 or len(frames) < 2:
        return probs
    t = frames["t"].to_numpy(dtype=np.float64)
    period = float(np.median(np.diff(t))) or 1.0
    window = max(1, int(round(window_s / period)))
    smoothed = pd.DataFrame(probs).rolling(window, center=True, min_periods=1).mean().to_numpy(copy=True)
    smoothed[~frames["face_found"].to_numpy(dtype=bool)] = np.nan
    return smoothed


def _bin_edges(t: np.ndarray, t0: float, t1: float, max_points: int) -> np.ndarray:
    """Equal display bins over [t0, t1], each at least one sampling period wide and centred on the
    samples when they are that wide, so a bin is empty only where the video really has no sample
    (a decoding hole), never because a bin fell between two samples."""
    period = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    period = period if period > 0 else 1.0
    # The bins cover the samples in range, not the slider's whole seconds: a range that ends at 60 s on a
    # session whose last frame is at 59.8 s must not end in an empty "not sampled" bin.
    first, last = (float(t[0]), float(t[-1])) if len(t) else (t0, max(t1, t0))
    start, stop = first - period / 2, last + period / 2
    n_bins = max(1, min(max_points, int(math.floor((stop - start) / period + 1e-6))))
    return np.linspace(start, stop, n_bins + 1)


def timeline(frames: pd.DataFrame, window_s: float, t0: float, t1: float,
             max_points: int = MAX_DISPLAY_POINTS) -> pd.DataFrame:
    """One row per display bin: start/end time, state, coverage, mean (smoothed) probabilities, dominant, V/A.

    `state` is FACE (at least one frame with a face), NO_FACE (frames, none with a face) or NO_SAMPLE
    (no frame at all: a stretch the video did not decode). Bins without a face hold zeros for the
    probabilities (the stacked area drops to nothing, so a gap shows) and NaN valence/arousal (the lines
    break); coverage is NaN where there is no sample, since there is nothing to divide.
    """
    in_range = (frames["t"] >= t0) & (frames["t"] <= t1)
    probs = smooth(frames, window_s)[in_range.to_numpy()]
    part = frames.loc[in_range]
    t = part["t"].to_numpy(dtype=np.float64)
    edges = _bin_edges(t, t0, t1, max_points)
    index = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    face = part["face_found"].to_numpy(dtype=bool)
    n_bins = len(edges) - 1
    counts = np.bincount(index, minlength=n_bins)
    face_counts = np.bincount(index, weights=face, minlength=n_bins)
    sums = np.zeros((n_bins, len(CANONICAL_LABELS)))
    np.add.at(sums, index[face], np.nan_to_num(probs[face]))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / face_counts[:, None]
        coverage = face_counts / counts
    has_face = face_counts > 0
    means[~has_face] = 0.0
    valence_arousal = means @ CIRCUMPLEX_MATRIX
    valence_arousal[~has_face] = np.nan
    state = np.where(has_face, FACE, np.where(counts > 0, NO_FACE, NO_SAMPLE))
    dominant = np.where(has_face, np.array(CANONICAL_LABELS, dtype=object)[means.argmax(axis=1)], state)
    table = pd.DataFrame(means, columns=list(CANONICAL_LABELS))
    table.insert(0, "start", edges[:-1])
    table.insert(1, "end", edges[1:])
    table["state"] = state
    table["coverage"] = np.where(counts > 0, coverage, np.nan)
    table["dominant"] = dominant
    table["valence"], table["arousal"] = valence_arousal[:, 0], valence_arousal[:, 1]
    return table


def range_summary(frames: pd.DataFrame, t0: float, t1: float) -> dict[str, Any]:
    """Coverage, dominant emotion, mean distribution and mean valence/arousal over [t0, t1]."""
    part = frames[(frames["t"] >= t0) & (frames["t"] <= t1)]
    face = part["face_found"].to_numpy(dtype=bool)
    probs = part.loc[face, list(CANONICAL_LABELS)].to_numpy(dtype=np.float64)
    means = probs.mean(axis=0) if len(probs) else np.full(len(CANONICAL_LABELS), np.nan)
    valence, arousal = (probs @ CIRCUMPLEX_MATRIX).mean(axis=0) if len(probs) else (math.nan, math.nan)
    return {
        "start_s": float(t0), "end_s": float(t1),
        "sampled_frames": int(len(part)), "face_frames": int(face.sum()),
        "face_coverage": float(face.mean()) if len(part) else 0.0,
        "mean_distribution": dict(zip(CANONICAL_LABELS, (float(v) for v in means), strict=True)),
        "dominant_emotion": CANONICAL_LABELS[int(np.argmax(means))] if len(probs) else None,
        "valence_mean": float(valence), "arousal_mean": float(arousal),
    }


def range_features(frames: pd.DataFrame, t0: float, t1: float) -> dict[str, float] | None:
    """The project's session features recomputed over [t0, t1] (None for fewer than two frames)."""
    part = frames[(frames["t"] >= t0) & (frames["t"] <= t1)].reset_index(drop=True)
    if len(part) < 2:
        return None
    return {name: float(value) for name, value in compute_session_features(part).values.items()}


STATUS_NOTES = {
    "failed": "Processing of this session failed: the numbers below are incomplete or absent.",
    "interrupted": "Processing of this session was interrupted (stopped or killed): the numbers below cover "
                   "only the part processed before it stopped.",
    "running": "This session is still being processed (or its process died without a word): the numbers "
               "below are partial.",
}


def prediction_warnings(prediction: dict, session_classifier_sha256: str | None) -> list[str]:
    """What a reader must know before reading one PHQ estimate: fervideo.phq.prediction_warnings for it (weak
    head, imputed features, in-sample; data.session_predictions puts them in "warnings") and a head trained
    on another classifier. Plain text: the page escapes it."""
    warnings = list(prediction.get("warnings") or [])
    if prediction.get("head_classifier_sha256") not in (None, session_classifier_sha256):
        warnings.append("This estimate comes from a head trained on another classifier than this session's.")
    return warnings


def quality_warnings(session: dict, frames: pd.DataFrame, features: dict | None) -> list[str]:
    """Plain-language data-quality warnings for one session (plain text: the page escapes them)."""
    warnings = []
    status = session.get("status")
    if status != "done":
        warnings.append(STATUS_NOTES.get(status, f"This session is {status}: the numbers below may be incomplete."))
    warnings += processing_warning_texts(session.get("warnings"), session.get("frames_planned"),
                                         session.get("frames_decoded"))
    if features is not None and not features["reliable"]:
        warnings += [f"Unreliable features: {note}" for note in features["reliability_notes"]] or [
            "The features of this session are marked unreliable."]
    if len(frames) == 0:
        return warnings
    coverage = float(frames["face_found"].mean())
    if coverage < 0.5:
        warnings.append(f"A face was found in only {coverage:.0%} of sampled frames.")
    gaps = face_gaps(frames, min_gap_s=10.0)
    if gaps:
        longest = max(gap["duration_s"] for gap in gaps)
        warnings.append(f"{len(gaps)} stretch(es) of 10 s or more without a face; the longest lasts {longest:.0f} s.")
    return warnings
