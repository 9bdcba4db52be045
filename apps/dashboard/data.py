"""Every database read and the one write (audit rows) of the dashboard.

Reads go through an engine whose connections refuse writes (SQLite: `PRAGMA query_only`; PostgreSQL:
`default_transaction_read_only`), so the dashboard cannot change clinical data even by mistake; only
`record_audit` uses a second, writable engine. Heavy reads are cached with st.cache_data keyed by
(db_url, session_id, session.updated_at): a reprocessed session has a new updated_at and so never shows
stale frames. Small reads (one session's features, predictions) are not cached: they cost a millisecond
and are then always current.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from apps.dashboard import compute
from fervideo.errors import DatabaseError
from fervideo.export import frames_table, session_summary, summary_to_csv, summary_to_json
from fervideo.export.csv_cells import table_to_csv
from fervideo.phq import prediction_warnings
from fervideo.phq.matching import DEFAULT_LABEL_WINDOW_DAYS, recorded_labels
from fervideo.store import (
    AuditEvent,
    PhqHead,
    PhqLabel,
    PhqPrediction,
    SessionFeatures,
    Subject,
    VideoSession,
    default_database_url,
    frame_table,
    make_engine,
    schema_revisions,
)
from fervideo.store.leases import display_status

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- database
def database_url(argv: list[str] | None = None) -> str:
    """`streamlit run app.py -- --db URL` wins over FERVIDEO_DB, which wins over the default file."""
    argv = sys.argv[1:] if argv is None else argv
    if "--db" in argv and argv.index("--db") + 1 < len(argv):
        return argv[argv.index("--db") + 1]
    return os.environ.get("FERVIDEO_DB") or default_database_url()


def _query_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _read_only_transactions(dbapi_connection, _record) -> None:
    """PostgreSQL: every transaction on this connection is READ ONLY (committed, so the setting stays)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION default_transaction_read_only = on")
    cursor.close()
    dbapi_connection.commit()


READ_ONLY_LISTENERS = {"sqlite": _query_only, "postgresql": _read_only_transactions}


def _checked_engine(db_url: str, read_only: bool):
    url = db_url if "://" in db_url else f"sqlite:///{Path(db_url).expanduser()}"
    parsed = make_url(url)
    # make_engine would create a missing SQLite file; a viewer must not.
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).expanduser().exists():
            raise DatabaseError(f"no database at {parsed.database}; process a video first or pass --db")
    engine = make_engine(url)
    current, head = schema_revisions(engine)
    if current != head:
        raise DatabaseError(f"database schema is at {current}, the dashboard expects {head}; run `fervideo db upgrade`")
    if read_only:
        if engine.dialect.name not in READ_ONLY_LISTENERS:
            raise DatabaseError(f"the dashboard cannot open a {engine.dialect.name} database read-only; "
                                "use SQLite or PostgreSQL")
        event.listen(engine, "connect", READ_ONLY_LISTENERS[engine.dialect.name])
        engine.dispose()  # connections opened by the checks above predate the listener
    return engine


@st.cache_resource(show_spinner=False)
def reader(db_url: str) -> sessionmaker:
    return sessionmaker(_checked_engine(db_url, read_only=True), expire_on_commit=False)


@st.cache_resource(show_spinner=False)
def writer(db_url: str) -> sessionmaker:
    return sessionmaker(_checked_engine(db_url, read_only=False), expire_on_commit=False)


def fingerprint(db_url: str) -> tuple:
    """Changes whenever sessions, features, predictions or labels change: the key for list caches."""
    statements = (
        select(func.count(VideoSession.id), func.max(VideoSession.updated_at)),
        select(func.count(), func.max(SessionFeatures.computed_at)).select_from(SessionFeatures),
        select(func.count(PhqPrediction.id), func.max(PhqPrediction.created_at)),
        select(func.count(PhqLabel.id), func.max(PhqLabel.imported_at)),
        select(func.count(PhqHead.id), func.max(PhqHead.created_at)),
    )
    with reader(db_url)() as db:
        return tuple(value for statement in statements for value in db.execute(statement).one())


# -------------------------------------------------------------------------------------------- helpers
def _flags(features: SessionFeatures | None) -> str:
    if features is None:
        return "no features yet"
    return "" if features.reliable else "; ".join(map(str, features.reliability_notes or ["unreliable"]))


