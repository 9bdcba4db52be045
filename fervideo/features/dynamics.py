"""Dynamics features over pairs of face frames 1 s apart: MSSD, inertia, dwell times and transitions.

Every statistic uses `LaggedPairs` only, so a stretch without a face never joins what came before it
to what came after, and the values mean the same at every sampling rate (see `timebase`).
"""

from __future__ import annotations

import numpy as np

from fervideo.features.timebase import LaggedPairs

MIN_INERTIA_PAIRED_S = 10.0  # less paired observation than this (s): inertia is undefined
CONSTANT_SD = 1e-9  # an SD at or below this is a constant series (float noise of equal values)


def mssd(x: np.ndarray, pairs: LaggedPairs) -> float:
    """Mean squared difference over pairs 1 s apart (Jahng, Wood & Trull 2008); NaN without pairs."""
    if not len(pairs):
        return float("nan")
    return float(np.mean((x[pairs.second] - x[pairs.first]) ** 2))


def inertia(x: np.ndarray, pairs: LaggedPairs) -> float:
    """Pearson correlation of (x[first], x[second]) over the pairs: in [-1, 1] by construction.

    NaN with under MIN_INERTIA_PAIRED_S seconds of pairs or when either side is constant (a correlation
    with a constant is undefined, not zero).
    """
    if pairs.observed_s < MIN_INERTIA_PAIRED_S - 1e-9:
        return float("nan")
    before, after = x[pairs.first], x[pairs.second]
    sd_before, sd_after = before.std(), after.std()
    if sd_before <= CONSTANT_SD or sd_after <= CONSTANT_SD:
        return float("nan")
    covariance = np.mean((before - before.mean()) * (after - after.mean()))
    return float(np.clip(covariance / (sd_before * sd_after), -1.0, 1.0))  # clip: float rounding only


def dwell_times(dominant: np.ndarray, face: np.ndarray, pairs: LaggedPairs, n_labels: int) -> np.ndarray:
    """Mean run length (s) per label along chains of frames 1 s apart.

    Following each frame to its partner 1 s later makes chains (one per phase of the sampling); a run
    of a label ends at a change of label or where a chain ends (no partner: a gap or the session's
    end). Mean run length = frames with the label / runs of it that end, x the lag. A label that never
    dominates dwells 0 s; every label is NaN without face frames.
    """
    if not face.any():
        return np.full(n_labels, np.nan)
    frames = np.bincount(dominant[face], minlength=n_labels)
    changes = dominant[pairs.first] != dominant[pairs.second]
    ends = np.bincount(dominant[pairs.first][changes], minlength=n_labels)
    ends += np.bincount(dominant[face & ~pairs.has_successor], minlength=n_labels)
    return np.divide(frames * pairs.lag_s, ends, out=np.zeros(n_labels), where=ends > 0)


def transitions(dominant: np.ndarray, pairs: LaggedPairs, n_labels: int) -> tuple[np.ndarray, dict[str, float]]:
    """Row-normalised transition matrix over the pairs, the self-transition rate and changes per minute."""
    counts = np.zeros((n_labels, n_labels))
    source, target = dominant[pairs.first], dominant[pairs.second]
    np.add.at(counts, (source, target), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = counts / counts.sum(axis=1, keepdims=True)
    if not len(pairs):
        return matrix, {"self_transition_rate": float("nan"), "transitions_per_min": float("nan")}
    change_rate = float(np.mean(source != target))
    return matrix, {
        "self_transition_rate": 1.0 - change_rate,
        "transitions_per_min": change_rate * 60.0 / pairs.lag_s,
    }
