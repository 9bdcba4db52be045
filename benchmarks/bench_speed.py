"""CPU speed table for issue 10: start-up, steady state, the ViT ceiling, peak RSS, quiet vs contended.

    .venv/bin/python benchmarks/bench_speed.py [--seconds 30] [--threads 0] [--workdir DIR] [--no-contended]
                                               [--repeats 3] [--preset medium]

Every run is a fresh process doing what `fervideo process` does (SessionProcessor.process, --fps 5) on a
640x360 or 1280x720 video of the real test face looped:
- start-up: process start (before any import) to the first chunk processed (8 sampled frames: the
  pipeline's short first chunk), i.e. imports, model loading, probing and one chunk;
- steady: sampled frames/s after the first two chunks (8 + 32 frames): while they run the stage pipeline
  fills, and the networks meet their batch shapes for the first time;
- total: process start to the last frame stored (the whole run, for the length of this clip);
- ViT alone: ViT-Tiny forward passes (batch 32, 224x224) on the same threads, in torch and in ONNX Runtime
  (which runs it as the classifier does: fervideo.runtime.OnnxModel, 8-frame calls, its arena on);
  the faster of the two is the classifier's ceiling;
  the ratio steady / ViT-alone says how much of the rest is hidden or cheap (issue 10 asks >= 0.7);
- peak RSS of the process.
With --repeats N every row is run N times, the rows taking turns (so a slow spell of the machine falls on all of
them), and the table shows the medians (peak RSS: the largest); a last table gives the issue's ratios. --preset
chooses libx264's preset of the clips: ultrafast (the default, no B-frames) or e.g. medium (libx264's own
default, B-frames, as most recordings have; decoding is ~2x the work).
"contended" repeats the runs with one other CPU-bound process (a busy loop) running. The ViT-Tiny is a
stand-in with the seed's exact architecture (as in bench_process.py). On a machine shared with other
work, "quiet" means "as found": say so when quoting the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_process import peak_rss_mb  # noqa: E402  (one definition of the peak-RSS reading)

BUSY_LOOP = "while True: pass"


def make_video(folder: Path, seconds: float, width: int, height: int, preset: str = "ultrafast") -> Path:
    import cv2
    import decord
    from synthetic_media import looped_clip_video

    suffix = "" if preset == "ultrafast" else f"_{preset}"  # the first clips' names stay
    path = folder / f"clip_{int(seconds)}s_{width}x{height}{suffix}.mp4"
    if not path.exists():
        frames = decord.VideoReader(str(ROOT / "tests/data/single_face.mp4")).get_batch(range(72)).asnumpy()
        if frames.shape[1:3] != (height, width):
            frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in frames]
        looped_clip_video(path, __import__("numpy").stack(frames), seconds, preset=preset)
    return path


def remuxed_long_video(clip: Path, minutes: float) -> Path:
    """`clip` repeated to `minutes` by re-muxing its packets (seconds, not the hour of encoding it would take);
    the decoder still decodes every frame."""
    import av

    path = clip.with_name(f"{clip.stem}_x{minutes:g}min.mp4")
    if path.exists():
        return path
    with av.open(str(clip)) as source:
        template = source.streams.video[0]
        packets = [p for p in source.demux(template) if p.size]
        step = max(p.pts + p.duration for p in packets) - min(p.pts for p in packets)  # the clip in stream ticks
        repeats = max(1, round(minutes * 60 / float(step * template.time_base)))
        partial = path.with_suffix(".partial.mp4")
        with av.open(str(partial), "w") as out:
            stream = out.add_stream_from_template(template)
            for repeat in range(repeats):
                for packet in packets:
                    packet.pts += step if repeat else 0
                    packet.dts += step if repeat else 0
                    packet.stream = stream
                    out.mux(packet)
    partial.rename(path)
    return path


def process_worker(started_at: float, video: str, model: str, backend: str, threads: str, db: str) -> None:
    """One `process` run in this fresh process; prints start-up, steady rate and peak RSS as JSON."""
    from fervideo.runtime import prefer_passive_waiting

    prefer_passive_waiting()
    from fervideo.pipeline import SessionProcessor

    marks: list[tuple[float, int]] = []
    processor = SessionProcessor(db_url=db, model=model, device="cpu", sample_fps=5, backend=backend,
                                 threads=int(threads))
    result = processor.process(video, "BENCH01", force=True,
                               progress=lambda done, _total: marks.append((time.time(), done)))
    steady_from = marks[1] if len(marks) > 2 else marks[0]  # after the first two chunks (the docstring says why)
    (steady_t, steady_n), (last_t, last_n) = steady_from, marks[-1]
    print(json.dumps({
        "startup_s": marks[0][0] - started_at, "total_s": last_t - started_at, "frames": len(result.frames),
        "steady_fps": (last_n - steady_n) / max(last_t - steady_t, 1e-9),
        "face_rate": float(result.frames["face_found"].mean()),
        "peak_rss_mb": peak_rss_mb(),
        "backend": processor.classifier.backend, "detector_backend": processor.faces.detector.backend,
        "torch_imported": "torch" in sys.modules,
    }))


def vit_worker(threads: str, seconds: str) -> None:
    """ViT-Tiny forward passes alone on the same threads, in torch and in ONNX Runtime: the faster one's
    frames/s is the classifier's ceiling (the pipeline runs the ViT in ONNX Runtime on the CPU)."""
    from fervideo.runtime import apply_thread_policy, prefer_passive_waiting

    prefer_passive_waiting()
    import tempfile

    import torch

    from fervideo.emotion import ViTTinyFER
    from fervideo.emotion.classifier import export_classifier_onnx
    from fervideo.emotion.config import SEED_VIT_CONFIG
    from fervideo.runtime import load_onnx_model

    apply_thread_policy(int(threads))
    model = ViTTinyFER().eval()
    batch = torch.randn(32, 3, 224, 224)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["FERVIDEO_HOME"] = folder
        onnx = load_onnx_model("bench-vit", "standin", lambda out: export_classifier_onnx(model, SEED_VIT_CONFIG, out),
                               int(threads) or None)
        runs = {"torch": lambda: model(batch), "onnx": lambda: onnx.run(batch.numpy())}
        rates = {}
        with torch.inference_mode():
            for name, forward in runs.items():
                forward()
                done, started = 0, time.perf_counter()
                while time.perf_counter() - started < float(seconds):
                    forward()
                    done += len(batch)
                rates[name] = done / (time.perf_counter() - started)
    print(json.dumps({"fps": max(rates.values()), **{f"fps_{k}": v for k, v in rates.items()}}))


