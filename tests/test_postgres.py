"""The store and the pipeline on PostgreSQL as on SQLite: migrations up and down with `alembic check`
clean, a processed session, resume after a dead lease. A real server in a temporary folder."""

import pytest
from alembic import command
from sqlalchemy import func, inspect, select
from synthetic_media import pattern_video

from fervideo.batch import WorkerSettings, plan_from_paths, run_batch
from fervideo.errors import DatabaseError
from fervideo.pipeline import SessionProcessor
from fervideo.store import Frame, SessionStatus, VideoSession, make_engine, open_database, schema_revisions
from fervideo.store.engine import alembic_config, upgrade_database


def test_migrations_up_down_and_check_on_both(any_db_url):
    engine = make_engine(any_db_url)
    upgrade_database(engine)
    current, head = schema_revisions(engine)
    assert current == head
    command.check(alembic_config(engine))  # the models and the migrations agree on this dialect too
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_database(engine)
    engine.dispose()


def test_a_session_is_stored_the_same_on_both(tmp_path, any_db_url):
    video = pattern_video(tmp_path / "v.mp4", n_frames=20, width=96, height=64)
    processor = SessionProcessor(db_url=any_db_url, model="mini-xception-fer2013", sample_fps=0)
    processor.chunk_size = 8
    result = processor.process(video, "S1")
    assert len(result.frames) == 20
    again = processor.process(video, "S1")
    assert again.skipped and again.session_id == result.session_id
    with open_database(any_db_url)() as db:
        session = db.get(VideoSession, result.session_id)
        assert session.status == SessionStatus.DONE and session.lease_pid is not None
        assert db.scalar(select(func.count()).select_from(Frame)) == 20
        assert db.scalar(select(func.count(func.distinct(Frame.frame_index)))) == 20


def test_batch_on_both(tmp_path, any_db_url):
    videos = [pattern_video(tmp_path / f"v{i}.mp4", n_frames=12 + i, width=96, height=64) for i in range(2)]
    settings = WorkerSettings(db_url=any_db_url, model="mini-xception-fer2013", sample_fps=0, threads=1)
    result = run_batch(plan_from_paths(videos, "S1"), settings, workers=2)
    assert [o.status for o in result.outcomes] == ["done", "done"] and result.exit_code == 0
    with open_database(any_db_url)() as db:
        assert db.scalar(select(func.count()).select_from(Frame)) == 12 + 13


def test_unreachable_server_is_a_one_line_error(postgres_server):
    url = postgres_server.url("no_such_database")
    with pytest.raises(DatabaseError) as caught:
        open_database(url)
    assert "\n" not in str(caught.value) and "no_such_database" in str(caught.value)


def test_every_core_command_on_both(capsys, tmp_path, any_db_url):
    from test_pipeline import run_cli

    video = pattern_video(tmp_path / "v.mp4", n_frames=15, width=96, height=64)
    base = ("--db", any_db_url)
    code, _, err = run_cli(capsys, "process", str(video), "-s", "S1", "--fps", "0", "--model",
                           "mini-xception-fer2013", "--threads", "1", *base)
    assert code == 0, err
    code, out, err = run_cli(capsys, "sessions", *base)
    assert code == 0 and "S1" in out, err
    code, out, err = run_cli(capsys, "features", "--all", *base)
    assert code == 0, err
    for fmt in ("csv", "json", "html"):
        code, _, err = run_cli(capsys, "export", "--all", "--format", fmt, "--out", str(tmp_path / fmt), *base)
        assert code == 0, (fmt, err)
        assert any((tmp_path / fmt).rglob(f"*.{fmt}"))


def test_a_url_without_driver_uses_psycopg(postgres_server):
    url = postgres_server.new_database().replace("postgresql+psycopg://", "postgresql://")
    engine = make_engine(url)
    assert engine.dialect.driver == "psycopg"
    engine.dispose()

