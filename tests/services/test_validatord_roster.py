"""validatord's roster from the user's own data: a gen-roster JSONL file, or an ingested
dataset read through queryd; ``GET /roster``, ``POST /roster/reload`` (the old roster stays
on failure) and ``lakehouse doctor``'s warnings."""

from __future__ import annotations

import asyncio
import io

import pytest
from data_stack import start_data_stack

from lakehouse.clients.base import UpstreamError
from lakehouse.config import ConfigError
from lakehouse.doctor import report
from lakehouse.roster import COLUMNS, iter_roster, write_roster
from lakehouse.services import validatord
from lakehouse.validation.roster_source import RosterSource, RosterUnavailable
from testkit import free_port

N = 20


def roster_rows(n: int = N) -> list[dict]:
    return [dict(zip(COLUMNS, r, strict=True)) for r in iter_roster(n, 1)]


def roster_bytes(n: int = N, fmt: str = "csv") -> bytes:
    buf = io.StringIO()
    write_roster(buf, n, 1, format=fmt)
    return buf.getvalue().encode()


def fill(worker: dict) -> dict:
    """A one-worker fill for ``worker``, with a context that matches it."""
    return {
        "kind": "fill",
        "artifact": {"fills": [{"candidate_id": worker["worker_id"], "name": worker["name"]}]},
        "context": {"target_count": 1, "city": worker["city"], "role": worker["role"]},
    }


def active_worker(rows: list[dict]) -> dict:
    return next(r for r in rows if r["availability"] != "On assignment")


async def post(client, path, body=None, raw=None):
    r = await client.post(path, json=body) if raw is None else await client.post(path, data=raw)
    return r.status, await r.json()


