"""The pipeline and CLI end to end on real footage, into a temporary SQLite, plus every bad input."""

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sqlalchemy import func, select, text
from synthetic_media import pattern_video

from fervideo import process_video
from fervideo.cli import main
from fervideo.emotion import ViTTinyFER
from fervideo.labels import CANONICAL_LABELS
from fervideo.pipeline import SessionProcessor
from fervideo.store import FRAME_QUALITY_COLUMNS, Frame, SessionStatus, VideoSession, frame_table, open_database


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `fervideo ARGS` in-process and return (exit code, stdout, stderr)."""
    old_argv = sys.argv
    sys.argv = ["fervideo", *args]
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code or 0
    finally:
        sys.argv = old_argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def count_sessions(db_url: str) -> int:
    with open_database(db_url)() as db:
        return db.scalar(select(func.count()).select_from(VideoSession))


def test_cli_process_real_clip_stores_a_complete_provenanced_session(capsys, real_clip, db_url):
    code, out, err = run_cli(capsys, "process", str(real_clip), "--subject", "S001", "--db", db_url,
                             "--recorded-at", "2026-03-04")
    assert code == 0, err
    assert "face found" in out and "dominant emotion" in out
    assert "mini-xception-fer2013" in err  # the model used is said loudly

    with open_database(db_url)() as db:
        session = db.scalars(select(VideoSession)).one()
        frames = db.scalars(select(Frame).where(Frame.session_id == session.id).order_by(Frame.frame_index)).all()
        assert session.status == SessionStatus.DONE and session.error is None
        assert session.subject.code == "S001" and session.recorded_at.year == 2026
        assert (session.width, session.height, session.codec) == (640, 360, "h264")
        assert session.sample_fps == 5.0 and session.sampled_frames == len(frames) == 12
        assert session.package_version and session.classifier_name == "mini-xception-fer2013"
        assert len(session.classifier_sha256) == 64 and session.detector_name
        assert session.detector_params["detect_size"] > 0 and len(session.video_sha256) == 64
    times = np.array([f.t for f in frames])
    assert np.all(np.diff(times) > 0)
    found = [f for f in frames if f.face_found]
    assert len(found) >= 0.9 * len(frames)
    for frame in found:
        probs = [getattr(frame, label) for label in CANONICAL_LABELS]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert frame.x1 < frame.x2 and frame.y1 < frame.y2 and frame.face_score > 0.6


def test_same_file_is_skipped_unless_forced(capsys, real_clip, any_db_url):
    assert run_cli(capsys, "process", str(real_clip), "-s", "S1", "--db", any_db_url)[0] == 0
    code, out, _ = run_cli(capsys, "process", str(real_clip), "-s", "S1", "--db", any_db_url)
    assert code == 0 and "already processed" in out and count_sessions(any_db_url) == 1
    code, out, _ = run_cli(capsys, "process", str(real_clip), "-s", "S1", "--db", any_db_url, "--force")
    assert code == 0 and "already processed" not in out
    with open_database(any_db_url)() as db:
        ids = db.scalars(select(VideoSession.id)).all()
    assert ids == [2]  # the forced run replaced the first one, after it had succeeded


def test_library_api_returns_frame_table_and_session_id(real_clip, db_url):
    frames, session_id = process_video(real_clip, "S2", fps=2, db=db_url)
    assert session_id == 1
    assert list(frames.columns[:8]) == ["frame_index", "t", "face_found", "face_score", "x1", "y1", "x2", "y2"]
    assert list(frames.columns[8:]) == list(CANONICAL_LABELS)
    assert len(frames) == 5 and frames["face_found"].all()


def test_frames_without_a_face_are_recorded_not_dropped(tmp_path, db_url):
    video = pattern_video(tmp_path / "blank.mkv", n_frames=30, width=160, height=120)
    frames, session_id = process_video(video, "S3", fps=0, db=db_url)
    assert len(frames) == 30 and not frames["face_found"].any()
    assert frames[list(CANONICAL_LABELS)].isna().all().all()
    with open_database(db_url)() as db:
        session = db.get(VideoSession, session_id)
        assert session.status == SessionStatus.DONE and session.face_frames == 0


def test_stored_rows_are_the_returned_rows_with_null_where_no_face(tmp_path, real_clip, db_url):
    """The rows are written per chunk from plain arrays (pandas loads after the last chunk): what the
    database holds must be exactly the returned table, NaN stored as NULL, quality columns included."""
    processor = SessionProcessor(db_url=db_url, sample_fps=10)
    processor.chunk_size = 8  # several chunks
    blank = pattern_video(tmp_path / "blank.mkv", n_frames=20, width=160, height=120)
    for video in (blank, real_clip):
        result = processor.process(video, "S5")
        with open_database(db_url)() as db:
            stored = frame_table(db, result.session_id, with_quality=True)
            nulls = db.scalar(select(func.count()).select_from(Frame).where(
                Frame.session_id == result.session_id, Frame.face_found.is_(False), Frame.happiness.is_(None),
                Frame.x1.is_(None)))
        returned = result.frames.astype({c: "float64" for c in result.frames if result.frames[c].dtype.kind == "f"})
        pd.testing.assert_frame_equal(stored.drop(columns=list(FRAME_QUALITY_COLUMNS)), returned, check_exact=True)
        assert nulls == int((~result.frames["face_found"]).sum())
        with_face = int(result.frames["face_found"].sum())
        assert stored[list(FRAME_QUALITY_COLUMNS)].notna().sum().tolist() == [with_face] * 3


def test_an_empty_frame_table_has_the_columns_and_types_of_a_full_one():
    from fervideo.pipeline import FRAME_ROW_COLUMNS, frames_table

    empty = frames_table([])
    assert list(empty.columns) == list(FRAME_ROW_COLUMNS) and len(empty) == 0
    assert (empty["frame_index"].dtype, empty["face_found"].dtype, empty["t"].dtype) == (np.int64, bool, np.float64)


def test_seed_layout_checkpoint_runs_through_the_pipeline(tmp_path, real_clip, db_url):
    torch.manual_seed(0)
    checkpoint = tmp_path / "final_model.pth"
    torch.save(ViTTinyFER().state_dict(), checkpoint)
    frames, session_id = process_video(real_clip, "S4", fps=2, model=str(checkpoint), db=db_url, batch_size=4)
    probs = frames.loc[frames["face_found"], list(CANONICAL_LABELS)].to_numpy()
    assert probs.shape == (5, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    with open_database(db_url)() as db:
        assert db.get(VideoSession, session_id).classifier_name == "final_model"


def test_failure_midway_marks_session_failed_and_keeps_no_frames(real_clip, any_db_url, monkeypatch):
    processor = SessionProcessor(db_url=any_db_url, sample_fps=10)
    processor.chunk_size = 8
    calls = {"n": 0}
    real_predict = processor.classifier.predict

    def failing_predict(crops):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in the classifier")
        return real_predict(crops)

    monkeypatch.setattr(processor.classifier, "predict", failing_predict)
    with pytest.raises(RuntimeError, match="simulated"):
        processor.process(real_clip, "S5")
    with open_database(any_db_url)() as db:
        session = db.scalars(select(VideoSession)).one()
        assert session.status == SessionStatus.FAILED and "simulated crash" in session.error
        assert db.scalar(select(func.count()).select_from(Frame)) == 0


def test_locked_database_is_a_one_line_error(real_clip, db_url, monkeypatch, capsys):
    import fervideo.store.engine as engine_module

    open_database(db_url)  # create it
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    blocker = open_database(db_url)().connection()
    blocker.execute(text("BEGIN EXCLUSIVE"))
    try:
        code, _, err = run_cli(capsys, "process", str(real_clip), "-s", "S6", "--db", db_url)
    finally:
        blocker.rollback()
    assert code != 0 and "lock" in err and "Traceback" not in err


def _bad_input_cases(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 100)
    good = pattern_video(tmp_path / "g.mp4", n_frames=60, width=160, height=120,
                         container_options={"movflags": "faststart"})
    (tmp_path / "cut.mp4").write_bytes(good.read_bytes()[:200])
    mismatched = tmp_path / "eight_classes.pth"
    torch.save(ViTTinyFER(num_classes=8).state_dict(), mismatched)
    ok = str(tmp_path / "g.mp4")
    empty_folder = tmp_path / "no_videos"
    empty_folder.mkdir()
    return {
        "missing file": ([str(tmp_path / "nope.mp4")], "no such file"),
        "folder without videos": ([str(empty_folder)], "no video files"),
        "zero-length": ([str(tmp_path / "empty.mp4")], "empty"),
        "not a video": ([str(tmp_path / "text.mp4")], "cannot be decoded"),
        "no decodable frames": ([str(tmp_path / "cut.mp4")], "cannot be decoded"),
        "unknown model": ([ok, "--model", "no-such-model"], "no-such-model"),
        "mismatched checkpoint": ([ok, "--model", str(mismatched)], "eight_classes.pth"),
        "hub unreachable offline": ([ok, "--model", "vit-tiny-fer"], "vit-tiny-fer"),
        "negative fps": ([ok, "--fps", "-1"], "--fps"),
    }


@pytest.mark.parametrize(
    "case", ["missing file", "folder without videos", "zero-length", "not a video", "no decodable frames",
             "unknown model", "mismatched checkpoint", "hub unreachable offline", "negative fps"],
)
def test_bad_input_one_line_error_nonzero_exit_nothing_written(capsys, tmp_path, db_url, case):
    args, message = _bad_input_cases(tmp_path)[case]
    code, out, err = run_cli(capsys, "process", *args, "--subject", "S9", "--db", db_url)
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in err, err
    assert "Traceback" not in err
    assert count_sessions(db_url) == 0


def test_unopenable_database_url_is_one_line_error(capsys, real_clip, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "process", str(real_clip), "-s", "S", "--db", f"sqlite:///{tmp_path}/file/db")
    assert code == 4 and err.startswith("error:") and "Traceback" not in err


def test_sessions_and_models_commands(capsys, real_clip, db_url):
    process_video(real_clip, "S7", fps=1, db=db_url)
    code, out, _ = run_cli(capsys, "sessions", "--db", db_url)
    assert code == 0 and "S7" in out and "done" in out
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "mini-xception-fer2013" in out and "vit-tiny-fer" in out


def test_db_upgrade_command(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert code == 0 and "database at" in out


def test_real_clip_copy_is_small():
    # tests/data holds only small files.
    from conftest import DATA

    assert all(p.stat().st_size < 1_000_000 for p in DATA.iterdir())
