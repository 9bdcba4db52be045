"""The cohort table: one row per finished session (features, the latest PHQ estimate, the recorded PHQ
and provenance), the table statisticians export as CSV or Parquet and the dashboard's Cohort page shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from fervideo.export.summary import DbLike, feature_definitions, with_session
from fervideo.phq.matching import LabelMatch, recorded_labels
from fervideo.store.models import PhqHead, PhqPrediction, SessionFeatures, SessionStatus, Subject, VideoSession
from fervideo.utils import id_chunks

COHORT_LEADING_COLUMNS: tuple[str, ...] = (
    "session_id", "subject", "recorded_at", "duration_s", "sample_fps", "sampled_frames", "face_frames",
    "face_coverage",
)
COHORT_TRAILING_COLUMNS: tuple[str, ...] = (
    "features_reliable", "reliability_notes", "feature_version",
    "phq_estimate", "phq_lower", "phq_upper", "phq_coverage", "phq_band", "phq_head", "phq_instrument",
    "phq_imputed_features", "phq_in_sample", "phq_head_beats_baseline",
    "phq_recorded_total", "phq_recorded_instrument", "phq_recorded_at",
    "package_version", "classifier_name", "classifier_sha256", "detector_name", "settings_key", "video_sha256",
    "device", "processed_at",
)
FEATURE_PREFIX = "feat_"


def _select_done_sessions(session: Session, session_ids: Sequence[int] | None, subject: str | None):
    statement = (
        select(VideoSession, Subject.code).join(Subject)
        .where(VideoSession.status == SessionStatus.DONE).order_by(VideoSession.id)
    )
    if subject is not None:
        statement = statement.where(Subject.code == subject)
    if session_ids is None:
        return list(session.execute(statement).all())
    rows = []
    for chunk in id_chunks(list(session_ids)):
        rows.extend(session.execute(statement.where(VideoSession.id.in_(chunk))).all())
    return sorted(rows, key=lambda pair: pair[0].id)


def _by_session(session: Session, statement, key, ids: list[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    for chunk in id_chunks(ids):
        for item in session.execute(statement.where(key.in_(chunk))).all():
            found[item[0]] = item[1:] if len(item) > 2 else item[1]
    return found


def _latest_predictions(session: Session, ids: list[int]) -> dict[int, tuple[PhqPrediction, PhqHead]]:
    statement = (
        select(PhqPrediction.session_id, PhqPrediction, PhqHead).join(PhqHead, PhqPrediction.head_id == PhqHead.id)
        .order_by(PhqPrediction.created_at, PhqPrediction.id)  # later rows overwrite earlier: latest wins
    )
    return _by_session(session, statement, PhqPrediction.session_id, ids)


def _latest_labels(session: Session, ids: list[int]) -> dict[int, LabelMatch]:
    """Each session's recorded label by fervideo.phq.matching's rule (subject-level labels included)."""
    return recorded_labels(session, ids)


def _feature_order(names: set[str]) -> list[str]:
    declared = [name for name in feature_definitions() if name in names]
    return declared + sorted(names - set(declared))


def _cohort_row(row: VideoSession, code: str, features, found, label) -> dict[str, Any]:
    prediction, head = found if found else (None, None)
    sampled = row.sampled_frames or 0
    record = {
        "session_id": row.id, "subject": code, "recorded_at": row.recorded_at, "duration_s": row.duration_s,
        "sample_fps": row.sample_fps, "sampled_frames": row.sampled_frames, "face_frames": row.face_frames,
        "face_coverage": (row.face_frames or 0) / sampled if sampled else None,
        "features_reliable": None if features is None else bool(features.reliable),
        "reliability_notes": None if features is None else "; ".join(map(str, features.reliability_notes or [])),
        "feature_version": None if features is None else features.feature_version,
        "phq_estimate": prediction.estimate if prediction else None,
        "phq_lower": prediction.lower if prediction else None,
        "phq_upper": prediction.upper if prediction else None,
        "phq_coverage": prediction.coverage if prediction else None,
        "phq_band": prediction.band if prediction else None,
        "phq_head": head.name if head else None,
        "phq_instrument": head.instrument if head else None,
        "phq_imputed_features": prediction.n_imputed if prediction else None,
        "phq_in_sample": prediction.in_sample if prediction else None,
        "phq_head_beats_baseline": head.beats_baseline if head else None,
        "phq_recorded_total": label.total if label else None,
        "phq_recorded_instrument": label.instrument if label else None,
        "phq_recorded_at": label.administered_at if label else None,
        "package_version": row.package_version, "classifier_name": row.classifier_name,
        "classifier_sha256": row.classifier_sha256, "detector_name": row.detector_name,
        "settings_key": row.settings_key, "video_sha256": row.video_sha256, "device": row.device,
        "processed_at": row.finished_at,
    }
    for name, value in ((features.values or {}) if features is not None else {}).items():
        record[FEATURE_PREFIX + name] = value
    return record


COHORT_DTYPES: dict[str, str] = {
    "session_id": "int64", "subject": "string", "duration_s": "float64", "sample_fps": "float64",
    "sampled_frames": "Int64", "face_frames": "Int64", "face_coverage": "float64", "features_reliable": "boolean",
    "reliability_notes": "string", "feature_version": "string", "phq_estimate": "float64", "phq_lower": "float64",
    "phq_upper": "float64", "phq_coverage": "float64", "phq_band": "string", "phq_head": "string",
    "phq_instrument": "string", "phq_imputed_features": "Int64", "phq_in_sample": "boolean",
    "phq_head_beats_baseline": "boolean", "phq_recorded_total": "Int64", "phq_recorded_instrument": "string",
    "package_version": "string", "classifier_name": "string", "classifier_sha256": "string",
    "detector_name": "string", "settings_key": "string", "video_sha256": "string", "device": "string",
}


def cohort_table(db: DbLike, session_ids: Sequence[int] | None = None, subject: str | None = None) -> pd.DataFrame:
    """One row per finished session: features (prefixed `feat_`), the latest PHQ estimate with its
    interval and band, the recorded PHQ that belongs to the session (fervideo.phq.matching), and provenance.

    `session_ids=None` means every finished session (of `subject`, if given). Sessions that are not
    done are left out. Feature columns follow fervideo.features' declared order, then alphabetical.
    """
    with with_session(db) as session:
        pairs = _select_done_sessions(session, session_ids, subject)
        ids = [row.id for row, _code in pairs]
        features = _by_session(session, select(SessionFeatures.session_id, SessionFeatures),
                               SessionFeatures.session_id, ids)
        predictions = _latest_predictions(session, ids)
        labels = _latest_labels(session, ids)
        records = [_cohort_row(row, code, features.get(row.id), predictions.get(row.id), labels.get(row.id))
                   for row, code in pairs]
    feature_names = {key for record in records for key in record if key.startswith(FEATURE_PREFIX)}
    columns = [*COHORT_LEADING_COLUMNS,
               *(FEATURE_PREFIX + name for name in _feature_order({n[len(FEATURE_PREFIX):] for n in feature_names})),
               *COHORT_TRAILING_COLUMNS]
    table = pd.DataFrame.from_records(records, columns=columns)
    dtypes = {name: kind for name, kind in COHORT_DTYPES.items() if name in table}
    dtypes.update({name: "float64" for name in feature_names})
    table = table.astype(dtypes)
    for name in ("recorded_at", "phq_recorded_at", "processed_at"):
        table[name] = pd.to_datetime(table[name])
    return table
