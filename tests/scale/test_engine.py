"""``lakehouse up --engine ray``: the daemons run as Ray actors (a one-node cluster that
``up`` starts), serve their usual routes on their configured ports, and a sharded index
created through vectord's wire spreads its replicas as actors; SIGTERM stops everything."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from scalekit import needs_ray

from testkit import free_port

pytestmark = [pytest.mark.ray, needs_ray, pytest.mark.timeout(240)]


def _request(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_up_with_the_ray_engine(tmp_path: Path) -> None:
    sport, vport = free_port(), free_port()
    cfg = tmp_path / "lakehouse.toml"
    cfg.write_text(f"[storaged]\nport = {sport}\n[vectord]\nport = {vport}\ndurability = \"os\"\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # A short path of its own: Ray's socket paths must stay under 108 bytes.
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="lhray-")
    up = subprocess.Popen(
        [sys.executable, "-m", "lakehouse", "up", "--engine", "ray", "--only", "storaged,vectord",
         "--config", str(cfg), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 150
        assert up.stdout is not None
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops them all" in line:
                break
        assert any("Ctrl-C stops them all" in x for x in lines), "".join(lines[-30:])
        base = f"http://127.0.0.1:{vport}/vectors/index"
        status, made = _request("POST", base, {"name": "s", "dimension": 3, "shards": 2, "replicas": 2})
        assert status == 201, made
        assert _request("POST", base, {"name": "p", "dimension": 3})[0] == 201
        items = [{"id": f"w{i}", "vector": [1.0, float(i), float(i % 3)]} for i in range(40)]
        for name in ("s", "p"):
            assert _request("POST", f"{base}/{name}/add", {"items": items}) == (200, {"added": 40, "updated": 0})
        query = {"vector": [1.0, 7.2, 1.0], "k": 5}
        a = _request("POST", f"{base}/s/search", query)[1]["results"]
        b = _request("POST", f"{base}/p/search", query)[1]["results"]
        assert [r["id"] for r in a] == [r["id"] for r in b]
        status, info = _request("GET", f"{base}/s")
        assert info["sharding"]["engine"] == "ray" and sum(info["sharding"]["shard_counts"]) == 40
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            rest, _ = up.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            up.kill()
            rest, _ = up.communicate()
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert up.returncode == 0, "".join(lines[-20:]) + rest
    # vectord's clean shutdown saved every replica.
    saved = list((tmp_path / "data" / "objects" / "_vectors" / "_shards" / "s").glob("s*/s.lhv"))
    assert len(saved) == 4
