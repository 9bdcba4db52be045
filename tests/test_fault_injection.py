"""Crash safety: workers SIGKILLed at random moments, and once the whole batch; after a re-run every
session is done with exactly its frame rows, no duplicate, no orphan, none running. A short version
of benchmarks/fault_injection.py (which runs >= 20 trials and prints the counts)."""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fault_injection import check_database, make_videos, trial  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("streams", [1, 2], ids=["1-stream", "2-streams"])
@pytest.mark.parametrize("whole_batch", [False, True], ids=["kill-workers", "kill-whole-batch"])
def test_killed_batches_end_done_after_a_rerun(tmp_path, any_db_url, whole_batch, streams):
    """With 2 streams, one worker holds both videos: a kill ends two videos in flight at once. The videos
    keep the batch busy for ~4 s after its ~1.5-s start (2 cores; 96x64 frames go at ~600/s) and every
    kill lands 2-4 s in: with 30-frame videos and kills up to 10 s in, a faster pipeline had ended the
    batch before the kill, which then tested nothing."""
    expected = make_videos(tmp_path / "videos", 2, first_frames=1200)
    killed = trial(tmp_path / "videos", any_db_url, workers=2 if streams == 1 else 1, kills=1 if whole_batch else 2,
                   whole_batch=whole_batch, rng=random.Random(7), max_delay_s=4, streams=streams)
    assert killed >= 1, "the batch ended before any kill: nothing was tested"
    check = check_database(any_db_url, expected)
    assert check.problems == [], (killed, check.problems)
    assert check.sessions == 2 and check.rows_found == check.rows_expected == sum(expected.values())
