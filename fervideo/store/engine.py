"""One engine factory for every entry point (CLI, pipeline, dashboard, tests).

SQLite gets WAL (readers such as the dashboard never block the writer), foreign keys (so deleting a
session deletes its frames) and a busy timeout (a second writer waits instead of failing at once).
The schema is Alembic's: a new database is brought to head automatically; an existing one that is
behind must be upgraded on purpose with `fervideo db upgrade`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from fervideo.errors import DatabaseError

log = logging.getLogger(__name__)

DEFAULT_DB_PATH = Path.home() / ".local" / "share" / "fervideo" / "fervideo.sqlite"
SQLITE_BUSY_TIMEOUT_MS = 15_000
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def default_database_url() -> str:
    """`FERVIDEO_DB` if set, else a SQLite file in the user's data directory."""
    return os.environ.get("FERVIDEO_DB") or f"sqlite:///{DEFAULT_DB_PATH}"


def _normalise_url(url: str) -> str:
    # A bare path is taken as a SQLite file, which is what most users mean.
    return url if "://" in url else f"sqlite:///{Path(url).expanduser()}"


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commit
    cursor.close()


def make_engine(url: str | None = None) -> Engine:
    """Create an engine with our SQLite settings; raises DatabaseError if it cannot be opened."""
    url = _normalise_url(url or default_database_url())
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"not a database URL: {url!r}; use e.g. sqlite:///path/to/fervideo.sqlite") from None
    if (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and "uri" not in parsed.query):  # a `file:` URI names no plain path to check
        folder = Path(parsed.database).expanduser().resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the database folder {folder}: {exc.strerror}") from None
        # WAL writes beside the file: a read-only file or folder fails later as a misleading "lock".
        file = folder / Path(parsed.database).name
        if (file.exists() and not os.access(file, os.W_OK)) or not os.access(folder, os.W_OK):
            raise DatabaseError(f"database {file} {_SQLITE_PROBLEMS['SQLITE_READONLY']}")
    if parsed.drivername == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2; ours is psycopg 3 (the [postgres] extra).
        parsed = parsed.set(drivername="postgresql+psycopg")
    server = parsed.get_backend_name() != "sqlite"
    try:
        # A study's server may drop idle connections (restarts, proxies): check each one before use.
        engine = create_engine(parsed, pool_pre_ping=server)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        raise DatabaseError(f"cannot open database {parsed.render_as_string()}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:  # OperationalError, and sqlite's DatabaseError for a file that is not one
        where = parsed.database if parsed.get_backend_name() == "sqlite" else parsed.render_as_string()
        raise DatabaseError(describe_database_error(exc, str(where))) from None
    return engine


# SQLite's error names (sqlite3 exposes them since Python 3.11) -> what the user should be told.
_SQLITE_PROBLEMS = {
    "SQLITE_READONLY": "is read-only (check the permissions of the file and its folder, or copy it)",
    "SQLITE_NOTADB": "is not a SQLite database (point --db at a fervideo database or a new file)",
    "SQLITE_CORRUPT": "is corrupt (restore it from a backup)",
    "SQLITE_BUSY": "is locked by another program (retry when it has finished)",
    "SQLITE_LOCKED": "is locked by another program (retry when it has finished)",
    "SQLITE_CANTOPEN": "cannot be opened (check the path and the folder's permissions)",
    "SQLITE_PERM": "cannot be accessed (check the file's permissions)",
    "SQLITE_FULL": "cannot grow: the disk is full",
}


def describe_database_error(exc: DBAPIError, where: str) -> str:
    """One line saying what is wrong with the database at `where` and what to do, from a driver error.
    A read-only file says read-only (sqlite reports it as an OperationalError, like a lock)."""
    name = getattr(exc.orig, "sqlite_errorname", "") or ""
    problem = next((text for key, text in _SQLITE_PROBLEMS.items() if name.startswith(key)), None)
    if problem is not None:
        return f"database {where} {problem}"
    first_line = (str(exc.orig).strip().splitlines() or ["unknown error"])[0]
    return f"database {where}: {first_line}"


def alembic_config(engine: Engine):
    from alembic.config import Config

    # Alembic's default stdout is bound when alembic.config is first imported; pass today's sys.stdout
    # (the first import may happen while a caller has redirected it, e.g. under a test's capture).
    config = Config(stdout=sys.stdout)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """(current revision of the database, head revision of the code)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), revision)
    except OperationalError as exc:
        raise DatabaseError(f"database upgrade failed: {exc.orig}; is another process writing to it?") from None


def open_database(url: str | None = None) -> sessionmaker:
    """Open (and if new, create) the database; return a session factory.

    A database with no tables is created at head. One that is behind raises DatabaseError telling
    the user to run `fervideo db upgrade`, since migrating someone's data should be a decision.
    """
    engine = make_engine(url)
    current, head = schema_revisions(engine)
    if current is None:
        if inspect(engine).get_table_names():
            raise DatabaseError(
                f"{engine.url.render_as_string()} holds tables but no fervideo schema version; "
                "point --db at a fervideo database or a new file"
            )
        upgrade_database(engine)
    elif current != head:
        raise DatabaseError(
            f"database schema is at {current}, the code expects {head}; run `fervideo db upgrade`"
        )
    return sessionmaker(engine, expire_on_commit=False)
