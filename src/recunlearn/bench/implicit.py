"""Unlearning on implicit feedback, judged by top-K ranking: every method on BPR-trained models.

For each model (MF, LightGCN), deletion and seed: the original model is trained with BPR on the
training positives (with the injected data for an attack); retraining (the exact
reference), the approximate methods (IFRU, IF, SCIF, fine-tuning, NegGrad, each on a copy of the
same original model) and any partition method (SISA, RecEraser, GraphEraser, trained on their
shards) forget the request. Measured: Recall / NDCG / MRR / coverage@K over all items with the
remaining training items masked, a most-popular row for scale, the mean absolute score difference
to the retrained model on the removed rows (and the original model's, for comparison), the wall time
of ``forget`` and the speed-up over retraining; for the attack, the share of the Recall@K the fake
users cost that each method's forget recovers. ``recunlearn bench implicit`` runs this.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recunlearn.bench._protocol import (
    BenchConfig,
    check_methods,
    finish,
    method_settings,
    retrain_first,
)
from recunlearn.bench._results import markdown_grid, speedup_text
from recunlearn.bench._side_by_side import fit_and_forget, flat_rows
from recunlearn.bench.experiment import DataSpec, MethodNames, prepare
from recunlearn.data import (
    DeletionRequest,
    Split,
    fake_positive_attack,
    fake_user_attack,
    random_interactions,
    user_deletion,
)
from recunlearn.data.interactions import Interactions
from recunlearn.errors import ConfigError
from recunlearn.evaluate import MostPopular, ranking_report, score_distance
from recunlearn.seeds import Seed
from recunlearn.unlearn import Unlearner, available_methods

METHODS = ("retrain", "finetune", "neggrad", "if", "scif", "ifru")
DELETIONS = ("random", "users", "fake_positives")
ATTACKS = ("fake_positives", "fake_users")
"""Deletions of injected data: retraining is the model never attacked, and each row says how much of
the Recall@K the attack cost its forget wins back."""


class AttackSpec(BaseModel):
    """The injected data: random fake positives (:func:`recunlearn.data.fake_positive_attack`) or fake
    users (:func:`recunlearn.data.fake_user_attack`)."""

    model_config = ConfigDict(extra="forbid")
    positives_fraction: float = Field(0.1, gt=0, lt=1)
    """Fake positives as a fraction of the training rows."""
    users_fraction: float = Field(0.05, gt=0, lt=1)
    """Fake users as a fraction of the real ones."""
    targets: int = Field(5, ge=1)
    """Target items every fake user interacts with (drawn among the less popular half)."""
    profile_size: int = Field(50, ge=0)
    """Filler items per fake user, drawn by popularity."""


class ImplicitBenchConfig(BenchConfig):
    """What `recunlearn bench implicit` runs."""

    data: DataSpec = Field(default_factory=lambda: DataSpec(dataset="ml-100k", protocol="implicit"))
    """Dataset and split (default: ML-100K, rating > 3 as positives, 5-core, per-user 80/10/10)."""
    models: list[Literal["mf", "lightgcn"]] = Field(default_factory=lambda: ["mf", "lightgcn"])
    """Recommenders to run the protocol on."""
    deletions: list[Literal["random", "users", "fake_positives", "fake_users"]] = Field(
        default_factory=lambda: list(DELETIONS)
    )
    """'random': a fraction of the training positives; 'users': every positive of random users;
    'fake_positives' / 'fake_users': injected data, whose removal should restore the ranking."""
    fraction: float = Field(0.01, gt=0, lt=1)
    """Share of the training positives a 'random' deletion removes."""
    users: int = Field(10, ge=1)
    """Users a 'users' deletion removes."""
    attack: AttackSpec = Field(default_factory=AttackSpec)
    """The injected data of the 'fake_positives' and 'fake_users' deletions."""
    seeds: list[Seed] = Field(default_factory=lambda: [0])
    """Each seed picks the deleted data and seeds training."""
    methods: MethodNames = Field(default_factory=lambda: list(METHODS))
    """Methods to compare; 'retrain' always runs (the reference for completeness and time)."""
    model_options: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"mf": {"dim": 64}, "lightgcn": {"dim": 32, "n_layers": 1}}
    )
    """Per model kind, settings beyond the defaults."""
    train: dict[str, Any] = Field(default_factory=lambda: {"loss": "bpr", "l2": 1e-3})
    """Training settings shared by every method (the seed is set per run)."""
    method_options: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "sisa": {"n_shards": 10},
            "receraser": {"n_shards": 10},
            "grapheraser": {"n_shards": 10},
        }
    )
    """Per-method settings, e.g. {ifru = {keep_quantile = 0.4}}."""
    k: int = Field(20, ge=1)
    """Cut-off of the ranking measures."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """A run of seconds on a small synthetic log."""
        return {
            "data": DataSpec.synthetic_implicit(),
            "users": 2,
            "attack": AttackSpec(users_fraction=0.1, targets=3, profile_size=10),
            "deletions": ["random", "users", "fake_positives", "fake_users"],
            "train": {"loss": "bpr", "max_epochs": 6, "patience": 3, "batch_size": 512},
            "model_options": {"lightgcn": {"dim": 16}, "mf": {"dim": 16}},
            "method_options": {
                "sisa": {"n_shards": 2},
                "receraser": {"n_shards": 2},
                "grapheraser": {"n_shards": 2},
            },
        }


def _method_config(config: ImplicitBenchConfig, name: str, kind: str, seed: int) -> dict[str, Any]:
    return method_settings(
        name,
        config.method_options,
        model={"kind": kind, **config.model_options.get(kind, {})},
        train={**config.train, "seed": seed},
    )


def deletion(
    config: ImplicitBenchConfig, kind: str, split: Split, seed: int
) -> tuple[Split, DeletionRequest]:
    """The split the methods train on (with the fake users for the attack) and the request they forget."""
    if kind == "random":
        return split, random_interactions(split.train, config.fraction, seed)
    if kind == "users":
        if config.users > len(np.unique(split.train.user)):
            raise ConfigError(
                f"cannot delete {config.users} users: the training data has "
                f"{len(np.unique(split.train.user))}"
            )
        return split, user_deletion(split.train, n_users=config.users, seed=seed)
    if kind == "fake_positives":
        polluted, request = fake_positive_attack(
            split.train, config.attack.positives_fraction, seed
        )
        return Split(polluted, split.valid, split.test), request
    n_fake = max(1, round(config.attack.users_fraction * len(np.unique(split.train.user))))
    polluted, request, _ = fake_user_attack(
        split.train, n_fake, config.attack.targets, config.attack.profile_size, seed
    )
    onto = [part.reindexed(polluted.users, polluted.items) for part in (split.valid, split.test)]
    return Split(polluted, *onto), request


def run_implicit_benchmark(config: ImplicitBenchConfig, log=print) -> dict[str, Any]:
    """Run the protocol; returns (and writes, if ``config.output``) a results document."""
    start = time.perf_counter()
    names = retrain_first(config.methods)
    check_methods(
        "implicit",
        names,
        available_methods("interactions"),
        lambda name: (
            _method_config(config, name, kind, config.seeds[0]) for kind in config.models
        ),
    )
    split = prepare(config.data)
    log(f"data: {split.describe()}")
    runs = [
        _run(config, split, names, kind, removal, seed, log)
        for kind in config.models
        for removal in config.deletions
        for seed in config.seeds
    ]
    document = {
        "data": split.describe(),
        "runs": runs,
        "rows": flat_rows(runs, ("model", "deletion", "seed")),
    }
    return finish(document, config, "implicit", start, markdown_table)


def _run(
    config: ImplicitBenchConfig,
    clean: Split,
    names: list[str],
    kind: str,
    removal: str,
    seed: int,
    log,
) -> dict[str, Any]:
    split, request = deletion(config, removal, clean, seed)
    train = split.train
    removed = train.take(request.rows(train))
    log(f"{kind}, {removal} ({len(removed):,} rows), seed {seed}: fitting the original model ...")
    original, methods, reports = fit_and_forget(
        names,
        lambda name: _method_config(config, name, kind, seed),
        train,
        split.valid,
        request,
        log,
    )
    reference = methods["retrain"]
    remaining = reference.train
    rows = [
        {
            "method": "most-popular",
            **ranking_report(MostPopular(remaining), remaining, split.test, config.k),
        },
        _measure(config, "original", original, None, reference, split, removed, remaining),
    ]
    rows += [
        _measure(config, name, methods[name], reports[name], reference, split, removed, remaining)
        for name in names
    ]
    for row in rows[2:]:  # rows[2] is retraining's
        row["speedup"] = rows[2]["forget_seconds"] / max(row["forget_seconds"], 1e-9)
    recall = f"recall@{config.k}"
    if (
        removal in ATTACKS
    ):  # retraining is the model never attacked: how much of its lead does each forget win back?
        cost = rows[2][recall] - rows[1][recall]
        for row in rows[1:]:
            row["attack_recovered"] = (
                (row[recall] - rows[1][recall]) / cost if cost > 0 else float("nan")
            )
    return {
        "model": kind,
        "deletion": removal,
        "seed": seed,
        "removed_rows": len(removed),
        "request": {"users": len(request.users), "pairs": len(request.pairs)},
        "original_fit_seconds": round(reference.fit_seconds, 3),
        "rows": rows,
    }


def _measure(
    config: ImplicitBenchConfig,
    name: str,
    method: Unlearner,
    report,
    reference: Unlearner,
    split: Split,
    removed: Interactions,
    remaining: Interactions,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "method": name,
        **ranking_report(method, remaining, split.test, config.k),
        "dist_removed": score_distance(method, reference, removed),
        "dist_test": score_distance(method, reference, split.test),
    }
    if report is not None:
        row.update(
            exact=method.exact,
            forget_seconds=report.seconds,
            details=json.loads(json.dumps(report.details, default=str)),
        )
    return row


COLUMNS = [
    ("method", "method", "{}"),
    ("recall@20", "Recall@20", "{:.4f}"),
    ("ndcg@20", "NDCG@20", "{:.4f}"),
    ("mrr@20", "MRR@20", "{:.4f}"),
    ("coverage@20", "coverage@20", "{:.3f}"),
    ("dist_removed", "|Δ| removed", "{:.4f}"),
    ("attack_recovered", "attack recovered", "{:.0%}"),
    ("forget_seconds", "forget s", "{:.3f}"),
    ("speedup", "speed-up", None),
]


def summary_table(results: dict[str, Any]) -> str:
    """One line per (model, deletion, method): means over the seeds, and the speed-ups' range."""
    k = results["config"]["k"]
    recall, ndcg = f"recall@{k}", f"ndcg@{k}"
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        for row in run["rows"]:
            groups.setdefault((run["model"], run["deletion"], row["method"]), []).append(row)
    seeds = len({run["seed"] for run in results["runs"]})
    note = (
        f"Means over {seeds} seed(s); speed-up: lowest and highest; attack recovered: the share of "
        f"the Recall@{k} the attack cost (retraining's mean less the original's) that the method's "
        "mean wins back.\n"
    )
    header = ["model", "deletion", "method", f"Recall@{k}", f"NDCG@{k}", "|Δ| removed"]
    header += ["attack recovered", "forget s", "speed-up"]
    cells = []

    def mean(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
        values = [r[key] for r in rows if r.get(key) is not None]
        return fmt.format(float(np.mean(values))) if values else "-"

    for (model, removal, method), rows in groups.items():
        speedups = [r["speedup"] for r in rows if "speedup" in r]
        low, high = (
            (speedup_text(min(speedups)), speedup_text(max(speedups))) if speedups else ("-", "-")
        )
        recovered = "-"
        if (
            removal in ATTACKS and method != "most-popular"
        ):  # from the mean Recall@K: per-seed ratios of a small cost are noise
            original, retrain = (
                float(np.mean([r[recall] for r in groups[(model, removal, name)]]))
                for name in ("original", "retrain")
            )
            mine = float(np.mean([r[recall] for r in rows]))
            recovered = (
                f"{(mine - original) / (retrain - original):.0%}" if retrain > original else "-"
            )
        cells.append(
            [
                model,
                removal,
                method,
                mean(rows, recall, "{:.4f}"),
                mean(rows, ndcg, "{:.4f}"),
                mean(rows, "dist_removed", "{:.4f}"),
                recovered,
                mean(rows, "forget_seconds", "{:.3f}"),
                low if low == high else f"{low}-{high}",
            ]
        )
    return note + "\n" + markdown_grid(header, cells)


def markdown_table(results: dict[str, Any]) -> str:
    """The summary over seeds, then one table per run (model, deletion, seed); |Δ| removed is the mean
    absolute score difference to the retrained model on the removed rows (0 = what retraining gives)."""
    k = results["config"]["k"]
    columns = [
        (key.replace("@20", f"@{k}"), title.replace("@20", f"@{k}"), fmt)
        for key, title, fmt in COLUMNS
    ]
    out = [summary_table(results), ""]
    for run in results["runs"]:
        if not any("attack_recovered" in r for r in run["rows"]):
            shown = [c for c in columns if c[0] != "attack_recovered"]
        else:
            shown = columns
        out.append(
            f"### {run['model']}, {run['deletion']} ({run['removed_rows']:,} rows), seed {run['seed']}\n"
        )
        cells = []
        for row in run["rows"]:
            update = row.get("details", {}).get("update", "")
            cells.append(
                [
                    (
                        "-"
                        if row.get(key) is None
                        else speedup_text(row[key])
                        if fmt is None
                        else fmt.format(row[key])
                    )
                    for key, _, fmt in shown
                ]
                + [update if update not in ("", "applied") else ""]
            )
        out.append(markdown_grid([title for _, title, _ in shown] + ["note"], cells))
        out.append("")
    return "\n".join(out)
