"""The dashboard on an unhappy database (tests/dashboard_seed.seed_unhappy_database): hostile subject
codes, undated, failed, interrupted, still-running, unreliable, OpenFace and decode-incomplete sessions
and no PHQ head. Every page renders; no user string becomes markup; empty time bins are not "no face"."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import streamlit as st
from dashboard_apptest import SERVER_ADDRESS, charts, markdown_texts, no_images, rendered_text, run_page, serve_from
from dashboard_seed import (
    FAILED_ERROR,
    HOSTILE_CODES,
    HOSTILE_IMAGE,
    UNHAPPY_SESSIONS,
    frame_rows,
    seed_database,
    seed_unhappy_database,
)
from markdown_it import MarkdownIt
from sqlalchemy import create_engine, text

from apps.dashboard import compute
from apps.dashboard.text import md
from fervideo.labels import CANONICAL_LABELS

server_address = SERVER_ADDRESS
RENDER = MarkdownIt("commonmark").enable("table").enable("strikethrough")
# Streamlit's own Markdown extensions: colour directives, icons/emoji shortcodes and LaTeX.
STREAMLIT_SYNTAX = re.compile(r"(?<!\\):[a-z-]+\[|(?<!\\):[a-z_/]+:|(?<!\\)\$[^$]+(?<!\\)\$")


@pytest.fixture
def unhappy(db_url, tmp_path, monkeypatch, server_address) -> dict[str, int]:
    ids = seed_unhappy_database(db_url)
    serve_from(db_url, tmp_path, monkeypatch)
    yield ids
    st.cache_resource.clear()


def assert_no_live_markup(texts: list[str]) -> None:
    """No string renders an image, a link or raw HTML, or uses Streamlit's directives, LaTeX or icons."""
    for value in texts:
        html = RENDER.render(value)
        assert "<img" not in html and "<a " not in html and "<script" not in html, value
        assert not STREAMLIT_SYNTAX.search(value), value


# ------------------------------------------------------------------------------ every page renders
def test_every_page_renders_without_exception_or_live_markup(unhappy):
    at = run_page()
    assert_no_live_markup(markdown_texts(at))
    pages = [("session", {"session": str(unhappy[key])}) for key, *_ in UNHAPPY_SESSIONS]
    pages += [("subject", {"subject": str(unhappy[code])}) for code in HOSTILE_CODES]
    pages += [("cohort", {}), ("session", {}), ("subject", {})]
    for page, params in pages:
        at = run_page(page, **params)
        assert_no_live_markup(markdown_texts(at))
        assert no_images(at), (page, params)


def test_overview_renders_when_no_session_has_a_date(unhappy, db_url):
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE sessions SET recorded_at = NULL"))
    engine.dispose()
    at = run_page()
    assert len(at.dataframe[0].value) == len(UNHAPPY_SESSIONS)
    assert "no date" in " ".join(markdown_texts(at)).lower()  # the date filter says why it is absent


def test_overview_keeps_undated_sessions_and_shows_statuses(unhappy):
    at = run_page()
    table = at.dataframe[0].value
    assert len(table) == len(UNHAPPY_SESSIONS)
    assert {"failed", "interrupted", "running", "done"} <= set(table["status"])
    assert "undated" in set(table["recorded_at"]) and "2024-04-02 10:00" in set(table["recorded_at"])
    text_cells = table.select_dtypes(include=["object", "string"]).astype(str).to_numpy().ravel()
    assert not {"None", "nan", "NaN", "True", "False"} & set(text_cells)  # words, never Python's


def test_subject_page_keeps_undated_sessions_off_the_time_axes(unhappy):
    at = run_page("subject", subject=str(unhappy[HOSTILE_IMAGE]))  # one undated, one dated session
    table = at.dataframe[0].value
    assert list(table["recorded_at"]) == ["undated", "2024-04-02"]
    assert "None" not in set(table.astype(str).to_numpy().ravel())
    assert "1 undated session(s) are left off the time axes" in " ".join(rendered_text(c.value) for c in at.caption)
    trends = next(chart for chart in at.get("vega_lite_chart") if '"facet"' in chart.proto.spec)
    rows = pd.concat([pa.ipc.open_stream(dataset.data.data).read_all().to_pandas()
                      for dataset in trends.proto.datasets])
    assert rows["recorded_at"].nunique() == 1 and rows["recorded_at"].iloc[0].year == 2024  # the dated one only


# ---------------------------------------------------------------------------- user strings escaped
def test_session_caption_shows_a_hostile_subject_code_as_text(unhappy):
    at = run_page("session", session=str(unhappy["undated"]))
    caption = next(c.value for c in at.caption if "Subject" in c.value)
    assert HOSTILE_IMAGE in rendered_text(caption)
    assert "<img" not in RENDER.render(caption)


def test_failed_session_shows_its_error_as_text(unhappy):
    at = run_page("session", session=str(unhappy["failed"]))
    shown = [value for value in markdown_texts(at) if "could not decode" in value]
    assert shown and FAILED_ERROR in rendered_text(shown[0])
    assert_no_live_markup(shown)


@pytest.mark.parametrize("value", [*HOSTILE_CODES, "a\\b", "line one\nline two", "#1 * 2 + 3 - 4", "~~x~~ ==y=="])
def test_md_escapes_every_markdown_construct(value):
    escaped = md(value)
    assert rendered_text(escaped) == value.replace("\n", " ")
    assert_no_live_markup([escaped])


