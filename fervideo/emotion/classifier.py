"""EmotionClassifier: batched face crops in, canonical-order emotion probabilities out."""

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fervideo.emotion.checkpoint import build_model, load_weights, read_state_dict
from fervideo.emotion.config import MINI_XCEPTION, ModelConfig
from fervideo.emotion.preprocess import check_crops, to_model_input
from fervideo.labels import CANONICAL_LABELS
from fervideo.runtime import OnnxModel, export_onnx, load_onnx_model, resolve_backend
from fervideo.utils import sha256_file

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _autocast(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA (fp16 where the GPU lacks bf16); plain fp32 on CPU, where it buys little."""
    if device.type != "cuda":
        yield
        return
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.autocast("cuda", dtype=dtype):
        yield


# Architectures that run faster in ONNX Runtime on the CPU (mini-Xception: 0.84 vs 3.7 ms per face).
# The ViT-Tiny does not (16 ms vs 14.5 ms in torch), so it stays in torch whatever the backend setting.
ONNX_ARCHITECTURES = (MINI_XCEPTION,)


def export_classifier_onnx(model: nn.Module, config: ModelConfig, path: Path) -> None:
    """Export the network (logits) for its declared input, with a free batch size."""
    example = torch.zeros((1, config.in_channels, config.input_size, config.input_size))
    export_onnx(model.cpu().eval(), example, path, ["input"], ["logits"],
                {"input": {0: "batch"}, "logits": {0: "batch"}})


class EmotionClassifier:
    """A loaded classifier. `labels` is always CANONICAL_LABELS: the model's own order is remapped.

    backend: auto, torch or onnx (fervideo.runtime); only ONNX_ARCHITECTURES run in ONNX Runtime, from an
    export cached by the weights' sha256. Preprocessing stays in torch, so both backends see one input.
    """

    labels: tuple[str, ...] = CANONICAL_LABELS

    def __init__(
        self,
        model: nn.Module,
        config: ModelConfig,
        *,
        name: str,
        weights_sha256: str,
        source: str,
        device: torch.device,
        batch_size: int = 64,
        fallback_reason: str | None = None,
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval().to(device)
        self.config = config
        self.name = name
        self.architecture = config.architecture
        self.weights_sha256 = weights_sha256
        self.source = source
        self.device = device
        self.batch_size = batch_size
        # Set when `auto` could not use the preferred model, so the CLI can say so loudly.
        self.fallback_reason = fallback_reason
        self._canonical_order = torch.tensor(config.canonical_order(), device=device)
        self.backend = resolve_backend(backend, device.type)
        if config.architecture not in ONNX_ARCHITECTURES:
            self.backend = "torch"
        self._onnx: OnnxModel | None = None
        if self.backend == "onnx":
            kind = f"{config.architecture}-{config.in_channels}x{config.input_size}-{len(config.labels)}"
            self._onnx = load_onnx_model(kind, weights_sha256, lambda out: export_classifier_onnx(model, config, out),
                                         threads)
            self.backend = "onnx" if self._onnx is not None else "torch"

    @classmethod
    def from_file(
        cls, path: Path, config: ModelConfig, *, name: str, source: str, device: torch.device, **kwargs: Any
    ) -> "EmotionClassifier":
        model = build_model(config)
        load_weights(model, read_state_dict(path), path)
        return cls(
            model, config, name=name, weights_sha256=sha256_file(path), source=source, device=device, **kwargs
        )

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] RGB aligned crops -> float32 [N, 7] probabilities in CANONICAL_LABELS order."""
        check_crops(crops)
        outputs = [
            self._predict_batch(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)
        ]
        if not outputs:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.concatenate(outputs)

    @torch.inference_mode()
    def _predict_batch(self, crops: np.ndarray) -> np.ndarray:
        model_input = to_model_input(crops, self.config, self.device)
        if self._onnx is not None:
            logits = torch.from_numpy(self._onnx.run(model_input.numpy())[0])
        else:
            with _autocast(self.device):
                logits = self.model(model_input)
        # Softmax in fp32 so low-precision logits still give rows that sum to 1; renormalise after
        # dropping classes outside the canonical seven (a no-op for 7-class models).
        probs = torch.softmax(logits.float(), dim=1).index_select(1, self._canonical_order)
        probs = probs / probs.sum(dim=1, keepdim=True)
        return probs.cpu().numpy().astype(np.float32, copy=False)

    def provenance(self) -> dict[str, Any]:
        """What a stored result must record to say which classifier produced it."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "labels": list(self.labels),
            "model_labels": list(self.config.labels),
            "weights_sha256": self.weights_sha256,
            "source": self.source,
            "input_size": self.config.input_size,
            "grayscale": self.config.grayscale,
            "device": str(self.device),
            "backend": self.backend,
            "fallback_reason": self.fallback_reason,
        }

    def __repr__(self) -> str:
        return (
            f"EmotionClassifier(name={self.name!r}, architecture={self.architecture!r}, device={self.device})"
        )
