"""PHQ-8/9 labels and the PHQ head: session features -> an *estimate* of the questionnaire total.

An estimate is never a diagnosis, and item 9 (thoughts of self-harm) is never inferred: see
`PHQ_CAVEAT`. Training evaluates by subject-grouped cross-validation (no subject on both sides of a
fold, checked on every fold) or an explicit held-out subject list. Heads are saved without pickle:
head.json (configuration, feature list, training summary, metrics, classifier provenance) plus
params.npz (imputer medians, scaler, and the regressor's arrays), and predicted with numpy.
See docs/phq.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from fervideo import __version__
from fervideo.errors import DataFileError, InvalidArgumentError, LabelFileError, NotFoundError, PhqRefusalError
from fervideo.features import FEATURE_DEFINITIONS, store_session_features

log = logging.getLogger(__name__)

# The PHQ caveat wording, in one place: the CLI prints PHQ_CAVEAT; exports, reports and the dashboard
# show fervideo.export.phq_caveats(), built from these same sentences.
NOT_A_DIAGNOSIS = "PHQ estimate from facial expression only: a research estimate, not a diagnosis."
ITEM9_NOTE = "Item 9 (suicidality) is not assessed: fervideo never infers it from video; ask about it directly."
PHQ_CAVEAT = f"{NOT_A_DIAGNOSIS} {ITEM9_NOTE}"
INSTRUMENT_MAX = {"PHQ-8": 24, "PHQ-9": 27}
PHQ_ITEMS = ("interest", "depressed", "sleep", "tired", "appetite", "failure", "concentrating", "moving",
             "self_harm")
DAIC_ITEM_COLUMNS = {f"PHQ8_{name}": item for name, item in zip(
    ("NoInterest", "Depressed", "Sleep", "Tired", "Appetite", "Failure", "Concentrating", "Moving"), PHQ_ITEMS,
    strict=False)}
SEVERITY_BANDS = ((0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 19, "moderately severe"),
                  (20, 27, "severe"))
CUTOFF = 10  # PHQ-8/9 >= 10: the usual screening threshold for current depression
DEFAULT_COVERAGE = 0.9
HEAD_FORMAT = 1
MODELS = ("ridge", "svr", "gbr")
HEAD_FEATURE_GROUPS = ("emotion", "valence_arousal", "distribution", "transitions")


def interval_note(coverage: float) -> str:
    """What a prediction interval of nominal `coverage` (0.9 for 90%) does and does not promise."""
    return (f"The {coverage:.0%} interval is split-conformal: it should hold the questionnaire total in about "
            f"{coverage:.0%} of sessions like those the head was trained on; the coverage is approximate and "
            "not a guarantee for this session.")


def severity_band(score: float) -> str:
    """The PHQ severity band of a (rounded) total: minimal, mild, moderate, moderately severe, severe."""
    rounded = int(round(score))
    for low, high, name in SEVERITY_BANDS:
        if rounded <= high:
            return name if rounded >= low else SEVERITY_BANDS[0][2]
    return SEVERITY_BANDS[-1][2]


def fervideo_home() -> Path:
    return Path(os.environ.get("FERVIDEO_HOME") or Path.home() / ".cache" / "fervideo")


# ============================================================================================ labels
@dataclass
class ParsedLabel:
    line: int
    subject: str
    session_id: int | None
    instrument: str
    total: int
    items: dict[str, int] | None
    administered_at: dt.datetime | None


@dataclass
class LabelImportResult:
    path: Path
    file_format: str  # "generic" or "daic-woz"
    rows: int
    imported: int
    already_present: int


def _parse_int(value: str | None, what: str) -> int:
    text = (value or "").strip()
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not number.is_integer():
        raise ValueError(f"{what} {text!r} is not a whole number")
    return int(number)


def _check_scores(instrument: str, total: int, items: dict[str, int] | None) -> None:
    if instrument not in INSTRUMENT_MAX:
        raise ValueError(f"instrument {instrument!r} is not PHQ-8 or PHQ-9")
    top = INSTRUMENT_MAX[instrument]
    if not 0 <= total <= top:
        raise ValueError(f"total {total} outside {instrument}'s range 0-{top}")
    if items:
        for name, score in items.items():
            if not 0 <= score <= 3:
                raise ValueError(f"item {name} = {score} outside 0-3")
        expected = len(PHQ_ITEMS) - (instrument == "PHQ-8")
        if instrument == "PHQ-8" and "self_harm" in items:
            raise ValueError("a PHQ-8 row has an item 9 score")
        if len(items) == expected and sum(items.values()) != total:
            raise ValueError(f"total {total} differs from the item sum {sum(items.values())}")


def _generic_item_columns(header: list[str]) -> dict[str, str]:
    """Item columns of a generic file: item1..item9 (or phq1..phq9, or the item names)."""
    found = {}
    for column in header:
        key = column.strip().lower().replace("_", "")
        for number, item in enumerate(PHQ_ITEMS, start=1):
            if key in (f"item{number}", f"phq{number}", item.replace("_", "")):
                found[column] = item
    return found


def _parse_generic_row(row: dict, items_map: dict[str, str]) -> tuple[str, int | None, str, int, dict | None,
                                                                       dt.datetime | None]:
    subject = (row.get("subject") or "").strip()
    if not subject:
        raise ValueError("subject is empty")
    session_text = (row.get("session") or "").strip()
    session_id = _parse_int(session_text, "session") if session_text else None
    instrument = (row.get("instrument") or "").strip().upper().replace("PHQ8", "PHQ-8").replace("PHQ9", "PHQ-9")
    total = _parse_int(row.get("total"), "total")
    items = {item: _parse_int(row[column], f"item {item}") for column, item in items_map.items()
             if (row.get(column) or "").strip()}
    when_text = (row.get("administered_at") or "").strip()
    try:
        when = dt.datetime.fromisoformat(when_text) if when_text else None
    except ValueError:
        raise ValueError(f"administered_at {when_text!r} is not an ISO date") from None
    return subject, session_id, instrument, total, items or None, when


def _parse_daic_row(row: dict, total_column: str) -> tuple[str, None, str, int, dict | None, None]:
    subject = str(_parse_int(row.get("Participant_ID"), "Participant_ID"))
    total = _parse_int(row.get(total_column), total_column)
    items = {item: _parse_int(row[column], column) for column, item in DAIC_ITEM_COLUMNS.items()
             if column in row and (row.get(column) or "").strip()}
    return subject, None, "PHQ-8", total, items or None, None


def parse_label_file(path: Path) -> tuple[str, list[ParsedLabel]]:
    """Parse and check a labels CSV; raise LabelFileError listing every bad row (line numbers are 1-based)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read ({exc})") from None
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if "Participant_ID" in header:
        total_column = next((c for c in ("PHQ8_Score", "PHQ_Score") if c in header), None)
        if total_column is None:
            raise DataFileError(f"{path}: a DAIC-WOZ file needs a PHQ8_Score or PHQ_Score column")
        file_format = "daic-woz"
    elif {"subject", "instrument", "total"} <= set(header):
        file_format, items_map = "generic", _generic_item_columns(header)
    else:
        raise DataFileError(f"{path}: unknown labels format; need columns subject, instrument, total "
                            "(generic) or Participant_ID, PHQ8_Score (DAIC-WOZ)")
    labels, problems = [], []
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        try:
            fields = (_parse_daic_row(row, total_column) if file_format == "daic-woz"
                      else _parse_generic_row(row, items_map))
            _check_scores(fields[2], fields[3], fields[4])
        except ValueError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        labels.append(ParsedLabel(line, *fields))
    if problems:
        raise LabelFileError(f"{path}: {len(problems)} bad row(s), nothing imported: " + "; ".join(problems),
                             problems)
    if not labels:
        raise DataFileError(f"{path}: no label rows")
    return file_format, labels


