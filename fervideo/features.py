"""Session features: per-frame table -> named, interpretable session measures.

`compute_session_features` is a pure function of the per-frame table (DESIGN.md's contract) and knows
nothing of the database; `store_session_features` reads a stored session, computes and upserts its row
in `session_features`. Every feature is declared once in `FEATURE_DEFINITIONS` (name, one-line
definition, construct, group); docs/features.md is generated from it (`features_markdown()`).

The gap rule: two frames are *successive* only when both have a face, they are adjacent rows of the
sampled table, and their timestamps differ by at most `GAP_TOLERANCE` x the median sampling period.
Every statistic over time (MSSD, inertia, dwell times, transitions) uses successive pairs only, so a
stretch without a face never joins what came before it to what came after.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fervideo.labels import CANONICAL_LABELS

log = logging.getLogger(__name__)

FEATURE_VERSION = "1"
MIN_FACE_FRAMES = 30  # fewer frames with a face than this: unreliable
MIN_FACE_COVERAGE = 0.20  # a smaller face-found fraction than this: unreliable
GAP_TOLERANCE = 1.5  # x median sampling period: a larger step between frames is a gap
DEFAULT_SMOOTHING_S = 1.0  # centred moving-average window on probabilities before taking dominant labels
AU_PREFIX = "au_"

# Approximate positions of the canonical labels on Russell's (1980) affect circumplex, as
# (valence, arousal) in [-1, 1]. Russell's figure gives angles, not a table for these seven labels;
# these coordinates are this project's reading of it (anger and fear: unpleasant and activated;
# sadness: unpleasant and deactivated; happiness: pleasant, moderately activated; surprise: activated,
# near-neutral valence; disgust: unpleasant, mildly activated; neutral at the origin). Proxies only.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "anger": (-0.6, 0.6),
    "disgust": (-0.7, 0.2),
    "fear": (-0.6, 0.7),
    "happiness": (0.8, 0.4),
    "neutral": (0.0, 0.0),
    "sadness": (-0.7, -0.4),
    "surprise": (0.2, 0.8),
}
POSITIVE_LABELS = ("happiness",)
NEGATIVE_LABELS = ("anger", "disgust", "fear", "sadness")

# OpenFace 2.x outputs: intensity (_r) for these AUs, presence (_c) for these plus AU28.
OPENFACE_INTENSITY_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
                          "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")
OPENFACE_PRESENCE_AUS = (*OPENFACE_INTENSITY_AUS[:-1], "AU28", "AU45")
OPENFACE_VARIABILITY_COLUMNS = ("pose_Rx", "pose_Ry", "pose_Rz", "gaze_angle_x", "gaze_angle_y")


@dataclass(frozen=True)
class FeatureDefinition:
    name: str
    definition: str  # one line, shown on dashboard feature cards
    construct: str  # the psychological or measurement construct it comes from
    group: str  # coverage, emotion, valence_arousal, distribution, transitions, au
    unit: str = ""


@dataclass
class SessionFeatureResult:
    values: dict[str, float]
    transition_matrix: np.ndarray  # 7x7 row-normalised, rows = from (canonical order); NaN rows: never left
    reliable: bool
    reliability_notes: list[str] = field(default_factory=list)

    def values_for_json(self) -> dict[str, float | None]:
        return {name: _json_float(value) for name, value in self.values.items()}

    def matrix_for_json(self) -> list[list[float | None]]:
        return [[_json_float(v) for v in row] for row in self.transition_matrix]


def _json_float(value: float) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


# ------------------------------------------------------------------------------------------- registry
def _build_definitions() -> dict[str, FeatureDefinition]:
    defs = [
        FeatureDefinition("duration_s", "Time from the first to the last sampled frame plus one sampling period.",
                          "data coverage", "coverage", "s"),
        FeatureDefinition("sampled_frames", "Number of sampled frames, face or not.", "data coverage", "coverage"),
        FeatureDefinition("face_frames", "Number of sampled frames with a face.", "data coverage", "coverage"),
        FeatureDefinition("face_found_fraction", "Share of sampled frames with a face.", "data coverage",
                          "coverage"),
        FeatureDefinition("longest_gap_s", "Longest stretch of time without a face, session edges included.",
                          "data coverage", "coverage", "s"),
    ]
    for label in CANONICAL_LABELS:
        defs += [
            FeatureDefinition(f"mean_{label}", f"Mean P({label}) over frames with a face.",
                              "emotion intensity (discrete emotions)", "emotion"),
            FeatureDefinition(f"dominant_{label}", f"Share of face frames where {label} has the highest probability.",
                              "emotion frequency", "emotion"),
            FeatureDefinition(f"sd_{label}", f"Population SD of P({label}) over face frames.",
                              "emotional variability", "emotion"),
            FeatureDefinition(f"mssd_{label}", f"Mean squared successive difference of P({label}) (gap rule).",
                              "emotional instability (Jahng et al. 2008)", "emotion"),
            FeatureDefinition(f"inertia_{label}", f"Lag-1 autocorrelation of P({label}) over successive pairs.",
                              "emotional inertia (Kuppens et al. 2010)", "emotion"),
            FeatureDefinition(f"dwell_{label}_s", f"Mean duration of runs where smoothed {label} is dominant.",
                              "emotion duration / persistence", "emotion", "s"),
        ]
    for axis in ("valence", "arousal"):
        construct = f"core affect, {axis} (Russell 1980 circumplex proxy)"
        defs += [
            FeatureDefinition(f"{axis}_mean", f"Mean per-frame expected {axis} (circumplex table).", construct,
                              "valence_arousal"),
            FeatureDefinition(f"{axis}_sd", f"Population SD of per-frame expected {axis}.", construct,
                              "valence_arousal"),
            FeatureDefinition(f"{axis}_mssd", f"Mean squared successive difference of expected {axis}.", construct,
                              "valence_arousal"),
            FeatureDefinition(f"{axis}_inertia", f"Lag-1 autocorrelation of expected {axis}.", construct,
                              "valence_arousal"),
        ]
    defs += [
        FeatureDefinition("entropy_mean", "Mean per-frame Shannon entropy of the emotion distribution (bits).",
                          "expression ambiguity / classifier uncertainty", "distribution", "bits"),
        FeatureDefinition("emodiversity", "Shannon entropy of the session-average emotion distribution (bits).",
                          "emodiversity (Quoidbach et al. 2014)", "distribution", "bits"),
        FeatureDefinition("expressivity", "1 - mean P(neutral) over face frames.", "facial expressivity",
                          "distribution"),
        FeatureDefinition("pos_neg_balance", "(P+ - P-) / (P+ + P-), P+ = mean P(happiness), "
                          "P- = mean P(anger+disgust+fear+sadness).", "positive-negative affect balance",
                          "distribution"),
        FeatureDefinition("self_transition_rate", "Share of successive pairs whose smoothed dominant label repeats.",
                          "emotional stability (transition dynamics)", "transitions"),
        FeatureDefinition("transitions_per_min", "Dominant-label changes per minute of continuously observed face.",
                          "emotional lability (transition dynamics)", "transitions", "1/min"),
    ]
    for au in OPENFACE_INTENSITY_AUS:
        defs.append(FeatureDefinition(f"{AU_PREFIX}{au}_intensity", f"Mean OpenFace {au} intensity (0-5) over "
                                      "frames with a face.", "facial action (FACS)", "au"))
    for au in OPENFACE_PRESENCE_AUS:
        defs.append(FeatureDefinition(f"{AU_PREFIX}{au}_presence", f"Share of face frames where OpenFace marks "
                                      f"{au} present.", "facial action (FACS)", "au"))
    for column in OPENFACE_VARIABILITY_COLUMNS:
        defs.append(FeatureDefinition(f"{AU_PREFIX}{column}_sd", f"SD of {column} (radians) over face frames.",
                                      "head-pose / gaze variability (psychomotor activity)", "au", "rad"))
    defs.append(FeatureDefinition(f"{AU_PREFIX}low_confidence_rate", "Share of face frames with OpenFace "
                                  "confidence below the low-confidence threshold.", "data quality", "au"))
    return {d.name: d for d in defs}


FEATURE_DEFINITIONS: dict[str, FeatureDefinition] = _build_definitions()


def feature_definition(name: str) -> FeatureDefinition | None:
    """The definition of a feature name, or None for a name this version does not know."""
    return FEATURE_DEFINITIONS.get(name)


def features_markdown() -> str:
    """The feature table of docs/features.md, generated from the registry."""
    lines = ["| name | group | definition | construct | unit |", "|---|---|---|---|---|"]
    for d in FEATURE_DEFINITIONS.values():
        lines.append(f"| `{d.name}` | {d.group} | {d.definition} | {d.construct} | {d.unit} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- basics
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


def sampling_period(t: np.ndarray) -> float:
    """Median step between sampled timestamps (NaN with fewer than two frames)."""
    steps = np.diff(t)
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else float("nan")


def successive_mask(t: np.ndarray, face: np.ndarray, period: float) -> np.ndarray:
    """mask[i] is True when rows i and i+1 form a successive pair (both faces, adjacent, no time gap)."""
    if len(t) < 2 or not math.isfinite(period):
        return np.zeros(max(len(t) - 1, 0), dtype=bool)
    return face[:-1] & face[1:] & (np.diff(t) <= GAP_TOLERANCE * period)


def _mssd(x: np.ndarray, pairs: np.ndarray) -> float:
    return float(np.mean((x[1:][pairs] - x[:-1][pairs]) ** 2)) if pairs.any() else float("nan")


def _inertia(x: np.ndarray, face: np.ndarray, pairs: np.ndarray) -> float:
    """Lag-1 autocorrelation with the session mean and variance over face frames (pooled across segments)."""
    values = x[face]
    variance = float(np.var(values)) if len(values) else 0.0
    if not pairs.any() or variance <= 1e-12:
        return float("nan")
    centred = x - values.mean()
    return float(np.mean(centred[:-1][pairs] * centred[1:][pairs]) / variance)


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=-1)


def _segments(pairs: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Segment id per row: a new segment starts wherever a row is not successive to the one before."""
    starts = np.ones(len(face), dtype=bool)
    starts[1:] = ~pairs
    return np.cumsum(starts)