async def wait_loaded(client, timeout: float = 10.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await (await client.get("/roster")).json()
        if state["loaded_at"] is not None or state["last_error"]:
            return state
        assert asyncio.get_running_loop().time() < deadline, state
        await asyncio.sleep(0.05)


# -- a roster file ----------------------------------------------------------------------------------


async def test_a_gen_roster_jsonl_file_is_the_roster_and_reload_rereads_it(aiohttp_client, config, tmp_path):
    path = tmp_path / "workers.jsonl"
    path.write_bytes(roster_bytes(N, "jsonl"))
    client = await aiohttp_client(validatord.create_app(config.replace("validatord", roster_path=str(path))))
    state = await (await client.get("/roster")).json()
    assert state["count"] == N and state["source"] == f"file {path}" and state["last_error"] is None
    worker = active_worker(roster_rows())
    assert (await post(client, "/validate", fill(worker)))[0] == 200

    # more workers in the file: a reload answers the new count
    path.write_bytes(roster_bytes(N + 5, "jsonl"))
    status, body = await post(client, "/roster/reload")
    assert status == 200 and body["count"] == N + 5
    assert (await post(client, "/roster/reload", {}))[0] == 200  # an empty object is fine too

    # the file is gone: 404, and the roster in place stays in use
    path.unlink()
    status, body = await post(client, "/roster/reload")
    assert status == 404 and str(path) in body["error"]["message"]
    state = await (await client.get("/roster")).json()
    assert state["count"] == N + 5 and "does not exist" in state["last_error"]
    assert (await post(client, "/validate", fill(worker)))[0] == 200


async def test_reload_bad_requests(aiohttp_client, config):
    client = await aiohttp_client(validatord.create_app(config))
    for raw in (b"[]", b'{"dataset": "x"}', b"{", b"\xff"):
        status, body = await post(client, "/roster/reload", raw=raw)
        assert status == 400, raw
    # nothing to reload from: a conflict with the configuration, named
    status, body = await post(client, "/roster/reload")
    assert status == 409 and "roster_dataset" in body["error"]["message"]
    assert (await (await client.get("/roster")).json())["count"] == 0


def test_a_file_and_a_dataset_at_once_is_a_config_error(config):
    with pytest.raises(ConfigError, match=r"\[validatord\]\.roster_dataset: set roster_path or"):
        config.replace("validatord", roster_path="w.jsonl", roster_dataset="workers")


# -- a dataset through queryd ------------------------------------------------------------------


@pytest.fixture
async def data(aiohttp_server, config):
    servers = []

    async def server(app, **kw):
        servers.append(await aiohttp_server(app, **kw))
        return servers[-1]

    # a row cap far below the roster: the roster is read in pages
    stack = await start_data_stack(server, config, refresh_every=3600.0, max_rows=7)
    await stack.ingest.ingest("workers", roster_bytes())
    await stack.ingest.ingest("no_ids", b"a,b\n1,2\n")
    stack.queryd_server = servers[2]
    yield stack
    await stack.session.close()


async def dataset_validatord(aiohttp_client, data, dataset: str, **changes):
    cfg = data.config.replace(
        "validatord", roster_dataset=dataset, queryd_url=data.config.base_url("queryd"), **changes
    )
    return await aiohttp_client(validatord.create_app(cfg))


async def test_an_ingested_dataset_is_the_roster(aiohttp_client, data):
    client = await dataset_validatord(aiohttp_client, data, "workers")
    state = await wait_loaded(client)
    assert state["count"] == N and state["last_error"] is None
    assert state["source"] == "dataset workers (through queryd)"
    rows = roster_rows()
    worker = active_worker(rows)
    status, report_ = await post(client, "/validate", fill(worker))
    assert status == 200 and report_["findings"] == []
    # the dataset's rows mean what the file's do: "On assignment" is not active
    busy = next((r for r in rows if r["availability"] == "On assignment"), None)
    if busy is not None:
        status, err = await post(client, "/validate", fill(busy))
        assert status == 422 and "Consistency" in err
    status, body = await post(client, "/roster/reload")
    assert status == 200 and body["count"] == N


async def test_reload_failures_name_the_cause_and_keep_the_old_roster(aiohttp_client, data):
    client = await dataset_validatord(aiohttp_client, data, "workers")
    assert (await wait_loaded(client))["count"] == N
    worker = active_worker(roster_rows())
    await data.queryd_server.close()  # queryd goes down
    status, body = await post(client, "/roster/reload")
    assert status == 502 and body["error"]["code"] == "upstream_error"
    assert "queryd" in body["error"]["message"] and "'workers'" in body["error"]["message"]
    state = await (await client.get("/roster")).json()
    assert state["count"] == N and state["last_error"] == body["error"]["message"]
    assert (await post(client, "/validate", fill(worker)))[0] == 200


async def test_a_missing_dataset_or_one_without_ids_is_named(aiohttp_client, data):
    client = await dataset_validatord(aiohttp_client, data, "nosuch")
    state = await wait_loaded(client)
    assert state["count"] == 0 and "'nosuch' is not in the catalog" in state["last_error"]
    status, body = await post(client, "/roster/reload")
    assert status == 404 and "'nosuch'" in body["error"]["message"]

    client = await dataset_validatord(aiohttp_client, data, "no_ids")
    await wait_loaded(client)
    status, body = await post(client, "/roster/reload")
    assert status == 422
    assert body["error"]["message"] == (
        "roster dataset 'no_ids' has no id column (candidate_id, worker_id or id); its columns: a, b"
    )


async def test_queryd_not_up_yet_is_retried_at_start():
    """validatord may start before queryd: an unreachable queryd is retried, a missing
    dataset is not (nothing will change until someone ingests it)."""

    class Queryd:
        def __init__(self, failures: list[UpstreamError]) -> None:
            self.failures = failures
            self.calls = 0

        async def sql(self, sql, *, trace_id=None):
            self.calls += 1
            if self.failures:
                raise self.failures.pop(0)
            rows = [list(r.values()) for r in roster_rows(3)] if "LIMIT 0" not in sql else []
            return {"columns": [{"name": c, "type": "VARCHAR"} for c in COLUMNS], "rows": rows}

    down = UpstreamError("queryd", None, "unreachable at http://127.0.0.1:9: refused")
    q = Queryd([down, down])
    source = RosterSource(dataset="workers", queryd=q)
    await source.load_when_ready(delay=0.01)
    assert len(source.roster) == 3 and q.calls == 4  # 2 failures, then LIMIT 0 and one page

    q = Queryd([UpstreamError("queryd", 400, "Catalog Error: Table with name nosuch does not exist")])
    source = RosterSource(dataset="nosuch", queryd=q)
    await source.load_when_ready(delay=0.01)
    assert q.calls == 1 and len(source.roster) == 0 and "not in the catalog" in source.last_error

    q = Queryd([UpstreamError("queryd", 408, "query timed out")])
    with pytest.raises(RosterUnavailable) as info:
        await RosterSource(dataset="workers", queryd=q).reload()
    assert info.value.status == 504


# -- lakehouse doctor -------------------------------------------------------------------------------


def doctor_text(cfg) -> str:
    out = io.StringIO()
    report(cfg, config_source="test", timeout=0.5, out=out)
    return out.getvalue()


def only_validatord(config, **changes):
    """Every daemon on a free port (nothing answers there) but validatord."""
    for name in ("gateway", "storaged", "catalogd", "ingestd", "queryd", "vectord", "embedd",
                 "matrixd", "pathwayd", "observerd", "chatd"):
        config = config.replace(name, port=free_port())
    return config.replace("validatord", port=free_port(), **changes)


async def test_doctor_warns_when_validatord_has_no_roster(aiohttp_server, config, tmp_path):
    cfg = only_validatord(config.replace("chatd", ollama_url=""))
    text = await asyncio.to_thread(doctor_text, cfg)
    assert "roster     none configured: validatord not answering" in text
    assert "validatord has no roster" in text and "gen-roster --format jsonl" in text

    path = tmp_path / "workers.jsonl"
    path.write_bytes(roster_bytes(N, "jsonl"))
    cfg = cfg.replace("validatord", roster_path=str(path))
    await aiohttp_server(validatord.create_app(cfg), port=cfg.validatord.port)
    text = await asyncio.to_thread(doctor_text, cfg)
    assert f"roster     file {path}: validatord holds {N} workers" in text
    assert "validatord has no roster" not in text and "roster is empty" not in text


async def test_doctor_warns_when_the_configured_roster_did_not_load(aiohttp_server, config):
    cfg = only_validatord(config.replace("chatd", ollama_url=""), roster_dataset="workers")
    await aiohttp_server(validatord.create_app(cfg), port=cfg.validatord.port)
    text = await asyncio.to_thread(doctor_text, cfg)
    assert "roster     dataset 'workers' (through queryd): validatord holds 0 workers" in text
    warning = next(line for line in text.splitlines() if "roster is empty" in line)
    assert "queryd" in warning and "POST /roster/reload" in warning
