"""The native core's memory: a bulk add hands the scratch it freed back to the system
(docs/vectord.md, "Memory after a bulk add"), and ids live in one byte array that drops
removed ids' bytes (side_store.h) without losing a live one."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from lakehouse import VectorIndex

glibc_only = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
    reason="the release is glibc's malloc_trim; RSS is read from /proc",
)

# A child process: the growth of its resident memory (MiB) over one bulk add of 50,000 short
# vectors with 17-character ids, the case where the add's id table and order are largest
# beside the index. Rows are made before the baseline: they are the caller's.
CHILD = """
import numpy as np
from lakehouse import VectorIndex

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

x = np.random.default_rng(0).standard_normal((50_000, 32)).astype(np.float32)
ids = [f"item-{i:012d}" for i in range(len(x))]
before = rss()
ix = VectorIndex(32, distance="euclidean", m=8, ef_construction=16)
ix.add(ids, x)
print((rss() - before) / 2**20)
"""


def grown_mib(trim: bool) -> float:
    env = dict(os.environ)
    env.pop("LAKEHOUSE_TRIM", None)
    if not trim:
        env["LAKEHOUSE_TRIM"] = "0"
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120, check=True)
    return float(out.stdout.strip())


@glibc_only
def test_a_bulk_add_gives_its_scratch_back():
    kept, trimmed = grown_mib(trim=False), grown_mib(trim=True)
    # About 2 MiB on glibc 2.36 (the index itself is about 18 MiB); 1 MiB leaves room for
    # another allocator's layout and still fails when nothing is released.
    assert trimmed <= kept - 1.0, (trimmed, kept)


def test_ids_survive_the_id_arrays_rewrite(tmp_path):
    """Removed ids' bytes are dropped once they outweigh the live ones (side_store.h): every
    live id still finds its own item, unicode and long ids included, before and after a
    save and load."""
    rng = np.random.default_rng(4)
    ids = [f"{i}-" + "ü" * (i % 7) + "x" * (i % 300) for i in range(3000)]  # lengths past 127 bytes too
    x = rng.standard_normal((len(ids), 8)).astype(np.float32)
    ix = VectorIndex(8, distance="euclidean", rotate=False)
    before = ix.stats()["memory_bytes"]
    ix.add(ids, x)
    grown = ix.stats()["memory_bytes"] - before
    ix.delete(ids[: 2500])  # about 5/6 of the id bytes: the array is rewritten
    assert ix.stats()["memory_bytes"] - before < grown
    fresh = [f"new-{i}-" + "y" * (i % 200) for i in range(500)]
    ix.add(fresh, x[:500])
    live = ids[2500:] + fresh
    assert sorted(ix.ids()) == sorted(live)
    vectors = dict(zip(ids[2500:], x[2500:], strict=True)) | dict(zip(fresh, x[:500], strict=True))

    def check(index):
        for i in live:
            assert i in index
            np.testing.assert_array_equal(index.get(i)[0], vectors[i])
        for i in ids[:2500]:
            assert i not in index
        hits = index.search_batch(np.stack([vectors[i] for i in live[:200]]), k=1)[0]
        assert [h[0] for h in hits] == live[:200]

    check(ix)
    ix.save(str(tmp_path / "ix.lhv"))
    check(VectorIndex.load(str(tmp_path / "ix.lhv")))
