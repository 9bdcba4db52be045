"""One rounding rule (half up) for severity bands, the >= 10 screening cutoff and F1 (issue 9 item 7)."""

from __future__ import annotations

import numpy as np
import pytest

from fervideo.phq import f1_at_cutoff, round_score, screens_positive, severity_band

EDGES = [
    (0.0, 0, "minimal"), (4.4, 4, "minimal"), (4.49, 4, "minimal"), (4.5, 5, "mild"), (5.0, 5, "mild"),
    (9.4, 9, "mild"), (9.49, 9, "mild"), (9.5, 10, "moderate"), (9.6, 10, "moderate"), (10.0, 10, "moderate"),
    (14.4, 14, "moderate"), (14.5, 15, "moderately severe"), (15.5, 16, "moderately severe"),
    (19.4, 19, "moderately severe"), (19.5, 20, "severe"), (23.5, 24, "severe"), (24.0, 24, "severe"),
    (27.0, 27, "severe"),
]


@pytest.mark.parametrize("score, rounded, band", EDGES)
def test_bands_round_half_up_at_every_edge(score, rounded, band):
    assert round_score(score) == rounded
    assert severity_band(score) == band


@pytest.mark.parametrize("score", [0.5, 2.5, 4.5, 9.5, 10.5, 12.5, 14.5, 16.5, 18.5, 19.5])
def test_no_bankers_rounding(score):
    # Python's round() sends x.5 to the even neighbour (14.5 -> 14, but 19.5 -> 20); ours always goes up.
    assert round_score(score) == int(score) + 1


@pytest.mark.parametrize("score, positive", [(9.4, False), (9.49, False), (9.5, True), (9.6, True), (10.0, True)])
def test_cutoff_follows_the_same_rule_as_the_band(score, positive):
    assert screens_positive(score) is positive
    assert (severity_band(score) in ("moderate", "moderately severe", "severe")) is positive


def test_regression_f1_agrees_with_the_band():
    # 9.6 was "moderate" but screen-negative for F1; now both say >= 10.
    truth = np.array([10.0, 10.0, 3.0])
    assert f1_at_cutoff(truth, np.array([9.6, 9.5, 3.0])) == 1.0
    assert f1_at_cutoff(truth, np.array([9.4, 9.49, 3.0])) == 0.0
