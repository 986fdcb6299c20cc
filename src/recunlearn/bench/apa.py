"""The APA protocol: the LLM recommender's exact unlearning methods side by side on one backbone.

Samples are built TALLRec's way (movie windows on MovieLens, or a TALLRec JSON file), then the paper's
setting is drawn: 1,024 training, 500 validation and 1,000 test samples, K = 4. Each method is fitted
once (wall time of ``fit``); its test AUC is measured (for shard methods also each adapter's own AUC
before aggregation); APA is scored with both aggregations (D, ND) and the ablation weightings (average,
major, semantic) on the same adapters; inference latency is the wall time of ``score`` (tokenisation
included) for one sample and for a batch of 64; finally each method forgets the same one-sample request
(wall time of the whole ``forget``). For retraining, forgetting is a ``fit`` on the remaining samples.
A logistic regression on two simple features is printed beside them, so the table is read as a
comparison of unlearning methods on one backbone, not as a claim about recommendation quality.

``recunlearn bench apa`` runs this; :func:`run_apa_benchmark` is the Python entry point, and
:func:`run_demo` the small preset that ``recunlearn demo`` prints.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from sklearn.linear_model import LogisticRegression

from recunlearn.bench._protocol import BenchConfig, check_methods, finish, method_settings
from recunlearn.bench._results import markdown_grid
from recunlearn.bench.experiment import MethodNames
from recunlearn.data import DeletionRequest, binarize, load_dataset
from recunlearn.data.samples import ITEM_SEPARATOR, SampleTable
from recunlearn.data.tallrec import build_samples, read_tallrec_json, split_samples, subsample
from recunlearn.errors import ConfigError
from recunlearn.models.llm.backbones import create_tiny_model
from recunlearn.seeds import Seed
from recunlearn.train.auc import roc_auc
from recunlearn.unlearn import get_method
from recunlearn.unlearn._llm_common import LLMUnlearner
from recunlearn.unlearn.combine import average_probabilities

METHODS = ("llm-retrain", "apa", "llm-sisa", "llm-receraser", "llm-grapheraser")
TALLREC_THRESHOLDS = {"movie": 3.0, "book": 5.0}
"""Liked = rating above this, by prompt style (TALLRec's MovieLens and BookCrossing protocols)."""
AVERAGED = ("llm-sisa", "llm-receraser", "llm-grapheraser")


class ApaBenchConfig(BenchConfig):
    """What `recunlearn bench apa` runs (defaults: the paper's setting on ML-100K with the embedded MiniLM)."""

    data: str = "ml-100k"
    """An interaction dataset (name or path; prompts are built from it), a TALLRec JSON file (split
    80/10/10 in order), or a folder with TALLRec's train.json / valid.json / test.json."""
    style: Literal["movie", "book"] = "movie"
    """Prompt style when building from interactions: movie windows (time order) or book samples (by user)."""
    threshold: float | None = None
    """Label = rating > threshold when building from interactions; None = TALLRec's for the style
    (3 for movies, 5 for books)."""
    history: int = Field(10, ge=1)
    """Items in a prompt's history (TALLRec: 10)."""
    max_samples: int = Field(10_000, ge=10)
    """Latest windows kept before the split (TALLRec: 10,000)."""
    n_train: int = Field(1024, ge=4)
    """Training samples drawn from the training split (paper: 1,024)."""
    n_valid: int = Field(500, ge=2)
    """Validation samples (paper: 500)."""
    n_test: int = Field(1000, ge=2)
    """Test samples (paper: 1,000)."""
    sample_seed: Seed = 0
    """Seed of the draws and of the sample forgotten."""
    methods: MethodNames = Field(default_factory=lambda: list(METHODS))
    """Methods to compare; 'llm-retrain' always runs (the reference)."""
    n_shards: int = Field(4, ge=1)
    """K for the shard methods (paper: 4)."""
    backbone: dict[str, Any] = Field(default_factory=dict)
    """Backbone settings (see BackboneConfig; default the embedded MiniLM)."""
    tiny_backbone: Literal["causal", "encoder"] | None = None
    """Build a tiny random model over the prompts instead (smoke tests: no weights, seconds)."""
    lora: dict[str, Any] = Field(default_factory=dict)
    """LoRA settings shared by every method."""
    train: dict[str, Any] = Field(
        default_factory=lambda: {"lr": 1e-3, "batch_size": 16, "max_epochs": 8, "patience": 2}
    )
    """Adapter training shared by every method and shard (default: MEASURED.md's MiniLM setting)."""
    apa: dict[str, Any] = Field(default_factory=dict)
    """APA's own settings (tau, neighbours, error); it is scored with both aggregations and every weighting."""
    device: str | None = None
    """'cpu', 'cuda'; None = automatic."""
    forget: bool = True
    """Measure forgetting one sample (for retraining a whole second fit); off when only the AUCs are wanted."""
    latency_samples: int = Field(8, ge=1)
    """Single-sample latency is the mean over this many one-sample calls."""
    latency_batch: int = Field(64, ge=1)
    """Batch size of the batch latency."""

    @classmethod
    def demo(cls, **overrides: Any) -> ApaBenchConfig:
        """The part of ``recunlearn demo`` that must fit its 5-minute budget on 2 CPU cores: APA against
        its retraining reference on 96/48/128 prompts with 5-item histories, one epoch, K=4 (AUC at this
        size is noise; the paper-scale benchmark is ``recunlearn bench apa``)."""
        values: dict[str, Any] = {
            "data": "ml-100k",
            "history": 5,
            "n_train": 96,
            "n_valid": 48,
            "n_test": 128,
            "methods": ["llm-retrain", "apa"],
            "backbone": {"max_length": 96},
            "train": {"lr": 2e-3, "batch_size": 16, "max_epochs": 1, "patience": 1},
            "latency_samples": 4,
        }
        return cls.model_validate({**values, **overrides})

    @property
    def label_threshold(self) -> float:
        """The rating above which a sample is labelled liked."""
        return self.threshold if self.threshold is not None else TALLREC_THRESHOLDS[self.style]

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """Seconds: a synthetic log, a tiny random causal LM, every method."""
        return {**tiny_run_values(), "history": 4, "latency_samples": 2, "latency_batch": 8}


def tiny_run_values() -> dict[str, Any]:
    """What makes an APA run seconds-long, in the quick preset and in `bench quarantine`'s: a tiny
    random causal LM on a few prompts from a small synthetic log, two short epochs."""
    return {
        "data": "synthetic",
        "max_samples": 600,
        "n_train": 64,
        "n_valid": 24,
        "n_test": 32,
        "tiny_backbone": "causal",
        "train": {"lr": 1e-2, "batch_size": 16, "max_epochs": 2, "patience": 1},
    }


# data -------------------------------------------------------------------------------------------------------
def prepare_samples(config: ApaBenchConfig) -> tuple[SampleTable, SampleTable, SampleTable]:
    """Training, validation and test samples of the configured size."""
    path = Path(config.data)
    if path.is_dir() and (path / "train.json").is_file():
        train, valid, test = (
            read_tallrec_json(path / f"{n}.json") for n in ("train", "valid", "test")
        )
    elif path.suffix == ".json":
        train, valid, test = split_samples(read_tallrec_json(path), by="time")
    else:
        data = load_dataset(config.data)
        data = binarize(data, config.label_threshold)
        samples = build_samples(
            data, config.style, config.history, config.max_samples, config.sample_seed
        )
        train, valid, test = split_samples(
            samples, by="time" if config.style == "movie" else "user", seed=config.sample_seed
        )
    seed = config.sample_seed
    return (
        subsample(train, config.n_train, seed),
        subsample(valid, config.n_valid, seed + 1),
        subsample(test, config.n_test, seed + 2),
    )


_QUOTED = re.compile(r'"[^"]*"')


def simple_features(samples: SampleTable, item_rate: dict[str, float], prior: float) -> np.ndarray:
    """Fraction of liked items in the history, and the target's positive rate among training targets."""
    liked = np.array(
        [len(_QUOTED.findall(t.split("\n")[0])) for t in samples.input.tolist()], np.float64
    )
    disliked = np.array(
        [
            len(_QUOTED.findall(t.split("\n")[1])) if t.count("\n") >= 2 else 0
            for t in samples.input.tolist()
        ],
        np.float64,
    )
    targets = [row.split(ITEM_SEPARATOR)[0] if row else "" for row in samples.items.tolist()]
    target_rate = np.array([item_rate.get(t, prior) for t in targets])
    return np.column_stack([liked / np.maximum(liked + disliked, 1), target_rate])


def classical_baseline(train: SampleTable, test: SampleTable) -> float:
    """Test AUC of a logistic regression on :func:`simple_features` (a yardstick for the LLM figures)."""
    prior = float(train.label.mean())
    counts: dict[str, list[float]] = {}
    for row, label in zip(train.items.tolist(), train.label.tolist()):
        if row:
            counts.setdefault(row.split(ITEM_SEPARATOR)[0], []).append(label)
    item_rate = {i: (sum(v) + prior * 2) / (len(v) + 2) for i, v in counts.items()}  # smoothed
    model = LogisticRegression().fit(simple_features(train, item_rate, prior), train.label)
    return roc_auc(test.label, model.predict_proba(simple_features(test, item_rate, prior))[:, 1])


# the protocol -----------------------------------------------------------------------------------------------
def _latency(method: LLMUnlearner, test: SampleTable, config: ApaBenchConfig) -> dict[str, float]:
    method.score(test.take([0]))  # warm-up: first-call costs (allocations, kernels) are not latency
    singles = []
    for row in range(min(config.latency_samples, len(test))):
        one = test.take([row])
        start = time.perf_counter()
        method.score(one)
        singles.append(time.perf_counter() - start)
    batch = test.take(np.arange(min(config.latency_batch, len(test))))
    start = time.perf_counter()
    method.score(batch)
    return {
        "latency_sample_s": round(float(np.mean(singles)), 5),
        "latency_batch_s": round(time.perf_counter() - start, 5),
    }


def run_apa_benchmark(config: ApaBenchConfig, log=print) -> dict[str, Any]:
    """Run the protocol; returns (and writes, if ``config.output``) a results document."""
    start = time.perf_counter()
    names = ["llm-retrain"] + [m for m in config.methods if m != "llm-retrain"]
    _check_methods(config, names)
    train, valid, test = prepare_samples(config)
    log(
        f"samples: train {len(train)}, valid {len(valid)}, test {len(test)}; positive rate "
        f"{train.label.mean():.3f} / {valid.label.mean():.3f} / {test.label.mean():.3f}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        backbone = dict(config.backbone)
        if config.tiny_backbone:
            backbone["name"] = str(
                create_tiny_model(
                    Path(scratch) / "tiny",
                    train.prompts() + valid.prompts() + test.prompts(),
                    kind=config.tiny_backbone,
                )
            )
        rows = [_run_method(name, config, backbone, train, valid, test, log) for name in names]
    retrain = rows[0]
    for row in rows:
        if config.forget:
            row["unlearn_speedup"] = round(retrain["unlearn_s"] / max(row["unlearn_s"], 1e-9), 2)
        row["latency_vs_retrain"] = round(
            row["latency_batch_s"] / max(retrain["latency_batch_s"], 1e-9), 3
        )
    document = {
        "samples": {
            "train": len(train),
            "valid": len(valid),
            "test": len(test),
            "positive_rate_test": round(float(test.label.mean()), 4),
        },
        "classical_baseline_auc": round(classical_baseline(train, test), 4),
        "rows": rows,
    }
    return finish(document, config, "apa", start, markdown_table)


APA_OPTIONS = ("aggregation", "weighting", "tau", "tau_grid", "tau_holdout", "neighbours", "error")
"""APA's settings that ``APA.set_options`` changes: after the ablations they are set back to the configured ones."""


def _check_methods(config: ApaBenchConfig, names: list[str]) -> None:
    """Refuse, before any sample is built or adapter trained, an unknown method and settings a method
    refuses, including APA's: ``tau`` alone is refused as ``APA.set_options`` refuses it (tau is then
    chosen from ``tau_grid``, so the given value would be silently replaced)."""
    check_methods(
        "apa",
        names,
        METHODS,
        lambda name: [_method_options(name, config, config.backbone)],
        runs_on="the language-model recommender's exact methods",
    )
    if "apa" in names and "tau" in config.apa and "tau_grid" not in config.apa:
        settings = get_method("apa").Config.model_validate(
            _method_options("apa", config, config.backbone)
        )
        if settings.tau_grid is not None:
            raise ConfigError(
                "apa: tau is chosen from tau_grid; pass tau_grid = None with tau to fix it"
            )


def _method_options(name: str, config: ApaBenchConfig, backbone: dict[str, Any]) -> dict[str, Any]:
    options = method_settings(
        name,
        {"apa": config.apa},
        backbone=backbone,
        lora=config.lora,
        train=config.train,
        n_shards=config.n_shards,
    )
    options["device"] = config.device
    return options


def _run_method(
    name: str,
    config: ApaBenchConfig,
    backbone: dict[str, Any],
    train: SampleTable,
    valid: SampleTable,
    test: SampleTable,
    log,
) -> dict[str, Any]:
    method = get_method(name)(_method_options(name, config, backbone))
    log(f"{name}: fitting ...")
    method.fit(train, valid)
    row: dict[str, Any] = {
        "method": name,
        "fit_s": round(method.fit_seconds, 3),
        "partition": method.partition_info,
        "epochs": [info.get("epochs") for info in method.adapter_info],
    }
    if name == "llm-retrain":
        row["auc"] = roc_auc(test.label, method.score(test))
        row.update(_latency(method, test, config))
    else:
        per_adapter = method.adapter_logits(test)
        row["adapter_auc"] = [round(roc_auc(test.label, lg), 4) for lg in per_adapter]
        row["mean_adapter_auc"] = round(float(np.nanmean(row["adapter_auc"])), 4)
        if name in AVERAGED:
            row["auc"] = roc_auc(test.label, average_probabilities(per_adapter))
            row.update(_latency(method, test, config))
        else:
            configured = method.config  # set_options replaces it: these are the options asked for
            row["variants"] = {}
            for aggregation in ("ND", "D"):
                method.set_options(aggregation=aggregation, weighting="attention")
                row["variants"][f"APA({aggregation})"] = {
                    "auc": roc_auc(test.label, method.score(test)),
                    **_latency(method, test, config),
                }
            for weighting in ("average", "major", "semantic"):
                method.set_options(aggregation="ND", weighting=weighting)
                row["variants"][f"{weighting} (ND)"] = {
                    "auc": roc_auc(test.label, method.score(test))
                }
            method.set_options(
                **{key: getattr(configured, key) for key in APA_OPTIONS}
            )  # undo the ablations
            row.update(tau=method.tau_, tau_selection=method.tau_selection)
            if configured.weighting == "attention":  # scored above under these very options
                main = row["variants"][f"APA({configured.aggregation})"]
            else:  # an ablation weighting as the configured one: score it as set
                main = {
                    "auc": roc_auc(test.label, method.score(test)),
                    **_latency(method, test, config),
                }
            row.update(
                auc=main["auc"],
                latency_sample_s=main["latency_sample_s"],
                latency_batch_s=main["latency_batch_s"],
            )
    forgot = ""
    if config.forget:
        request = DeletionRequest(
            samples=[train.ids[np.random.default_rng(config.sample_seed).integers(len(train))]]
        )
        report = method.forget(request)
        row.update(
            unlearn_s=round(report.seconds, 3),
            retrained_adapters=report.details["retrained_adapters"],
        )
        forgot = f", forget one sample {report.seconds:.1f} s"
    log(
        f"{name}: AUC {row['auc']:.4f}, fit {row['fit_s']:.1f} s{forgot}, "
        f"batch of {min(config.latency_batch, len(test))} scored in {row['latency_batch_s']:.3f} s"
    )
    return row


# tables -----------------------------------------------------------------------------------------------------
def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: one line per method (APA: one per aggregation and ablation)."""
    batch = min(results["config"]["latency_batch"], results["samples"]["test"])  # what was scored
    header = [
        "method",
        "AUC",
        "mean adapter AUC",
        "fit s",
        "forget 1 sample s",
        "speed-up",
        "1 sample s",
        f"batch of {batch} s",
    ]
    cells = []
    for row in results["rows"]:
        common = [
            f"{row['fit_s']:.1f}",
            *(
                [f"{row['unlearn_s']:.1f}", f"{row['unlearn_speedup']:.2f}x"]
                if "unlearn_s" in row
                else ["-", "-"]
            ),
        ]
        adapter = f"{row['mean_adapter_auc']:.4f}" if "mean_adapter_auc" in row else "-"
        if "variants" in row:
            for label, v in row["variants"].items():
                timing = (
                    [f"{v['latency_sample_s']:.4f}", f"{v['latency_batch_s']:.3f}"]
                    if "latency_batch_s" in v
                    else ["-", "-"]
                )
                cells.append(
                    [
                        label if label.startswith("APA") else f"APA ablation: {label}",
                        f"{v['auc']:.4f}",
                        adapter,
                        *common,
                        *timing,
                    ]
                )
        else:
            cells.append(
                [
                    row["method"],
                    f"{row['auc']:.4f}",
                    adapter,
                    *common,
                    f"{row['latency_sample_s']:.4f}",
                    f"{row['latency_batch_s']:.3f}",
                ]
            )
    cells.append(
        [
            "logistic regression (2 features; not an LLM)",
            f"{results['classical_baseline_auc']:.4f}",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
        ]
    )
    return header, cells


def markdown_table(results: dict[str, Any]) -> str:
    """The comparison table (see :func:`table_rows`)."""
    return markdown_grid(*table_rows(results))


def run_demo(out: Path, console=None) -> dict[str, Any]:
    """The language-model part of ``recunlearn demo``: the demo preset, printed as a table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    config = ApaBenchConfig.demo(output=str(Path(out) / "apa.json"))
    results = run_apa_benchmark(config, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    header, cells = table_rows(results)
    table = Table(
        title=f"APA on the embedded MiniLM ({results['samples']['train']} training prompts, "
        f"K={config.n_shards}): forgetting one sample"
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in cells:
        table.add_row(*row)
    console.print(table)
    console.print(
        "speed-up = retraining's forget time / the method's. The demo preset is tiny (AUC is noisy); "
        "see docs/apa.md for the paper-scale benchmark."
    )
    return results
