"""Video stage: probing, timestamp sampling (incl. VFR), chunked streaming, containers, bad files."""

from pathlib import Path

import numpy as np
import pytest
from synthetic_media import (
    CONTAINER_CODECS,
    assert_pattern_frames,
    audio_only_file,
    damaged_copy,
    faststart_noise_video,
    pattern_video,
    rotated_video,
    upright_marker_frame,
    write_video,
)

from fervideo.errors import InputVideoError, InvalidArgumentError
from fervideo.video import MIN_FRAME_SIDE, VideoStream, check_video_file, probe_video, sample_frame_indices


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
    stream = VideoStream(path, sample_fps=5)
    assert sum(len(c) for c in stream) == len(stream) == stream.frames_decoded == 8
    assert stream.warnings == []  # a healthy file is never reported as incomplete


@pytest.mark.parametrize("b_frames", [0, 3])
@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_h264_in_avi_gets_a_timeline_from_its_frame_rate(tmp_path, b_frames, decoder):
    """Regression: AVI stores no frame times, and for H.264 in AVI decord reports FFmpeg's 'no time' value
    for every frame (-3.07e17 s). Every frame then counted as 'timed before 0': --fps 5 kept all 90 frames,
    the session's timestamps were -3.07e17 s and its duration the same. An AVI's frames are 1/fps apart by
    definition: the timeline is frame number / fps, said in the warnings. PyAV's frame times in such a file
    are its decode order (B-frames), so frames are placed by counting, in the order they are shown."""
    path = pattern_video(tmp_path / "h264.avi", n_frames=90, codec="libx264", pix_fmt="yuv420p",
                         options={"g": "30", "bf": str(b_frames)})
    assert probe_video(path).duration_s == pytest.approx(3.0, abs=0.05)
    stream = VideoStream(path, sample_fps=5, decoder=decoder)
    chunks = list(stream)
    indices = np.concatenate([c.indices for c in chunks])
    assert indices.tolist() == list(range(0, 90, 6))
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks]), indices / 30.0)
    assert_pattern_frames(indices, np.concatenate([c.rgb for c in chunks]))
    assert stream.frames_decoded == stream.frames_planned == 15
    assert stream.decoder == "pyav"  # decord's random access returned wrong frames here (frame 2 for 30, ...)
    assert stream.warnings == ["timestamps_synthesized: the file stores no usable frame times; "
                               "times are frame number / 30 frames/s"]


def test_mpeg_ts_asked_of_decord_is_read_by_pyav(tmp_path):
    """decord's random access in an MPEG-TS file (camcorders' .mts/.m2ts) returned other frames than asked
    (frame 27 for frame 0, ...): with FERVIDEO_DECODER=decord such a file is read by PyAV, front to back."""
    path = pattern_video(tmp_path / "camcorder.ts", n_frames=90, codec="libx264", pix_fmt="yuv420p",
                         options={"g": "15"})
    stream = VideoStream(path, sample_fps=5, decoder="decord")
    chunks = list(stream)
    indices = np.concatenate([c.indices for c in chunks])
    assert stream.decoder == "pyav" and indices.tolist() == list(range(0, 90, 6)) and stream.warnings == []
    assert_pattern_frames(indices, np.concatenate([c.rgb for c in chunks]))


def test_raw_h264_stream_read_front_to_back_is_timed_by_its_frame_rate(tmp_path):
    """Regression: a raw H.264 stream (some IP cameras and recorders write .h264 files) has no index, so it is
    read front to back by OpenCV, which times every frame 0: --fps 5 kept the first of 90 frames and said
    nothing of the rest. Its frames are now timed by frame number / the stream's rate (25: FFmpeg's default
    for a raw stream that states none), said in the warnings."""
    path = pattern_video(tmp_path / "camera.h264", n_frames=90, codec="libx264", pix_fmt="yuv420p",
                         options={"g": "15"})
    stream = VideoStream(path, sample_fps=5)
    chunks = list(stream)
    indices = np.concatenate([c.indices for c in chunks])
    assert stream.decoder == "opencv" and indices.tolist() == list(range(0, 90, 5))
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks]), indices / 25.0)
    assert_pattern_frames(indices, np.concatenate([c.rgb for c in chunks]))
    assert "timestamps_synthesized: the file stores no usable frame times; times are frame number / 25 frames/s" \
        in stream.warnings


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
    assert stream.warnings == [] and stream.frames_planned == stream.frames_decoded == 10


