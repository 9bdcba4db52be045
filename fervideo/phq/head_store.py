"""PHQ heads in the database: configuration JSON + arrays as npz bytes with their sha256 (never pickle).

Any machine with the database URL can load a head and predict. Heads saved as files by older versions
(`$FERVIDEO_HOME/phq_heads/NAME/head.json + params.npz`) are imported once by `fervideo db upgrade`
through `import_file_heads`.

Array names inside the npz: `final.*` (the model for new subjects), `fold<k>.*` (the fold models CV+
needs), `calibration.*` (per calibration session: fold, residual, weight, subject), `oof.*` (the
out-of-fold predictions of every training session). Format-1 heads (imported files) hold unprefixed
arrays of the final model only; they can be shown but not used to predict.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from fervideo.errors import DataFileError, InvalidArgumentError, NotFoundError
from fervideo.phq.bands import HEAD_FORMAT, fervideo_home
from fervideo.phq.interval import Calibration
from fervideo.phq.regressor import predict_arrays

log = logging.getLogger(__name__)


# ============================================================================================= bytes
def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def unpack_arrays(params: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(params), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def canonical_json(config: dict) -> bytes:
    return json.dumps(config, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()


def head_sha256(config: dict, params_sha256: str) -> str:
    """The head's identity: its configuration and its arrays' digest."""
    return hashlib.sha256(canonical_json(config) + params_sha256.encode()).hexdigest()


def clean_json(value):
    """NaN/inf -> None, numpy scalars -> Python, recursively (configs and metrics are strict JSON)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ============================================================================================= model
