"""Batches: planning (paths, folders, globs, manifests), the runner's table and exit codes, leases and
resume after a kill, SIGTERM handling. Short synthetic videos and the bundled mini-Xception."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from synthetic_media import pattern_video
from test_pipeline import run_cli

from fervideo.batch import ManifestError, WorkerSettings, expand_paths, plan_from_paths, read_manifest, run_batch
from fervideo.errors import InputVideoError, InvalidArgumentError
from fervideo.store import Frame, SessionStatus, VideoSession, open_database
from fervideo.store.leases import display_status, lease_expired

BASELINE = "mini-xception-fer2013"


def make_videos(folder: Path, count: int, n_frames: int = 20) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [pattern_video(folder / f"v{i}.mp4", n_frames=n_frames + i, width=96, height=64) for i in range(count)]


def long_video(folder: Path) -> Path:
    """A video that takes seconds to process (about 8 s here at --fps 0): a test that stops a run once its
    first chunk is written must not find it already finished. 600 frames at 96x64 took 0.8 s, under one
    0.5-s poll, and a CI run saw the session `done` before the kill."""
    return pattern_video(folder / "long.mp4", n_frames=900, width=320, height=240)


def settings(db_url: str, **overrides) -> WorkerSettings:
    return WorkerSettings(db_url=db_url, model=BASELINE, sample_fps=overrides.pop("sample_fps", 0), threads=1,
                          **overrides)


def sessions_in(db_url: str) -> list[VideoSession]:
    with open_database(db_url)() as db:
        return list(db.scalars(select(VideoSession).order_by(VideoSession.id)))


def frame_counts(db_url: str) -> dict[int, int]:
    with open_database(db_url)() as db:
        rows = db.execute(select(Frame.session_id, func.count()).group_by(Frame.session_id)).all()
    return dict(rows)


# ------------------------------------------------------------------------------------------- planning
def test_paths_folders_and_globs_expand_once_each(tmp_path):
    videos = make_videos(tmp_path / "study" / "a", 2)
    (tmp_path / "study" / "notes.txt").write_text("not a video")
    planned = expand_paths([tmp_path / "study", str(tmp_path / "study" / "a" / "v*.mp4"), videos[0]])
    assert planned == [v.resolve() for v in videos]
    with pytest.raises(InputVideoError, match="no file matches"):
        expand_paths([str(tmp_path / "nothing*.mp4")])
    with pytest.raises(InvalidArgumentError, match="control character"):
        plan_from_paths(videos, "bad\x1b[31m")


def test_manifest_reports_every_bad_row_with_its_line(tmp_path):
    make_videos(tmp_path, 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,subject,recorded_at,session\n"
        "v0.mp4,S1,2026-01-02,baseline\n"
        "missing.mp4,S2,2026-01-02,\n"
        "v0.mp4,..,2026-01-02,\n"
        "v0.mp4,S3,yesterday,\n"
        "\n"
        "v0.mp4,S1,,\n"
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5", "line 7"]
    assert "no such file" in problems[0] and "folder" in problems[1] and "ISO date" in problems[2]
    assert "same video and subject as line 2" in problems[3]


def test_manifest_rows_become_work_items(tmp_path):
    make_videos(tmp_path / "videos", 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,subject,recorded_at\nvideos/v0.mp4,S1,2026-01-02\nvideos/v1.mp4,S2,\n")
    first, second = read_manifest(manifest)
    assert first.path == tmp_path / "videos" / "v0.mp4" and first.recorded_at == dt.datetime(2026, 1, 2)
    assert second.subject == "S2" and second.recorded_at is None and second.source_line == 3
    (tmp_path / "bad.csv").write_text("file,subject\nx,y\n")
    with pytest.raises(ManifestError, match="lacks the column"):
        read_manifest(tmp_path / "bad.csv")


def test_cli_manifest_errors_are_listed_before_anything_runs(capsys, tmp_path, db_url):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,subject,recorded_at\nnope.mp4,S1,\n")
    code, _, err = run_cli(capsys, "process", "--manifest", str(manifest), "--db", db_url)
    assert code == 2 and "line 2" in err and "Traceback" not in err
    assert not Path(db_url.removeprefix("sqlite:///")).exists() or sessions_in(db_url) == []


# ------------------------------------------------------------------------------------------ the runner
def test_batch_with_a_bad_file_keeps_the_others_and_exits_1(capsys, tmp_path, db_url):
    videos = make_videos(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.mp4").write_text("not a video at all\n" * 50)
    code, out, err = run_cli(capsys, "process", str(tmp_path / "in"), "-s", "S1", "--fps", "0", "--model", BASELINE,
                             "--db", db_url, "--workers", "2")
    assert code == 1, err
    assert "2 done" in out and "1 failed" in out and "broken.mp4" in out
    assert "videos failed; the others are kept" in err and "Traceback" not in err
    done = [s for s in sessions_in(db_url) if s.status == SessionStatus.DONE]
    assert sorted(Path(s.video_path).name for s in done) == sorted(v.name for v in videos)
    counts = frame_counts(db_url)
    assert [counts[s.id] for s in done] == [s.sampled_frames for s in done] and all(counts.values())
    # A second run skips what is done and retries only the broken file.
    code, out, _ = run_cli(capsys, "process", str(tmp_path / "in"), "-s", "S1", "--fps", "0", "--model", BASELINE,
                           "--db", db_url)
    assert code == 1 and "2 skipped" in out and "1 failed" in out


def test_video_timeout_kills_the_worker_and_the_batch_goes_on(tmp_path, db_url):
    videos = make_videos(tmp_path, 2, n_frames=40)
    items = plan_from_paths(videos, "S1")
    result = run_batch(items, settings(db_url), workers=1, video_timeout_s=0.001)
    assert [o.status for o in result.outcomes] == ["failed", "failed"]
    assert all("timed out" in o.reason for o in result.outcomes) and result.exit_code == 1
    assert all(s.status != SessionStatus.RUNNING for s in sessions_in(db_url))
    assert frame_counts(db_url) == {}


# ----------------------------------------------------------------------------------- leases and resume
def _stale_session(db_url: str, video: Path, pid: int) -> int:
    """A session a killed process left `running`, with partial frames (as kill -9 leaves it)."""
    from fervideo.batch.work import build_processor
    from fervideo.utils import sha256_file
    from fervideo.video import VideoStream

    processor = build_processor(settings(db_url))
    session_id = processor._start_session(video, sha256_file(video), "S1", None, VideoStream(video, 0, 8))
    with processor.db.begin() as db:
        session = db.get(VideoSession, session_id)
        session.lease_pid = pid
        db.add(Frame(session_id=session_id, frame_index=0, t=0.0, face_found=False))
    return session_id


def test_a_dead_process_lease_is_interrupted_and_redone(capsys, tmp_path, db_url):
    (video,) = make_videos(tmp_path, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_id = _stale_session(db_url, video, dead.pid)
    (stale,) = sessions_in(db_url)
    assert stale.status == SessionStatus.RUNNING and lease_expired(stale) and display_status(stale) == "interrupted"
    code, out, _ = run_cli(capsys, "sessions", "--db", db_url)
    assert "interr" in out and "running" not in out  # narrow test terminal: the cell may fold
    result = run_batch(plan_from_paths([video], "S1"), settings(db_url), workers=1)
    assert result.exit_code == 0 and result.outcomes[0].status == "done"
    (session,) = sessions_in(db_url)
    assert session.id != stale_id and session.status == SessionStatus.DONE
    assert frame_counts(db_url) == {session.id: session.sampled_frames}


def test_a_live_lease_is_not_taken_over(tmp_path, db_url):
    (video,) = make_videos(tmp_path, 1)
    _stale_session(db_url, video, os.getpid())  # this very process: alive, fresh heartbeat
    result = run_batch(plan_from_paths([video], "S1"), settings(db_url), workers=1, busy_wait_s=1)
    outcome = result.outcomes[0]
    assert outcome.status == "skipped" and "being processed" in outcome.reason


def test_an_expired_heartbeat_is_taken_over(tmp_path, db_url, monkeypatch):
    (video,) = make_videos(tmp_path, 1)
    stale_id = _stale_session(db_url, video, os.getpid())  # alive, but its heartbeat stops now
    monkeypatch.setenv("FERVIDEO_LEASE_TIMEOUT_S", "1")
    time.sleep(1.5)
    result = run_batch(plan_from_paths([video], "S1"), settings(db_url), workers=1)
    assert result.outcomes[0].status == "done"
    (session,) = sessions_in(db_url)
    assert session.id != stale_id and frame_counts(db_url) == {session.id: session.sampled_frames}


def test_sigterm_marks_the_session_interrupted_and_exits_143(tmp_path, db_url):
    video = long_video(tmp_path)
    open_database(db_url)  # created here first: two processes must not both migrate a new database at once
    command = [sys.executable, "-m", "fervideo.cli", "process", str(video), "-s", "S1", "--fps", "0",
               "--model", BASELINE, "--db", db_url, "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not frame_counts(db_url):  # until the session has frames
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 143, err
    (session,) = sessions_in(db_url)
    assert session.status == SessionStatus.INTERRUPTED and frame_counts(db_url) == {}


# ------------------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fervideo[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_actors_process_the_batch_and_skip_what_is_done(local_ray, tmp_path, db_url):
    videos = make_videos(tmp_path, 2, n_frames=12)
    items = plan_from_paths(videos, "S1")
    result = run_batch(items, settings(db_url), workers=2, use_ray=True)
    assert [o.status for o in result.outcomes] == ["done", "done"], [o.reason for o in result.outcomes]
    assert len({o.worker for o in result.outcomes}) >= 1 and result.model["name"] == BASELINE
    assert frame_counts(db_url) == {o.session_id: o.sampled_frames for o in result.outcomes}
    again = run_batch(items, settings(db_url), workers=1, use_ray=True)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]


def test_workers_of_a_killed_runner_stop_and_mark_their_session_interrupted(tmp_path, db_url):
    video = long_video(tmp_path)
    open_database(db_url)  # created here first: two processes must not both migrate a new database at once
    command = [sys.executable, "-m", "fervideo.cli", "process", str(video), "-s", "S1", "--fps", "0",
               "--model", BASELINE, "--db", db_url, "--threads", "1"]
    runner = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not frame_counts(db_url):
        time.sleep(0.1)
    runner.kill()  # SIGKILL to the runner alone: its worker is told by the kernel (PR_SET_PDEATHSIG)
    runner.wait()
    while time.monotonic() < deadline and sessions_in(db_url)[0].status == SessionStatus.RUNNING:
        time.sleep(0.5)
    (session,) = sessions_in(db_url)
    assert session.status == SessionStatus.INTERRUPTED and frame_counts(db_url) == {}


def test_workers_creating_the_same_subject_at_once_both_succeed(db_url, monkeypatch):
    """Seen with two Ray actors starting one subject's videos together: UNIQUE constraint failed."""
    import fervideo.store.queries as queries
    from fervideo.store import Subject

    factory = open_database(db_url)
    with factory.begin() as db:
        db.add(Subject(code="S1"))  # the other worker's insert, between our look and ours
    looks = iter([False])
    real_exists = queries._subject_exists
    monkeypatch.setattr(queries, "_subject_exists", lambda f, c: next(looks, None) or real_exists(f, c))
    queries.ensure_subject(factory, "S1")
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(Subject)) == 1



