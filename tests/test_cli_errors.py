"""The command line's answers to bad arguments, bad databases and signals (issue 12 items 4-7).

Every case asserts the exit code of the documented convention (README, "Exit codes"), exactly one
`error:` line on stderr, no traceback, and an unchanged database. A representative subset runs the real
console entry point in a subprocess; the rest runs `fervideo.cli.run` in-process (the same code path
below the process boundary).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, cli, console_script, database_dump

from fervideo.store import open_database


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
    ["process", "{file}", "-s", "P1"],  # checked before the networks load (and before the file is probed)
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
