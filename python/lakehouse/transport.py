"""The binary vector transport between our own daemons (docs/performance.md, "Binary hops").

JSON stays the wire every client sees. Between matrixd and embedd / vectord, vectors travel
as little-endian float32 instead of JSON text, negotiated by media type:

``application/x-lakehouse-f32`` (:data:`F32`), a *frame*::

    uint32 (little-endian)   n, the length of the header
    n bytes                  the header: a JSON object, UTF-8
    the rest                 float32 little-endian values, row after row

The header names the array's ``shape`` (``[dims]`` for one vector, ``[rows, dims]`` for a
batch) and carries the request's or answer's other fields (``k``, ``exclude_ids``, ``model``,
...). The rest must hold exactly ``prod(shape) x 4`` bytes.

Negotiation:
- embedd answers a frame when the request's ``Accept`` names :data:`F32` (the request
  itself stays JSON: it carries texts); any other request gets JSON, as before.
- vectord takes a frame as a search body when its ``Content-Type`` is :data:`F32`, and says
  that it can by ``Accept-Post: application/json, application/x-lakehouse-f32`` on every
  search answer. A client sends frames only to an upstream that said so, and goes back to
  JSON for good if one answers 415 (an upstream that was replaced by one without it). A
  reference runtime as upstream never sends the header, so it only ever gets JSON.

A malformed frame is a 400 naming what is wrong (short header, header not a JSON object,
missing or bad shape, wrong number of bytes, NaN or infinity).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

__all__ = ["F32", "ACCEPT_POST", "FrameError", "encode_frame", "decode_frame", "accepts_f32", "offers_f32"]

F32 = "application/x-lakehouse-f32"
#: what vectord's search route accepts, announced on its answers
ACCEPT_POST = f"application/json, {F32}"
#: largest header (a search's exclude_ids list fits easily)
MAX_HEADER = 1 << 20

_LEN = struct.Struct("<I")
_LE_F32 = np.dtype("<f4")


class FrameError(ValueError):
    """A body that is not a valid frame; the message says why (answered as a 400)."""


def encode_frame(header: dict[str, Any], array: np.ndarray) -> bytes:
    """A frame of ``array`` (converted to little-endian float32) with ``header`` + its shape."""
    arr = np.ascontiguousarray(array, dtype=_LE_F32)
    head = orjson.dumps({**header, "shape": list(arr.shape)})
    return b"".join((_LEN.pack(len(head)), head, arr.tobytes()))


def decode_frame(body: bytes, *, what: str = "binary body") -> tuple[dict[str, Any], np.ndarray]:
    """``(header, array)`` of a frame; the array is float32 of the header's shape (1-d or
    2-d), finite. :class:`FrameError` for anything else."""
    if len(body) < 4:
        raise FrameError(f"{what}: {len(body)} bytes, too short for a {F32} frame (4-byte header length first)")
    (n,) = _LEN.unpack_from(body)
    if n > MAX_HEADER or 4 + n > len(body):
        raise FrameError(f"{what}: header length {n} does not fit in the {len(body)}-byte body")
    try:
        header = orjson.loads(body[4 : 4 + n])
    except orjson.JSONDecodeError:
        raise FrameError(f"{what}: the header is not valid JSON") from None
    if not isinstance(header, dict):
        raise FrameError(f"{what}: the header must be a JSON object")
    shape = header.pop("shape", None)
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise FrameError(f"{what}: header.shape must be [dims] or [rows, dims] of non-negative integers")
    count = 1
    for d in shape:
        count *= d
    payload = len(body) - 4 - n
    if payload != 4 * count:
        raise FrameError(
            f"{what}: shape {shape} needs {4 * count} bytes of float32, the body has {payload}"
        )
    arr = np.frombuffer(body, dtype=_LE_F32, count=count, offset=4 + n).reshape(shape)
    if not np.isfinite(arr).all():
        raise FrameError(f"{what}: vectors must hold finite numbers (no NaN or infinity)")
    # a copy: the caller owns a writable array that does not pin the body
    return header, arr.astype(np.float32)


def accepts_f32(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for frames."""
    return bool(accept) and F32 in accept  # type: ignore[operator]


def offers_f32(accept_post: str | None) -> bool:
    """Whether an ``Accept-Post`` header says the route takes frames."""
    return bool(accept_post) and F32 in accept_post  # type: ignore[operator]
