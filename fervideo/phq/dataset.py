"""Labelled sessions -> a feature matrix grouped by subject (which recorded label belongs to a session)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from fervideo.errors import DataFileError, InvalidArgumentError
from fervideo.features import FEATURE_DEFINITIONS, store_session_features
from fervideo.phq.bands import HEAD_FEATURE_GROUPS, INSTRUMENT_MAX

log = logging.getLogger(__name__)

# ============================================================================================ dataset
@dataclass
class Dataset:
    X: np.ndarray  # [sessions, features], NaN where a feature is missing
    y: np.ndarray  # PHQ totals
    groups: np.ndarray  # subject code per session: the CV grouping unit
    session_ids: np.ndarray
    feature_names: list[str]
    instrument: str
    source: str
    classifier_name: str
    classifier_sha256: str
    skipped: dict[str, int] = field(default_factory=dict)


def _label_total(label, instrument: str) -> int | None:
    if label.instrument == instrument:
        return label.total
    if instrument == "PHQ-8" and label.items and len(label.items) == 9:
        return label.total - label.items["self_harm"]  # PHQ-9 -> PHQ-8 by dropping item 9
    return None


def _pick_label(labels: list, session, instrument: str) -> int | None:
    """A session-specific label wins; else the subject-level label administered closest to the session."""
    usable = [(lab, total) for lab in labels if (total := _label_total(lab, instrument)) is not None]
    own = [pair for pair in usable if pair[0].session_id == session.id]
    general = [pair for pair in usable if pair[0].session_id is None]
    candidates = own or general
    if not candidates:
        return None
    if session.recorded_at is not None and all(lab.administered_at for lab, _ in candidates):
        return min(candidates, key=lambda p: abs((p[0].administered_at - session.recorded_at).total_seconds()))[1]
    return max(candidates, key=lambda p: p[0].id)[1]


def head_feature_names(values: list[dict], source: str, include_au: bool = True) -> list[str]:
    groups = set(HEAD_FEATURE_GROUPS) | ({"au"} if include_au and source == "openface" else set())
    present = set().union(*values) if values else set()
    return [name for name, d in FEATURE_DEFINITIONS.items() if d.group in groups and name in present]


def build_dataset(db_factory, instrument: str = "PHQ-8", classifier: str | None = None,
                  source_file: str | None = None, include_au: bool = True) -> Dataset:
    """Labelled, reliable sessions of one classifier -> a feature matrix grouped by subject."""
    from fervideo.store import PhqLabel, SessionFeatures, SessionStatus, Subject, VideoSession

    if instrument not in INSTRUMENT_MAX:
        raise InvalidArgumentError(f"--instrument must be PHQ-8 or PHQ-9, got {instrument!r}")
    with db_factory() as db:
        query = select(PhqLabel)
        if source_file is not None:
            query = query.where(PhqLabel.source_file == source_file)
        labels = list(db.scalars(query))
        by_subject: dict[int, list] = {}
        for label in labels:
            by_subject.setdefault(label.subject_id, []).append(label)
        sessions = list(db.scalars(select(VideoSession).where(
            VideoSession.subject_id.in_(by_subject), VideoSession.status == SessionStatus.DONE)
            .order_by(VideoSession.id)))
        classifiers = {(s.classifier_name, s.classifier_sha256) for s in sessions
                       if classifier in (None, s.classifier_name)}
        if not classifiers:
            raise DataFileError("no processed sessions of labelled subjects" + (
                f" with classifier {classifier}" if classifier else "") + "; import labels and process videos first")
        if len(classifiers) > 1:
            names = ", ".join(sorted(f"{n} ({h[:8]})" for n, h in classifiers))
            raise InvalidArgumentError(f"labelled sessions come from several classifiers ({names}); "
                                       "pick one with --classifier")
        (classifier_name, classifier_sha), = classifiers
        codes = dict(db.execute(select(Subject.id, Subject.code)).all())
        rows, skipped = [], {"unreliable": 0, "no label for the instrument": 0}
        for session in sessions:
            if (session.classifier_name, session.classifier_sha256) != (classifier_name, classifier_sha):
                continue
            total = _pick_label(by_subject[session.subject_id], session, instrument)
            if total is None:
                skipped["no label for the instrument"] += 1
                continue
            features = db.get(SessionFeatures, session.id)
            if features is None:
                features = store_session_features(db_factory, session.id)
            if not features.reliable:
                skipped["unreliable"] += 1
                continue
            rows.append((session, total, features.values, codes[session.subject_id]))
    if not rows:
        raise DataFileError("no reliable labelled sessions to train on")
    source = rows[0][0].source
    names = head_feature_names([r[2] for r in rows], source, include_au)
    X = np.array([[np.nan if r[2].get(n) is None else r[2][n] for n in names] for r in rows], dtype=np.float64)
    return Dataset(X, np.array([r[1] for r in rows], dtype=np.float64),
                   np.array([r[3] for r in rows]),
                   np.array([r[0].id for r in rows]), names, instrument, source, classifier_name, classifier_sha,
                   skipped)
