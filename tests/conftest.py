"""Fixtures shared by every test package.

Tests import the installed package (tox builds and installs the wheel), never the source tree.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from lakehouse.config import Config, load_config
from testkit import free_port

# Machines here are noisy: no per-example deadline. "ci" runs fewer examples.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=50
)
settings.register_profile(
    "soak", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=2000
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))




@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Embedded defaults with the data directory in tmp_path; the environment is ignored."""
    return load_config(env={}, data_dir=str(tmp_path / "data"))


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-protocol server (moto's server mode) on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_config(tmp_path: Path, s3_endpoint: str) -> Config:
    """Config whose storage backend is the local S3 server, with a fresh bucket per test."""
    import uuid

    import boto3

    bucket = f"lakehouse-test-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    cfg = load_config(env={}, data_dir=str(tmp_path / "data"))
    cfg = cfg.replace("s3", endpoint=s3_endpoint, bucket=bucket, access_key="test", secret_key="test")
    return cfg.replace("storaged", backend="s3")