def test_vfr_matroska_whose_header_only_estimates_the_count_is_not_incomplete(tmp_path):
    # OpenCV estimates 58 frames for this 40-frame file from its duration: no false "incomplete".
    stamps = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(10)]
    stream = VideoStream(pattern_video(tmp_path / "vfr.mkv", n_frames=40, timestamps_s=stamps), sample_fps=0)
    assert sum(len(c) for c in stream) == 40 and stream.warnings == []


def test_frames_timed_before_zero_are_not_sampled_unless_all_are():
    """Frames before the presentation's start (an edit list's, decord times them < 0) are never sampled;
    a file whose every frame is timed < 0 keeps them all (its times are merely offset)."""
    times = np.arange(-3, 30) / 30.0
    assert sample_frame_indices(times, 5).tolist() == list(range(3, 33, 6))
    assert sample_frame_indices(times, 0).tolist() == list(range(3, 33))
    assert sample_frame_indices(times - 5.0, 5).tolist() == list(range(0, 33, 6))
    assert sample_frame_indices(np.array([-1e-4, 0.2, 0.4]), 5).tolist() == [0, 1, 2]  # rounding, not hidden


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


def _quarter_means(frame: np.ndarray) -> list[float]:
    """Redness of the four corner quarters (TL, TR, BL, BR): the marker's corner has by far the most."""
    h, w = frame.shape[:2]
    top, bottom, left, right = slice(0, h // 4), slice(h - h // 4, h), slice(0, w // 4), slice(w - w // 4, w)
    corners = [frame[top, left], frame[top, right], frame[bottom, left], frame[bottom, right]]
    return [float(c[..., 0].mean() - c[..., 1].mean()) for c in corners]


def _pyav_displayed(path: Path) -> np.ndarray:
    """The first frame turned as PyAV's display matrix says (VideoFrame.rotation is counter-clockwise)."""
    import av

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return np.rot90(frame.to_ndarray(format="rgb24"), k=frame.rotation // 90)


def _opencv_displayed(path: Path) -> np.ndarray:
    import cv2

    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, bgr = capture.read()
    capture.release()
    assert ok
    return bgr[..., ::-1]


@pytest.mark.parametrize(("suffix", "clockwise"),
                         [("mp4", 90), ("mp4", 180), ("mp4", 270), ("mov", 90), ("mkv", 90), ("webm", 180)])
def test_rotated_phone_video_is_upright_exactly_once(tmp_path, suffix, clockwise):
    # Regression (issue 12.1): decord already applies an MP4/MOV display matrix; turning again put faces
    # sideways. It ignores Matroska's rotation, which OpenCV (and players) apply: those are turned once here.
    path = rotated_video(tmp_path / f"phone{clockwise}.{suffix}", clockwise)
    upright = upright_marker_frame()
    for reference in (_pyav_displayed(path), _opencv_displayed(path)):
        assert reference.shape == upright.shape and np.argmax(_quarter_means(reference)) == 0
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (96, 128, clockwise)  # as displayed
    frames = np.concatenate([c.rgb for c in VideoStream(path, sample_fps=0)])
    assert frames.shape == (6, 128, 96, 3)
    assert np.argmax(_quarter_means(frames[0])) == 0  # marker top-left: upright
    assert np.abs(frames[0].astype(int) - _pyav_displayed(path).astype(int)).mean() < 3


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_rotated_video_decoded_downscaled_keeps_its_shape(tmp_path, suffix):
    # 48 px wide: a width decord returns with padded rows (reported as 4 channels), undone by the stream.
    path = rotated_video(tmp_path / f"phone90.{suffix}", 90)
    stream = VideoStream(path, sample_fps=0, max_side=64)
    frame = next(iter(stream)).rgb[0]
    assert stream.scale == pytest.approx(2.0) and frame.shape == (64, 48, 3)
    assert np.argmax(_quarter_means(frame)) == 0
    reference = _pyav_displayed(path)[::2, ::2]
    assert np.abs(frame.astype(int) - reference.astype(int)).mean() < 8


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


def _drain(stream: VideoStream) -> int:
    return sum(len(chunk) for chunk in stream)


def test_truncated_file_reports_frames_lost(tmp_path):
    # Regression (issue 12.2): 90 % of a 50-frame file decoded 45 frames and ended `done` with no word.
    source = faststart_noise_video(tmp_path / "full.mp4")
    stream = VideoStream(damaged_copy(source, tmp_path / "cut90.mp4", keep_fraction=0.9), sample_fps=0)
    decoded = _drain(stream)
    assert stream.frames_planned == 50 and 0 < decoded == stream.frames_decoded < 50
    assert stream.warnings == [f"decode_incomplete: {decoded} of 50 planned frames decoded"]


def test_file_cut_in_half_with_index_at_start_is_salvaged(tmp_path):
    # decord refuses to open it (the index points past the end); the front half still decodes.
    source = faststart_noise_video(tmp_path / "full.mp4")
    stream = VideoStream(damaged_copy(source, tmp_path / "half.mp4", keep_fraction=0.5), sample_fps=10)
    assert stream.salvaged
    chunks = list(stream)
    times = np.concatenate([c.timestamps for c in chunks])
    assert 3 <= len(times) < stream.frames_planned == 17
    assert times == pytest.approx(np.arange(len(times)) * 0.1, abs=0.002)
    assert chunks[0].rgb.shape[1:] == (96, 128, 3)
    assert any(w.startswith("decode_incomplete:") for w in stream.warnings)


def test_corrupt_middle_decodes_past_the_damage(tmp_path):
    source = faststart_noise_video(tmp_path / "full.mp4")
    stream = VideoStream(damaged_copy(source, tmp_path / "mid.mp4", corrupt_at=0.5), sample_fps=0)
    decoded = _drain(stream)
    assert 40 <= decoded <= 50  # the old reader stopped at the first bad frame (23 of 50)
    assert (decoded < 50) == any(w.startswith("decode_incomplete") for w in stream.warnings)


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


@pytest.mark.parametrize("side", [2, 16, MIN_FRAME_SIDE - 2])
def test_tiny_frames_are_a_one_line_error(tmp_path, side):
    # Regression (issue 12.6): 16x16 frames came back with 6 channels and crashed the detector.
    path = pattern_video(tmp_path / "tiny.mp4", n_frames=3, width=side, height=side, pix_fmt="yuv444p")
    with pytest.raises(InputVideoError, match=f"too small for face detection; the minimum is {MIN_FRAME_SIDE}"):
        VideoStream(path)


def test_smallest_allowed_frames_decode(tmp_path):
    path = pattern_video(tmp_path / "small.mp4", n_frames=3, width=MIN_FRAME_SIDE, height=MIN_FRAME_SIDE)
    assert next(iter(VideoStream(path, sample_fps=0))).rgb.shape == (3, MIN_FRAME_SIDE, MIN_FRAME_SIDE, 3)


def test_text_file_that_ffmpeg_reads_as_video_is_a_one_line_error(tmp_path, capfd):
    # FFmpeg's tty demuxer takes any .txt for a video of rendered characters; decord then failed to seek.
    path = _write(tmp_path / "notes.txt", b"session notes, not a video\n" * 20)
    with pytest.raises(InputVideoError, match="a text file, not a video"):
        VideoStream(path)
    assert capfd.readouterr().err == ""


def test_audio_only_file_says_no_video_stream(tmp_path):
    with pytest.raises(InputVideoError, match="no video stream"):
        VideoStream(audio_only_file(tmp_path / "voice.m4a"))


def _av1_video(path: Path) -> Path:
    try:
        return pattern_video(path, n_frames=3, width=64, height=64, codec="libsvtav1",
                             options={"svtav1-params": "log-level=0"})
    except Exception as exc:  # the encoder is optional in PyAV builds
        pytest.skip(f"no AV1 encoder here: {exc}")


def test_av1_is_read_front_to_back_where_opencv_decodes_it(tmp_path, capfd):
    """decord cannot decode AV1; OpenCV >= 5 can (dav1d), so such a file is processed, and says how."""
    from fervideo.video_container import read_first_frame

    path = _av1_video(tmp_path / "av1.mp4")
    if read_first_frame(path) is None:
        pytest.skip("this OpenCV cannot decode AV1 (refusal tested below)")
    capfd.readouterr()
    stream = VideoStream(path, sample_fps=0)
    frames = np.concatenate([chunk.rgb for chunk in stream])
    assert frames.shape == (3, 64, 64, 3) and stream.salvaged
    assert stream.warnings == ["fallback_decoder: decord cannot decode AV1; frames were read front to back"]
    assert capfd.readouterr().err == ""


def test_av1_is_named_as_an_unsupported_codec_where_nothing_decodes_it(tmp_path, capfd, monkeypatch):
    path = _av1_video(tmp_path / "av1.mp4")
    monkeypatch.setattr("fervideo.video_probe.read_first_frame", lambda _path: None)  # an OpenCV without dav1d
    capfd.readouterr()
    with pytest.raises(InputVideoError, match="unsupported codec AV1; re-encode it"):
        VideoStream(path)
    with pytest.raises(InputVideoError, match="unsupported codec AV1"):
        check_video_file(path)
    assert capfd.readouterr().err == ""  # the decoders' complaints are not printed above the error


def test_decoder_noise_is_silenced_before_a_one_line_error(tmp_path, capfd):
    path = _write(tmp_path / "random.mp4", np.random.default_rng(0).integers(0, 255, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(InputVideoError, match="cannot be decoded"):
        VideoStream(path)
    assert capfd.readouterr().err == ""


def test_unreadable_file_says_permissions(tmp_path, monkeypatch):
    # The corpus test cannot chmod its way there when run as root, who reads any file.
    path = pattern_video(tmp_path / "locked.mp4", n_frames=3)
    monkeypatch.setattr("fervideo.video_probe.os.access", lambda *_: False)
    with pytest.raises(InputVideoError, match="not readable; check the file's permissions"):
        VideoStream(path)


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


def test_chunks_of_large_frames_hold_fewer_frames(tmp_path):
    # Peak memory grows with the bytes of a chunk (each frame lives several times over in the pipeline):
    # up to 1280x720 a chunk holds the full 32 frames; 1920x1080 decoded at full size (max_side=None) 15.
    from fervideo.video import MAX_CHUNK_BYTES

    path = pattern_video(tmp_path / "fhd.mp4", n_frames=20, width=1920, height=1080)
    big = VideoStream(path, sample_fps=0, max_side=None)
    assert big.chunk_size == MAX_CHUNK_BYTES // (1920 * 1080 * 3) == 15
    assert [len(c) for c in big] == [15, 5]
    assert VideoStream(path, sample_fps=0).chunk_size == 32  # decoded at 1280x720 by default
    assert VideoStream(pattern_video(tmp_path / "t.mp4", n_frames=4), sample_fps=0, chunk_size=3).chunk_size == 3


@pytest.mark.parametrize("decoder", ["pyav", "decord", "salvaged"])
def test_a_short_first_chunk_then_full_chunks_on_every_decoding_path(tmp_path, decoder):
    """first_chunk_size (the pipeline's quick first results, issue 10): the same frames in the same order,
    cut differently; every path (PyAV, decord's index, the front-to-back salvage reader) honours it."""
    if decoder == "salvaged":
        source = faststart_noise_video(tmp_path / "full.mp4")
        path = damaged_copy(source, tmp_path / "half.mp4", keep_fraction=0.5)
    else:
        path = pattern_video(tmp_path / "clip.mp4", n_frames=45, width=96, height=64)
    options = {} if decoder == "salvaged" else {"decoder": decoder}
    plain = list(VideoStream(path, sample_fps=0, chunk_size=16, **options))
    stream = VideoStream(path, sample_fps=0, chunk_size=16, first_chunk_size=4, **options)
    assert stream.salvaged == (decoder == "salvaged")
    short_first = list(stream)
    total = sum(len(c) for c in plain)
    assert total > 16
    full, rest = divmod(total - 4, 16)
    assert [len(c) for c in short_first] == [4] + [16] * full + ([rest] if rest else [])
    for field in ("indices", "timestamps", "rgb"):
        assert np.array_equal(np.concatenate([getattr(c, field) for c in short_first]),
                              np.concatenate([getattr(c, field) for c in plain]))


def test_first_chunk_size_is_checked():
    with pytest.raises(InvalidArgumentError, match="first chunk size"):
        VideoStream(Path(__file__).parent / "data" / "single_face.mp4", first_chunk_size=0)
