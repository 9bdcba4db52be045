"""The bad-video corpus (issue 12): every case generated here, run through the real `fervideo process`.

Each case asserts the exit code, what stderr says (one `error:` line and nothing else, no traceback, no
decoder noise) and the database afterwards: nothing written for a refused file; for a file processed
despite damage, a `done` session whose frames match what was decoded and whose warnings say what was lost.
All cases share one database (as a user's would) and use small frames and the bundled baseline model.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from synthetic_media import (
    audio_only_file,
    damaged_copy,
    faststart_noise_video,
    pattern_video,
    rotated_video,
    write_video,
)

from fervideo.cli import run
from fervideo.store import Frame, SessionStatus, VideoSession, open_database
from fervideo.video import MIN_FRAME_SIDE

MODEL = ["--model", "mini-xception-fer2013"]


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


def _av1(path: Path) -> Path:
    try:
        return pattern_video(path, n_frames=3, width=64, height=64, codec="libsvtav1",
                             options={"svtav1-params": "log-level=0"})
    except Exception as exc:  # the encoder is optional in PyAV builds
        pytest.skip(f"no AV1 encoder here: {exc}")


def _unreadable(path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads any file: permissions cannot be tested as root")
    pattern_video(path, n_frames=3)
    path.chmod(0)
    return path


def _late_index_cut(path: Path) -> Path:
    # The index (moov) is written at the end by default: a file cut short has none at all.
    source = pattern_video(path.with_name("late_full.mp4"), n_frames=30)
    return damaged_copy(source, path, keep_fraction=0.5)


def _faststart_damaged(**damage) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        return damaged_copy(faststart_noise_video(path.with_name(f"{path.stem}_src.mp4")), path, **damage)

    return make


# case -> (how to make it, expected exit code, what the one error line says)
REFUSED = {
    "missing file": (lambda p: p, 2, "no such file"),
    "directory without videos": (lambda p: (p.mkdir(), p)[1], 2, "is a folder with no video files"),
    "zero bytes": (_bytes(b""), 2, "the file is empty (0 bytes)"),
    "text named .mp4": (_bytes(b"session notes\n" * 200), 2, "cannot be decoded as a video"),
    "text named .txt": (_bytes(b"session notes\n" * 200), 2, "a text file, not a video"),
    "random bytes": (_bytes(np.random.default_rng(0).integers(0, 255, 30_000, dtype=np.uint8).tobytes()), 2,
                     "cannot be decoded as a video"),
    "truncated 50 %, index at the end": (_late_index_cut, 2, "cannot be decoded as a video"),
    "1x1 frames": (lambda p: pattern_video(p, n_frames=3, width=1, height=1, pix_fmt="yuv444p"), 2,
                   f"too small for face detection; the minimum is {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}"),
    "16x16 frames": (lambda p: pattern_video(p, n_frames=3, width=16, height=16, pix_fmt="yuv444p"), 2,
                     "frames are 16x16 pixels, too small for face detection"),
    "audio only": (audio_only_file, 2, "no video stream"),
    "unreadable permissions": (_unreadable, 2, "not readable"),
}
SUFFIX = {"text named .txt": ".txt", "audio only": ".m4a", "directory without videos": ""}

# case -> (how to make it, decode_incomplete expected)
PROCESSED = {
    "truncated 90 %, index at the start": (_faststart_damaged(keep_fraction=0.9), True),
    "truncated 50 %, index at the start (salvaged)": (_faststart_damaged(keep_fraction=0.5), True),
    "corrupt middle": (_faststart_damaged(corrupt_at=0.5), None),  # None: decoded past it, maybe a frame lost
    "one frame": (lambda p: pattern_video(p, n_frames=1, width=96, height=96), False),
    "variable frame rate": (lambda p: pattern_video(p, n_frames=40, width=96, height=96,
                                                    timestamps_s=[i / 30 for i in range(30)]
                                                    + [1 + i / 10 for i in range(10)]), False),
    "rotated 90 (phone)": (lambda p: rotated_video(p, 90, n_frames=10), False),
}


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'corpus.sqlite'}"


def _slug(case: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in case).strip("_")


def _process(capfd, video: Path, subject: str, db_url: str) -> tuple[int, str, str]:
    capfd.readouterr()  # drop what making the media printed (encoders)
    code = run(["process", str(video), "--subject", subject, "--db", db_url, *MODEL])
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def _assert_database_consistent(db_url: str) -> None:
    """No session left running; a failed session keeps no frames; a done one has exactly its decoded frames."""
    with open_database(db_url)() as db:
        for session in db.scalars(select(VideoSession)):
            stored = db.scalar(select(func.count()).select_from(Frame).where(Frame.session_id == session.id))
            assert session.status != SessionStatus.RUNNING, session.video_path
            if session.status == SessionStatus.DONE:
                assert stored == session.sampled_frames == session.frames_decoded > 0
                assert session.frames_decoded <= session.frames_planned
            else:
                assert stored == 0


def _sessions_of(db_url: str, video: Path) -> list[VideoSession]:
    with open_database(db_url)() as db:
        return list(db.scalars(select(VideoSession).where(VideoSession.video_path == str(video.resolve()))))


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_video_is_one_line_exit_2_and_writes_nothing(tmp_path, capfd, shared_db, case):
    make, exit_code, message = REFUSED[case]
    video = make(tmp_path / f"{_slug(case)}{SUFFIX.get(case, '.mp4')}")
    code, out, err = _process(capfd, video, "BAD01", shared_db)
    assert code == exit_code, err
    # One line, and only it: the file is checked before any network loads (no "emotion model:" line),
    # and the decoders' own complaints are silenced.
    assert err.count("\n") == 1 and err.startswith("error:") and message in err, err
    assert "Traceback" not in err and out == ""
    assert _sessions_of(shared_db, video) == []
    _assert_database_consistent(shared_db)


def test_av1_is_processed_where_opencv_decodes_it_and_refused_by_name_where_not(tmp_path, capfd, shared_db,
                                                                               monkeypatch):
    from fervideo.video_container import read_first_frame

    video = _av1(tmp_path / "av1.mp4")
    if read_first_frame(video) is not None:
        code, _, err = _process(capfd, video, "AV101", shared_db)
        assert code == 0, err
        assert f"warning: {video.name}: fallback_decoder: decord cannot decode AV1" in err
        [session] = _sessions_of(shared_db, video)
        assert session.status == SessionStatus.DONE and session.frames_decoded == session.frames_planned == 1
    refused = video.with_name("av1_refused.mp4")
    shutil.copy(video, refused)
    monkeypatch.setattr("fervideo.video_probe.read_first_frame", lambda _path: None)  # an OpenCV without dav1d
    code, out, err = _process(capfd, refused, "AV102", shared_db)
    assert code == 2 and err.count("\n") == 1 and "error:" in err and "unsupported codec AV1" in err, err
    assert out == "" and _sessions_of(shared_db, refused) == []
    _assert_database_consistent(shared_db)


@pytest.fixture(scope="module")
def processed_batch(tmp_path_factory, shared_db):
    """Every PROCESSED case, plus the real clip upright and as a phone's 90-degree file, in one batch run
    (`fervideo process A B ...`): the networks load once, as in a study's batch."""
    import av
    from conftest import DATA

    folder = tmp_path_factory.mktemp("processed")
    videos = {case: make(folder / f"{_slug(case)}.mp4") for case, (make, _) in PROCESSED.items()}
    videos["real clip upright"] = upright = Path(shutil.copy(DATA / "single_face.mp4", folder / "upright.mp4"))
    with av.open(str(upright)) as container:
        stored = [np.ascontiguousarray(np.rot90(f.to_ndarray(format="rgb24"), k=1)) for f in container.decode(video=0)]
    videos["real clip rotated 90"] = write_video(folder / "phone.mp4", stored, display_rotation=90)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run(["process", *map(str, videos.values()), "--subject", "ODD01", "--db", shared_db, *MODEL])
    return code, out.getvalue(), err.getvalue(), videos


