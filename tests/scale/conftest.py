"""A local Ray cluster for the tests marked ``ray``: a head and two worker nodes, each a
separate set of processes on this machine with one CPU, under a temporary directory of its own;
shut down (its own processes only) when the module's tests are done."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from scalekit import HAVE_RAY


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """The address of a fresh 3-node local cluster, this process connected to it."""
    if not HAVE_RAY:
        pytest.skip("needs the ray extra (pip install 'lakehouse[ray]'; tox -e ray)")
    import ray
    from ray.cluster_utils import Cluster

    root = tempfile.mkdtemp(prefix="lhray-")
    before = os.environ.get("RAY_TMPDIR")
    # Ray keeps its sessions and its "current cluster" file here, not in the shared /tmp/ray.
    os.environ["RAY_TMPDIR"] = root
    # The nodes take the machine's own address (Ray's node-IP detection; forcing 127.0.0.1
    # leaves the head unable to reach its own GCS in Ray 2.60): still this machine only.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, namespace="lakehouse", log_to_driver=False)
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()  # kills exactly the processes this cluster started
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        shutil.rmtree(root, ignore_errors=True)
