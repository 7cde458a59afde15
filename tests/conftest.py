"""Shared fixtures: demo data trees and a private Ray runtime bound to 127.0.0.1."""

from __future__ import annotations

import os
import tempfile

# Keep every Ray process of the tests on 127.0.0.1: with this Ray setting, Ray does not
# swap 127.0.0.1 for the machine's routable address (it must be set before `import ray`;
# subprocesses such as `ray start` in the end-to-end tests inherit it).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Builds made by tests register in a throwaway catalog, never in the user's ~/.shardforge.
os.environ["SHARDFORGE_HOME"] = tempfile.mkdtemp(prefix="shardforge-test-home-")

import pytest  # noqa: E402
import ray  # noqa: E402

# The hooks that leave a trail of started tests (scripts/test.sh), registered by importing.
from trail import pytest_runtest_logstart, pytest_sessionfinish  # noqa: E402, F401

from shardforge.sources.demo import DemoSpec, generate_demo_data

SMALL_DEMO = DemoSpec(num_classes=10, train_per_class=6, val_per_class=2, min_side=128,
                      max_side=320)


@pytest.fixture(scope="session")
def demo_tree(tmp_path_factory) -> str:
    """A small demo class-folder tree (10 classes, train 60 / val 20 images)."""
    root = tmp_path_factory.mktemp("demo") / "src"
    generate_demo_data(root, SMALL_DEMO)
    return str(root)


@pytest.fixture(scope="session")
def demo_dataset(demo_tree, tmp_path_factory) -> str:
    """``demo_tree`` ingested at max-res 96 in shards of 16: the dataset's OUT directory.

    Built once per session (with a private loopback Ray when none is running).
    """
    import io

    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.formats.image import ImageParams
    from shardforge.sources.base import SourceOptions

    out = str(tmp_path_factory.mktemp("demo-dataset") / "out")
    run_ingest(IngestConfig(source=demo_tree, name="demo", out=out,
                            image=ImageParams(max_resolution=96),
                            source_options=SourceOptions(shard_size=16)), log=io.StringIO())
    return out


@pytest.fixture(scope="module")
def ray_local():
    """A private 2-CPU Ray for this test module, on loopback; shut down after the module.

    Only the runtime this fixture started is stopped (``ray.shutdown`` of our own driver).
    """
    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
