"""`fervideo phq ...`: label import, head training, evaluation and PHQ estimates (never diagnoses)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fervideo.cli.app import DbOption, ItemErrors, app, console, err_console, resolve_sessions
from fervideo.errors import InvalidArgumentError, LabelFileError

phq_app = typer.Typer(help="PHQ-8/9 labels, heads and estimates (research estimates, not diagnoses).",
                      no_args_is_help=True)
labels_app = typer.Typer(help="PHQ questionnaire results (ground truth).", no_args_is_help=True)
phq_app.add_typer(labels_app, name="labels")
app.add_typer(phq_app, name="phq")


@labels_app.command("import")
def labels_import(
    file: Annotated[Path, typer.Argument(help="Generic PHQ CSV or a DAIC-WOZ split file.")],
    db: DbOption = None,
) -> None:
    """Import PHQ scores. A file with any bad row imports nothing: the first 50 bad rows are listed with their
    line numbers, the rest counted, and the command fails (exit code 2)."""
    from fervideo.phq.labels import MAX_SHOWN_PROBLEMS, import_labels
    from fervideo.store import open_database

    try:
        result = import_labels(open_database(db), file)
    except LabelFileError as error:
        for warning in getattr(error, "warnings", []):
            err_console.print(f"warning: {warning}", markup=False, highlight=False)
        for problem in error.problems[:MAX_SHOWN_PROBLEMS]:
            err_console.print(f"  {problem}", markup=False, highlight=False)
        hidden = len(error.problems) - MAX_SHOWN_PROBLEMS
        if hidden > 0:
            err_console.print(f"  ... and {hidden} more bad row(s)", highlight=False)
        listed = "listed above" if hidden <= 0 else f"the first {MAX_SHOWN_PROBLEMS} listed above"
        raise LabelFileError(f"{file}: {len(error.problems)} bad row(s), nothing imported ({listed})",
                             error.problems) from None
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False)
    repeated = f", {result.duplicate_rows} repeated row(s) imported once" if result.duplicate_rows else ""
    console.print(f"{file.name} ({result.file_format}): {result.imported} label(s) imported, "
                  f"{result.already_present} already present{repeated}", markup=False, highlight=False)


def _print_label_use(training: dict, instrument: str) -> None:
    """Which labelled sessions were left out and why (the label window, undated labels, reliability)."""
    from fervideo.phq.dataset import describe_skipped

    window = training.get("label_window_days", 14)
    left_out = describe_skipped(training.get("skipped_sessions") or {}, instrument, window)
    console.print(f"label window: +/- {window} days; sessions left out: {left_out or 'none'}", markup=False)
    if training.get("undated_labels_set_aside"):
        console.print(f"{training['undated_labels_set_aside']} undated label(s) not used: their subjects have "
                      "dated labels", markup=False)


def _print_report(report: dict) -> None:
    from fervideo.phq import PHQ_CAVEAT

    metrics = report["metrics"]
    table = Table("metric", "model", "95% CI", "mean baseline", "95% CI",
                  title=f"PHQ head {report['name']} ({report['model']}, {report['instrument']}, "
                        f"cv {metrics['cv']}, {metrics['n_subjects']} subjects, {metrics['n_sessions']} sessions)",
                  title_justify="left")
    for name in metrics["model"]:
        model, base = metrics["model"][name], metrics["mean_baseline"][name]

        def fmt(v):
            return "-" if v is None else f"{v:.3f}"

        table.add_row(name, fmt(model["value"]), f"{fmt(model['ci_low'])} - {fmt(model['ci_high'])}",
                      fmt(base["value"]), f"{fmt(base['ci_low'])} - {fmt(base['ci_high'])}")
    console.print(table)
    conformal = report["conformal"]
    width = "unbounded" if conformal["halfwidth"] is None else f"+/- {conformal['halfwidth']:.2f}"
    console.print(f"interval: {width} ({conformal['coverage']:.0%} nominal coverage, {conformal['method']})")
    console.print(f"classifier: {report['classifier']['name']} ({report['classifier']['sha256'][:12]}), "
                  f"sessions from {report['feature_source']}")
    console.print(f"[italic]{PHQ_CAVEAT}[/italic]")


@phq_app.command()
def train(
    name: Annotated[str, typer.Option("--name", help="Name of the new head.")],
    labels: Annotated[Path | None, typer.Option(help="Import this labels file and train on its labels only.")] = None,
    cv: Annotated[str, typer.Option(help="subject-kfold, loso or split.")] = "subject-kfold",
    split_file: Annotated[Path | None, typer.Argument(help="With --cv split: held-out subjects list.")] = None,
    model: Annotated[str, typer.Option(help="ridge (default), svr or gbr.")] = "ridge",
    instrument: Annotated[str, typer.Option(help="PHQ-8 or PHQ-9.")] = "PHQ-8",
    classifier: Annotated[str | None, typer.Option(help="Only sessions of this classifier.")] = None,
    alpha: Annotated[float, typer.Option(help="Ridge regularisation.")] = 10.0,
    coverage: Annotated[float, typer.Option(help="Nominal coverage of prediction intervals.")] = 0.9,
    no_au: Annotated[bool, typer.Option("--no-au", help="Leave out the OpenFace AU feature group.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a head of the same name.")] = False,
    label_window_days: Annotated[int, typer.Option(
        min=0, help="A dated label belongs to a dated session only if administered within this many days of "
                    "it (PHQ asks about the last two weeks).")] = 14,
    ignore_unmatched: Annotated[bool, typer.Option(
        "--ignore-unmatched", help="With --cv split: train although some ids in FILE match no subject.")] = False,
    db: DbOption = None,
) -> None:
    """Train a PHQ head on labelled sessions, evaluated by subject-grouped cross-validation."""
    from fervideo.phq import head_report, train_head
    from fervideo.store import open_database

    if cv == "split" and split_file is None:
        raise InvalidArgumentError("--cv split needs a FILE listing held-out subjects: `--cv split FILE`")
    if not 0 < coverage < 1:
        raise InvalidArgumentError(f"--coverage must be between 0 and 1, got {coverage}")
    with console.status("cross-validating and fitting"):
        result = train_head(open_database(db), name, model=model, cv=cv, split_file=split_file,
                            instrument=instrument, classifier=classifier, labels_file=labels, alpha=alpha,
                            coverage=coverage, include_au=not no_au, overwrite=overwrite,
                            label_window_days=label_window_days, ignore_unmatched=ignore_unmatched)
    _print_report(head_report(result.model.config))
    _print_label_use(result.model.config["training"], instrument)


@phq_app.command()
def evaluate(name: Annotated[str, typer.Argument(help="Head name.")], db: DbOption = None) -> None:
    """Show a head's evaluation report (metrics with bootstrap CIs and the mean baseline)."""
    from fervideo.phq import get_head, head_report
    from fervideo.store import open_database

    _, head = get_head(open_database(db), name)
    _print_report(head_report(head.config))


@phq_app.command()
def predict(
    session: Annotated[int | None, typer.Argument(help="Session id.")] = None,
    head: Annotated[str, typer.Option("--head", help="Head name.")] = ...,
    all_sessions: Annotated[bool, typer.Option("--all", help="Every finished session.")] = False,
    db: DbOption = None,
) -> None:
    """Estimate PHQ totals with interval and severity band; unreliable or mismatched sessions are refused."""
    from fervideo.phq import PHQ_CAVEAT, predict_session

    factory, ids = resolve_sessions(db, session, all_sessions)
    table = Table("session", "estimate", "interval", "band", title=f"PHQ estimates by head {head}",
                  title_justify="left")
    refusals = ItemErrors(len(ids), label="refused", colour="yellow")
    for session_id in ids:
        with refusals.guard():
            estimate = predict_session(factory, session_id, head)
            table.add_row(str(session_id), f"{estimate.estimate:.1f} ({estimate.instrument})",
                          f"{estimate.lower:.1f} - {estimate.upper:.1f} ({estimate.coverage:.0%})", estimate.band)
    console.print(table)
    console.print(f"[italic]{PHQ_CAVEAT}[/italic]")
    if refusals.count:
        console.print(f"{refusals.count} session(s) refused")
