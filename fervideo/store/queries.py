"""Queries shared by the pipeline, the CLI, exports and the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fervideo.store.models import FRAME_QUALITY_COLUMNS, FRAME_TABLE_COLUMNS, Frame, Subject, VideoSession

if TYPE_CHECKING:
    import pandas as pd


def get_or_create_subject(db: Session, code: str) -> Subject:
    subject = db.scalar(select(Subject).where(Subject.code == code))
    if subject is None:
        subject = Subject(code=code)
        db.add(subject)
        db.flush()
    return subject


def _subject_exists(factory: sessionmaker, code: str) -> bool:
    with factory() as db:
        return db.scalar(select(Subject.id).where(Subject.code == code)) is not None


def ensure_subject(factory: sessionmaker, code: str) -> None:
    """Create the subject in its own transaction if it is missing. Workers starting a subject's first
    videos at the same moment both look, both insert, and one hits the unique code: that one finds the
    other's row on its second look (a savepoint would do it in one transaction, but pysqlite's are unreliable)."""
    for attempt in range(3):
        if _subject_exists(factory, code):
            return
        try:
            with factory.begin() as db:
                db.add(Subject(code=code))
            return
        except IntegrityError:
            if attempt == 2:
                raise


def frame_table(db: Session, session_id: int, with_quality: bool = False) -> pd.DataFrame:
    """The per-frame table of one session (DESIGN.md's contract), ordered by frame index."""
    columns = FRAME_TABLE_COLUMNS + (FRAME_QUALITY_COLUMNS if with_quality else ())
    statement = (
        select(*(getattr(Frame, name) for name in columns))
        .where(Frame.session_id == session_id)
        .order_by(Frame.frame_index)
    )
    rows = db.execute(statement).all()
    import pandas as pd  # here, not at the top: `fervideo process` opens the store ~0.3 s sooner

    table = pd.DataFrame(rows, columns=list(columns))
    table["face_found"] = table["face_found"].astype(bool)
    return table.astype({name: "float64" for name in columns if name not in ("frame_index", "face_found")})


def list_sessions(db: Session, subject_code: str | None = None) -> list[VideoSession]:
    statement = select(VideoSession).join(Subject).order_by(VideoSession.id)
    if subject_code is not None:
        statement = statement.where(Subject.code == subject_code)
    return list(db.scalars(statement))


def abandon_session(db: Session, session_id: int, status: str, reason: str) -> bool:
    """End a session its worker could not end (killed on a time limit, lost): drop its partial frames,
    set `status` and the reason. Only a session still `running` is touched; returns whether it was."""
    from sqlalchemy import delete

    from fervideo.store.models import SessionStatus, utcnow

    session = db.get(VideoSession, session_id)
    if session is None or session.status != SessionStatus.RUNNING:
        return False
    db.execute(delete(Frame).where(Frame.session_id == session_id))
    session.status, session.error, session.finished_at = status, reason[:2000], utcnow()
    return True
