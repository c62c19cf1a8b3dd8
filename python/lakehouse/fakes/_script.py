"""What both fake servers share: scripted replies, failure and delay knobs, a request log.

A fake answers a chat call with, in this order:

1. the first :class:`Rule` whose pattern matches the call's prompt text (and model, when the
   rule names one); a rule with ``times`` is dropped once used up;
2. else the next reply of the queue filled by :meth:`ScriptedFake.script`;
3. else a deterministic default (``fake reply to: <last user message>``, or a JSON object
   ``{"reply": ...}`` when the call asked for JSON).

A reply is a string (the content), a :class:`Reply` (content plus finish reason, token
counts, an HTTP error status, a delay) or a function of the :class:`ChatCall` returning
either. Failures injected with :meth:`ScriptedFake.fail` apply to every route (or to the
paths named), before any reply is chosen; ``delay`` slows every ``/api`` or chat route.
Every request is appended to ``requests`` (method, path, headers, decoded JSON body) so a
test can check what a client really sent (``think: false``, no ``temperature``, a bearer
key, the trace-id header).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["ChatCall", "Recorded", "Reply", "ReplySpec", "Rule", "ScriptedFake"]


@dataclass
class Reply:
    """One scripted answer."""

    content: str = ""
    #: Ollama ``done_reason`` / OpenAI ``finish_reason``
    finish_reason: str = "stop"
    #: an HTTP status other than 200 answers an error instead of the content
    status: int = 200
    #: the error body sent verbatim (None: the fake's own JSON error shape)
    body: str | None = None
    #: seconds to wait before answering
    delay: float = 0.0
    #: token counts reported; None = whitespace-separated word counts
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class ChatCall:
    """What a reply function and a rule see of one chat / generate request."""

    path: str
    model: str
    #: ``[{role, content}]`` (``/api/generate``: the system and the prompt as messages)
    messages: list[dict[str, Any]]
    #: ``format`` (Ollama) or ``response_format`` (OpenAI) as sent, None when absent
    format: Any
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        """Every message's content, one per line: what rules match against."""
        return "\n".join(str(m.get("content") or "") for m in self.messages)

    @property
    def last_user(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return str(m.get("content") or "")
        return ""

    @property
    def wants_json(self) -> bool:
        if isinstance(self.format, dict):
            return self.format.get("type") != "text"
        return self.format is not None and self.format != ""


ReplySpec = str | Reply | Callable[[ChatCall], "str | Reply"]


@dataclass
class Rule:
    pattern: re.Pattern[str]
    reply: ReplySpec
    model: str | None = None
    #: answers left (None = unlimited)
    times: int | None = None


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    #: the decoded JSON body (None when absent or not JSON)
    json: Any


@dataclass
class _Failure:
    status: int
    body: str | None
    remaining: int | None
    paths: tuple[str, ...] | None


def word_count(text: str) -> int:
    """The fakes' token count: whitespace-separated words."""
    return len(text.split())


def truncate_words(text: str, limit: int) -> str:
    """The first ``limit`` words of ``text`` (how the fakes honour a token cap)."""
    pieces = re.findall(r"\S+\s*", text)
    return "".join(pieces[:limit]).rstrip()


@dataclass
class ScriptedFake:
    """State and knobs shared by the fake servers (subclassed by each)."""

    #: when set, every API route requires ``Authorization: Bearer <api_key>`` (401 otherwise)
    api_key: str | None = None
    #: seconds every API request waits before it is answered
    delay: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    replies: deque[ReplySpec] = field(default_factory=deque)
    rules: list[Rule] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list, init=False, repr=False)
    _closing: asyncio.Event | None = field(default=None, init=False, repr=False)

    # -- the knobs ------------------------------------------------------------------------

    def script(self, *replies: ReplySpec) -> None:
        """Queue replies; each chat call not caught by a rule takes the next one."""
        self.replies.extend(replies)

    def rule(
        self,
        pattern: str | re.Pattern[str],
        reply: ReplySpec,
        *,
        model: str | None = None,
        times: int | None = None,
    ) -> Rule:
        """Answer calls whose prompt matches ``pattern`` (``re.search``, DOTALL) with ``reply``."""
        compiled = re.compile(pattern, re.DOTALL) if isinstance(pattern, str) else pattern
        rule = Rule(compiled, reply, model, times)
        self.rules.append(rule)
        return rule

    def fail(
        self,
        status: int = 500,
        body: str | None = None,
        *,
        times: int | None = None,
        paths: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests (None: all, until :meth:`clear`) with ``status``.

        ``paths`` limits the failure to those request paths (``("/api/chat",)``).
        """
        if status < 400:
            raise ValueError("fail(): status must be an HTTP error (>= 400)")
        self._failures.append(_Failure(status, body, times, tuple(paths) if paths else None))

    def clear(self) -> None:
        """Forget scripted replies, rules, failures, the delay and the request log."""
        self.replies.clear()
        self.rules.clear()
        self._failures.clear()
        self.requests.clear()
        self.delay = 0.0

    def calls(self, path: str | None = None) -> list[Recorded]:
        """The recorded requests, optionally only those to ``path``."""
        return [r for r in self.requests if path is None or r.path == path]

    # -- used by the servers --------------------------------------------------------------

    def choose(self, call: ChatCall) -> Reply:
        """The reply for ``call`` (rules, then the queue, then the default)."""
        spec: ReplySpec | None = None
        for rule in self.rules:
            if rule.model is not None and rule.model != call.model:
                continue
            if rule.pattern.search(call.prompt):
                spec = rule.reply
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self.rules.remove(rule)
                break
        if spec is None and self.replies:
            spec = self.replies.popleft()
        if spec is None:
            text = call.last_user[:200]
            spec = orjson.dumps({"reply": text}).decode() if call.wants_json else f"fake reply to: {text}"
        if callable(spec) and not isinstance(spec, Reply | str):
            spec = spec(call)
        if isinstance(spec, str):
            spec = Reply(content=spec)
        return spec

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, cut short when the server shuts down (tests never hang on it)."""
        if seconds <= 0:
            return
        closing = self._closing
        if closing is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), timeout=seconds)

    def app(self) -> web.Application:  # pragma: no cover - each fake defines it
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> web.Response:  # pragma: no cover
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on a real socket for the duration of the block; yields the base URL.

        For code that needs a URL rather than aiohttp's test server (``port=0`` picks a
        free port).
        """
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        try:
            yield f"http://{host}:{bound}"
        finally:
            await runner.cleanup()

    def raw_error(self, status: int, body: str | None, default: str) -> web.Response:
        if body is None:
            return self.error_response(status, default)
        try:
            orjson.loads(body)
            ctype = "application/json"
        except orjson.JSONDecodeError:
            ctype = "text/plain"
        return web.Response(status=status, text=body, content_type=ctype)

    def _take_failure(self, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.paths is not None and path not in failure.paths:
                continue
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
            return failure
        return None

    def middleware(self, api_prefixes: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
        """Record, authenticate, fail and delay requests whose path starts with a prefix."""

        @web.middleware
        async def handle(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            data = await request.read()
            try:
                decoded = orjson.loads(data) if data else None
            except orjson.JSONDecodeError:
                decoded = None
            self.requests.append(
                Recorded(request.method, request.path, dict(request.headers), decoded)
            )
            if not request.path.startswith(api_prefixes):
                return await handler(request)
            expected = None if self.api_key is None else f"Bearer {self.api_key}"
            if expected is not None and request.headers.get("Authorization") != expected:
                return self.error_response(401, "unauthorized: missing or invalid bearer key")
            failure = self._take_failure(request.path)
            if failure is not None:
                return self.raw_error(failure.status, failure.body, "injected failure")
            await self.sleep(self.delay)
            return await handler(request)

        return handle

    def install(self, app: web.Application) -> None:
        """Wire the shutdown event that cuts delays short."""

        async def on_startup(app: web.Application) -> None:
            self._closing = asyncio.Event()

        async def on_shutdown(app: web.Application) -> None:
            if self._closing is not None:
                self._closing.set()

        app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)

    async def answer(self, reply: Reply) -> web.Response | None:
        """Apply a reply's delay and error status; None means "answer the content"."""
        await self.sleep(reply.delay)
        if reply.status != 200:
            return self.raw_error(reply.status, reply.body, "scripted failure")
        return None