# ------------------------------------------------------------------------------------------- overview
@st.cache_data(show_spinner=False, max_entries=4)
def overview(db_url: str, stamp: tuple) -> pd.DataFrame:
    """One row per session with subject, date, coverage, classifier, latest PHQ estimate and flags."""
    with reader(db_url)() as db:
        latest = (
            select(PhqPrediction.session_id, func.max(PhqPrediction.id).label("pid"))
            .group_by(PhqPrediction.session_id).subquery()
        )
        rows = db.execute(
            select(VideoSession, Subject.code, SessionFeatures, PhqPrediction, PhqHead)
            .join(Subject, VideoSession.subject_id == Subject.id)
            .outerjoin(SessionFeatures, SessionFeatures.session_id == VideoSession.id)
            .outerjoin(latest, latest.c.session_id == VideoSession.id)
            .outerjoin(PhqPrediction, PhqPrediction.id == latest.c.pid)
            .outerjoin(PhqHead, PhqHead.id == PhqPrediction.head_id)
            .order_by(Subject.code, VideoSession.recorded_at, VideoSession.id)
        ).all()
    records = [{
        "session_id": s.id, "subject_id": s.subject_id, "subject": code,
        "recorded_at": s.recorded_at,
        "duration_min": s.duration_s / 60 if s.duration_s is not None else math.nan,
        "face_coverage": (s.face_frames / s.sampled_frames) if s.sampled_frames else math.nan,
        "classifier": s.classifier_name, "source": s.source, "status": display_status(s),
        "warnings": "; ".join(map(str, getattr(s, "warnings", None) or [])),
        "phq_estimate": p.estimate if p else math.nan,
        "phq_interval": f"{p.lower:.1f}–{p.upper:.1f}" if p else "",
        "band": p.band if p else "no estimate", "instrument": h.instrument if h else "",
        # What must travel with the estimate (weak head, imputed features, in-sample), as on the Session page.
        "phq_warnings": " ".join(prediction_warnings(p, h)) if p and h else "",
        "reliable": bool(f.reliable) if f is not None else None, "flags": _flags(f),
    } for s, code, f, p, h in rows]
    table = pd.DataFrame.from_records(records, columns=[
        "session_id", "subject_id", "subject", "recorded_at", "duration_min", "face_coverage", "classifier",
        "status", "phq_estimate", "phq_interval", "band", "instrument", "phq_warnings", "reliable", "flags", "warnings",
        "source"])
    # An all-undated database would leave an object column that has no .dt accessor.
    table["recorded_at"] = pd.to_datetime(table["recorded_at"])
    return table


# -------------------------------------------------------------------------------------------- session
def session_meta(db_url: str, session_id: int) -> dict[str, Any] | None:
    """The session row as a dict (cheap; read every run to get updated_at, the cache key)."""
    with reader(db_url)() as db:
        row = db.get(VideoSession, session_id)
        if row is None:
            return None
        columns = {c.key: getattr(row, c.key) for c in VideoSession.__table__.columns}
        columns["subject_code"] = row.subject.code
        columns["status"] = display_status(row)  # a running session whose process is gone: interrupted
        return columns


@st.cache_data(show_spinner=False, max_entries=6)
def session_frames(db_url: str, session_id: int, updated_at: dt.datetime) -> pd.DataFrame:
    with reader(db_url)() as db:
        return frame_table(db, session_id)


@st.cache_data(show_spinner=False, max_entries=32)
def session_timeline(db_url: str, session_id: int, updated_at: dt.datetime, window_s: float,
                     t0: float, t1: float, max_points: int = compute.MAX_DISPLAY_POINTS) -> pd.DataFrame:
    return compute.timeline(session_frames(db_url, session_id, updated_at), window_s, t0, t1, max_points)


@st.cache_data(show_spinner=False, max_entries=32)
def session_range_summary(db_url: str, session_id: int, updated_at: dt.datetime, t0: float, t1: float) -> dict:
    frames = session_frames(db_url, session_id, updated_at)
    summary = compute.range_summary(frames, t0, t1)
    summary["features"] = compute.range_features(frames, t0, t1)
    return summary


def session_features(db_url: str, session_id: int) -> dict[str, Any] | None:
    with reader(db_url)() as db:
        row = db.get(SessionFeatures, session_id)
        if row is None:
            return None
        return {"values": dict(row.values or {}), "reliable": bool(row.reliable),
                "reliability_notes": list(row.reliability_notes or []), "feature_version": row.feature_version,
                "computed_at": row.computed_at, "transition_matrix": row.transition_matrix}


