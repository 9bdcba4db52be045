"""Issue 9's numbered PHQ defects, one regression test each (items 2, 4, 5, 10 and the head's side of 14
and 17), and PHQ heads living in the database (issue 11 item 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from phq_cohort import add_session, feature_names, make_cohort
from sqlalchemy import select
from typer.testing import CliRunner

from fervideo.cli import app, run
from fervideo.errors import InvalidArgumentError, PhqRefusalError
from fervideo.phq import (
    CV_PLUS,
    WEAK_HEAD_WARNING,
    get_head,
    metric_report,
    predict_session,
    train_head,
)
from fervideo.store import PhqHead, PhqPrediction, SessionFeatures, Subject, VideoSession, open_database


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    """A cohort whose head clearly beats the mean predictor, trained once for the module."""
    url = f"sqlite:///{tmp_path_factory.mktemp('strong') / 'fervideo.sqlite'}"
    factory = open_database(url)
    make_cohort(factory, n_subjects=64)
    train_head(factory, "h", n_boot=200)
    return factory, url


def _new_subject_session(factory, code: str, values: dict | None = None, **kwargs) -> int:
    with factory.begin() as db:
        subject = Subject(code=code)
        db.add(subject)
        db.flush()
        values = dict.fromkeys(feature_names(), 0.1) if values is None else values
        return add_session(db, subject, values, **kwargs).id


def _stored(factory, session_id: int) -> PhqPrediction:
    with factory() as db:
        return db.scalar(select(PhqPrediction).where(PhqPrediction.session_id == session_id))


# ------------------------------------------------------------------------- item 2: imputed features
def test_imputed_features_are_counted_stored_and_shown(strong):
    factory, url = strong
    values = dict.fromkeys(feature_names(), 0.1)
    values[feature_names()[0]] = None
    session_id = _new_subject_session(factory, "IMP1", values)
    estimate = predict_session(factory, session_id, "h")
    assert estimate.n_imputed == 1 and estimate.imputed_features == [feature_names()[0]]
    stored = _stored(factory, session_id)
    assert stored.n_imputed == 1 and stored.n_features == len(feature_names())
    shown = CliRunner().invoke(app, ["phq", "predict", str(session_id), "--head", "h", "--db", url])
    assert shown.exit_code == 0, shown.output
    assert f"1 of {len(feature_names())}" in shown.output


def test_regression_a_session_with_no_feature_values_is_refused(strong):
    factory, _ = strong
    session_id = _new_subject_session(factory, "IMP2", {})  # was "11.9, moderate"
    with pytest.raises(PhqRefusalError, match=f"lacks {len(feature_names())} of the head's"):
        predict_session(factory, session_id, "h")
    assert _stored(factory, session_id) is None


def test_imputation_threshold_is_configurable_on_the_head(tmp_path):
    factory = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    make_cohort(factory, n_subjects=64)
    train_head(factory, "strict", n_boot=100, max_imputed_fraction=0.0)
    values = dict.fromkeys(feature_names(), 0.1)
    values[feature_names()[3]] = None
    session_id = _new_subject_session(factory, "IMP3", values)
    with pytest.raises(PhqRefusalError, match="more than 0% would be filled"):
        predict_session(factory, session_id, "strict")
    with pytest.raises(InvalidArgumentError, match="max-imputed-fraction"):
        train_head(factory, "bad", n_boot=10, max_imputed_fraction=1.5)


# ------------------------------------------------------------------- item 4: the mean baseline
def test_regression_a_head_that_does_not_beat_the_mean_is_flagged_and_refused(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    factory = open_database(url)
    make_cohort(factory, n_subjects=24, signal=0.0, noise=5.0)
    runner = CliRunner()
    trained = runner.invoke(app, ["phq", "train", "--name", "weak", "--db", url])
    assert trained.exit_code == 0, trained.output
    assert "does not beat guessing the cohort mean" in trained.output
    with factory() as db:
        row = db.scalar(select(PhqHead).where(PhqHead.name == "weak"))
        assert row.beats_baseline is False and row.config["beats_baseline"] is False
        difference = row.metrics["baseline_comparison"]["mae_difference"]
        assert difference["ci_high"] >= 0 and difference["n_boot"] == 1000
    session_id = _new_subject_session(factory, "NEW")
    capsys.readouterr()
    assert run(["phq", "predict", str(session_id), "--head", "weak", "--db", url]) == 6  # a PHQ refusal
    assert "--allow-weak-head" in capsys.readouterr().err and _stored(factory, session_id) is None
    assert run(["phq", "predict", "--all", "--head", "weak", "--db", url]) == 6  # refused once for the head
    assert capsys.readouterr().err.count("does not beat guessing the cohort mean") == 1
    allowed = runner.invoke(app, ["phq", "predict", str(session_id), "--head", "weak", "--allow-weak-head",
                                  "--db", url])
    assert allowed.exit_code == 0, allowed.output
    assert "weak head" in allowed.output and "does not beat guessing the cohort mean" in allowed.output
    estimate = predict_session(factory, session_id, "weak", allow_weak_head=True)
    assert not estimate.beats_baseline and WEAK_HEAD_WARNING in estimate.warnings


def test_a_strong_head_records_that_it_beats_the_mean(strong):
    factory, _ = strong
    _, head = get_head(factory, "h")
    comparison = head.config["metrics"]["baseline_comparison"]
    assert head.config["beats_baseline"] is True and comparison["mae_difference"]["ci_high"] < 0


# ----------------------------------------------------------------- item 5: in-sample predictions
def test_regression_a_training_session_gets_its_out_of_fold_estimate(strong):
    factory, _ = strong
    _, head = get_head(factory, "h")
    session_id = int(head.arrays["oof.session_id"][0])
    oof = float(head.arrays["oof.prediction"][0])
    estimate = predict_session(factory, session_id, "h")
    assert estimate.in_sample and estimate.out_of_fold
    assert estimate.estimate == pytest.approx(min(max(oof, 0), 24))
    assert estimate.in_sample_estimate is not None and estimate.in_sample_estimate != pytest.approx(estimate.estimate)
    assert estimate.lower <= estimate.estimate <= estimate.upper
    stored = _stored(factory, session_id)
    assert stored.in_sample is True and stored.out_of_fold is True


def test_a_new_session_of_a_training_subject_is_in_sample_too(strong):
    factory, _ = strong
    with factory.begin() as db:
        subject = db.scalar(select(Subject).where(Subject.code == "S001"))
        session_id = add_session(db, subject, dict.fromkeys(feature_names(), 0.2)).id
    estimate = predict_session(factory, session_id, "h")
    assert estimate.in_sample and estimate.out_of_fold


def test_split_training_subjects_are_in_sample_without_an_out_of_fold_model(tmp_path):
    factory = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    make_cohort(factory, n_subjects=64)
    split = tmp_path / "dev.csv"
    split.write_text("Participant_ID\n" + "".join(f"S{i:03d}\n" for i in range(20)))
    result = train_head(factory, "split", cv="split", split_file=split, n_boot=100)
    assert result.model.config["interval"]["method"].startswith("split-conformal")
    with factory() as db:
        trained_on = db.scalar(select(VideoSession.id).join(Subject).where(Subject.code == "S050"))
        held_out = db.scalar(select(VideoSession.id).join(Subject).where(Subject.code == "S005"))
    inside = predict_session(factory, trained_on, "split", allow_weak_head=True)
    assert inside.in_sample and not inside.out_of_fold and "in-sample" in inside.warnings[-1]
    calibration = predict_session(factory, held_out, "split", allow_weak_head=True)
    assert calibration.in_sample and calibration.out_of_fold


# ------------------------------------------------------------------------------ item 6: naming
def test_the_method_is_named_on_the_head_and_the_prediction(strong):
    factory, _ = strong
    _, head = get_head(factory, "h")
    interval = head.config["interval"]
    assert interval["method"] == CV_PLUS and "conformal" not in json.dumps(head.config).lower().replace(
        "split-conformal", "")
    assert 0.8 < interval["empirical_cv_coverage"] <= 1.0 and interval["n_calibration_subjects"] == 64
    session_id = _new_subject_session(factory, "NAME1")
    assert predict_session(factory, session_id, "h").interval_method == CV_PLUS
    assert _stored(factory, session_id).interval_method == CV_PLUS


# ------------------------------------------------------------------ item 10: dropped resamples
def test_regression_dropped_bootstrap_resamples_are_counted():
    groups = np.array([f"s{i}" for i in range(10)])
    y = np.array([12.0] + [2.0] * 9)  # one positive subject: F1 is undefined when a resample misses it
    p = np.array([11.0] + [3.0] * 9)
    report = metric_report(y, p, groups, n_boot=400)
    assert 0 < report["f1_at_10"]["n_dropped"] < 400 and report["mae"]["n_dropped"] == 0
    assert report["f1_at_10"]["n_boot"] == 400


# ------------------------------------------- head side of items 14 and 17: what a session must share
def test_refuses_a_session_sampled_at_another_rate(strong):
    factory, _ = strong
    _, head = get_head(factory, "h")
    assert head.config["sample_fps"] == 5.0 and head.config["feature_version"]
    session_id = _new_subject_session(factory, "FPS30", sample_fps=30.0)
    with pytest.raises(PhqRefusalError, match="sampled at 30 fps .* trained on 5 fps"):
        predict_session(factory, session_id, "h")


def test_refuses_features_of_another_definition_version(strong):
    factory, _ = strong
    session_id = _new_subject_session(factory, "OLDV", feature_version="0")
    with pytest.raises(PhqRefusalError, match="definition version 0"):
        predict_session(factory, session_id, "h")


def test_refuses_another_openface_column_set(strong):
    factory, _ = strong
    session_id = _new_subject_session(factory, "OFCOLS", detector_params={"openface_columns_sha256": "c" * 64})
    with pytest.raises(PhqRefusalError, match="OpenFace column set"):
        predict_session(factory, session_id, "h")


@pytest.mark.parametrize("mixed, match", [({"sample_fps": 30.0}, "sampling rates"),
                                          ({"feature_version": "0"}, "feature-definition versions"),
                                          ({"detector_params": {"openface_columns_sha256": "d" * 64}},
                                           "OpenFace column sets")])
def test_training_refuses_to_mix(tmp_path, mixed, match):
    factory = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    make_cohort(factory, n_subjects=12)
    with factory.begin() as db:
        subject = db.scalar(select(Subject).where(Subject.code == "S000"))
        add_session(db, subject, dict.fromkeys(feature_names(), 0.0), **mixed)
    with pytest.raises(InvalidArgumentError, match=match):
        train_head(factory, "mixed", n_boot=10)


def test_missingness_indicators_are_ordinary_features(tmp_path):
    factory = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    indicator = "valence_inertia__missing"
    make_cohort(factory, n_subjects=12, extra_features=(indicator,))
    with factory() as db:
        has_indicator = any(indicator in row.values for row in db.scalars(select(SessionFeatures)))
    assert has_indicator


# ------------------------------------------------- the caveats travel with the number into exports
def test_export_summary_cohort_table_and_report_carry_the_caveats(tmp_path):
    from fervideo.export import cohort_table, render_report_html, session_summary
    from fervideo.store import frame_table

    factory = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    make_cohort(factory, n_subjects=24, signal=0.0, noise=5.0)
    train_head(factory, "weak", n_boot=100)
    values = dict.fromkeys(feature_names(), 0.1)
    values[feature_names()[0]] = None
    session_id = _new_subject_session(factory, "EXP1", values)
    predict_session(factory, session_id, "weak", allow_weak_head=True)
    phq = session_summary(factory, session_id)["phq"]
    assert phq["imputed_features"] == 1 and phq["in_sample"] is False and phq["head_beats_baseline"] is False
    assert phq["warnings"][0] == WEAK_HEAD_WARNING and any("1 of the head's" in w for w in phq["warnings"])
    assert any(CV_PLUS in caveat for caveat in phq["caveats"])
    row = cohort_table(factory, [session_id]).iloc[0]
    assert row["phq_imputed_features"] == 1 and not row["phq_in_sample"] and not row["phq_head_beats_baseline"]
    with factory() as db:
        frames = frame_table(db, session_id)
    html = render_report_html(session_summary(factory, session_id, frames), frames)
    assert "does not beat guessing the cohort mean" in html and "Imputed features" in html
