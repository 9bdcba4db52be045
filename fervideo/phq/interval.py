"""Prediction intervals for PHQ estimates: CV+ (or split-conformal) with each subject counting once.

Numpy only, so the coverage simulation (benchmarks/phq_coverage.py, tests/test_phq_interval.py) runs the
same code as `phq predict`. Notation follows Barber, Candes, Ramdas & Tibshirani (2021), "Predictive
inference with the jackknife+", Ann. Statist. 49(1): K fold models mu_k, each calibration session i has
the fold k(i) whose model never saw its subject and the out-of-fold residual R_i = |y_i - mu_k(i)(x_i)|.
For a new session x the CV+ interval is

    [ q-_alpha { mu_k(i)(x) - R_i },  q+_alpha { mu_k(i)(x) + R_i } ]

With one fold model (a held-out calibration set of subjects) this is exactly split conformal. Sessions
of one subject are not exchangeable with each other's subjects, so quantiles are *weighted*: each
subject's sessions share a weight of 1 (1/m each for m sessions), as in the hierarchical split-conformal
of Dunn, Wasserman & Ramdas (2022), and the finite-sample correction counts subjects, not sessions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fervideo.errors import PhqRefusalError


def subject_weights(groups: np.ndarray) -> np.ndarray:
    """1 / (number of sessions of the subject) per session: every subject weighs 1 in all."""
    _, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def weighted_upper_quantile(values: np.ndarray, weights: np.ndarray, coverage: float) -> float:
    """Smallest v whose weight at or below reaches coverage x (W + 1), W the total weight (subjects).

    The "+ 1" is the test subject's own mass (the conformal finite-sample correction); when it cannot be
    reached the quantile is +inf: too few subjects for this coverage.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if len(values) == 0:
        return math.inf
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    needed = coverage * (weights.sum() + 1.0)
    position = int(np.searchsorted(cumulative, needed - 1e-9 * max(needed, 1.0), side="left"))
    return float(values[order][position]) if position < len(values) else math.inf


def weighted_lower_quantile(values: np.ndarray, weights: np.ndarray, coverage: float) -> float:
    """Largest v whose weight at or above reaches coverage x (W + 1); -inf when it cannot be reached."""
    return -weighted_upper_quantile(-np.asarray(values, dtype=np.float64), weights, coverage)


@dataclass
class Calibration:
    """What a head keeps to build intervals: per calibration session its fold, residual, weight and subject."""

    fold: np.ndarray  # int, index of the fold model that never saw the session's subject
    residual: np.ndarray  # |y - out-of-fold prediction|
    weight: np.ndarray  # 1 / sessions of the subject
    group: np.ndarray  # subject code
    coverage: float

    @classmethod
    def from_out_of_fold(cls, y: np.ndarray, oof: np.ndarray, fold: np.ndarray, groups: np.ndarray,
                         coverage: float) -> Calibration:
        scored = np.isfinite(oof) & (fold >= 0)
        return cls(fold[scored].astype(np.int64), np.abs(y[scored] - oof[scored]),
                   subject_weights(groups[scored]), np.asarray(groups[scored]).astype(str), coverage)

    @property
    def n_subjects(self) -> int:
        return len(set(self.group.tolist()))

    def cv_plus(self, fold_predictions: np.ndarray) -> tuple[float, float]:
        """The CV+ interval for one new session, given each fold model's prediction for it ([K])."""
        centre = np.asarray(fold_predictions, dtype=np.float64)[self.fold]
        return (weighted_lower_quantile(centre - self.residual, self.weight, self.coverage),
                weighted_upper_quantile(centre + self.residual, self.weight, self.coverage))

    def leave_subject_out_halfwidth(self, subject: str) -> float:
        """Residual quantile over every *other* subject: the interval around an out-of-fold prediction."""
        others = self.group != str(subject)
        return weighted_upper_quantile(self.residual[others], self.weight[others], self.coverage)

    def empirical_coverage(self) -> float:
        """Share of calibration subjects' sessions (each subject weighing 1) whose total lies inside the
        out-of-fold interval built from the other subjects' residuals."""
        if len(self.residual) == 0:
            return math.nan
        inside = np.zeros(len(self.residual), dtype=bool)
        for subject in np.unique(self.group):
            own = self.group == subject
            inside[own] = self.residual[own] <= self.leave_subject_out_halfwidth(subject)
        return float(np.sum(self.weight * inside) / np.sum(self.weight))


@dataclass(frozen=True)
class BoundedEstimate:
    estimate: float
    lower: float
    upper: float


def bound_to_instrument(raw: float, lower: float, upper: float, top: float) -> BoundedEstimate:
    """Clip an estimate and its interval to the instrument's range [0, top] so that the interval always
    holds the estimate and lower <= upper; refuse a raw prediction more than the interval's half-width
    beyond the range (the head is extrapolating: a clipped number would look more certain than it is).

    The interval is widened to hold the estimate where needed (CV+ is centred on the fold models, the
    estimate on the final one): widening never lowers coverage.
    """
    raw, lower, upper = float(raw), float(lower), float(upper)
    if not math.isfinite(raw) or math.isnan(lower) or math.isnan(upper):
        raise PhqRefusalError("the head gave no finite prediction for this session (outside what the head was "
                              "trained on)")
    lower, upper = min(lower, upper), max(lower, upper)
    halfwidth = (upper - lower) / 2
    if raw < -halfwidth or raw > top + halfwidth:
        raise PhqRefusalError(
            f"the head's raw prediction {raw:.1f} lies more than the interval's half-width ({halfwidth:.1f}) "
            f"outside the range 0-{top:g}: outside what the head was trained on; no estimate is given")
    estimate = min(max(raw, 0.0), float(top))
    return BoundedEstimate(estimate, min(max(min(lower, estimate), 0.0), float(top)),
                           min(max(max(upper, estimate), 0.0), float(top)))


def naive_halfwidth(residuals: np.ndarray, coverage: float) -> float:
    """The interval fervideo used before (format-1 heads): the ceil((n+1) coverage)-th smallest |residual| over
    sessions, around the refit. Kept only so the coverage benchmark can show what it did."""
    scores = np.sort(np.abs(residuals))
    rank = math.ceil((len(scores) + 1) * coverage)
    return float(scores[rank - 1]) if 0 < rank <= len(scores) else math.inf
