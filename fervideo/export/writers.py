"""Writing exports: one function per file kind, all through the atomic writer, and `export_sessions`,
which plans every output path first (so a refusal to overwrite happens before any work) and then
writes them one by one."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from fervideo.errors import ExportError, InvalidArgumentError, NotFoundError
from fervideo.export.cohort import cohort_table
from fervideo.export.csv_cells import table_to_csv
from fervideo.export.files import atomic_write, output_path, sanitise_name, write_bytes, write_text
from fervideo.export.report import render_report_html, render_report_pdf
from fervideo.export.summary import DbLike, frames_table, session_summary, with_session
from fervideo.store.models import SessionStatus, Subject, VideoSession
from fervideo.utils import id_chunks

log = logging.getLogger(__name__)

TABLE_FORMATS = ("csv", "parquet", "json")
REPORT_FORMATS = ("html", "pdf")
FORMATS = (*TABLE_FORMATS, *REPORT_FORMATS)
SUMMARY_SCHEMA = "session_summary.v1.json"
MAX_SUBJECT_IN_NAME = 64
Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------ writers
def write_table(table: pd.DataFrame, path: Path, fmt: str, force: bool = False) -> Path:
    """A DataFrame as CSV (UTF-8, ISO dates, no index), Parquet (pyarrow) or JSON (records)."""
    writers: dict[str, Callable[[Path], Any]] = {
        "csv": lambda temp: table_to_csv(table, temp, date_format="%Y-%m-%dT%H:%M:%S.%f"),
        "parquet": lambda temp: table.to_parquet(temp, index=False, engine="pyarrow"),
        "json": lambda temp: table.to_json(temp, orient="records", date_format="iso", double_precision=15),
    }
    if fmt not in writers:
        raise InvalidArgumentError(f"tables are written as {', '.join(writers)}, not {fmt!r}")
    return atomic_write(path, writers[fmt], force)


def summary_to_json(summary: dict[str, Any]) -> str:
    """The summary as JSON text; NaN is not valid JSON, so session_summary has already made it null."""
    return json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _flatten(prefix: str, value: Any, rows: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    elif isinstance(value, list) and value and isinstance(value[0], dict | list):
        for number, inner in enumerate(value):
            _flatten(f"{prefix}.{number}", inner, rows)
    else:  # a scalar, or a list of scalars kept whole as JSON text
        rows.append((prefix, json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value))


def summary_to_csv(summary: dict[str, Any]) -> str:
    """The summary as a two-column CSV (field, value): nested keys joined with dots (`phq.head.name`),
    list items numbered (`data_quality.gaps.0.start_s`), lists of plain values as JSON text, null empty."""
    rows: list[tuple[str, Any]] = []
    _flatten("", summary, rows)
    return table_to_csv(pd.DataFrame(rows, columns=["field", "value"]))


def summary_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) the summary follows; see docs/export.md."""
    return json.loads(resources.files("fervideo").joinpath("schemas", SUMMARY_SCHEMA).read_text(encoding="utf-8"))


