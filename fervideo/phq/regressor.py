"""A fitted scikit-learn pipeline <-> plain arrays, and prediction from those arrays in numpy.

Heads are never pickled: only these arrays are stored (npz), and prediction is re-implemented here
(tests check it equals scikit-learn's to 1e-6), so no estimator object is ever deserialised.
"""

from __future__ import annotations

import numpy as np


def model_arrays(pipeline, model: str) -> dict[str, np.ndarray]:
    """The imputer medians, scaler and regressor arrays of a fitted make_pipeline() pipeline."""
    impute, scale, regress = (pipeline.named_steps[k] for k in ("impute", "scale", "regress"))
    arrays = {"impute_median": impute.statistics_, "scale_mean": scale.mean_, "scale_scale": scale.scale_}
    if model == "ridge":
        arrays |= {"coef": regress.coef_, "intercept": np.atleast_1d(regress.intercept_)}
    elif model == "svr":
        arrays |= {"support_vectors": regress.support_vectors_, "dual_coef": regress.dual_coef_.ravel(),
                   "intercept": np.atleast_1d(regress.intercept_), "gamma": np.atleast_1d(regress._gamma)}
    else:
        trees = [estimator.tree_ for estimator in regress.estimators_[:, 0]]
        sizes = np.array([tree.node_count for tree in trees])
        arrays |= {
            "tree_sizes": sizes,
            "children_left": np.concatenate([tree.children_left for tree in trees]),
            "children_right": np.concatenate([tree.children_right for tree in trees]),
            "feature": np.concatenate([tree.feature for tree in trees]),
            "threshold": np.concatenate([tree.threshold for tree in trees]),
            "value": np.concatenate([tree.value[:, 0, 0] for tree in trees]),
            "init": np.atleast_1d(float(regress.init_.constant_.ravel()[0])),
            "learning_rate": np.atleast_1d(regress.learning_rate),
        }
    return {k: np.asarray(v) for k, v in arrays.items()}


def _predict_trees(arrays: dict[str, np.ndarray], Z: np.ndarray) -> np.ndarray:
    Z32 = Z.astype(np.float32)  # sklearn's trees compare float32 inputs with their thresholds
    total = np.full(len(Z), float(arrays["init"][0]))
    offset = 0
    rows = np.arange(len(Z))
    for size in arrays["tree_sizes"]:
        node = np.zeros(len(Z), dtype=np.int64)
        left = arrays["children_left"][offset:offset + size]
        right = arrays["children_right"][offset:offset + size]
        feature = arrays["feature"][offset:offset + size]
        threshold = arrays["threshold"][offset:offset + size]
        while (active := left[node] != -1).any():
            go_left = Z32[rows, np.maximum(feature[node], 0)] <= threshold[node]
            node = np.where(active, np.where(go_left, left[node], right[node]), node)
        total += float(arrays["learning_rate"][0]) * arrays["value"][offset:offset + size][node]
        offset += size
    return total


def predict_arrays(model: str, arrays: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Predict with a saved head's arrays, without scikit-learn objects or pickle."""
    X = np.where(np.isnan(X), arrays["impute_median"], X)
    Z = (X - arrays["scale_mean"]) / arrays["scale_scale"]
    if model == "ridge":
        return Z @ arrays["coef"] + arrays["intercept"][0]
    if model == "svr":
        distances = ((Z[:, None, :] - arrays["support_vectors"][None]) ** 2).sum(axis=2)
        return np.exp(-arrays["gamma"][0] * distances) @ arrays["dual_coef"] + arrays["intercept"][0]
    return _predict_trees(arrays, Z)