def import_labels(db_factory, path: str | Path) -> LabelImportResult:
    """Import a labels file in one transaction: all rows or none. Identical rows already stored are skipped."""
    from fervideo.store import PhqLabel, VideoSession, get_or_create_subject

    path = Path(path)
    file_format, labels = parse_label_file(path)
    problems, imported, present = [], 0, 0
    with db_factory() as db, db.begin():
        for label in labels:
            subject = get_or_create_subject(db, label.subject)
            if label.session_id is not None:
                session = db.get(VideoSession, label.session_id)
                if session is None or session.subject_id != subject.id:
                    problems.append(f"line {label.line}: session {label.session_id} is not a session of "
                                    f"subject {label.subject}")
                    continue
            duplicate = db.scalar(select(PhqLabel.id).where(
                PhqLabel.subject_id == subject.id, PhqLabel.session_id.is_(None) if label.session_id is None
                else PhqLabel.session_id == label.session_id, PhqLabel.instrument == label.instrument,
                PhqLabel.total == label.total, PhqLabel.administered_at.is_(None) if label.administered_at is None
                else PhqLabel.administered_at == label.administered_at))
            if duplicate is not None:
                present += 1
                continue
            db.add(PhqLabel(subject_id=subject.id, session_id=label.session_id, instrument=label.instrument,
                            total=label.total, items=label.items, administered_at=label.administered_at,
                            source_file=str(path.resolve())))
            imported += 1
        if problems:
            db.rollback()
            raise LabelFileError(f"{path}: {len(problems)} bad row(s), nothing imported: " + "; ".join(problems),
                                 problems)
    return LabelImportResult(path, file_format, len(labels), imported, present)


