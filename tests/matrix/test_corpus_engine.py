"""Which engine a corpus build uses, and the errors when Ray is configured but cannot be
used (default run, no Ray cluster): a 503 naming what to do, and nothing created."""

from __future__ import annotations

import sys

import orjson
import pytest

from lakehouse.config import ConfigError, load_config
from lakehouse.matrix.rows import RowShape, chunk_rows
from lakehouse.services import matrixd
from testkit import free_port

BODY = {"name": "w", "sql": "SELECT 1 AS id, 'x' AS t", "id_column": "id", "text_columns": ["t"]}


@pytest.mark.parametrize("daemon", ["matrixd", "vectord"])
def test_ray_address_is_checked_when_the_config_loads(tmp_path, daemon):
    var = f"LAKEHOUSE_{daemon.upper()}_RAY_ADDRESS"
    for good in ("", "auto", "local", "10.0.0.5:6379", "head.example:6379"):
        assert getattr(load_config(env={var: good}), daemon).ray_address == good
    for bad in ("nope", "host:", ":6379", "host:0", "host:99999", "host:port"):
        with pytest.raises(ConfigError, match=rf"\[{daemon}\]\.ray_address"):
            load_config(env={var: bad})
    with pytest.raises(ConfigError, match="corpus_ray_actors"):
        load_config(env={"LAKEHOUSE_MATRIXD_CORPUS_RAY_ACTORS": "-1"})
    assert load_config(env={}).matrixd.ray_address == ""  # the default: builds stay in matrixd


async def _app(aiohttp_client, config, **changes):
    dead = f"http://127.0.0.1:{free_port()}"  # no daemon is reached before the 503
    cfg = config.replace("matrixd", embedd_url=dead, vectord_url=dead, queryd_url=dead, **changes)
    return await aiohttp_client(matrixd.create_app(cfg))


async def _post(client, body):
    r = await client.post("/matrix/corpus/build", data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    return r.status, orjson.loads(await r.read())


async def _no_jobs(client):
    r = await client.get("/matrix/corpus/build")
    assert (await r.json())["jobs"] == []


async def test_without_ray_the_build_runs_in_matrixd(aiohttp_client, config):
    client = await _app(aiohttp_client, config)
    assert client.app[matrixd.CORPUS_JOBS].engine == "matrixd"
    status, err = await _post(client, BODY)
    assert status == 502 and "queryd" in err["error"]["message"]  # it went to queryd, not to Ray


async def test_an_unreachable_cluster_is_a_503_and_creates_nothing(aiohttp_client, config):
    address = f"127.0.0.1:{free_port()}"
    client = await _app(aiohttp_client, config, ray_address=address)
    assert client.app[matrixd.CORPUS_JOBS].engine == "ray"
    status, err = await _post(client, BODY)
    assert status == 503, err
    message = err["error"]["message"]
    assert address in message and "does not answer" in message and "ray start --head" in message
    assert '[matrixd].ray_address = ""' in message
    await _no_jobs(client)
    # bad requests are still 400s first
    status, err = await _post(client, {**BODY, "text_columns": []})
    assert status == 400


async def test_ray_not_installed_is_a_503_naming_the_extra(aiohttp_client, config, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as without the extra
    client = await _app(aiohttp_client, config, ray_address="local")
    status, err = await _post(client, BODY)
    assert status == 503, err
    assert "pip install 'lakehouse[ray]'" in err["error"]["message"]
    await _no_jobs(client)


def test_rows_become_the_same_numbered_batches_whatever_the_page():
    shape = RowShape.of("id", text_template="{role} in {city}", metadata_columns=["role"])
    rows = [{"id": i if i % 7 else None, "role": "picker" if i % 5 else "", "city": "" if i % 5 == 0 else "Oslo"} for i in range(1, 60)]
    whole, n, skipped = chunk_rows(rows, shape, 8, first_row=0, first_number=0)
    assert n == 59 and skipped == 8  # ids 7, 14, ..., 56: no id; i % 5 == 0 still has " in " text
    assert [c.number for c in whole] == list(range(len(whole)))
    assert whole[0].ids[:3] == ["1", "2", "3"] and whole[0].texts[0] == "picker in Oslo"
    assert whole[0].metadata[0] == {"role": "picker"}
    assert sum(len(c.ids) for c in whole) == 51
    with pytest.raises(ValueError, match="exactly one"):
        RowShape.of("id")
