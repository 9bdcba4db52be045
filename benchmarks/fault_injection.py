"""Fault injection: a batch of short synthetic videos, workers killed with SIGKILL at random moments
(and once the whole batch, runner included), then the same batch re-run; every session must end `done`
with exactly the expected frame rows, no duplicate, no orphan, none left running.

    .venv/bin/python benchmarks/fault_injection.py --trials 20 [--postgres] [--streams 2]

With --streams K each worker runs K videos at once (fervideo/batch/local.py), so one kill ends up to K
videos in flight at once.

Prints one line per trial and the totals (kills, sessions, frame rows expected vs found). The test
suite runs a few trials of the same code (tests/test_fault_injection.py).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # synthetic_media, postgres_server

MODEL = "mini-xception-fer2013"
CHUNK_SIZE = 8  # small chunks: a kill lands between, or in the middle of, many transactions


def make_videos(folder: Path, count: int, first_frames: int = 40) -> dict[str, int]:
    """`count` short videos; returns {file name: frame count} (fps 0 samples every frame)."""
    import av  # noqa: F401  PyAV before decord (see tests/conftest.py)
    from synthetic_media import pattern_video

    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for i in range(count):
        frames = first_frames + 7 * i
        pattern_video(folder / f"clip{i:02d}.mp4", n_frames=frames, width=96, height=64)
        expected[f"clip{i:02d}.mp4"] = frames
    return expected


def batch_command(folder: Path, db_url: str, workers: int, streams: int = 1) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--run-batch", str(folder), "--db", db_url,
            "--workers", str(workers), "--streams", str(streams)]


def run_batch_here(folder: Path, db_url: str, workers: int, streams: int = 1) -> int:
    """The batch itself (in the child process the trials start and kill)."""
    from fervideo.batch import WorkerSettings, plan_from_paths, run_batch

    settings = WorkerSettings(db_url=db_url, model=MODEL, sample_fps=0, threads=1, chunk_size=CHUNK_SIZE,
                              streams=streams)
    return run_batch(plan_from_paths([folder], "S1"), settings, workers=workers).exit_code


def worker_pids(parent: int) -> list[int]:
    """The batch's worker processes (multiprocessing spawn children of `parent`)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


@dataclass
class Check:
    sessions: int = 0
    rows_expected: int = 0
    rows_found: int = 0
    problems: list[str] = field(default_factory=list)


def check_database(db_url: str, expected: dict[str, int]) -> Check:
    """Exactly one done session per video with its expected frame rows; nothing else left over."""
    from sqlalchemy import func, select

    from fervideo.store import Frame, SessionStatus, VideoSession, open_database

    check = Check(rows_expected=sum(expected.values()))
    with open_database(db_url)() as db:
        sessions = db.scalars(select(VideoSession)).all()
        check.sessions = len(sessions)
        check.rows_found = db.scalar(select(func.count()).select_from(Frame))
        distinct = db.scalar(select(func.count()).select_from(
            select(Frame.session_id, Frame.frame_index).distinct().subquery()))
        orphans = db.scalar(select(func.count()).select_from(Frame).where(
            Frame.session_id.not_in(select(VideoSession.id).where(VideoSession.status == SessionStatus.DONE))))
        per_session = dict(db.execute(select(Frame.session_id, func.count()).group_by(Frame.session_id)).all())
    if distinct != check.rows_found:
        check.problems.append(f"{check.rows_found - distinct} duplicate frame rows")
    if orphans:
        check.problems.append(f"{orphans} frame rows outside done sessions")
    names = sorted(Path(s.video_path).name for s in sessions)
    if names != sorted(expected):
        check.problems.append(f"sessions {names} instead of one per video")
    for session in sessions:
        name = Path(session.video_path).name
        if session.status != SessionStatus.DONE:
            check.problems.append(f"session {session.id} ({name}) is {session.status}")
        elif per_session.get(session.id, 0) != expected.get(name) or session.sampled_frames != expected.get(name):
            check.problems.append(f"session {session.id} ({name}): {per_session.get(session.id, 0)} rows, "
                                  f"expected {expected.get(name)}")
    return check


