"""The training loop: stages, AdamW + warmup/cosine/plateau schedules, MixUp/CutMix, balancing, AMP,
gradient accumulation, early stopping, exact resume, per-epoch CSV + TensorBoard, final artifact.

Layout of a run (recipe.output_dir):
  <stage>/last.pt          resume checkpoint (plain tensors/dicts; loaded with weights_only=True)
  <stage>/best.safetensors best weights of the stage (+ .json sidecar)
  <stage>/metrics.csv      one row per epoch;  <stage>/tensorboard/  event files
  model.safetensors/.json  the final artifact (best weights of the last stage) for `fervideo process`
"""

import csv
import datetime as dt
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from timm.data import Mixup
from torch import nn
from torch.utils.data import DataLoader, Sampler, WeightedRandomSampler
from tqdm import tqdm

import fervideo
from fervideo.emotion.registry import resolve_device
from training.config import Recipe, StageConfig
from training.datasets import build_dataset
from training.evaluate import predict, summary_metrics
from training.model import build_classifier, canonical_label_map, initialise, save_artifact
from training.transforms import eval_transform, train_transform

logger = logging.getLogger(__name__)


class EpochSampler(Sampler[int]):
    """Shuffled (or class-balanced) indices drawn from a generator seeded by (seed, epoch), so a resumed
    run sees the same order, and can skip the part of the epoch it already trained on."""

    def __init__(self, labels: np.ndarray, seed: int, balanced: bool) -> None:
        self.labels, self.seed, self.balanced = labels, seed, balanced
        self.epoch, self.skip = 0, 0

    def indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.balanced:
            counts = np.bincount(self.labels)
            weights = torch.as_tensor(1.0 / counts[self.labels], dtype=torch.double)
            return list(WeightedRandomSampler(weights, len(self.labels), replacement=True, generator=generator))
        return torch.randperm(len(self.labels), generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.skip :])

    def __len__(self) -> int:
        return len(self.labels) - self.skip


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """CE against soft targets (MixUp/CutMix/label smoothing), optionally class-weighted."""
    log_probs = torch.log_softmax(logits.float(), dim=1)
    per_class = -targets * log_probs
    if weights is not None:
        per_class = per_class * weights
    return per_class.sum(dim=1).mean()


