"""Sessions overview: every subject's sessions with coverage, classifier, PHQ estimate and flags."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.dashboard import context, data
from apps.dashboard.text import md, number

# Raw column -> what the table shows. The raw names stay in the downloads (fervideo export, the
# Session page's buttons); a reader of this table gets words and units.
COLUMNS = {
    "session_id": st.column_config.NumberColumn("session", format="%d", width="small"),
    "subject": st.column_config.TextColumn("subject"),
    "recorded_at": st.column_config.TextColumn("recorded"),
    "duration_min": st.column_config.TextColumn("duration (min)"),
    # "auto": green from 50 % up, red below, the share under which the Session page warns.
    "face_coverage": st.column_config.ProgressColumn("face coverage", min_value=0.0, max_value=1.0,
                                                     format="percent", color="auto"),
    "classifier": st.column_config.TextColumn("emotion classifier"),
    "status": st.column_config.TextColumn("processing"),
    "phq_estimate": st.column_config.TextColumn("PHQ estimate"),
    "phq_interval": st.column_config.TextColumn("PHQ interval"),
    "band": st.column_config.TextColumn("PHQ band"),
    "instrument": st.column_config.TextColumn("scale"),
    "phq_warnings": st.column_config.TextColumn("PHQ caveats", width="medium"),
    "reliable": st.column_config.TextColumn("features"),
    "flags": st.column_config.TextColumn("reliability flags", width="large"),
    "warnings": st.column_config.TextColumn("processing warnings", width="medium"),
}
RELIABILITY = {True: "reliable", False: "flagged", None: "not computed"}
# What a reader needs first, so the flags are on screen without scrolling; the rest follows.
COLUMN_ORDER = ("session_id", "subject", "recorded_at", "status", "face_coverage", "phq_estimate", "phq_interval",
                "band", "phq_warnings", "reliable", "flags", "warnings", "duration_min", "instrument", "classifier")

db_url = context.db_url()
data.audit_once(db_url, context.user(), "view_overview")
table = data.overview(db_url, data.fingerprint(db_url))

st.title("Sessions")
if table.empty:
    st.info("No sessions in this database yet. Process a recording with `fervideo process VIDEO --subject CODE`.")
    st.stop()


def _date_filter(column, table: pd.DataFrame) -> pd.Series:
    """Sessions inside the chosen date range; undated sessions always stay (they cannot be placed)."""
    dates = table["recorded_at"].dropna()
    if dates.empty:
        column.caption("No session has a recording date (`fervideo process --recorded-at`), so there is no date "
                       "filter.")
        return pd.Series(True, index=table.index)
    first, last = dates.min().date(), dates.max().date()
    date_range = column.date_input("Recorded between", (first, last), min_value=first, max_value=last)
    if not (isinstance(date_range, tuple) and len(date_range) == 2):
        return pd.Series(True, index=table.index)
    day = table["recorded_at"].dt.date
    return table["recorded_at"].isna() | ((day >= date_range[0]) & (day <= date_range[1]))


def _filters(table: pd.DataFrame) -> pd.DataFrame:
    left, middle, right, flags_col = st.columns([2, 2, 2, 1.5])
    chosen = left.multiselect("Subject", sorted(table["subject"].unique()), placeholder="all subjects")
    keep = _date_filter(middle, table)
    bands = right.multiselect("PHQ band", sorted(table["band"].unique()), placeholder="all bands")
    flag = flags_col.selectbox("Reliability", ["all", "reliable only", "flagged only"])
    if chosen:
        keep &= table["subject"].isin(chosen)
    if bands:
        keep &= table["band"].isin(bands)
    if flag == "reliable only":
        keep &= table["reliable"].fillna(False).astype(bool)
    elif flag == "flagged only":
        keep &= ~table["reliable"].fillna(False).astype(bool)
    return table[keep]


def _for_display(shown: pd.DataFrame) -> pd.DataFrame:
    """Words for the states a raw table would print as None/NaN/True."""
    return shown.drop(columns=["subject_id", "source"]).assign(
        # Text, so an undated session reads "undated" rather than the grid's "None"; ISO order still sorts.
        recorded_at=shown["recorded_at"].map(lambda when: "undated" if pd.isna(when) else f"{when:%Y-%m-%d %H:%M}"),
        # Numbers that can be missing become text, so a gap reads "–" rather than the grid's "None".
        duration_min=shown["duration_min"].map(lambda value: number(value, ".1f")),
        # An estimate with caveats carries a mark, so it is never read plainly; the caveats follow it.
        phq_estimate=[number(value, ".1f") + (" ⚠" if caveats else "")
                      for value, caveats in zip(shown["phq_estimate"], shown["phq_warnings"], strict=True)],
        reliable=shown["reliable"].map(lambda value: RELIABILITY[None if pd.isna(value) else bool(value)]),
        instrument=shown["instrument"].replace("", "–"),
        phq_interval=shown["phq_interval"].replace("", "–"),
    )


shown = _filters(table)
c1, c2, c3 = st.columns(3)
c1.metric("Subjects", shown["subject"].nunique())
c2.metric("Sessions", len(shown))
c3.metric("Flagged sessions", int((~shown["reliable"].fillna(False).astype(bool)).sum()))

event = st.dataframe(_for_display(shown), hide_index=True, width="stretch", on_select="rerun",
                     selection_mode="single-row", key="sessions_table", column_config=COLUMNS,
                     column_order=COLUMN_ORDER)
st.caption("PHQ figures are estimates from facial expression, not diagnoses. Select a row to open the session.")

# Long reliability notes and warnings do not fit a table cell: the full text of each, per session.
noted = shown[(shown["flags"] != "") | (shown["warnings"] != "") | (shown["status"] != "done")
               | (shown["phq_warnings"] != "")]
if len(noted):
    with st.expander(f"Why {len(noted)} session(s) are flagged, unfinished or warned about"):
        for row in noted.itertuples():
            reasons = [text for text in (row.status if row.status != "done" else "", row.flags, row.warnings,
                                         row.phq_warnings) if text]
            st.markdown(f"- **Session {row.session_id}** (subject {md(row.subject)}): {md('; '.join(reasons))}")

selected = event.selection.rows if event is not None and hasattr(event, "selection") else []
options = shown["session_id"].tolist()
picked = st.selectbox("Open session", options, index=None, placeholder="choose a session id",
                      format_func=lambda sid: f"session {sid}")
target = shown.iloc[selected[0]]["session_id"] if selected else picked
if target is not None and (selected or st.button("Open", type="primary")):
    st.switch_page(context.page("session"), query_params={"session": str(int(target))})
