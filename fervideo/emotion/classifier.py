"""EmotionClassifier: batched face crops in, canonical-order emotion probabilities out."""

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fervideo.emotion.config import MINI_XCEPTION, SEED_VIT_CONFIG, ModelConfig
from fervideo.emotion.preprocess import check_crops
from fervideo.emotion.preprocess_numpy import to_model_input_numpy
from fervideo.emotion.quantize import check_quantizable, normalise_quantize, quantize_dynamic_int8, quantize_onnx_int8
from fervideo.labels import CANONICAL_LABELS
from fervideo.runtime import (
    OnnxModel,
    cached_onnx_file,
    device_of,
    export_onnx,
    load_onnx_model,
    requested_backend,
    resolve_backend,
    torch_device,
)
from fervideo.utils import sha256_file

# torch is imported where a network runs in it (or is exported), never at the top: the baseline in ONNX
# Runtime from a cached export needs neither torch nor the network's module (docs/speed.md, start-up).

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _autocast(device) -> Iterator[None]:
    """bf16 autocast on CUDA (fp16 where the GPU lacks bf16); plain fp32 on CPU, where it buys little."""
    if device.type != "cuda":
        yield
        return
    import torch

    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    with torch.autocast("cuda", dtype=dtype):
        yield


# Architectures `--backend auto` runs in ONNX Runtime on the CPU. mini-Xception: 0.84 vs 3.7 ms per face.
# ViT-Tiny: as fast as torch in the pipeline (26.5 vs 26.6 sampled frames/s, docs/speed.md), and with a
# warm export cache neither torch nor timm is imported: ~5 s less start-up, ~0.5 GB less memory. Other
# architectures run there only when asked (`--backend onnx`); any export failure falls back to torch.
ONNX_ARCHITECTURES = (MINI_XCEPTION, SEED_VIT_CONFIG.architecture)  # the ViT-Tiny


def export_classifier_onnx(model, config: ModelConfig, path: Path) -> None:
    """Export the network (logits) for its declared input, with a free batch size."""
    import torch

    example = torch.zeros((1, config.in_channels, config.input_size, config.input_size))
    export_onnx(model.cpu().eval(), example, path, ["input"], ["logits"],
                {"input": {0: "batch"}, "logits": {0: "batch"}})


