"""Per-frame distribution features: entropies, emodiversity, expressivity and positive-negative balance.

These are shares and means over face frames, so they do not depend on the sampling rate beyond noise.
"""

from __future__ import annotations

import numpy as np

from fervideo.features.registry import NEGATIVE_LABELS, POSITIVE_LABELS
from fervideo.labels import CANONICAL_LABELS

LABEL_INDEX = {label: k for k, label in enumerate(CANONICAL_LABELS)}


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (log2) of distributions along the last axis; 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=-1)


def emodiversity(face_probs: np.ndarray) -> float:
    """Quoidbach et al. (2014): -sum p_i ln p_i over the emotions' shares of dominant labels.

    p_i = share of face frames whose dominant label is emotion i, among frames dominated by an emotion
    (neutral is not an emotion here and is left out). A session never dominated by an emotion has 0:
    there is no diversity of emotions to measure.
    """
    dominant = np.argmax(face_probs, axis=1)
    counts = np.bincount(dominant, minlength=len(CANONICAL_LABELS)).astype(np.float64)
    counts[LABEL_INDEX["neutral"]] = 0.0
    if counts.sum() == 0:
        return 0.0
    shares = counts[counts > 0] / counts.sum()
    return float(max(0.0, -np.sum(shares * np.log(shares))))  # max: -0.0 for a single emotion


def distribution_features(face_probs: np.ndarray) -> dict[str, float]:
    """Entropies, emodiversity, expressivity and balance over the face frames' distributions."""
    nan = float("nan")
    if not len(face_probs):
        return dict.fromkeys(("entropy_mean", "emodiversity", "emodiversity_soft", "expressivity",
                              "pos_neg_balance"), nan)
    average = face_probs.mean(axis=0)
    positive = sum(average[LABEL_INDEX[label]] for label in POSITIVE_LABELS)
    negative = sum(average[LABEL_INDEX[label]] for label in NEGATIVE_LABELS)
    return {
        "entropy_mean": float(entropy_bits(face_probs).mean()),
        "emodiversity": emodiversity(face_probs),
        "emodiversity_soft": float(entropy_bits(average)),
        "expressivity": float(1.0 - average[LABEL_INDEX["neutral"]]),
        "pos_neg_balance": float((positive - negative) / (positive + negative)) if positive + negative > 0 else nan,
    }
