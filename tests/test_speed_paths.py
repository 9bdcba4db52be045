"""Accelerated paths agree with the reference paths, and `process` with the bundled models stays light.

Tolerances (stated in docs/speed.md): detector raw outputs 1e-4 (absolute), boxes and landmarks 1e-3 source
pixels, scores 1e-5; classifier probabilities 1e-5. Measured differences are ~1e-7 relative: float32
rounding from a different order of summation, nothing more. Nothing here is timed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest
import torch

from fervideo.emotion import load_classifier
from fervideo.errors import InvalidArgumentError
from fervideo.faces import FaceAnalyzer, RetinaFaceDetector
from fervideo.faces.detector import BUNDLED_WEIGHTS
from fervideo.faces.nms import nms
from fervideo.faces.retinaface_net import prior_boxes
from fervideo.runtime import cached_onnx_file, fervideo_home, resolve_backend, resolve_threads

CLIP = Path(__file__).parent / "data" / "single_face.mp4"
BOX_TOLERANCE_PX = 1e-3
SCORE_TOLERANCE = 1e-5
RAW_TOLERANCE = 1e-4
PROB_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Every 4th frame of the real clip, RGB uint8 [18, 360, 640, 3]."""
    reader = decord.VideoReader(str(CLIP))
    return reader.get_batch(list(range(0, len(reader), 4))).asnumpy()


def assert_same_detections(reference, candidate) -> None:
    assert [len(d) for d in reference] == [len(d) for d in candidate]
    for ref, got in zip(reference, candidate, strict=True):
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=BOX_TOLERANCE_PX, rtol=0)
        np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=BOX_TOLERANCE_PX, rtol=0)
        np.testing.assert_allclose(got.scores, ref.scores, atol=SCORE_TOLERANCE, rtol=0)


# --- detector -------------------------------------------------------------------------------------


def test_onnx_detector_agrees_with_torch(frames: np.ndarray) -> None:
    reference = RetinaFaceDetector(backend="torch")
    accelerated = RetinaFaceDetector(backend="onnx")
    assert (reference.backend, accelerated.backend) == ("torch", "onnx")
    detections = reference.detect(frames)
    assert sum(len(d) for d in detections) >= len(frames) - 1  # the comparison is about real faces
    assert_same_detections(detections, accelerated.detect(frames))
    # Another frame size through the same exported file (free height and width), raw outputs this time.
    small = np.ascontiguousarray(frames[:3, :200, :300])
    for ref, got in zip(reference.raw_outputs(small), accelerated.raw_outputs(small), strict=True):
        np.testing.assert_allclose(got, ref, atol=RAW_TOLERANCE, rtol=0)


def test_channels_last_torch_path_agrees_with_the_plain_layout(frames: np.ndarray) -> None:
    detector = RetinaFaceDetector(backend="torch")
    channels_last = detector.raw_outputs(frames[:4])
    detector.module = detector.module.to(memory_format=torch.contiguous_format)
    for ref, got in zip(detector.raw_outputs(frames[:4]), channels_last, strict=True):
        np.testing.assert_allclose(got, ref, atol=RAW_TOLERANCE, rtol=0)


def test_ported_network_matches_face_alignments(frames: np.ndarray) -> None:
    """The port keeps face-alignment's numbers exactly; fused preprocessing equals the old separate one."""
    net_module = pytest.importorskip("face_alignment.detection.retinaface.net_retinaface")
    prior_module = pytest.importorskip("face_alignment.detection.retinaface.prior_box")
    state = {k.removeprefix("module."): v for k, v in torch.load(BUNDLED_WEIGHTS, "cpu", weights_only=True).items()}
    original = net_module.RetinaFace(cfg=net_module.cfg_mnet)
    original.load_state_dict(state)
    small = np.stack([cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in frames[:3]])
    # The old preprocessing: BGR, mean subtracted, NCHW float.
    old_input = (torch.from_numpy(small[..., ::-1].copy()).float() - torch.tensor([104.0, 117.0, 123.0]))
    with torch.inference_mode():
        expected = original.eval()(old_input.permute(0, 3, 1, 2).contiguous())
    got = RetinaFaceDetector(backend="torch").raw_outputs(small)
    for ref, new in zip(expected, got, strict=True):
        np.testing.assert_allclose(new, ref.numpy(), atol=RAW_TOLERANCE, rtol=0)
    for height, width in ((180, 320), (101, 77)):
        old_priors = prior_module.PriorBox(net_module.cfg_mnet, image_size=(height, width)).forward().numpy()
        np.testing.assert_array_equal(prior_boxes(height, width), old_priors)


