"""Augmentations as in the published recipes (resize, flip, +-10 degree rotation, colour jitter,
RandomResizedCrop, normalise 0.5/0.5), and the evaluation transform, which must match inference:
fervideo's emotion stage resizes the whole aligned crop to the input size and normalises, nothing more.
"""

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from training.config import AugmentSection


def _to_tensor(size: int, mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose([v2.Resize((size, size), antialias=True), *_to_tensor(size, mean, std)])


def train_transform(size: int, mean: Sequence[float], std: Sequence[float], augment: AugmentSection) -> v2.Compose:
    steps: list[v2.Transform] = []
    if augment.random_resized_crop:
        low, high = augment.random_resized_crop
        steps.append(v2.RandomResizedCrop((size, size), scale=(low, high), ratio=(0.9, 1.1), antialias=True))
    else:
        steps.append(v2.Resize((size, size), antialias=True))
    if augment.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(augment.hflip))
    if augment.rotation > 0:
        steps.append(v2.RandomRotation(augment.rotation))
    if augment.color_jitter > 0:
        strength = augment.color_jitter
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    return v2.Compose([*steps, *_to_tensor(size, mean, std)])
