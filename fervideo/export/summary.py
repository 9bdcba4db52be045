"""What an export says about a session: the JSON summary (schema v1) and the per-frame table (the
one-row-per-session cohort table is in cohort.py). Everything is read from the store; nothing is recomputed here
except descriptive data-quality numbers (face coverage, gaps) taken straight from the frames."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fervideo import __version__
from fervideo.errors import ExportError, NotFoundError
from fervideo.features import FEATURE_DEFINITIONS
from fervideo.labels import CANONICAL_LABELS
from fervideo.phq import ITEM9_NOTE, NOT_A_DIAGNOSIS, interval_note, prediction_warnings, severity_band
from fervideo.phq.matching import recorded_labels
from fervideo.store.models import (
    PhqHead,
    PhqPrediction,
    SessionFeatures,
    SessionStatus,
    VideoSession,
)
from fervideo.store.queries import frame_table

SCHEMA_VERSION = "1"
GAP_MIN_S = 1.0  # shorter face losses (a blink, a turn of the head) are not listed as gaps
MAX_LISTED_GAPS = 50

DbLike = Session | sessionmaker


def feature_definitions() -> dict[str, str]:
    """Feature name -> one-line meaning, from fervideo.features' registry, in its declared order."""
    return {name: definition.definition for name, definition in FEATURE_DEFINITIONS.items()}


def phq_caveats(coverage: float | None = None, method: str | None = None) -> list[str]:
    """The caveats shown with every PHQ estimate (summary, report, dashboard): an estimate, not a
    diagnosis; item 9 not assessed; and, given the interval's nominal coverage and method, what that interval
    means. Per-estimate warnings (weak head, imputed features, in-sample) come from `prediction_warnings`."""
    caveats = [NOT_A_DIAGNOSIS, ITEM9_NOTE]
    if coverage is not None:
        caveats.append(interval_note(coverage, method) if method else interval_note(coverage))
    return caveats


