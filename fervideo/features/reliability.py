"""When a session's features can be vouched for: enough seconds of face, coverage, and usable timestamps."""

from __future__ import annotations

MIN_FACE_SECONDS = 10.0  # less face than this (s): unreliable, whatever the sampling rate
MIN_FACE_COVERAGE = 0.20  # a smaller face-found fraction than this: unreliable


def reliability(face_seconds: float, face_fraction: float, timestamp_problem: str | None) -> tuple[bool, list[str]]:
    """(reliable, reasons it is not): all three rules apply to every session."""
    notes = []
    if timestamp_problem:
        notes.append(f"{timestamp_problem}; the session's time base is unusable")
    if not face_seconds >= MIN_FACE_SECONDS:  # also catches NaN
        notes.append(f"only {face_seconds:.1f} s of face (at least {MIN_FACE_SECONDS:g} s needed)")
    if face_fraction < MIN_FACE_COVERAGE:
        notes.append(f"a face in only {face_fraction:.0%} of sampled frames (at least {MIN_FACE_COVERAGE:.0%} needed)")
    return not notes, notes
