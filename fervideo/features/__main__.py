"""`python -m fervideo.features [docs/features.md]`: regenerate the doc's feature table from the registry."""

import sys
from pathlib import Path

from fervideo.features.registry import rewrite_docs_table

rewrite_docs_table(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/features.md"))
