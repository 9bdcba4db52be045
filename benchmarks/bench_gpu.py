"""GPU benchmark: sampled frames/s, GPU utilisation and where the time goes, on a synthetic 1280x720 session.

    python benchmarks/bench_gpu.py --minutes 60          # the target case: a 1-hour 30-fps session
    python benchmarks/bench_gpu.py --quick               # a 2-minute session, small budgets (smoke test)
    python benchmarks/bench_gpu.py --quick --device cpu --width 320 --height 180   # runs anywhere

Needs only the repository (it puts itself on sys.path) and fervideo's dependencies; no test files beyond
tests/data/single_face.mp4 (a real face, upscaled, so that every frame holds one). Stages, each under a
time budget (--budget-s; a stage cut short is extrapolated from what it did, and says so):

1. agreement: the GPU path (fp16 detector, bf16 classifier, GPU resize) against the CPU fp32 path.
2. inference: decode-free. Frames from memory through detect -> align -> classify, in batches, at 5 fps
   sampling (18,000 frames for 60 min) and at every frame (108,000): frames/s and the split of the time.
3. decode: the video file (1 hour of H.264 made in seconds by re-muxing a 2-s encoded segment, when PyAV
   is installed; else a short mp4v clip) decoded by fervideo.video.VideoStream at 5 fps and every frame.
4. end to end: SessionProcessor.process on that file (decode thread, GPU stages, SQLite writes).
The classifier is the ViT-Tiny with the seed's exact architecture and random weights (the compute is the
real one; the numbers are not used). GPU utilisation is sampled every 200 ms with nvidia-smi (or
torch.cuda.utilization) in a thread.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIP = ROOT / "tests" / "data" / "single_face.mp4"


class BudgetExceeded(Exception):
    """Raised from a progress callback to stop a stage at its time budget."""


class GpuSampler:
    """Mean and peak GPU utilisation (%) while the `with` block runs; None where it cannot be read."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._nvidia_smi = shutil.which("nvidia-smi")

    def _read(self) -> float | None:
        if self._nvidia_smi:
            out = subprocess.run([self._nvidia_smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", "0"], capture_output=True, text=True, timeout=5).stdout.strip()
            return float(out.splitlines()[0]) if out else None
        import torch

        return float(torch.cuda.utilization())

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                value = self._read()
            except Exception:  # a sampler must never break the benchmark; no figure is reported instead
                return
            if value is not None:
                self.samples.append(value)

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return f"{np.mean(self.samples):.0f}% (peak {max(self.samples):.0f}%)"


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def face_frames(width: int, height: int, count: int = 64) -> np.ndarray:
    """`count` real-face frames at width x height (the 640x360 test clip, resized): uint8 [count, H, W, 3]."""
    import cv2

    capture = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < count:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_LINEAR))
    capture.release()
    if not frames:
        raise SystemExit(f"cannot read {CLIP}")
    return np.stack(frames)


def load_stages(device: str, batch: int, backend: str | None):
    import torch

    from fervideo.emotion.classifier import EmotionClassifier
    from fervideo.emotion.config import SEED_VIT_CONFIG
    from fervideo.emotion.vit import ViTTinyFER
    from fervideo.faces import FaceAnalyzer

    torch.manual_seed(0)
    classifier = EmotionClassifier(ViTTinyFER(), SEED_VIT_CONFIG, name="vit-tiny-standin", weights_sha256="0" * 64,
                                   source="benchmark stand-in", device=torch.device(device), batch_size=batch,
                                   backend=backend)
    return FaceAnalyzer(device=device, backend=backend), classifier


class StageTimer:
    """Wraps an object's method so each call's wall time (GPU work included) is added to `seconds`."""

    def __init__(self, owner, method: str, device: str) -> None:
        self.seconds = 0.0
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            result = original(*args, **kwargs)
            synchronize(device)
            self.seconds += time.perf_counter() - started
            return result

        setattr(owner, method, timed)


def check_agreement(frames: np.ndarray, device: str, batch: int) -> str:
    """GPU path vs CPU fp32 path on the same frames: box difference, found and top-1 agreement."""
    gpu_faces, gpu_classifier = load_stages(device, batch, "torch")
    cpu_faces, cpu_classifier = load_stages("cpu", batch, "torch")
    sample = frames[:16]
    gpu_batch, cpu_batch = gpu_faces.analyze(sample), cpu_faces.analyze(sample)
    both = gpu_batch.found & cpu_batch.found
    box_diff = float(np.abs(gpu_batch.boxes[both] - cpu_batch.boxes[both]).max()) if both.any() else float("nan")
    crops = cpu_batch.crops
    gpu_probs, cpu_probs = gpu_classifier.predict(crops), cpu_classifier.predict(crops)
    return (f"found agree {np.mean(gpu_batch.found == cpu_batch.found):.0%}, max box diff {box_diff:.2f} px, "
            f"max prob diff {np.abs(gpu_probs - cpu_probs).max():.4f}, "
            f"top-1 agree {np.mean(gpu_probs.argmax(1) == cpu_probs.argmax(1)):.0%} (16 frames)")