# ----------------------------------------------------------------------------- warnings and states
def test_quality_warnings_name_incomplete_decoding_and_states():
    frames = pd.DataFrame(frame_rows(1, 20.0))
    meta = {"status": "done", "warnings": ["decode_incomplete"], "frames_planned": 100, "frames_decoded": 90}
    joined = " ".join(compute.quality_warnings(meta, frames, None))
    assert "90 of 100" in joined and "decod" in joined
    assert "interrupted" in " ".join(compute.quality_warnings({"status": "interrupted"}, frames, None))
    assert "still being processed" in " ".join(compute.quality_warnings({"status": "running"}, frames, None))
    assert compute.quality_warnings({"status": "done"}, frames, None) == []  # older rows: no warnings column


# ---------------------------------------------------------------------------------- time bins (item 3)
def _frames(duration_s: float, fps: float, no_sample: tuple[float, float] | None = None) -> pd.DataFrame:
    t = np.arange(int(duration_s * fps)) / fps
    if no_sample is not None:
        t = t[(t < no_sample[0]) | (t >= no_sample[1])]
    probs = np.full((len(t), len(CANONICAL_LABELS)), 1 / len(CANONICAL_LABELS))
    probs[:, CANONICAL_LABELS.index("happiness")] += 0.1
    probs /= probs.sum(axis=1, keepdims=True)
    return pd.DataFrame({"frame_index": np.arange(len(t)), "t": t, "face_found": True,
                         **{label: probs[:, i] for i, label in enumerate(CANONICAL_LABELS)}})


def test_full_coverage_timeline_has_no_holes():
    """600 frames at 5 fps (t up to 119.8 s): bins must tile the time axis, every one with a face."""
    bins = compute.timeline(_frames(120, 5.0), 0.0, 0.0, 119.8)
    assert np.allclose(bins["end"].to_numpy()[:-1], bins["start"].to_numpy()[1:])  # contiguous
    assert (bins["state"] == compute.FACE).all() and (bins["coverage"] == 1).all()
    ends_later = compute.timeline(_frames(120, 5.0), 0.0, 0.0, 120.0)  # the slider's whole seconds
    assert (ends_later["state"] == compute.FACE).all() and len(ends_later) == 600


def test_bins_without_samples_differ_from_bins_without_a_face():
    frames = _frames(60, 5.0, no_sample=(20.0, 30.0))
    frames.loc[frames["t"].between(40, 45), "face_found"] = False
    frames.loc[~frames["face_found"], list(CANONICAL_LABELS)] = np.nan
    bins = compute.timeline(frames, 0.0, 0.0, float(frames["t"].iloc[-1]))
    middle = (bins["start"] + bins["end"]) / 2
    assert set(bins.loc[middle.between(21, 29), "state"]) == {compute.NO_SAMPLE}
    assert set(bins.loc[middle.between(41, 44), "state"]) == {compute.NO_FACE}
    assert bins.loc[middle.between(21, 29), "coverage"].isna().all()


def test_dominant_strip_has_a_legend_a_time_axis_and_distinct_empty_colours(unhappy):
    at = run_page("session", session=str(unhappy["full_coverage"]))
    strip = next(spec for spec in charts(at) if "Dominant emotion" in str(spec.get("title")))
    encoding = strip.get("encoding") or strip["layer"][0]["encoding"]
    assert encoding["color"].get("legend") is not None
    assert (encoding["x"].get("axis") or {}).get("labels", True) is not False and "time" in encoding["x"]["title"]
    colours = dict(zip(encoding["color"]["scale"]["domain"], encoding["color"]["scale"]["range"], strict=True))
    assert colours[compute.NO_FACE] != colours[compute.NO_SAMPLE]
    assert colours[compute.NO_FACE].lower() not in ("#fff", "#ffffff", "white")


def test_transition_heatmap_leaves_undefined_cells_blank():
    """A row for an emotion that never dominated has no probabilities: its cells print nothing, not "null"."""
    from apps.dashboard import charts as dashboard_charts

    matrix = [[None] * 7 if i == 0 else [1 / 7] * 7 for i in range(7)]
    spec = dashboard_charts.transition_heatmap(matrix).to_dict()
    text_layer = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "text")
    assert {"filter": "isValid(datum.p)"} in text_layer.get("transform", [])


def test_estimates_of_a_weak_head_are_never_shown_plainly(db_url, tmp_path, monkeypatch, server_address):
    ids = seed_database(db_url, beats_baseline=False)
    serve_from(db_url, tmp_path, monkeypatch)
    at = run_page()
    table = at.dataframe[0].value
    assert list(table["phq_estimate"])[:3] == ["14.2 ⚠", "11.0 ⚠", "7.5 ⚠"]
    assert table["phq_warnings"].str.contains("does not beat guessing the cohort mean").sum() == 3
    at = run_page("session", session=str(ids["session0"]))
    assert "does not beat guessing the cohort mean" in " ".join(rendered_text(w.value) for w in at.warning)
    at = run_page("cohort")
    assert "does not beat guessing the cohort mean" in " ".join(rendered_text(e.value) for e in at.error)
    st.cache_resource.clear()
