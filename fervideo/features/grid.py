"""Time base of the features: timestamp checks, the sampling period, and the fixed 1 s grid.

Dynamics features (MSSD, inertia, dwell, transitions) are computed on a fixed time grid rather than on
sampled frames, so they mean the same at 1 fps and at 30 fps: a statistic over successive *frames*
changes with the step between them (MSSD of a smooth signal shrinks as the square of the step, the
lag-one autocorrelation tends to 1). A frame sampled at t stands for the interval [t, t + period); it
goes to the bin holding that interval's centre: bin k = floor((t - t0 + period / 2) / grid_s). So a
session of D seconds fills D bins at any rate, and sampling at exactly 1 fps with timestamp jitter
still puts one frame in each bin. A bin's value is the mean of its face frames' probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID_S = 1.0  # width of a grid bin (s); the dynamics' time scale
MIN_BIN_FACE_SHARE = 0.5  # a bin counts as observed when at least this share of its frames hold a face


def timestamp_problem(t: np.ndarray) -> str | None:
    """Why timestamps (in frame order) cannot carry time, or None when they are finite and increasing."""
    if not len(t):
        return None
    if not np.isfinite(t).all():
        return "timestamps include missing or infinite values"
    if len(t) > 1 and np.all(t == t[0]):
        return f"all {len(t)} timestamps are equal ({t[0]:g} s)"
    if np.any(np.diff(t) <= 0):
        return "timestamps do not increase with the frame number"
    return None


def sampling_period(t: np.ndarray) -> float:
    """Median step between sampled timestamps (NaN with fewer than two frames or no positive step)."""
    steps = np.diff(t)
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else float("nan")


@dataclass(frozen=True)
class Grid:
    """Probabilities on the fixed grid: bin means of face frames; NaN rows where a bin is not observed."""

    probs: np.ndarray  # [B, C]
    observed: np.ndarray  # [B] bool
    step_s: float

    @property
    def pairs(self) -> np.ndarray:
        """pairs[k] is True when bins k and k+1 are both observed (the gap rule on the grid)."""
        return self.observed[:-1] & self.observed[1:]


def resample_to_grid(t: np.ndarray, probs: np.ndarray, face: np.ndarray, period: float,
                     step_s: float = GRID_S) -> Grid:
    """Mean probabilities of face frames per grid bin; `t` must be increasing (see timestamp_problem)."""
    if not len(t) or not face.any() or not math.isfinite(step_s) or step_s <= 0:
        return Grid(np.empty((0, probs.shape[1])), np.zeros(0, dtype=bool), step_s)
    half_period = period / 2 if math.isfinite(period) else 0.0
    # The tolerance keeps a cell centre computed as k - 1e-12 (float noise) in bin k.
    bins = np.floor((t - t[0] + half_period) / step_s + 1e-9).astype(np.int64)
    n_bins = int(bins[-1]) + 1
    frames_per_bin = np.bincount(bins, minlength=n_bins)
    faces_per_bin = np.bincount(bins[face], minlength=n_bins)
    sums = np.zeros((n_bins, probs.shape[1]))
    np.add.at(sums, bins[face], probs[face])
    observed = (faces_per_bin > 0) & (faces_per_bin >= MIN_BIN_FACE_SHARE * frames_per_bin)
    means = np.full_like(sums, np.nan)
    means[observed] = sums[observed] / faces_per_bin[observed, None]
    return Grid(means, observed, step_s)


def longest_gap(t: np.ndarray, face: np.ndarray, period: float) -> float:
    """Longest time without a face (minus one period between face frames), session edges included."""
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