def test_numpy_nms_matches_torchvision() -> None:
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(0)
    for _ in range(20):
        corners = rng.uniform(0, 100, (60, 2)).astype(np.float32)
        boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (60, 2)).astype(np.float32)], axis=1)
        scores = rng.uniform(0.5, 1.0, 60).astype(np.float32)
        expected = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, 0.4), expected)


def test_nms_keeps_separate_faces_and_drops_duplicates() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.9, 0.95, 0.8], np.float32), 0.4).tolist() == [1, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4).tolist() == []


def test_face_analyzer_results_do_not_depend_on_the_backend(frames: np.ndarray) -> None:
    torch_batch = FaceAnalyzer(backend="torch").analyze(frames)
    onnx_batch = FaceAnalyzer(backend="onnx").analyze(frames)
    np.testing.assert_array_equal(onnx_batch.found, torch_batch.found)
    np.testing.assert_allclose(onnx_batch.boxes, torch_batch.boxes, atol=BOX_TOLERANCE_PX, rtol=0)
    # Sub-millipixel landmark differences can move a bilinear sample by one grey level at most.
    assert np.abs(onnx_batch.crops.astype(int) - torch_batch.crops.astype(int)).max() <= 1


# --- classifier -----------------------------------------------------------------------------------


def test_onnx_baseline_classifier_agrees_with_torch(frames: np.ndarray) -> None:
    crops = FaceAnalyzer(backend="torch").analyze(frames).crops
    reference = load_classifier("mini-xception-fer2013", device="cpu", backend="torch")
    accelerated = load_classifier("mini-xception-fer2013", device="cpu", backend="onnx")
    assert (reference.backend, accelerated.backend) == ("torch", "onnx")
    assert accelerated.provenance()["backend"] == "onnx"
    expected = reference.predict(crops)
    got = accelerated.predict(crops)
    np.testing.assert_allclose(got, expected, atol=PROB_TOLERANCE, rtol=0)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    assert accelerated.predict(crops[:0]).shape == (0, 7)


def test_numpy_preprocessing_equals_the_torch_preprocessing(frames: np.ndarray) -> None:
    """The ONNX path preprocesses in numpy (no torch at start-up); same input to float32 rounding."""
    from dataclasses import replace

    from fervideo.emotion.config import MINI_XCEPTION, SEED_VIT_CONFIG
    from fervideo.emotion.preprocess import to_model_input
    from fervideo.emotion.preprocess_numpy import to_model_input_numpy

    crops = FaceAnalyzer(backend="torch").analyze(frames).crops
    gray = replace(SEED_VIT_CONFIG, architecture=MINI_XCEPTION, grayscale=True, input_size=64,
                   mean=(0.0,), std=(1.0,))
    for config in (gray, SEED_VIT_CONFIG, replace(gray, input_size=48), replace(SEED_VIT_CONFIG, input_size=300)):
        expected = to_model_input(crops, config, torch.device("cpu")).numpy()
        got = to_model_input_numpy(crops, config)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_colour_crops_at_the_input_size_are_normalised_by_table_to_the_same_bits() -> None:
    """The ViT's look-up path gives exactly the bits of the float arithmetic it replaces."""
    from dataclasses import replace

    from fervideo.emotion.config import SEED_VIT_CONFIG
    from fervideo.emotion.preprocess_numpy import to_model_input_numpy

    crops = np.random.default_rng(0).integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    crops[0] = np.arange(256, dtype=np.uint8).repeat(196 * 3)[: 224 * 224 * 3].reshape(224, 224, 3)
    for config in (SEED_VIT_CONFIG, replace(SEED_VIT_CONFIG, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))):
        x = crops.astype(np.float32) / np.float32(255.0)
        mean, std = np.asarray(config.mean, np.float32), np.asarray(config.std, np.float32)
        expected = ((x - mean) / std).transpose(0, 3, 1, 2)
        got = to_model_input_numpy(crops, config)
        assert got.shape == (5, 3, 224, 224) and got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got, expected)


