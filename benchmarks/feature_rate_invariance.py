"""Sampling-rate invariance of the dynamics features, before (feature version 1) and after (version 2).

One continuous-time affect signal (a softmax of slow sinusoids, one per label, periods 31-89 s) is
sampled for 300 s at 1, 2, 5, 10 and 30 fps; each dynamics feature is computed from every sampling by
the old per-frame definitions and by the current ones (pairs of frames 1 s apart). A second table adds
independent per-frame classifier noise (Gaussian, SD 0.5 on the logits) and shows the mean over
NOISE_DRAWS draws, so that the table shows what each definition estimates rather than the sampling
error of one draw (which is larger at 1 fps, with 30 times fewer pairs than at 30 fps).

The old module is read from git (the parent of the commit that turned fervideo/features.py into a
package) into a temporary import, so the "before" column is the old code itself, not a re-typing.

    .venv/bin/python benchmarks/feature_rate_invariance.py [--old-ref REF] [--duration 300]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fervideo.features import compute_session_features
from fervideo.labels import CANONICAL_LABELS

FPS = (1, 2, 5, 10, 30)
FEATURES = ("mssd_happiness", "inertia_happiness", "valence_mssd", "valence_inertia", "arousal_inertia",
            "self_transition_rate", "transitions_per_min", "dwell_happiness_s")
PERIODS_S = (43.0, 61.0, 37.0, 31.0, 89.0, 53.0, 71.0)
NOISE_DRAWS = 50
ROOT = Path(__file__).resolve().parents[1]


def old_module(ref: str | None):
    """fervideo/features.py as it was before the package split, imported from a temporary file."""
    if ref is None:
        deletion = subprocess.run(["git", "log", "--diff-filter=D", "--format=%H", "-1", "--", "fervideo/features.py"],
                                  cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        if not deletion:
            sys.exit("no commit deletes fervideo/features.py; pass --old-ref")
        ref = f"{deletion}^"
    source = subprocess.run(["git", "show", f"{ref}:fervideo/features.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "features_v1.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("features_v1", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def session(fps: float, duration_s: float, noise_sd: float, seed: int = 0) -> pd.DataFrame:
    t = np.arange(0.0, duration_s, 1.0 / fps)
    logits = np.array([1.5 * np.sin(2 * np.pi * t / period + k) for k, period in enumerate(PERIODS_S)]).T
    logits += np.random.default_rng(seed).normal(scale=noise_sd, size=logits.shape) if noise_sd else 0.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame({"frame_index": np.arange(len(t)), "t": t, "face_found": True})
    for k, label in enumerate(CANONICAL_LABELS):
        table[label] = probs[:, k]
    return table


def spread(values: list[float]) -> str:
    """(max - min) / |mean| over the rates, in per cent."""
    finite = [v for v in values if np.isfinite(v)]
    if len(finite) < 2 or not np.mean(np.abs(finite)):
        return "-"
    return f"{100 * (max(finite) - min(finite)) / abs(np.mean(finite)):.0f}%"


def mean_values(compute, fps: float, duration_s: float, noise_sd: float, draws: int) -> dict[str, float]:
    runs = [compute(session(fps, duration_s, noise_sd, seed)).values for seed in range(draws)]
    return {name: float(np.mean([run[name] for run in runs])) for name in FEATURES}


def table(title: str, old, duration_s: float, noise_sd: float, draws: int = 1) -> str:
    before = {fps: mean_values(old.compute_session_features, fps, duration_s, noise_sd, draws) for fps in FPS}
    after = {fps: mean_values(compute_session_features, fps, duration_s, noise_sd, draws) for fps in FPS}
    rates = " | ".join(f"{fps} fps" for fps in FPS)
    lines = [f"### {title}", "", f"| feature | version | {rates} | spread |", "|---|---|" + "---|" * (len(FPS) + 1)]
    for name in FEATURES:
        for version, values in (("before", before), ("after", after)):
            row = [values[fps][name] for fps in FPS]
            cells = " | ".join(f"{v:.4g}" for v in row)
            lines.append(f"| `{name}` | {version} | {cells} | {spread(row)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-ref", help="git revision whose fervideo/features.py is 'before'")
    parser.add_argument("--duration", type=float, default=300.0, help="session length in seconds")
    args = parser.parse_args()
    old = old_module(args.old_ref)
    print(table(f"Slow signal, no frame noise ({args.duration:g} s)", old, args.duration, 0.0))
    print(table(f"Slow signal + per-frame noise (logit SD 0.5, {args.duration:g} s, mean of {NOISE_DRAWS} draws)",
                old, args.duration, 0.5, NOISE_DRAWS))
    print("spread = (max - min) / |mean| over the five rates. Before (feature version 1): successive frames "
          "(MSSD; inertia with pooled moments), dominant labels after a 1 s moving average. After (version 2): "
          "pairs of frames 1 s apart, i.e. every 1 s grid the sampling offers, pooled.")


if __name__ == "__main__":
    main()
