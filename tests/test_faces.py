"""Faces stage: detection on a real clip, alignment, coordinate mapping, tracking and model errors.

Offline and CPU only: the detector uses the bundled RetinaFace weights; 2DFAN4 is exercised only with a
stand-in checkpoint built from face-alignment's own FAN class."""

from __future__ import annotations

from pathlib import Path

import cv2
import decord
import numpy as np
import pytest
import torch

from fervideo.errors import ModelError
from fervideo.faces import (
    Detections,
    FaceAnalyzer,
    FaceBatch,
    RetinaFaceDetector,
    TargetFaceTracker,
    align_face,
    fan_weights_available,
)
from fervideo.faces.align import alignment_matrix, template_points
from fervideo.faces.detector import BUNDLED_WEIGHTS
from fervideo.faces.landmarks_fan import FAN_FILENAME, fetch_fan_weights

CLIP = Path(__file__).parent / "data" / "single_face.mp4"
BUNDLED_SHA256 = "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220"


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """The 30 fps clip sampled at 5 fps: RGB uint8 [12, 360, 640, 3]."""
    reader = decord.VideoReader(str(CLIP))
    return reader.get_batch(list(range(0, len(reader), 6))).asnumpy()


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(detect_size=640)


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


def only_box(detections: Detections) -> np.ndarray:
    assert len(detections) == 1, f"expected one face, got {len(detections)}"
    return detections.boxes[0]


def paste(frame: np.ndarray, canvas_hw: tuple[int, int], top_left: tuple[int, int]) -> np.ndarray:
    canvas = np.full((*canvas_hw, 3), 90, np.uint8)
    y, x = top_left
    canvas[y : y + frame.shape[0], x : x + frame.shape[1]] = frame
    return canvas


# --- detection on the real clip -------------------------------------------------------------------


def test_finds_the_face_in_nearly_all_sampled_frames(analyzer: FaceAnalyzer, frames: np.ndarray) -> None:
    analyzer.reset()
    batch = analyzer.analyze(frames)
    assert isinstance(batch, FaceBatch)
    assert batch.found.mean() >= 0.9
    assert batch.crops.shape == (int(batch.found.sum()), 224, 224, 3) and batch.crops.dtype == np.uint8
    assert batch.boxes.dtype == np.float32 and batch.landmarks.shape == (len(frames), 5, 2)
    assert np.all(batch.scores[batch.found] > 0.9)
    # The face fills about a third of the frame height; its box must be in source pixels.
    heights = batch.boxes[batch.found, 3] - batch.boxes[batch.found, 1]
    assert np.all((heights > 150) & (heights < 300))
    for key in ("face_size", "det_score", "sharpness", "yaw_proxy"):
        assert (
            batch.quality[key].shape == (len(frames),) and np.isfinite(batch.quality[key][batch.found]).all()
        )
    assert np.all(np.abs(batch.quality["yaw_proxy"][batch.found]) < 0.15)  # a frontal face


def test_aligned_crop_is_centred_on_the_face(analyzer: FaceAnalyzer, frames: np.ndarray) -> None:
    analyzer.reset()
    batch = analyzer.analyze(frames[:4])
    template = template_points(analyzer.margin)
    for crop_index, frame_index in enumerate(batch.frame_of_crop):
        points = batch.landmarks[frame_index]
        matrix = alignment_matrix(points, analyzer.margin)
        in_crop = points @ matrix[:, :2].T + matrix[:, 2]
        assert np.abs(in_crop - template).max() < 12
        eye_mid_x = in_crop[:2, 0].mean()
        assert abs(eye_mid_x - 112) < 8
        # The crop really is the face: re-detecting on it finds one face covering its middle.
        (box,) = RetinaFaceDetector().detect(batch.crops[crop_index : crop_index + 1])[0].boxes
        assert box[0] < 112 < box[2] and box[1] < 112 < box[3]
    assert np.array_equal(batch.crops[0], align_face(frames[batch.frame_of_crop[0]], batch.landmarks[0]))


def test_frame_without_face_is_kept_and_marked(analyzer: FaceAnalyzer, frames: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, frames.shape[1:], dtype=np.uint8)
    flat = np.full(frames.shape[1:], 128, np.uint8)
    chunk = np.stack([frames[0], noise, flat, frames[1]])
    analyzer.reset()
    batch = analyzer.analyze(chunk)
    assert batch.found.tolist() == [True, False, False, True]
    assert np.isnan(batch.boxes[1:3]).all() and np.isnan(batch.scores[1:3]).all()
    assert np.isnan(batch.landmarks[1:3]).all() and np.isnan(batch.quality["sharpness"][1:3]).all()
    assert len(batch.crops) == 2 and batch.frame_of_crop.tolist() == [0, 3]


