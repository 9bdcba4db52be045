"""Export speed; prints a table.

    .venv/bin/python benchmarks/bench_export.py [--sessions 1000] [--hours 1.0] [--fps 5] [--repeat 3]

Seeds a temporary SQLite database with --sessions finished sessions, each with a session_features
row (the real feature set when fervideo.features declares it, else 60 synthetic features), a PHQ
prediction and a recorded PHQ label, plus one --hours session sampled at --fps (18,000 frames for
one hour at 5 fps) with a synthetic timeline and face-missing gaps. Then times, best of --repeat:
the cohort table query, its CSV and Parquet export, and the HTML and PDF report of the long session
(reading its frames included). Seeding is not timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from fervideo.export import export_sessions, frames_table, render_report_html, render_report_pdf, session_summary
from fervideo.export.summary import feature_definitions
from fervideo.labels import CANONICAL_LABELS
from fervideo.store import (
    Frame,
    PhqHead,
    PhqLabel,
    PhqPrediction,
    SessionFeatures,
    Subject,
    VideoSession,
    open_database,
)

SHA = "c" * 64


def _session_row(index: int, subject_id: int, duration_s: float, fps: float, frames: int) -> dict:
    return dict(
        id=index, subject_id=subject_id, video_path=f"/v/{index}.mp4", video_sha256=f"{index:064x}",
        recorded_at=dt.datetime(2024, 1, 1) + dt.timedelta(days=index % 365), duration_s=duration_s,
        sample_fps=fps, settings_key="k" * 64, status="done", sampled_frames=frames, face_frames=int(frames * 0.9),
        finished_at=dt.datetime(2024, 6, 1), package_version="0.1.0", classifier_name="vit-tiny-fer",
        classifier_sha256=SHA, detector_name="retinaface", detector_params={}, device="cpu",
    )


def seed(url: str, n_sessions: int, hours: float, fps: float):
    factory = open_database(url)
    rng = np.random.default_rng(0)
    names = list(feature_definitions()) or [f"feature_{i:02d}" for i in range(60)]
    n_frames = int(hours * 3600 * fps)
    with factory.begin() as db:
        db.execute(insert(Subject), [{"id": i, "code": f"S{i:04d}"} for i in range(1, n_sessions // 3 + 2)])
        rows = [_session_row(i, 1 + i // 3, 600.0, fps, 3000) for i in range(1, n_sessions + 1)]
        rows.append(_session_row(n_sessions + 1, 1, hours * 3600, fps, n_frames))
        db.execute(insert(VideoSession), rows)
        db.execute(insert(SessionFeatures), [
            {"session_id": i, "feature_version": "1", "reliable": bool(i % 7), "reliability_notes": [],
             "values": dict(zip(names, rng.random(len(names)).round(6).tolist(), strict=True)),
             "transition_matrix": [[1 / 7] * 7] * 7} for i in range(1, n_sessions + 2)])
        db.execute(insert(PhqHead), [{"id": 1, "name": "bench-head", "path": "/h", "sha256": SHA, "instrument": "PHQ-8",
                                      "feature_source": "video", "classifier_name": "vit-tiny-fer",
                                      "classifier_sha256": SHA, "n_subjects": 100, "n_sessions": 300, "metrics": {}}])
        estimates = rng.uniform(2, 20, n_sessions + 1)
        db.execute(insert(PhqPrediction), [
            {"session_id": i + 1, "head_id": 1, "estimate": e, "lower": max(0, e - 5), "upper": e + 5,
             "coverage": 0.9, "band": "moderate"} for i, e in enumerate(estimates)])
        db.execute(insert(PhqLabel), [
            {"subject_id": 1 + i // 3, "session_id": i, "instrument": "PHQ-8", "total": i % 24}
            for i in range(1, n_sessions + 1, 2)])
        db.execute(insert(Frame), _long_timeline(n_sessions + 1, n_frames, fps, rng))
    return factory, list(range(1, n_sessions + 1)), n_sessions + 1


def _long_timeline(session_id: int, n_frames: int, fps: float, rng: np.random.Generator) -> list[dict]:
    probs = rng.dirichlet(np.ones(len(CANONICAL_LABELS)), size=n_frames)
    face = rng.random(n_frames) > 0.02
    for start in rng.integers(0, n_frames - 100, size=40):  # 40 gaps of 4-20 s
        face[start:start + rng.integers(20, 100)] = False
    rows = []
    for i in range(n_frames):
        row = {"session_id": session_id, "frame_index": i, "t": i / fps, "face_found": bool(face[i])}
        row.update(dict(zip(CANONICAL_LABELS, probs[i].tolist(), strict=True)) if face[i]
                   else dict.fromkeys(CANONICAL_LABELS))
        rows.append(row)
    return rows


def best_of(repeat: int, action) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        start = time.perf_counter()
        factory, cohort_ids, long_id = seed(f"sqlite:///{root / 'bench.sqlite'}", args.sessions, args.hours, args.fps)
        print(f"seeded {args.sessions} sessions + one {args.hours:g} h session in {time.perf_counter() - start:.1f} s")

        def export(fmt: str, ids: list[int], frames: bool = False) -> None:
            export_sessions(factory, ids, fmt, root / "out", force=True, frames=frames)

        def report(fmt: str) -> None:
            frames = frames_table(factory, long_id)
            summary = session_summary(factory, long_id, frames=frames)
            (render_report_html if fmt == "html" else render_report_pdf)(summary, frames)

        from fervideo.export import cohort_table

        n_frames = int(args.hours * 3600 * args.fps)
        cases = [
            (f"cohort table query, {args.sessions} sessions", lambda: cohort_table(factory, session_ids=cohort_ids)),
            (f"cohort CSV export, {args.sessions} sessions", lambda: export("csv", cohort_ids)),
            (f"cohort Parquet export, {args.sessions} sessions", lambda: export("parquet", cohort_ids)),
            (f"frames read + summary, {n_frames} frames",
             lambda: session_summary(factory, long_id, frames=frames_table(factory, long_id))),
            (f"HTML report, {n_frames} frames (render only)", lambda: report("html")),
            (f"PDF report, {n_frames} frames (render only)", lambda: report("pdf")),
            (f"HTML report file via export_sessions, {n_frames} frames", lambda: export("html", [long_id])),
            (f"PDF report file via export_sessions, {n_frames} frames", lambda: export("pdf", [long_id])),
            (f"per-frame Parquet, {n_frames} frames", lambda: export("parquet", [long_id], frames=True)),
        ]
        print(f"\n{'what':<58} {'best of ' + str(args.repeat):>12}")
        print("-" * 71)
        for name, action in cases:
            print(f"{name:<58} {best_of(args.repeat, action):>10.2f} s", flush=True)


if __name__ == "__main__":
    main()