def test_batch_of_damaged_and_odd_videos_succeeds(processed_batch, shared_db):
    code, out, err, videos = processed_batch
    assert code == 0, err
    assert "Traceback" not in err and f"{len(videos)} done" in " ".join(out.split())
    _assert_database_consistent(shared_db)


@pytest.mark.parametrize("case", list(PROCESSED))
def test_damaged_or_odd_video_is_processed_with_its_losses_recorded(processed_batch, shared_db, case):
    _, _, err, videos = processed_batch
    video, incomplete = videos[case], PROCESSED[case][1]
    [session] = _sessions_of(shared_db, video)
    assert session.status == SessionStatus.DONE
    warned = any(w.startswith("decode_incomplete:") for w in session.warnings)
    lost = session.frames_decoded < session.frames_planned
    assert warned == lost  # a loss is always said, and only a loss
    if incomplete is not None:
        assert lost == incomplete
    if lost:
        note = f"decode_incomplete: {session.frames_decoded} of {session.frames_planned} planned frames decoded"
        assert note in session.warnings and f"warning: {video.name}: {note}" in err
    if case.startswith("rotated"):
        assert (session.width, session.height, session.rotation) == (96, 128, 90)  # as displayed


def test_rotated_real_face_reads_like_the_upright_original(processed_batch, shared_db):
    """Issue 12.1 end to end: a phone's 90-degree file of the real clip gives the clip's faces and emotions.
    Turned a second time, the face was found sideways, in swapped coordinates, and read differently."""
    videos = processed_batch[3]
    results = {}
    for name in ("real clip upright", "real clip rotated 90"):
        [session] = _sessions_of(shared_db, videos[name])
        with open_database(shared_db)() as db:
            found = db.scalars(select(Frame).where(Frame.session_id == session.id, Frame.face_found)).all()
        boxes = np.array([[f.x1, f.y1, f.x2, f.y2] for f in found])
        results[name] = (session, boxes, np.array([[f.happiness, f.neutral, f.sadness] for f in found]))
    (upright, upright_boxes, upright_probs), (turned, turned_boxes, turned_probs) = results.values()
    assert (turned.width, turned.height, turned.rotation) == (upright.width, upright.height, 90) == (640, 360, 90)
    assert len(upright_probs) >= 10 and len(turned_probs) == len(upright_probs)
    assert np.abs(np.median(turned_boxes - upright_boxes, axis=0)).max() < 8  # the same place, in pixels
    assert np.abs(turned_probs.mean(axis=0) - upright_probs.mean(axis=0)).max() < 0.1


