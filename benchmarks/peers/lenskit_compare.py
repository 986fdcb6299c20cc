"""recunlearn's implicit-feedback recommenders against LensKit on one ML-100K split, one thread.

Question: is recunlearn's LightGCN fit no slower than LensKit's LightGCN at equal or better
Recall@20? Every model is fitted on the same training set (recunlearn's ``implicit_protocol``:
ratings >= 4, 5-core, per-user random 80/10/10, seed 1024) and judged by one evaluator,
``recunlearn.evaluate.ranking_report`` (Recall/NDCG/Hit/MRR/coverage@20 over all items, training
items masked), from each model's full users x items score matrix. Fit wall time
(``time.perf_counter``) and CPU time (``time.process_time``) are taken around the fit call alone;
recunlearn's early-stopped fits include their per-epoch validation ranking.

LensKit is not a dependency of recunlearn: it lives in a virtualenv of its own, outside the
repository. Creating it (the CPU build of torch 2.13.0 lies on disk; pin it first so that no
package pulls a CUDA build; recbole ships the ML-100K files and is installed without its
dependencies)::

    python3 -m venv /work/lenskit-venv
    /work/lenskit-venv/bin/pip install torch==2.13.0
    echo torch==2.13.0 > /tmp/torch-pin.txt
    /work/lenskit-venv/bin/pip install -c /tmp/torch-pin.txt lenskit torch_geometric
    /work/lenskit-venv/bin/pip install -c constraints.txt -e .      # from the repository root
    /work/lenskit-venv/bin/pip install --no-deps recbole==1.2.1

Running it (from the repository root; about two minutes on one core)::

    OMP_NUM_THREADS=1 /work/lenskit-venv/bin/python benchmarks/peers/lenskit_compare.py

writes ``benchmarks/peers/results/ml100k_implicit_cpu1.json`` (every fit's row, the means and
spreads, the command, the recunlearn commit, package versions, the machine) and a markdown table
beside it (same name, ``.md``).

LensKit's scorers are scored through their learned parameters, for every user at once: ImplicitMF
as user_embeddings @ item_embeddings.T, LightGCN as the propagated node embeddings of the users
times those of the items (what ``LightGCNScorer.__call__`` computes one user at a time, by
propagating the whole graph on each call). The script checks both against the scorers' own
``__call__`` for a few users before it evaluates. LensKit's LightGCN draws its initial embeddings
from torch's global generator whatever ``TrainingOptions(rng=...)`` says, so the script seeds
torch (``torch.manual_seed(seed)``) before each LensKit fit as well.
"""

from __future__ import annotations

import os

# One thread everywhere, before numpy / torch / LensKit's Rayon pool start.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "LK_NUM_PROCS",
    "LK_NUM_THREADS",
    "LK_NUM_BACKEND_THREADS",
):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

# LensKit hands torch read-only NumPy arrays of item numbers; torch's warning about it is noise here.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
K = 20


# --- models --------------------------------------------------------------------------------------


class MatrixScorer:
    """A fixed users x items score matrix in recunlearn's index order."""

    def __init__(self, scores: np.ndarray):
        self.scores = np.ascontiguousarray(scores, dtype=np.float32)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        return self.scores[np.asarray(users)]


class PopularScorer:
    """Every user gets the items by their number of training interactions."""

    def __init__(self, train):
        self.counts = np.bincount(train.item, minlength=train.n_items).astype(np.float32)

    def score_all(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(users), 1))


@dataclass
class Spec:
    name: str
    library: str
    fit: Callable[[int], tuple[Any, dict]]
    """seed -> (scorer with score_all, extra fields); timed from outside."""
    config: dict = field(default_factory=dict)


