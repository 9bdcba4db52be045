"""PHQ heads: persistence without pickle, training and prediction."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from fervideo import __version__
from fervideo.errors import DataFileError, InvalidArgumentError, NotFoundError, PhqRefusalError
from fervideo.features import store_session_features
from fervideo.phq.bands import (
    DEFAULT_COVERAGE,
    HEAD_FORMAT,
    INSTRUMENT_MAX,
    ITEM9_NOTE,
    PHQ_CAVEAT,
    fervideo_home,
    severity_band,
)
from fervideo.phq.dataset import build_dataset
from fervideo.phq.evaluation import Evaluation, conformal_halfwidth, cross_validate, make_pipeline
from fervideo.phq.labels import import_labels
from fervideo.phq.matching import DEFAULT_LABEL_WINDOW_DAYS
from fervideo.phq.splits import held_out_subjects

log = logging.getLogger(__name__)

# ========================================================================================= persistence
def _model_arrays(pipeline, model: str) -> dict[str, np.ndarray]:
    impute, scale, regress = (pipeline.named_steps[k] for k in ("impute", "scale", "regress"))
    arrays = {"impute_median": impute.statistics_, "scale_mean": scale.mean_, "scale_scale": scale.scale_}
    if model == "ridge":
        arrays |= {"coef": regress.coef_, "intercept": np.atleast_1d(regress.intercept_)}
    elif model == "svr":
        arrays |= {"support_vectors": regress.support_vectors_, "dual_coef": regress.dual_coef_.ravel(),
                   "intercept": np.atleast_1d(regress.intercept_), "gamma": np.atleast_1d(regress._gamma)}
    else:
        trees = [estimator.tree_ for estimator in regress.estimators_[:, 0]]
        sizes = np.array([tree.node_count for tree in trees])
        arrays |= {
            "tree_sizes": sizes,
            "children_left": np.concatenate([tree.children_left for tree in trees]),
            "children_right": np.concatenate([tree.children_right for tree in trees]),
            "feature": np.concatenate([tree.feature for tree in trees]),
            "threshold": np.concatenate([tree.threshold for tree in trees]),
            "value": np.concatenate([tree.value[:, 0, 0] for tree in trees]),
            "init": np.atleast_1d(float(regress.init_.constant_.ravel()[0])),
            "learning_rate": np.atleast_1d(regress.learning_rate),
        }
    return {k: np.asarray(v) for k, v in arrays.items()}


def _predict_trees(arrays: dict[str, np.ndarray], Z: np.ndarray) -> np.ndarray:
    Z32 = Z.astype(np.float32)  # sklearn's trees compare float32 inputs with their thresholds
    total = np.full(len(Z), float(arrays["init"][0]))
    offset = 0
    rows = np.arange(len(Z))
    for size in arrays["tree_sizes"]:
        node = np.zeros(len(Z), dtype=np.int64)
        left = arrays["children_left"][offset:offset + size]
        right = arrays["children_right"][offset:offset + size]
        feature = arrays["feature"][offset:offset + size]
        threshold = arrays["threshold"][offset:offset + size]
        while (active := left[node] != -1).any():
            go_left = Z32[rows, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(active, np.where(go_left, left[node], right[node]), node)
        total += float(arrays["learning_rate"][0]) * arrays["value"][offset:offset + size][node]
        offset += size
    return total


def predict_arrays(model: str, arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Predict with a saved head's arrays, without scikit-learn objects or pickle."""
    X = np.where(np.isnan(X), arrays["impute_median"], X)
    Z = (X - arrays["scale_mean"]) / arrays["scale_scale"]
    if model == "ridge":
        return Z @ arrays["coef"] + arrays["intercept"][0]
    if model == "svr":
        distances = ((Z[:, None, :] - arrays["support_vectors"][None]) ** 2).sum(axis=2)
        return np.exp(-arrays["gamma"][0] * distances) @ arrays["dual_coef"] + arrays["intercept"][0]
    return _predict_trees(arrays, Z)


@dataclass
class PhqHeadModel:
    name: str
    config: dict  # head.json
    arrays: dict[str, np.ndarray]
    path: Path

    @property
    def features(self) -> list[str]:
        return self.config["features"]

    @property
    def instrument(self) -> str:
        return self.config["instrument"]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return predict_arrays(self.config["model"]["kind"], self.arrays, X)


