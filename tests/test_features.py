"""Session features on hand-built timelines with known answers, storage, and the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fervideo.cli import app
from fervideo.features import (
    CIRCUMPLEX,
    FEATURE_DEFINITIONS,
    compute_session_features,
    feature_definition,
    features_markdown,
    store_session_features,
)
from fervideo.labels import CANONICAL_LABELS
from fervideo.store import Frame, SessionFeatures, SessionStatus, Subject, VideoSession, open_database

PERIOD = 0.2  # 5 fps
HAPPY, SAD = CANONICAL_LABELS.index("happiness"), CANONICAL_LABELS.index("sadness")


def timeline(probs: np.ndarray, face: np.ndarray | None = None, t: np.ndarray | None = None) -> pd.DataFrame:
    n = len(probs)
    face = np.ones(n, dtype=bool) if face is None else face
    table = pd.DataFrame({"frame_index": np.arange(n), "t": np.arange(n) * PERIOD if t is None else t,
                          "face_found": face, "face_score": np.where(face, 0.9, np.nan)})
    for column in ("x1", "y1", "x2", "y2"):
        table[column] = np.nan
    for k, label in enumerate(CANONICAL_LABELS):
        table[label] = np.where(face, probs[:, k], np.nan)
    return table


def one_hot(indices) -> np.ndarray:
    probs = np.zeros((len(indices), len(CANONICAL_LABELS)))
    probs[np.arange(len(indices)), indices] = 1.0
    return probs


def test_constant_distribution():
    dist = np.array([0.05, 0.05, 0.1, 0.4, 0.2, 0.1, 0.1])
    result = compute_session_features(timeline(np.tile(dist, (100, 1))))
    v = result.values
    assert v["duration_s"] == pytest.approx(20.0)
    assert v["face_found_fraction"] == 1.0 and v["longest_gap_s"] == 0.0
    for k, label in enumerate(CANONICAL_LABELS):
        assert v[f"mean_{label}"] == pytest.approx(dist[k])
        assert v[f"sd_{label}"] == pytest.approx(0.0, abs=1e-12)
        assert v[f"mssd_{label}"] == pytest.approx(0.0, abs=1e-12)
        assert math.isnan(v[f"inertia_{label}"]) and v[f"inertia_{label}__missing"] == 1.0  # no variance
    assert v["dominant_happiness"] == 1.0 and v["dwell_happiness_s"] == pytest.approx(20.0)
    assert v["dwell_sadness_s"] == 0.0  # never dominant: dwells 0 s
    entropy = -np.sum(dist * np.log2(dist))
    assert v["entropy_mean"] == pytest.approx(entropy) and v["emodiversity_soft"] == pytest.approx(entropy)
    assert v["emodiversity"] == 0.0  # one emotion (happiness) dominates every frame
    assert v["expressivity"] == pytest.approx(0.8)
    assert v["pos_neg_balance"] == pytest.approx((0.4 - 0.3) / 0.7)
    expected_valence = sum(dist[k] * CIRCUMPLEX[label][0] for k, label in enumerate(CANONICAL_LABELS))
    assert v["valence_mean"] == pytest.approx(expected_valence) and v["valence_sd"] == pytest.approx(0, abs=1e-12)
    assert v["self_transition_rate"] == 1.0 and v["transitions_per_min"] == 0.0
    assert result.transition_matrix[HAPPY, HAPPY] == 1.0 and np.isnan(result.transition_matrix[SAD]).all()
    assert result.reliable and not result.reliability_notes


def test_alternating_distribution():
    # One frame per second, so the frames 1 s apart are neighbours and the labels alternate pair by pair.
    result = compute_session_features(timeline(one_hot([HAPPY, SAD] * 50), t=np.arange(100) * 1.0))
    v = result.values
    assert v["mean_happiness"] == pytest.approx(0.5) and v["sd_happiness"] == pytest.approx(0.5)
    assert v["mssd_happiness"] == pytest.approx(1.0) and v["inertia_happiness"] == pytest.approx(-1.0)
    assert v["dominant_happiness"] == pytest.approx(0.5)
    assert v["dwell_happiness_s"] == pytest.approx(1.0) and v["dwell_sadness_s"] == pytest.approx(1.0)
    assert v["self_transition_rate"] == 0.0
    assert v["transitions_per_min"] == pytest.approx(60.0)  # one change per pair 1 s apart
    assert result.transition_matrix[HAPPY, SAD] == 1.0 and result.transition_matrix[SAD, HAPPY] == 1.0
    assert v["entropy_mean"] == pytest.approx(0.0) and v["emodiversity_soft"] == pytest.approx(1.0)
    assert v["emodiversity"] == pytest.approx(math.log(2))
    assert v["valence_inertia"] == pytest.approx(-1.0)
    assert v["pos_neg_balance"] == pytest.approx(0.0)


def test_a_brief_flicker_counts_by_its_duration_at_any_rate():
    # A 0.2 s flicker to sadness every 10 s, for 60 s: 1 frame in 50 at 5 fps, 6 in 300 at 30 fps.
    def flickering(fps: int) -> pd.DataFrame:
        t = np.arange(60 * fps) / fps
        labels = np.where((t % 10.0) >= 9.8 - 1e-9, SAD, HAPPY)
        return timeline(one_hot(labels), t=t)

    slow, fast = (compute_session_features(flickering(fps)).values for fps in (5, 30))
    # Every flicker frame differs from the frame 1 s before it and the one 1 s after it; the last flicker
    # ends the session, so it has no partner after it. At 5 fps: 295 pairs, 5 x 2 + 1 changes.
    assert slow["transitions_per_min"] == pytest.approx(11 / 295 * 60)
    assert fast["transitions_per_min"] == pytest.approx(slow["transitions_per_min"])
    assert slow["dominant_sadness"] == pytest.approx(fast["dominant_sadness"]) == pytest.approx(1 / 50)


def test_gaps_break_successive_pairs():
    # 20 happy frames, 10 frames without a face, 20 sad frames: the only happy->sad step spans the gap.
    labels = [HAPPY] * 20 + [HAPPY] * 10 + [SAD] * 20
    face = np.array([True] * 20 + [False] * 10 + [True] * 20)
    v = compute_session_features(timeline(one_hot(labels), face)).values
    assert v["face_frames"] == 40 and v["face_found_fraction"] == pytest.approx(0.8)
    assert v["longest_gap_s"] == pytest.approx(10 * PERIOD)
    assert v["mssd_happiness"] == 0.0  # no successive pair crosses the gap
    assert v["transitions_per_min"] == 0.0 and v["self_transition_rate"] == 1.0
    assert v["dwell_happiness_s"] == pytest.approx(4.0) and v["dwell_sadness_s"] == pytest.approx(4.0)


def test_time_gap_without_missing_rows_also_breaks_pairs():
    t = np.concatenate([np.arange(20) * PERIOD, 10.0 + np.arange(20) * PERIOD])  # a 6 s hole in sampling
    v = compute_session_features(timeline(one_hot([HAPPY] * 20 + [SAD] * 20), t=t)).values
    assert v["transitions_per_min"] == 0.0 and v["mssd_sadness"] == 0.0
    assert v["longest_gap_s"] == pytest.approx(10.0 - 19 * PERIOD - PERIOD)


def test_edge_gaps_count():
    face = np.array([False] * 5 + [True] * 40 + [False] * 3)
    v = compute_session_features(timeline(one_hot([HAPPY] * 48), face)).values
    assert v["longest_gap_s"] == pytest.approx(5 * PERIOD)


def test_unreliable_sessions_are_flagged():
    few = compute_session_features(timeline(one_hot([HAPPY] * 20)))
    assert not few.reliable and few.reliability_notes == ["only 4.0 s of face (at least 10 s needed)"]
    face = np.zeros(400, dtype=bool)
    face[:50] = True
    sparse = compute_session_features(timeline(one_hot([HAPPY] * 400), face))
    assert not sparse.reliable and any("a face in only 12%" in note for note in sparse.reliability_notes)
    nothing = compute_session_features(timeline(one_hot([HAPPY] * 10), np.zeros(10, dtype=bool)))
    assert not nothing.reliable and math.isnan(nothing.values["mean_happiness"])


def test_every_value_has_a_definition_and_docs_are_current():
    values = compute_session_features(timeline(one_hot([HAPPY, SAD] * 30))).values
    assert set(values) <= set(FEATURE_DEFINITIONS)
    assert feature_definition("inertia_sadness").construct.startswith("emotional inertia")
    docs = Path(__file__).resolve().parents[1] / "docs" / "features.md"
    assert features_markdown() in docs.read_text(), "regenerate the table in docs/features.md"


def _stored_session(factory, probs, face=None) -> int:
    with factory.begin() as db:
        subject = Subject(code="P1")
        db.add(subject)
        db.flush()
        session = VideoSession(subject_id=subject.id, video_path="/v.mp4", video_sha256="0" * 64, sample_fps=5.0,
                               settings_key="k", status=SessionStatus.DONE, package_version="t",
                               classifier_name="c", classifier_sha256="1" * 64, detector_name="d")
        db.add(session)
        db.flush()
        for record in timeline(probs, face).to_dict("records"):
            clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
            db.add(Frame(session_id=session.id, **clean))
        return session.id


def test_store_recompute_and_cli(db_url):
    factory = open_database(db_url)
    face = np.array([True] * 80 + [False] * 20)
    session_id = _stored_session(factory, one_hot([HAPPY] * 100), face)
    row = store_session_features(factory, session_id)
    assert row.reliable and row.values["face_frames"] == 80
    assert row.values["inertia_sadness"] is None and row.values["inertia_sadness__missing"] == 1.0  # NaN: null
    assert row.transition_matrix[HAPPY][HAPPY] == 1.0 and row.transition_matrix[SAD][0] is None
    with factory.begin() as db:
        db.get(SessionFeatures, session_id).values = {**row.values, "au_AU12_intensity": 1.5, "face_frames": -1}
    assert store_session_features(factory, session_id).values["face_frames"] == -1  # stored, not recomputed
    again = store_session_features(factory, session_id, recompute=True)
    assert again.values["face_frames"] == 80 and again.values["au_AU12_intensity"] == 1.5  # au_ kept

    runner = CliRunner()
    shown = runner.invoke(app, ["features", str(session_id), "--db", db_url])
    assert shown.exit_code == 0, shown.output
    assert "mean_happiness" in shown.output and "reliable" in shown.output
    everything = runner.invoke(app, ["features", "--all", "--recompute", "--db", db_url])
    assert everything.exit_code == 0 and "1 session(s)" in everything.output
