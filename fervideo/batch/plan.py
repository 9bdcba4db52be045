"""Planning a batch: which videos, for which subject, recorded when. From paths on the command line
(files, folders searched recursively, glob patterns) or a manifest CSV; every problem is found and
reported, with the manifest's line numbers, before any video is processed.
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
from dataclasses import dataclass
from pathlib import Path

from fervideo.errors import DataFileError, InputVideoError
from fervideo.subjects import subject_code_problem, validate_subject_code

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
MANIFEST_COLUMNS = ("path", "subject", "recorded_at")
MANIFEST_OPTIONAL_COLUMNS = ("session",)
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class WorkItem:
    """One video to process. `label` is the manifest's optional session label (shown, not stored)."""

    path: Path
    subject: str
    recorded_at: dt.datetime | None = None
    label: str | None = None
    source_line: int | None = None  # the manifest line it came from

    @property
    def name(self) -> str:
        return self.label or self.path.name


class ManifestError(DataFileError):
    """A manifest with bad rows; `problems` lists every one ("line N: what is wrong")."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def _videos_in_folder(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for videos, glob patterns expanded (sorted, each
    file once). A name that matches nothing raises InputVideoError naming it."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            videos = _videos_in_folder(path)
            if not videos:
                raise InputVideoError(f"{path} is a folder with no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            found.extend(videos)
        elif not path.exists() and GLOB_CHARACTERS & set(str(raw)):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            videos = [m for m in matches if m.is_file()]
            if not videos:
                raise InputVideoError(f"no file matches {str(raw)!r}")
            found.extend(videos)
        else:
            found.append(path)  # missing or unreadable files fail in the worker, with the usual message
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve() if path.exists() else path, None)
    return list(unique)


def plan_from_paths(paths: list[str | Path], subject: str, recorded_at: dt.datetime | None = None) -> list[WorkItem]:
    validate_subject_code(subject)
    return [WorkItem(path, subject, recorded_at) for path in expand_paths(paths)]


def parse_recorded_at(text: str) -> dt.datetime | None:
    """An ISO date or date-time (empty = unknown); a time zone is converted to naive UTC, as stored."""
    text = text.strip()
    if not text:
        return None
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _manifest_row(row: dict, line: int, folder: Path) -> tuple[WorkItem | None, list[str]]:
    problems = []
    raw_path = (row.get("path") or "").strip()
    path = None
    if not raw_path:
        problems.append(f"line {line}: the path is empty")
    else:
        path = Path(raw_path).expanduser()
        path = path if path.is_absolute() else folder / path
        if not path.exists():
            problems.append(f"line {line}: {raw_path!r}: no such file")
        elif path.is_dir():
            problems.append(f"line {line}: {raw_path!r} is a folder; give a video file")
    subject = row.get("subject") or ""
    if problem := subject_code_problem(subject):
        problems.append(f"line {line}: {problem} ({ascii(subject)[:80]})")
    recorded_at = None
    try:
        recorded_at = parse_recorded_at(row.get("recorded_at") or "")
    except ValueError:
        problems.append(f"line {line}: recorded_at {ascii(row.get('recorded_at'))[:60]} is not an ISO date "
                        "(YYYY-MM-DD or YYYY-MM-DDTHH:MM)")
    label = (row.get("session") or "").strip() or None
    if problems:
        return None, problems
    return WorkItem(path, subject, recorded_at, label, line), []


def read_manifest(file: str | Path) -> list[WorkItem]:
    """Read a manifest CSV (columns path, subject, recorded_at[, session]; relative paths are taken from
    the manifest's folder). Raises ManifestError listing every bad row with its line number."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest {file}: {getattr(exc, 'strerror', None) or exc}") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [name for name in MANIFEST_COLUMNS if name not in header]
    if missing:
        raise ManifestError(f"the manifest {file} lacks the column(s) {', '.join(missing)}; "
                            f"its first line must name {', '.join(MANIFEST_COLUMNS)}[, session]")
    items, problems, seen = [], [], {}
    for row in reader:
        line = reader.line_num
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue  # a blank line
        if None in row:
            problems.append(f"line {line}: more cells than the header has columns")
            continue
        item, row_problems = _manifest_row(row, line, file.parent)
        problems.extend(row_problems)
        if item is not None:
            key = (item.path.resolve(), item.subject)
            if key in seen:
                problems.append(f"line {line}: the same video and subject as line {seen[key]}")
            else:
                seen[key] = line
                items.append(item)
    if problems:
        raise ManifestError(f"the manifest {file} has {len(problems)} bad row(s); nothing was processed", problems)
    if not items:
        raise ManifestError(f"the manifest {file} lists no videos")
    return items
