"""``lakehouse reality multi-coord``: three coordinators, three contracts, 48 hours.

Contract section 15.2, against any stack (its gateway's ``/v1`` routes). Coordinators alice,
bob and carol each start with one contract (``alpha_milwaukee_distribution``,
``beta_indianapolis_manufacturing``, ``gamma_chicago_construction``) and their own playbook
corpus (``playbook_<coordinator>_<run token>``, so runs never feed each other). Each contract
asks for the three shared roles and one specialist. Nine phases, at hours 0 to 48:

| hour | phase | what happens |
|---|---|---|
| 0 | baseline | each coordinator searches their 4 roles (retrieval only) and records an approval |
| 6 | fresh_resume | 3 new workers (``/v1/embed`` + ``/v1/vectors/index/{corpus}/add``); each coordinator searches for theirs |
| 12 | inbox_burst | 6 messages to ``/v1/observer/inbox``; each is parsed into a demand, searched, its top-1 judged |
| 18 | surge | the 12 demands reworded as surge orders, searched with the owner's playbook |
| 24 | swap | alpha's pool of ``--swap-size`` (200) workers replaced: the same search with ``exclude_ids`` = the pool |
| 30 | merge | beta joins alpha: bob's approvals copied into alice's playbook; alice searches 4 beta + 2 alpha demands |
| 36 | handover | carol hands gamma to bob (her approvals copied); bob searches its 4 demands verbatim and paraphrased |
| 42 | split | beta leaves alice for carol (the beta approvals copied into carol's playbook); carol searches them |
| 48 | reissue | the 12 baseline demands again: with the owner's playbook, and retrieval only |

Health (the reference's thresholds): mean top-K Jaccard of one role across contracts < 0.30
(> 0.50 is cycling), of different roles within one contract < 0.10, determinism (mean
Jaccard of the reissued retrieval-only top-K against the baseline's) >= 0.95 good,
0.80-0.95 acceptable, < 0.80 unstable; and the run's own checks: 3/3 fresh resumes in the
top K of the search that follows their add, no excluded worker back after the swap and a
full replacement pool, 6/6 inbox messages accepted. The verdict is PASS when every check
passes (exit 0), FAIL otherwise (exit 1). docs/reality.md has the details and a run's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import string
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from ..matrix.ranking import role_equal
from . import add_stack_args
from .client import HarnessError, StackClient, choose_model, paraphrase, rate, terminal_progress
from .report import write_report

__all__ = [
    "CONTRACTS",
    "PHASES",
    "SHARED_ROLES",
    "Contract",
    "MultiCoordRun",
    "Thresholds",
    "evaluate_health",
    "jaccard",
    "main",
    "run_multi_coord",
]

NAME = "multi_coord"
DEFAULT_LLM = "qwen2.5:latest"
#: phase -> hour label (the reference's 0/6/.../48)
PHASES: dict[str, int] = {
    "baseline": 0,
    "fresh_resume": 6,
    "inbox_burst": 12,
    "surge": 18,
    "swap": 24,
    "merge": 30,
    "handover": 36,
    "split": 42,
    "reissue": 48,
}
#: the default template a fresh resume is rendered with: the corpus's own (--text-template)
DEFAULT_TEXT_TEMPLATE = "Worker role: {role} in {city}, {state}. Skills: {skills}. Certifications: {certifications}"


@dataclass(frozen=True)
class Contract:
    name: str
    coordinator: str
    city: str
    state: str
    industry: str
    specialist: str


CONTRACTS: tuple[Contract, ...] = (
    Contract("alpha_milwaukee_distribution", "alice", "Milwaukee", "WI", "distribution", "Industrial Electrician"),
    Contract("beta_indianapolis_manufacturing", "bob", "Indianapolis", "IN", "manufacturing", "CNC Operator"),
    Contract("gamma_chicago_construction", "carol", "Chicago", "IL", "construction", "Heavy Equipment Operator"),
)
#: roles every contract asks for: the reference's warehouse worker, and the roster's two other
#: roles common enough that each city has its own (the reference's admin assistant is not a
#: roster role, and its heavy equipment operator is 2% of the roster: a few dozen workers in
#: all, whom every city's search finds, so it is gamma's specialist here; docs/reality.md)
SHARED_ROLES: tuple[str, ...] = ("Warehouse Associate", "Forklift Operator", "Material Handler")

#: per contract (by position): the fresh resume's distinctive profile and the demand that asks for it
FRESH_PROFILES: tuple[dict[str, str], ...] = (
    {
        "name": "Dana Okafor",
        "skills": "VFD commissioning;arc flash studies;PLC troubleshooting;motor controls",
        "certifications": "Journeyman Electrician License;NFPA 70E",
        "verify": "Industrial electrician for VFD commissioning and arc flash studies",
    },
    {
        "name": "Luis Brandt",
        "skills": "5-axis CNC mill;Mastercam programming;G-code;first article inspection",
        "certifications": "NIMS Machining Level II",
        "verify": "CNC operator who programs 5-axis mills in Mastercam",
    },
    {
        "name": "Mei Thorsen",
        "skills": "GPS machine control grading;tower crane rigging;excavator;site grading",
        "certifications": "NCCCO Tower Crane;OSHA-30;CDL-A",
        "verify": "Heavy equipment operator for tower crane rigging and GPS machine control grading",
    },
)

#: the inbox burst: (type, priority, contract index, role, count, body) - the reference's mix
#: of 2 urgent emails, 1 high email, 1 high sms, 1 medium sms, 1 medium email
INBOX: tuple[tuple[str, str, int, str, int, str], ...] = (
    ("email", "urgent", 0, "Forklift Operator", 4, "URGENT: we need 4 forklift operators at the Milwaukee distribution center for tonight's shift."),
    ("email", "urgent", 1, "CNC Operator", 3, "Urgent - 3 CNC operators needed in Indianapolis from tomorrow 6am, second shift coverage."),
    ("email", "high", 2, "Heavy Equipment Operator", 2, "Two heavy equipment operators (excavator) for the Chicago construction site next week please."),
    ("sms", "high", 0, "Warehouse Associate", 2, "need 2 warehouse associates milwaukee asap"),
    ("sms", "medium", 2, "Material Handler", 1, "one material handler needed chicago site monday"),
    ("email", "medium", 1, "Warehouse Associate", 5, "Could you line up 5 warehouse associates for the Indianapolis plant next month?"),
)


@dataclass(frozen=True)
class Thresholds:
    """The reference's health thresholds (contract 15.2)."""

    same_role_max: float = 0.30
    cycling: float = 0.50
    diff_role_max: float = 0.10
    determinism_good: float = 0.95
    determinism_acceptable: float = 0.80


