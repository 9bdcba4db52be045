"""Small helpers shared by several stages."""

import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

# Ids per IN (...) clause: well under every backend's parameter limit (SQLite's is 32,766 today, 999 before 3.32).
ID_CHUNK = 500


def sha256_file(path: str | Path, block_size: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in blocks so multi-GB recordings never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def id_chunks(ids: Sequence, size: int = ID_CHUNK) -> Iterator[Sequence]:
    """`ids` in slices of at most `size`, for queries with `column.in_(slice)`."""
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def put_unless_stopped(handoff: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Queue `item` for a consumer thread, waiting while the queue is full; False once `stop` is set (the
    consumer has gone), so a producer thread never blocks past its consumer."""
    while not stop.is_set():
        try:
            handoff.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