class LensKitSide:
    """LensKit's dataset (built once) and the mapping of its numbering onto recunlearn's indices."""

    def __init__(self, train):
        import lenskit.parallel
        from lenskit.data import from_interactions_df

        lenskit.parallel.initialize(processes=1, threads=1, backend_threads=1)
        frame = train.to_frame()[["user", "item"]]
        start = time.perf_counter()
        self.dataset = from_interactions_df(frame, users=train.users.ids, items=train.items.ids)
        self.dataset_seconds = time.perf_counter() - start
        if (self.dataset.user_count, self.dataset.item_count) != (train.n_users, train.n_items):
            raise SystemExit("LensKit's dataset has other users/items than the training set")
        if self.dataset.interaction_count != len(train):
            raise SystemExit("LensKit's dataset has another number of interactions")
        # LensKit's numbers of recunlearn's users / items, index by index
        self.user_num = np.array(self.dataset.users.numbers(train.users.ids), dtype=np.int64)
        self.item_num = np.array(self.dataset.items.numbers(train.items.ids), dtype=np.int64)
        if (self.user_num < 0).any() or (self.item_num < 0).any():
            raise SystemExit("an id of the training set is missing from LensKit's vocabulary")
        self.train = train

    def check_scores(self, scorer, scores: np.ndarray, users=(0, 1, 2)) -> float:
        """Largest gap between ``scores`` and the scorer's own __call__ over all items for a few users."""
        from lenskit.data import ItemList

        items = ItemList(self.train.items.ids)
        gap = 0.0
        for u in users:
            own = scorer(self.train.users.ids[u], items).scores()
            gap = max(gap, float(np.max(np.abs(own - scores[u]))))
        if not gap < 1e-4:
            raise SystemExit(f"full score matrix disagrees with the scorer's own scores by {gap}")
        return gap

    def implicit_mf(self, seed: int):
        from lenskit.als import ImplicitMFScorer
        from lenskit.training import TrainingOptions

        scorer = ImplicitMFScorer()
        torch.manual_seed(seed)
        return scorer, lambda: scorer.train(self.dataset, TrainingOptions(rng=seed))

    def implicit_mf_scores(self, scorer) -> np.ndarray:
        u = scorer.user_embeddings[self.user_num]
        i = scorer.item_embeddings[self.item_num]
        return u @ i.T

    def lightgcn(self, seed: int, **config):
        from lenskit.graphs.lightgcn import LightGCNScorer
        from lenskit.training import TrainingOptions

        scorer = LightGCNScorer(**config)
        torch.manual_seed(seed)
        return scorer, lambda: scorer.train(self.dataset, TrainingOptions(rng=seed))

    def lightgcn_scores(self, scorer) -> np.ndarray:
        with torch.no_grad():
            emb = scorer.model.get_embedding(scorer._edges)
            users = emb[scorer._user_base + torch.as_tensor(self.user_num, dtype=torch.long)]
            items = emb[torch.as_tensor(self.item_num, dtype=torch.long)]
            propagated = not torch.allclose(
                emb, scorer.model.embedding.weight * scorer.model.alpha[0]
            )
        return (users @ items.T).numpy(), propagated


def lenskit_spec(side: LensKitSide, name: str, kind: str, config: dict | None = None) -> Spec:
    config = config or {}

    def fit(seed: int):
        if kind == "imf":
            scorer, train = side.implicit_mf(seed)
        else:
            scorer, train = side.lightgcn(seed, **config)
        timed = _timed(train)
        extra: dict = {"epochs": scorer.config.epochs, "config": scorer.config.model_dump()}
        if kind == "imf":
            scores = side.implicit_mf_scores(scorer)
        else:
            scores, propagated = side.lightgcn_scores(scorer)
            extra["graph_propagation_nonzero"] = propagated
        extra["score_check_max_gap"] = side.check_scores(scorer, scores)
        return MatrixScorer(scores), timed, extra

    return Spec(name, "lenskit", fit, config)


def recunlearn_spec(
    name: str, model_config, train_kw: dict, train, valid, early_stop: bool
) -> Spec:
    from recunlearn.train import TrainConfig, fit_model

    def fit(seed: int):
        config = TrainConfig(loss="bpr", seed=seed, device="cpu", **train_kw)
        box: dict = {}
        timed = _timed(
            lambda: box.setdefault(
                "r", fit_model(model_config, train, valid if early_stop else None, config)
            )
        )
        result = box["r"]
        result.model.eval()
        extra = {
            "epochs": result.epochs,
            "best_epoch": result.best_epoch if early_stop else result.epochs,
            "fit_result_seconds": round(result.seconds, 4),
            "config": {
                "model": model_config.model_dump(),
                "train": config.model_dump(),
                "early_stopping_on_valid": early_stop,
            },
        }
        return result.model, timed, extra

    return Spec(
        name,
        "recunlearn",
        fit,
        {"model": model_config.model_dump(), **train_kw, "early_stopping": early_stop},
    )


