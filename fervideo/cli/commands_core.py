"""Core commands: sessions, models, db upgrade, version (`process` is in commands_process.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fervideo import __version__
from fervideo.cli.app import DbOption, app, console, data_table, db_app
from fervideo.cli.arguments import shown


@app.command()
def sessions(
    subject: Annotated[str | None, typer.Option(help="Only this subject's sessions.")] = None,
    db: DbOption = None,
) -> None:
    """List stored sessions."""
    from fervideo.store import list_sessions, open_database

    factory = open_database(db)
    with factory() as session:
        rows = list_sessions(session, subject)
        console.print(_sessions_table(rows) if rows else "no sessions yet: run `fervideo process VIDEO --subject CODE`")


def _sessions_table(rows) -> Table:
    """One row per session; every stored string is shown as data (escaped), and ids, dates and numbers
    are never wrapped or cut: on a narrow terminal the free-text columns fold onto more lines instead."""
    table = data_table("id", "subject", "recorded", "video", "duration", "face %", "status", "classifier",
                       whole=("id", "recorded", "duration", "face %"))
    from fervideo.store.leases import display_status

    for row in rows:
        face = f"{row.face_frames / row.sampled_frames:.0%}" if row.sampled_frames else "-"
        status = display_status(row) + (f" ({row.error[:40]})" if row.error else "")  # expired lease: interrupted
        status += "".join(f"; {warning}" for warning in row.warnings or [])  # e.g. decode_incomplete: 45 of 50
        table.add_row(
            str(row.id), shown(row.subject.code), row.recorded_at.date().isoformat() if row.recorded_at else "-",
            shown(Path(row.video_path).name), f"{row.duration_s:.1f} s" if row.duration_s else "-", face,
            shown(status), shown(row.classifier_name or "-"),
        )
    return table


@app.command()
def models() -> None:
    """List the bundled, cached and known emotion models."""
    from fervideo.emotion import list_models

    table = data_table("name", "kind", "source", "available offline", whole=("name", "kind"))
    for entry in list_models():
        table.add_row(shown(entry["name"]), entry["kind"], shown(entry["source"]),
                      "yes" if entry.get("path") else "no: needs one download")
    console.print(table)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create the database or bring its schema to the latest version."""
    from fervideo.store import make_engine, schema_revisions, upgrade_database

    engine = make_engine(db)
    before, head = schema_revisions(engine)
    upgrade_database(engine)
    console.print(f"database at {head}" + (f" (was {before})" if before != head else " (already current)"))
    from fervideo.phq.head_store import import_file_heads_on  # PHQ heads saved as files by older versions

    for name in import_file_heads_on(engine):
        console.print(f"PHQ head {name!r} imported into the database from its files", markup=False)


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(__version__)
