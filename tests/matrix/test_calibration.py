"""The calibrated playbook: the rule (derive), matrixd's use of it, the route and the command.

The stack is in-process (embedd with the hash provider, vectord, matrixd). The learning
figures themselves are in test_learning_goal.py.
"""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import orjson
import pytest

from lakehouse.clients.embedd import EmbeddClient
from lakehouse.clients.vectord import VectordClient
from lakehouse.matrix import calibration
from lakehouse.matrix.calibration import (
    BOOST_FRACTION,
    INJECT_FRACTION,
    MAX_RATIO,
    derive,
    probe_texts,
)
from lakehouse.services import embedd, matrixd, vectord

DEMANDS = [
    ("Need 3 forklift operators with OSHA-30 in Milwaukee, night shift", "w-1", "Forklift Operator"),
    ("Need 2 CNC machinists in Rockford for a mill", "w-2", "CNC Operator"),
    ("Need 5 trailer loaders at a Joliet distribution center", "w-3", "Loader"),
]


def test_derive_puts_both_windows_under_the_floor():
    floor, t = derive([0.9, 0.61, 0.75])
    assert floor == 0.61
    assert t.mode == "calibrated"
    assert t.max_inject_distance == pytest.approx(INJECT_FRACTION * 0.61)
    assert t.max_distance == pytest.approx(BOOST_FRACTION * 0.61)
    assert t.max_ratio == MAX_RATIO
    assert t.max_inject_distance < t.max_distance < floor
    assert "0.6100" in t.reason


@pytest.mark.parametrize("bad", [[], [float("nan")], [-0.1, 0.5]])
def test_derive_refuses_unusable_distances(bad):
    with pytest.raises(ValueError):
        derive(bad)


def test_probe_texts_are_packaged_and_distinct():
    texts = probe_texts()
    assert len(texts) >= 24 and len(set(texts)) == len(texts) and all(t.strip() for t in texts)


async def _stack(aiohttp_server, aiohttp_client, config):
    config = config.replace("vectord", save_min_interval=0.0)
    e = await aiohttp_server(embedd.create_app(config))
    v = await aiohttp_server(vectord.create_app(config))
    config = config.replace(
        "matrixd", embedd_url=str(e.make_url("")).rstrip("/"), vectord_url=str(v.make_url("")).rstrip("/")
    )
    server = await aiohttp_server(matrixd.create_app(config))
    client = await aiohttp_client(server)
    session = aiohttp.ClientSession()
    emb = EmbeddClient(session, config.matrixd.embedd_url)
    vec = VectordClient(session, config.matrixd.vectord_url)
    _, dim, vecs = await emb.embed([f"{role} worker" for _, _, role in DEMANDS])
    await vec.create("workers", dim)
    await vec.add("workers", [a for _, a, _ in DEMANDS], vecs, [{"role": r} for _, _, r in DEMANDS])
    return client, session, vec, str(server.make_url("")).rstrip("/")