# ============================================================================================ dataset
@dataclass
class Dataset:
    X: np.ndarray  # [sessions, features], NaN where a feature is missing
    y: np.ndarray  # PHQ totals
    groups: np.ndarray  # subject code per session: the CV grouping unit
    session_ids: np.ndarray
    feature_names: list[str]
    instrument: str
    source: str
    classifier_name: str
    classifier_sha256: str
    skipped: dict[str, int] = field(default_factory=dict)


def _label_total(label, instrument: str) -> int | None:
    if label.instrument == instrument:
        return label.total
    if instrument == "PHQ-8" and label.items and len(label.items) == 9:
        return label.total - label.items["self_harm"]  # PHQ-9 -> PHQ-8 by dropping item 9
    return None


def _pick_label(labels: list, session, instrument: str) -> int | None:
    """A session-specific label wins; else the subject-level label administered closest to the session."""
    usable = [(lab, total) for lab in labels if (total := _label_total(lab, instrument)) is not None]
    own = [pair for pair in usable if pair[0].session_id == session.id]
    general = [pair for pair in usable if pair[0].session_id is None]
    candidates = own or general
    if not candidates:
        return None
    if session.recorded_at is not None and all(lab.administered_at for lab, _ in candidates):
        return min(candidates, key=lambda p: abs((p[0].administered_at - session.recorded_at).total_seconds()))[1]
    return max(candidates, key=lambda p: p[0].id)[1]


def head_feature_names(values: list[dict], source: str, include_au: bool = True) -> list[str]:
    groups = set(HEAD_FEATURE_GROUPS) | ({"au"} if include_au and source == "openface" else set())
    present = set().union(*values) if values else set()
    return [name for name, d in FEATURE_DEFINITIONS.items() if d.group in groups and name in present]


def build_dataset(db_factory, instrument: str = "PHQ-8", classifier: str | None = None,
                  source_file: str | None = None, include_au: bool = True) -> Dataset:
    """Labelled, reliable sessions of one classifier -> a feature matrix grouped by subject."""
    from fervideo.store import PhqLabel, SessionFeatures, SessionStatus, Subject, VideoSession

    if instrument not in INSTRUMENT_MAX:
        raise InvalidArgumentError(f"--instrument must be PHQ-8 or PHQ-9, got {instrument!r}")
    with db_factory() as db:
        query = select(PhqLabel)
        if source_file is not None:
            query = query.where(PhqLabel.source_file == source_file)
        labels = list(db.scalars(query))
        by_subject: dict[int, list] = {}
        for label in labels:
            by_subject.setdefault(label.subject_id, []).append(label)
        sessions = list(db.scalars(select(VideoSession).where(
            VideoSession.subject_id.in_(by_subject), VideoSession.status == SessionStatus.DONE)
            .order_by(VideoSession.id)))
        classifiers = {(s.classifier_name, s.classifier_sha256) for s in sessions
                       if classifier in (None, s.classifier_name)}
        if not classifiers:
            raise DataFileError("no processed sessions of labelled subjects" + (
                f" with classifier {classifier}" if classifier else "") + "; import labels and process videos first")
        if len(classifiers) > 1:
            names = ", ".join(sorted(f"{n} ({h[:8]})" for n, h in classifiers))
            raise InvalidArgumentError(f"labelled sessions come from several classifiers ({names}); "
                                       "pick one with --classifier")
        (classifier_name, classifier_sha), = classifiers
        codes = dict(db.execute(select(Subject.id, Subject.code)).all())
        rows, skipped = [], {"unreliable": 0, "no label for the instrument": 0}
        for session in sessions:
            if (session.classifier_name, session.classifier_sha256) != (classifier_name, classifier_sha):
                continue
            total = _pick_label(by_subject[session.subject_id], session, instrument)
            if total is None:
                skipped["no label for the instrument"] += 1
                continue
            features = db.get(SessionFeatures, session.id)
            if features is None:
                features = store_session_features(db_factory, session.id)
            if not features.reliable:
                skipped["unreliable"] += 1
                continue
            rows.append((session, total, features.values, codes[session.subject_id]))
    if not rows:
        raise DataFileError("no reliable labelled sessions to train on")
    source = rows[0][0].source
    names = head_feature_names([r[2] for r in rows], source, include_au)
    X = np.array([[np.nan if r[2].get(n) is None else r[2][n] for n in names] for r in rows], dtype=np.float64)
    return Dataset(X, np.array([r[1] for r in rows], dtype=np.float64),
                   np.array([r[3] for r in rows]),
                   np.array([r[0].id for r in rows]), names, instrument, source, classifier_name, classifier_sha,
                   skipped)


