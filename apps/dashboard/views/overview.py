"""Sessions overview: every subject's sessions with coverage, classifier, PHQ estimate and flags."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from apps.dashboard import context, data

db_url = context.db_url()
data.audit_once(db_url, context.user(), "view_overview")
table = data.overview(db_url, data.fingerprint(db_url))

st.title("Sessions")
if table.empty:
    st.info("No sessions in this database yet. Process a recording with `fervideo process VIDEO --subject CODE`.")
    st.stop()


def _filters(table: pd.DataFrame) -> pd.DataFrame:
    left, middle, right, flags_col = st.columns([2, 2, 2, 1.5])
    chosen = left.multiselect("Subject", sorted(table["subject"].unique()), placeholder="all subjects")
    dates = table["recorded_at"].dropna()
    first = dates.min().date() if len(dates) else dt.date.today()
    last = dates.max().date() if len(dates) else dt.date.today()
    date_range = middle.date_input("Recorded between", (first, last), min_value=first, max_value=last)
    bands = right.multiselect("PHQ band", sorted(table["band"].unique()), placeholder="all bands")
    flag = flags_col.selectbox("Reliability", ["all", "reliable only", "flagged only"])
    keep = pd.Series(True, index=table.index)
    if chosen:
        keep &= table["subject"].isin(chosen)
    if isinstance(date_range, tuple) and len(date_range) == 2:
        day = table["recorded_at"].dt.date
        keep &= table["recorded_at"].isna() | ((day >= date_range[0]) & (day <= date_range[1]))
    if bands:
        keep &= table["band"].isin(bands)
    if flag == "reliable only":
        keep &= table["reliable"].fillna(False).astype(bool)
    elif flag == "flagged only":
        keep &= ~table["reliable"].fillna(False).astype(bool)
    return table[keep]


shown = _filters(table)
c1, c2, c3 = st.columns(3)
c1.metric("Subjects", shown["subject"].nunique())
c2.metric("Sessions", len(shown))
c3.metric("Flagged sessions", int((~shown["reliable"].fillna(False).astype(bool)).sum()))

event = st.dataframe(
    shown.drop(columns=["subject_id"]),
    hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="sessions_table",
    column_config={
        "session_id": st.column_config.NumberColumn("session", format="%d"),
        "recorded_at": st.column_config.DatetimeColumn("recorded", format="YYYY-MM-DD HH:mm"),
        "duration_min": st.column_config.NumberColumn("duration (min)", format="%.1f"),
        "face_coverage": st.column_config.ProgressColumn("face coverage", min_value=0.0, max_value=1.0,
                                                         format="percent"),
        "phq_estimate": st.column_config.NumberColumn("PHQ estimate", format="%.1f"),
        "phq_interval": st.column_config.TextColumn("interval"),
        "reliable": st.column_config.CheckboxColumn("reliable"),
    },
)
st.caption("PHQ figures are estimates from facial expression, not diagnoses. Select a row to open the session.")

selected = event.selection.rows if event is not None and hasattr(event, "selection") else []
options = shown["session_id"].tolist()
picked = st.selectbox("Open session", options, index=None, placeholder="choose a session id",
                      format_func=lambda sid: f"session {sid}")
target = shown.iloc[selected[0]]["session_id"] if selected else picked
if target is not None and (selected or st.button("Open", type="primary")):
    st.switch_page(context.page("session"), query_params={"session": str(int(target))})
