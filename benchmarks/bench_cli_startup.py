"""Start-up of the real command: `fervideo process` from exec to its first frame stored, and to its exit.

    .venv/bin/python benchmarks/bench_cli_startup.py [--runs 3] [--seconds 60] [--workdir DIR] [--model M ...]

bench_speed.py measures start-up inside one process (SessionProcessor); the command also imports its CLI,
checks the database and the file, and spawns a worker process that imports and loads the networks before
its first chunk. Each run here is the console script in a fresh process on a fresh SQLite file (the
bundled baseline and the ViT-Tiny stand-in; their ONNX exports warmed by one uncounted run). While it
runs, this script polls /proc for the spawned worker and the database for the first stored frame (every
10 ms, read-only): "worker" = exec to the worker process existing, "first frame" = exec to the first
chunk's rows committed (the first chunk holds 8 sampled frames), "exit" = exec to the command's exit.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from bench_process import make_vit_checkpoint  # noqa: E402
from bench_speed import make_video  # noqa: E402

FERVIDEO = Path(sys.executable).with_name("fervideo")


def _worker_spawned() -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def _frames_stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as connection:
            return connection.execute("select count(*) from frames").fetchone()[0]
    except sqlite3.Error:  # not created yet, or its schema still being written
        return 0


def one_run(video: Path, model: str, folder: Path) -> tuple[float | None, float | None, float, int]:
    db = folder / "cli_startup.sqlite"
    db.unlink(missing_ok=True)
    started = time.monotonic()
    command = subprocess.Popen([str(FERVIDEO), "process", str(video), "--subject", "BENCH01", "--model", model,
                                "--db", f"sqlite:///{db}", "--force"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = first = None
    while command.poll() is None:
        time.sleep(0.01)
        worker = worker or (_worker_spawned() and time.monotonic() - started) or None
        if first is None and _frames_stored(db):
            first = time.monotonic() - started
    return worker, first, time.monotonic() - started, command.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60, help="clip length (default 60)")
    parser.add_argument("--workdir", default=None, help="keep generated videos here between runs")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="fervideo-cli-startup-"))
    folder.mkdir(parents=True, exist_ok=True)
    video = make_video(folder, args.seconds, 640, 360)
    models = {"mini-Xception": "mini-xception-fer2013", "ViT-Tiny": str(make_vit_checkpoint(folder))}
    print(f"`fervideo process`, {args.seconds:g}-s 640x360 clip, --fps 5, {os.cpu_count()} cores, "
          f"{args.runs} runs each (seconds from exec)")
    print(f"{'classifier':<14} {'worker':>18} {'first frame':>20} {'exit':>20} {'rc':>4}")
    for name, model in models.items():
        one_run(video, model, folder)  # warms the ONNX exports (the first run on a machine pays them)
        runs = [one_run(video, model, folder) for _ in range(args.runs)]
        columns = []
        for values in zip(*(run[:3] for run in runs), strict=True):
            known = [v for v in values if v is not None]
            columns.append(" ".join(f"{v:.2f}" for v in known) if known else "-")
        codes = sorted({run[3] for run in runs})
        print(f"{name:<14} {columns[0]:>18} {columns[1]:>20} {columns[2]:>20} {','.join(map(str, codes)):>4}")
        firsts = [run[1] for run in runs if run[1] is not None]
        if firsts:
            print(f"{'':<14} median first frame {statistics.median(firsts):.2f} s")


if __name__ == "__main__":
    main()
