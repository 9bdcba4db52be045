"""Storage: Alembic owns the schema, the engine factory's settings, clear errors for bad databases."""

import os
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from fervideo.errors import DatabaseError
from fervideo.store import make_engine, open_database, schema_revisions, upgrade_database
from fervideo.store.engine import alembic_config


def test_upgrade_from_empty_then_alembic_check_is_clean(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert schema_revisions(engine)[0] is None
    upgrade_database(engine)
    current, head = schema_revisions(engine)
    assert current == head
    command.check(alembic_config(engine))  # raises if the models and the migrations disagree


def test_downgrade_to_base_and_back(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a.sqlite'}")
    upgrade_database(engine)
    command.downgrade(alembic_config(engine), "base")
    with engine.connect() as connection:
        tables = {row[0] for row in connection.execute(text("select name from sqlite_master where type='table'"))}
    assert tables <= {"alembic_version"}
    upgrade_database(engine)


def test_new_database_is_created_at_head_with_pragmas(tmp_path):
    factory = open_database(str(tmp_path / "sub" / "new.sqlite"))  # a bare path means a SQLite file
    with factory() as db:
        assert db.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert db.execute(text("PRAGMA busy_timeout")).scalar() > 0
    current, head = schema_revisions(factory.kw["bind"])
    assert current == head


def test_database_behind_head_asks_for_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade_database(make_engine(url), "0001")
    with pytest.raises(DatabaseError, match="fervideo db upgrade"):
        open_database(url)


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("create table patients (name text)")
    with pytest.raises(DatabaseError, match="no fervideo schema"):
        open_database(f"sqlite:///{path}")


@pytest.mark.parametrize(
    "url_of",
    [
        lambda d: f"sqlite:///{d / 'a_file' / 'db.sqlite'}",  # parent is a file: cannot be created
        lambda d: "nosuchdialect://host/db",
        lambda d: "postgresql+nosuchdriver://u@localhost/db",
    ],
)
def test_unopenable_urls_are_one_line_errors(tmp_path, url_of):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DatabaseError) as caught:
        open_database(url_of(tmp_path))
    assert "\n" not in str(caught.value)


def test_random_bytes_file_is_named_not_a_database(tmp_path):
    path = tmp_path / "random.sqlite"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DatabaseError, match="is not a SQLite database") as caught:
        open_database(str(path))
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == bytes(range(256)) * 40  # untouched


def test_read_only_file_says_read_only_not_locked(tmp_path, monkeypatch):
    path = tmp_path / "study.sqlite"
    open_database(str(path))
    # Tests may run as root, for whom chmod changes nothing: report the file as not writable instead.
    real_access = os.access
    monkeypatch.setattr("fervideo.store.engine.os.access",
                        lambda p, mode: False if Path(p) == path and mode == os.W_OK else real_access(p, mode))
    with pytest.raises(DatabaseError, match="read-only") as caught:
        open_database(str(path))
    assert "lock" not in str(caught.value)


def test_driver_read_only_error_on_write_says_read_only(tmp_path):
    from sqlalchemy.exc import DBAPIError

    from fervideo.store.engine import describe_database_error

    path = tmp_path / "study.sqlite"
    open_database(str(path)).kw["bind"].dispose()
    # A read-only mount (or root-owned file) opens fine and fails at the first write with SQLITE_READONLY.
    factory = open_database(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(DBAPIError) as caught, factory.begin() as db:
        db.execute(text("CREATE TABLE probe (x INTEGER)"))
    message = describe_database_error(caught.value, str(path))
    assert "read-only" in message and "lock" not in message and "\n" not in message
