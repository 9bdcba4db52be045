"""How the networks run: the inference backend (torch or ONNX Runtime) and the CPU thread policy.

Backends. `onnx` runs the face detector and the mini-Xception baseline in ONNX Runtime, from an ONNX
file exported once from the same weights and cached under FERVIDEO_HOME by the weights' sha256 (so new
weights never meet a stale export). `auto` (the default) means onnx on the CPU when onnxruntime is
installed, torch otherwise; on CUDA it means torch (batched on the GPU under autocast). A requested
backend that cannot be used falls back to torch with a one-line warning, since results agree within
the tolerances in docs/speed.md either way.

Threads. `threads=0` (the default) uses every core the process may run on. On a shared machine the
thread pools must not busy-wait: a spinning OpenMP or ONNX Runtime worker burns a core another process
needs, and under contention both slow down many times over. So OpenMP is told to wait passively and ONNX
Runtime not to spin; see docs/speed.md for the measurements.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fervideo.errors import InvalidArgumentError

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx"]
BACKEND_CHOICES = ("auto", "torch", "onnx")
BACKEND_ENV = "FERVIDEO_BACKEND"
THREADS_ENV = "FERVIDEO_THREADS"
DECODE_THREADS_ENV = "FERVIDEO_DECODE_THREADS"
# Bump when the exported graphs change (input layout, fused preprocessing), so old exports are not reused.
ONNX_EXPORT_VERSION = 1


@dataclass(frozen=True)
class CpuDevice:
    """The CPU, named without importing torch: `.type` and `str()` as torch.device("cpu")'s. Used while
    nothing needs torch (ONNX Runtime from cached exports); torch code converts with torch.device(str(d))."""

    type: str = "cpu"
    index: None = None

    def __str__(self) -> str:
        return self.type


def device_of(device: Any) -> Any:
    """A torch.device for `device` (a string or a torch.device), or CpuDevice() for the CPU while torch is
    not imported yet: importing torch costs 1.5-4 s of start-up and ~600 MB, for nothing on the ONNX path."""
    if not isinstance(device, str):
        return device
    if device == "cpu" and "torch" not in sys.modules:
        return CpuDevice()
    import torch

    return torch.device(device)


def torch_device(device: Any) -> Any:
    """torch.device for a device name, torch.device or CpuDevice (imports torch: for the torch paths)."""
    import torch

    return torch.device(str(device))


def cuda_driver_present() -> bool:
    """False when no NVIDIA driver is loaded: then torch.cuda.is_available() is False too, and `auto`
    can choose the CPU without importing torch."""
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()


def fervideo_home() -> Path:
    return Path(os.environ.get("FERVIDEO_HOME") or Path.home() / ".cache" / "fervideo")


def onnxruntime_available() -> bool:
    """ONNX Runtime to run the graphs and onnx for torch.onnx.export to write them (found, not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def requested_backend(backend: str | None) -> str:
    """What was asked for: `backend`, else $FERVIDEO_BACKEND, else auto (checked, lower case)."""
    backend = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
    if backend not in BACKEND_CHOICES:
        raise InvalidArgumentError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
    return backend


def resolve_backend(backend: str | None, device_type: str) -> Backend:
    """The backend to use for `backend` (None: $FERVIDEO_BACKEND or auto) on a device of `device_type`."""
    backend = requested_backend(backend)
    if backend == "torch" or (backend == "auto" and device_type != "cpu"):
        return "torch"
    if device_type != "cpu":
        log.warning("backend onnx runs on the CPU only; using torch on %s", device_type)
        return "torch"
    if not onnxruntime_available():
        if backend == "onnx":
            log.warning("onnxruntime or onnx is not installed; using the torch backend (pip install onnx onnxruntime)")
        return "torch"
    return "onnx"


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def decode_threads(device: str) -> int:
    """Decoders per video for the front-to-back (PyAV) path: runs of the file that begin at key frames are
    decoded at once (fervideo.video_parallel); a file with one run gets one decoder with that many FFmpeg
    frame threads instead.

    One on the CPU: there the other cores run the networks, and one decoder keeps ahead of them at 1280x720
    (frame threads were slower on 2 cores: 113 vs 151 sampled frames/s). On a GPU decoding is the bound (133
    sampled frames/s at 5 fps with one decoder on an H200; FFmpeg's frame threads, 4-16, gave 126-188 because
    one Python thread still demuxed and converted), so half the cores, at most 8, decode.
    FERVIDEO_DECODE_THREADS overrides either.
    """
    raw = os.environ.get(DECODE_THREADS_ENV)
    if raw:
        try:
            count = int(raw)
        except ValueError:
            count = 0
        if count < 1:
            raise InvalidArgumentError(f"{DECODE_THREADS_ENV} must be a whole number >= 1, got {raw!r}")
        return count
    if not str(device).startswith("cuda"):
        return 1
    return max(1, min(8, available_cores() // 2))


def resolve_threads(threads: int | None) -> int:
    """Intra-op threads: `threads` (None: $FERVIDEO_THREADS or 0); 0 means every core available."""
    if threads is None:
        raw = os.environ.get(THREADS_ENV, "0")
        try:
            threads = int(raw)
        except ValueError:
            raise InvalidArgumentError(f"{THREADS_ENV} must be a whole number, got {raw!r}") from None
    if threads < 0:
        raise InvalidArgumentError(f"--threads must be >= 0 (0 = all cores), got {threads}")
    if threads == 0:
        threads = available_cores()
    return threads


def apply_thread_policy(threads: int | None = None) -> int:
    """Set torch's intra-op threads and passive waiting; returns the thread count used.

    OMP_WAIT_POLICY only takes effect if set before OpenMP starts (the first `import torch`), so the CLI
    calls `prefer_passive_waiting()` first thing; here it is a best effort for library callers.
    """
    prefer_passive_waiting()
    count = resolve_threads(threads)
    if "torch" not in sys.modules:
        # torch is imported only if a network needs it (not with cached ONNX exports); it then starts
        # with this many intra-op threads, read from OMP_NUM_THREADS at its import.
        os.environ["OMP_NUM_THREADS"] = str(count)
        return count
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def prefer_passive_waiting() -> None:
    """Idle OpenMP workers sleep instead of spinning, unless the user chose otherwise."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cached_onnx_file(kind: str, weights_sha256: str, export: Callable[[Path], None]) -> Path:
    """The ONNX export of `kind` for these weights, exporting it on first use.

    Written to a temporary name and renamed, so a crash or a concurrent worker never leaves a half-written
    file where a reader would take it for a good one."""
    folder = fervideo_home() / "onnx"
    path = folder / f"{kind}-v{ONNX_EXPORT_VERSION}-{weights_sha256[:32]}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        export(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    log.info("exported %s to %s", kind, path)
    return path


def export_onnx(module, example, path: Path, input_names: list[str], output_names: list[str],
                dynamic_axes: dict[str, dict[int, str]]) -> None:
    """torch.onnx.export with the TorchScript exporter (opset 17).

    The TorchScript exporter, not the torch.export-based default: it handles the detector's free frame
    size without shape constraints and needs no onnxscript. Its warnings are expected and silenced: the
    deprecation notice, and TracerWarnings where a size is fixed by design (mini-Xception's 64x64 input)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, (example,), str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)


def load_onnx_model(kind: str, weights_sha256: str, export: Callable[[Path], None],
                    threads: int | None) -> OnnxModel | None:
    """The cached export of `kind` in an ONNX Runtime session, or None (and a one-line warning) when it
    cannot be exported or loaded: the caller then runs torch, whose results agree within the tolerances."""
    try:
        return OnnxModel(cached_onnx_file(kind, weights_sha256, export), threads)
    except Exception as exc:  # exporter and runtime raise many unrelated types; torch is a safe fallback
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("cannot run %s in ONNX Runtime (%s); using torch", kind, first_line)
        return None


# Frames per ONNX Runtime call. Measured on the 2-core machine (docs/speed.md, seventh pass), CPU time per
# frame at 2 threads: RetinaFace at 480x270 13.6 ms in one 32-frame call with the arena off vs 7.9 ms in
# 8-frame calls with the arena on; the ViT-Tiny 30.8 vs 26.8. Activations of 8 frames stay in cache, and
# the arena they need is small (no page faults after each chunk's malloc_trim). Every output is
# bit-identical to one call over the whole batch (tests/test_speed_paths.py).
ONNX_SUB_BATCH = 8


class OnnxModel:
    """One ONNX Runtime session on the CPU with the thread policy applied; `run(*inputs)` -> outputs, the
    inputs split along their first (batch) axis into ONNX_SUB_BATCH-frame calls."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = resolve_threads(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers steal the cores other processes (and our own decode thread) need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        # The arena keeps the activations' memory between calls: with 8-frame calls it is small, and
        # without it every chunk's first call page-faults its activations in again after malloc_trim.
        options.enable_cpu_mem_arena = True
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [item.name for item in self.session.get_inputs()]

    def run(self, *inputs):
        size = len(inputs[0])
        if size <= ONNX_SUB_BATCH:
            return self.session.run(None, dict(zip(self.input_names, inputs, strict=True)))
        parts = [self.session.run(None, dict(zip(self.input_names, (x[start:start + ONNX_SUB_BATCH] for x in inputs),
                                                 strict=True)))
                 for start in range(0, size, ONNX_SUB_BATCH)]
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]
