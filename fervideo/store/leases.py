"""Session leases: a running session names the process writing it (host, pid) and when it last said
it was alive (heartbeat). A `running` session whose heartbeat is older than the lease timeout, or whose
process is gone on this host, was interrupted (a kill -9, a lost machine, a power cut): `sessions`
shows it as such and the next run that meets it redoes it.

Why both tests: the pid check answers at once, but only on the host that ran the process; the heartbeat
is the answer that holds across machines sharing one database (PostgreSQL), after the timeout.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from fervideo.store.models import SessionStatus, VideoSession, utcnow

log = logging.getLogger(__name__)

# A lease expires when no heartbeat came for this long; heartbeats come every quarter of it.
DEFAULT_LEASE_TIMEOUT_S = 120.0


def lease_timeout_s() -> float:
    """The lease timeout: FERVIDEO_LEASE_TIMEOUT_S, else the default (every worker of a study must agree)."""
    try:
        return float(os.environ.get("FERVIDEO_LEASE_TIMEOUT_S", DEFAULT_LEASE_TIMEOUT_S))
    except ValueError:
        return DEFAULT_LEASE_TIMEOUT_S


def this_host() -> str:
    return socket.gethostname()[:255]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def lease_expired(session: VideoSession, now: dt.datetime | None = None, timeout_s: float | None = None) -> bool:
    """True when `session` is `running` but nobody holds it any more."""
    if session.status != SessionStatus.RUNNING:
        return False
    if session.heartbeat_at is None or session.lease_pid is None:
        return True  # written before leases existed, or never started properly
    if session.lease_host == this_host() and not pid_alive(session.lease_pid):
        return True
    now = now or utcnow()
    timeout_s = lease_timeout_s() if timeout_s is None else timeout_s
    return (now - session.heartbeat_at).total_seconds() > timeout_s


def held_by_me(session: VideoSession) -> bool:
    return session.lease_host == this_host() and session.lease_pid == os.getpid()


def display_status(session: VideoSession) -> str:
    """The status to show: a `running` session with an expired lease is `interrupted`."""
    return SessionStatus.INTERRUPTED if lease_expired(session) else session.status


def lease_values() -> dict:
    """Column values that make the calling process the session's lease holder, as of now."""
    return {"lease_host": this_host(), "lease_pid": os.getpid(), "heartbeat_at": utcnow()}


class Heartbeat:
    """A daemon thread renewing one session's lease until stopped (its own short transactions).

    A thread, not a call per chunk, so a long chunk (a slow model on a busy CPU) does not look like a
    dead process; a decoder that hangs for ever is the per-video timeout's business, not the lease's.
    """

    def __init__(self, factory: sessionmaker, session_id: int, interval_s: float | None = None) -> None:
        self.factory, self.session_id = factory, session_id
        self.interval_s = interval_s if interval_s is not None else lease_timeout_s() / 4
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fervideo-lease-{session_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with self.factory.begin() as db:
                    db.execute(
                        update(VideoSession)
                        .where(VideoSession.id == self.session_id, VideoSession.lease_pid == os.getpid(),
                               VideoSession.lease_host == this_host())
                        .values(heartbeat_at=utcnow())
                    )
            except SQLAlchemyError as exc:  # a busy database: the next beat tries again
                log.warning("lease heartbeat of session %d failed: %s", self.session_id, exc)
