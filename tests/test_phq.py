"""PHQ labels, the head on a synthetic cohort, leak-proof folds, persistence and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from phq_cohort import CLASSIFIER, add_session, feature_names, make_cohort
from sqlalchemy import func, select
from typer.testing import CliRunner

from fervideo.cli import app
from fervideo.errors import LabelFileError, PhqRefusalError
from fervideo.phq import (
    PHQ_CAVEAT,
    build_dataset,
    check_no_subject_leak,
    cross_validate,
    get_head,
    import_labels,
    make_pipeline,
    predict_session,
    severity_band,
    subject_folds,
    train_head,
)
from fervideo.store import PhqHead, PhqLabel, PhqPrediction, Subject, VideoSession, open_database

DAIC_TRAIN = """Participant_ID,PHQ8_Binary,PHQ8_Score,Gender,PHQ8_NoInterest,PHQ8_Depressed,PHQ8_Sleep,PHQ8_Tired,\
PHQ8_Appetite,PHQ8_Failure,PHQ8_Concentrating,PHQ8_Moving
303,0,0,0,0,0,0,0,0,0,0,0
321,1,20,0,2,3,3,3,3,3,3,0
"""
DAIC_TEST = "Participant_ID,PHQ_Binary,PHQ_Score,Gender\n300,0,2,1\n301,1,12,1\n"


@pytest.fixture
def db_url(any_db_url):
    """Every test of this module runs on SQLite and on PostgreSQL."""
    return any_db_url


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def count_labels(factory) -> int:
    with factory() as db:
        return db.scalar(select(func.count(PhqLabel.id)))


# ---------------------------------------------------------------------------------------------- bands
@pytest.mark.parametrize("score, band", [(0, "minimal"), (4, "minimal"), (4.4, "minimal"), (5, "mild"),
                                         (9, "mild"), (10, "moderate"), (14, "moderate"),
                                         (15, "moderately severe"), (19, "moderately severe"), (20, "severe"),
                                         (27, "severe")])
def test_severity_band(score, band):
    assert severity_band(score) == band


def test_caveat_says_estimate_and_item9():
    assert "not a diagnosis" in PHQ_CAVEAT and "Item 9" in PHQ_CAVEAT


# --------------------------------------------------------------------------------------------- labels
def test_import_daic_train_and_test_splits(factory, tmp_path):
    train = import_labels(factory, write(tmp_path, "train_split_Depression_AVEC2017.csv", DAIC_TRAIN))
    test = import_labels(factory, write(tmp_path, "full_test_split.csv", DAIC_TEST))
    assert (train.file_format, train.imported, test.imported) == ("daic-woz", 2, 2)
    with factory() as db:
        label = db.scalar(select(PhqLabel).join(Subject).where(Subject.code == "321"))
        assert label.instrument == "PHQ-8" and label.total == 20 and label.items["depressed"] == 3
    again = import_labels(factory, tmp_path / "full_test_split.csv")
    assert again.imported == 0 and again.already_present == 2


def test_import_generic_with_items_and_session(factory, tmp_path):
    with factory.begin() as db:
        subject = Subject(code="P7")
        db.add(subject)
        db.flush()
        session_id = add_session(db, subject, {}).id
    text = ("subject, session, instrument, total, item1,item2,item3,item4,item5,item6,item7,item8,item9, "
            "administered_at\n"
            f"P7,{session_id},PHQ-9,11,1,1,1,1,1,1,1,1,3,2024-03-01\n"
            "P8,,PHQ-8,6,,,,,,,,,,\n")
    result = import_labels(factory, write(tmp_path, "labels.csv", text))
    assert result.file_format == "generic" and result.imported == 2
    with factory() as db:
        label = db.scalar(select(PhqLabel).where(PhqLabel.session_id == session_id))
        assert label.total == 11 and label.items["self_harm"] == 3 and label.administered_at.year == 2024


def test_broken_file_reports_every_bad_row_and_imports_nothing(factory, tmp_path):
    text = ("subject,session,instrument,total,item1,item2,item3,item4,item5,item6,item7,item8,administered_at\n"
            "A1,,PHQ-8,5,,,,,,,,,\n"  # good (line 2)
            "A2,,PHQ-8,25,,,,,,,,,\n"  # line 3: out of range
            "A3,,PHQ-8,5,1,1,1,1,1,1,1,1,\n"  # line 4: item sum 8
            "A4,,GAD-7,5,,,,,,,,,\n"  # line 5: instrument
            "A5,,PHQ-9,x,,,,,,,,,\n"  # line 6: not a number
            "A6,,PHQ-8,3,,,,,,,,,yesterday\n"  # line 7: date
            "A7,,PHQ-8,4,4,0,0,0,0,0,0,0,\n")  # line 8: item out of 0-3
    with pytest.raises(LabelFileError) as caught:
        import_labels(factory, write(tmp_path, "bad.csv", text))
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in (3, 4, 5, 6, 7, 8)]
    assert "range 0-24" in problems[0] and "item sum 8" in problems[1]
    assert count_labels(factory) == 0


def test_daic_item_sum_mismatch_and_unknown_session(factory, tmp_path):
    bad = DAIC_TRAIN.replace("321,1,20,", "321,1,21,")
    with pytest.raises(LabelFileError, match="line 3: total 21 differs from the item sum 20"):
        import_labels(factory, write(tmp_path, "daic.csv", bad))
    with pytest.raises(LabelFileError, match="line 3: session 999 is not a session of subject '?B'?"):
        text = "subject,session,instrument,total\nA,,PHQ-8,3\nB,999,PHQ-8,4\n"
        import_labels(factory, write(tmp_path, "g.csv", text))
    assert count_labels(factory) == 0


def test_label_cli_lists_bad_rows(db_url, tmp_path):
    path = write(tmp_path, "bad.csv", "subject,instrument,total\nA,PHQ-8,30\nB,PHQ-9,-1\n")
    result = CliRunner().invoke(app, ["phq", "labels", "import", str(path), "--db", db_url])
    assert result.exit_code != 0
    assert "line 2" in result.output and "line 3" in result.output  # the rows; then one error line:
    assert isinstance(result.exception, LabelFileError) and "nothing imported" in str(result.exception)


# ------------------------------------------------------------------------------------------ the head
def test_head_beats_mean_baseline_in_subject_grouped_cv(factory):
    make_cohort(factory, n_subjects=64)
    data = build_dataset(factory)
    assert len(set(data.groups)) == 64 and 128 <= len(data.y) <= 256
    evaluation = cross_validate(data, "ridge", "subject-kfold", n_boot=300)
    model, base = evaluation.model_metrics, evaluation.baseline_metrics
    assert model["mae"]["value"] < 0.75 * base["mae"]["value"]
    assert model["mae"]["ci_high"] < base["mae"]["ci_low"]  # clear margin: the 95% intervals do not overlap
    assert model["ccc"]["value"] > 0.5 and model["pearson_r"]["value"] > 0.6
    assert model["f1_at_10"]["value"] > base["f1_at_10"]["value"]
    assert evaluation.n_subjects == 64 and evaluation.n_folds == 5
    for key in ("mae", "rmse", "ccc", "pearson_r", "f1_at_10"):
        assert model[key]["ci_low"] <= model[key]["value"] <= model[key]["ci_high"]


@pytest.mark.parametrize("cv", ["subject-kfold", "loso", "split"])
def test_no_subject_is_ever_on_both_sides(cv):
    rng = np.random.default_rng(1)
    for _ in range(20):
        groups = np.repeat([f"S{i}" for i in range(12)], rng.integers(1, 6, size=12))
        rng.shuffle(groups)
        held_out = {"S0", "S3", "S7"}
        tested = np.zeros(len(groups), dtype=int)
        for train, test in subject_folds(groups, cv, 5, held_out):
            assert not set(groups[train]) & set(groups[test])
            assert len(train) + len(test) == len(groups)
            tested[test] += 1
        assert (tested == 1).all() if cv != "split" else set(groups[tested == 1]) == held_out


def test_a_leaking_fold_is_refused():
    groups = np.array(["A", "A", "B", "B"])
    with pytest.raises(RuntimeError, match="subject leak"):
        check_no_subject_leak(groups, np.array([0, 2]), np.array([1, 3]))


def test_folds_group_by_subject_even_with_session_labels(factory):
    make_cohort(factory, n_subjects=10)
    data = build_dataset(factory)
    assert len(set(data.groups)) == 10 and len(data.groups) > 10
    with factory() as db:
        codes = {s.id: s.subject.code for s in db.scalars(select(VideoSession))}
    assert [codes[int(i)] for i in data.session_ids] == list(data.groups)


@pytest.mark.parametrize("model", ["ridge", "svr", "gbr"])
def test_persistence_round_trip(factory, model):
    make_cohort(factory, n_subjects=20)
    train_head(factory, f"h-{model}", model=model, n_boot=50)
    with factory() as db:
        row = db.scalar(select(PhqHead).where(PhqHead.name == f"h-{model}"))
        assert row.path is None and row.params[:2] == b"PK" and len(row.params_sha256) == 64  # npz bytes
    _, loaded = get_head(factory, f"h-{model}")
    config = loaded.config
    assert config["classifier"] == {"name": CLASSIFIER[0], "sha256": CLASSIFIER[1]}
    assert config["features"] == feature_names() and config["training"]["n_subjects"] == 20
    assert {"model", "mean_baseline"} <= set(config["metrics"]) and config["caveat"] == PHQ_CAVEAT
    data = build_dataset(factory)
    reference = make_pipeline(model).fit(data.X, data.y)
    X = data.X.copy()
    X[::7, 3] = np.nan  # imputation is part of the saved head
    np.testing.assert_allclose(loaded.predict(data.X), reference.predict(data.X), atol=1e-6)
    np.testing.assert_allclose(loaded.predict(X), reference.predict(X), atol=1e-6)


def test_tampered_head_is_refused(factory):
    make_cohort(factory, n_subjects=12)
    train_head(factory, "h", n_boot=20)
    with factory.begin() as db:
        row = db.scalar(select(PhqHead).where(PhqHead.name == "h"))
        row.params = row.params[:-1] + bytes([row.params[-1] ^ 1])
    with pytest.raises(Exception, match="changed since training"):
        predict_session(factory, 1, "h")


def _stranger(factory, classifier=CLASSIFIER, reliable=True) -> int:
    with factory.begin() as db:
        subject = Subject(code=f"X{classifier[0]}{reliable}")
        db.add(subject)
        db.flush()
        return add_session(db, subject, dict.fromkeys(feature_names(), 0.1), reliable, classifier).id


def test_prediction_interval_band_and_storage(factory):
    make_cohort(factory, n_subjects=64)
    train_head(factory, "h", n_boot=50)
    session_id = _stranger(factory)
    estimate = predict_session(factory, session_id, "h")
    assert not estimate.in_sample and estimate.out_of_fold and estimate.n_imputed == 0
    assert 0 <= estimate.lower <= estimate.estimate <= estimate.upper <= 24
    assert estimate.band == severity_band(estimate.estimate) and estimate.coverage == 0.9
    assert "not a diagnosis" in estimate.caveat
    with factory() as db:
        stored = db.scalar(select(PhqPrediction).where(PhqPrediction.session_id == session_id))
        assert stored.estimate == pytest.approx(estimate.estimate) and stored.band == estimate.band
    predict_session(factory, session_id, "h")  # a repeat updates the row
    with factory() as db:
        assert db.scalar(select(func.count(PhqPrediction.id))) == 1


def test_refuses_session_of_another_classifier(factory):
    make_cohort(factory, n_subjects=12)
    train_head(factory, "h", n_boot=20)
    other = _stranger(factory, classifier=("vit-other", "b" * 64))
    with pytest.raises(PhqRefusalError, match="processed by vit-other .* trained on vit-tiny-test"):
        predict_session(factory, other, "h", allow_weak_head=True)


def test_refuses_unreliable_session_and_says_why(factory):
    make_cohort(factory, n_subjects=12)
    train_head(factory, "h", n_boot=20)
    weak = _stranger(factory, reliable=False)
    with pytest.raises(PhqRefusalError, match="unreliable.*only 10 frames with a face"):
        predict_session(factory, weak, "h", allow_weak_head=True)


def test_unreliable_sessions_are_not_trained_on(factory):
    make_cohort(factory, n_subjects=12)
    with factory.begin() as db:
        subject = db.scalar(select(Subject).where(Subject.code == "S000"))
        add_session(db, subject, dict.fromkeys(feature_names(), 0.0), reliable=False)
    assert build_dataset(factory).skipped["unreliable"] == 1


def test_cli_train_evaluate_predict(db_url, tmp_path):
    factory = open_database(db_url)
    make_cohort(factory, n_subjects=20)
    _stranger(factory, reliable=False)
    split = write(tmp_path, "dev_split.csv", "Participant_ID,PHQ8_Score\n" + "".join(
        f"S{i:03d},5\n" for i in range(5)))
    runner = CliRunner()
    trained = runner.invoke(app, ["phq", "train", "--name", "cli", "--cv", "split", str(split), "--db", db_url])
    assert trained.exit_code == 0, trained.output
    assert "mean baseline" in trained.output and "not a diagnosis" in trained.output
    assert "5 subjects" in trained.output  # the held-out dev subjects
    shown = runner.invoke(app, ["phq", "evaluate", "cli", "--db", db_url])
    assert shown.exit_code == 0 and "mae" in shown.output
    predicted = runner.invoke(app, ["phq", "predict", "--all", "--head", "cli", "--allow-weak-head", "--db", db_url])
    assert predicted.exit_code == 0, predicted.output
    assert "refused" in predicted.output and "Item 9" in predicted.output
