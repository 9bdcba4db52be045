"""Property-based tests of the session features: bounds, sampling-rate invariance, and the gap rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fervideo.features import FEATURE_DEFINITIONS, MISSING_SUFFIX, compute_session_features
from fervideo.labels import CANONICAL_LABELS

# Derandomised: the same examples on every run, nothing stored between runs, no deadline (CI is shared).
PROPERTY = settings(max_examples=40, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FPS = (1.0, 2.0, 5.0, 10.0, 30.0)
C = len(CANONICAL_LABELS)


def frames_table(t: np.ndarray, probs: np.ndarray, face: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame({"frame_index": np.arange(len(t)), "t": t, "face_found": face})
    for k, label in enumerate(CANONICAL_LABELS):
        table[label] = np.where(face, probs[:, k], np.nan)
    return table


def random_session(seed: int, n: int, fps: float, face_share: float, crisp: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(C, 0.3 if crisp else 2.0), size=n)
    face = rng.random(n) < face_share
    return frames_table(np.arange(n) / fps, probs, face)


def latent_session(fps: float, periods, amplitudes, phases, duration_s: float = 300.0) -> pd.DataFrame:
    """A fixed continuous-time affect signal (softmax of slow sinusoids) sampled at `fps`."""
    t = np.arange(0.0, duration_s, 1.0 / fps)
    logits = np.array([a * np.sin(2 * np.pi * t / p + ph) for p, a, ph in zip(periods, amplitudes, phases,
                                                                               strict=True)]).T
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return frames_table(t, probs, np.ones(len(t), dtype=bool))


# ---------------------------------------------------------------------------------------------- bounds
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), fps=st.sampled_from(FPS),
       face_share=st.sampled_from([0.0, 0.3, 0.7, 1.0]), crisp=st.booleans())
def test_every_feature_stays_within_its_bounds(seed, n, fps, face_share, crisp):
    result = compute_session_features(random_session(seed, n, fps, face_share, crisp))
    v = result.values
    assert set(v) <= set(FEATURE_DEFINITIONS)

    def within(name, low, high):
        assert math.isnan(v[name]) or low - 1e-9 <= v[name] <= high + 1e-9, (name, v[name])

    for label in CANONICAL_LABELS:
        within(f"inertia_{label}", -1, 1)
        within(f"mssd_{label}", 0, 1)
        within(f"mean_{label}", 0, 1)
        within(f"dominant_{label}", 0, 1)
        within(f"dwell_{label}_s", 0, v["duration_s"] + 1)
    for axis in ("valence", "arousal"):
        within(f"{axis}_inertia", -1, 1)
        within(f"{axis}_mssd", 0, 4)
    within("self_transition_rate", 0, 1)
    within("transitions_per_min", 0, 60)
    within("entropy_mean", 0, math.log2(C))
    within("emodiversity_soft", 0, math.log2(C))
    within("emodiversity", 0, math.log(C - 1))
    within("pos_neg_balance", -1, 1)
    within("face_found_fraction", 0, 1)
    for name, value in v.items():
        if name.endswith(MISSING_SUFFIX):
            assert value == float(math.isnan(v[name.removesuffix(MISSING_SUFFIX)])), name
    rows = result.transition_matrix
    for row in rows:
        assert np.isnan(row).all() or row.sum() == pytest.approx(1.0)


# ------------------------------------------------------------------------------- sampling-rate invariance
@PROPERTY
# Distinct periods: labels whose logits coincide over the whole session would tie in every frame, and a
# dominant label among exact ties is decided by float rounding, at any rate.
@given(periods=st.permutations([31.0, 37.0, 43.0, 53.0, 61.0, 71.0, 89.0]),
       amplitudes=st.lists(st.floats(0.5, 3.0), min_size=C, max_size=C),
       phases=st.lists(st.floats(0.0, 2 * math.pi), min_size=C, max_size=C),
       fps=st.sampled_from(FPS[:-1]))
def test_dynamics_agree_across_sampling_rates(periods, amplitudes, phases, fps):
    reference = compute_session_features(latent_session(30.0, periods, amplitudes, phases)).values
    other = compute_session_features(latent_session(fps, periods, amplitudes, phases)).values
    continuous = [f"mssd_{label}" for label in CANONICAL_LABELS] + ["valence_mssd", "arousal_mssd"]
    for name in continuous:  # the same pairs 1 s apart, sampled at other phases
        assert other[name] == pytest.approx(reference[name], rel=0.1, abs=1e-5, nan_ok=True), name
    for name in [f"inertia_{label}" for label in CANONICAL_LABELS] + ["valence_inertia", "arousal_inertia"]:
        assert other[name] == pytest.approx(reference[name], abs=0.02, nan_ok=True), name
    # Dominant labels can differ where two emotions nearly tie: a few changes either way.
    assert other["transitions_per_min"] == pytest.approx(reference["transitions_per_min"], abs=1.0, nan_ok=True)
    assert other["self_transition_rate"] == pytest.approx(reference["self_transition_rate"], abs=0.02, nan_ok=True)


# ------------------------------------------------------------------------------------------- gap rule
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), fps=st.sampled_from(FPS), first_s=st.integers(3, 30),
       second_s=st.integers(3, 30), gap_s=st.integers(2, 20), gap_rows=st.booleans())
def test_a_gap_never_joins_the_segments_around_it(seed, fps, first_s, second_s, gap_s, gap_rows):
    """Features of A + gap + B pool those of A and of B: no successive pair spans the gap.

    The gap is either frames without a face or a hole in the sampling (no rows at all).
    """
    rng = np.random.default_rng(seed)

    def segment(seconds: int) -> np.ndarray:
        return rng.dirichlet(np.full(C, 0.5), size=int(round(seconds * fps)))

    a, b = segment(first_s), segment(second_s)
    t_a, t_b = np.arange(len(a)) / fps, np.arange(len(b)) / fps
    gap = np.zeros((int(round(gap_s * fps)) if gap_rows else 0, C))
    t = np.concatenate([t_a, first_s + np.arange(len(gap)) / fps, first_s + gap_s + t_b])
    face = np.concatenate([np.ones(len(a), bool), np.zeros(len(gap), bool), np.ones(len(b), bool)])
    whole = compute_session_features(frames_table(t, np.concatenate([a, gap, b]), face)).values
    alone_a = compute_session_features(frames_table(t_a, a, np.ones(len(a), bool))).values
    alone_b = compute_session_features(frames_table(t_b, b, np.ones(len(b), bool))).values
    pairs_a, pairs_b = first_s - 1, second_s - 1  # x fps pairs 1 s apart: the weights' ratio
    for name in [f"mssd_{label}" for label in CANONICAL_LABELS] + ["valence_mssd", "self_transition_rate"]:
        pooled = (pairs_a * alone_a[name] + pairs_b * alone_b[name]) / (pairs_a + pairs_b)
        assert whole[name] == pytest.approx(pooled, abs=1e-9), name
    changes = (alone_a["transitions_per_min"] * pairs_a + alone_b["transitions_per_min"] * pairs_b) / 60
    assert whole["transitions_per_min"] * (pairs_a + pairs_b) / 60 == pytest.approx(changes, abs=1e-9)
    assert whole["longest_gap_s"] == pytest.approx(gap_s, abs=1e-6)
