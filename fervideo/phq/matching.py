"""Which recorded PHQ label belongs to a session: the one rule that training, every view and every export
use (`match_label`, and `recorded_labels` for a batch of sessions). See docs/phq.md, "Labels".

The PHQ asks about the last two weeks, so a dated label belongs to a dated session only within a window
(default +/- 14 calendar days). The rule, in order:

1. Labels linked to another session never belong to this one.
2. Labels linked to this session, if any usable one exists, are the only candidates; else the subject's
   unlinked (subject-level) labels are.
3. If some candidates are dated, only the dated ones count (an undated label is never preferred over a
   dated one, and dates are never ignored because another label has none):
   - session dated: the one administered closest to it within the window, else no label
     ("outside the window");
   - session undated: a linked label still belongs (the link places it), the latest administered;
     subject-level dated labels cannot be placed ("session undated").
4. Only undated candidates: one of them (DAIC-WOZ distributes one undated label per participant; the
   import rejects two undated labels of one subject and instrument with different totals).
Ties go to a label of the requested instrument itself (not converted), then to the latest imported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from fervideo.errors import InvalidArgumentError
from fervideo.utils import id_chunks

__all__ = ["DEFAULT_LABEL_WINDOW_DAYS", "NO_MATCH_REASONS", "LabelMatch", "label_total", "labels_by_subject",
           "match_label", "recorded_labels"]

DEFAULT_LABEL_WINDOW_DAYS = 14

# Why no label belongs to a session (the keys of Dataset.skipped and of `phq train`'s report).
NO_LABEL = "no label"
NO_LABEL_FOR_INSTRUMENT = "no label for the instrument"
PHQ9_WITHOUT_ITEMS = "only PHQ-9 totals without item scores"
OUTSIDE_WINDOW = "labels outside the window"
SESSION_UNDATED = "session undated, labels dated"
NO_MATCH_REASONS = (NO_LABEL, NO_LABEL_FOR_INSTRUMENT, PHQ9_WITHOUT_ITEMS, OUTSIDE_WINDOW, SESSION_UNDATED)


@dataclass(frozen=True)
class LabelMatch:
    """The label that belongs to a session (`label` is the PhqLabel row), or why none does (`reason`)."""

    label: Any | None = None
    total: int | None = None  # in the requested instrument (PHQ-9 -> PHQ-8 by dropping item 9)
    instrument: str | None = None
    days_apart: int | None = None  # calendar days between administration and recording, when both dated
    reason: str | None = None
    set_aside: tuple[int, ...] = field(default=())  # undated candidates not used because dated ones exist

    @property
    def administered_at(self) -> dt.datetime | None:
        return None if self.label is None else self.label.administered_at

    @property
    def subject_level(self) -> bool:
        return self.label is not None and self.label.session_id is None

    def __bool__(self) -> bool:
        return self.label is not None


def check_window_days(window_days: int) -> int:
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 0:
        raise InvalidArgumentError(f"--label-window-days must be a whole number of days >= 0, got {window_days!r}")
    return window_days


def label_total(label, instrument: str | None) -> int | None:
    """The label's total in `instrument` (None: its own), or None when it cannot be had."""
    if instrument is None or label.instrument == instrument:
        return label.total
    if instrument == "PHQ-8" and label.items and len(label.items) == 9:
        return label.total - label.items["self_harm"]  # PHQ-9 -> PHQ-8 by dropping item 9
    return None


def calendar_day(value: dt.datetime) -> dt.date:
    """The UTC calendar day of a timestamp (naive timestamps are taken as UTC, as the store keeps them)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.date()


def _no_match(labels: list, instrument: str | None) -> str:
    if not labels:
        return NO_LABEL
    if instrument == "PHQ-8" and any(label.instrument == "PHQ-9" for label in labels):
        return PHQ9_WITHOUT_ITEMS
    return NO_LABEL_FOR_INSTRUMENT


def match_label(labels: Iterable, session, instrument: str | None = None,
                window_days: int = DEFAULT_LABEL_WINDOW_DAYS) -> LabelMatch:
    """The recorded label of `session` among its subject's `labels` (rule in the module docstring)."""
    mine = [label for label in labels if label.session_id in (None, session.id)]
    usable = [(label, total) for label in mine if (total := label_total(label, instrument)) is not None]
    if not usable:
        return LabelMatch(reason=_no_match(mine, instrument))
    linked = [pair for pair in usable if pair[0].session_id == session.id]
    candidates = linked or usable
    dated = [pair for pair in candidates if pair[0].administered_at is not None]
    set_aside = tuple(sorted(pair[0].id for pair in candidates if pair[0].administered_at is None)) if dated else ()

    def own_instrument(pair) -> bool:
        return instrument is None or pair[0].instrument == instrument

    if not dated:
        chosen = max(candidates, key=lambda pair: (own_instrument(pair), pair[0].id))
        return LabelMatch(chosen[0], chosen[1], instrument or chosen[0].instrument)
    if session.recorded_at is None:
        if not linked:
            return LabelMatch(reason=SESSION_UNDATED, set_aside=set_aside)
        chosen = max(dated, key=lambda pair: (pair[0].administered_at, own_instrument(pair), pair[0].id))
        return LabelMatch(chosen[0], chosen[1], instrument or chosen[0].instrument, set_aside=set_aside)
    day = calendar_day(session.recorded_at)
    apart = {id(pair): abs((calendar_day(pair[0].administered_at) - day).days) for pair in dated}
    within = [pair for pair in dated if apart[id(pair)] <= window_days]
    if not within:
        return LabelMatch(reason=OUTSIDE_WINDOW, set_aside=set_aside)
    chosen = min(within, key=lambda pair: (apart[id(pair)], not own_instrument(pair), -pair[0].id))
    return LabelMatch(chosen[0], chosen[1], instrument or chosen[0].instrument, apart[id(chosen)],
                      set_aside=set_aside)


def labels_by_subject(db, subject_ids: Iterable[int]) -> dict[int, list]:
    """Every stored PHQ label of these subjects, grouped by subject id (in id order)."""
    from fervideo.store import PhqLabel

    found: dict[int, list] = {}
    for chunk in id_chunks(sorted(set(subject_ids))):
        for label in db.scalars(select(PhqLabel).where(PhqLabel.subject_id.in_(chunk)).order_by(PhqLabel.id)):
            found.setdefault(label.subject_id, []).append(label)
    return found


def recorded_labels(db, sessions: Sequence, instrument: str | None = None,
                    window_days: int = DEFAULT_LABEL_WINDOW_DAYS) -> dict[int, LabelMatch]:
    """Session id -> the matched label, for those of `sessions` (VideoSession rows, or ids) that have one.

    What every view and export shows as a session's recorded PHQ; subject-level labels included."""
    from fervideo.store import VideoSession

    rows = list(sessions)
    if rows and isinstance(rows[0], int):
        ids, rows = rows, []
        for chunk in id_chunks(sorted(set(ids))):
            rows.extend(db.scalars(select(VideoSession).where(VideoSession.id.in_(chunk))))
    labels = labels_by_subject(db, (row.subject_id for row in rows))
    matches = {row.id: match_label(labels.get(row.subject_id, []), row, instrument, window_days) for row in rows}
    return {session_id: match for session_id, match in matches.items() if match}
