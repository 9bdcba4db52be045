"""Decoding alone: sampled frames/s of one video with one decoder, with FFmpeg's frame threads, and with
several decoders over key-frame runs (fervideo/video_parallel.py, the GPU path's decoding); prints a table.

    .venv/bin/python benchmarks/bench_decode.py [--workdir DIR] [--threads 2 4] [--repeats 2] [VIDEO ...]

Default videos: the 60-s 1280x720 real-face clip of bench_speed.py (libx264 ultrafast: no B-frames, a key
frame every 250 frames) and the same clip at libx264's default preset (medium: B-frames, as most encoders write;
`--presets` to choose). Each row decodes the whole video as VideoStream's PyAV path does (only the sampled frames
converted to RGB; not stacked into chunks) at --fps 5 and at every frame; the best of --repeats runs. The first
row decodes every frame; the others skip the H.264 non-reference frames that are not sampled (the default since
the ninth speed pass; the same frames), which only a file with such frames (B-frames) gains from.
Nothing else runs: on a machine whose cores the networks share (the CPU path), more decoders are no gain, and
`fervideo process` uses one there (fervideo.runtime.decode_threads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_speed import make_video  # noqa: E402  (the same looped real-face clip as the speed table)

from fervideo.video import VideoStream  # noqa: E402
from fervideo.video_parallel import decode_sampled_parallel  # noqa: E402
from fervideo.video_pyav import decode_sampled  # noqa: E402


def frames_per_second(video: Path, fps: float, mode: str, threads: int, skip: bool = True) -> float:
    """Sampled frames/s decoding (and converting to RGB) the whole video: mode 'decoders' (`threads` decoders
    over key-frame runs) or 'ffmpeg-threads' (one decoder with `threads` FFmpeg frame threads). The index is
    read first and not timed: it is the same for every mode."""
    stream = VideoStream(video, sample_fps=fps)
    plan = (video, stream.start_times, stream.sampled_indices)
    started = time.perf_counter()
    if mode == "decoders":
        frames = decode_sampled_parallel(*plan, stream.key_indices, None, threads, stream.chunk_size,
                                         stream.decode_ahead_frames, skip)
    else:
        frames = decode_sampled(*plan, None, threads, skip)
    done = sum(1 for _ in frames)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--workdir", default="/tmp/fervideo-bench", help="where the default clip is kept")
    parser.add_argument("--threads", type=int, nargs="*", default=[2], help="decoders / FFmpeg threads to try")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--presets", nargs="*", default=["ultrafast", "medium"],
                        help="libx264 presets of the default clips")
    args = parser.parse_args()
    folder = Path(args.workdir)
    folder.mkdir(parents=True, exist_ok=True)
    videos = args.videos or [make_video(folder, 60, 1280, 720, preset) for preset in args.presets]
    print(f"decoding alone, best of {args.repeats}, {os.cpu_count()} cores")
    header = f"{'video':<34} {'--fps':>5} {'decoding':<34} {'sampled f/s':>11} {'vs first':>8}"
    print(header)
    print("-" * len(header))
    for video in videos:
        for fps in (5.0, 0.0):
            rows = [("one decoder, every frame decoded", "decoders", 1, False), ("one decoder", "decoders", 1, True)]
            for n in args.threads:
                rows += [(f"1 decoder, {n} FFmpeg threads", "ffmpeg-threads", n, True),
                         (f"{n} decoders", "decoders", n, True)]
            baseline = None
            for label, mode, threads, skip in rows:
                rate = max(frames_per_second(video, fps, mode, threads, skip) for _ in range(args.repeats))
                baseline = baseline or rate
                print(f"{video.name[:34]:<34} {fps:>5g} {label:<34} {rate:>11.1f} {rate / baseline:>7.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