def session_predictions(db_url: str, session_id: int) -> list[dict[str, Any]]:
    with reader(db_url)() as db:
        rows = db.execute(
            select(PhqPrediction, PhqHead).join(PhqHead, PhqHead.id == PhqPrediction.head_id)
            .where(PhqPrediction.session_id == session_id).order_by(PhqPrediction.created_at.desc())
        ).all()
    # prediction_warnings: the one source of what must travel with an estimate (weak head, imputed, in-sample).
    return [{"estimate": p.estimate, "lower": p.lower, "upper": p.upper, "coverage": p.coverage, "band": p.band,
             "head": h.name, "instrument": h.instrument, "created_at": p.created_at,
             "head_classifier_sha256": h.classifier_sha256, "interval_method": p.interval_method,
             "warnings": prediction_warnings(p, h)} for p, h in rows]


def session_labels(db_url: str, session_id: int) -> list[dict[str, Any]]:
    """The recorded PHQ that belongs to the session (none or one), by fervideo.phq.matching's rule."""
    with reader(db_url)() as db:
        match = recorded_labels(db, [session_id]).get(session_id)
        # Only the total: item answers (item 9 above all) belong in the clinical record, not here.
        return [] if match is None else [{"instrument": match.instrument, "total": match.total,
                                          "administered_at": match.administered_at}]


# -------------------------------------------------------------------------------------------- subject
def subjects(db_url: str) -> pd.DataFrame:
    with reader(db_url)() as db:
        rows = db.execute(select(Subject.id, Subject.code).order_by(Subject.code)).all()
    return pd.DataFrame(rows, columns=["subject_id", "subject"])


@st.cache_data(show_spinner=False, max_entries=16)
def subject_history(db_url: str, subject_id: int, stamp: tuple) -> dict[str, pd.DataFrame]:
    """Per session of one subject: date, latest estimate with interval, recorded PHQ, feature values."""
    with reader(db_url)() as db:
        sessions = db.execute(
            select(VideoSession, SessionFeatures).outerjoin(SessionFeatures)
            .where(VideoSession.subject_id == subject_id).order_by(VideoSession.recorded_at, VideoSession.id)
        ).all()
        ids = [s.id for s, _ in sessions]
        predictions = db.execute(
            select(PhqPrediction, PhqHead.instrument).join(PhqHead)
            .where(PhqPrediction.session_id.in_(ids)).order_by(PhqPrediction.id)
        ).all()
        matches = recorded_labels(db, [s for s, _ in sessions])  # the labels training would use
    when = {s.id: s.recorded_at or s.created_at for s, _ in sessions}
    latest = {p.session_id: (p, instrument) for p, instrument in predictions}  # ordered by id: last wins
    table = pd.DataFrame.from_records([{
        "session_id": s.id, "recorded_at": when[s.id],
        "phq_estimate": latest[s.id][0].estimate if s.id in latest else math.nan,
        "phq_lower": latest[s.id][0].lower if s.id in latest else math.nan,
        "phq_upper": latest[s.id][0].upper if s.id in latest else math.nan,
        "band": latest[s.id][0].band if s.id in latest else "",
        "instrument": latest[s.id][1] if s.id in latest else "",
        "reliable": bool(f.reliable) if f is not None else None,
        "recorded_total": matches[s.id].total if s.id in matches else math.nan,
        "dated": s.recorded_at is not None,  # undated sessions sit at their processing date: not on time axes
    } for s, f in sessions], columns=["session_id", "recorded_at", "phq_estimate", "phq_lower", "phq_upper", "band",
                                       "instrument", "reliable", "recorded_total", "dated"])
    features = pd.DataFrame.from_records(
        [{"session_id": s.id, "recorded_at": when[s.id], "dated": s.recorded_at is not None,
          **{k: (math.nan if v is None else v)
                                                             for k, v in (f.values or {}).items()}}
         for s, f in sessions if f is not None])
    return {"sessions": table, "features": features, "recorded": _recorded_points(matches, when)}


def _recorded_points(matches: dict, when: dict) -> pd.DataFrame:
    """Recorded PHQ for the chart: a dated label once, at its own date; an undated one at each session it
    belongs to (it has no date of its own). Labels that belong to no session are not drawn."""
    points, drawn = [], set()
    for session_id, match in matches.items():
        label = match.label
        if label.administered_at is not None and label.id in drawn:
            continue
        drawn.add(label.id)
        points.append({"session_id": session_id, "instrument": match.instrument, "total": match.total,
                       "recorded_at": label.administered_at or when[session_id]})
    return pd.DataFrame.from_records(points, columns=["session_id", "instrument", "total", "recorded_at"])


