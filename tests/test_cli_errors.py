"""The command line's answers to bad arguments, bad databases, signals and hostile strings (issue 12).

Every case asserts the exit code of the documented convention (README, "Exit codes"), exactly one
`error:` line on stderr, no traceback, and an unchanged database. A representative subset runs the real
console entry point in a subprocess; the rest runs `fervideo.cli.run` in-process (the same code path
below the process boundary).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fervideo.cli import run
from fervideo.labels import CANONICAL_LABELS
from fervideo.store import Subject, VideoSession, open_database

FERVIDEO = Path(sys.executable).with_name("fervideo")


# ------------------------------------------------------------------------------------------- helpers
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


@pytest.fixture
def db_path(tmp_path) -> Path:
    path = tmp_path / "study.sqlite"
    open_database(str(path)).kw["bind"].dispose()
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder\n")
    return {"file": a_file, "missing": tmp_path / "missing.mp4", "video": a_file}


# ----------------------------------------------------------------------------- the bad-argument corpus
# (command line with {file} {missing} {db} placeholders, exit code, a fragment of the one error line)
USAGE_CASES = {
    "unknown command": (["nosuch"], 2, "No such command"),
    "unknown option": (["sessions", "--fps", "abc", "--db", "{db}"], 2, "No such option: --fps"),
    "fps not a number": (["process", "{file}", "-s", "P1", "--fps", "abc", "--db", "{db}"], 2, "--fps"),
    "fps nan": (["process", "{file}", "-s", "P1", "--fps", "nan", "--db", "{db}"], 2, "not a finite number"),
    "fps inf": (["process", "{file}", "-s", "P1", "--fps", "inf", "--db", "{db}"], 2, "not a finite number"),
    "fps negative": (["process", "{file}", "-s", "P1", "--fps", "-1", "--db", "{db}"], 2, "--fps"),
    "landmarks foo": (["process", "{file}", "-s", "P1", "--landmarks", "foo", "--db", "{db}"], 2,
                      "not one of retinaface, fan"),
    "device gpu": (["process", "{file}", "-s", "P1", "--device", "gpu", "--db", "{db}"], 2, "--device"),
    "batch size 0": (["process", "{file}", "-s", "P1", "--batch-size", "0", "--db", "{db}"], 2, "--batch-size"),
    "recorded-at yesterday": (["process", "{file}", "-s", "P1", "--recorded-at", "yesterday", "--db", "{db}"], 2,
                              "'yesterday' is not a date"),
    "file name starting with -": (["process", "-video.mp4", "-s", "P1", "--db", "{db}"], 2, "./-video.mp4"),
    "subject missing": (["process", "{file}", "--db", "{db}"], 2, "--subject"),
    "batch of missing files": (["process", "{missing}", "{tmp}/other.mp4", "-s", "P1", "--db", "{db}"], 2,
                               "no such file"),
    "subject escape sequence": (["process", "{file}", "-s", "\x1b[31mP1", "--db", "{db}"], 2,
                                "control character U+001B"),
    "subject dot": (["process", "{file}", "-s", ".", "--db", "{db}"], 2, "names a folder"),
    "subject blank": (["import-openface", "{file}", "-s", "  ", "--db", "{db}"], 2, "empty"),
    "export format xml": (["export", "--all", "--format", "xml", "--db", "{db}"], 2, "'xml' is not one of"),
    "export out is a file": (["export", "--all", "--out", "{file}", "--db", "{db}"], 5, "is a file, not a folder"),
    "export out under a file": (["export", "--all", "--out", "{file}/sub", "--db", "{db}"], 5, "cannot be created"),
    "export nothing named": (["export", "--db", "{db}"], 2, "exactly one of"),
    "export unknown session": (["export", "999", "--db", "{db}"], 2, "no session 999"),
    "export empty database": (["export", "--all", "--db", "{db}"], 5, "no finished sessions"),
    "features neither": (["features", "--db", "{db}"], 2, "SESSION id or --all"),
    "features both": (["features", "1", "--all", "--db", "{db}"], 2, "not both"),
    "features id not a number": (["features", "one", "--db", "{db}"], 2, "valid integer"),
    "features unknown session": (["features", "999", "--db", "{db}"], 2, "no session 999"),
    "openface missing path": (["import-openface", "{missing}", "-s", "P1", "--db", "{db}"], 2, "no such file"),
    "openface bad date": (["import-openface", "{file}", "-s", "P1", "--recorded-at", "03/01/2024", "--db", "{db}"],
                          2, "is not a date"),
    "openface not a csv": (["import-openface", "{file}", "-s", "P1", "--db", "{db}"], 2, "OpenFace"),
    "labels missing file": (["phq", "labels", "import", "{missing}", "--db", "{db}"], 2, "no such file"),
    "labels folder": (["phq", "labels", "import", "{tmp}", "--db", "{db}"], 2, "is a folder"),
    "phq predict without head": (["phq", "predict", "--all", "--db", "{db}"], 2, "--head"),
    "phq unknown head": (["phq", "evaluate", "nohead", "--db", "{db}"], 2, "nohead"),
    "db in memory": (["sessions", "--db", ":memory:"], 2, "in-memory"),
    "db in memory url": (["features", "--all", "--db", "sqlite://"], 2, "in-memory"),
    "dashboard port 0": (["dashboard", "--port", "0", "--db", "{db}"], 2, "--port"),
    "dashboard unknown login": (["dashboard", "remove-user", "nobody", "--users", "{tmp}/users.json"], 2,
                                "no login 'nobody'"),
    "train evaluate missing model": (["train", "evaluate", "--model", "{missing}", "--data", "rafdb:x"], 3,
                                     "no such file"),
    "train classifier missing recipe": (["train", "classifier", "--config", "{missing}"], 2, "no such file"),
}


def _fill(args: list[str], files: dict[str, Path], db_path: Path, tmp_path: Path) -> list[str]:
    return [arg.format(file=files["file"], missing=files["missing"], db=db_path, tmp=tmp_path) for arg in args]


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_bad_argument_is_one_line_and_changes_nothing(capsys, case, files, db_path, tmp_path):
    args, expected_code, fragment = USAGE_CASES[case]
    before = database_dump(db_path)
    code, _, err = cli(capsys, *_fill(args, files, db_path, tmp_path))
    assert_one_line_error(code, err, expected_code, fragment)
    assert database_dump(db_path) == before


@pytest.mark.parametrize("case", ["unknown option", "fps nan", "landmarks foo", "recorded-at yesterday",
                                  "export format xml", "export out is a file", "db in memory",
                                  "dashboard unknown login"])
def test_console_entry_point_answers_bad_arguments_in_one_line(case, files, db_path, tmp_path):
    args, expected_code, fragment = USAGE_CASES[case]
    before = database_dump(db_path)
    done = console_script(*_fill(args, files, db_path, tmp_path))
    assert_one_line_error(done.returncode, done.stderr, expected_code, fragment)
    assert database_dump(db_path) == before


def test_bad_arguments_fail_before_any_network_is_loaded(capsys, files, db_path, monkeypatch):
    def no_networks(*_args, **_kwargs):
        raise AssertionError("a network was loaded for a command that had a bad argument")

    monkeypatch.setattr("fervideo.pipeline.SessionProcessor.__init__", no_networks)
    for extra in (["--fps", "nan"], ["--landmarks", "foo"], ["--recorded-at", "yesterday"], ["-s", ".."]):
        code, _, err = cli(capsys, "process", str(files["file"]), "-s", "P1", *extra, "--db", str(db_path))
        assert code == 2 and "AssertionError" not in err


# ---------------------------------------------------------------------------------------- databases
COMMANDS_ON_A_DATABASE = [
    ["sessions"], ["features", "--all"], ["export", "--all", "--out", "{tmp}/out"], ["db", "upgrade"],
    ["phq", "evaluate", "head"], ["phq", "predict", "--all", "--head", "head"],
    ["import-openface", "{file}", "-s", "P1"], ["phq", "labels", "import", "{file}"],
]


@pytest.mark.parametrize("command", COMMANDS_ON_A_DATABASE, ids=lambda c: " ".join(c[:2]))
def test_random_bytes_database_is_one_line_exit_4_for_every_command(capsys, command, files, tmp_path):
    garbage = tmp_path / "random.sqlite"
    content = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    garbage.write_bytes(content)
    code, _, err = cli(capsys, *_fill(command, files, garbage, tmp_path), "--db", str(garbage))
    assert_one_line_error(code, err, 4, "is not a SQLite database")
    assert garbage.read_bytes() == content


@pytest.mark.parametrize("command", COMMANDS_ON_A_DATABASE, ids=lambda c: " ".join(c[:2]))
def test_read_only_database_says_read_only_for_every_command(capsys, command, files, db_path, tmp_path,
                                                             monkeypatch):
    real_access = os.access
    # Tests may run as root, for whom chmod changes nothing: the file reports itself as not writable.
    monkeypatch.setattr("fervideo.store.engine.os.access",
                        lambda p, mode: False if Path(p) == db_path and mode & os.W_OK else real_access(p, mode))
    before = database_dump(db_path)
    code, _, err = cli(capsys, *_fill(command, files, db_path, tmp_path), "--db", str(db_path))
    assert_one_line_error(code, err, 4, "is read-only")
    assert "lock" not in err
    assert database_dump(db_path) == before


def test_random_bytes_database_through_the_console_entry_point(tmp_path):
    garbage = tmp_path / "random.sqlite"
    garbage.write_bytes(bytes(range(256)) * 32)
    done = console_script("sessions", "--db", str(garbage))
    assert_one_line_error(done.returncode, done.stderr, 4, "is not a SQLite database")


def test_a_driver_error_escaping_a_command_is_one_line_exit_4(capsys, db_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    class ReadOnly(sqlite3.OperationalError):
        sqlite_errorname = "SQLITE_READONLY"

    def failing(*_args, **_kwargs):
        raise OperationalError("UPDATE ...", {}, ReadOnly("attempt to write a readonly database"))

    monkeypatch.setattr("fervideo.store.list_sessions", failing)
    code, _, err = cli(capsys, "sessions", "--db", str(db_path))
    assert_one_line_error(code, err, 4, "read-only")


# ------------------------------------------------------------------------------- failures that exited 0
def test_import_openface_of_several_files_with_one_bad_exits_1(capsys, tmp_path, db_path):
    from test_openface import openface_csv

    folder = tmp_path / "openface"
    folder.mkdir()
    openface_csv(folder / "good.csv")
    (folder / "bad.csv").write_text("frame,timestamp\n1,0.0\n")
    code, out, err = cli(capsys, "import-openface", str(folder), "-s", "P1", "--db", str(db_path))
    assert code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("error: ")] and "bad.csv" in err
    assert "good.csv: session" in out


def test_label_import_with_bad_rows_exits_2_and_imports_nothing(capsys, tmp_path, db_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("subject,total\nP1,5\nP2,notanumber\n")
    before = database_dump(db_path)
    code, _, err = cli(capsys, "phq", "labels", "import", str(labels), "--db", str(db_path))
    assert code == 2 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1  # + the bad rows
    assert database_dump(db_path) == before


def test_remove_user_of_unknown_login_exits_2_and_keeps_the_file(capsys, tmp_path):
    from fervideo.dashboard_auth import add_user

    users = tmp_path / "users.json"
    add_user("dr.lee", "a long enough password", users)
    before = users.read_text()
    code, _, err = cli(capsys, "dashboard", "remove-user", "nobody", "--users", str(users))
    assert_one_line_error(code, err, 2, "no login")
    assert users.read_text() == before


@pytest.mark.parametrize(("signum", "expected_code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                                (signal.SIGTERM, 143, "terminated")])
def test_a_stop_signal_inside_a_command_is_one_word_and_its_exit_code(capsys, db_path, monkeypatch, signum,
                                                                      expected_code, word):
    def stopped_here(*_args, **_kwargs):
        os.kill(os.getpid(), signum)  # as Ctrl-C or `kill PID` would, while the command works
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal was not handled")

    monkeypatch.setattr("fervideo.store.list_sessions", stopped_here)
    code, _, err = cli(capsys, "sessions", "--db", str(db_path))
    assert code == expected_code and err.strip() == word
    import fervideo.cli

    # The handlers are the caller's again once the command is over.
    assert fervideo.cli._on_stop_signal not in (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))


def test_a_command_that_reports_its_own_interruption_is_not_echoed(capsys, db_path, monkeypatch):
    import typer

    def handled_inside(*_args, **_kwargs):
        print("interrupted by signal 2: marked interrupted", file=sys.stderr)
        raise typer.Exit(130)  # what `process` does after finishing or rolling back its chunk

    monkeypatch.setattr("fervideo.store.list_sessions", handled_inside)
    code, _, err = cli(capsys, "sessions", "--db", str(db_path))
    assert code == 130 and err.strip().splitlines() == ["interrupted by signal 2: marked interrupted"]


def test_an_explicit_exit_code_is_honoured(capsys, db_path, monkeypatch):
    import typer

    def exits(*_args, **_kwargs):
        raise typer.Exit(5)

    monkeypatch.setattr("fervideo.store.list_sessions", exits)
    assert cli(capsys, "sessions", "--db", str(db_path))[0] == 5


# ---------------------------------------------------------------- signals: the dashboard and its child
SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"


def _start_dashboard_with_a_fake_server(tmp_path: Path, db_path: Path) -> tuple[subprocess.Popen, Path]:
    """`fervideo dashboard` whose 'Streamlit' is a sleeping child that writes its pid."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import sys\n"
        "import fervideo.cli.commands_dashboard as dashboard\n"
        f"dashboard.streamlit_command = lambda address, port: [sys.executable, '-c', {SLEEPER!r}, {str(pid_file)!r}]\n"
        "from fervideo.cli import main\n"
        f"sys.argv = ['fervideo', 'dashboard', '--db', {str(db_path)!r}]\n"
        "main()\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert parent.poll() is None, parent.communicate()
        assert time.monotonic() < deadline, "the fake server never started"
        time.sleep(0.1)
    return parent, pid_file


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.parametrize(("signum", "expected_code", "word"), [(signal.SIGTERM, 143, "terminated"),
                                                                (signal.SIGINT, 130, "interrupted")])
