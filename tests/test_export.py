"""Exports: tables read back equal to the store, the JSON summary follows its schema, the report holds
its figures and numbers, the PDF renders, names are safe, nothing is overwritten or left half-written."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fervideo.errors import ExportError, NotFoundError
from fervideo.export import (
    cohort_table,
    export_sessions,
    face_gaps,
    frames_table,
    output_path,
    plan_export,
    render_report_html,
    sanitise_name,
    select_session_ids,
    session_summary,
    summary_schema,
    summary_to_csv,
    validate_summary,
)
from fervideo.export import files as export_files
from fervideo.export.csv_cells import neutralise_table
from fervideo.labels import CANONICAL_LABELS
from fervideo.store import (
    Frame,
    PhqHead,
    PhqLabel,
    PhqPrediction,
    SessionFeatures,
    SessionStatus,
    Subject,
    VideoSession,
    frame_table,
    open_database,
)

N_FRAMES = 600
FPS = 5.0
CLASSIFIER_SHA = "a" * 64
GAPS = ((100, 120), (300, 303), (590, 600))  # frame ranges without a face: 4 s, 0.6 s, and 2 s at the end
FEATURES = {"mean_happiness": 0.31, "mean_sadness": 0.12, "expressivity": 0.44, "undefined_one": None}


def _timeline(rng: np.random.Generator) -> list[dict]:
    faceless = np.zeros(N_FRAMES, dtype=bool)
    for start, stop in GAPS:
        faceless[start:stop] = True
    logits = rng.normal(size=(N_FRAMES, len(CANONICAL_LABELS)))
    logits[:, CANONICAL_LABELS.index("happiness")] += np.sin(np.arange(N_FRAMES) / 40) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = []
    for index in range(N_FRAMES):
        row = {"frame_index": index, "t": index / FPS, "face_found": not faceless[index]}
        if not faceless[index]:
            row.update(face_score=0.99, x1=10.0, y1=20.0, x2=110.0, y2=140.0, face_size=100.0, sharpness=50.5,
                       yaw=-3.25, **{label: float(p) for label, p in zip(CANONICAL_LABELS, probs[index], strict=True)})
        rows.append(row)
    return rows


def _session(subject: Subject, index: int, status: str = SessionStatus.DONE) -> VideoSession:
    return VideoSession(
        subject=subject, video_path=f"/data/{subject.code}/visit{index}.mp4", video_sha256=f"{index:064x}",
        recorded_at=dt.datetime(2024, 5, index + 1, 10, 30), duration_s=N_FRAMES / FPS, video_fps=25.0,
        frame_count=3000, width=640, height=360, codec="h264", rotation=0, sample_fps=FPS, settings_key="k" * 64,
        status=status, finished_at=dt.datetime(2024, 6, 1, 12, 0), processing_s=12.5, sampled_frames=N_FRAMES,
        face_frames=N_FRAMES - sum(stop - start for start, stop in GAPS), package_version="0.1.0",
        classifier_name="vit-tiny-fer", classifier_sha256=CLASSIFIER_SHA, detector_name="retinaface-mobilenet0.25",
        detector_params={"threshold": 0.8}, device="cpu",
    )


@pytest.fixture
def seeded(tmp_path, any_db_url):
    """The seed on SQLite and on PostgreSQL: every export test on it runs on both."""
    return seed_database(tmp_path, any_db_url)


def seed_database(folder, url: str | None = None) -> tuple:
    """Two subjects (one with a hostile code), three done sessions and one still running."""
    factory = open_database(url or f"sqlite:///{folder / 'db.sqlite'}")
    rng = np.random.default_rng(7)
    with factory() as db:
        alice, hostile = Subject(code="S001"), Subject(code="../../evil/../x")
        sessions = [_session(alice, 0), _session(alice, 1), _session(hostile, 2),
                    _session(alice, 3, status=SessionStatus.RUNNING)]
        db.add_all(sessions)
        db.flush()
        for session in sessions[:3]:
            db.add_all(Frame(session_id=session.id, **row) for row in _timeline(rng))
        db.add(SessionFeatures(session_id=sessions[0].id, feature_version="1", reliable=False,
                               reliability_notes=["face coverage 94% but one gap of 4 s"], values=FEATURES,
                               transition_matrix=[[1 / 7] * 7 for _ in range(7)]))
        head = PhqHead(name="phq8-ridge-v1", path="/heads/phq8", sha256="b" * 64, instrument="PHQ-8",
                       feature_source="video", classifier_name="vit-tiny-fer", classifier_sha256=CLASSIFIER_SHA,
                       n_subjects=120, n_sessions=340, metrics={"mae": 4.1})
        db.add(head)
        db.flush()
        db.add(PhqPrediction(session_id=sessions[0].id, head_id=head.id, estimate=11.4, lower=6.2, upper=16.8,
                             coverage=0.9, band="moderate"))
        db.add(PhqLabel(subject_id=alice.id, session_id=sessions[0].id, instrument="PHQ-8", total=12,
                        administered_at=dt.datetime(2024, 5, 1, 9, 0)))
        db.commit()
        ids = [session.id for session in sessions]
    return factory, ids


# ------------------------------------------------------------------------------------------ tables
def test_frames_csv_and_parquet_read_back_equal_the_database(seeded, tmp_path):
    factory, ids = seeded
    with factory() as db:
        stored = frame_table(db, ids[0], with_quality=True)
    for fmt in ("csv", "parquet"):
        written = export_sessions(factory, [ids[0]], fmt, tmp_path / fmt)
        frames_file = next(path for path in written if path.parent.name == "frames")
        back = (pd.read_csv(frames_file) if fmt == "csv"
                else pd.read_parquet(frames_file))
        assert (back.pop("session_id") == ids[0]).all()
        back["face_found"] = back["face_found"].astype(bool)
        pd.testing.assert_frame_equal(back, stored, check_exact=True)
        assert back["face_found"].sum() == N_FRAMES - 33


def test_cohort_csv_and_parquet_read_back_equal_the_database(seeded, tmp_path):
    factory, ids = seeded
    expected = cohort_table(factory)
    assert list(expected["session_id"]) == ids[:3]  # the running session is left out
    first = expected.iloc[0]
    assert first["phq_estimate"] == 11.4 and first["phq_lower"] == 6.2 and first["phq_upper"] == 16.8
    assert first["phq_band"] == "moderate" and first["phq_coverage"] == 0.9 and first["phq_recorded_total"] == 12
    assert first["feat_mean_happiness"] == 0.31 and np.isnan(first["feat_undefined_one"])
    assert first["classifier_sha256"] == CLASSIFIER_SHA and not first["features_reliable"]
    assert pd.isna(expected.iloc[1]["phq_estimate"]) and pd.isna(expected.iloc[1]["feat_mean_happiness"])

    parquet = pd.read_parquet(export_sessions(factory, ids[:3], "parquet", tmp_path / "p", frames=False)[0])
    pd.testing.assert_frame_equal(parquet, expected, check_exact=True)

    csv = pd.read_csv(export_sessions(factory, ids[:3], "csv", tmp_path / "c", frames=False)[0],
                      parse_dates=["recorded_at", "phq_recorded_at", "processed_at"],
                      dtype={name: "string" for name in expected.columns if expected[name].dtype == "string"})
    assert list(csv.columns) == list(expected.columns)
    for column in expected.columns:
        _assert_same_values(csv[column], expected[column])


def _assert_same_values(read: pd.Series, expected: pd.Series) -> None:
    if expected.dtype == "float64":
        np.testing.assert_array_equal(read.to_numpy(dtype=float), expected.to_numpy(dtype=float), err_msg=read.name)
    else:
        def plain(series: pd.Series) -> list:
            return series.astype(object).where(series.notna(), None).tolist()
        assert plain(read) == plain(expected), read.name


def test_cohort_selection_by_subject(seeded):
    factory, ids = seeded
    assert list(cohort_table(factory, subject="S001")["session_id"]) == ids[:2]
    assert select_session_ids(factory, subject="S001") == ids[:2]
    assert select_session_ids(factory, all_sessions=True) == ids[:3]
    with pytest.raises(ExportError, match="running"):
        select_session_ids(factory, session_id=ids[3])
    with pytest.raises(NotFoundError, match="no session"):
        session_summary(factory, 999)


# -------------------------------------------------------------------------------------------- JSON
def test_json_summary_validates_against_its_schema(seeded, tmp_path):
    factory, ids = seeded
    written = export_sessions(factory, ids[:3], "json", tmp_path / "out", frames=False)
    assert len(written) == 3
    for path in written:
        summary = json.loads(path.read_text())
        validate_summary(summary)
        assert summary["schema_version"] == "1"
    full = json.loads(written[0].read_text())
    assert full["phq"]["estimate"] == 11.4 and full["phq"]["coverage"] == 0.9
    assert any("not a diagnosis" in caveat for caveat in full["phq"]["caveats"])
    assert full["phq_recorded"][0]["total"] == 12
    assert full["features"]["values"]["undefined_one"] is None
    assert full["data_quality"]["gap_count"] == 2 and full["data_quality"]["reliable"] is False
    bare = json.loads(written[1].read_text())
    assert bare["phq"] is None and bare["features"] is None and bare["data_quality"]["reliable"] is None


def test_schema_rejects_a_summary_that_drifts(seeded):
    import jsonschema

    factory, ids = seeded
    summary = session_summary(factory, ids[0])
    summary["phq"]["caveats"] = ["fine"]
    with pytest.raises(jsonschema.ValidationError):
        validate_summary(summary)
    assert summary_schema()["properties"]["schema_version"]["const"] == "1"


def test_summary_to_csv_flattens_the_summary_to_field_value_rows(seeded):
    import io

    factory, ids = seeded
    summary = session_summary(factory, ids[0])
    table = pd.read_csv(io.StringIO(summary_to_csv(summary)), dtype=str, keep_default_na=False)
    assert list(table.columns) == ["field", "value"] and table["field"].is_unique
    values = dict(zip(table["field"], table["value"], strict=True))
    assert values["session.id"] == str(ids[0]) and values["session.subject"] == "S001"
    assert values["phq.head.name"] == "phq8-ridge-v1" and float(values["phq.estimate"]) == 11.4
    assert float(values["data_quality.gaps.0.start_s"]) == 20.0  # lists of objects: one numbered field per value
    assert json.loads(values["labels"]) == list(CANONICAL_LABELS)  # lists of plain values: JSON text
    assert json.loads(values["phq.caveats"]) == summary["phq"]["caveats"]
    assert values["features.values.undefined_one"] == ""  # null: an empty cell


def test_face_gaps():
    frames = pd.DataFrame({"t": np.arange(20) * 0.5, "face_found": [True] * 5 + [False] * 4 + [True] * 8 + [False] * 3})
    assert face_gaps(frames) == [{"start_s": 2.5, "end_s": 4.5, "duration_s": 2.0},
                                 {"start_s": 8.5, "end_s": 10.0, "duration_s": 1.5}]


# ------------------------------------------------------------------------------------------ report
def test_html_report_holds_figures_numbers_and_caveats(seeded):
    factory, ids = seeded
    frames = frames_table(factory, ids[0])
    html = render_report_html(session_summary(factory, ids[0], frames=frames), frames)
    images = html.split('src="data:image/png;base64,')[1:]
    assert len(images) == 2
    for image in images:
        assert base64.b64decode(image.split('"', 1)[0]).startswith(b"\x89PNG")
    for text in ("S001", "2024-05-01 10:30", "2 min 00 s", "vit-tiny-fer", "11.4", "6.2 to 16.8", "90% interval",
                 "moderate", "estimate, not a diagnosis", "Item 9 (suicidality) is not assessed", "Recorded PHQ-8",
                 "94.5%", "mean_happiness", "0.31", "face coverage 94% but one gap of 4 s", "NOT reliable"):
        assert text in html, text
    assert "http://" not in html and "https://" not in html  # self-contained


def test_html_report_without_features_or_prediction_says_so(seeded):
    factory, ids = seeded
    frames = frames_table(factory, ids[1])
    html = render_report_html(session_summary(factory, ids[1], frames=frames), frames)
    assert "No PHQ estimate has been made for this session." in html
    assert "Session features have not been computed for this session yet." in html


def test_decode_warnings_reach_the_summary_and_the_report(seeded, tmp_path):
    factory, ids = seeded
    with factory() as db:
        row = db.get(VideoSession, ids[1])
        row.frames_planned, row.frames_decoded, row.warnings = 600, 540, ["decode_incomplete"]
        db.commit()
    frames = frames_table(factory, ids[1])
    summary = session_summary(factory, ids[1], frames=frames)
    validate_summary(summary)
    quality = summary["data_quality"]
    assert (quality["frames_planned"], quality["frames_decoded"], quality["processing_warnings"]) == (
        600, 540, ["decode_incomplete"])
    html = render_report_html(summary, frames)
    assert "could not be decoded completely (only 540 of 600 planned frames)" in html
    assert '<p class="warning">The video could not be decoded' in html  # boxed, like every caveat
    clean = session_summary(factory, ids[0])
    assert clean["data_quality"]["processing_warnings"] == [] and "decoded completely" not in render_report_html(
        clean, frames_table(factory, ids[0]))


def test_report_escapes_subject_codes(seeded):
    factory, ids = seeded
    with factory() as db:
        db.get(VideoSession, ids[2]).subject.code = "<script>alert(1)</script>"
        db.commit()
    frames = frames_table(factory, ids[2])
    html = render_report_html(session_summary(factory, ids[2], frames=frames), frames)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_pdf_report_renders_to_an_image(seeded, tmp_path):
    factory, ids = seeded
    path = export_sessions(factory, [ids[0]], "pdf", tmp_path / "out")[0]
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:]
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm not installed (apt-get install poppler-utils): PDF not rasterised")
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
                   check=True, capture_output=True)
    page = next(tmp_path.glob("page*.png"))
    assert page.read_bytes().startswith(b"\x89PNG") and page.stat().st_size > 5_000
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
        assert "estimate, not a diagnosis" in text and "11.4" in text


# ------------------------------------------------------------------------------------- CSV formulas
FORMULA_CODES = ['=HYPERLINK("http://host/x","click")', "+1+1", "-2+3", "@SUM(A1:A2)", "\tx", "\rx"]


@pytest.mark.parametrize("code", FORMULA_CODES)
def test_csv_exports_neutralise_formulas_and_keep_negative_numbers(seeded, tmp_path, code):
    factory, ids = seeded
    with factory() as db:
        db.get(VideoSession, ids[2]).subject.code = code
        features = db.get(SessionFeatures, ids[0])
        features.values = {**features.values, "valence_mean": -0.25}
        db.commit()
    written = export_sessions(factory, ids[:3], "csv", tmp_path / "out", frames=False)
    cohort = pd.read_csv(written[0], dtype={"subject": "string"}, keep_default_na=False, na_values=[""])
    subjects = dict(zip(cohort["session_id"], cohort["subject"], strict=True))
    assert subjects[ids[2]] == "'" + code and subjects[ids[0]] == "S001"
    assert cohort["feat_valence_mean"].dtype == "float64" and cohort.loc[0, "feat_valence_mean"] == -0.25
    summary = pd.read_csv(pd.io.common.StringIO(summary_to_csv(session_summary(factory, ids[2]))),
                          keep_default_na=False).set_index("field")["value"]
    assert summary["session.subject"] == "'" + code
    # Every text cell that starts like a formula is quoted: nothing a spreadsheet would run is left.
    for text_cell in [*cohort.select_dtypes("string").stack().tolist(), *summary.tolist()]:
        assert not str(text_cell).startswith(("=", "+", "@", "\t", "\r")), text_cell


def test_neutralise_table_touches_text_cells_only():
    table = pd.DataFrame({"n": [-1.5, 2.0], "i": pd.array([-3, None], dtype="Int64"),
                          "mixed": [-4.0, "-x"], "s": pd.array(["=1", None], dtype="string")})
    safe = neutralise_table(table)
    assert safe["n"].tolist() == [-1.5, 2.0] and safe["i"].tolist()[0] == -3
    assert safe["mixed"].tolist() == [-4.0, "'-x"] and safe["s"].tolist()[0] == "'=1" and pd.isna(safe["s"][1])


# ------------------------------------------------------------------------------------------ safety
@pytest.mark.parametrize("hostile", ["../../etc/passwd", "..", ".", "", "a/b\\c", "/abs", "x\x00y", "ü é"])
def test_names_are_sanitised_or_refused(hostile, tmp_path):
    if hostile.strip() in ("", ".", ".."):
        with pytest.raises(ExportError):
            sanitise_name(hostile)
        return
    name = sanitise_name(hostile)
    assert "/" not in name and "\\" not in name and "\x00" not in name and name[0] not in ".-"
    assert output_path(tmp_path, name).parent == tmp_path.resolve()


def test_output_path_refuses_a_symlink_out_of_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "frames").symlink_to(outside)
    with pytest.raises(ExportError, match="outside"):
        output_path(tmp_path / "out", "frames", "a.csv")


def test_traversal_in_a_subject_code_stays_inside_out(seeded, tmp_path):
    factory, ids = seeded
    out = tmp_path / "deep" / "out"
    for fmt in ("csv", "json", "html"):
        for path in export_sessions(factory, [ids[2]], fmt, out / fmt):
            assert path.resolve().is_relative_to((out / fmt).resolve())
    names = sorted(p.name for p in (out / "json").iterdir())
    assert names == [f"_._.._evil_.._x_session{ids[2]}.summary.json", "frames"]
    assert not (tmp_path / "deep" / "evil").exists() and not (tmp_path / "evil").exists()
    with factory() as db:
        db.get(VideoSession, ids[2]).subject.code = "x" * 128
        db.commit()
    assert [item.path.name for item in plan_export(factory, [ids[2]], "pdf", out)] == [
        f"{'x' * 64}_session{ids[2]}.report.pdf"]


def test_no_overwrite_without_force(seeded, tmp_path):
    factory, ids = seeded
    path = export_sessions(factory, [ids[0]], "html", tmp_path)[0]
    path.write_text("clinician's annotated copy")
    with pytest.raises(ExportError, match="--force"):
        export_sessions(factory, [ids[0]], "html", tmp_path)
    assert path.read_text() == "clinician's annotated copy"
    export_sessions(factory, [ids[0]], "html", tmp_path, force=True)
    assert path.read_text().startswith("<!DOCTYPE html>")


def test_interrupted_export_leaves_no_partial_file(seeded, tmp_path, monkeypatch):
    factory, ids = seeded
    real_fsync = export_files._fsync

    def write_half_then_fail(path):
        assert path.stat().st_size > 0  # the temporary file holds a partial export at this point
        raise KeyboardInterrupt

    monkeypatch.setattr(export_files, "_fsync", write_half_then_fail)
    for fmt in ("parquet", "pdf"):
        with pytest.raises(KeyboardInterrupt):
            export_sessions(factory, [ids[0]], fmt, tmp_path / fmt)
        assert [p for p in (tmp_path / fmt).rglob("*") if p.is_file()] == []

    def fail_midway(temp):
        temp.write_text("a,b\n1,")
        raise OSError("disk full")

    monkeypatch.setattr(export_files, "_fsync", real_fsync)
    with pytest.raises(OSError, match="disk full"):
        export_files.atomic_write(tmp_path / "x.csv", fail_midway)
    assert list(tmp_path.glob("*x.csv*")) == []


# --------------------------------------------------------------------------------------------- CLI
def test_cli_export(seeded, tmp_path):
    from fervideo.cli import app

    factory, ids = seeded
    url = str(factory.kw["bind"].url)
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--subject", "S001", "--format", "csv", "--out", str(tmp_path / "o"),
                                 "--db", url])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "cohort.csv").exists() and len(list((tmp_path / "o" / "frames").iterdir())) == 2
    again = runner.invoke(app, ["export", "--subject", "S001", "--format", "csv", "--out", str(tmp_path / "o"),
                                "--db", url])
    assert again.exit_code != 0 and isinstance(again.exception, ExportError)
    both = runner.invoke(app, ["export", str(ids[0]), "--all", "--format", "pdf", "--out", str(tmp_path), "--db", url])
    assert both.exit_code != 0
