"""Core commands: process, sessions, models, db upgrade, version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from fervideo import __version__
from fervideo.cli.app import CountColumn, DbOption, ItemErrors, app, console, db_app, err_console
from fervideo.cli.arguments import (
    device_option,
    finite_non_negative,
    one_of,
    positive_int,
    shown,
    validated_subject,
)
from fervideo.cli.arguments import recorded_at as parse_recorded_at
from fervideo.labels import CANONICAL_LABELS


# --------------------------------------------------------------------------------------------- process
def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        CountColumn("opening the video"),
        TextColumn("{task.fields[rate]} frames/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


def _print_summary(video: Path, session_id: int, frames, skipped: bool, seconds: float | None) -> None:
    from fervideo.features import basic_summary, compute_session_features

    summary = basic_summary(frames)
    features = compute_session_features(frames)  # the stored features' definitions, reliability included
    table = Table(title=f"{shown(video.name)}  (session {session_id}{', already processed' if skipped else ''})",
                  show_header=False, title_justify="left")
    table.add_row("time covered", f"{features.values['duration_s']:.1f} s")
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
    if not features.reliable:
        table.add_row("[bold yellow]unreliable[/bold yellow]", shown("; ".join(features.reliability_notes)))
    console.print(table)


@app.command()
def process(
    videos: Annotated[list[Path], typer.Argument(help="Video files (mp4, mov, avi, mkv, webm).")],
    subject: Annotated[str, typer.Option("--subject", "-s", callback=validated_subject,
                                         help="Pseudonymous subject code (never a name).")],
    recorded_at: Annotated[dt.datetime | None, typer.Option(
        parser=parse_recorded_at, metavar="DATE", help="When the session was recorded (ISO date or date-time).")
    ] = None,
    fps: Annotated[float, typer.Option(callback=finite_non_negative,
                                       help="Frames sampled per second of video; 0 = every frame.")] = 5.0,
    model: Annotated[str, typer.Option(help="Emotion model: auto, a name from `fervideo models`, or a checkpoint path.")] = "auto",
    device: Annotated[str, typer.Option(callback=device_option, help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(callback=positive_int, help="Faces per classifier batch.")] = 64,
    landmarks: Annotated[str, typer.Option(callback=one_of("retinaface", "fan"), help="retinaface (5 points) or fan (68 points; needs cached 2DFAN4 weights).")] = "retinaface",
    force: Annotated[bool, typer.Option("--force", help="Reprocess even if this file was processed with the same settings.")] = False,
    backend: Annotated[str | None, typer.Option(help="Inference backend: auto (ONNX Runtime on the CPU where installed), torch or onnx [env: FERVIDEO_BACKEND]. See docs/speed.md.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for the networks; 0 = all cores [env: FERVIDEO_THREADS]. See docs/speed.md.")] = None,
    db: DbOption = None,
) -> None:
    """Process session recordings into stored per-frame emotion timelines."""
    from fervideo.runtime import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads OpenMP: idle workers must not spin on shared machines
    from fervideo.pipeline import SessionProcessor

    processor = SessionProcessor(
        db_url=db, model=model, device=device, batch_size=batch_size, sample_fps=fps, landmarks=landmarks,
        backend=backend, threads=threads,
    )
    classifier = processor.classifier
    # A fallback is also logged as a warning by the registry; the model line is what stays on screen.
    style = "bold yellow" if classifier.fallback_reason else "bold"
    err_console.print(f"[{style}]emotion model: {classifier.name}[/{style}] ({classifier.source}, on {classifier.device})")
    errors = ItemErrors(len(videos))
    for video in videos:
        with errors.guard():
            with _progress_bar() as bar:
                task = bar.add_task(shown(video.name[:40]), total=None, rate="-")

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
        console.print(_sessions_table(rows) if rows else "no sessions yet: run `fervideo process VIDEO --subject CODE`")


def _sessions_table(rows) -> Table:
    """One row per session; every stored string is shown as data (escaped), and ids, dates and numbers
    never wrap or get cut: on a narrow terminal the free-text columns (video, status) fold instead."""
    table = Table("id", "subject", "recorded", "video", "duration", "face %", "status", "classifier")
    for name in ("id", "recorded", "duration", "face %"):
        column = next(c for c in table.columns if c.header == name)
        column.no_wrap, column.min_width = True, len("2024-01-01") if name == "recorded" else None
    for row in rows:
        face = f"{row.face_frames / row.sampled_frames:.0%}" if row.sampled_frames else "-"
        status = row.status + (f" ({row.error[:40]})" if row.error else "")
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

    table = Table("name", "kind", "source", "available offline")
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


@app.command()
def version() -> None:
    """Print the package version."""
    console.print(__version__)
