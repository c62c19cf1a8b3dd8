"""Calls alike that arrive while one is in flight travel together in the next call.

matrixd makes one vectord search per corpus per request. Under load, many requests search
the same corpus with the same parameters at once; each search as its own HTTP request costs
a client round trip in matrixd and a server round trip, a body decode and a thread hop in
vectord, and each runs alone through the core's exact scan. A :class:`Coalescer` sends the
first call of a kind at once (a lone request waits for nothing) and holds the ones of the
same kind that arrive while it is in flight; when it returns, they all go in one call (up
to ``max_batch``), and so on while more keep coming. Each caller gets its own result or its
own exception; a caller that gives up (a timeout, a cancelled request) only stops waiting:
the shared call goes on for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

Q = TypeVar("Q")
R = TypeVar("R")

#: ``run(key, items)``: one result (or exception) per item, in order
RunMany = Callable[[Hashable, list[Q]], Awaitable[list[R | BaseException]]]


@dataclass
class _Kind(Generic[Q, R]):
    waiting: list[tuple[Q, asyncio.Future[R]]] = field(default_factory=list)
    running: bool = False


class Coalescer(Generic[Q, R]):
    """See the module docstring. ``run`` gets the items of one kind (``key``) together and
    answers each; it must not raise (an exception it lets out answers every item of the
    call with it)."""

    def __init__(self, run: RunMany[Q, R], max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run = run
        self._max_batch = max_batch
        self._kinds: dict[Hashable, _Kind[Q, R]] = {}
        #: calls made, and items they carried (for tests and benchmarks)
        self.calls = 0
        self.items = 0

    async def submit(self, key: Hashable, item: Q) -> R:
        """``item``'s result, from a call shared with the items of kind ``key`` waiting then."""
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        kind.waiting.append((item, future))
        if not kind.running:
            kind.running = True
            asyncio.get_running_loop().create_task(self._drain(key, kind))
        return await future

    async def _drain(self, key: Hashable, kind: _Kind[Q, R]) -> None:
        try:
            while kind.waiting:
                batch = kind.waiting[: self._max_batch]
                del kind.waiting[: self._max_batch]
                batch = [(item, f) for item, f in batch if not f.done()]  # callers that left
                if not batch:
                    continue
                self.calls += 1
                self.items += len(batch)
                try:
                    results: list[Any] = await self._run(key, [item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every caller of the call
                    results = [exc] * len(batch)
                except BaseException:  # cancelled (the loop is closing): nobody is left waiting
                    for _, f in batch:
                        f.cancel()
                    raise
                for (_, f), result in zip(batch, results, strict=True):
                    if f.done():
                        continue
                    if isinstance(result, BaseException):
                        f.set_exception(result)
                    else:
                        f.set_result(result)
        finally:
            kind.running = False
            for _, f in kind.waiting:  # only when cancelled (the loop is closing)
                f.cancel()
            kind.waiting.clear()
            if self._kinds.get(key) is kind:
                del self._kinds[key]
