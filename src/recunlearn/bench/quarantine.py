"""Quarantine against forget: how fast a deletion leaves the served model, and what it costs in utility.

For each partition method (SISA, RecEraser, GraphEraser on interactions; APA on prompt samples) and
each request (one user's rows, one interaction or prompt), one fitted model is saved, then two
copies are loaded: one ``forget``s the request, the other ``quarantine``s it, is measured while
quarantined, and is ``repair``ed. Reported in one table: the time of each call, the ratio
quarantine / forget measured in this run, utility before, while quarantined and after the repair, and
whether the repaired model scores bitwise as the forgetting copy. A request whose rows lie in every
shard (one user under SISA's random shards) sets every shard aside: the model serves the most popular
remaining items until the repair, and the row says so (a method that refuses it, too).
``recunlearn bench quarantine`` runs this; :func:`run_quarantine_benchmark` is the Python entry point.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from recunlearn.bench._protocol import BenchConfig, check_methods, finish, method_settings
from recunlearn.bench._results import markdown_grid
from recunlearn.bench.experiment import DataSpec, MethodNames, prepare
from recunlearn.data import DeletionRequest, Split
from recunlearn.errors import RecUnlearnError
from recunlearn.evaluate import auc_report, ranking_report
from recunlearn.seeds import Seed
from recunlearn.unlearn import Unlearner, available_methods, get_method

METHODS = ("sisa", "receraser", "grapheraser")


class QuarantineBenchConfig(BenchConfig):
    """What `recunlearn bench quarantine` runs."""

    data: DataSpec = Field(default_factory=DataSpec)
    """Dataset and split of the interaction methods (default: the embedded ML-100K, IFRU's 60/20/20
    protocol, as `bench exact`)."""
    methods: MethodNames = Field(default_factory=lambda: list(METHODS))
    """Partition methods on interactions."""
    n_shards: Annotated[int, Field(ge=2)] = 10
    """K of the interaction methods."""
    requests: list[Literal["user", "interaction"]] = Field(
        default_factory=lambda: ["user", "interaction"]
    )
    """Requests measured: every row of one random user, or one random interaction."""
    deletion_seed: Seed = 0
    """Seed that picks the user and the interaction."""
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "mf"})
    """Model of every shard (and of the partition embeddings)."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Training settings of every shard."""
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method settings, e.g. {receraser = {partition = "item"}}."""
    apa: dict[str, Any] | None = Field(default_factory=dict)
    """Settings of `bench apa` (its ``ApaBenchConfig``, over its demo preset: ML-100K prompts, the
    embedded MiniLM on CPU) for APA at ``apa_shards``; None leaves APA out."""
    apa_shards: Annotated[int, Field(ge=2)] = 4
    """K of APA."""
    k: int = Field(20, ge=1)
    """Cut-off of Recall."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """Seconds: a small synthetic log, K=3, APA on a tiny random language model."""
        from recunlearn.bench.apa import tiny_run_values

        return {
            "data": DataSpec.synthetic(n_interactions=2000, n_users=80, n_items=60, k_core=2),
            "n_shards": 3,
            "train": {"max_epochs": 3, "patience": 2, "batch_size": 512, "lr": 0.01},
            "method_options": {"receraser": {"aggregator": {"kind": "attention", "epochs": 1}}},
            "apa": tiny_run_values(),
            "apa_shards": 2,
        }


def _method_config(config: QuarantineBenchConfig, name: str) -> dict[str, Any]:
    return method_settings(
        name,
        config.method_options,
        model=config.model,
        train=config.train,
        n_shards=config.n_shards,
    )


def _requests(config: QuarantineBenchConfig, train) -> dict[str, DeletionRequest]:
    rng = np.random.default_rng(config.deletion_seed)
    out = {}
    if "user" in config.requests:
        user = train.users.ids[rng.choice(np.unique(train.user))]
        out["user"] = DeletionRequest(users=[str(user)], request_id=f"user-{user}")
    if "interaction" in config.requests:
        row = int(rng.integers(len(train)))
        out["interaction"] = DeletionRequest.from_rows(train, [row], request_id=f"row-{row}")
    return out


def run_quarantine_benchmark(config: QuarantineBenchConfig, log=print) -> dict[str, Any]:
    """Run the protocol; returns (and writes, if ``config.output``) a results document."""
    start = time.perf_counter()
    check_methods(
        "quarantine",
        config.methods,
        [n for n, c in available_methods("interactions").items() if c.exact and n != "retrain"],
        lambda name: [_method_config(config, name)],
        runs_on="partition methods on interactions",
    )
    rows: list[dict[str, Any]] = []
    split = prepare(config.data) if config.methods else None
    with tempfile.TemporaryDirectory() as scratch:
        if split is not None:
            log(f"data: {split.describe()}")
            requests = _requests(config, split.train)
            for name in config.methods:
                method = get_method(name)(_method_config(config, name))
                log(f"{name} K={config.n_shards}: fitting ...")
                method.fit(split.train, split.valid)
                folder = method.save(Path(scratch) / name)
                before = _utility(method, split, config.k)
                for kind, request in requests.items():
                    rows.append(
                        _measure(
                            name, config.n_shards, kind, request, folder, before, split, config.k
                        )
                    )
                    log(_line(rows[-1]))
        if config.apa is not None:
            rows.extend(_apa_rows(config, Path(scratch), log))
    document = {"data": split.describe() if split is not None else None, "rows": rows}
    return finish(document, config, "quarantine", start, markdown_table)


def _utility(method: Unlearner, split: Split, k: int) -> dict[str, float]:
    ranking = ranking_report(method, method.train, split.test, k)
    return {f"recall@{k}": ranking[f"recall@{k}"], "auc": auc_report(method, split.test)["auc"]}


def _measure(name, n_shards, kind, request, folder, before, split, k) -> dict[str, Any]:
    """Forget on one copy, quarantine then repair on another; utility at each step."""
    row: dict[str, Any] = {"method": name, "n_shards": n_shards, "request": kind, "before": before}
    forgetting = Unlearner.load(folder)
    report = forgetting.forget(request)
    row["forget_seconds"] = report.seconds
    row["forget_retrained"] = len(report.details.get("retrained_shards", []))
    row["after_forget"] = _utility(forgetting, split, k)
    quarantined = Unlearner.load(folder)
    try:
        report = quarantined.quarantine(request)
    except RecUnlearnError as exc:
        row["refused"] = str(exc)
        return row
    row["quarantine_seconds"] = report.seconds
    row["quarantined"] = report.quarantined_parts
    row["serving"] = report.details.get("serving", "parts")
    row["exact"] = report.exact
    row["ratio"] = report.seconds / row["forget_seconds"]
    row["while_quarantined"] = _utility(quarantined, split, k)
    repair = quarantined.repair()
    row["repair_seconds"] = repair.seconds
    row["after_repair"] = _utility(quarantined, split, k)
    test = split.test
    row["repair_equals_forget"] = bool(
        np.array_equal(
            quarantined.score_index(test.user, test.item),
            forgetting.score_index(test.user, test.item),
        )
    )
    return row


def _apa_rows(config: QuarantineBenchConfig, scratch: Path, log) -> list[dict[str, Any]]:
    """APA at ``apa_shards`` on `bench apa`'s prompts: one user's prompts, and one prompt."""
    from recunlearn.bench.apa import ApaBenchConfig, prepare_samples
    from recunlearn.evaluate import roc_auc
    from recunlearn.models.llm.backbones import create_tiny_model

    apa = ApaBenchConfig.demo(**config.apa)
    train, valid, test = prepare_samples(apa)
    backbone = dict(apa.backbone)
    if apa.tiny_backbone:
        prompts = train.prompts() + valid.prompts() + test.prompts()
        backbone["name"] = str(create_tiny_model(scratch / "tiny", prompts, kind=apa.tiny_backbone))
    options = {
        "backbone": backbone,
        "lora": apa.lora,
        "train": apa.train,
        "device": apa.device,
        "n_shards": config.apa_shards,
        **apa.apa,
    }
    log(f"apa K={config.apa_shards}: fitting on {len(train)} prompts ...")
    method = get_method("apa")(options).fit(train, valid)
    folder = method.save(scratch / "apa")
    rng = np.random.default_rng(config.deletion_seed)
    requests = {}
    if "user" in config.requests:
        user = str(rng.choice(np.unique(train.user)))
        requests["user"] = DeletionRequest(users=[user], request_id=f"user-{user}")
    if "interaction" in config.requests:
        sample = str(train.ids[int(rng.integers(len(train)))])
        requests["interaction"] = DeletionRequest(samples=[sample], request_id=sample)

    def utility(model) -> dict[str, float]:
        return {"auc": roc_auc(test.label, model.score(test))}

    rows = []
    for kind, request in requests.items():
        row: dict[str, Any] = {
            "method": "apa",
            "n_shards": config.apa_shards,
            "request": kind,
            "before": utility(method),
        }
        forgetting = Unlearner.load(folder)
        report = forgetting.forget(request)
        row["forget_seconds"] = report.seconds
        row["forget_retrained"] = len(report.details.get("retrained_adapters", []))
        row["after_forget"] = utility(forgetting)
        quarantined = Unlearner.load(folder)
        try:
            report = quarantined.quarantine(request)
        except RecUnlearnError as exc:
            row["refused"] = str(exc)
            rows.append(row)
            continue
        row["quarantine_seconds"] = report.seconds
        row["quarantined"] = report.quarantined_parts
        row["exact"] = report.exact
        row["ratio"] = report.seconds / row["forget_seconds"]
        row["while_quarantined"] = utility(quarantined)
        row["repair_seconds"] = quarantined.repair().seconds
        row["after_repair"] = utility(quarantined)
        row["repair_equals_forget"] = bool(
            np.array_equal(quarantined.score(test), forgetting.score(test))
        )
        rows.append(row)
        log(_line(row))
    return rows


def _line(row: dict[str, Any]) -> str:
    if "refused" in row:
        return f"{row['method']} {row['request']}: quarantine refused ({row['refused']})"
    return (
        f"{row['method']} {row['request']}: quarantine {row['quarantine_seconds'] * 1e3:.2f} ms, "
        f"forget {row['forget_seconds']:.2f} s (ratio 1/{1 / max(row['ratio'], 1e-12):.0f})"
    )


def markdown_table(results: dict[str, Any]) -> str:
    """One line per method and request: times, their ratio, utility at each step."""
    k = results["config"]["k"]
    header = [
        "method",
        "K",
        "request",
        "forget s (parts)",
        "quarantine ms (parts)",
        "quarantine / forget",
        "repair s",
        "utility before",
        "while quarantined",
        "after repair",
        "after forget",
        "repair = forget",
    ]

    def utility(values: dict[str, float] | None) -> str:
        if not values:
            return "-"
        recall = values.get(f"recall@{k}")
        text = f"AUC {values['auc']:.4f}"
        return text if recall is None else f"R@{k} {recall:.4f}, {text}"

    cells = []
    for row in results["rows"]:
        refused = "refused" in row
        cells.append(
            [
                row["method"],
                str(row["n_shards"]),
                row["request"],
                f"{row['forget_seconds']:.2f} ({row['forget_retrained']})",
                "refused: every part holds the rows"
                if refused
                else f"{row['quarantine_seconds'] * 1e3:.2f} ({len(row['quarantined'])}"
                + (", popularity served)" if row.get("serving") == "popularity" else ")"),
                "-" if refused else f"1/{1 / max(row['ratio'], 1e-12):,.0f}",
                "-" if refused else f"{row['repair_seconds']:.2f}",
                utility(row["before"]),
                utility(row.get("while_quarantined")),
                utility(row.get("after_repair")),
                utility(row["after_forget"]),
                "-" if refused else ("yes" if row["repair_equals_forget"] else "NO"),
            ]
        )
    return markdown_grid(header, cells)
