"""Named classifiers (whisper `load_model` style) and `load_classifier`, the stage's entry point.

A name maps to a source: a bundled asset (sha256-pinned) or a Hugging Face repo + file, fetched into
the hub's own cache. A local `.pth` / `.safetensors` path works too. Nothing is downloaded when offline
(`HF_HUB_OFFLINE=1` or `FERVIDEO_OFFLINE=1`), and `auto` never downloads: it uses the seed ViT-Tiny if
it is cached, else the bundled baseline, and records why in `fallback_reason`.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fervideo.emotion.classifier import EmotionClassifier
from fervideo.emotion.config import SEED_VIT_CONFIG, ModelConfig, read_sidecar
from fervideo.errors import ModelError
from fervideo.runtime import cuda_driver_present, device_of
from fervideo.utils import sha256_file

logger = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class ModelSource:
    name: str
    kind: Literal["bundled", "hub"]
    description: str
    sha256: str | None = None  # pinned where known; hub files are also etag-checked by huggingface_hub
    asset: str | None = None
    repo_id: str | None = None
    filename: str | None = None

    @property
    def location(self) -> str:
        if self.kind == "bundled":
            return f"fervideo/assets/{self.asset}"
        return f"hf://{self.repo_id}/{self.filename}"


SEED_MODEL = "vit-tiny-fer"
BASELINE_MODEL = "mini-xception-fer2013"
MODELS: dict[str, ModelSource] = {
    SEED_MODEL: ModelSource(
        name=SEED_MODEL,
        kind="hub",
        description="seed ViT-Tiny fine-tuned for 7-class facial expression (22 MB)",
        repo_id="deanngkl/vit-tiny-fer",
        filename="final_model.pth",
    ),
    BASELINE_MODEL: ModelSource(
        name=BASELINE_MODEL,
        kind="bundled",
        description="mini-Xception trained on FER2013 (oarriaga/face_classification, MIT), offline baseline",
        sha256="7b66c79ee06ece41cfe734674360f4befe5fb9abb2ffd8f1b4fc0381603381c1",
        asset="fer2013_mini_xception.safetensors",
    ),
}


def is_offline() -> bool:
    """Read at call time: huggingface_hub reads HF_HUB_OFFLINE once at import, too early for tests."""
    return any(os.environ.get(var, "").upper() in _TRUE for var in ("HF_HUB_OFFLINE", "FERVIDEO_OFFLINE"))


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub would use, resolved now rather than at its import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    hf_home = os.environ.get("HF_HOME") or os.path.join(cache_home, "huggingface")
    return Path(hf_home).expanduser() / "hub"


def resolve_device(device: str):
    """A torch.device, or runtime.CpuDevice for the CPU while torch is not imported (start-up: the ONNX
    path may never need torch). `auto` without an NVIDIA driver is the CPU, known without torch."""
    if device == "cpu" or (device == "auto" and not cuda_driver_present()):
        return device_of("cpu")
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return resolved


def _hub_file(source: ModelSource, local_only: bool) -> Path:
    assert source.repo_id and source.filename
    # Imported here: ~0.1 s of start-up that the bundled baseline never needs.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled

    try:
        path = hf_hub_download(
            source.repo_id, source.filename, cache_dir=hub_cache_dir(), local_files_only=local_only
        )
    except (EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled) as exc:
        where = "the Hugging Face cache" if local_only else "the Hugging Face Hub"
        raise ModelError(
            f"{source.name}: {source.filename} from {source.repo_id} is not available from {where} "
            f"({hub_cache_dir()}); on a connected machine run "
            f"`hf download {source.repo_id} {source.filename}` and copy the cache over, "
            f"or pass the file's path as the model"
        ) from exc
    return Path(path)


def cached_path(source: ModelSource) -> Path | None:
    """Where the weights are on this machine right now, without touching the network."""
    if source.kind == "bundled":
        path = ASSETS_DIR / str(source.asset)
        return path if path.is_file() else None
    try:
        return _hub_file(source, local_only=True)
    except ModelError:
        return None


def _verified(path: Path, source: ModelSource) -> Path:
    if source.sha256 is not None and (actual := sha256_file(path)) != source.sha256:
        raise ModelError(f"{source.name}: {path} has sha256 {actual}, expected {source.sha256}; reinstall it")
    return path


def _weights_for(source: ModelSource) -> tuple[Path, ModelConfig]:
    if source.kind == "bundled":
        path = cached_path(source)
        if path is None:
            raise ModelError(f"{source.name}: bundled file {source.location} is missing; reinstall fervideo")
        return _verified(path, source), read_sidecar(path.with_suffix(".json"))
    # The cache first: it spares a HEAD request per run, and ~20 s of retries on a machine without network.
    path = cached_path(source) or _hub_file(source, local_only=is_offline())
    return _verified(path, source), SEED_VIT_CONFIG


def _local_config(path: Path) -> ModelConfig:
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return read_sidecar(sidecar)
    if path.suffix == ".safetensors":
        raise ModelError(
            f"{path} needs a sidecar {sidecar.name} naming its architecture, labels and preprocessing"
        )
    return SEED_VIT_CONFIG  # a bare .pth is taken to be in the seed checkpoint's layout


def _looks_like_path(model: str) -> bool:
    return model.endswith((".pth", ".pt", ".safetensors")) or os.sep in model or Path(model).exists()


def load_classifier(
    model: str = "auto",
    device: str = "auto",
    batch_size: int = 64,
    backend: str | None = None,
    threads: int | None = None,
    quantize: str | None = None,
) -> EmotionClassifier:
    """Load a classifier by registry name, checkpoint path, or `auto` (seed if cached, else baseline).

    backend (auto, torch, onnx) and threads: see fervideo.runtime; None reads FERVIDEO_BACKEND/THREADS.
    quantize: None/"none" or "int8" (a ViT on the CPU only; fervideo.emotion.quantize)."""
    torch_device = resolve_device(device)
    fallback_reason = None
    if model == "auto":
        model, fallback_reason = _choose_auto()
    if model in MODELS:
        source = MODELS[model]
        path, config = _weights_for(source)
        label = source.location
    elif _looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        config, label, model = _local_config(path), str(path.resolve()), path.stem
    else:
        raise ModelError(
            f"unknown model {model!r}; known models: auto, {', '.join(MODELS)}, or a checkpoint path"
        )
    logger.info("emotion classifier %s (%s) from %s on %s", model, config.architecture, path, torch_device)
    return EmotionClassifier.from_file(
        path,
        config,
        name=model,
        source=label,
        device=torch_device,
        batch_size=batch_size,
        fallback_reason=fallback_reason,
        backend=backend,
        threads=threads,
        quantize=quantize,
    )


def architecture_of(model: str) -> str | None:
    """The architecture `load_classifier(model)` would build, read without torch or the weights (for the CLI
    to refuse options that cannot apply before anything loads); None when only loading can tell (an unknown
    name, a missing file: the loader's own error says so)."""
    if model == "auto":
        model = SEED_MODEL if cached_path(MODELS[SEED_MODEL]) is not None else BASELINE_MODEL
    if model in MODELS:
        source = MODELS[model]
        if source.kind == "hub":
            return SEED_VIT_CONFIG.architecture
        path = cached_path(source)
        return read_sidecar(path.with_suffix(".json")).architecture if path else None
    path = Path(model).expanduser()
    return _local_config(path).architecture if _looks_like_path(model) and path.is_file() else None


def _choose_auto() -> tuple[str, str | None]:
    """The seed ViT-Tiny when it is already cached; otherwise the bundled baseline, with the reason."""
    if cached_path(MODELS[SEED_MODEL]) is not None:
        return SEED_MODEL, None
    seed = MODELS[SEED_MODEL]
    reason = (
        f"seed classifier {SEED_MODEL} ({seed.location}) is not in the Hugging Face cache {hub_cache_dir()}; "
        f"using the bundled baseline {BASELINE_MODEL}, which is less accurate. "
        f"Run once with --model {SEED_MODEL} while online to fetch it"
    )
    logger.warning(reason)
    return BASELINE_MODEL, reason


def list_models() -> list[dict[str, Any]]:
    """Every registered classifier and where its weights are now (None: needs a download)."""
    rows = []
    for source in MODELS.values():
        path = cached_path(source)
        rows.append(
            {
                "name": source.name,
                "kind": source.kind,
                "source": source.location,
                "description": source.description,
                "sha256": source.sha256,
                "path": str(path) if path is not None else None,
            }
        )
    return rows