def head_dir(name: str) -> Path:
    return fervideo_home() / "phq_heads" / name


def _head_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for part in ("head.json", "params.npz"):
        digest.update((path / part).read_bytes())
    return digest.hexdigest()


def save_head(path: Path, config: dict, arrays: dict[str, np.ndarray]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    (path / "head.json").write_text(json.dumps(config, indent=2, sort_keys=True, allow_nan=False, default=_nan_none))
    with (path / "params.npz").open("wb") as handle:
        np.savez(handle, **arrays)
    return _head_sha256(path)


def _nan_none(value):
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean_json(value):
    """NaN/inf -> None, numpy scalars -> Python, recursively (head.json and metrics are strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_head(path: Path, expected_sha256: str | None = None) -> PhqHeadModel:
    try:
        config = json.loads((path / "head.json").read_text())
        with np.load(path / "params.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataFileError(f"PHQ head files in {path} are missing or damaged: {exc}") from None
    if config.get("format") != HEAD_FORMAT:
        raise DataFileError(f"{path}/head.json: head format {config.get('format')} is not {HEAD_FORMAT}")
    if expected_sha256 and _head_sha256(path) != expected_sha256:
        raise DataFileError(f"PHQ head files in {path} changed since training (sha256 mismatch); retrain it")
    return PhqHeadModel(config["name"], config, arrays, path)


# =========================================================================================== training
@dataclass
class TrainResult:
    head_id: int
    model: PhqHeadModel
    evaluation: Evaluation


def train_head(db_factory, name: str, model: str = "ridge", cv: str = "subject-kfold",
               split_file: Path | None = None, instrument: str = "PHQ-8", classifier: str | None = None,
               labels_file: Path | None = None, alpha: float = 10.0, coverage: float = DEFAULT_COVERAGE,
               include_au: bool = True, n_boot: int = 1000, overwrite: bool = False,
               label_window_days: int = DEFAULT_LABEL_WINDOW_DAYS, ignore_unmatched: bool = False) -> TrainResult:
    """Evaluate by subject-grouped CV, fit on every labelled session, save files and a phq_heads row."""
    from fervideo.store import PhqHead

    if not name or "/" in name or name.startswith("."):
        raise InvalidArgumentError(f"--name {name!r} must be a plain name (no slashes)")
    with db_factory() as db:
        if db.scalar(select(PhqHead.id).where(PhqHead.name == name)) is not None and not overwrite:
            raise InvalidArgumentError(f"a PHQ head named {name!r} exists; pick another --name or use --overwrite")
    if labels_file is not None:
        import_labels(db_factory, labels_file)
    source_file = str(Path(labels_file).resolve()) if labels_file is not None else None
    data = build_dataset(db_factory, instrument, classifier, source_file, include_au, label_window_days)
    if cv == "split" and split_file is None:
        raise InvalidArgumentError("--cv split needs a split FILE")
    held_out = held_out_subjects(split_file, data.groups, ignore_unmatched) if cv == "split" else None
    evaluation = cross_validate(data, model, cv, 5, held_out, alpha, n_boot)
    residuals = (data.y - evaluation.predictions)[np.isfinite(evaluation.predictions)]
    fitted = make_pipeline(model, alpha).fit(data.X, data.y)
    arrays = _model_arrays(fitted, model)
    config = _clean_json({
        "format": HEAD_FORMAT, "name": name, "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "package_version": __version__, "instrument": instrument, "feature_source": data.source,
        "classifier": {"name": data.classifier_name, "sha256": data.classifier_sha256},
        "model": {"kind": model, "alpha": alpha if model == "ridge" else None,
                  "pipeline": "median imputation -> standard scaling -> " + model},
        "features": data.feature_names,
        "training": {"n_subjects": len(set(data.groups)), "n_sessions": len(data.y),
                     "label_mean": float(data.y.mean()), "label_sd": float(data.y.std()),
                     "label_min": float(data.y.min()), "label_max": float(data.y.max()),
                     "skipped_sessions": data.skipped, "labels_file": source_file,
                     "label_window_days": data.label_window_days,
                     "undated_labels_set_aside": data.undated_labels_set_aside},
        "metrics": evaluation.as_json(),
        "conformal": {"coverage": coverage, "halfwidth": conformal_halfwidth(residuals, coverage),
                      "n_residuals": len(residuals), "method": "split-conformal on out-of-fold residuals"},
        "caveat": PHQ_CAVEAT,
    })
    path = head_dir(name)
    sha256 = save_head(path, config, arrays)
    with db_factory.begin() as db:
        row = db.scalar(select(PhqHead).where(PhqHead.name == name))
        if row is None:
            row = PhqHead(name=name)
            db.add(row)
        row.path, row.sha256, row.instrument, row.feature_source = str(path), sha256, instrument, data.source
        row.classifier_name, row.classifier_sha256 = data.classifier_name, data.classifier_sha256
        row.n_subjects, row.n_sessions, row.metrics = len(set(data.groups)), len(data.y), config["metrics"]
        db.flush()
        head_id = row.id
    return TrainResult(head_id, load_head(path, sha256), evaluation)


# ========================================================================================= prediction
@dataclass
class PhqEstimate:
    session_id: int
    head: str
    instrument: str
    estimate: float
    lower: float
    upper: float
    coverage: float
    band: str
    caveat: str = PHQ_CAVEAT


def get_head(db_factory, name: str) -> tuple[int, PhqHeadModel]:
    from fervideo.store import PhqHead

    with db_factory() as db:
        row = db.scalar(select(PhqHead).where(PhqHead.name == name))
    if row is None:
        raise NotFoundError(f"no PHQ head named {name!r}; train one with `fervideo phq train`")
    return row.id, load_head(Path(row.path), row.sha256)


def predict_session(db_factory, session_id: int, head_name: str, store: bool = True) -> PhqEstimate:
    """Estimate one session's PHQ total with interval and band; refuse unreliable or mismatched sessions."""
    from fervideo.store import PhqPrediction, SessionStatus, VideoSession

    head_id, head = get_head(db_factory, head_name)
    with db_factory() as db:
        session = db.get(VideoSession, session_id)
    if session is None:
        raise NotFoundError(f"no session {session_id}; see `fervideo sessions`")
    if session.status != SessionStatus.DONE:
        raise PhqRefusalError(f"session {session_id} is {session.status}, not done")
    trained = head.config["classifier"]
    if (session.classifier_name, session.classifier_sha256) != (trained["name"], trained["sha256"]):
        raise PhqRefusalError(
            f"session {session_id} was processed by {session.classifier_name} ({session.classifier_sha256[:12]}), "
            f"but head {head_name!r} was trained on {trained['name']} ({trained['sha256'][:12]}); "
            "use a head trained on the same classifier")
    if session.source != head.config["feature_source"]:
        raise PhqRefusalError(f"session {session_id} comes from {session.source} but head {head_name!r} "
                              f"was trained on {head.config['feature_source']} sessions")
    features = store_session_features(db_factory, session_id)
    if not features.reliable:
        raise PhqRefusalError(f"session {session_id} is unreliable for a PHQ estimate: "
                              + "; ".join(features.reliability_notes))
    x = np.array([[np.nan if features.values.get(n) is None else features.values[n] for n in head.features]])
    top = INSTRUMENT_MAX[head.instrument]
    raw = float(head.predict(x)[0])
    halfwidth = head.config["conformal"]["halfwidth"]
    halfwidth = float("inf") if halfwidth is None else halfwidth
    estimate = float(np.clip(raw, 0, top))
    result = PhqEstimate(session_id, head_name, head.instrument, estimate, float(max(0.0, raw - halfwidth)),
                         float(min(top, raw + halfwidth)), head.config["conformal"]["coverage"],
                         severity_band(estimate))
    if store:
        with db_factory.begin() as db:
            row = db.scalar(select(PhqPrediction).where(PhqPrediction.session_id == session_id,
                                                         PhqPrediction.head_id == head_id))
            if row is None:
                row = PhqPrediction(session_id=session_id, head_id=head_id)
                db.add(row)
            row.estimate, row.lower, row.upper = result.estimate, result.lower, result.upper
            row.coverage, row.band = result.coverage, result.band
            row.created_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return result


def head_report(config: dict) -> dict:
    """The evaluation report stored with a head (metrics with CIs, baseline, counts, interval, caveat)."""
    return {"name": config["name"], "instrument": config["instrument"], "model": config["model"]["kind"],
            "classifier": config["classifier"], "feature_source": config["feature_source"],
            "metrics": config["metrics"], "conformal": config["conformal"], "training": config["training"],
            "caveat": PHQ_CAVEAT, "item9": ITEM9_NOTE}
