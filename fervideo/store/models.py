"""The database schema, as SQLAlchemy 2.0 typed models. These models are the single source of truth;
Alembic migrations in migrations/versions are generated from them and `alembic check` stays clean."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fervideo.labels import CANONICAL_LABELS


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class SessionStatus:
    """A session is `running` while chunks are written and becomes `done` only after the last one."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    # Stopped by a signal, or found `running` with an expired lease / a dead process: redone on a re-run.
    INTERRUPTED = "interrupted"


class Subject(Base):
    __tablename__ = "subjects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # A pseudonymous research code chosen by the user; never a name or a medical record number.
    code: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    sessions: Mapped[list[VideoSession]] = relationship(back_populates="subject")


class VideoSession(Base):
    """One processed recording: media metadata, sampling, status, timings and provenance."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32), default="video")  # "video" or another importer
    video_path: Mapped[str] = mapped_column(Text)
    video_sha256: Mapped[str] = mapped_column(String(64), index=True)
    recorded_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Media metadata, as probed.
    duration_s: Mapped[float | None] = mapped_column(Float)
    video_fps: Mapped[float | None] = mapped_column(Float)
    frame_count: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    codec: Mapped[str | None] = mapped_column(String(32))
    rotation: Mapped[int | None] = mapped_column(Integer)
    # Sampling and processing parameters; settings_key hashes everything that changes the result.
    sample_fps: Mapped[float] = mapped_column(Float)
    settings_key: Mapped[str] = mapped_column(String(64), index=True)
    # Status and timings.
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.RUNNING, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    processing_s: Mapped[float | None] = mapped_column(Float)
    # The lease of the process writing a running session (fervideo/store/leases.py): an expired
    # heartbeat, or a dead process on this host, means the session was interrupted.
    lease_host: Mapped[str | None] = mapped_column(String(255))
    lease_pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sampled_frames: Mapped[int | None] = mapped_column(Integer)
    face_frames: Mapped[int | None] = mapped_column(Integer)
    # What decoding planned vs got (a truncated or corrupt file decodes fewer), and what the user must
    # know about it, e.g. "decode_incomplete: 45 of 50 planned frames decoded". NULL before schema 0004.
    frames_planned: Mapped[int | None] = mapped_column(Integer)
    frames_decoded: Mapped[int | None] = mapped_column(Integer)
    warnings: Mapped[list | None] = mapped_column(JSON, default=list)
    # Provenance: enough to reproduce the result.
    package_version: Mapped[str] = mapped_column(String(32))
    classifier_name: Mapped[str] = mapped_column(String(128))
    classifier_sha256: Mapped[str] = mapped_column(String(64))
    detector_name: Mapped[str] = mapped_column(String(128))
    detector_params: Mapped[dict] = mapped_column(JSON, default=dict)
    device: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="sessions")
    frames: Mapped[list[Frame]] = relationship(
        back_populates="session", cascade="all, delete-orphan", passive_deletes=True
    )


class Frame(Base):
    """One sampled frame, face or not. Probabilities are NULL where no face was found."""

    __tablename__ = "frames"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    frame_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    t: Mapped[float] = mapped_column(Float)
    face_found: Mapped[bool] = mapped_column(Boolean)
    face_score: Mapped[float | None] = mapped_column(Float)
    x1: Mapped[float | None] = mapped_column(Float)
    y1: Mapped[float | None] = mapped_column(Float)
    x2: Mapped[float | None] = mapped_column(Float)
    y2: Mapped[float | None] = mapped_column(Float)
    face_size: Mapped[float | None] = mapped_column(Float)
    sharpness: Mapped[float | None] = mapped_column(Float)
    yaw: Mapped[float | None] = mapped_column(Float)
    anger: Mapped[float | None] = mapped_column(Float)
    disgust: Mapped[float | None] = mapped_column(Float)
    fear: Mapped[float | None] = mapped_column(Float)
    happiness: Mapped[float | None] = mapped_column(Float)
    neutral: Mapped[float | None] = mapped_column(Float)
    sadness: Mapped[float | None] = mapped_column(Float)
    surprise: Mapped[float | None] = mapped_column(Float)

    session: Mapped[VideoSession] = relationship(back_populates="frames")


class SessionFeatures(Base):
    """Named session features (see docs/features.md), one row per session, recomputable."""

    __tablename__ = "session_features"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    feature_version: Mapped[str] = mapped_column(String(32))
    reliable: Mapped[bool] = mapped_column(Boolean)
    reliability_notes: Mapped[list] = mapped_column(JSON, default=list)  # why a session is unreliable
    values: Mapped[dict] = mapped_column(JSON, default=dict)  # feature name -> float (NaN stored as null)
    transition_matrix: Mapped[list | None] = mapped_column(JSON)  # 7x7, rows = from, canonical order


class PhqLabel(Base):
    """A recorded PHQ-8/PHQ-9 questionnaire result (the ground truth a head learns from)."""

    __tablename__ = "phq_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"), index=True)
    instrument: Mapped[str] = mapped_column(String(8))  # "PHQ-8" or "PHQ-9"
    total: Mapped[int] = mapped_column(Integer)
    items: Mapped[dict | None] = mapped_column(JSON)  # item name -> 0..3, when given
    administered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    source_file: Mapped[str | None] = mapped_column(Text)
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PhqHead(Base):
    """A trained PHQ regression head, whole in the database so any machine with the URL can predict: its
    configuration (JSON) and its arrays as npz bytes (loaded with allow_pickle=False) with their sha256."""

    __tablename__ = "phq_heads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    path: Mapped[str | None] = mapped_column(Text)  # the head folder it was imported from (older heads only)
    sha256: Mapped[str] = mapped_column(String(64))  # of config + params (see fervideo.phq.head_store)
    config: Mapped[dict | None] = mapped_column(JSON)  # NULL only for a file head not imported yet
    params: Mapped[bytes | None] = mapped_column(LargeBinary)  # npz bytes, never pickle
    params_sha256: Mapped[str | None] = mapped_column(String(64))
    head_format: Mapped[int | None] = mapped_column(Integer)
    # The head's standing and what it accepts (issue 9): NULL on heads trained before these were recorded.
    beats_baseline: Mapped[bool | None] = mapped_column(Boolean)
    interval_method: Mapped[str | None] = mapped_column(String(128))
    sample_fps: Mapped[float | None] = mapped_column(Float)
    feature_version: Mapped[str | None] = mapped_column(String(32))
    openface_columns_sha256: Mapped[str | None] = mapped_column(String(64))
    max_imputed_fraction: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    instrument: Mapped[str] = mapped_column(String(8))
    feature_source: Mapped[str] = mapped_column(String(32))  # "video" or "openface": never mixed
    classifier_name: Mapped[str] = mapped_column(String(128))
    classifier_sha256: Mapped[str] = mapped_column(String(64))
    n_subjects: Mapped[int] = mapped_column(Integer)
    n_sessions: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)


class PhqPrediction(Base):
    """A PHQ *estimate* for one session by one head: never a diagnosis, never item 9."""

    __tablename__ = "phq_predictions"
    __table_args__ = (UniqueConstraint("session_id", "head_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    head_id: Mapped[int] = mapped_column(ForeignKey("phq_heads.id", ondelete="CASCADE"), index=True)
    estimate: Mapped[float] = mapped_column(Float)
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)
    coverage: Mapped[float] = mapped_column(Float)  # nominal coverage of [lower, upper], e.g. 0.9
    band: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # Caveats that travel with the number (issue 9); NULL on predictions made before they were recorded.
    n_imputed: Mapped[int | None] = mapped_column(Integer)  # head features missing for this session
    imputed_features: Mapped[list | None] = mapped_column(JSON)  # their names
    n_features: Mapped[int | None] = mapped_column(Integer)  # the head's feature count
    in_sample: Mapped[bool | None] = mapped_column(Boolean)  # the head was trained on this subject's labels
    out_of_fold: Mapped[bool | None] = mapped_column(Boolean)  # estimate from a model that never saw the subject
    in_sample_estimate: Mapped[float | None] = mapped_column(Float)  # the final model's (optimistic) estimate
    interval_method: Mapped[str | None] = mapped_column(String(128))


class AuditEvent(Base):
    """Who viewed or downloaded what, and when (written by the dashboard, its only write)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))  # e.g. "view_session", "download_frames_csv"
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"))
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("subjects.id", ondelete="SET NULL"))
    detail: Mapped[dict | None] = mapped_column(JSON)


# The per-label columns above must be exactly the canonical labels, in order.
assert tuple(c for c in Frame.__table__.columns.keys() if c in CANONICAL_LABELS) == CANONICAL_LABELS

FRAME_TABLE_COLUMNS: tuple[str, ...] = (
    "frame_index", "t", "face_found", "face_score", "x1", "y1", "x2", "y2", *CANONICAL_LABELS,
)
FRAME_QUALITY_COLUMNS: tuple[str, ...] = ("face_size", "sharpness", "yaw")

__all__ = [
    "AuditEvent", "Base", "Frame", "FRAME_QUALITY_COLUMNS", "FRAME_TABLE_COLUMNS", "PhqHead", "PhqLabel",
    "PhqPrediction", "SessionFeatures", "SessionStatus", "Subject", "VideoSession",
]
