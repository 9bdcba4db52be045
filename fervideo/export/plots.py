"""Report figures (matplotlib, Agg), drawn to read in black and white: the timeline is one small
panel per emotion, so no line is told apart by colour, and missing-face time is hatched grey."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # never a GUI backend: exports run headless and in worker threads

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fervideo.labels import CANONICAL_LABELS  # noqa: E402

FIGURE_DPI = 150
TARGET_BINS = 1800  # about one point per 2 s for a one-hour session; plotting cost stays flat
HATCH_GAP = "////"


@dataclass(frozen=True)
class BinnedTimeline:
    """Per-bin mean probabilities over face frames; NaN where a bin holds no face."""

    centres_s: np.ndarray  # [B]
    means: np.ndarray  # [B, C]
    bin_s: float


def bin_timeline(frames: pd.DataFrame, target_bins: int = TARGET_BINS) -> BinnedTimeline:
    """Average the per-frame probabilities into at most `target_bins` equal time bins (>= 1 s each)."""
    t = frames["t"].to_numpy(dtype=np.float64)
    if len(t) == 0:
        return BinnedTimeline(np.zeros(0), np.zeros((0, len(CANONICAL_LABELS))), 1.0)
    start, span = t[0], max(float(t[-1] - t[0]), 1e-9)
    bin_s = max(1.0, span / target_bins)
    n_bins = int(span // bin_s) + 1
    index = np.minimum(((t - start) // bin_s).astype(np.int64), n_bins - 1)
    face = frames["face_found"].to_numpy(dtype=bool)
    counts = np.bincount(index[face], minlength=n_bins).astype(np.float64)
    probs = frames.loc[face, list(CANONICAL_LABELS)].to_numpy(dtype=np.float64)
    sums = np.stack([np.bincount(index[face], weights=probs[:, column], minlength=n_bins)
                     for column in range(probs.shape[1])], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts[:, None] > 0, sums / counts[:, None], np.nan)
    return BinnedTimeline(start + (np.arange(n_bins) + 0.5) * bin_s, means, bin_s)


def _time_axis(span_s: float) -> tuple[float, str]:
    return (60.0, "minutes") if span_s > 300 else (1.0, "seconds")


def _to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    plt.close(figure)
    return buffer.getvalue()


def timeline_png(frames: pd.DataFrame, gaps: list[dict[str, float]]) -> bytes:
    """Seven stacked panels (one per emotion) of binned mean probability over time; gaps hatched."""
    binned = bin_timeline(frames)
    span = float(frames["t"].iloc[-1]) if len(frames) else 0.0
    scale, unit = _time_axis(span)
    figure, axes = plt.subplots(len(CANONICAL_LABELS), 1, sharex=True, figsize=(7.5, 4.6),
                                layout="constrained")
    for column, (axis, label) in enumerate(zip(axes, CANONICAL_LABELS, strict=True)):
        for gap in gaps:
            axis.axvspan(gap["start_s"] / scale, gap["end_s"] / scale, facecolor="0.85", edgecolor="0.45",
                         hatch=HATCH_GAP, linewidth=0)
        axis.plot(binned.centres_s / scale, binned.means[:, column], color="black", linewidth=0.8)
        axis.set_ylim(0, 1)
        axis.set_yticks([0, 1])
        axis.tick_params(labelsize=7)
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        axis.grid(axis="y", color="0.8", linewidth=0.5)
    axes[-1].set_xlabel(f"time ({unit}); hatched = no face found; each point = mean of {binned.bin_s:.1f} s",
                        fontsize=8)
    figure.suptitle("Emotion probability over the session", fontsize=10)
    return _to_png(figure)


def distribution_png(mean_probability: dict[str, float | None]) -> bytes:
    """Horizontal bars of the session's mean probability per emotion, values printed on the bars."""
    values = [mean_probability.get(label) or 0.0 for label in CANONICAL_LABELS]
    figure, axis = plt.subplots(figsize=(6.0, 2.1), layout="constrained")
    positions = np.arange(len(CANONICAL_LABELS))[::-1]
    axis.barh(positions, values, color="0.75", edgecolor="black", linewidth=0.6)
    for position, value in zip(positions, values, strict=True):
        axis.text(value + 0.01, position, f"{value:.2f}", va="center", fontsize=8)
    axis.set_yticks(positions, CANONICAL_LABELS, fontsize=8)
    axis.set_xlim(0, 1.0)
    axis.set_xlabel("mean probability over frames with a face", fontsize=8)
    axis.tick_params(axis="x", labelsize=7)
    return _to_png(figure)
