"""Where the PHQ head's code lives now (split by responsibility; kept so old imports keep working):

- `regressor`: fitted pipeline <-> arrays, numpy prediction (no pickle)
- `head_store`: heads in the database (config JSON + npz bytes with sha256), import of file heads
- `interval`: subject-weighted CV+ / split-conformal intervals, bounding to the instrument's range
- `train`: `train_head`; `predict`: `predict_session`, `head_report`
"""

from fervideo.phq.head_store import PhqHeadModel, get_head, import_file_heads, load_head_row
from fervideo.phq.predict import PhqEstimate, head_report, predict_session
from fervideo.phq.regressor import model_arrays, predict_arrays
from fervideo.phq.train import TrainResult, train_head

__all__ = ["PhqEstimate", "PhqHeadModel", "TrainResult", "get_head", "head_report", "import_file_heads",
           "load_head_row", "model_arrays", "predict_arrays", "predict_session", "train_head"]
