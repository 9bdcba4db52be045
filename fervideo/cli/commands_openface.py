"""`fervideo import-openface FILE|DIR --subject ID`: OpenFace 2.x CSVs as sessions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import track

from fervideo.cli.app import DbOption, ItemErrors, app, console, err_console


@app.command("import-openface")
def import_openface(
    path: Annotated[Path, typer.Argument(help="An OpenFace FeatureExtraction CSV, or a directory of them.")],
    subject: Annotated[str, typer.Option("--subject", "-s", help="Pseudonymous subject code (never a name).")],
    session_label: Annotated[str | None, typer.Option(help="A label kept with the session (e.g. 'baseline').")] = None,
    recorded_at: Annotated[dt.datetime | None, typer.Option(help="When the session was recorded.")] = None,
    db: DbOption = None,
) -> None:
    """Import OpenFace CSVs: emotion distributions from AU prototype rules ("OpenFace AU rules")."""
    from fervideo.openface import import_openface_csv, openface_files
    from fervideo.store import open_database

    factory = open_database(db)
    files = openface_files(path)
    errors = ItemErrors(len(files))
    for file in track(files, description="importing", console=err_console, transient=True, disable=len(files) < 2):
        with errors.guard():
            result = import_openface_csv(factory, file, subject, session_label, recorded_at)
            if result.skipped:
                console.print(f"{file.name}: already imported as session {result.session_id}")
            else:
                console.print(f"{file.name}: session {result.session_id}, {result.frames} frames, "
                              f"face in {result.face_frames / max(result.frames, 1):.0%}")
    if errors.count:
        raise typer.Exit(code=1)
