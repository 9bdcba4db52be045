"""Front-to-back decoding of the sampled frames with PyAV: VideoStream's streaming path.

decord decodes ahead in a worker thread until the whole video sits in memory unless it is made to seek
after every chunk (dmlc/decord#157), and that seek makes every chunk re-decode from the previous key frame:
half the decode speed at 1280x720 (docs/speed.md). Reading the file once, front to back, and converting
only the sampled frames to RGB decodes each frame once and holds nothing but the chunk being filled; an H.264
frame that is neither sampled nor a reference for any other frame is not decoded at all
(_UnsampledReferenceSkip).

decord still indexes the file (frame timestamps, the sampling plan); decoded frames are matched to that
index by their timestamps, so a packet that fails to decode loses its own frames and nothing else (frames an
MP4 edit list hides are never planned: fervideo.video.presented). The frames are the same
bytes as decord's on the synthetic and single-face clips (tests/test_video_pyav.py; on one real file with an
edit list decord's drift and PyAV's match OpenCV's): the same FFmpeg YUV->RGB conversion,
and the rotation applied here as a lossless turn. Frames scaled down (a long side over 1280 px) differ by
a few grey levels at single pixels (mean 0.04 on a real 1080p face clip): decord scales in its filter graph,
here one bilinear swscale call scales and converts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def demuxer_names(path: Path) -> set[str]:
    """The names of the FFmpeg demuxer that reads `path` (e.g. {"mpegts"}), or an empty set if PyAV cannot."""
    import av

    try:
        with av.open(str(path)) as container:
            return set(container.format.name.split(","))
    except (av.error.FFmpegError, OSError):
        return set()


def _index_of(time_s: float | None, start_times: np.ndarray, tolerance_s: float) -> int | None:
    """The index entry with this start time, or None when no entry is within `tolerance_s`."""
    if time_s is None or not len(start_times):
        return None
    position = int(np.searchsorted(start_times, time_s))
    nearest = min((p for p in (position - 1, position) if 0 <= p < len(start_times)),
                  key=lambda p: abs(start_times[p] - time_s))
    return nearest if abs(start_times[nearest] - time_s) <= tolerance_s else None


def frame_tolerance(start_times: np.ndarray) -> float:
    """How far a decoded frame's time may be from its index entry: half the median frame step."""
    steps = np.diff(start_times)
    return float(np.median(steps)) / 2 if len(steps) else 1e-3


def index_offset(stream, start_times: np.ndarray, tolerance: float) -> float:
    """Seconds between PyAV's frame times and decord's index of the same frames, to subtract before matching.

    decord times a file from its first frame where the container starts later: FLV and MPEG-TS with B-frames
    start at the first frame's composition delay (67 ms at 30 fps), a cut recording at its cut; PyAV keeps the
    container's times. Matched as they were, an FLV's frames went out two places off. An index that does not
    start at 0 (an MP4 edit list's pre-roll frames, timed before 0 in both) needs no shift."""
    if stream.start_time is None or stream.time_base is None or not len(start_times):
        return 0.0
    return float(stream.start_time * stream.time_base) if abs(start_times[0]) <= tolerance else 0.0


def to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    """The frame as RGB uint8, scaled to `size` = (width, height) where given (one swscale call)."""
    width, height = size if size else (None, None)
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")


