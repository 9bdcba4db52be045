"""PHQ-8/9 labels and the PHQ head: session features -> an *estimate* of the questionnaire total.

An estimate is never a diagnosis, and item 9 (thoughts of self-harm) is never inferred: see
`PHQ_CAVEAT`. Training evaluates by subject-grouped cross-validation (no subject on both sides of a
fold, checked on every fold) or an explicit held-out subject list. Heads live in the database without
pickle: a configuration JSON and npz arrays with their sha256, predicted with numpy. Intervals are
subject-weighted CV+ (or split-conformal with --cv split). See docs/phq.md.
"""


from fervideo.phq.bands import *  # noqa: F403
from fervideo.phq.dataset import *  # noqa: F403
from fervideo.phq.evaluation import *  # noqa: F403
from fervideo.phq.head_store import *  # noqa: F403
from fervideo.phq.interval import *  # noqa: F403
from fervideo.phq.labels import *  # noqa: F403
from fervideo.phq.matching import *  # noqa: F403
from fervideo.phq.predict import *  # noqa: F403
from fervideo.phq.splits import *  # noqa: F403
from fervideo.phq.train import *  # noqa: F403
