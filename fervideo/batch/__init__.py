"""Many videos: plan work items (files, folders, globs, a manifest), run them on local worker processes
or Ray actors that each keep one SessionProcessor loaded, and collect one outcome per video. Workers
meet only in the database. See docs/batch.md."""

from fervideo.batch.plan import ManifestError, WorkItem, expand_paths, plan_from_paths, read_manifest
from fervideo.batch.runner import BatchObserver, BatchResult, default_workers, run_batch
from fervideo.batch.work import DONE, FAILED, INTERRUPTED, SKIPPED, ItemOutcome, WorkerSettings

__all__ = [
    "DONE", "FAILED", "INTERRUPTED", "SKIPPED", "BatchObserver", "BatchResult", "ItemOutcome", "ManifestError",
    "WorkItem", "WorkerSettings", "default_workers", "expand_paths", "plan_from_paths", "read_manifest", "run_batch",
]
