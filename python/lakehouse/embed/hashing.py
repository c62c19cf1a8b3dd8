"""The ``hash`` embedder: signed feature hashing of words, word bigrams and character n-grams.

A pure function of (text, dimension): no model, no state, no randomness, the same bytes in
every process and on every machine with the same Unicode database. It is the offline default
and the test provider; docs/embed.md specifies the algorithm precisely enough for an
independent twin (parity tests agree within 1e-6). In short, for each text:

1. normalise: NFKD, drop combining marks, casefold;
2. tokens: maximal runs of letters and digits (``[^\\W_]+``);
3. features: ``w:<token>`` (weight 1), ``b:<token> <next token>`` (weight 0.5), and for
   each token the character 3-, 4- and 5-grams of ``<token>`` as ``c:<gram>`` (each weight
   1/sqrt(number of grams of that token), so a token's grams weigh as much as the token);
   a text without tokens gets the single feature ``r:<normalised text>``;
4. h = the 64-bit little-endian BLAKE2b digest of the feature's UTF-8 bytes; the top bit
   of h gives the sign, the low 63 bits modulo the dimension give the bucket;
5. sum sign x weight per bucket in float64, divide by the L2 norm, round to float32.

Every string, the empty one included, has at least one feature, and a vector that sums to
(almost) zero falls back to its ``r:`` feature, so every output row has unit norm.

Speed: the features of a token (its unigram and its n-grams) are hashed once per process
and kept in an LRU keyed by the token, stored as packed little-endian uint64 bytes; a batch
then becomes one ``np.bincount`` over (row, bucket). Staffing text repeats a small
vocabulary, so almost all of the work after warm-up is tokenising.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b

import numpy as np

__all__ = [
    "hash_embed",
    "normalize_text",
    "tokenize",
    "features",
    "feature_hash",
    "DEFAULT_DIMENSION",
    "NGRAM_SIZES",
    "WORD_WEIGHT",
    "BIGRAM_WEIGHT",
    "CHAR_WEIGHT",
]

DEFAULT_DIMENSION = 768
#: character n-gram lengths, taken from each token padded as "<token>"
NGRAM_SIZES = (3, 4, 5)
WORD_WEIGHT = 1.0
#: word order matters less than the words themselves ("osha 30" vs "30 osha")
BIGRAM_WEIGHT = 0.5
#: total L2 weight of one token's n-grams (each gram: CHAR_WEIGHT / sqrt(count))
CHAR_WEIGHT = 1.0
#: below this L2 norm the summed vector is treated as zero (collisions cancelled it out)
ZERO_NORM = 1e-9

_TOKEN = re.compile(r"[^\W_]+")
_LOW63 = (1 << 63) - 1
#: rows per np.bincount call: bounds the float64 scratch to ~32 MiB at any dimension
_SCRATCH_VALUES = 1 << 22


def _utf8(s: str) -> bytes:
    # surrogatepass: a Python str may hold lone surrogates (JSON decoders refuse them, but
    # library callers can pass anything); they hash as their 3-byte WTF-8 form, never raise.
    return s.encode("utf-8", "surrogatepass")


def feature_hash(feature: str) -> int:
    """The unsigned 64-bit hash of a feature string: BLAKE2b-64 of its UTF-8, little-endian."""
    return int.from_bytes(blake2b(_utf8(feature), digest_size=8).digest(), "little")


def _packed(feature: str) -> bytes:
    # The same 64-bit value as feature_hash, kept as 8 little-endian bytes for np.frombuffer.
    return blake2b(_utf8(feature), digest_size=8).digest()


def normalize_text(text: str) -> str:
    """NFKD, drop combining marks (accents), then casefold: ``"Café OSHA-30"`` -> ``"cafe osha-30"``."""
    if text.isascii():
        # The same result, much faster: NFKD leaves ASCII alone and casefold is lower there.
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokenize(text: str) -> list[str]:
    """Tokens of a text: maximal runs of letters and digits of its normalised form."""
    return _TOKEN.findall(normalize_text(text))


def _ngrams(token: str) -> list[str]:
    padded = f"<{token}>"
    return [padded[i : i + n] for n in NGRAM_SIZES for i in range(len(padded) - n + 1)]


def features(text: str) -> list[tuple[str, float]]:
    """The weighted features of a text, in a fixed order (the readable form of the algorithm).

    :func:`hash_embed` computes the same multiset faster; tests check the two agree.
    """
    norm = normalize_text(text)
    tokens = _TOKEN.findall(norm)
    if not tokens:
        return [(f"r:{norm}", WORD_WEIGHT)]
    out = [(f"w:{t}", WORD_WEIGHT) for t in tokens]
    out += [(f"b:{a} {b}", BIGRAM_WEIGHT) for a, b in zip(tokens, tokens[1:], strict=False)]
    for t in tokens:
        grams = _ngrams(t)
        weight = CHAR_WEIGHT / math.sqrt(len(grams))
        out += [(f"c:{g}", weight) for g in grams]
    return out


@lru_cache(maxsize=1 << 16)
def _token_hashes(token: str) -> tuple[bytes, bytes, int]:
    """(packed unigram hash, packed n-gram hashes, n-gram count) of one token."""
    grams = _ngrams(token)
    return _packed(f"w:{token}"), b"".join(_packed(f"c:{g}") for g in grams), len(grams)


@lru_cache(maxsize=1 << 16)
def _bigram_hash(first: str, second: str) -> bytes:
    return _packed(f"b:{first} {second}")


def _check(texts: Sequence[str], dim: int) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"dimension must be a positive integer, got {dim!r}")
    if isinstance(texts, str | bytes):
        raise ValueError("texts must be a sequence of strings, not a single string")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] is {type(t).__name__}, expected str")


def hash_embed(texts: Sequence[str], dim: int = DEFAULT_DIMENSION) -> np.ndarray:
    """Embed ``texts`` into unit vectors: ``float32`` array of shape ``(len(texts), dim)``.

    Deterministic across calls, processes and machines; any string (even "") has a unit
    vector. ValueError for a non-positive dimension or a non-string item.
    """
    _check(texts, dim)
    dim = int(dim)
    out = np.empty((len(texts), dim), dtype=np.float32)
    step = max(1, _SCRATCH_VALUES // dim)
    for start in range(0, len(texts), step):
        out[start : start + step] = _embed_chunk(texts[start : start + step], dim)
    return out


def _embed_chunk(texts: Sequence[str], dim: int) -> np.ndarray:
    # Segments of equally weighted hashes: blobs[i] holds seg_n[i] packed hashes of weight
    # seg_w[i]; row_n[r] is the number of hashes of text r.
    blobs: list[bytes] = []
    seg_w: list[float] = []
    seg_n: list[int] = []
    row_n: list[int] = []
    norms: list[str] = []
    for text in texts:
        norm = normalize_text(text)
        norms.append(norm)
        tokens = _TOKEN.findall(norm)
        if not tokens:
            blobs.append(_packed(f"r:{norm}"))
            seg_w.append(WORD_WEIGHT)
            seg_n.append(1)
            row_n.append(1)
            continue
        count = 0
        hashed = [_token_hashes(t) for t in tokens]
        blobs.append(b"".join(h[0] for h in hashed))
        seg_w.append(WORD_WEIGHT)
        seg_n.append(len(tokens))
        count += len(tokens)
        if len(tokens) > 1:
            blobs.append(b"".join(map(_bigram_hash, tokens, tokens[1:])))
            seg_w.append(BIGRAM_WEIGHT)
            seg_n.append(len(tokens) - 1)
            count += len(tokens) - 1
        for _, grams, k in hashed:
            blobs.append(grams)
            seg_w.append(CHAR_WEIGHT / math.sqrt(k))
            seg_n.append(k)
            count += k
        row_n.append(count)

    hashes = np.frombuffer(b"".join(blobs), dtype="<u8")
    signed = np.repeat(np.asarray(seg_w, dtype=np.float64), seg_n)
    signed[(hashes >> np.uint64(63)).astype(bool)] *= -1.0
    buckets = (hashes & np.uint64(_LOW63)) % np.uint64(dim)
    rows = np.repeat(np.arange(len(texts), dtype=np.uint64), row_n)
    flat = np.bincount(
        (rows * np.uint64(dim) + buckets).astype(np.intp),
        weights=signed,
        minlength=len(texts) * dim,
    )
    vectors = flat.reshape(len(texts), dim)
    lengths = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    for r in np.flatnonzero(lengths < ZERO_NORM):
        # The features cancelled out (possible at tiny dimensions): use the text's r: feature.
        h = feature_hash(f"r:{norms[r]}")
        vectors[r] = 0.0
        vectors[r, (h & _LOW63) % dim] = -1.0 if h >> 63 else 1.0
        lengths[r] = 1.0
    return (vectors / lengths[:, None]).astype(np.float32)
