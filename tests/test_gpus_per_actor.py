"""GPUs per model actor when the user gives none (shardforge.build.actors.gpus_per_actor)."""

from __future__ import annotations

import pytest

from shardforge.build import actors


@pytest.mark.parametrize("gpus, num_actors, requested, expected", [
    (0, None, None, 0.0),     # no GPUs: CPU actors
    (0, 4, None, 0.0),
    (1, None, None, 1.0),     # one actor per GPU
    (1, 4, None, 0.25),       # four actors share the GPU
    (1, 3, None, 1 / 3),
    (8, 4, None, 1.0),        # never more than one GPU each
    (1, 4, 0.0, 0.0),         # given: as given (0 = run on CPUs)
    (1, None, 0.5, 0.5),
])
def test_share_of_the_clusters_gpus(monkeypatch, gpus, num_actors, requested, expected):
    monkeypatch.setattr(actors.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(actors.ray, "cluster_resources",
                        lambda: {"CPU": 16.0, **({"GPU": float(gpus)} if gpus else {})})
    assert actors.gpus_per_actor(requested, num_actors) == pytest.approx(expected)


def test_no_ray_running_means_no_gpus(monkeypatch):
    monkeypatch.setattr(actors.ray, "is_initialized", lambda: False)
    assert actors.gpus_per_actor(None, 4) == 0.0
