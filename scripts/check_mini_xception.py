"""Dev check of the bundled mini-Xception port: faithfulness to Keras, and predictions on real photos.

    python scripts/check_mini_xception.py --keras-python /tmp/tfenv/bin/python

Faithfulness: the same inputs go through the PyTorch port and through the original HDF5 loaded by real
Keras (`tf_keras.models.load_model`, run in a separate interpreter that has TensorFlow, because the
project venv does not). Predictions: the four posed photos in ../shared/media, cropped by the faces
stage (fervideo.faces.FaceAnalyzer) when it is importable, else by a fixed centred square.
"""

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fervideo.emotion import load_classifier
from fervideo.emotion.preprocess import to_model_input

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = {
    "0-f1-su-ph.jpg": "surprise",
    "0-f15-hao-ph.jpg": "happiness",
    "15-f13-anc-ph.jpg": "anger",
    "45-m7-di-ph.jpg": "disgust",
}
KERAS_REFERENCE = """
import sys, numpy as np, tf_keras as keras
model = keras.models.load_model(sys.argv[1], compile=False)
logits_model = keras.Model(model.input, model.get_layer("global_average_pooling2d_1").output)
x = np.load(sys.argv[2])
np.savez(sys.argv[3], probs=model.predict(x, verbose=0), logits=logits_model.predict(x, verbose=0))
"""


def load_photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(SHARED / "media" / name).convert("RGB"))


def centre_crop(image: np.ndarray, fraction: float = 0.55, centre_y: float = 0.45) -> np.ndarray:
    """Fallback when no detector is at hand: the posed photos have the face near the middle."""
    height, width = image.shape[:2]
    side = int(min(height, width) * fraction)
    top = int(np.clip(height * centre_y - side / 2, 0, height - side))
    left = (width - side) // 2
    crop = Image.fromarray(image[top : top + side, left : left + side]).resize((224, 224), Image.BILINEAR)
    return np.asarray(crop)


def face_crops(images: list[np.ndarray]) -> tuple[np.ndarray, str]:
    try:
        from fervideo.faces import FaceAnalyzer
    except ImportError:
        return np.stack([centre_crop(image) for image in images]), "centred square crop"
    crops = []
    for image in images:
        batch = FaceAnalyzer(device="cpu").analyze(image[None])
        crops.append(batch.crops[0] if batch.found[0] else centre_crop(image))
    return np.stack(crops), "fervideo.faces.FaceAnalyzer aligned crop"


def keras_outputs(keras_python: str, hdf5: Path, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x_nhwc)
        subprocess.run(
            [keras_python, "-c", KERAS_REFERENCE, str(hdf5), f"{tmp}/x.npy", f"{tmp}/out.npz"], check=True
        )
        with np.load(f"{tmp}/out.npz") as out:
            return {key: out[key] for key in out.files}


def check_faithfulness(classifier, keras_python: str, photo_inputs: torch.Tensor) -> None:
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.uniform(-1, 1, size=(64, 1, 64, 64)).astype(np.float32))
    x = torch.cat([noise, photo_inputs.cpu()])
    with torch.inference_mode():
        logits = classifier.model(x).numpy()
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    reference = keras_outputs(
        keras_python, SHARED / "weights" / "fer2013_mini_xception.hdf5", x.permute(0, 2, 3, 1).numpy()
    )
    print(f"faithfulness vs Keras on {len(x)} inputs (64 uniform-noise + {len(photo_inputs)} face crops):")
    print(f"  max |logit diff| = {np.abs(logits - reference['logits']).max():.3e}")
    print(f"  max |prob diff|  = {np.abs(probs - reference['probs']).max():.3e}")
    print(f"  argmax agreement = {(probs.argmax(1) == reference['probs'].argmax(1)).mean():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keras-python", help="a python with tensorflow + tf_keras; skips the Keras check if absent"
    )
    args = parser.parse_args()
    classifier = load_classifier("mini-xception-fer2013", device="cpu")
    crops, how = face_crops([load_photo(name) for name in PHOTOS])
    if args.keras_python:
        check_faithfulness(
            classifier, args.keras_python, to_model_input(crops, classifier.config, classifier.device)
        )
    probs = classifier.predict(crops)
    print(f"predictions ({how}; labels in canonical order):")
    for (name, expected), row in zip(PHOTOS.items(), probs, strict=True):
        top = int(row.argmax())
        print(
            f"  {name:20s} expected {expected:9s} -> {classifier.labels[top]:9s} {row[top]:.3f}   "
            + " ".join(f"{label[:4]}={p:.2f}" for label, p in zip(classifier.labels, row, strict=True))
        )


if __name__ == "__main__":
    main()
