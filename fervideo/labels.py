"""The canonical emotion label set. Every classifier's output is mapped to this order before it
leaves the emotion stage, so everything downstream (storage, features, PHQ, exports) sees one layout."""

CANONICAL_LABELS: tuple[str, ...] = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
)
