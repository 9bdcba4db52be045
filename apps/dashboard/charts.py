"""Altair charts of the dashboard. Inputs are already downsampled: a chart never holds more than
compute.MAX_DISPLAY_POINTS bins per series, which keeps a one-hour session as quick as a short one."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from apps.dashboard.compute import FACE, NO_FACE, NO_SAMPLE
from apps.dashboard.text import feature_label
from fervideo.labels import CANONICAL_LABELS

# One colour per emotion everywhere (timeline, ribbon, heatmap labels). "No face" is dark grey and
# "not sampled" (no decoded frame at all) a pale sand, so neither reads as the page's white background.
NO_FACE_COLOUR, NO_SAMPLE_COLOUR = "#4d4d4d", "#e8d9b0"
EMOTION_COLOURS = {
    "anger": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happiness": "#f2b701",
    "neutral": "#9aa5b1", "sadness": "#1f77b4", "surprise": "#17becf", NO_FACE: NO_FACE_COLOUR,
    NO_SAMPLE: NO_SAMPLE_COLOUR,
}
STATE_COLOURS = {FACE: "#4c78a8", NO_FACE: NO_FACE_COLOUR, NO_SAMPLE: NO_SAMPLE_COLOUR}
WIDTH = "container"
# Session dates always with day, month and year: Vega's default ticks print "Feb 04" or just "2024".
DATE_FORMAT = "%d %b %Y"
DATE_AXIS = alt.Axis(format=DATE_FORMAT, labelAngle=-30, labelOverlap=True)
# Fit the width to the page but keep each height for the plot itself: with plain "fit", Vega shrinks
# the plot to make room for titles, legends and axes, and a thin ribbon vanishes.
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")


def _emotion_scale(with_empty_states: bool = False) -> alt.Scale:
    domain = list(CANONICAL_LABELS) + ([NO_FACE, NO_SAMPLE] if with_empty_states else [])
    return alt.Scale(domain=domain, range=[EMOTION_COLOURS[name] for name in domain])


def _x(unit: str, divisor: float, field: str = "x") -> alt.X:
    return alt.X(f"{field}:Q", title=f"time ({unit})", scale=alt.Scale(nice=False))


def stacked_probabilities(bins: pd.DataFrame, unit: str, divisor: float,
                          gaps: list[tuple[float, float]]) -> alt.LayerChart:
    """Stacked areas of the label probabilities; stretches without a face are left empty and shaded."""
    long = bins.assign(x=bins["start"] / divisor).melt(
        id_vars=["x"], value_vars=list(CANONICAL_LABELS), var_name="emotion", value_name="probability")
    area = alt.Chart(long).mark_area(interpolate="step-after").encode(
        x=_x(unit, divisor),
        y=alt.Y("probability:Q", stack="zero", title="probability", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("emotion:N", scale=_emotion_scale(), legend=alt.Legend(orient="top", title=None)),
        order=alt.Order("emotion_order:Q"),
        tooltip=["emotion:N", alt.Tooltip("probability:Q", format=".2f")],
    ).transform_calculate(emotion_order=f"indexof({list(CANONICAL_LABELS)!r}, datum.emotion)")
    gap_frame = pd.DataFrame(gaps, columns=["start", "end"]) / divisor
    shade = alt.Chart(gap_frame).mark_rect(color="#000000", opacity=0.08).encode(x="start:Q", x2="end:Q")
    return alt.layer(shade, area).properties(height=260, width=WIDTH, title="Emotion probabilities", autosize=FIT_WIDTH)


def dominant_ribbon(bins: pd.DataFrame, unit: str, divisor: float) -> alt.Chart:
    """The most probable emotion per time bin, with its legend (the two empty states included) and a time axis."""
    frame = bins.assign(x=bins["start"] / divisor, x2=bins["end"] / divisor)
    return alt.Chart(frame).mark_rect().encode(
        x=_x(unit, divisor), x2="x2:Q",
        color=alt.Color("dominant:N", scale=_emotion_scale(with_empty_states=True),
                        legend=alt.Legend(orient="bottom", title=None, columns=9, symbolType="square")),
        tooltip=[alt.Tooltip("dominant:N", title="dominant emotion")],
    ).properties(height=28, width=WIDTH, title="Dominant emotion", autosize=FIT_WIDTH)


def coverage_track(bins: pd.DataFrame, unit: str, divisor: float) -> alt.Chart:
    """Share of sampled frames with a face per bin (blue, its height the share); a bin with frames but no
    face is a full dark-grey bar, a bin without any decoded frame a full pale bar."""
    frame = bins.assign(x=bins["start"] / divisor, x2=bins["end"] / divisor,
                        bar=np.where(bins["state"] == FACE, bins["coverage"], 1.0))
    states = list(STATE_COLOURS)
    return alt.Chart(frame).mark_rect().encode(
        x=_x(unit, divisor), x2="x2:Q",
        y=alt.Y("bar:Q", title="face", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", tickCount=2)),
        y2=alt.Y2(datum=0),
        color=alt.Color("state:N", scale=alt.Scale(domain=states, range=[STATE_COLOURS[s] for s in states]),
                        legend=alt.Legend(orient="bottom", title=None)),  # at the side it would narrow the plot
        tooltip=[alt.Tooltip("state:N", title="frames"),
                 alt.Tooltip("coverage:Q", format=".0%", title="face coverage")],
    ).properties(height=60, width=WIDTH, title="Face coverage", autosize=FIT_WIDTH)


def valence_arousal(bins: pd.DataFrame, unit: str, divisor: float) -> alt.Chart:
    long = bins.assign(x=bins["start"] / divisor).melt(
        id_vars=["x"], value_vars=["valence", "arousal"], var_name="axis", value_name="value")
    return alt.Chart(long).mark_line().encode(
        x=_x(unit, divisor),
        y=alt.Y("value:Q", title="circumplex proxy", scale=alt.Scale(domain=[-1, 1])),
        color=alt.Color("axis:N", scale=alt.Scale(domain=["valence", "arousal"], range=["#2ca02c", "#ff7f0e"]),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=["axis:N", alt.Tooltip("value:Q", format=".2f")],
    ).properties(height=160, width=WIDTH, title="Valence and arousal (derived)", autosize=FIT_WIDTH)


def transition_heatmap(matrix: list[list[float | None]]) -> alt.LayerChart:
    cells = pd.DataFrame(
        [{"from": a, "to": b, "p": matrix[i][j]} for i, a in enumerate(CANONICAL_LABELS)
         for j, b in enumerate(CANONICAL_LABELS)])
    order = list(CANONICAL_LABELS)
    base = alt.Chart(cells).encode(x=alt.X("to:N", sort=order), y=alt.Y("from:N", sort=order))
    heat = base.mark_rect().encode(
        color=alt.Color("p:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="P(to | from)"),
        tooltip=["from:N", "to:N", alt.Tooltip("p:Q", format=".2f")])
    # A row never left (the emotion never dominated) has no probabilities: its cells stay blank.
    text = base.transform_filter("isValid(datum.p)").mark_text(fontSize=11).encode(
        text=alt.Text("p:Q", format=".2f"),
        color=alt.condition("datum.p > 0.5", alt.value("white"), alt.value("black")))
    return alt.layer(heat, text).properties(height=320, width=WIDTH, title="Dominant-emotion transitions",
                                            autosize=FIT_WIDTH)


def phq_over_time(sessions: pd.DataFrame, recorded: pd.DataFrame) -> alt.LayerChart:
    estimates = sessions.dropna(subset=["phq_estimate"])
    base = alt.Chart(estimates).encode(x=alt.X("recorded_at:T", title="session date", axis=DATE_AXIS))
    interval = base.mark_rule(strokeWidth=3, opacity=0.4).encode(
        y=alt.Y("phq_lower:Q", title="PHQ score", scale=alt.Scale(domain=[0, 27])), y2="phq_upper:Q")
    points = base.mark_line(point=True).encode(
        y="phq_estimate:Q",
        tooltip=[alt.Tooltip("recorded_at:T", format=DATE_FORMAT),
                 alt.Tooltip("phq_estimate:Q", format=".1f", title="estimate"),
                 "phq_lower:Q", "phq_upper:Q", "band:N"])
    layers = [interval, points]
    if len(recorded):
        layers.append(alt.Chart(recorded).mark_point(shape="diamond", size=90, color="#d62728", filled=True).encode(
            x=alt.X("recorded_at:T", axis=DATE_AXIS), y="total:Q",
            tooltip=[alt.Tooltip("recorded_at:T", format=DATE_FORMAT), "instrument:N", "total:Q"]))
    return alt.layer(*layers).properties(
        height=280, width=WIDTH, autosize=FIT_WIDTH,
        title="PHQ estimate with interval (line) and recorded PHQ (red diamonds)")


def feature_trends(features: pd.DataFrame, names: list[str]) -> alt.Chart:
    long = features.melt(id_vars=["recorded_at"], value_vars=names, var_name="feature", value_name="value")
    long["feature"] = long["feature"].map(feature_label)
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("recorded_at:T", title="session date", axis=DATE_AXIS), y=alt.Y("value:Q", title=None),
        color=alt.Color("feature:N", legend=None),
        tooltip=["feature:N", alt.Tooltip("recorded_at:T", format=DATE_FORMAT), alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=130, width=220).facet(facet="feature:N", columns=3).resolve_scale(y="independent")


def predicted_vs_recorded(table: pd.DataFrame, top: float) -> alt.LayerChart:
    scale = alt.Scale(domain=[0, top])
    base = alt.Chart(table).encode(x=alt.X("recorded:Q", title="recorded PHQ", scale=scale))
    bars = base.mark_rule(opacity=0.35).encode(y=alt.Y("lower:Q", title="estimated PHQ", scale=scale), y2="upper:Q")
    points = base.mark_circle(size=70).encode(
        y="estimate:Q", color=alt.Color("inside_interval:N", title="recorded inside interval"),
        tooltip=["session_id:Q", "recorded:Q", alt.Tooltip("estimate:Q", format=".1f"), "lower:Q", "upper:Q"])
    identity = alt.Chart(pd.DataFrame({"a": [0, top]})).mark_line(strokeDash=[4, 4], color="grey").encode(
        x="a:Q", y="a:Q")
    return alt.layer(identity, bars, points).properties(height=380, width=WIDTH, autosize=FIT_WIDTH,
                                                       title="Estimated against recorded PHQ")
