"""The classifier being trained (fervideo's ViTTinyFER, so its keys are what `fervideo process` loads),
its initialisation, and the safetensors + JSON sidecar artifact.
"""

import json
import logging
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
from torch import nn

from fervideo.emotion.checkpoint import load_weights, read_state_dict
from fervideo.emotion.vit import ViTTinyFER
from fervideo.errors import ModelError
from fervideo.labels import CANONICAL_LABELS

logger = logging.getLogger(__name__)


def build_classifier(architecture: str, num_classes: int, model_kwargs: dict[str, Any] | None = None) -> ViTTinyFER:
    """ViTTinyFER for any timm ViT; `model_kwargs` (img_size, patch_size, depth...) reach timm."""
    if not timm.is_model(architecture):
        raise ModelError(f"unknown timm architecture {architecture!r}")
    return ViTTinyFER(architecture, num_classes=num_classes, **(model_kwargs or {}))


def _load_timm_pretrained(model: ViTTinyFER, architecture: str, kwargs: dict[str, Any]) -> str:
    """timm's pretrained weights for the backbone (cached or downloaded by timm); the head stays new."""
    try:
        pretrained = timm.create_model(architecture, pretrained=True, num_classes=0, global_pool="token", **kwargs)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelError(
            f"cannot get timm pretrained weights for {architecture} ({str(exc).splitlines()[0]}); "
            "run once online, or set model.init to a local checkpoint or to 'random'"
        ) from exc
    model.backbone.vit.load_state_dict(pretrained.state_dict())
    return f"timm:{architecture}"


def _load_checkpoint(model: ViTTinyFER, path: Path) -> str:
    """A fervideo/seed checkpoint (backbone.vit.*, norm.*, classifier.*) or a bare timm ViT state_dict.

    A head of another size (e.g. a 7-class checkpoint starting a 9-class stage) is left new, and said so.
    """
    if not path.is_file():
        raise ModelError(f"initial checkpoint {path} does not exist")
    state = read_state_dict(path)
    if not any(key.startswith("backbone.vit.") for key in state):
        state = {f"backbone.vit.{key}": value for key, value in state.items() if not key.startswith("head.")}
        own = model.state_dict()
        state |= {k: v for k, v in own.items() if not k.startswith("backbone.vit.")}
        logger.info("%s read as a bare timm backbone; norm and classifier start new", path)
    head_shape = model.classifier.weight.shape
    if "classifier.weight" in state and state["classifier.weight"].shape != head_shape:
        logger.warning(
            "%s has a %d-class head; this model has %d classes, so the head starts new",
            path,
            state["classifier.weight"].shape[0],
            head_shape[0],
        )
        state["classifier.weight"], state["classifier.bias"] = model.classifier.weight, model.classifier.bias
    load_weights(model, state, path)
    return str(path)


def initialise(model: ViTTinyFER, architecture: str, init: str, model_kwargs: dict[str, Any]) -> str:
    """Load the initial weights; returns what they were ('random' when none), for the log and report."""
    if init == "random":
        logger.warning("training %s from random weights (model.init: random)", architecture)
        return "random"
    if init == "timm":
        return _load_timm_pretrained(model, architecture, model_kwargs)
    return _load_checkpoint(model, Path(init).expanduser())


def canonical_label_map(labels: list[str], label_map: dict[str, str | None]) -> dict[str, str | None]:
    """Model label -> canonical name; labels outside the canonical set map to None (dropped at inference)."""
    mapping = {}
    for label in labels:
        target = label_map.get(label, label)
        mapping[label] = target if target in CANONICAL_LABELS else None
    return mapping


def save_artifact(model: nn.Module, path: Path, sidecar: dict[str, Any]) -> Path:
    """`path` (.safetensors) plus `path.with_suffix('.json')`, the sidecar fervideo's loader reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(path), metadata={"format": "pt"})
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    return path


def read_artifact_sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".json")
    try:
        raw = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read sidecar {sidecar}: {exc}") from exc
    if not isinstance(raw, dict) or "architecture" not in raw or "labels" not in raw:
        raise ModelError(f"{sidecar}: needs 'architecture' and 'labels'")
    return raw


def load_artifact(path: Path) -> tuple[ViTTinyFER, dict[str, Any]]:
    """A trained model with its own label order (evaluation and export need all of its classes)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    if path.with_suffix(".json").is_file():
        sidecar = read_artifact_sidecar(path)
    elif path.suffix == ".pth":  # the seed checkpoint has no sidecar
        sidecar = {
            "architecture": "vit_tiny_patch16_224",
            "labels": list(CANONICAL_LABELS),
            "preprocessing": {"input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3},
        }
    else:
        raise ModelError(f"{path} needs a sidecar {path.with_suffix('.json').name}")
    model = build_classifier(sidecar["architecture"], len(sidecar["labels"]), sidecar.get("model_kwargs"))
    load_weights(model, read_state_dict(path), path)
    return model.eval(), sidecar