def run_json(args: list[str]) -> dict:
    command = [sys.executable, __file__, *args]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_process(video: Path, model: str, backend: str, threads: int, folder: Path) -> dict:
    db = f"sqlite:///{folder / 'bench_speed.sqlite'}"
    return run_json(["--process-worker", repr(time.time()), str(video), model, backend, str(threads), db])


def median_run(results: list[dict]) -> dict:
    """The medians of `results` (one row's runs); peak RSS the largest, the rest from the first run."""
    middle = {key: statistics.median(r[key] for r in results) for key in ("startup_s", "steady_fps", "total_s")}
    return {**results[0], **middle, "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "runs": len(results)}


def measure(videos: dict[str, Path], vit: str, threads: int, folder: Path, label: str,
            repeats: int = 1) -> list[tuple]:
    alone = run_json(["--vit-worker", str(threads), "10"])
    vit_alone = alone["fps"]
    print(f"{label}: ViT-Tiny alone, batch 32: torch {alone['fps_torch']:.1f} f/s, "
          f"ONNX Runtime {alone['fps_onnx']:.1f} f/s", flush=True)
    planned = []
    for size, video in videos.items():
        runs = (("ViT-Tiny", vit, "auto"), ("ViT-Tiny, torch only", vit, "torch"),
                ("mini-Xception", "mini-xception-fer2013", "auto"),
                ("mini-Xception, torch only", "mini-xception-fer2013", "torch"))
        planned += [(size, video, *run) for run in runs if run[2] != "torch" or size == "640x360"]
    results: dict[tuple, list[dict]] = {}
    for _ in range(repeats):  # the rows take turns
        for size, video, name, model, backend in planned:
            results.setdefault((size, name), []).append(run_process(video, model, backend, threads, folder))
    return [(label, size, name, median_run(results[size, name]), vit_alone if name.startswith("ViT") else None)
            for size, _video, name, _model, _backend in planned]


def target_ratios(rows: list[tuple]) -> None:
    """The issue's ratios from the table: 1280x720 / 640x360, and how much slower beside a busy process."""
    steady = {(condition, size, name): r["steady_fps"] for condition, size, name, r, _ in rows}
    print(f"\n{'classifier':<14} {'condition / size':<16} {'ratio':>6}")
    for name in ("ViT-Tiny", "mini-Xception"):
        for condition in dict.fromkeys(c for c, _, _ in steady):
            ratio = steady[condition, "1280x720", name] / steady[condition, "640x360", name]
            print(f"{name:<14} {condition:<16} {ratio:>6.2f}  1280x720 / 640x360 steady (issue: >= 0.85)")
        for size in ("640x360", "1280x720"):
            quiet, busy = steady.get(("as found", size, name)), steady.get(("+1 busy proc", size, name))
            if quiet and busy:
                print(f"{name:<14} {size:<16} {quiet / busy:>5.2f}x  slower beside a busy process (issue: <= 1.5x)")


def startup_table(video: Path, repeats: int, threads: int, folder: Path) -> None:
    """Start-up of the baseline, ONNX (its exports cached by a first run, not counted) and torch."""
    run_process(video, "mini-xception-fer2013", "onnx", threads, folder)  # warms the ONNX cache
    print(f"\nstart-up (process start to the first chunk), {repeats} runs each, {os.cpu_count()} cores")
    print(f"{'backend':<12} {'start-up s (each run)':<32} {'torch imported':>14} {'peak RSS MB':>11}")
    for backend in ("onnx", "torch"):
        results = [run_process(video, "mini-xception-fer2013", backend, threads, folder) for _ in range(repeats)]
        times = " ".join(f"{r['startup_s']:.2f}" for r in results)
        label = f"{results[0]['detector_backend']}/{results[0]['backend']}"
        print(f"{label:<12} {times:<32} {str(results[0]['torch_imported']):>14} "
              f"{max(r['peak_rss_mb'] for r in results):>11.0f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {load:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30, help="video length (default 30)")
    parser.add_argument("--threads", type=int, default=0, help="--threads for every run (0 = all cores)")
    parser.add_argument("--workdir", default=None, help="keep generated videos here between runs")
    parser.add_argument("--no-contended", action="store_true", help="skip the runs beside a busy process")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each row, taking turns; medians shown")
    parser.add_argument("--preset", default="ultrafast", help="libx264 preset of the clips (default ultrafast)")
    parser.add_argument("--startup", type=int, default=0, metavar="N",
                        help="only start-up: N runs each of the baseline on onnx and on torch (640x360)")
    parser.add_argument("--rss-minutes", type=float, default=0, metavar="M",
                        help="only peak RSS: one run each of the ViT-Tiny and the baseline on an M-minute 1280x720 "
                             "video (the 60-s clip re-muxed)")
    parser.add_argument("--process-worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--vit-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.process_worker:
        process_worker(float(args.process_worker[0]), *args.process_worker[1:])
        return
    if args.vit_worker:
        vit_worker(*args.vit_worker)
        return

    from bench_process import make_vit_checkpoint

    folder = Path(args.workdir or tempfile.mkdtemp(prefix="fervideo-speed-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.startup:
        startup_table(make_video(folder, args.seconds, 640, 360), args.startup, args.threads, folder)
        return
    vit = str(make_vit_checkpoint(folder))
    if args.rss_minutes:
        long_video = remuxed_long_video(make_video(folder, 60, 1280, 720), args.rss_minutes)
        print(f"peak RSS, {args.rss_minutes:g}-min 1280x720 video, --fps 5, --threads {args.threads}")
        for name, model in (("ViT-Tiny", vit), ("mini-Xception", "mini-xception-fer2013")):
            r = run_process(long_video, model, "auto", args.threads, folder)
            print(f"{name:<14} {r['frames']:>7} sampled frames  steady {r['steady_fps']:6.1f} f/s  "
                  f"peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
        return
    videos = {f"{w}x{h}": make_video(folder, args.seconds, w, h, args.preset) for w, h in ((640, 360), (1280, 720))}
    rows = measure(videos, vit, args.threads, folder, "as found", args.repeats)
    if not args.no_contended:
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        try:
            rows += measure(videos, vit, args.threads, folder, "+1 busy proc", args.repeats)
        finally:
            busy.terminate()
            busy.wait()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nfervideo process, --fps 5, {args.seconds:g}-s real-face clip (libx264 {args.preset}), --threads "
          f"{args.threads} (0 = all), {os.cpu_count()} cores, median of {args.repeats} run(s) per row, load average "
          f"at the end {load:.1f}\n")
    header = (f"{'condition':<13} {'size':<9} {'classifier':<26} {'backend':<12} {'start-up s':>10} "
              f"{'steady f/s':>10} {'total s':>7} {'ViT alone':>9} {'ratio':>6} {'faces %':>7} {'peak RSS MB':>11}")
    print(header)
    print("-" * len(header))
    for condition, size, name, r, vit_alone in rows:
        backend = f"{r['detector_backend']}/{r['backend']}"
        ceiling = f"{vit_alone:9.1f}" if vit_alone else f"{'':>9}"
        ratio = f"{r['steady_fps'] / vit_alone:6.2f}" if vit_alone else f"{'':>6}"
        print(f"{condition:<13} {size:<9} {name:<26} {backend:<12} {r['startup_s']:>10.2f} "
              f"{r['steady_fps']:>10.1f} {r['total_s']:>7.2f} {ceiling} {ratio} {100 * r['face_rate']:>7.1f} "
              f"{r['peak_rss_mb']:>11.0f}")
    print("\nbackend: detector/classifier. ratio: steady / ViT alone (the classifier's ceiling on these threads).")
    target_ratios(rows)


if __name__ == "__main__":
    main()
