"""PHQ label files: read, check and parse questionnaire totals (generic CSV and DAIC-WOZ) before anything
is stored. Every bad row is collected with its line number; docs/phq.md ("Labels") lists the checks."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

from fervideo.errors import DataFileError, LabelFileError
from fervideo.phq.bands import DAIC_ITEM_COLUMNS, INSTRUMENT_MAX, PHQ_ITEMS
from fervideo.phq.matching import calendar_day
from fervideo.subjects import subject_code_problem

MAX_SHOWN_PROBLEMS = 50  # bad rows a command prints; the rest are counted
GENERIC_COLUMNS = ("subject", "session", "instrument", "total", "administered_at")
DAIC_COLUMNS = ("Participant_ID", "PHQ8_Binary", "PHQ8_Score", "PHQ_Binary", "PHQ_Score", "Gender",
                *DAIC_ITEM_COLUMNS)


@dataclass
class ParsedLabel:
    line: int
    subject: str
    session_id: int | None
    instrument: str
    total: int
    items: dict[str, int] | None
    administered_at: dt.datetime | None  # naive UTC, as the store keeps timestamps

    @property
    def key(self) -> tuple:
        """Two labels with one key describe the same questionnaire: subject, session, day and instrument."""
        day = None if self.administered_at is None else calendar_day(self.administered_at)
        return self.subject, self.session_id, day, self.instrument

    def same_answers(self, total: int, items: dict | None) -> bool:
        """Equal totals, and equal items where both give them."""
        return total == self.total and (items is None or self.items is None or dict(items) == self.items)


@dataclass
class LabelFile:
    path: Path
    file_format: str  # "generic" or "daic-woz"
    labels: list[ParsedLabel]
    warnings: list[str] = field(default_factory=list)
    duplicate_rows: int = 0  # rows repeating an earlier row of the file exactly (imported once)


def shown(text: str, limit: int = 60) -> str:
    """A user's string inside a message: quoted, escapes visible (no control sequence reaches a terminal)."""
    quoted = ascii(text)
    return quoted if len(quoted) <= limit else quoted[:limit - 4] + "...'"


def bad_rows_error(path: Path, problems: list[str], warnings: list[str] | None = None) -> LabelFileError:
    """One line naming the first few bad rows and counting the rest; `problems` keeps every one, and
    `warnings` (unknown columns) travel with it, as they may explain the bad rows."""
    first = "; ".join(problems[:3])
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    error = LabelFileError(f"{path}: {len(problems)} bad row(s), nothing imported: {first}{more}", problems)
    error.warnings = list(warnings or [])
    return error


def _parse_int(value: str | None, what: str) -> int:
    text = (value or "").strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what} {shown(text)} is not a number") from None
    if not number.is_integer():
        raise ValueError(f"{what} {shown(text)} is not a whole number")
    return int(number)


def _parse_when(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"administered_at {shown(text)} is not an ISO date (YYYY-MM-DD)") from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    if when > dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1):
        raise ValueError(f"administered_at {text} is in the future")
    return when


def _check_subject(code: str) -> str:
    problem = subject_code_problem(code)
    if problem:
        raise ValueError(f"{problem} ({shown(code)})")
    return code


def _check_scores(instrument: str, total: int, items: dict[str, int] | None) -> None:
    if instrument not in INSTRUMENT_MAX:
        raise ValueError(f"instrument {shown(instrument)} is not PHQ-8 or PHQ-9")
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


def _parse_generic_row(row: dict, items_map: dict[str, str]) -> tuple:
    subject = _check_subject((row.get("subject") or "").strip())
    session_text = (row.get("session") or "").strip()
    session_id = _parse_int(session_text, "session") if session_text else None
    instrument = (row.get("instrument") or "").strip().upper().replace("PHQ8", "PHQ-8").replace("PHQ9", "PHQ-9")
    total = _parse_int(row.get("total"), "total")
    items = {item: _parse_int(row[column], f"item {item}") for column, item in items_map.items()
             if (row.get(column) or "").strip()}
    when = _parse_when((row.get("administered_at") or "").strip())
    return subject, session_id, instrument, total, items or None, when


