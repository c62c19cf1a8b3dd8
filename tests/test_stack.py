"""lakehouse up / running_stack / lakehouse doctor.

Supervision rules (order, health waits, failures, stopping, log prefixes) are tested with a
tiny fake daemon script, so they run in a second; a few tests start real daemons as
processes, through the gateway, and ``lakehouse up`` itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from lakehouse import cli, stack
from lakehouse.config import Config, load_config
from lakehouse.services import DAEMONS, Daemon
from lakehouse.stack import (
    Stack,
    StackError,
    _stop_groups,
    prepare_config,
    running_stack,
    select_daemons,
)
from lakehouse.web import TRACE_HEADER
from testkit import free_port

PY = sys.executable
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url: str, data: bytes | None = None, method: str | None = None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with NO_PROXY.open(req, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


def all_ports_zero(config: Config) -> Config:
    for name in DAEMONS:
        config = config.replace(name, port=0)
    return config


# -- choosing daemons ------------------------------------------------------------------------


def test_select_daemons_puts_dependencies_first_and_the_gateway_last():
    order = select_daemons()
    # the gateway comes after every daemon it fronts; mcpd, which calls through it, last
    assert set(order) == set(DAEMONS) and order[-2:] == ["gateway", "mcpd"]
    for name in order:
        for req in DAEMONS[name].requires:
            assert order.index(req) < order.index(name)
    assert select_daemons(["gateway", "catalogd", "storaged"]) == ["storaged", "catalogd", "gateway"]
    with pytest.raises(StackError, match="unknown daemon.*nosuchd"):
        select_daemons(["storaged", "nosuchd"])
    with pytest.raises(StackError, match="no daemon"):
        select_daemons([" ", ""])


def test_stop_order_is_dependants_first():
    selected = select_daemons()
    groups = _stop_groups(selected)
    assert groups[0] == ["mcpd"] and groups[1] == ["gateway"]
    position = {n: i for i, g in enumerate(groups) for n in g}
    assert sorted(position) == sorted(selected)
    for name in selected:
        for req in DAEMONS[name].requires:
            assert position[req] > position[name]  # stopped after what depends on it


def test_a_missing_module_is_a_clear_error(monkeypatch, config):
    fake = dict(DAEMONS)
    fake["ghostd"] = Daemon("ghostd")
    monkeypatch.setattr(stack, "DAEMONS", fake)
    with pytest.raises(StackError, match=r"no module for: ghostd .*--only"):
        Stack(config, only=["storaged", "ghostd"])


# -- checks before anything starts ------------------------------------------------------------


def test_a_taken_port_names_its_config_key(config):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = all_ports_zero(config).replace("embedd", port=port)
        with pytest.raises(StackError) as err:
            prepare_config(cfg, ["embedd", "pathwayd"])
    assert f"port {port} on 127.0.0.1 ([embedd].port) is taken by another program" in str(err.value)


def test_a_port_taken_by_a_running_daemon_says_so(config, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-c", FAKE_HEALTH, "embedd", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline()  # listening
        cfg = all_ports_zero(config).replace("embedd", port=port)
        with pytest.raises(StackError, match=r"\[embedd\]\.port\) is taken by a running lakehouse embedd"):
            prepare_config(cfg, ["embedd"])
    finally:
        proc.kill()
        proc.wait()


def test_duplicate_ports_and_port_zero(config):
    port = free_port()
    cfg = all_ports_zero(config).replace("embedd", port=port).replace("pathwayd", port=port)
    with pytest.raises(StackError, match=rf"\[embedd\]\.port and \[pathwayd\]\.port are both {port}"):
        prepare_config(cfg, ["embedd", "pathwayd"])
    cfg = prepare_config(all_ports_zero(config), ["embedd", "pathwayd"])
    assert cfg.embedd.port > 0 and cfg.pathwayd.port > 0 and cfg.embedd.port != cfg.pathwayd.port
    assert cfg.storaged.port == 0  # not selected: untouched


def test_non_loopback_without_token_refuses_before_starting(config, monkeypatch):
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    cfg = all_ports_zero(config).replace("pathwayd", host="0.0.0.0")
    with pytest.raises(StackError, match=r"\[pathwayd\]\.host: refusing to bind 0\.0\.0\.0"):
        prepare_config(cfg, ["embedd", "pathwayd"])


def test_a_required_daemon_must_be_selected_or_running(config):
    cfg = all_ports_zero(config).replace("storaged", port=free_port())
    with pytest.raises(StackError, match="catalogd requires storaged, which is not selected"):
        prepare_config(cfg, ["catalogd"])


# -- supervision, with a fake daemon ---------------------------------------------------------

#: a stand-in daemon: answers GET /health as NAME on PORT (argv), prints a line when listening
FAKE_HEALTH = textwrap.dedent(
    """
    import http.server, json, sys
    name, port = sys.argv[1], int(sys.argv[2])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "service": name}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body)))
            self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    srv = http.server.HTTPServer(("127.0.0.1", port), H)
    print("listening", flush=True)
    srv.serve_forever()
    """
)

#: a fake daemon reading its port from the stack's config file; behaviour from FAKE_MODE_<NAME>
FAKE_DAEMON = textwrap.dedent(
    """
    import os, signal, sys, time, tomllib
    name, config_path = sys.argv[1], sys.argv[2]
    with open(config_path, "rb") as fh:
        cfg = tomllib.load(fh)
    mode = os.environ.get("FAKE_MODE_" + name.upper(), "ok")
    print(f"hello from {name} on {cfg[name]['port']}", flush=True)
    print(f"env override seen: {os.environ.get('LAKEHOUSE_VECTORD_PORT')}", flush=True)
    if mode == "exit3":
        print("fatal: cannot open things", flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(60)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "dies-later":
        import threading
        threading.Timer(1.0, lambda: os._exit(5)).start()
    sys.argv = ["fake", name, str(cfg[name]["port"])]
    exec(compile(os.environ["FAKE_HEALTH"], "fake", "exec"))
    """
)


@pytest.fixture
def fake_stack(tmp_path, monkeypatch, config):
    script = tmp_path / "fake_daemon.py"
    script.write_text(FAKE_DAEMON)
    monkeypatch.setenv("FAKE_HEALTH", FAKE_HEALTH)

    def launcher(name: str, config_path: Path) -> list[str]:
        return [PY, str(script), name, str(config_path)]

    def make(only, **kw) -> tuple[Stack, io.StringIO]:
        log = io.StringIO()
        kw.setdefault("startup_timeout", 10)
        return Stack(all_ports_zero(config), only, log=log, launcher=launcher, **kw), log

    return make


def pids_gone(s: Stack) -> bool:
    return all(c.proc.poll() is not None for c in s.children.values())


def test_starts_in_dependency_order_and_prefixes_logs(fake_stack, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_VECTORD_PORT", "1")  # must not reach the daemons
    s, log = fake_stack(["gateway", "ingestd", "catalogd", "storaged", "embedd"])
    with s:
        text = log.getvalue()
        assert set(s.urls) == {"gateway", "ingestd", "catalogd", "storaged", "embedd"}
        for name, url in s.urls.items():
            port = int(url.rsplit(":", 1)[1])
            assert f"{name:<8} | hello from {name} on {port}" in text
        assert "env override seen: None" in text
        lines = text.splitlines()

        def at(fragment: str) -> int:
            return next(i for i, line in enumerate(lines) if fragment in line)

        assert at("storaged ready") < at("starting catalogd") < at("catalogd ready") < at("starting ingestd")
        for name in ("storaged", "catalogd", "ingestd", "embedd"):
            assert at(f"{name} ready") < at("starting gateway")
        assert at("starting embedd") < at("starting catalogd")  # no requirement: starts at once
        assert s.poll() is None
    assert pids_gone(s)
    assert s._workdir is None


def test_a_daemon_exiting_at_start_stops_everything_and_shows_its_output(fake_stack, monkeypatch):
    monkeypatch.setenv("FAKE_MODE_CATALOGD", "exit3")
    s, _ = fake_stack(["storaged", "catalogd", "embedd"])
    with pytest.raises(StackError) as err:
        s.start()
    message = str(err.value)
    assert "catalogd exited with code 3 while starting" in message
    assert "fatal: cannot open things" in message
    assert pids_gone(s)


def test_a_daemon_that_never_gets_healthy_times_out(fake_stack, monkeypatch):
    monkeypatch.setenv("FAKE_MODE_EMBEDD", "hang")
    s, _ = fake_stack(["embedd", "pathwayd"], startup_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(StackError, match=r"embedd did not answer GET http://127\.0\.0\.1:\d+/health within 1\.5 s"):
        s.start()
    assert time.monotonic() - t0 < 8
    assert pids_gone(s)


def test_a_daemon_ignoring_sigterm_is_killed_after_the_grace_period(fake_stack, monkeypatch):
    monkeypatch.setenv("FAKE_MODE_PATHWAYD", "stubborn")
    s, log = fake_stack(["pathwayd", "embedd"], grace=0.5)
    s.start()
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 5
    assert "pathwayd did not stop within 0.5 s: killing it" in log.getvalue()
    assert s.children["pathwayd"].proc.returncode == -signal.SIGKILL
    assert s.children["embedd"].proc.returncode == -signal.SIGTERM


def test_poll_reports_a_daemon_that_died(fake_stack, monkeypatch):
    monkeypatch.setenv("FAKE_MODE_EMBEDD", "dies-later")
    s, _ = fake_stack(["embedd", "pathwayd"])
    with s:
        deadline = time.monotonic() + 10
        while (dead := s.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dead == ("embedd", 5)


# -- real daemons ------------------------------------------------------------------------------


def test_running_stack_with_real_daemons_through_the_gateway(config):
    cfg = all_ports_zero(config)
    log = io.StringIO()
    with running_stack(cfg, only=["storaged", "catalogd", "embedd", "gateway"], log=log) as s:
        gw = s.urls["gateway"]
        assert s.config.gateway.port == int(gw.rsplit(":", 1)[1])
        status, headers, body = http(
            f"{gw}/v1/storage/demo/hello.txt", data=b"hello", method="PUT", headers={TRACE_HEADER: "t-1"}
        )
        assert status == 200 and orjson.loads(body)["size"] == 5
        assert headers[TRACE_HEADER] == "t-1"
        status, _, body = http(f"{gw}/v1/storage/demo/hello.txt")
        assert body == b"hello"
        status, _, body = http(f"{gw}/v1/catalog/list")
        assert status == 200
        status, _, body = http(f"{gw}/v1/embed", data=b'{"texts": ["forklift operator"]}')
        assert orjson.loads(body)["dimension"] == 768
        pids = [c.proc.pid for c in s.children.values()]
    assert pids_gone(s)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "storaged | " in log.getvalue()
    assert (Path(cfg.data_dir) / "objects").is_dir()


def _start_up(tmp_path: Path, only: str) -> tuple[subprocess.Popen[str], list[str]]:
    cfg = tmp_path / "lakehouse.toml"
    cfg.write_text("".join(f"[{n}]\nport = 0\n" for n in DAEMONS))
    proc = subprocess.Popen(
        [PY, "-m", "lakehouse", "up", "--config", str(cfg), "--data-dir", str(tmp_path / "d"), "--only", only],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Ctrl-C stops them all" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("lakehouse up did not get ready:\n" + "\n".join(lines))


def _url(lines: list[str], name: str) -> str:
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[2] == name and parts[3].startswith("http://"):
            return parts[3]
    raise AssertionError(f"no URL for {name} in {lines}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_lakehouse_up_runs_until_a_signal_and_stops_everything(tmp_path, sig):
    proc, lines = _start_up(tmp_path, "embedd,gateway")
    gw, embedd = _url(lines, "gateway"), _url(lines, "embedd")
    status, headers, body = http(f"{gw}/v1/embed", data=b'{"texts": ["x"]}')
    assert status == 200 and headers[TRACE_HEADER]
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"{sig.name}: stopping" in out and "lakehouse up: stopped" in out
    for url in (gw, embedd):
        assert stack.health(url, timeout=0.5) is None


def test_daemons_die_with_a_killed_supervisor(tmp_path):
    proc, lines = _start_up(tmp_path, "embedd")
    embedd = _url(lines, "embedd")
    pid = int(next(line for line in lines if "starting embedd" in line).rsplit("pid ", 1)[1].rstrip(")"))
    assert stack.health(embedd) == "embedd"
    proc.kill()  # SIGKILL: no chance to clean up; the daemons must go by themselves
    proc.wait()
    try:
        deadline = time.monotonic() + 15
        while stack.health(embedd, timeout=0.3) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stack.health(embedd, timeout=0.3) is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # only if the test failed


def test_lakehouse_up_reports_bad_selection(capsys):
    assert cli.main(["up", "--only", "storaged,nosuchd"]) == 1
    assert "unknown daemon(s): nosuchd" in capsys.readouterr().err


# -- lakehouse doctor ---------------------------------------------------------------------------


def test_doctor_reports_reachability_and_never_prints_secrets(tmp_path, monkeypatch, capsys):
    port = free_port()
    proc = subprocess.Popen([PY, "-c", FAKE_HEALTH, "storaged", str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline()
        cfg = tmp_path / "lakehouse.toml"
        cfg.write_text(
            f"[storaged]\nport = {port}\n"
            '[auth]\nsecondary_tokens = ["old-token-value"]\nallowed_ips = ["10.0.0.0/8"]\n'
            '[chatd]\nollama_url = "http://127.0.0.1:9"\n'
        )
        monkeypatch.setenv("AUTH_TOKEN", "primary-token-value")
        monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-secret-value")
        monkeypatch.delenv("KIMI_API_KEY", raising=False)
        assert cli.main(["doctor", "--config", str(cfg), "--data-dir", str(tmp_path / "d"), "--timeout", "0.5"]) == 0
    finally:
        proc.kill()
        proc.wait()
    out = capsys.readouterr().out
    for secret in ("primary-token-value", "old-token-value", "sk-or-secret-value"):
        assert secret not in out
    assert f"storaged    http://127.0.0.1:{port}" in out
    storaged_line = next(line for line in out.splitlines() if line.strip().startswith("storaged"))
    assert storaged_line.endswith("up")
    assert "1 of 13 answering" in out
    assert "on: bearer token from $AUTH_TOKEN, 1 secondary token(s)" in out
    assert "openrouter: registered" in out and "OPENROUTER_API_KEY" in out
    assert "kimi: not registered (no API key in $KIMI_API_KEY)" in out
    assert "embedder   hash (built in), 768 dimensions" in out
    assert "storage    local directory" in out
    assert "does not include 127.0.0.1" in out  # the allow-list warning
    assert "local_fast=" in out


def test_doctor_with_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    for k in ("LANGFUSE_URL", "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"):
        monkeypatch.delenv(k, raising=False)
    assert cli.main(["doctor", "--timeout", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "built-in defaults" in out
    assert "auth       off" in out
    assert "langfuse   off" in out
    assert "gateway     http://127.0.0.1:3110" in out


def test_load_config_sees_the_written_file_exactly(config):
    # what the stack hands the daemons is what it checked
    cfg = prepare_config(all_ports_zero(config), ["embedd"])
    from lakehouse.configfile import dump_toml

    path = Path(cfg.data_dir).parent / "written.toml"
    path.write_text(dump_toml(cfg))
    assert load_config(path, env={}) == cfg