# ------------------------------------------------------------------------------------- --ray [ADDRESS]
@pytest.mark.parametrize(("ray_args", "use_ray", "address"), [
    (["--ray"], True, None),
    (["--ray=ray://head:10001"], True, "ray://head:10001"),
    (["--ray", "auto"], True, "auto"),
    (["--ray", "10.0.0.5:6379"], True, "10.0.0.5:6379"),
    (["--ray-address", "auto"], True, "auto"),  # the older spelling still works
    ([], False, None),
])
def test_ray_takes_an_optional_address(capsys, tmp_path, db_url, monkeypatch, ray_args, use_ray, address):
    import fervideo.batch
    from fervideo.batch.runner import BatchResult

    videos = make_videos(tmp_path, 2)
    calls = []

    def fake_run_batch(items, settings, **options):
        calls.append(options)
        return BatchResult(items, [None] * len(items))

    monkeypatch.setattr(fervideo.batch, "run_batch", fake_run_batch)
    run_cli(capsys, "process", *map(str, videos), *ray_args, "-s", "S1", "--db", db_url)
    (options,) = calls
    assert options["use_ray"] is use_ray and options["ray_address"] == address


def test_a_word_after_ray_that_is_a_file_stays_a_video(capsys, tmp_path, db_url, monkeypatch):
    """`--ray VIDEO`: a file named like an address (host:1) is a video, not a cluster; `--ray=` is an error."""
    import fervideo.batch
    from fervideo.batch.runner import BatchResult

    monkeypatch.chdir(tmp_path)
    video = pattern_video(tmp_path / "named.mp4", n_frames=8, width=96, height=64).rename(tmp_path / "host:1")
    other = make_videos(tmp_path, 1)[0]
    calls = []
    monkeypatch.setattr(fervideo.batch, "run_batch", lambda items, settings, **options: calls.append(
        (items, options)) or BatchResult(items, [None] * len(items)))
    run_cli(capsys, "process", "--ray", video.name, str(other), "-s", "S1", "--db", db_url)
    ((items, options),) = calls
    assert options["ray_address"] is None and [i.path.name for i in items] == ["host:1", "v0.mp4"]
    code, _, err = run_cli(capsys, "process", "--ray=", str(other), "-s", "S1", "--db", db_url)
    assert code == 2 and "--ray= needs an address" in err and len(calls) == 1


