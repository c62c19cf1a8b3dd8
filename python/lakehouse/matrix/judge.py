"""The judge gate on playbook injections (contract section 9.12).

An LLM rates each inject candidate 1-5 against the query with a staffing rubric; the
candidate is injected only when ``rating >= min_rating`` (default 3). The gate is
**fail-closed**: a timeout (10 s by default), an HTTP error, a reply that is not JSON or has
no usable rating all reject the candidate. Boosts are never judged: they only re-rank what
retrieval already returned.

``judge_url`` must be the full URL of the chat endpoint. Its path picks the wire shape:

* ``.../api/chat``: Ollama (``{model, messages, stream: false, format: "json",
  options: {temperature: 0}}`` -> ``{message: {content}}``);
* ``.../chat/completions``: OpenAI-compatible (``{model, messages, temperature: 0,
  response_format: {type: json_object}}`` -> ``{choices: [{message: {content}}]}``);
* anything else (``/chat``, ``/v1/chat``): chatd (``{model, messages, format: "json",
  temperature: 0}`` -> ``{content}``).

The reply's content must be a JSON object with an integer ``rating`` (a JSON number with no
fraction, or a string of one); anything else rejects.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

__all__ = ["DEFAULT_MIN_RATING", "JUDGE_SYSTEM_PROMPT", "JudgeGate", "Verdict", "make_judge"]

log = logging.getLogger("lakehouse.matrix.judge")

DEFAULT_MIN_RATING = 3
DEFAULT_TIMEOUT = 10.0

JUDGE_SYSTEM_PROMPT = """You are a staffing coordinator's assistant. You rate how well one \
candidate worker fits a staffing demand, on this scale:
5 - exact fit: the role, location and required certifications all match
4 - strong fit: the role matches and nearly everything else does
3 - acceptable: the role matches or is a close equivalent; some details differ
2 - weak: a related role, or key requirements missing
1 - wrong: a different role or domain
Answer with a JSON object only: {"rating": <1-5>, "reason": "<one sentence>"}"""


@dataclass(frozen=True)
class Verdict:
    approved: bool
    rating: int | None
    #: why a candidate was rejected without a rating (timeout, HTTP status, parse error)
    error: str | None = None


def _shape(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    if path.endswith("/api/chat"):
        return "ollama"
    if path.endswith("/chat/completions"):
        return "openai"
    return "chatd"


def _reply_content(shape: str, body: Any) -> str:
    if not isinstance(body, dict):
        raise ValueError("answer is not a JSON object")
    if shape == "ollama":
        content = (body.get("message") or {}).get("content")
    elif shape == "openai":
        choices = body.get("choices") or [{}]
        content = ((choices[0] or {}).get("message") or {}).get("content")
    else:
        content = body.get("content")
    if not isinstance(content, str):
        raise ValueError("answer has no message content")
    return content


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_rating(content: str) -> int:
    """The integer ``rating`` of a JSON-object reply (a fenced code block is tolerated)."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"reply is not JSON: {exc}") from None
    if not isinstance(data, dict) or "rating" not in data:
        raise ValueError("reply has no 'rating'")
    rating = data["rating"]
    if isinstance(rating, bool):
        raise ValueError("rating is a boolean")
    if isinstance(rating, str) and rating.strip().isdigit():
        rating = int(rating.strip())
    if isinstance(rating, float) and rating.is_integer():
        rating = int(rating)
    if not isinstance(rating, int):
        raise ValueError(f"rating is not an integer: {rating!r}")
    return rating


def build_prompt(query_text: str, recorded_query: str, candidate: dict[str, Any]) -> str:
    profile = orjson.dumps(candidate.get("metadata"), option=orjson.OPT_SORT_KEYS).decode()
    lines = [f"Demand: {query_text or '(given as a vector; no text)'}"]
    if recorded_query and recorded_query != query_text:
        lines.append(f"(This worker was approved earlier for: {recorded_query})")
    lines.append(f"Candidate {candidate.get('id')} from corpus {candidate.get('corpus')}: {profile}")
    lines.append("Rate this candidate for the demand.")
    return "\n".join(lines)


class JudgeGate:
    """Asks one chat endpoint to rate inject candidates (see the module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        model: str,
        *,
        min_rating: int = DEFAULT_MIN_RATING,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.session = session
        self.url = url
        self.model = model
        self.min_rating = min_rating if min_rating > 0 else DEFAULT_MIN_RATING
        self.timeout = timeout
        self.shape = _shape(url)

    def _body(self, prompt: str) -> dict[str, Any]:
        messages = [
            {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
            {"role": "user", "content": prompt},
        ]
        if self.shape == "ollama":
            return {
                "model": self.model,
                "messages": messages,
                "stream": False,
                "format": "json",
                "options": {"temperature": 0},
            }
        if self.shape == "openai":
            return {
                "model": self.model,
                "messages": messages,
                "temperature": 0,
                "response_format": {"type": "json_object"},
            }
        return {"model": self.model, "messages": messages, "format": "json", "temperature": 0}

    async def rate(self, query_text: str, recorded_query: str, candidate: dict[str, Any]) -> Verdict:
        """The verdict on one candidate; never raises (every failure is a rejection)."""
        body = self._body(build_prompt(query_text, recorded_query, candidate))
        try:
            async with self.session.post(
                self.url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                payload = await resp.read()
                if resp.status >= 400:
                    return Verdict(False, None, f"judge answered HTTP {resp.status}")
            content = _reply_content(self.shape, orjson.loads(payload))
            rating = parse_rating(content)
        except TimeoutError:
            return Verdict(False, None, f"judge timed out after {self.timeout}s")
        except (aiohttp.ClientError, orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            return Verdict(False, None, f"judge failed: {exc}")
        return Verdict(rating >= self.min_rating, rating)


def make_judge(
    session: aiohttp.ClientSession,
    url: str,
    model: str,
    min_rating: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
) -> JudgeGate | None:
    """The gate, or None (no judging) when ``url`` or ``model`` is empty, as the reference's
    ``NewLLMJudgeGate``; ``min_rating <= 0`` means 3."""
    if not url or not model:
        return None
    return JudgeGate(session, url, model, min_rating=min_rating, timeout=timeout)
