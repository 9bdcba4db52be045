"""Training a PHQ head: subject-grouped cross-validation, the head's standing against the mean predictor,
the calibration its intervals need, and one phq_heads row holding everything (see head_store)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from fervideo import __version__
from fervideo.errors import InvalidArgumentError
from fervideo.phq.bands import (
    CV_PLUS,
    DEFAULT_COVERAGE,
    DEFAULT_MAX_IMPUTED_FRACTION,
    HEAD_FORMAT,
    PHQ_CAVEAT,
    SPLIT_CONFORMAL,
)
from fervideo.phq.dataset import Dataset, build_dataset
from fervideo.phq.evaluation import Evaluation, cross_validate, make_pipeline
from fervideo.phq.head_store import PhqHeadModel, clean_json, get_head, store_head
from fervideo.phq.interval import Calibration, weighted_upper_quantile
from fervideo.phq.labels import import_labels
from fervideo.phq.matching import DEFAULT_LABEL_WINDOW_DAYS
from fervideo.phq.regressor import model_arrays
from fervideo.phq.splits import held_out_subjects

log = logging.getLogger(__name__)

OPENFACE_COLUMNS_KEY = "openface_columns_sha256"  # in sessions.detector_params (set by the OpenFace import)


@dataclass
class TrainResult:
    head_id: int
    model: PhqHeadModel
    evaluation: Evaluation


@dataclass(frozen=True)
class InputProvenance:
    """What every session a head scores must share with the sessions it was trained on."""

    sample_fps: float | None
    feature_version: str | None
    openface_columns_sha256: str | None


def _one_value(values: set, what: str, hint: str):
    if len(values) > 1:
        shown = ", ".join(sorted(map(str, values)))
        raise InvalidArgumentError(f"the labelled sessions mix {what} ({shown}); a head needs one: {hint}")
    return next(iter(values), None)


def training_provenance(db_factory, session_ids: np.ndarray) -> InputProvenance:
    """The sampling rate, feature-definition version and OpenFace column set of the training sessions,
    refusing a mixture: a head trained across them would score sessions on inconsistent features."""
    from fervideo.store import SessionFeatures, VideoSession

    ids = [int(i) for i in session_ids]
    with db_factory() as db:
        sessions = list(db.scalars(select(VideoSession).where(VideoSession.id.in_(ids))))
        versions = set(db.scalars(select(SessionFeatures.feature_version).where(SessionFeatures.session_id.in_(ids))))
    rates = {round(float(s.sample_fps), 6) for s in sessions if s.sample_fps is not None}
    columns = {(s.detector_params or {}).get(OPENFACE_COLUMNS_KEY) for s in sessions}
    return InputProvenance(
        _one_value(rates, "sampling rates (fps)", "process them at one --fps"),
        _one_value(versions, "feature-definition versions", "run `fervideo features --recompute --all` first"),
        _one_value(columns, "OpenFace column sets", "import them with one OpenFace version or train one head each"),
    )


def _fold_of_subject(data: Dataset, evaluation: Evaluation) -> dict[str, int]:
    """Subject code -> the fold whose model never saw it (-1: in the training part of a --cv split)."""
    return {str(code): int(fold) for code, fold in zip(data.groups, evaluation.fold, strict=True)}


def _head_arrays(final, fold_models: list, model: str, calibration: Calibration, data: Dataset,
                 evaluation: Evaluation) -> dict[str, np.ndarray]:
    arrays = {f"final.{k}": v for k, v in model_arrays(final, model).items()}
    for k, fitted in enumerate(fold_models):
        arrays |= {f"fold{k}.{name}": v for name, v in model_arrays(fitted, model).items()}
    arrays |= {"calibration.fold": calibration.fold, "calibration.residual": calibration.residual,
               "calibration.weight": calibration.weight, "calibration.group": calibration.group.astype(str),
               "oof.session_id": data.session_ids.astype(np.int64), "oof.prediction": evaluation.predictions,
               "oof.fold": evaluation.fold}
    return arrays


def _interval_config(cv: str, coverage: float, calibration: Calibration, n_folds: int) -> dict:
    return {
        "method": SPLIT_CONFORMAL if cv == "split" else CV_PLUS, "coverage": coverage, "n_folds": n_folds,
        "n_calibration_subjects": calibration.n_subjects, "n_calibration_sessions": len(calibration.residual),
        "typical_halfwidth": weighted_upper_quantile(calibration.residual, calibration.weight, coverage),
        "empirical_cv_coverage": calibration.empirical_coverage(),
        "empirical_cv_coverage_method": "out-of-fold prediction +/- the residual quantile of the other subjects; "
                                        "share of sessions inside, each subject weighing 1",
    }


def _check_name(db_factory, name: str, overwrite: bool) -> None:
    from fervideo.store import PhqHead

    if not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 128:
        raise InvalidArgumentError(f"--name {name!r} must be a plain name (no slashes, at most 128 characters)")
    with db_factory() as db:
        if db.scalar(select(PhqHead.id).where(PhqHead.name == name)) is not None and not overwrite:
            raise InvalidArgumentError(f"a PHQ head named {name!r} exists; pick another --name or use --overwrite")


def train_head(db_factory, name: str, model: str = "ridge", cv: str = "subject-kfold",
               split_file: Path | None = None, instrument: str = "PHQ-8", classifier: str | None = None,
               labels_file: Path | None = None, alpha: float = 10.0, coverage: float = DEFAULT_COVERAGE,
               include_au: bool = True, n_boot: int = 1000, overwrite: bool = False,
               label_window_days: int = DEFAULT_LABEL_WINDOW_DAYS, ignore_unmatched: bool = False,
               max_imputed_fraction: float = DEFAULT_MAX_IMPUTED_FRACTION) -> TrainResult:
    """Evaluate by subject-grouped CV, fit the final model, and store the head in the database.

    The final model is the refit on every subject (subject-kfold, loso) or, with --cv split, the model of
    the training part: split-conformal residuals are only valid for the model that never saw them.
    """
    if not 0 < coverage < 1:
        raise InvalidArgumentError(f"--coverage must be between 0 and 1, got {coverage}")
    if not 0 <= max_imputed_fraction <= 1:
        raise InvalidArgumentError(f"--max-imputed-fraction must be between 0 and 1, got {max_imputed_fraction}")
    _check_name(db_factory, name, overwrite)
    if labels_file is not None:
        import_labels(db_factory, labels_file)
    source_file = str(Path(labels_file).resolve()) if labels_file is not None else None
    data = build_dataset(db_factory, instrument, classifier, source_file, include_au, label_window_days)
    if cv == "split" and split_file is None:
        raise InvalidArgumentError("--cv split needs a split FILE")
    held_out = held_out_subjects(split_file, data.groups, ignore_unmatched) if cv == "split" else None
    provenance = training_provenance(db_factory, data.session_ids)
    evaluation = cross_validate(data, model, cv, 5, held_out, alpha, n_boot)
    calibration = Calibration.from_out_of_fold(data.y, evaluation.predictions, evaluation.fold, data.groups, coverage)
    final = evaluation.fold_models[0] if cv == "split" else make_pipeline(model, alpha).fit(data.X, data.y)
    if not evaluation.beats_baseline:
        log.warning("PHQ head %s does not beat the mean predictor on MAE", name)
    config = clean_json({
        "format": HEAD_FORMAT, "name": name, "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "package_version": __version__, "instrument": instrument, "feature_source": data.source,
        "classifier": {"name": data.classifier_name, "sha256": data.classifier_sha256},
        "sample_fps": provenance.sample_fps, "feature_version": provenance.feature_version,
        "openface_columns_sha256": provenance.openface_columns_sha256,
        "model": {"kind": model, "alpha": alpha if model == "ridge" else None,
                  "pipeline": "median imputation -> standard scaling -> " + model,
                  "final": "training part of the split" if cv == "split" else "refit on every subject"},
        "features": data.feature_names, "max_imputed_fraction": max_imputed_fraction,
        "training": {"n_subjects": len(set(data.groups)), "n_sessions": len(data.y),
                     "label_mean": float(data.y.mean()), "label_sd": float(data.y.std()),
                     "label_min": float(data.y.min()), "label_max": float(data.y.max()),
                     "skipped_sessions": data.skipped, "labels_file": source_file,
                     "label_window_days": data.label_window_days,
                     "undated_labels_set_aside": data.undated_labels_set_aside},
        "subject_folds": _fold_of_subject(data, evaluation),
        "metrics": evaluation.as_json(), "beats_baseline": evaluation.beats_baseline,
        "interval": _interval_config(cv, coverage, calibration, len(evaluation.fold_models)),
        "caveat": PHQ_CAVEAT,
    })
    arrays = _head_arrays(final, evaluation.fold_models, model, calibration, data, evaluation)
    head_id = store_head(db_factory, config, arrays, overwrite)
    return TrainResult(head_id, get_head(db_factory, name)[1], evaluation)
