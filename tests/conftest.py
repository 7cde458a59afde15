"""Shared fixtures: demo data trees and a private Ray runtime bound to 127.0.0.1."""

from __future__ import annotations

import pytest
import ray

from shardforge.sources.demo import DemoSpec, generate_demo_data

SMALL_DEMO = DemoSpec(num_classes=10, train_per_class=6, val_per_class=2, min_side=128,
                      max_side=320)


@pytest.fixture(scope="session")
def demo_tree(tmp_path_factory) -> str:
    """A small demo class-folder tree (10 classes, train 60 / val 20 images)."""
    root = tmp_path_factory.mktemp("demo") / "src"
    generate_demo_data(root, SMALL_DEMO)
    return str(root)


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