def smoothed_dominant(probs: np.ndarray, face: np.ndarray, pairs: np.ndarray, window: int) -> np.ndarray:
    """Dominant label index per row (-1 without a face) after a centred moving average within segments."""
    dominant = np.full(len(face), -1, dtype=np.int64)
    if not face.any():
        return dominant
    frame = pd.DataFrame(probs)
    if window > 1:
        groups = _segments(pairs, face)
        frame = frame.groupby(groups).transform(lambda s: s.rolling(window, center=True, min_periods=1).mean())
    dominant[face] = np.argmax(frame.to_numpy()[face], axis=1)
    return dominant


def _longest_gap(t: np.ndarray, face: np.ndarray, period: float) -> float:
    if not len(t):
        return 0.0
    step = period if math.isfinite(period) else 0.0
    if not face.any():
        return float(t[-1] - t[0] + step)
    face_t = t[face]
    gaps = [face_t[0] - t[0], t[-1] - face_t[-1]]
    if len(face_t) > 1:
        gaps.append(float(np.max(np.diff(face_t) - step)))
    return round(float(max(0.0, *gaps)), 9)  # drops float noise from summed sampling steps


def _dwell_times(dominant: np.ndarray, pairs: np.ndarray, period: float) -> dict[int, float]:
    """Mean run length (s) per label index, runs broken by label changes and by the gap rule."""
    runs: dict[int, list[int]] = {}
    current, length = -1, 0
    for i, label in enumerate(dominant):
        continues = i > 0 and pairs[i - 1] and label == current
        if continues:
            length += 1
            continue
        if current >= 0:
            runs.setdefault(current, []).append(length)
        current, length = label, 1
    if current >= 0:
        runs.setdefault(current, []).append(length)
    return {label: float(np.mean(lengths)) * period for label, lengths in runs.items()}


