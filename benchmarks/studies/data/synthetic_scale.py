"""Time and peak memory of the synthetic generator from 10K to 10M interactions, and of preparing
an IFRU-style experiment on it (5-core, 60/20/20 split, 2% label-flip attack, the request's row mask).

Each size runs in a fresh process, so the peak resident memory is that size's own.
Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/studies/data/synthetic_scale.py [--out benchmarks/studies/data/synthetic-scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, sys, time
from recunlearn.data import k_core, label_flip_attack, random_split
from recunlearn.data.synthetic import SyntheticConfig, generate
n = int(sys.argv[1])
start = time.perf_counter()
data = generate(SyntheticConfig(n_interactions=n)).interactions
seconds = time.perf_counter() - start
start = time.perf_counter()
split = random_split(k_core(data, 5), (0.6, 0.2, 0.2), seed=1024)
polluted, request = label_flip_attack(split.train, 0.02, seed=0)
rows = request.rows(polluted)
prepare_seconds = time.perf_counter() - start
print(json.dumps({"n_interactions": len(data), "users": data.n_users, "items": data.n_items,
                  "positive_rate": round(float(data.label.mean()), 4), "seconds": round(seconds, 2),
                  "prepare_seconds": round(prepare_seconds, 2),
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000]
    )
    parser.add_argument("--out", type=Path, default=None, help="Write the figures as JSON here.")
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()[0]
    print(
        f"{'rows':>12} {'users':>9} {'items':>9} {'pos.rate':>8} {'generate s':>10} {'prepare s':>9} "
        f"{'peak GB':>8}"
    )
    for n in args.sizes:
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(n)], check=True, capture_output=True, text=True
        )
        row = json.loads(result.stdout)
        rows.append(row)
        print(
            f"{row['n_interactions']:>12,} {row['users']:>9,} {row['items']:>9,} {row['positive_rate']:>8} "
            f"{row['seconds']:>10} {row['prepare_seconds']:>9} {row['peak_rss_gb']:>8}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/studies/data/synthetic_scale.py",
                    "machine": f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} cores",
                    "load_average_before": round(load_before, 2),
                    "rows": rows,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
