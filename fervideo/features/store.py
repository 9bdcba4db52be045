"""`store_session_features`: read a stored session, compute its features and upsert its row."""

from __future__ import annotations

import logging

import pandas as pd

from fervideo.features.compute import compute_session_features, json_float
from fervideo.features.registry import AU_PREFIX, FEATURE_VERSION

log = logging.getLogger(__name__)


def store_session_features(db_factory, session_id: int, recompute: bool = False,
                           frames: pd.DataFrame | None = None,
                           extra_values: dict[str, float] | None = None):
    """Compute and upsert one session's features row; return the stored SessionFeatures row.

    An existing row is returned untouched unless `recompute`. Keys with the `au_` prefix (the OpenFace
    AU group, computed at import) are kept across recomputes unless `extra_values` replaces them.
    """
    from fervideo.errors import NotFoundError
    from fervideo.store import SessionFeatures, VideoSession, frame_table

    with db_factory.begin() as db:
        if db.get(VideoSession, session_id) is None:
            raise NotFoundError(f"no session {session_id}; see `fervideo sessions`")
        row = db.get(SessionFeatures, session_id)
        if row is not None and not recompute and extra_values is None:
            return row
        table = frames if frames is not None else frame_table(db, session_id)
        result = compute_session_features(table)
        values = result.values_for_json()
        kept = {k: v for k, v in (row.values if row is not None else {}).items() if k.startswith(AU_PREFIX)}
        values.update(kept)
        values.update({k: json_float(v) for k, v in (extra_values or {}).items()})
        if row is None:
            row = SessionFeatures(session_id=session_id)
            db.add(row)
        row.feature_version = FEATURE_VERSION
        row.reliable = result.reliable
        row.reliability_notes = result.reliability_notes
        row.values = values
        row.transition_matrix = result.matrix_for_json()
        row.computed_at = pd.Timestamp.now("UTC").tz_localize(None).to_pydatetime()
        log.info("features of session %d: %s", session_id, "reliable" if result.reliable else "unreliable")
    return row
