"""``lakehouse demo``: the staffing co-pilot's retrieval loop, end to end, as a short story.

Everything goes through the gateway's ``/v1`` routes, as a client of the stack would:

1. generate a synthetic roster (:mod:`lakehouse.roster`);
2. ingest it as a dataset (ingestd: CSV -> Parquet -> object store -> catalog);
3. count workers by role in SQL (queryd);
4. build a vector corpus from the dataset (matrixd's corpus builder: SQL -> embedd -> vectord);
5. search it with a coordinator's demand (matrixd);
6. record the coordinator's approved answer in her playbook (and another coordinator's in his);
7. search a rephrased demand with her playbook: the approved answer comes back on top, by
   ``inject`` or ``boost`` (whichever the distances give; the story says which and why);
8. search the same words with the other coordinator's playbook: the answer is not injected
   or boosted there (playbooks are isolated per corpus).

:func:`run_story` does this against a gateway URL and returns a :class:`DemoOutcome` (counts,
hits, the recorded id, sources, isolation, trace-id round trip), so tests check outcomes
rather than text; :func:`main` is the CLI, which starts its own stack unless ``--url`` names a
running one.

The texts of :class:`Scenario` were measured against the built-in ``hash`` embedder (a
bag of words and letter groups, not a language model): the paraphrase lies 0.176 from the
demand, inside the reference's inject window (0.20) and the one matrixd calibrates for this
embedder, and plain retrieval ranks the approved worker 8th for it, so the story shows an
``inject``; the story reports the windows matrixd actually used (0.57 inject, calibrated, for
``hash``). A looser paraphrase ("forklift drivers, OSHA 30 certified, Milwaukee nights") lies
0.49 away with this embedder: outside the reference's window, inside the calibrated one; when
it lies outside the window in use, the story says so rather than pretend. With another
embedder (``ollama``) the distances differ and the story reports what actually happened.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import numpy as np

from .clients.base import UpstreamError
from .clients.catalogd import CatalogdClient
from .clients.embedd import EmbeddClient
from .clients.ingestd import IngestdClient
from .clients.matrixd import MatrixdClient
from .clients.queryd import QuerydClient
from .clients.vectord import VectordClient
from .config import Config, load_config
from .roster import write_roster
from .web import TRACE_HEADER, mint_trace_id

__all__ = [
    "Scenario",
    "Hit",
    "Search",
    "DemoOutcome",
    "DemoError",
    "Narrator",
    "run_story",
    "run_demo",
    "choose_approved",
    "main",
]

#: the reference's fixed windows (docs/matrix.md): a playbook hit farther than BOOST_WINDOW is
#: ignored; one farther than INJECT_WINDOW can boost a retrieved answer but never inject one.
#: The story's searches set no threshold, so matrixd calibrates its windows to the embedder;
#: the story asks matrixd which it used and reports those (DemoOutcome.inject_window).
BOOST_WINDOW = 0.50
INJECT_WINDOW = 0.20
#: the approval score: 1.0 halves a distance (the cap of the boost arithmetic)
APPROVAL_SCORE = 1.0
#: the story's paragraphs are wrapped to this many columns
WIDTH = 92
#: tables and every other line of the story fit this many columns (a terminal of 100)
TABLE_WIDTH = 100
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class DemoError(RuntimeError):
    """A step of the story failed; the message names the step and the cause.

    ``service`` is the daemon that failed, when known (its log tail helps).
    """

    def __init__(self, message: str, service: str | None = None) -> None:
        super().__init__(message)
        self.service = service


@dataclass(frozen=True)
class Scenario:
    """The story's inputs. The defaults were measured for the ``hash`` embedder (module doc)."""

    roster_size: int = 2000
    seed: int = 1
    #: the dataset and the corpus built from it
    dataset: str = "workers"
    #: how a worker row becomes the text that is embedded (matrixd's text_template)
    text_template: str = (
        "{role} in {city}, {state}, {shift} shift. Certifications: {certifications}"
    )
    #: alice's demand, and what it asks for (she approves the first hit that matches all)
    demand: str = "need forklift operators with OSHA-30 in Milwaukee, night shift"
    role: str = "Forklift Operator"
    city: str = "Milwaukee"
    shift: str = "Night"
    certification: str = "OSHA-30"
    #: alice's later rephrasing, and a looser one reported for honesty's sake
    paraphrase: str = "We need night-shift forklift operators, OSHA-30 certified, in Milwaukee"
    loose_paraphrase: str = "forklift drivers, OSHA 30 certified, Milwaukee nights"
    #: bob's own demand (his playbook holds his approval, not alice's)
    other_demand: str = "need CNC operators in Chicago, day shift"
    other_role: str = "CNC Operator"
    #: results shown per search
    k: int = 5
    alice_playbook: str = "playbook_alice"
    bob_playbook: str = "playbook_bob"

    def validate(self) -> None:
        """ValueError for a scenario the story cannot run."""
        if not 1 <= self.roster_size <= 1_000_000:
            raise ValueError(f"roster size must be 1..1,000,000, got {self.roster_size}")
        for name in ("dataset", "alice_playbook", "bob_playbook"):
            value = getattr(self, name)
            if not _IDENT.match(value):
                raise ValueError(
                    f"{name} must be a plain identifier (letters, digits, _), got {value!r}"
                )
        if len({self.dataset, self.alice_playbook, self.bob_playbook}) != 3:
            raise ValueError("the dataset and the two playbooks need three different names")
        if not 1 <= self.k <= 50:
            raise ValueError(f"k must be 1..50, got {self.k}")