def test_single_truncated_video_warns_quietly_and_sessions_shows_it(tmp_path, capfd, shared_db, monkeypatch):
    from fervideo.cli.app import console

    video = _faststart_damaged(keep_fraction=0.5)(tmp_path / "cut50.mp4")  # salvaged front to back
    code, _, err = _process(capfd, video, "ODD02", shared_db)
    [session] = _sessions_of(shared_db, video)
    note = f"decode_incomplete: {session.frames_decoded} of {session.frames_planned} planned frames decoded"
    assert code == 0 and session.frames_decoded < session.frames_planned
    assert f"warning: cut50.mp4: {note}" in err
    # No decoder noise ("[h264 @ ...] partial file", "Invalid NAL unit size") around the warning.
    assert all(line.startswith(("emotion model:", "warning:")) for line in err.splitlines() if line.strip()), err
    code, _, err = _process(capfd, video, "ODD02", shared_db)  # skipped as already processed: still said
    assert code == 0 and f"warning: cut50.mp4: {note}" in err
    monkeypatch.setattr(console, "width", 250)  # the status column folds on a narrow terminal
    assert run(["sessions", "--subject", "ODD02", "--db", shared_db]) == 0
    listed = capfd.readouterr().out
    assert "done; fallback_decoder: " in listed and f"; {note}" in listed
    _assert_database_consistent(shared_db)
