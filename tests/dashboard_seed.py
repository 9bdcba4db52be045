"""A small, deterministic clinical database for the dashboard's tests and benchmark (ORM writes only).

Subject S-001 has three done sessions with features, PHQ estimates and recorded PHQ scores; S-002 has
one done session with frames only (no features, no estimate), so pages must show their plain notes;
S-003 has one session with a face in only 15% of its frames, so its features are flagged unreliable.
Features are computed from the seeded frames by fervideo.features, as after real processing. Every
session has a stretch without a face: 20 s to 30 s, or 18 s to the end for S-003.
"""

from __future__ import annotations

import datetime as dt
import os
import socket

import numpy as np
from sqlalchemy import insert

from fervideo.features import store_session_features
from fervideo.labels import CANONICAL_LABELS
from fervideo.store import (
    Frame,
    PhqHead,
    PhqLabel,
    PhqPrediction,
    SessionStatus,
    Subject,
    VideoSession,
    open_database,
)

SAMPLE_FPS = 5.0
GAP = (20.0, 30.0)
CLASSIFIER_SHA = "c" * 64
# As fervideo.phq stores them: per metric the value with its subject-bootstrap interval, model and baseline.
HEAD_METRICS = {
    "cv": "subject-kfold", "n_subjects": 40, "n_sessions": 120, "n_folds": 5,
    "model": {"mae": {"value": 3.1, "ci_low": 2.5, "ci_high": 3.8, "n_dropped": 0, "n_boot": 1000},
              "pearson_r": {"value": 0.52, "ci_low": 0.31, "ci_high": 0.68, "n_dropped": 3, "n_boot": 1000}},
    "mean_baseline": {"mae": {"value": 4.6, "ci_low": 4.0, "ci_high": 5.3, "n_dropped": 0, "n_boot": 1000},
                      "pearson_r": {"value": None, "ci_low": None, "ci_high": None, "n_dropped": 1000,
                                    "n_boot": 1000}},
}
UNRELIABLE_GAP = (18.0, float("inf"))
# (subject, session date, PHQ estimate, lower, upper, band, recorded total or None, features?, no-face span)
SESSIONS = [
    ("S-001", dt.datetime(2024, 1, 10, 9, 0), 14.2, 10.0, 18.4, "moderate", 15, True, GAP),
    ("S-001", dt.datetime(2024, 2, 14, 9, 0), 11.0, 7.1, 14.9, "moderate", 10, True, GAP),
    ("S-001", dt.datetime(2024, 3, 20, 9, 0), 7.5, 3.6, 11.4, "mild", 6, True, GAP),
    ("S-002", dt.datetime(2024, 2, 1, 14, 0), None, None, None, None, None, False, GAP),
    ("S-003", dt.datetime(2024, 2, 5, 11, 0), None, None, None, None, None, True, UNRELIABLE_GAP),
]