# -------------------------------------------------------------------------------------------- compute
def compute_session_features(frames: pd.DataFrame, smoothing_s: float = DEFAULT_SMOOTHING_S) -> SessionFeatureResult:
    """All session features of one per-frame table (columns: frame_index, t, face_found, <labels>)."""
    table = frames.sort_values("frame_index" if "frame_index" in frames else "t", kind="stable")
    t = table["t"].to_numpy(dtype=np.float64)
    face = table["face_found"].to_numpy(dtype=bool) & table[list(CANONICAL_LABELS)].notna().all(axis=1).to_numpy()
    probs = np.nan_to_num(table[list(CANONICAL_LABELS)].to_numpy(dtype=np.float64))
    period = sampling_period(t)
    pairs = successive_mask(t, face, period)
    values: dict[str, float] = {}
    n_face = int(face.sum())
    values["duration_s"] = float(t[-1] - t[0] + (period if math.isfinite(period) else 0.0)) if len(t) else 0.0
    values["sampled_frames"] = float(len(t))
    values["face_frames"] = float(n_face)
    values["face_found_fraction"] = n_face / len(t) if len(t) else 0.0
    values["longest_gap_s"] = _longest_gap(t, face, period)

    window = max(1, int(round(smoothing_s / period))) if smoothing_s > 0 and math.isfinite(period) else 1
    window += 1 - window % 2  # odd, so the window is centred
    dominant = smoothed_dominant(probs, face, pairs, window)
    raw_dominant = np.argmax(probs[face], axis=1) if n_face else np.array([], dtype=int)
    dwell = _dwell_times(dominant, pairs, period) if n_face and math.isfinite(period) else {}
    nan = float("nan")
    for k, label in enumerate(CANONICAL_LABELS):
        x = probs[:, k]
        values[f"mean_{label}"] = float(x[face].mean()) if n_face else nan
        values[f"dominant_{label}"] = float(np.mean(raw_dominant == k)) if n_face else nan
        values[f"sd_{label}"] = float(x[face].std()) if n_face else nan
        values[f"mssd_{label}"] = _mssd(x, pairs)
        values[f"inertia_{label}"] = _inertia(x, face, pairs)
        values[f"dwell_{label}_s"] = dwell.get(k, nan)

    coordinates = np.array([CIRCUMPLEX[label] for label in CANONICAL_LABELS])
    for axis, series in zip(("valence", "arousal"), (probs @ coordinates).T, strict=True):
        values[f"{axis}_mean"] = float(series[face].mean()) if n_face else nan
        values[f"{axis}_sd"] = float(series[face].std()) if n_face else nan
        values[f"{axis}_mssd"] = _mssd(series, pairs)
        values[f"{axis}_inertia"] = _inertia(series, face, pairs)

    values.update(_distribution_features(probs[face]))
    matrix, transition_values = _transitions(dominant, pairs, period)
    values.update(transition_values)
    reliable, notes = reliability(n_face, values["face_found_fraction"])
    return SessionFeatureResult(values, matrix, reliable, notes)


