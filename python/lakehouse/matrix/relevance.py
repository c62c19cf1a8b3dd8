"""The relevance filter for code-context chunks (contract section 9.13, ``/matrix/relevance``).

Each chunk is scored against a *focus* (the file under work: its path, the symbols it
defines and the symbols it imports) by adding signals:

=================  ========  =====================================================
signal             weight    fires when
=================  ========  =====================================================
``path_match``     +1.0      the chunk's source encodes the focus path
``filename_match`` +0.6      the chunk's text mentions the focus file name
``defined_match``  +0.6      the chunk's text mentions a symbol the focus defines
``token_overlap``  +0.4 x J  J = Jaccard of the non-stopword tokens of focus and chunk
``prefix_match``   +0.3      the chunk's source shares the focus path's first two
                             segments (``crates/queryd``)
``import_penalty`` -0.5      the chunk mentions imported symbols and no defined one
=================  ========  =====================================================

Chunks scoring at least the threshold (default 0.3) are kept. The rules where the contract
is silent (how a source "encodes" a path, what a token is, the stopword list, how symbols
are found in source text) are this module's and are documented in docs/matrix.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_RELEVANCE_THRESHOLD",
    "WEIGHTS",
    "Chunk",
    "Focus",
    "Scored",
    "STOPWORDS",
    "extract_defined_symbols",
    "extract_imported_symbols",
    "file_prefix",
    "filter_chunks",
    "jaccard",
    "score_relevance",
    "tokenize",
]

DEFAULT_RELEVANCE_THRESHOLD = 0.3

WEIGHTS = {
    "path_match": 1.0,
    "filename_match": 0.6,
    "defined_match": 0.6,
    "token_overlap": 0.4,
    "prefix_match": 0.3,
    "import_penalty": -0.5,
}

#: English function words plus the keywords of Rust, TypeScript and Go: words every chunk
#: shares, which would otherwise make any two code chunks look related.
STOPWORDS = frozenset(
    """
    a an the and or not of to in on at by for with from as is are was were be been it its
    this that these those if then else when while do does done so but no yes we you i
    fn let mut pub use mod struct enum impl trait self crate super match return where async
    await move ref const static type dyn loop break continue true false some none ok err
    string vec option result box unsafe extern
    function var export import class interface extends implements new null undefined void
    number boolean any unknown never readonly private public protected default switch case
    try catch finally throw typeof instanceof of
    func package go defer chan map range select interface fallthrough goto nil error int
    """.split()  # noqa: SIM905 (a word list reads better than 130 quoted strings)
)

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_RUST_DEFINED = re.compile(
    r"\b(?:fn|struct|enum|trait|type|union|mod|macro_rules!)\s+([A-Za-z_][A-Za-z0-9_]*)"
)
_RUST_CONST = re.compile(r"\b(?:const|static)\s+(?:mut\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*:")
_RUST_IMPL = re.compile(r"\bimpl(?:<[^>]*>)?\s+(?:[A-Za-z_][\w:]*\s+for\s+)?([A-Za-z_][A-Za-z0-9_]*)")
_TS_DEFINED = re.compile(
    r"\b(?:function\*?|class|interface|type|enum|namespace)\s+([A-Za-z_$][A-Za-z0-9_$]*)"
)
_TS_BINDING = re.compile(r"\bexport\s+(?:const|let|var)\s+([A-Za-z_$][A-Za-z0-9_$]*)")
_GO_DEFINED = re.compile(r"\bfunc\s+(?:\([^)]*\)\s*)?([A-Za-z_][A-Za-z0-9_]*)|\btype\s+([A-Za-z_][A-Za-z0-9_]*)")

_RUST_USE = re.compile(r"\buse\s+([^;]+);")
_TS_IMPORT = re.compile(r"\bimport\s+(?:type\s+)?([^;]*?)\s+from\s+['\"]")


def tokenize(text: str) -> set[str]:
    """Identifier-like words, lower-cased, without stopwords and one-letter words."""
    out = set()
    for m in _TOKEN.finditer(text):
        word = m.group(0).lower()
        if len(word) > 1 and word not in STOPWORDS:
            out.add(word)
    return out


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b|, and 0.0 when both are empty."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def extract_defined_symbols(source: str) -> list[str]:
    """Names a Rust, TypeScript or Go file defines (functions, types, traits, classes...)."""
    hits: list[tuple[int, str]] = []
    for pattern in (_RUST_DEFINED, _RUST_CONST, _RUST_IMPL, _TS_DEFINED, _TS_BINDING, _GO_DEFINED):
        for m in pattern.finditer(source):
            hits.append((m.start(), next(g for g in m.groups() if g)))
    # in source order, each name once
    return list(dict.fromkeys(name for _, name in sorted(hits)))


def _split_use_tree(tree: str) -> Iterable[str]:
    # `a::b::{C, D as E, f::G}` -> C, E, G ; `a::b::C` -> C ; `a::b::*` -> nothing
    tree = tree.strip()
    brace = tree.find("{")
    if brace >= 0 and tree.endswith("}"):
        inner = tree[brace + 1 : -1]
        depth, start = 0, 0
        for i, ch in enumerate(inner):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                yield from _split_use_tree(inner[start:i])
                start = i + 1
        yield from _split_use_tree(inner[start:])
        return
    if " as " in tree:
        tree = tree.rsplit(" as ", 1)[1]
    leaf = tree.rsplit("::", 1)[-1].strip()
    if leaf and leaf not in ("*", "self"):
        yield leaf


def extract_imported_symbols(source: str) -> list[str]:
    """Names a Rust (``use``) or TypeScript (``import ... from``) file imports."""
    found: list[str] = []
    for m in _RUST_USE.finditer(source):
        for name in _split_use_tree(m.group(1)):
            if name not in found:
                found.append(name)
    for m in _TS_IMPORT.finditer(source):
        clause = m.group(1)
        names = re.findall(r"[A-Za-z_$][A-Za-z0-9_$]*", clause.replace("* as", ""))
        # `{ A as B }`: B is the local name
        words = [n for n in names if n not in ("as", "type")]
        for pair in re.findall(r"([A-Za-z_$][\w$]*)\s+as\s+([A-Za-z_$][\w$]*)", clause):
            if pair[0] in words:
                words.remove(pair[0])
        for name in words:
            if name not in found:
                found.append(name)
    return found


def _normalise_path(path: str) -> str:
    p = path.strip().replace("\\", "/").lower()
    while p.startswith("./"):
        p = p[2:]
    return p.lstrip("/")


def file_prefix(path: str) -> str:
    """The first two segments of a path (``crates/queryd/src/db.go`` -> ``crates/queryd``);
    "" for a path with fewer than three segments (a bare file or ``dir/file`` shares nothing
    meaningful)."""
    parts = [p for p in _normalise_path(path).split("/") if p]
    return "/".join(parts[:2]) if len(parts) >= 3 else ""


def _leaf(symbol: str) -> str:
    # `catalogd::Registry`, `pkg.Type`, `a/b` -> the last name, what a chunk would mention
    return re.split(r"::|\.|/", symbol.strip())[-1]


def _mentions(text: str, symbol: str) -> bool:
    name = _leaf(symbol)
    if not name:
        return False
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", text) is not None


@dataclass(frozen=True)
class Focus:
    """The file under work. ``content``, when given, adds the symbols it defines and imports
    and the words it uses (for the token overlap) to those listed explicitly."""

    path: str
    defined_symbols: Sequence[str] = ()
    imported_symbols: Sequence[str] = ()
    content: str = ""

    def symbols(self) -> tuple[list[str], list[str]]:
        defined = [s for s in self.defined_symbols if s.strip()]
        imported = [s for s in self.imported_symbols if s.strip()]
        if self.content:
            defined += [s for s in extract_defined_symbols(self.content) if s not in defined]
            imported += [s for s in extract_imported_symbols(self.content) if s not in imported]
        return defined, imported

    def tokens(self) -> set[str]:
        defined, imported = self.symbols()
        words = " ".join([self.path.replace("/", " ").replace(".", " "), *defined, *map(_leaf, imported)])
        return tokenize(words + " " + self.content)


@dataclass(frozen=True)
class Chunk:
    text: str
    source: str = ""
    doc_id: str = ""


@dataclass(frozen=True)
class Scored:
    index: int
    chunk: Chunk
    score: float
    #: the signals that fired, with their contribution
    signals: dict[str, float] = field(default_factory=dict)
    kept: bool = False


def _path_encoded(source: str, path: str) -> bool:
    if not source or not path:
        return False
    s, p = _normalise_path(source), _normalise_path(path)
    if not p:
        return False
    # the path itself, or the path flattened into an id (crates_queryd_src_db.go, a::b)
    variants = {p, p.replace("/", "_"), p.replace("/", "::"), p.replace("/", "-"), p.replace("/", ".")}
    return any(v in s for v in variants)


def score_relevance(focus: Focus, chunk: Chunk, *, _cache: dict | None = None) -> tuple[float, dict[str, float]]:
    """``(score, signals)`` of one chunk against the focus."""
    if _cache is None:
        _cache = {}
    if "symbols" not in _cache:
        _cache["symbols"] = focus.symbols()
        _cache["tokens"] = focus.tokens()
    defined, imported = _cache["symbols"]
    signals: dict[str, float] = {}
    source = chunk.source or chunk.doc_id
    if _path_encoded(source, focus.path):
        signals["path_match"] = WEIGHTS["path_match"]
    filename = _normalise_path(focus.path).rsplit("/", 1)[-1]
    if filename and filename in chunk.text.lower():
        signals["filename_match"] = WEIGHTS["filename_match"]
    mentions_defined = any(_mentions(chunk.text, s) for s in defined)
    if mentions_defined:
        signals["defined_match"] = WEIGHTS["defined_match"]
    j = jaccard(_cache["tokens"], tokenize(chunk.text))
    if j > 0:
        signals["token_overlap"] = WEIGHTS["token_overlap"] * j
    prefix = file_prefix(focus.path)
    if prefix and source and file_prefix(source) == prefix:
        signals["prefix_match"] = WEIGHTS["prefix_match"]
    if not mentions_defined and any(_mentions(chunk.text, s) for s in imported):
        signals["import_penalty"] = WEIGHTS["import_penalty"]
    # Rounded so float noise (0.4 x 0.75 = 0.30000000000000004) cannot decide a threshold.
    return round(sum(signals.values()), 9), {k: round(v, 9) for k, v in signals.items()}


def filter_chunks(
    focus: Focus, chunks: Sequence[Chunk], threshold: float = DEFAULT_RELEVANCE_THRESHOLD
) -> list[Scored]:
    """Every chunk scored, in input order, ``kept`` when its score is at least ``threshold``."""
    cache: dict = {}
    out = []
    for i, chunk in enumerate(chunks):
        score, signals = score_relevance(focus, chunk, _cache=cache)
        out.append(Scored(i, chunk, score, signals, score >= threshold))
    return out
