"""Streams of deletion requests: what many requests, served one at a time, do to each method.

On the implicit protocol, two streams: single-user requests (``n_requests`` of them), and the rows of
a fake-positive attack deleted in ``attack_batches`` batches. Every method serves the stream one
request at a time:

- approximate methods (IFRU, IF, NegGrad, fine-tuning) start from one original model and ``forget``;
- partition methods (SISA, RecEraser) ``forget`` exactly;
- ``quarantine`` (of ``quarantine_method``, RecEraser by default) sets shards aside at once and
  repairs every ``repair_every`` requests, or first when a request would set aside every shard
  (``quarantine_fallback = "none"``: the stream measures shard models, never the popularity list);
- ``ifru/N``, a refresh policy: IFRU at once, exact retraining every N requests (``retrain``'s
  quarantine under an ``after N`` :class:`~recunlearn.unlearn.quarantine.RepairPolicy`).

At each checkpoint a model is retrained from scratch on what remains (the exact reference, same
seed); every method is measured against it: Recall@K, its gap to the reference, the mean absolute
score difference on the test rows and on the removed rows, the membership-attack advantage on the
removed rows (rate called members minus the reference's) and the cumulative unlearning time.
Retraining's own cumulative time is requests x the mean time of the reference fits. The refresh
policy reported is the cheapest ``ifru/N`` whose Recall@K stays within ``bound`` of the reference at
every checkpoint. ``recunlearn bench stream`` runs this and draws the curves.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from recunlearn.bench._protocol import BenchConfig, check_methods, finish, method_settings
from recunlearn.bench._results import markdown_grid
from recunlearn.bench.experiment import DataSpec, MethodNames, prepare
from recunlearn.data import DeletionRequest, Interactions, Split, fake_positive_attack
from recunlearn.errors import ConfigError, RecUnlearnError
from recunlearn.evaluate import ranking_report, score_distance
from recunlearn.evaluate.completeness import membership_inference
from recunlearn.seeds import Seed
from recunlearn.unlearn import Unlearner, get_method
from recunlearn.unlearn.base import make_config

METHODS = ("ifru", "if", "neggrad", "finetune", "sisa", "receraser", "quarantine")
APPROXIMATE = ("ifru", "if", "scif", "neggrad", "finetune")
PARTITION = ("sisa", "receraser", "grapheraser")


class StreamBenchConfig(BenchConfig):
    """What `recunlearn bench stream` runs."""

    data: DataSpec = Field(default_factory=lambda: DataSpec(dataset="ml-100k", protocol="implicit"))
    """Dataset and split (default: the embedded ML-100K, implicit protocol)."""
    streams: list[Literal["users", "attack"]] = Field(default_factory=lambda: ["users", "attack"])
    """'users': single-user requests; 'attack': fake positives injected before training, deleted in batches."""
    methods: MethodNames = Field(default_factory=lambda: list(METHODS))
    """Methods served the stream ('quarantine' is ``quarantine_method`` under quarantine + repair)."""
    n_requests: int = Field(100, ge=1)
    """Single-user requests of the 'users' stream."""
    attack_fraction: float = Field(0.05, gt=0, lt=1)
    """Fake positives of the 'attack' stream, as a fraction of the training rows."""
    attack_batches: int = Field(10, ge=1)
    """Requests the attack rows are deleted in (equal batches)."""
    checkpoints: list[int] = Field(default_factory=lambda: [1, 2, 5, 10, 25, 50, 100])
    """Requests after which every method is measured (those beyond a stream's length are dropped;
    its last request always is one)."""
    refresh_every: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [1, 2, 5, 10, 25, 50]
    )
    """N of the ``ifru/N`` refresh policies (IFRU, retrained exactly every N requests; 1 is
    retraining with IFRU's update before it)."""
    bound: float = Field(0.005, gt=0)
    """Largest Recall@K gap to retraining a refresh policy may show at a checkpoint."""
    quarantine_method: str = "receraser"
    """Partition method of 'quarantine'."""
    repair_every: int = Field(10, ge=1)
    """Requests 'quarantine' lets wait before its repair."""
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "mf", "dim": 64})
    """Model of every method."""
    train: dict[str, Any] = Field(default_factory=lambda: {"loss": "bpr", "l2": 1e-3})
    """Training settings of every method."""
    method_options: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"sisa": {"n_shards": 10}, "receraser": {"n_shards": 10}}
    )
    """Per-method settings."""
    seed: Seed = 0
    """Picks the deleted users and the attack rows; seeds training."""
    k: int = Field(20, ge=1)
    """Cut-off of Recall."""

    @model_validator(mode="after")
    def _known_methods(self) -> StreamBenchConfig:
        for name in self.methods:
            if name != "quarantine" and name not in (*APPROXIMATE, *PARTITION):
                raise ValueError(
                    f"method {name!r}: bench stream runs {', '.join(APPROXIMATE + PARTITION)} and "
                    "quarantine"
                )
        return self

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """Seconds: a small synthetic log, 8 requests, K=3."""
        return {
            "data": DataSpec.synthetic_implicit(),
            "n_requests": 8,
            "attack_batches": 4,
            "checkpoints": [1, 3, 8],
            "refresh_every": [1, 2, 4],
            "repair_every": 4,
            "model": {"kind": "mf", "dim": 16},
            "train": {"loss": "bpr", "max_epochs": 6, "patience": 3, "batch_size": 512},
            "method_options": {
                "sisa": {"n_shards": 3},
                "receraser": {"n_shards": 3, "aggregator": {"kind": "attention", "epochs": 2}},
            },
        }


