"""lakehouse.toml loading: defaults, file, environment, and errors that name the key."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lakehouse.config import DAEMON_PORTS, OTHER_ENV_VARS, ConfigError, env_overrides, load_config
from lakehouse.stack import PARENT_ENV


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


# -- LAKEHOUSE_* variables that nothing reads ---------------------------------------------------


@pytest.mark.parametrize(
    "var, nearest",
    [
        ("LAKEHOUSE_VECTORD_PROT", "LAKEHOUSE_VECTORD_PORT ([vectord].port)"),
        ("LAKEHOUSE_VECTOR_PORT", "LAKEHOUSE_VECTORD_PORT ([vectord].port)"),
        ("LAKEHOUSE_DATADIR", "LAKEHOUSE_DATA_DIR (data_dir)"),
        ("LAKEHOUSE_EMBEDD_PROVDER", "LAKEHOUSE_EMBEDD_PROVIDER ([embedd].provider)"),
        ("LAKEHOUSE_LOGLEVEL", "LAKEHOUSE_LOG_LEVEL."),
        ("LAKEHOUSE_VALIDATORD_ROSTER", "LAKEHOUSE_VALIDATORD_ROSTER_PATH ([validatord].roster_path)"),
        ("LAKEHOUSE_VALIDATORD_DATASET", "LAKEHOUSE_VALIDATORD_ROSTER_DATASET ([validatord].roster_dataset)"),
    ],
)
def test_an_unknown_lakehouse_variable_is_an_error_naming_the_nearest(var, nearest):
    with pytest.raises(ConfigError) as info:
        load_config(env={var: "1", "PATH": "/bin"})
    message = str(info.value)
    assert message.startswith(f"{var}: unknown variable, the nearest known is {nearest}")
    assert "LAKEHOUSE_LOG_LEVEL" in message  # the accepted others are listed


def test_every_unknown_variable_is_named_at_once():
    with pytest.raises(ConfigError) as info:
        load_config(env={"LAKEHOUSE_B_THING": "1", "LAKEHOUSE_A_THING": "2", "LAKEHOUSE_VECTORD_PORT": "1"})
    message = str(info.value)
    assert message.index("LAKEHOUSE_A_THING") < message.index("LAKEHOUSE_B_THING")


def test_the_variables_read_outside_the_configuration_are_accepted():
    env = {name: "0" for name in OTHER_ENV_VARS}
    env["LAKEHOUSE_DATA_DIR"] = "/d"
    env["lakehouse_vectord_prot"] = "1"  # not ours: names are case-sensitive, only LAKEHOUSE_*
    env["MY_LAKEHOUSE_TOKEN"] = "x"
    assert load_config(env=env).data_dir == "/d"
    assert env_overrides(env) == ["LAKEHOUSE_DATA_DIR"]


def test_an_unknown_key_or_section_in_the_file_names_the_nearest(tmp_path):
    p = tmp_path / "lakehouse.toml"
    p.write_text("[vectord]\nsave_min_intervall = 1\n")
    with pytest.raises(ConfigError, match=r"the nearest known is \[vectord\]\.save_min_interval \("):
        load_config(p, env={})
    p.write_text("[vectorsd]\nport = 1\n")
    with pytest.raises(ConfigError, match=r"the nearest known is \[vectord\] \("):
        load_config(p, env={})


_ENV_LITERAL = re.compile(r"""["'](LAKEHOUSE_[A-Z0-9_]*[A-Z0-9])["']""")
_GETENV = re.compile(r"""getenv\(\s*"(LAKEHOUSE_[A-Z0-9_]+)"\s*\)""")


def test_every_lakehouse_variable_the_project_reads_is_accepted():
    """The one list stays complete: a LAKEHOUSE_* name written as a whole string in the
    Python tree (library, tests, benchmarks, parity) or read with getenv in the native core
    must be a configuration variable or listed in OTHER_ENV_VARS."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "python" / "lakehouse").is_dir():
        pytest.skip("not a source checkout")
    found: dict[str, str] = {}
    for folder in ("python", "tests", "bench", "parity"):
        for path in (root / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue  # this file's misspellings are on purpose
            for name in _ENV_LITERAL.findall(path.read_text(encoding="utf-8")):
                found.setdefault(name, str(path.relative_to(root)))
    for path in (root / "native").rglob("*.[ch]*"):
        for name in _GETENV.findall(path.read_text(encoding="utf-8")):
            found.setdefault(name, str(path.relative_to(root)))
    assert {"LAKEHOUSE_LOG_LEVEL", "LAKEHOUSE_UVLOOP", "LAKEHOUSE_SIMD"} <= set(found)
    accepted = set(OTHER_ENV_VARS) | set(env_overrides(dict.fromkeys(found, "")))
    missing = {name: where for name, where in found.items() if name not in accepted}
    assert not missing, f"add these to lakehouse.config.OTHER_ENV_VARS: {missing}"
    assert PARENT_ENV in OTHER_ENV_VARS


def test_a_users_configuration_and_data_are_not_committed_by_accident():
    """`lakehouse.toml` may hold a token; `lakehouse-data/` is every daemon's data."""
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        run = subprocess.run(
            ["git", "-C", str(root), "check-ignore", "-q", "--no-index", path], check=False
        )
        assert run.returncode in (0, 1), run
        return run.returncode == 0

    assert ignored("lakehouse.toml") and ignored("sub/dir/lakehouse.toml")
    assert ignored("lakehouse-data/objects/x.parquet") and ignored("lakehouse-data/")
    assert not ignored("lakehouse.example.toml")
    assert not ignored("python/lakehouse/config.py")
