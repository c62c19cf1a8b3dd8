"""README "Durability": what an answer of 200 guarantees after a SIGKILL, for every daemon
that accepts writes besides vectord (tests/services/test_vectord_persistence.py has its own).

Each cycle starts the daemon as a real process, sends writes from several threads, SIGKILLs
it while they stream in, restarts it and checks that every acknowledged write is there. A
power loss cannot be tested here: the table says what fsync covers.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import orjson
import pytest

from testkit import free_port

WRITERS = 4
CYCLES = 1


class Proc:
    def __init__(self, daemon: str, data_dir: Path, env: dict[str, str]) -> None:
        self.daemon = daemon
        self.data_dir = data_dir
        self.env = dict(os.environ, LAKEHOUSE_LOG_LEVEL="WARNING", **env)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.cli", "serve", self.daemon, "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.daemon} exited: {self.proc.stderr.read().decode()}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.daemon} did not start")

    def request(self, method: str, path: str, body: bytes | None = None, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            if own:
                conn.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()


# Per daemon: how to write item (w, j), and how to check afterwards that it is there.


def _write(daemon: str, w: int, j: int) -> tuple[str, str, bytes]:
    key = f"w{w}-{j}"
    if daemon == "storaged":
        return "PUT", f"/storage/dur/{key}", key.encode() * 50
    if daemon == "catalogd":
        return "POST", "/catalog/register", orjson.dumps(
            {"name": f"ds_{key}", "schema_fingerprint": "fp", "row_count": j})
    if daemon == "pathwayd":
        return "POST", "/pathway/add_idempotent", orjson.dumps({"uid": key, "content": {"w": w, "j": j}})
    if daemon == "observerd":
        return "POST", "/observer/event", orjson.dumps(
            {"endpoint": "/dur", "source": "test", "success": True, "input_summary": key})
    raise AssertionError(daemon)


def _present(p: Proc, daemon: str, keys: list[str]) -> set[str]:
    if daemon == "storaged":
        return {k for k in keys if p.request("GET", f"/storage/dur/{k}")[0] == 200}
    if daemon == "catalogd":
        return {k for k in keys
                if p.request("GET", f"/catalog/manifest/{urllib.parse.quote('ds_' + k)}")[0] == 200}
    if daemon == "pathwayd":
        return {k for k in keys if p.request("GET", f"/pathway/get/{k}")[0] == 200}
    if daemon == "observerd":
        # The ring keeps the newest 2,000 ops; the log keeps them all: count what replayed.
        status, raw = p.request("GET", "/observer/stats")
        assert status == 200
        stats = orjson.loads(raw)
        assert stats["replay_skipped"] <= 1  # at most the torn last line of the kill
        return set(keys) if stats["replayed"] >= len(keys) else set()
    raise AssertionError(daemon)


@pytest.mark.parametrize(
    ("daemon", "env"),
    [
        ("storaged", {}),
        ("catalogd", {}),
        ("pathwayd", {"LAKEHOUSE_PATHWAYD_FSYNC": "false"}),
        ("pathwayd", {}),  # fsync, group commit (the default)
        ("observerd", {"LAKEHOUSE_OBSERVERD_FSYNC": "false"}),
        ("observerd", {}),
    ],
    ids=["storaged", "catalogd", "pathwayd-os", "pathwayd-fsync", "observerd-os", "observerd-fsync"],
)
def test_acknowledged_writes_survive_sigkill(tmp_path, daemon, env):
    p = Proc(daemon, tmp_path / "data", env)
    acked: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    try:
        p.start()
        for cycle in range(CYCLES):
            stop = threading.Event()

            def writer(w: int, cycle: int = cycle, stop: threading.Event = stop) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
                j = 0
                try:
                    while not stop.is_set() or j == 0:
                        method, path, body = _write(daemon, w + 100 * cycle, j)
                        status, raw = p.request(method, path, body, conn)
                        if status not in (200, 201):
                            errors.append(f"{status} {raw[:200]!r}")
                            return
                        with lock:
                            acked.append(f"w{w + 100 * cycle}-{j}")
                        j += 1
                except (OSError, http.client.HTTPException):
                    pass  # the kill
                finally:
                    conn.close()

            threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
            for t in threads:
                t.start()
            time.sleep(0.6)
            p.proc.kill()  # SIGKILL while the writers stream in
            stop.set()
            for t in threads:
                t.join()
            p.kill()
            assert not errors, errors
            p.start()
            with lock:
                keys = list(acked)
            assert keys, "nothing was acknowledged before the kill"
            missing = set(keys) - _present(p, daemon, keys)
            assert not missing, f"{daemon}: {len(missing)} acknowledged writes lost: {sorted(missing)[:5]}"
    finally:
        p.kill()
