"""`fervideo phq ...`: label import, head training, evaluation and PHQ estimates (never diagnoses)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from fervideo.cli.app import DbOption, ItemErrors, app, console, err_console, resolve_sessions
from fervideo.cli.arguments import existing_file, shown
from fervideo.errors import InvalidArgumentError, LabelFileError

phq_app = typer.Typer(help="PHQ-8/9 labels, heads and estimates (research estimates, not diagnoses).",
                      no_args_is_help=True)
labels_app = typer.Typer(help="PHQ questionnaire results (ground truth).", no_args_is_help=True)
phq_app.add_typer(labels_app, name="labels")
app.add_typer(phq_app, name="phq")


@labels_app.command("import")
def labels_import(
    file: Annotated[Path, typer.Argument(callback=existing_file, help="Generic PHQ CSV or a DAIC-WOZ split file.")],
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
            err_console.print(f"warning: {shown(warning)}", highlight=False)
        for problem in error.problems[:MAX_SHOWN_PROBLEMS]:
            err_console.print(f"  {shown(problem)}", highlight=False)  # a cell may hold escape sequences
        hidden = len(error.problems) - MAX_SHOWN_PROBLEMS
        if hidden > 0:
            err_console.print(f"  ... and {hidden} more bad row(s)", highlight=False)
        listed = "listed above" if hidden <= 0 else f"the first {MAX_SHOWN_PROBLEMS} listed above"
        raise LabelFileError(f"{file}: {len(error.problems)} bad row(s), nothing imported ({listed})",
                             error.problems) from None
    for warning in result.warnings:
        err_console.print(f"warning: {shown(warning)}", highlight=False)
    repeated = f", {result.duplicate_rows} repeated row(s) imported once" if result.duplicate_rows else ""
    console.print(f"{shown(file.name)} ({result.file_format}): {result.imported} label(s) imported, "
                  f"{result.already_present} already present{repeated}", highlight=False)


def _print_label_use(training: dict, instrument: str) -> None:
    """Which labelled sessions were left out and why (the label window, undated labels, reliability)."""
    from fervideo.phq.dataset import describe_skipped

    window = training.get("label_window_days", 14)
    left_out = describe_skipped(training.get("skipped_sessions") or {}, instrument, window)
    console.print(f"label window: +/- {window} days; sessions left out: {shown(left_out or 'none')}",
                  highlight=False)  # left_out quotes subject codes
    if training.get("undated_labels_set_aside"):
        console.print(f"{training['undated_labels_set_aside']} undated label(s) not used: their subjects have "
                      "dated labels", markup=False)


def _fmt(value) -> str:
    from fervideo.export.head_metrics import format_value  # one formatting with the dashboard's Cohort page

    return format_value(value)


def _ci(entry: dict) -> str:
    from fervideo.export.head_metrics import format_ci

    return format_ci(entry)


def _print_standing(report: dict) -> None:
    """The head against the mean predictor, loudly when it does not beat it."""
    comparison = report["metrics"].get("baseline_comparison")
    if comparison is None:
        err_console.print("[yellow]warning:[/yellow] this head predates the baseline check; retrain it")
        return
    difference = comparison["mae_difference"]
    line = (f"MAE(model) - MAE(mean) = {_fmt(difference['value'])}, 95% subject-bootstrap CI {_ci(difference)}")
    if report.get("beats_baseline"):
        console.print(f"beats the mean predictor: {line}", markup=False)
    else:
        err_console.print(f"[bold red]WARNING: this model does not beat guessing the cohort mean[/bold red] "
                          f"({escape(line)}). `phq predict` refuses its estimates unless --allow-weak-head, "
                          "and every view shows them with this warning.")


def _print_report(report: dict) -> None:
    from fervideo.phq import PHQ_CAVEAT

    metrics = report["metrics"]
    from fervideo.export.head_metrics import head_metrics_table  # the dashboard's Cohort page shows the same rows

    columns, rows = head_metrics_table(metrics)
    table = Table(*columns,
                  title=f"PHQ head {shown(report['name'])} ({report['model']}, {report['instrument']}, "
                        f"cv {metrics['cv']}, {metrics['n_subjects']} subjects, {metrics['n_sessions']} sessions)",
                  title_justify="left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    _print_standing(report)
    interval = report["interval"]
    width = interval.get("typical_halfwidth", interval.get("halfwidth"))
    width = "unbounded (too few subjects)" if width is None else f"typically +/- {width:.2f}"
    measured = interval.get("empirical_cv_coverage")
    measured = "not measured" if measured is None else f"{measured:.1%} measured in cross-validation"
    console.print(f"interval: {interval['method']}, {width}; {interval['coverage']:.0%} nominal coverage, "
                  f"{measured}", markup=False)
    if report.get("sample_fps") is not None:
        console.print(f"accepts sessions sampled at {report['sample_fps']:g} fps with feature definitions "
                      f"v{report['feature_version']}; refuses sessions with more than "
                      f"{report['max_imputed_fraction']:.0%} of its features imputed", markup=False)
    console.print(f"classifier: {shown(report['classifier']['name'])} ({report['classifier']['sha256'][:12]}), "
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
    max_imputed_fraction: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Refuse to estimate a session with more than this share of the head's features "
                               "missing (filled with training medians).")] = 0.2,
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
                            label_window_days=label_window_days, ignore_unmatched=ignore_unmatched,
                            max_imputed_fraction=max_imputed_fraction)
    _print_report(head_report(result.model.config))
    _print_label_use(result.model.config["training"], instrument)


@phq_app.command()
def evaluate(name: Annotated[str, typer.Argument(help="Head name.")], db: DbOption = None) -> None:
    """Show a head's evaluation report (metrics with bootstrap CIs and the mean baseline)."""
    from fervideo.phq import get_head, head_report
    from fervideo.store import open_database

    _, head = get_head(open_database(db), name)
    _print_report(head_report(head.config))
    _print_label_use(head.config.get("training") or {}, head.config["instrument"])


