"""int8 agreement and speed table (issue 10): the ViT-Tiny in fp32 against its two dynamic-int8 quantisations,
ONNX Runtime's (what `--quantize int8` runs by default on the CPU) and torch's (`--backend torch`).

    python benchmarks/bench_int8.py                      # tests/data/single_face.mp4
    python benchmarks/bench_int8.py clip1.mp4 clip2.mp4  # the real clips given (plus nothing else)
    python benchmarks/bench_int8.py --model vit-tiny-fer # the trained seed, where it is cached

Per clip: every frame sampled (--fps 0 by default), faces found and aligned as `fervideo process` does
(FaceAnalyzer, CPU), and both classifiers on the same crops: max and mean absolute probability difference
and top-1 agreement. Then the forward pass alone (batch 32 of those crops, preprocessing included, the same
threads) in alternating rounds, fp32 / int8 / torch int8 / fp32 / ..., so a shared machine's load falls on all;
the median round is shown. Without --model the classifier is a stand-in with the seed's exact timm
architecture and seeded random weights (no download): its agreement is the stand-in's, not the trained
model's, whose logits are spread differently.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIP = ROOT / "tests" / "data" / "single_face.mp4"
BATCH = 32


def standin_checkpoint(folder: Path) -> Path:
    """The seed's ViT-Tiny with seeded random weights, as the tests build it."""
    import torch

    from fervideo.emotion import ViTTinyFER

    path = folder / "vit_tiny_standin.pth"
    torch.manual_seed(0)
    torch.save(ViTTinyFER().state_dict(), path)
    return path


def face_crops(video: Path, fps: float) -> np.ndarray:
    """The aligned crops of every sampled frame with a face, as the pipeline makes them."""
    from fervideo.faces import FaceAnalyzer
    from fervideo.video import VideoStream

    analyzer = FaceAnalyzer(device="cpu")
    crops = [analyzer.analyze(chunk.rgb).crops for chunk in VideoStream(video, fps, 32)]
    return np.concatenate(crops) if crops else np.zeros((0, 224, 224, 3), np.uint8)


def frames_per_second(classifier, batch: np.ndarray, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier.predict(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def speed(classifiers: dict, crops: np.ndarray, rounds: int, seconds: float) -> dict[str, float]:
    """Median frames/s of each classifier, measured in alternating rounds after one warm-up batch each."""
    batch = np.resize(crops, (BATCH, *crops.shape[1:]))  # repeats the clip's crops up to a full batch
    for classifier in classifiers.values():
        classifier.predict(batch)
    results: dict[str, list[float]] = {name: [] for name in classifiers}
    for _ in range(rounds):
        for name, classifier in classifiers.items():
            results[name].append(frames_per_second(classifier, batch, seconds))
    return {name: statistics.median(rates) for name, rates in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path, help="real clips (default: tests/data/single_face.mp4)")
    parser.add_argument("--model", help="a ViT checkpoint or registry name (default: the random-weight stand-in)")
    parser.add_argument("--fps", type=float, default=0.0, help="frames sampled per second; 0 = every frame")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = every core")
    parser.add_argument("--rounds", type=int, default=3, help="alternating speed rounds")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per speed round and classifier")
    args = parser.parse_args()

    from fervideo.runtime import apply_thread_policy, prefer_passive_waiting

    prefer_passive_waiting()
    apply_thread_policy(args.threads or None)
    import torch

    from fervideo.emotion import load_classifier
    from fervideo.emotion.quantize import agreement

    with tempfile.TemporaryDirectory() as folder:
        model = args.model or str(standin_checkpoint(Path(folder)))
        classifiers = {
            "fp32": load_classifier(model, device="cpu", batch_size=BATCH),
            "int8": load_classifier(model, device="cpu", batch_size=BATCH, quantize="int8"),
            "torch int8": load_classifier(model, device="cpu", batch_size=BATCH, quantize="int8", backend="torch"),
        }
    print(f"model: {args.model or 'ViT-Tiny stand-in (seed architecture, random weights, seed 0)'}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, quantized engine "
          f"{torch.backends.quantized.engine}; backends: "
          + ", ".join(f"{name} {classifier.backend}" for name, classifier in classifiers.items()))
    print(f"{'clip':<20} {'crops':>5} {'classifier':<11} {'f/s':>6} {'vs fp32':>7} "
          f"{'max |dP|':>8} {'mean |dP|':>9} {'top-1 agree':>11}")
    for video in args.videos or [CLIP]:
        crops = face_crops(video, args.fps)
        if len(crops) == 0:
            print(f"{video.name[:20]:<20} no face found")
            continue
        reference = classifiers["fp32"].predict(crops)
        rates = speed(classifiers, crops, args.rounds, args.seconds)
        for name, classifier in classifiers.items():
            measured = agreement(reference, classifier.predict(crops))
            print(f"{video.name[:20]:<20} {len(crops):>5} {name:<11} {rates[name]:>6.1f} "
                  f"{rates[name] / rates['fp32']:>6.2f}x {measured['max_abs']:>8.4f} {measured['mean_abs']:>9.4f} "
                  f"{measured['top1_agreement']:>10.1%}")
    print(f"\nf/s: forward pass with preprocessing, batch {BATCH}, median of {args.rounds} alternating rounds. "
          "dP: probability difference int8 - fp32 over every class of every crop.")


if __name__ == "__main__":
    main()
