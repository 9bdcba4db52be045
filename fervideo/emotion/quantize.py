"""Opt-in int8 dynamic quantisation of a ViT classifier on the CPU (docs/speed.md, "int8 (opt-in)").

Where the ViT runs in ONNX Runtime (`--backend auto` on the CPU for the ViT-Tiny, or `onnx`), its cached
fp32 export is quantised by ONNX Runtime (`onnxruntime.quantization.quantize_dynamic`: MatMul and Gemm
weights as int8, activations quantised per call) and the int8 file cached beside it, named by the same
weights' sha256; with a warm cache neither torch nor timm is imported. Elsewhere (`--backend torch`, or a
ViT ONNX Runtime does not run by default), `torch.ao.quantization.quantize_dynamic` stores every nn.Linear's
weights as int8 and quantises its input per batch. In a ViT the linear layers (attention projections, MLPs,
head) are nearly all the compute, so that is where it can pay. It changes the probabilities, so it is never
on by default: a quantised classifier has its own settings key (which also says which of the two quantised
it: they differ slightly from each other) and a stored name with a `+int8` suffix, and a session processed
with it is never taken for one processed without it (nor accepted by a PHQ head trained on the other).

Refused, with a one-line usage error, where it would not do what it says:
- on CUDA: dynamic int8 has no CUDA kernels (the GPU path already runs the ViT in bf16);
- for anything but a timm ViT: the mini-Xception baseline is convolutions plus no linear layer to speak
  of, which dynamic quantisation leaves untouched, and on the CPU it runs in ONNX Runtime anyway.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fervideo.errors import InvalidArgumentError

INT8 = "int8"
QUANTIZE_CHOICES = ("none", INT8)


def normalise_quantize(value: str | None) -> str | None:
    """None for no quantisation ("none" or None), else the mode; anything else is a usage error."""
    if value is None or value == "none":
        return None
    if value not in QUANTIZE_CHOICES:
        raise InvalidArgumentError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {value!r}")
    return value


def is_vit(architecture: str) -> bool:
    # The rule checkpoint.build_model uses: a timm ViT's name starts with "vit".
    return architecture.startswith("vit")


def check_quantizable(quantize: str | None, architecture: str, device_type: str, what: str = "the model") -> None:
    """InvalidArgumentError (exit 2) unless `quantize` can honestly apply to this classifier and device."""
    if quantize is None:
        return
    if device_type != "cpu":
        raise InvalidArgumentError(
            f"--quantize {quantize} runs on the CPU only (dynamic int8 has no CUDA kernels); "
            "use --device cpu, or drop --quantize"
        )
    if not is_vit(architecture):
        raise InvalidArgumentError(
            f"--quantize {quantize} applies only to ViT classifiers; {what} is {architecture}, whose "
            "convolutions dynamic quantisation does not touch; drop --quantize"
        )


def quantize_dynamic_int8(model: Any) -> Any:
    """The model with every nn.Linear replaced by a dynamically quantised int8 one (CPU only)."""
    import torch

    with warnings.catch_warnings():
        # Recent torch marks torch.ao.quantization as deprecated in favour of torchao, which is not a
        # dependency; the eager API still works here, and the notice would otherwise print on every run.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def quantize_onnx_int8(source: Path, out: Path) -> None:
    """ONNX Runtime's dynamic int8 quantisation of an exported network (`source`) into `out`: the weights of
    its MatMul and Gemm nodes as int8, their inputs quantised per call (u8 activations, s8 weights)."""
    import onnxruntime.quantization as ort_quantization

    with _root_logger_quiet_for(Path(ort_quantization.__file__).parent):
        ort_quantization.quantize_dynamic(source, out, op_types_to_quantize=["MatMul", "Gemm"],
                                          weight_type=ort_quantization.QuantType.QInt8)


@contextlib.contextmanager
def _root_logger_quiet_for(folder: Path) -> Iterator[None]:
    """Drop what code under `folder` logs on the root logger (ONNX Runtime's quantiser advises pre-processing
    there on every call, via logging.warning, which would also install a stderr handler on a bare root)."""
    root = logging.getLogger()
    guard = logging.NullHandler()  # logging.warning() calls basicConfig() only on a root with no handler
    prefix = str(folder)

    def from_elsewhere(record: logging.LogRecord) -> bool:
        return not record.pathname.startswith(prefix)

    root.addHandler(guard)
    root.addFilter(from_elsewhere)
    try:
        yield
    finally:
        root.removeFilter(from_elsewhere)
        root.removeHandler(guard)


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """How far `candidate` probabilities [N, C] are from `reference` ones: max and mean absolute
    difference over every cell, and the share of rows with the same top-1 class (tests, bench_int8.py)."""
    if reference.shape != candidate.shape or len(reference) == 0:
        raise ValueError(f"need two non-empty arrays of one shape, got {reference.shape} and {candidate.shape}")
    difference = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    same_top1 = reference.argmax(axis=1) == candidate.argmax(axis=1)
    return {"max_abs": float(difference.max()), "mean_abs": float(difference.mean()),
            "top1_agreement": float(same_top1.mean()), "n": len(reference)}
