"""The database schema, as SQLAlchemy 2.0 typed models. These models are the single source of truth;
Alembic migrations in migrations/versions are generated from them and `alembic check` stays clean."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
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
    sampled_frames: Mapped[int | None] = mapped_column(Integer)
    face_frames: Mapped[int | None] = mapped_column(Integer)
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


# The per-label columns above must be exactly the canonical labels, in order.
assert tuple(c for c in Frame.__table__.columns.keys() if c in CANONICAL_LABELS) == CANONICAL_LABELS

FRAME_TABLE_COLUMNS: tuple[str, ...] = (
    "frame_index", "t", "face_found", "face_score", "x1", "y1", "x2", "y2", *CANONICAL_LABELS,
)
FRAME_QUALITY_COLUMNS: tuple[str, ...] = ("face_size", "sharpness", "yaw")

__all__ = [
    "Base", "Frame", "FRAME_QUALITY_COLUMNS", "FRAME_TABLE_COLUMNS", "SessionStatus", "Subject",
    "VideoSession",
]