def jaccard(a: list[str] | set[str], b: list[str] | set[str]) -> float:
    """|A & B| / |A | B| of two id sets; two empty sets are identical (1.0)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _jaccard_check(values: list[float], bar: float) -> dict[str, Any]:
    mean = _mean(values)
    return {
        "value": mean,
        "n": len(values),
        "max": round(max(values), 4) if values else None,
        "bar": f"< {bar}",
        "status": "no data" if mean is None else "ok" if mean < bar else "high",
        "pass": mean is not None and mean < bar,
    }


def evaluate_health(
    same_role: list[float],
    diff_role: list[float],
    determinism: list[float],
    *,
    fresh_surfaced: int,
    fresh_added: int,
    swap: dict[str, Any] | None,
    inbox_accepted: int,
    inbox_sent: int,
    phase_errors: dict[str, str],
    thresholds: Thresholds = Thresholds(),
) -> dict[str, Any]:
    """Every check with its value, its bar and whether it passed, and the verdict."""
    t = thresholds
    checks: dict[str, dict[str, Any]] = {}
    same = _jaccard_check(same_role, t.same_role_max)
    if same["value"] is not None and same["value"] > t.cycling:
        same["status"] = "cycling"
    checks["same_role_jaccard"] = same
    checks["diff_role_jaccard"] = _jaccard_check(diff_role, t.diff_role_max)
    det = _mean(determinism)
    checks["determinism"] = {
        "value": det,
        "n": len(determinism),
        "min": round(min(determinism), 4) if determinism else None,
        "bar": f">= {t.determinism_good}",
        "status": (
            "no data"
            if det is None
            else "good"
            if det >= t.determinism_good
            else "acceptable"
            if det >= t.determinism_acceptable
            else "unstable"
        ),
        "pass": det is not None and det >= t.determinism_good,
    }
    checks["fresh_resume"] = {
        "value": f"{fresh_surfaced}/{fresh_added}",
        "bar": "every fresh resume in the top K of the search that follows its add",
        "pass": fresh_added > 0 and fresh_surfaced == fresh_added,
    }
    swap_ok = bool(swap) and swap.get("overlap") == 0 and swap.get("replacement") == swap.get("expected_replacement")
    checks["swap"] = {
        "value": None if not swap else f"overlap {swap.get('overlap')}, replacement {swap.get('replacement')}/{swap.get('expected_replacement')}",
        "bar": "no excluded worker comes back; a full replacement pool",
        "pass": swap_ok,
    }
    checks["inbox"] = {
        "value": f"{inbox_accepted}/{inbox_sent}",
        "bar": "every message accepted",
        "pass": inbox_sent > 0 and inbox_accepted == inbox_sent,
    }
    checks["phases"] = {
        "value": f"{len(PHASES) - len(phase_errors)}/{len(PHASES)} ran",
        "bar": "every phase runs to its end",
        "pass": not phase_errors,
    }
    failed = [name for name, c in checks.items() if not c["pass"]]
    verdict = "PASS: every check passed" if not failed else f"FAIL: {', '.join(failed)}"
    return {"checks": checks, "verdict": verdict, "pass": not failed}


@dataclass
class Event:
    """One observation: a search, a record, an add, an inbox message or an LLM call."""

    hour: int
    phase: str
    kind: str
    coordinator: str = ""
    contract: str = ""
    query: str = ""
    role: str = ""
    playbook: str = ""
    ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    top1_distance: float | None = None
    expected: str = ""
    expected_rank: int | None = None
    cross_demand: list[str] = field(default_factory=list)
    detail: str = ""
    ms: float = 0.0


@dataclass
class Approval:
    contract: str
    coordinator: str
    role: str
    query_text: str
    answer_id: str
    answer_corpus: str
    cold_rank: int


@dataclass
class MultiCoordRun:
    url: str
    k: int
    corpora: list[str]
    llm: str
    token: str
    playbooks: dict[str, str]
    swap_size: int
    thresholds: Thresholds = field(default_factory=Thresholds)
    contracts: tuple[Contract, ...] = CONTRACTS
    events: list[Event] = field(default_factory=list)
    approvals: list[Approval] = field(default_factory=list)
    fresh_ids: list[str] = field(default_factory=list)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    phase_errors: dict[str, str] = field(default_factory=dict)
    inbox_sent: int = 0
    inbox_accepted: int = 0
    elapsed_s: float = 0.0

    # -- the figures ----------------------------------------------------------------------

    def _baseline(self) -> dict[tuple[str, str], list[str]]:
        return {(e.contract, e.role): e.ids for e in self.events if e.kind == "matrix.search.baseline"}

    def jaccard_pairs(self) -> tuple[list[float], list[float]]:
        """(same role across contracts, different roles within one contract) over the baseline."""
        base = self._baseline()
        same = [
            jaccard(base[(a.name, role)], base[(b.name, role)])
            for role in SHARED_ROLES
            for a, b in itertools.combinations(self.contracts, 2)
            if (a.name, role) in base and (b.name, role) in base
        ]
        diff = [
            jaccard(base[(c.name, r1)], base[(c.name, r2)])
            for c in self.contracts
            for r1, r2 in itertools.combinations(_roles(c), 2)
            if (c.name, r1) in base and (c.name, r2) in base
        ]
        return same, diff

    def determinism(self) -> list[float]:
        base = self._baseline()
        return [
            jaccard(base[(e.contract, e.role)], e.ids)
            for e in self.events
            if e.kind == "reissue_retrieval_only" and (e.contract, e.role) in base
        ]

    def health(self) -> dict[str, Any]:
        same, diff = self.jaccard_pairs()
        fresh = [e for e in self.events if e.kind == "fresh_verify"]
        return evaluate_health(
            same,
            diff,
            self.determinism(),
            fresh_surfaced=sum(e.expected_rank is not None for e in fresh),
            fresh_added=len(self.fresh_ids),
            swap=self.phases.get("swap", {}).get("figures"),
            inbox_accepted=self.inbox_accepted,
            inbox_sent=self.inbox_sent,
            phase_errors=self.phase_errors,
            thresholds=self.thresholds,
        )

    def observations(self) -> dict[str, int]:
        counts = Counter(e.kind for e in self.events)
        counts.update(f"phase.{p}" for p in self.phases)
        return dict(sorted(counts.items()))

    def summary(self) -> dict[str, Any]:
        health = self.health()
        played = [e for e in self.events if e.playbook and e.expected]
        return {
            "verdict": health["verdict"],
            "health": health["checks"],
            "observations": sum(self.observations().values()),
            "recorded_top1": sum(e.expected_rank == 1 for e in played),
            "recorded_in_top_k": sum(e.expected_rank is not None for e in played),
            "playbook_searches": len(played),
            "cross_demand_answers": sum(len(e.cross_demand) for e in self.events),
            "fresh_seen_later": sum(any(i in self.fresh_ids for i in e.ids) for e in self.events if e.hour > PHASES["fresh_resume"]),
        }


def _roles(contract: Contract) -> tuple[str, ...]:
    return (*SHARED_ROLES, contract.specialist)


def demand_text(contract: Contract, role: str) -> str:
    return f"{role} in {contract.city}, {contract.state}"


def surge_text(contract: Contract, role: str, n: int) -> str:
    return f"Surge order: {n} more {role} workers needed this week, {contract.city} {contract.industry} site"


def template_paraphrase(contract: Contract, role: str) -> str:
    """The paraphrase used without an LLM: another coordinator's wording of the demand."""
    return f"Looking for an experienced {role.lower()} around {contract.city} for our {contract.industry} work"


