"""The strong-model downgrade gate (contract section 9.14, ``/matrix/downgrade``).

A ``codereview_lakehouse`` run (full enrichment) on a *strong* model is downgraded to
``codereview_isolation``: strong models did better without the extra context in the
reference's head-to-heads, weak ones need it. The truth table, first matching row wins:

====  ===============================  ============  =========================
row   condition                        answer mode   reason
====  ===============================  ============  =========================
1     mode != codereview_lakehouse     unchanged     ``mode_not_eligible``
2     forced_mode                      unchanged     ``forced_mode``
3     force_full_enrichment            unchanged     ``force_full_enrichment``
4     the model is weak                unchanged     ``weak_model``
5     otherwise                        isolation     ``strong_model``
====  ===============================  ============  =========================

A model is weak when its name ends in ``:free``, contains ``:free/``, or is in the weak
list (``[models].weak_models``; the reference's defaults are ``qwen3.5:latest`` and
``qwen3:latest``). ``force_full_enrichment`` left out of a request is read from the
environment variable ``LH_FORCE_FULL_ENRICHMENT`` (``1`` or ``true``, any case).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_WEAK_MODELS",
    "FULL_MODE",
    "ISOLATION_MODE",
    "Decision",
    "decide",
    "env_force_full_enrichment",
    "is_weak_model",
]

FULL_MODE = "codereview_lakehouse"
ISOLATION_MODE = "codereview_isolation"
DEFAULT_WEAK_MODELS = ("qwen3.5:latest", "qwen3:latest")
ENV_FORCE_FULL = "LH_FORCE_FULL_ENRICHMENT"


@dataclass(frozen=True)
class Decision:
    mode: str
    downgraded_from: str | None
    reason: str

    def to_json(self) -> dict[str, str]:
        out = {"mode": self.mode, "reason": self.reason}
        if self.downgraded_from is not None:
            out["downgraded_from"] = self.downgraded_from
        return out


def is_weak_model(model: str, weak_models: Sequence[str] = DEFAULT_WEAK_MODELS) -> bool:
    """``:free`` suffix, ``:free/`` infix, or listed (exact name)."""
    return model.endswith(":free") or ":free/" in model or model in weak_models


def env_force_full_enrichment(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(ENV_FORCE_FULL, "")
    return value.strip().lower() in ("1", "true")


def decide(
    mode: str,
    model: str,
    *,
    forced_mode: bool = False,
    force_full_enrichment: bool | None = None,
    weak_models: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Decision:
    """Apply the truth table. ValueError for an empty mode (a 400 at the route)."""
    if not mode.strip():
        raise ValueError("mode must not be empty")
    if mode != FULL_MODE:
        return Decision(mode, None, "mode_not_eligible")
    if forced_mode:
        return Decision(mode, None, "forced_mode")
    if force_full_enrichment is None:
        force_full_enrichment = env_force_full_enrichment(environ)
    if force_full_enrichment:
        return Decision(mode, None, "force_full_enrichment")
    weak = DEFAULT_WEAK_MODELS if weak_models is None else weak_models
    if is_weak_model(model, weak):
        return Decision(mode, None, "weak_model")
    return Decision(ISOLATION_MODE, mode, "strong_model")
