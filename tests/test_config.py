"""lakehouse.toml loading: defaults, file, environment, and errors that name the key."""

from __future__ import annotations

import pytest

from lakehouse.config import DAEMON_PORTS, ConfigError, load_config


def test_defaults_are_the_reference_ports(tmp_path):
    cfg = load_config(env={})
    for name, port in DAEMON_PORTS.items():
        assert cfg.section(name).port == port
        assert cfg.section(name).host == "127.0.0.1"
    assert cfg.embedd.provider == "hash"
    assert cfg.storaged.backend == "local"
    assert cfg.upstream("matrixd", "vectord") == "http://127.0.0.1:3215"


def test_file_and_env_override(tmp_path):
    p = tmp_path / "lakehouse.toml"
    p.write_text('data_dir = "/x"\n[vectord]\nport = 4215\n[matrixd]\nvectord_url = "http://h:1/"\n')
    cfg = load_config(p, env={"LAKEHOUSE_VECTORD_PORT": "5215", "LAKEHOUSE_AUTH_ALLOWED_IPS": "10.0.0.0/8, 127.0.0.1/32"})
    assert cfg.vectord.port == 5215
    assert cfg.data_dir == "/x"
    assert cfg.upstream("matrixd", "vectord") == "http://h:1"
    assert cfg.upstream("gateway", "vectord") == "http://127.0.0.1:5215"
    assert cfg.auth.allowed_ips == ["10.0.0.0/8", "127.0.0.1/32"]


@pytest.mark.parametrize(
    "text, key",
    [
        ("[vectord]\nprot = 1\n", "[vectord].prot"),
        ("[vectord]\nport = 'x'\n", "[vectord].port"),
        ("[vectord]\nport = 70000\n", "[vectord].port"),
        ("[nosuch]\na = 1\n", "nosuch"),
        ("[storaged]\nbackend = 'ftp'\n", "[storaged].backend"),
        ("[gateway]\nvectord_url = '127.0.0.1:3215'\n", "[gateway].vectord_url"),
        ("[auth]\nallowed_ips = ['not-a-cidr']\n", "[auth].allowed_ips"),
        ("[vectord\n", "invalid TOML"),
    ],
)
def test_invalid_file_names_the_key(tmp_path, text, key):
    p = tmp_path / "lakehouse.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_config(p, env={})


def test_invalid_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="LAKEHOUSE_QUERYD_QUERY_TIMEOUT"):
        load_config(env={"LAKEHOUSE_QUERYD_QUERY_TIMEOUT": "soon"})


def test_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml", env={})


def test_auth_token_from_env_unless_file_sets_it(monkeypatch):
    monkeypatch.setenv("AUTH_TOKEN", "from-env")
    assert load_config(env={}).auth.resolved_token() == "from-env"
    cfg = load_config(env={}).replace("auth", token="from-file", secondary_tokens=["old"])
    assert cfg.auth.tokens() == ["from-file", "old"]
