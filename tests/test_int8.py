"""Opt-in int8 dynamic quantisation of the ViT (fervideo/emotion/quantize.py, docs/speed.md "int8 (opt-in)").

The classifier is the ViT-Tiny stand-in: the seed's exact timm architecture with seeded random weights (no
downloads). Its agreement with fp32 is measured on real face crops: the two face images in tests/data and
the faces of the real clip. Tolerance: probabilities within PROB_TOLERANCE (measured max 0.017, mean 0.004; int8
weights and per-batch int8 activations, not float rounding), top-1 the same on at least TOP1_AGREEMENT of the
crops (measured 19 of 20).
These bound the stand-in only; the trained model's agreement is not measured here. Nothing is timed.
"""

from __future__ import annotations

from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, cli
from PIL import Image

from fervideo.emotion import ViTTinyFER, load_classifier
from fervideo.emotion.quantize import agreement, check_quantizable
from fervideo.emotion.registry import BASELINE_MODEL
from fervideo.errors import InvalidArgumentError
from fervideo.faces import FaceAnalyzer
from fervideo.pipeline import SessionProcessor

DATA = Path(__file__).parent / "data"
PROB_TOLERANCE = 0.05
TOP1_AGREEMENT = 0.9


@pytest.fixture(scope="module")
def standin_vit(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vit") / "vit_tiny_standin.pth"
    torch.manual_seed(0)
    torch.save(ViTTinyFER().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def real_face_crops() -> np.ndarray:
    """The two face images plus the aligned faces of every 4th frame of the real clip."""
    images = [np.asarray(Image.open(DATA / f"face_{name}_224.jpg")) for name in ("happiness", "surprise")]
    reader = decord.VideoReader(str(DATA / "single_face.mp4"))
    frames = reader.get_batch(list(range(0, len(reader), 4))).asnumpy()
    faces = FaceAnalyzer(device="cpu").analyze(frames)
    assert faces.found.sum() >= 10  # the clip has one face throughout
    return np.concatenate([np.stack(images), faces.crops])


@pytest.fixture(scope="module")
def fp32_and_int8(standin_vit):
    """fp32 and int8 as `--quantize int8` gives them by default on the CPU: both in ONNX Runtime."""
    return (load_classifier(str(standin_vit), device="cpu", batch_size=32),
            load_classifier(str(standin_vit), device="cpu", batch_size=32, quantize="int8"))


@pytest.fixture(scope="module")
def torch_int8(standin_vit):
    return load_classifier(str(standin_vit), device="cpu", batch_size=32, quantize="int8", backend="torch")


@pytest.mark.parametrize("implementation", ["onnxruntime", "torch"])
def test_int8_probabilities_agree_with_fp32_on_real_faces(fp32_and_int8, torch_int8, real_face_crops,
                                                          implementation):
    fp32, int8 = fp32_and_int8
    int8 = torch_int8 if implementation == "torch" else int8
    reference, quantised = fp32.predict(real_face_crops), int8.predict(real_face_crops)
    np.testing.assert_allclose(quantised.sum(axis=1), 1.0, atol=1e-5)
    measured = agreement(reference, quantised)
    print(f"\n{implementation} int8 vs fp32 on {measured['n']} real crops: max {measured['max_abs']:.4f}, "
          f"mean {measured['mean_abs']:.4f}, top-1 {measured['top1_agreement']:.0%}")
    assert 0 < measured["max_abs"] <= PROB_TOLERANCE  # > 0: the quantised network really ran
    assert measured["top1_agreement"] >= TOP1_AGREEMENT


def test_torch_int8_quantises_the_linear_layers(fp32_and_int8, torch_int8):
    fp32, _ = fp32_and_int8
    assert torch_int8.backend == "torch"
    assert isinstance(torch_int8.model.backbone.vit.blocks[0].attn.qkv, torch.ao.nn.quantized.dynamic.Linear)
    assert isinstance(torch_int8.model.classifier, torch.ao.nn.quantized.dynamic.Linear)
    assert (torch_int8.provenance()["quantize"], torch_int8.result_name) == ("int8", "vit_tiny_standin+int8")
    assert fp32.weights_sha256 == torch_int8.weights_sha256


def test_onnx_int8_is_a_quantised_export_cached_beside_the_fp32_one(fp32_and_int8):
    import onnx

    fp32, int8 = fp32_and_int8
    assert (fp32.backend, int8.backend) == ("onnx", "onnx")
    assert int8._onnx.path != fp32._onnx.path and int8._onnx.path.parent == fp32._onnx.path.parent
    assert "-int8-" in int8._onnx.path.name and fp32.weights_sha256[:32] in int8._onnx.path.name
    operators = {node.op_type for node in onnx.load(str(int8._onnx.path)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= operators
    assert "MatMulInteger" not in {node.op_type for node in onnx.load(str(fp32._onnx.path)).graph.node}
    assert not list(int8._onnx.path.parent.glob("*.partial"))  # written to a temporary name, then renamed
    assert (fp32.provenance()["quantize"], int8.provenance()["quantize"]) == (None, "int8")
    assert (fp32.result_name, int8.result_name) == ("vit_tiny_standin", "vit_tiny_standin+int8")
    assert fp32.weights_sha256 == int8.weights_sha256  # the same weights file; the settings key tells them apart


def test_the_onnx_quantiser_says_nothing_and_leaves_logging_as_it_was(fp32_and_int8, tmp_path):
    """ONNX Runtime's quantiser logs advice on the root logger with logging.warning, which on a bare root
    (a spawned worker) would also install a stderr handler for everything after."""
    import subprocess
    import sys

    fp32, _ = fp32_and_int8
    out = tmp_path / "int8.onnx"
    script = ("import logging, sys; from pathlib import Path; "
              "from fervideo.emotion.quantize import quantize_onnx_int8; "
              "quantize_onnx_int8(Path(sys.argv[1]), Path(sys.argv[2])); print(len(logging.getLogger().handlers))")
    completed = subprocess.run([sys.executable, "-c", script, str(fp32._onnx.path), str(out)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "0" and "pre-process" not in completed.stderr
    assert out.stat().st_size > 0


def test_settings_key_differs_with_and_without_int8_and_between_the_two_int8s(fp32_and_int8, torch_int8, db_url):
    fp32, int8 = fp32_and_int8
    analyzer = FaceAnalyzer(device="cpu")
    plain, quantised, quantised_torch = (SessionProcessor(db_url=db_url, classifier=c, face_analyzer=analyzer)
                                         for c in (fp32, int8, torch_int8))
    assert "classifier_quantize" not in plain.settings  # keys of sessions processed before the option hold
    assert quantised.settings["classifier_quantize"] == "int8-onnxruntime"
    assert quantised_torch.settings["classifier_quantize"] == "int8"  # as before ONNX Runtime's int8 existed
    assert len({plain.settings_key, quantised.settings_key, quantised_torch.settings_key}) == 3


def test_sessions_with_and_without_int8_are_never_mixed(fp32_and_int8, db_url, real_clip):
    fp32, int8 = fp32_and_int8
    analyzer = FaceAnalyzer(device="cpu")
    quantised = SessionProcessor(db_url=db_url, classifier=int8, face_analyzer=analyzer, sample_fps=2)
    first = quantised.process(real_clip, "S01")
    plain = SessionProcessor(db_url=db_url, classifier=fp32, face_analyzer=analyzer, sample_fps=2).process(
        real_clip, "S01")
    assert not plain.skipped and plain.session_id != first.session_id  # not reused across the two
    assert quantised.process(real_clip, "S01").session_id == first.session_id  # reused within int8
    from fervideo.store import VideoSession

    with quantised.db() as db:
        names = {db.get(VideoSession, s).classifier_name for s in (first.session_id, plain.session_id)}
    assert names == {"vit_tiny_standin+int8", "vit_tiny_standin"}


def test_library_refuses_the_baseline_and_cuda():
    with pytest.raises(InvalidArgumentError, match="only to ViT"):
        load_classifier(BASELINE_MODEL, device="cpu", quantize="int8")
    with pytest.raises(InvalidArgumentError, match="CPU only"):
        check_quantizable("int8", "vit_tiny_patch16_224", "cuda")
    with pytest.raises(InvalidArgumentError, match="none, int8"):
        load_classifier(BASELINE_MODEL, device="cpu", quantize="int4")


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--model", BASELINE_MODEL], "applies only to ViT"),
    ([], "the seed ViT is not cached"),  # --model auto, offline with an empty cache: the baseline
    (["--model", "VIT", "--device", "cuda"], "CPU only"),
    (["--model", "VIT", "--device", "cuda:1"], "CPU only"),
])
def test_cli_refuses_int8_where_it_cannot_apply(capsys, tmp_path, standin_vit, extra, fragment):
    db = tmp_path / "never_created.sqlite"
    extra = [str(standin_vit) if arg == "VIT" else arg for arg in extra]
    code, _, err = cli(capsys, "process", str(DATA / "single_face.mp4"), "-s", "S01", "--quantize", "int8",
                       "--db", str(db), *extra)
    assert_one_line_error(code, err, 2, fragment)
    assert not db.exists()  # refused before the database, let alone the networks


def test_cli_refuses_device_auto_where_a_gpu_driver_is_loaded(capsys, tmp_path, standin_vit, monkeypatch):
    monkeypatch.setattr("fervideo.runtime.cuda_driver_present", lambda: True)
    code, _, err = cli(capsys, "process", str(DATA / "single_face.mp4"), "-s", "S01", "--quantize", "int8",
                       "--model", str(standin_vit), "--db", str(tmp_path / "x.sqlite"))
    assert_one_line_error(code, err, 2, "pass --device cpu")


def test_cli_refuses_an_unknown_quantize_mode(capsys, tmp_path):
    code, _, err = cli(capsys, "process", str(DATA / "single_face.mp4"), "-s", "S01", "--quantize", "int4",
                       "--db", str(tmp_path / "x.sqlite"))
    assert_one_line_error(code, err, 2, "none, int8")


def test_quantize_is_in_process_help(capsys):
    code, out, _ = cli(capsys, "process", "--help")
    assert code == 0
    assert "--quantize" in out and "int8" in out
