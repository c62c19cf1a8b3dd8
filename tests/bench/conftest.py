"""The benchmark suite lives in bench/ at the top of the checkout (it is not part of the
wheel): make it importable, as ``python -m bench`` run from the checkout does."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