# ------------------------------------------------------------------------------- stopping a Ray batch
def test_sessions_held_by_stopped_actors_are_marked_interrupted(tmp_path, any_db_url):
    from fervideo.batch.ray_pool import interrupt_sessions_held_by
    from fervideo.store.leases import this_host

    first, second = make_videos(tmp_path, 2)
    mine = _stale_session(any_db_url, first, 4242)  # the lease names a killed actor (host, 4242)
    theirs = _stale_session(any_db_url, second, 4343)  # another runner's actor: not ours to touch
    holders = [(this_host(), 4242), ("elsewhere", 4343)]
    marked = interrupt_sessions_held_by(any_db_url, holders, "interrupted by signal 2")
    assert marked == [mine]
    by_id = {s.id: s for s in sessions_in(any_db_url)}
    assert by_id[mine].status == SessionStatus.INTERRUPTED and by_id[mine].error == "interrupted by signal 2"
    assert by_id[theirs].status == SessionStatus.RUNNING
    assert frame_counts(any_db_url) == {theirs: 1}  # the interrupted one's partial frames are dropped
    assert interrupt_sessions_held_by(any_db_url, [(this_host(), 4242)], "again") == []  # no longer running


def test_sigterm_during_a_ray_batch_marks_the_sessions_in_flight_at_once(local_ray, tmp_path, db_url):
    import threading

    video = long_video(tmp_path)
    items = plan_from_paths([video], "S1")
    open_database(db_url)  # created here first: the watching thread must not migrate it while run_batch does

    def terminate_once_frames_arrive() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (os.path.exists(db_url.removeprefix("sqlite:///"))
                                                   and frame_counts(db_url)):
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler: no more dispatch, stop the actors

    threading.Thread(target=terminate_once_frames_arrive, daemon=True).start()
    result = run_batch(items, settings(db_url, chunk_size=16), workers=1, use_ray=True)
    assert result.stop_signal == signal.SIGTERM and result.exit_code == 143
    assert result.outcomes[0].status == "interrupted"
    (session,) = sessions_in(db_url)  # in the database itself, not only as the expired lease shows it
    assert session.status == SessionStatus.INTERRUPTED and frame_counts(db_url) == {}
