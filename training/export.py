"""Export a trained classifier to TorchScript and ONNX (dynamic batch), and check that ONNX Runtime and
PyTorch agree on random inputs.

Tolerance: max |logit difference| <= LOGIT_ATOL (1e-4) and max |probability difference| <= PROB_ATOL (1e-5)
in fp32 on CPU. Both artifacts take float32 [N, 3, S, S] already normalised (mean/std in the sidecar) and
return logits over the sidecar's labels.
"""

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fervideo.errors import ModelError
from training.model import load_artifact

logger = logging.getLogger(__name__)

LOGIT_ATOL = 1e-4
PROB_ATOL = 1e-5


@dataclass
class ExportResult:
    torchscript: Path | None
    onnx: Path | None
    max_logit_diff: float | None = None
    max_prob_diff: float | None = None


def export_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trace warnings about python-side shape asserts in timm
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))
    return path


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int = 18) -> Path:
    """The dynamo exporter with a dynamic batch dimension; the TorchScript-based one if that fails."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            verbose=False,
        )
        program.save(str(path))
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; we fall back, then verify
        logger.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", str(exc).splitlines()[0])
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
        )
    return path


def check_onnx(model: torch.nn.Module, path: Path, size: int, batches: tuple[int, ...] = (1, 5)) -> tuple[float, float]:
    """Max abs logit and probability differences, ONNX Runtime vs PyTorch, over random batches."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(0)
    logit_diff = prob_diff = 0.0
    for batch in batches:
        x = torch.randn(batch, 3, size, size, generator=generator)
        with torch.inference_mode():
            expected = model(x).numpy()
        actual = session.run(None, {name: x.numpy()})[0]
        logit_diff = max(logit_diff, float(np.abs(actual - expected).max()))
        prob_diff = max(prob_diff, float(np.abs(_softmax(actual) - _softmax(expected)).max()))
    return logit_diff, prob_diff


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def export_model(model_path: Path, out_dir: Path, formats: tuple[str, ...] = ("torchscript", "onnx")) -> ExportResult:
    model, sidecar = load_artifact(model_path)
    model = model.float().eval()
    size = int(sidecar.get("preprocessing", {}).get("input_size", 224))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(model_path).stem
    example = torch.randn(2, 3, size, size)
    result = ExportResult(None, None)
    if "torchscript" in formats:
        result.torchscript = export_torchscript(model, example, out_dir / f"{stem}.torchscript.pt")
    if "onnx" in formats:
        result.onnx = export_onnx(model, example, out_dir / f"{stem}.onnx")
        result.max_logit_diff, result.max_prob_diff = check_onnx(model, result.onnx, size)
        if result.max_logit_diff > LOGIT_ATOL or result.max_prob_diff > PROB_ATOL:
            raise ModelError(
                f"ONNX Runtime and PyTorch disagree: max logit diff {result.max_logit_diff:.2e} "
                f"(tolerance {LOGIT_ATOL:.0e}), max prob diff {result.max_prob_diff:.2e} (tolerance {PROB_ATOL:.0e})"
            )
    # The sidecar travels with the exports: labels and preprocessing are needed to use them.
    (out_dir / f"{stem}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return result