def trial(folder: Path, db_url: str, workers: int, kills: int, whole_batch: bool, rng: random.Random,
          max_delay_s: float = 25.0, streams: int = 1) -> int:
    """Start the batch, kill `kills` workers (or the whole batch) at random moments, let it end, re-run it
    to completion. Returns the number of processes killed."""
    batch = subprocess.Popen(batch_command(folder, db_url, workers, streams), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = 0
    for _ in range(kills):
        time.sleep(rng.uniform(2.0, max_delay_s / max(1, kills)))
        if batch.poll() is not None:
            break
        if whole_batch:
            workers_alive = len(worker_pids(batch.pid))
            os.killpg(batch.pid, signal.SIGKILL)  # the runner and its workers at once
            killed += 1 + workers_alive
            break
        victims = worker_pids(batch.pid)
        if victims:
            os.kill(rng.choice(victims), signal.SIGKILL)
            killed += 1
    batch.wait(timeout=600)
    rerun = subprocess.run(batch_command(folder, db_url, workers, streams), capture_output=True, text=True, timeout=600)
    if rerun.returncode != 0:
        raise RuntimeError(f"the re-run failed ({rerun.returncode}): {rerun.stderr[-500:]}")
    return killed


def new_database(kind: str, folder: Path, number: int, server=None) -> str:
    if kind == "postgresql":
        return server.new_database()
    return f"sqlite:///{folder / f'trial{number}.sqlite'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streams", type=int, default=1, help="videos each worker runs at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay", type=float, default=15.0, help="latest kill, seconds after the start")
    parser.add_argument("--postgres", action="store_true", help="also run every trial against PostgreSQL")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/fervideo-fault-injection"))
    parser.add_argument("--run-batch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_batch:
        sys.exit(run_batch_here(args.run_batch, args.db, args.workers, args.streams))

    os.environ.setdefault("FERVIDEO_OFFLINE", "1")
    rng = random.Random(args.seed)
    videos = args.folder / "videos"
    expected = make_videos(videos, args.videos)
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    server = None
    if args.postgres:
        from postgres_server import PostgresServer

        server = PostgresServer().start()
    totals = {kind: Check() for kind in kinds}
    kills = dict.fromkeys(kinds, 0)
    try:
        for number in range(args.trials):
            whole = number == 0  # the first trial kills the whole batch, runner included
            for kind in kinds:
                db_url = new_database(kind, args.folder, number, server)
                killed = trial(videos, db_url, args.workers, 1 if whole else rng.choice([1, 2]), whole, rng,
                               args.max_delay, args.streams)
                check = check_database(db_url, expected)
                kills[kind] += killed
                total = totals[kind]
                total.sessions += check.sessions
                total.rows_expected += check.rows_expected
                total.rows_found += check.rows_found
                total.problems += [f"trial {number}: {p}" for p in check.problems]
                print(f"{kind:10} trial {number:2}  killed {killed} ({'whole batch' if whole else 'workers'})  "
                      f"sessions {check.sessions}/{len(expected)}  rows {check.rows_found}/{check.rows_expected}  "
                      f"{'OK' if not check.problems else '; '.join(check.problems)}", flush=True)
    finally:
        if server:
            server.stop()
    print(f"\n{args.workers} workers x {args.streams} streams, {args.videos} videos")
    print("| database | trials | processes killed | sessions (expected) | frame rows found / expected | problems |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        t = totals[kind]
        print(f"| {kind} | {args.trials} | {kills[kind]} | {t.sessions} ({args.trials * len(expected)}) | "
              f"{t.rows_found} / {t.rows_expected} | {len(t.problems)} |")
    sys.exit(1 if any(t.problems for t in totals.values()) else 0)


if __name__ == "__main__":
    main()
