"""The fake OpenAI-compatible server: OpenAI's shapes, auth, errors, knobs."""

from __future__ import annotations

import aiohttp
import pytest

from lakehouse.fakes import FakeOpenAI, Reply
from lakehouse.fakes.openai import FAKE_OPENAI


@pytest.fixture
async def served(aiohttp_server):
    fake = FakeOpenAI(api_key="k", models=["vendor/model-a"])
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/"), server


AUTH = {"Authorization": "Bearer k"}
BODY = {"model": "vendor/model-a", "messages": [{"role": "user", "content": "say hi"}]}


async def test_completion_shape_under_any_base_path(served):
    fake, url, server = served
    fake.script(Reply("hi there", prompt_tokens=3, completion_tokens=2))
    async with aiohttp.ClientSession(headers=AUTH) as http:
        for base in ("", "/v1", "/api/v1"):
            async with http.post(f"{url}{base}/chat/completions", json=BODY) as r:
                assert r.status == 200
                out = await r.json()
            assert out["object"] == "chat.completion" and out["model"] == "vendor/model-a"
            choice = out["choices"][0]
            assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
        async with http.get(f"{url}/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["vendor/model-a"]
    assert server.app[FAKE_OPENAI] is fake
    assert [c.path for c in fake.requests[:3]] == [
        "/chat/completions", "/v1/chat/completions", "/api/v1/chat/completions"
    ]


async def test_first_answer_is_scripted_then_default(served):
    fake, url, _ = served
    fake.script(Reply("hi there", prompt_tokens=3, completion_tokens=2))
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{url}/chat/completions", json=BODY) as r:
            out = await r.json()
        assert out["choices"][0]["message"]["content"] == "hi there"
        assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        body = {**BODY, "response_format": {"type": "json_object"}}
        async with http.post(f"{url}/chat/completions", json=body) as r:
            assert (await r.json())["choices"][0]["message"]["content"] == '{"reply":"say hi"}'


async def test_errors_use_openai_shape(served):
    fake, url, _ = served
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/chat/completions", json=BODY) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_api_key"
        http.headers.update(AUTH)
        cases = [
            ({**BODY, "model": "other"}, 404, "model_not_found"),
            ({**BODY, "messages": []}, 400, None),
            ({**BODY, "stream": True}, 400, None),
        ]
        for body, status, code in cases:
            async with http.post(f"{url}/chat/completions", json=body) as r:
                err = (await r.json())["error"]
                assert r.status == status and err["code"] == code and err["message"]
        fake.fail(429, times=1)
        async with http.post(f"{url}/chat/completions", json=BODY) as r:
            assert r.status == 429 and (await r.json())["error"]["type"] == "rate_limit_error"
        fake.zero_choices = True
        async with http.post(f"{url}/chat/completions", json=BODY) as r:
            assert (await r.json())["choices"] == []
