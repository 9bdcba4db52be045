"""Small helpers shared by several stages."""

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, block_size: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in blocks so multi-GB recordings never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()