# --- coordinates are source pixels whatever the detection size -----------------------------------------


def test_boxes_agree_across_detect_sizes(detector: RetinaFaceDetector, frames: np.ndarray) -> None:
    coarse = RetinaFaceDetector(detect_size=320)
    box_fine = only_box(detector.detect(frames[:1])[0])
    box_coarse = only_box(coarse.detect(frames[:1])[0])
    width = box_fine[2] - box_fine[0]
    assert np.abs(box_fine - box_coarse).max() < 0.1 * width


def test_upscaled_and_padded_frames_map_back(detector: RetinaFaceDetector, frames: np.ndarray) -> None:
    frame = frames[0]
    reference = detector.detect(frame[None])[0]
    upscaled = cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_LINEAR)
    padded = paste(frame, (720, 1280), (180, 320))
    up_dets, pad_dets = detector.detect(np.stack([upscaled, padded]))
    width = reference.boxes[0, 2] - reference.boxes[0, 0]
    assert np.abs(only_box(up_dets) / 2 - reference.boxes[0]).max() < 0.1 * width
    offset = np.array([320, 180, 320, 180], np.float32)
    assert np.abs(only_box(pad_dets) - offset - reference.boxes[0]).max() < 0.1 * width
    assert np.abs(pad_dets.landmarks[0] - offset[:2] - reference.landmarks[0]).max() < 0.1 * width


