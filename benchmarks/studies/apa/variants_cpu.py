"""CPU comparisons behind APA's AUC: llm-retrain, llm-sisa and APA variants on the same
samples, seeds and training settings. Measures test AUC only: for the shard methods also each adapter's
own AUC and epochs, and for APA (tau chosen on validation, the default) the D/ND aggregations, equal
weights, output weighting and fixed tau values (the paper's 1000 among them) on the same adapters, and
the validation AUC of APA's own (parameter-level) mix at each tau of the grid, neighbours held out as
`tau_holdout` says, beside the output mixture the selection ranks by. No forgetting or latency (run_apa_benchmark measures those), so that it
fits one CPU core.

Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/studies/apa/variants_cpu.py PRESET [variant ...]

presets (ML-100K movie samples, embedded MiniLM, K=4, lr 1e-3, batch 16):
  small   512 train / 150 valid / 400 test samples, max_length 128, 3 epochs (patience 3)
          -> benchmarks/results/apa/shared-init-cpu.json (and .md)
  paper   the paper's 1,024 / 500 / 1,000 samples, max_length 128, up to 8 epochs (patience 2)
          -> benchmarks/results/apa/paper-cpu.json (and .md)
  paper5  the paper's samples under the 5-epoch schedule of `recunlearn bench apa --max-epochs 5
          --eval-every 5 --patience 1` (max_length 512), so that llm-sisa and apa-pershard reproduce
          that benchmark's AUCs at the same --seed; no fixed-tau diagnostics
          -> benchmarks/results/apa/paper5-seedN-cpu.json (and .md)
--seed N (default 0) draws the samples and seeds the adapters as the benchmark's --seed does.
variants (default: all):
  retrain       llm-retrain, one adapter on every sample
  sisa          llm-sisa, K random shards, output averaging
  apa-pershard  APA with per-shard adapter initialisation (the default)
  apa-shared    APA with shared_init=True
  sisa-lr4x     llm-sisa with the adapters trained at lr x K (4e-3)
  apa-lr4x      APA (per-shard init) with the adapters trained at lr x K (4e-3)
  apa-random    APA on SISA's random shards (partition="random"): its adapters are llm-sisa's, so
                its rows tell the partition's part from the aggregation's
The lr x K variants test whether the shard adapters are undertrained: a shard of n/K samples gets K
times fewer optimiser steps per epoch than the retrained adapter at the same batch size. Each row is
merged into the preset's JSON (and .md) as soon as it finishes, so partial runs keep their results.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from recunlearn.bench.apa import ApaBenchConfig, classical_baseline, prepare_samples
from recunlearn.models.llm.lora import MixtureLoRALinear
from recunlearn.train.auc import roc_auc
from recunlearn.unlearn import get_method
from recunlearn.unlearn.combine import average_probabilities

RESULTS = Path("benchmarks/results/apa")
K = 4
PRESETS = {
    "small": {
        "out": RESULTS / "shared-init-cpu.json",
        "bench": ApaBenchConfig(data="ml-100k", n_train=512, n_valid=150, n_test=400, output=None),
        "common": {
            "backbone": {"max_length": 128},
            "device": "cpu",
            "train": {"lr": 1e-3, "batch_size": 16, "max_epochs": 3, "patience": 3},
        },
    },
    "paper": {
        "out": RESULTS / "paper-cpu.json",
        "bench": ApaBenchConfig(
            data="ml-100k", n_train=1024, n_valid=500, n_test=1000, output=None
        ),
        "common": {
            "backbone": {"max_length": 128},
            "device": "cpu",
            "train": {"lr": 1e-3, "batch_size": 16, "max_epochs": 8, "patience": 2},
        },
    },
    "paper5": {
        "out": RESULTS / "paper5-seed{seed}-cpu.json",
        "bench": ApaBenchConfig(n_train=1024, n_valid=500, n_test=1000, output=None),
        "common": {
            "device": "cpu",
            "train": {
                "lr": 1e-3,
                "batch_size": 16,
                "max_epochs": 5,
                "patience": 1,
                "eval_every": 5,
            },
        },
        "diagnostics": False,
    },
}
APA_OPTIONS = ("aggregation", "weighting", "tau", "tau_grid", "tau_holdout", "neighbours", "error")
"""What a loaded APA takes from the preset and the variant (settings that need no retraining)."""
LR_X_K = "lr x K"  # placeholder for the preset's lr times K, filled in by options()
VARIANTS = {
    "retrain": ("llm-retrain", {}),
    "sisa": ("llm-sisa", {"n_shards": K}),
    "apa-pershard": ("apa", {"n_shards": K, "shared_init": False}),
    "apa-shared": ("apa", {"n_shards": K, "shared_init": True}),
    "sisa-lr4x": ("llm-sisa", {"n_shards": K, "train": {"lr": LR_X_K}}),
    "apa-lr4x": ("apa", {"n_shards": K, "shared_init": False, "train": {"lr": LR_X_K}}),
    "apa-random": ("apa", {"n_shards": K, "partition": "random"}),
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def options(common: dict, extra: dict) -> tuple[dict, dict]:
    """The method's config (common settings, then the variant's, nested dicts merged) and the variant's
    own settings with the lr placeholder resolved."""
    extra = copy.deepcopy(extra)
    if extra.get("train", {}).get("lr") == LR_X_K:
        extra["train"]["lr"] = common["train"]["lr"] * extra["n_shards"]
    config = copy.deepcopy(common)
    for key, value in extra.items():
        if isinstance(value, dict):
            config[key] = {**config.get(key, {}), **value}
        else:
            config[key] = value
    return config, extra


def run(
    variant: str,
    common: dict,
    train,
    valid,
    test,
    save: Path | None = None,
    load: Path | None = None,
    diagnostics: bool = True,
    heads_only: bool = False,
) -> dict:
    name, extra = VARIANTS[variant]
    config, extra = options(common, extra)
    start = time.perf_counter()
    if (
        load is not None
    ):  # a method fitted (and saved) by an earlier run: evaluated with the current code
        method = get_method(name).load(load / variant)
        if hasattr(method, "set_options"):
            method.set_options(**{k: v for k, v in config.items() if k in APA_OPTIONS})
    else:
        method = get_method(name)(config)
        method.fit(train, valid)
    if save is not None:
        method.save(save / variant)
    if heads_only:  # every adapter's LoRA switched off: its head alone, on the frozen encoder
        for layer in method.scorer.modules():
            if isinstance(layer, MixtureLoRALinear):
                layer.B.zero_()
    fit_s = round(time.perf_counter() - start, 1) if load is None else "loaded"
    row = {
        "variant": variant,
        "method": name,
        "options": extra,
        "fit_s": fit_s,
        "epochs": [i.get("epochs") for i in method.adapter_info],
        "best_epoch": [i.get("best_epoch") for i in method.adapter_info],
        "best_valid_auc": [i.get("best_valid_auc") for i in method.adapter_info],
    }
    if name == "llm-retrain":
        row["auc"] = roc_auc(test.label, method.score(test))
        return row
    per = method.adapter_logits(test)
    row["adapter_auc"] = [round(roc_auc(test.label, lg), 4) for lg in per]
    row["mean_adapter_auc"] = round(float(np.mean(row["adapter_auc"])), 4)
    row["output_average_auc"] = roc_auc(test.label, average_probabilities(per))
    row["logit_average_auc"] = roc_auc(test.label, per.mean(0))
    if name == "llm-sisa":
        row["auc"] = row["output_average_auc"]
        return row
    variants = {}
    for aggregation in ("ND", "D"):
        method.set_options(aggregation=aggregation, weighting="attention")
        variants[f"APA({aggregation})"] = roc_auc(test.label, method.score(test))
    method.set_options(aggregation="ND", weighting="average")
    variants["average (ND)"] = roc_auc(test.label, method.score(test))
    method.set_options(aggregation="ND", weighting="attention")
    w = method.weights(test)  # n x K
    variants["attention, output-weighted (K passes)"] = roc_auc(
        test.label, (w.T * sigmoid(per)).sum(0)
    )
    variants["average, output-averaged (K passes)"] = row["output_average_auc"]
    row.update(
        tau=method.tau_, tau_selection=method.tau_selection
    )  # chosen on validation (held out as configured)
    row["mean_weight_max"] = round(float(w.max(1).mean()), 4)
    if diagnostics:
        row["validation_nd_auc"] = {
            f"{tau:g}": round(roc_auc(valid.label, method.validation_logits(tau)), 4)
            for tau in method.config.tau_grid
        }  # what the selection's output mixture stands for
        for tau in (
            10.0,
            30.0,
            100.0,
            300.0,
            1000.0,
        ):  # fixed taus: diagnostics on test (not used to pick tau)
            method.set_options(aggregation="ND", weighting="attention", tau=tau, tau_grid=None)
            variants[f"tau={tau:g} (ND)"] = roc_auc(test.label, method.score(test))
    row["variants"] = {k: round(v, 4) for k, v in variants.items()}
    row["auc"] = variants["APA(ND)"]
    return row


def markdown(doc: dict) -> str:
    lines = [
        "| variant | AUC | mean adapter AUC | adapter AUCs | epochs (best) | other | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in VARIANTS:
        r = doc["rows"].get(key)
        if not r:
            continue
        other = "; ".join(
            f"{k} {v:.4f}" for k, v in r.get("variants", {}).items() if k != "APA(ND)"
        )
        if "tau" in r:
            other = f"tau chosen on validation: {r['tau']:g}; {other}"
        epochs = ", ".join(f"{e} ({b})" for e, b in zip(r["epochs"], r["best_epoch"]))
        lines.append(
            f"| {key} | {r['auc']:.4f} | {r.get('mean_adapter_auc', '-')} | {r.get('adapter_auc', '-')} | "
            f"{epochs} | {other} | {r['fit_s']} |"
        )
    lines.append(
        f"| logistic regression (2 features; not an LLM) | {doc['classical_baseline_auc']:.4f} | | | | | |"
    )
    return "\n".join(lines) + "\n"


def output_path(preset: str, seed: int, heads_only: bool = False) -> Path:
    """Where a preset's results go: its file (with the seed), '-heads-only' added for that diagnostic."""
    template = str(PRESETS[preset]["out"])
    out = Path(template.format(seed=seed))
    if seed and "{seed}" not in template:
        out = out.with_name(f"{out.stem}-seed{seed}{out.suffix}")
    if heads_only:
        out = out.with_name(
            out.name.replace("-seed", "-heads-only-seed")
            if "-seed" in out.name
            else f"{out.stem}-heads-only{out.suffix}"
        )
    return out


