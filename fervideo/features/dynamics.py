"""Dynamics features on the 1 s grid: MSSD, inertia, dwell times and dominant-label transitions.

Every statistic uses successive *observed* bins only (`Grid.pairs`), so a stretch without a face never
joins what came before it to what came after.
"""

from __future__ import annotations

import numpy as np

from fervideo.features.grid import Grid

MIN_INERTIA_PAIRS = 10  # fewer successive bin pairs than this: inertia is undefined
CONSTANT_SD = 1e-9  # an SD at or below this is a constant series (float noise of equal values)


def mssd(x: np.ndarray, pairs: np.ndarray) -> float:
    """Mean squared successive difference over successive pairs (Jahng, Wood & Trull 2008); NaN without pairs."""
    if not pairs.any():
        return float("nan")
    return float(np.mean((x[1:][pairs] - x[:-1][pairs]) ** 2))


def inertia(x: np.ndarray, pairs: np.ndarray) -> float:
    """Lag-one Pearson correlation of (x[k], x[k+1]) over successive pairs: in [-1, 1] by construction.

    NaN with fewer than MIN_INERTIA_PAIRS pairs or when either side is constant (a correlation with a
    constant is undefined, not zero).
    """
    if int(pairs.sum()) < MIN_INERTIA_PAIRS:
        return float("nan")
    before, after = x[:-1][pairs], x[1:][pairs]
    sd_before, sd_after = before.std(), after.std()
    if sd_before <= CONSTANT_SD or sd_after <= CONSTANT_SD:
        return float("nan")
    covariance = np.mean((before - before.mean()) * (after - after.mean()))
    return float(np.clip(covariance / (sd_before * sd_after), -1.0, 1.0))  # clip: float rounding only


def dominant_bins(grid: Grid) -> np.ndarray:
    """Dominant label index per bin (-1 where the bin is not observed)."""
    dominant = np.full(len(grid.observed), -1, dtype=np.int64)
    if grid.observed.any():
        dominant[grid.observed] = np.argmax(grid.probs[grid.observed], axis=1)
    return dominant


def dwell_times(dominant: np.ndarray, pairs: np.ndarray, step_s: float, n_labels: int) -> np.ndarray:
    """Mean run length (s) per label; a run ends at a label change or an unobserved bin.

    A label that never dominates dwells 0 s; every label is NaN when no bin is observed.
    """
    if not (dominant >= 0).any():
        return np.full(n_labels, np.nan)
    starts = dominant >= 0
    starts[1:] &= ~(pairs & (dominant[1:] == dominant[:-1]))
    run_ids = np.cumsum(starts)[dominant >= 0]
    run_labels = dominant[starts]
    run_lengths = np.bincount(run_ids)[1:]
    totals = np.bincount(run_labels, weights=run_lengths, minlength=n_labels)
    counts = np.bincount(run_labels, minlength=n_labels)
    return np.divide(totals * step_s, counts, out=np.zeros(n_labels), where=counts > 0)


def transitions(dominant: np.ndarray, pairs: np.ndarray, step_s: float,
                n_labels: int) -> tuple[np.ndarray, dict[str, float]]:
    """Row-normalised transition matrix over successive bins, the self-transition rate and changes per minute."""
    counts = np.zeros((n_labels, n_labels))
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
        "transitions_per_min": changes / (n_pairs * step_s / 60.0),
    }