@dataclass
class PhqHeadModel:
    name: str
    config: dict
    arrays: dict[str, np.ndarray]
    head_id: int | None = None

    @property
    def features(self) -> list[str]:
        return self.config["features"]

    @property
    def instrument(self) -> str:
        return self.config["instrument"]

    @property
    def format(self) -> int:
        return int(self.config.get("format") or 1)

    @property
    def kind(self) -> str:
        return self.config["model"]["kind"]

    def _part(self, prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The final model's raw predictions (the refit on every subject; with --cv split, the training part)."""
        if self.format == 1:
            return predict_arrays(self.kind, self.arrays, X)
        return predict_arrays(self.kind, self._part("final."), X)

    def fold_predict(self, X: np.ndarray, fold: int) -> np.ndarray:
        return predict_arrays(self.kind, self._part(f"fold{fold}."), X)

    def fold_predictions(self, X: np.ndarray) -> np.ndarray:
        """[sessions, folds]: every fold model's raw prediction."""
        return np.column_stack([self.fold_predict(X, k) for k in range(int(self.config["interval"]["n_folds"]))])

    @property
    def calibration(self) -> Calibration:
        return Calibration(self.arrays["calibration.fold"], self.arrays["calibration.residual"],
                           self.arrays["calibration.weight"], self.arrays["calibration.group"],
                           float(self.config["interval"]["coverage"]))


# ========================================================================================== database
def store_head(db_factory, config: dict, arrays: dict[str, np.ndarray], overwrite: bool = False) -> int:
    """Insert (or, with overwrite, replace) the phq_heads row holding this head; return its id."""
    from fervideo.store import PhqHead

    params = pack_arrays(arrays)
    params_sha256 = hashlib.sha256(params).hexdigest()
    name = config["name"]
    with db_factory.begin() as db:
        row = db.scalar(select(PhqHead).where(PhqHead.name == name))
        if row is not None and not overwrite:
            raise InvalidArgumentError(f"a PHQ head named {name!r} exists; pick another --name or use --overwrite")
        if row is None:
            row = PhqHead(name=name)
            db.add(row)
        _fill_row(row, config, params, params_sha256, path=None)
        db.flush()
        return row.id


def _fill_row(row, config: dict, params: bytes, params_sha256: str, path: str | None) -> None:
    training = config.get("training") or {}
    interval = config.get("interval") or {}
    row.path, row.config, row.params, row.params_sha256 = path, config, params, params_sha256
    row.sha256 = head_sha256(config, params_sha256)
    row.head_format = int(config.get("format") or 1)
    row.instrument, row.feature_source = config["instrument"], config["feature_source"]
    row.classifier_name, row.classifier_sha256 = config["classifier"]["name"], config["classifier"]["sha256"]
    row.n_subjects, row.n_sessions = int(training["n_subjects"]), int(training["n_sessions"])
    row.metrics = config.get("metrics") or {}
    row.beats_baseline = config.get("beats_baseline")
    row.interval_method = interval.get("method") or (config.get("conformal") or {}).get("method")
    row.sample_fps, row.feature_version = config.get("sample_fps"), config.get("feature_version")
    row.openface_columns_sha256 = config.get("openface_columns_sha256")
    row.max_imputed_fraction = config.get("max_imputed_fraction")


def load_head_row(row) -> PhqHeadModel:
    """A phq_heads row -> the head, after checking its arrays and configuration against the stored sha256."""
    if row.config is None or row.params is None:
        raise DataFileError(f"PHQ head {row.name!r} is not in the database yet; run `fervideo db upgrade` on a "
                            "machine that has its files, or retrain it")
    if hashlib.sha256(row.params).hexdigest() != row.params_sha256 or \
            head_sha256(row.config, row.params_sha256) != row.sha256:
        raise DataFileError(f"PHQ head {row.name!r} changed since training (sha256 mismatch); retrain it")
    try:
        arrays = unpack_arrays(row.params)
    except ValueError as exc:
        raise DataFileError(f"PHQ head {row.name!r} has damaged arrays: {exc}") from None
    return PhqHeadModel(row.name, row.config, arrays, row.id)


def get_head(db_factory, name: str) -> tuple[int, PhqHeadModel]:
    from fervideo.store import PhqHead

    with db_factory() as db:
        row = db.scalar(select(PhqHead).where(PhqHead.name == name))
        if row is None:
            raise NotFoundError(f"no PHQ head named {name!r}; train one with `fervideo phq train`")
        return row.id, load_head_row(row)


# ============================================================================ heads saved as files
def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for part in ("head.json", "params.npz"):
        digest.update((path / part).read_bytes())
    return digest.hexdigest()


def read_head_files(path: Path) -> tuple[dict, bytes]:
    """head.json + params.npz of a head folder written by fervideo <= 0.x (format 1)."""
    try:
        config = json.loads((path / "head.json").read_text())
        params = (path / "params.npz").read_bytes()
        unpack_arrays(params)  # refuses pickled content
    except (OSError, ValueError) as exc:
        raise DataFileError(f"PHQ head files in {path} are missing or damaged: {exc}") from None
    return config, params


def import_file_heads(db_factory, home: Path | None = None) -> list[str]:
    """Copy every head saved as files under `$FERVIDEO_HOME/phq_heads` into the database, once.

    A head whose row exists but holds no arrays (a head trained before heads moved into the database) is
    filled in if its files still match the sha256 recorded at training. Folders without a row here belong to
    another database and are left alone, as are heads already in the database. Returns the names imported.
    Called by `fervideo db upgrade`.
    """
    from fervideo.store import PhqHead

    folder = (home or fervideo_home()) / "phq_heads"
    imported: list[str] = []
    if not folder.is_dir():
        return imported
    for path in sorted(p for p in folder.iterdir() if (p / "head.json").is_file()):
        with db_factory.begin() as db:
            row = db.scalar(select(PhqHead).where(PhqHead.name == path.name))
            if row is None:
                log.info("PHQ head folder %s has no row in this database; not imported", path)
                continue
            if row.params is not None:
                continue
            if _file_sha256(path) != row.sha256:
                log.warning("PHQ head %s: files changed since training; not imported", path.name)
                continue
            try:
                config, params = read_head_files(path)
            except DataFileError as error:  # one damaged folder must not stop the upgrade
                log.warning("%s; not imported", error)
                continue
            if config.get("name") != path.name:
                log.warning("PHQ head folder %s holds head %r; not imported", path, config.get("name"))
                continue
            _fill_row(row, config, params, hashlib.sha256(params).hexdigest(), str(path))
            imported.append(path.name)
    return imported


def is_current_format(head: PhqHeadModel) -> bool:
    return head.format == HEAD_FORMAT


def import_file_heads_on(engine, home: Path | None = None) -> list[str]:
    """`import_file_heads` on an SQLAlchemy engine (what `fervideo db upgrade` holds)."""
    from sqlalchemy.orm import sessionmaker

    return import_file_heads(sessionmaker(engine, expire_on_commit=False), home)
