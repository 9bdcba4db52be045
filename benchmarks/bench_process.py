"""End-to-end processing speed and peak memory; prints a table.

    .venv/bin/python benchmarks/bench_process.py [--seconds 30] [--rss-lengths 60 600] [--device cpu]

Speed: sampled frames per second for a 640x360 clip at --fps 5, with the ViT-Tiny (a stand-in
checkpoint with the seed's exact architecture, so the compute is the real one) and with the bundled
mini-Xception baseline. Memory: peak RSS of a whole `process` run on a 1-minute and a 10-minute
video, each in a fresh process (flat memory means the two are about equal). The videos are the real
640x360 face clip looped, so every frame holds a real face.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a worker
    started by a parent that holds a big heap would report the parent's peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_video(folder: Path, seconds: float) -> Path:
    import decord
    from synthetic_media import looped_clip_video

    path = folder / f"clip_{int(seconds)}s.mp4"
    if not path.exists():
        frames = decord.VideoReader(str(ROOT / "tests/data/single_face.mp4")).get_batch(range(72)).asnumpy()
        looped_clip_video(path, frames, seconds)
    return path


def make_vit_checkpoint(folder: Path) -> Path:
    import torch

    from fervideo.emotion import ViTTinyFER

    path = folder / "vit_tiny_standin.pth"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(ViTTinyFER().state_dict(), path)
    return path


def worker(video: str, model: str, device: str, db: str) -> None:
    """Process one video in this process and print timings + peak RSS as JSON."""
    from fervideo.pipeline import SessionProcessor

    processor = SessionProcessor(db_url=db, model=model, device=device, sample_fps=5)
    processor.classifier.predict(np.zeros((2, 224, 224, 3), np.uint8))  # warm-up outside the timing
    started = time.perf_counter()
    result = processor.process(video, "bench", force=True)
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "frames": len(result.frames), "seconds": elapsed, "fps": len(result.frames) / elapsed,
        "face_rate": float(result.frames["face_found"].mean()), "peak_rss_mb": peak_rss_mb(),
        **{k: v for k, v in result.timings.items()},
    }))


def run_worker(video: Path, model: str, device: str, folder: Path) -> dict:
    db = f"sqlite:///{folder / 'bench.sqlite'}"
    command = [sys.executable, __file__, "--worker", str(video), model, device, db]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.stderr[-2000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="length of the speed-test video")
    parser.add_argument("--rss-lengths", type=float, nargs="*", default=[60, 600])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", default=None, help="keep generated videos here between runs")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    import torch

    folder = Path(args.workdir or tempfile.mkdtemp(prefix="fervideo-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    vit = str(make_vit_checkpoint(folder))
    rows = []
    speed_video = make_video(folder, args.seconds)
    for label, model in (("ViT-Tiny (seed architecture)", vit), ("mini-Xception baseline", "mini-xception-fer2013")):
        result = run_worker(speed_video, model, args.device, folder)
        rows.append((f"speed, {args.seconds:.0f} s clip", label, result))
    for seconds in args.rss_lengths:
        result = run_worker(make_video(folder, seconds), vit, args.device, folder)
        rows.append((f"memory, {seconds / 60:.0f} min clip", "ViT-Tiny (seed architecture)", result))

    print(f"\nfervideo process, 640x360 real-face clip, --fps 5, device={args.device}, "
          f"torch threads={torch.get_num_threads()}, cores={__import__('os').cpu_count()}\n")
    header = f"{'run':<22} {'model':<30} {'frames':>6} {'frames/s':>9} {'faces %':>8} {'faces s':>8} " \
             f"{'emotion s':>9} {'store s':>8} {'peak RSS MB':>11}"
    print(header)
    print("-" * len(header))
    for run, model, r in rows:
        print(f"{run:<22} {model:<30} {r['frames']:>6} {r['fps']:>9.1f} {100 * r['face_rate']:>8.1f} "
              f"{r['faces_s']:>8.1f} {r['emotion_s']:>9.1f} {r['store_s']:>8.2f} {r['peak_rss_mb']:>11.0f}")


if __name__ == "__main__":
    main()
