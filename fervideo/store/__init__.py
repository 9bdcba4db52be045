"""Storage stage: SQLAlchemy models, the engine factory and the queries the other stages share."""

from fervideo.store.engine import (
    default_database_url,
    make_engine,
    open_database,
    schema_revisions,
    upgrade_database,
)
from fervideo.store.models import (
    FRAME_QUALITY_COLUMNS,
    FRAME_TABLE_COLUMNS,
    AuditEvent,
    Base,
    Frame,
    PhqHead,
    PhqLabel,
    PhqPrediction,
    SessionFeatures,
    SessionStatus,
    Subject,
    VideoSession,
)
from fervideo.store.queries import frame_table, get_or_create_subject, list_sessions

__all__ = [
    "FRAME_QUALITY_COLUMNS", "FRAME_TABLE_COLUMNS", "AuditEvent", "Base", "Frame", "PhqHead", "PhqLabel",
    "PhqPrediction", "SessionFeatures", "SessionStatus", "Subject",
    "VideoSession", "default_database_url", "frame_table", "get_or_create_subject", "list_sessions",
    "make_engine", "open_database", "schema_revisions", "upgrade_database",
]
