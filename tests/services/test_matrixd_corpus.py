"""The corpus builder end to end: gen-roster -> ingestd -> queryd SQL -> embedd -> vectord,
then a matrixd search that finds a worker by role and city."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import numpy as np
import orjson
import pytest
from aiohttp import web
from data_stack import start_data_stack

from lakehouse.clients.vectord import VectordClient
from lakehouse.embed import hash_embed
from lakehouse.roster import iter_roster, write_roster
from lakehouse.services import embedd, matrixd, vectord

N = 300
DIM = 128
TEMPLATE = "Worker role: {role} in {city}, {state}. Skills: {skills}. Certifications: {certifications}"


def roster_csv(n: int = N) -> bytes:
    buf = io.StringIO()
    write_roster(buf, n, 1)
    return buf.getvalue().encode()


@pytest.fixture
async def env(aiohttp_server, aiohttp_client, config):
    config = config.replace("embedd", dimension=DIM).replace("vectord", save_min_interval=0.0)
    data = await start_data_stack(aiohttp_server, config, refresh_every=3600.0)
    await data.ingest.ingest("workers", roster_csv())
    e = await aiohttp_server(embedd.create_app(config))
    v = await aiohttp_server(vectord.create_app(config))

    async def make(**changes):
        urls = {
            "embedd_url": str(e.make_url("")).rstrip("/"),
            "vectord_url": str(v.make_url("")).rstrip("/"),
            "queryd_url": data.config.base_url("queryd"),
        }
        cfg = data.config.replace("matrixd", **{**urls, **changes})
        return await aiohttp_client(matrixd.create_app(cfg))

    env = type("Env", (), {})()
    env.make = make
    env.client = await make(corpus_page_rows=128)
    env.vectors = VectordClient(data.session, str(v.make_url("")).rstrip("/"))
    env.embedd_url = str(e.make_url("")).rstrip("/")
    yield env
    await data.session.close()


async def post(client, path, body):
    r = await client.post(path, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    raw = await r.read()
    assert r.status != 500, raw
    return r.status, orjson.loads(raw)


async def test_build_from_sql_then_find_a_worker_by_role_and_city(env):
    status, job = await post(
        env.client,
        "/matrix/corpus/build",
        {"name": "workers", "sql": "SELECT * FROM workers;", "id_column": "worker_id", "text_template": TEMPLATE, "batch_size": 64},
    )
    assert status == 200, job
    assert job["status"] == "done" and job["failed_batches"] == []
    assert (job["rows_read"], job["added"], job["updated"], job["rows_skipped"]) == (N, N, 0, 0)
    assert job["batches"] == 5 and job["dimension"] == DIM and job["model"]
    info = await env.vectors.info("workers")
    assert info["count"] == N

    # the metadata is the whole row: the search answers with the worker's fields
    target = next(r for r in iter_roster(N, 1) if r[2] == "Forklift Operator")
    role, city, state = target[2], target[3], target[4]
    status, answer = await post(
        env.client,
        "/matrix/search",
        {"query_text": f"Worker role: {role} in {city}, {state}", "corpora": ["workers"], "k": 5},
    )
    assert status == 200, answer
    top = answer["results"][0]["metadata"]
    assert (top["role"], top["city"]) == (role, city)
    assert set(top) == {"worker_id", "name", "role", "city", "state", "certifications", "skills", "shift", "availability", "years_experience", "rating"}
    # and the metadata filter can pin it down exactly
    status, answer = await post(
        env.client,
        "/matrix/search",
        {"query_text": "forklift", "corpora": ["workers"], "k": 5, "per_corpus_k": N, "metadata_filter": {"role": role, "city": city}},
    )
    expected = {r[0] for r in iter_roster(N, 1) if r[2] == role and r[3] == city}
    assert {r["id"] for r in answer["results"]} <= expected and answer["results"]
    # the vector is exactly the embedding of the rendered row text
    item = await env.vectors.get_item("workers", target[0])
    row = dict(zip(["worker_id", "name", "role", "city", "state", "certifications", "skills"], target[:7], strict=True))
    text = TEMPLATE.format(**row)
    assert np.allclose(item["vector"], hash_embed([text], DIM)[0], atol=1e-6)


async def test_text_columns_metadata_columns_and_rebuild(env):
    body = {
        "name": "w2",
        "sql": "SELECT worker_id, role, city, rating FROM workers WHERE rating >= 0",
        "id_column": "worker_id",
        "text_columns": ["role", "city"],
        "metadata_columns": ["role", "city"],
    }
    status, job = await post(env.client, "/matrix/corpus/build", body)
    assert status == 200 and job["status"] == "done" and job["added"] == N, job
    item = await env.vectors.get_item("w2", "w-00001")
    first = next(iter(iter_roster(1, 1)))
    assert item["metadata"] == {"role": first[2], "city": first[3]}
    # building again upserts
    status, job = await post(env.client, "/matrix/corpus/build", body)
    assert (job["added"], job["updated"]) == (0, N)


async def test_existing_index_of_another_dimension(env):
    await env.vectors.create("small", 3)
    body = {"name": "small", "sql": "SELECT * FROM workers LIMIT 10", "id_column": "worker_id", "text_columns": ["role"]}
    status, err = await post(env.client, "/matrix/corpus/build", body)
    assert status == 409 and "dimension 3" in err["error"]["message"]
    status, job = await post(env.client, "/matrix/corpus/build", {**body, "replace": True})
    assert status == 200 and job["added"] == 10 and job["dimension"] == DIM


async def test_failed_batches_are_reported_and_the_build_goes_on(aiohttp_server, env):
    # an embedd that fails every batch holding a Picker
    async def flaky(request):
        body = await request.json()
        if any("Picker" in t for t in body["texts"]):
            return web.json_response({"error": {"code": "upstream_error", "message": "provider down"}}, status=502)
        return web.json_response({"model": "hash", "dimension": DIM, "vectors": hash_embed(body["texts"], DIM).tolist()})

    app = web.Application()
    app.router.add_post("/embed", flaky)
    server = await aiohttp_server(app)
    client = await env.make(embedd_url=str(server.make_url("")).rstrip("/"))
    status, job = await post(
        client,
        "/matrix/corpus/build",
        {"name": "flaky", "sql": "SELECT * FROM workers ORDER BY worker_id LIMIT 40", "id_column": "worker_id", "text_template": "{role}", "batch_size": 1},
    )
    pickers = [r for r in iter_roster(40, 1) if r[2] == "Picker"]
    assert pickers, "the roster's first 40 rows hold a Picker"
    assert status == 200 and job["status"] == "partial"
    assert len(job["failed_batches"]) == len(pickers) and job["added"] == 40 - len(pickers)
    failed = job["failed_batches"][0]
    assert failed["stage"] == "embed" and failed["rows"] == 1 and "provider down" in failed["error"]
    # everything failing is a 502 with the job readable afterwards
    status, err = await post(
        client,
        "/matrix/corpus/build",
        {"name": "flaky2", "sql": "SELECT * FROM workers WHERE role = 'Picker'", "id_column": "worker_id", "text_template": "{role}"},
    )
    assert status == 502 and "every batch failed" in err["error"]["message"]
    r = await client.get("/matrix/corpus/build")
    jobs = (await r.json())["jobs"]
    assert [j["status"] for j in jobs[:2]] == ["failed", "partial"]


async def test_background_job_and_progress(env):
    status, job = await post(
        env.client,
        "/matrix/corpus/build",
        {"name": "bg", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_template": TEMPLATE, "batch_size": 16, "wait": False},
    )
    assert status == 202 and job["status"] == "running"
    # a second build of the same corpus while the first runs is refused
    status, err = await post(env.client, "/matrix/corpus/build", {"name": "bg", "sql": "SELECT 1 AS id", "id_column": "id", "text_columns": ["id"]})
    assert status == 409 and "already running" in err["error"]["message"]
    for _ in range(200):
        r = await env.client.get(f"/matrix/corpus/build/{job['job_id']}")
        body = await r.json()
        if body["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "done" and body["added"] + body["updated"] == N and body["batches"] == 19
    r = await env.client.get("/matrix/corpus/build/nope")
    assert r.status == 404


@pytest.mark.parametrize(
    "body,status,word",
    [
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "worker_id"}, 400, "text_template"),
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_template": "{role}", "text_columns": ["role"]}, 400, "exactly one"),
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_template": "{role.__class__}"}, 400, "column name"),
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_template": "no fields"}, 400, "no column"),
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_template": "{role"}, 400, "unmatched"),
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "nope", "text_template": "{role}"}, 400, "id_column 'nope' is not a column of the query's result (it has: worker_id, name"),
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_template": "{salary}"}, 400, "salary"),
        ({"name": "x", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_columns": ["role"], "metadata_columns": ["zip"]}, 400, "zip"),
        ({"name": "x", "sql": "DROP TABLE workers", "id_column": "worker_id", "text_columns": ["role"]}, 400, "queryd"),
        ({"name": "x", "sql": "SELECT * FROM nowhere", "id_column": "worker_id", "text_columns": ["role"]}, 400, "queryd"),
        ({"name": "x", "sql": " ; ", "id_column": "worker_id", "text_columns": ["role"]}, 400, "sql"),
        ({"name": "", "sql": "SELECT 1", "id_column": "worker_id", "text_columns": ["role"]}, 400, "name"),
        ({"name": "x", "sql": "SELECT 1", "id_column": "", "text_columns": ["role"]}, 400, "id_column"),
        ({"name": "x", "sql": "SELECT 1", "id_column": "a", "text_columns": ["a"], "batch_size": 5000}, 400, "batch_size"),
        ({"name": "x", "sql": "SELECT 1", "id_column": "a", "text_columns": ["a"], "distance": "manhattan"}, 400, "distance"),
        ({"name": "x", "sql": "SELECT 1", "id_column": "a", "text_columns": ["a"], "text": "x"}, 400, "text"),
    ],
)
async def test_build_400s(env, body, status, word):
    got, err = await post(env.client, "/matrix/corpus/build", body)
    assert got == status, err
    assert word in err["error"]["message"]


async def test_rows_without_id_or_text_are_skipped(env):
    status, job = await post(
        env.client,
        "/matrix/corpus/build",
        {
            "name": "skips",
            "sql": "SELECT CASE WHEN worker_id = 'w-00001' THEN NULL ELSE worker_id END AS id, "
            "CASE WHEN worker_id = 'w-00002' THEN '' ELSE role END AS role FROM workers LIMIT 10",
            "id_column": "id",
            "text_template": "{role}",
        },
    )
    assert status == 200 and job["rows_skipped"] == 2 and job["added"] == 8, job


async def test_client_build_and_poll(env):
    from lakehouse.clients.matrixd import MatrixdClient

    async with aiohttp.ClientSession() as session:
        client = MatrixdClient(session, str(env.client.make_url("")).rstrip("/"))
        job = await client.build_corpus("c1", "SELECT * FROM workers LIMIT 20", "worker_id", text_columns=["role", "city"], wait=False)
        for _ in range(200):
            report = await client.corpus_job(job["job_id"])
            if report["status"] != "running":
                break
            await asyncio.sleep(0.05)
        assert report["status"] == "done" and report["added"] == 20
        done = await client.build_corpus("c1", "SELECT * FROM workers LIMIT 20", "worker_id", text_template="{role}", replace=True, batch_size=7)
        assert done["status"] == "done" and done["added"] == 20 and done["batches"] == 3
        assert "c1" in await client.corpora()


async def test_queryd_down_is_502(env):
    from testkit import free_port

    client = await env.make(queryd_url=f"http://127.0.0.1:{free_port()}")
    status, err = await post(client, "/matrix/corpus/build", {"name": "x", "sql": "SELECT 1 AS a", "id_column": "a", "text_columns": ["a"]})
    assert status == 502 and "queryd" in err["error"]["message"]


async def test_a_bad_id_column_does_not_echo_the_paging_sql_and_changes_nothing(env):
    body = {"name": "keep", "sql": "SELECT * FROM workers LIMIT 5", "id_column": "worker_id", "text_columns": ["role"]}
    assert (await post(env.client, "/matrix/corpus/build", body))[0] == 200
    status, err = await post(env.client, "/matrix/corpus/build", {**body, "id_column": "wid", "replace": True})
    assert status == 400
    message = err["error"]["message"]
    assert "id_column 'wid'" in message and "worker_id" in message
    assert "lakehouse_corpus_source" not in message and "ORDER BY" not in message
    status, err = await post(env.client, "/matrix/search", {"query_text": "x", "corpora": ["keep"]})
    assert status == 200 and len(err["results"]) == 5  # replace: true did not drop it first
