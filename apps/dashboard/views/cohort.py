"""Cohort: estimated against recorded PHQ for labelled sessions, with the head's evaluation metrics."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from apps.dashboard import charts, context, data

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
st.caption(f"{head['instrument']} head on {head['feature_source']} features of {head['classifier_name']}; trained on "
           f"{head['n_sessions']} sessions of {head['n_subjects']} subjects.")


def _number(value) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) and math.isfinite(value) else str(value)


st.subheader("Evaluation metrics recorded with the head")
metrics = head["metrics"]
flat = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
if flat:
    cols = st.columns(min(4, len(flat)))
    for number, (name, value) in enumerate(flat.items()):
        cols[number % len(cols)].metric(name, _number(value))
for name, value in metrics.items():
    if isinstance(value, dict):
        with st.expander(name):
            st.json(value)
if not metrics:
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
st.dataframe(table.drop(columns=["subject_id"]), hide_index=True, width="stretch")
