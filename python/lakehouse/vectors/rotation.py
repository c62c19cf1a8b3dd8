"""The rotation an index stores its vectors under (docs/vectord.md, "The rotation").

A graph search scores about a thousand stored vectors per query and keeps few of them; the
native core's bounded kernel stops reading a vector once its running squared distance passes
the worst answer kept. On real embeddings the coordinates share the variance evenly, so the
running sum passes the bound late: about 89 % of a 384-d vector is read on average. Turned
onto the data's principal axes, largest variance first, the same vectors are given up on
after about 58 % of their floats, and no distance changes: the rotation is orthogonal.

:func:`fit` computes that rotation from a sample (principal component analysis with numpy);
:func:`wanted` says when the facade fits one: a cosine or euclidean index of 128 to 512
dimensions that is about to hold more items than it scans exactly. Below 128 the kernel
(which looks at its sum every 64 floats) has too few looks to gain; above 512 the matrix
(dims x dims floats, read once per query to turn it) costs more than it saves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

#: an index is rotated when an add brings it past this many items (and past its exact-scan
#: threshold): enough rows for a stable estimate of the axes
AT_ITEMS = 1024
#: rows the axes are estimated from (evenly spaced rows of the batch, then of the stored items)
SAMPLE = 20_000
MIN_DIMS = 128
#: above this the matrix (dims^2 floats: 1 MiB at 512) is read once per query to turn it,
#: and that costs more than the shorter reads save: a 50,000 x 768 synthetic set searched
#: 13-17 % slower rotated (docs/vectord.md, "The rotation")
MAX_DIMS = 512
DISTANCES = ("cosine", "euclidean")


def wanted(distance: str, dims: int, items_after: int, brute_force_threshold: int) -> bool:
    """Whether an index of this kind that will hold ``items_after`` items should be rotated
    (when it is not yet)."""
    return (distance in DISTANCES and MIN_DIMS <= dims <= MAX_DIMS
            and items_after >= max(AT_ITEMS, brute_force_threshold + 1))


#: rows per step of the streaming passes below: no pass copies a whole batch, so an add's
#: peak memory stays that of the index. Small on purpose: after a fit of 20,000 x 384 the
#: process kept about 6 MiB more with steps of 1,024 rows than of 128 (measured; mostly
#: what numpy's BLAS touched in its first products)
CHUNK = 128


def chunks(rows: np.ndarray, step: int = CHUNK) -> Iterator[np.ndarray]:
    """``rows`` (any numeric dtype and layout) a few at a time, as float64."""
    for start in range(0, len(rows), step):
        yield np.asarray(rows[start : start + step], dtype=np.float64)


def acceptable(rows: np.ndarray, cosine: bool) -> bool:
    """Whether the core would take every row (finite; non-zero under cosine), checked a few
    rows at a time."""
    for c in chunks(rows):
        if not np.isfinite(c).all() or (cosine and not (np.einsum("ij,ij->i", c, c) > 0).all()):
            return False
    return True


def fit(rows: Iterable[np.ndarray], normalise: bool) -> np.ndarray:
    """The orthogonal matrix (float32, row-major, one principal axis per row, largest variance
    first) that turns the given rows onto their principal axes. ``rows`` comes in chunks
    (2-d float arrays, finite), summed as they arrive. ``normalise``: the rows as a cosine
    index stores them (unit length)."""
    total, cross, n = None, None, 0
    for c in rows:
        c = np.asarray(c, dtype=np.float64)
        if normalise:
            norms = np.linalg.norm(c, axis=1, keepdims=True)
            c = c[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
        if total is None:
            total, cross = np.zeros(c.shape[1]), np.zeros((c.shape[1], c.shape[1]))
        total += c.sum(axis=0)
        cross += c.T @ c
        n += len(c)
    if total is None or cross is None or n < 2 or not np.isfinite(cross).all():
        raise ValueError("a rotation needs at least two finite rows")
    mean = total / n
    _, axes = np.linalg.eigh(cross - n * np.outer(mean, mean))  # ascending; columns are axes
    r = np.ascontiguousarray(axes[:, ::-1].T)
    # each row's sign fixed (largest entry positive): the same rows give the same matrix
    r *= np.where(r[np.arange(len(r)), np.abs(r).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    return r.astype(np.float32)
