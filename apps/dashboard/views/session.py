"""One session: emotion timeline, dominant-emotion ribbon, face coverage, valence/arousal, a time range
with its own summary, feature cards, the PHQ estimate with its caveats, transitions, data quality,
provenance and downloads."""

from __future__ import annotations

import functools
import math

import pandas as pd
import streamlit as st

from apps.dashboard import charts, compute, context, data
from apps.dashboard.text import feature_label, md, number
from fervideo.export import face_gaps, feature_definitions, phq_caveats
from fervideo.phq import severity_band

SMOOTHING_CHOICES_S = [0, 1, 2, 5, 10, 30, 60]
KEY_FEATURES = ("face_found_fraction", "valence_mean", "arousal_mean", "expressivity", "emodiversity",
                "pos_neg_balance", "transitions_per_min", "self_transition_rate", "entropy_mean")

db_url = context.db_url()
overview = data.overview(db_url, data.fingerprint(db_url))
session_id = context.int_param("session")
if session_id is None or session_id not in set(overview["session_id"]):
    st.title("Session")
    if overview.empty:
        st.info("No sessions in this database yet.")
        st.stop()
    choice = st.selectbox("Choose a session", overview["session_id"].tolist(), index=None,
                          format_func=lambda sid: f"session {sid}", placeholder="session id")
    if choice is not None:
        st.query_params["session"] = str(choice)
        st.rerun()
    st.stop()

meta = data.session_meta(db_url, session_id)
data.audit_once(db_url, context.user(), "view_session", session_id=session_id, subject_id=meta["subject_id"])
frames = data.session_frames(db_url, session_id, meta["updated_at"])
features = data.session_features(db_url, session_id)

st.title(f"Session {session_id}")
recorded = meta["recorded_at"].strftime("%Y-%m-%d %H:%M") if meta["recorded_at"] else "date unknown"
source = " · imported from OpenFace" if meta.get("source") == "openface" else ""
st.caption(f"Subject {md(meta['subject_code'])} · recorded {recorded} · {md(meta['status'])}{source}")
st.page_link(context.page("subject"), label="All sessions of this subject", icon=":material/person:",
             query_params={"subject": str(meta["subject_id"])})

for warning in compute.quality_warnings(meta, frames, features):
    st.warning(md(warning), icon=":material/warning:")
if meta.get("error"):
    st.error(f"Processing error: {md(meta['error'])}")
if frames.empty:
    st.info("This session has no stored frames.")
    st.stop()

# ---------------------------------------------------------------------------------------- controls
t_first, t_last = float(frames["t"].iloc[0]), float(frames["t"].iloc[-1])
unit, divisor = compute.time_unit(t_last - t_first)
controls = st.columns([1, 3])
window_s = controls[0].select_slider("Smoothing window (s)", SMOOTHING_CHOICES_S, value=2, key="smoothing")
low, high = controls[1].slider(
    "Time range (s)", min_value=math.floor(t_first), max_value=math.ceil(t_last),
    value=(math.floor(t_first), math.ceil(t_last)), step=1, key="time_range")
t0, t1 = float(low), float(high)

# ------------------------------------------------------------------------------------------ charts
bins = data.session_timeline(db_url, session_id, meta["updated_at"], float(window_s), t0, t1)
gaps = [(max(gap["start_s"], t0), min(gap["end_s"], t1)) for gap in face_gaps(frames)
        if gap["end_s"] >= t0 and gap["start_s"] <= t1]
st.altair_chart(charts.stacked_probabilities(bins, unit, divisor, gaps), width="stretch")
st.altair_chart(charts.dominant_ribbon(bins, unit, divisor), width="stretch")
st.altair_chart(charts.coverage_track(bins, unit, divisor), width="stretch")
st.altair_chart(charts.valence_arousal(bins, unit, divisor), width="stretch")
st.caption(f"{len(frames):,} sampled frames shown as {len(bins):,} time bins. Valence and arousal are "
           "derived from the emotion probabilities (circumplex proxy), not measured.")