class _UnsampledReferenceSkip:
    """Asks the H.264 decoder to drop the non-reference frames that are not sampled.

    At --fps 5 of a 30-fps file five frames in six are decoded only for the frames that refer to them; a frame
    whose NAL units say it is no reference (nal_ref_idc 0: typically half the B-frames of an x264 file) is
    referred to by none, so skipping it changes no other frame's bytes. The decision is per packet, by the
    packet's timestamp: a packet that matches no index entry, or a sampled one, is decoded. H.264 only, where
    the bitstream itself guarantees this; other codecs decode every frame.
    Skipping leaves gaps that the counting of frames without a timestamp (indexed_frames' `counter`) cannot
    see, so the first such frame turns skipping off for the rest of the file and is not placed."""

    def __init__(self, stream, start_times: np.ndarray, tolerance: float, wanted: set[int] | None,
                 offset: float = 0.0) -> None:
        self._stream, self._start_times, self._tolerance, self._wanted = stream, start_times, tolerance, wanted
        self._offset = offset  # index_offset
        self.on = (wanted is not None and len(wanted) < len(start_times) and stream.time_base is not None
                   and stream.codec_context.name == "h264")
        self.used = False
        self._seconds_per_tick = float(stream.time_base or 0)  # a float: a Fraction per packet costs more
        if stream.codec_context.skip_frame != "DEFAULT":  # a reused container's decoder, left skipping
            stream.codec_context.skip_frame = "DEFAULT"
        self._mode = "DEFAULT"

    def before(self, packet) -> None:
        if not self.on:
            return
        time_s = None if packet.pts is None else packet.pts * self._seconds_per_tick - self._offset
        index = _index_of(time_s, self._start_times, self._tolerance)
        self._set("NONREF" if index is not None and index not in self._wanted else "DEFAULT")
        self.used |= self._mode == "NONREF"

    def turn_off(self) -> None:
        self._set("DEFAULT")
        self.on = self.used = False

    def _set(self, mode: str) -> None:
        if mode != self._mode:
            self._stream.codec_context.skip_frame = mode
            self._mode = mode


def indexed_frames(container, stream, start_times: np.ndarray, tolerance: float, counter: int | None = 0,
                   wanted: set[int] | None = None, by_time: bool = True) -> Iterator[tuple[int | None, object]]:
    """(index in `start_times`, frame) for every frame that decodes from the container's position on.

    A frame is matched to the index by its time; one without a time (or none near) takes the position after
    the previous frame (`counter`), or None while no frame has been placed (`counter=None`: after a seek).
    With `wanted`, H.264 non-reference frames outside it may be skipped (_UnsampledReferenceSkip): not decoded,
    not yielded; every frame in `wanted` still is. `by_time=False` places every frame by counting (a file whose
    frame times are not its presentation times: fervideo.video_probe.frame_timeline), and skips nothing."""
    import av

    offset = index_offset(stream, start_times, tolerance)
    skip = _UnsampledReferenceSkip(stream, start_times, tolerance, wanted if by_time else None, offset)
    for packet in container.demux(stream):
        skip.before(packet)
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:  # a damaged packet: its frames are lost, not the rest
            log.debug("packet skipped: %s", exc)
            continue
        for frame in frames:
            time_s = None if frame.time is None or not by_time else frame.time - offset
            index = _index_of(time_s, start_times, tolerance)
            if index is None and skip.used:  # frames skipped before it: the count no longer says where it is
                skip.turn_off()
                counter = None
            index = counter if index is None else index
            counter = None if index is None else index + 1
            yield index, frame


def decode_sampled(
    path: Path, start_times: np.ndarray, wanted: np.ndarray, size: tuple[int, int] | None = None,
    threads: int = 1, skip_unsampled: bool = True, by_time: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) for each index in `wanted` that decodes, in presentation order.

    `start_times` is decord's index of the file (seconds); `size` = (width, height) to scale to, as
    stored (before any turn). Frames are not turned: the caller applies the container's rotation.
    `threads` > 1 turns on FFmpeg's frame and slice threads (the one-decoder path of
    fervideo.video_parallel, which decodes runs of the file on several decoders at once).
    `skip_unsampled`: skip H.264 non-reference frames that are not wanted (the same frames, less decoding;
    False decodes every frame, for comparison). `by_time=False`: frames placed by counting (indexed_frames).
    """
    import av

    wanted_set = set(wanted.tolist())
    last_yielded = -1  # indices go out strictly increasing, each once, whatever a damaged packet says
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = threads
        if threads > 1:
            stream.thread_type = "AUTO"
        # No early stop at the last wanted index: a damaged frame's timestamp may point anywhere.
        frames = indexed_frames(container, stream, start_times, frame_tolerance(start_times),
                                wanted=wanted_set if skip_unsampled else None, by_time=by_time)
        for index, frame in frames:
            if index in wanted_set and index > last_yielded:
                last_yielded = index
                yield index, to_rgb(frame, size)
