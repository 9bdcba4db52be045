"""Several decoders per video (fervideo/video_parallel.py, the GPU path's decoding): runs that begin at key
frames, decoded at once, must hand on exactly the frames of the one-decoder path, in order, and stop cleanly."""

import threading
import time

import numpy as np
import pytest
from synthetic_media import damaged_copy, faststart_noise_video, pattern_video, rotated_video, write_video

import fervideo.video_parallel as video_parallel
from fervideo.video import VideoStream
from fervideo.video_parallel import key_frame_runs


def test_runs_begin_at_key_frames_and_hold_enough_wanted_frames():
    wanted = np.arange(0, 40, 2)
    assert key_frame_runs(np.array([0, 10, 20, 30]), wanted, 40, 5) == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert key_frame_runs(np.array([0, 10, 20, 30]), wanted, 40, 8) == [(0, 20), (20, 40)]
    assert key_frame_runs(np.array([0]), wanted, 40, 5) == [(0, 40)]  # one key frame: one decoder
    assert key_frame_runs(np.array([], np.int64), wanted, 40, 5) == [(0, 40)]
    assert key_frame_runs(np.array([5, 25]), wanted, 40, 1) == [(0, 5), (5, 25), (25, 40)]  # frame 0 not a key


def _frames(path, threads: int, **options):
    stream = VideoStream(path, decoder="pyav", decode_threads=threads, **options)
    chunks = list(stream)
    return ([np.concatenate([getattr(c, f) for c in chunks]) for f in ("indices", "timestamps", "rgb")],
            stream)


def _assert_same_as_one_decoder(path, threads: int = 3, **options) -> VideoStream:
    (indices, times, rgb), stream = _frames(path, threads, **options)
    (ref_indices, ref_times, ref_rgb), ref = _frames(path, 1, **options)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(times, ref_times)
    np.testing.assert_array_equal(rgb, ref_rgb)
    assert stream.warnings == ref.warnings and stream.frames_decoded == ref.frames_decoded
    return stream


@pytest.fixture
def runs_decoded(monkeypatch):
    """The runs the decoders took, and on which threads."""
    real, seen = video_parallel._decode_run, []

    def recording(containers, start_times, wanted_set, run, size, hand_on, seek=True, skip_unsampled=True):
        seen.append((run, threading.current_thread().name, seek))
        return real(containers, start_times, wanted_set, run, size, hand_on, seek, skip_unsampled)

    monkeypatch.setattr(video_parallel, "_decode_run", recording)
    return seen


@pytest.mark.parametrize("fps", [0.0, 10.0, 5.0])
def test_many_key_frames_same_frames_as_one_decoder(tmp_path, fps, runs_decoded):
    # libx264's default preset: B-frames, so frames come out of the decoder in another order than the packets.
    path = pattern_video(tmp_path / "gops.mp4", n_frames=125, width=128, height=96, options={"g": "12"})
    _assert_same_as_one_decoder(path, chunk_size=4, sample_fps=fps)
    assert len(runs_decoded) >= 3 and all(name.startswith("fervideo-decode-run") for _, name, _ in runs_decoded)
    starts = [run[0] for run, _, _ in runs_decoded]
    assert starts == sorted(starts) and starts[0] == 0


def test_open_gop_leading_pictures_stay_in_their_run(tmp_path, runs_decoded):
    # Open GOPs: B-frames shown before a key frame are coded after it; they belong to the run before.
    path = pattern_video(tmp_path / "open.mp4", n_frames=100, width=128, height=96,
                         options={"x264-params": "open-gop=1:keyint=15:min-keyint=15:scenecut=0:bframes=3"})
    _assert_same_as_one_decoder(path, chunk_size=4, sample_fps=0)
    assert len(runs_decoded) >= 3


@pytest.mark.parametrize("fps", [10.0, 5.0])
def test_skipping_unsampled_frames_on_several_decoders_changes_no_frame(tmp_path, fps, runs_decoded):
    """Each decoder skips the H.264 non-reference frames it is not asked for (video_pyav.indexed_frames): the
    frames are those of every frame decoded. (A decoder reused for its next run once carried its skipping
    over and lost sampled frames of this variable-rate file, in some thread orders only; the deterministic
    regression test is test_video_pyav's test_every_frame_wanted_skips_nothing.)"""
    from fervideo.video_parallel import decode_sampled_parallel
    from fervideo.video_pyav import decode_sampled

    stamps = [i / 30 for i in range(60)] + [2 + i / 10 for i in range(30)]
    for path in (pattern_video(tmp_path / "vfr.mp4", n_frames=90, timestamps_s=stamps, options={"g": "10"}),
                 pattern_video(tmp_path / "open.mp4", n_frames=100, width=128, height=96,
                               options={"x264-params": "open-gop=1:keyint=15:min-keyint=15:scenecut=0:bframes=3"})):
        stream = VideoStream(path, sample_fps=fps)
        plan = (path, stream.start_times, stream.sampled_indices)
        every = list(decode_sampled(*plan, skip_unsampled=False))
        parallel = list(decode_sampled_parallel(*plan, stream.key_indices, None, 3, 4))
        assert [i for i, _ in parallel] == [i for i, _ in every] == stream.sampled_indices.tolist()
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(parallel, every, strict=True))
    assert len(runs_decoded) >= 6


@pytest.mark.parametrize("suffix", ["mkv", "webm", "mov"])
def test_other_containers_same_frames(tmp_path, suffix, runs_decoded):
    path = pattern_video(tmp_path / f"clip.{suffix}", n_frames=90, width=128, height=96, options={"g": "15"})
    _assert_same_as_one_decoder(path, chunk_size=4, sample_fps=10)
    if suffix == "mov":
        # x265's open GOPs: decord counts key frames in decode order, so the trial seek lands three frames past
        # the key frame it was sent to (16, not 13), and the file gets one decoder.
        assert runs_decoded == []
    else:
        assert len(runs_decoded) >= 2


