"""Executors: the process pool and Ray give bitwise the same shard models as in-process training."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recunlearn.data import user_deletion
from recunlearn.errors import ConfigError
from recunlearn.testing import FAST_TRAIN
from recunlearn.unlearn import executors, get_method
from recunlearn.unlearn.executors import ProcessExecutor, RayExecutor, get_executor, train_shard

SISA = {"n_shards": 2, "train": {**FAST_TRAIN, "max_epochs": 4}}


def fitted_sisa(split, executor: str):
    return get_method("sisa")({**SISA, "executor": executor}).fit(split.train, split.valid)


def shard_states(model):
    return [{name: value.clone() for name, value in m.state_dict().items()} for m in model.models]


def assert_same_states(model, states):
    for k, (mine, expected) in enumerate(zip(shard_states(model), states, strict=True)):
        assert mine.keys() == expected.keys()
        for name, value in mine.items():
            assert torch.equal(value, expected[name]), f"shard {k} {name}"


@pytest.fixture(scope="module")
def reference(tiny_split):
    """SISA trained in-process: shard parameters before and after forgetting a user, and test scores."""
    model = fitted_sisa(tiny_split, "inprocess")
    before = shard_states(model)
    report = model.forget(user_deletion(tiny_split.train, users=["u5"]))
    assert len(report.details["retrained_shards"]) == 2  # both shards go through the executor again
    test = tiny_split.test
    return before, shard_states(model), model.score_index(test.user, test.item)


def check_executor_matches(split, executor, reference):
    before, after, scores = reference
    model = fitted_sisa(split, executor)
    assert_same_states(model, before)
    model.forget(user_deletion(split.train, users=["u5"]))
    assert_same_states(model, after)
    np.testing.assert_array_equal(model.score_index(split.test.user, split.test.item), scores)


def test_process_pool_matches_inprocess(tiny_split, reference, monkeypatch):
    monkeypatch.setenv(executors.WORKERS_ENV, "2")
    check_executor_matches(tiny_split, "process", reference)  # the pool stays up for the next test


def _die(job):
    os._exit(3)


def test_a_single_job_runs_on_one_thread_as_a_pool_worker_would():
    """A shard retrained alone (in this process) must equal the same shard retrained in a batch (in a
    one-thread worker) bit for bit: the CPU's float sums depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert ProcessExecutor(workers=2).map(lambda job: torch.get_num_threads(), [0]) == [1]
        assert torch.get_num_threads() == 2, "the caller's setting is restored"
    finally:
        torch.set_num_threads(threads)


def test_training_does_not_raise_a_lone_jobs_thread_count_back_to_omp_num_threads(monkeypatch):
    """fit_model honours OMP_NUM_THREADS (configure_threads); applied again inside a lone job, it undid
    the one thread, so a shard forgotten alone differed in its last bits from the same shard in a batch."""
    from recunlearn.train import runtime

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(runtime, "_threads", {"configured": False})
    threads = torch.get_num_threads()
    try:
        assert ProcessExecutor(workers=2).map(
            lambda job: (runtime.configure_threads(), torch.get_num_threads())[1], [0]
        ) == [1]
        assert torch.get_num_threads() == 2, "OMP_NUM_THREADS applies outside the job"
    finally:
        torch.set_num_threads(threads)


def test_a_dead_worker_resets_the_pool():
    pool = ProcessExecutor(workers=2)
    try:
        with pytest.raises(RuntimeError, match="died.*pool was reset"):
            pool.map(_die, [1, 2])
        assert executors._POOL is None
    finally:
        executors.shutdown_executors()


@pytest.fixture(scope="module")
def ray_cluster():
    import ray  # the ray extra is part of the test install (make test); missing, this fails

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_matches_inprocess(tiny_split, reference, ray_cluster):
    check_executor_matches(tiny_split, "ray", reference)


@pytest.mark.slow
def test_ray_returns_results_in_job_order(tiny_split, ray_cluster):
    model = get_method("sisa")(SISA)
    model.fit(tiny_split.train, tiny_split.valid)
    jobs = [model.shard_job(k) for k in (2, 0, 1)]
    results = get_executor("ray").map(train_shard, jobs)
    assert [r.shard for r in results] == [2, 0, 1]


