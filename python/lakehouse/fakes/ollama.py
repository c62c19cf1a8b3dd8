"""A fake Ollama server: the HTTP API a real Ollama speaks, answered without any model.

Routes (the shapes of Ollama's API, checked against the official ``ollama`` client):

* ``GET /api/tags`` lists the configured models; ``GET /api/version``; ``GET /`` says
  "Ollama is running"; ``GET /health`` answers ``{"status": "ok", "service": "fake_ollama"}``.
* ``POST /api/embed {model, input: str | [str], dimensions?}`` -> ``{model, embeddings,
  ...}`` with L2-normalised vectors (as the real ``/api/embed``); ``POST /api/embeddings
  {model, prompt}`` -> ``{embedding}`` unnormalised (as the real legacy route; an empty
  prompt gives ``[]``, as Ollama does). Vectors are :func:`fake_embedding`: a pure function
  of the text (sha256 in counter mode), sized by the model's configured dimension.
* ``POST /api/chat {model, messages, stream?, format?, options?, think?}`` and ``POST
  /api/generate {model, prompt, system?, ...}`` answer scripted replies (see
  :mod:`lakehouse.fakes._script`), streamed as NDJSON unless ``stream`` is false (Ollama's
  default is to stream). ``options.num_predict`` truncates the reply to that many words with
  ``done_reason: "length"``. Token counts are word counts. An empty ``/api/generate``
  prompt answers ``done_reason: "load"``, as Ollama does.
* A model that is not configured -> 404 ``{"error": "model \\"x\\" not found, try pulling it
  first"}``; a name without a tag means ``:latest``, as in Ollama.

Knobs for tests: ``fake.fail(500, times=1, paths=["/api/embed"])``, ``fake.delay = 2.0``,
``Reply(status=429)``, ``FakeOllama(api_key="k")`` (Ollama Cloud's bearer auth), and
``fake.requests`` to read back what a client sent.

Run it standalone with ``lakehouse fake-ollama [--host 127.0.0.1] [--port 11435]``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from ._script import ChatCall, ScriptedFake, truncate_words, word_count

__all__ = [
    "DEFAULT_MODELS",
    "FAKE_OLLAMA",
    "FakeOllama",
    "create_app",
    "fake_embedding",
    "main",
]

#: Models a fake knows unless told otherwise (name -> embedding dimension): the embedders of
#: the reference and the model tiers of ``[models]``.
DEFAULT_MODELS: dict[str, int] = {
    "nomic-embed-text": 768,
    "nomic-embed-text-v2-moe": 768,
    "qwen3.5:latest": 768,
    "qwen2.5:latest": 768,
    "qwen3:latest": 768,
    "kimi-k2.6:cloud": 768,
    "qwen3-coder:480b": 768,
    "deepseek-v3.2": 768,
}

_DURATION_NS = 1_000_000  # reported durations: fixed, so answers are deterministic


def fake_embedding(text: str, dimension: int = 768, *, normalize: bool = False) -> list[float]:
    """The fake's vector for ``text``: deterministic, in [-1, 1) per component.

    ``sha256(text)`` seeds a counter-mode expansion (``sha256(seed || i)`` for block ``i``),
    read as little-endian uint32 and mapped to [-1, 1). The vector of a smaller dimension is a
    prefix of a larger one. ``normalize`` scales it to unit L2 norm (``/api/embed``).
    """
    if dimension <= 0:
        raise ValueError("dimension must be positive")
    seed = hashlib.sha256(text.encode("utf-8")).digest()
    blocks = math.ceil(dimension * 4 / 32)
    stream = b"".join(
        hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(blocks)
    )
    raw = np.frombuffer(stream[: dimension * 4], dtype="<u4").astype(np.float64)
    vec = raw / 2.0**32 * 2.0 - 1.0
    if normalize:
        norm = float(np.linalg.norm(vec))
        if norm > 0:
            vec = vec / norm
    return vec.tolist()


def normalize_model_name(name: str) -> str:
    """Ollama's rule: a name without a tag means ``<name>:latest``."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeOllama(ScriptedFake):
    """A fake Ollama's state. ``models``: name -> embedding dimension (or just names)."""

    models: Mapping[str, int] | Iterable[str] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    #: dimension of models given by name only, and of :meth:`add_model` by default
    default_dimension: int = 768

    def __post_init__(self) -> None:
        given = self.models
        table: dict[str, int] = {}
        items = given.items() if isinstance(given, Mapping) else ((n, self.default_dimension) for n in given)
        for name, dim in items:
            self._check_dimension(name, dim)
            table[normalize_model_name(name)] = int(dim)
        self.models = table

    @staticmethod
    def _check_dimension(name: str, dim: int) -> None:
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"model {name!r}: embedding dimension must be a positive int")

    # -- model table --------------------------------------------------------------------

    def add_model(self, name: str, dimension: int | None = None) -> None:
        dim = self.default_dimension if dimension is None else dimension
        self._check_dimension(name, dim)
        self._table()[normalize_model_name(name)] = dim

    def remove_model(self, name: str) -> None:
        self._table().pop(normalize_model_name(name), None)

    def dimension(self, model: str) -> int | None:
        """The embedding dimension of ``model``; None when the fake does not know it."""
        return self._table().get(normalize_model_name(model))

    def _table(self) -> dict[str, int]:
        return typing.cast(dict[str, int], self.models)  # a dict since __post_init__

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this fake (use with ``aiohttp_server``)."""
        return create_app(self)

    def error_response(self, status: int, message: str) -> web.Response:
        """Ollama's error shape: ``{"error": "<message>"}``."""
        return web.json_response({"error": message}, status=status, dumps=_dumps)

    # -- handlers -------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        data = await request.read()
        try:
            body = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            return self.error_response(400, "invalid JSON body")
        if not isinstance(body, dict):
            return self.error_response(400, "request body must be a JSON object")
        return body

    def _model(self, body: dict[str, Any]) -> tuple[str, int] | web.Response:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error_response(400, "model is required")
        dim = self.dimension(model)
        if dim is None:
            return self.error_response(404, f'model "{model}" not found, try pulling it first')
        return model, dim

    async def tags(self, request: web.Request) -> web.Response:
        models = []
        for name in sorted(self._table()):
            digest = hashlib.sha256(name.encode()).hexdigest()
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": "2026-01-01T00:00:00Z",
                    "size": 1_000_000,
                    "digest": digest,
                    "details": {
                        "parent_model": "",
                        "format": "gguf",
                        "family": name.split(":", 1)[0],
                        "families": [name.split(":", 1)[0]],
                        "parameter_size": "fake",
                        "quantization_level": "F32",
                    },
                }
            )
        return web.json_response({"models": models}, dumps=_dumps)

    async def embed(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        found = self._model(body)
        if isinstance(found, web.Response):
            return found
        model, dim = found
        raw_input = body.get("input", [])
        texts = [raw_input] if isinstance(raw_input, str) else raw_input
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self.error_response(400, "input must be a string or a list of strings")
        wanted = body.get("dimensions")
        if wanted is not None:
            if not isinstance(wanted, int) or isinstance(wanted, bool) or not 0 < wanted <= dim:
                return self.error_response(400, f"dimensions must be 1..{dim} for {model}")
            dim = wanted
        vectors = [fake_embedding(t, dim, normalize=True) for t in texts]
        return web.json_response(
            {
                "model": model,
                "embeddings": vectors,
                "total_duration": _DURATION_NS,
                "load_duration": 0,
                "prompt_eval_count": sum(word_count(t) for t in texts),
            },
            dumps=_dumps,
        )

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        found = self._model(body)
        if isinstance(found, web.Response):
            return found
        _, dim = found
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            return self.error_response(400, "prompt must be a string")
        vector = fake_embedding(prompt, dim) if prompt else []
        return web.json_response({"embedding": vector}, dumps=_dumps)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        found = self._model(body)
        if isinstance(found, web.Response):
            return found
        messages = body.get("messages", [])
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return self.error_response(400, "messages must be a list of objects")
        call = ChatCall(request.path, body["model"], messages, body.get("format"), body)
        return await self._respond(request, call, body, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        found = self._model(body)
        if isinstance(found, web.Response):
            return found
        prompt = body.get("prompt", "")
        system = body.get("system", "")
        if not isinstance(prompt, str) or not isinstance(system, str):
            return self.error_response(400, "prompt and system must be strings")
        if not prompt:
            # Ollama answers an empty prompt by loading the model and saying so.
            return web.json_response(
                {
                    "model": body["model"],
                    "created_at": _now(),
                    "response": "",
                    "done": True,
                    "done_reason": "load",
                },
                dumps=_dumps,
            )
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        call = ChatCall(request.path, body["model"], messages, body.get("format"), body)
        return await self._respond(request, call, body, chat=False)

    async def _respond(
        self, request: web.Request, call: ChatCall, body: dict[str, Any], *, chat: bool
    ) -> web.StreamResponse:
        reply = self.choose(call)
        error = await self.answer(reply)
        if error is not None:
            return error
        content, done_reason = reply.content, reply.finish_reason
        options = body.get("options") or {}
        limit = options.get("num_predict") if isinstance(options, dict) else None
        if isinstance(limit, int) and limit > 0 and word_count(content) > limit:
            content, done_reason = truncate_words(content, limit), "length"
        prompt_tokens = (
            reply.prompt_tokens if reply.prompt_tokens is not None else word_count(call.prompt)
        )
        completion_tokens = (
            reply.completion_tokens
            if reply.completion_tokens is not None
            else word_count(content)
        )
        final: dict[str, Any] = {
            "model": call.model,
            "created_at": _now(),
            "done": True,
            "done_reason": done_reason,
            "total_duration": _DURATION_NS,
            "load_duration": 0,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": _DURATION_NS // 2,
            "eval_count": completion_tokens,
            "eval_duration": _DURATION_NS // 2,
        }
        if not chat:
            final["context"] = [1, 2, 3]
        if body.get("stream", True) is False:
            if chat:
                final["message"] = {"role": "assistant", "content": content}
            else:
                final["response"] = content
            return web.json_response(_ordered(final), dumps=_dumps)
        # Streaming: one NDJSON line per word, then the final line with the counts.
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        for piece in re.findall(r"\S+\s*|\s+", content):
            chunk: dict[str, Any] = {"model": call.model, "created_at": _now(), "done": False}
            if chat:
                chunk["message"] = {"role": "assistant", "content": piece}
            else:
                chunk["response"] = piece
            await resp.write(orjson.dumps(chunk) + b"\n")
        if chat:
            final["message"] = {"role": "assistant", "content": ""}
        else:
            final["response"] = ""
        await resp.write(orjson.dumps(_ordered(final)) + b"\n")
        await resp.write_eof()
        return resp


#: the fake behind an app built by :func:`create_app`
FAKE_OLLAMA: web.AppKey[FakeOllama] = web.AppKey("fake_ollama", FakeOllama)


def _ordered(final: dict[str, Any]) -> dict[str, Any]:
    """Put ``message`` / ``response`` right after ``created_at``, as Ollama does."""
    head = {k: final[k] for k in ("model", "created_at") if k in final}
    for key in ("message", "response"):
        if key in final:
            head[key] = final[key]
    return {**head, **final}


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def create_app(fake: FakeOllama | None = None) -> web.Application:
    """The fake Ollama application for ``fake`` (a fresh one with defaults when None)."""
    fake = fake if fake is not None else FakeOllama()
    app = web.Application(middlewares=[fake.middleware(("/api/",))])
    app[FAKE_OLLAMA] = fake
    fake.install(app)

    async def root(request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "fake_ollama"})

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-fake"})

    app.router.add_get("/", root)
    app.router.add_get("/health", health)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", fake.tags)
    app.router.add_post("/api/embed", fake.embed)
    app.router.add_post("/api/embeddings", fake.embeddings)
    app.router.add_post("/api/chat", fake.chat)
    app.router.add_post("/api/generate", fake.generate)
    return app


def _parse_model(spec: str) -> tuple[str, int]:
    name, sep, dim = spec.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"bad --model {spec!r}: expected NAME or NAME=DIM")
    if not sep:
        return name, 768
    try:
        value = int(dim)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --model {spec!r}: DIM must be an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"bad --model {spec!r}: DIM must be positive")
    return name, value


