"""What the harnesses share: a JSON client of a stack's gateway, the LLM calls through chatd
(judge, paraphrase) and a one-line progress display for a terminal."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

__all__ = [
    "HarnessError",
    "StackClient",
    "choose_model",
    "describe",
    "judge_prompt",
    "paraphrase_prompt",
    "rate",
    "paraphrase",
    "terminal_progress",
]


class HarnessError(RuntimeError):
    """The stack answered something the harness cannot go on with (the message says what)."""


class StackClient:
    """``POST``/``GET`` JSON on the gateway's ``/v1`` routes; every failure is a HarnessError."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str = "") -> None:
        self.session = session
        self.base = url.rstrip("/") + "/v1"
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    async def request(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        data = None if body is None else orjson.dumps(body)
        try:
            async with self.session.request(method, self.base + path, data=data, headers=self.headers) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HarnessError(f"{path}: {exc or type(exc).__name__}") from None
        if status != expect:
            raise HarnessError(f"{path} answered {status}: {raw[:300].decode('utf-8', 'replace')}")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HarnessError(f"{path} answered no JSON: {raw[:200]!r}") from None

    async def post(self, path: str, body: Any, expect: int = 200) -> Any:
        return await self.request("POST", path, body, expect)

    async def get(self, path: str, expect: int = 200) -> Any:
        return await self.request("GET", path, None, expect)

    async def chat_json(self, model: str, prompt: str, temperature: float) -> dict[str, Any]:
        """One chat call through chatd in JSON mode; the answer's JSON object."""
        answer = await self.post(
            "/chat",
            {"model": model, "messages": [{"role": "user", "content": prompt}], "format": "json", "temperature": temperature},
        )
        try:
            value = json.loads(answer.get("content") or "")
        except ValueError:
            raise HarnessError(f"the model answered no JSON: {str(answer.get('content'))[:200]!r}") from None
        if not isinstance(value, dict):
            raise HarnessError("the model answered JSON that is not an object")
        return value


def describe(result: dict[str, Any]) -> str:
    """A search result as a judge reads it: the id and the metadata (no name)."""
    meta = result.get("metadata")
    if isinstance(meta, dict) and meta:
        fields = ", ".join(f"{k}: {v}" for k, v in meta.items() if k not in ("worker_id", "name"))
        return f"{result['id']} ({fields})"
    return str(result["id"])


def judge_prompt(query: str, results: list[dict[str, Any]]) -> str:
    lines = [f"{i + 1}. {describe(r)}" for i, r in enumerate(results)]
    return (
        "You are a staffing coordinator's assistant. Rate how well each candidate fits the demand, "
        "from 0 (unrelated) to 5 (exactly what was asked).\n"
        f"Demand: {query}\nCandidates:\n" + "\n".join(lines) + "\n"
        'Answer JSON only: {"ratings": [one integer 0-5 per candidate, in order]}'
    )


def paraphrase_prompt(query: str) -> str:
    return (
        "Rewrite this staffing demand the way another coordinator would word it: same need, "
        "different words. Do not add requirements.\n"
        f"Demand: {query}\n"
        'Answer JSON only: {"paraphrase": "..."}'
    )


async def rate(stack: StackClient, model: str, query: str, results: list[dict[str, Any]]) -> list[int]:
    """The judge's 0-5 rating of each result for ``query`` (temperature 0)."""
    value = await stack.chat_json(model, judge_prompt(query, results), 0.0)
    ratings = value.get("ratings")
    if not isinstance(ratings, list) or len(ratings) != len(results):
        raise HarnessError(f"the judge rated {len(ratings) if isinstance(ratings, list) else 'no'} of {len(results)} candidates")
    out = []
    for r in ratings:
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= 5:
            raise HarnessError(f"the judge gave a rating outside 0-5: {r!r}")
        out.append(int(r))
    return out


async def paraphrase(stack: StackClient, model: str, query: str) -> str:
    """The demand reworded by the model (temperature 0.5, as the reference)."""
    value = await stack.chat_json(model, paraphrase_prompt(query), 0.5)
    text = value.get("paraphrase")
    if not isinstance(text, str) or not text.strip():
        raise HarnessError("the paraphraser answered no paraphrase")
    return text.strip()


def terminal_progress(width: int = 100) -> tuple[Callable[[str], None], Callable[[], None]]:
    """``(show, clear)``: one line redrawn in place on stderr when it is a terminal, else nothing."""
    tty = sys.stderr.isatty()

    def show(text: str) -> None:
        if tty:
            print(f"\r\033[K{text[:width]}", end="", file=sys.stderr, flush=True)

    def clear() -> None:
        if tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    return show, clear


def choose_model(flag: str | None, config_path: str | None, default: str) -> str:
    """The LLM a harness uses, in the reference's order: the flag, else ``$JUDGE_MODEL``,
    else ``[models].local_judge`` of the configuration, else ``default``."""
    model = flag or os.environ.get("JUDGE_MODEL", "")
    if not model:
        try:
            from ..config import load_config

            model = load_config(config_path).models.local_judge
        except Exception:  # no configuration: the default
            model = ""
    return model or default
