"""fervideo: facial-expression timelines, session affect measures and PHQ estimates from
recorded clinical sessions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fervideo")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from fervideo.errors import FervideoError  # noqa: E402
from fervideo.labels import CANONICAL_LABELS  # noqa: E402

__all__ = ["CANONICAL_LABELS", "FervideoError", "__version__", "process_video"]


def process_video(*args, **kwargs):
    """Process one video into a stored session; see `fervideo.pipeline.process_video`."""
    from fervideo.pipeline import process_video as _process_video

    return _process_video(*args, **kwargs)
