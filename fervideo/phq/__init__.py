"""PHQ-8/9 labels and the PHQ head: session features -> an *estimate* of the questionnaire total.

An estimate is never a diagnosis, and item 9 (thoughts of self-harm) is never inferred: see
`PHQ_CAVEAT`. Training evaluates by subject-grouped cross-validation (no subject on both sides of a
fold, checked on every fold) or an explicit held-out subject list. Heads are saved without pickle:
head.json (configuration, feature list, training summary, metrics, classifier provenance) plus
params.npz (imputer medians, scaler, and the regressor's arrays), and predicted with numpy.
See docs/phq.md.
"""


from fervideo.phq.bands import *  # noqa: F403
from fervideo.phq.dataset import *  # noqa: F403
from fervideo.phq.evaluation import *  # noqa: F403
from fervideo.phq.head import *  # noqa: F403
from fervideo.phq.labels import *  # noqa: F403
from fervideo.phq.splits import *  # noqa: F403
