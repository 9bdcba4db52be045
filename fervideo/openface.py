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
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert, select

from fervideo import __version__
from fervideo.errors import DataFileError, InvalidArgumentError
from fervideo.features import (
    AU_PREFIX,
    OPENFACE_INTENSITY_AUS,
    OPENFACE_PRESENCE_AUS,
    OPENFACE_VARIABILITY_COLUMNS,
    sampling_period,
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
# OpenFace's own tracking threshold: a frame with success = 1 but a lower confidence is not trusted, is
# left out of every feature, and is counted (`--min-confidence`, recorded in the session's parameters).
DEFAULT_MIN_CONFIDENCE = 0.75
INTENSITY_SCALE = 5.0  # AU_r runs 0..5
PRESENT_INTENSITY = 1.0  # AU_r at or above this counts as present when AU_c is missing
SOFTMAX_GAIN = 20.0
NEUTRAL_EVIDENCE = 0.2  # the neutral label's fixed evidence: emotions must beat it to dominate

# EMFACS-style prototypes (Friesen & Ekman 1983, as summarised in e.g. Lucey et al. 2010, CK+).
# OpenFace estimates no AU16, so disgust uses AU9 + AU15 + AU10 (upper-lip raiser, also an EMFACS
# disgust unit) in its place. Each rule is scored over the AUs the CSV has columns for (renormalised),
# so a column set without AU07 (DAIC-WOZ) scores an anger face as a full column set does.
EMOTION_RULES: dict[str, tuple[str, ...]] = {
    "anger": ("AU04", "AU05", "AU07", "AU23"),
    "disgust": ("AU09", "AU10", "AU15"),
    "fear": ("AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"),
    "happiness": ("AU06", "AU12"),
    "sadness": ("AU01", "AU04", "AU15"),
    "surprise": ("AU01", "AU02", "AU05", "AU26"),
}
RULE_PARAMETERS = {"rules": EMOTION_RULES, "intensity_scale": INTENSITY_SCALE, "present_intensity": PRESENT_INTENSITY,
                   "softmax_gain": SOFTMAX_GAIN, "neutral_evidence": NEUTRAL_EVIDENCE, "active_share": 0.5,
                   "evidence": "share present x mean intensity of present AUs, over the AUs with a column",
                   "tie_break_per_au": 1e-3}
AU_COLUMN = re.compile(r"^AU\d\d_[rc]$")
RULES_SHA256 = hashlib.sha256(json.dumps(RULE_PARAMETERS, sort_keys=True).encode()).hexdigest()


@dataclass
class ImportResult:
    session_id: int
    path: Path
    frames: int
    face_frames: int
    skipped: bool = False  # this file was already imported for this subject with these settings
    low_confidence_frames: int = 0  # faces below --min-confidence, left out of the features


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


def au_columns(table: pd.DataFrame) -> list[str]:
    """The AU columns (AUxx_r, AUxx_c) the CSV has, sorted: its column set."""
    return sorted(c for c in table.columns if AU_COLUMN.match(str(c)))


def au_columns_sha256(table: pd.DataFrame) -> str:
    """sha256 of the column set's JSON: sessions from different column sets must not share a PHQ head."""
    return hashlib.sha256(json.dumps(au_columns(table)).encode()).hexdigest()


def _has_columns(table: pd.DataFrame, au: str) -> bool:
    return f"{au}_c" in table.columns or f"{au}_r" in table.columns


def _presence(table: pd.DataFrame, au: str) -> np.ndarray:
    if f"{au}_c" in table.columns:
        return table[f"{au}_c"].to_numpy(dtype=np.float64) >= 0.5
    return table[f"{au}_r"].to_numpy(dtype=np.float64) >= PRESENT_INTENSITY


def _rule_evidence(table: pd.DataFrame, aus: tuple[str, ...]) -> np.ndarray:
    """share present x mean normalised intensity of the present AUs, over the rule's AUs with a column.

    An AU present by its _c column but without an _r column takes the mean intensity of the present AUs
    that have one (the presence threshold's intensity when none has). No column at all: no evidence.
    """
    known = [au for au in aus if _has_columns(table, au)]
    if not known:
        return np.zeros(len(table))
    present = np.array([_presence(table, au) for au in known])  # [A, N]
    share = present.mean(axis=0)
    rated = [au for au in known if f"{au}_r" in table.columns]
    intensity = np.array([np.clip(table[f"{au}_r"].to_numpy(dtype=np.float64), 0.0, INTENSITY_SCALE) / INTENSITY_SCALE
                          if au in rated else np.full(len(table), np.nan) for au in known])
    present_rated = present & ~np.isnan(intensity)
    with np.errstate(invalid="ignore"):
        strength = np.where(present_rated, intensity, 0.0).sum(axis=0) / present_rated.sum(axis=0)
    strength = np.where(present_rated.any(axis=0), strength, PRESENT_INTENSITY / INTENSITY_SCALE)
    # A prototype contained in another (surprise in fear) ties with it on a face showing the larger one;
    # the tiny bonus per present AU lets the prototype explaining more of the face win the argmax.
    evidence = share * strength + RULE_PARAMETERS["tie_break_per_au"] * present.sum(axis=0)
    return np.where(share >= RULE_PARAMETERS["active_share"], evidence, 0.0)


def au_emotion_probabilities(table: pd.DataFrame) -> np.ndarray:
    """[N, 7] distributions in canonical order from AU intensities by the prototype rules.

    Evidence for an emotion is zero unless at least half of its AUs (with a column) are present; then
    (share present) x (mean normalised intensity of the present AUs) + 0.001 per present AU (tie-break),
    so AU12 alone at intensity 3 is a smile (0.5 x 0.6 = 0.3 beats neutral's 0.2). Neutral has a fixed
    evidence; a softmax with a fixed gain turns evidences into probabilities, so a frame with no active
    emotion is mostly neutral.
    """
    evidence = np.zeros((len(table), len(CANONICAL_LABELS)))
    for k, label in enumerate(CANONICAL_LABELS):
        evidence[:, k] = NEUTRAL_EVIDENCE if label == "neutral" else _rule_evidence(table, EMOTION_RULES[label])
    logits = SOFTMAX_GAIN * evidence
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def trusted_frames(table: pd.DataFrame, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(face, trusted): success = 1, and success = 1 with confidence >= min_confidence."""
    face = table["success"].to_numpy(dtype=np.float64) >= 0.5
    return face, face & (table["confidence"].to_numpy(dtype=np.float64) >= min_confidence)


def au_feature_values(table: pd.DataFrame, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> dict[str, float]:
    """The `au_` feature group over trusted face frames (NaN where a column is absent)."""
    face, trusted = trusted_frames(table, min_confidence)
    rows = table[trusted]
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
    values[f"{AU_PREFIX}low_confidence_rate"] = float(np.mean(~trusted[face])) if face.any() else nan
    return values


def openface_frame_table(table: pd.DataFrame, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> pd.DataFrame:
    """The per-frame table (DESIGN.md's contract) of an OpenFace CSV: no boxes, success = face found.

    A face below `min_confidence` keeps face_found (a face was tracked) but gets no probabilities, so
    the session features leave it out and count it as `excluded_face_frames`.
    """
    face, trusted = trusted_frames(table, min_confidence)
    frames = pd.DataFrame({
        "frame_index": table["frame"].to_numpy(dtype=np.int64),
        "t": table["timestamp"].to_numpy(dtype=np.float64),
        "face_found": face,
        "face_score": np.where(face, table["confidence"].to_numpy(dtype=np.float64), np.nan),
    })
    for column in ("x1", "y1", "x2", "y2"):
        frames[column] = np.nan
    probs = au_emotion_probabilities(table)
    probs[~trusted] = np.nan
    for k, label in enumerate(CANONICAL_LABELS):
        frames[label] = probs[:, k]
    return frames


def _existing_session(db, subject_code: str, sha256: str, settings_key: str) -> int | None:
    return db.scalar(
        select(VideoSession.id).join(Subject).where(
            Subject.code == subject_code, VideoSession.video_sha256 == sha256, VideoSession.source == SOURCE,
            VideoSession.settings_key == settings_key, VideoSession.status == SessionStatus.DONE,
        )
    )


def import_settings_key(min_confidence: float) -> str:
    """The rules and the confidence floor: re-importing a file with other settings makes a new session."""
    settings = {"rules_sha256": RULES_SHA256, "min_confidence": min_confidence}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def import_openface_csv(db_factory, path: str | Path, subject: str, session_label: str | None = None,
                        recorded_at: dt.datetime | None = None,
                        min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> ImportResult:
    """Store one OpenFace CSV as a session of `subject`, with its frames and features (AU group included).

    Faces tracked with a confidence below `min_confidence` are left out of every feature and counted.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidArgumentError(f"--min-confidence must be between 0 and 1, got {min_confidence:g}")
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    sha256 = sha256_file(path)
    settings_key = import_settings_key(min_confidence)
    with db_factory() as db:
        existing = _existing_session(db, subject, sha256, settings_key)
    if existing is not None:
        return ImportResult(existing, path, 0, 0, skipped=True)
    table = read_openface_csv(path)
    frames = openface_frame_table(table, min_confidence)
    face, trusted = trusted_frames(table, min_confidence)
    t = frames["t"].to_numpy()
    period = sampling_period(t)
    rate = round(1.0 / period, 2) if np.isfinite(period) else None  # heads compare rates; 3-decimal timestamps
    with db_factory.begin() as db:
        subject_row = get_or_create_subject(db, subject)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        session = VideoSession(
            subject_id=subject_row.id, source=SOURCE, video_path=str(path.resolve()), video_sha256=sha256,
            recorded_at=recorded_at, duration_s=float(t[-1] - t[0]) if len(t) else 0.0,
            video_fps=rate, frame_count=len(frames), sample_fps=rate or 0.0, settings_key=settings_key,
            status=SessionStatus.DONE, started_at=now, finished_at=now, processing_s=0.0,
            sampled_frames=len(frames), face_frames=int(frames["face_found"].sum()),
            package_version=__version__, classifier_name=CLASSIFIER_NAME, classifier_sha256=RULES_SHA256,
            detector_name=DETECTOR_NAME,
            detector_params={"provenance": PROVENANCE, "session_label": session_label, "rules": RULE_PARAMETERS,
                             "min_confidence": min_confidence, "low_confidence_frames": int(np.sum(face & ~trusted)),
                             "openface_columns_sha256": au_columns_sha256(table),
                             "openface_au_columns": au_columns(table)},
        )
        db.add(session)
        db.flush()
        records = frames.astype(object).where(frames.notna(), None).to_dict("records")
        for record in records:
            record["session_id"] = session.id
        db.execute(insert(Frame), records)
        session_id = session.id
    store_session_features(db_factory, session_id, recompute=True, frames=frames,
                           extra_values=au_feature_values(table, min_confidence))
    log.info("imported %s as session %d (%d frames)", path.name, session_id, len(frames))
    return ImportResult(session_id, path, len(frames), int(frames["face_found"].sum()),
                        low_confidence_frames=int(np.sum(face & ~trusted)))


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
