"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder, on a free port,
listening only on a unix socket there. Debian's binaries (the `postgresql` package, installed by
`make system-deps`); initdb refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: $PG_BIN, PATH, or Debian's /usr/lib/postgresql/N/bin."""
    candidates = [os.environ.get("PG_BIN", "")]
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """Start with `start()` (raises RuntimeError with the reason when it cannot), stop with `stop()`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fervideo-pg-"))
        self.port = _free_port()
        self.run_as: list[str] = []
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.counter = 0

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.run_as, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {(done.stderr or done.stdout).strip()[-300:]}")

    def start(self) -> PostgresServer:
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise RuntimeError("psycopg is not installed (pip install 'psycopg[binary]')") from None
        if os.geteuid() == 0:  # initdb refuses root
            self.user = "postgres"
            self.run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres")
            self.folder.chmod(0o755)
        data = self.folder / "data"
        self._run(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", self.user, "-E", "UTF8")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses='' -c fsync=off"
        self._run(str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"),
                  "-w", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.folder}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        from sqlalchemy import create_engine, text

        self.counter += 1
        name = f"fervideo_test_{self.counter}"
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        pg_bin = find_pg_bin()
        if pg_bin and (self.folder / "data").exists():
            try:
                self._run(str(pg_bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.folder, ignore_errors=True)