async def _post(client, path, body):
    r = await client.post(path, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    raw = await r.read()
    assert r.status != 500, raw
    return r.status, orjson.loads(raw)


@pytest.fixture
async def stack(aiohttp_server, aiohttp_client, config):
    client, session, vec, url = await _stack(aiohttp_server, aiohttp_client, config)
    yield client, vec, url
    await session.close()


async def test_default_request_is_calibrated_and_a_set_threshold_is_the_reference(stack):
    client, _, _ = stack
    status, cold = await _post(client, "/matrix/search", {"query_text": "x", "corpora": ["workers"], "use_playbook": True})
    assert status == 200 and cold["playbook"]["cold_start"] and cold["playbook"]["thresholds"]["mode"] == "reference"
    for text, answer, role in DEMANDS:
        await _post(client, "/matrix/playbooks/record", {"query_text": text, "answer_id": answer, "answer_corpus": "workers", "score": 1.0, "role": role})
    _, warm = await _post(client, "/matrix/search", {"query_text": DEMANDS[0][0], "corpora": ["workers"], "k": 2, "use_playbook": True})
    t = warm["playbook"]["thresholds"]
    assert t["mode"] == "calibrated" and t["max_ratio"] == MAX_RATIO
    assert 0 < t["max_inject_distance"] < t["max_distance"] < 1
    assert warm["results"][0]["id"] == "w-1" and warm["results"][0]["source"] == "boost"
    # only the nearest demand acts (the others are beyond the window or refused by the ratio test)
    assert warm["playbook"]["boosted"] == 1 and warm["playbook"]["injected"] == 0
    assert warm["playbook"]["hits"] - warm["playbook"]["rejected_ratio"] == 1
    for fields in ({"playbook_max_inject_distance": 0.2}, {"playbook_max_distance": 0.5}):
        _, ref = await _post(client, "/matrix/search", {"query_text": DEMANDS[0][0], "corpora": ["workers"], "k": 2, "use_playbook": True, **fields})
        assert ref["playbook"]["thresholds"] == {
            "mode": "request", "max_distance": 0.5, "max_inject_distance": 0.2, "max_ratio": 0.0, "reason": "set by the request",
        }
        assert ref["playbook"]["rejected_ratio"] == 0


async def test_an_unrelated_query_is_not_injected_and_recording_recalibrates(stack):
    client, _, _ = stack
    await _post(client, "/matrix/playbooks/record", {"query_text": DEMANDS[0][0], "answer_id": "w-1", "answer_corpus": "workers", "score": 1.0})
    _, first = await _post(client, "/matrix/playbooks/calibration", {})
    for text, answer, _ in DEMANDS[1:]:
        await _post(client, "/matrix/playbooks/record", {"query_text": text, "answer_id": answer, "answer_corpus": "workers", "score": 1.0})
    _, second = await _post(client, "/matrix/playbooks/calibration", {})
    assert second["floor"] <= first["floor"]  # more demands: probes can only come nearer
    _, out = await _post(client, "/matrix/search", {"query_text": "What time does the museum open on Sunday?", "corpora": ["workers"], "k": 3, "use_playbook": True})
    assert out["playbook"]["injected"] == 0 and out["playbook"]["boosted"] == 0


async def test_calibration_falls_back_to_the_reference_on_a_dimension_clash(stack):
    client, vec, _ = stack
    # a playbook recorded by another model (2-d): the probes cannot search it
    await vec.create("pb2", 2, distance="euclidean")
    await vec.add("pb2", ["p"], np.array([[0.0, 0.1]], dtype=np.float32), [{"query_text": "q", "answer_id": "w-1", "answer_corpus": "workers", "score": 1.0}])
    status, out = await _post(client, "/matrix/search", {"query_vector": [0.0, 0.0], "corpora": ["pb2"], "k": 1, "use_playbook": True, "playbook_corpus": "pb2"})
    assert status == 200
    t = out["playbook"]["thresholds"]
    assert t["mode"] == "reference" and t["max_inject_distance"] == 0.2 and t["max_ratio"] == 0.0
    assert "could not be probed" in t["reason"]


async def test_calibration_route_explains_a_query_and_refuses_bad_bodies(stack):
    client, _, _ = stack
    for text, answer, role in DEMANDS:
        await _post(client, "/matrix/playbooks/record", {"query_text": text, "answer_id": answer, "answer_corpus": "workers", "score": 1.0, "role": role})
    status, report = await _post(client, "/matrix/playbooks/calibration", {"query_text": DEMANDS[1][0], "refresh": True})
    assert status == 200
    assert report["probes"] == len(probe_texts()) and report["corpus"] == "playbook_memory"
    assert report["closest_probes"][0]["distance"] == pytest.approx(report["floor"], abs=1e-4)
    hits = report["query"]["hits"]
    assert hits[0]["recorded_query"] == DEMANDS[1][0] and hits[0]["verdict"].startswith("acts")
    assert all(h["verdict"].startswith(("refused", "ignored")) for h in hits[1:])
    for bad in ({"corpus": "x"}, {"refresh": "yes"}, {"playbook_top_k": -1}):
        status, err = await _post(client, "/matrix/playbooks/calibration", bad)
        assert status == 400 and err["error"]["code"] == "bad_request"


async def test_calibrate_command_prints_the_choice(stack, capsys):
    client, _, url = stack
    await _post(client, "/matrix/playbooks/record", {"query_text": DEMANDS[0][0], "answer_id": "w-1", "answer_corpus": "workers", "score": 1.0})
    code = await asyncio.to_thread(calibration.main, ["--url", url, "--query", "forklift drivers for Milwaukee nights"])
    out = capsys.readouterr().out
    assert code == 0
    assert "mode: calibrated" in out and "inject window" in out and "why: unrelated floor" in out
    assert "forklift drivers for Milwaukee nights" in out
    code = await asyncio.to_thread(calibration.main, ["--url", url, "--json"])
    assert code == 0 and orjson.loads(capsys.readouterr().out)["thresholds"]["mode"] == "calibrated"
    assert await asyncio.to_thread(calibration.main, ["--url", "http://127.0.0.1:9"]) == 1


async def test_caches_are_bounded_whatever_models_a_client_names(stack, monkeypatch):
    client, _, _ = stack
    monkeypatch.setattr(calibration, "MAX_MODELS", 2)
    monkeypatch.setattr(calibration, "MAX_CALIBRATIONS", 3)
    await _post(client, "/matrix/playbooks/record", {"query_text": DEMANDS[0][0], "answer_id": "w-1", "answer_corpus": "workers", "score": 1.0})
    for i in range(6):  # the hash provider accepts any model name
        status, out = await _post(client, "/matrix/search", {"query_text": "x", "corpora": ["workers"], "use_playbook": True, "model": f"m{i}"})
        assert status == 200
    calibrator = client.server.app[matrixd.MATRIX].calibrator
    assert len(calibrator._probes) == 2 and len(calibrator._cache) <= 3
