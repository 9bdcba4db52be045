"""Regression tests for issue 9's OpenFace defects: rules over the AUs present (17), confidence floor (18)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fervideo.cli import app
from fervideo.errors import InvalidArgumentError
from fervideo.labels import CANONICAL_LABELS
from fervideo.openface import au_emotion_probabilities, import_openface_csv
from fervideo.store import SessionFeatures, VideoSession, open_database

FULL_INTENSITY = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
                  "AU20", "AU23", "AU25", "AU26", "AU45"]
FULL_PRESENCE = [*FULL_INTENSITY[:-1], "AU28", "AU45"]
# The column set DAIC-WOZ distributes (CLNF_AUs.txt): no AU07 at all, AU23 as presence only.
DAIC_INTENSITY = ["AU01", "AU02", "AU04", "AU05", "AU06", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20",
                  "AU25", "AU26"]
DAIC_PRESENCE = ["AU04", "AU12", "AU15", "AU23", "AU28", "AU45"]
ANGER = ("AU04", "AU05", "AU07", "AU23")


def face_row(active: tuple[str, ...], intensity_aus, presence_aus, level: float = 3.0) -> dict[str, float]:
    row = {f"{au}_r": (level if au in active else 0.0) for au in intensity_aus}
    row |= {f"{au}_c": (1.0 if au in active else 0.0) for au in presence_aus}
    return row


def probability(row: dict, label: str) -> float:
    return float(au_emotion_probabilities(pd.DataFrame([row]))[0][CANONICAL_LABELS.index(label)])


def write_csv(path: Path, rows: list[dict], confidences: list[float] | None = None, fps: float = 30.0) -> Path:
    confidences = confidences or [0.98] * len(rows)
    frame = pd.DataFrame([{"frame": i + 1, "timestamp": round(i / fps, 3), "confidence": c, "success": 1} | row
                          for i, (row, c) in enumerate(zip(rows, confidences, strict=True))])
    path.write_text(frame.to_csv(index=False).replace(",", ", "))  # OpenFace writes ", " between fields
    return path


# --------------------------------------------------------------------------------------------- item 17
def test_a_missing_au_column_is_not_an_absent_au():
    full = probability(face_row(ANGER, FULL_INTENSITY, FULL_PRESENCE), "anger")
    daic = probability(face_row(ANGER, DAIC_INTENSITY, DAIC_PRESENCE), "anger")
    assert full > 0.95 and daic == pytest.approx(full, abs=1e-4)  # was 1.00 vs 0.60


def test_happiness_from_au12_alone_is_happiness():
    row = face_row(("AU12",), FULL_INTENSITY, FULL_PRESENCE)
    probs = au_emotion_probabilities(pd.DataFrame([row]))[0]
    assert CANONICAL_LABELS[int(np.argmax(probs))] == "happiness"


def test_a_rule_without_any_of_its_columns_gives_no_evidence():
    row = {"AU12_r": 3.0, "AU12_c": 1.0, "AU06_r": 3.0, "AU06_c": 1.0}  # nothing of the other rules
    probs = au_emotion_probabilities(pd.DataFrame([row]))[0]
    assert CANONICAL_LABELS[int(np.argmax(probs))] == "happiness" and probs.sum() == pytest.approx(1.0)


def test_the_column_set_is_recorded_with_the_session(db_url, tmp_path):
    factory = open_database(db_url)
    rows_full = [face_row(("AU06", "AU12"), FULL_INTENSITY, FULL_PRESENCE)] * 400
    rows_daic = [face_row(("AU06", "AU12"), DAIC_INTENSITY, DAIC_PRESENCE)] * 400
    full = import_openface_csv(factory, write_csv(tmp_path / "full.csv", rows_full), "P1")
    daic = import_openface_csv(factory, write_csv(tmp_path / "daic.csv", rows_daic), "P2")
    with factory() as db:
        hashes = [db.get(VideoSession, r.session_id).detector_params["openface_columns_sha256"] for r in (full, daic)]
    assert all(len(h) == 64 for h in hashes) and hashes[0] != hashes[1]


# --------------------------------------------------------------------------------------------- item 18
def test_low_confidence_frames_are_excluded_and_counted(db_url, tmp_path):
    factory = open_database(db_url)
    happy = face_row(("AU06", "AU12"), FULL_INTENSITY, FULL_PRESENCE)
    sad = face_row(("AU01", "AU04", "AU15"), FULL_INTENSITY, FULL_PRESENCE)
    rows = [happy] * 600 + [sad] * 300  # 30 s at 30 fps; the sad stretch is tracked with low confidence
    path = write_csv(tmp_path / "p.csv", rows, [0.95] * 600 + [0.5] * 300)
    result = import_openface_csv(factory, path, "P1")
    with factory() as db:
        params = db.get(VideoSession, result.session_id).detector_params
        values = db.get(SessionFeatures, result.session_id).values
    assert params["min_confidence"] == 0.75 and params["low_confidence_frames"] == 300
    assert values["face_frames"] == 600 and values["excluded_face_frames"] == 300
    assert values["mean_sadness"] < 0.01 and values["au_low_confidence_rate"] == pytest.approx(1 / 3)
    assert values["au_AU04_intensity"] == 0.0  # the AU group leaves them out too

    lenient = import_openface_csv(factory, path, "P2", min_confidence=0.4)
    with factory() as db:
        assert db.get(SessionFeatures, lenient.session_id).values["face_frames"] == 900


def test_min_confidence_is_validated_and_reaches_the_cli(db_url, tmp_path):
    factory = open_database(db_url)
    path = write_csv(tmp_path / "p.csv", [face_row((), FULL_INTENSITY, FULL_PRESENCE)] * 30)
    with pytest.raises(InvalidArgumentError, match="min-confidence"):
        import_openface_csv(factory, path, "P1", min_confidence=1.5)
    result = CliRunner().invoke(app, ["import-openface", str(path), "--subject", "P3", "--min-confidence", "0.9",
                                      "--db", db_url])
    assert result.exit_code == 0, result.output
    with factory() as db:
        (session,) = db.query(VideoSession).all()
        assert session.detector_params["min_confidence"] == 0.9


# ---------------------------------------------------------------------- item 14 (sampling rate, OpenFace)
def test_the_sampling_rate_of_rounded_timestamps_is_the_true_rate(db_url, tmp_path):
    """OpenFace writes timestamps to 3 decimals (0.033, 0.067, 0.1 ...): the median step, 0.033 s, would
    make 30.30 fps. Heads compare rates, so two 30 fps files must both say 30 fps."""
    factory = open_database(db_url)
    rows = [face_row((), FULL_INTENSITY, FULL_PRESENCE)]
    rates = []
    for n, name in ((400, "a.csv"), (917, "b.csv")):
        result = import_openface_csv(factory, write_csv(tmp_path / name, rows * n, fps=30.0), "P1")
        with factory() as db:
            rates.append(db.get(VideoSession, result.session_id).sample_fps)
    assert rates == [30.0, 30.0]
