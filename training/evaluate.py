"""Evaluation: accuracy, per-class precision/recall/F1/support with macro and weighted averages (the
sklearn `classification_report` layout the seed recipes published), a confusion-matrix PNG and the
predictions as CSV.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import classification_report, confusion_matrix
from torch import nn
from torch.utils.data import DataLoader

from training.config import SourceConfig
from training.datasets import build_dataset
from training.model import load_artifact
from training.transforms import eval_transform

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    targets: np.ndarray  # int64 [N]
    probs: np.ndarray  # float32 [N, C]
    loss: float

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.targets).mean()) if len(self.targets) else float("nan")


@torch.inference_mode()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, autocast_dtype: torch.dtype | None = None
) -> Predictions:
    model.eval()
    targets, probs, loss_sum = [], [], 0.0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images)
        logits = logits.float()
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        targets.append(labels.cpu().numpy())
    n = sum(len(t) for t in targets)
    return Predictions(
        targets=np.concatenate(targets) if targets else np.zeros(0, np.int64),
        probs=np.concatenate(probs) if probs else np.zeros((0, 0), np.float32),
        loss=loss_sum / max(n, 1),
    )


def summary_metrics(pred: Predictions, labels: Sequence[str]) -> dict[str, Any]:
    """The classification_report dict (per class + macro/weighted avg) plus accuracy and loss."""
    report = classification_report(
        pred.targets,
        pred.predicted,
        labels=list(range(len(labels))),
        target_names=list(labels),
        output_dict=True,
        zero_division=0,
    )
    return {"accuracy": pred.accuracy, "loss": pred.loss, "macro_f1": report["macro avg"]["f1-score"], "report": report}


def save_confusion_png(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.8 * len(labels)))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{matrix[i, j]}\n{normalised[i, j]:.0%}", ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(pred: Predictions, labels: Sequence[str], out_dir: Path, title: str) -> dict[str, Any]:
    """classification_report.txt, metrics.json, confusion_matrix.png and predictions.csv under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = summary_metrics(pred, labels)
    text = classification_report(
        pred.targets,
        pred.predicted,
        labels=list(range(len(labels))),
        target_names=list(labels),
        digits=4,
        zero_division=0,
    )
    (out_dir / "classification_report.txt").write_text(f"{title}\n\naccuracy: {pred.accuracy:.4f}\n\n{text}")
    matrix = confusion_matrix(pred.targets, pred.predicted, labels=list(range(len(labels))))
    metrics["confusion_matrix"] = matrix.tolist()
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_confusion_png(matrix, labels, out_dir / "confusion_matrix.png", f"{title} (acc {pred.accuracy:.1%})")
    table = pd.DataFrame(pred.probs, columns=[f"p_{label}" for label in labels])
    table.insert(0, "predicted", [labels[i] for i in pred.predicted])
    table.insert(0, "true", [labels[i] for i in pred.targets])
    table.to_csv(out_dir / "predictions.csv", index_label="index", float_format="%.5f")
    return metrics


def evaluate_checkpoint(
    model_path: Path,
    sources: Sequence[SourceConfig],
    out_dir: Path,
    device: str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Evaluate a trained artifact on data sources read with the model's own label set."""
    model, sidecar = load_artifact(model_path)
    labels = list(sidecar["labels"])
    prep = sidecar.get("preprocessing", {})
    size = int(prep.get("input_size", 224))
    transform = eval_transform(size, _triple(prep.get("mean", 0.5)), _triple(prep.get("std", 0.5)))
    dataset = build_dataset(sources, labels, transform)
    torch_device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    pred = predict(model.to(torch_device), loader, torch_device)
    title = f"{Path(model_path).name} on {', '.join(s.name for s in dataset.sources)}"
    metrics = write_report(pred, labels, out_dir, title)
    metrics["data"] = dataset.fingerprints()
    return metrics


def _triple(value: Any) -> list[float]:
    return [float(value)] * 3 if isinstance(value, int | float) else [float(v) for v in value]