def main(
    preset: str,
    variants: list[str],
    save: Path | None = None,
    load: Path | None = None,
    seed: int = 0,
    heads_only: bool = False,
) -> None:
    torch.set_num_threads(1)
    setting = PRESETS[preset]
    out, bench, common = (
        output_path(preset, seed, heads_only),
        setting["bench"],
        copy.deepcopy(setting["common"]),
    )
    if seed:
        bench = bench.model_copy(update={"sample_seed": seed})
        common["train"]["seed"] = seed
    train, valid, test = prepare_samples(bench)
    doc = json.loads(out.read_text()) if out.is_file() else {"rows": {}}
    doc.update(
        bench=bench.model_dump(mode="json"),
        common=common,
        classical_baseline_auc=round(classical_baseline(train, test), 4),
        samples={
            "train": len(train),
            "valid": len(valid),
            "test": len(test),
            "test_users": len(set(test.user.tolist())),
            "positive_rate_test": round(float(test.label.mean()), 4),
        },
    )
    for variant in variants:
        row = run(
            variant,
            common,
            train,
            valid,
            test,
            save,
            load,
            setting.get("diagnostics", True),
            heads_only,
        )
        print(json.dumps(row), flush=True)
        doc["rows"][variant] = row
        out.write_text(json.dumps(doc, indent=1))
        out.with_suffix(".md").write_text(markdown(doc))