class _Formatter(string.Formatter):
    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        return kwargs.get(key, "") if isinstance(key, str) else super().get_value(key, args, kwargs)


def render(template: str, row: dict[str, Any]) -> str:
    """``template`` with ``{column}`` placeholders filled from ``row`` (absent -> empty);
    ValueError for a template that cannot render (an unclosed brace, ``{}``, a bad spec)."""
    try:
        return _Formatter().format(template, **row)
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"text template {template!r} does not render a worker row: {exc}") from None


class _Harness:
    def __init__(self, stack: StackClient, run: MultiCoordRun, text_template: str, progress: Any) -> None:
        self.stack = stack
        self.run = run
        self.text_template = text_template
        self.progress = progress or (lambda text, done=False: None)
        #: contract name -> the coordinator who holds it now
        self.owner = {c.name: c.coordinator for c in run.contracts}
        self.phase = ""

    # -- steps ----------------------------------------------------------------------------

    def _approval(self, contract: str, role: str) -> Approval | None:
        for a in reversed(self.run.approvals):
            if a.contract == contract and a.role == role:
                return a
        return None

    async def search(
        self,
        kind: str,
        contract: Contract,
        query: str,
        role: str,
        *,
        playbook: str = "",
        k: int | None = None,
        exclude: list[str] | None = None,
        expected: str = "",
    ) -> tuple[Event, list[dict[str, Any]]]:
        coordinator = self.owner[contract.name]
        self.progress(f"[hour {PHASES[self.phase]:2d}] {self.phase}: {coordinator} searches {query!r}")
        body: dict[str, Any] = {"query_text": query, "corpora": self.run.corpora, "k": k or self.run.k}
        if exclude:
            body["exclude_ids"] = exclude
        if playbook:
            body.update(use_playbook=True, playbook_corpus=playbook, query_role=role)
        t0 = time.perf_counter()
        answer = await self.stack.post("/matrix/search", body)
        results = answer.get("results") or []
        event = Event(
            PHASES[self.phase],
            self.phase,
            kind,
            coordinator,
            contract.name,
            query,
            role,
            playbook,
            ids=[r["id"] for r in results],
            sources=[r.get("source", "") for r in results],
            top1_distance=float(results[0]["distance"]) if results else None,
            expected=expected,
            ms=round((time.perf_counter() - t0) * 1000.0, 2),
        )
        if expected and expected in event.ids:
            event.expected_rank = event.ids.index(expected) + 1
        if playbook:
            # another demand's approved answer brought in (or up) by the playbook
            own = {a.answer_id for a in self.run.approvals if a.contract == contract.name and a.role == role}
            others = {a.answer_id for a in self.run.approvals} - own
            event.cross_demand = [r["id"] for r in results if r.get("source") in ("boost", "inject") and r["id"] in others]
        self.run.events.append(event)
        return event, results

    def observe(self, kind: str, contract: Contract | None = None, detail: str = "", **extra: Any) -> Event:
        event = Event(
            PHASES[self.phase],
            self.phase,
            kind,
            self.owner[contract.name] if contract else "",
            contract.name if contract else "",
            detail=detail,
            **extra,
        )
        self.run.events.append(event)
        return event

    async def bulk_copy(self, approvals: list[Approval], coordinator: str) -> int:
        """Copy approvals into ``coordinator``'s playbook (matrixd's bulk record)."""
        entries = [
            {"query_text": a.query_text, "answer_id": a.answer_id, "answer_corpus": a.answer_corpus, "score": 1.0, "role": a.role, "tags": [self.run.token, a.contract]}
            for a in approvals
        ]
        answer = await self.stack.post("/matrix/playbooks/bulk", {"playbook_corpus": self.run.playbooks[coordinator], "entries": entries})
        if answer.get("failed"):
            errors = [r.get("error") for r in answer.get("results", []) if r.get("error")]
            raise HarnessError(f"bulk record into {self.run.playbooks[coordinator]}: {answer['failed']} failed ({errors[:2]})")
        self.observe("playbook.bulk", detail=f"{len(entries)} approvals into {self.run.playbooks[coordinator]}")
        return int(answer.get("recorded", 0))

    def _contract(self, name: str) -> Contract:
        return next(c for c in self.run.contracts if c.name == name)

    async def _expected_search(self, kind: str, contract: Contract, query: str, role: str) -> Event:
        """A search with the contract's owner's playbook, expecting the contract's approval for ``role``."""
        approval = self._approval(contract.name, role)
        event, _ = await self.search(
            kind, contract, query, role, playbook=self.run.playbooks[self.owner[contract.name]], expected=approval.answer_id if approval else ""
        )
        return event

    # -- the phases -----------------------------------------------------------------------

    async def baseline(self) -> dict[str, Any]:
        recorded = discoveries = 0
        for c in self.run.contracts:
            for role in _roles(c):
                query = demand_text(c, role)
                _, results = await self.search("matrix.search.baseline", c, query, role, exclude=self.run.fresh_ids)
                if not results:
                    raise HarnessError(f"the baseline search {query!r} returned nothing (is the corpus empty?)")
                rank = _approve(results, role, c.city)
                chosen = results[rank]
                await self.stack.post(
                    "/matrix/playbooks/record",
                    {
                        "query_text": query,
                        "answer_id": chosen["id"],
                        "answer_corpus": chosen["corpus"],
                        "score": 1.0,
                        "role": role,
                        "tags": [self.run.token, c.name],
                        "playbook_corpus": self.run.playbooks[c.coordinator],
                    },
                )
                self.run.approvals.append(Approval(c.name, c.coordinator, role, query, chosen["id"], chosen["corpus"], rank + 1))
                self.observe("playbook.record", c, detail=f"{chosen['id']} (cold rank {rank + 1}) for {query!r}")
                recorded += 1
                discoveries += rank > 0
        same, diff = self.run.jaccard_pairs()
        return {
            "searches": recorded,
            "approvals": recorded,
            "approvals_below_top1": discoveries,
            "same_role_jaccard": _mean(same),
            "diff_role_jaccard": _mean(diff),
        }

    async def fresh_resume(self) -> dict[str, Any]:
        corpus = self.run.corpora[0]
        rows = []
        for i, (c, profile) in enumerate(zip(self.run.contracts, FRESH_PROFILES, strict=False)):
            rows.append(
                {
                    "worker_id": self.run.fresh_ids[i],
                    "name": profile["name"],
                    "role": c.specialist,
                    "city": c.city,
                    "state": c.state,
                    "certifications": profile["certifications"],
                    "skills": profile["skills"],
                    "shift": "Day",
                    "availability": "Available",
                    "years_experience": 7,
                    "rating": 4.8,
                }
            )
        texts = [render(self.text_template, r) for r in rows]
        self.progress(f"[hour {PHASES[self.phase]:2d}] fresh_resume: embedding and adding {len(rows)} resumes to {corpus}")
        embedded = await self.stack.post("/embed", {"texts": texts})
        vectors = embedded.get("vectors") or []
        if len(vectors) != len(rows):
            raise HarnessError(f"/embed answered {len(vectors)} vectors for {len(rows)} texts")
        items = [{"id": r["worker_id"], "vector": v, "metadata": r} for r, v in zip(rows, vectors, strict=True)]
        await self.stack.post(f"/vectors/index/{corpus}/add", {"items": items})
        self.observe("vectors.add", detail=f"{len(items)} fresh resumes into {corpus}")
        ranks = []
        for c, profile, row in zip(self.run.contracts, FRESH_PROFILES, rows, strict=False):
            query = f"{profile['verify']} in {c.city}"
            event, _ = await self.search(
                "fresh_verify", c, query, c.specialist, playbook=self.run.playbooks[self.owner[c.name]], expected=row["worker_id"]
            )
            ranks.append(event.expected_rank)
        return {
            "added": len(rows),
            "corpus": corpus,
            "surfaced": sum(r is not None for r in ranks),
            "ranks": ranks,
            "texts": texts,
        }

    async def inbox_burst(self) -> dict[str, Any]:
        roles = sorted({r for c in self.run.contracts for r in _roles(c)})
        rows = []
        for typ, priority, ci, role, count, body in INBOX:
            c = self.run.contracts[ci]
            coordinator = self.owner[c.name]
            self.run.inbox_sent += 1
            row: dict[str, Any] = {"type": typ, "priority": priority, "coordinator": coordinator, "expected_role": role}
            self.progress(f"[hour {PHASES[self.phase]:2d}] inbox_burst: {typ} ({priority}) to {coordinator}")
            message = await self.stack.post(
                "/observer/inbox",
                {"type": typ, "priority": priority, "sender": f"client@{c.name}.example", "subject": f"{c.name} staffing", "body": body, "tag": coordinator},
            )
            if message.get("priority") != priority:
                raise HarnessError(f"/observer/inbox recorded priority {message.get('priority')!r}, sent {priority!r}")
            self.run.inbox_accepted += 1
            self.observe("observer.inbox.record", c, detail=f"{typ} {priority}: {message.get('id', '')}")
            if self.run.llm:
                parsed = await self.stack.chat_json(self.run.llm, parse_prompt(body, roles), 0.0)
                self.observe("llm.parse_demand", c, detail=str(parsed)[:200])
                parsed_role = str(parsed.get("role") or "")
                parsed_count = parsed.get("count")
            else:
                parsed_role, parsed_count = role, count
            row.update(parsed_role=parsed_role, parsed_count=parsed_count)
            row["parsed_ok"] = role_equal(parsed_role, role) and parsed_count == count
            approval = self._approval(c.name, role)
            event, results = await self.search(
                "matrix.search.inbox",
                c,
                body,
                parsed_role,
                playbook=self.run.playbooks[coordinator],
                expected=approval.answer_id if approval else "",
            )
            row["top1"] = event.ids[0] if event.ids else ""
            row["top1_distance"] = event.top1_distance
            if not results:
                row["top1_ok"] = False
            elif self.run.llm:
                rating = (await rate(self.stack, self.run.llm, body, results[:1]))[0]
                self.observe("llm.judge_top1", c, detail=f"{results[0]['id']}: {rating}")
                row["top1_rating"] = rating
                row["top1_ok"] = rating >= 3
            else:
                meta = results[0].get("metadata")
                row["top1_ok"] = isinstance(meta, dict) and role_equal(str(meta.get("role", "")), role)
            rows.append(row)
        distances = [r["top1_distance"] for r in rows if r["top1_distance"] is not None]
        return {
            "sent": self.run.inbox_sent,
            "accepted": self.run.inbox_accepted,
            "parsed_ok": sum(r["parsed_ok"] for r in rows),
            "top1_ok": sum(r["top1_ok"] for r in rows),
            "judge": self.run.llm or "metadata role",
            "top1_distance_range": [round(min(distances), 4), round(max(distances), 4)] if distances else None,
            "messages": rows,
        }

    async def surge(self) -> dict[str, Any]:
        events = []
        for c in self.run.contracts:
            for n, role in enumerate(_roles(c), start=3):
                events.append(await self._expected_search("matrix.search.surge", c, surge_text(c, role, n), role))
        return _recall(events)

    async def swap(self) -> dict[str, Any]:
        c = self.run.contracts[0]
        role = SHARED_ROLES[0]
        query = demand_text(c, role)
        playbook = self.run.playbooks[self.owner[c.name]]
        size = self.run.swap_size
        total = 0
        for corpus in self.run.corpora:
            info = await self.stack.get(f"/vectors/index/{corpus}")
            total += int(info.get("count", 0))
        orig, _ = await self.search("swap_orig", c, query, role, playbook=playbook, k=size)
        replace, _ = await self.search("swap_replace", c, query, role, playbook=playbook, k=size, exclude=orig.ids)
        expected_ids = min(size, total)
        return {
            "size": size,
            "corpus_items": total,
            "original": len(orig.ids),
            "expected_original": expected_ids,
            "replacement": len(replace.ids),
            "expected_replacement": min(size, total - len(orig.ids)),
            "overlap": len(set(orig.ids) & set(replace.ids)),
            "jaccard": round(jaccard(orig.ids, replace.ids), 4),
        }

    async def merge(self) -> dict[str, Any]:
        alpha, beta = self.run.contracts[0], self.run.contracts[1]
        receiver = self.owner[alpha.name]
        moved = [a for a in self.run.approvals if a.contract == beta.name]
        copied = await self.bulk_copy(moved, receiver)
        self.owner[beta.name] = receiver
        carried = [await self._expected_search("matrix.search.merge", beta, demand_text(beta, r), r) for r in _roles(beta)]
        kept = [await self._expected_search("matrix.search.merge", alpha, demand_text(alpha, r), r) for r in _roles(alpha)[:2]]
        return {"copied": copied, "into": self.run.playbooks[receiver], "carried": _recall(carried), "kept": _recall(kept)}

    async def handover(self) -> dict[str, Any]:
        gamma = self.run.contracts[2]
        giver = self.owner[gamma.name]
        receiver = self.run.contracts[1].coordinator  # bob, free since the merge
        moved = [a for a in self.run.approvals if a.contract == gamma.name]
        copied = await self.bulk_copy(moved, receiver)
        self.owner[gamma.name] = receiver
        verbatim = [await self._expected_search("handover_verbatim", gamma, demand_text(gamma, r), r) for r in _roles(gamma)]
        paraphrased = []
        for role in _roles(gamma):
            if self.run.llm:
                text = await paraphrase(self.stack, self.run.llm, demand_text(gamma, role))
                self.observe("llm.paraphrase", gamma, detail=text)
            else:
                text = template_paraphrase(gamma, role)
            paraphrased.append(await self._expected_search("handover_paraphrase", gamma, text, role))
        return {
            "from": giver,
            "to": receiver,
            "copied": copied,
            "verbatim": _recall(verbatim),
            "paraphrase": _recall(paraphrased),
            "paraphrases": [e.query for e in paraphrased],
        }

    async def split(self) -> dict[str, Any]:
        beta = self.run.contracts[1]
        giver = self.owner[beta.name]
        receiver = self.run.contracts[2].coordinator  # carol, free since the handover
        moved = [a for a in self.run.approvals if a.contract == beta.name]
        copied = await self.bulk_copy(moved, receiver)
        self.owner[beta.name] = receiver
        events = [await self._expected_search("split", beta, demand_text(beta, r), r) for r in _roles(beta)]
        return {"from": giver, "to": receiver, "copied": copied, **_recall(events)}

    async def reissue(self) -> dict[str, Any]:
        warm = []
        for c in self.run.contracts:
            for role in _roles(c):
                query = demand_text(c, role)
                warm.append(await self._expected_search("reissue", c, query, role))
                await self.search("reissue_retrieval_only", c, query, role, exclude=self.run.fresh_ids)
        det = self.run.determinism()
        return {
            "owners": dict(self.owner),
            **_recall(warm),
            "determinism": _mean(det),
            "determinism_min": round(min(det), 4) if det else None,
        }


