"""OpenFace 2.x CSV import: the real header format, AU prototype rules, the au_ group, and kept-apart heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from phq_cohort import CLASSIFIER, add_session, feature_names, make_cohort
from sqlalchemy import select
from typer.testing import CliRunner

from fervideo.cli import app
from fervideo.errors import DataFileError, PhqRefusalError
from fervideo.features import FEATURE_DEFINITIONS, store_session_features
from fervideo.labels import CANONICAL_LABELS
from fervideo.openface import (
    CLASSIFIER_NAME,
    EMOTION_RULES,
    PROVENANCE,
    RULES_SHA256,
    SOURCE,
    au_emotion_probabilities,
    import_openface_csv,
)
from fervideo.phq import predict_session, train_head
from fervideo.store import SessionFeatures, Subject, VideoSession, frame_table, open_database

INTENSITY = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
             "AU20", "AU23", "AU25", "AU26", "AU45"]
PRESENCE = [*INTENSITY[:-1], "AU28", "AU45"]
HEADER = (["frame", "face_id", "timestamp", "confidence", "success"]
          + [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
          + [f"pose_{c}" for c in ("Tx", "Ty", "Tz", "Rx", "Ry", "Rz")]
          + [f"{au}_r" for au in INTENSITY] + [f"{au}_c" for au in PRESENCE])
# Segments of (number of frames, active AUs, success): happy, neutral, lost face, sad.
# 16 s at 30 fps: enough face (14.7 s) for the 10 s reliability floor.
SCRIPT = [(160, ("AU06", "AU12"), 1), (120, (), 1), (40, ("AU06", "AU12"), 0), (160, ("AU01", "AU04", "AU15"), 1)]


def openface_csv(path: Path, script=SCRIPT, seed: int = 0) -> Path:
    """A FeatureExtraction CSV as OpenFace writes it: ', ' between header names and between values."""
    rng = np.random.default_rng(seed)
    lines = [", ".join(HEADER)]
    frame = 0
    for count, active, success in script:
        for _ in range(count):
            frame += 1
            row = {name: 0.0 for name in HEADER}
            row.update(frame=frame, face_id=0, timestamp=round((frame - 1) / 30, 3),
                       confidence=0.98 if success else 0.0, success=success)
            row.update({f"pose_R{a}": rng.normal(scale=0.1) for a in "xyz"}, gaze_angle_x=rng.normal(scale=0.2))
            for au in active:
                row[f"{au}_r"] = 3.0
                row[f"{au}_c"] = 1.0
            lines.append(", ".join(str(int(v)) if name in ("frame", "face_id", "success") else f"{v:.3f}"
                                   for name, v in row.items()))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prototype_rules_pick_each_emotion():
    for emotion, aus in EMOTION_RULES.items():  # every AU column present, as in an OpenFace 2.x CSV
        row = {f"{au}_r": 3.0 if au in aus else 0.0 for au in INTENSITY}
        row |= {f"{au}_c": 1.0 if au in aus else 0.0 for au in PRESENCE}
        probs = au_emotion_probabilities(pd.DataFrame([row]))[0]
        assert CANONICAL_LABELS[int(np.argmax(probs))] == emotion, emotion
        assert probs.sum() == pytest.approx(1.0)
    nothing = au_emotion_probabilities(pd.DataFrame([{"AU12_r": 0.4, "AU12_c": 0.0}]))[0]
    assert CANONICAL_LABELS[int(np.argmax(nothing))] == "neutral" and nothing.max() > 0.85


def test_import_real_format_csv(db_url, tmp_path):
    factory = open_database(db_url)
    path = openface_csv(tmp_path / "p300.csv")
    assert path.read_text().startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    result = import_openface_csv(factory, path, "300", session_label="baseline")
    assert result.frames == 480 and result.face_frames == 440 and not result.skipped
    with factory() as db:
        session = db.get(VideoSession, result.session_id)
        assert (session.source, session.classifier_name, session.classifier_sha256) == (
            SOURCE, CLASSIFIER_NAME, RULES_SHA256)
        assert session.detector_name == "OpenFace 2.x" and session.detector_params["provenance"] == PROVENANCE
        assert session.detector_params["session_label"] == "baseline" and len(session.video_sha256) == 64
        frames = frame_table(db, result.session_id)
        features = db.get(SessionFeatures, result.session_id)
    dominant = frames[list(CANONICAL_LABELS)].fillna(-1).idxmax(axis=1)
    assert (dominant[:160] == "happiness").all() and (dominant[160:280] == "neutral").all()
    assert (dominant[320:] == "sadness").all()
    assert not frames["face_found"][280:320].any() and frames["happiness"][280:320].isna().all()  # success = 0
    values = features.values
    assert values["face_frames"] == 440 and features.reliable
    assert values["au_AU12_intensity"] == pytest.approx(3.0 * 160 / 440)
    assert values["au_AU04_presence"] == pytest.approx(160 / 440)
    assert values["au_low_confidence_rate"] == 0.0 and values["au_pose_Rx_sd"] > 0
    assert values["longest_gap_s"] == pytest.approx(40 / 30, abs=1e-3)
    assert all(name in FEATURE_DEFINITIONS for name in values)
    again = import_openface_csv(factory, path, "300")
    assert again.skipped and again.session_id == result.session_id
    recomputed = store_session_features(factory, result.session_id, recompute=True)
    assert recomputed.values["au_AU12_intensity"] == values["au_AU12_intensity"]


def test_bad_csv_is_refused(db_url, tmp_path):
    factory = open_database(db_url)
    bad = tmp_path / "bad.csv"
    bad.write_text("frame, timestamp, success\n1, 0.0, 1\n")
    with pytest.raises(DataFileError, match="missing OpenFace column"):
        import_openface_csv(factory, bad, "X")


def test_cli_imports_a_directory(db_url, tmp_path):
    folder = tmp_path / "openface"
    folder.mkdir()
    openface_csv(folder / "a.csv", seed=1)
    openface_csv(folder / "b.csv", SCRIPT[::-1], seed=2)
    (folder / "notes.txt").write_text("not a csv")
    result = CliRunner().invoke(app, ["import-openface", str(folder), "--subject", "P1", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "a.csv: session 1" in result.output and "b.csv: session 2" in result.output


def test_openface_heads_are_kept_apart_from_vit_heads(db_url):
    factory = open_database(db_url)
    au_names = tuple(n for n, d in FEATURE_DEFINITIONS.items() if d.group == "au")
    make_cohort(factory, n_subjects=15, classifier=(CLASSIFIER_NAME, RULES_SHA256), source=SOURCE,
                extra_features=au_names)
    result = train_head(factory, "of", n_boot=20)
    assert result.model.config["feature_source"] == "openface"
    assert set(au_names) <= set(result.model.features)
    with factory.begin() as db:
        subject = Subject(code="vit-person")
        db.add(subject)
        db.flush()
        vit_session = add_session(db, subject, dict.fromkeys(feature_names(), 0.0), classifier=CLASSIFIER).id
    with pytest.raises(PhqRefusalError, match="processed by vit-tiny-test"):  # not the weak-head refusal
        predict_session(factory, vit_session, "of", allow_weak_head=True)
    with factory() as db:
        assert db.scalar(select(VideoSession.source).where(VideoSession.id == vit_session)) == "video"
