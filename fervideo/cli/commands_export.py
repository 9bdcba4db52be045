"""`fervideo export`: session summaries as tables (csv, parquet, json) or reports (html, pdf)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from fervideo.cli.app import CountColumn, DbOption, app, console, err_console
from fervideo.cli.arguments import output_folder, shown
from fervideo.errors import ExportError


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"
    json = "json"
    html = "html"
    pdf = "pdf"


def _export_folder(value: Path) -> Path:
    """--out checked while parsing; a folder that cannot be written is an export failure (exit 5), as the
    library's own refusals are."""
    try:
        return output_folder(value)
    except typer.BadParameter as error:
        raise ExportError(f"--out {error.message}") from None


@app.command()
def export(
    session: Annotated[int | None, typer.Argument(help="Session id (see `fervideo sessions`).")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Every finished session of this subject code.")] = None,
    all_sessions: Annotated[bool, typer.Option("--all", help="Every finished session in the database.")] = False,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="csv/parquet: cohort table + per-frame tables; json: summary per session (schema v1); html/pdf: report per session.")] = ExportFormat.csv,
    out: Annotated[Path, typer.Option("--out", "-o", callback=_export_folder, help="Output folder (created if missing); nothing is written outside it.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
    frames: Annotated[bool, typer.Option("--frames/--no-frames", help="With csv/parquet/json, also write each session's per-frame table.")] = True,
    db: DbOption = None,
) -> None:
    """Export session summaries: tables for statistics or a report for the clinical record."""
    from fervideo.export import export_sessions, select_session_ids
    from fervideo.store import open_database

    factory = open_database(db)
    session_ids = select_session_ids(factory, session_id=session, subject=subject, all_sessions=all_sessions)
    with Progress(TextColumn("exporting"), BarColumn(), CountColumn("reading"), TimeRemainingColumn(),
                  console=err_console, transient=True, disable=not err_console.is_interactive) as bar:
        task = bar.add_task("export", total=None)
        written = export_sessions(
            factory, session_ids, fmt.value, out, force=force, frames=frames,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"wrote {len(written)} file{'s' if len(written) != 1 else ''} for {len(session_ids)} "
                  f"session{'s' if len(session_ids) != 1 else ''} to {shown(out.resolve())}", highlight=False)