def _recall(events: list[Event]) -> dict[str, Any]:
    return {
        "searches": len(events),
        "recorded_top1": sum(e.expected_rank == 1 for e in events),
        "recorded_in_top_k": sum(e.expected_rank is not None for e in events),
        "sources": dict(Counter(e.sources[e.expected_rank - 1] for e in events if e.expected_rank)),
        "cross_demand": sum(len(e.cross_demand) for e in events),
    }


def _approve(results: list[dict[str, Any]], role: str, city: str) -> int:
    """The coordinator's pick (deterministic, no model): among the workers of the role in the
    contract's city, the best rated (metadata ``rating``; the first on a tie or without
    ratings); else the first worker of the role; else the top-1. A pick retrieval did not
    rank first is what the playbook must bring back later."""

    def meta(r: dict[str, Any]) -> dict[str, Any]:
        m = r.get("metadata")
        return m if isinstance(m, dict) else {}

    def rating(r: dict[str, Any]) -> float:
        value = meta(r).get("rating")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("-inf")

    of_role = [i for i, r in enumerate(results) if role_equal(str(meta(r).get("role", "")), role)]
    local = [i for i in of_role if meta(results[i]).get("city") == city]
    if local:
        return max(local, key=lambda i: (rating(results[i]), -i))
    return of_role[0] if of_role else 0


