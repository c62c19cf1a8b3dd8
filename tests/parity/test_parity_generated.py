"""Generated inputs through the native core and the twins (the probe's checks, under pytest).

Bounded: 40 examples per check by default (the full probe, `python -m parity generated`,
runs 200 or --examples).
"""

from __future__ import annotations

import numpy as np
import parity.generated as generated
from hypothesis import given, settings
from parity.library import FUNCTIONS, Function

EXAMPLES = settings(max_examples=40)


@EXAMPLES
@given(generated.search_inputs())
def test_search_three_distances(inp):
    with np.errstate(all="ignore"):
        generated.check_search(inp)


@EXAMPLES
@given(generated.playbook_inputs())
def test_playbook_boost_inject(inp):
    generated.check_playbook(inp)


@EXAMPLES
@given(generated.role_inputs())
def test_role_normalisation_and_gate(inp):
    generated.check_roles(inp)


@settings(max_examples=25)
@given(generated.embed_inputs())
def test_hash_embedder(inp):
    generated.check_embed(inp)


def test_the_probe_reports_a_disagreeing_twin_with_its_diff(monkeypatch):
    real = FUNCTIONS["role.normalize"]
    broken = Function(real.name, real.impl, lambda inp: [r.upper() for r in inp["roles"]])
    monkeypatch.setitem(FUNCTIONS, "role.normalize", broken)
    (result,) = generated.run(20, ["role.normalize+gate"], seed=1)
    assert not result.ok
    assert "outputs differ" in result.error
    assert "--- library" in result.error and "+++ reference" in result.error


def test_the_probe_passes_on_the_real_twins():
    results = generated.run(10, seed=2)
    assert [r.name for r in results] == list(generated.CHECKS)
    assert all(r.ok for r in results), [r.error for r in results]
