"""Synthetic cohorts to measure the empirical coverage of the PHQ interval (numpy only, seconds).

A linear model with a subject random effect, labelled once per subject as DAIC-WOZ is: subject i has a
trait u_i (p features) and a random effect b_i; each of its m sessions shows x_ij = u_i + e_ij; its
label is y_i = beta . u_i + b_i for every session. A ridge fit in subject-grouped folds gives the fold
models and out-of-fold residuals; coverage is measured on new subjects (one session each) against the
CV+ interval that `phq predict` builds (fervideo.phq.interval), and against the naive per-session
residual quantile around the refit that fervideo used before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fervideo.phq.interval import Calibration, naive_halfwidth


@dataclass
class CoverageResult:
    sessions_per_subject: int | None  # None: unbalanced, 1 to 12
    nominal: float
    cv_plus: float  # measured coverage of the subject-weighted CV+ interval
    naive: float  # measured coverage of the old naive interval
    mean_width: float  # mean CV+ interval width
    n_replicates: int
    n_test: int


def _ridge(X: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    design = np.column_stack([np.ones(len(X)), X])
    penalty = alpha * np.eye(design.shape[1])
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(design.T @ design + penalty, design.T @ y)


def _apply(coef: np.ndarray, X: np.ndarray) -> np.ndarray:
    return coef[0] + X @ coef[1:]


def _cohort(rng, n_subjects: int, sessions: int | None, beta: np.ndarray, effect_sd: float, session_sd: float):
    """`sessions` per subject; None: an unbalanced cohort, 1 to 12 sessions, where subjects seen often are the
    well-predicted ones (random effect SD / 3) -- per-session residuals then over-weight easy subjects."""
    counts = np.full(n_subjects, sessions) if sessions else rng.integers(1, 13, size=n_subjects)
    effect_scale = np.ones(n_subjects) if sessions else np.where(counts > 6, 1 / 3, 1.0)
    traits = rng.normal(size=(n_subjects, len(beta)))
    labels = traits @ beta + rng.normal(scale=effect_sd, size=n_subjects) * effect_scale
    X = np.repeat(traits, counts, axis=0) + rng.normal(scale=session_sd, size=(int(counts.sum()), len(beta)))
    return X, np.repeat(labels, counts), np.repeat(np.arange(n_subjects), counts)


def measure_coverage(sessions_per_subject: int | None, n_subjects: int = 40, n_folds: int = 5, coverage: float = 0.9,
                     n_replicates: int = 200, n_test: int = 100, seed: int = 0) -> CoverageResult:
    """Empirical coverage over `n_replicates` training cohorts, each tested on `n_test` new subjects (one session
    each; in the unbalanced cohort, a new subject's random effect is drawn as the cohort's subjects' are)."""
    rng = np.random.default_rng(seed)
    beta = np.array([2.0, -1.5, 1.0, 0.0, 0.0])
    hits_cv_plus = hits_naive = 0
    widths = []
    for _ in range(n_replicates):
        X, y, groups = _cohort(rng, n_subjects, sessions_per_subject, beta, effect_sd=2.0, session_sd=0.7)
        fold_of_subject = rng.permutation(np.arange(n_subjects) % n_folds)
        fold = fold_of_subject[groups]
        models = [_ridge(X[fold != k], y[fold != k]) for k in range(n_folds)]
        oof = np.empty(len(y))
        for k, coef in enumerate(models):
            oof[fold == k] = _apply(coef, X[fold == k])
        calibration = Calibration.from_out_of_fold(y, oof, fold, groups.astype(str), coverage)
        refit = _ridge(X, y)
        X_new, y_new, test_groups = _cohort(rng, n_test, sessions_per_subject, beta, effect_sd=2.0, session_sd=0.7)
        first = np.r_[True, test_groups[1:] != test_groups[:-1]]  # one session per new subject
        X_new, y_new = X_new[first], y_new[first]
        fold_predictions = np.column_stack([_apply(coef, X_new) for coef in models])
        for row in range(n_test):
            lower, upper = calibration.cv_plus(fold_predictions[row])
            hits_cv_plus += lower <= y_new[row] <= upper
            widths.append(upper - lower)
        halfwidth = naive_halfwidth(y - oof, coverage)
        hits_naive += int(np.sum(np.abs(y_new - _apply(refit, X_new)) <= halfwidth))
    total = n_replicates * n_test
    return CoverageResult(sessions_per_subject, coverage, hits_cv_plus / total, hits_naive / total,
                          float(np.mean(widths)), n_replicates, n_test)
