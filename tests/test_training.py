"""training/: readers on fixture files in the real formats, recipes, staged fine-tuning, exact resume,
evaluation reports and export agreement. The learning test is in test_training_learns.py."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fervideo.errors import DataFileError
from fervideo.labels import CANONICAL_LABELS
from training.config import SourceConfig, load_recipe, recipe_from_dict
from training.datasets import ferplus_majority, read_source
from training.loop import train_recipe
from training.synthetic import write_image_folder

RECIPES = Path(__file__).resolve().parent.parent / "training" / "recipes"
NINE = [*CANONICAL_LABELS, "contempt", "none"]
TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    # The suite shares 2 cores; one thread avoids OpenMP spin contention and keeps runs reproducible.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _png(path: Path, value: int = 128, size: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _labels_of(data) -> list[str]:
    return [CANONICAL_LABELS[i] for i in data.labels]


# ------------------------------------------------------------------------------------------- readers
def test_image_folder_reader_maps_aliases_and_rejects_unknown_labels(tmp_path):
    for folder in ("happy", "sad", "neutral"):
        _png(tmp_path / "train" / folder / "a.png")
    data = read_source(SourceConfig("image_folder", str(tmp_path), "train"), CANONICAL_LABELS)
    assert sorted(_labels_of(data)) == ["happiness", "neutral", "sadness"]
    assert data.load(0).mode == "RGB" and len(data.fingerprint) == 64
    _png(tmp_path / "train" / "bored" / "b.png")
    with pytest.raises(DataFileError, match="'bored' is not one of the model's labels"):
        read_source(SourceConfig("image_folder", str(tmp_path), "train"), CANONICAL_LABELS)
    dropped = read_source(SourceConfig("image_folder", str(tmp_path), "train", drop=["bored"]), CANONICAL_LABELS)
    assert len(dropped) == 3 and dropped.dropped == 1


def _fer2013_csv(path: Path) -> Path:
    pixels = " ".join(["7"] * 48 * 48)
    rows = [(3, pixels, "Training"), (6, pixels, "Training"), (0, pixels, "PublicTest"), (5, pixels, "PrivateTest")]
    pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"]).to_csv(path, index=False)
    return path


def test_fer2013_reader_splits_and_labels(tmp_path):
    csv = _fer2013_csv(tmp_path / "fer2013.csv")
    train = read_source(SourceConfig("fer2013", str(csv), "train"), CANONICAL_LABELS)
    assert _labels_of(train) == ["happiness", "neutral"]
    assert np.asarray(train.load(0)).shape == (48, 48, 3)
    assert _labels_of(read_source(SourceConfig("fer2013", str(csv), "val"), CANONICAL_LABELS)) == ["anger"]
    assert _labels_of(read_source(SourceConfig("fer2013", str(csv), "test"), CANONICAL_LABELS)) == ["surprise"]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"label": [1], "pixels": ["1"]}).to_csv(bad, index=False)
    with pytest.raises(DataFileError, match="missing column"):
        read_source(SourceConfig("fer2013", str(bad)), CANONICAL_LABELS)


def test_ferplus_majority_drops_unknown_not_a_face_ties_and_contempt(tmp_path):
    fer = _fer2013_csv(tmp_path / "fer2013.csv")
    columns = [
        "Usage",
        "Image name",
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
    ]
    rows = [
        ["Training", "fer0000000.png", 0, 8, 0, 0, 0, 0, 0, 2, 0, 0],  # happiness
        ["Training", "fer0000001.png", 0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
        ["PublicTest", "fer0000002.png", 5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # tie
        ["PrivateTest", "fer0000003.png", 0, 0, 0, 0, 0, 0, 0, 9, 1, 0],  # contempt
    ]
    new = tmp_path / "fer2013new.csv"
    pd.DataFrame(rows, columns=columns).to_csv(new, index=False)
    train = read_source(SourceConfig("ferplus", str(new), "train", images=str(fer)), CANONICAL_LABELS)
    assert _labels_of(train) == ["happiness"] and train.dropped == 1
    with pytest.raises(DataFileError, match="no images left"):
        read_source(SourceConfig("ferplus", str(new), "val", images=str(fer)), CANONICAL_LABELS)
    kept = read_source(SourceConfig("ferplus", str(new), "test", images=str(fer), contempt="keep"), NINE)
    assert [NINE[i] for i in kept.labels] == ["contempt"]
    with pytest.raises(DataFileError, match="'contempt'"):
        read_source(SourceConfig("ferplus", str(new), "test", images=str(fer), contempt="keep"), CANONICAL_LABELS)
    # The FER+ PNG folder layout instead of fer2013.csv pixels.
    _png(tmp_path / "img" / "FER2013Train" / "fer0000000.png")
    folder = read_source(SourceConfig("ferplus", str(new), "train", images=str(tmp_path / "img")), CANONICAL_LABELS)
    assert _labels_of(folder) == ["happiness"]
    assert list(ferplus_majority(np.array([[1, 3, 0], [2, 2, 0], [0, 0, 0]]))) == [1, -1, -1]


def test_rafdb_reader_uses_its_label_order_and_aligned_images(tmp_path):
    root = tmp_path / "basic"
    lines = ["train_00001.jpg 1", "train_00002.jpg 7", "test_0001.jpg 4", "test_0002.jpg 6"]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        _png(root / "Image" / "aligned" / line.split()[0].replace(".jpg", "_aligned.jpg"), size=100)
    train = read_source(SourceConfig("rafdb", str(root), "train"), CANONICAL_LABELS)
    assert _labels_of(train) == ["surprise", "neutral"]
    assert _labels_of(read_source(SourceConfig("rafdb", str(root), "test"), CANONICAL_LABELS)) == ["happiness", "anger"]
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 9\n")
    with pytest.raises(DataFileError, match=r"list_patition_label.txt:1"):
        read_source(SourceConfig("rafdb", str(root), "train"), CANONICAL_LABELS)


def test_affectnet_csv_crops_faces_and_folder_follows_contempt_setting(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        _png(tmp_path / "Manually_Annotated_Images" / "1" / name, size=64)
    frame = pd.DataFrame(
        {
            "subDirectory_filePath": [f"1/{n}" for n in ("a.png", "b.png", "c.png", "d.png")],
            "face_x": [8] * 4,
            "face_y": [8] * 4,
            "face_width": [40] * 4,
            "face_height": [40] * 4,
            "expression": [1, 7, 10, 6],
        }
    )
    frame.to_csv(tmp_path / "training.csv", index=False)
    source = SourceConfig(
        "affectnet", str(tmp_path / "training.csv"), images=str(tmp_path / "Manually_Annotated_Images")
    )
    data = read_source(source, CANONICAL_LABELS)
    assert _labels_of(data) == ["happiness", "anger"] and data.dropped == 2
    assert data.load(0).size == (40, 40)
    for folder in ("0", "7", "8"):
        _png(tmp_path / "tree" / "train" / folder / "x.png")
    assert _labels_of(read_source(SourceConfig("affectnet", str(tmp_path / "tree")), CANONICAL_LABELS)) == ["neutral"]
    kept = read_source(SourceConfig("affectnet", str(tmp_path / "tree"), contempt="keep"), NINE)
    assert [NINE[i] for i in kept.labels] == ["neutral", "contempt", "none"]


def test_hf_save_to_disk_reader(tmp_path):
    datasets = pytest.importorskip("datasets")
    images = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["happy", "angry"])})
    split = datasets.Dataset.from_dict({"image": images, "label": [0, 1]}, features=features)
    datasets.DatasetDict({"train": split}).save_to_disk(str(tmp_path / "ds"))
    data = read_source(SourceConfig("hf", str(tmp_path / "ds"), "train"), CANONICAL_LABELS)
    assert _labels_of(data) == ["happiness", "anger"] and data.load(1).getpixel((0, 0)) == (255, 255, 255)


# ------------------------------------------------------------------------------------------- recipes
def test_every_published_recipe_parses():
    names = {p.stem: load_recipe(p) for p in RECIPES.glob("*.yaml")}
    assert set(names) == {"vit_tiny_merged", "vit_base_fer2013", "vit_base_rafdb", "vit_9class_staged"}
    staged = names["vit_9class_staged"]
    assert [s.model.labels[-2:] for s in staged.stages][1:] == [["contempt", "none"]] * 2
    assert staged.stages[2].optim.scheduler == "cosine_restarts" and staged.stages[0].optim.batch_size == 128
    assert names["vit_base_fer2013"].stages[0].model.architecture == "vit_base_patch16_224"


def test_recipe_typos_are_errors():
    with pytest.raises(DataFileError, match="unknown key"):
        recipe_from_dict({"train": [{"format": "rafdb", "path": "x"}], "optim": {"learning_rate": 1}})
    with pytest.raises(DataFileError, match="scheduler"):
        recipe_from_dict({"train": [{"format": "rafdb", "path": "x"}], "optim": {"scheduler": "step"}})


# ------------------------------------------------------------------------------------ tiny training runs
@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    write_image_folder(root / "train", 10, 32, seed=1)
    write_image_folder(root / "val", 3, 32, seed=2)
    return root


def _tiny_recipe(faces: Path, out: Path, **optim) -> dict:
    return {
        "name": "tiny",
        "output_dir": str(out),
        "seed": 3,
        "num_workers": 0,
        "train": [{"format": "image_folder", "path": str(faces), "split": "train"}],
        "val": [{"format": "image_folder", "path": str(faces), "split": "val"}],
        "model": {"init": "random", "input_size": 32, "model_kwargs": TINY_VIT},
        "augment": {"mixup": 0.2, "cutmix": 1.0, "mix_prob": 0.5},
        "optim": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 0.5, "label_smoothing": 0.1} | optim,
    }


def _weights(path: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return safetensors.torch.load_file(str(path))


def test_resume_continues_from_the_saved_step(faces, tmp_path):
    whole = train_recipe(recipe_from_dict(_tiny_recipe(faces, tmp_path / "whole")))
    raw = _tiny_recipe(faces, tmp_path / "cut") | {"checkpoint_every": 1}
    # 70 images / batch 16 = 4 steps an epoch: "interrupted" at step 6, in the middle of the second epoch.
    assert train_recipe(recipe_from_dict(raw), stop_at_step=6).artifact is None
    saved = torch.load(tmp_path / "cut" / "main" / "last.pt", weights_only=True)
    assert (saved["state"]["step"], saved["state"]["epoch"], saved["state"]["batch_in_epoch"]) == (6, 1, 2)
    resumed = train_recipe(recipe_from_dict(raw), resume=True)
    expected, actual = _weights(whole.artifact), _weights(resumed.artifact)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    rows = pd.read_csv(tmp_path / "cut" / "main" / "metrics.csv")
    assert list(rows["epoch"]) == [1, 2] and (rows["images_per_s"] > 0).all()
    assert any((tmp_path / "cut" / "main" / "tensorboard").iterdir())


def test_staged_fine_tuning_hands_weights_on_and_declares_extra_classes(faces, tmp_path):
    raw = _tiny_recipe(faces, tmp_path / "run", epochs=1, balance="sampler") | {
        "stages": [
            {"name": "seven"},
            # lr 0: stage two must end exactly where stage one ended (its new 9-way head aside).
            {
                "name": "nine",
                "model": {"labels": NINE},
                "optim": {"lr": 0.0, "balance": "loss"},
                "train": [{"format": "image_folder", "path": str(faces), "split": "train", "drop": []}],
            },
        ]
    }
    result = train_recipe(recipe_from_dict(raw))
    first = _weights(tmp_path / "run" / "seven" / "best.safetensors")
    second = _weights(result.artifact)
    backbone = [k for k in first if not k.startswith("classifier.")]
    assert all(torch.equal(first[k], second[k]) for k in backbone)
    assert second["classifier.weight"].shape[0] == 9
    sidecar = json.loads(result.artifact.with_suffix(".json").read_text())
    assert sidecar["labels"] == NINE and sidecar["label_map"] == {"contempt": None, "none": None}
    assert sidecar["init"].endswith("seven/best.safetensors") and result.stages[0]["init"] == "random"
    assert {"architecture", "preprocessing", "recipe", "data", "metrics"} <= set(sidecar)
    assert sidecar["preprocessing"]["input_size"] == 32 and len(sidecar["data"]["train"]) == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_evaluate_and_export_agree(faces, tmp_path):
    from training.evaluate import evaluate_checkpoint
    from training.export import LOGIT_ATOL, export_model

    model = train_recipe(recipe_from_dict(_tiny_recipe(faces, tmp_path / "run", epochs=1))).artifact
    val = [SourceConfig("image_folder", str(faces), "val")]
    metrics = evaluate_checkpoint(model, val, tmp_path / "eval")
    assert set(metrics["report"]) >= {*CANONICAL_LABELS, "macro avg", "weighted avg"}
    for name in ("classification_report.txt", "confusion_matrix.png", "predictions.csv", "metrics.json"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "eval" / "predictions.csv")) == 21
    result = export_model(model, tmp_path / "export")
    assert result.max_logit_diff is not None and result.max_logit_diff <= LOGIT_ATOL
    scripted = torch.jit.load(str(result.torchscript))
    x = torch.randn(3, 3, 32, 32)
    from training.model import load_artifact

    reference, _ = load_artifact(model)
    with torch.inference_mode():
        assert torch.allclose(scripted(x), reference(x), atol=1e-5)


def test_cli_trains_and_evaluates_from_a_yaml_recipe(faces, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from fervideo.cli import app

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(_tiny_recipe(faces, tmp_path / "run", epochs=1)))
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "classifier", "--config", str(recipe)])
    assert trained.exit_code == 0, trained.output
    model = tmp_path / "run" / "model.safetensors"
    assert model.is_file() and model.with_suffix(".json").is_file()
    evaluated = runner.invoke(
        app,
        [
            "train",
            "evaluate",
            "--model",
            str(model),
            "--data",
            f"image_folder:{faces}",
            "--split",
            "val",
            "--out",
            str(tmp_path / "eval"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "macro avg" in evaluated.output and (tmp_path / "eval" / "confusion_matrix.png").is_file()
