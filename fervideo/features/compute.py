"""`compute_session_features`: one per-frame table -> every named session feature (pure, no database)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fervideo.features.distribution import distribution_features
from fervideo.features.dynamics import dwell_times, inertia, mssd, transitions
from fervideo.features.registry import CIRCUMPLEX, INDICATED_FEATURES, MISSING_SUFFIX
from fervideo.features.reliability import reliability
from fervideo.features.timebase import LAG_S, lagged_pairs, longest_gap, sampling_period, timestamp_problem
from fervideo.labels import CANONICAL_LABELS


@dataclass
class SessionFeatureResult:
    values: dict[str, float]
    transition_matrix: np.ndarray  # 7x7 row-normalised, rows = from (canonical order); NaN rows: never left
    reliable: bool
    reliability_notes: list[str] = field(default_factory=list)

    def values_for_json(self) -> dict[str, float | None]:
        return {name: json_float(value) for name, value in self.values.items()}

    def matrix_for_json(self) -> list[list[float | None]]:
        return [[json_float(v) for v in row] for row in self.transition_matrix]


def json_float(value: float | None) -> float | None:
    """NaN and infinities become None (JSON null); everything else a plain float."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


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


def _coverage(t: np.ndarray, face: np.ndarray, face_found: np.ndarray, period: float,
              timed: bool) -> dict[str, float]:
    """Counts always; durations only when the timestamps are usable (`timed`), else NaN."""
    step = period if math.isfinite(period) else 0.0
    n_face = int(face.sum())
    nan = float("nan")
    return {
        "duration_s": (float(t[-1] - t[0] + step) if len(t) else 0.0) if timed else nan,
        "sampled_frames": float(len(t)),
        "face_frames": float(n_face),
        "face_s": n_face * step,
        "excluded_face_frames": float(np.sum(face_found & ~face)),
        "face_found_fraction": n_face / len(t) if len(t) else 0.0,
        "longest_gap_s": longest_gap(t, face, period) if timed else nan,
    }


def compute_session_features(frames: pd.DataFrame, lag_s: float = LAG_S) -> SessionFeatureResult:
    """All session features of one per-frame table (columns: frame_index, t, face_found, <labels>).

    A frame counts as a face frame when `face_found` and all seven probabilities are present; a face
    without probabilities (an untrusted OpenFace frame) is counted in `excluded_face_frames` only.
    """
    table = frames.sort_values("frame_index" if "frame_index" in frames else "t", kind="stable")
    t = table["t"].to_numpy(dtype=np.float64)
    face_found = table["face_found"].to_numpy(dtype=bool)
    face = face_found & table[list(CANONICAL_LABELS)].notna().all(axis=1).to_numpy()
    probs = np.nan_to_num(table[list(CANONICAL_LABELS)].to_numpy(dtype=np.float64))
    problem = timestamp_problem(t)
    period = sampling_period(t) if problem is None else float("nan")
    values = _coverage(t, face, face_found, period, timed=problem is None)
    # Without a usable time base (period NaN) there are no pairs: every dynamics feature is undefined.
    pairs = lagged_pairs(t, face, period, lag_s)
    dominant = np.argmax(probs, axis=1)  # per frame; only face frames' entries are ever read
    dwell = dwell_times(dominant, face & (problem is None), pairs, len(CANONICAL_LABELS))
    face_probs = probs[face]
    raw_dominant = dominant[face]
    n_face = len(face_probs)
    nan = float("nan")
    for k, label in enumerate(CANONICAL_LABELS):
        x = face_probs[:, k]
        values[f"mean_{label}"] = float(x.mean()) if len(x) else nan
        values[f"dominant_{label}"] = float(np.mean(raw_dominant == k)) if len(x) else nan
        values[f"sd_{label}"] = float(x.std()) if len(x) else nan
        values[f"mssd_{label}"] = mssd(probs[:, k], pairs)
        values[f"inertia_{label}"] = inertia(probs[:, k], pairs)
        values[f"dwell_{label}_s"] = float(dwell[k])

    coordinates = np.array([CIRCUMPLEX[label] for label in CANONICAL_LABELS])
    for axis, series in zip(("valence", "arousal"), (probs @ coordinates).T, strict=True):
        values[f"{axis}_mean"] = float(series[face].mean()) if n_face else nan
        values[f"{axis}_sd"] = float(series[face].std()) if n_face else nan
        values[f"{axis}_mssd"] = mssd(series, pairs)
        values[f"{axis}_inertia"] = inertia(series, pairs)

    values.update(distribution_features(face_probs))
    matrix, transition_values = transitions(dominant, pairs, len(CANONICAL_LABELS))
    values.update(transition_values)
    for name in INDICATED_FEATURES:
        values[f"{name}{MISSING_SUFFIX}"] = float(math.isnan(values[name]))
    reliable, notes = reliability(values["face_s"], values["face_found_fraction"], problem)
    return SessionFeatureResult(values, matrix, reliable, notes)