# ------------------------------------------------------------------------------------------- helpers
def _finite(value: Any) -> float | None:
    """A float for JSON: NaN and infinities become None (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def with_session(db: DbLike):
    """Accept a Session or a sessionmaker, so the dashboard and the CLI can pass what they hold."""
    if isinstance(db, Session):
        class _Borrowed:
            def __enter__(self) -> Session:
                return db

            def __exit__(self, *_exc) -> None:
                return None

        return _Borrowed()
    return db()


# ------------------------------------------------------------------------------------ per-frame table
def frames_table(db: DbLike, session_id: int) -> pd.DataFrame:
    """The per-frame table (DESIGN.md's contract plus the face-quality columns), with a session_id column."""
    with with_session(db) as session:
        table = frame_table(session, session_id, with_quality=True)
    table.insert(0, "session_id", np.int64(session_id))
    return table


# ------------------------------------------------------------------------------------- data quality
def face_gaps(frames: pd.DataFrame, min_gap_s: float = GAP_MIN_S) -> list[dict[str, float]]:
    """Runs of sampled frames without a face lasting at least `min_gap_s`.

    A gap starts at the first frame without a face and ends at the next frame with one (or one
    sampling interval after the last frame, when the recording ends without a face).
    """
    if frames.empty:
        return []
    found = frames["face_found"].to_numpy(dtype=bool)
    t = frames["t"].to_numpy(dtype=np.float64)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    edges = np.diff(np.concatenate(([0], (~found).astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    gaps = []
    for first, stop in zip(starts, stops, strict=True):
        end = t[stop] if stop < len(t) else t[-1] + step
        if end - t[first] >= min_gap_s:
            gaps.append({"start_s": float(t[first]), "end_s": float(end), "duration_s": float(end - t[first])})
    return gaps


def data_quality(frames: pd.DataFrame, features: SessionFeatures | None,
                 row: VideoSession | None = None) -> dict[str, Any]:
    found = frames["face_found"].to_numpy(dtype=bool) if len(frames) else np.zeros(0, dtype=bool)
    gaps = face_gaps(frames)
    longest = sorted(gaps, key=lambda gap: -gap["duration_s"])[:MAX_LISTED_GAPS]
    return {
        "sampled_frames": int(len(found)),
        "face_frames": int(found.sum()),
        "face_coverage": float(found.mean()) if len(found) else 0.0,
        "gap_min_s": GAP_MIN_S,
        "gap_count": len(gaps),
        "gap_total_s": float(sum(gap["duration_s"] for gap in gaps)),
        "longest_gap_s": float(longest[0]["duration_s"]) if longest else 0.0,
        "gaps": sorted(longest, key=lambda gap: gap["start_s"]),
        "reliable": None if features is None else bool(features.reliable),
        "reliability_notes": [] if features is None else [str(note) for note in features.reliability_notes or []],
        # What the decoder recorded (issue 12): frames planned vs decoded and warnings such as
        # "decode_incomplete"; getattr keeps this working on rows and stores from before those columns.
        "frames_planned": getattr(row, "frames_planned", None),
        "frames_decoded": getattr(row, "frames_decoded", None),
        "processing_warnings": [str(code) for code in getattr(row, "warnings", None) or []],
    }


def emotion_distribution(frames: pd.DataFrame) -> dict[str, Any]:
    """Mean probability per label over face frames, and the share of face frames each label dominates."""
    face_rows = frames.loc[frames["face_found"].astype(bool), list(CANONICAL_LABELS)]
    if face_rows.empty:
        empty = dict.fromkeys(CANONICAL_LABELS)
        return {"mean_probability": empty, "dominant_share": dict(empty), "dominant_emotion": None}
    probs = face_rows.to_numpy(dtype=np.float64)
    means = np.nanmean(probs, axis=0)
    winners = np.bincount(np.nanargmax(probs, axis=1), minlength=len(CANONICAL_LABELS)) / len(probs)
    return {
        "mean_probability": {label: _finite(value) for label, value in zip(CANONICAL_LABELS, means, strict=True)},
        "dominant_share": {label: float(value) for label, value in zip(CANONICAL_LABELS, winners, strict=True)},
        "dominant_emotion": CANONICAL_LABELS[int(np.nanargmax(means))],
    }


# ----------------------------------------------------------------------------------------- summary
def _load_session(session: Session, session_id: int) -> VideoSession:
    row = session.get(VideoSession, session_id)
    if row is None:
        raise NotFoundError(f"no session {session_id}; `fervideo sessions` lists them")
    if row.status != SessionStatus.DONE:
        raise ExportError(f"session {session_id} is {row.status}, not done; only finished sessions are exported")
    return row


def _session_block(row: VideoSession) -> dict[str, Any]:
    return {
        "id": row.id,
        "subject": row.subject.code,
        "recorded_at": _iso(row.recorded_at),
        "duration_s": _finite(row.duration_s),
        "video_sha256": row.video_sha256,
        "source": row.source,
        "sample_fps": _finite(row.sample_fps),
        "video_fps": _finite(row.video_fps),
        "width": row.width,
        "height": row.height,
        "processed_at": _iso(row.finished_at),
    }


def _provenance_block(row: VideoSession) -> dict[str, Any]:
    return {
        "package_version": row.package_version,
        "classifier_name": row.classifier_name,
        "classifier_sha256": row.classifier_sha256,
        "detector_name": row.detector_name,
        "detector_params": dict(row.detector_params or {}),
        "settings_key": row.settings_key,
        "device": row.device,
    }


def _features_block(features: SessionFeatures | None) -> dict[str, Any] | None:
    if features is None:
        return None
    meanings = feature_definitions()
    values = {str(name): _finite(value) for name, value in (features.values or {}).items()}
    return {
        "feature_version": features.feature_version,
        "computed_at": _iso(features.computed_at),
        "values": values,
        "definitions": {name: meanings.get(name, "") for name in values},
        "transition_matrix": (
            [[_finite(cell) for cell in row] for row in features.transition_matrix]
            if features.transition_matrix is not None else None
        ),
    }


def _latest_prediction(session: Session, session_id: int) -> tuple[PhqPrediction, PhqHead] | None:
    statement = (
        select(PhqPrediction, PhqHead).join(PhqHead, PhqPrediction.head_id == PhqHead.id)
        .where(PhqPrediction.session_id == session_id)
        .order_by(PhqPrediction.created_at.desc(), PhqPrediction.id.desc()).limit(1)
    )
    found = session.execute(statement).first()
    return (found[0], found[1]) if found else None


def _phq_block(found: tuple[PhqPrediction, PhqHead] | None, row: VideoSession) -> dict[str, Any] | None:
    if found is None:
        return None
    prediction, head = found
    return {
        "estimate": float(prediction.estimate),
        "lower": float(prediction.lower),
        "upper": float(prediction.upper),
        "coverage": float(prediction.coverage),
        "band": prediction.band,
        "interval_bands": [severity_band(prediction.lower), severity_band(prediction.upper)],
        "predicted_at": _iso(prediction.created_at),
        "head": {
            "id": head.id, "name": head.name, "sha256": head.sha256, "instrument": head.instrument,
            "feature_source": head.feature_source, "classifier_name": head.classifier_name,
            "classifier_sha256": head.classifier_sha256, "n_subjects": head.n_subjects, "n_sessions": head.n_sessions,
        },
        "classifier_matches": head.classifier_sha256 == row.classifier_sha256,
        # Issue 9: what must travel with the number (None on estimates made before it was recorded).
        "interval_method": prediction.interval_method,
        "imputed_features": prediction.n_imputed,
        "imputed_feature_names": list(prediction.imputed_features or []),
        "in_sample": prediction.in_sample,
        "out_of_fold": prediction.out_of_fold,
        "head_beats_baseline": head.beats_baseline,
        "warnings": prediction_warnings(prediction, head),
        "caveats": phq_caveats(float(prediction.coverage), prediction.interval_method),
    }


def _recorded_phq(session: Session, session_id: int) -> list[dict[str, Any]]:
    """The questionnaire result that belongs to the session by fervideo.phq.matching's rule (the one
    training uses; subject-level labels included): a list of none or one."""
    match = recorded_labels(session, [session_id]).get(session_id)
    if match is None:
        return []
    label = match.label
    return [{"instrument": label.instrument, "total": int(label.total), "administered_at": _iso(label.administered_at),
             "items": dict(label.items) if label.items else None}]


def session_summary(db: DbLike, session_id: int, frames: pd.DataFrame | None = None) -> dict[str, Any]:
    """Everything an export says about one finished session, as a JSON-ready dict (schema v1).

    `frames` may be passed when the caller already holds the per-frame table, to avoid a second read.
    Raises ExportError for an unknown session or one that is not done.
    """
    with with_session(db) as session:
        row = _load_session(session, session_id)
        if frames is None:
            frames = frame_table(session, session_id)
        features = session.get(SessionFeatures, session_id)
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "generator": {"name": "fervideo", "version": __version__},
            "session": _session_block(row),
            "provenance": _provenance_block(row),
            "labels": list(CANONICAL_LABELS),
            "emotions": emotion_distribution(frames),
            "data_quality": data_quality(frames, features, row),
            "features": _features_block(features),
            "phq": _phq_block(_latest_prediction(session, session_id), row),
            "phq_recorded": _recorded_phq(session, session_id),
        }