@dataclass(frozen=True)
class Hit:
    """One row of a search answer, with the worker fields the story shows."""

    rank: int
    id: str
    distance: float
    source: str
    corpus: str = ""
    name: str = ""
    role: str = ""
    city: str = ""
    shift: str = ""
    certifications: tuple[str, ...] = ()

    @classmethod
    def from_result(cls, rank: int, result: dict[str, Any]) -> Hit:
        md = result.get("metadata")
        md = md if isinstance(md, dict) else {}
        certs = str(md.get("certifications") or "")
        return cls(
            rank=rank,
            id=str(result["id"]),
            distance=float(result["distance"]),
            source=str(result.get("source", "retrieval")),
            corpus=str(result.get("corpus", "")),
            name=str(md.get("name", "")),
            role=str(md.get("role", "")),
            city=str(md.get("city", "")),
            shift=str(md.get("shift", "")),
            certifications=tuple(c for c in certs.split(";") if c),
        )


@dataclass(frozen=True)
class Search:
    """A search as the story ran it: the request's words, the hits, matrixd's playbook report."""

    query: str
    hits: tuple[Hit, ...]
    playbook: dict[str, Any] = field(default_factory=dict)

    def find(self, worker_id: str) -> Hit | None:
        """The hit for ``worker_id``, or None when it is not in the answer."""
        return next((h for h in self.hits if h.id == worker_id), None)


@dataclass
class DemoOutcome:
    """What the story did and saw; every number the narrative prints comes from here."""

    gateway_url: str
    scenario: Scenario
    trace_id: str
    #: HTTP answers received, and how many carried the trace id back
    requests: int = 0
    traced: int = 0
    dataset: dict[str, Any] = field(default_factory=dict)
    role_counts: dict[str, int] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    #: vectors in the corpus's index after the build (vectord's count)
    corpus_size: int = 0
    demand: Search | None = None
    approved_id: str = ""
    playbook_id: str = ""
    other_approved_id: str = ""
    #: cosine distances between the demand's embedding and the paraphrases'
    paraphrase_distance: float = float("nan")
    loose_paraphrase_distance: float = float("nan")
    #: the playbook windows matrixd used for alice's search, and where they came from
    #: ("calibrated" to the embedder, or "reference": the fixed defaults)
    boost_window: float = BOOST_WINDOW
    inject_window: float = INJECT_WINDOW
    window_mode: str = "reference"
    alice: Search | None = None
    bob: Search | None = None
    elapsed: float = 0.0

    @property
    def trace_echoed(self) -> bool:
        """Every answer carried the story's trace id back."""
        return self.requests > 0 and self.traced == self.requests

    @property
    def alice_source(self) -> str | None:
        """How the approved answer reached alice's rephrased search (None: it did not)."""
        hit = self.alice.find(self.approved_id) if self.alice else None
        return hit.source if hit else None

    @property
    def bob_source(self) -> str | None:
        """How the approved answer reached bob's search of the same words (None: absent)."""
        hit = self.bob.find(self.approved_id) if self.bob else None
        return hit.source if hit else None

    @property
    def isolated(self) -> bool:
        """alice's approval did not boost or inject anything in bob's search."""
        if self.bob is None:
            return False
        pb = self.bob.playbook
        return (
            self.bob_source not in ("boost", "inject")
            and not pb.get("boosted")
            and not pb.get("injected")
        )


# -- output -----------------------------------------------------------------------------------