# --------------------------------------------------------------------------------------------- cohort
def heads(db_url: str) -> list[dict[str, Any]]:
    with reader(db_url)() as db:
        rows = db.scalars(select(PhqHead).order_by(PhqHead.created_at.desc(), PhqHead.id.desc())).all()
        return [{"id": h.id, "name": h.name, "instrument": h.instrument, "feature_source": h.feature_source,
                 "classifier_name": h.classifier_name, "n_subjects": h.n_subjects, "n_sessions": h.n_sessions,
                 "metrics": dict(h.metrics or {}), "created_at": h.created_at,
                 "beats_baseline": h.beats_baseline} for h in rows]


@st.cache_data(show_spinner=False, max_entries=8)
def cohort(db_url: str, head_id: int, stamp: tuple) -> pd.DataFrame:
    """Sessions scored by the head that have a recorded PHQ, with the head's latest estimate. The recorded
    total is fervideo.phq.matching's label in the head's instrument and label window (subject-level labels
    included): the label the head was trained against."""
    with reader(db_url)() as db:
        head = db.get(PhqHead, head_id)
        rows = db.execute(
            select(PhqPrediction, VideoSession).join(VideoSession, VideoSession.id == PhqPrediction.session_id)
            .where(PhqPrediction.head_id == head_id).order_by(PhqPrediction.session_id, PhqPrediction.id)
        ).all()
        training = ((head.config if head else None) or {}).get("training") or {}
        matches = recorded_labels(db, [s for _, s in rows], instrument=head.instrument if head else None,
                                  window_days=training.get("label_window_days", DEFAULT_LABEL_WINDOW_DAYS))
    records = {p.session_id: {
        "session_id": p.session_id, "subject_id": s.subject_id, "recorded": matches[s.id].total,
        "instrument": matches[s.id].instrument, "estimate": p.estimate, "lower": p.lower, "upper": p.upper,
        "band": p.band, "inside_interval": bool(p.lower <= matches[s.id].total <= p.upper),
    } for p, s in rows if s.id in matches}
    return pd.DataFrame.from_records(list(records.values()), columns=[
        "session_id", "subject_id", "recorded", "instrument", "estimate", "lower", "upper", "band",
        "inside_interval"])


# ------------------------------------------------------------------------------------------- exports
DOWNLOADS: dict[str, tuple[str, str, str]] = {
    # kind -> (button label, file suffix, mime type)
    "frames_csv": ("Per-frame table (CSV)", "frames.csv", "text/csv"),
    "frames_json": ("Per-frame table (JSON)", "frames.json", "application/json"),
    "summary_json": ("Summary (JSON)", "summary.json", "application/json"),
    "summary_csv": ("Summary (CSV)", "summary.csv", "text/csv"),
}


def download_bytes(db_url: str, session_id: int, kind: str) -> bytes:
    """The file for one download button, built by fervideo.export like the CLI's exports."""
    if kind == "frames_csv":
        return table_to_csv(frames_table(reader(db_url), session_id)).encode()
    if kind == "frames_json":
        return frames_table(reader(db_url), session_id).to_json(orient="records", double_precision=6).encode()
    if kind == "summary_json":
        return summary_to_json(session_summary(reader(db_url), session_id)).encode()
    if kind == "summary_csv":
        return summary_to_csv(session_summary(reader(db_url), session_id)).encode()
    raise ValueError(f"unknown download {kind!r}")


def audited_download(db_url: str, session_id: int, subject_id: int, kind: str, user: str) -> bytes:
    """Build the file and record who took it; called by Streamlit only when the button is clicked."""
    data = download_bytes(db_url, session_id, kind)
    record_audit(db_url, user, f"download_{kind}", session_id=session_id, subject_id=subject_id,
                 detail={"bytes": len(data)})
    return data


# --------------------------------------------------------------------------------------------- audit
def record_audit(db_url: str, user: str, action: str, session_id: int | None = None,
                 subject_id: int | None = None, detail: dict | None = None) -> None:
    """The dashboard's only write. Ids only: never a subject code, never clinical values."""
    with writer(db_url).begin() as db:
        db.add(AuditEvent(user=user, action=action, session_id=session_id, subject_id=subject_id, detail=detail))
    log.info("audit: %s %s session=%s subject=%s", user, action, session_id, subject_id)


def audit_once(db_url: str, user: str, action: str, session_id: int | None = None,
               subject_id: int | None = None, detail: dict | None = None) -> None:
    """One audit row per browser session and target, not one per rerun of the page."""
    seen = st.session_state.setdefault("_fervideo_audited", set())
    key = (action, session_id, subject_id, json.dumps(detail, sort_keys=True, default=str))
    if key not in seen:
        record_audit(db_url, user, action, session_id, subject_id, detail)
        seen.add(key)

