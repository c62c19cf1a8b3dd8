"""Generated inputs through the native core and its twin: hypothesis strategies and checks.

Each ``check_*`` takes one input (the same object a library fixture's ``input`` holds), runs
it through the implementation and the twin of :mod:`parity.library`, and raises
``AssertionError`` with a unified diff when the normalised outputs differ. The strategies
aim at the edges: few ids (so upserts, duplicates and exclusions collide), exact float32
thresholds and ties, zero vectors, roles with plural and non-plural endings.

:func:`run` drives every check with hypothesis for ``examples`` inputs each (``python -m
parity``); tests/parity/test_generated.py runs the same checks under pytest.

Search ties: the contract leaves tie order open, so ties compare as sets
(:data:`parity.library.TIE_TOLERANCE`). Generated searches whose exact distances sit in the
grey zone between "tied" (within 1e-9, float64 noise) and "clearly apart" (more than 1e-4)
are discarded with ``assume``: there float32 rounding alone may reorder two rows, which says
nothing about either implementation.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from parity.library import FUNCTIONS, call, compare
from parity.reference import index as ref_index

__all__ = ["CHECKS", "GeneratedResult", "run"]


def _check(name: str, inp: Mapping[str, Any]) -> None:
    fn = FUNCTIONS[name]
    a, b = compare(fn, call(fn, "impl", inp), call(fn, "twin", inp))
    if a != b:
        fmt = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
        la = orjson.dumps(orjson.loads(a), option=fmt).decode().splitlines()
        lb = orjson.dumps(orjson.loads(b), option=fmt).decode().splitlines()
        diff = "\n".join(difflib.unified_diff(la, lb, fn.impl_kind, "reference", lineterm=""))
        raise AssertionError(f"{name}: outputs differ for input {orjson.dumps(inp).decode()}\n{diff}")


# -- index.search --------------------------------------------------------------------------

IDS = ["a", "b", "c", "d", "e", "f", "g"]
COMPONENTS = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 0.25]),
    st.floats(-1.0, 1.0, width=32, allow_subnormal=False),
)


@st.composite
def search_inputs(draw: Any) -> dict[str, Any]:
    dims = draw(st.integers(1, 5))
    distance = draw(st.sampled_from(ref_index.DISTANCES))
    vector = st.lists(COMPONENTS, min_size=dims, max_size=dims)
    batches: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        if batches and draw(st.integers(0, 4)) == 0:
            batches.append({"delete": draw(st.lists(st.sampled_from(IDS), max_size=3))})
            continue
        ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=8))
        metadata = [draw(st.one_of(st.none(), st.just({}), st.fixed_dictionaries({"n": st.integers(0, 3)})))
                    for _ in ids]
        batches.append({"ids": ids, "vectors": [draw(vector) for _ in ids], "metadata": metadata})
    inp = {
        "dims": dims,
        "distance": distance,
        "batches": batches,
        "query": draw(vector),
        "k": draw(st.integers(1, 8)),
        "exclude_ids": draw(st.lists(st.sampled_from(IDS), max_size=2)),
    }
    _assume_clear_order(inp)
    return inp


def _assume_clear_order(inp: Mapping[str, Any]) -> None:
    """Discard inputs whose exact ranking is decided by rounding (see the module docstring)."""
    try:
        rows = FUNCTIONS["index.search"].twin(  # type: ignore[misc]
            {**inp, "k": 10_000}
        )
    except ValueError:
        return  # refused: both sides must refuse, nothing to rank
    d = [r["distance"] for r in rows]
    for x, y in zip(d, d[1:], strict=False):
        gap = abs(y - x) / max(1.0, abs(y))
        assume(gap <= 1e-9 or gap > 1e-4)
    k = int(inp["k"])
    if len(d) > k:
        assume(abs(d[k] - d[k - 1]) / max(1.0, abs(d[k])) > 1e-4)  # no tie cut by k


def check_search(inp: Mapping[str, Any]) -> None:
    _check("index.search", inp)


# -- playbook.apply ------------------------------------------------------------------------

PB_IDS = st.sampled_from(["w-1", "w-2", "w-3", "e-1"])
PB_CORPORA = st.sampled_from(["workers", "ethereal_workers"])
PB_DISTANCES = st.one_of(
    st.sampled_from([0.0, 0.1, 0.135, 0.2, 0.20000001, 0.3, 0.5, 0.50000006, 0.6566, 1.0]),
    st.floats(0.0, 2.0, width=32),
)
PB_SCORES = st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0))
PB_QUERIES = st.sampled_from(["need forklift", "need forklift", "forklift please", "nurse"])
PB_ROLES = st.sampled_from(["", "Forklift Operator", "Forklift Operators", "CNC Operator", "Sales", "Sale", "Boxes"])


@st.composite
def playbook_inputs(draw: Any) -> dict[str, Any]:
    results = draw(st.lists(st.tuples(PB_IDS, PB_CORPORA, PB_DISTANCES), max_size=8))
    keys = st.tuples(PB_IDS, PB_CORPORA)
    if results:
        keys = st.one_of(keys, st.sampled_from([(r[0], r[1]) for r in results]))
    hits = [
        [key[0], key[1], score, dist, role, query]
        for key, score, dist, role, query in draw(
            st.lists(
                st.tuples(keys, PB_SCORES, PB_DISTANCES.filter(lambda x: x <= 0.625), PB_ROLES, PB_QUERIES),
                max_size=5,
            )
        )
    ]
    return {
        "results": [list(r) for r in results],
        "hits": hits,
        "query_role": draw(PB_ROLES),
        "exclude_ids": draw(st.lists(PB_IDS, max_size=2)),
        "max_distance": draw(st.sampled_from([0.5, 0.3, 1.0])),
        "max_inject_distance": draw(st.sampled_from([0.2, 0.5, 0.0])),
        "k": draw(st.integers(1, 10)),
        "vetoed_hits": draw(st.lists(st.integers(0, len(hits) - 1), max_size=2)) if hits else [],
        # 0 = the reference (no ratio test); the others the calibrated playbook's test
        "max_ratio": draw(st.sampled_from([0.0, 0.0, 0.7, 0.5, 1.0])),
    }


def check_playbook(inp: Mapping[str, Any]) -> None:
    _check("playbook.apply", inp)


# -- roles ---------------------------------------------------------------------------------

ROLE_TEXT = st.one_of(
    PB_ROLES,
    st.lists(st.sampled_from(["Forklift", "Operators", "Sales", "boxes", "Press", "Deliveries", "bus", "ss", "  "]),
             max_size=4).map(" ".join),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=16),
)


@st.composite
def role_inputs(draw: Any) -> dict[str, Any]:
    return {"roles": draw(st.lists(ROLE_TEXT, min_size=1, max_size=4))}


def check_roles(inp: Mapping[str, Any]) -> None:
    _check("role.normalize", inp)
    pairs = [[a, b] for a in inp["roles"] for b in inp["roles"]]
    _check("role.gate", {"pairs": pairs})


# -- the hash embedder ---------------------------------------------------------------------

EMBED_WORDS = st.sampled_from(
    ["Forklift", "operator", "OSHA-30", "Milwaukee", "night", "café", "naïve", "İstanbul", "ﬁre", "３０", "x_y", "!!", "ß"]
)


@st.composite
def embed_inputs(draw: Any) -> dict[str, Any]:
    texts = draw(st.lists(st.one_of(st.text(max_size=40), st.lists(EMBED_WORDS, max_size=8).map(" ".join)),
                          min_size=1, max_size=3))
    return {"texts": texts, "dim": draw(st.sampled_from([1, 2, 7, 64, 768]))}


def check_embed(inp: Mapping[str, Any]) -> None:
    _check("embed.hash", inp)


#: name -> (strategy, check): every generated comparison the probe runs
CHECKS: dict[str, tuple[Callable[[], st.SearchStrategy[Any]], Callable[[Mapping[str, Any]], None]]] = {
    "index.search": (search_inputs, check_search),
    "playbook.apply": (playbook_inputs, check_playbook),
    "role.normalize+gate": (role_inputs, check_roles),
    "embed.hash": (embed_inputs, check_embed),
}


@dataclass
class GeneratedResult:
    name: str
    examples: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _property(check: Callable[[Mapping[str, Any]], None], count: list[int]) -> Callable[..., None]:
    def body(inp: Mapping[str, Any]) -> None:
        count[0] += 1
        check(inp)

    return body


def run(examples: int = 200, names: list[str] | None = None, seed: int | None = None) -> list[GeneratedResult]:
    """Every check of :data:`CHECKS` (or ``names``) on ``examples`` generated inputs each.

    A failure is hypothesis's shrunk counterexample with its diff. ``seed`` makes the run
    reproducible.
    """
    out = []
    for name, (strategy, check) in CHECKS.items():
        if names and name not in names:
            continue
        count = [0]
        test = _property(check, count)
        test = settings(
            max_examples=examples, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )(given(strategy())(test))
        if seed is not None:
            from hypothesis import seed as hypothesis_seed

            test = hypothesis_seed(seed)(test)
        try:
            with np.errstate(all="ignore"):
                test()
        except Exception as exc:  # a mismatch, or either side failing in an unexpected way
            out.append(GeneratedResult(name, count[0], f"{type(exc).__name__}: {exc}"))
            continue
        out.append(GeneratedResult(name, count[0]))
    return out
