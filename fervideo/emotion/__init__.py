"""The emotion stage: aligned face crops -> per-frame probabilities over CANONICAL_LABELS.

`load_classifier()` picks a model (registry name, checkpoint path or `auto`); `EmotionClassifier.predict`
turns uint8 [N, 224, 224, 3] RGB crops into float32 [N, 7] rows that sum to 1.
"""

from fervideo.emotion.classifier import EmotionClassifier
from fervideo.emotion.minixception import MiniXception
from fervideo.emotion.registry import list_models, load_classifier
from fervideo.emotion.vit import ViTTinyFER

__all__ = ["EmotionClassifier", "MiniXception", "ViTTinyFER", "list_models", "load_classifier"]
