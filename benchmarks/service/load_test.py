"""Load test on loopback: recommendations keep being served while deletions are processed, on SQLite
or PostgreSQL.

Builds a service (SISA on MovieLens-100K by default) with its ledger in SQLite (a file in the home) or
in a fresh PostgreSQL database (created on the server of ``--postgres-url``, dropped after), starts
``recunlearn serve`` and ``recunlearn worker`` on 127.0.0.1, and runs client threads that ask for
recommendations for random users throughout. Two phases:

1. one deletion naming ``--delete-users`` users, after a warm-up; read latency before / during
   (submitted .. published) / after;
2. a stream of one-user deletions, one every ``--stream-interval`` seconds for ``--stream-seconds``;
   deletions published per minute (first submission to last publication) and read latency meanwhile;
3. ``--removals`` one-user deletions, one every ``--removal-interval`` seconds: time from the request
   accepted (202) to ``removed`` (a version without its data served: parts set aside, or an
   approximate update), and to ``published`` (the repair version served), as p50 / p99 / max and
   per request.

Bounded in time and in count. Writes a JSON with the figures, the command, the commit and the machine,
with its load average sampled every second of the run (other work on the machine shows there).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service/load_test.py --store sqlite
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service/load_test.py --store postgres
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service/load_test.py --partition user --store sqlite
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/service/load_test.py --method receraser --store sqlite
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
import uuid
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, make_url

from recunlearn.data import binarize
from recunlearn.data.registry import load_dataset
from recunlearn.service.config import ServiceHome
from recunlearn.service.initialize import init_service

HOST = "127.0.0.1"
POSTGRES_URL = os.environ.get(
    "RECUNLEARN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def commit() -> str:
    """The checked-out commit, '+changes' when the code (src/, this script) differs from it."""
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            "src",
            "benchmarks/service/load_test.py",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (head or "unknown") + ("+changes" if dirty else "")


class Postgres:
    """A fresh database on a PostgreSQL server, dropped on exit."""

    def __init__(self, url: str):
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        self.name = f"recunlearn_load_{uuid.uuid4().hex[:8]}"
        self.url = make_url(url).set(database=self.name).render_as_string(hide_password=False)

    def __enter__(self) -> Postgres:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
            self.version = connection.exec_driver_sql("SHOW server_version").scalar()
        return self

    def __exit__(self, *_exc) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url", default=POSTGRES_URL, help="Server on which a fresh database is made."
    )
    parser.add_argument("--data", default="ml-100k")
    parser.add_argument("--threshold", type=float, default=3.0, help="Label = rating > threshold.")
    parser.add_argument("--method", default="sisa")
    parser.add_argument(
        "--config", default='{"n_shards": 5, "train": {"max_epochs": 10, "lr": 0.01}}'
    )
    parser.add_argument(
        "--partition",
        default=None,
        help="The method's partition, added to --config (SISA: random or user; RecEraser: user, "
        "item or interaction).",
    )
    parser.add_argument(
        "--delete-users", type=int, default=20, help="Users named by the phase-1 deletion."
    )
    parser.add_argument("--threads", type=int, default=4, help="Client threads.")
    parser.add_argument("--seconds", type=float, default=90.0, help="Upper bound on phase 1.")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="Seconds of load before the deletion."
    )
    parser.add_argument(
        "--stream-seconds", type=float, default=30.0, help="How long one-user deletions arrive."
    )
    parser.add_argument(
        "--stream-interval",
        type=float,
        default=0.05,
        help="Seconds between two of them (faster than the worker settles them, to measure its rate).",
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=120.0, help="Upper bound on waiting for the stream."
    )
    parser.add_argument(
        "--max-requests", type=int, default=200_000, help="Upper bound on recommendation calls."
    )
    parser.add_argument(
        "--removals", type=int, default=30, help="One-user deletions timed to 'removed'."
    )
    parser.add_argument(
        "--removal-interval", type=float, default=1.0, help="Seconds between two of them."
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=0.05,
        help="How often the worker looks for waiting requests (service setting).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Default: benchmarks/service/results/load_test-<store>.json for SISA's random shards, "
        "load_test-<method>[-<partition>]-<store>.json otherwise",
    )
    args = parser.parse_args()
    if args.partition is not None:
        args.config = json.dumps({**json.loads(args.config), "partition": args.partition})
    configuration = [args.method] + ([args.partition] if args.partition else [])
    named = "-".join(([] if configuration == ["sisa"] else configuration) + [args.store])
    out = args.out or Path(f"benchmarks/service/results/load_test-{named}.json")
    run_on_store(args, run, "benchmarks/service/load_test.py", out)


def run_on_store(args: argparse.Namespace, run, script: str, out: Path) -> None:
    """``run(args, database_url, store_info)`` on the store ``--store`` names (PostgreSQL: a fresh
    database, dropped after); its result, with the command, written to ``out`` and printed."""
    if args.store == "postgres":
        with Postgres(args.postgres_url) as database:
            result = run(args, database.url, {"server_version": database.version})
    else:
        result = run(args, None, {})
    result["command"] = " ".join(["python", script] + sys.argv[1:])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_end": os.getloadavg(),
    }


def run(args: argparse.Namespace, database_url: str | None, store_info: dict) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="recunlearn-load-"))
    home = ServiceHome(workdir / "home")
    data = binarize(load_dataset(args.data), args.threshold)
    made = init_service(
        home,
        data,
        args.method,
        json.loads(args.config),
        database_url=database_url,
        poll_seconds=args.poll_seconds,
    )
    users = np.unique(data.users.ids[data.user]).tolist()
    rng = np.random.default_rng(0)
    n_stream = int(args.stream_seconds / args.stream_interval)
    chosen = rng.choice(
        users, size=args.delete_users + n_stream + args.removals, replace=False
    ).tolist()
    doomed = chosen[: args.delete_users]
    streamed = chosen[args.delete_users : args.delete_users + n_stream]
    timed = chosen[args.delete_users + n_stream :]
    askable = sorted(set(users) - set(chosen))
    port = free_port()
    env = {**os.environ, "RECUNLEARN_PROGRESS": "0"}
    cli = [sys.executable, "-c", "from recunlearn.cli import main; main()"]
    server = subprocess.Popen(
        cli + ["serve", "--home", str(home.path), "--host", HOST, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        cli + ["worker", "--home", str(home.path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://{HOST}:{port}"
    headers = {"Authorization": f"Bearer {made.write_token}"}
    samples: list[tuple[float, float, int, str]] = []  # (start, seconds, status, version)
    lock = threading.Lock()
    stop = threading.Event()
    api = httpx.Client(base_url=base, headers=headers, timeout=30)
    load: list[tuple[float, tuple[float, float, float]]] = []  # (time, os.getloadavg())

    def sample_load() -> None:
        while not stop.wait(1.0):
            load.append((time.monotonic(), os.getloadavg()))

    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()

    def status(request_id: str) -> dict:
        return api.get(f"/v1/deletions/{request_id}").json()

    try:
        for _ in range(600):
            try:
                if api.get("/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

        def client(seed: int) -> None:
            local = np.random.default_rng(seed)
            with httpx.Client(base_url=base, headers=headers, timeout=30) as session:
                while not stop.is_set():
                    with lock:
                        if len(samples) >= args.max_requests:
                            return
                    user = askable[int(local.integers(len(askable)))]
                    start = time.monotonic()
                    try:
                        response = session.get(f"/v1/recommendations/{user}", params={"k": 10})
                        code, version = response.status_code, response.json().get("version", "")
                    except httpx.HTTPError:
                        code, version = -1, ""
                    with lock:
                        samples.append((start, time.monotonic() - start, code, version))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.threads)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + args.seconds
        time.sleep(args.warmup)
        submitted = time.monotonic()
        api.post(
            "/v1/deletions", json={"request_id": "load-test", "users": doomed}
        ).raise_for_status()
        published, record = None, {"status": "not finished within --seconds"}
        while time.monotonic() < deadline:
            record = status("load-test")
            if record["status"] in ("published", "failed"):
                published = time.monotonic()
                break
            time.sleep(0.2)
        time.sleep(args.warmup)
        after_end = stream_start = time.monotonic()
        for k, user in enumerate(streamed):  # phase 2: a stream of one-user deletions
            api.post(
                "/v1/deletions", json={"request_id": f"stream-{k}", "users": [user]}
            ).raise_for_status()
            time.sleep(max(0.0, stream_start + (k + 1) * args.stream_interval - time.monotonic()))
        stream_end = time.monotonic()
        done: dict[str, float] = {}
        while len(done) < len(streamed) and time.monotonic() < stream_end + args.drain_seconds:
            for k in range(len(streamed)):
                if f"stream-{k}" not in done and status(f"stream-{k}")["status"] in (
                    "published",
                    "failed",
                ):
                    done[f"stream-{k}"] = time.monotonic()
            time.sleep(0.5)
        stream_records = [status(f"stream-{k}") for k in range(len(streamed))]
        drained = time.monotonic()
        removals = time_removals(api, timed, args)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        stop.set()  # also on an error: the client threads and the load sampler end
        api.close()
        server.terminate()
        worker.terminate()
        server.wait(30)
        worker.wait(30)

    def phase(lo: float, hi: float) -> list[tuple[float, float, int, str]]:
        return [s for s in samples if lo <= s[0] < hi]

    end = published or after_end
    phases = {
        "before": phase(0, submitted),
        "during": phase(submitted, end),
        "after": phase(end, after_end),
        "stream": phase(stream_start, drained),
        "removals": phase(drained, removals["ended"]),
    }
    settled = [r for r in stream_records if r["status"] == "published"]
    last = max(done.values(), default=None)
    batches = sorted({r["version"] for r in settled})
    return {
        "commit": commit(),
        "machine": {
            **machine(),
            "load_average_1min": load_summary(load, 0, float("inf")),
            "load_average_1min_during_removals": load_summary(load, drained, removals["ended"]),
        },
        "store": {"kind": args.store, **store_info},
        "data": args.data,
        "threshold": args.threshold,
        "rows": len(data),
        "method": args.method,
        "config": json.loads(args.config),
        "fit_seconds": round(made.fit_seconds, 2),
        "client_threads": args.threads,
        "deletion": {
            "users": len(doomed),
            "status": record["status"],
            "removed_rows": (record.get("audit") or {}).get("removed_rows"),
            "submitted_to_published_s": round(end - submitted, 2) if published else None,
            "worker_forget_s": ((record.get("audit") or {}).get("timings") or {}).get("forget_s"),
        },
        "stream": {
            "requests": len(streamed),
            "interval_s": args.stream_interval,
            "published": len(settled),
            "failed": sum(r["status"] == "failed" for r in stream_records),
            "versions": len(batches),
            "first_submitted_to_last_published_s": round(last - stream_start, 2) if last else None,
            "deletions_per_minute": round(len(settled) / (last - stream_start) * 60, 1)
            if last
            else None,
        },
        "removals": {k: v for k, v in removals.items() if k != "ended"},
        "requests": len(samples),
        "errors": sum(1 for s in samples if s[2] != 200),
        "versions_served": len({s[3] for s in samples if s[3]}),
        "latency": {
            name: {
                **percentiles([s[1] for s in rows]),
                "errors": sum(1 for s in rows if s[2] != 200),
            }
            for name, rows in phases.items()
        },
    }


def load_summary(
    load: list[tuple[float, tuple[float, float, float]]], lo: float, hi: float
) -> dict[str, float | int]:
    """The 1-minute load average sampled between ``lo`` and ``hi``: mean and max."""
    values = [v[0] for t, v in load if lo <= t < hi]
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        "mean": round(float(np.mean(values)), 2),
        "max": round(max(values), 2),
    }


def time_removals(api: httpx.Client, users: list[str], args: argparse.Namespace) -> dict:
    """Phase 3: one-user deletions one every ``--removal-interval`` s; from accepted (202) to
    'removed' and to 'published', each read by polling the request's status every 10 ms."""
    accepted: dict[str, float] = {}
    removed: dict[str, float] = {}
    published: dict[str, float] = {}
    exact: dict[str, bool | None] = {}
    popularity: dict[str, bool] = {}  # removed by a version serving the most popular items
    start = time.monotonic()
    deadline = start + args.removals * args.removal_interval + args.drain_seconds
    k = 0
    while time.monotonic() < deadline and len(published) < len(users):
        if k < len(users) and time.monotonic() >= start + k * args.removal_interval:
            request_id = f"removal-{k}"
            api.post(
                "/v1/deletions", json={"request_id": request_id, "users": [users[k]]}
            ).raise_for_status()
            accepted[request_id] = time.monotonic()
            k += 1
        for request_id in list(accepted):
            if request_id in published:
                continue
            record = api.get(f"/v1/deletions/{request_id}").json()
            now = time.monotonic()
            if record["status"] in ("removed", "repaired", "published"):
                removed.setdefault(request_id, now)
                exact.setdefault(request_id, record["removed_exact"])
                details = (record.get("audit") or {}).get("details") or {}
                popularity.setdefault(request_id, details.get("serving") == "popularity")
            if record["status"] in ("published", "failed"):
                published[request_id] = now
        time.sleep(0.01)
    audits = [
        (api.get(f"/v1/deletions/{r}").json().get("audit") or {}).get("timings") or {}
        for r in removed
    ]
    to_removed = [removed[r] - accepted[r] for r in removed]
    to_published = [published[r] - accepted[r] for r in published]
    return {
        "requests": len(users),
        "interval_s": args.removal_interval,
        "removed": len(removed),
        "removed_exact": sum(bool(v) for v in exact.values()),
        "removed_serving_popularity": sum(popularity.values()),
        "published": len(published),
        "accepted_to_removed": percentiles(to_removed),
        "accepted_to_published": percentiles(to_published),
        "per_request_s": {
            r: {
                "accepted_to_removed": round(removed[r] - accepted[r], 3) if r in removed else None,
                "accepted_to_published": round(published[r] - accepted[r], 3)
                if r in published
                else None,
            }
            for r in accepted
        },
        "worker_removal": {  # the removal phase's steps, as the audit times them
            step: percentiles([t[step] for t in audits if step in t])
            for step in ("queued_s", "load_s", "forget_s", "save_s")
        },
        "ended": time.monotonic(),
    }


if __name__ == "__main__":
    main()
