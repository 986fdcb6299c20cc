"""Load test on loopback: recommendations keep being served while a deletion is processed.

Builds a service (SISA on MovieLens-100K by default), starts ``recunlearn serve`` and ``recunlearn worker``
on 127.0.0.1, and runs client threads that ask for recommendations for random users; after a warm-up
it submits one deletion and records every request's latency and status, split into before / during
(submitted .. published) / after. Bounded in time and in count. Writes a JSON with p50/p99 per phase.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service/load_test.py --out benchmarks/service/results/load_test.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from recunlearn.data.registry import load_dataset
from recunlearn.service.config import ServiceHome
from recunlearn.service.initialize import init_service

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000
    return {"n": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--method", default="sisa")
    parser.add_argument("--config", default='{"n_shards": 5, "train": {"max_epochs": 10, "lr": 0.01}}')
    parser.add_argument("--delete-users", type=int, default=20, help="Users named by the one deletion request.")
    parser.add_argument("--threads", type=int, default=4, help="Client threads.")
    parser.add_argument("--seconds", type=float, default=60.0, help="Upper bound on the whole run.")
    parser.add_argument("--max-requests", type=int, default=50_000, help="Upper bound on recommendation calls.")
    parser.add_argument("--warmup", type=float, default=5.0, help="Seconds of load before the deletion.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/service/results/load_test.json"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="recunlearn-load-"))
    home = ServiceHome(workdir / "home")
    data = load_dataset(args.data)
    made = init_service(home, data, args.method, json.loads(args.config))
    users = np.unique(data.users.ids[data.user]).tolist()
    rng = np.random.default_rng(0)
    doomed = rng.choice(users, size=args.delete_users, replace=False).tolist()
    askable = [u for u in users if u not in set(doomed)]
    port = free_port()
    env = {**os.environ, "RECUNLEARN_PROGRESS": "0"}
    cli = [sys.executable, "-c", "from recunlearn.cli import main; main()"]
    server = subprocess.Popen(cli + ["serve", "--home", str(home.path), "--host", HOST, "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen(cli + ["worker", "--home", str(home.path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://{HOST}:{port}"
    headers = {"Authorization": f"Bearer {made.write_token}"}
    samples: list[tuple[float, float, int, str]] = []  # (start, seconds, status, version)
    lock = threading.Lock()
    stop = threading.Event()
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        deadline = time.monotonic() + args.seconds

        def client(seed: int) -> None:
            local = np.random.default_rng(seed)
            with httpx.Client(base_url=base, headers=headers, timeout=30) as session:
                while not stop.is_set() and time.monotonic() < deadline:
                    with lock:
                        if len(samples) >= args.max_requests:
                            return
                    user = askable[int(local.integers(len(askable)))]
                    start = time.monotonic()
                    try:
                        response = session.get(f"/v1/recommendations/{user}", params={"k": 10})
                        status, version = response.status_code, response.json().get("version", "")
                    except httpx.HTTPError:
                        status, version = -1, ""
                    with lock:
                        samples.append((start, time.monotonic() - start, status, version))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.threads)]
        for thread in threads:
            thread.start()
        time.sleep(args.warmup)
        submitted = time.monotonic()
        answer = httpx.post(f"{base}/v1/deletions", headers=headers, timeout=30,
                            json={"request_id": "load-test", "users": doomed})
        answer.raise_for_status()
        published, record = None, {"status": "not finished within --seconds"}
        while time.monotonic() < deadline:
            record = httpx.get(f"{base}/v1/deletions/load-test", headers=headers, timeout=30).json()
            if record["status"] in ("published", "failed"):
                published = time.monotonic()
                break
            time.sleep(0.2)
        time.sleep(min(args.warmup, max(0.0, deadline - time.monotonic())))
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        worker.terminate()
        server.wait(30)
        worker.wait(30)

    def phase(lo: float, hi: float) -> list[tuple[float, float, int, str]]:
        return [s for s in samples if lo <= s[0] < hi]

    end = published or float("inf")
    phases = {"before": phase(0, submitted), "during": phase(submitted, end), "after": phase(end, float("inf"))}
    result = {
        "command": " ".join(["python", "benchmarks/service/load_test.py"] + sys.argv[1:]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_at_end": os.getloadavg()},
        "data": args.data, "rows": len(data), "method": args.method, "config": json.loads(args.config),
        "fit_seconds": round(made.fit_seconds, 2), "client_threads": args.threads,
        "deletion": {"users": len(doomed), "status": record["status"],
                     "removed_rows": (record.get("audit") or {}).get("removed_rows"),
                     "submitted_to_published_s": round(end - submitted, 2) if published else None,
                     "worker_forget_s": ((record.get("audit") or {}).get("timings") or {}).get("forget_s")},
        "requests": len(samples), "errors": sum(1 for s in samples if s[2] != 200),
        "versions_served": sorted({s[3] for s in samples if s[3]}),
        "latency": {name: {**percentiles([s[1] for s in rows]), "errors": sum(1 for s in rows if s[2] != 200)}
                    for name, rows in phases.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
