"""Time base of the features: timestamp checks, the sampling period, and pairs of frames 1 s apart.

Dynamics features (MSSD, inertia, dwell, transitions) are computed over pairs of face frames a fixed
time apart (LAG_S = 1 s), not over successive frames: a statistic over successive frames changes with
the step between them (the MSSD of a smooth signal shrinks as the square of the step, the lag-one
autocorrelation tends to 1). Pairing each frame with the frame nearest to 1 s later is the same as
resampling the session onto a 1 s grid at every phase the sampling offers (one grid at 1 fps, 30
interleaved grids at 30 fps) and pooling them: the statistics' expected values do not depend on the
rate, with or without independent per-frame classifier noise, and no frame is discarded. (Averaging
frames into 1 s bins would not do: it averages the noise away at high rates only.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LAG_S = 1.0  # time between the two frames of a pair (s): the dynamics' time scale


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
    """The typical step between sampled timestamps: the mean of the steps within 0.5-1.5 x the median.

    The median alone is robust to holes but not to rounded timestamps (OpenFace writes 3 decimals, so
    30 fps steps read 0.033 and 0.034 and the median says 30.3 fps); the mean of the regular steps is
    both. NaN with fewer than two frames or no positive step.
    """
    steps = np.diff(t)
    steps = steps[steps > 0]
    if not len(steps):
        return float("nan")
    median = np.median(steps)
    return float(np.mean(steps[(steps >= 0.5 * median) & (steps <= 1.5 * median)]))


@dataclass(frozen=True)
class LaggedPairs:
    """Pairs (first[m], second[m]) of face frames LAG_S apart, as row indices of the sampled table."""

    first: np.ndarray  # int64 [M]
    second: np.ndarray  # int64 [M]
    has_successor: np.ndarray  # bool [N]: frame i is the first frame of a pair
    lag_s: float
    period: float

    def __len__(self) -> int:
        return len(self.first)

    @property
    def observed_s(self) -> float:
        """Seconds of paired observation: pairs x the sampling period (the same at every rate)."""
        return len(self) * self.period if len(self) else 0.0


def lagged_pairs(t: np.ndarray, face: np.ndarray, period: float, lag_s: float = LAG_S) -> LaggedPairs:
    """Pair every face frame with the frame nearest to `lag_s` later, when that one has a face too.

    The partner must lie within half a sampling period (at most half the lag) of t + lag_s, so a hole
    in the sampling or a stretch of a lag or more without a face is never bridged. Sampling slower than
    one frame per lag gives no pairs: the dynamics are then undefined.
    """
    n = len(t)
    none = LaggedPairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(n, bool), lag_s, period)
    if n < 2 or not math.isfinite(period) or not face.any():
        return none
    target = t + lag_s
    after = np.clip(np.searchsorted(t, target), 1, n - 1)
    nearer_before = np.abs(t[after - 1] - target) <= np.abs(t[after] - target)
    partner = np.where(nearer_before, after - 1, after)
    tolerance = 0.5 * min(period, lag_s) + 1e-9
    valid = face & face[partner] & (partner > np.arange(n)) & (np.abs(t[partner] - target) <= tolerance)
    first = np.flatnonzero(valid)
    return LaggedPairs(first, partner[first], valid, lag_s, period)


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
