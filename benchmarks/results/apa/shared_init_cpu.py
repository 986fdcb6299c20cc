"""CPU comparison behind issue #5 (APA's AUC): llm-retrain, llm-sisa and APA with per-shard or shared
adapter initialisation, on the same samples, seeds and training settings. AUC only (no forgetting or
latency, which run_apa_benchmark measures), so that it fits one CPU core.

Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/results/apa/shared_init_cpu.py [variant ...]
variants: retrain, sisa, apa-pershard, apa-shared (default: all). Results are merged into
benchmarks/results/apa/shared-init-cpu.json (and .md).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recunlearn.bench.apa import ApaBenchConfig, classical_baseline, prepare_samples
from recunlearn.evaluate.metrics import auc
from recunlearn.unlearn import get_method
from recunlearn.unlearn._llm_common import average_probabilities

OUT = Path("benchmarks/results/apa/shared-init-cpu.json")
BENCH = ApaBenchConfig(data="ml-100k", n_train=512, n_valid=150, n_test=400, output=None)
COMMON = {"backbone": {"max_length": 128}, "device": "cpu",
          "train": {"lr": 1e-3, "batch_size": 16, "max_epochs": 3, "patience": 3}}
VARIANTS = {
    "retrain": ("llm-retrain", {}),
    "sisa": ("llm-sisa", {"n_shards": 4}),
    "apa-pershard": ("apa", {"n_shards": 4, "shared_init": False}),
    "apa-shared": ("apa", {"n_shards": 4, "shared_init": True}),
}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def run(variant: str, train, valid, test) -> dict:
    name, extra = VARIANTS[variant]
    method = get_method(name)({**COMMON, **extra})
    start = time.perf_counter()
    method.fit(train, valid)
    row = {"variant": variant, "method": name, "options": extra, "fit_s": round(time.perf_counter() - start, 1),
           "epochs": [i.get("epochs") for i in method.adapter_info],
           "best_epoch": [i.get("best_epoch") for i in method.adapter_info],
           "best_valid_auc": [i.get("best_valid_auc") for i in method.adapter_info]}
    if name == "llm-retrain":
        row["auc"] = auc(test.label, method.score(test))
        return row
    per = method.adapter_logits(test)
    row["adapter_auc"] = [round(auc(test.label, lg), 4) for lg in per]
    row["mean_adapter_auc"] = round(float(np.mean(row["adapter_auc"])), 4)
    row["output_average_auc"] = auc(test.label, average_probabilities(per))
    if name == "llm-sisa":
        row["auc"] = row["output_average_auc"]
        return row
    variants = {}
    for aggregation in ("ND", "D"):
        method.set_options(aggregation=aggregation, weighting="attention")
        variants[f"APA({aggregation})"] = auc(test.label, method.score(test))
    method.set_options(aggregation="ND", weighting="average")
    variants["average (ND)"] = auc(test.label, method.score(test))
    method.set_options(aggregation="ND", weighting="attention")
    w = method.weights(test)  # n x K
    variants["attention, output-weighted (K passes)"] = auc(test.label, (w.T * sigmoid(per)).sum(0))
    variants["average, output-averaged (K passes)"] = row["output_average_auc"]
    for tau in (10.0, 30.0, 100.0, 300.0):  # diagnostics on test (not used to pick a default)
        method.set_options(aggregation="ND", weighting="attention", tau=tau)
        variants[f"tau={tau:g} (ND)"] = auc(test.label, method.score(test))
    method.set_options(aggregation="ND", weighting="attention", tau=1000.0)
    row["variants"] = {k: round(v, 4) for k, v in variants.items()}
    row["auc"] = variants["APA(ND)"]
    row["mean_weight_max"] = round(float(w.max(1).mean()), 4)
    return row


def markdown(doc: dict) -> str:
    lines = ["| variant | AUC | mean adapter AUC | adapter AUCs | other | fit s |", "|---|---|---|---|---|---|"]
    for key in VARIANTS:
        r = doc["rows"].get(key)
        if not r:
            continue
        other = "; ".join(f"{k} {v:.4f}" for k, v in r.get("variants", {}).items() if k != "APA(ND)")
        lines.append(f"| {key} | {r['auc']:.4f} | {r.get('mean_adapter_auc', '-')} | {r.get('adapter_auc', '-')} | "
                     f"{other} | {r['fit_s']} |")
    lines.append(f"| logistic regression (2 features; not an LLM) | {doc['classical_baseline_auc']:.4f} | | | | |")
    return "\n".join(lines) + "\n"


def main(variants: list[str]) -> None:
    torch.set_num_threads(1)
    train, valid, test = prepare_samples(BENCH)
    doc = json.loads(OUT.read_text()) if OUT.is_file() else {"rows": {}}
    doc.update(bench=BENCH.model_dump(mode="json"), common=COMMON, classical_baseline_auc=round(classical_baseline(train, test), 4),
               samples={"train": len(train), "valid": len(valid), "test": len(test),
                        "test_users": len(set(test.user.tolist())), "positive_rate_test": round(float(test.label.mean()), 4)})
    for variant in variants:
        row = run(variant, train, valid, test)
        print(json.dumps(row), flush=True)
        doc["rows"][variant] = row
        OUT.write_text(json.dumps(doc, indent=1))
        OUT.with_suffix(".md").write_text(markdown(doc))


if __name__ == "__main__":
    main(sys.argv[1:] or list(VARIANTS))
