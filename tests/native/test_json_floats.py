"""The native reader of JSON number arrays (json_floats.h) against the general decoder:
the same float32 values bit for bit, or None (and the general decoder says what is wrong)."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse._native import json_floats
from lakehouse.vectors.registry import decode_vector, decode_vectors

_general = msgspec.json.Decoder(list[float])


def general(text: bytes) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(_general.decode(text), dtype=np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and (a.view(np.uint32) == b.view(np.uint32)).all()


finite = st.floats(allow_nan=False, allow_infinity=False)
spellings = st.sampled_from([repr, "{:.17e}".format, "{:E}".format, "{:.3f}".format, "{:.9g}".format])
number = st.one_of(
    st.builds(lambda x, f: f(x), finite, spellings),
    st.integers(-(10**30), 10**30).map(str),
    st.integers(-300, 300).map(lambda e: f"1e{e}"),  # underflow to 0, overflow to inf in float32
)
space = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


@given(st.lists(st.tuples(space, number, space), max_size=40), space, space)
def test_matches_the_general_decoder(items, before, after):
    text = (before + "[" + ",".join(a + n + b for a, n, b in items) + "]" + after).encode()
    got = json_floats(text)
    assert got is not None
    assert same_bits(got, general(text))


@given(st.binary(max_size=40) | st.text(alphabet="[]0123456789.eE+-, \tinfa\"", max_size=30).map(str.encode))
def test_anything_it_reads_the_general_decoder_reads_alike(text):
    got = json_floats(text)
    if got is not None:
        assert same_bits(got, general(text))


@pytest.mark.parametrize(
    "text",
    [b"", b"[", b"[1,]", b"[,1]", b"[01]", b"[1.]", b"[.5]", b"[+1]", b"[-]", b"[1e]", b"[1 2]",
     b"[inf]", b"[NaN]", b"[Infinity]", b"[0x10]", b'["1"]', b"[[1]]", b"[null]", b"[true]",
     b"null", b"1", b"{}", b"[1] x", b"[1]]", b"[1e400]", b"[1e-400]"],
)
def test_anything_else_is_none(text):
    assert json_floats(text) is None


def test_reads_bytes_and_raw_and_empty_arrays():
    raw = msgspec.json.decode(b'{"v": [0.5, -2, 3e-2]}', type=dict[str, msgspec.Raw])["v"]
    assert json_floats(raw).tolist() == pytest.approx([0.5, -2.0, 0.03])
    assert json_floats(b" [ ] ").shape == (0,)
    signs = b"[-0, -0.0, -0e0, 0, 9007199254740993, -18446744073709551617]"  # "-0" is the integer 0
    assert same_bits(json_floats(signs), general(signs))
    assert json_floats(memoryview(b"[1,2]")).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError):
        json_floats(memoryview(b"[1,2,3,4]")[::2])  # not contiguous


def test_decode_vector_falls_back_for_its_message():
    assert np.isinf(decode_vector(b"[1e39]")).all()  # float32 overflow: the core rejects it later
    assert decode_vector(b"[1e-400, 2]").tolist() == [0.0, 2.0]  # beyond double: the general way
    with pytest.raises(ValueError, match="item 1: vector"):
        decode_vectors([b"[1, 2]", b'[1, "a"]'], 2)
    with pytest.raises(ValueError, match="item 0: vector: malformed JSON"):
        decode_vectors([b"[1, 2"], 2)
    with pytest.raises(ValueError, match="item 0: vector has 3 dimensions, expected 2"):
        decode_vectors([b"[1, 2, 3]"], 2)