def parse_prompt(body: str, roles: list[str]) -> str:
    return (
        "You read messages sent to a staffing coordinator. Extract the demand.\n"
        f"Roles: {', '.join(roles)}\n"
        f"Message: {body}\n"
        'Answer JSON only: {"role": "one of the roles", "count": integer, "city": "..."}'
    )


async def run_multi_coord(
    url: str,
    *,
    k: int = 8,
    corpora: list[str] | None = None,
    llm: str = "",
    swap_size: int = 200,
    text_template: str = DEFAULT_TEXT_TEMPLATE,
    contracts: tuple[Contract, ...] = CONTRACTS,
    thresholds: Thresholds = Thresholds(),
    run_token: str = "",
    token: str = "",
    timeout: float = 120.0,
    progress: Any = None,
) -> MultiCoordRun:
    """Run the nine phases against the gateway at ``url``; ``llm`` "" = no LLM calls.

    A phase that fails is reported (``phase_errors``) and the run goes on with the next."""
    if len(contracts) != 3 or len({c.coordinator for c in contracts}) != 3:
        raise ValueError("multi-coord needs three contracts held by three coordinators")
    if not 1 <= k <= 1000 or not 1 <= swap_size <= 1000:
        raise ValueError("k and swap_size must be 1..1000 (matrixd's max_k)")
    render(text_template, {"role": "Welder", "city": "Milwaukee", "rating": 4.5, "years_experience": 3})
    run_token = run_token or secrets.token_hex(4)
    run = MultiCoordRun(
        url,
        k,
        corpora or ["workers"],
        llm,
        run_token,
        {c.coordinator: f"playbook_{c.coordinator}_{run_token}" for c in contracts},
        swap_size,
        thresholds,
        contracts,
    )
    run.fresh_ids = [f"fresh-{run_token}-{i + 1}" for i in range(min(len(contracts), len(FRESH_PROFILES)))]
    start = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        harness = _Harness(StackClient(session, url, token), run, text_template, progress)
        for phase, hour in PHASES.items():
            harness.phase = phase
            t0 = time.monotonic()
            try:
                figures = await getattr(harness, phase)()
                error = ""
            except HarnessError as exc:
                figures, error = {}, str(exc)
                run.phase_errors[phase] = error
            run.phases[phase] = {"hour": hour, "seconds": round(time.monotonic() - t0, 3), "figures": figures, "error": error}
            if progress:
                progress(f"[hour {hour:2d}] {phase}: {_phase_line(phase, figures, error)}", done=True)
    run.elapsed_s = round(time.monotonic() - start, 3)
    return run


