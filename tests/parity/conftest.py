"""The parity tests drive the probes under parity/ (tooling beside the tests, not an installed
package): the repository root goes on sys.path here; ``lakehouse`` is imported as installed."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if (ROOT / "parity" / "__init__.py").exists() and str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