# ------------------------------------------------------------------------------- range summary
summary = data.session_range_summary(db_url, session_id, meta["updated_at"], t0, t1)
st.subheader(f"Summary for {t0:.0f}–{t1:.0f} s")
cols = st.columns(5)
cols[0].metric("Face coverage", f"{summary['face_coverage']:.0%}")
cols[1].metric("Frames with a face", f"{summary['face_frames']:,}")
cols[2].metric("Dominant emotion", summary["dominant_emotion"] or "no face")
cols[3].metric("Mean valence", "–" if math.isnan(summary["valence_mean"]) else f"{summary['valence_mean']:+.2f}")
cols[4].metric("Mean arousal", "–" if math.isnan(summary["arousal_mean"]) else f"{summary['arousal_mean']:+.2f}")
st.dataframe(pd.DataFrame([summary["mean_distribution"]], index=["mean probability"]), width="stretch")

# ------------------------------------------------------------------------------------------- PHQ
st.subheader("PHQ estimate")
predictions = data.session_predictions(db_url, session_id)
if not predictions:
    st.info("No PHQ estimate for this session yet (no trained head has scored it).")
for prediction in predictions:
    cols = st.columns([1, 2])
    cols[0].metric(f"{prediction['instrument']} estimate", f"{prediction['estimate']:.1f}",
                   help="A statistical estimate from facial expression; it is not a questionnaire result.")
    cols[1].markdown(
        f"**{prediction['coverage']:.0%} interval:** {prediction['lower']:.1f} – {prediction['upper']:.1f}  \n"
        f"**Band:** {md(prediction['band'])} (the interval spans {severity_band(prediction['lower'])} to "
        f"{severity_band(prediction['upper'])})  \n**Head:** {md(prediction['head'])}")
    for caveat in compute.prediction_warnings(prediction, meta["classifier_sha256"]):
        st.warning(md(caveat), icon=":material/warning:")
# One interval note when all heads agree on its coverage and method.
intervals = {(prediction["coverage"], prediction["interval_method"]) for prediction in predictions}
coverage, method = intervals.pop() if len(intervals) == 1 else (None, None)
st.info("  \n".join(md(caveat) for caveat in phq_caveats(coverage, method)), icon=":material/info:")
for label in data.session_labels(db_url, session_id):
    st.caption(f"Recorded {md(label['instrument'])} total for this session: **{label['total']}**")

# --------------------------------------------------------------------------------------- features
st.subheader("Session features")
if features is None:
    st.info("Features have not been computed for this session yet (`fervideo features`).")
else:
    definitions = feature_definitions()
    values = features["values"]
    names = [n for n in KEY_FEATURES if n in values] or sorted(values)[:9]
    grid = st.columns(3)
    for position, name in enumerate(names):
        with grid[position % 3].container(border=True):
            value = values[name]
            st.metric(md(feature_label(name)), number(value), help=md(name))
            st.caption(definitions.get(name) or "No definition recorded for this feature.")
    with st.expander("All features"):
        st.dataframe(pd.DataFrame({"feature": [feature_label(n) for n in values],
                                   "value": [number(v, ".4g") for v in values.values()],
                                   "meaning": [definitions.get(n, "") for n in values], "name": list(values)}),
                     hide_index=True, width="stretch")
    if summary.get("features") and (t0 > t_first or t1 < t_last):
        with st.expander("Features recomputed for the selected time range"):
            st.dataframe(pd.DataFrame({"feature": [feature_label(n) for n in summary["features"]],
                                       "value": [number(v, ".4g") for v in summary["features"].values()],
                                       "name": list(summary["features"])}),
                         hide_index=True, width="stretch")
    if features["transition_matrix"] is not None:
        st.altair_chart(charts.transition_heatmap(features["transition_matrix"]), width="stretch")

# ------------------------------------------------------------------------------------- provenance
st.subheader("Provenance")
provenance = {key: meta[key] for key in ("package_version", "classifier_name", "classifier_sha256", "detector_name",
                                         "detector_params", "sample_fps", "settings_key", "device", "finished_at")}
provenance["feature_version"] = features["feature_version"] if features else None
st.json(provenance, expanded=False)

# -------------------------------------------------------------------------------------- downloads
st.subheader("Downloads")
cols = st.columns(len(data.DOWNLOADS))
for column, (kind, (label, suffix, mime)) in zip(cols, data.DOWNLOADS.items(), strict=True):
    # Deferred: the file is built, and the audit row written, only when someone clicks.
    column.download_button(
        label, data=functools.partial(data.audited_download, db_url, session_id, meta["subject_id"], kind,
                                      context.user()),
        file_name=f"session_{session_id}_{suffix}", mime=mime, key=f"download_{kind}", on_click="ignore")
