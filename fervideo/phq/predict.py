"""PHQ estimates for one session: every refusal first, then the estimate with its interval, band and the
caveats that travel with it (imputed features, in-sample or not, the head's standing), stored."""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from fervideo.errors import NotFoundError, PhqRefusalError
from fervideo.features import store_session_features
from fervideo.phq.bands import (
    HEAD_FORMAT,
    IN_SAMPLE_NO_OOF_NOTE,
    IN_SAMPLE_NOTE,
    INSTRUMENT_MAX,
    ITEM9_NOTE,
    PHQ_CAVEAT,
    WEAK_HEAD_WARNING,
    severity_band,
)
from fervideo.phq.head_store import PhqHeadModel, get_head
from fervideo.phq.interval import bound_to_instrument
from fervideo.phq.train import OPENFACE_COLUMNS_KEY

log = logging.getLogger(__name__)


@dataclass
class PhqEstimate:
    session_id: int
    head: str
    instrument: str
    estimate: float
    lower: float
    upper: float
    coverage: float
    band: str
    interval_method: str = ""
    n_imputed: int = 0
    imputed_features: list[str] = field(default_factory=list)
    n_features: int = 0
    in_sample: bool = False
    out_of_fold: bool = True  # from a model that never saw this subject
    in_sample_estimate: float | None = None  # the final model's estimate, when the out-of-fold one is shown
    beats_baseline: bool = True
    warnings: list[str] = field(default_factory=list)
    caveat: str = PHQ_CAVEAT


def _refuse_mismatch(session, head: PhqHeadModel, features) -> None:
    """Sessions the head cannot score like its training sessions: another classifier, source, sampling
    rate, feature-definition version or OpenFace column set; unfinished or unreliable sessions."""
    name, config = head.name, head.config
    trained = config["classifier"]
    if (session.classifier_name, session.classifier_sha256) != (trained["name"], trained["sha256"]):
        raise PhqRefusalError(
            f"session {session.id} was processed by {session.classifier_name} ({session.classifier_sha256[:12]}), "
            f"but head {name!r} was trained on {trained['name']} ({trained['sha256'][:12]}); "
            "use a head trained on the same classifier")
    if session.source != config["feature_source"]:
        raise PhqRefusalError(f"session {session.id} comes from {session.source} but head {name!r} "
                              f"was trained on {config['feature_source']} sessions")
    fps = config.get("sample_fps")
    if fps is not None and not math.isclose(float(session.sample_fps), float(fps), rel_tol=1e-6):
        raise PhqRefusalError(f"session {session.id} was sampled at {session.sample_fps:g} fps but head {name!r} "
                              f"was trained on {fps:g} fps sessions; reprocess it with --fps {fps:g}")
    columns = (session.detector_params or {}).get(OPENFACE_COLUMNS_KEY)
    if columns != config.get("openface_columns_sha256"):
        raise PhqRefusalError(f"session {session.id} has another OpenFace column set than head {name!r} was "
                              "trained on; use a head trained on the same OpenFace version")
    if features.feature_version != config.get("feature_version"):
        raise PhqRefusalError(
            f"session {session.id} has features of definition version {features.feature_version} but head "
            f"{name!r} was trained on version {config.get('feature_version')}; recompute the session's features "
            "(`fervideo features --recompute`) or retrain the head")
    if not features.reliable:
        raise PhqRefusalError(f"session {session.id} is unreliable for a PHQ estimate: "
                              + "; ".join(features.reliability_notes))


def refuse_unusable_head(head: PhqHeadModel, allow_weak_head: bool = False) -> None:
    """A head no session may use: trained by an older fervideo, or (unless allowed) not beating the mean."""
    if head.format != HEAD_FORMAT:
        raise PhqRefusalError(f"head {head.name!r} was trained by an older fervideo (format {head.format}: a naive "
                              "interval, no baseline check); retrain it with `fervideo phq train`")
    if not head.config.get("beats_baseline") and not allow_weak_head:
        raise PhqRefusalError(f"head {head.name!r} does not beat guessing the cohort mean (see `fervideo phq "
                              f"evaluate {head.name}`); use --allow-weak-head to show its estimates with a warning")


def imputed_feature_names(values: dict, names: list[str]) -> list[str]:
    """The head's features this session lacks (null or NaN): the head fills them with training medians."""
    def missing(value) -> bool:
        return value is None or (isinstance(value, float) and math.isnan(value))

    return [name for name in names if missing(values.get(name))]


def _refuse_imputation(session_id: int, head: PhqHeadModel, imputed: list[str]) -> None:
    limit = float(head.config.get("max_imputed_fraction", 0.2))
    if len(imputed) > limit * len(head.features):
        shown = ", ".join(imputed[:8]) + (", ..." if len(imputed) > 8 else "")
        raise PhqRefusalError(
            f"session {session_id} lacks {len(imputed)} of the head's {len(head.features)} features ({shown}); "
            f"more than {limit:.0%} would be filled with training medians")


def _subject_code(db, session) -> str:
    from fervideo.store import Subject

    return db.scalar(select(Subject.code).where(Subject.id == session.subject_id))


