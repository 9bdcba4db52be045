"""`fervideo process`: one video or a study's thousand, on local worker processes or Ray (docs/batch.md)."""

from __future__ import annotations

import datetime as dt
import importlib
import re
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperCommand

from fervideo.cli.app import CountColumn, DbOption, app, console, err_console
from fervideo.cli.arguments import (
    device_option,
    existing_file,
    finite_non_negative,
    one_of,
    positive_int,
    shown,
    validated_subject,
)
from fervideo.cli.arguments import recorded_at as parse_recorded_at
from fervideo.labels import CANONICAL_LABELS

MAX_PROBLEMS_SHOWN = 50  # a 100k-row bad manifest must not print 100k lines
# After a bare `--ray`, a word that can only be a Ray address (not a video): auto, local, ray://..., HOST:PORT.
RAY_ADDRESS_WORD = re.compile(r"(auto|local|ray://\S+|[A-Za-z0-9_.-]+:\d+)")
STATUS_STYLE = {"done": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow", "not run": "yellow"}


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


class ProgressView:
    """The runner's observer: one overall bar (videos done/total, frames/s, ETA), a transient bar per
    video in flight, and one line per finished video printed above them."""

    def __init__(self, total: int) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), CountColumn("starting"),
            TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
            # Not on a terminal (a log, a pipe): no bar, and so none of Rich's stray blank line at its stop.
            console=err_console, transient=True, disable=not err_console.is_interactive,
        )
        self.overall = self.bar.add_task("videos", total=total, rate="")
        self.per_video: dict[int, TaskID] = {}
        self.frames_done: dict[int, int] = {}
        self.started = time.monotonic()

    def model_ready(self, info: dict) -> None:
        style = "bold yellow" if info.get("fallback") else "bold"
        err_console.print(f"[{style}]emotion model: {shown(info['name'])}[/{style}] "
                          f"({shown(info['source'])}, on {shown(info['device'])})")

    def video_started(self, index: int, item) -> None:
        self.per_video[index] = self.bar.add_task(f"  {shown(item.name[:40])}", total=None, rate="")

    def video_progress(self, index: int, done: int, planned: int) -> None:
        self.frames_done[index] = done
        if index in self.per_video:
            self.bar.update(self.per_video[index], completed=done, total=planned)
        self._update_rate()

    def video_finished(self, index: int, item, outcome) -> None:
        if index in self.per_video:
            self.bar.remove_task(self.per_video.pop(index))
        if outcome.status == "done":
            self.frames_done[index] = outcome.sampled_frames
        self.bar.advance(self.overall)
        self._update_rate()
        if self.bar.tasks[self.overall].total == 1:
            return  # one video: its summary (or its one-line error) follows
        style = STATUS_STYLE.get(outcome.status, "")
        detail = (f"session {outcome.session_id}, {outcome.sampled_frames} frames"
                  if outcome.status in ("done", "skipped") else shown(outcome.reason or ""))
        err_console.print(f"[{style}]{outcome.status:>11}[/{style}]  {shown(item.name)}  {detail}", highlight=False)
        for warning in outcome.warnings:
            err_console.print(f"[bold yellow]warning:[/bold yellow] {shown(item.name)}: {shown(warning)}")

    def _update_rate(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = sum(self.frames_done.values()) / elapsed if elapsed > 0 else 0.0
        self.bar.update(self.overall, rate=f"{rate:.1f} frames/s")


def _final_table(result) -> Table:
    table = Table("#", "video", "subject", "status", "session", "frames", "reason", title="batch", title_justify="left")
    for position, (item, outcome) in enumerate(zip(result.items, result.outcomes, strict=True), start=1):
        status = outcome.status if outcome else "not run"
        style = STATUS_STYLE.get(status, "")
        table.add_row(
            str(position), shown(item.name), shown(item.subject), f"[{style}]{status}[/{style}]",
            str(outcome.session_id) if outcome and outcome.session_id else "-",
            str(outcome.sampled_frames) if outcome and outcome.sampled_frames else "-",
            shown((outcome.reason or "") if outcome else "stopped before it started"),
        )
    counts = ", ".join(f"{result.count(s)} {s}" for s in ("done", "skipped", "failed", "interrupted"))
    not_run = sum(1 for o in result.outcomes if o is None)
    table.caption = counts + (f", {not_run} not run" if not_run else "")
    return table


def _plan(videos: list[str] | None, manifest: Path | None, subject: str | None, recorded_at: dt.datetime | None):
    from fervideo.batch import ManifestError, plan_from_paths, read_manifest
    from fervideo.errors import InputVideoError, InvalidArgumentError

    if bool(videos) == bool(manifest):
        raise InvalidArgumentError("give VIDEOS (files, folders or glob patterns) or --manifest FILE.csv, not both")
    if manifest:
        if subject or recorded_at:
            raise InvalidArgumentError("--subject and --recorded-at come from the manifest's columns; drop them")
        try:
            return read_manifest(manifest)
        except ManifestError as error:
            for problem in error.problems[:MAX_PROBLEMS_SHOWN]:
                err_console.print(shown(problem), highlight=False)
            if len(error.problems) > MAX_PROBLEMS_SHOWN:
                err_console.print(f"... and {len(error.problems) - MAX_PROBLEMS_SHOWN} more bad rows", highlight=False)
            raise
    if not subject:
        raise InvalidArgumentError("give --subject CODE (or a --manifest with a subject column)")
    items = plan_from_paths(videos, subject, recorded_at)
    missing = [item.path for item in items if not item.path.exists()]
    if missing:
        raise InputVideoError(f"{missing[0]}: no such file" +
                              (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    return items


def ray_address_in_args(args: list[str]) -> list[str]:
    """`--ray [ADDRESS]`: Typer 0.29's parser has no option with an optional value, so `--ray=ADDRESS`,
    or `--ray` followed by a word that can only be an address and is no existing file, becomes
    `--ray --ray-address ADDRESS`. Any other word after `--ray` stays a video, as before."""
    rewritten, position = [], 0
    while position < len(args):
        arg = args[position]
        if arg == "--":  # everything after it is a video
            return rewritten + args[position:]
        if arg.startswith("--ray="):
            rewritten += ["--ray", "--ray-address", arg.removeprefix("--ray=")]
        elif (arg == "--ray" and position + 1 < len(args) and RAY_ADDRESS_WORD.fullmatch(args[position + 1])
              and not Path(args[position + 1]).exists()):
            rewritten += ["--ray", "--ray-address", args[position + 1]]
            position += 1
        else:
            rewritten.append(arg)
        position += 1
    return rewritten


class ProcessCommand(TyperCommand):
    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, ray_address_in_args(args))


@app.command(cls=ProcessCommand)
def process(
    videos: Annotated[list[str] | None, typer.Argument(help="Video files, folders (searched recursively) or glob patterns.", show_default=False)] = None,
    subject: Annotated[str | None, typer.Option("--subject", "-s", callback=validated_subject,
                                                help="Pseudonymous subject code (never a name) for every video given.")] = None,
    recorded_at: Annotated[dt.datetime | None, typer.Option(
        parser=parse_recorded_at, metavar="DATE", help="When the session was recorded (ISO date or date-time).")
    ] = None,
    manifest: Annotated[Path | None, typer.Option(callback=existing_file, metavar="FILE.csv",
                                                  help="A CSV with columns path, subject, recorded_at[, session]; every bad row is reported before anything runs.")] = None,
    fps: Annotated[float, typer.Option(callback=finite_non_negative,
                                       help="Frames sampled per second of video; 0 = every frame.")] = 5.0,
    model: Annotated[str, typer.Option(help="Emotion model: auto, a name from `fervideo models`, or a checkpoint path.")] = "auto",
    device: Annotated[str, typer.Option(callback=device_option, help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(callback=positive_int, help="Faces per classifier batch.")] = 64,
    landmarks: Annotated[str, typer.Option(callback=one_of("retinaface", "fan"), help="retinaface (5 points) or fan (68 points; needs cached 2DFAN4 weights).")] = "retinaface",
    force: Annotated[bool, typer.Option("--force", help="Reprocess even if this file was processed with the same settings.")] = False,
    workers: Annotated[int | None, typer.Option(callback=positive_int, help="Worker processes, each loading the networks once (default: fits the machine: 1 on a GPU; on CPU one per 4 cores).")] = None,
    streams: Annotated[int, typer.Option(callback=positive_int, metavar="K", help="Videos each worker runs at once, on threads sharing its networks (one forward pass at a time; same rows as one at a time). On a GPU try 2-4 to keep it fed while videos decode (a suggestion, not measured); on CPU keep 1. See docs/batch.md.")] = 1,
    video_timeout: Annotated[float, typer.Option(callback=finite_non_negative, metavar="SECONDS", help="Give up on a video after this long (a hanging decoder cannot stall the batch); 0 = no limit. Its worker is killed: with --streams the other videos in it are redone.")] = 6 * 3600.0,
    ray: Annotated[bool, typer.Option("--ray", metavar="(ADDRESS)", help="Run the workers as Ray actors. --ray alone: the cluster at $RAY_ADDRESS, else a local one; --ray=ADDRESS (or --ray auto, --ray ray://head:10001, --ray HOST:PORT) joins that cluster.")] = False,
    ray_address: Annotated[str | None, typer.Option(hidden=True, help="Alias of --ray=ADDRESS, kept for older scripts.")] = None,
    backend: Annotated[str | None, typer.Option(help="Inference backend: auto (ONNX Runtime on the CPU where installed), torch or onnx (env: FERVIDEO_BACKEND). See docs/speed.md.")] = None,
    threads: Annotated[int | None, typer.Option(callback=positive_int, help="CPU threads per worker for the networks; default: cores / workers (env: FERVIDEO_THREADS). See docs/speed.md.")] = None,
    quantize: Annotated[str, typer.Option(callback=one_of("none", "int8"), help="int8: dynamic int8 quantisation of a ViT classifier's linear layers, CPU only (refused on CUDA and for the mini-Xception baseline); in ONNX Runtime where the ViT runs there (the default on the CPU), else in torch. Changes the probabilities slightly, so quantised sessions get their own settings key and the stored classifier name ends in +int8. See docs/speed.md.")] = "none",
    detect_region: Annotated[str, typer.Option(callback=one_of("full", "tracked"), help="full: detect faces in every whole frame. tracked: between full-frame passes every 8 sampled frames, search only a window around the tracked face (faster on wide shots; a close-up never uses a window; lost or cut faces are searched again in the full frame). Changes results slightly, so tracked sessions get their own settings key. See docs/speed.md.")] = "full",
    db: DbOption = None,
) -> None:
    """Process session recordings into stored per-frame emotion timelines.

    Many videos run on worker processes (or Ray actors) that load the networks once, each running
    --streams videos at once; a video already processed with the same settings is skipped, and a
    session left `running` by a killed run is redone.
    Exit status: 0 when every video is done or skipped, 1 when any failed (the others are kept),
    130/143 when stopped by SIGINT/SIGTERM (the sessions in flight are marked interrupted).
    """
    from fervideo.errors import InvalidArgumentError

    if ray_address is not None and not ray_address.strip():
        raise InvalidArgumentError("--ray= needs an address after the '=' (e.g. --ray=auto); or give --ray alone")
    quantize_mode = _checked_quantize(quantize, model, device)
    from fervideo.batch import WorkerSettings, run_batch
    from fervideo.batch.runner import spawn_workers_early
    from fervideo.runtime import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads OpenMP: idle workers must not spin on shared machines
    settings = WorkerSettings(db_url=db, model=model, device=device, batch_size=batch_size, sample_fps=fps,
                              landmarks=landmarks, force=force, backend=backend, threads=threads or 0,
                              quantize=quantize_mode, detect_region=detect_region)
    # A local worker imports its modules while the checks below run; it opens nothing until started.
    early = None if ray or ray_address else spawn_workers_early(settings, workers, streams)
    try:
        from fervideo.store import open_database  # after the spawn: SQLAlchemy's ~0.2 s overlaps the worker's

        # A database that cannot be opened or written (not one, read-only, behind) fails now, before torch
        # and the networks load; this also creates a new one once, before the workers race to.
        open_database(db).kw["bind"].dispose()
        items = _plan(videos, manifest, subject, recorded_at)
        if len(items) == 1:  # a bad file fails in milliseconds, not after the networks load (8-24 s)
            from fervideo.video import check_video_file

            check_video_file(items[0].path)
    except BaseException:
        if early is not None:
            early.discard()
        raise
    if len(items) == 1:  # the summary's modules (pandas, ~0.3 s) load while the worker runs, not after it
        threading.Thread(target=importlib.import_module, args=("fervideo.features",), daemon=True,
                         name="fervideo-summary-imports").start()
    view = ProgressView(len(items))
    with view.bar:
        result = run_batch(items, settings, workers=workers, video_timeout_s=video_timeout, observer=view,
                           use_ray=ray or bool(ray_address), ray_address=ray_address, streams=streams, early=early)
    _report(result, db)
    raise typer.Exit(code=result.exit_code)


def _checked_quantize(quantize: str, model: str, device: str) -> str | None:
    """--quantize int8 refused (exit 2, one line) where it cannot apply, before any network loads."""
    from fervideo.emotion.quantize import check_quantizable, normalise_quantize
    from fervideo.emotion.registry import architecture_of
    from fervideo.errors import InvalidArgumentError
    from fervideo.runtime import cuda_driver_present

    mode = normalise_quantize(quantize)
    if mode is None:
        return None
    architecture = architecture_of(model)  # None: only loading can tell; the loader checks again then
    if architecture is not None:
        # Only a non-ViT is refused, and `auto` gives one only when the seed ViT is not cached.
        what = "--model auto (the seed ViT is not cached, so the bundled baseline)" if model == "auto" else model
        check_quantizable(mode, architecture, "cpu", what=what)
    if device.startswith("cuda"):
        check_quantizable(mode, "vit", "cuda")
    if device == "auto" and cuda_driver_present():
        # Refused here rather than after torch and the networks have loaded in every worker.
        raise InvalidArgumentError(f"--quantize {mode} runs on the CPU only and --device auto may pick CUDA "
                                   "here; pass --device cpu")
    return mode


def _report(result, db: str | None) -> None:
    outcomes = [o for o in result.outcomes if o is not None]
    if len(result.items) == 1 and outcomes and outcomes[0].status in ("done", "skipped"):
        from fervideo.store import frame_table, open_database

        outcome = outcomes[0]
        with open_database(db)() as session:
            frames = frame_table(session, outcome.session_id)
        _print_summary(result.items[0].path, outcome.session_id, frames, outcome.status == "skipped",
                       outcome.seconds if outcome.status == "done" else None)
        for warning in outcome.warnings:  # e.g. decode_incomplete: a truncated file
            err_console.print(f"[bold yellow]warning:[/bold yellow] {shown(result.items[0].name)}: {shown(warning)}")
    elif len(result.items) > 1:
        console.print(_final_table(result))
    if result.stop_signal:
        err_console.print(f"interrupted by signal {result.stop_signal}: the sessions in flight are marked "
                          "interrupted; run the same command again to finish")
    elif len(result.items) == 1 and outcomes and outcomes[0].status in ("failed", "interrupted"):
        err_console.print(f"[red]error:[/red] {shown(outcomes[0].reason or 'failed')}", highlight=False)
    elif result.exit_code:
        failed = result.count("failed") + result.count("interrupted")
        err_console.print(f"[red]error:[/red] {failed} of {len(result.items)} videos failed; the others are kept",
                          highlight=False)