def test_onnx_baseline_builds_no_torch_network_when_the_export_is_cached(monkeypatch) -> None:
    load_classifier("mini-xception-fer2013", device="cpu", backend="onnx")  # both exported once
    RetinaFaceDetector(backend="onnx")
    monkeypatch.setattr("fervideo.emotion.checkpoint.build_model", lambda config: pytest.fail("network built"))
    monkeypatch.setattr("fervideo.faces.detector_torch.load_retinaface", lambda *a: pytest.fail("network built"))
    assert load_classifier("mini-xception-fer2013", device="cpu", backend="onnx").backend == "onnx"
    assert RetinaFaceDetector(backend="onnx").backend == "onnx"


def _standin_vit(folder: Path) -> Path:
    from fervideo.emotion import ViTTinyFER

    path = folder / "vit.pth"
    torch.manual_seed(0)
    torch.save(ViTTinyFER().state_dict(), path)
    return path


def test_onnx_vit_agrees_with_torch(tmp_path: Path, frames: np.ndarray) -> None:
    path = _standin_vit(tmp_path)
    crops = FaceAnalyzer(backend="torch").analyze(frames).crops
    onnx = load_classifier(str(path), device="cpu", backend="onnx")
    reference = load_classifier(str(path), device="cpu", backend="torch")
    assert (onnx.backend, reference.backend) == ("onnx", "torch")
    probs, expected = onnx.predict(crops), reference.predict(crops)
    np.testing.assert_allclose(probs, expected, atol=1e-4)  # measured ~4e-7
    assert (probs.argmax(1) == expected.argmax(1)).all()


def test_int8_vit_runs_where_its_backend_says_and_falls_back_to_torch_int8(tmp_path: Path, monkeypatch,
                                                                           caplog) -> None:
    import fervideo.emotion.classifier as classifier_module

    path = _standin_vit(tmp_path)
    for backend in ("onnx", "auto"):
        int8 = load_classifier(str(path), device="cpu", backend=backend, quantize="int8")
        assert (int8.backend, int8.quantize_setting) == ("onnx", "int8-onnxruntime")
    int8 = load_classifier(str(path), device="cpu", backend="torch", quantize="int8")
    assert (int8.backend, int8.quantize_setting) == ("torch", "int8")

    def broken(source: Path, out: Path) -> None:
        raise RuntimeError("quantiser exploded\nsecond line")

    monkeypatch.setattr(classifier_module, "quantize_onnx_int8", broken)
    monkeypatch.setenv("FERVIDEO_HOME", str(tmp_path / "cold"))  # no cached int8 file to take instead
    fallback = load_classifier(str(path), device="cpu", quantize="int8")
    assert (fallback.backend, fallback.quantize_setting) == ("torch", "int8")  # still quantised, the torch way
    assert isinstance(fallback.model.classifier, torch.ao.nn.quantized.dynamic.Linear)
    assert "(quantiser exploded); using torch" in caplog.text and "second line" not in caplog.text