def test_small_face_in_large_canvas_is_found(frames: np.ndarray) -> None:
    half = cv2.resize(frames[0], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    canvas = paste(half, (720, 1280), (300, 500))
    box = only_box(RetinaFaceDetector().detect(canvas[None])[0])  # default detect_size
    assert 500 < box[0] < box[2] < 500 + 320 and 300 < box[1] < box[3] < 300 + 180


def test_frames_smaller_than_detect_size_are_not_upscaled(frames: np.ndarray) -> None:
    native = only_box(RetinaFaceDetector(detect_size=640).detect(frames[:1])[0])
    oversized = only_box(RetinaFaceDetector(detect_size=2000).detect(frames[:1])[0])
    assert np.abs(native - oversized).max() < 1e-3


# --- tracking -------------------------------------------------------------------------------------------


def faces(*boxes: tuple[float, float, float, float]) -> Detections:
    array = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(array, np.full(len(array), 0.99, np.float32), np.zeros((len(array), 5, 2), np.float32))


PATIENT = (100, 100, 200, 220)
CLINICIAN = (400, 50, 600, 290)  # larger


def test_tracker_takes_largest_face_first() -> None:
    assert TargetFaceTracker().select(faces(PATIENT, CLINICIAN)) == 1


def test_larger_face_entering_does_not_steal_the_track() -> None:
    tracker = TargetFaceTracker()
    assert tracker.select(faces(PATIENT)) == 0
    assert tracker.select(faces(CLINICIAN, (103, 98, 204, 221))) == 1
    assert tracker.select(faces((106, 99, 206, 222), CLINICIAN)) == 0


def test_target_lost_briefly_keeps_the_track_then_reacquires() -> None:
    tracker = TargetFaceTracker(max_lost=2)
    assert tracker.select(faces(PATIENT)) == 0
    # Patient out of view: the clinician is not taken over while the track may still come back...
    assert tracker.select(faces(CLINICIAN)) is None
    assert tracker.select(Detections.empty()) is None
    assert tracker.select(faces(CLINICIAN)) is None
    # ...but after more than max_lost frames the largest face is acquired afresh.
    assert tracker.select(faces(PATIENT, CLINICIAN)) == 1
    tracker.reset()
    assert tracker.select(faces(PATIENT)) == 0


def test_track_persists_across_chunks(frames: np.ndarray) -> None:
    analyzer = FaceAnalyzer()
    analyzer.analyze(frames[:2])
    last = analyzer.tracker.last_box.copy()
    analyzer.analyze(frames[2:3])
    assert not np.array_equal(last, analyzer.tracker.last_box)
    analyzer.reset()
    assert analyzer.tracker.last_box is None


def test_videos_interleaved_on_one_analyzer_keep_their_own_tracks(analyzer: FaceAnalyzer, frames: np.ndarray) -> None:
    """Two videos' chunks through one analyzer (as --streams does) give what each gives alone."""
    mirrored = np.ascontiguousarray(frames[:, :, ::-1])  # the face elsewhere: another track
    alone = [analyzer.analyze(frames[:6], t := analyzer.new_tracker()), analyzer.analyze(frames[6:], t)]
    alone_mirrored = [analyzer.analyze(mirrored[:6], m := analyzer.new_tracker()), analyzer.analyze(mirrored[6:], m)]
    first, second = analyzer.new_tracker(), analyzer.new_tracker()
    interleaved = [analyzer.analyze(frames[:6], first), analyzer.analyze(mirrored[:6], second),
                   analyzer.analyze(frames[6:], first), analyzer.analyze(mirrored[6:], second)]
    for got, expected in zip(interleaved, [alone[0], alone_mirrored[0], alone[1], alone_mirrored[1]], strict=True):
        np.testing.assert_array_equal(got.found, expected.found)
        np.testing.assert_array_equal(got.boxes, expected.boxes)
        np.testing.assert_array_equal(got.crops, expected.crops)
    assert first.last_box is not None and not np.array_equal(first.last_box, second.last_box)


# --- model loading and provenance -----------------------------------------------------------------------


def test_parameters_record_the_weights(analyzer: FaceAnalyzer) -> None:
    params = analyzer.parameters()
    assert params["detector_weights_sha256"] == BUNDLED_SHA256
    assert params["landmarks"] == "retinaface" and params["detect_size"] == analyzer.detector.detect_size
    assert {"score_threshold", "nms_threshold", "margin", "detector"} <= params.keys()


def test_mismatched_detector_weights_raise_model_error(tmp_path: Path) -> None:
    state = torch.load(BUNDLED_WEIGHTS, map_location="cpu", weights_only=True)
    key = next(k for k, v in state.items() if v.ndim == 4)
    state[key] = torch.zeros(3, 3, 3, 3)
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(ModelError, match="do not fit") as error:
        RetinaFaceDetector(weights=wrong)
    assert "\n" not in str(error.value)
    with pytest.raises(ModelError, match="not found"):
        RetinaFaceDetector(weights=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        RetinaFaceDetector(weights=garbage)


def test_module_prefixed_weights_load(tmp_path: Path) -> None:
    state = torch.load(BUNDLED_WEIGHTS, map_location="cpu", weights_only=True)
    prefixed = tmp_path / "prefixed.pth"
    torch.save({f"module.{k.removeprefix('module.')}": v for k, v in state.items()}, prefixed)
    RetinaFaceDetector(weights=prefixed)


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch hub cache, and any download attempt fails the test."""
    import face_alignment.utils

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", refuse)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_fan_without_cached_weights_raises_and_never_downloads(no_downloads: Path, monkeypatch) -> None:
    assert not fan_weights_available()
    with pytest.raises(ModelError, match="fetch_fan_weights") as error:
        FaceAnalyzer(landmarks="fan")
    assert "\n" not in str(error.value)
    monkeypatch.setenv("FERVIDEO_OFFLINE", "1")
    with pytest.raises(ModelError, match="offline"):
        fetch_fan_weights()
    assert not (no_downloads / FAN_FILENAME).exists()


def test_fan_mode_with_stand_in_weights(no_downloads: Path, frames: np.ndarray) -> None:
    from face_alignment.models import FAN

    torch.manual_seed(0)
    no_downloads.mkdir(parents=True)
    torch.save(FAN(4).state_dict(), no_downloads / FAN_FILENAME)
    assert fan_weights_available()
    analyzer = FaceAnalyzer(landmarks="fan")
    batch = analyzer.analyze(frames[:2])
    assert batch.landmarks.shape == (2, 68, 2) and batch.found.all()
    assert batch.crops.shape == (2, 224, 224, 3)
    # Random weights give arbitrary points, but they must lie in the FAN crop around our box.
    box = batch.boxes[0]
    size = box[2] - box[0]
    assert np.all(batch.landmarks[0, :, 0] > box[0] - size) and np.all(
        batch.landmarks[0, :, 0] < box[2] + size
    )
    assert analyzer.parameters()["landmarks"] == "fan"