def _phase_line(phase: str, f: dict[str, Any], error: str) -> str:
    if error:
        return f"FAILED: {error}"
    if phase == "baseline":
        return f"{f['searches']} searches, {f['approvals_below_top1']} approvals below top-1; same-role J {f['same_role_jaccard']}, diff-role J {f['diff_role_jaccard']}"
    if phase == "fresh_resume":
        return f"{f['surfaced']}/{f['added']} fresh resumes surfaced (ranks {f['ranks']})"
    if phase == "inbox_burst":
        return f"{f['accepted']}/{f['sent']} accepted, {f['parsed_ok']} parsed to the right role, top-1 ok {f['top1_ok']}"
    if phase == "swap":
        return f"{f['original']} -> {f['replacement']} workers, overlap {f['overlap']}"
    if phase in ("merge",):
        return f"carried {f['carried']['recorded_top1']}/{f['carried']['searches']} top-1, kept {f['kept']['recorded_top1']}/{f['kept']['searches']}"
    if phase == "handover":
        return f"verbatim {f['verbatim']['recorded_top1']}/{f['verbatim']['searches']}, paraphrase {f['paraphrase']['recorded_top1']}/{f['paraphrase']['searches']} top-1"
    if phase == "reissue":
        return f"recorded top-1 {f['recorded_top1']}/{f['searches']}, determinism {f['determinism']}"
    return f"recorded top-1 {f['recorded_top1']}/{f['searches']} (in top K {f['recorded_in_top_k']})"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(run: MultiCoordRun) -> str:
    s = run.summary()
    lines = [
        f"# multi_coord against {run.url}",
        "",
        f"K {run.k}, corpora {', '.join(run.corpora)}, LLM {run.llm or 'none (template parse, metadata judge, template paraphrase)'}, "
        f"run token `{run.token}`, {run.elapsed_s:.1f} s, {s['observations']} observations",
        "playbooks: " + ", ".join(f"{c} `{p}`" for c, p in run.playbooks.items()),
        "",
        f"**{s['verdict']}**",
        "",
        "| check | value | n | bar | status |",
        "|---|---|---|---|---|",
    ]
    for name, c in s["health"].items():
        status = c.get("status", "pass" if c["pass"] else "fail")
        lines.append(f"| {name} | {_fmt(c['value'])} | {c.get('n', '')} | {c['bar']} | {status}{'' if c['pass'] else ' (FAIL)'} |")
    lines += ["", "| hour | phase | result | seconds |", "|---|---|---|---|"]
    for phase, p in run.phases.items():
        lines.append(f"| {p['hour']} | {phase} | {_phase_line(phase, p['figures'], p['error']).replace('|', '/')} | {p['seconds']} |")
    lines += [
        "",
        f"Playbook searches with an approval to bring back: {s['recorded_top1']}/{s['playbook_searches']} top-1, "
        f"{s['recorded_in_top_k']} in the top K; answers of another demand brought by the playbook: {s['cross_demand_answers']}; "
        f"later searches showing a fresh resume: {s['fresh_seen_later']}.",
        "",
        "| observation | count |",
        "|---|---|",
    ]
    lines += [f"| {kind} | {n} |" for kind, n in run.observations().items()]
    lines += ["", "| hour | kind | coordinator | query | top 3 | expected (rank) |", "|---|---|---|---|---|---|"]
    for e in run.events:
        if e.ids or e.query:
            top = ", ".join(f"{i} ({src})" for i, src in zip(e.ids[:3], e.sources[:3], strict=False))
            exp = f"{e.expected} ({e.expected_rank or '-'})" if e.expected else ""
            lines.append(f"| {e.hour} | {e.kind} | {e.coordinator} | {e.query.replace('|', '/')} | {top} | {exp} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="lakehouse reality multi-coord",
        description="Three coordinators, three contracts, own playbooks: the nine phases of contract 15.2 and their health thresholds.",
        epilog=(
            "example: lakehouse reality multi-coord --url http://127.0.0.1:3110 --llm qwen2.5:latest\n"
            "         lakehouse reality multi-coord --no-llm --corpora workers,ethereal_workers\n"
            "         lakehouse reality multi-coord --text-template '{role} in {city}, {state}, {shift} shift. Certifications: {certifications}'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stack_args(parser)
    parser.add_argument("--corpora", default="workers", help="comma-separated corpora; fresh resumes go into the first (default: %(default)s)")
    parser.add_argument("-k", type=int, default=8, help="results per search (default: %(default)s, the reference's K)")
    parser.add_argument("--llm", help=f"model for the inbox parse, the top-1 judge and the handover paraphrases, through chatd (default: $JUDGE_MODEL, else [models].local_judge, else {DEFAULT_LLM})")
    parser.add_argument("--no-llm", action="store_true", help="no LLM: the inbox demands as written, the top-1's role as the judge, template paraphrases")
    parser.add_argument("--config", help="lakehouse.toml, for [models].local_judge")
    parser.add_argument("--swap-size", type=int, default=200, help="workers swapped out at hour 24 (default: %(default)s)")
    parser.add_argument("--text-template", default=DEFAULT_TEXT_TEMPLATE, help="how the corpus renders a worker row for embedding: the fresh resumes must be written the same way (default: %(default)r)")
    args = parser.parse_args(argv)
    if not 1 <= args.k <= 1000 or not 1 <= args.swap_size <= 1000:
        parser.error("-k and --swap-size must be 1..1000 (matrixd's max_k)")
    corpora = [c for c in args.corpora.split(",") if c]
    if not corpora:
        parser.error("--corpora names no corpus")
    try:
        render(args.text_template, {"role": "Welder", "city": "Milwaukee", "rating": 4.5, "years_experience": 3})
    except ValueError as exc:
        parser.error(str(exc))
    llm = "" if args.no_llm else choose_model(args.llm, args.config, DEFAULT_LLM)
    show, clear = terminal_progress()
    tty = sys.stderr.isatty()

    def progress(text: str, done: bool = False) -> None:
        show(text)
        if done and tty:
            print(file=sys.stderr)

    run = asyncio.run(
        run_multi_coord(
            args.url,
            k=args.k,
            corpora=corpora,
            llm=llm,
            swap_size=args.swap_size,
            text_template=args.text_template,
            token=args.token,
            timeout=args.timeout,
            progress=progress,
        )
    )
    clear()
    s = run.summary()
    data = {"name": NAME, **asdict(run), "observations_by_kind": run.observations(), "summary": s}
    json_path, md_path = write_report(args.out, NAME, data, markdown(run))
    print(s["verdict"])
    for name, c in s["health"].items():
        print(f"  {'ok  ' if c['pass'] else 'FAIL'} {name:<18} {_fmt(c['value'])}  ({c['bar']})")
    print(f"wrote {json_path} and {md_path}")
    return 0 if s["health"] and all(c["pass"] for c in s["health"].values()) else 1

