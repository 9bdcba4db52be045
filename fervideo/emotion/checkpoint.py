"""Build a network for a ModelConfig and load a weights file into it strictly and safely.

No pickle: `.pth` goes through `torch.load(weights_only=True)`, `.safetensors` through safetensors.
A checkpoint that does not fit becomes a one-line ModelError instead of a torch traceback.
"""

import pickle
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from fervideo.emotion.config import MINI_XCEPTION, ModelConfig
from fervideo.emotion.minixception import MiniXception
from fervideo.emotion.vit import ViTTinyFER
from fervideo.errors import ModelError


def build_model(config: ModelConfig) -> nn.Module:
    """An untrained network of the declared architecture with one output per declared label."""
    num_classes = len(config.labels)
    if config.architecture == MINI_XCEPTION:
        return MiniXception(num_classes=num_classes, in_channels=config.in_channels)
    if config.architecture.startswith("vit") and _is_timm_model(config.architecture):
        if config.grayscale:
            raise ModelError(f"{config.architecture} takes RGB input; its sidecar must not set grayscale")
        model_kwargs = _checked_model_kwargs(config)
        try:
            return ViTTinyFER(config.architecture, num_classes=num_classes, **model_kwargs)
        except (TypeError, ValueError, AssertionError) as exc:  # timm's own checks of its keyword arguments
            raise ModelError(f"{config.architecture}: the sidecar's model_kwargs do not fit: {exc}") from None
    raise ModelError(
        f"unknown classifier architecture {config.architecture!r}; expected {MINI_XCEPTION!r} or a timm ViT"
    )


def _is_timm_model(name: str) -> bool:
    import timm  # only for ViTs: timm's import costs ~2 s that the bundled baseline should not pay

    return timm.is_model(name)


# timm keywords that would download or unpickle weights: weights come only from the verified checkpoint.
FORBIDDEN_MODEL_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict",
                          "checkpoint_path", "cache_dir")


def _checked_model_kwargs(config: ModelConfig) -> dict:
    model_kwargs = config.extra.get("model_kwargs") or {}
    if not isinstance(model_kwargs, dict):
        raise ModelError(f"{config.architecture}: the sidecar's model_kwargs must be a JSON object")
    forbidden = sorted(set(model_kwargs) & set(FORBIDDEN_MODEL_KWARGS))
    if forbidden:
        raise ModelError(f"the sidecar asks timm for {', '.join(forbidden)}: refused, weights come only from the "
                         "checkpoint file itself; remove these keys from model_kwargs")
    return model_kwargs


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return safetensors.torch.load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, safetensors.SafetensorError) as exc:
        # weights_only refuses pickled code with an UnpicklingError; a truncated zip is a RuntimeError.
        # Report the file and the first line of the cause, not the unpickler's internals.
        raise ModelError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a plain state_dict of tensors")
    # Checkpoints saved from nn.DataParallel carry a 'module.' prefix on every key.
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Strict load; any missing, unexpected or mis-shaped key is reported in one line."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if mis_shaped:
        key = mis_shaped[0]
        problems.append(
            f"{len(mis_shaped)} keys of the wrong shape (e.g. {key}: "
            f"{tuple(state[key].shape)} in file, {tuple(expected[key].shape)} expected)"
        )
    if problems:
        raise ModelError(f"checkpoint {path} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
