"""`fervideo import-openface FILE|DIR --subject ID`: OpenFace 2.x CSVs as sessions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import track

from fervideo.cli.app import DbOption, ItemErrors, app, console, err_console
from fervideo.cli.arguments import existing_path, shown, validated_subject
from fervideo.cli.arguments import recorded_at as parse_recorded_at


@app.command("import-openface")
def import_openface(
    path: Annotated[Path, typer.Argument(callback=existing_path, help="An OpenFace FeatureExtraction CSV, or a directory of them.")],
    subject: Annotated[str, typer.Option("--subject", "-s", callback=validated_subject, help="Pseudonymous subject code (never a name).")],
    session_label: Annotated[str | None, typer.Option(help="A label kept with the session (e.g. 'baseline').")] = None,
    recorded_at: Annotated[dt.datetime | None, typer.Option(
        parser=parse_recorded_at, metavar="DATE", help="When the session was recorded (ISO date or date-time).")] = None,
    min_confidence: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Faces tracked with a lower OpenFace confidence are left out of the features "
        "and counted (recorded with the session).")] = 0.75,
    db: DbOption = None,
) -> None:
    """Import OpenFace CSVs: emotion distributions from AU prototype rules ("OpenFace AU rules")."""
    from fervideo.openface import import_openface_csv, openface_files
    from fervideo.store import open_database

    factory = open_database(db)
    files = openface_files(path)
    errors = ItemErrors(len(files))
    for file in track(files, description="importing", console=err_console, transient=True,
                      disable=len(files) < 2 or not err_console.is_interactive):
        with errors.guard():
            result = import_openface_csv(factory, file, subject, session_label, recorded_at, min_confidence)
            if result.skipped:
                console.print(f"{shown(file.name)}: already imported as session {result.session_id}", highlight=False)
            else:
                console.print(f"{shown(file.name)}: session {result.session_id}, {result.frames} frames, "
                              f"face in {result.face_frames / max(result.frames, 1):.0%}, "
                              f"{result.low_confidence_frames} below --min-confidence left out", highlight=False)
    if errors.count:
        raise typer.Exit(code=1)
