"""`fervideo train ...`: train, evaluate and export the emotion classifier (the `training/` package)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fervideo.cli.app import app, console
from fervideo.cli.arguments import device_option, existing_file, positive_int, shown
from fervideo.errors import InvalidArgumentError, ModelError

train_app = typer.Typer(help="Train, evaluate and export the emotion classifier.", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _model_file(value: Path) -> Path:
    """--model checked while parsing; a missing checkpoint is a model error (exit 3), as in `process`."""
    try:
        return existing_file(value)
    except typer.BadParameter as error:
        raise ModelError(f"--model {error.message}") from None


def _verbose_training_logs() -> None:
    # Epoch summaries are the point of a training run: show them even without --verbose.
    logging.getLogger("training").setLevel(logging.INFO)


@train_app.command("classifier")
def train_classifier(
    config: Annotated[Path, typer.Option("--config", "-c", callback=existing_file, help="Recipe YAML (see training/recipes/).")],
    output_dir: Annotated[Path | None, typer.Option(help="Override the recipe's output_dir.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in output_dir.")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda[:N] (overrides the recipe).")] = None,
) -> None:
    """Train a classifier from a recipe; writes model.safetensors + model.json to the output dir."""
    from training.config import load_recipe
    from training.loop import train_recipe

    _verbose_training_logs()
    overrides = {"output_dir": str(output_dir)} if output_dir else None
    recipe = load_recipe(config, overrides)
    result = train_recipe(recipe, resume=resume, device=device)
    table = Table(title=f"recipe {shown(recipe.name)}", title_justify="left")
    for column in ("stage", "init", "best epoch", "best"):
        table.add_column(column)
    for stage in result.stages:
        best = "" if stage["best"] is None else f"{stage['best']:.4f}"
        table.add_row(shown(stage["stage"]), shown(stage["init"]), str(stage["best_epoch"]), best)
    console.print(table)
    artifact = shown(result.artifact)
    console.print(f"model: [bold]{artifact}[/bold]  (use with `fervideo process --model {artifact}`)", highlight=False)


def parse_data(specs: list[str], split: str) -> list:
    """`FORMAT:PATH` (e.g. rafdb:/data/RAF-DB, ferplus:fer2013new.csv@fer2013.csv) -> SourceConfig list."""
    from training.config import SourceConfig
    from training.datasets import READERS

    sources = []
    for spec in specs:
        fmt, sep, path = spec.partition(":")
        if not sep or fmt not in READERS:
            raise InvalidArgumentError(f"--data {spec!r}: expected FORMAT:PATH with FORMAT one of {sorted(READERS)}")
        path, _, images = path.partition("@")
        sources.append(SourceConfig(format=fmt, path=path, split=split, images=images or None))
    return sources


@train_app.command("evaluate")
def evaluate(
    model: Annotated[
        Path, typer.Option("--model", "-m", callback=_model_file,
                           help="Trained .safetensors (with its .json sidecar) or seed .pth.")
    ],
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            "-d",
            help="FORMAT:PATH[@IMAGES], repeatable; FORMAT: image_folder, fer2013, ferplus, rafdb, affectnet, hf.",
        ),
    ],
    split: Annotated[str, typer.Option(help="Split to read: train, val or test.")] = "test",
    out: Annotated[Path, typer.Option(help="Folder for the report, confusion matrix and predictions.")] = Path(
        "evaluation"
    ),
    device: Annotated[str, typer.Option(callback=device_option, help="cpu or cuda[:N].")] = "cpu",
    batch_size: Annotated[int, typer.Option(callback=positive_int, help="Images per batch.")] = 64,
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion-matrix PNG and predictions CSV."""
    from training.evaluate import evaluate_checkpoint

    _verbose_training_logs()
    metrics = evaluate_checkpoint(model, parse_data(data, split), out, device=device, batch_size=batch_size)
    console.print((out / "classification_report.txt").read_text(), markup=False, highlight=False)
    console.print(f"accuracy {metrics['accuracy']:.4f}; report, confusion_matrix.png and predictions.csv in "
                  f"{shown(out)}", highlight=False)


@train_app.command("export")
def export(
    model: Annotated[Path, typer.Option("--model", "-m", callback=_model_file,
                                        help="Trained .safetensors (with its .json sidecar).")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("export"),
    formats: Annotated[str, typer.Option("--formats", help="Comma-separated: torchscript, onnx.")] = "torchscript,onnx",
) -> None:
    """Export to TorchScript and ONNX (dynamic batch), checking ONNX Runtime against PyTorch."""
    from training.export import LOGIT_ATOL, export_model

    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    if not chosen or set(chosen) - {"torchscript", "onnx"}:
        raise InvalidArgumentError(f"--formats {formats!r}: choose from torchscript, onnx")
    result = export_model(model, out, chosen)
    if result.torchscript:
        console.print(f"TorchScript: {shown(result.torchscript)}", highlight=False)
    if result.onnx:
        console.print(
            f"ONNX: {shown(result.onnx)}  (ONNX Runtime vs PyTorch: max logit diff {result.max_logit_diff:.1e}, "
            f"tolerance {LOGIT_ATOL:.0e})"
        )
