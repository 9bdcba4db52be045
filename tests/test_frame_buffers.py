"""Chunk frame arrays handed back to the stream (VideoStream.recycle) are reused for later chunks, and
nothing else is: the frames are the same bytes, and an array the stream did not lend is never written to."""

import numpy as np
import pytest
from synthetic_media import pattern_video, rotated_video

from fervideo.pipeline import SessionProcessor
from fervideo.video import FrameBuffers, VideoStream


def _frames(stream: VideoStream, recycle: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every frame (copied) and the chunk arrays as yielded, each handed back once copied when asked."""
    copies, arrays = [], []
    for chunk in stream:
        copies.append(chunk.rgb.copy())
        arrays.append(chunk.rgb)
        if recycle:
            stream.recycle(chunk.rgb)
    return np.concatenate(copies), arrays


@pytest.mark.parametrize("clockwise", [0, 90])
def test_recycled_chunk_arrays_are_reused_and_the_frames_are_the_same(tmp_path, clockwise):
    if clockwise:
        path = rotated_video(tmp_path / "phone.mp4", clockwise)
    else:
        path = pattern_video(tmp_path / "clip.mp4", n_frames=45, width=96, height=64)
    plain, _ = _frames(VideoStream(path, sample_fps=0, chunk_size=2), recycle=False)
    recycled, arrays = _frames(VideoStream(path, sample_fps=0, chunk_size=2), recycle=True)
    assert np.array_equal(recycled, plain)
    reused = sum(any(np.shares_memory(a, b) for b in arrays[:i]) for i, a in enumerate(arrays))
    assert reused >= max(1, len(arrays) - 2)  # all but the first chunk and a shorter last one


def test_arrays_the_pool_did_not_lend_are_never_reused():
    buffers = FrameBuffers(keep=2)
    foreign = np.zeros((2, 4, 4, 3), np.uint8)
    buffers.give_back(foreign)  # not lent: ignored
    lent = buffers.take((2, 4, 4, 3))
    assert not np.shares_memory(lent, foreign)
    buffers.give_back(lent[:1])  # a view of a lent array: ignored too
    assert not np.shares_memory(buffers.take((2, 4, 4, 3)), lent)
    buffers.give_back(lent)
    buffers.give_back(lent)  # twice: kept once
    assert buffers.take((2, 4, 4, 3)) is lent
    assert not np.shares_memory(buffers.take((2, 4, 4, 3)), lent)


def test_the_pool_keeps_at_most_keep_arrays():
    buffers = FrameBuffers(keep=2)
    lent = [buffers.take((1, 2, 2, 3)) for _ in range(3)]
    for array in lent:
        buffers.give_back(array)
    taken = [buffers.take((1, 2, 2, 3)) for _ in range(3)]
    assert sum(any(t is a for a in lent) for t in taken) == 2


def test_the_pipeline_hands_each_chunk_back_once_its_faces_are_found(real_clip, db_url, monkeypatch):
    """The faces stage returns a chunk's frames to its stream after analysis (the classifier gets crops);
    the rows are those of fresh arrays (tests/test_pipeline_stages.py compares with the serial stages)."""
    processor = SessionProcessor(db_url=db_url, sample_fps=0)
    given_back = []
    real_recycle = VideoStream.recycle

    def recycle(stream, frames):
        given_back.append(frames.shape[0])
        return real_recycle(stream, frames)

    monkeypatch.setattr(VideoStream, "recycle", recycle)
    result = processor.process(real_clip, "S1")
    assert given_back == [8, 32, 32] and len(result.frames) == 72
