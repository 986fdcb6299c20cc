"""Interleaved A/B timing of IFRU's `forget` for two checkouts of recunlearn.

This machine's speed drifts by 10-20% within minutes, so two runs made one after the other cannot
compare code. Here one worker process per checkout trains the same original model (the label-flip
protocol of `recunlearn bench ifru`, 2% flipped), then the two take turns: each round, each times
`--calls` `forget` calls from copies of its model. Printed: each side's medians per round and the
per-round ratio new / old, whose median is the figure to quote.

Run from the repository root (OLD and NEW are `src` folders, e.g. of `git worktree add /tmp/old <commit>`):
    OMP_NUM_THREADS=1 RECUNLEARN_DEVICE=cpu .venv/bin/python benchmarks/studies/ifru/ab_forget.py OLD NEW \
        [--model lightgcn] [--seed 0] [--rounds 10] [--calls 7] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys


def worker(model: str, seed: int) -> None:
    """Train the original model, then time ``n`` forget calls per line read from stdin."""
    import torch

    from recunlearn.bench.experiment import DataSpec, prepare
    from recunlearn.data import label_flip_attack
    from recunlearn.train.runtime import retain_freed_memory
    from recunlearn.unlearn import get_method

    torch.set_num_threads(1)
    retain_freed_memory()  # as the CLI does
    split = prepare(DataSpec(dataset="ml-100k-shared"))
    polluted, request = label_flip_attack(split.train, 0.02, seed)
    settings = {"model": {"kind": model}, "train": {"seed": seed}}
    original = get_method("retrain")(settings).fit(polluted, split.valid)
    for _ in range(3):  # warm-up, not counted
        get_method("ifru").adopt(original, settings).forget(request)
    print("ready", flush=True)
    for line in sys.stdin:
        seconds = [
            get_method("ifru").adopt(original, settings).forget(request).seconds
            for _ in range(int(line))
        ]
        print(1000 * statistics.median(seconds), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", nargs="?", help="src folder of the old checkout")
    parser.add_argument("new", nargs="?", help="src folder of the new checkout")
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--out", help="also write the figures here as JSON (markdown beside it)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.model, args.seed)
    if not (args.old and args.new):
        parser.error("give the old and the new src folders")
    workers = {}
    for name, source in (("old", args.old), ("new", args.new)):
        env = dict(os.environ, PYTHONPATH=os.path.abspath(source))
        workers[name] = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--model", args.model, "--seed", str(args.seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
    medians = {name: [] for name in workers}
    try:
        for process in workers.values():
            if process.stdout.readline().strip() != "ready":
                sys.exit("a worker failed to start")
        for _ in range(args.rounds):
            for name, process in workers.items():
                process.stdin.write(f"{args.calls}\n")
                process.stdin.flush()
                medians[name].append(float(process.stdout.readline()))
    except BaseException:  # a failed worker or an interrupt: leave no worker running
        for process in workers.values():
            process.kill()
        raise
    for process in workers.values():
        process.stdin.close()
        process.wait()
    ratios = [new / old for new, old in zip(medians["new"], medians["old"])]
    lines = [
        f"{name}: median {statistics.median(values):.1f} ms, rounds: {' '.join(f'{v:.1f}' for v in values)}"
        for name, values in medians.items()
    ]
    lines.append(
        f"new / old: median {statistics.median(ratios):.3f}, rounds: {' '.join(f'{r:.3f}' for r in ratios)}"
    )
    print("\n".join(lines))
    if args.out:
        from recunlearn.bench._results import write_document
        from recunlearn.bench.experiment import environment

        commits = {
            name: subprocess.run(
                ["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            or None
            for name, folder in (("old", args.old), ("new", args.new))
        }
        document = {
            "medians_ms": medians,
            "ratio_median": statistics.median(ratios),
            "commits": commits,
            "command": {k: v for k, v in vars(args).items() if k != "worker"},
            "environment": environment(),
        }
        write_document(document, args.out, "\n\n".join(lines))


if __name__ == "__main__":
    main()