def bench_inference(frames: np.ndarray, total: int, device: str, batch: int, budget_s: float, backend) -> dict:
    """Decode-free: `total` frames cycled from memory through faces + classifier in batches of `batch`."""
    faces, classifier = load_stages(device, batch, backend)
    faces.analyze(frames[:batch]), classifier.predict(faces.analyze(frames[:2]).crops)  # warm-up
    synchronize(device)
    detect = StageTimer(faces.detector, "detect", device)
    classify = StageTimer(classifier, "predict", device)
    # One batch built once and reused: decoding is measured on its own, so no per-batch copying here.
    chunk = frames[np.arange(batch) % len(frames)]
    done, started = 0, time.perf_counter()
    with GpuSampler(device.startswith("cuda")) as gpu:
        while done < total and time.perf_counter() - started < budget_s:
            size = min(batch, total - done)
            classifier.predict(faces.analyze(chunk[:size]).crops)
            done += size
        synchronize(device)
    elapsed = time.perf_counter() - started
    return {"frames": done, "total": total, "seconds": elapsed, "gpu": gpu.summary(),
            "detect_s": detect.seconds, "classify_s": classify.seconds,
            "align_s": elapsed - detect.seconds - classify.seconds}


def make_video(folder: Path, frames: np.ndarray, minutes: float, b_frames: int = 0) -> tuple[Path, str]:
    """A `minutes`-long 30-fps H.264 video, made by re-muxing one encoded 2-s segment (PyAV); else mp4v.
    `b_frames` > 0: B-frames, as most recordings have (decoding skips the non-reference ones not sampled)."""
    try:
        import av
    except ImportError:
        return make_short_video(folder, frames), "mp4v, 10 s (PyAV not installed; figures extrapolated)"
    segment_path = folder / "segment.mp4"
    with av.open(str(segment_path), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": "35", "preset": "ultrafast" if not b_frames
                                                              else "veryfast", "g": "60", "bf": str(b_frames)})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i in range(60):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")))
        out.mux(stream.encode())
    with av.open(str(segment_path)) as source:
        packets = [p for p in source.demux(source.streams.video[0]) if p.size]
        template = source.streams.video[0]
        time_base = template.time_base
        path = folder / f"session_{minutes:g}min.mp4"
        step = round(2 / time_base)  # one segment = 2 s in stream ticks
        with av.open(str(path), "w") as out:
            stream = out.add_stream_from_template(template)
            for repeat in range(max(1, round(minutes * 30))):
                for packet in packets:
                    packet.pts += step if repeat else 0
                    packet.dts += step if repeat else 0
                    packet.stream = stream
                    out.mux(packet)
    return path, f"H.264 1280x720-class, {minutes:g} min, {b_frames} B-frames, re-muxed"


