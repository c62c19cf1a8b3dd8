"""With [auth] on, daemons that call each other send the stack's bearer token (and only to
the stack's own daemons)."""

from __future__ import annotations

from data_stack import start_data_stack

from lakehouse.web import internal_session


async def test_internal_session_carries_the_token_only_when_configured(config):
    async with internal_session(config) as plain:
        assert "Authorization" not in plain.headers
    async with internal_session(config.replace("auth", token="s3cret")) as authed:
        assert authed.headers["Authorization"] == "Bearer s3cret"


async def test_ingest_and_query_work_with_auth_on(aiohttp_server, config):
    # ingestd calls catalogd and queryd calls catalogd: both must present the token.
    cfg = config.replace("auth", token="s3cret")
    stack = await start_data_stack(aiohttp_server, cfg)
    try:
        csv = "worker_id,role\nw-1,Picker\nw-2,Loader\nw-3,Picker\n"
        out = await stack.ingest.ingest("workers", csv.encode())
        assert out["row_count"] == 3
        answer = await stack.query.sql("SELECT role, count(*) AS n FROM workers GROUP BY role ORDER BY role")
        assert answer["rows"] == [["Loader", 1], ["Picker", 2]]
    finally:
        await stack.session.close()


async def test_without_the_token_the_daemons_refuse(aiohttp_server, config):
    import aiohttp

    cfg = config.replace("auth", token="s3cret")
    stack = await start_data_stack(aiohttp_server, cfg)
    try:
        url = stack.config.base_url("catalogd") + "/catalog/list"
        async with aiohttp.ClientSession() as anon, anon.get(url) as r:
            assert r.status == 401
    finally:
        await stack.session.close()


async def test_matrixd_sends_the_token_to_its_daemons_but_never_to_the_judge(aiohttp_server, config):
    """matrixd's embedd/vectord calls carry the token; a caller-supplied judge URL does not."""
    import aiohttp
    import numpy as np

    from lakehouse.fakes.ollama import FakeOllama
    from lakehouse.services import embedd, matrixd, vectord

    fake = FakeOllama()
    judge = await aiohttp_server(fake.app())
    cfg = config.replace("auth", token="s3cret").replace("embedd", dimension=16)
    e = await aiohttp_server(embedd.create_app(cfg))
    v = await aiohttp_server(vectord.create_app(cfg))
    cfg = cfg.replace("matrixd", embedd_url=str(e.make_url("")).rstrip("/"), vectord_url=str(v.make_url("")).rstrip("/"))
    m = await aiohttp_server(matrixd.create_app(cfg))
    hdr = {"Authorization": "Bearer s3cret"}
    async with aiohttp.ClientSession(headers=hdr) as s:
        vec = lambda x: (np.eye(16)[x] + 0.01).tolist()  # noqa: E731
        async with s.post(f"{cfg.matrixd.vectord_url}/vectors/index", json={"name": "workers", "dimension": 16}) as r:
            assert r.status in (200, 201)
        items = [{"id": f"w-{i}", "vector": vec(i), "metadata": {"role": "Picker"}} for i in range(8)]
        async with s.post(f"{cfg.matrixd.vectord_url}/vectors/index/workers/add", json={"items": items}) as r:
            assert r.status == 200
        text = "picker for the judge"
        async with s.post(str(m.make_url("/matrix/playbooks/record")),
                          json={"query_text": text, "answer_id": "w-7", "answer_corpus": "workers", "score": 1.0}) as r:
            assert r.status == 200, await r.text()
        fake.rule(".*", '{"rating": 5}')
        body = {"query_text": text, "corpora": ["workers"], "k": 3, "use_playbook": True,
                "judge_url": str(judge.make_url("/api/chat")), "judge_model": "qwen2.5:latest"}
        async with s.post(str(m.make_url("/matrix/search")), json=body) as r:
            assert r.status == 200, await r.text()  # embedd and vectord accepted matrixd's token
    for call in fake.calls("/api/chat"):
        assert "Authorization" not in call.headers