# ================================================================================== model and folds
def make_pipeline(model: str = "ridge", alpha: float = 10.0):
    """Median imputation -> standard scaling -> regressor (ridge by default; svr; gbr)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    regressors = {
        "ridge": lambda: Ridge(alpha=alpha),
        "svr": lambda: SVR(kernel="rbf", C=10.0, epsilon=1.0, gamma="scale"),
        "gbr": lambda: GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05, random_state=0),
    }
    if model not in regressors:
        raise InvalidArgumentError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler()), ("regress", regressors[model]())])


def check_no_subject_leak(groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    """Raise if any subject has sessions on both sides of a fold (a bug, never a user error)."""
    shared = set(groups[train]) & set(groups[test])
    if shared:
        raise RuntimeError(f"subject leak across a fold: {sorted(shared)[:5]}")


def read_split_file(path: Path) -> set[str]:
    """Held-out subjects: every Participant_ID/subject listed (DAIC-WOZ dev list), or those with split != train."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")), skipinitialspace=True))
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read ({exc.strerror})") from None
    held_out = set()
    for row in rows:
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        subject = row.get("Participant_ID") or row.get("subject")
        if not subject:
            raise DataFileError(f"{path}: needs a Participant_ID or subject column")
        if row.get("split", "test").lower() != "train":
            held_out.add(str(int(float(subject))) if subject.replace(".", "").isdigit() else subject)
    return held_out


def subject_folds(groups: np.ndarray, cv: str = "subject-kfold", n_splits: int = 5,
                  held_out: set[str] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs grouped by subject; every fold is checked for leaks before it is yielded."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    index = np.arange(len(groups))
    if cv == "split":
        test = np.isin(groups, sorted(held_out or ()))
        if not test.any() or test.all():
            raise InvalidArgumentError("the split file must hold out some, but not all, labelled subjects")
        splits = [(index[~test], index[test])]
    elif cv == "loso":
        splits = LeaveOneGroupOut().split(index, groups=groups)
    elif cv == "subject-kfold":
        n_subjects = len(set(groups))
        if n_subjects < 2:
            raise InvalidArgumentError("cross-validation needs at least 2 labelled subjects")
        splits = GroupKFold(n_splits=min(n_splits, n_subjects)).split(index, groups=groups)
    else:
        raise InvalidArgumentError(f"--cv must be subject-kfold, loso or split, got {cv!r}")
    for train, test in splits:
        check_no_subject_leak(groups, train, test)
        yield train, test


# ============================================================================================ metrics
def ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Lin's concordance correlation coefficient."""
    if len(y) < 2:
        return float("nan")
    cov = np.mean((y - y.mean()) * (p - p.mean()))
    denominator = y.var() + p.var() + (y.mean() - p.mean()) ** 2
    return float(2 * cov / denominator) if denominator > 0 else float("nan")


def pearson(y: np.ndarray, p: np.ndarray) -> float:
    if len(y) < 2 or np.std(y) == 0 or np.std(p) == 0:
        return float("nan")
    return float(np.corrcoef(y, p)[0, 1])


def f1_at_cutoff(y: np.ndarray, p: np.ndarray, cutoff: float = CUTOFF) -> float:
    truth, guess = y >= cutoff, p >= cutoff
    tp = np.sum(truth & guess)
    denominator = 2 * tp + np.sum(truth & ~guess) + np.sum(~truth & guess)
    return float(2 * tp / denominator) if denominator else float("nan")


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": lambda y, p: float(np.mean(np.abs(y - p))),
    "rmse": lambda y, p: float(np.sqrt(np.mean((y - p) ** 2))),
    "ccc": ccc,
    "pearson_r": pearson,
    "f1_at_10": f1_at_cutoff,
}


