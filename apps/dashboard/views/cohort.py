"""Cohort: estimated against recorded PHQ for labelled sessions, with the head's evaluation metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from apps.dashboard import charts, context, data
from apps.dashboard.text import md
from fervideo.export.head_metrics import head_metrics_table

db_url = context.db_url()
st.title("Cohort")
heads = data.heads(db_url)
if not heads:
    st.info("No PHQ head has been trained on this database yet, so there is nothing to compare.")
    st.stop()

by_id = {head["id"]: head for head in heads}
head_id = st.selectbox("PHQ head", list(by_id), format_func=lambda i: f"{by_id[i]['name']} ({by_id[i]['instrument']})")
head = by_id[head_id]
data.audit_once(db_url, context.user(), "view_cohort", detail={"head_id": head_id})
st.caption(f"{md(head['instrument'])} head on {md(head['feature_source'])} features of {md(head['classifier_name'])}; "
           f"trained on {head['n_sessions']} sessions of {head['n_subjects']} subjects.")

st.subheader("Evaluation metrics recorded with the head")
metrics = head["metrics"]
if head.get("beats_baseline") is False:
    st.error("This model does not beat guessing the cohort mean: its estimates are no better than the average "
             "score of the training cohort.", icon=":material/warning:")
columns, rows = head_metrics_table(metrics)  # the table `fervideo phq evaluate` prints
if rows:
    st.dataframe(pd.DataFrame(rows, columns=["metric", "model", "model 95% CI", "mean baseline",
                                             "baseline 95% CI"]), hide_index=True, width="stretch")
    st.caption(f"Cross-validation: {md(metrics.get('cv', 'unknown'))}, {metrics.get('n_subjects', '?')} subjects, "
               f"{metrics.get('n_sessions', '?')} sessions; 95% intervals from a subject-level bootstrap. The mean "
               "baseline predicts every session as the training folds' mean score.")
else:
    st.info("This head has no stored evaluation metrics.")

table = data.cohort(db_url, head_id, data.fingerprint(db_url))
st.subheader("Estimated against recorded PHQ")
if table.empty:
    st.info("No session scored by this head has a recorded PHQ score.")
    st.stop()
error = table["estimate"] - table["recorded"]
cols = st.columns(4)
cols[0].metric("Labelled sessions", len(table))
cols[1].metric("MAE in this database", f"{np.abs(error).mean():.2f}")
cols[2].metric("Mean error (bias)", f"{error.mean():+.2f}")
cols[3].metric("Recorded inside interval", f"{table['inside_interval'].mean():.0%}")
st.caption("Numbers in this database may include the head's own training sessions, so they can look better than "
           "the held-out metrics above.")
top = 27.0 if head["instrument"] == "PHQ-9" else 24.0
st.altair_chart(charts.predicted_vs_recorded(table, top), width="stretch")
st.dataframe(table.drop(columns=["subject_id"]), hide_index=True, width="stretch", column_config={
    "session_id": st.column_config.NumberColumn("session", format="%d"),
    "recorded": st.column_config.NumberColumn("recorded PHQ total", format="%d"),
    "instrument": st.column_config.TextColumn("scale"),
    "estimate": st.column_config.NumberColumn("PHQ estimate", format="%.1f"),
    "lower": st.column_config.NumberColumn("interval lower", format="%.1f"),
    "upper": st.column_config.NumberColumn("interval upper", format="%.1f"),
    "band": st.column_config.TextColumn("band of the estimate"),
    "inside_interval": st.column_config.CheckboxColumn("recorded inside interval"),
})
