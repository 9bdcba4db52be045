"""Model pipeline, subject-grouped folds, metrics with bootstrap intervals, cross-validation and intervals."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fervideo.errors import InvalidArgumentError
from fervideo.phq.bands import CUTOFF, INSTRUMENT_MAX, MODELS
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
    """F1 of screening at PHQ >= cutoff, the estimate rounded half up as severity bands are (`round_score`)."""
    truth, guess = np.floor(y + 0.5) >= cutoff, np.floor(p + 0.5) >= cutoff
    tp = np.sum(truth & guess)
    denominator = 2 * tp + np.sum(truth & ~guess) + np.sum(~truth & guess)
    return float(2 * tp / denominator) if denominator else float("nan")


def mean_absolute_error(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(y - p)))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": mean_absolute_error,
    "rmse": lambda y, p: float(np.sqrt(np.mean((y - p) ** 2))),
    "ccc": ccc,
    "pearson_r": pearson,
    "f1_at_10": f1_at_cutoff,
}


def _subject_resamples(groups: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Session indices of `n_boot` bootstrap resamples of subjects (a subject's sessions move together)."""
    rng = np.random.default_rng(seed)
    subjects = np.unique(groups)
    members = {s: np.flatnonzero(groups == s) for s in subjects}
    for _ in range(n_boot):
        yield np.concatenate([members[s] for s in rng.choice(subjects, size=len(subjects), replace=True)])


def _percentile_interval(value: float, samples: list[float], n_boot: int) -> dict[str, float | int]:
    """The value, its 95% percentile interval, and how many resamples were dropped (metric undefined there)."""
    values = np.array(samples, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = np.percentile(finite, [2.5, 97.5]) if len(finite) else (np.nan, np.nan)
    return {"value": value, "ci_low": float(low), "ci_high": float(high), "n_boot": n_boot,
            "n_dropped": int(n_boot - len(finite))}


def metric_report(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """Each metric with a 95% percentile interval from a subject-clustered bootstrap, and the number of
    resamples dropped because the metric was undefined on them (e.g. F1 with no one above the cutoff)."""
    samples = {name: [] for name in METRICS}
    for index in _subject_resamples(groups, n_boot, seed):
        for name, fn in METRICS.items():
            samples[name].append(fn(y[index], p[index]))
    return {name: _percentile_interval(fn(y, p), samples[name], n_boot) for name, fn in METRICS.items()}


def compare_to_baseline(y: np.ndarray, p: np.ndarray, baseline: np.ndarray, groups: np.ndarray,
                        n_boot: int = 1000, seed: int = 1) -> dict:
    """MAE(model) - MAE(mean predictor) with a paired subject-level bootstrap interval. The head beats the
    baseline only when the whole 95% interval lies below 0; anything else is reported as not beating it."""
    samples = [mean_absolute_error(y[i], p[i]) - mean_absolute_error(y[i], baseline[i])
               for i in _subject_resamples(groups, n_boot, seed)]
    difference = _percentile_interval(mean_absolute_error(y, p) - mean_absolute_error(y, baseline), samples, n_boot)
    return {"mae_difference": difference, "beats_baseline": bool(difference["ci_high"] < 0),
            "rule": "beats the mean predictor when the 95% subject-bootstrap interval of MAE(model) - "
                    "MAE(mean) lies below 0"}


@dataclass
class Evaluation:
    cv: str
    predictions: np.ndarray  # out-of-fold, per session (NaN where no fold scored it: split training part)
    baseline: np.ndarray  # training-fold mean, per session
    model_metrics: dict
    baseline_metrics: dict
    n_subjects: int
    n_sessions: int
    n_folds: int
    fold: np.ndarray  # per session, the fold whose model never saw its subject (-1: none)
    fold_models: list  # fitted pipelines, one per fold
    comparison: dict  # compare_to_baseline()

    @property
    def beats_baseline(self) -> bool:
        return bool(self.comparison["beats_baseline"])

    def as_json(self) -> dict:
        return {"cv": self.cv, "model": self.model_metrics, "mean_baseline": self.baseline_metrics,
                "baseline_comparison": self.comparison,
                "n_subjects": self.n_subjects, "n_sessions": self.n_sessions, "n_folds": self.n_folds,
                "unit": "session (bootstrap resamples subjects)"}


def cross_validate(data: Dataset, model: str = "ridge", cv: str = "subject-kfold", n_splits: int = 5,
                   held_out: set[str] | None = None, alpha: float = 10.0, n_boot: int = 1000) -> Evaluation:
    """Out-of-fold predictions of the model and of the mean predictor, with metrics and bootstrap CIs, the
    head's standing against the mean predictor, and the fold models (CV+ needs them at prediction time)."""
    predictions = np.full(len(data.y), np.nan)
    baseline = np.full(len(data.y), np.nan)
    fold = np.full(len(data.y), -1, dtype=np.int64)
    fold_models = []
    for k, (train, test) in enumerate(subject_folds(data.groups, cv, n_splits, held_out)):
        fitted = make_pipeline(model, alpha).fit(data.X[train], data.y[train])
        predictions[test] = fitted.predict(data.X[test])
        baseline[test] = data.y[train].mean()
        fold[test] = k
        fold_models.append(fitted)
    scored = np.isfinite(predictions)
    y, groups = data.y[scored], data.groups[scored]
    clipped = np.clip(predictions[scored], 0, INSTRUMENT_MAX[data.instrument])
    return Evaluation(cv, predictions, baseline, metric_report(y, clipped, groups, n_boot),
                      metric_report(y, baseline[scored], groups, n_boot), len(set(groups)), int(scored.sum()),
                      len(fold_models), fold, fold_models,
                      compare_to_baseline(y, clipped, baseline[scored], groups, n_boot))
