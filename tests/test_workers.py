"""Worker processes: ``workers`` in the stateless daemons' sections, and a daemon running
several processes on one port (SO_REUSEPORT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from lakehouse.config import SECTIONS, ConfigError, StatelessSection, load_config
from lakehouse.web import GC_GEN0, gc_gen0
from testkit import free_port

STATELESS = ("gateway", "matrixd", "embedd", "queryd", "validatord", "chatd")


def test_stateless_daemons_have_workers_and_the_others_do_not():
    have = {name for name, cls in SECTIONS.items() if issubclass(cls, StatelessSection)}
    assert have == set(STATELESS)  # vectord, storaged, ... keep state in their process
    for name in STATELESS:
        assert load_config(env={}).section(name).workers == 1


@pytest.mark.parametrize("value", [-1, 65, "two", 1.5, True])
def test_workers_out_of_range_or_not_an_integer_names_the_key(tmp_path, value):
    f = tmp_path / "lakehouse.toml"
    f.write_text(f"[matrixd]\nworkers = {json.dumps(value) if not isinstance(value, bool) else 'true'}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f, env={})
    assert "[matrixd].workers" in str(exc.value)


def test_workers_zero_means_one_per_core(tmp_path):
    f = tmp_path / "lakehouse.toml"
    f.write_text("[gateway]\nworkers = 0\n")
    section = load_config(f, env={}).gateway
    assert section.workers == 0
    assert section.worker_count() == len(os.sched_getaffinity(0))
    assert load_config(env={"LAKEHOUSE_EMBEDD_WORKERS": "3"}).embedd.worker_count() == 3
    not_a_key = "LAKEHOUSE_VECTORD_" + "WORKERS"  # vectord keeps its indexes in one process
    with pytest.raises(ConfigError) as exc:
        load_config(env={not_a_key: "2"})
    assert not_a_key in str(exc.value)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:  # a new connection each time
        return json.loads(resp.read())


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update(extra)
    return env


def _wait_healthy(proc: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(f"{base}/health")
            return
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)


def test_a_daemon_with_two_workers_answers_on_one_port_and_stops_whole(tmp_path):
    port = free_port()
    env = _serve_env(LAKEHOUSE_EMBEDD_WORKERS="2", LAKEHOUSE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakehouse", "serve", "embedd", "--port", str(port), "--data-dir", str(tmp_path)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, base)
        children = _children(proc.pid)
        assert len(children) == 1
        # two sockets listen on the port, one per worker (SO_REUSEPORT), and the kernel
        # spreads new connections over them
        assert _listeners(port) == 2
        for i in range(24):
            assert _post(f"{base}/embed", {"texts": [f"forklift {i}"]})["dimension"] == 768
        # each worker has its own cache: two sets of counters whose misses add up to the 24
        # texts (or one set, 12 each, when the kernel happened to split them evenly)
        by_worker = {}
        for _ in range(64):
            s = _get(f"{base}/embed/stats")
            by_worker[(s["hits"], s["misses"])] = s["misses"]
        assert (len(by_worker) == 2 and sum(by_worker.values()) == 24) or by_worker == {(0, 12): 12}, by_worker
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0
    time.sleep(0.2)
    for pid in children:
        assert not _alive(pid), "a worker outlived its daemon"


def _listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:``port`` (Linux /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return sum(1 for line in fh if line.split()[1:2] == [want] and line.split()[3] == "0A")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- the garbage collector in a serving daemon (web.settle_gc) ---------------------------


@pytest.mark.parametrize(("raw", "want"), [("", GC_GEN0), ("0", 0), (" 2500 ", 2500)])
def test_the_collector_threshold_comes_from_the_environment(monkeypatch, raw, want):
    monkeypatch.setenv("LAKEHOUSE_GC_GEN0", raw)
    assert gc_gen0() == want


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "1e4"])
def test_a_bad_collector_threshold_is_a_config_error_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("LAKEHOUSE_GC_GEN0", raw)
    with pytest.raises(ConfigError, match="LAKEHOUSE_GC_GEN0"):
        gc_gen0()


def test_settle_gc_freezes_what_is_built_and_raises_the_youngest_threshold():
    # a fresh interpreter: a freeze is for the whole process
    code = (
        "import gc, json; from lakehouse.web import settle_gc\n"
        "before = gc.get_threshold(); settle_gc(0)\n"
        "untouched = [gc.get_threshold() == before, gc.get_freeze_count()]\n"
        "settle_gc(4321)\n"
        "print(json.dumps([untouched, list(before), list(gc.get_threshold()), gc.get_freeze_count()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    untouched, before, after, frozen = json.loads(out.stdout)
    assert untouched == [True, 0]  # 0: Python's own settings, nothing frozen
    assert after == [4321, *before[1:]]
    assert frozen > 1000  # the modules imported so far, at least


def test_a_daemon_settles_its_collector_once_it_has_started(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakehouse", "serve", "embedd", "--port", str(port), "--data-dir", str(tmp_path)],
        env=_serve_env(LAKEHOUSE_LOG_LEVEL="INFO", LAKEHOUSE_GC_GEN0="4321"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        _wait_healthy(proc, f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "youngest generation collected every 4321 allocations" in err.decode()


def test_a_daemon_refuses_a_bad_collector_threshold_before_it_listens(tmp_path):
    port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "lakehouse", "serve", "embedd", "--port", str(port), "--data-dir", str(tmp_path)],
        env=_serve_env(LAKEHOUSE_GC_GEN0="lots"), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2
    assert "LAKEHOUSE_GC_GEN0='lots': expected a whole number >= 0" in out.stderr
    assert "Traceback" not in out.stderr
