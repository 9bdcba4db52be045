"""No dependency phones home from a clinical machine: ONNX Runtime (>= 1.29 on Linux and macOS) sends usage
telemetry to Microsoft by default and caches it, with a persistent device id, under
~/.cache/Microsoft/DeveloperTools/.onnxruntime. Importing fervideo turns it off (ORT_DISABLE_TELEMETRY=1)
unless the user set the variable, and the networks then run without creating that folder. Ray's usage
statistics (reported from a cluster's head) are off the same way for a local cluster fervideo starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN_THE_DETECTOR = """
import os, sys
import fervideo
print(os.environ.get("ORT_DISABLE_TELEMETRY"), os.environ.get("RAY_USAGE_STATS_ENABLED"))
if sys.argv[1] == "run":
    import numpy as np
    from fervideo.faces import RetinaFaceDetector
    detector = RetinaFaceDetector(backend="onnx")
    assert detector.backend == "onnx", detector.backend
    detector.detect(np.zeros((2, 90, 160, 3), np.uint8))
"""


def _run(tmp_path: Path, mode: str, **env: str) -> str:
    unset = ("ORT_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED", "XDG_CACHE_HOME", "CI", "GITHUB_ACTIONS", "TF_BUILD")
    clean = {key: value for key, value in os.environ.items() if key not in unset}
    # A fresh HOME: ONNX Runtime's telemetry cache, if any were made, would land under it; the export
    # cache is the suite's own (FERVIDEO_HOME, set by conftest).
    clean.update(HOME=str(tmp_path), **env)
    done = subprocess.run([sys.executable, "-c", RUN_THE_DETECTOR, mode], env=clean, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_fervideo_turns_onnx_runtime_telemetry_and_ray_usage_stats_off(tmp_path):
    assert _run(tmp_path, "import") == "1 0"


def test_the_onnx_path_leaves_no_telemetry_cache_or_device_id(tmp_path):
    assert _run(tmp_path, "run") == "1 0"
    assert not (tmp_path / ".cache" / "Microsoft").exists()


def test_a_users_own_choice_is_kept(tmp_path):
    assert _run(tmp_path, "import", ORT_DISABLE_TELEMETRY="0", RAY_USAGE_STATS_ENABLED="1") == "0 1"
