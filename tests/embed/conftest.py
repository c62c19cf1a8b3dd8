"""The hash embedder's tests compare it with the pure-Python twin in parity/reference/embed.py.

``parity`` is tooling beside the tests, not an installed package: the repository root goes on
sys.path here (the tests still import ``lakehouse`` as installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if (_ROOT / "parity" / "__init__.py").exists() and str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))