def _estimate_cells(estimate) -> tuple[str, str, str, str, str]:
    value = f"{estimate.estimate:.1f} ({estimate.instrument})"
    if not estimate.beats_baseline:
        value += " [bold red]weak head[/bold red]"
    sample = "out-of-sample"
    if estimate.in_sample:
        sample = "in-sample, out-of-fold" if estimate.out_of_fold else "[yellow]in-sample[/yellow]"
    return (value, f"{estimate.lower:.1f} - {estimate.upper:.1f} ({estimate.coverage:.0%})", estimate.band,
            f"{estimate.n_imputed} of {estimate.n_features}", sample)


@phq_app.command()
def predict(
    session: Annotated[int | None, typer.Argument(help="Session id.")] = None,
    head: Annotated[str, typer.Option("--head", help="Head name.")] = ...,
    all_sessions: Annotated[bool, typer.Option("--all", help="Every finished session.")] = False,
    allow_weak_head: Annotated[bool, typer.Option(
        "--allow-weak-head", help="Show estimates of a head that does not beat the mean predictor (with a "
                                  "warning) instead of refusing them.")] = False,
    db: DbOption = None,
) -> None:
    """Estimate PHQ totals with interval, severity band, imputed-feature count and in-sample mark; unreliable
    or mismatched sessions, and every session of a head that does not beat the mean, are refused."""
    from fervideo.phq import PHQ_CAVEAT, WEAK_HEAD_WARNING, get_head, interval_note, predict_session
    from fervideo.phq.predict import refuse_unusable_head

    factory, ids = resolve_sessions(db, session, all_sessions)
    refuse_unusable_head(get_head(factory, head)[1], allow_weak_head)  # once, not once per session
    table = Table("session", "estimate", "interval", "band", "imputed features", "sample",
                  title=f"PHQ estimates by head {shown(head)}", title_justify="left")
    refusals = ItemErrors(len(ids), label="refused", colour="yellow")
    estimates = []
    for session_id in ids:
        with refusals.guard():
            estimate = predict_session(factory, session_id, head, allow_weak_head=allow_weak_head)
            table.add_row(str(session_id), *_estimate_cells(estimate))
            estimates.append(estimate)
    console.print(table)
    if any(not estimate.beats_baseline for estimate in estimates):
        err_console.print(f"[bold red]WARNING:[/bold red] {WEAK_HEAD_WARNING}")
    if any(estimate.in_sample for estimate in estimates):
        console.print("in-sample: the head was trained on this subject's labels; the estimate shown is the "
                      "out-of-fold one (a model fit without the subject) where one exists.", markup=False)
    if estimates:
        console.print(interval_note(estimates[0].coverage, estimates[0].interval_method), markup=False)
    console.print(f"[italic]{PHQ_CAVEAT}[/italic]")
    if refusals.count:
        console.print(f"{refusals.count} session(s) refused")