def test_rotated_variable_rate_and_downscaled(tmp_path):
    phone = rotated_video(tmp_path / "phone.mp4", 90, n_frames=60)
    _assert_same_as_one_decoder(phone, sample_fps=0, chunk_size=4)
    stamps = [i / 30 for i in range(60)] + [2 + i / 10 for i in range(30)]
    vfr = pattern_video(tmp_path / "vfr.mp4", n_frames=90, timestamps_s=stamps, options={"g": "10"})
    _assert_same_as_one_decoder(vfr, sample_fps=10, chunk_size=4)
    big = write_video(tmp_path / "big.mp4", (np.full((360, 1920, 3), 8 * i, np.uint8) for i in range(30)),
                      options={"g": "6"})
    _assert_same_as_one_decoder(big, sample_fps=0, chunk_size=4, max_side=640)


def _losing_the_key_frame_after_seeks(monkeypatch, spare_first: int):
    """Simulated: after a seek the key frame goes missing (the first frame seen is past the run's start),
    except for the first `spare_first` seeks."""
    real, seeks = video_parallel.indexed_frames, {"n": 0}

    def losing(container, stream, start_times, tolerance, counter=0, wanted=None):
        frames = real(container, stream, start_times, tolerance, counter, wanted)
        if counter is None:  # after a seek
            seeks["n"] += 1
            if seeks["n"] > spare_first:
                next(frames, None)
        return frames

    monkeypatch.setattr(video_parallel, "indexed_frames", losing)


def test_a_run_whose_seek_lands_wrong_is_decoded_from_the_start(tmp_path, runs_decoded, monkeypatch):
    """The trial seek lands well, the runs' own seeks do not (a damaged key frame, say): each such run is
    decoded again from the file's start, and the frames are still exactly right."""
    _losing_the_key_frame_after_seeks(monkeypatch, spare_first=1)
    path = pattern_video(tmp_path / "gops.mp4", n_frames=80, width=128, height=96,
                         options={"g": "10", "bf": "0"})
    _assert_same_as_one_decoder(path, chunk_size=4, sample_fps=0)
    retried = {run for run, _, seek in runs_decoded if not seek}
    assert retried and retried == {run for run, _, seek in runs_decoded if seek and run[0] > 0}


def test_a_file_that_seeks_badly_gets_one_decoder(tmp_path, runs_decoded, monkeypatch):
    """The trial seek lands wrong: no run is decoded from the start (an hour of runs would each decode the
    file from its beginning); one decoder reads the file front to back, the same frames."""
    _losing_the_key_frame_after_seeks(monkeypatch, spare_first=0)
    path = pattern_video(tmp_path / "gops.mp4", n_frames=80, width=128, height=96,
                         options={"g": "10", "bf": "0"})
    _assert_same_as_one_decoder(path, chunk_size=4, sample_fps=0)
    assert runs_decoded == []


def test_damaged_middle_is_counted_honestly(tmp_path):
    source = faststart_noise_video(tmp_path / "full.mp4")
    stream = VideoStream(damaged_copy(source, tmp_path / "mid.mp4", corrupt_at=0.5), sample_fps=0,
                         decoder="pyav", decode_threads=3, chunk_size=4)
    decoded = sum(len(c) for c in stream)
    assert 0 < decoded <= 50
    assert (decoded < stream.frames_planned) == any(w.startswith("decode_incomplete") for w in stream.warnings)


def _decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fervideo-decode-run") and t.is_alive()]


def test_a_consumer_that_stops_early_leaves_no_decoder_running(tmp_path):
    path = pattern_video(tmp_path / "gops.mp4", n_frames=150, width=128, height=96, options={"g": "10"})
    frames = iter(VideoStream(path, sample_fps=0, decoder="pyav", decode_threads=3, chunk_size=4))
    next(frames)
    frames.close()
    deadline = time.monotonic() + 5
    while _decoder_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _decoder_threads() == []


def test_runs_not_started_when_the_consumer_stops_are_never_decoded(tmp_path, runs_decoded):
    """Three decoders, one-frame buffers: runs 0-2 start, run 3 waits for a free decoder. Once the consumer
    stops, the busy decoders stop at their next frame and run 3 is never decoded (it used to start and decode
    up to its first wanted frame while the pipeline was shutting down)."""
    path = pattern_video(tmp_path / "gops.mp4", n_frames=150, width=128, height=96, options={"g": "10", "bf": "0"})
    stream = VideoStream(path, sample_fps=0, decoder="pyav")
    frames = video_parallel.decode_sampled_parallel(path, stream.start_times, stream.sampled_indices,
                                                    stream.key_indices, None, workers=3, min_run=4,
                                                    buffer_frames=1)
    next(frames)
    frames.close()
    assert len(runs_decoded) == 3 and _decoder_threads() == []


def test_a_decoder_failure_reaches_the_consumer(tmp_path, monkeypatch):
    path = pattern_video(tmp_path / "gops.mp4", n_frames=90, width=128, height=96, options={"g": "10"})
    real, calls = video_parallel.to_rgb, {"n": 0}

    def failing(frame, size):
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("simulated decoder crash")
        return real(frame, size)

    monkeypatch.setattr(video_parallel, "to_rgb", failing)
    with pytest.raises(RuntimeError, match="simulated decoder crash"):
        list(VideoStream(path, sample_fps=0, decoder="pyav", decode_threads=3, chunk_size=4))
