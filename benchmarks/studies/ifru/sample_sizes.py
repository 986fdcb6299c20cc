"""IFRU's Hessian sample sizes on ML-100K: for each model and seed, one original model and
one retraining (the label-flip protocol of `recunlearn bench ifru`, 2% flipped), then IFRU at each
(rows per node, neighbours per node) setting, three `forget` calls each from the same original model:
median wall time and test AUC (overall / OR / AND), and how far the update is from the one the exact
Hessian gives (every row and neighbour; both with the guard off so that both steps are applied):
|step - exact step| / |exact step|. Evidence behind the defaults of
`InfluenceConfig.hessian_rows_per_node` and `hessian_neighbours_per_node`.

Run from the repository root:
    OMP_NUM_THREADS=1 RECUNLEARN_DEVICE=cpu .venv/bin/python benchmarks/studies/ifru/sample_sizes.py \
        [--seeds 0 1 2] [--sizes 16x16 8x8 4x4] [--out benchmarks/results/ifru/sample_sizes_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from recunlearn.bench._results import markdown_grid, write_document
from recunlearn.bench.experiment import DataSpec, environment, prepare
from recunlearn.data import label_flip_attack
from recunlearn.evaluate.metrics import auc_report
from recunlearn.train.runtime import retain_freed_memory
from recunlearn.unlearn import get_method


def update(
    method, request, settings: dict, rows_per_node: int | None, neighbours: int | None
) -> torch.Tensor:
    """The change of every embedding row that a guard-free IFRU ``forget`` makes on a copy of ``method``."""
    copy = get_method("ifru").adopt(
        method,
        {
            **settings,
            "hessian_rows_per_node": rows_per_node,
            "hessian_neighbours_per_node": neighbours,
            "guard": False,
        },
    )
    before = torch.cat(
        [copy.model.user_emb.weight.detach(), copy.model.item_emb.weight.detach()]
    ).clone()
    copy.forget(request)
    return (
        torch.cat([copy.model.user_emb.weight.detach(), copy.model.item_emb.weight.detach()])
        - before
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["mf", "lightgcn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--sizes", nargs="+", default=["16x16", "8x8", "4x4"], help="ROWSxNEIGHBOURS per node"
    )
    parser.add_argument("--out", default="benchmarks/results/ifru/sample_sizes_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    retain_freed_memory()  # as the CLI does
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes]
    split = prepare(DataSpec(dataset="ml-100k-shared"))
    rows = []
    for kind in args.models:
        for seed in args.seeds:
            polluted, request = label_flip_attack(split.train, 0.02, seed)
            removed = polluted.take(request.rows(polluted))
            settings = {"model": {"kind": kind}, "train": {"seed": seed}}
            reference = get_method("retrain")(settings).fit(polluted, split.valid)
            original = auc_report(reference, split.test, removed)
            copies = {
                size: [
                    get_method("ifru").adopt(
                        reference,
                        {
                            **settings,
                            "hessian_rows_per_node": size[0],
                            "hessian_neighbours_per_node": size[1],
                        },
                    )
                    for _ in range(3)
                ]
                for size in sizes
            }
            exact = update(reference, request, settings, None, None)
            step_error = {
                size: float(
                    (update(reference, request, settings, *size) - exact).norm() / exact.norm()
                )
                for size in sizes
            }
            retrain_s = reference.forget(request).seconds
            row = {
                "model": kind,
                "seed": seed,
                "retrain_s": round(retrain_s, 3),
                "auc_original": original,
                "auc_retrain": auc_report(reference, split.test, removed),
                "ifru": {},
            }
            for size, methods in copies.items():
                seconds = statistics.median(m.forget(request).seconds for m in methods)
                row["ifru"][f"{size[0]}x{size[1]}"] = {
                    "forget_s": round(seconds, 4),
                    "speedup": round(retrain_s / seconds, 1),
                    "step_error": round(step_error[size], 4),
                    **auc_report(methods[0], split.test, removed),
                }
            print(json.dumps(row), flush=True)
            rows.append(row)
    header = ["model", "seed", "retrain s", "AUC original / retrain"]
    header += [
        cell
        for s in args.sizes
        for cell in (f"IFRU {s} s (speed-up)", f"IFRU {s} AUC", f"{s} step error")
    ]
    cells = []
    for r in rows:
        line = [
            r["model"],
            str(r["seed"]),
            f"{r['retrain_s']:.2f}",
            f"{r['auc_original']['auc']:.4f} / {r['auc_retrain']['auc']:.4f}",
        ]
        for s in args.sizes:
            v = r["ifru"][s]
            line += [
                f"{v['forget_s']:.3f} ({v['speedup']:.0f}x)",
                f"{v['auc']:.5f}",
                f"{v['step_error']:.3f}",
            ]
        cells.append(line)
    table = markdown_grid(header, cells)
    write_document(
        {"rows": rows, "environment": environment(), "command": vars(args)}, args.out, table
    )
    print(table)


if __name__ == "__main__":
    main()
