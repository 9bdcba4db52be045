"""PHQ heads live in the database (issue 11 item 5): heads saved as files by older versions are imported
once by `fervideo db upgrade`, from a database migrated from schema 0002; damaged or changed files are not."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from phq_cohort import add_session, feature_names, make_cohort
from sqlalchemy import select, text

from fervideo.cli import run
from fervideo.errors import DataFileError, PhqRefusalError
from fervideo.phq import get_head, predict_session, train_head
from fervideo.phq.head_store import import_file_heads, pack_arrays, unpack_arrays
from fervideo.store import PhqPrediction, Subject, make_engine, open_database

FEATURES = ["mean_sadness", "mean_happiness"]


def _write_file_head(home: Path, name: str) -> str:
    """A format-1 head folder as fervideo wrote it before heads moved into the database; returns its sha256."""
    folder = home / "phq_heads" / name
    folder.mkdir(parents=True)
    config = {"format": 1, "name": name, "instrument": "PHQ-8", "feature_source": "video",
              "classifier": {"name": "vit-tiny-test", "sha256": "a" * 64},
              "model": {"kind": "ridge", "alpha": 10.0}, "features": FEATURES,
              "training": {"n_subjects": 20, "n_sessions": 50},
              "metrics": {"cv": "subject-kfold", "n_subjects": 20, "n_sessions": 50,
                          "model": {"mae": {"value": 4.0, "ci_low": 3.0, "ci_high": 5.0}},
                          "mean_baseline": {"mae": {"value": 5.0, "ci_low": 4.0, "ci_high": 6.0}}},
              "conformal": {"coverage": 0.9, "halfwidth": 6.0, "method": "split-conformal on out-of-fold residuals"}}
    (folder / "head.json").write_text(json.dumps(config))
    np.savez(folder / "params.npz", impute_median=np.zeros(2), scale_mean=np.zeros(2), scale_scale=np.ones(2),
             coef=np.array([1.0, -1.0]), intercept=np.array([10.0]))
    return hashlib.sha256((folder / "head.json").read_bytes() + (folder / "params.npz").read_bytes()).hexdigest()


def _database_at_0002_with_a_head_row(url: str, name: str, sha256: str, path: Path) -> None:
    from fervideo.store import upgrade_database

    engine = make_engine(url)
    upgrade_database(engine, "0002")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO phq_heads (name, path, sha256, created_at, instrument, feature_source, classifier_name, "
            "classifier_sha256, n_subjects, n_sessions, metrics) VALUES (:name, :path, :sha, '2026-01-01', "
            "'PHQ-8', 'video', 'vit-tiny-test', :csha, 20, 50, '{}')"),
            {"name": name, "path": str(path), "sha": sha256, "csha": "a" * 64})
    engine.dispose()


def test_db_upgrade_imports_file_heads_once(tmp_path, capsys):
    home = Path(os.environ["FERVIDEO_HOME"])
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    sha = _write_file_head(home, "old")
    _write_file_head(home, "other")  # files without a row here: another database's head
    _database_at_0002_with_a_head_row(url, "old", sha, home / "phq_heads" / "old")
    assert run(["db", "upgrade", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "'old' imported" in out and "'other'" not in out
    factory = open_database(url)
    _, head = get_head(factory, "old")
    assert head.format == 1 and head.features == FEATURES
    np.testing.assert_allclose(head.predict(np.array([[1.0, 2.0]])), [9.0])
    assert run(["db", "upgrade", "--db", url]) == 0  # a second upgrade imports nothing
    assert "imported" not in capsys.readouterr().out
    (home / "phq_heads" / "old" / "head.json").unlink()  # the files are no longer needed
    assert get_head(factory, "old")[1].config["name"] == "old"


def test_an_imported_old_head_is_shown_but_refuses_to_predict(tmp_path, capsys):
    home = Path(os.environ["FERVIDEO_HOME"])
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    sha = _write_file_head(home, "old")
    _database_at_0002_with_a_head_row(url, "old", sha, home / "phq_heads" / "old")
    from fervideo.store import upgrade_database

    upgrade_database(make_engine(url))
    assert import_file_heads(open_database(url)) == ["old"]
    assert run(["phq", "evaluate", "old", "--db", url]) == 0
    assert "format-1 head" in capsys.readouterr().out
    with pytest.raises(PhqRefusalError, match="older fervideo .* retrain it"):
        predict_session(open_database(url), 1, "old")


def test_changed_or_pickled_file_heads_are_not_imported(tmp_path):
    home = Path(os.environ["FERVIDEO_HOME"])
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    sha = _write_file_head(home, "changed")
    _database_at_0002_with_a_head_row(url, "changed", sha, home / "phq_heads" / "changed")
    (home / "phq_heads" / "changed" / "head.json").write_text("{}")
    folder = home / "phq_heads" / "pickled"
    folder.mkdir()
    (folder / "head.json").write_text(json.dumps({"name": "pickled"}))
    np.savez(folder / "params.npz", coef=np.array([{"a": 1}], dtype=object))  # object arrays need pickle
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO phq_heads (name, path, sha256, created_at, instrument, feature_source, classifier_name, "
            "classifier_sha256, n_subjects, n_sessions, metrics) VALUES ('pickled', :path, :sha, '2026-01-01', "
            "'PHQ-8', 'video', 'c', 'd', 1, 1, '{}')"),
            {"path": str(folder), "sha": hashlib.sha256((folder / "head.json").read_bytes()
                                                        + (folder / "params.npz").read_bytes()).hexdigest()})
    from fervideo.store import upgrade_database

    upgrade_database(engine)
    assert import_file_heads(open_database(url)) == []
    for name in ("changed", "pickled"):
        with pytest.raises(DataFileError, match="not in the database yet"):
            get_head(open_database(url), name)


def test_arrays_round_trip_without_pickle():
    arrays = {"final.coef": np.arange(3.0), "calibration.group": np.array(["007", "7"])}
    back = unpack_arrays(pack_arrays(arrays))
    assert back["calibration.group"].tolist() == ["007", "7"]  # subject codes stay text
    with pytest.raises(ValueError):
        unpack_arrays(pack_arrays({"x": np.array([{"a": 1}], dtype=object)}))


def test_train_store_and_predict_on_sqlite_and_postgresql(any_db_url):
    factory = open_database(any_db_url)
    make_cohort(factory, n_subjects=16)
    trained = train_head(factory, "both", n_boot=50)
    _, head = get_head(factory, "both")  # read back: npz bytes, sha256 and JSON survive the backend
    assert head.config == trained.model.config and set(head.arrays) == set(trained.model.arrays)
    with factory.begin() as db:
        subject = Subject(code="PGNEW")
        db.add(subject)
        db.flush()
        session_id = add_session(db, subject, dict.fromkeys(feature_names(), 0.1)).id
    estimate = predict_session(factory, session_id, "both", allow_weak_head=True)
    assert 0 <= estimate.lower <= estimate.estimate <= estimate.upper <= 24 and not estimate.in_sample
    with factory() as db:
        stored = db.scalar(select(PhqPrediction).where(PhqPrediction.session_id == session_id))
        assert stored.n_imputed == 0 and stored.in_sample is False and stored.interval_method