def main(argv: list[str]) -> int:
    """``lakehouse fake-ollama``: serve a fake Ollama until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="lakehouse fake-ollama",
        description="a fake Ollama (deterministic embeddings, scripted chat) for tests and demos",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11435)
    parser.add_argument(
        "--model",
        action="append",
        type=_parse_model,
        metavar="NAME[=DIM]",
        help="a model to serve (repeatable; default: "
        + ", ".join(DEFAULT_MODELS)
        + "); DIM is its embedding dimension (768)",
    )
    parser.add_argument(
        "--reply", action="append", default=[], metavar="TEXT", help="queue a chat reply (repeatable)"
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="REGEX=>TEXT",
        help="answer prompts matching REGEX with TEXT (repeatable)",
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (Ollama Cloud)")
    args = parser.parse_args(argv)

    fake = FakeOllama(
        models=dict(args.model) if args.model else dict(DEFAULT_MODELS),
        api_key=args.api_key,
        delay=args.delay,
    )
    fake.script(*args.reply)
    for spec in args.rule:
        pattern, sep, text = spec.partition("=>")
        if not sep:
            parser.error(f"bad --rule {spec!r}: expected REGEX=>TEXT")
        fake.rule(pattern, text)
    print(f"fake-ollama listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    web.run_app(fake.app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0

