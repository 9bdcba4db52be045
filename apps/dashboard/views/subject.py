"""One subject across sessions: PHQ estimates with intervals, recorded PHQ, feature trends, change."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from apps.dashboard import charts, context, data
from apps.dashboard.text import feature_label, number

TREND_FEATURES = ("face_found_fraction", "valence_mean", "arousal_mean", "expressivity", "emodiversity",
                  "pos_neg_balance", "mean_sadness", "mean_happiness", "transitions_per_min")

db_url = context.db_url()
subjects = data.subjects(db_url)
st.title("Subject")
if subjects.empty:
    st.info("No subjects in this database yet.")
    st.stop()

codes = dict(zip(subjects["subject_id"], subjects["subject"], strict=True))
wanted = context.int_param("subject")
subject_id = st.selectbox("Subject", list(codes), format_func=codes.get,
                          index=list(codes).index(wanted) if wanted in codes else 0)
st.query_params["subject"] = str(subject_id)
data.audit_once(db_url, context.user(), "view_subject", subject_id=subject_id)
history = data.subject_history(db_url, subject_id, data.fingerprint(db_url))
sessions, features, recorded = history["sessions"], history["features"], history["recorded"]

undated = int((~sessions["dated"]).sum())
note = (f" {undated} undated session(s) are left off the time axes (no `--recorded-at`); the table lists them."
        if undated else "")
st.caption(f"{len(sessions)} session(s). Estimates are not diagnoses; recorded scores are questionnaire totals."
           + note)
dated = sessions[sessions["dated"]]
dated_recorded = recorded[recorded["session_id"].isin(dated["session_id"]) | recorded["session_id"].isna()]
if dated["phq_estimate"].notna().any() or len(dated_recorded):
    st.altair_chart(charts.phq_over_time(dated, dated_recorded), width="stretch")
else:
    st.info("No PHQ estimates or recorded PHQ scores for this subject yet" + (" (with a session date)." if undated
                                                                             else "."))

# Its recorded_total is the label training would use (fervideo.phq.matching). Numbers become text so a
# missing one reads "–", not the grid's "None".
st.dataframe(sessions.drop(columns=["dated"]).assign(
    recorded_at=[f"{when:%Y-%m-%d}" if is_dated else "undated"
                 for when, is_dated in zip(sessions["recorded_at"], sessions["dated"], strict=True)],
    phq_estimate=sessions["phq_estimate"].map(lambda v: number(v, ".1f")),
    phq_lower=sessions["phq_lower"].map(lambda v: number(v, ".1f")),
    phq_upper=sessions["phq_upper"].map(lambda v: number(v, ".1f")),
    recorded_total=sessions["recorded_total"].map(lambda v: number(v, ".0f")),
    reliable=sessions["reliable"].map(lambda value: "not computed" if pd.isna(value) else
                                      ("reliable" if value else "flagged")),
    band=sessions["band"].replace("", "–"), instrument=sessions["instrument"].replace("", "–"),
), hide_index=True, width="stretch", column_config={
    "session_id": st.column_config.NumberColumn("session", format="%d"),
    "recorded_at": st.column_config.TextColumn("recorded"),
    "phq_estimate": st.column_config.TextColumn("PHQ estimate"),
    "phq_lower": st.column_config.TextColumn("interval lower"),
    "phq_upper": st.column_config.TextColumn("interval upper"),
    "band": st.column_config.TextColumn("band of the estimate"),
    "instrument": st.column_config.TextColumn("scale"),
    "reliable": st.column_config.TextColumn("features"),
    "recorded_total": st.column_config.TextColumn("recorded PHQ total"),
})


def _change_table(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Latest value against the first and the previous session, per feature (PHQ estimate included)."""
    rows = []
    for name in names:
        series = frame[name].dropna() if name in frame else pd.Series(dtype=float)
        if series.empty:
            continue
        latest, first = series.iloc[-1], series.iloc[0]
        previous = series.iloc[-2] if len(series) > 1 else float("nan")
        rows.append({"measure": feature_label(name), "first": first, "previous": previous, "latest": latest,
                     "change since first": latest - first, "change since previous": latest - previous})
    return pd.DataFrame(rows, columns=["measure", "first", "previous", "latest", "change since first",
                                       "change since previous"])


st.subheader("Change since the first and the previous session")
if features.empty:
    st.info("Features have not been computed for this subject's sessions yet.")
    combined = sessions[["session_id", "phq_estimate"]]
    trend_names: list[str] = []
else:
    trend_names = [n for n in TREND_FEATURES if n in features]
    combined = sessions[["session_id", "phq_estimate"]].merge(features, on="session_id", how="left")
change = _change_table(combined, ["phq_estimate", *trend_names])
st.dataframe(change, hide_index=True, width="stretch", column_config={
    c: st.column_config.NumberColumn(format="%+.3f" if c.startswith("change") else "%.3f")
    for c in change.columns if c != "measure"})

if trend_names and features["dated"].any():
    st.subheader("Feature trends")
    st.altair_chart(charts.feature_trends(features[features["dated"]], trend_names), width="content")

st.subheader("Open a session")
for session_id in sessions["session_id"]:
    st.page_link(context.page("session"), label=f"Session {session_id}", query_params={"session": str(session_id)})
