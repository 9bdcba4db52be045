"""Batch throughput with 1 and 2 local worker processes (and Ray): frames/s over a batch of face videos.

    .venv/bin/python benchmarks/bench_workers.py [--videos 4] [--seconds 20] [--model mini-xception-fer2013]
                                                 [--workers 1 2] [--streams 1 2] [--ray]

Each worker gets cores / workers torch threads (the default policy). The videos are the real one-face
clip in tests/data looped to --seconds; sampling at 5 fps. Wall time includes starting the workers and
loading the networks once per worker, as a user would see it. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def face_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    import av
    import numpy as np
    from synthetic_media import looped_clip_video

    with av.open(str(ROOT / "tests" / "data" / "single_face.mp4")) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    # Each a little longer than the last: identical files would be one video to fervideo (same sha256),
    # processed once while the other workers wait on its lease.
    return [looped_clip_video(folder / f"face{i}.mp4", frames, seconds + 0.4 * i) for i in range(count)]


def measure(videos: list[Path], folder: Path, model: str, workers: int, use_ray: bool, streams: int = 1) -> dict:
    from fervideo.batch import WorkerSettings, plan_from_paths, run_batch
    from fervideo.batch.runner import threads_per_worker

    db_url = f"sqlite:///{folder / f'bench_{workers}_{streams}_{use_ray}.sqlite'}"
    settings = WorkerSettings(db_url=db_url, model=model, sample_fps=5.0)
    started = time.perf_counter()
    result = run_batch(plan_from_paths(videos, "BENCH"), settings, workers=workers, use_ray=use_ray,
                       streams=streams)
    wall = time.perf_counter() - started
    frames = sum(o.sampled_frames for o in result.outcomes if o is not None)
    return {"mode": "ray" if use_ray else "local", "workers": workers, "streams": streams,
            "threads": threads_per_worker(workers),
            "videos": len(videos), "frames": frames, "wall_s": wall, "fps": frames / wall,
            "failed": result.count("failed"), "statuses": [o.status if o else None for o in result.outcomes]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", default="mini-xception-fer2013")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--streams", type=int, nargs="+", default=[1], help="videos per worker at once")
    parser.add_argument("--ray", action="store_true", help="also run through Ray (local cluster) with each count")
    args = parser.parse_args()
    import av  # noqa: F401  PyAV before decord (see tests/conftest.py)

    from fervideo.runtime import available_cores

    with tempfile.TemporaryDirectory(prefix="fervideo-bench-workers-") as tmp:
        folder = Path(tmp)
        videos = face_videos(folder, args.videos, args.seconds)
        rows = []
        for use_ray in [False] + ([True] if args.ray else []):
            for workers in args.workers:
                for streams in args.streams:
                    rows.append(measure(videos, folder, args.model, workers, use_ray, streams))
                print(rows[-1], file=sys.stderr, flush=True)
    print(f"\n{available_cores()} cores visible; model {args.model}; "
          f"{args.videos} videos x {args.seconds:g} s at 5 fps\n")
    print("| mode | workers | streams/worker | threads/worker | videos | frames | wall s | frames/s | failed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['workers']} | {r['streams']} | {r['threads']} | {r['videos']} | {r['frames']} | "
              f"{r['wall_s']:.1f} | {r['fps']:.1f} | {r['failed']} |")


if __name__ == "__main__":
    main()
