"""PHQ label files: parse, check and import questionnaire totals (generic CSV and DAIC-WOZ)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from fervideo.errors import DataFileError, LabelFileError
from fervideo.phq.bands import DAIC_ITEM_COLUMNS, INSTRUMENT_MAX, PHQ_ITEMS

log = logging.getLogger(__name__)

# ============================================================================================ labels
@dataclass
class ParsedLabel:
    line: int
    subject: str
    session_id: int | None
    instrument: str
    total: int
    items: dict[str, int] | None
    administered_at: dt.datetime | None


@dataclass
class LabelImportResult:
    path: Path
    file_format: str  # "generic" or "daic-woz"
    rows: int
    imported: int
    already_present: int


def _parse_int(value: str | None, what: str) -> int:
    text = (value or "").strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not number.is_integer():
        raise ValueError(f"{what} {text!r} is not a whole number")
    return int(number)


def _check_scores(instrument: str, total: int, items: dict[str, int] | None) -> None:
    if instrument not in INSTRUMENT_MAX:
        raise ValueError(f"instrument {instrument!r} is not PHQ-8 or PHQ-9")
    top = INSTRUMENT_MAX[instrument]
    if not 0 <= total <= top:
        raise ValueError(f"total {total} outside {instrument}'s range 0-{top}")
    if items:
        for name, score in items.items():
            if not 0 <= score <= 3:
                raise ValueError(f"item {name} = {score} outside 0-3")
        expected = len(PHQ_ITEMS) - (instrument == "PHQ-8")
        if instrument == "PHQ-8" and "self_harm" in items:
            raise ValueError("a PHQ-8 row has an item 9 score")
        if len(items) == expected and sum(items.values()) != total:
            raise ValueError(f"total {total} differs from the item sum {sum(items.values())}")


def _generic_item_columns(header: list[str]) -> dict[str, str]:
    """Item columns of a generic file: item1..item9 (or phq1..phq9, or the item names)."""
    found = {}
    for column in header:
        key = column.strip().lower().replace("_", "")
        for number, item in enumerate(PHQ_ITEMS, start=1):
            if key in (f"item{number}", f"phq{number}", item.replace("_", "")):
                found[column] = item
    return found


def _parse_generic_row(row: dict, items_map: dict[str, str]) -> tuple[str, int | None, str, int, dict | None,
                                                                       dt.datetime | None]:
    subject = (row.get("subject") or "").strip()
    if not subject:
        raise ValueError("subject is empty")
    session_text = (row.get("session") or "").strip()
    session_id = _parse_int(session_text, "session") if session_text else None
    instrument = (row.get("instrument") or "").strip().upper().replace("PHQ8", "PHQ-8").replace("PHQ9", "PHQ-9")
    total = _parse_int(row.get("total"), "total")
    items = {item: _parse_int(row[column], f"item {item}") for column, item in items_map.items()
             if (row.get(column) or "").strip()}
    when_text = (row.get("administered_at") or "").strip()
    try:
        when = dt.datetime.fromisoformat(when_text) if when_text else None
    except ValueError:
        raise ValueError(f"administered_at {when_text!r} is not an ISO date") from None
    return subject, session_id, instrument, total, items or None, when


def _parse_daic_row(row: dict, total_column: str) -> tuple[str, None, str, int, dict | None, None]:
    subject = str(_parse_int(row.get("Participant_ID"), "Participant_ID"))
    total = _parse_int(row.get(total_column), total_column)
    items = {item: _parse_int(row[column], column) for column, item in DAIC_ITEM_COLUMNS.items()
             if column in row and (row.get(column) or "").strip()}
    return subject, None, "PHQ-8", total, items or None, None


def parse_label_file(path: Path) -> tuple[str, list[ParsedLabel]]:
    """Parse and check a labels CSV; raise LabelFileError listing every bad row (line numbers are 1-based)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if "Participant_ID" in header:
        total_column = next((c for c in ("PHQ8_Score", "PHQ_Score") if c in header), None)
        if total_column is None:
            raise DataFileError(f"{path}: a DAIC-WOZ file needs a PHQ8_Score or PHQ_Score column")
        file_format = "daic-woz"
    elif {"subject", "instrument", "total"} <= set(header):
        file_format, items_map = "generic", _generic_item_columns(header)
    else:
        raise DataFileError(f"{path}: unknown labels format; need columns subject, instrument, total "
                            "(generic) or Participant_ID, PHQ8_Score (DAIC-WOZ)")
    labels, problems = [], []
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            fields = (_parse_daic_row(row, total_column) if file_format == "daic-woz"
                      else _parse_generic_row(row, items_map))
            _check_scores(fields[2], fields[3], fields[4])
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        labels.append(ParsedLabel(line, *fields))
    if problems:
        raise LabelFileError(f"{path}: {len(problems)} bad row(s), nothing imported: " + "; ".join(problems),
                             problems)
    if not labels:
        raise DataFileError(f"{path}: no label rows")
    return file_format, labels


def import_labels(db_factory, path: str | Path) -> LabelImportResult:
    """Import a labels file in one transaction: all rows or none. Identical rows already stored are skipped."""
    from fervideo.store import PhqLabel, VideoSession, get_or_create_subject

    path = Path(path)
    file_format, labels = parse_label_file(path)
    problems, imported, present = [], 0, 0
    with db_factory() as db, db.begin():
        for label in labels:
            subject = get_or_create_subject(db, label.subject)
            if label.session_id is not None:
                session = db.get(VideoSession, label.session_id)
                if session is None or session.subject_id != subject.id:
                    problems.append(f"line {label.line}: session {label.session_id} is not a session of "
                                    f"subject {label.subject}")
                    continue
            duplicate = db.scalar(select(PhqLabel.id).where(
                PhqLabel.subject_id == subject.id, PhqLabel.session_id.is_(None) if label.session_id is None
                else PhqLabel.session_id == label.session_id, PhqLabel.instrument == label.instrument,
                PhqLabel.total == label.total, PhqLabel.administered_at.is_(None) if label.administered_at is None
                else PhqLabel.administered_at == label.administered_at))
            if duplicate is not None:
                present += 1
                continue
            db.add(PhqLabel(subject_id=subject.id, session_id=label.session_id, instrument=label.instrument,
                            total=label.total, items=label.items, administered_at=label.administered_at,
                            source_file=str(path.resolve())))
            imported += 1
        if problems:
            db.rollback()
            raise LabelFileError(f"{path}: {len(problems)} bad row(s), nothing imported: " + "; ".join(problems),
                                 problems)
    return LabelImportResult(path, file_format, len(labels), imported, present)
