"""The ``hash`` embedder in plain Python, written from docs/embed.md ("The hash embedder,
exactly"), not from ``lakehouse.embed.hashing``.

One text at a time, one feature at a time, a Python list of float64 per vector: slow and
obviously the documented arithmetic. ``lakehouse.embed.hash_embed`` must agree with
:func:`embed` within 1e-6 per component (the doc's promise); tests/embed and the parity probe
both check that against this one copy.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Sequence

__all__ = ["embed", "embed_many", "features", "normalize", "sign_bucket"]


def normalize(text: str) -> str:
    """Section 1: NFKD, drop combining marks, casefold."""
    s = unicodedata.normalize("NFKD", text)
    s = "".join(c for c in s if unicodedata.combining(c) == 0)
    return s.casefold()


def features(text: str) -> list[tuple[str, float]]:
    """Sections 2 and 3: the weighted feature multiset of a text."""
    s = normalize(text)
    tokens = re.findall(r"[^\W_]+", s)
    if not tokens:
        return [("r:" + s, 1.0)]
    out = [("w:" + t, 1.0) for t in tokens]
    out += [("b:" + tokens[i] + " " + tokens[i + 1], 0.5) for i in range(len(tokens) - 1)]
    for t in tokens:
        p = "<" + t + ">"
        grams = [p[j : j + n] for n in (3, 4, 5) for j in range(len(p) - n + 1)]
        out += [("c:" + g, 1.0 / math.sqrt(len(grams))) for g in grams]
    return out


def sign_bucket(feature: str, dim: int) -> tuple[float, int]:
    """Section 4: BLAKE2b-64 little-endian; the top bit is the sign, the rest picks the bucket."""
    digest = hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    h = int.from_bytes(digest, "little")
    return (-1.0 if h >> 63 else 1.0), (h & (2**63 - 1)) % dim


def embed(text: str, dim: int) -> list[float]:
    """Section 5: sum sign x weight per bucket, divide by the L2 norm (float64, not rounded)."""
    v = [0.0] * dim
    for f, weight in features(text):
        sign, bucket = sign_bucket(f, dim)
        v[bucket] += sign * weight
    norm = math.sqrt(sum(x * x for x in v))
    if norm < 1e-9:
        sign, bucket = sign_bucket("r:" + normalize(text), dim)
        v = [0.0] * dim
        v[bucket] = sign
        norm = 1.0
    return [x / norm for x in v]


def embed_many(texts: Sequence[str], dim: int) -> list[list[float]]:
    """:func:`embed` for each text (the library's batch call, unbatched)."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dimension must be a positive integer, got {dim!r}")
    if isinstance(texts, str | bytes):
        raise ValueError("texts must be a sequence of strings, not a single string")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] is {type(t).__name__}, expected str")
    return [embed(t, dim) for t in texts]
