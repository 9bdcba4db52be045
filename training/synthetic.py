"""A procedurally drawn facial-expression data set, for tests and benchmarks (no real faces needed).

Each of the 7 canonical classes is encoded by the face geometry people read expressions from: mouth
curvature and openness, eyebrow angle and height, eye openness. Position, scale, colours, line width and
pixel noise vary at random, so a model has to learn the geometry rather than a fixed template.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fervideo.labels import CANONICAL_LABELS

# Per class: mouth curvature (+ smile, - frown), mouth openness, brow tilt (+ inner ends up, as in sadness;
# - inner ends down, as in anger), brow height, eye openness. Units are fractions of the face radius.
_EXPRESSIONS: dict[str, tuple[float, float, float, float, float]] = {
    "anger": (0.0, 0.0, -0.35, -0.04, 0.55),
    "disgust": (-0.22, 0.0, 0.0, 0.0, 0.3),
    "fear": (-0.05, 0.2, 0.3, 0.14, 1.4),
    "happiness": (0.35, 0.08, 0.0, 0.02, 0.85),
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.9),
    "sadness": (-0.3, 0.0, 0.35, 0.0, 0.7),
    "surprise": (0.0, 0.45, 0.0, 0.25, 1.5),
}


def _colour(rng: np.random.Generator, low: int, high: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, size=3))


def _mouth_points(cx: float, cy: float, half_width: float, curve: float, radius: float) -> list[tuple[float, float]]:
    xs = np.linspace(-1.0, 1.0, 9)
    # A parabola: corners rise (smile) or fall (frown) relative to the centre.
    return [(cx + x * half_width, cy - curve * radius * (x * x - 0.4)) for x in xs]


def draw_face(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 [size, size, 3] RGB image of a drawn face showing `label`."""
    curve, opening, brow_tilt, brow_raise, eye_open = (v + rng.normal(0, 0.025) for v in _EXPRESSIONS[label])
    scale = 4  # draw large then shrink: antialiased edges, as a camera would give
    canvas = size * scale
    image = Image.new("RGB", (canvas, canvas), _colour(rng, 0, 256))
    draw = ImageDraw.Draw(image)
    radius = canvas * rng.uniform(0.32, 0.42)
    cx = canvas / 2 + rng.uniform(-0.06, 0.06) * canvas
    cy = canvas / 2 + rng.uniform(-0.06, 0.06) * canvas
    draw.ellipse([cx - radius * 0.85, cy - radius, cx + radius * 0.85, cy + radius], fill=_colour(rng, 120, 256))
    ink = _colour(rng, 0, 70)
    width = max(1, int(radius * rng.uniform(0.07, 0.1)))
    for side in (-1, 1):
        ex, ey = cx + side * radius * 0.36, cy - radius * 0.22
        ew, eh = radius * 0.15, radius * 0.1 * eye_open
        draw.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(245, 245, 245), outline=ink, width=width)
        pupil = radius * 0.05
        draw.ellipse([ex - pupil, ey - pupil, ex + pupil, ey + pupil], fill=ink)
        by = ey - radius * (0.24 + brow_raise)
        inner = (ex - side * ew * 1.1, by - brow_tilt * radius)
        outer = (ex + side * ew * 1.1, by + brow_tilt * radius * 0.3)
        draw.line([inner, outer], fill=ink, width=width)
    my, half_width = cy + radius * 0.5, radius * rng.uniform(0.3, 0.4)
    upper = _mouth_points(cx, my, half_width, curve, radius)
    if opening > 0.03:
        lower = _mouth_points(cx, my + opening * radius, half_width * (1 - opening), curve - opening, radius)
        draw.polygon(upper + lower[::-1], fill=(90, 20, 30), outline=ink)
    else:
        draw.line(upper, fill=ink, width=width, joint="curve")
    small = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    small += rng.normal(0, rng.uniform(2, 12), small.shape)
    return np.clip(small, 0, 255).astype(np.uint8)


def make_expressions(
    n_per_class: int, size: int = 64, seed: int = 0, labels: tuple[str, ...] = CANONICAL_LABELS
) -> tuple[np.ndarray, np.ndarray]:
    """`n_per_class` faces for each label: images uint8 [N, size, size, 3] and label indices int64 [N]."""
    rng = np.random.default_rng(seed)
    targets = np.repeat(np.arange(len(labels)), n_per_class)
    rng.shuffle(targets)
    images = np.stack([draw_face(labels[t], size, rng) for t in targets])
    return images, targets.astype(np.int64)


def write_image_folder(root: Path, n_per_class: int, size: int = 64, seed: int = 0) -> Path:
    """The same faces as PNG files in an image-folder tree, root/<label>/<index>.png."""
    images, targets = make_expressions(n_per_class, size, seed)
    for index, (image, target) in enumerate(zip(images, targets, strict=True)):
        folder = root / CANONICAL_LABELS[target]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
    return root