def _parse_daic_row(row: dict, total_column: str) -> tuple:
    # The participant id is a subject code, kept as text: "007" stays "007" (never read as a number).
    subject = _check_subject((row.get("Participant_ID") or "").strip())
    total = _parse_int(row.get(total_column), total_column)
    items = {item: _parse_int(row[column], column) for column, item in DAIC_ITEM_COLUMNS.items()
             if column in row and (row.get(column) or "").strip()}
    return subject, None, "PHQ-8", total, items or None, None


def _separator_hint(first_line: str) -> str:
    for separator, name in ((";", "semicolon"), ("\t", "tab")):
        if first_line.count(separator) > first_line.count(","):
            return f"; the header looks {name}-separated: save the file with commas as separators"
    return ""


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not UTF-8 text; save it as CSV (UTF-8)") from None
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise DataFileError(f"{path}: holds NUL bytes; not a CSV text file")
    if not text.strip():
        raise DataFileError(f"{path}: empty file; need a header and label rows")
    return text


def _file_format(path: Path, header: list[str], first_line: str) -> tuple[str, str | None, dict[str, str]]:
    """(format, DAIC-WOZ total column, generic item columns) from the header, or a DataFileError."""
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataFileError(f"{path}: column {shown(repeated[0])} appears more than once in the header")
    if "Participant_ID" in header:
        total_column = next((c for c in ("PHQ8_Score", "PHQ_Score") if c in header), None)
        if total_column is None:
            raise DataFileError(f"{path}: a DAIC-WOZ file needs a PHQ8_Score or PHQ_Score column")
        return "daic-woz", total_column, {}
    if {"subject", "instrument", "total"} <= set(header):
        return "generic", None, _generic_item_columns(header)
    raise DataFileError(f"{path}: unknown labels format (header {shown(first_line, 80)}); need columns subject, "
                        "instrument, total (generic) or Participant_ID, PHQ8_Score (DAIC-WOZ)"
                        + _separator_hint(first_line))


def parse_label_file(path: str | Path) -> LabelFile:
    """Parse and check a labels CSV; raise LabelFileError listing every bad row (line numbers are 1-based,
    the header is line 1). Exact repeats of a row are kept once; conflicting repeats are bad rows."""
    path = Path(path)
    text = _read_text(path)
    first_line = text.splitlines()[0]
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    file_format, total_column, items_map = _file_format(path, header, first_line)
    known = set(DAIC_COLUMNS) if file_format == "daic-woz" else {*GENERIC_COLUMNS, *items_map}
    unknown = [name for name in header if name not in known]
    result = LabelFile(path, file_format, [])
    if unknown:
        result.warnings.append("unknown column(s) ignored: " + ", ".join(shown(name, 40) for name in unknown[:10])
                               + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    problems: list[str] = []
    seen: dict[tuple, ParsedLabel] = {}
    try:
        for row in reader:
            line = reader.line_num
            extra = row.pop(None, None)
            if not any((value or "").strip() for value in row.values() if isinstance(value, str)) and not extra:
                continue
            try:
                if extra:
                    raise ValueError(f"{len(header) + len(extra)} fields, the header has {len(header)} (quote values "
                                     "that hold a comma)")
                fields = (_parse_daic_row(row, total_column) if file_format == "daic-woz"
                          else _parse_generic_row(row, items_map))
                _check_scores(fields[2], fields[3], fields[4])
            except ValueError as exc:
                problems.append(f"line {line}: {exc}")
                continue
            label = ParsedLabel(line, *fields)
            earlier = seen.get(label.key)
            if earlier is None:
                seen[label.key] = label
                result.labels.append(label)
            elif earlier.same_answers(label.total, label.items):
                result.duplicate_rows += 1
            else:
                problems.append(f"line {line}: conflicts with line {earlier.line} (subject {shown(label.subject)}, "
                                f"same session, date and {label.instrument}, total {label.total} vs {earlier.total})")
    except csv.Error as exc:
        raise DataFileError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    if problems:
        raise bad_rows_error(path, problems, result.warnings)
    if not result.labels:
        raise DataFileError(f"{path}: no label rows")
    return result
