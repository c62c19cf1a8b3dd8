"""A fake OpenAI-compatible chat server: the shape OpenRouter, OpenCode Zen and Kimi speak.

Routes (any base path, so ``http://host:port/api/v1`` and ``http://host:port/v1`` both work):

* ``POST <base>/chat/completions {model, messages, max_tokens? | max_completion_tokens?,
  temperature?, response_format?}`` -> ``{id, object: "chat.completion", created, model,
  choices: [{index, message: {role, content}, finish_reason}], usage: {prompt_tokens,
  completion_tokens, total_tokens}}``. ``max_tokens`` truncates the reply to that many words
  with ``finish_reason: "length"``. Streaming is not supported (400).
* ``GET <base>/models`` -> ``{object: "list", data: [{id, object: "model", ...}]}``.
* Errors use OpenAI's shape ``{"error": {"message", "type", "code"}}``; a model outside
  ``models`` (when given) -> 404 ``model_not_found``; a wrong or missing key (when
  ``api_key`` is set) -> 401.

Knobs beyond the shared ones (:mod:`lakehouse.fakes._script`): ``zero_choices`` answers
``choices: []``; ``omit_usage`` leaves ``usage`` out.

Run it with ``lakehouse fake-openai [--host 127.0.0.1] [--port 11436] [--api-key K]``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ._script import ChatCall, ScriptedFake, truncate_words, word_count

__all__ = ["FAKE_OPENAI", "FakeOpenAI", "create_app", "main"]

_CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed, so answers are deterministic


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@dataclass
class FakeOpenAI(ScriptedFake):
    """A fake OpenAI-compatible server's state. ``models``: None accepts any model name."""

    models: Iterable[str] | None = None
    zero_choices: bool = False
    omit_usage: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count, init=False, repr=False)

    def __post_init__(self) -> None:
        self.models = None if self.models is None else set(self.models)

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this fake."""
        return create_app(self)

    def error_response(self, status: int, message: str) -> web.Response:
        kind = {401: "authentication_error", 404: "invalid_request_error", 429: "rate_limit_error"}
        code = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
        body = {
            "error": {
                "message": message,
                "type": kind.get(status, "server_error" if status >= 500 else "invalid_request_error"),
                "code": code.get(status),
            }
        }
        return web.json_response(body, status=status, dumps=_dumps)

    async def models_list(self, request: web.Request) -> web.Response:
        names = sorted(self.models) if self.models is not None else ["fake-model"]
        data = [{"id": n, "object": "model", "created": _CREATED, "owned_by": "fake"} for n in names]
        return web.json_response({"object": "list", "data": data}, dumps=_dumps)

    async def completions(self, request: web.Request) -> web.Response:
        data = await request.read()
        try:
            body = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return self.error_response(400, "invalid JSON body")
        if not isinstance(body, dict):
            return self.error_response(400, "request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error_response(400, "model is required")
        if self.models is not None and model not in self.models:
            return self.error_response(404, f"The model `{model}` does not exist")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return self.error_response(400, "messages must be a non-empty list of objects")
        if body.get("stream"):
            return self.error_response(400, "the fake does not stream")
        call = ChatCall(request.path, model, messages, body.get("response_format"), body)
        reply = self.choose(call)
        error = await self.answer(reply)
        if error is not None:
            return error
        content, finish = reply.content, reply.finish_reason
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        if isinstance(limit, int) and limit > 0 and word_count(content) > limit:
            content, finish = truncate_words(content, limit), "length"
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else word_count(call.prompt)
        completion_tokens = (
            reply.completion_tokens if reply.completion_tokens is not None else word_count(content)
        )
        answer: dict[str, Any] = {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": []
            if self.zero_choices
            else [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish,
                }
            ],
        }
        if not self.omit_usage:
            answer["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return web.json_response(answer, dumps=_dumps)


#: the fake behind an app built by :func:`create_app`
FAKE_OPENAI: web.AppKey[FakeOpenAI] = web.AppKey("fake_openai", FakeOpenAI)


def create_app(fake: FakeOpenAI | None = None) -> web.Application:
    """The fake OpenAI-compatible application for ``fake`` (a fresh one when None)."""
    fake = fake if fake is not None else FakeOpenAI()
    # Every path is an API path here: the base URL of a provider can be anything.
    app = web.Application(middlewares=[fake.middleware(("/",))])
    app[FAKE_OPENAI] = fake
    fake.install(app)
    app.router.add_post("/{base:.*}chat/completions", fake.completions)
    app.router.add_get("/{base:.*}models", fake.models_list)
    return app


def main(argv: list[str]) -> int:
    """``lakehouse fake-openai``: serve a fake OpenAI-compatible chat API until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="lakehouse fake-openai",
        description="a fake OpenAI-compatible /chat/completions server for tests and demos",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11436)
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY'")
    parser.add_argument(
        "--reply", action="append", default=[], metavar="TEXT", help="queue a reply (repeatable)"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(api_key=args.api_key, delay=args.delay)
    fake.script(*args.reply)
    print(f"fake-openai listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    web.run_app(fake.app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0
