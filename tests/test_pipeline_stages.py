"""The stage pipeline (fervideo/pipeline.py): decoding, the faces stage and the classifier on their own
threads give exactly the rows of running the stages one after another, really overlap, and leave no thread
behind when a stage fails."""

import threading

import pandas as pd
import pytest

from fervideo.pipeline import SessionProcessor, frame_rows, frames_table
from fervideo.store import FRAME_TABLE_COLUMNS
from fervideo.video import VideoStream

STAGE_THREADS = ("fervideo-decode", "fervideo-faces")


def _serial_rows(processor: SessionProcessor, clip) -> pd.DataFrame:
    """The reference: every stage on this thread, one chunk at a time."""
    stream = VideoStream(clip, processor.sample_fps, processor.chunk_size)
    tracker = processor.faces.new_tracker()
    tables = []
    for chunk in stream:
        faces = processor.faces.analyze(chunk.rgb, tracker)
        tables.append(frame_rows(chunk, faces, processor.classifier.predict(faces.crops), stream.scale))
    return frames_table(tables)[list(FRAME_TABLE_COLUMNS)]


def _stage_threads_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in STAGE_THREADS and t.is_alive()]


def test_pipelined_rows_are_exactly_the_serial_rows(real_clip, db_url):
    processor = SessionProcessor(db_url=db_url, sample_fps=10)
    processor.chunk_size = 8  # several chunks, so the track and the hand-offs cross chunk boundaries
    result = processor.process(real_clip, "S1")
    expected = _serial_rows(processor, real_clip)
    assert len(result.frames) == len(expected) > 16 and result.frames["face_found"].any()
    pd.testing.assert_frame_equal(result.frames.reset_index(drop=True), expected, check_exact=True)


def test_faces_of_the_next_chunk_are_found_while_the_classifier_runs(real_clip, db_url, monkeypatch):
    """Chunk 0's classification waits for chunk 1's faces stage to start: run one after the other, it
    would never start, and the wait would time out."""
    processor = SessionProcessor(db_url=db_url, sample_fps=10)
    processor.chunk_size = 8
    analyzed, threads = [], {}
    second_chunk_started = threading.Event()
    real_analyze, real_predict = processor.faces.analyze, processor.classifier.predict

    def analyze(frames, tracker=None):
        analyzed.append(len(frames))
        threads["faces"] = threading.current_thread().name
        if len(analyzed) == 2:
            second_chunk_started.set()
        return real_analyze(frames, tracker)

    def predict(crops):
        threads["classifier"] = threading.current_thread().name
        if not second_chunk_started.is_set():
            assert second_chunk_started.wait(timeout=30), "the faces stage did not run ahead of the classifier"
        return real_predict(crops)

    monkeypatch.setattr(processor.faces, "analyze", analyze)
    monkeypatch.setattr(processor.classifier, "predict", predict)
    processor.process(real_clip, "S2")
    assert threads == {"faces": "fervideo-faces", "classifier": threading.current_thread().name}
    assert _stage_threads_alive() == []


@pytest.mark.parametrize("failing_stage", ["faces", "classifier"])
def test_a_failing_stage_fails_the_session_and_stops_every_stage_thread(real_clip, db_url, monkeypatch,
                                                                        failing_stage):
    from sqlalchemy import select

    from fervideo.store import SessionStatus, VideoSession, open_database

    processor = SessionProcessor(db_url=db_url, sample_fps=10)
    processor.chunk_size = 8
    target = processor.faces if failing_stage == "faces" else processor.classifier
    name = "analyze" if failing_stage == "faces" else "predict"
    real = getattr(target, name)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError(f"simulated crash in the {failing_stage} stage")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)
    with pytest.raises(RuntimeError, match=f"simulated crash in the {failing_stage}"):
        processor.process(real_clip, "S3")
    assert _stage_threads_alive() == []
    with open_database(db_url)() as db:
        session = db.scalars(select(VideoSession)).one()
        assert session.status == SessionStatus.FAILED and failing_stage in session.error


def test_the_classifier_is_handed_crops_not_frames(real_clip, db_url, monkeypatch):
    """The frames stop at the faces stage: what crosses to the classifier's thread holds no frame."""
    processor = SessionProcessor(db_url=db_url, sample_fps=10)
    handed = []
    real_store = processor._classify_and_store

    def spy(run, chunk, faces):
        handed.append((chunk.rgb.size, len(chunk), faces.crops.shape))
        return real_store(run, chunk, faces)

    monkeypatch.setattr(processor, "_classify_and_store", spy)
    processor.process(real_clip, "S4")
    assert handed and all(size == 0 and n > 0 for size, n, _ in handed)
    assert all(shape[1:] == (224, 224, 3) for *_, shape in handed)
    assert sum(n for _, n, _ in handed) == len(VideoStream(real_clip, 10, processor.chunk_size))


def test_the_first_chunk_is_short_so_the_first_results_come_early(real_clip, db_url, monkeypatch):
    """Start-up (issue 10): the first chunk holds FIRST_CHUNK_SIZE frames, the rest chunk_size; the rows are
    exactly those of equal chunks (the networks give the same bits whatever the batch)."""
    from fervideo.pipeline import FIRST_CHUNK_SIZE

    processor = SessionProcessor(db_url=db_url, sample_fps=0)  # every frame: 72, so several full chunks
    assert processor.chunk_size == 32 and FIRST_CHUNK_SIZE == 8
    analyzed = []
    real_analyze = processor.faces.analyze

    def analyze(frames, tracker=None):
        analyzed.append(len(frames))
        return real_analyze(frames, tracker)

    monkeypatch.setattr(processor.faces, "analyze", analyze)
    result = processor.process(real_clip, "S5")
    assert analyzed == [8, 32, 32]
    monkeypatch.setattr(processor.faces, "analyze", real_analyze)
    expected = _serial_rows(processor, real_clip)  # 32, 32, 8
    pd.testing.assert_frame_equal(result.frames.reset_index(drop=True), expected, check_exact=True)


def test_a_chunk_size_below_the_first_chunk_size_keeps_its_chunks(real_clip, db_url, monkeypatch):
    processor = SessionProcessor(db_url=db_url, sample_fps=0)
    processor.chunk_size = 5
    analyzed = []
    real_analyze = processor.faces.analyze
    monkeypatch.setattr(processor.faces, "analyze",
                        lambda frames, tracker=None: analyzed.append(len(frames)) or real_analyze(frames, tracker))
    processor.process(real_clip, "S6")
    assert set(analyzed[:-1]) == {5} and sum(analyzed) == 72