def test_onnx_runs_in_sub_batches_with_the_bits_of_one_call(frames: np.ndarray) -> None:
    """OnnxModel splits a batch into ONNX_SUB_BATCH-frame calls (issue 10: ~25 % less detector time, cache-sized
    activations; docs/speed.md); every output is bit-identical to one call over the whole batch."""
    from fervideo.runtime import ONNX_SUB_BATCH

    detector = RetinaFaceDetector(backend="onnx")
    model = detector.onnx
    small = np.ascontiguousarray(np.concatenate([frames, frames[::-1]])[:, ::2, ::2])  # 36 frames, 180x320
    assert len(small) > 4 * ONNX_SUB_BATCH // 2 and len(small) % ONNX_SUB_BATCH  # several calls, a short last
    calls = []
    real_run = model.session.run

    def spy(names, feeds):
        calls.append(len(next(iter(feeds.values()))))
        return real_run(names, feeds)

    model.session.run = spy
    split = model.run(small)
    assert calls == [ONNX_SUB_BATCH] * (len(small) // ONNX_SUB_BATCH) + [len(small) % ONNX_SUB_BATCH]
    whole = real_run(None, {model.input_names[0]: small})
    assert len(split) == len(whole) == 3
    for got, expected in zip(split, whole, strict=True):
        assert got.shape == expected.shape and np.array_equal(got, expected)
    model.session.run = real_run


# --- ONNX cache and settings ----------------------------------------------------------------------


def test_onnx_export_is_cached_by_weights_sha256() -> None:
    RetinaFaceDetector(backend="onnx")
    exported = sorted((fervideo_home() / "onnx").glob("retinaface-*.onnx"))
    assert len(exported) == 1
    first_mtime = exported[0].stat().st_mtime_ns
    RetinaFaceDetector(backend="onnx")  # a second detector reuses the file
    assert exported[0].stat().st_mtime_ns == first_mtime
    calls = []
    cached_onnx_file("retinaface", "f" * 64, lambda out: calls.append(out) or out.write_bytes(b"x"))
    assert len(calls) == 1 and len(list((fervideo_home() / "onnx").glob("retinaface-*.onnx"))) == 2


def test_failed_export_leaves_no_file_behind() -> None:
    def failing_export(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError):
        cached_onnx_file("broken", "0" * 64, failing_export)
    assert list((fervideo_home() / "onnx").iterdir()) == []


def test_backend_setting(monkeypatch, caplog) -> None:
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("onnx", "cpu") == "onnx"
    assert resolve_backend("auto", "cpu") == "onnx"
    assert resolve_backend("auto", "cuda") == "torch"
    monkeypatch.setenv("FERVIDEO_BACKEND", "torch")
    assert resolve_backend(None, "cpu") == "torch"
    with pytest.raises(InvalidArgumentError, match="backend must be one of"):
        resolve_backend("tensorrt", "cpu")
    monkeypatch.setattr("fervideo.runtime.onnxruntime_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="fervideo.runtime"):
        assert resolve_backend("onnx", "cpu") == "torch"
    assert "onnxruntime or onnx is not installed" in caplog.text


def test_failed_export_falls_back_to_torch_with_a_warning(monkeypatch, caplog, frames: np.ndarray) -> None:
    def broken_export(net, path: Path) -> None:
        raise RuntimeError("exporter crashed\nwith a long traceback")

    monkeypatch.setattr("fervideo.faces.detector.export_detector_onnx", broken_export)
    with caplog.at_level(logging.WARNING, logger="fervideo.runtime"):
        detector = RetinaFaceDetector(backend="onnx")
    assert detector.backend == "torch" and detector.onnx is None
    assert "cannot run retinaface in ONNX Runtime (exporter crashed); using torch" in caplog.text
    assert len(detector.detect(frames[:2])) == 2


def test_threads_setting(monkeypatch) -> None:
    assert resolve_threads(3) == 3
    assert resolve_threads(0) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("FERVIDEO_THREADS", "1")
    assert resolve_threads(None) == 1
    monkeypatch.setenv("FERVIDEO_THREADS", "many")
    with pytest.raises(InvalidArgumentError, match="FERVIDEO_THREADS"):
        resolve_threads(None)
    with pytest.raises(InvalidArgumentError, match="--threads"):
        resolve_threads(-1)


def test_decode_threads_policy(monkeypatch) -> None:
    # One FFmpeg thread on the CPU (the cores run the networks); on a GPU, half the cores up to 8.
    from fervideo import runtime

    monkeypatch.delenv("FERVIDEO_DECODE_THREADS", raising=False)
    monkeypatch.setattr(runtime, "available_cores", lambda: 16)
    assert runtime.decode_threads("cpu") == 1
    assert runtime.decode_threads("cuda:0") == 8
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    assert runtime.decode_threads("cuda") == 1
    monkeypatch.setenv("FERVIDEO_DECODE_THREADS", "3")
    assert runtime.decode_threads("cpu") == 3
    for bad in ("0", "-2", "all"):
        monkeypatch.setenv("FERVIDEO_DECODE_THREADS", bad)
        with pytest.raises(InvalidArgumentError, match="FERVIDEO_DECODE_THREADS must be a whole number >= 1"):
            runtime.decode_threads("cuda")


# --- start-up -------------------------------------------------------------------------------------

HEAVY_MODULES = ("timm", "torchvision", "face_alignment")
IN_PROCESS_CLI = f"""
import json, sys
from fervideo.cli import run
code = run(sys.argv[1:])
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY_MODULES!r} if m in sys.modules]}}))
"""


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_process_with_the_baseline_never_imports_heavy_modules(real_clip: Path, db_url: str, backend) -> None:
    command = [sys.executable, "-c", IN_PROCESS_CLI, "process", str(real_clip), "--subject", "S01",
               "--model", "mini-xception-fer2013", "--device", "cpu", "--backend", backend, "--db", db_url]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome == {"code": 0, "loaded": []}


def test_a_worker_reaches_its_first_chunk_without_pandas() -> None:
    """A chunk's rows are plain arrays: pandas (with pyarrow ~0.3-0.4 s) loads after the last chunk, not
    before the first stored frame."""
    script = ("import sys, fervideo.pipeline, fervideo.batch.local, fervideo.batch.work; "
              "print([m for m in ('pandas', 'pyarrow') if m in sys.modules])")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "[]"


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_process_with_a_warm_onnx_cache_never_imports_torch(real_clip: Path, db_url: str, device: str) -> None:
    """Both ONNX exports cached (named by the weights' sha256): torch is needed only to export them."""
    RetinaFaceDetector(backend="onnx")
    load_classifier("mini-xception-fer2013", device="cpu", backend="onnx")
    assert len(list((fervideo_home() / "onnx").glob("*.onnx"))) == 2
    script = IN_PROCESS_CLI.replace(repr(HEAVY_MODULES), repr(("torch", *HEAVY_MODULES)))
    command = [sys.executable, "-c", script, "process", str(real_clip), "--subject", "S01",
               "--model", "mini-xception-fer2013", "--device", device, "--backend", "onnx", "--db", db_url]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    if device == "auto" and Path("/proc/driver/nvidia").exists():  # a GPU machine: auto must look for CUDA
        outcome["loaded"] = [m for m in outcome["loaded"] if m != "torch"]
    assert outcome == {"code": 0, "loaded": []}


def test_vit_with_a_warm_onnx_cache_imports_neither_torch_nor_timm(tmp_path: Path, real_clip: Path,
                                                                   db_url: str) -> None:
    vit = _standin_vit(tmp_path)
    RetinaFaceDetector(backend="onnx")
    load_classifier(str(vit), device="cpu", backend="onnx")
    script = IN_PROCESS_CLI.replace(repr(HEAVY_MODULES), repr(("torch", *HEAVY_MODULES)))
    command = [sys.executable, "-c", script, "process", str(real_clip), "--subject", "S01",
               "--model", str(vit), "--device", "cpu", "--backend", "onnx", "--db", db_url]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"code": 0, "loaded": []}


def test_int8_vit_with_a_warm_onnx_cache_imports_neither_torch_nor_timm(tmp_path: Path, real_clip: Path,
                                                                        db_url: str) -> None:
    """`--quantize int8` on the CPU runs ONNX Runtime's int8 export: torch is needed only to make it."""
    vit = _standin_vit(tmp_path)
    RetinaFaceDetector(backend="onnx")
    assert load_classifier(str(vit), device="cpu", quantize="int8").backend == "onnx"
    script = IN_PROCESS_CLI.replace(repr(HEAVY_MODULES), repr(("torch", *HEAVY_MODULES)))
    command = [sys.executable, "-c", script, "process", str(real_clip), "--subject", "S01", "--quantize", "int8",
               "--model", str(vit), "--device", "cpu", "--db", db_url]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"code": 0, "loaded": []}


