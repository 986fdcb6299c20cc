"""The IFRU protocol: approximate unlearning of label-flipped training data, side by side.

For each model (MF, LightGCN), attack fraction and seed: a fraction of the training labels is
flipped (IFRU's 'unusable data'); the original model trains on everything; retraining (the
reference), SISA, the influence function, SCIF, fine-tuning, NegGrad and IFRU then forget the
flipped rows. Every approximate method starts from a copy of the same original model, so its
``forget`` time is the only cost it adds. Measured: test AUC overall / OR / AND, completeness
against the retrained model (score and parameter distance, AUC on the removed rows with their
true labels, membership inference), the wall time of ``forget`` and the speed-up over retraining
(retraining's time = its ``forget``: a fresh ``fit`` on the remaining data, same early stopping).
``recunlearn bench ifru`` runs this; :func:`run_ifru_benchmark` is the Python entry point.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import Field

from recunlearn.bench._memory import PeakMemory
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
from recunlearn.data import label_flip_attack, user_deletion
from recunlearn.evaluate import auc_report
from recunlearn.evaluate.completeness import completeness_report
from recunlearn.seeds import Seed
from recunlearn.unlearn import available_methods, get_method

METHODS = ("retrain", "sisa", "if", "scif", "finetune", "neggrad", "ifru")


class IFRUBenchConfig(BenchConfig):
    """What `recunlearn bench ifru` runs."""

    data: DataSpec = Field(default_factory=DataSpec)
    """Dataset and split (default: the embedded ML-100K; rating > 3, 5-core, 60/20/20, seed 1024)."""
    models: list[Literal["mf", "lightgcn"]] = Field(default_factory=lambda: ["mf", "lightgcn"])
    """Recommenders to run the protocol on."""
    fractions: list[float] = Field(default_factory=lambda: [0.02])
    """Fractions of the training rows whose labels are flipped (IFRU: 1% and 2%)."""
    seeds: list[Seed] = Field(default_factory=lambda: [0])
    """Each seed picks the flipped rows and seeds training."""
    methods: MethodNames = Field(default_factory=lambda: list(METHODS))
    """Methods to compare; 'retrain' always runs (the reference for completeness and time)."""
    model_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per model kind, settings beyond the defaults, e.g. {lightgcn = {dim = 64}}."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Training settings shared by every method (the seed is set per run)."""
    method_options: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"sisa": {"n_shards": 10}}
    )
    """Per-method settings, e.g. {ifru = {keep_quantile = 0.4}}; no per-dataset step sizes are needed."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """A run of seconds on a small synthetic log."""
        return {
            "data": DataSpec.synthetic(n_interactions=2400, n_users=80, n_items=60, k_core=2),
            "fractions": [0.05],
            "train": {"max_epochs": 6, "patience": 3, "batch_size": 512, "lr": 0.01},
            "model_options": {"lightgcn": {"dim": 16}, "mf": {"dim": 16}},
            "method_options": {"sisa": {"n_shards": 2}},
        }


def _method_config(config: IFRUBenchConfig, name: str, kind: str, seed: int) -> dict[str, Any]:
    return method_settings(
        name,
        config.method_options,
        model={"kind": kind, **config.model_options.get(kind, {})},
        train={**config.train, "seed": seed},
    )


def run_ifru_benchmark(config: IFRUBenchConfig, log=print) -> dict[str, Any]:
    """Run the protocol; returns (and writes, if ``config.output``) a results document."""
    start = time.perf_counter()
    names = retrain_first(config.methods)
    check_methods(
        "ifru",
        names,
        available_methods("interactions"),
        lambda name: (
            _method_config(config, name, kind, seed)
            for kind in config.models
            for seed in config.seeds
        ),
    )
    split = prepare(config.data)
    log(f"data: {split.describe()}")
    runs = []
    for kind in config.models:
        for fraction in config.fractions:
            for seed in config.seeds:
                runs.append(_run(config, split, names, kind, fraction, seed, log))
    document = {
        "data": split.describe(),
        "runs": runs,
        "rows": flat_rows(runs, ("model", "fraction", "seed")),
    }
    return finish(document, config, "ifru", start, markdown_table)


def _run(
    config: IFRUBenchConfig, split, names: list[str], kind: str, fraction: float, seed: int, log
) -> dict[str, Any]:
    polluted, request = label_flip_attack(split.train, fraction, seed)
    removed = polluted.take(request.rows(polluted))
    removed_true = split.train.take(request.rows(split.train))
    log(
        f"{kind}, {fraction:.0%} flipped ({len(removed):,} rows), seed {seed}: fitting the original model ..."
    )
    original, methods, reports = fit_and_forget(
        names,
        lambda name: _method_config(config, name, kind, seed),
        polluted,
        split.valid,
        request,
        log,
    )
    reference = methods["retrain"]
    remaining = reference.train
    retrain_seconds = reports["retrain"].seconds
    measured = [("original", original, None)] + [(n, methods[n], reports[n]) for n in names]
    rows = [
        _measure(
            name,
            method,
            report,
            reference,
            split,
            removed,
            removed_true,
            remaining,
            retrain_seconds,
        )
        for name, method, report in measured
    ]
    return {
        "model": kind,
        "fraction": fraction,
        "seed": seed,
        "removed_rows": len(removed),
        "original_fit_seconds": round(original.fit_seconds, 3),
        "rows": rows,
    }


def _measure(
    name, method, report, reference, split, removed, removed_true, remaining, retrain_seconds
):
    row: dict[str, Any] = {
        "method": name,
        **auc_report(method, split.test, removed),
        **completeness_report(method, reference, removed, removed_true, split.test, remaining),
    }
    if report is not None:
        row["forget_seconds"] = report.seconds
        row["speedup"] = retrain_seconds / max(report.seconds, 1e-9)
        row["details"] = json.loads(json.dumps(report.details, default=str))
    if name == "sisa":
        row["fit_seconds"] = method.fit_seconds
    return row


COLUMNS = [
    ("method", "method", "{}"),
    ("auc", "AUC", "{:.4f}"),
    ("auc_or", "AUC OR", "{:.4f}"),
    ("auc_and", "AUC AND", "{:.4f}"),
    ("dist_removed", "|Δ| removed", "{:.4f}"),
    ("dist_test", "|Δ| test", "{:.4f}"),
    ("param_distance", "param dist", "{:.3f}"),
    ("auc_removed", "AUC removed (true labels)", "{:.4f}"),
    ("mia_removed", "MIA removed", "{:.3f}"),
    ("forget_seconds", "forget s", "{:.3f}"),
    ("speedup", "speed-up", "{:.1f}x"),
]


def markdown_table(results: dict[str, Any]) -> str:
    """One table per run (model, fraction, seed); the MIA column's reference is retrain's value."""
    out = []
    for run in results["runs"]:
        out.append(
            f"### {run['model']}, {run['fraction']:.0%} flipped ({run['removed_rows']:,} rows), "
            f"seed {run['seed']}\n"
        )
        cells = []
        for row in run["rows"]:
            update = row.get("details", {}).get("update", "")
            cells.append(
                [
                    fmt.format(row[key]) if row.get(key) is not None else "-"
                    for key, _, fmt in COLUMNS
                ]
                + [update if update != "applied" else ""]
            )
        out += [markdown_grid([title for _, title, _ in COLUMNS] + ["note"], cells), ""]
    return "\n".join(out)


class IFRUScalingConfig(BenchConfig):
    """What `recunlearn bench ifru-scaling` runs: IFRU and retraining as the dataset grows."""

    sizes: list[int] = Field(default_factory=lambda: [100_000, 1_000_000, 5_000_000])
    """Interactions of the synthetic logs (before the 60/20/20 split)."""
    removal: Literal["rows", "users"] = "rows"
    """What is removed: ``rows``, random training rows with flipped labels (IFRU's attack), or
    ``users``, every row of random users (a user's erasure request)."""
    removed: int = Field(1000, ge=1)
    """How many rows (or users) are removed, the same number at every size."""
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "lightgcn"})
    """The recommender."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Training settings of the original model and of retraining."""
    seed: Seed = 0
    """Seeds the generator, the flipped rows and training."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """Two small logs, MF, one epoch: seconds."""
        return {
            "sizes": [5_000, 10_000],
            "removed": 20,
            "model": {"kind": "mf", "dim": 16},
            "train": {"max_epochs": 1},
        }


def run_ifru_scaling(config: IFRUScalingConfig, log=print) -> dict[str, Any]:
    """For each size: fit once, then time IFRU's ``forget`` and retraining's on the same removal."""
    start = time.perf_counter()
    rows = []
    for size in config.sizes:
        split = prepare(
            DataSpec(
                dataset="synthetic",
                options={"n_interactions": size, "seed": config.seed},
                threshold=None,
                k_core=1,
            )
        )
        if config.removal == "rows":
            fraction = min(config.removed / len(split.train), 0.5)
            polluted, request = label_flip_attack(split.train, fraction, config.seed)
        else:
            polluted, request = (
                split.train,
                user_deletion(split.train, n_users=config.removed, seed=config.seed),
            )
        removed = polluted.take(request.rows(polluted))
        settings = {"model": config.model, "train": {**config.train, "seed": config.seed}}
        log(f"{size:,} interactions: fitting ...")
        reference = get_method("retrain")(settings).fit(polluted, split.valid)
        ifru = get_method("ifru").adopt(reference, settings)
        original_auc = auc_report(reference, split.test)["auc"]
        with PeakMemory() as ifru_memory:
            report = ifru.forget(request)
        with PeakMemory() as retrain_memory:
            retrained = reference.forget(request)
        details = report.details
        influence = sum(details.get(k, 0.0) for k in ("gradient_s", "hessian_setup_s", "solve_s"))
        row = {
            "interactions": size,
            "removal": config.removal,
            "train_rows": len(polluted),
            "removed_rows": len(removed),
            "users": polluted.n_users,
            "items": polluted.n_items,
            "seeds": details.get("seeds"),
            "reached": details.get("reached"),
            "kept_rows": details.get("kept_users", 0) + details.get("kept_items", 0),
            "hessian_rows": details.get("hessian_rows"),
            "spillover_rows": details.get("spillover_rows"),
            "ifru_seconds": report.seconds,
            "influence_seconds": influence,
            "guard_seconds": details.get("guard_s", 0.0),
            "bookkeeping_seconds": report.seconds - influence - details.get("guard_s", 0.0),
            "retrain_seconds": retrained.seconds,
            "speedup": retrained.seconds / max(report.seconds, 1e-9),
            "ifru_peak_mib": ifru_memory.mib,
            "retrain_peak_mib": retrain_memory.mib,
            "auc_original": original_auc,
            "auc_ifru": auc_report(ifru, split.test)["auc"],
            "auc_retrain": auc_report(reference, split.test)["auc"],
            "update": report.details.get("update"),
            "retrain_epochs": reference.fit_info["epochs"],
        }
        log(
            f"{size:,}: ifru {report.seconds:.3f} s, retrain {retrained.seconds:.1f} s ({speedup_text(row['speedup'])})"
        )
        rows.append(row)
    return finish({"rows": rows}, config, "ifru-scaling", start, scaling_table)


def scaling_table(results: dict[str, Any]) -> str:
    """One line per size. The neighbourhood columns are what IFRU's work follows: kept rows (updated),
    spillover rows (remaining rows whose score moves and that reach a kept row) and Hessian rows;
    IFRU's time is split into that work (gradients, Hessian, solve), the guard's two validation
    passes, and the rest (bookkeeping linear in the dataset: dropping the rows, hashing, the graph)."""
    header = [
        "interactions",
        "removed",
        "kept rows",
        "spillover rows",
        "Hessian rows",
        "IFRU s (influence / guard / rest)",
        "retrain s",
        "speed-up",
        "IFRU peak MiB",
        "retrain peak MiB",
        "AUC original / IFRU / retrain",
    ]
    cells = []
    for r in results["rows"]:
        mib = [
            f"{m:.0f}" if m is not None else "-"
            for m in (r["ifru_peak_mib"], r["retrain_peak_mib"])
        ]
        split = (
            f" ({r['influence_seconds']:.2f} / {r['guard_seconds']:.2f} / "
            f"{r['bookkeeping_seconds']:.2f})"
            if "influence_seconds" in r
            else ""
        )
        removed = f"{r['removed_rows']:,}" + (" (users)" if r.get("removal") == "users" else "")
        cells.append(
            [
                f"{r['interactions']:,}",
                removed,
                f"{r['kept_rows']:,}",
                f"{r.get('spillover_rows') or 0:,}",
                f"{r['hessian_rows'] or 0:,}",
                f"{r['ifru_seconds']:.3f}{split}",
                f"{r['retrain_seconds']:.1f}",
                speedup_text(r["speedup"]),
                *mib,
                f"{r['auc_original']:.4f} / {r['auc_ifru']:.4f} / {r['auc_retrain']:.4f}",
            ]
        )
    return markdown_grid(header, cells)