def metric_report(y: np.ndarray, p: np.ndarray, groups: np.ndarray, n_boot: int = 1000,
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """Each metric with a 95% percentile interval from a subject-clustered bootstrap."""
    rng = np.random.default_rng(seed)
    subjects = np.unique(groups)
    members = {s: np.flatnonzero(groups == s) for s in subjects}
    samples = {name: [] for name in METRICS}
    for _ in range(n_boot):
        index = np.concatenate([members[s] for s in rng.choice(subjects, size=len(subjects), replace=True)])
        for name, fn in METRICS.items():
            samples[name].append(fn(y[index], p[index]))
    report = {}
    for name, fn in METRICS.items():
        values = np.array(samples[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        low, high = (np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan))
        report[name] = {"value": fn(y, p), "ci_low": float(low), "ci_high": float(high)}
    return report


def conformal_halfwidth(residuals: np.ndarray, coverage: float = DEFAULT_COVERAGE) -> float:
    """Split-conformal quantile of |residual|: the ceil((n+1) * coverage)-th smallest (inf if too few)."""
    scores = np.sort(np.abs(residuals))
    rank = math.ceil((len(scores) + 1) * coverage)
    return float(scores[rank - 1]) if 0 < rank <= len(scores) else float("inf")


@dataclass
class Evaluation:
    cv: str
    predictions: np.ndarray  # out-of-fold, per session
    baseline: np.ndarray  # training-fold mean, per session
    model_metrics: dict
    baseline_metrics: dict
    n_subjects: int
    n_sessions: int
    n_folds: int

    def as_json(self) -> dict:
        return {"cv": self.cv, "model": self.model_metrics, "mean_baseline": self.baseline_metrics,
                "n_subjects": self.n_subjects, "n_sessions": self.n_sessions, "n_folds": self.n_folds,
                "unit": "session (bootstrap resamples subjects)"}


def cross_validate(data: Dataset, model: str = "ridge", cv: str = "subject-kfold", n_splits: int = 5,
                   held_out: set[str] | None = None, alpha: float = 10.0, n_boot: int = 1000) -> Evaluation:
    """Out-of-fold predictions of the model and of the mean predictor, with metrics and bootstrap CIs."""
    predictions = np.full(len(data.y), np.nan)
    baseline = np.full(len(data.y), np.nan)
    n_folds = 0
    for train, test in subject_folds(data.groups, cv, n_splits, held_out):
        fitted = make_pipeline(model, alpha).fit(data.X[train], data.y[train])
        predictions[test] = fitted.predict(data.X[test])
        baseline[test] = data.y[train].mean()
        n_folds += 1
    scored = np.isfinite(predictions)
    y, groups = data.y[scored], data.groups[scored]
    top = INSTRUMENT_MAX[data.instrument]
    clipped = np.clip(predictions[scored], 0, top)
    return Evaluation(cv, predictions, baseline, metric_report(y, clipped, groups, n_boot),
                      metric_report(y, baseline[scored], groups, n_boot), len(set(groups)), int(scored.sum()),
                      n_folds)


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
               include_au: bool = True, n_boot: int = 1000, overwrite: bool = False) -> TrainResult:
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
    data = build_dataset(db_factory, instrument, classifier, source_file, include_au)
    if cv == "split" and split_file is None:
        raise InvalidArgumentError("--cv split needs a split FILE")
    held_out = read_split_file(split_file) if cv == "split" else None
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
                     "skipped_sessions": data.skipped, "labels_file": source_file},
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
