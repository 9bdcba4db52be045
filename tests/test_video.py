"""Video stage: probing, timestamp sampling (incl. VFR), chunked streaming, containers, bad files."""

from pathlib import Path

import numpy as np
import pytest
from synthetic_media import CONTAINER_CODECS, pattern_video, write_video

from fervideo.errors import InputVideoError, InvalidArgumentError
from fervideo.video import VideoStream, probe_video, sample_frame_indices


@pytest.mark.parametrize("suffix", sorted(CONTAINER_CODECS))
def test_every_container_probes_and_decodes_all_frames(tmp_path, suffix):
    path = pattern_video(tmp_path / f"clip.{suffix}", n_frames=45, width=322, height=242)
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count) == (322, 242, 45)
    assert info.fps == pytest.approx(30.0, rel=0.01)
    assert info.duration_s == pytest.approx(1.5, abs=0.05)
    expected_codec = {"mp4": "h264", "mkv": "h264", "mov": "hevc", "avi": "fmp4", "webm": "vp90"}[suffix]
    assert info.codec == expected_codec
    chunks = list(VideoStream(path, sample_fps=0, chunk_size=16))
    assert [len(c) for c in chunks] == [16, 16, 13]
    frames = np.concatenate([c.rgb for c in chunks])
    assert frames.shape == (45, 242, 322, 3) and frames.dtype == np.uint8
    # The frame counter (mean brightness) survives lossy coding closely enough to check the order.
    brightness = frames[:, 120:, 160:].mean(axis=(1, 2, 3))
    assert np.all(np.diff(brightness) >= -1)
    assert np.corrcoef(brightness, np.arange(45))[0, 1] > 0.99
    indices = np.concatenate([c.indices for c in chunks])
    assert indices.tolist() == list(range(45))


def test_odd_frame_size_decodes(tmp_path):
    path = pattern_video(tmp_path / "odd.avi", n_frames=10, width=317, height=203, codec="mjpeg",
                         pix_fmt="yuvj444p")
    chunk = next(iter(VideoStream(path, sample_fps=0)))
    assert chunk.rgb.shape[1:] == (203, 317, 3)


def test_sampling_uses_timestamps_on_variable_frame_rate(tmp_path):
    # One second at 30 fps, then one second at 10 fps: index-based sampling would be wrong here.
    stamps = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(10)]
    path = pattern_video(tmp_path / "vfr.mp4", n_frames=40, timestamps_s=stamps)
    stream = VideoStream(path, sample_fps=5, chunk_size=4)
    times = np.concatenate([c.timestamps for c in stream])
    assert times == pytest.approx(np.arange(10) * 0.2, abs=0.002)
    assert np.all(np.diff(np.concatenate([c.indices for c in stream])) > 0)


def test_sample_frame_indices_grid():
    times = np.arange(90) / 30.0
    assert sample_frame_indices(times, 5).tolist() == list(range(0, 90, 6))
    assert sample_frame_indices(times, 0).tolist() == list(range(90))
    # A sampling rate above the frame rate keeps every frame once, never duplicates.
    assert sample_frame_indices(times, 100).tolist() == list(range(90))
    with pytest.raises(InvalidArgumentError):
        sample_frame_indices(times, -1)


def test_chunks_bound_memory_and_cover_the_video(tmp_path):
    path = pattern_video(tmp_path / "long.mp4", n_frames=300, width=64, height=48)
    stream = VideoStream(path, sample_fps=10, chunk_size=7)
    sizes = [len(c) for c in stream]
    assert max(sizes) == 7 and sum(sizes) == len(stream) == 100


def test_large_frames_are_decoded_downscaled(tmp_path):
    path = pattern_video(tmp_path / "big.mp4", n_frames=5, width=1920, height=1080)
    stream = VideoStream(path, sample_fps=0, max_side=960)
    assert stream.scale == pytest.approx(2.0)
    assert next(iter(stream)).rgb.shape[1:] == (540, 960, 3)


def _faststart_clip(tmp_path) -> bytes:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(90)]
    path = write_video(tmp_path / "full.mp4", frames, options={"g": "10"},
                       container_options={"movflags": "faststart"})
    return path.read_bytes()


def test_header_over_reporting_frames_ends_cleanly(tmp_path):
    data = _faststart_clip(tmp_path)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.2)])
    stream = VideoStream(truncated, sample_fps=0, chunk_size=8)
    decoded = sum(len(chunk) for chunk in stream)
    assert 0 < decoded < stream.info.frame_count


def test_truncated_beyond_repair_is_a_clear_error(tmp_path):
    data = _faststart_clip(tmp_path)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.02)])
    with pytest.raises(InputVideoError, match="truncated or corrupt"):
        VideoStream(truncated)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.mp4", b""), "empty"),
        (lambda d: _write(d / "text.mp4", b"not a video at all\n" * 50), "cannot be decoded"),
    ],
)
def test_bad_inputs_raise_one_line_errors(tmp_path, make, message):
    with pytest.raises(InputVideoError, match=message) as caught:
        VideoStream(make(tmp_path))
    assert "\n" not in str(caught.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_negative_fps_rejected(tmp_path):
    path = pattern_video(tmp_path / "a.mp4", n_frames=5)
    with pytest.raises(InvalidArgumentError, match="--fps"):
        VideoStream(path, sample_fps=-1)


def test_real_clip_probe(real_clip):
    info = probe_video(real_clip)
    assert (info.width, info.height, info.frame_count, info.codec) == (640, 360, 72, "h264")
    assert info.duration_s == pytest.approx(2.4, abs=0.05)
