"""Where IFRU's `forget` spends its time on ML-100K: one original model (the label-flip
protocol of `recunlearn bench ifru`, 2% flipped), then repeated `forget` calls from copies of it; the
median of each phase `report.details` times, and a cProfile of the same calls giving the median
per-call time inside the functions that make up the phases.

Run from the repository root:
    OMP_NUM_THREADS=1 RECUNLEARN_DEVICE=cpu .venv/bin/python benchmarks/studies/ifru/profile_forget.py \
        [--model lightgcn] [--seed 0] [--calls 20] [--out benchmarks/studies/ifru/profile-forget-cpu.json]
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import statistics

import torch

from recunlearn.bench._results import markdown_grid, write_document
from recunlearn.bench.experiment import DataSpec, environment, prepare
from recunlearn.data import label_flip_attack
from recunlearn.models.graph import remove_edges
from recunlearn.train.runtime import retain_freed_memory
from recunlearn.unlearn import get_method
from recunlearn.unlearn.base import Unlearner
from recunlearn.unlearn.ifru import IFRU
from recunlearn.unlearn.influence import blocks, objective, sampling, solvers
from recunlearn.unlearn.influence.unlearner import InfluenceUnlearner

PHASES = ("gradient_s", "hessian_setup_s", "solve_s", "guard_s")
# the pieces of the phases above and of the bookkeeping around them; indented ones run inside the one
# above, and the objectives' set-up runs inside the phases that build them
PIECES = [
    ("request to rows (forget's lookup)", Unlearner._rows_of),
    (
        "removed rows' and spillover gradients (both graphs)",
        InfluenceUnlearner._gradient_with_spillover,
    ),
    ("row sample", sampling.sample_rows_per_node),
    ("neighbour sample", sampling.sample_neighbours),
    ("Hessian blocks and coupling bound", blocks.hessian_blocks),
    ("  per-node curvature sums (batched outer products)", blocks.segment_outer_sum),
    ("  each row's edge in the graph", blocks._reached_by_both_ends),
    ("per-row Newton solve (batched Cholesky)", solvers.block_newton),
    ("guard: validation AUC with and without the step", InfluenceUnlearner._guard_aucs),
    ("objectives over chosen rows (closures, index maps)", objective.RestrictedObjective.__init__),
    ("graph without the deleted edges", remove_edges),
    ("importance pruning", IFRU.kept_rows),
]


def cumulative_ms(stats: pstats.Stats, function, calls: int) -> float:
    """Cumulative time per ``forget`` call inside ``function`` (milliseconds)."""
    code = inspect.unwrap(function).__code__
    for (filename, line, name), (_, _, _, cumulative, _) in stats.stats.items():
        if (filename, line, name) == (code.co_filename, code.co_firstlineno, code.co_name):
            return 1000 * cumulative / calls
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/studies/ifru/profile-forget-cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    retain_freed_memory()  # as the CLI does
    split = prepare(DataSpec(dataset="ml-100k-shared"))
    polluted, request = label_flip_attack(split.train, 0.02, args.seed)
    settings = {"model": {"kind": args.model}, "train": {"seed": args.seed}}
    original = get_method("retrain")(settings).fit(polluted, split.valid)
    get_method("ifru").adopt(original, settings).forget(request)  # warm-up, not counted

    seconds, phases = [], {phase: [] for phase in PHASES}
    for _ in range(args.calls):
        report = get_method("ifru").adopt(original, settings).forget(request)
        seconds.append(report.seconds)
        for phase in PHASES:
            phases[phase].append(report.details[phase])
    profiler = cProfile.Profile()
    for _ in range(args.calls):
        method = get_method("ifru").adopt(original, settings)
        profiler.enable()
        method.forget(request)
        profiler.disable()
    stats = pstats.Stats(profiler)

    result = {
        "model": args.model,
        "seed": args.seed,
        "calls": args.calls,
        "forget_ms": round(1000 * statistics.median(seconds), 1),
        "phases_ms": {phase: round(1000 * statistics.median(v), 1) for phase, v in phases.items()},
        "profiled_ms": {
            label: round(cumulative_ms(stats, function, args.calls), 1)
            for label, function in PIECES
        },
    }
    cells = [["whole forget (median, unprofiled)", f"{result['forget_ms']:.1f}"]]
    cells += [
        [f"phase {phase.removesuffix('_s')} (median, unprofiled)", f"{ms:.1f}"]
        for phase, ms in result["phases_ms"].items()
    ]
    cells += [[label, f"{ms:.1f}"] for label, ms in result["profiled_ms"].items()]
    table = markdown_grid(["part", "ms per forget"], cells)
    write_document(
        {"result": result, "environment": environment(), "command": vars(args)}, args.out, table
    )
    print(table)


if __name__ == "__main__":
    main()
