"""The exact-unlearning protocol: retraining, SISA, RecEraser and GraphEraser side by side.

For each number of shards K, each method is fitted once; its utility (Recall@k, NDCG@k, AUC) is
measured; then, for each deletion set (whole users, random interactions), a copy of the fitted model
forgets one request alone (time per request) and a copy forgets the whole set with ``forget_many``
(time per batch, utility afterwards). Retraining is the reference for time: speed-up = retraining's
time / the method's, for the same request or batch.
``recunlearn bench exact`` runs this; :func:`run_exact_benchmark` is the Python entry point.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from recunlearn.bench._protocol import (
    BenchConfig,
    check_methods,
    finish,
    method_settings,
    retrain_first,
)
from recunlearn.bench._results import markdown_grid
from recunlearn.bench.experiment import DataSpec, MethodNames, prepare
from recunlearn.data import DeletionRequest, Interactions
from recunlearn.evaluate import auc_report, ranking_report
from recunlearn.seeds import Seed
from recunlearn.unlearn import Unlearner, available_methods, get_method

METHODS = ("retrain", "sisa", "receraser", "grapheraser")


class ExactBenchConfig(BenchConfig):
    """What `recunlearn bench exact` runs."""

    data: DataSpec = Field(default_factory=DataSpec)
    """Dataset and split (default: the embedded ML-100K, IFRU's 60/20/20 protocol)."""
    methods: MethodNames = Field(default_factory=lambda: list(METHODS))
    """Methods to compare; 'retrain' always runs (it is the reference)."""
    n_shards: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [5, 10, 20], min_length=1
    )
    """Values of K for the shard-based methods."""
    deletions: list[Literal["users", "random"]] = Field(default_factory=lambda: ["users", "random"])
    """Deletion sets: 'users' = every row of random users, one request per user; 'random' = random
    single interactions, one request each."""
    batch_users: int = Field(10, ge=1)
    """Users in the 'users' batch (the single-request time uses the first)."""
    batch_interactions: int = Field(100, ge=1)
    """Interactions in the 'random' batch."""
    deletion_seed: Seed = 0
    """Seed that picks the users / interactions deleted."""
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "mf"})
    """Model of every method (and of the partition embeddings)."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Training settings shared by retraining and every shard."""
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method settings, e.g. {receraser = {partition = "item"}}."""
    k: int = Field(20, ge=1)
    """Cut-off of Recall and NDCG."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """A run of seconds on a small synthetic log."""
        return {
            "data": DataSpec.synthetic(n_interactions=2000, n_users=80, n_items=60, k_core=2),
            "n_shards": [2],
            "batch_users": 3,
            "batch_interactions": 10,
            "train": {"max_epochs": 3, "patience": 2, "batch_size": 512, "lr": 0.01},
            "method_options": {"receraser": {"aggregator": {"kind": "attention", "epochs": 1}}},
        }


def deletion_requests(
    kind: str, train: Interactions, config: ExactBenchConfig
) -> list[DeletionRequest]:
    """One request per user (users) or per interaction (random), picked with the deletion seed."""
    rng = np.random.default_rng(config.deletion_seed)
    if kind == "users":
        users = rng.choice(
            np.unique(train.user), min(config.batch_users, train.n_users), replace=False
        )
        return [
            DeletionRequest(
                users=[str(train.users.ids[u])], request_id=f"user-{train.users.ids[u]}"
            )
            for u in users
        ]
    rows = rng.choice(len(train), min(config.batch_interactions, len(train)), replace=False)
    return [DeletionRequest.from_rows(train, [r], request_id=f"row-{r}") for r in rows]


def _method_config(config: ExactBenchConfig, name: str, n_shards: int) -> dict[str, Any]:
    values = method_settings(name, config.method_options, model=config.model, train=config.train)
    if name != "retrain":
        values["n_shards"] = n_shards  # the K of this row, whatever the method's options say
    return values


def _utility(method: Unlearner, split, k: int) -> dict[str, float]:
    ranking = ranking_report(method, method.train, split.test, k)
    return {
        f"recall@{k}": ranking[f"recall@{k}"],
        f"ndcg@{k}": ranking[f"ndcg@{k}"],
        "auc": auc_report(method, split.test)["auc"],
    }


def run_exact_benchmark(config: ExactBenchConfig, log=print) -> dict[str, Any]:
    """Run the protocol; returns (and writes, if ``config.output``) a results document."""
    start = time.perf_counter()
    names = retrain_first(config.methods)
    check_methods(
        "exact",
        names,
        [n for n, c in available_methods("interactions").items() if c.exact],
        lambda name: (_method_config(config, name, k) for k in config.n_shards),
        runs_on="exact methods on interactions",
    )
    split = prepare(config.data)
    log(f"data: {split.describe()}")
    requests = {kind: deletion_requests(kind, split.train, config) for kind in config.deletions}
    rows: list[dict[str, Any]] = []
    retrain_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n_shards in config.n_shards:
            for name in names:
                if name == "retrain" and retrain_seconds:
                    continue  # K does not change retraining
                rows.append(
                    _run_method(
                        config,
                        split,
                        name,
                        n_shards,
                        requests,
                        retrain_seconds,
                        Path(scratch) / f"{name}-{n_shards}",
                        log,
                    )
                )
    document = {
        "data": split.describe(),
        "deletions": {kind: {"requests": len(r)} for kind, r in requests.items()},
        "rows": rows,
    }
    return finish(document, config, "exact", start, markdown_table)


def _run_method(
    config: ExactBenchConfig,
    split,
    name: str,
    n_shards: int,
    requests: dict[str, list[DeletionRequest]],
    retrain_seconds: dict[str, float],
    folder: Path,
    log,
) -> dict[str, Any]:
    method = get_method(name)(_method_config(config, name, n_shards))
    log(f"{name} K={n_shards}: fitting ...")
    method.fit(split.train, split.valid)
    method.save(folder)
    row: dict[str, Any] = {
        "method": name,
        "n_shards": None if name == "retrain" else n_shards,
        "fit_seconds": round(method.fit_seconds, 3),
        **_utility(method, split, config.k),
    }
    if hasattr(method, "partition_info"):
        row["partition"] = method.partition_info
    for kind, batch in requests.items():
        single = Unlearner.load(folder).forget(batch[0])
        batched = Unlearner.load(folder)
        reports = batched.forget_many(
            batch
        )  # retraining trains once without all of it; shards retrain once each
        batch_seconds = max(
            r.seconds for r in reports
        )  # the batch's time (a no-op's report carries none)
        if name == "retrain":
            retrain_seconds[f"{kind}_request"] = single.seconds
            retrain_seconds[f"{kind}_batch"] = batch_seconds
        after = _utility(batched, split, config.k)
        row[kind] = {
            "request_seconds": round(single.seconds, 4),
            "request_retrained_shards": len(single.details.get("retrained_shards", [])),
            "batch_seconds": round(batch_seconds, 4),
            "batch_retrained_shards": max(
                len(r.details.get("retrained_shards", [])) for r in reports
            ),
            "removed_rows": int(sum(r.removed_rows for r in reports)),
            "request_speedup": round(
                retrain_seconds[f"{kind}_request"] / max(single.seconds, 1e-9), 2
            ),
            "batch_speedup": round(retrain_seconds[f"{kind}_batch"] / max(batch_seconds, 1e-9), 2),
            **{f"after_{key}": value for key, value in after.items()},
        }
        log(
            f"{name} K={n_shards} {kind}: one request {single.seconds:.3f} s, batch of {len(batch)} "
            f"{batch_seconds:.3f} s"
        )
    return row


def markdown_table(results: dict[str, Any]) -> str:
    """One line per (method, K): utility before deletion, then time and speed-up per deletion set."""
    k = results["config"]["k"]
    kinds = list(results["deletions"])
    header = ["method", "K", f"Recall@{k}", f"NDCG@{k}", "AUC", "balance"]
    for kind in kinds:
        n = results["deletions"][kind]["requests"]
        header += [
            f"{kind}: 1 request s (shards)",
            f"{kind}: speed-up",
            f"{kind}: batch of {n} s (shards)",
            f"{kind}: batch speed-up",
            f"{kind}: Recall@{k} after",
        ]
    lines = []
    for row in results["rows"]:
        balance = row.get("partition", {}).get("balance")
        cells = [
            row["method"],
            str(row["n_shards"] or "-"),
            f"{row[f'recall@{k}']:.4f}",
            f"{row[f'ndcg@{k}']:.4f}",
            f"{row['auc']:.4f}",
            "-" if balance is None else f"{balance:.2f}",
        ]
        for kind in kinds:
            d = row[kind]
            cells += [
                f"{d['request_seconds']:.3f} ({d['request_retrained_shards']})",
                f"{d['request_speedup']:.1f}x",
                f"{d['batch_seconds']:.3f} ({d['batch_retrained_shards']})",
                f"{d['batch_speedup']:.1f}x",
                f"{d[f'after_recall@{k}']:.4f}",
            ]
        lines.append(cells)
    return markdown_grid(header, lines)
