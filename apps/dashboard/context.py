"""What every page needs from the entry script: the database URL and the audited user name."""

from __future__ import annotations

import streamlit as st

PAGES = {
    "overview": "views/overview.py",
    "session": "views/session.py",
    "subject": "views/subject.py",
    "cohort": "views/cohort.py",
}


def remember(db_url: str, user: str) -> None:
    st.session_state["_fervideo_db_url"] = db_url
    st.session_state["_fervideo_audit_user"] = user


def db_url() -> str:
    return st.session_state["_fervideo_db_url"]


def user() -> str:
    return st.session_state["_fervideo_audit_user"]


def int_param(name: str) -> int | None:
    """An integer query parameter (?session=3), or None when absent or malformed."""
    raw = st.query_params.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def page(name: str) -> str:
    """A page's path relative to app.py, the form st.switch_page and st.page_link accept."""
    return PAGES[name]