def _distribution_features(face_probs: np.ndarray) -> dict[str, float]:
    nan = float("nan")
    if not len(face_probs):
        return {"entropy_mean": nan, "emodiversity": nan, "expressivity": nan, "pos_neg_balance": nan}
    average = face_probs.mean(axis=0)
    index = {label: k for k, label in enumerate(CANONICAL_LABELS)}
    positive = sum(average[index[label]] for label in POSITIVE_LABELS)
    negative = sum(average[index[label]] for label in NEGATIVE_LABELS)
    return {
        "entropy_mean": float(_entropy_bits(face_probs).mean()),
        "emodiversity": float(_entropy_bits(average)),
        "expressivity": float(1.0 - average[index["neutral"]]),
        "pos_neg_balance": float((positive - negative) / (positive + negative)) if positive + negative > 0 else nan,
    }


def _transitions(dominant: np.ndarray, pairs: np.ndarray, period: float) -> tuple[np.ndarray, dict[str, float]]:
    size = len(CANONICAL_LABELS)
    counts = np.zeros((size, size))
    source, target = dominant[:-1][pairs], dominant[1:][pairs]
    np.add.at(counts, (source, target), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = counts / counts.sum(axis=1, keepdims=True)
    n_pairs = int(pairs.sum())
    if not n_pairs:
        return matrix, {"self_transition_rate": float("nan"), "transitions_per_min": float("nan")}
    changes = int(np.sum(source != target))
    return matrix, {
        "self_transition_rate": 1.0 - changes / n_pairs,
        "transitions_per_min": changes / (n_pairs * period / 60.0),
    }


def reliability(face_frames: int, face_fraction: float) -> tuple[bool, list[str]]:
    notes = []
    if face_frames < MIN_FACE_FRAMES:
        notes.append(f"only {face_frames} frames with a face (at least {MIN_FACE_FRAMES} needed)")
    if face_fraction < MIN_FACE_COVERAGE:
        notes.append(f"a face in only {face_fraction:.0%} of sampled frames (at least {MIN_FACE_COVERAGE:.0%} needed)")
    return not notes, notes


# -------------------------------------------------------------------------------------------- storage
def store_session_features(db_factory, session_id: int, recompute: bool = False,
                           frames: pd.DataFrame | None = None,
                           extra_values: dict[str, float] | None = None):
    """Compute and upsert one session's features row; return the stored SessionFeatures row.

    An existing row is returned untouched unless `recompute`. Keys with the `au_` prefix (the OpenFace
    AU group, computed at import) are kept across recomputes unless `extra_values` replaces them.
    """
    from fervideo.errors import NotFoundError
    from fervideo.store import SessionFeatures, VideoSession, frame_table

    with db_factory.begin() as db:
        if db.get(VideoSession, session_id) is None:
            raise NotFoundError(f"no session {session_id}; see `fervideo sessions`")
        row = db.get(SessionFeatures, session_id)
        if row is not None and not recompute and extra_values is None:
            return row
        table = frames if frames is not None else frame_table(db, session_id)
        result = compute_session_features(table)
        values = result.values_for_json()
        kept = {k: v for k, v in (row.values if row is not None else {}).items() if k.startswith(AU_PREFIX)}
        values.update(kept)
        values.update({k: _json_float(v) for k, v in (extra_values or {}).items()})
        if row is None:
            row = SessionFeatures(session_id=session_id)
            db.add(row)
        row.feature_version = FEATURE_VERSION
        row.reliable = result.reliable
        row.reliability_notes = result.reliability_notes
        row.values = values
        row.transition_matrix = result.matrix_for_json()
        row.computed_at = pd.Timestamp.now("UTC").tz_localize(None).to_pydatetime()
        log.info("features of session %d: %s", session_id, "reliable" if result.reliable else "unreliable")
    return row
