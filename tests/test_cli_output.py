"""What the command line shows (issue 12 items 9, 15, 16): hostile strings as data, never markup or
terminal control; whole dates at 80 columns; honest model availability, reliability warnings, one
definition of time covered; the package importable from the folder that holds the clone."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import add_session, assert_one_line_error, cli, console_script

from fervideo.labels import CANONICAL_LABELS
from fervideo.store import open_database


@pytest.fixture
def db_path(tmp_path) -> Path:
    path = tmp_path / "study.sqlite"
    open_database(str(path)).kw["bind"].dispose()
    return path


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
