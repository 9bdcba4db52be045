"""What a classifier checkpoint declares about itself: architecture, label order, preprocessing.

A `.safetensors` checkpoint carries this in a JSON sidecar with the same stem; the seed `.pth` has no
sidecar, so `SEED_VIT_CONFIG` stands in for it.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fervideo.errors import ModelError
from fervideo.labels import CANONICAL_LABELS

MINI_XCEPTION = "mini_xception"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture + labels (in the model's own output order) + how to turn a crop into its input."""

    architecture: str
    labels: tuple[str, ...]
    # Model label -> canonical name; None drops a class the canonical set lacks (e.g. contempt).
    label_map: dict[str, str | None] = field(default_factory=dict)
    input_size: int = 224
    grayscale: bool = False
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return 1 if self.grayscale else 3

    def canonical_order(self) -> list[int]:
        """Column indices into the model's output that yield CANONICAL_LABELS order.

        Classes mapped to None (outside the canonical set) are left out; the classifier renormalises
        the remaining seven. Raises ModelError unless the kept labels are exactly the canonical set,
        because a silent partial mapping would put probabilities under the wrong emotion downstream.
        """
        mapped = [self.label_map.get(label, label) for label in self.labels]
        kept = [label for label in mapped if label is not None]
        if sorted(kept) != sorted(CANONICAL_LABELS):
            raise ModelError(
                f"model labels {list(self.labels)} do not map onto the canonical labels "
                f"{list(CANONICAL_LABELS)}; declare a 'label_map' in the sidecar JSON"
            )
        return [mapped.index(label) for label in CANONICAL_LABELS]


SEED_VIT_CONFIG = ModelConfig(architecture="vit_tiny_patch16_224", labels=CANONICAL_LABELS)


def _as_floats(value: Any, channels: int, what: str, path: Path) -> tuple[float, ...]:
    values = [value] * channels if isinstance(value, int | float) else list(value)
    if len(values) != channels or not all(isinstance(v, int | float) for v in values):
        raise ModelError(f"{path}: preprocessing.{what} must be a number or {channels} numbers")
    return tuple(float(v) for v in values)


def read_sidecar(path: Path) -> ModelConfig:
    """Parse a checkpoint's JSON sidecar; every user-fixable problem becomes a one-line ModelError."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read model sidecar {path}: {exc}") from exc
    if not isinstance(raw, dict) or "architecture" not in raw or "labels" not in raw:
        raise ModelError(f"{path}: sidecar must be a JSON object with 'architecture' and 'labels'")
    prep = raw.get("preprocessing", {})
    grayscale = bool(prep.get("grayscale", False))
    channels = 1 if grayscale else 3
    config = ModelConfig(
        architecture=str(raw["architecture"]),
        labels=tuple(str(label) for label in raw["labels"]),
        label_map={str(k): None if v is None else str(v) for k, v in raw.get("label_map", {}).items()},
        input_size=int(prep.get("input_size", 224)),
        grayscale=grayscale,
        mean=_as_floats(prep.get("mean", 0.5), channels, "mean", path),
        std=_as_floats(prep.get("std", 0.5), channels, "std", path),
        source=str(raw.get("source", "")),
        extra={k: v for k, v in raw.items() if k not in {"architecture", "labels", "label_map"}},
    )
    config.canonical_order()  # fail at load time, not at the first predict
    return config
