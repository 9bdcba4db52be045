"""OpenFace 2.x interop: a FeatureExtraction CSV -> a stored session with per-frame emotion distributions.

The distributions come from action-unit intensities by EMFACS-style prototype rules (`EMOTION_RULES`),
not from a network, so the same session features apply. The session's classifier is
"openface-au-rules" with the sha256 of the rule table's canonical JSON, so a PHQ head trained on these
sessions never mixes with one trained on the ViT's. See docs/features.md, "OpenFace sessions".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert, select

from fervideo import __version__
from fervideo.errors import DataFileError
from fervideo.features import (
    AU_PREFIX,
    OPENFACE_INTENSITY_AUS,
    OPENFACE_PRESENCE_AUS,
    OPENFACE_VARIABILITY_COLUMNS,
    store_session_features,
)
from fervideo.labels import CANONICAL_LABELS
from fervideo.store import Frame, SessionStatus, Subject, VideoSession, get_or_create_subject
from fervideo.utils import sha256_file

log = logging.getLogger(__name__)

SOURCE = "openface"
CLASSIFIER_NAME = "openface-au-rules"
DETECTOR_NAME = "OpenFace 2.x"
PROVENANCE = "OpenFace AU rules"
REQUIRED_COLUMNS = ("frame", "timestamp", "confidence", "success")
LOW_CONFIDENCE = 0.75  # OpenFace's own tracking threshold; below it a frame counts as low-confidence
INTENSITY_SCALE = 5.0  # AU_r runs 0..5
PRESENT_INTENSITY = 1.0  # AU_r at or above this counts as present when AU_c is missing
SOFTMAX_GAIN = 20.0
NEUTRAL_EVIDENCE = 0.2  # the neutral label's fixed evidence: emotions must beat it to dominate

# EMFACS-style prototypes (Friesen & Ekman 1983, as summarised in e.g. Lucey et al. 2010, CK+).
# OpenFace estimates no AU16, so disgust uses AU9 + AU15 + AU10 (upper-lip raiser, also an EMFACS
# disgust unit) in its place.
EMOTION_RULES: dict[str, tuple[str, ...]] = {
    "anger": ("AU04", "AU05", "AU07", "AU23"),
    "disgust": ("AU09", "AU10", "AU15"),
    "fear": ("AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"),
    "happiness": ("AU06", "AU12"),
    "sadness": ("AU01", "AU04", "AU15"),
    "surprise": ("AU01", "AU02", "AU05", "AU26"),
}
RULE_PARAMETERS = {"rules": EMOTION_RULES, "intensity_scale": INTENSITY_SCALE, "present_intensity": PRESENT_INTENSITY,
                   "softmax_gain": SOFTMAX_GAIN, "neutral_evidence": NEUTRAL_EVIDENCE, "active_share": 0.5}
RULES_SHA256 = hashlib.sha256(json.dumps(RULE_PARAMETERS, sort_keys=True).encode()).hexdigest()


@dataclass
class ImportResult:
    session_id: int
    path: Path
    frames: int
    face_frames: int
    skipped: bool = False  # this file was already imported for this subject


def read_openface_csv(path: Path) -> pd.DataFrame:
    """Read a FeatureExtraction CSV (headers have a space after each comma) and check its columns."""
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFileError(f"{path}: not a readable OpenFace CSV ({str(exc).splitlines()[0]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    intensities = [f"{au}_r" for au in OPENFACE_INTENSITY_AUS if f"{au}_r" in table.columns]
    if missing or not intensities:
        what = ", ".join(missing) if missing else "AU intensity columns (AU01_r ...)"
        raise DataFileError(f"{path}: missing OpenFace column(s) {what}; is it a FeatureExtraction CSV?")
    if "face_id" in table.columns and table["face_id"].nunique() > 1:
        raise DataFileError(f"{path}: holds several faces (face_id); keep one face's rows and import again")
    if table["frame"].duplicated().any():
        raise DataFileError(f"{path}: repeated frame numbers; is it one video's output?")
    if not len(table):
        raise DataFileError(f"{path}: holds no frames")
    return table.sort_values("frame").reset_index(drop=True)


def _presence(table: pd.DataFrame, au: str) -> np.ndarray:
    if f"{au}_c" in table.columns:
        return table[f"{au}_c"].to_numpy(dtype=np.float64) >= 0.5
    if f"{au}_r" in table.columns:
        return table[f"{au}_r"].to_numpy(dtype=np.float64) >= PRESENT_INTENSITY
    return np.zeros(len(table), dtype=bool)


def _intensity(table: pd.DataFrame, au: str) -> np.ndarray:
    if f"{au}_r" not in table.columns:
        return np.zeros(len(table))
    return np.clip(table[f"{au}_r"].to_numpy(dtype=np.float64), 0.0, INTENSITY_SCALE) / INTENSITY_SCALE


def au_emotion_probabilities(table: pd.DataFrame) -> np.ndarray:
    """[N, 7] distributions in canonical order from AU intensities by the prototype rules.

    Evidence for an emotion = mean normalised intensity of its AUs x share of them present, and zero
    unless at least half of them are present (active). Neutral has a fixed evidence; a softmax with a
    fixed gain turns evidences into probabilities, so a frame with no active emotion is mostly neutral.
    """
    evidence = np.zeros((len(table), len(CANONICAL_LABELS)))
    for k, label in enumerate(CANONICAL_LABELS):
        if label == "neutral":
            evidence[:, k] = NEUTRAL_EVIDENCE
            continue
        aus = EMOTION_RULES[label]
        share = np.mean([_presence(table, au) for au in aus], axis=0)
        strength = np.mean([_intensity(table, au) for au in aus], axis=0)
        evidence[:, k] = np.where(share >= RULE_PARAMETERS["active_share"], strength * share, 0.0)
    logits = SOFTMAX_GAIN * evidence
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def au_feature_values(table: pd.DataFrame) -> dict[str, float]:
    """The `au_` feature group over frames with success = 1 (NaN where a column is absent)."""
    face = table["success"].to_numpy(dtype=np.float64) >= 0.5
    rows = table[face]
    nan = float("nan")
    values: dict[str, float] = {}
    for au in OPENFACE_INTENSITY_AUS:
        column = f"{au}_r"
        values[f"{AU_PREFIX}{au}_intensity"] = float(rows[column].mean()) if column in rows and len(rows) else nan
    for au in OPENFACE_PRESENCE_AUS:
        column = f"{au}_c"
        present = float((rows[column] >= 0.5).mean()) if column in rows and len(rows) else nan
        values[f"{AU_PREFIX}{au}_presence"] = present
    for column in OPENFACE_VARIABILITY_COLUMNS:
        values[f"{AU_PREFIX}{column}_sd"] = float(rows[column].std(ddof=0)) if column in rows and len(rows) else nan
    values[f"{AU_PREFIX}low_confidence_rate"] = (
        float((rows["confidence"] < LOW_CONFIDENCE).mean()) if len(rows) else nan
    )
    return values


def openface_frame_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-frame table (DESIGN.md's contract) of an OpenFace CSV: no boxes, success = face found."""
    face = table["success"].to_numpy(dtype=np.float64) >= 0.5
    frames = pd.DataFrame({
        "frame_index": table["frame"].to_numpy(dtype=np.int64),
        "t": table["timestamp"].to_numpy(dtype=np.float64),
        "face_found": face,
        "face_score": np.where(face, table["confidence"].to_numpy(dtype=np.float64), np.nan),
    })
    for column in ("x1", "y1", "x2", "y2"):
        frames[column] = np.nan
    probs = au_emotion_probabilities(table)
    probs[~face] = np.nan
    for k, label in enumerate(CANONICAL_LABELS):
        frames[label] = probs[:, k]
    return frames


