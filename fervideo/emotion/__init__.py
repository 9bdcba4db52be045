"""The emotion stage: aligned face crops -> per-frame probabilities over CANONICAL_LABELS.

`load_classifier()` picks a model (registry name, checkpoint path or `auto`); `EmotionClassifier.predict`
turns uint8 [N, 224, 224, 3] RGB crops into float32 [N, 7] rows that sum to 1.

The network classes are imported on first use: they import torch, which the baseline in ONNX Runtime
from a cached export does not need (docs/speed.md, start-up).
"""

from fervideo.emotion.classifier import EmotionClassifier
from fervideo.emotion.registry import list_models, load_classifier

__all__ = ["EmotionClassifier", "MiniXception", "ViTTinyFER", "list_models", "load_classifier"]


def __getattr__(name: str):
    if name == "MiniXception":
        from fervideo.emotion.minixception import MiniXception

        return MiniXception
    if name == "ViTTinyFER":
        from fervideo.emotion.vit import ViTTinyFER

        return ViTTinyFER
    raise AttributeError(f"module 'fervideo.emotion' has no attribute {name!r}")
