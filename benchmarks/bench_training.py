"""Training throughput (images/s) of ViT-Tiny at 224 px on this machine's CPU: batch 32, AdamW steps on
random tensors (the model cost only; data loading is measured separately by the loop's per-epoch
images_per_s). Prints a table. Usage: python benchmarks/bench_training.py [--steps 5] [--batch 32]"""

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from training.model import build_classifier


def measure(architecture: str, batch: int, steps: int, warmup: int, size: int = 224) -> float:
    model = build_classifier(architecture, 7).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 7, (batch,))
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--architecture", default="vit_tiny_patch16_224")
    args = parser.parse_args()
    rate = measure(args.architecture, args.batch, args.steps, args.warmup)
    table = Table(title="training throughput (fp32, CPU)")
    for column in ("model", "input", "batch", "threads", "images/s", "75k-image epoch"):
        table.add_column(column)
    table.add_row(args.architecture, "224", str(args.batch), str(torch.get_num_threads()), f"{rate:.1f}",
                  f"{75_000 / rate / 3600:.1f} h")
    Console().print(table)


if __name__ == "__main__":
    main()