class Narrator:
    """Writes the story. On a terminal, slow steps show a progress line that is replaced by
    the step's result; elsewhere (a pipe, a log) only the results are written."""

    def __init__(self, out: TextIO | None, *, tty: bool | None = None) -> None:
        self.out = out
        if tty is None:
            tty = bool(out is not None and getattr(out, "isatty", lambda: False)())
        self.tty = tty
        self._transient = False

    def clear(self) -> None:
        """Remove the progress line, if one is showing."""
        if self._transient and self.out is not None:
            self.out.write("\r\033[K")
            self.out.flush()
            self._transient = False

    def progress(self, text: str) -> None:
        """A transient line (terminal only), replaced by the next one."""
        if self.out is None or not self.tty:
            return
        self.out.write(f"\r\033[K{text}")
        self.out.flush()
        self._transient = True

    def say(self, text: str = "") -> None:
        """A line of the story."""
        if self.out is None:
            return
        self.clear()
        self.out.write(text + "\n")
        self.out.flush()

    def para(self, text: str, first: str = "   ", indent: str = "   ") -> None:
        """A paragraph, wrapped to :data:`WIDTH` columns."""
        self.say(
            textwrap.fill(
                text,
                WIDTH,
                initial_indent=first,
                subsequent_indent=indent,
                break_on_hyphens=False,
                break_long_words=False,
            )
        )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _hit_table(
    hits: Sequence[Hit], *, sources: bool, mark: str = "", width: int = TABLE_WIDTH
) -> list[str]:
    """The hits as an aligned table of at most ``width`` columns (``mark``: the id to flag
    with an arrow). Every row names its corpus: two corpora can answer with the same id.

    Each hit takes a line of short fields, then its certifications on a line of their own
    under the worker id (wrapped if long): as a column they would push the table past a
    terminal's width. A line still too wide cuts the role, corpus and city (with "...")."""
    head = ["#", "worker", "corpus", "role", "city", "shift", "distance"]
    rows = [
        [str(h.rank), h.id, h.corpus or "-", h.role, h.city, h.shift, f"{h.distance:.3f}"]
        for h in hits
    ]
    if sources:
        head.append("source")
        for row, h in zip(rows, hits, strict=True):
            row.append(h.source)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {0, 6}  # numbers align right
    indent = 5  # " -> " or blanks before each row
    budget = width - indent - 2 * (len(head) - 1)
    floors = {2: 10, 3: 12, 4: 8}  # corpus, role, city: the widest gives way first
    while sum(widths) > budget:
        col = max((c for c in floors if widths[c] > floors[c]), key=lambda c: widths[c], default=None)
        if col is None:
            break  # ids this long are shown whole
        widths[col] -= 1

    def line(cells: list[str]) -> str:
        parts = [
            _cut(c, w).rjust(w) if i in right else _cut(c, w).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    under = " " * (indent + widths[0] + 2)  # the certifications start under the worker id
    out = [" " * indent + line(head)]
    for row, h in zip(rows, hits, strict=True):
        arrow = " -> " if mark and h.id == mark else "    "
        out.append(f" {arrow}" + line(row))
        certs = "certifications: " + (", ".join(h.certifications) or "none")
        out += textwrap.wrap(
            certs, width, initial_indent=under, subsequent_indent=under + "  ",
            break_on_hyphens=False,
        )
    return out


def _count_table(counts: dict[str, int], columns: int = 2) -> list[str]:
    """Role counts in ``columns`` columns, largest first (filled column by column)."""
    items = list(counts.items())
    if not items:
        return ["     (no rows)"]
    rows = -(-len(items) // columns)
    width_name = max(len(k) for k, _ in items)
    width_n = max(len(f"{v:,}") for _, v in items)
    lines = []
    for r in range(rows):
        cells = []
        for c in range(columns):
            i = c * rows + r
            if i < len(items):
                name, n = items[i]
                cells.append(f"{name:<{width_name}}  {n:>{width_n},}")
        lines.append("     " + "      ".join(cells))
    return lines


def _short(fp: str) -> str:
    return fp[:12] + "..." if len(fp) > 12 else fp


# -- the story --------------------------------------------------------------------------------


def choose_approved(hits: Sequence[Hit], scenario: Scenario) -> tuple[Hit, bool]:
    """alice's pick: the first hit of her role and city that works her shift and holds her
    certification; else her top hit. Returns (hit, whether it matched everything)."""
    if not hits:
        raise DemoError("the demand's search returned nothing, so there is nothing to approve")
    for h in hits:
        if (
            h.role == scenario.role
            and h.city == scenario.city
            and h.shift == scenario.shift
            and scenario.certification in h.certifications
        ):
            return h, True
    return hits[0], False


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return 1.0 - float(np.dot(a, b)) / (na * nb)


class _Story:
    """One run of the story against a gateway (``run_story`` is the entry point)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateway_url: str,
        scenario: Scenario,
        narrator: Narrator,
        outcome: DemoOutcome,
    ) -> None:
        v1 = gateway_url.rstrip("/") + "/v1"
        self.s = scenario
        self.say = narrator.say
        self.para = narrator.para
        self.progress = narrator.progress
        self.out = outcome
        self.catalog = CatalogdClient(session, v1)
        self.ingestd = IngestdClient(session, v1)
        self.queryd = QuerydClient(session, v1)
        self.matrixd = MatrixdClient(session, v1)
        self.vectord = VectordClient(session, v1)
        self.embedd = EmbeddClient(session, v1)
        self.step = ""

    async def run(self) -> None:
        await self.check_existing()
        csv = self.generate()
        for step in (
            lambda: self.ingest(csv),
            self.count_roles,
            self.build_corpus,
            self.search_demand,
            self.approve,
            self.rephrase,
            self.isolation,
        ):
            self.say()
            await step()

    # -- 0: never overwrite someone else's data ---------------------------------------------

    async def check_existing(self) -> None:
        """Refuse to replace a dataset or corpus of the same name that is not the demo's own.

        An ingest of the same schema under the same name replaces the data (the object key
        is content-addressed by schema), and the corpus builder updates an index in place:
        against a stack holding real data that would clobber it. A dataset or corpus of the
        roster's size is taken to be an earlier run's, and reused.
        """
        self.step = "checking for existing data"
        s = self.s
        manifest = await self.catalog.manifest(s.dataset)
        if manifest is not None and manifest.get("row_count") not in (None, s.roster_size):
            raise DemoError(
                f"a dataset named {s.dataset!r} already exists with "
                f"{manifest['row_count']:,} rows; the demo would replace it with its own "
                f"{s.roster_size:,}. Choose another name with --dataset, or use a fresh stack."
            )
        try:
            info = await self.vectord.info(s.dataset)
        except UpstreamError as exc:
            if exc.status != 404:
                raise
            return
        if int(info.get("count", 0)) not in (0, s.roster_size):
            raise DemoError(
                f"a corpus named {s.dataset!r} already holds {info['count']:,} vectors; the "
                f"demo would add to it. Choose another name with --dataset, or use a fresh stack."
            )

    # -- 1: the roster ----------------------------------------------------------------------

    def generate(self) -> bytes:
        self.step = "generating the roster"
        s = self.s
        self.progress(f"1. Generating a roster of {s.roster_size:,} workers...")
        buf = io.StringIO()

        def report(done: int, total: int) -> None:
            self.progress(f"1. Generating a roster of {total:,} workers... {done:,}")

        write_roster(buf, s.roster_size, s.seed, report)
        self.para(
            f"1. Generated a synthetic roster of {s.roster_size:,} workers (seed {s.seed}): "
            "id, name, role, city, shift, certifications, skills, experience, rating.",
            first="",
        )
        return buf.getvalue().encode()

    # -- 2: ingest --------------------------------------------------------------------------

    async def ingest(self, csv: bytes) -> None:
        self.step = "ingesting the roster (ingestd)"
        s = self.s
        self.progress(f"2. Ingesting {len(csv) / 1e6:.1f} MB of CSV as dataset `{s.dataset}`...")
        answer = await self.ingestd.ingest(s.dataset, csv, filename=f"{s.dataset}.csv")
        self.out.dataset = answer
        if answer.get("row_count") != s.roster_size:
            raise DemoError(
                f"ingestd stored {answer.get('row_count')} rows, expected {s.roster_size}",
                "ingestd",
            )
        again = " (the same data was already there: same id)" if answer.get("existing") else ""
        self.para(
            f"2. Ingested {answer['row_count']:,} rows as dataset `{answer['name']}`{again}: "
            f"CSV -> Parquet -> object store -> catalog, {len(answer.get('columns', []))} "
            f"columns, schema fingerprint {_short(answer['schema_fingerprint'])}",
            first="",
        )

    # -- 3: SQL -----------------------------------------------------------------------------

    async def count_roles(self) -> None:
        self.step = "counting roles in SQL (queryd)"
        s = self.s
        sql = (
            f"SELECT role, count(*) AS workers FROM {s.dataset} "
            "GROUP BY role ORDER BY workers DESC, role"
        )
        records = await self.queryd.records(sql)
        counts = {str(r["role"]): int(r["workers"]) for r in records}
        self.out.role_counts = counts
        total = sum(counts.values())
        if total != s.roster_size:
            raise DemoError(f"SQL counted {total} workers, expected {s.roster_size}", "queryd")
        self.say("3. Workers by role, in SQL:")
        for line in textwrap.wrap(
            sql, TABLE_WIDTH - 5, initial_indent="     ", subsequent_indent="       "
        ):
            self.say(line)
        for line in _count_table(counts):
            self.say(line)

    # -- 4: the corpus ----------------------------------------------------------------------

    async def build_corpus(self) -> None:
        self.step = "building the corpus (matrixd -> queryd, embedd, vectord)"
        s = self.s
        t0 = time.monotonic()
        self.progress(f"4. Building corpus `{s.dataset}`: embedding {s.roster_size:,} workers...")
        report = await self.matrixd.build_corpus(
            s.dataset,
            f"SELECT * FROM {s.dataset}",
            "worker_id",
            text_template=s.text_template,
            wait=False,
        )
        while report.get("status") == "running":
            await asyncio.sleep(0.2)
            report = await self.matrixd.corpus_job(report["job_id"])
            self.progress(
                f"4. Building corpus `{s.dataset}`: embedded {report.get('rows_embedded', 0):,}"
                f" of {s.roster_size:,} workers..."
            )
        seconds = time.monotonic() - t0
        self.out.corpus = report
        if report.get("status") != "done":
            failed = report.get("failed_batches") or []
            detail = report.get("error") or "; ".join(
                f"batch {b.get('batch')} ({b.get('stage')}): {b.get('error')}" for b in failed[:3]
            )
            raise DemoError(f"the corpus build ended {report.get('status')}: {detail}", "matrixd")
        info = await self.vectord.info(s.dataset)
        self.out.corpus_size = int(info["count"])
        if self.out.corpus_size != s.roster_size:
            raise DemoError(
                f"corpus `{s.dataset}` holds {self.out.corpus_size} vectors, expected "
                f"{s.roster_size}",
                "vectord",
            )
        self.para(
            f"4. Built corpus `{s.dataset}`: {self.out.corpus_size:,} vectors "
            f"({report.get('dimension')}-d, embedder `{report.get('model')}`) in "
            f"{report.get('batches')} batches, {seconds:.1f} s. Each worker is embedded as "
            f'"{s.text_template}".',
            first="",
        )

    # -- 5: the demand ----------------------------------------------------------------------

    async def search(self, query: str, playbook: str | None = None, k: int | None = None) -> Search:
        body: dict[str, Any] = {
            "query_text": query,
            "corpora": [self.s.dataset],
            "k": k or self.s.k,
        }
        if playbook is not None:
            body.update(use_playbook=True, playbook_corpus=playbook, query_role=self.s.role)
        answer = await self.matrixd.search(body)
        hits = tuple(Hit.from_result(i, r) for i, r in enumerate(answer["results"], 1))
        return Search(query, hits, dict(answer.get("playbook") or {}))

    async def search_demand(self) -> None:
        self.step = "searching the demand (matrixd)"
        s = self.s
        self.out.demand = found = await self.search(s.demand)
        self.para(f'5. alice, a coordinator, searches the corpus: "{s.demand}"', first="")
        for line in _hit_table(found.hits, sources=False):
            self.say(line)
        self.say("   (cosine distance: 0 = the same text, 1 = nothing in common)")

    # -- 6: approvals -----------------------------------------------------------------------

    async def approve(self) -> None:
        self.step = "recording approvals (matrixd playbook)"
        s = self.s
        if self.out.demand is None:
            raise DemoError("no demand search to approve from")
        pick, matches = choose_approved(self.out.demand.hits, s)
        self.out.approved_id = pick.id
        answer = await self.matrixd.record(
            s.demand,
            pick.id,
            s.dataset,
            APPROVAL_SCORE,
            role=s.role,
            playbook_corpus=s.alice_playbook,
        )
        self.out.playbook_id = str(answer["playbook_id"])
        why = (
            f"the {s.city} worker on {s.shift.lower()}s with {s.certification}"
            if matches
            else "her top hit (none matched everything she asked for)"
        )
        self.para(
            f"6. alice approves {pick.id}, {why}. matrixd records it in her playbook "
            f"`{s.alice_playbook}`: her demand -> {pick.id}, score {APPROVAL_SCORE}, role "
            f"{s.role} (playbook id {_short(self.out.playbook_id)}).",
            first="",
        )
        # bob gets a playbook of his own, for other work, so that step 8 shows isolation
        # between two real playbooks rather than a cold start
        other = await self.search(s.other_demand, k=1)
        if other.hits:
            self.out.other_approved_id = other.hits[0].id
            await self.matrixd.record(
                s.other_demand,
                other.hits[0].id,
                s.dataset,
                APPROVAL_SCORE,
                role=s.other_role,
                playbook_corpus=s.bob_playbook,
            )
            self.para(
                f'bob, another coordinator, approves {other.hits[0].id} for "{s.other_demand}" '
                f"in his playbook `{s.bob_playbook}`."
            )

    # -- 7: the paraphrase, with alice's playbook --------------------------------------------

    async def rephrase(self) -> None:
        self.step = "searching the paraphrase with alice's playbook (matrixd)"
        s = self.s
        _, _, vectors = await self.embedd.embed([s.demand, s.paraphrase, s.loose_paraphrase])
        self.out.paraphrase_distance = _cosine_distance(vectors[0], vectors[1])
        self.out.loose_paraphrase_distance = _cosine_distance(vectors[0], vectors[2])
        self.out.alice = found = await self.search(s.paraphrase, playbook=s.alice_playbook)
        used = (await self.matrixd.calibration(playbook_corpus=s.alice_playbook))["thresholds"]
        self.out.boost_window = float(used["max_distance"])
        self.out.inject_window = float(used["max_inject_distance"])
        self.out.window_mode = str(used["mode"])
        whose = "calibrated for this embedder" if self.out.window_mode == "calibrated" else "the reference's"
        approved = self.out.approved_id
        d = self.out.paraphrase_distance
        self.para(
            f'7. A week later alice words it differently: "{s.paraphrase}", and searches '
            f"with her playbook (`{s.alice_playbook}`, role {s.role}):",
            first="",
        )
        for line in _hit_table(found.hits, sources=True, mark=approved):
            self.say(line)
        hit = found.find(approved)
        factor = 1.0 - 0.5 * APPROVAL_SCORE
        where = f"#{hit.rank}" if hit else f"not in the top {s.k}"
        if hit is not None and hit.source == "inject":
            text = (
                f"{approved} is {where}, source `inject`: for these words plain retrieval does "
                f"not rank it in the top {s.k} (bob's list below), but they are {d:.3f} from "
                f"the demand alice approved it for, inside the inject window "
                f"({self.out.inject_window:.2f}, {whose}), so matrixd adds her answer at {d:.3f} x "
                f"(1 - 0.5 x score {APPROVAL_SCORE}) = {hit.distance:.3f}."
            )
        elif hit is not None and hit.source == "boost":
            text = (
                f"{approved} is {where}, source `boost`: retrieval found it at "
                f"{hit.distance / factor:.3f}; these words are {d:.3f} from the demand alice "
                f"approved it for, inside the boost window ({self.out.boost_window:.2f}, {whose}), "
                f"so matrixd "
                f"multiplies its distance by (1 - 0.5 x score {APPROVAL_SCORE}) = {factor:.2f}."
            )
        else:
            text = (
                f"{approved} is {where}, by plain retrieval only: these words are {d:.3f} from "
                f"the demand alice approved it for, outside the playbook's windows (boost "
                f"{self.out.boost_window:.2f}, inject {self.out.inject_window:.2f}, {whose})."
            )
        self.para(text)
        loose = self.out.loose_paraphrase_distance
        if loose > self.out.inject_window:
            self.para(
                f'An honest note: a looser rewording, "{s.loose_paraphrase}", is {loose:.2f} '
                f"away, too far to inject. The built-in `hash` embedder compares words and "
                f"letter groups, not meanings; a semantic model (`[embedd] provider = "
                f'"ollama"`) brings real paraphrases closer.'
            )

    # -- 8: the same words, with bob's playbook ----------------------------------------------

    async def isolation(self) -> None:
        self.step = "searching the paraphrase with bob's playbook (matrixd)"
        s = self.s
        self.out.bob = found = await self.search(s.paraphrase, playbook=s.bob_playbook)
        approved = self.out.approved_id
        self.para(
            f"8. bob searches the same words with his own playbook (`{s.bob_playbook}`):", first=""
        )
        for line in _hit_table(found.hits, sources=True, mark=approved):
            self.say(line)
        hit = found.find(approved)
        if not self.out.isolated:
            raise DemoError(
                f"isolation failed: {approved} came back with source "
                f"{hit.source if hit else None} on `{s.bob_playbook}`, which never recorded it",
                "matrixd",
            )
        where = (
            f"{approved} is not in his top {s.k}"
            if hit is None
            else f"{approved} is only #{hit.rank}, by plain retrieval"
        )
        near = found.playbook.get("hits") or 0
        mine = (
            "nothing in his playbook is near these words"
            if not near
            else f"his playbook's {near} nearby approval(s) changed nothing"
        )
        self.para(
            f"{where}: {mine}, and alice's approval lives in `{s.alice_playbook}`, which his "
            "searches never read. Each coordinator's playbook is their own."
        )


async def run_story(
    gateway_url: str,
    scenario: Scenario | None = None,
    *,
    narrator: Narrator | None = None,
    token: str | None = None,
    trace_id: str | None = None,
) -> DemoOutcome:
    """Run the story against the gateway at ``gateway_url``; the :class:`DemoOutcome`.

    ``token`` is sent as ``Authorization: Bearer`` (a stack with auth on). Every request
    carries ``trace_id`` (minted when None) in ``X-Lakehouse-Trace-Id``; the outcome counts
    the answers that carried it back. Raises :class:`DemoError` naming the failing step.
    """
    scenario = scenario or Scenario()
    scenario.validate()
    narrator = narrator or Narrator(None)
    trace_id = trace_id or mint_trace_id()
    outcome = DemoOutcome(gateway_url=gateway_url.rstrip("/"), scenario=scenario, trace_id=trace_id)

    async def on_request_end(session: Any, ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        outcome.requests += 1
        if params.response.headers.get(TRACE_HEADER) == trace_id:
            outcome.traced += 1

    tracing = aiohttp.TraceConfig()
    tracing.on_request_end.append(on_request_end)
    headers = {TRACE_HEADER: trace_id}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    t0 = time.monotonic()
    async with aiohttp.ClientSession(headers=headers, trace_configs=[tracing]) as session:
        story = _Story(session, gateway_url, scenario, narrator, outcome)
        try:
            await story.run()
        except UpstreamError as exc:
            raise DemoError(f"{story.step}: {exc}", exc.service) from exc
        except DemoError as exc:
            if story.step and not str(exc).startswith(story.step):
                raise DemoError(f"{story.step}: {exc}", exc.service) from exc
            raise
    outcome.elapsed = time.monotonic() - t0
    narrator.say()
    narrator.para(
        f"Every request carried {TRACE_HEADER}: {trace_id}; {outcome.traced} of "
        f"{outcome.requests} answers brought it back.",
        first="",
        indent="",
    )
    return outcome


def run_demo(
    gateway_url: str,
    scenario: Scenario | None = None,
    *,
    out: TextIO | None = None,
    token: str | None = None,
    trace_id: str | None = None,
) -> DemoOutcome:
    """:func:`run_story` from synchronous code (its own event loop), narrating to ``out``."""
    return asyncio.run(
        run_story(gateway_url, scenario, narrator=Narrator(out), token=token, trace_id=trace_id)
    )


# -- the command --------------------------------------------------------------------------------


class _StackProgress(io.TextIOBase):
    """A log sink for :class:`~lakehouse.stack.Stack`: turns its "NAME ready" lines into a
    progress line and drops the daemons' own output (kept by the stack for errors)."""

    def __init__(self, narrator: Narrator, total: int) -> None:
        super().__init__()
        self.narrator = narrator
        self.total = total
        self.ready = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        for line in s.splitlines():
            if line.startswith("lakehouse up: ") and line.endswith(" s)") and " ready (" in line:
                self.ready += 1
                self.narrator.progress(
                    f"Starting the stack: {self.ready}/{self.total} daemons ready..."
                )
        return len(s)


def _demo_config(args: argparse.Namespace, data_dir: str) -> tuple[Config, str]:
    """The configuration of the demo's own stack, and a note about its ports ("" if none)."""
    from .services import DAEMONS
    from .stack import StackError, prepare_config, select_daemons

    # Without --config: the embedded defaults only (no ./lakehouse.toml, no LAKEHOUSE_*
    # variables), so the demo runs the same everywhere.
    config = (
        load_config(args.config, data_dir=data_dir) if args.config else Config(data_dir=data_dir)
    )
    try:
        prepare_config(config, select_daemons())
        return config, ""
    except StackError as exc:
        if "is taken" not in str(exc):
            raise  # another problem: let the stack report it
        busy = str(exc)
    for name in DAEMONS:
        config = config.replace(name, port=0)
    note = "some default ports are busy, so this stack uses free ones"
    if "running lakehouse gateway" in busy:
        gw = (
            Config().base_url("gateway")
            if not args.config
            else load_config(args.config).base_url("gateway")
        )
        note += f" (a lakehouse stack answers at {gw}: `lakehouse demo --url {gw}` uses it)"
    return config, note


def _tail(stack: Any, name: str | None, lines: int = 12) -> str:
    if stack is None or not name or name not in getattr(stack, "children", {}):
        return ""
    tail = stack.output(name)[-lines:]
    if not tail:
        return ""
    return f"\n  last output of {name}:\n" + "\n".join(f"    {t}" for t in tail)


def _fail(narrator: Narrator, message: str) -> int:
    narrator.clear()
    print(f"lakehouse demo: {message}", file=sys.stderr)
    return 1


def _run_own_stack(args: argparse.Namespace, scenario: Scenario, narrator: Narrator) -> int:
    from .services import DAEMONS
    from .stack import StackError, running_stack

    t0 = time.monotonic()
    temp = args.data_dir is None
    data_dir = tempfile.mkdtemp(prefix="lakehouse-demo-") if temp else str(Path(args.data_dir))
    try:
        config, note = _demo_config(args, data_dir)
        what = (
            "embedded defaults: local storage, the built-in `hash` embedder, no network, no keys"
            if not args.config
            else f"configuration {args.config}"
        )
        where = (
            "a temporary data directory (removed at the end; --data-dir DIR keeps it)"
            if temp
            else f"data in {data_dir}"
        )
        narrator.para(
            f"Starting the stack: {len(DAEMONS)} daemons as processes ({what}), {where}...",
            first="",
            indent="",
        )
        if note:
            narrator.para(f"({note})")
        sink: TextIO = sys.stderr if args.verbose else _StackProgress(narrator, len(DAEMONS))
        with running_stack(config, log=sink, startup_timeout=args.timeout) as stack:
            gateway = stack.urls["gateway"]
            narrator.para(
                f"Stack ready in {time.monotonic() - t0:.1f} s. The gateway is {gateway}; every "
                "request below goes through it.",
                first="",
                indent="",
            )
            narrator.say()
            try:
                run_demo(
                    gateway,
                    scenario,
                    out=narrator.out,
                    token=stack.config.auth.resolved_token() or None,
                )
            except DemoError as exc:
                dead = stack.poll()
                extra = f"\n  {dead[0]} exited with code {dead[1]}" if dead else ""
                return _fail(
                    narrator, f"{exc}{extra}{_tail(stack, exc.service or (dead and dead[0]))}"
                )
            narrator.progress("Stopping the stack...")
        narrator.para(
            f"Done in {time.monotonic() - t0:.1f} s; the stack is stopped.", first="", indent=""
        )
        if not temp:
            narrator.say(f"Its data stays in {data_dir}; serve it again with:")
            narrator.say(f"  lakehouse up --data-dir {data_dir}")
        return 0
    except StackError as exc:
        return _fail(narrator, f"the stack did not start: {exc}")
    finally:
        if temp:
            shutil.rmtree(data_dir, ignore_errors=True)


def _run_against(url: str, args: argparse.Namespace, scenario: Scenario, narrator: Narrator) -> int:
    from .stack import health

    url = url.rstrip("/")
    service = health(url, timeout=3.0)
    if service != "gateway":
        what = "nothing answers" if service is None else f"{service or 'something else'} answers"
        return _fail(
            narrator,
            f"{what} at {url}/health, expected the lakehouse gateway. Start a stack with "
            "`lakehouse up`, or run `lakehouse demo` without --url to start one.",
        )
    t0 = time.monotonic()
    narrator.para(
        f"Using the stack whose gateway is {url}; every request below goes through it.",
        first="",
        indent="",
    )
    narrator.say()
    # a stack with auth on: the token of [auth] (by default the AUTH_TOKEN variable), never
    # a command-line argument (other users can read those)
    token = (load_config(args.config) if args.config else Config()).auth.resolved_token()
    try:
        run_demo(url, scenario, out=narrator.out, token=token or None)
    except DemoError as exc:
        return _fail(narrator, str(exc))
    narrator.say(f"Done in {time.monotonic() - t0:.1f} s.")
    return 0


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo like Ctrl-C does: the stack is stopped, temp data removed."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str]) -> int:
    """``lakehouse demo``: tell the story on a stack of its own, or on ``--url``'s."""
    parser = argparse.ArgumentParser(
        prog="lakehouse demo",
        description=(
            "roster -> ingest -> SQL -> corpus -> search -> playbook, told as a short story. "
            "Without --url it starts its own stack (embedded defaults, free ports if the "
            "defaults are busy, a temporary data directory) and stops it at the end."
        ),
    )
    parser.add_argument("--url", help="the gateway of a running stack, e.g. http://127.0.0.1:3110")
    parser.add_argument(
        "--data-dir", help="own stack: keep the data here (default: a temporary directory)"
    )
    parser.add_argument(
        "--config", help="own stack: this lakehouse.toml (default: the embedded defaults)"
    )
    parser.add_argument(
        "--n", type=int, default=Scenario.roster_size, help="roster size (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=Scenario.seed, help="roster seed (default 1)")
    parser.add_argument(
        "--dataset", default=Scenario.dataset, help="dataset and corpus name (default workers)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds each daemon may take to start"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="own stack: show the daemons' logs on stderr"
    )
    args = parser.parse_args(argv)
    scenario = replace(Scenario(), roster_size=args.n, seed=args.seed, dataset=args.dataset)
    try:
        scenario.validate()
    except ValueError as exc:
        parser.error(str(exc))
    narrator = Narrator(sys.stdout)
    narrator.say("Lakehouse demo: a staffing co-pilot's retrieval loop, end to end.")
    with _sigterm_as_interrupt():
        if args.url:
            return _run_against(args.url, args, scenario, narrator)
        return _run_own_stack(args, scenario, narrator)