def test_stopping_the_dashboard_stops_its_server_child(tmp_path, db_path, signum, expected_code, word):
    parent, pid_file = _start_dashboard_with_a_fake_server(tmp_path, db_path)
    child = int(pid_file.read_text())
    parent.send_signal(signum)  # to the parent only, as `kill PID` or a service manager does
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == expected_code, err
    assert err.strip().splitlines()[-1] == word and "Traceback" not in err
    deadline = time.monotonic() + 15
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), "the Streamlit child outlived `fervideo dashboard`"


# ------------------------------------------------------------------------------------- hostile strings
HOSTILE = {
    "closing tag": "close[/x]tag",
    "rich markup": "[bold red]PWN[/bold red]",
    "ansi colour": "\x1b[31mRED\x1b[0m",
    "osc hyperlink": "\x1b]8;;http://host/x\x07click\x1b]8;;\x07",
    "bidi override": "abc\u202edcba",
}


def test_sessions_shows_hostile_subjects_and_paths_as_data(capsys, db_path, monkeypatch):
    from fervideo.cli.app import console

    monkeypatch.setattr(console, "width", 250)  # whole cells on one line each, for the checks below
    db_url = str(db_path)
    for number, code in enumerate(HOSTILE.values()):
        add_session(db_url, code, video_path=f"/videos/clip[bold]{number}.mp4",
                    recorded_at=dt.datetime(2024, 4, 2 + number), error="broken [/x] \x1b[2J")
    code, out, err = cli(capsys, "sessions", "--db", db_url)
    assert code == 0 and err == ""
    assert "close[/x]tag" in out and "[bold red]PWN[/bold red]" in out and "clip[bold]0.mp4" in out
    assert "done (broken [/x] \\x1b[2J)" in out
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[31mRED\\x1b[0m" in out and "\\u202e" in out  # shown, not obeyed


def test_sessions_at_80_columns_keeps_whole_dates_and_hostile_codes(db_path):
    add_session(str(db_path), "close[/x]tag", video_path="/v/" + "long_name_" * 8 + ".mp4",
                recorded_at=dt.datetime(2024, 12, 31), error="x" * 60)
    add_session(str(db_path), "[bold red]PWN[/bold red]", recorded_at=dt.datetime(2025, 1, 2))
    done = console_script("sessions", "--db", str(db_path), COLUMNS="80")
    assert done.returncode == 0, done.stderr
    assert "2024-12-31" in done.stdout and "2025-01-02" in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
    assert "[bold" in done.stdout and "PWN" in done.stdout and "\x1b" not in done.stdout


def test_error_message_with_markup_in_a_path_is_printed_verbatim(capsys, tmp_path):
    path = tmp_path / "[" / "x]study[bold]"
    path.parent.mkdir()
    path.write_bytes(bytes(range(256)) * 32)
    code, _, err = cli(capsys, "sessions", "--db", str(path))
    assert_one_line_error(code, err, 4, "[/x]study[bold]")


def test_error_message_with_escape_sequences_is_neutralised(capsys, tmp_path):
    missing = tmp_path / "\x1b]0;owned\x07.mp4"
    code, _, err = cli(capsys, "import-openface", str(missing), "-s", "P1", "--db", str(tmp_path / "x.sqlite"))
    assert_one_line_error(code, err, 2, "\\x1b]0;owned\\x07.mp4")


# ----------------------------------------------------------------------------------- item 15: honesty
def test_models_says_the_bundled_baseline_is_available_offline(capsys):
    code, out, _ = cli(capsys, "models")
    row = next(line for line in out.splitlines() if "mini-xception-fer2013" in line)
    assert code == 0 and "yes" in row and "no" not in row.split("│")[-2]


def _frames(n: int, face_fraction: float, fps: float = 5.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    face = np.arange(n) < round(n * face_fraction)
    probs = rng.dirichlet(np.ones(len(CANONICAL_LABELS)), size=n)
    table = pd.DataFrame({"frame_index": np.arange(n) * 6, "t": np.arange(n) / fps, "face_found": face,
                          "face_score": np.where(face, 0.99, np.nan)})
    for i, label in enumerate(CANONICAL_LABELS):
        table[label] = np.where(face, probs[:, i], np.nan)
    return table


def test_process_summary_warns_about_an_unreliable_session(capsys):
    from fervideo.cli.commands_process import _print_summary

    _print_summary(Path("clip.mp4"), 1, _frames(12, 0.37), skipped=False, seconds=1.0)
    out = capsys.readouterr().out
    assert "unreliable" in out and "s of face" in out


def test_process_summary_of_a_reliable_session_has_no_warning(capsys):
    from fervideo.cli.commands_process import _print_summary

    _print_summary(Path("clip.mp4"), 1, _frames(600, 1.0), skipped=False, seconds=1.0)
    assert "unreliable" not in capsys.readouterr().out


def test_time_covered_is_one_definition_in_process_and_sessions(capsys, db_path):
    from fervideo.cli.commands_process import _print_summary

    frames = _frames(12, 1.0)  # 0.0 .. 2.2 s at 5 fps: a 2.4 s clip
    _print_summary(Path("clip.mp4"), 1, frames, skipped=False, seconds=None)
    summary = capsys.readouterr().out
    add_session(str(db_path), "P1", duration_s=2.4)
    _, listing, _ = cli(capsys, "sessions", "--db", str(db_path))
    assert "2.4 s" in next(line for line in summary.splitlines() if "time covered" in line)
    assert "2.4 s" in listing


def test_features_all_names_the_unreliable_sessions(capsys, db_path):
    from sqlalchemy import insert

    from fervideo.store import Frame

    good = add_session(str(db_path), "P1")
    poor = add_session(str(db_path), "P2")
    with open_database(str(db_path)).begin() as db:
        for session_id, table in ((good, _frames(600, 1.0)), (poor, _frames(600, 0.1))):
            rows = table.assign(session_id=session_id)
            rows = rows.astype(object).where(rows.notna(), None)
            db.execute(insert(Frame), rows.to_dict("records"))
    code, out, _ = cli(capsys, "features", "--all", "--db", str(db_path))
    assert code == 0 and "1 unreliable" in out
    assert f"session {poor}:" in out and f"session {good}:" not in out and "face" in out


def test_progress_shows_what_it_waits_for_not_0_of_unknown():
    from rich.progress import Progress

    from fervideo.cli.app import CountColumn

    with Progress(CountColumn("opening the video"), disable=True) as bar:
        task = bar.add_task("clip", total=None)
        column = CountColumn("opening the video")
        assert column.render(bar.tasks[task]).plain == "opening the video"
        bar.update(task, total=50, completed=3)
        assert column.render(bar.tasks[task]).plain == "3/50"


def test_sidecar_asking_timm_for_pretrained_weights_is_refused(tmp_path):
    from fervideo.emotion.checkpoint import build_model
    from fervideo.emotion.config import read_sidecar
    from fervideo.errors import ModelError

    sidecar = tmp_path / "model.json"
    sidecar.write_text('{"architecture": "vit_tiny_patch16_224", "labels": ' + str(list(CANONICAL_LABELS))
                       .replace("'", '"') + ', "model_kwargs": {"pretrained": true}}')
    with pytest.raises(ModelError, match="pretrained") as caught:
        build_model(read_sidecar(sidecar))
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------------------- item 16: the install
def test_package_imports_from_the_folder_that_holds_the_clone(tmp_path):
    (tmp_path / "fervideo").mkdir()  # the clone's folder, seen from its parent: an empty namespace package
    done = subprocess.run([sys.executable, "-c", "import fervideo; print(fervideo.process_video.__name__)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "process_video", done.stderr


def test_log_messages_show_escape_sequences_instead_of_obeying_them(capsys):
    import logging

    from fervideo.cli.app import _root

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        _root(verbose=False)
        logging.getLogger("fervideo.test").warning("file %s is odd", "\x1b]0;owned\x07[bold]x.mp4")
    finally:
        root.handlers, root.level = saved
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b]0;owned\\x07[bold]x.mp4" in err


def test_export_out_in_an_unwritable_folder_is_refused_before_the_database_is_read(capsys, db_path, tmp_path,
                                                                                    monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # As root, permissions do not bind: the folder reports itself as not writable instead.
    monkeypatch.setattr("fervideo.cli.arguments.os.access",
                        lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    code, _, err = cli(capsys, "export", "--all", "--out", str(locked / "reports"), "--db", str(db_path))
    assert_one_line_error(code, err, 5, "is not writable")
    assert not (locked / "reports").exists()
