"""Model pipeline, subject-grouped folds, metrics with bootstrap intervals, cross-validation and intervals."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fervideo.errors import InvalidArgumentError
from fervideo.phq.bands import CUTOFF, DEFAULT_COVERAGE, INSTRUMENT_MAX, MODELS
from fervideo.phq.dataset import Dataset

log = logging.getLogger(__name__)

# ================================================================================== model and folds
def make_pipeline(model: str = "ridge", alpha: float = 10.0):
    """Median imputation -> standard scaling -> regressor (ridge by default; svr; gbr)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    regressors = {
        "ridge": lambda: Ridge(alpha=alpha),
        "svr": lambda: SVR(kernel="rbf", C=10.0, epsilon=1.0, gamma="scale"),
        "gbr": lambda: GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05, random_state=0),
    }
    if model not in regressors:
        raise InvalidArgumentError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler()), ("regress", regressors[model]())])


def check_no_subject_leak(groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    """Raise if any subject has sessions on both sides of a fold (a bug, never a user error)."""
    shared = set(groups[train]) & set(groups[test])
    if shared:
        raise RuntimeError(f"subject leak across a fold: {sorted(shared)[:5]}")


def subject_folds(groups: np.ndarray, cv: str = "subject-kfold", n_splits: int = 5,
                  held_out: set[str] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs grouped by subject; every fold is checked for leaks before it is yielded."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    index = np.arange(len(groups))
    if cv == "split":
        test = np.isin(groups, sorted(held_out or ()))
        if not test.any() or test.all():
            raise InvalidArgumentError("the split file must hold out some, but not all, labelled subjects")
        splits = [(index[~test], index[test])]
    elif cv == "loso":
        splits = LeaveOneGroupOut().split(index, groups=groups)
    elif cv == "subject-kfold":
        n_subjects = len(set(groups))
        if n_subjects < 2:
            raise InvalidArgumentError("cross-validation needs at least 2 labelled subjects")
        splits = GroupKFold(n_splits=min(n_splits, n_subjects)).split(index, groups=groups)
    else:
        raise InvalidArgumentError(f"--cv must be subject-kfold, loso or split, got {cv!r}")
    for train, test in splits:
        check_no_subject_leak(groups, train, test)
        yield train, test


# ============================================================================================ metrics
def ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Lin's concordance correlation coefficient."""
    if len(y) < 2:
        return float("nan")
    cov = np.mean((y - y.mean()) * (p - p.mean()))
    denominator = y.var() + p.var() + (y.mean() - p.mean()) ** 2
    return float(2 * cov / denominator) if denominator > 0 else float("nan")


def pearson(y: np.ndarray, p: np.ndarray) -> float:
    if len(y) < 2 or np.std(y) == 0 or np.std(p) == 0:
        return float("nan")
    return float(np.corrcoef(y, p)[0, 1])


def f1_at_cutoff(y: np.ndarray, p: np.ndarray, cutoff: float = CUTOFF) -> float:
    truth, guess = y >= cutoff, p >= cutoff
    tp = np.sum(truth & guess)
    denominator = 2 * tp + np.sum(truth & ~guess) + np.sum(~truth & guess)
    return float(2 * tp / denominator) if denominator else float("nan")


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": lambda y, p: float(np.mean(np.abs(y - p))),
    "rmse": lambda y, p: float(np.sqrt(np.mean((y - p) ** 2))),
    "ccc": ccc,
    "pearson_r": pearson,
    "f1_at_10": f1_at_cutoff,
}


def metric_report(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """Each metric with a 95% percentile interval from a subject-clustered bootstrap."""
    rng = np.random.default_rng(seed)
    subjects = np.unique(groups)
    members = {s: np.flatnonzero(groups == s) for s in subjects}
    samples = {name: [] for name in METRICS}
    for _ in range(n_boot):
        index = np.concatenate([members[s] for s in rng.choice(subjects, size=len(subjects), replace=True)])
        for name, fn in METRICS.items():
            samples[name].append(fn(y[index], p[index]))
    report = {}
    for name, fn in METRICS.items():
        values = np.array(samples[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        low, high = (np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan))
        report[name] = {"value": fn(y, p), "ci_low": float(low), "ci_high": float(high)}
    return report


def conformal_halfwidth(residuals: np.ndarray, coverage: float = DEFAULT_COVERAGE) -> float:
    """Split-conformal quantile of |residual|: the ceil((n+1) * coverage)-th smallest (inf if too few)."""
    scores = np.sort(np.abs(residuals))
    rank = math.ceil((len(scores) + 1) * coverage)
    return float(scores[rank - 1]) if 0 < rank <= len(scores) else float("inf")


@dataclass
class Evaluation:
    cv: str
    predictions: np.ndarray  # out-of-fold, per session
    baseline: np.ndarray  # training-fold mean, per session
    model_metrics: dict
    baseline_metrics: dict
    n_subjects: int
    n_sessions: int
    n_folds: int

    def as_json(self) -> dict:
        return {"cv": self.cv, "model": self.model_metrics, "mean_baseline": self.baseline_metrics,
                "n_subjects": self.n_subjects, "n_sessions": self.n_sessions, "n_folds": self.n_folds,
                "unit": "session (bootstrap resamples subjects)"}


def cross_validate(data: Dataset, model: str = "ridge", cv: str = "subject-kfold", n_splits: int = 5,
                   held_out: set[str] | None = None, alpha: float = 10.0, n_boot: int = 1000) -> Evaluation:
    """Out-of-fold predictions of the model and of the mean predictor, with metrics and bootstrap CIs."""
    predictions = np.full(len(data.y), np.nan)
    baseline = np.full(len(data.y), np.nan)
    n_folds = 0
    for train, test in subject_folds(data.groups, cv, n_splits, held_out):
        fitted = make_pipeline(model, alpha).fit(data.X[train], data.y[train])
        predictions[test] = fitted.predict(data.X[test])
        baseline[test] = data.y[train].mean()
        n_folds += 1
    scored = np.isfinite(predictions)
    y, groups = data.y[scored], data.groups[scored]
    top = INSTRUMENT_MAX[data.instrument]
    clipped = np.clip(predictions[scored], 0, top)
    return Evaluation(cv, predictions, baseline, metric_report(y, clipped, groups, n_boot),
                      metric_report(y, baseline[scored], groups, n_boot), len(set(groups)), int(scored.sum()),
                      n_folds)
