"""Core commands: process, sessions, models, db upgrade, version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from fervideo import __version__
from fervideo.cli.app import DbOption, ItemErrors, app, console, db_app, err_console
from fervideo.labels import CANONICAL_LABELS


# --------------------------------------------------------------------------------------------- process
def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} frames/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def _print_summary(video: Path, session_id: int, frames, skipped: bool, seconds: float | None) -> None:
    from fervideo.features import basic_summary

    summary = basic_summary(frames)
    table = Table(title=f"{video.name}  (session {session_id}{', already processed' if skipped else ''})",
                  show_header=False, title_justify="left")
    table.add_row("time covered", f"{summary['span_s']:.1f} s")
    table.add_row("sampled frames", str(summary["sampled_frames"]))
    table.add_row("face found", f"{summary['face_found_fraction']:.1%} ({summary['face_frames']} frames)")
    if seconds:
        table.add_row("speed", f"{summary['sampled_frames'] / seconds:.1f} frames/s ({seconds:.1f} s)")
    if summary["dominant_emotion"] is None:
        table.add_row("emotions", "no face found: no emotion estimate")
    else:
        for label in CANONICAL_LABELS:
            share = summary["mean_distribution"][label]
            table.add_row(f"mean P({label})", f"{share:.3f} {'#' * round(share * 40)}")
        table.add_row("dominant emotion", f"[bold]{summary['dominant_emotion']}[/bold]")
    console.print(table)


@app.command()
def process(
    videos: Annotated[list[Path], typer.Argument(help="Video files (mp4, mov, avi, mkv, webm).")],
    subject: Annotated[str, typer.Option("--subject", "-s", help="Pseudonymous subject code (never a name).")],
    recorded_at: Annotated[
        dt.datetime | None, typer.Option(help="When the session was recorded (ISO date or date-time).")
    ] = None,
    fps: Annotated[float, typer.Option(help="Frames sampled per second of video; 0 = every frame.")] = 5.0,
    model: Annotated[str, typer.Option(help="Emotion model: auto, a name from `fervideo models`, or a checkpoint path.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Faces per classifier batch.")] = 64,
    landmarks: Annotated[str, typer.Option(help="retinaface (5 points) or fan (68 points; needs cached 2DFAN4 weights).")] = "retinaface",
    force: Annotated[bool, typer.Option("--force", help="Reprocess even if this file was processed with the same settings.")] = False,
    db: DbOption = None,
) -> None:
    """Process session recordings into stored per-frame emotion timelines."""
    from fervideo.pipeline import SessionProcessor

    processor = SessionProcessor(
        db_url=db, model=model, device=device, batch_size=batch_size, sample_fps=fps, landmarks=landmarks
    )
    classifier = processor.classifier
    # A fallback is also logged as a warning by the registry; the model line is what stays on screen.
    style = "bold yellow" if classifier.fallback_reason else "bold"
    err_console.print(f"[{style}]emotion model: {classifier.name}[/{style}] ({classifier.source}, on {classifier.device})")
    errors = ItemErrors(len(videos))
    for video in videos:
        with errors.guard():
            with _progress_bar() as bar:
                task = bar.add_task(video.name[:40], total=None, rate="-")

                def on_progress(done: int, planned: int, _task=task, _bar=bar) -> None:
                    elapsed = _bar.tasks[0].elapsed or 0.0
                    rate = f"{done / elapsed:.1f}" if elapsed > 0 else "-"
                    _bar.update(_task, completed=done, total=planned, rate=rate)

                result = processor.process(video, subject, recorded_at=recorded_at, force=force, progress=on_progress)
            _print_summary(video, result.session_id, result.frames, result.skipped, result.timings.get("total_s"))
    if errors.count:
        raise typer.Exit(code=1)


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
        table = Table("id", "subject", "recorded", "video", "duration", "face %", "status", "classifier")
        for row in rows:
            face = f"{row.face_frames / row.sampled_frames:.0%}" if row.sampled_frames else "-"
            table.add_row(
                str(row.id), row.subject.code, row.recorded_at.date().isoformat() if row.recorded_at else "-",
                Path(row.video_path).name, f"{row.duration_s:.1f} s" if row.duration_s else "-", face,
                row.status + (f" ({row.error[:40]})" if row.error else ""), row.classifier_name,
            )
    console.print(table if rows else "no sessions yet: run `fervideo process VIDEO --subject CODE`")


@app.command()
def models() -> None:
    """List the bundled, cached and known emotion models."""
    from fervideo.emotion import list_models

    table = Table("name", "kind", "source", "available offline")
    for entry in list_models():
        table.add_row(entry["name"], entry["kind"], entry["source"], str(entry.get("available") or "no"))
    console.print(table)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create the database or bring its schema to the latest version."""
    from fervideo.store import make_engine, schema_revisions, upgrade_database

    engine = make_engine(db)
    before, head = schema_revisions(engine)
    upgrade_database(engine)
    console.print(f"database at {head}" + (f" (was {before})" if before != head else " (already current)"))


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(__version__)