def _settings(config: StreamBenchConfig, name: str) -> dict[str, Any]:
    return method_settings(
        name,
        config.method_options,
        model=config.model,
        train={**config.train, "seed": config.seed},
    )


def stream_requests(
    config: StreamBenchConfig, kind: str, split: Split
) -> tuple[Split, list[DeletionRequest]]:
    """The split trained on (polluted for the attack) and the stream's requests, in order."""
    rng = np.random.default_rng(config.seed)
    if kind == "users":
        users = np.unique(split.train.user)
        if config.n_requests > len(users) - 1:
            raise ConfigError(
                f"{config.n_requests} single-user requests need more users than the training "
                f"data's {len(users)}"
            )
        ids = split.train.users.ids[rng.choice(users, config.n_requests, replace=False)]
        return split, [DeletionRequest(users=[str(u)], request_id=f"user-{u}") for u in ids]
    polluted, attack = fake_positive_attack(split.train, config.attack_fraction, config.seed)
    batches = np.array_split(np.arange(len(attack.pairs)), config.attack_batches)
    requests = [
        DeletionRequest(pairs=[attack.pairs[i] for i in batch], request_id=f"attack-{n}")
        for n, batch in enumerate(batches)
        if len(batch)
    ]
    return Split(polluted, split.valid, split.test), requests


def run_stream_benchmark(config: StreamBenchConfig, log=print) -> dict[str, Any]:
    """Run the protocol; returns (and writes, if ``config.output``) a results document."""
    start = time.perf_counter()
    check_methods(
        "stream",
        [config.quarantine_method if name == "quarantine" else name for name in config.methods],
        (*APPROXIMATE, *PARTITION),
        lambda name: [_settings(config, name)],
    )
    clean = prepare(config.data)
    log(f"data: {clean.describe()}")
    streams = {}
    with tempfile.TemporaryDirectory() as scratch:
        for kind in config.streams:
            streams[kind] = _run_stream(config, kind, clean, Path(scratch) / kind, log)
    document: dict[str, Any] = {
        "data": clean.describe(),
        "streams": streams,
        "rows": curve_rows(streams),
    }
    if config.output:
        document["plots"] = draw(streams, config.bound, Path(config.output))
    return finish(document, config, "stream", start, markdown_table)


