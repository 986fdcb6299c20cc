"""Times the worker's removal pass step by step, in-process: one-user deletions on MovieLens-100K,
each taken up alone (queued, load the served version, quarantine, save the version, record it in the
ledger, switch the pointer and record the publication), then repaired before the next one.

No server and no client load: what the pass itself costs on this machine. Writes a JSON with the
figures, the command, the commit and the machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service/removal_pass.py --method sisa --partition user
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service/removal_pass.py --method receraser
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from recunlearn.data import binarize
from recunlearn.data.deletion import DeletionRequest
from recunlearn.data.registry import load_dataset
from recunlearn.service.config import ServiceHome
from recunlearn.service.initialize import init_service
from recunlearn.service.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import POSTGRES_URL, commit, machine, run_on_store  # noqa: E402

STEPS = {  # step: (the stage it starts after, the stage it ends at)
    "load_s": ("claimed", "model_loaded"),
    "quarantine_s": ("forget_started", "forgotten"),
    "save_s": ("forgotten", "version_renamed"),
    "record_s": ("version_renamed", "applied_committed"),
    "publish_s": ("applied_committed", "published_committed"),
    "pass_s": ("claimed", "published_committed"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--method", choices=("sisa", "receraser"), default="sisa")
    parser.add_argument(
        "--partition", choices=("random", "user"), default="user", help="SISA's partition."
    )
    parser.add_argument("--n-shards", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10, help="One-user deletions timed.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    named = f"sisa-{args.partition}" if args.method == "sisa" else args.method
    out = args.out or Path(f"benchmarks/service/results/removal_pass-{named}-{args.store}.json")
    run_on_store(args, run, "benchmarks/service/removal_pass.py", out)


def run(args: argparse.Namespace, database_url: str | None, store_info: dict) -> dict:
    config: dict = {"n_shards": args.n_shards, "train": {"max_epochs": 10, "lr": 0.01}}
    if args.method == "sisa":
        config["partition"] = args.partition
    home = ServiceHome(Path(tempfile.mkdtemp(prefix="recunlearn-pass-")) / "home")
    data = binarize(load_dataset("ml-100k"), 3.0)
    made = init_service(home, data, args.method, config, database_url=database_url)
    marks: dict[str, float] = {}
    worker = Worker(home, stage=lambda name: marks.setdefault(name, time.perf_counter()))
    users = np.random.default_rng(0).choice(np.unique(data.users.ids[data.user]), args.requests)
    passes: list[dict[str, float]] = []
    audits: list[dict] = []
    for k, user in enumerate(users.tolist()):
        worker.ledger.submit(DeletionRequest(request_id=f"pass-{k}", users=[user]))
        marks.clear()
        worker.run_once()  # the removal pass, then the repair (in this process)
        passes.append({step: marks[b] - marks[a] for step, (a, b) in STEPS.items()})
        audits.append(worker.ledger.get(f"pass-{k}").audit or {})
    worker.ledger.close()
    return {
        "commit": commit(),
        "machine": machine(),
        "store": {"kind": args.store, **store_info},
        "method": args.method,
        "config": config,
        "rows": len(data),
        "fit_seconds": round(made.fit_seconds, 2),
        "requests": len(passes),
        "removed_exact": sum(bool(a.get("removed_exact")) for a in audits),
        "quarantined_parts": [len(a.get("quarantined_parts") or []) for a in audits],
        "steps_p50_s": {
            step: round(float(np.median([p[step] for p in passes])), 4) for step in STEPS
        },
        "steps_max_s": {step: round(max(p[step] for p in passes), 4) for step in STEPS},
    }


if __name__ == "__main__":
    main()
