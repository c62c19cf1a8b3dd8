"""The learning-loop measurement behind tests/matrix/test_learning_goal.py and docs/matrix.md.

One in-process stack (embedd with the given provider, vectord, matrixd), a workers corpus
from the synthetic roster, and a demand set (tests/data/playbook_devset.json or the
held-out playbook_heldout.json): each demand is searched cold, an approved answer is
recorded (even demands: the cold rank-4 worker, a boost; odd demands: the first worker of
the demand's role outside the cold top-8, an injection), then every demand is searched warm
verbatim and in its two paraphrases, and the out-of-domain controls are searched, all with
the default request (no thresholds, no query_role).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lakehouse.roster import COLUMNS, iter_roster

DATA = Path(__file__).resolve().parents[1] / "data"
K = 8
WORKERS = 400


def load_set(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text("utf-8"))


@dataclass
class Figures:
    demands: int = 0
    verbatim_top1: int = 0
    paraphrases: int = 0
    paraphrase_top1: int = 0
    ood: int = 0
    ood_injections: int = 0
    cross_injections: int = 0
    cross_boosts: int = 0
    thresholds: dict[str, Any] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"verbatim {self.verbatim_top1}/{self.demands}, paraphrase top-1 {self.paraphrase_top1}/"
            f"{self.paraphrases}, out-of-domain injections {self.ood_injections}/{self.ood}, "
            f"cross-demand injections {self.cross_injections} (boosts {self.cross_boosts})"
        )


def worker_text(row: dict[str, Any]) -> str:
    return (
        f"Worker role: {row['role']} in {row['city']}, {row['state']}. Skills: {row['skills']}. "
        f"Certifications: {row['certifications']}"
    )


async def call(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(path, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    raw = await r.read()
    assert r.status == 200, raw
    return orjson.loads(raw)


async def build_workers(client: Any, embedder: Any, vectors: Any) -> None:
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in iter_roster(WORKERS, seed=1)]
    _, dim, vecs = await embedder.embed([worker_text(r) for r in rows])
    await vectors.create("workers", dim, exist_ok=True)
    meta = [{"role": r["role"], "city": r["city"]} for r in rows]
    await vectors.add("workers", [str(r["worker_id"]) for r in rows], vecs, meta)


async def measure(client: Any, dataset: dict[str, Any], playbook: str = "playbook_memory", **request: Any) -> Figures:
    """Record the set's answers into a fresh ``playbook`` and measure (see the module
    docstring); ``request`` adds fields to every warm search (thresholds, for the reference)."""
    fig = Figures()
    answers: dict[str, str] = {}
    for n, d in enumerate(dataset["demands"]):
        cold = await call(client, "/matrix/search", {"query_text": d["text"], "corpora": ["workers"], "k": 60})
        ranked = [r for r in cold["results"]]
        if n % 2 == 0:
            answer = ranked[3]["id"]
        else:
            same_role = [r for r in ranked[K:] if (r["metadata"] or {}).get("role") == d["role"]]
            answer = (same_role or ranked[K:])[0]["id"]
        answers[d["id"]] = answer
        await call(
            client,
            "/matrix/playbooks/record",
            {"query_text": d["text"], "answer_id": answer, "answer_corpus": "workers", "score": 1.0,
             "role": d["role"], "playbook_corpus": playbook},
        )
    others = set(answers.values())

    async def warm(text: str) -> dict[str, Any]:
        body = {"query_text": text, "corpora": ["workers"], "k": K, "use_playbook": True, "playbook_corpus": playbook}
        return await call(client, "/matrix/search", {**body, **request})

    for d in dataset["demands"]:
        mine = answers[d["id"]]
        fig.demands += 1
        for kind, text in [("verbatim", d["text"])] + [("paraphrase", p) for p in d["paraphrases"]]:
            out = await warm(text)
            fig.thresholds = out["playbook"].get("thresholds", {})
            top1 = out["results"][0]["id"] == mine
            if kind == "verbatim":
                fig.verbatim_top1 += top1
            else:
                fig.paraphrases += 1
                fig.paraphrase_top1 += top1
            if not top1:
                fig.misses.append(f"{d['id']} {kind}: {text}")
            for r in out["results"]:
                if r["id"] != mine and r["id"] in others:
                    if r["source"] == "inject":
                        fig.cross_injections += 1
                    elif r["source"] == "boost":
                        fig.cross_boosts += 1
    for text in dataset["out_of_domain"]:
        out = await warm(text)
        fig.ood += 1
        if out["playbook"]["injected"]:
            fig.ood_injections += 1
            fig.misses.append(f"out-of-domain injected: {text}")
    return fig
