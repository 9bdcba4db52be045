"""Readers for the standard FER data sets, each mapping its labels onto the model's label set explicitly.

Every reader returns a `LabelledImages`: something that can load image i as a PIL RGB image, the label
index of each image in the model's label order, and a fingerprint of the files it read. A label that
the model does not have is an error unless the source config drops or renames it, so a merged training
set never quietly trains "contempt" as "anger".
"""

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fervideo.errors import DataFileError
from fervideo.utils import sha256_file
from training.config import SourceConfig

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

# Common spellings of the canonical names in public data sets and folder trees.
ALIASES = {
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "happy": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
    "suprise": "surprise",
    "calm": "neutral",
}
FER2013_LABELS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
FERPLUS_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
RAFDB_LABELS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
AFFECTNET_LABELS = (
    "neutral",
    "happiness",
    "sadness",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
    "none",
    "uncertain",
    "non_face",
)
FER2013_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
FERPLUS_FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}


@dataclass
class LabelledImages:
    """One source after label mapping: `load(i)` gives image i, `labels[i]` its model label index."""

    name: str
    load: Callable[[int], Image.Image]
    labels: np.ndarray
    fingerprint: str
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.labels)


class LabelMapper:
    """Source label name -> model label index, or None when the source config drops it."""

    def __init__(self, model_labels: Sequence[str], source: SourceConfig, default_drop: Sequence[str] = ()):
        self.model_labels = list(model_labels)
        self.source = source
        self.drop = {d.lower() for d in (*default_drop, *source.drop)}

    def __call__(self, name: str) -> int | None:
        key = str(name).strip()
        if key in self.source.label_map:
            target = self.source.label_map[key]
            if target is None:
                return None
        else:
            if key.lower() in self.drop:
                return None
            target = ALIASES.get(key.lower(), key.lower())
            if target in self.drop:
                return None
        if target not in self.model_labels:
            raise DataFileError(
                f"{self.source.format} source {self.source.path}: label {key!r} is not one of the model's labels "
                f"{self.model_labels}; map it with `label_map` or list it under `drop`"
            )
        return self.model_labels.index(target)


