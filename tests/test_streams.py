"""`--streams K`: one worker process running K videos at once on threads that share its networks. Each
video's stored rows are those of a one-at-a-time run; a kill ends every video in flight in the process,
only the timed-out one fails; a stop interrupts them all and a re-run finishes them; Ray runs the same
with max_concurrency=K. Short synthetic videos, the real one-face clip and the bundled mini-Xception."""

import os
import signal
import threading
import time

import av
import numpy as np
import pandas as pd
import pytest
from synthetic_media import looped_clip_video, pattern_video
from test_batch import BASELINE, frame_counts, local_ray, sessions_in, settings  # noqa: F401  local_ray: fixture

import fervideo.batch.local as local
from fervideo.batch import plan_from_paths, run_batch
from fervideo.store import SessionStatus, frame_table, open_database


def face_videos(real_clip, folder) -> list:
    """Three different videos: the real clip, a longer loop of its frames, and one without a face."""
    with av.open(str(real_clip)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return [real_clip, looped_clip_video(folder / "loop.mp4", frames, 3.2),
            pattern_video(folder / "pattern.mp4", n_frames=30, width=96, height=64)]


def tables_by_video(db_url: str) -> dict[str, pd.DataFrame]:
    with open_database(db_url)() as db:
        return {os.path.basename(s.video_path): frame_table(db, s.id) for s in sessions_in(db_url)}


def test_streams_store_exactly_the_rows_of_one_at_a_time_runs(tmp_path, real_clip):
    videos = face_videos(real_clip, tmp_path)
    items = plan_from_paths(videos, "S1")
    together, alone = f"sqlite:///{tmp_path / 'together.sqlite'}", f"sqlite:///{tmp_path / 'alone.sqlite'}"
    result = run_batch(items, settings(together, sample_fps=5, chunk_size=8), workers=1, streams=2)
    assert [o.status for o in result.outcomes] == ["done"] * 3, [o.reason for o in result.outcomes]
    assert len({o.worker for o in result.outcomes}) == 1  # one process ran them all
    run_batch(items, settings(alone, sample_fps=5, chunk_size=8), workers=1, streams=1)
    concurrent, sequential = tables_by_video(together), tables_by_video(alone)
    assert sorted(concurrent) == sorted(sequential) == sorted(v.name for v in videos)
    assert concurrent["single_face.mp4"]["face_found"].all() and not concurrent["pattern.mp4"]["face_found"].any()
    for name, table in concurrent.items():
        pd.testing.assert_frame_equal(table, sequential[name], check_exact=True)


def test_a_timeout_kills_the_process_fails_that_video_and_redoes_the_other(tmp_path, db_url, monkeypatch):
    """The `hang` video never ends; the other stalls after its first chunk on its first attempt only
    (tests/stream_workers.py), so both are in flight in one process when the time limit kills it."""
    monkeypatch.setattr(local, "worker_main", __import__("stream_workers").worker_main_with_a_hang)
    hang = pattern_video(tmp_path / "hang.mp4", n_frames=12, width=96, height=64)
    other = pattern_video(tmp_path / "other.mp4", n_frames=40, width=96, height=64)
    items = plan_from_paths([hang, other], "S1")
    result = run_batch(items, settings(db_url, chunk_size=8), workers=1, streams=2, video_timeout_s=10)
    assert result.outcomes[0].status == "failed" and "timed out" in result.outcomes[0].reason
    assert result.outcomes[1].status == "done", result.outcomes[1].reason
    assert (tmp_path / "other.first-attempt").exists()  # its first attempt was cut short by the kill
    (session,) = sessions_in(db_url)  # the interrupted first attempt was superseded by the redo
    assert session.id == result.outcomes[1].session_id and session.status == SessionStatus.DONE
    assert frame_counts(db_url) == {session.id: 40}


def test_sigterm_interrupts_every_video_in_flight_and_a_rerun_finishes_them(tmp_path, db_url):
    # Long enough that both are still running when the signal lands: with 160 frames each, a faster pipeline
    # (pandas no longer loaded per chunk) finished both between the first stored chunks and the SIGTERM.
    videos = [pattern_video(tmp_path / f"long{i}.mp4", n_frames=1600 + i, width=96, height=64) for i in range(2)]
    items = plan_from_paths(videos, "S1")
    open_database(db_url)

    def terminate_once_both_have_frames() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(frame_counts(db_url)) < 2:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler forwards it to the worker

    threading.Thread(target=terminate_once_both_have_frames, daemon=True).start()
    result = run_batch(items, settings(db_url, chunk_size=8), workers=1, streams=2)
    assert result.stop_signal == signal.SIGTERM and result.exit_code == 143
    assert [o.status for o in result.outcomes] == ["interrupted", "interrupted"], [o.reason for o in result.outcomes]
    assert [s.status for s in sessions_in(db_url)] == [SessionStatus.INTERRUPTED] * 2 and frame_counts(db_url) == {}
    again = run_batch(items, settings(db_url, chunk_size=8), workers=1, streams=2)
    assert [o.status for o in again.outcomes] == ["done", "done"] and again.exit_code == 0
    done = sessions_in(db_url)
    assert [s.status for s in done] == [SessionStatus.DONE] * 2
    assert frame_counts(db_url) == {s.id: s.sampled_frames for s in done}
    assert {os.path.basename(s.video_path): s.sampled_frames for s in done} == {"long0.mp4": 1600, "long1.mp4": 1601}


@pytest.mark.usefixtures("local_ray")
def test_a_ray_actor_runs_two_videos_at_once(tmp_path, db_url):
    videos = [pattern_video(tmp_path / f"v{i}.mp4", n_frames=30 + i, width=96, height=64) for i in range(3)]
    result = run_batch(plan_from_paths(videos, "S1"), settings(db_url), workers=1, streams=2, use_ray=True)
    assert [o.status for o in result.outcomes] == ["done"] * 3, [o.reason for o in result.outcomes]
    assert len({o.worker for o in result.outcomes}) == 1  # one actor, max_concurrency=2
    assert frame_counts(db_url) == {o.session_id: o.sampled_frames for o in result.outcomes}
    assert sorted(frame_counts(db_url).values()) == [30, 31, 32]
