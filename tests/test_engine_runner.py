"""engine.runner.run_tasks: the driver lane (units run in the driver while Ray starts its
workers), results, and errors."""

from __future__ import annotations

import os

import pytest
import ray

from shardforge.engine.runner import TaskFailed, run_tasks


def _make_work():
    def work(i: int) -> tuple[int, int]:
        return i, os.getpid()
    return work     # nested: Ray's cloudpickle sends it by value (tests/ is not importable)


_work = _make_work()


def test_one_unit_runs_in_the_driver_without_submitting():
    class NoRemote:
        def remote(self, *a):
            raise AssertionError("a one-unit job must not wait for a Ray worker")

    assert list(run_tasks(NoRemote(), [(7,)], max_in_flight=4, local_fn=_work)) == \
        [(7, os.getpid())]


def test_driver_lane_and_workers_each_unit_exactly_once(ray_local):
    remote = ray.remote(num_cpus=1)(_work)
    seen = []
    results = list(run_tasks(remote, [(i,) for i in range(12)], local_fn=_work,
                             on_result=seen.append))
    assert sorted(r[0] for r in results) == list(range(12))
    assert seen == results
    pids = {r[1] for r in results}
    assert os.getpid() in pids          # the driver built some while workers started
    assert pids - {os.getpid()}         # and workers the rest


def test_without_local_fn_only_workers_run_units(ray_local):
    remote = ray.remote(num_cpus=1)(_work)
    results = list(run_tasks(remote, [(i,) for i in range(4)]))
    assert sorted(r[0] for r in results) == [0, 1, 2, 3]
    assert os.getpid() not in {r[1] for r in results}


def test_a_driver_lane_error_is_a_task_failure_naming_the_unit():
    class Spec:
        name = "train-000003"

    def boom(spec):
        raise OSError("disk full")

    with pytest.raises(TaskFailed, match="task for train-000003: OSError: disk full"):
        list(run_tasks(None, [(Spec(),)], max_in_flight=2, local_fn=boom))
