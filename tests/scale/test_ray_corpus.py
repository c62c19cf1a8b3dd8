"""A corpus build through matrixd's route on a local 3-node Ray cluster (tox -e ray): the
embed batches run as a Ray Data pipeline, and the index holds exactly what an in-process
build of the same rows gives (ids, vectors, metadata); an embedder that fails reports its
batches as failed with its own message, as the in-process build does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from scalekit import needs_ray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))
from data_stack import start_data_stack  # noqa: E402

from lakehouse.clients.vectord import VectordClient  # noqa: E402
from lakehouse.roster import write_roster  # noqa: E402
from lakehouse.services import embedd, matrixd, vectord  # noqa: E402
from testkit import free_port  # noqa: E402

pytestmark = [pytest.mark.ray, needs_ray, pytest.mark.timeout(240)]

N = 300
DIM = 64
TEMPLATE = "Worker role: {role} in {city}, {state}. Skills: {skills}"


@pytest.fixture
async def env(ray_cluster, aiohttp_server, aiohttp_client, config):
    import io

    config = config.replace("embedd", dimension=DIM).replace("vectord", save_min_interval=0.0)
    data = await start_data_stack(aiohttp_server, config, refresh_every=3600.0)
    buf = io.StringIO()
    write_roster(buf, N, 1)
    await data.ingest.ingest("workers", buf.getvalue().encode())
    e = await aiohttp_server(embedd.create_app(config))
    v = await aiohttp_server(vectord.create_app(config))

    async def make(**changes):
        urls = {
            "embedd_url": str(e.make_url("")).rstrip("/"),
            "vectord_url": str(v.make_url("")).rstrip("/"),
            "queryd_url": data.config.base_url("queryd"),
            "corpus_page_rows": 128,
        }
        return await aiohttp_client(matrixd.create_app(data.config.replace("matrixd", **{**urls, **changes})))

    env = type("Env", (), {})()
    env.make = make
    env.ray = ray_cluster
    env.vectors = VectordClient(data.session, str(v.make_url("")).rstrip("/"))
    yield env
    await data.session.close()


async def post(client, body):
    r = await client.post("/matrix/corpus/build", data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    raw = await r.read()
    assert r.status != 500, raw
    return r.status, orjson.loads(raw)


async def test_a_build_on_ray_equals_the_in_process_build(env):
    here = await env.make()
    on_ray = await env.make(ray_address=env.ray, corpus_ray_actors=2)
    body = {"sql": "SELECT * FROM workers", "id_column": "worker_id", "text_template": TEMPLATE,
            "metadata_columns": ["role", "city"], "batch_size": 40}
    status, a = await post(here, {**body, "name": "here"})
    assert status == 200 and a["status"] == "done", a
    status, b = await post(on_ray, {**body, "name": "ray"})
    assert status == 200 and b["status"] == "done", b
    keys = ("rows_read", "rows_skipped", "rows_embedded", "added", "updated", "batches", "failed_batches", "dimension", "model")
    assert {k: b[k] for k in keys} == {k: a[k] for k in keys}
    assert b["added"] == N and b["batches"] == 10  # pages of 128, 128, 44 rows in batches of at most 40: 4 + 4 + 2
    assert (await env.vectors.info("ray"))["count"] == N
    ids = [f"w-{i:05d}" for i in range(1, N + 1)]
    for item_id in ids:
        x = await env.vectors.get_item("here", item_id)
        y = await env.vectors.get_item("ray", item_id)
        assert np.array_equal(np.asarray(x["vector"], np.float32), np.asarray(y["vector"], np.float32)), item_id
        assert x["metadata"] == y["metadata"]
    # re-embedding goes the same way: replace, another model name (the hash embedder's
    # vectors do not depend on it), the job says which model made them
    status, c = await post(on_ray, {**body, "name": "ray", "replace": True, "model": "hash-v2"})
    assert status == 200 and c["status"] == "done" and c["model"] == "hash-v2" and c["added"] == N, c


async def test_embed_failures_on_ray_are_failed_batches_with_the_providers_message(env):
    # An Ollama nobody serves: every batch fails in the embed actors with the provider's message.
    dead = f"http://127.0.0.1:{free_port()}"
    client = await env.make(ray_address=env.ray, corpus_ray_actors=2)
    client.app  # noqa: B018
    from lakehouse.services.matrixd import CORPUS_JOBS

    jobs = client.app[CORPUS_JOBS]
    jobs.embedd = jobs.embedd.__class__(provider="ollama", ollama_url=dead, timeout=5.0)
    status, err = await post(client, {"name": "nope", "sql": "SELECT * FROM workers LIMIT 50",
                                      "id_column": "worker_id", "text_template": "{role}", "batch_size": 20})
    assert status == 502 and "every batch failed" in err["error"]["message"] and "ollama unreachable" in err["error"]["message"], err
    r = await client.get("/matrix/corpus/build")
    job = (await r.json())["jobs"][0]
    assert job["status"] == "failed" and len(job["failed_batches"]) == 3 and job["added"] == 0
    assert all(f["stage"] == "embed" and "ollama unreachable" in f["error"] for f in job["failed_batches"])
    assert "nope" not in [i["name"] for i in await env.vectors.list()]


async def test_a_build_that_stops_early_on_ray_leaves_the_cluster_usable(env):
    # The index exists with another dimension: the first embedded batch ends the build (409)
    # while batches are still in flight; the pipeline is stopped, nothing is added, and the
    # next build on the same cluster runs.
    await env.vectors.create("small", 3)
    client = await env.make(ray_address=env.ray, corpus_ray_actors=2)
    body = {"name": "small", "sql": "SELECT * FROM workers", "id_column": "worker_id", "text_columns": ["role"], "batch_size": 10}
    status, err = await post(client, body)
    assert status == 409 and "dimension 3" in err["error"]["message"], err
    assert (await env.vectors.info("small"))["count"] == 0
    status, job = await post(client, {**body, "replace": True})
    assert status == 200 and job["status"] == "done" and job["added"] == N and job["dimension"] == DIM, job
