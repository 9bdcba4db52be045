"""Labelled sessions -> a feature matrix grouped by subject (which recorded label belongs to a session)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from fervideo.errors import DataFileError, InvalidArgumentError
from fervideo.features import FEATURE_DEFINITIONS, store_session_features
from fervideo.phq.bands import HEAD_FEATURE_GROUPS, INSTRUMENT_MAX
from fervideo.phq.matching import (
    DEFAULT_LABEL_WINDOW_DAYS,
    NO_LABEL,
    NO_LABEL_FOR_INSTRUMENT,
    NO_MATCH_REASONS,
    OUTSIDE_WINDOW,
    PHQ9_WITHOUT_ITEMS,
    SESSION_UNDATED,
    check_window_days,
    match_label,
)

log = logging.getLogger(__name__)

UNRELIABLE = "unreliable"
# Below this many subjects with a reliable labelled session, training refuses: subject-grouped 5-fold CV
# needs 5, and a 90% interval from per-subject residuals needs ceil((n + 1) x 0.9) <= n, i.e. n >= 9.
MIN_TRAIN_SUBJECTS = 10

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
    skipped: dict[str, int] = field(default_factory=dict)  # sessions left out, by reason
    label_window_days: int = DEFAULT_LABEL_WINDOW_DAYS
    undated_labels_set_aside: int = 0  # undated labels not used because their subject has dated ones


def head_feature_names(values: list[dict], source: str, include_au: bool = True) -> list[str]:
    groups = set(HEAD_FEATURE_GROUPS) | ({"au"} if include_au and source == "openface" else set())
    present = set().union(*values) if values else set()
    return [name for name, d in FEATURE_DEFINITIONS.items() if d.group in groups and name in present]


def _skip_hints(instrument: str, window_days: int) -> dict[str, str]:
    """Why sessions were left out, each with what to do about it (for the no-data message)."""
    return {
        OUTSIDE_WINDOW: f"with labels outside the +/- {window_days}-day window (widen it with --label-window-days)",
        SESSION_UNDATED: "undated while their subject's labels are dated (process them with --recorded-at, or "
                         "give the label a session column)",
        PHQ9_WITHOUT_ITEMS: "with PHQ-9 totals without item scores, which a PHQ-8 head cannot use (train with "
                            "--instrument PHQ-9, or import the item scores)",
        NO_LABEL_FOR_INSTRUMENT: f"with no {instrument} label (check --instrument)",
        NO_LABEL: "with no label of their own (the subject's labels are linked to other sessions)",
        UNRELIABLE: "unreliable (see `fervideo features`)",
    }


def describe_skipped(skipped: dict[str, int], instrument: str, window_days: int) -> str:
    """'3 with labels outside the +/- 14-day window (...); 1 unreliable (...)', or '' when none were left out."""
    texts = _skip_hints(instrument, window_days)
    return "; ".join(f"{count} {texts.get(reason, reason)}" for reason, count in skipped.items() if count)


def build_dataset(db_factory, instrument: str = "PHQ-8", classifier: str | None = None,
                  source_file: str | None = None, include_au: bool = True,
                  window_days: int = DEFAULT_LABEL_WINDOW_DAYS, min_subjects: int = MIN_TRAIN_SUBJECTS) -> Dataset:
    """Labelled, reliable sessions of one classifier -> a feature matrix grouped by subject.

    Which label belongs to a session is `match_label`'s rule (the one every view uses); every session
    left out is counted by reason in `Dataset.skipped`."""
    from fervideo.store import PhqLabel, SessionFeatures, SessionStatus, Subject, VideoSession

    if instrument not in INSTRUMENT_MAX:
        raise InvalidArgumentError(f"--instrument must be PHQ-8 or PHQ-9, got {instrument!r}")
    check_window_days(window_days)
    with db_factory() as db:
        query = select(PhqLabel).order_by(PhqLabel.id)
        if source_file is not None:
            query = query.where(PhqLabel.source_file == source_file)
        by_subject: dict[int, list] = {}
        for label in db.scalars(query):
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
        rows, skipped, set_aside = [], dict.fromkeys((*NO_MATCH_REASONS, UNRELIABLE), 0), set()
        for session in sessions:
            if (session.classifier_name, session.classifier_sha256) != (classifier_name, classifier_sha):
                continue
            match = match_label(by_subject[session.subject_id], session, instrument, window_days)
            set_aside.update(match.set_aside)
            if not match:
                skipped[match.reason] += 1
                continue
            features = db.get(SessionFeatures, session.id)
            if features is None:
                features = store_session_features(db_factory, session.id)
            if not features.reliable:
                skipped[UNRELIABLE] += 1
                continue
            rows.append((session, match.total, features.values, codes[session.subject_id]))
    if not rows:
        raise DataFileError(f"no {instrument}-labelled reliable session to train on: "
                            + describe_skipped(skipped, instrument, window_days))
    n_subjects = len({r[3] for r in rows})
    if n_subjects < min_subjects:
        left_out = describe_skipped(skipped, instrument, window_days)
        raise DataFileError(f"only {n_subjects} subjects have a reliable {instrument}-labelled session; a head needs "
                            f"at least {min_subjects} subjects to be evaluated by subject"
                            + (f"; sessions left out: {left_out}" if left_out else ""))
    if any(skipped.values()):
        log.warning("sessions left out: %s", describe_skipped(skipped, instrument, window_days))
    source = rows[0][0].source
    names = head_feature_names([r[2] for r in rows], source, include_au)
    X = np.array([[np.nan if r[2].get(n) is None else r[2][n] for n in names] for r in rows], dtype=np.float64)
    return Dataset(X, np.array([r[1] for r in rows], dtype=np.float64),
                   np.array([r[3] for r in rows]),
                   np.array([r[0].id for r in rows]), names, instrument, source, classifier_name, classifier_sha,
                   skipped, window_days, len(set_aside))