def test_threaded_alignment_by_index_equals_the_serial_stack(monkeypatch, frames: np.ndarray) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from fervideo.faces import align

    points = np.array([[250, 150], [330, 150], [290, 190], [260, 230], [320, 230]], np.float32)
    landmarks = np.repeat(points[None], 6, axis=0) + np.arange(6, dtype=np.float32)[:, None, None]
    indices = np.array([0, 2, 2, 5, 7, 9])
    serial = align.align_faces(frames[indices], landmarks)
    monkeypatch.setattr(align, "PARALLEL_MIN_FACES", 2)
    monkeypatch.setattr(align, "worker_pool", lambda: ThreadPoolExecutor(max_workers=3))
    np.testing.assert_array_equal(align.align_faces(frames, landmarks, frame_indices=indices), serial)
    with pytest.raises(ValueError, match="landmark sets"):
        align.align_faces(frames, landmarks, frame_indices=indices[:3])


def test_batched_grid_sample_alignment_matches_opencv(frames: np.ndarray) -> None:
    """The GPU path's warp, run here on CPU tensors: within 2 grey levels of cv2.warpAffine (OpenCV's
    1/32-pixel fixed-point weights), 0.2 on average."""
    from fervideo.faces import align
    from fervideo.faces.align_gpu import align_faces_on_device

    batch = FaceAnalyzer(backend="torch").analyze(frames)
    indices = np.flatnonzero(batch.found)
    crops = align_faces_on_device(torch.from_numpy(frames), batch.landmarks[indices], indices)
    difference = np.abs(crops.astype(int) - batch.crops.astype(int))
    assert crops.shape == batch.crops.shape and crops.dtype == np.uint8
    assert difference.max() <= 2 and difference.mean() < 0.2
    # Near the frame edge the borders are replicated, as with BORDER_REPLICATE.
    edge = np.array([[5, 5], [40, 5], [20, 25], [8, 45], [38, 45]], np.float32)
    reference = align.align_face(frames[0], edge)
    got = align_faces_on_device(torch.from_numpy(frames[:1]), edge[None], np.array([0]))[0]
    assert np.abs(got.astype(int) - reference.astype(int)).max() <= 2
    empty = align_faces_on_device(torch.from_numpy(frames), np.zeros((0, 5, 2)), np.zeros(0, int))
    assert empty.shape == (0, 224, 224, 3)


