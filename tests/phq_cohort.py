"""A synthetic labelled cohort stored through the ORM: subjects, sessions and session_features rows."""

from __future__ import annotations

import numpy as np

from fervideo.features import FEATURE_DEFINITIONS, FEATURE_VERSION
from fervideo.phq import HEAD_FEATURE_GROUPS
from fervideo.store import PhqLabel, SessionFeatures, SessionStatus, Subject, VideoSession

CLASSIFIER = ("vit-tiny-test", "a" * 64)
PLANTED = ("mean_sadness", "mean_happiness", "valence_inertia")


def add_session(db, subject: Subject, values: dict, reliable: bool = True, classifier=CLASSIFIER,
                source: str = "video", sample_fps: float = 5.0, feature_version: str = FEATURE_VERSION,
                detector_params: dict | None = None) -> VideoSession:
    session = VideoSession(
        subject_id=subject.id, source=source, video_path=f"/v/{subject.code}.mp4", video_sha256="0" * 64,
        sample_fps=sample_fps, settings_key="k", status=SessionStatus.DONE, package_version="test",
        classifier_name=classifier[0], classifier_sha256=classifier[1], detector_name="test",
        detector_params=detector_params or {}, sampled_frames=300, face_frames=300 if reliable else 10,
    )
    db.add(session)
    db.flush()
    db.add(SessionFeatures(session_id=session.id, feature_version=feature_version, reliable=reliable,
                           reliability_notes=[] if reliable else ["only 10 frames with a face (at least 30 needed)"],
                           values=values, transition_matrix=None))
    return session


def feature_names() -> list[str]:
    return [n for n, d in FEATURE_DEFINITIONS.items() if d.group in HEAD_FEATURE_GROUPS]


def make_cohort(db_factory, n_subjects: int = 64, seed: int = 0, noise: float = 2.0, classifier=CLASSIFIER,
                source: str = "video", extra_features: tuple[str, ...] = (), signal: float = 1.0,
                **session_kwargs) -> dict[str, float]:
    """PHQ-8 = 10 + signal x (6 z(sadness) - 4 z(happiness) + 2 z(inertia)) + noise (clipped 0..24); one label
    per subject. signal=0 gives labels the features cannot predict (a head that should not beat the mean)."""
    rng = np.random.default_rng(seed)
    names = feature_names() + list(extra_features)
    truths = {}
    with db_factory.begin() as db:
        for s in range(n_subjects):
            subject = Subject(code=f"S{s:03d}")
            db.add(subject)
            db.flush()
            trait = rng.normal(size=len(PLANTED))
            score = 10 + signal * (6 * trait[0] - 4 * trait[1] + 2 * trait[2]) + rng.normal(scale=noise)
            total = int(np.clip(round(score), 0, 24))
            truths[subject.code] = total
            db.add(PhqLabel(subject_id=subject.id, instrument="PHQ-8", total=total))
            subject_noise = rng.normal(size=len(names))
            for _ in range(rng.integers(2, 5)):
                values = dict(zip(names, (subject_noise + rng.normal(scale=0.5, size=len(names))).tolist(),
                                  strict=True))
                for k, name in enumerate(PLANTED):
                    values[name] = float(trait[k] + rng.normal(scale=0.3))
                add_session(db, subject, values, classifier=classifier, source=source, **session_kwargs)
    return truths
