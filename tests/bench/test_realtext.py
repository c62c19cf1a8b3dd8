"""The real-text data set's pipeline (bench/realtext.py) on a small dictionary in the
package's format, with a stand-in encoder: cleaning, deduplication, the held-out split,
exact ground truth and resuming an interrupted embedding. The real model is not loaded here
(that is minutes of CPU); its output shape is checked by the same code path when
``python -m bench realtext`` runs."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from bench import realtext


def fake_encode(texts: list[str]) -> np.ndarray:
    """Deterministic unit vectors: a seeded draw per text (the same text, the same vector)."""
    out = np.empty((len(texts), realtext.DIMS), np.float32)
    for i, t in enumerate(texts):
        v = np.random.default_rng(zlib.crc32(t.encode())).standard_normal(realtext.DIMS)
        out[i] = v / np.linalg.norm(v)
    return out


def write_dictionary(folder: Path, n: int) -> list[str]:
    """A words_X.json like the package's, with n distinct definitions plus noise to clean."""
    folder.mkdir(parents=True)
    entries = {}
    good = [f"The number {i} is written here in a plain English sentence." for i in range(n)]
    for i, text in enumerate(good):
        entries[f"w{i:05d}"] = {"pos": [{"definitions": [{"text": text + " [1913 Webster]", "examples": []}]}]}
    entries["zz-dup"] = {"pos": [{"definitions": [{"text": good[0].upper(), "examples": ["Too short."]}]}]}
    (folder / "words_A.json").write_text(json.dumps(entries))
    return good


def test_clean_keeps_sentences_and_drops_the_rest() -> None:
    assert realtext.clean("A small  boat,\nused on rivers. [1913 Webster]") == "A small boat, used on rivers."
    assert realtext.clean("The study of morphemes; morphology{4}.") == "The study of morphemes; morphology."
    assert realtext.clean("Producing bitumen.") is None  # fewer than 5 words
    assert realtext.clean("a list of five words without an end") is None  # no final punctuation
    assert realtext.clean("1. 2. 3. 4. 5. 6.") is None  # starts with a digit
    assert realtext.clean("Ein schönes Wort für etwas ganz anderes.") is None  # not ASCII
    assert realtext.clean(" ".join(["word"] * 61) + ".") is None  # too long


def test_sentences_deduplicate_ignoring_case_and_punctuation() -> None:
    out = realtext.sentences(["The cat sat on the mat.", "the cat, sat on the mat!", "A dog sat on the mat."])
    assert out == ["The cat sat on the mat.", "A dog sat on the mat."]


def test_split_is_seeded_and_disjoint() -> None:
    pool = [f"s{i}" for i in range(500)]
    data, queries = realtext.split(pool, 300, 50)
    assert len(data) == 300 and len(queries) == 50 and not set(data) & set(queries)
    assert (data, queries) == realtext.split(pool, 300, 50)
    with pytest.raises(SystemExit):
        realtext.split(pool, 480, 50)


def test_build_makes_an_exact_cache(tmp_path: Path) -> None:
    good = write_dictionary(tmp_path / "dict", 700)
    files = realtext.build(500, 40, tmp_path / "cache", encode=fake_encode, folder=tmp_path / "dict")
    x, q, truth = (np.load(files[k]) for k in ("data", "queries", "truth"))
    assert x.shape == (500, realtext.DIMS) and q.shape == (40, realtext.DIMS) and truth.shape == (40, realtext.K)
    assert x.dtype == q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6)
    lines = files["text"].read_text().splitlines()
    data_t, query_t = lines[:500], lines[500:]
    assert len(query_t) == 40 and not set(data_t) & set(query_t) and set(lines) <= set(good)
    # the vectors are those of the texts, in order
    np.testing.assert_allclose(x, fake_encode(data_t), atol=1e-6)
    # exact ground truth: the brute-force k nearest by cosine
    sims = q.astype(np.float64) @ x.astype(np.float64).T
    expect = np.argsort(-sims, axis=1, kind="stable")[:, : realtext.K]
    assert (truth == expect).all()
    # a second call finds the cache and does not encode
    assert realtext.build(500, 40, tmp_path / "cache", encode=lambda t: pytest.fail("re-encoded"), folder=tmp_path / "dict") == files


def test_tuning_queries_are_neither_data_nor_evaluation_queries(tmp_path: Path) -> None:
    good = write_dictionary(tmp_path / "dict", 700)
    files = realtext.build(500, 40, tmp_path / "cache", encode=fake_encode, folder=tmp_path / "dict")
    dev = realtext.build_dev(500, 40, 50, tmp_path / "cache", encode=fake_encode, folder=tmp_path / "dict")
    q, truth = np.load(dev["queries"]), np.load(dev["truth"])
    assert q.shape == (50, realtext.DIMS) and truth.shape == (50, realtext.K)
    # which sentences they are: the stand-in encoder gives each text its own vector
    by_vector = {fake_encode([t])[0].tobytes(): t for t in good}
    dev_t = [by_vector[np.float32(v / np.linalg.norm(v.astype(np.float64))).tobytes()] for v in q]
    used = set(files["text"].read_text().splitlines())
    assert len(set(dev_t)) == 50 and not set(dev_t) & used
    x = np.load(files["data"])
    expect = np.argsort(-(q.astype(np.float64) @ x.astype(np.float64).T), axis=1, kind="stable")[:, : realtext.K]
    assert (truth == expect).all()
    # cached; and more than the text has left is refused
    assert realtext.build_dev(500, 40, 50, tmp_path / "cache", encode=lambda t: pytest.fail("re-encoded"),
                              folder=tmp_path / "dict") == dev
    with pytest.raises(SystemExit, match="left beyond"):
        realtext.build_dev(500, 40, 61, tmp_path / "cache", encode=fake_encode, folder=tmp_path / "dict")


def test_an_interrupted_embedding_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dictionary(tmp_path / "dict", 400)
    monkeypatch.setattr(realtext, "CHUNK", 64)
    calls: list[int] = []

    def failing(texts: list[str]) -> np.ndarray:
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(texts))
        return fake_encode(texts)

    with pytest.raises(KeyboardInterrupt):
        realtext.build(300, 20, tmp_path / "cache", encode=failing, folder=tmp_path / "dict")
    encoded_first = sum(calls)
    again: list[int] = []

    def counting(texts: list[str]) -> np.ndarray:
        again.append(len(texts))
        return fake_encode(texts)

    files = realtext.build(300, 20, tmp_path / "cache", encode=counting, folder=tmp_path / "dict")
    total = 300 + 20 + min(400 - 320, 100)  # data, queries and the spare sentences
    assert sum(again) == total - encoded_first
    assert not (tmp_path / "cache" / f"{realtext.tag(300, 20)}.parts").exists()
    x = np.load(files["data"])
    np.testing.assert_allclose(x, fake_encode(files["text"].read_text().splitlines()[:300]), atol=1e-6)


def test_identical_embeddings_are_dropped() -> None:
    x = np.eye(4, dtype=np.float32)[[0, 1, 0, 2]]
    texts, kept = realtext.drop_duplicate_vectors(["a", "b", "c", "d"], x)
    assert texts == ["a", "b", "d"] and (kept == np.eye(4, dtype=np.float32)[[0, 1, 2]]).all()


def test_hubness_of_a_hub() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    h = realtext.hubness(x, sample=300)
    assert h["sampled"] == 300 and h["k_occurrence_max"] >= realtext.K
