"""fervideo: facial-expression timelines, session affect measures and PHQ estimates from
recorded clinical sessions."""

import os
from importlib.metadata import PackageNotFoundError, version

# ONNX Runtime (>= 1.29, Linux and macOS) sends usage telemetry to Microsoft by default and caches it with a
# persistent device id under ~/.cache/Microsoft/DeveloperTools/.onnxruntime. A tool for clinical machines
# must not phone home: off before onnxruntime can initialise, unless the user chose (README, "What it records").
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# Ray reports usage statistics hourly from a cluster's head; a local cluster started by `process --ray`
# inherits this. A cluster started elsewhere follows its own setting (docs/batch.md).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

try:
    __version__ = version("fervideo")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from fervideo.errors import FervideoError  # noqa: E402
from fervideo.labels import CANONICAL_LABELS  # noqa: E402

__all__ = ["CANONICAL_LABELS", "FervideoError", "__version__", "process_video"]


def process_video(*args, **kwargs):
    """Process one video into a stored session; see `fervideo.pipeline.process_video`."""
    from fervideo.pipeline import process_video as _process_video

    return _process_video(*args, **kwargs)
