"""Entry point of the clinician dashboard: `fervideo dashboard` runs `streamlit run` on this file.

Order matters: the gate runs before st.navigation, so a visitor who is not allowed in sees a refusal
or a login form and no page, no menu and no data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, "") and str(Path(__file__).resolve().parents[2]) not in sys.path:
    # `streamlit run` executes this file as a script; make `apps.dashboard` importable without an install.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.dashboard import context, data, gate  # noqa: E402
from apps.dashboard.text import md  # noqa: E402
from fervideo.errors import FervideoError  # noqa: E402

HERE = Path(__file__).parent

st.set_page_config(page_title="fervideo dashboard", layout="wide")
db_url = data.database_url()
try:
    data.reader(db_url)
except FervideoError as error:
    st.title("fervideo dashboard")
    st.error(str(error))
    st.stop()
user, mode = gate.require_user(db_url)
context.remember(db_url, user)

pages = [
    st.Page(HERE / "views" / "overview.py", title="Sessions", icon=":material/table_rows:", url_path="overview",
            default=True),
    st.Page(HERE / "views" / "session.py", title="Session", icon=":material/timeline:", url_path="session"),
    st.Page(HERE / "views" / "subject.py", title="Subject", icon=":material/person:", url_path="subject"),
    st.Page(HERE / "views" / "cohort.py", title="Cohort", icon=":material/scatter_plot:", url_path="cohort"),
]
navigation = st.navigation(pages)
with st.sidebar:
    st.caption(f"Signed in as **{md(user)}**" if mode != "none" else "Local session (127.0.0.1, no login)")
    if mode != "none" and st.button("Log out"):
        gate.logout(mode)
        st.rerun()
    st.caption("Estimates, not diagnoses. Read-only view; views and downloads are recorded in the audit log.")
    gate.write_pending_cookie()  # the login cookie, once, after a password login
navigation.run()
