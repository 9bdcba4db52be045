"""The dashboard on both stores: the Sessions and Session pages through AppTest over the seeded database,
once on SQLite and once on PostgreSQL, and the reader's connections refusing writes on both."""

from __future__ import annotations

import pytest
import streamlit as st
from dashboard_apptest import SERVER_ADDRESS, metrics, run_page, serve_from
from dashboard_seed import seed_database
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from apps.dashboard import data
from fervideo.store import AuditEvent, Frame, open_database

server_address = SERVER_ADDRESS


@pytest.fixture
def seeded_any(any_db_url, tmp_path, monkeypatch, server_address) -> tuple[str, dict[str, int]]:
    ids = seed_database(any_db_url)
    serve_from(any_db_url, tmp_path, monkeypatch)
    yield any_db_url, ids
    st.cache_resource.clear()


def test_sessions_and_session_pages_show_the_seeded_study(seeded_any):
    db_url, ids = seeded_any
    at = run_page()
    assert at.title[0].value == "Sessions"
    assert metrics(at) == {"Subjects": "3", "Sessions": "5", "Flagged sessions": "2"}
    table = at.dataframe[0].value
    assert list(table["session_id"]) == sorted(ids[f"session{i}"] for i in range(5))
    assert list(table["phq_estimate"]) == ["14.2", "11.0", "7.5", "–", "–"]
    at = run_page("session", session=str(ids["session0"]))
    assert at.title[0].value == f"Session {ids['session0']}"
    shown = metrics(at)
    assert shown["PHQ-8 estimate"] == "14.2" and shown["Frames with a face"] == "550"  # 10 s of 120 s: no face
    payload = data.audited_download(db_url, ids["session0"], ids["S-001"], "frames_csv", "local")
    assert payload.count(b"\n") == 601  # header + 600 frames
    with open_database(db_url)() as db:  # the audit rows went through the writable engine
        actions = list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["view_overview", "view_overview", "view_session", "download_frames_csv"]  # two AppTests


def test_the_dashboards_reads_cannot_write(seeded_any):
    db_url, _ = seeded_any
    with data.reader(db_url)() as db, pytest.raises(DBAPIError, match="read-only|readonly|query_only"):
        db.execute(text("DELETE FROM frames"))
    with data.reader(db_url)() as db:  # the failed write left the reader usable, and nothing was deleted
        assert db.scalar(select(Frame.session_id).limit(1)) is not None
    with open_database(db_url)() as db:
        assert db.scalar(select(Frame.session_id).limit(1)) is not None
