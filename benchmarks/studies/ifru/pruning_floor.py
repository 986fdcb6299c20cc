"""IFRU's importance floor (`IFRUConfig.min_importance`) at scale: on one original LightGCN
(the label-flip protocol of `recunlearn bench ifru-scaling`, 1,000 flipped rows, full early stopping;
or with `--ml100k` that of `recunlearn bench ifru` on ML-100K, 2% flipped), IFRU at each floor (after
one untimed warm-up call), then retraining: kept rows, the whole `forget` call's time, test AUC and
the mean absolute score distance to the retrained model on the test set.

1,000 random rows reach every node of the synthetic logs; the reference script's quantile (top 60%
of the reached nodes) then keeps most of them, and the floor is what bounds that. This measures what a
higher floor costs in quality and saves in time.

Run from the repository root:
    OMP_NUM_THREADS=1 RECUNLEARN_DEVICE=cpu .venv/bin/python benchmarks/studies/ifru/pruning_floor.py \
        [--size 1000000 | --ml100k] [--seed 0] [--floors 0.001 0.003 0.01] [--out benchmarks/studies/ifru/pruning-floor-cpu.json]
"""

from __future__ import annotations

import argparse

import torch

from recunlearn.bench._results import markdown_grid, write_document
from recunlearn.bench.experiment import DataSpec, environment, prepare
from recunlearn.data import label_flip_attack
from recunlearn.evaluate.completeness import score_distance
from recunlearn.evaluate.metrics import auc_report
from recunlearn.train.runtime import retain_freed_memory
from recunlearn.unlearn import get_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", type=int, default=1_000_000, help="interactions of the synthetic log"
    )
    parser.add_argument(
        "--ml100k", action="store_true", help="ML-100K under IFRU's protocol (2%% flipped) instead"
    )
    parser.add_argument("--floors", type=float, nargs="+", default=[0.001, 0.003, 0.01])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/studies/ifru/pruning-floor-cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    retain_freed_memory()  # as the CLI does
    if args.ml100k:
        split = prepare(DataSpec(dataset="ml-100k-shared"))
        polluted, request = label_flip_attack(split.train, 0.02, args.seed)
    else:
        split = prepare(
            DataSpec(
                dataset="synthetic",
                options={"n_interactions": args.size, "seed": args.seed},
                threshold=None,
                k_core=1,
            )
        )
        polluted, request = label_flip_attack(
            split.train, min(1000 / len(split.train), 0.5), args.seed
        )
    settings = {"model": {"kind": "lightgcn"}, "train": {"seed": args.seed}}
    reference = get_method("retrain")(settings).fit(polluted, split.valid)
    original_auc = auc_report(reference, split.test)["auc"]
    get_method("ifru").adopt(reference, settings).forget(
        request
    )  # warm-up, not counted: no floor pays first calls
    runs = []
    for floor in args.floors:
        ifru = get_method("ifru").adopt(reference, {**settings, "min_importance": floor})
        report = ifru.forget(request)
        runs.append((floor, ifru, report))
    retrained = reference.forget(request)
    rows = []
    for floor, ifru, report in runs:
        rows.append(
            {
                "min_importance": floor,
                "kept_rows": report.details["kept_users"] + report.details["kept_items"],
                "seeds": report.details["seeds"],
                "reached": report.details["reached"],
                "forget_seconds": report.seconds,
                "speedup": retrained.seconds / report.seconds,
                "update": report.details["update"],
                "auc": auc_report(ifru, split.test)["auc"],
                "test_score_distance": score_distance(ifru, reference, split.test),
            }
        )
    result = {
        "data": "ml-100k" if args.ml100k else f"synthetic {args.size:,}",
        "seed": args.seed,
        "auc_original": original_auc,
        "auc_retrain": auc_report(reference, split.test)["auc"],
        "retrain_seconds": retrained.seconds,
        "rows": rows,
    }
    cells = [
        [
            f"{r['min_importance']:g}",
            f"{r['kept_rows']:,} of {r['reached']:,} ({r['seeds']:,} seeds)",
            f"{r['forget_seconds']:.3f}",
            f"{r['speedup']:.0f}x",
            f"{r['auc']:.4f}",
            f"{r['test_score_distance']:.4f}",
            r["update"].split(":")[0],
        ]
        for r in rows
    ]
    table = markdown_grid(
        [
            "min_importance",
            "kept rows",
            "forget s",
            "speed-up",
            "test AUC",
            "|Δ| test to retrain",
            "update",
        ],
        cells,
    )
    table += (
        f"\n\n{result['data']}, seed {args.seed}; test AUC original {original_auc:.4f}, retrain "
        f"{result['auc_retrain']:.4f}; retraining {retrained.seconds:.1f} s"
    )
    write_document(
        {"result": result, "environment": environment(), "command": vars(args)}, args.out, table
    )
    print(table)


if __name__ == "__main__":
    main()