class EmotionClassifier:
    """A loaded classifier. `labels` is always CANONICAL_LABELS: the model's own order is remapped.

    backend: auto, torch or onnx (fervideo.runtime); `auto` runs ONNX_ARCHITECTURES in ONNX Runtime, `onnx`
    every architecture, from an export cached by the weights' sha256 (quantised there by ONNX Runtime); that path
    preprocesses in numpy (preprocess_numpy, equal to the torch preprocessing to float32 rounding) and
    builds the torch network only to export it the first time.
    model: the loaded network, or None with `build` (a function returning it) to build it only if needed.
    quantize: None (or "none") or "int8": dynamic int8 quantisation of a ViT on the CPU (emotion/quantize.py);
    it changes the results, so it shows in `result_name` and `provenance()`.
    """

    labels: tuple[str, ...] = CANONICAL_LABELS

    def __init__(
        self,
        model: Any,
        config: ModelConfig,
        *,
        name: str,
        weights_sha256: str,
        source: str,
        device: Any,
        batch_size: int = 64,
        fallback_reason: str | None = None,
        backend: str | None = None,
        threads: int | None = None,
        build: Callable[[], Any] | None = None,
        quantize: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model is None and build is None:
            raise ValueError("EmotionClassifier needs a model or a function that builds it")
        self._model = model
        self._build = build
        self.config = config
        self.name = name
        self.architecture = config.architecture
        self.weights_sha256 = weights_sha256
        self.source = source
        self.device = device_of(device)
        self.batch_size = batch_size
        # Set when `auto` could not use the preferred model, so the CLI can say so loudly.
        self.fallback_reason = fallback_reason
        self._canonical_order = np.asarray(config.canonical_order())
        self.quantize = normalise_quantize(quantize)
        # Before any export or build: a refused option must not cost a network load first.
        check_quantizable(self.quantize, config.architecture, self.device.type, what=name)
        self.backend = resolve_backend(backend, self.device.type)
        asked_for_onnx = requested_backend(backend) == "onnx"
        if config.architecture not in ONNX_ARCHITECTURES and not asked_for_onnx:
            self.backend = "torch"
        self._onnx: OnnxModel | None = None
        if self.backend == "onnx":
            self._onnx = self._load_onnx(threads)
            self.backend = "onnx" if self._onnx is not None else "torch"
        if self._onnx is None:
            self.device = torch_device(self.device)  # a torch.device from here on
            self.model  # noqa: B018 -- built now, so a bad checkpoint fails at load time, not mid-video
            if self.quantize:  # after the weights are in: quantize_dynamic reads the fp32 Linear weights
                self._model = quantize_dynamic_int8(self._model)

    def _load_onnx(self, threads: int | None) -> OnnxModel | None:
        """The cached fp32 export in ONNX Runtime, or with `quantize` its int8 quantisation (cached beside it,
        made from it on first use); None where either fails (torch then runs, quantised the torch way)."""
        config = self.config
        kind = f"{config.architecture}-{config.in_channels}x{config.input_size}-{len(config.labels)}"

        def export(out: Path) -> None:
            export_classifier_onnx(self.model, config, out)

        if not self.quantize:
            return load_onnx_model(kind, self.weights_sha256, export, threads)
        return load_onnx_model(f"{kind}-{self.quantize}", self.weights_sha256, lambda out: quantize_onnx_int8(
            cached_onnx_file(kind, self.weights_sha256, export), out), threads)

    @property
    def quantize_setting(self) -> str | None:
        """What enters the settings key: the mode, and which implementation ran it (ONNX Runtime's and torch's
        int8 each agree with fp32 within the stated tolerance, but not bit for bit with each other)."""
        if not self.quantize:
            return None
        return f"{self.quantize}-onnxruntime" if self._onnx is not None else self.quantize

    @property
    def model(self):
        """The torch network, built on first use (on the ONNX path: only to export it)."""
        if self._model is None:
            self._model = self._build()
        if not getattr(self, "_model_placed", False):
            self._model = self._model.eval().to(str(self.device))
            self._model_placed = True
        return self._model

    @property
    def result_name(self) -> str:
        """The classifier name stored with each session: `+int8` marks a quantised one, so exports and the
        dashboard show it and a PHQ head (which matches on name and weights) never mixes the two."""
        return f"{self.name}+{self.quantize}" if self.quantize else self.name

    @classmethod
    def from_file(
        cls, path: Path, config: ModelConfig, *, name: str, source: str, device: Any, **kwargs: Any
    ) -> "EmotionClassifier":
        def build():
            from fervideo.emotion.checkpoint import build_model, load_weights, read_state_dict

            model = build_model(config)
            load_weights(model, read_state_dict(path), path)
            return model

        return cls(
            None, config, name=name, weights_sha256=sha256_file(path), source=source, device=device, build=build,
            **kwargs,
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

    def _predict_batch(self, crops: np.ndarray) -> np.ndarray:
        if self._onnx is not None:
            logits = self._onnx.run(to_model_input_numpy(crops, self.config))[0].astype(np.float32, copy=False)
            # As the torch path below: softmax in fp32, keep the canonical seven, renormalise.
            exp = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = (exp / exp.sum(axis=1, keepdims=True))[:, self._canonical_order]
            return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)
        return self._predict_batch_torch(crops)

    def _predict_batch_torch(self, crops: np.ndarray) -> np.ndarray:
        import torch

        from fervideo.emotion.preprocess import to_model_input

        with torch.inference_mode():
            model_input = to_model_input(crops, self.config, self.device)
            with _autocast(self.device):
                logits = self.model(model_input)
            # Softmax in fp32 so low-precision logits still give rows that sum to 1; renormalise after
            # dropping classes outside the canonical seven (a no-op for 7-class models).
            order = torch.from_numpy(self._canonical_order).to(self.device)
            probs = torch.softmax(logits.float(), dim=1).index_select(1, order)
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
            "quantize": self.quantize,
            "fallback_reason": self.fallback_reason,
        }

    def __repr__(self) -> str:
        return (
            f"EmotionClassifier(name={self.name!r}, architecture={self.architecture!r}, device={self.device})"
        )