def _existing_session(db, subject_code: str, sha256: str) -> int | None:
    return db.scalar(
        select(VideoSession.id).join(Subject).where(
            Subject.code == subject_code, VideoSession.video_sha256 == sha256, VideoSession.source == SOURCE,
            VideoSession.status == SessionStatus.DONE,
        )
    )


def import_openface_csv(db_factory, path: str | Path, subject: str, session_label: str | None = None,
                        recorded_at: dt.datetime | None = None) -> ImportResult:
    """Store one OpenFace CSV as a session of `subject`, with its frames and features (AU group included)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    sha256 = sha256_file(path)
    with db_factory() as db:
        existing = _existing_session(db, subject, sha256)
    if existing is not None:
        return ImportResult(existing, path, 0, 0, skipped=True)
    table = read_openface_csv(path)
    frames = openface_frame_table(table)
    t = frames["t"].to_numpy()
    steps = np.diff(t)
    period = float(np.median(steps[steps > 0])) if (steps > 0).any() else float("nan")
    with db_factory.begin() as db:
        subject_row = get_or_create_subject(db, subject)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        session = VideoSession(
            subject_id=subject_row.id, source=SOURCE, video_path=str(path.resolve()), video_sha256=sha256,
            recorded_at=recorded_at, duration_s=float(t[-1] - t[0]) if len(t) else 0.0,
            video_fps=1.0 / period if np.isfinite(period) else None, frame_count=len(frames),
            sample_fps=1.0 / period if np.isfinite(period) else 0.0, settings_key=RULES_SHA256,
            status=SessionStatus.DONE, started_at=now, finished_at=now, processing_s=0.0,
            sampled_frames=len(frames), face_frames=int(frames["face_found"].sum()),
            package_version=__version__, classifier_name=CLASSIFIER_NAME, classifier_sha256=RULES_SHA256,
            detector_name=DETECTOR_NAME,
            detector_params={"provenance": PROVENANCE, "low_confidence": LOW_CONFIDENCE,
                             "session_label": session_label, "rules": RULE_PARAMETERS},
        )
        db.add(session)
        db.flush()
        records = frames.astype(object).where(frames.notna(), None).to_dict("records")
        for record in records:
            record["session_id"] = session.id
        db.execute(insert(Frame), records)
        session_id = session.id
    store_session_features(db_factory, session_id, recompute=True, frames=frames,
                           extra_values=au_feature_values(table))
    log.info("imported %s as session %d (%d frames)", path.name, session_id, len(frames))
    return ImportResult(session_id, path, len(frames), int(frames["face_found"].sum()))


def openface_files(path: Path) -> list[Path]:
    """The CSVs to import: the file itself, or every *.csv directly in a directory (sorted)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
        if not files:
            raise DataFileError(f"{path}: no .csv files in this directory")
        return files
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory")
    return [path]
