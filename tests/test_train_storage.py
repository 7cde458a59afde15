"""Where training runs go: ``$SHARDFORGE_HOME/runs`` (or ``$SHARDFORGE_RUNS``) by default,
and a relative storage path refused under ``ray job submit`` (simulated with the variable
Ray's job supervisor sets for the driver)."""

from __future__ import annotations

import json
import os

import pytest

from shardforge.engine.jobenv import JOB_CONFIG_ENV, job_working_dir, ray_job_driver
from shardforge.train.config import TrainConfig, load_config
from shardforge.train.storage_path import RelativeStorageError, run_storage

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "jobs", "configs")
JOB_ENV = json.dumps({"runtime_env": {"working_dir": "/home/me/shardforge"},
                      "metadata": {}})


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A catalog home of its own, no runs override, not in a Ray job."""
    monkeypatch.setenv("SHARDFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHARDFORGE_RUNS", raising=False)
    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    return tmp_path / "home"


def test_default_is_runs_under_the_catalog_home(home, monkeypatch):
    assert TrainConfig().run.storage_path is None
    assert load_config(os.path.join(CONFIGS, "rn50_16ep.yaml")).run.storage_path is None
    assert run_storage(None, "x") == run_storage("", "x") == str(home / "runs")
    monkeypatch.setenv("SHARDFORGE_RUNS", "s3://bucket/runs?endpoint_override=h:9000")
    assert run_storage(None, "x") == "s3://bucket/runs?endpoint_override=h:9000"
    monkeypatch.setenv("SHARDFORGE_RUNS", "~/elsewhere")
    assert run_storage(None, "x") == os.path.expanduser("~/elsewhere")


def test_the_cluster_recipes_set_no_relative_storage():
    for name in sorted(os.listdir(CONFIGS)):
        storage = load_config(os.path.join(CONFIGS, name)).run.storage_path
        if not name.startswith("demo_"):     # the local demo chain keeps data/runs
            assert storage is None, name


def test_prepare_run_defaults_under_the_home(home, demo_dataset):
    from shardforge.train.experiment import plan_identity
    from shardforge.train.runner import prepare_run

    cfg = load_config(os.path.join(CONFIGS, "demo_cpu.yaml"), ["run.storage_path=null"])
    plan = prepare_run(cfg, demo_dataset, "demo_cpu.yaml")
    assert plan.run_dir == str(home / "runs" / "demo_cpu-demo")
    # Where runs are stored is not part of a run's identity (reuse by content).
    other = load_config(os.path.join(CONFIGS, "demo_cpu.yaml"))
    assert plan_identity(prepare_run(other, demo_dataset, "demo_cpu.yaml")) == \
        plan_identity(plan)


def test_outside_a_job_paths_are_kept(home):
    assert not ray_job_driver() and job_working_dir() is None
    assert run_storage("data/runs", "x") == "data/runs"
    assert run_storage("/abs/runs", "x") == "/abs/runs"
    assert run_storage("s3://b/runs", "x") == "s3://b/runs"


def test_a_relative_path_under_ray_job_submit_is_refused(home, monkeypatch):
    monkeypatch.setenv(JOB_CONFIG_ENV, JOB_ENV)
    assert ray_job_driver() and job_working_dir() == "/home/me/shardforge"
    with pytest.raises(RelativeStorageError) as caught:
        run_storage("data/runs", "jobs/configs/demo_cpu.yaml: run.storage_path")
    text = str(caught.value)
    assert "jobs/configs/demo_cpu.yaml: run.storage_path" in text and "'data/runs'" in text
    assert "ray job submit" in text and "/home/me/shardforge" in text
    assert "absolute path" in text and "s3://BUCKET/runs" in text and str(home / "runs") in text
    # absolute paths, URLs and the default are fine in a job
    assert run_storage("/shared/runs", "--storage") == "/shared/runs"
    assert run_storage("s3://b/runs", "--storage") == "s3://b/runs"
    assert run_storage(None, "--storage") == str(home / "runs")


def test_train_job_under_ray_job_submit_names_the_config_and_the_fix(home, monkeypatch,
                                                                     demo_dataset, capsys):
    from shardforge.train.job import main

    monkeypatch.setenv(JOB_CONFIG_ENV, JOB_ENV)
    config = os.path.join(CONFIGS, "demo_cpu.yaml")
    assert main(["--config", config, "--data", demo_dataset]) == 2
    err = capsys.readouterr().err
    assert f"{config}: run.storage_path is the relative path 'data/runs'" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["--config", config, "--data", demo_dataset, "--storage", "runs"]) == 2
    assert "--storage is the relative path 'runs'" in capsys.readouterr().err
