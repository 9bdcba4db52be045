"""A session's life in the database, as the pipeline writes it: found done already, started (with its
lease and provenance), finished (superseding earlier runs), or failed / interrupted (partial frames
dropped). Each step is its own short transaction, so threads processing different videos in one
process (`--streams`) share the session factory and nothing else.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fervideo.errors import DatabaseError, FervideoError
from fervideo.interrupts import ProcessingInterrupted
from fervideo.store import Frame, SessionStatus, Subject, VideoSession, get_or_create_subject
from fervideo.store.leases import lease_expired, lease_values
from fervideo.video import VideoStream

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class SessionBusyError(FervideoError):
    """Another live process holds the lease of a running session of the same video and settings."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@contextmanager
def writing(factory: sessionmaker, what: str) -> Iterator[Session]:
    """One transaction; a locked or read-only database becomes a one-line DatabaseError."""
    try:
        with factory.begin() as db:
            yield db
    except OperationalError as exc:
        from fervideo.store.engine import describe_database_error  # says read-only, locked, full, ...

        where = factory.kw["bind"].url.render_as_string()  # password hidden
        raise DatabaseError(f"cannot write {what}: {describe_database_error(exc, where)}") from None


def find_done_session(factory: sessionmaker, subject_code: str, video_sha256: str, settings_key: str) -> int | None:
    """The done session of this video and settings; SessionBusyError if another process holds one."""
    with factory() as db:
        earlier = db.scalars(
            select(VideoSession)
            .join(Subject)
            .where(
                Subject.code == subject_code,
                VideoSession.video_sha256 == video_sha256,
                VideoSession.settings_key == settings_key,
            )
            .order_by(VideoSession.id.desc())
        ).all()
    live = [s for s in earlier if s.status == SessionStatus.RUNNING and not lease_expired(s)]
    if live:
        raise SessionBusyError(
            f"session {live[0].id} of this video is being processed by {live[0].lease_host} "
            f"(pid {live[0].lease_pid}); retry once it is done or its lease has expired"
        )
    return next((s.id for s in earlier if s.status == SessionStatus.DONE), None)


def start_session(factory: sessionmaker, path: Path, video_sha256: str, subject_code: str,
                  recorded_at: dt.datetime | None, stream: VideoStream, provenance: dict) -> int:
    """A new `running` session leased to this process; `provenance`: the processor's settings columns."""
    info = stream.info
    with writing(factory, "the new session") as db:
        subject = get_or_create_subject(db, subject_code)
        session = VideoSession(
            subject_id=subject.id,
            video_path=str(path.resolve()),
            video_sha256=video_sha256,
            recorded_at=recorded_at,
            duration_s=info.duration_s,
            video_fps=info.fps,
            frame_count=info.frame_count,
            width=info.width,
            height=info.height,
            codec=info.codec,
            rotation=info.rotation,
            frames_planned=len(stream),
            status=SessionStatus.RUNNING,
            started_at=utc_now(),
            **lease_values(),
            **provenance,
        )
        db.add(session)
        db.flush()
        return session.id


def finish_session(factory: sessionmaker, session_id: int, table: pd.DataFrame, elapsed: float,
                   decode_record: dict) -> None:
    with writing(factory, "the session's completion") as db:
        session = db.get(VideoSession, session_id)
        for column, value in decode_record.items():  # frames planned vs decoded, warnings
            setattr(session, column, value)
        session.status = SessionStatus.DONE
        session.finished_at = utc_now()
        session.processing_s = elapsed
        session.sampled_frames = len(table)
        session.face_frames = int(table["face_found"].sum())
        # The new run is complete, so the runs it replaces (interrupted, failed, or done ones a --force
        # redoes) can go now, not before. A run still live elsewhere is left to finish.
        earlier = db.scalars(
            select(VideoSession).where(
                VideoSession.subject_id == session.subject_id,
                VideoSession.video_sha256 == session.video_sha256,
                VideoSession.settings_key == session.settings_key,
                VideoSession.id != session_id,
            )
        ).all()
        superseded = [s.id for s in earlier if s.status != SessionStatus.RUNNING or lease_expired(s)]
        if superseded:
            db.execute(delete(VideoSession).where(VideoSession.id.in_(superseded)))


def fail_session(factory: sessionmaker, session_id: int, error: BaseException) -> None:
    """Mark the session failed (or interrupted, when stopped on request) and drop its partial frames,
    so nothing half-done can be exported."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    stopped = isinstance(error, ProcessingInterrupted | KeyboardInterrupt)
    try:
        with factory.begin() as db:
            db.execute(delete(Frame).where(Frame.session_id == session_id))
            session = db.get(VideoSession, session_id)
            session.status = SessionStatus.INTERRUPTED if stopped else SessionStatus.FAILED
            session.error = f"{type(error).__name__}: {message}"[:2000]
            session.finished_at = utc_now()
    except OperationalError:
        # The database itself is the problem (e.g. locked); the session stays "running", never "done".
        log.warning("could not mark session %d as failed: the database is not writable", session_id)