def curve_rows(streams: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (stream, method, checkpoint): what `recunlearn report` reads."""
    return [
        {"stream": kind, "method": name, **point}
        for kind, stream in streams.items()
        for name, points in stream["curves"].items()
        for point in points
    ]


def _run_stream(config: StreamBenchConfig, kind: str, clean: Split, scratch: Path, log):
    split, requests = stream_requests(config, kind, clean)
    train, valid = split.train, split.valid
    checkpoints = sorted({c for c in config.checkpoints if c <= len(requests)} | {len(requests)})
    log(f"{kind}: {len(requests)} requests; references at {checkpoints} ...")
    references, removed, reference_seconds = {}, {}, []
    taken, valid_taken = np.zeros(len(train), bool), np.zeros(len(valid), bool)
    for n, request in enumerate(requests, 1):
        taken |= request.rows(train)
        valid_taken |= request.rows(valid)
        if n in checkpoints:
            reference = get_method("retrain")(_settings(config, "retrain"))
            reference.fit(train.drop(taken), valid.drop(valid_taken))
            reference_seconds.append(reference.fit_seconds)
            references[n], removed[n] = reference, train.take(taken)
    original = get_method("retrain")(_settings(config, "retrain")).fit(train, valid)
    original.save(scratch / "original")
    per_request = float(np.mean(reference_seconds))
    curves: dict[str, list[dict[str, Any]]] = {
        "retrain": [
            {
                "requests": n,
                **_measure(config, references[n], references[n], removed[n], split),
                "seconds": per_request * n,
            }
            for n in checkpoints
        ]
    }
    names = list(config.methods) + [f"ifru/{n}" for n in config.refresh_every]
    for name in names:
        log(f"{kind}: {name} ...")
        curves[name] = _serve(
            config, name, requests, checkpoints, scratch, split, references, removed
        )
        last = curves[name][-1]
        log(
            f"{kind}: {name}: Recall@{config.k} gap {last['recall_gap']:+.4f}, "
            f"{last['seconds']:.2f} s in all"
        )
    return {
        "requests": len(requests),
        "removed_rows": int(taken.sum()),
        "checkpoints": checkpoints,
        "retrain_seconds_per_request": per_request,
        "curves": curves,
        "refresh_policy": refresh_policy(config, curves),
    }


def _serve(config, name, requests, checkpoints, scratch, split, references, removed):
    """Serve the stream with one method; its measures at every checkpoint."""
    method = _start(config, name, scratch, split)
    seconds, points = 0.0, []
    for n, request in enumerate(requests, 1):
        seconds += _serve_one(config, name, method, request)
        if n in checkpoints:
            if name == "quarantine" and n == len(requests) and method.pending:
                seconds += method.repair().seconds  # the stream ends repaired: exact
            point = _measure(config, method, references[n], removed[n], split)
            points.append({"requests": n, **point, "seconds": seconds})
    return points


def _start(config: StreamBenchConfig, name: str, scratch: Path, split: Split) -> Unlearner:
    if name in APPROXIMATE:
        return get_method(name).adopt(Unlearner.load(scratch / "original"), _settings(config, name))
    if name.startswith("ifru/"):
        method = Unlearner.load(scratch / "original")
        every = int(name.split("/")[1])
        method.config = make_config(
            type(method.config),
            method.config,
            {"quarantine_method": "ifru", "repair": {"when": "after", "after_requests": every}},
        )
        return method
    partition = config.quarantine_method if name == "quarantine" else name
    folder = scratch / partition
    if not folder.is_dir():
        get_method(partition)(_settings(config, partition)).fit(split.train, split.valid).save(
            folder
        )
    method = Unlearner.load(folder)
    # repairs before it would serve the popularity fallback (a sharded collaborative method's)
    if name == "quarantine" and "quarantine_fallback" in type(method.config).model_fields:
        method.config = make_config(
            type(method.config), method.config, {"quarantine_fallback": "none"}
        )
    return method


def _serve_one(config, name, method: Unlearner, request: DeletionRequest) -> float:
    """Seconds one request costs the method (its quarantine and any repair it makes due)."""
    if name == "quarantine" or name.startswith("ifru/"):
        try:
            seconds = method.quarantine(request).seconds
        except RecUnlearnError:  # every shard would be set aside: repair, then set aside again
            if not method.pending:  # the request alone holds rows of every shard: forget it
                return method.forget(request).seconds
            seconds = method.repair().seconds + method.quarantine(request).seconds
        if (
            method.repair_due()
            if name.startswith("ifru/")
            else len(method.pending) >= config.repair_every
        ):
            seconds += method.repair().seconds
        return seconds
    return method.forget(request).seconds


def _measure(config, method, reference, removed: Interactions, split: Split) -> dict[str, Any]:
    recall = ranking_report(method, method.train, split.test, config.k)[f"recall@{config.k}"]
    reference_recall = ranking_report(reference, reference.train, split.test, config.k)[
        f"recall@{config.k}"
    ]
    attack = membership_inference(method, method.train, split.test, removed)
    reference_attack = membership_inference(reference, reference.train, split.test, removed)
    return {
        "recall": recall,
        "recall_gap": recall - reference_recall,
        "dist_test": score_distance(method, reference, split.test),
        "dist_removed": score_distance(method, reference, removed),
        "mia_advantage": attack["removed_member_rate"] - reference_attack["removed_member_rate"],
    }


def refresh_policy(config: StreamBenchConfig, curves: dict[str, list[dict[str, Any]]]):
    """The cheapest ``ifru/N`` within ``bound``: at every checkpoint, and, as a checkpoint that falls
    on a retraining hides the drift before it, IFRU alone within it at every checkpoint before N (the
    drift of the first N - 1 requests stands for every span between two retrainings)."""
    drift = curves.get("ifru", [])

    def holds(name: str) -> bool:
        spans = [p for p in drift if p["requests"] < int(name.split("/")[1])]
        return all(abs(p["recall_gap"]) <= config.bound for p in curves[name] + spans)

    within = [f"ifru/{n}" for n in config.refresh_every if holds(f"ifru/{n}")]
    if not within:
        return {
            "policy": None,
            "bound": config.bound,
            "note": "no candidate stays within the bound",
        }
    best = min(within, key=lambda n: curves[n][-1]["seconds"])
    return {
        "policy": best,
        "bound": config.bound,
        "seconds": curves[best][-1]["seconds"],
        "largest_gap": max(abs(p["recall_gap"]) for p in curves[best]),
        "retrain_seconds": curves["retrain"][-1]["seconds"],
    }


def draw(streams: dict[str, dict[str, Any]], bound: float, out: Path) -> list[str]:
    """One figure per stream: Recall gap (``bound`` shaded), distance on test rows, membership
    advantage, cumulative time against requests; the files' names, beside ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    names = []
    for kind, stream in streams.items():
        figure, axes = plt.subplots(1, 4, figsize=(18, 4))
        panels = [
            ("recall_gap", "Recall@K - retraining's"),
            ("dist_test", "mean |score - retraining's| (test)"),
            ("mia_advantage", "membership advantage (removed)"),
            ("seconds", "cumulative unlearning s"),
        ]
        for axis, (key, title) in zip(axes, panels):
            axis.set_prop_cycle(
                color=plt.cm.tab20.colors
            )  # more methods than the default ten colours
            for name, points in stream["curves"].items():
                x = [p["requests"] for p in points]
                axis.plot(x, [p[key] for p in points], marker="o", label=name)
            axis.set_title(title)
            axis.set_xlabel("requests")
            if key == "seconds":
                axis.set_yscale("log")
        axes[0].axhspan(-bound, bound, alpha=0.15)
        axes[-1].legend(fontsize=7)
        figure.suptitle(f"{kind} stream")
        figure.tight_layout()
        path = out.with_name(f"{out.stem}-{kind}.png")
        figure.savefig(path, dpi=90)
        plt.close(figure)
        names.append(path.name)
    return names


def markdown_table(results: dict[str, Any]) -> str:
    """Per stream: each method at each checkpoint, then the refresh policy chosen."""
    parts = []
    header = ["method", "requests", "Recall@K", "gap", "|Δ| test", "|Δ| removed", "MIA adv.", "s"]
    for kind, stream in results["streams"].items():
        cells = []
        for name, points in stream["curves"].items():
            for p in points:
                cells.append(
                    [
                        name,
                        str(p["requests"]),
                        f"{p['recall']:.4f}",
                        f"{p['recall_gap']:+.4f}",
                        f"{p['dist_test']:.4f}",
                        f"{p['dist_removed']:.4f}",
                        _signed(p["mia_advantage"]),
                        f"{p['seconds']:.2f}",
                    ]
                )
        policy = stream["refresh_policy"]
        parts.append(
            f"### {kind} stream ({stream['requests']} requests, {stream['removed_rows']} rows)"
        )
        parts.append(markdown_grid(header, cells))
        parts.append(
            f"Refresh policy within {policy['bound']} Recall@K of retraining: "
            + (
                f"**{policy['policy']}**, {policy['seconds']:.1f} s in all against retraining's "
                f"{policy['retrain_seconds']:.1f} s (largest gap {policy['largest_gap']:.4f})."
                if policy["policy"]
                else "none of the candidates."
            )
        )
    parts += [f"![{name}]({name})" for name in results.get("plots", [])]
    return "\n\n".join(parts)


def _signed(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:+.3f}"