def _timed(fn: Callable[[], Any]) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {"fit_wall_s": time.perf_counter() - wall, "fit_cpu_s": time.process_time() - cpu}


# --- bookkeeping ---------------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _nproc() -> str:
    # GNU nproc honours OMP_NUM_THREADS, which this script sets: ask it without that variable
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    try:
        return subprocess.run(
            ["nproc"], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(os.cpu_count())


def _summary(rows: list[dict], names: list[str]) -> list[dict]:
    measures = [
        f"recall@{K}",
        f"ndcg@{K}",
        f"hit@{K}",
        f"mrr@{K}",
        f"coverage@{K}",
        "fit_wall_s",
        "fit_cpu_s",
    ]
    out = []
    for name in names:
        mine = [r for r in rows if r["model"] == name]
        entry: dict = {
            "model": name,
            "library": mine[0]["library"],
            "seeds": [r["seed"] for r in mine],
        }
        for m in measures + (["epochs"] if all("epochs" in r for r in mine) else []):
            values = np.array([r[m] for r in mine], dtype=np.float64)
            entry[m] = {
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()),
                "max": float(values.max()),
            }
        out.append(entry)
    return out


def _markdown(payload: dict) -> str:
    lines = [
        f"# ML-100K implicit, {payload['threads']} thread(s): recunlearn against LensKit "
        f"{payload['versions']['lenskit']}",
        "",
        f"Mean ± standard deviation over seeds {payload['seeds']}; all measures by recunlearn's "
        f"`ranking_report` at K={K} on the test split ({payload['split']['test']} rows, "
        f"{payload['split']['users']} users x {payload['split']['items']} items), training items masked. "
        "Fit times cover the fit call alone (early-stopped rows include their validation rankings).",
        "",
        "| model | library | Recall@20 | NDCG@20 | Hit@20 | fit wall s | fit CPU s | epochs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in payload["summary"]:

        def ms(key, digits=4, s=s):
            return f"{s[key]['mean']:.{digits}f} ± {s[key]['std']:.{digits}f}"

        epochs = f"{s['epochs']['mean']:.1f}" if "epochs" in s else ""
        name = s["model"].replace("|", "\\|")
        lines.append(
            f"| {name} | {s['library']} | {ms('recall@20')} | {ms('ndcg@20')} | {ms('hit@20')} | "
            f"{ms('fit_wall_s', 2)} | {ms('fit_cpu_s', 2)} | {epochs} |"
        )
    lines += [
        "",
        "## LightGCN: LensKit fit time over recunlearn's (means; above 1: recunlearn faster), "
        "and Recall@20 of each",
        "",
        "| LensKit row | recunlearn row | wall s LensKit / recunlearn | CPU s LensKit / recunlearn "
        "| Recall@20 LensKit | Recall@20 recunlearn | recunlearn no slower (wall) at equal or better Recall@20 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in payload["comparisons"]:
        lines.append(
            f"| {c['lenskit']} | {c['recunlearn']} | {c['wall_ratio_lenskit_over_recunlearn']:.2f} | "
            f"{c['cpu_ratio_lenskit_over_recunlearn']:.2f} | "
            f"{c['recall_lenskit']:.4f} | {c['recall_recunlearn']:.4f} | "
            f"{'yes' if c['recunlearn_no_slower_at_equal_or_better_recall'] else 'no'} |"
        )
    lines += [
        "",
        f"Command: `{payload['command']}`",
        "",
        f"recunlearn commit {payload['recunlearn_commit']}{' (working tree had changes)' if payload['tree_dirty'] else ''}; "
        f"torch {payload['versions']['torch']}, torch_geometric {payload['versions']['torch_geometric']}, "
        f"Python {payload['versions']['python']}; {payload['machine']['platform']}, nproc {payload['machine']['nproc']}; "
        f"1-minute load average {payload['machine']['loadavg_1min_start']:.2f} at the start, "
        f"{payload['machine']['loadavg_1min_end']:.2f} at the end (other work on the machine stretches wall "
        "time past CPU time).",
        "",
    ]
    if payload.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in payload["notes"]] + [""]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results file (default: benchmarks/peers/results/ml100k_implicit_cpu<threads>.json)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only the models whose name contains one of these",
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    threads = torch.get_num_threads()
    load_start = os.getloadavg()[0]
    out = args.out or HERE / "results" / f"ml100k_implicit_cpu{threads}.json"

    from recunlearn.data import implicit_protocol, load_dataset
    from recunlearn.evaluate import ranking_report
    from recunlearn.models import LightGCNConfig, MFConfig

    split = implicit_protocol(load_dataset("ml-100k"))
    train, valid, test = split.train, split.valid, split.test
    side = LensKitSide(train)

    specs = [
        Spec("most popular", "-", lambda seed: (PopularScorer(train), None, {})),
        lenskit_spec(side, "LensKit ImplicitMF (defaults)", "imf"),
        lenskit_spec(side, "LensKit LightGCN (defaults)", "lgcn"),
        lenskit_spec(
            side, "LensKit LightGCN (defaults, embedding_size 64)", "lgcn", {"embedding_size": 64}
        ),
        recunlearn_spec(
            "recunlearn MF-BPR dim 64, early-stopped",
            MFConfig(dim=64),
            dict(lr=0.01, l2=1e-4, batch_size=8192, max_epochs=200, patience=10),
            train,
            valid,
            True,
        ),
        recunlearn_spec(
            "recunlearn LightGCN dim 16, 2 layers, 10 epochs",
            LightGCNConfig(dim=16, n_layers=2),
            dict(lr=0.01, l2=1e-4, batch_size=4096, max_epochs=10),
            train,
            valid,
            False,
        ),
        recunlearn_spec(
            "recunlearn LightGCN dim 16, 2 layers, 10 epochs, batch 8192",
            LightGCNConfig(dim=16, n_layers=2),
            dict(lr=0.02, l2=1e-4, batch_size=8192, max_epochs=10),
            train,
            valid,
            False,
        ),
        recunlearn_spec(
            "recunlearn LightGCN dim 64, 2 layers, 10 epochs",
            LightGCNConfig(dim=64, n_layers=2),
            dict(lr=0.01, l2=1e-4, batch_size=4096, max_epochs=10),
            train,
            valid,
            False,
        ),
        recunlearn_spec(
            "recunlearn LightGCN dim 32, 1 layer, early-stopped",
            LightGCNConfig(dim=32, n_layers=1),
            dict(lr=0.02, l2=1e-3, batch_size=8192, max_epochs=200, patience=10),
            train,
            valid,
            True,
        ),
        recunlearn_spec(
            "recunlearn LightGCN dim 64, 2 layers, early-stopped",
            LightGCNConfig(dim=64, n_layers=2),
            dict(lr=0.02, l2=1e-4, batch_size=8192, max_epochs=200, patience=10),
            train,
            valid,
            True,
        ),
    ]
    if args.only:
        specs = [s for s in specs if any(o.lower() in s.name.lower() for o in args.only)]

    # Untimed warm-up of both libraries' torch paths (first-call allocations, lazy imports).
    from recunlearn.train import TrainConfig, fit_model

    fit_model(
        LightGCNConfig(dim=16, n_layers=2),
        train,
        None,
        TrainConfig(loss="bpr", max_epochs=1, device="cpu"),
    )
    _, warm = side.lightgcn(0, epochs=1)
    warm()

    rows = []
    for seed in args.seeds:
        for spec in specs:
            fitted, timed, extra = spec.fit(seed)
            start = time.perf_counter()
            report = ranking_report(fitted, train, test, k=K)
            row = {
                "model": spec.name,
                "library": spec.library,
                "seed": seed,
                **report,
                **(timed or {"fit_wall_s": 0.0, "fit_cpu_s": 0.0}),
                "eval_s": time.perf_counter() - start,
                **extra,
            }
            rows.append(row)
            print(
                f"seed {seed}  {spec.name:55s} recall@20 {report['recall@20']:.4f}  ndcg@20 {report['ndcg@20']:.4f}"
                f"  fit {row['fit_wall_s']:.2f}s wall {row['fit_cpu_s']:.2f}s cpu",
                flush=True,
            )

    names = [s.name for s in specs]
    summary = _summary(rows, names)
    by_name = {s["model"]: s for s in summary}
    comparisons = []
    for lk, ru in [
        ("LensKit LightGCN (defaults)", "recunlearn LightGCN dim 16, 2 layers, 10 epochs"),
        (
            "LensKit LightGCN (defaults)",
            "recunlearn LightGCN dim 16, 2 layers, 10 epochs, batch 8192",
        ),
        ("LensKit LightGCN (defaults)", "recunlearn LightGCN dim 32, 1 layer, early-stopped"),
        ("LensKit LightGCN (defaults)", "recunlearn LightGCN dim 64, 2 layers, early-stopped"),
        (
            "LensKit LightGCN (defaults, embedding_size 64)",
            "recunlearn LightGCN dim 64, 2 layers, 10 epochs",
        ),
        (
            "LensKit LightGCN (defaults, embedding_size 64)",
            "recunlearn LightGCN dim 64, 2 layers, early-stopped",
        ),
    ]:
        if lk in by_name and ru in by_name:
            a, b = by_name[lk], by_name[ru]
            comparisons.append(
                {
                    "lenskit": lk,
                    "recunlearn": ru,
                    "wall_ratio_lenskit_over_recunlearn": a["fit_wall_s"]["mean"]
                    / b["fit_wall_s"]["mean"],
                    "cpu_ratio_lenskit_over_recunlearn": a["fit_cpu_s"]["mean"]
                    / b["fit_cpu_s"]["mean"],
                    "recall_lenskit": a["recall@20"]["mean"],
                    "recall_recunlearn": b["recall@20"]["mean"],
                    "recunlearn_no_slower_at_equal_or_better_recall": b["fit_wall_s"]["mean"]
                    <= a["fit_wall_s"]["mean"]
                    and b["recall@20"]["mean"] >= a["recall@20"]["mean"],
                }
            )

    notes = []
    lk_rows = [r for r in rows if "graph_propagation_nonzero" in r]
    if lk_rows and not any(r["graph_propagation_nonzero"] for r in lk_rows):
        notes.append(
            "LensKit's LightGCN propagated nothing in every fit: its graph holds user->item edges only; "
            "torch_geometric's gcn_norm counts degrees over edge targets, so every user has degree 0 and "
            "every edge weight deg(user)^-1/2 * deg(item)^-1/2 comes out 0. Its node embeddings equal "
            "the layer-0 embeddings times alpha[0]: an MF scored through a graph "
            "(graph_propagation_nonzero false in every LensKit LightGCN row)."
        )
    payload = {
        "benchmark": "ml100k_implicit",
        "threads": threads,
        "seeds": args.seeds,
        "command": " ".join(
            shlex.quote(a)
            for a in [
                f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
                sys.executable,
                *sys.argv,
            ]
        ),
        "recunlearn_commit": _git("rev-parse", "HEAD"),
        "tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "versions": {
            "python": platform.python_version(),
            "lenskit": _version("lenskit"),
            "torch": torch.__version__,
            "torch_geometric": _version("torch_geometric"),
            "numpy": np.__version__,
            "recunlearn": _version("recunlearn"),
            "recbole": _version("recbole"),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "nproc": _nproc(),
            "torch_threads": threads,
            "loadavg_1min_start": load_start,
            "loadavg_1min_end": os.getloadavg()[0],
            "env": {
                v: os.environ.get(v)
                for v in ("OMP_NUM_THREADS", "LK_NUM_THREADS", "LK_NUM_BACKEND_THREADS")
            },
        },
        "split": {
            "protocol": "implicit_protocol(load_dataset('ml-100k')): rating >= 4, 5-core, "
            "per-user random 80/10/10, seed 1024",
            "users": train.n_users,
            "items": train.n_items,
            "train": len(train),
            "valid": len(valid),
            "test": len(test),
            "train_hash": train.content_hash(),
            "test_hash": test.content_hash(),
        },
        "lenskit_dataset_build_s": side.dataset_seconds,
        "timing": "fit_wall_s: time.perf_counter around the fit call; fit_cpu_s: time.process_time around it. "
        "Early-stopped recunlearn rows include their per-epoch validation rankings. "
        "Both libraries were warmed up by one untimed 1-epoch LightGCN fit first.",
        "summary": summary,
        "comparisons": comparisons,
        "notes": notes,
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    out.with_suffix(".md").write_text(_markdown(payload))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    for c in comparisons:
        print(
            f"{c['lenskit']} / {c['recunlearn']}: wall x{c['wall_ratio_lenskit_over_recunlearn']:.2f}, "
            f"cpu x{c['cpu_ratio_lenskit_over_recunlearn']:.2f}, "
            f"recall {c['recall_lenskit']:.4f} vs {c['recall_recunlearn']:.4f}"
        )


if __name__ == "__main__":
    main()
