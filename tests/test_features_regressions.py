"""Regression tests for issue 9's feature defects (items 3, 13, 14, 15, 16), one or more per item."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fervideo.features import FEATURE_DEFINITIONS, FEATURE_VERSION, compute_session_features
from fervideo.labels import CANONICAL_LABELS

HAPPY, SAD, NEUTRAL = (CANONICAL_LABELS.index(name) for name in ("happiness", "sadness", "neutral"))


def table(probs: np.ndarray, t: np.ndarray, face: np.ndarray | None = None) -> pd.DataFrame:
    n = len(probs)
    face = np.ones(n, dtype=bool) if face is None else face
    frames = pd.DataFrame({"frame_index": np.arange(n), "t": t, "face_found": face})
    for k, label in enumerate(CANONICAL_LABELS):
        frames[label] = np.where(face, probs[:, k], np.nan)
    return frames


def one_hot(indices) -> np.ndarray:
    probs = np.zeros((len(indices), len(CANONICAL_LABELS)))
    probs[np.arange(len(indices)), indices] = 1.0
    return probs


def smooth_session(fps: float, duration_s: float = 300.0) -> pd.DataFrame:
    """The same slowly varying affect signal (changes over seconds) sampled at `fps`."""
    t = np.arange(0.0, duration_s, 1.0 / fps)
    logits = np.zeros((len(t), len(CANONICAL_LABELS)))
    for k, period in enumerate((47.0, 61.0, 37.0, 29.0, 83.0, 41.0, 53.0)):
        logits[:, k] = 2.0 * np.sin(2 * np.pi * t / period + k)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return table(probs, t)


# ---------------------------------------------------------------------------------------------- item 3
def test_dwell_of_a_never_dominant_emotion_is_zero_not_null():
    v = compute_session_features(table(one_hot([HAPPY] * 300), np.arange(300) * 0.2)).values
    assert v["dwell_sadness_s"] == 0.0 and v["dwell_sadness_s__missing"] == 0.0
    assert v["dwell_happiness_s"] == pytest.approx(60.0)


def test_inertia_of_a_constant_series_is_undefined_with_an_indicator():
    v = compute_session_features(table(one_hot([HAPPY] * 300), np.arange(300) * 0.2)).values
    assert math.isnan(v["inertia_sadness"]) and v["inertia_sadness__missing"] == 1.0
    assert v["mssd_sadness"] == 0.0 and v["mssd_sadness__missing"] == 0.0


def test_every_undefinable_value_has_an_indicator_declared_in_the_registry():
    no_pairs = np.zeros(400, dtype=bool)
    no_pairs[::2] = True  # at 1 fps, face frames alternate with no-face frames: no pair 1 s apart
    v = compute_session_features(table(one_hot([HAPPY] * 400), np.arange(400) * 1.0, no_pairs)).values
    for name, value in v.items():
        assert name in FEATURE_DEFINITIONS, name
        if name.endswith("__missing"):
            base = name.removesuffix("__missing")
            assert value == float(math.isnan(v[base])), name
    assert v["inertia_happiness__missing"] == 1.0 and v["transitions_per_min__missing"] == 1.0


# --------------------------------------------------------------------------------------------- item 13
def test_inertia_stays_within_minus_one_and_one():
    # Isolated face frames at the mean level shrink the pooled variance; pairs at the extremes remain.
    rng = np.random.default_rng(0)
    level = np.r_[np.full(40, 0.9), np.full(40, 0.1), np.full(400, 0.5) + rng.normal(0, 0.01, 400)]
    face = np.r_[np.ones(80, dtype=bool), np.tile([True] + [False] * 9, 40)]
    probs = np.zeros((len(level), len(CANONICAL_LABELS)))
    probs[:, HAPPY], probs[:, NEUTRAL] = level, 1 - level
    v = compute_session_features(table(probs, np.arange(len(level)) * 1.0, face)).values
    for name in ("inertia_happiness", "inertia_neutral", "valence_inertia", "arousal_inertia"):
        assert math.isnan(v[name]) or -1.0 <= v[name] <= 1.0, (name, v[name])


def test_inertia_needs_a_minimum_number_of_pairs():
    probs = one_hot([HAPPY, SAD] * 4)
    v = compute_session_features(table(probs, np.arange(8) * 1.0)).values
    assert math.isnan(v["inertia_happiness"]) and v["inertia_happiness__missing"] == 1.0


# --------------------------------------------------------------------------------------------- item 14
@pytest.mark.parametrize("name", ["mssd_happiness", "inertia_happiness", "valence_mssd", "valence_inertia",
                                  "self_transition_rate", "transitions_per_min", "dwell_happiness_s"])
def test_dynamics_do_not_depend_on_the_sampling_rate(name):
    values = [compute_session_features(smooth_session(fps)).values[name] for fps in (1, 5, 30)]
    assert max(values) - min(values) <= 0.1 * max(abs(v) for v in values) + 1e-3, values


def test_feature_version_was_bumped():
    assert FEATURE_VERSION != "1"


def test_reliability_floor_is_in_seconds_of_face():
    # 40 face frames: enough under the old 30-frame floor, but only 1.3 s of face at 30 fps.
    short = compute_session_features(table(one_hot([HAPPY] * 40), np.arange(40) / 30))
    assert not short.reliable and any("s of face" in note for note in short.reliability_notes)
    long = compute_session_features(table(one_hot([HAPPY] * 40), np.arange(40) * 1.0))
    assert long.reliable, long.reliability_notes


# --------------------------------------------------------------------------------------------- item 15
def test_emodiversity_counts_dominant_emotions_not_averaged_probabilities():
    crisp = one_hot(list(range(len(CANONICAL_LABELS))) * 50)  # crisply cycling through all seven
    unsure = np.full((300, len(CANONICAL_LABELS)), 1 / len(CANONICAL_LABELS))
    unsure[:, HAPPY] += 0.01
    unsure /= unsure.sum(axis=1, keepdims=True)
    crisp_v = compute_session_features(table(crisp, np.arange(len(crisp)) * 0.2)).values
    unsure_v = compute_session_features(table(unsure, np.arange(300) * 0.2)).values
    assert crisp_v["emodiversity"] == pytest.approx(math.log(6))  # six emotions equally often, natural log
    assert unsure_v["emodiversity"] == pytest.approx(0.0)  # one emotion always dominant
    assert crisp_v["emodiversity_soft"] == pytest.approx(unsure_v["emodiversity_soft"], abs=0.01)


def test_emodiversity_leaves_neutral_out():
    v = compute_session_features(table(one_hot([NEUTRAL] * 200 + [HAPPY] * 50 + [SAD] * 50),
                                       np.arange(300) * 0.2)).values
    assert v["emodiversity"] == pytest.approx(math.log(2))


# --------------------------------------------------------------------------------------------- item 16
def test_a_tenth_of_a_second_is_not_reliable():
    # 40 frames with a face (the old 30-frame floor passed it) within 0.1 s, as in a short OpenFace CSV.
    result = compute_session_features(table(one_hot([HAPPY] * 40), np.linspace(0.0, 0.1, 40)))
    assert not result.reliable


def test_all_zero_timestamps_are_unreliable_with_a_reason():
    result = compute_session_features(table(one_hot([HAPPY] * 300), np.zeros(300)))
    assert not result.reliable and any("timestamps" in note for note in result.reliability_notes)
    assert math.isnan(result.values["mssd_happiness"]) and math.isnan(result.values["duration_s"])


def test_decreasing_timestamps_are_unreliable():
    t = np.arange(300) * 0.2
    t[150:] -= 10.0
    result = compute_session_features(table(one_hot([HAPPY] * 300), t))
    assert not result.reliable and any("timestamps" in note for note in result.reliability_notes)