SUMMARY = (
    ("mean adapter AUC", "mean_adapter_auc"),
    ("APA(ND), one pass", "APA(ND)"),
    ("APA(D), one pass", "APA(D)"),
    ("equal weights (ND), one pass", "average (ND)"),
    ("attention, output-weighted (K passes)", "attention, output-weighted (K passes)"),
    ("equal weights, output-averaged (K passes)", "average, output-averaged (K passes)"),
    ("equal weights, logit-averaged (K passes)", "logit_average_auc"),
)


def summary(preset: str, heads_only: bool = False) -> str:
    """Per seed and on average, each APA variant's measures from the preset's per-seed files
    (paper5: the partition x aggregation comparison), as a markdown table written beside them."""
    some_seed = output_path(preset, 1, heads_only)
    pattern = some_seed.with_name(some_seed.name.replace("seed1", "seed*"))
    docs = {
        int(f.stem.split("-seed")[1].split("-")[0]): json.loads(f.read_text())
        for f in sorted(pattern.parent.glob(pattern.name))
    }
    seeds = sorted(docs)
    variants = [
        v for v in VARIANTS if VARIANTS[v][0] == "apa" and all(v in docs[s]["rows"] for s in seeds)
    ]
    lines = [
        "| variant | measure | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|---|" + "---|" * (len(seeds) + 1),
    ]
    for variant in variants:
        for label, key in SUMMARY:
            values = [
                docs[s]["rows"][variant].get(key, docs[s]["rows"][variant]["variants"].get(key))
                for s in seeds
            ]
            known = [v for v in values if v is not None]  # runs before a measure was added lack it
            lines.append(
                f"| {variant} | {label} | "
                + " | ".join("-" if v is None else f"{v:.4f}" for v in values)
                + (f" | {np.mean(known):.4f} |" if len(known) == len(values) else " | - |")
            )
    table = "\n".join(lines) + "\n"
    pattern.with_name(f"{preset}{'-heads-only' if heads_only else ''}-summary-cpu.md").write_text(
        table
    )
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset", choices=list(PRESETS))
    parser.add_argument(
        "variants",
        nargs="*",
        metavar="variant",
        help=f"any of {', '.join(VARIANTS)} (default: all)",
    )
    parser.add_argument(
        "--save",
        type=Path,
        help="also save each fitted method under this folder (for later analysis)",
    )
    parser.add_argument(
        "--load", type=Path, help="evaluate the methods --save wrote there instead of fitting them"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sample draws and the adapters (as the benchmark's --seed)",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="only tabulate the APA variants of the preset's files, per seed and on average",
    )
    parser.add_argument(
        "--heads-only",
        action="store_true",
        help="with --load: switch every adapter's LoRA off (its head alone on the frozen encoder); "
        "results go to the preset's file with '-heads-only' added",
    )
    args = parser.parse_intermixed_args()  # options may come after the preset and variants
    if args.summary:
        print(summary(args.preset, args.heads_only), end="")
        raise SystemExit
    if args.heads_only and args.load is None:
        parser.error("--heads-only evaluates saved methods: give --load")
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if (
        unknown
    ):  # checked here: argparse rejects an empty list when nargs="*" has choices (Python < 3.12)
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    main(
        args.preset,
        args.variants or list(VARIANTS),
        args.save,
        args.load,
        args.seed,
        args.heads_only,
    )
