"""lakehouse.example.toml stays in step with config.py; written configurations read back equal."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.config import SECTIONS, Config, load_config
from lakehouse.configfile import dump_toml, example_toml, toml_value

EXAMPLE = Path(__file__).resolve().parent.parent / "lakehouse.example.toml"
REGENERATE = "regenerate it: lakehouse config --example > lakehouse.example.toml"


def test_the_example_loads_to_exactly_the_defaults():
    assert load_config(EXAMPLE, env={}) == Config(), REGENERATE


def test_the_example_has_every_section_and_key_of_config_py():
    with EXAMPLE.open("rb") as fh:
        raw = tomllib.load(fh)
    assert set(raw) == {"data_dir", *SECTIONS}, REGENERATE
    for name, cls in SECTIONS.items():
        keys = {f.name for f in dataclasses.fields(cls)}
        assert set(raw[name]) == keys, f"[{name}] differs from config.py; {REGENERATE}"


def test_every_key_of_the_example_has_a_comment():
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_the_generator_produces_a_valid_file_with_the_same_keys(tmp_path):
    path = tmp_path / "example.toml"
    path.write_text(example_toml())
    assert load_config(path, env={}) == Config()
    with EXAMPLE.open("rb") as fh, path.open("rb") as gh:
        assert tomllib.load(fh) == tomllib.load(gh), REGENERATE


def test_the_example_is_the_generators_output_comments_included():
    # the header lists the LAKEHOUSE_* variables read outside the file, and every key's
    # comment is its documentation: a stale line there misleads as much as a stale key
    assert EXAMPLE.read_text(encoding="utf-8") == example_toml(), REGENERATE


def test_a_changed_configuration_reads_back_equal(tmp_path):
    cfg = (
        Config(data_dir=str(tmp_path / "d ü \"quoted\""))
        .replace("gateway", port=4110, upstream_timeout=0.5, storaged_url="http://h:1")
        .replace("auth", token="t\\ok", secondary_tokens=["a", "b,c"], allowed_ips=["10.0.0.0/8"])
        .replace("chatd", disabled_providers=["kimi"], timeout_secs=1e-3)
        .replace("models", weak_models=[])
        .replace("storaged", backend="s3", max_put_bytes=1)
        .replace("pathwayd", fsync=False)
    )
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(cfg))
    assert load_config(path, env={}) == cfg


def test_secrets_are_masked_on_request():
    cfg = Config().replace("auth", token="zq-primary", secondary_tokens=["zq-second"])
    cfg = cfg.replace("s3", secret_key="zq-s3-secret")
    text = dump_toml(cfg, mask_secrets=True)
    assert "zq-" not in text
    assert 'token = "***"' in text and 'secret_key = "***"' in text
    assert 'token_env = "AUTH_TOKEN"' in text


scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
)


@given(st.one_of(scalars, st.lists(st.text(), max_size=5)))
def test_toml_value_round_trips(value):
    parsed = tomllib.loads(f"x = {toml_value(value)}")["x"]
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(parsed)
    else:
        assert parsed == value and type(parsed) is type(value)


def test_toml_value_refuses_other_types():
    with pytest.raises(TypeError):
        toml_value({"a": 1})