def frame_rows(session_id: int, duration_s: float, seed: int = 0, gap: tuple[float, float] = GAP) -> list[dict]:
    """Sadness leads in the first half, happiness in the second; no face inside `gap`."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SAMPLE_FPS)
    t = np.arange(n) / SAMPLE_FPS
    logits = rng.normal(0, 0.3, size=(n, len(CANONICAL_LABELS)))
    first_half = t < duration_s / 2
    logits[first_half, CANONICAL_LABELS.index("sadness")] += 2.0
    logits[~first_half, CANONICAL_LABELS.index("happiness")] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    face = ~((t >= gap[0]) & (t < gap[1]))
    rows = []
    for i in range(n):
        row = {"session_id": session_id, "frame_index": i * 6, "t": float(t[i]), "face_found": bool(face[i]),
               "face_score": 0.99 if face[i] else None}
        if face[i]:
            row |= {"x1": 100.0, "y1": 80.0, "x2": 220.0, "y2": 230.0}
            row |= {label: float(probs[i, j]) for j, label in enumerate(CANONICAL_LABELS)}
        rows.append(row)
    return rows


def seed_database(db_url: str, duration_s: float = 120.0, beats_baseline: bool = True) -> dict[str, int]:
    """Fill a new database; returns the ids the tests refer to. `beats_baseline=False` makes the head one
    that does not beat guessing the cohort mean, whose estimates must never be shown plainly."""
    factory = open_database(db_url)
    ids: dict[str, int] = {}
    with_features: list[int] = []
    with factory.begin() as db:
        head = PhqHead(name="phq8-video-v1", path="/heads/phq8", sha256="h" * 64, instrument="PHQ-8",
                       feature_source="video", classifier_name="vit-tiny-fer", classifier_sha256=CLASSIFIER_SHA,
                       n_subjects=40, n_sessions=120, metrics=HEAD_METRICS, beats_baseline=beats_baseline)
        db.add(head)
        db.flush()
        subjects: dict[str, Subject] = {}
        for number, (code, when, estimate, lower, upper, band, recorded, has_features, gap) in enumerate(SESSIONS):
            subject = subjects.get(code) or Subject(code=code)
            subjects[code] = subject
            n = int(duration_s * SAMPLE_FPS)
            rows = frame_rows(0, duration_s, seed=number, gap=gap)
            session = VideoSession(
                subject=subject, video_path=f"/videos/{code}_{number}.mp4", video_sha256=f"{number:064d}",
                recorded_at=when, duration_s=duration_s, video_fps=30.0, frame_count=n * 6, width=640, height=360,
                codec="h264", sample_fps=SAMPLE_FPS, settings_key="k" * 64, status=SessionStatus.DONE,
                started_at=when, finished_at=when, processing_s=12.0, sampled_frames=n,
                face_frames=sum(row["face_found"] for row in rows), package_version="0.1.0",
                classifier_name="vit-tiny-fer", classifier_sha256=CLASSIFIER_SHA, detector_name="retinaface",
                detector_params={"threshold": 0.8}, device="cpu")
            db.add(session)
            db.flush()
            ids[f"session{number}"] = session.id
            db.execute(insert(Frame), [row | {"session_id": session.id} for row in rows])
            if has_features:
                with_features.append(session.id)
            if estimate is not None:
                db.add(PhqPrediction(session_id=session.id, head_id=head.id, estimate=estimate, lower=lower,
                                     upper=upper, coverage=0.9, band=band, n_imputed=0, n_features=40,
                                     in_sample=False, out_of_fold=False))
            if recorded is not None:
                db.add(PhqLabel(subject_id=subject.id, session_id=session.id, instrument="PHQ-8", total=recorded,
                                administered_at=when))
        db.flush()
        ids["head"] = head.id
        ids |= {code: subject.id for code, subject in subjects.items()}
    for session_id in with_features:  # as the pipeline does after processing
        store_session_features(factory, session_id, recompute=True)
    factory.kw["bind"].dispose()
    return ids


# ------------------------------------------------------------------------------- the unhappy database
# Subject codes a hostile or clumsy user could enter: each passes fervideo.subjects' validator, so each
# must be shown as data (escaped for Markdown, HTML and CSV), never as markup or a formula.
HOSTILE_IMAGE = "![leak](http://host/x.png)"
HOSTILE_HTML = "<img src=x onerror=alert(1)>"
HOSTILE_FORMULA = '=HYPERLINK("http://host/x","click")'
HOSTILE_MARKUP = "**bold** _it_ `code` [link](javascript:alert(1)) | pipe $x$ :red[red]"
HOSTILE_CODES = (HOSTILE_IMAGE, HOSTILE_HTML, HOSTILE_FORMULA, HOSTILE_MARKUP)
FAILED_ERROR = "could not decode ![e](http://host/e.png) <b>frame</b> 12"
# (key, subject, recorded_at, status, source, no-face span or None for no frames, features?, warnings)
UNHAPPY_SESSIONS = [
    ("undated", HOSTILE_IMAGE, None, "done", "video", GAP, True, []),
    ("full_coverage", HOSTILE_IMAGE, dt.datetime(2024, 4, 2, 10, 0), "done", "video", (0.0, 0.0), True, []),
    ("failed", HOSTILE_HTML, dt.datetime(2024, 4, 3, 10, 0), "failed", "video", None, False, []),
    ("interrupted", HOSTILE_HTML, None, "interrupted", "video", GAP, False, []),
    ("running", HOSTILE_FORMULA, None, "running", "video", GAP, False, []),
    ("unreliable", HOSTILE_FORMULA, None, "done", "video", UNRELIABLE_GAP, True, []),
    ("openface", HOSTILE_MARKUP, dt.datetime(2024, 4, 5, 10, 0), "done", "openface", GAP, True, []),
    ("incomplete", HOSTILE_MARKUP, dt.datetime(2024, 4, 6, 10, 0), "done", "video", GAP, True,
     ["decode_incomplete"]),
]


def _set_if_column(session: VideoSession, **values) -> None:
    """Columns other engineers add (warnings, frames planned/decoded) are set only once they exist."""
    for name, value in values.items():
        if name in VideoSession.__table__.columns:
            setattr(session, name, value)


def seed_unhappy_database(db_url: str, duration_s: float = 60.0) -> dict[str, int]:
    """Undated, failed, interrupted, still-running, unreliable, OpenFace and decode-incomplete sessions of
    subjects with hostile codes, and no PHQ head at all. Returns session ids by key, subject ids by code."""
    factory = open_database(db_url)
    ids: dict[str, int] = {}
    with_features: list[int] = []
    with factory.begin() as db:
        subjects: dict[str, Subject] = {}
        for number, (key, code, when, status, source, gap, has_features, warnings) in enumerate(UNHAPPY_SESSIONS):
            subject = subjects.setdefault(code, Subject(code=code))
            rows = frame_rows(0, duration_s, seed=100 + number, gap=gap) if gap is not None else []
            if status in ("interrupted", "running"):
                rows = rows[: len(rows) // 2]  # stopped half-way
            openface = source == "openface"
            session = VideoSession(
                subject=subject, source=source, video_path=f"/videos/{number}.mp4", video_sha256=f"{number + 50:064d}",
                recorded_at=when, duration_s=duration_s if status != "failed" else None, video_fps=30.0,
                frame_count=int(duration_s * 30), width=640, height=360, codec="h264", sample_fps=SAMPLE_FPS,
                settings_key="u" * 64, status=status, error=FAILED_ERROR if status == "failed" else None,
                started_at=when, finished_at=when if status in ("done", "failed") else None, processing_s=3.0,
                sampled_frames=len(rows) or None, face_frames=sum(row["face_found"] for row in rows) if rows else None,
                package_version="0.1.0", classifier_name="openface-au-rules" if openface else "vit-tiny-fer",
                classifier_sha256=("o" if openface else "c") * 64,
                detector_name="openface" if openface else "retinaface", detector_params={}, device="cpu")
            planned = int(duration_s * SAMPLE_FPS)
            _set_if_column(session, warnings=warnings, frames_planned=planned,
                           frames_decoded=planned * 9 // 10 if warnings else planned)
            if status == "running":  # a live lease: this very process, beating now
                _set_if_column(session, lease_host=socket.gethostname()[:255], lease_pid=os.getpid(),
                               heartbeat_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
            db.add(session)
            db.flush()
            ids[key] = session.id
            if rows:
                db.execute(insert(Frame), [row | {"session_id": session.id} for row in rows])
            if has_features:
                with_features.append(session.id)
        db.flush()
        ids |= {code: subject.id for code, subject in subjects.items()}
    for session_id in with_features:
        store_session_features(factory, session_id, recompute=True)
    factory.kw["bind"].dispose()
    return ids
