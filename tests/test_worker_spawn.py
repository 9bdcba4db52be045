"""Spawned workers do not re-run the parent's main script: multiprocessing's spawn runs a script `__main__`
again in every child (for `fervideo process`, the console script, i.e. the whole CLI: ~0.2 s of each
worker's start-up, issue 10), which fervideo's workers never need (their target is worker_main)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

SCRIPT = """
import sys
from pathlib import Path

with open({log!r}, "a") as log:  # top level: runs in every process that executes this script
    log.write("ran\\n")

if __name__ == "__main__":
    from fervideo.batch.local import LocalPool
    from fervideo.batch.work import WorkerSettings

    pool = LocalPool(WorkerSettings(db_url={db!r}, model="no-such-model", device="cpu"), workers=1)
    pool.start()
    events = []
    while not events:
        events = pool.events(timeout=60)
    print(events[0][1][0])  # the worker got past its start: it answered
    pool.close()
    assert sys.modules["__main__"].__spec__ is None  # the parent's __main__ is left as it was
"""


def test_a_spawned_worker_does_not_run_the_parents_main_script_again(tmp_path: Path):
    log = tmp_path / "ran.log"
    script = tmp_path / "launch.py"
    script.write_text(SCRIPT.format(log=str(log), db=f"sqlite:///{tmp_path / 'db.sqlite'}"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["startup_failed"]
    assert log.read_text().splitlines() == ["ran"]  # the parent only


def test_a_worker_spawned_early_opens_nothing_until_started(tmp_path: Path):
    """spawn_workers_early (issue 10, `fervideo process` start-up): the worker imports its modules while the
    caller checks its inputs, but it creates no database and loads no network before `start`."""
    from fervideo.batch.runner import spawn_workers_early
    from fervideo.batch.work import WorkerSettings

    db = tmp_path / "not-yet.sqlite"
    pool = spawn_workers_early(WorkerSettings(db_url=f"sqlite:///{db}", model="mini-xception-fer2013",
                                              device="cpu"), workers=1)
    try:
        (worker,) = pool.workers
        time.sleep(3)  # long past its imports: a worker that did not wait would have created the database
        assert worker.process.is_alive() and not worker.ready and not db.exists()
        assert pool.events(timeout=0.1) == []  # nothing said yet: no "ready", no "startup_failed"
    finally:
        pool.discard()
    assert pool.workers == [] and not worker.process.is_alive() and not db.exists()


def test_a_failed_check_leaves_no_worker_behind(tmp_path: Path):
    """The CLI spawns its worker before checking the database and the file; after a failed check no process
    of the command is left. A guard on the outcome: `discard` ends the worker at once (the test above), and
    a daemonic worker would also be ended at the parent's exit, so this fails only if both stop working."""
    marker = f"fervideo-test-{uuid.uuid4()}"
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video\n")
    env = {**os.environ, "FERVIDEO_TEST_MARKER": marker}
    done = subprocess.run([sys.executable, "-m", "fervideo.cli", "process", str(not_a_video), "--subject", "S1",
                           "--db", f"sqlite:///{tmp_path / 'db.sqlite'}"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "cannot be decoded as a video" in done.stderr
    time.sleep(0.5)
    assert not [pid for pid in _pids_with(marker) if pid != os.getpid()]


def _pids_with(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (inherited by every child of the command)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_no_early_worker_where_counting_workers_would_import_torch(monkeypatch):
    """With --device auto on a machine with an NVIDIA driver, the worker count needs torch (~2 s): no early
    spawn then, so a bad file still fails before torch loads."""
    from fervideo.batch import runner
    from fervideo.batch.work import WorkerSettings

    monkeypatch.setattr("fervideo.runtime.cuda_driver_present", lambda: True)
    imported = []
    monkeypatch.setattr(runner, "default_workers", lambda device: imported.append(device) or 1)
    assert runner.spawn_workers_early(WorkerSettings(db_url="sqlite://", device="auto")) is None
    assert imported == []  # decided without counting the workers
