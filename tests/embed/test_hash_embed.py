"""The hash embedder: parity with a twin written from docs/embed.md, and its properties."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from parity.reference import embed as twin

from lakehouse.embed import hashing
from lakehouse.embed.hashing import feature_hash, features, hash_embed, tokenize

# The twin: docs/embed.md "The hash embedder, exactly", in plain Python. It lives in
# parity/reference/embed.py (one copy, shared with the parity probe).
twin_normalise = twin.normalize
twin_features = twin.features
twin_sign_bucket = twin.sign_bucket
twin_embed = twin.embed


# Texts from the whole of Unicode (hypothesis leaves out lone surrogates) and staffing-like text.
WORDS = st.sampled_from(
    ["Forklift", "operator", "OSHA-30", "Milwaukee", "WI", "night", "shift", "CNC", "café",
     "naïve", "İstanbul", "ﬁre", "３０", "x_y", "  ", "!!", "\u0301", "ß", "Ω"]
)
TEXTS = st.one_of(st.text(max_size=60), st.lists(WORDS, max_size=12).map(" ".join))
DIMS = st.sampled_from([1, 2, 7, 64, 768, 1536]) | st.integers(1, 3000)


@given(text=TEXTS, dim=DIMS)
def test_matches_the_twin_written_from_the_doc(text, dim):
    ours = hash_embed([text], dim)[0]
    assert ours.dtype == np.float32 and ours.shape == (dim,)
    np.testing.assert_allclose(ours, np.array(twin_embed(text, dim)), rtol=0, atol=1e-6)


@given(text=TEXTS)
def test_readable_features_are_the_documented_multiset(text):
    assert sorted(features(text)) == sorted(twin_features(text))


def test_lone_surrogates_hash_without_error():
    text = "forklift \ud800 operator"
    np.testing.assert_allclose(hash_embed([text], 32)[0], twin_embed(text, 32), atol=1e-6)


def test_known_answers_pin_the_algorithm():
    # Frozen values: a change here breaks every stored hash vector and the parity twin.
    assert feature_hash("w:forklift") == int.from_bytes(
        hashlib.blake2b(b"w:forklift", digest_size=8).digest(), "little"
    )
    assert tokenize("Forklift Operator, OSHA-30; Café_naïve") == [
        "forklift", "operator", "osha", "30", "cafe", "naive"
    ]
    v = hash_embed(["30"], 16)[0]
    # "30": w:30 (1.0), c:<30, c:30>, c:<30> (1/sqrt(3) each), no bigram.
    expected = np.zeros(16)
    for f, w in [("w:30", 1.0)] + [(f"c:{g}", 3**-0.5) for g in ("<30", "30>", "<30>")]:
        sign, bucket = twin_sign_bucket(f, 16)
        expected[bucket] += sign * w
    np.testing.assert_allclose(v, expected / np.linalg.norm(expected), atol=1e-7)
    assert np.count_nonzero(v) >= 2


# -- properties --------------------------------------------------------------------------


@given(texts=st.lists(TEXTS, max_size=8), dim=st.sampled_from([1, 7, 768, 1536]))
def test_unit_norm_and_shape_for_every_string(texts, dim):
    vectors = hash_embed(texts, dim)
    assert vectors.shape == (len(texts), dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@given(texts=st.lists(TEXTS, min_size=1, max_size=6), dim=st.sampled_from([7, 768]))
def test_deterministic_and_independent_of_the_batch(texts, dim):
    batch = hash_embed(texts, dim)
    assert hash_embed(texts, dim).tobytes() == batch.tobytes()
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(hash_embed([text], dim)[0], batch[i])


def test_chunked_batches_equal_one_batch(monkeypatch):
    texts = [f"worker {i} forklift operator shift {i % 3}" for i in range(23)]
    whole = hash_embed(texts, 16)
    monkeypatch.setattr(hashing, "_SCRATCH_VALUES", 64)  # 4 rows per chunk at dim 16
    np.testing.assert_array_equal(hash_embed(texts, 16), whole)


SCRIPT = (
    "import hashlib, sys; from lakehouse.embed import hash_embed; "
    "texts = sys.stdin.read().split('\\n'); "
    "print(hashlib.sha256(hash_embed(texts, 768).tobytes()).hexdigest())"
)


def test_deterministic_across_processes():
    texts = ["Forklift Operator, OSHA-30, Milwaukee WI", "registered nurse", "", "Ünïcödé ﬁ"]
    here = hashlib.sha256(hash_embed(texts, 768).tobytes()).hexdigest()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            input="\n".join(texts),
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        assert out.stdout.strip() == here


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # unit vectors


# Disjoint alphabets: the unrelated text shares no token and no character n-gram.
NEAR_WORDS = st.text(alphabet="abcdefghijklm0123", min_size=1, max_size=12)
FAR_WORDS = st.text(alphabet="nopqrstuvwxyz4567", min_size=1, max_size=12)


@given(
    words=st.lists(NEAR_WORDS, min_size=2, max_size=20),
    position=st.integers(0, 100),
    replacement=NEAR_WORDS,
    unrelated=st.lists(FAR_WORDS, min_size=1, max_size=20),
)
def test_nearer_to_itself_with_a_word_changed_than_to_an_unrelated_text(
    words, position, replacement, unrelated
):
    i = position % len(words)
    assume(replacement != words[i])
    changed = [*words[:i], replacement, *words[i + 1 :]]
    a, b, c = hash_embed([" ".join(words), " ".join(changed), " ".join(unrelated)], 768)
    assert cosine(a, b) > cosine(a, c)


def test_staffing_paraphrase_is_nearer_than_an_unrelated_role():
    query, target, other = hash_embed(
        [
            "forklift driver with OSHA 30 in Milwaukee",
            "Forklift Operator, OSHA-30, Milwaukee WI",
            "registered nurse in Chicago",
        ]
    )
    assert cosine(query, target) > 0.4
    assert cosine(query, target) > cosine(query, other) + 0.3
    # spelling and case variants land together too
    a, b = hash_embed(["Forklift Operators, Milwaukee", "forklift operator milwaukee"])
    assert cosine(a, b) > 0.7


def test_zero_sum_falls_back_to_the_r_feature(monkeypatch):
    # With bigrams weightless, "x y" sums to zero at dim 1 when w:x, w:y and c:<x>, c:<y>
    # have opposite signs: the result must still be a unit vector, the r: feature's sign.
    monkeypatch.setattr(hashing, "BIGRAM_WEIGHT", 0.0)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def sign(f: str) -> float:
        return twin_sign_bucket(f, 1)[0]

    pair = next(
        (x, y)
        for x in letters
        for y in letters
        if sign(f"w:{x}") == -sign(f"w:{y}") and sign(f"c:<{x}>") == -sign(f"c:<{y}>")
    )
    text = f"{pair[0]} {pair[1]}"
    assert hash_embed([text], 1)[0][0] == sign(f"r:{text}")


@pytest.mark.parametrize("dim", [0, -3, True, 1.5, "8"])
def test_bad_dimension_is_a_value_error(dim):
    with pytest.raises(ValueError, match="dimension"):
        hash_embed(["x"], dim)


def test_bad_texts_are_value_errors():
    with pytest.raises(ValueError, match="single string"):
        hash_embed("forklift", 8)
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        hash_embed(["ok", b"bytes"], 8)  # type: ignore[list-item]
    assert hash_embed([], 8).shape == (0, 8)


def roster_rows(n: int) -> list[str]:
    import random

    rng = random.Random(7)
    roles = ["Forklift Operator", "Warehouse Associate", "CNC Machinist", "Order Picker",
             "Registered Nurse", "Loader", "Shipping Clerk", "Welder", "Assembler"]
    cities = ["Milwaukee WI", "Chicago IL", "Detroit MI", "Dallas TX", "Columbus OH"]
    certs = ["OSHA-10", "OSHA-30", "Forklift Certified", "CPR", "HAZMAT", "CDL-A"]
    skills = ["pallet jack", "inventory", "RF scanner", "receiving", "blueprint reading",
              "MIG welding", "quality control", "shipping"]
    names = ["James", "Maria", "John", "Linda", "Robert", "Smith", "Garcia", "Nguyen", "Brown"]
    return [
        f"w-{i:05d} {rng.choice(names)} {rng.choice(names)}, {rng.choice(roles)}, "
        f"{rng.choice(cities)}. Certifications: {', '.join(rng.sample(certs, 2))}. "
        f"Skills: {', '.join(rng.sample(skills, 3))}. Shift: {rng.choice(['day', 'night'])}; "
        f"available {rng.choice(['now', 'next week'])}; {rng.randint(0, 30)} years; "
        f"rating {rng.randint(1, 5)} of 5."
        for i in range(n)
    ]


@pytest.mark.slow
def test_speed_10k_roster_rows():
    rows = roster_rows(10_000)
    assert 25 <= np.mean([len(r.split()) for r in rows]) <= 35
    hashing._token_hashes.cache_clear()
    hashing._bigram_hash.cache_clear()
    start = time.perf_counter()
    hash_embed(rows, 768)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    hash_embed(rows, 768)
    warm = time.perf_counter() - start
    print(f"10,000 rows x 768: cold {cold:.2f} s, warm {warm:.2f} s")
    assert cold < 5.0 and warm < 5.0