@pytest.fixture(scope="module")
def apa_setup(tmp_path_factory):
    """Tiny APA: synthetic prompt samples and a tiny random causal LM written to a folder."""
    from recunlearn.data import binarize, load_dataset
    from recunlearn.data.tallrec import build_samples, split_samples, subsample
    from recunlearn.models.llm.backbones import create_tiny_model

    data = binarize(load_dataset("synthetic", n_interactions=2000, seed=0), 3.0)
    train, valid, test = split_samples(
        build_samples(data, history=4, max_samples=400, seed=0), by="time"
    )
    train, valid, test = subsample(train, 32), subsample(valid, 16, 1), subsample(test, 16, 2)
    folder = create_tiny_model(
        tmp_path_factory.mktemp("apa") / "tiny",
        train.prompts() + valid.prompts() + test.prompts(),
        kind="causal",
    )
    config = {
        "backbone": {"name": str(folder)},
        "n_shards": 2,
        "train": {"lr": 1e-2, "batch_size": 16, "max_epochs": 2, "patience": 1},
    }
    return config, train, valid, test


@pytest.mark.slow
def test_apa_adapters_through_ray_match_inprocess(apa_setup, ray_cluster):
    config, train, valid, test = apa_setup
    fitted = {
        name: get_method("apa")({**config, "executor": name}).fit(train, valid)
        for name in ("inprocess", "ray")
    }
    local, remote = fitted["inprocess"], fitted["ray"]
    for k, (mine, theirs) in enumerate(zip(remote.adapters, local.adapters, strict=True)):
        assert mine.keys() == theirs.keys() and mine
        for name, value in mine.items():
            assert torch.equal(value, theirs[name]), f"adapter {k} {name}"
    np.testing.assert_array_equal(remote.valid_logits, local.valid_logits)
    np.testing.assert_array_equal(remote.score(test), local.score(test))


class FakeRay:
    """Records the resources each task asks for (a cluster with or without GPUs)."""

    def __init__(self, gpus: float):
        self.gpus, self.requests = gpus, []

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 2.0, **({"GPU": self.gpus} if self.gpus else {})}

    def remote(self, fn):
        fake = self

        class Task:
            def options(self, num_cpus, num_gpus):
                fake.requests.append((num_cpus, num_gpus))
                return self

            def remote(self, fn_, job, env):
                return fn(fn_, job, env)

        return Task()

    def get(self, refs):
        return list(refs)


@pytest.mark.parametrize(
    "gpus, job_device, train_device, expected",
    [
        (0, None, None, 0),
        (1, None, None, 1),
        (1, None, "cpu", 0),
        (4, None, "cuda", 1),
        (1, "cpu", None, 0),
        (1, "cuda:0", None, 1),
    ],
)
def test_ray_tasks_ask_for_a_gpu_when_the_cluster_has_one(
    gpus, job_device, train_device, expected, monkeypatch
):
    monkeypatch.delenv("RECUNLEARN_DEVICE", raising=False)
    fake = FakeRay(gpus)
    monkeypatch.setattr(executors, "_import_ray", lambda: fake)
    job = SimpleNamespace(device=job_device, train_config=SimpleNamespace(device=train_device))
    assert RayExecutor().map(lambda job: "done", [job, job]) == ["done", "done"]
    assert fake.requests == [(1, expected)] * 2


def test_missing_ray_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'recunlearn\[ray\]'"):
        get_executor("ray")


def test_bad_names_and_worker_counts_are_rejected(monkeypatch):
    with pytest.raises(ConfigError, match="unknown executor 'gpu-farm'.*inprocess, process, ray"):
        get_executor("gpu-farm")
    monkeypatch.setenv(executors.WORKERS_ENV, "two")
    with pytest.raises(ConfigError, match="RECUNLEARN_WORKERS"):
        ProcessExecutor()
    with pytest.raises(ConfigError, match="at least one worker"):
        ProcessExecutor(workers=0)