def _estimate_and_interval(head: PhqHeadModel, x: np.ndarray, subject: str) -> tuple[float, float, float, dict]:
    """Raw estimate and interval, and what they are: out-of-sample (final model + CV+), in-sample with the
    out-of-fold model (fold model without this subject +/- the other subjects' residual quantile), or
    in-sample without one (--cv split training part)."""
    fold = head.config.get("subject_folds", {}).get(subject)
    final = float(head.predict(x)[0])
    calibration = head.calibration
    if fold is None or fold < 0:
        lower, upper = calibration.cv_plus(head.fold_predictions(x)[0])
        kind = {"in_sample": fold is not None, "out_of_fold": fold is None, "in_sample_estimate": None}
        return final, lower, upper, kind
    raw = float(head.fold_predict(x, fold)[0])
    halfwidth = calibration.leave_subject_out_halfwidth(subject)
    return raw, raw - halfwidth, raw + halfwidth, {"in_sample": True, "out_of_fold": True,
                                                   "in_sample_estimate": final}


def predict_session(db_factory, session_id: int, head_name: str, store: bool = True,
                    allow_weak_head: bool = False) -> PhqEstimate:
    """Estimate one session's PHQ total with interval and band, or refuse with the reason."""
    from fervideo.store import SessionStatus, VideoSession

    head_id, head = get_head(db_factory, head_name)
    refuse_unusable_head(head, allow_weak_head)
    with db_factory() as db:
        session = db.get(VideoSession, session_id)
        if session is None:
            raise NotFoundError(f"no session {session_id}; see `fervideo sessions`")
        subject = _subject_code(db, session)
    if session.status != SessionStatus.DONE:
        raise PhqRefusalError(f"session {session_id} is {session.status}, not done")
    features = store_session_features(db_factory, session_id)
    _refuse_mismatch(session, head, features)
    imputed = imputed_feature_names(features.values, head.features)
    _refuse_imputation(session_id, head, imputed)
    beats = bool(head.config.get("beats_baseline"))
    x = np.array([[np.nan if features.values.get(n) is None else features.values[n] for n in head.features]],
                 dtype=np.float64)
    raw, lower, upper, kind = _estimate_and_interval(head, x, subject)
    top = INSTRUMENT_MAX[head.instrument]
    bounded = bound_to_instrument(raw, lower, upper, top)
    warnings = ([] if beats else [WEAK_HEAD_WARNING]) + (
        [IN_SAMPLE_NOTE if kind["out_of_fold"] else IN_SAMPLE_NO_OOF_NOTE] if kind["in_sample"] else [])
    in_sample_estimate = kind["in_sample_estimate"]
    result = PhqEstimate(
        session_id, head_name, head.instrument, bounded.estimate, bounded.lower, bounded.upper,
        float(head.config["interval"]["coverage"]), severity_band(bounded.estimate),
        head.config["interval"]["method"], len(imputed), imputed, len(head.features), kind["in_sample"],
        kind["out_of_fold"], None if in_sample_estimate is None else min(max(in_sample_estimate, 0.0), top),
        beats, warnings)
    if store:
        _store_prediction(db_factory, head_id, result)
    return result


def _store_prediction(db_factory, head_id: int, result: PhqEstimate) -> None:
    from fervideo.store import PhqPrediction

    with db_factory.begin() as db:
        row = db.scalar(select(PhqPrediction).where(PhqPrediction.session_id == result.session_id,
                                                     PhqPrediction.head_id == head_id))
        if row is None:
            row = PhqPrediction(session_id=result.session_id, head_id=head_id)
            db.add(row)
        row.estimate, row.lower, row.upper = result.estimate, result.lower, result.upper
        row.coverage, row.band, row.interval_method = result.coverage, result.band, result.interval_method
        row.n_imputed, row.imputed_features, row.n_features = result.n_imputed, result.imputed_features, \
            result.n_features
        row.in_sample, row.out_of_fold = result.in_sample, result.out_of_fold
        row.in_sample_estimate = result.in_sample_estimate
        row.created_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)


def head_report(config: dict) -> dict:
    """The evaluation report stored with a head (metrics with CIs, baseline standing, interval, caveat)."""
    interval = config.get("interval") or {**(config.get("conformal") or {}), "method": "naive residual quantile "
                                          "(format-1 head: retrain it)"}
    return {"name": config["name"], "instrument": config["instrument"], "model": config["model"]["kind"],
            "classifier": config["classifier"], "feature_source": config["feature_source"],
            "metrics": config["metrics"], "interval": interval, "training": config["training"],
            "beats_baseline": config.get("beats_baseline"), "sample_fps": config.get("sample_fps"),
            "feature_version": config.get("feature_version"),
            "max_imputed_fraction": config.get("max_imputed_fraction"), "caveat": PHQ_CAVEAT, "item9": ITEM9_NOTE}


OLD_HEAD_NOTE = ("This head was trained before fervideo compared heads with the mean predictor; retrain it before "
                 "trusting its estimates.")
OLD_PREDICTION_NOTE = ("This estimate was made before fervideo counted imputed features and in-sample use; "
                       "predict it again.")


def prediction_warnings(prediction, head) -> list[str]:
    """What must be shown next to a stored estimate (a phq_predictions row and its phq_heads row): the head's
    standing against the mean predictor, in-sample use, and imputed features. Every view uses this."""
    warnings = []
    if head.beats_baseline is None:
        warnings.append(OLD_HEAD_NOTE)
    elif not head.beats_baseline:
        warnings.append(WEAK_HEAD_WARNING)
    if prediction.n_imputed is None:
        warnings.append(OLD_PREDICTION_NOTE)
    elif prediction.n_imputed:
        warnings.append(f"{prediction.n_imputed} of the head's {prediction.n_features} features were missing for "
                        "this session and filled with the training medians.")
    if prediction.in_sample:
        warnings.append(IN_SAMPLE_NOTE if prediction.out_of_fold else IN_SAMPLE_NO_OOF_NOTE)
    return warnings
