"""Storage: Alembic owns the schema, the engine factory's settings, clear errors for bad databases."""

import sqlite3

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