def test_sharpness_on_the_worker_pool_equals_serial(monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from fervideo.faces import quality

    crops = np.random.default_rng(0).integers(0, 255, (5, 224, 224, 3), dtype=np.uint8)
    serial = quality.sharpness(crops)
    monkeypatch.setattr(quality, "PARALLEL_MIN_FACES", 2)
    monkeypatch.setattr(quality, "worker_pool", lambda: ThreadPoolExecutor(max_workers=3))
    np.testing.assert_array_equal(quality.sharpness(crops), serial)


def test_batched_similarity_fit_equals_the_per_face_fit(frames: np.ndarray) -> None:
    from fervideo.faces import align

    rng = np.random.default_rng(1)
    sources = rng.uniform(0, 500, (50, 5, 2))
    sources[3] = sources[3] * [-1, 1]  # a mirrored set: the fit must not flip
    sources[5] = sources[5, :1]  # all five points equal: zero variance, scale falls back to 1
    target = align.template_points()
    per_face = np.stack([align.similarity_transform(points, target) for points in sources])
    np.testing.assert_allclose(align.similarity_transforms(sources, target), per_face, atol=1e-9, rtol=0)
    points = np.array([[250, 150], [330, 150], [290, 190], [260, 230], [320, 230]], np.float32)
    one_by_one = np.stack([align.align_face(frame, points) for frame in frames[:3]])
    batched = align.align_faces(frames[:3], np.repeat(points[None], 3, axis=0))
    assert np.abs(batched.astype(int) - one_by_one.astype(int)).max() <= 1