def validate_summary(summary: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `summary` does not follow the v1 schema."""
    import jsonschema

    jsonschema.validate(summary, summary_schema(), cls=jsonschema.Draft202012Validator)


def write_summary_json(summary: dict[str, Any], path: Path, force: bool = False) -> Path:
    """Validate against the v1 schema (a mismatch is a bug, so it raises), then write atomically."""
    validate_summary(summary)
    return write_text(path, summary_to_json(summary), force)


def write_report(summary: dict[str, Any], frames: pd.DataFrame, path: Path, fmt: str, force: bool = False) -> Path:
    if fmt == "html":
        return write_text(path, render_report_html(summary, frames), force)
    if fmt == "pdf":
        return write_bytes(path, render_report_pdf(summary, frames), force)
    raise InvalidArgumentError(f"reports are written as html or pdf, not {fmt!r}")


# ---------------------------------------------------------------------------------------- selection
def select_session_ids(db: DbLike, session_id: int | None = None, subject: str | None = None,
                       all_sessions: bool = False) -> list[int]:
    """The finished sessions one of SESSION, --subject or --all names (exactly one must be given)."""
    if sum((session_id is not None, subject is not None, all_sessions)) != 1:
        raise InvalidArgumentError("name exactly one of SESSION, --subject ID or --all")
    with with_session(db) as session:
        if session_id is not None:
            row = session.get(VideoSession, session_id)
            if row is None:
                raise NotFoundError(f"no session {session_id}; `fervideo sessions` lists them")
            if row.status != SessionStatus.DONE:
                raise ExportError(f"session {session_id} is {row.status}; only finished sessions are exported")
            return [session_id]
        statement = select(VideoSession.id).where(VideoSession.status == SessionStatus.DONE).order_by(VideoSession.id)
        if subject is not None:
            statement = statement.join(Subject).where(Subject.code == subject)
        ids = list(session.scalars(statement))
    if not ids:
        raise ExportError("no finished sessions match; `fervideo sessions` lists them")
    return ids


# ------------------------------------------------------------------------------------------- export
@dataclass(frozen=True)
class PlannedFile:
    path: Path
    kind: str  # "cohort", "frames", "summary" or "report"
    session_id: int | None


def _stems(db: DbLike, session_ids: Sequence[int]) -> dict[int, str]:
    codes: dict[int, str] = {}
    with with_session(db) as session:
        for chunk in id_chunks(list(session_ids)):
            statement = select(VideoSession.id, Subject.code).join(Subject).where(VideoSession.id.in_(chunk))
            codes.update(session.execute(statement).all())
    # The code is cut so that the session id and the extension always survive in the file name.
    return {sid: f"{sanitise_name(codes[sid])[:MAX_SUBJECT_IN_NAME]}_session{sid}" for sid in session_ids}


def plan_export(db: DbLike, session_ids: Sequence[int], fmt: str, out_dir: Path,
                frames: bool = True) -> list[PlannedFile]:
    """Every file an export will write, with sanitised names inside `out_dir`."""
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    stems = _stems(db, session_ids)
    planned: list[PlannedFile] = []
    if fmt in ("csv", "parquet"):
        planned.append(PlannedFile(output_path(out_dir, f"cohort.{fmt}"), "cohort", None))
    for sid in session_ids:
        if fmt == "json":
            planned.append(PlannedFile(output_path(out_dir, f"{stems[sid]}.summary.json"), "summary", sid))
        if fmt in REPORT_FORMATS:
            planned.append(PlannedFile(output_path(out_dir, f"{stems[sid]}.report.{fmt}"), "report", sid))
        if fmt in TABLE_FORMATS and frames:
            planned.append(PlannedFile(output_path(out_dir, "frames", f"{stems[sid]}.frames.{fmt}"), "frames", sid))
    return planned


def _write_planned(db: DbLike, item: PlannedFile, fmt: str, session_ids: Sequence[int], force: bool) -> None:
    if item.kind == "cohort":
        write_table(cohort_table(db, session_ids=session_ids), item.path, fmt, force)
    elif item.kind == "frames":
        write_table(frames_table(db, item.session_id), item.path, fmt, force)
    elif item.kind == "summary":
        write_summary_json(session_summary(db, item.session_id), item.path, force)
    else:
        frames = frames_table(db, item.session_id)
        write_report(session_summary(db, item.session_id, frames=frames), frames, item.path, fmt, force)


def export_sessions(db: DbLike, session_ids: Sequence[int], fmt: str, out_dir: Path, force: bool = False,
                    frames: bool = True, progress: Progress | None = None) -> list[Path]:
    """Write the exports of `session_ids` in `fmt` under `out_dir`; returns the paths written.

    Refuses (ExportError) before writing anything if a planned file exists and `force` is false.
    Each file appears complete or not at all; after a failure, the files already finished remain.
    """
    planned = plan_export(db, session_ids, fmt, out_dir, frames)
    existing = [item.path for item in planned if item.path.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more planned files)" if len(existing) > 1 else ""
        raise ExportError(f"{existing[0]} exists{more}; use --force to overwrite")
    written = []
    for done, item in enumerate(planned, start=1):
        log.debug("exporting %s of session %s", item.kind, item.session_id)  # ids only: no subject codes in logs
        _write_planned(db, item, fmt, session_ids, force)
        written.append(item.path)
        if progress is not None:
            progress(done, len(planned))
    return written
