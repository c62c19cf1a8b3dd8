"""The binary format: round trips, and truncated, corrupt or foreign input never loads."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse import VectorIndex, _native

from .conftest import clustered


@pytest.fixture(scope="module")
def saved():
    x = clustered(400, 8, seed=4)
    ix = VectorIndex(8, distance="cosine", brute_force_threshold=50, m=6)
    ix.add([f"w-{i}" for i in range(len(x))], x, [{"i": i} if i % 3 else None for i in range(len(x))])
    ix.delete([f"w-{i}" for i in range(0, 400, 7)])
    return ix, x, ix.to_bytes()


def test_round_trip_is_exact(saved, tmp_path):
    ix, x, blob = saved
    clone = VectorIndex.from_bytes(blob)
    assert clone.to_bytes() == blob
    assert clone.stats()["graph_built"] and clone.stats()["rebuilds"] == 0
    for q in x[:20]:
        assert clone.search(q, k=7) == ix.search(q, k=7)
    path = tmp_path / "ix.lhv"
    ix.save(path)
    assert path.read_bytes() == blob
    assert VectorIndex.load(path).search(x[1], k=3) == ix.search(x[1], k=3)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]  # the temp file was renamed


def test_header_fields(saved):
    _, _, blob = saved
    assert blob[:8] == b"LHNSWIDX" and blob[-8:] == b"LHNSWEND"
    assert struct.unpack("<I", blob[8:12])[0] == 1
    assert struct.unpack("<I", blob[-12:-8])[0] == _native.crc32c(blob[:-12])


def test_empty_and_foreign_input():
    for data, match in [
        (b"", "empty"),
        (b"hello world, not an index", "bad magic"),
        (b"LHNSWIDX", "truncated"),
        (b"LHNSWIDX" + struct.pack("<I", 99) + b"\0" * 40, "version 99"),
    ]:
        with pytest.raises(ValueError, match=match):
            VectorIndex.from_bytes(data)
    with pytest.raises(ValueError):
        VectorIndex.from_bytes("a string")  # type: ignore[arg-type]


def test_every_truncation_is_refused(saved):
    _, _, blob = saved
    for cut in list(range(0, 64)) + list(range(64, len(blob), max(1, len(blob) // 300))) + [len(blob) - 1]:
        with pytest.raises(ValueError):
            VectorIndex.from_bytes(blob[:cut])


@given(pos=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(saved, pos, bit):
    _, _, blob = saved
    pos %= len(blob)
    bad = bytearray(blob)
    bad[pos] ^= 1 << bit
    with pytest.raises(ValueError):
        VectorIndex.from_bytes(bytes(bad))


def test_index_without_graph_round_trips():
    ix = VectorIndex(3, distance="dot")
    ix.add(["a", "b"], np.array([[1, 2, 3], [3, 2, 1]], np.float32), [b"x", {"k": [1, 2]}])
    clone = VectorIndex.from_bytes(ix.to_bytes())
    assert not clone.stats()["graph_built"]
    assert clone.get("a")[1] == b"x" and clone.get("b")[1] == {"k": [1, 2]}
    assert clone.stats()["distance"] == "dot"


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "nope.lhv")