def sha256_text(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def fingerprint_files(paths: Sequence[Path], root: Path) -> str:
    """sha256 over sorted (relative path, size): cheap for 300k images, and it changes when files do."""
    rows = sorted(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}" for p in paths)
    return sha256_text(*rows)


def fingerprint_file(path: Path) -> str:
    return sha256_file(path)


def _open_rgb(path: Path, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except OSError as exc:
        raise DataFileError(f"cannot read image {path}: {exc}") from exc
    return image.crop(box) if box is not None else image


def _file_loader(paths: list[Path], boxes: list[tuple[int, int, int, int]] | None = None):
    def load(index: int) -> Image.Image:
        return _open_rgb(paths[index], boxes[index] if boxes else None)

    return load


def _array_loader(arrays: np.ndarray):
    def load(index: int) -> Image.Image:
        return Image.fromarray(arrays[index]).convert("RGB")

    return load


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot read CSV {path}: {str(exc).splitlines()[0]}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def _limit(source: SourceConfig, *columns: list[Any]) -> tuple[list[Any], ...]:
    if source.limit is None:
        return columns
    return tuple(column[: source.limit] for column in columns)


def _finish(name: str, load, labels: list[int], fingerprint: str, dropped: int) -> LabelledImages:
    if not labels:
        raise DataFileError(f"{name}: no images left after label mapping ({dropped} dropped)")
    logger.info("%s: %d images (%d dropped)", name, len(labels), dropped)
    return LabelledImages(name, load, np.asarray(labels, dtype=np.int64), fingerprint, dropped)


# --------------------------------------------------------------------------------------------- readers
def _scan_label_folders(root: Path, target_of) -> tuple[list[Path], list[int], int]:
    """Images under root/<label>/..., with `target_of(folder name)` as their class (None drops the folder)."""
    paths, targets, dropped = [], [], 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        target = target_of(folder.name)
        if target is None:
            dropped += len(files)
            continue
        paths += files
        targets += [target] * len(files)
    return paths, targets, dropped


def read_image_folder(source: SourceConfig, labels: Sequence[str]) -> LabelledImages:
    """root/<label>/*.png, or root/<split>/<label>/*.png when a folder named after the split exists."""
    root = Path(source.path)
    if (root / source.split).is_dir():
        root = root / source.split
    if not root.is_dir():
        raise DataFileError(f"image folder {root} does not exist")
    mapper = LabelMapper(labels, source)
    paths, targets, dropped = _scan_label_folders(root, mapper)
    paths, targets = _limit(source, paths, targets)
    return _finish(f"image_folder:{root}", _file_loader(paths), targets, fingerprint_files(paths, root), dropped)


def _usage(split: str) -> str:
    return FER2013_USAGE.get(split, split)


def _pixels_to_array(pixels: pd.Series, path: Path) -> np.ndarray:
    try:
        flat = np.stack([np.array(p.split(), dtype=np.uint8) for p in pixels])
    except (ValueError, AttributeError) as exc:
        raise DataFileError(f"{path}: a `pixels` cell is not space-separated 0-255 integers") from exc
    side = int(round(np.sqrt(flat.shape[1])))
    if side * side != flat.shape[1]:
        raise DataFileError(f"{path}: `pixels` holds {flat.shape[1]} values, not a square image")
    return flat.reshape(len(flat), side, side)


def read_fer2013(source: SourceConfig, labels: Sequence[str]) -> LabelledImages:
    """fer2013.csv: `emotion` 0-6 (angry, disgust, fear, happy, sad, surprise, neutral), `pixels`, `Usage`."""
    path = Path(source.path)
    frame = _read_csv(path, ("emotion", "pixels", "Usage"))
    frame = frame[frame["Usage"] == _usage(source.split)]
    mapper = LabelMapper(labels, source)
    if not frame["emotion"].isin(range(7)).all():
        raise DataFileError(f"{path}: `emotion` must be 0-6")
    mapped = [mapper(FER2013_LABELS[int(e)]) for e in frame["emotion"]]
    keep = [i for i, m in enumerate(mapped) if m is not None]
    (keep,) = _limit(source, keep)
    arrays = _pixels_to_array(frame["pixels"].iloc[keep], path) if keep else np.zeros((0, 48, 48), np.uint8)
    name = f"fer2013:{source.split}"
    return _finish(
        name, _array_loader(arrays), [mapped[i] for i in keep], fingerprint_file(path), len(mapped) - len(keep)
    )


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """Index into FERPLUS_COLUMNS of the majority vote per row; -1 for ties and rows without votes."""
    top = votes.max(axis=1, keepdims=True)
    winners = (votes == top).sum(axis=1)
    choice = votes.argmax(axis=1)
    return np.where((winners == 1) & (top[:, 0] > 0), choice, -1)


def read_ferplus(source: SourceConfig, labels: Sequence[str]) -> LabelledImages:
    """fer2013new.csv vote counts; images from fer2013.csv (row-aligned) or the FER+ PNG folders.

    Majority label; ties, `unknown` and `NF` (not a face) are dropped; contempt per `contempt:`.
    """
    path = Path(source.path)
    frame = _read_csv(path, ("Usage", "Image name", *FERPLUS_COLUMNS))
    if source.images is None:
        raise DataFileError(f"ferplus source {path}: set `images:` to fer2013.csv or the FER+ image folder")
    images = Path(source.images)
    pixels = None
    if images.suffix == ".csv":
        fer = _read_csv(images, ("pixels",))
        if len(fer) != len(frame):
            raise DataFileError(f"{path} has {len(frame)} rows but {images} has {len(fer)}; they must align")
        pixels = fer["pixels"]
    rows = (frame["Usage"] == _usage(source.split)).to_numpy() & frame["Image name"].notna().to_numpy()
    votes = frame[list(FERPLUS_COLUMNS)].to_numpy(dtype=np.float64)
    winner = ferplus_majority(votes)
    drop = ["unknown", "NF"] + (["contempt"] if source.contempt == "drop" else [])
    mapper = LabelMapper(labels, source, default_drop=drop)
    keep, targets = [], []
    for row in np.flatnonzero(rows):
        target = mapper(FERPLUS_COLUMNS[winner[row]]) if winner[row] >= 0 else None
        if target is not None:
            keep.append(int(row))
            targets.append(target)
    keep, targets = _limit(source, keep, targets)
    dropped = int(rows.sum()) - len(keep)
    name = f"ferplus:{source.split}"
    if pixels is not None:
        arrays = _pixels_to_array(pixels.iloc[keep], images) if keep else np.zeros((0, 48, 48), np.uint8)
        return _finish(
            name, _array_loader(arrays), targets, sha256_text(fingerprint_file(path), fingerprint_file(images)), dropped
        )
    folder = images / FERPLUS_FOLDERS.get(_usage(source.split), "")
    folder = folder if folder.is_dir() else images
    paths = [folder / str(frame["Image name"].iloc[i]).strip() for i in keep]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataFileError(f"ferplus: {len(missing)} images listed in {path} are missing, e.g. {missing[0]}")
    fingerprint = sha256_text(fingerprint_file(path), fingerprint_files(paths, images))
    return _finish(name, _file_loader(paths), targets, fingerprint, dropped)


def _rafdb_label_file(root: Path) -> Path:
    for candidate in (root, root / "EmoLabel" / "list_patition_label.txt", root / "list_patition_label.txt"):
        if candidate.is_file():
            return candidate
    raise DataFileError(f"RAF-DB: no list_patition_label.txt under {root}")


def _rafdb_image(root: Path, name: str) -> Path:
    stem = Path(name).stem
    for candidate in (
        root / "Image" / "aligned" / f"{stem}_aligned.jpg",
        root / "aligned" / f"{stem}_aligned.jpg",
        root / "Image" / "aligned" / name,
        root / "Image" / "original" / name,
    ):
        if candidate.is_file():
            return candidate
    raise DataFileError(f"RAF-DB: image for {name} not found under {root}/Image/aligned")


def read_rafdb(source: SourceConfig, labels: Sequence[str]) -> LabelledImages:
    """RAF-DB basic: `train_00001.jpg 5` lines, 1-7 = surprise, fear, disgust, happiness, sadness, anger, neutral.

    The split comes from the file-name prefix (train / test); RAF-DB has no validation split, so `val`
    reads the test split, as the published results do.
    """
    label_file = _rafdb_label_file(Path(source.path))
    root = label_file.parent.parent if label_file.parent.name == "EmoLabel" else label_file.parent
    split = "test" if source.split in {"val", "test"} else "train"
    mapper = LabelMapper(labels, source)
    paths, targets, dropped = [], [], 0
    for number, line in enumerate(label_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*(\S+)\s+([1-7])\s*", line)
        if match is None:
            raise DataFileError(f"{label_file}:{number}: expected `<image> <1-7>`, got {line.strip()!r}")
        name, label = match.group(1), int(match.group(2))
        if not name.startswith(split):
            continue
        target = mapper(RAFDB_LABELS[label])
        if target is None:
            dropped += 1
            continue
        paths.append(_rafdb_image(root, name))
        targets.append(target)
    paths, targets = _limit(source, paths, targets)
    fingerprint = sha256_text(fingerprint_file(label_file), fingerprint_files(paths, root))
    return _finish(f"rafdb:{split}", _file_loader(paths), targets, fingerprint, dropped)


_AFFECTNET_SPLITS = {"train": ("train", "train_set", "training"), "val": ("val", "val_set", "validation", "valid")}


def _affectnet_name(raw: str) -> str:
    value = str(raw).strip()
    if value.isdigit():
        index = int(value)
        if index >= len(AFFECTNET_LABELS):
            raise DataFileError(f"AffectNet: expression id {index} is not 0-10")
        return AFFECTNET_LABELS[index]
    return value


def _affectnet_mapper(source: SourceConfig, labels: Sequence[str]) -> LabelMapper:
    # 9 (uncertain) and 10 (non-face) are never expressions; 8 (none) is kept only by models that have it.
    drop = ["uncertain", "non_face"] + (["contempt"] if source.contempt == "drop" else [])
    if "none" not in labels and "none" not in source.label_map:
        drop.append("none")
    return LabelMapper(labels, source, default_drop=drop)


def read_affectnet(source: SourceConfig, labels: Sequence[str]) -> LabelledImages:
    """AffectNet as a class-folder tree (folders named 0-10 or by emotion) or as the manual's CSV.

    CSV: an image-path column (`subDirectory_filePath` or `image`/`path`) and `expression` (0-10); when
    `face_x, face_y, face_width, face_height` are present the face is cropped out. Contempt follows
    `contempt: drop|keep`.
    """
    path = Path(source.path)
    mapper = _affectnet_mapper(source, labels)
    if path.is_dir():
        root = next(
            (path / s for s in _AFFECTNET_SPLITS.get(source.split, (source.split,)) if (path / s).is_dir()), path
        )
        folder_source = SourceConfig(**{**source.__dict__, "path": str(root), "split": "."})
        paths, targets, dropped = _scan_label_folders(root, lambda name: mapper(_affectnet_name(name)))
        paths, targets = _limit(folder_source, paths, targets)
        return _finish(f"affectnet:{root}", _file_loader(paths), targets, fingerprint_files(paths, root), dropped)
    frame = _read_csv(path, ("expression",))
    column = next((c for c in ("subDirectory_filePath", "image", "path", "pth", "file") if c in frame.columns), None)
    if column is None:
        raise DataFileError(f"{path}: no image-path column (subDirectory_filePath, image, path, pth or file)")
    image_root = Path(source.images) if source.images else path.parent
    has_box = all(c in frame.columns for c in ("face_x", "face_y", "face_width", "face_height"))
    paths, boxes, targets, dropped = [], [], [], 0
    for row in frame.itertuples(index=False):
        record = row._asdict()
        target = mapper(_affectnet_name(record["expression"]))
        if target is None:
            dropped += 1
            continue
        paths.append(image_root / str(record[column]))
        targets.append(target)
        if has_box:
            x, y, w, h = (int(record[c]) for c in ("face_x", "face_y", "face_width", "face_height"))
            boxes.append((x, y, x + w, y + h))
    paths, boxes, targets = _limit(source, paths, boxes, targets)
    return _finish(
        f"affectnet:{path.name}", _file_loader(paths, boxes or None), targets, fingerprint_file(path), dropped
    )


def read_hf(source: SourceConfig, labels: Sequence[str]) -> LabelledImages:
    """A Hugging Face dataset saved with `save_to_disk`, or a hub id (only when online)."""
    try:
        import datasets
    except ImportError as exc:
        raise DataFileError("hf sources need the `datasets` package: pip install datasets") from exc
    if Path(source.path).exists():
        loaded = datasets.load_from_disk(source.path)
    elif os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        raise DataFileError(f"hf source {source.path!r} is not a local folder and HF_HUB_OFFLINE is set")
    else:
        loaded = datasets.load_dataset(source.path)
    if isinstance(loaded, datasets.DatasetDict):
        names = [source.split, {"val": "validation", "test": "test"}.get(source.split, source.split)]
        split = next((n for n in names if n in loaded), None)
        if split is None:
            raise DataFileError(f"hf source {source.path}: no split {source.split!r}; has {list(loaded)}")
        loaded = loaded[split]
    for column in (source.image_column, source.label_column):
        if column not in loaded.column_names:
            raise DataFileError(f"hf source {source.path}: no column {column!r}; has {loaded.column_names}")
    feature = loaded.features[source.label_column]
    raw = loaded[source.label_column]
    names = [feature.int2str(int(v)) for v in raw] if hasattr(feature, "int2str") else [str(v) for v in raw]
    mapper = LabelMapper(labels, source)
    mapped = [mapper(n) for n in names]
    keep = [i for i, m in enumerate(mapped) if m is not None]
    (keep,) = _limit(source, keep)
    column = source.image_column

    def load(index: int) -> Image.Image:
        return loaded[keep[index]][column].convert("RGB")

    fingerprint = getattr(loaded, "_fingerprint", None) or sha256_text(source.path)
    return _finish(
        f"hf:{source.path}:{source.split}", load, [mapped[i] for i in keep], fingerprint, len(mapped) - len(keep)
    )


READERS: dict[str, Callable[[SourceConfig, Sequence[str]], LabelledImages]] = {
    "image_folder": read_image_folder,
    "fer2013": read_fer2013,
    "ferplus": read_ferplus,
    "rafdb": read_rafdb,
    "affectnet": read_affectnet,
    "hf": read_hf,
}


def read_source(source: SourceConfig, labels: Sequence[str]) -> LabelledImages:
    reader = READERS.get(source.format)
    if reader is None:
        raise DataFileError(f"unknown data format {source.format!r}; expected one of {sorted(READERS)}")
    if source.contempt not in {"drop", "keep"}:
        raise DataFileError(f"{source.path}: `contempt` must be drop or keep, not {source.contempt!r}")
    return reader(source, labels)


class FaceDataset(torch.utils.data.Dataset):
    """Several sources merged into one data set; `labels` is the merged label array (for sampling)."""

    def __init__(self, sources: Sequence[LabelledImages], transform: Callable[[Image.Image], torch.Tensor]):
        self.sources = list(sources)
        self.transform = transform
        self.labels = np.concatenate([s.labels for s in self.sources]) if self.sources else np.zeros(0, np.int64)
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        which = int(np.searchsorted(self._offsets, index, side="right") - 1)
        source = self.sources[which]
        local = index - int(self._offsets[which])
        return self.transform(source.load(local)), int(source.labels[local])

    def fingerprints(self) -> dict[str, str]:
        return {s.name: s.fingerprint for s in self.sources}

    def class_counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=n_classes)


def build_dataset(
    sources: Sequence[SourceConfig], labels: Sequence[str], transform: Callable[[Image.Image], torch.Tensor]
) -> FaceDataset:
    return FaceDataset([read_source(s, labels) for s in sources], transform)
