"""A training recipe read from YAML: model, data sources, optimisation, augmentation and stages.

A recipe is one YAML file. Its top level is the base stage; `stages:` (optional) is a list of partial
overrides applied in order, each initialised from the weights the previous stage ended with.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fervideo.errors import DataFileError
from fervideo.labels import CANONICAL_LABELS


@dataclass
class SourceConfig:
    """One data source. `format`: image_folder, fer2013, ferplus, rafdb, affectnet, hf."""

    format: str
    path: str
    split: str = "train"
    label_map: dict[str, str | None] = field(default_factory=dict)  # source name -> model label (None: drop)
    drop: list[str] = field(default_factory=list)  # source labels to leave out
    images: str | None = None  # FER+: fer2013.csv or the FER+ image folder; AffectNet CSV: image root
    contempt: str = "drop"  # AffectNet / FER+: "drop" or "keep"
    image_column: str = "image"  # Hugging Face datasets
    label_column: str = "label"
    limit: int | None = None  # the first N samples only (smoke runs)


@dataclass
class ModelSection:
    architecture: str = "vit_tiny_patch16_224"
    labels: list[str] = field(default_factory=lambda: list(CANONICAL_LABELS))
    label_map: dict[str, str | None] = field(default_factory=dict)  # model label -> canonical (None: none)
    init: str = "timm"  # "timm" (timm pretrained weights), "random", or a checkpoint path
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # timm overrides, e.g. img_size, depth
    input_size: int = 224
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])


@dataclass
class AugmentSection:
    hflip: float = 0.5
    rotation: float = 10.0  # degrees, +-
    color_jitter: float = 0.2  # brightness/contrast/saturation strength; 0 turns it off
    random_resized_crop: list[float] | None = field(default_factory=lambda: [0.8, 1.0])  # scale range
    mixup: float = 0.0  # MixUp alpha; 0 turns it off
    cutmix: float = 0.0  # CutMix alpha
    mix_prob: float = 1.0


@dataclass
class OptimSection:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    scheduler: str = "cosine"  # cosine, cosine_restarts, plateau, constant
    restart_epochs: float = 10.0  # cosine_restarts: first cycle length
    restart_mult: float = 1.0
    min_lr: float = 1e-6
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    label_smoothing: float = 0.0
    balance: str = "none"  # none, sampler (WeightedRandomSampler) or loss (class-weighted loss)
    amp: str = "none"  # none, bf16, fp16 (CUDA only)
    grad_accum: int = 1
    grad_clip: float | None = 1.0
    early_stopping: int | None = None  # patience in epochs on the monitored metric
    monitor: str = "val_accuracy"  # or val_loss, val_macro_f1


@dataclass
class StageConfig:
    name: str = "main"
    train: list[SourceConfig] = field(default_factory=list)
    val: list[SourceConfig] = field(default_factory=list)
    model: ModelSection = field(default_factory=ModelSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    optim: OptimSection = field(default_factory=OptimSection)


@dataclass
class Recipe:
    name: str
    description: str
    output_dir: str
    seed: int
    device: str
    num_workers: int
    checkpoint_every: int  # optimizer steps between resume checkpoints (0: only at epoch ends)
    stages: list[StageConfig]
    raw: dict[str, Any]  # the YAML as read, stored in the sidecar for reproducibility


_TOP_KEYS = {"name", "description", "output_dir", "seed", "device", "num_workers", "checkpoint_every", "stages"}
_STAGE_KEYS = {f.name for f in dataclasses.fields(StageConfig)}


def _build(cls: type, data: Any, where: str) -> Any:
    """Dataclass from a mapping, recursing into nested sections; unknown keys are errors."""
    if not isinstance(data, dict):
        raise DataFileError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DataFileError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value, f"{where}.{key}")
        elif typing.get_origin(hint) is list and typing.get_args(hint)[0] is SourceConfig:
            value = [_build(SourceConfig, item, f"{where}.{key}[{i}]") for i, item in enumerate(value or [])]
        elif isinstance(hint, types.UnionType) and float in typing.get_args(hint) and isinstance(value, int):
            value = float(value)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise DataFileError(f"{where}: {exc}") from exc


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge; lists (e.g. data sources) are replaced, not appended."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def recipe_from_dict(raw: dict[str, Any], where: str = "recipe", base_dir: Path | None = None) -> Recipe:
    if not isinstance(raw, dict):
        raise DataFileError(f"{where}: a recipe must be a YAML mapping")
    unknown = sorted(set(raw) - _TOP_KEYS - _STAGE_KEYS)
    if unknown:
        raise DataFileError(f"{where}: unknown key(s) {unknown}")
    base = {key: value for key, value in raw.items() if key in _STAGE_KEYS}
    overrides = raw.get("stages") or [{}]
    stages = [
        _build(StageConfig, _merge(base, {"name": f"stage{i + 1}"} | (o or {})), f"{where}.stages[{i}]")
        for i, o in enumerate(overrides)
    ]
    if len(overrides) == 1 and not raw.get("stages"):
        stages[0].name = "main"
    for stage in stages:
        _check_stage(stage, where)
        if base_dir is not None:
            for source in stage.train + stage.val:
                source.path = str(base_dir / Path(source.path).expanduser())
    output_dir = Path(str(raw.get("output_dir", f"runs/{raw.get('name', 'run')}"))).expanduser()
    return Recipe(
        name=str(raw.get("name", "run")),
        description=str(raw.get("description", "")),
        output_dir=str(output_dir),
        seed=int(raw.get("seed", 0)),
        device=str(raw.get("device", "auto")),
        num_workers=int(raw.get("num_workers", 2)),
        checkpoint_every=int(raw.get("checkpoint_every", 0)),
        stages=stages,
        raw=raw,
    )


def _check_stage(stage: StageConfig, where: str) -> None:
    optim = stage.optim
    choices = {
        "scheduler": (optim.scheduler, {"cosine", "cosine_restarts", "plateau", "constant"}),
        "balance": (optim.balance, {"none", "sampler", "loss"}),
        "amp": (optim.amp, {"none", "bf16", "fp16"}),
        "monitor": (optim.monitor, {"val_accuracy", "val_loss", "val_macro_f1"}),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise DataFileError(f"{where}: stage {stage.name}: optim.{key} {value!r} is not one of {sorted(allowed)}")
    if not stage.train:
        raise DataFileError(f"{where}: stage {stage.name} has no training data (`train:` list of sources)")
    if optim.grad_accum < 1 or optim.batch_size < 1 or optim.epochs < 1:
        raise DataFileError(f"{where}: stage {stage.name}: epochs, batch_size and grad_accum must be >= 1")
    if len(set(stage.model.labels)) != len(stage.model.labels):
        raise DataFileError(f"{where}: stage {stage.name}: model.labels has duplicates")


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a YAML recipe. Relative data paths are taken from the working directory, as on the CLI."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataFileError(f"cannot read recipe {path}: {str(exc).splitlines()[0]}") from exc
    return recipe_from_dict(_merge(raw or {}, overrides or {}), where=str(path))
