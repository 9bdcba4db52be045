"""What the command-line tests share: run `fervideo` in-process or as the installed console script,
snapshot a database, assert the one-line error convention, write session rows directly."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from fervideo.cli import run
from fervideo.store import Subject, VideoSession, open_database

FERVIDEO = Path(sys.executable).with_name("fervideo")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`fervideo ARGS` in-process: (exit code, stdout, stderr)."""
    code = run(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def console_script(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """The installed `fervideo` entry point in a subprocess."""
    return subprocess.run([str(FERVIDEO), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=os.environ | {"COLUMNS": "120"} | env)


def database_dump(path: Path) -> str | None:
    """The database's logical content (None when there is no file): what 'unchanged' is checked on."""
    if not path.exists():
        return None
    connection = sqlite3.connect(path)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def assert_one_line_error(code: int, err: str, expected_code: int, fragment: str) -> None:
    assert code == expected_code, (code, err)
    assert "Traceback" not in err, err
    error_lines = [line for line in err.splitlines() if line.strip()]
    assert len(error_lines) == 1 and error_lines[0].startswith("error: "), err
    assert fragment in error_lines[0], err
    assert "\x1b" not in err


def add_session(db_url: str, code: str, *, video_path: str = "/videos/clip.mp4", recorded_at=None,
                status: str = "done", error: str | None = None, duration_s: float = 2.4) -> int:
    """A session row written directly (as an older fervideo, before subject codes were checked, could)."""
    with open_database(db_url).begin() as db:
        subject = db.query(Subject).filter_by(code=code).one_or_none() or Subject(code=code)
        session = VideoSession(
            subject=subject, video_path=video_path, video_sha256="a" * 64, recorded_at=recorded_at,
            duration_s=duration_s, video_fps=30.0, frame_count=72, width=640, height=360, codec="h264",
            sample_fps=5.0, settings_key="k" * 64, status=status, error=error, sampled_frames=12, face_frames=12,
            package_version="0.1.0", classifier_name="mini-xception-fer2013", classifier_sha256="c" * 64,
            detector_name="retinaface", detector_params={}, device="cpu")
        db.add(session)
        db.flush()
        return session.id