def lr_factor(step: int, total: int, warmup: int, scheduler: str, restart: int, mult: float, floor: float) -> float:
    """Linear warmup, then cosine (optionally with warm restarts) down to `floor` (min_lr / lr)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if scheduler in {"constant", "plateau"}:
        return 1.0
    t, length = step - warmup, max(total - warmup, 1)
    if scheduler == "cosine_restarts":
        length = max(restart, 1)
        while t >= length:
            t, length = t - length, max(int(length * mult), 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t / length, 1.0)))


@dataclass
class StageState:
    """Everything besides model/optimizer tensors that a resumed stage needs."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    done: bool = False
    running: dict[str, float] = field(
        default_factory=lambda: {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
    )
    history: list[dict[str, Any]] = field(default_factory=list)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


class StageTrainer:
    """Trains one stage; `run()` returns the path of the stage's best weights."""

    def __init__(self, recipe: Recipe, stage: StageConfig, stage_dir: Path, init: str, device: torch.device) -> None:
        self.recipe, self.stage, self.dir, self.device = recipe, stage, stage_dir, device
        m, optim = stage.model, stage.optim
        self.labels = list(m.labels)
        seed_everything(recipe.seed)  # before building: random init weights depend on the global RNG
        self.model = build_classifier(m.architecture, len(self.labels), m.model_kwargs)
        self.init_source = init
        self.train_set = build_dataset(
            stage.train, self.labels, train_transform(m.input_size, m.mean, m.std, stage.augment)
        )
        self.val_set = (
            build_dataset(stage.val, self.labels, eval_transform(m.input_size, m.mean, m.std)) if stage.val else None
        )
        self.sampler = EpochSampler(self.train_set.labels, recipe.seed, optim.balance == "sampler")
        self.batches_per_epoch = len(self.train_set) // optim.batch_size  # drop_last: MixUp needs even batches
        if self.batches_per_epoch == 0:
            raise ValueError(f"stage {stage.name}: fewer training images than one batch ({optim.batch_size})")
        self.steps_per_epoch = max(self.batches_per_epoch // optim.grad_accum, 1)
        self.total_steps = self.steps_per_epoch * optim.epochs
        self.optimizer = self._optimizer()
        self.plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                mode="min" if optim.monitor == "val_loss" else "max",
                factor=optim.plateau_factor,
                patience=optim.plateau_patience,
                min_lr=optim.min_lr,
            )
            if optim.scheduler == "plateau"
            else None
        )
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.class_weights = self._class_weights()
        self.mixup = self._mixup()
        self.state = StageState()

    # ----------------------------------------------------------------------------------------- setup
    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            # Norms, biases and token/position embeddings are not decayed, as in the ViT recipes.
            (no_decay if param.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) else decay).append(param)
        optim = self.stage.optim
        groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=optim.lr, betas=(0.9, 0.999))

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.stage.optim.amp
        if amp == "none":
            return None
        if self.device.type != "cuda":
            logger.warning("amp %s requested but training on %s: running in fp32", amp, self.device)
            return None
        if amp == "bf16" and not torch.cuda.is_bf16_supported():
            logger.warning("this GPU has no bf16: using fp16 with loss scaling")
            return torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16

    def _class_weights(self) -> torch.Tensor | None:
        if self.stage.optim.balance != "loss":
            return None
        counts = self.train_set.class_counts(len(self.labels)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        return torch.as_tensor(weights, dtype=torch.float32, device=self.device)

    def _mixup(self) -> Mixup | None:
        aug = self.stage.augment
        if aug.mixup <= 0 and aug.cutmix <= 0:
            return None
        return Mixup(
            mixup_alpha=aug.mixup,
            cutmix_alpha=aug.cutmix,
            prob=aug.mix_prob,
            label_smoothing=self.stage.optim.label_smoothing,
            num_classes=len(self.labels),
        )

    def _targets(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mixup is not None:
            return self.mixup(images, labels)
        smoothing, n = self.stage.optim.label_smoothing, len(self.labels)
        targets = nn.functional.one_hot(labels, n).float() * (1 - smoothing) + smoothing / n
        return images, targets

    # ------------------------------------------------------------------------------------ checkpoints
    @property
    def last_path(self) -> Path:
        return self.dir / "last.pt"

    def save_checkpoint(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "plateau": self.plateau.state_dict() if self.plateau else {},
            "scaler": self.scaler.state_dict(),
            "state": asdict(self.state),
            "rng": _rng_state(),
            "stage": self.stage.name,
            "init": self.init_source,
        }
        tmp = self.last_path.with_suffix(".tmp")
        torch.save(payload, tmp)
        tmp.replace(self.last_path)  # an interruption mid-write never leaves a broken last.pt

    def load_checkpoint(self) -> dict[str, Any]:
        payload = torch.load(self.last_path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.plateau and payload["plateau"]:
            self.plateau.load_state_dict(payload["plateau"])
        self.scaler.load_state_dict(payload["scaler"])
        self.state = StageState(**payload["state"])
        self.init_source = payload["init"]
        logger.info("resumed stage %s at epoch %d, step %d", self.stage.name, self.state.epoch, self.state.step)
        return payload["rng"]

    # ------------------------------------------------------------------------------------------ train
    def _set_lr(self) -> None:
        optim = self.stage.optim
        warmup = int(round(optim.warmup_epochs * self.steps_per_epoch))
        if self.plateau is not None and self.state.step >= warmup:
            return  # after warmup ReduceLROnPlateau owns the learning rate
        factor = lr_factor(
            self.state.step,
            self.total_steps,
            warmup,
            optim.scheduler,
            int(round(optim.restart_epochs * self.steps_per_epoch)),
            optim.restart_mult,
            optim.min_lr / optim.lr if optim.lr > 0 else 0.0,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = optim.lr * factor

    def _loader(self) -> DataLoader:
        self.sampler.epoch, self.sampler.skip = (
            self.state.epoch,
            self.state.batch_in_epoch * self.stage.optim.batch_size,
        )
        return DataLoader(
            self.train_set,
            batch_size=self.stage.optim.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=self.recipe.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # Its own generator, so creating the loader does not consume the global RNG (exact resume).
            generator=torch.Generator().manual_seed(self.recipe.seed + self.state.epoch),
        )

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, accumulate: int) -> tuple[float, int]:
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        images, targets = self._targets(images, labels)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.model(images)
        loss = soft_cross_entropy(logits, targets, self.class_weights)
        self.scaler.scale(loss / accumulate).backward()
        correct = int((logits.argmax(dim=1) == labels).sum())
        return loss.detach().item(), correct

    def _optimizer_step(self) -> None:
        self._set_lr()
        clip = self.stage.optim.grad_clip
        if clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1

    def train_epoch(self, stop_at_step: int | None, tb: Any) -> bool:
        """One epoch (or its remainder after a resume). False when stopped early by `stop_at_step`."""
        optim, state, running = self.stage.optim, self.state, self.state.running
        self.model.train()
        accumulate = optim.grad_accum
        # The optimizer step closes each group of `grad_accum` batches; a trailing partial group is skipped.
        usable = self.steps_per_epoch * accumulate
        bar = tqdm(
            total=usable,
            initial=state.batch_in_epoch,
            desc=f"{self.stage.name} epoch {state.epoch + 1}",
            leave=False,
            disable=None,
            unit="batch",
        )
        start = time.perf_counter()
        seconds_before = running["seconds"]
        for images, labels in self._loader():
            if state.batch_in_epoch >= usable:
                break
            loss, correct = self._train_step(images, labels, accumulate)
            running["loss"] += loss * len(labels)
            running["correct"] += correct
            running["seen"] += len(labels)
            state.batch_in_epoch += 1
            if state.batch_in_epoch % accumulate == 0:
                self._optimizer_step()
                running["seconds"] = seconds_before + time.perf_counter() - start
                if tb is not None:
                    tb.add_scalar("train/loss_step", loss, state.step)
                    tb.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], state.step)
                every = self.recipe.checkpoint_every
                if every and state.step % every == 0 and state.batch_in_epoch < usable:
                    self.save_checkpoint()
                if stop_at_step is not None and state.step >= stop_at_step:
                    bar.close()
                    return False
            bar.update(1)
            elapsed = max(seconds_before + time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                loss=f"{running['loss'] / running['seen']:.3f}",
                acc=f"{running['correct'] / running['seen']:.3f}",
                img_s=f"{running['seen'] / elapsed:.0f}",
            )
        bar.close()
        running["seconds"] = seconds_before + time.perf_counter() - start
        return True

    def end_epoch(self, tb: Any, writer: csv.DictWriter | None) -> dict[str, Any]:
        state, running, optim = self.state, self.state.running, self.stage.optim
        row: dict[str, Any] = {
            "stage": self.stage.name,
            "epoch": state.epoch + 1,
            "step": state.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": running["loss"] / max(running["seen"], 1),
            "train_accuracy": running["correct"] / max(running["seen"], 1),
            "images_per_s": running["seen"] / max(running["seconds"], 1e-9),
        }
        if self.val_set is not None:
            loader = DataLoader(self.val_set, batch_size=optim.batch_size, num_workers=self.recipe.num_workers)
            metrics = summary_metrics(predict(self.model, loader, self.device, self.amp_dtype), self.labels)
            row |= {
                "val_loss": metrics["loss"],
                "val_accuracy": metrics["accuracy"],
                "val_macro_f1": metrics["macro_f1"],
            }
        monitored = row.get(optim.monitor, -row["train_loss"])
        if _better(monitored, state.best, optim.monitor if optim.monitor in row else "val_accuracy"):
            state.best, state.best_epoch, state.bad_epochs = monitored, state.epoch + 1, 0
            self._save_best(row)
        else:
            state.bad_epochs += 1
        if self.plateau is not None and state.step >= int(optim.warmup_epochs * self.steps_per_epoch):
            self.plateau.step(monitored)
        state.history.append(row)
        for key, value in row.items():
            if tb is not None and isinstance(value, float):
                tb.add_scalar(f"epoch/{key}", value, state.epoch + 1)
        if writer is not None:
            writer.writerow(row)
        logger.info("%s", "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        state.epoch += 1
        state.batch_in_epoch = 0
        state.running = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "seconds": 0.0}
        return row

    def _save_best(self, row: dict[str, Any]) -> None:
        sidecar = self.sidecar(metrics=row)
        save_artifact(self.model, self.dir / "best.safetensors", sidecar)

    def sidecar(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The JSON fervideo's emotion stage reads (architecture, labels, label_map, preprocessing) + provenance."""
        m = self.stage.model
        mapping = canonical_label_map(self.labels, m.label_map)
        return {
            "name": self.recipe.name,
            "architecture": m.architecture,
            "model_kwargs": m.model_kwargs,
            "labels": self.labels,
            # Only entries that differ from the identity; None = not a canonical emotion (dropped at inference).
            "label_map": {k: v for k, v in mapping.items() if k != v},
            "preprocessing": {
                "input_size": m.input_size,
                "grayscale": False,
                "mean": m.mean,
                "std": m.std,
                "note": "RGB aligned crop resized to input_size (bilinear, antialias), x/255, (x-mean)/std",
            },
            "output": "logits; apply softmax",
            "source": f"fervideo training recipe {self.recipe.name!r}, stage {self.stage.name!r}",
            "init": self.init_source,
            "recipe": self.recipe.raw,
            "stage": self.stage.name,
            "data": {
                "train": self.train_set.fingerprints(),
                "val": self.val_set.fingerprints() if self.val_set else {},
                "train_class_counts": dict(
                    zip(self.labels, self.train_set.class_counts(len(self.labels)).tolist(), strict=True)
                ),
            },
            "metrics": metrics,
            "best_epoch": self.state.best_epoch,
            "trained_with": {"fervideo": fervideo.__version__, "torch": torch.__version__, "timm": timm.__version__},
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }

    def run(self, resume: bool, stop_at_step: int | None = None) -> Path | None:
        """Train the stage; returns its best weights, or None when stopped at `stop_at_step`."""
        rng = None
        if resume and self.last_path.is_file():
            rng = self.load_checkpoint()
        else:
            self.init_source = initialise(
                self.model, self.stage.model.architecture, self.init_source, self.stage.model.model_kwargs
            )
        self.model.to(self.device)
        _move_optimizer(self.optimizer, self.device)
        if rng is not None:
            _set_rng_state(rng)
        if self.state.done:
            return self.dir / "best.safetensors"
        tb = _tensorboard(self.dir / "tensorboard")
        metrics_path = self.dir / "metrics.csv"
        self.dir.mkdir(parents=True, exist_ok=True)
        fields = ["stage", "epoch", "step", "lr", "train_loss", "train_accuracy", "images_per_s"]
        fields += ["val_loss", "val_accuracy", "val_macro_f1"] if self.val_set is not None else []
        # Rewrite the CSV from the checkpoint's history so a resumed run has no duplicate or missing rows.
        with metrics_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.state.history)
            try:
                while self.state.epoch < self.stage.optim.epochs:
                    if not self.train_epoch(stop_at_step, tb):
                        return None
                    self.end_epoch(tb, writer)
                    handle.flush()
                    patience = self.stage.optim.early_stopping
                    if patience is not None and self.state.bad_epochs >= patience:
                        logger.info("early stopping: no improvement in %d epochs", patience)
                        break
                    self.save_checkpoint()
            except KeyboardInterrupt:
                self.save_checkpoint()
                logger.warning("interrupted: saved %s; rerun with --resume to continue", self.last_path)
                raise
            finally:
                if tb is not None:
                    tb.close()
        self.state.done = True
        self.save_checkpoint()
        return self.dir / "best.safetensors"


def _move_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


def _tensorboard(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed: no event files (pip install tensorboard)")
        return None
    return SummaryWriter(str(path))


@dataclass
class RunResult:
    artifact: Path | None
    stages: list[dict[str, Any]]


def train_recipe(
    recipe: Recipe, resume: bool = False, stop_at_step: int | None = None, device: str | None = None
) -> RunResult:
    """Run every stage in order; each later stage starts from the previous stage's best weights.

    `stop_at_step` stops the first unfinished stage after that many optimizer steps (as an interruption
    would); a later call with `resume=True` continues from the last checkpoint.
    """
    out = Path(recipe.output_dir)
    torch_device = resolve_device(device or recipe.device)
    init = recipe.stages[0].model.init
    summaries = []
    for stage in recipe.stages:
        trainer = StageTrainer(recipe, stage, out / stage.name, init, torch_device)
        best = trainer.run(resume=resume, stop_at_step=stop_at_step)
        if best is None:
            return RunResult(None, summaries)
        summaries.append(
            {
                "stage": stage.name,
                "best_epoch": trainer.state.best_epoch,
                "best": trainer.state.best,
                "init": trainer.init_source,
                "history": trainer.state.history,
            }
        )
        init = str(best)
    final = out / "model.safetensors"
    final.write_bytes(best.read_bytes())
    sidecar = best.with_suffix(".json").read_text()
    final.with_suffix(".json").write_text(sidecar)
    logger.info("final model: %s", final)
    return RunResult(final, summaries)

