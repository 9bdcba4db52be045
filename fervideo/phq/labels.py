"""PHQ label import: a checked labels file (fervideo.phq.label_file) into the store, in one transaction,
all rows or none. A row that repeats a stored label is skipped; one that contradicts it is a bad row."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select

from fervideo.phq.label_file import (
    MAX_SHOWN_PROBLEMS,
    LabelFile,
    ParsedLabel,
    bad_rows_error,
    parse_label_file,
    shown,
)
from fervideo.phq.matching import calendar_day
from fervideo.utils import id_chunks

__all__ = ["MAX_SHOWN_PROBLEMS", "LabelFile", "LabelImportResult", "ParsedLabel", "import_labels",
           "parse_label_file"]

log = logging.getLogger(__name__)


@dataclass
class LabelImportResult:
    path: Path
    file_format: str  # "generic" or "daic-woz"
    rows: int
    imported: int
    already_present: int
    duplicate_rows: int = 0  # exact repeats inside the file, imported once
    warnings: list[str] = field(default_factory=list)


def _subjects(db, codes: set[str]) -> dict[str, int]:
    """Subject ids by code, created where new. Plain rows, not ORM objects, and one executemany: a
    100k-row file stays quick."""
    from fervideo.store import Subject

    def load(wanted: set[str]) -> dict[str, int]:
        ids = {}
        for chunk in id_chunks(sorted(wanted)):
            ids.update((code, id_) for code, id_ in db.execute(select(Subject.code, Subject.id)
                                                               .where(Subject.code.in_(chunk))))
        return ids

    found = load(codes)
    missing = sorted(codes - set(found))
    if missing:
        db.execute(insert(Subject), [{"code": code} for code in missing])
        found.update(load(set(missing)))
    return found


def _stored_labels(db, subject_ids: list[int]) -> dict[tuple, list]:
    """Stored labels by (subject id, session id, day, instrument): the key of one questionnaire."""
    from fervideo.store import PhqLabel

    columns = (PhqLabel.subject_id, PhqLabel.session_id, PhqLabel.administered_at, PhqLabel.instrument,
               PhqLabel.total, PhqLabel.items, PhqLabel.source_file)
    stored: dict[tuple, list] = {}
    for chunk in id_chunks(sorted(subject_ids)):
        for row in db.execute(select(*columns).where(PhqLabel.subject_id.in_(chunk)).order_by(PhqLabel.id)):
            day = None if row.administered_at is None else calendar_day(row.administered_at)
            stored.setdefault((row.subject_id, row.session_id, day, row.instrument), []).append(row)
    return stored


def _check_against_store(db, labels: list[ParsedLabel], subjects: dict[str, int], stored: dict[tuple, list],
                         problems: list[str]) -> tuple[list[ParsedLabel], int]:
    """(labels to add, how many are already stored); contradictions and foreign sessions go to `problems`."""
    from fervideo.store import VideoSession

    new, present = [], 0
    for label in labels:
        subject_id = subjects[label.subject]
        if label.session_id is not None:
            session = db.get(VideoSession, label.session_id)
            if session is None or session.subject_id != subject_id:
                problems.append(f"line {label.line}: session {label.session_id} is not a session of subject "
                                f"{shown(label.subject)}")
                continue
        _, _, day, instrument = label.key
        same = stored.get((subject_id, label.session_id, day, instrument), [])
        clash = next((row for row in same if not label.same_answers(row.total, row.items)), None)
        if clash is not None:
            problems.append(f"line {label.line}: conflicts with a stored {instrument} label of subject "
                            f"{shown(label.subject)} (total {label.total} vs {clash.total}, from "
                            f"{shown(Path(clash.source_file or '?').name, 40)}); remove one of them")
        elif same:
            present += 1
        else:
            new.append(label)
    return new, present


def import_labels(db_factory, path: str | Path) -> LabelImportResult:
    """Import a labels file in one transaction: all rows or none. Identical labels already stored are skipped;
    labels that contradict stored ones (same subject, session, day and instrument) are refused."""
    from fervideo.store import PhqLabel

    path = Path(path)
    parsed = parse_label_file(path)
    for warning in parsed.warnings:
        log.info("%s: %s", path, warning)  # returned in the result too; the CLI prints them
    problems: list[str] = []
    with db_factory() as db, db.begin():
        subjects = _subjects(db, {label.subject for label in parsed.labels})
        stored = _stored_labels(db, list(subjects.values()))
        new, present = _check_against_store(db, parsed.labels, subjects, stored, problems)
        if problems:
            # Leaving db.begin() by an exception rolls the new subjects back too.
            raise bad_rows_error(path, problems, parsed.warnings)
        if new:
            source = str(path.resolve())
            db.execute(insert(PhqLabel), [
                {"subject_id": subjects[label.subject], "session_id": label.session_id,
                 "instrument": label.instrument, "total": label.total, "items": label.items,
                 "administered_at": label.administered_at, "source_file": source} for label in new])
    return LabelImportResult(path, parsed.file_format, len(parsed.labels) + parsed.duplicate_rows, len(new), present,
                             parsed.duplicate_rows, parsed.warnings)