def make_short_video(folder: Path, frames: np.ndarray, seconds: int = 10) -> Path:
    import cv2

    path = folder / "short.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (frames.shape[2], frames.shape[1]))
    for i in range(seconds * 30):
        writer.write(cv2.cvtColor(frames[i % len(frames)], cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def bench_decode(video: Path, sample_fps: float, batch: int, budget_s: float, device: str) -> dict:
    from fervideo.runtime import decode_threads
    from fervideo.video import VideoStream

    started, threads = time.perf_counter(), decode_threads(device)
    stream = VideoStream(video, sample_fps, batch, decode_threads=threads)
    open_s = time.perf_counter() - started
    done, started = 0, time.perf_counter()
    for chunk in stream:
        done += len(chunk)
        if time.perf_counter() - started > budget_s:
            break
    return {"frames": done, "total": len(stream), "seconds": time.perf_counter() - started, "open_s": open_s,
            "threads": threads}


def bench_end_to_end(video: Path, frames: np.ndarray, sample_fps: float, device: str, batch: int,
                     budget_s: float, folder: Path, backend) -> dict:
    from fervideo.pipeline import SessionProcessor

    faces, classifier = load_stages(device, batch, backend)
    classifier.predict(faces.analyze(frames[:batch]).crops)  # warm-up
    processor = SessionProcessor(db_url=f"sqlite:///{folder / f'bench_{sample_fps:g}.sqlite'}", classifier=classifier,
                                 face_analyzer=faces, sample_fps=sample_fps, chunk_size=batch)
    analyze = StageTimer(faces, "analyze", device)
    classify = StageTimer(classifier, "predict", device)
    progress = {"done": 0, "total": 0}
    started = time.perf_counter()

    def on_progress(done: int, total: int) -> None:
        progress.update(done=done, total=total)
        if time.perf_counter() - started > budget_s:
            raise BudgetExceeded

    with GpuSampler(device.startswith("cuda")) as gpu, contextlib.suppress(BudgetExceeded):
        processor.process(video, "BENCH01", force=True, progress=on_progress)
    elapsed = time.perf_counter() - started
    return {"frames": progress["done"], "total": progress["total"], "seconds": elapsed, "gpu": gpu.summary(),
            "faces_s": analyze.seconds, "classify_s": classify.seconds,
            "rest_s": elapsed - analyze.seconds - classify.seconds}


def rate_line(result: dict) -> str:
    fps = result["frames"] / max(result["seconds"], 1e-9)
    note = "" if result["frames"] >= result["total"] else \
        f" (stopped at budget after {result['frames']} of {result['total']}; full run ~{result['total'] / fps:.0f} s)"
    return f"{fps:9.0f} frames/s, {result['seconds']:6.1f} s{note}"


def share(part: float, whole: float) -> str:
    return f"{100 * part / max(whole, 1e-9):.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60, help="session length (default 60)")
    parser.add_argument("--quick", action="store_true", help="2-minute session, 20-s budgets: a smoke test")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--backend", default=None, help="auto, torch or onnx (CPU only)")
    parser.add_argument("--batch", type=int, default=256, help="frames per GPU batch (chunk size)")
    parser.add_argument("--budget-s", type=float, default=60, help="time budget per measurement (default 60)")
    parser.add_argument("--b-frames", type=int, default=0, help="B-frames in the video (default 0; e.g. 3)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--skip", nargs="*", default=[], choices=["agreement", "inference", "decode", "e2e"])
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.budget_s = min(args.minutes, 2), min(args.budget_s, 20)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu_name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "none"
    print(f"torch {torch.__version__}, device {device} ({gpu_name}), CPU threads {torch.get_num_threads()}, "
          f"{args.width}x{args.height}, {args.minutes:g} min at 30 fps, batch {args.batch}, budget {args.budget_s:g} s")
    frames = face_frames(args.width, args.height)
    if device.startswith("cuda") and "agreement" not in args.skip:
        print("agreement GPU vs CPU fp32:", check_agreement(frames, device, args.batch))

    modes = (("5 fps", 5.0, 5), ("every frame", 0.0, 30))
    if "inference" not in args.skip:
        print("\ninference only (frames from memory): detect = resize + RetinaFace + NMS; align = tracking, "
              "warp, quality; classify = ViT-Tiny")
        for label, _fps, rate in modes:
            r = bench_inference(frames, int(args.minutes * 60 * rate), device, args.batch, args.budget_s,
                                args.backend)
            print(f"  {label:<12} {rate_line(r)}  GPU {r['gpu']}; detect {share(r['detect_s'], r['seconds'])}, "
                  f"align {share(r['align_s'], r['seconds'])}, classify {share(r['classify_s'], r['seconds'])}")

    missing = [name for name in ("decord", "sqlalchemy") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"\ndecode and end-to-end stages skipped: {', '.join(missing)} not installed (pip install -e .)")
        return
    if "decode" in args.skip and "e2e" in args.skip:
        return
    folder = Path(tempfile.mkdtemp(prefix="fervideo-gpu-bench-"))
    try:
        started = time.perf_counter()
        video, how = make_video(folder, frames, args.minutes, args.b_frames)
        print(f"\nvideo: {how}, {video.stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - started:.1f} s")
        for label, fps, _rate in modes:
            if "decode" not in args.skip:
                r = bench_decode(video, fps, args.batch, args.budget_s, device)
                print(f"  decode  {label:<12} {rate_line(r)}  (opening/indexing {r['open_s']:.1f} s, "
                      f"{r['threads']} decoders, fervideo/video_parallel.py)")
            if "e2e" not in args.skip:
                r = bench_end_to_end(video, frames, fps, device, args.batch, args.budget_s, folder, args.backend)
                print(f"  e2e     {label:<12} {rate_line(r)}  GPU {r['gpu']}; "
                      f"faces {share(r['faces_s'], r['seconds'])}, classify {share(r['classify_s'], r['seconds'])}, "
                      f"decode wait + write {share(r['rest_s'], r['seconds'])}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
