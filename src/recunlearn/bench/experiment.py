"""One experiment: a dataset, a deletion set, and methods compared on the three goals.

Every method is fitted on the same training data (the polluted one for the label-flip attack), asked
to forget the same request, and measured against the model retrained without the data:
utility (AUC overall / OR / AND, Recall@K, NDCG@K), completeness (score distance to retraining on the
removed pairs and on the test set), efficiency (wall time of ``forget`` and speed-up over retraining).
``recunlearn demo`` and ``recunlearn run CONFIG.toml`` both run this.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tomllib
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from recunlearn.bench._protocol import BenchConfig, finish, method_settings, retrain_first
from recunlearn.bench._results import markdown_grid
from recunlearn.data import (
    DeletionRequest,
    Split,
    binarize,
    fake_positive_attack,
    fake_user_attack,
    implicit_protocol,
    item_deletion,
    k_core,
    label_flip_attack,
    load_dataset,
    random_interactions,
    random_split,
    temporal_leave_last,
    user_deletion,
)
from recunlearn.data.interactions import member_mask
from recunlearn.errors import ConfigError, validation_problems
from recunlearn.evaluate import MostPopular, auc_report, ranking_report, score_distance
from recunlearn.seeds import Seed
from recunlearn.unlearn import Unlearner, available_methods, get_method
from recunlearn.unlearn.base import make_config
from recunlearn.unlearn.executors import available_executors


def _distinct(names: list[str]) -> list[str]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)} (each method runs once)")
    return names


MethodNames = Annotated[list[str], AfterValidator(_distinct)]
"""Methods to compare, each once: one listed twice would forget a request already forgotten, and its
second (empty) run would stand for both."""


class DataSpec(BaseModel):
    """Which data, and how it is prepared (defaults: IFRU's protocol on MovieLens-100K)."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = "ml-100k"
    """A registered name (see `recunlearn data list`) or a path to a file/folder in a known format."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword options for the loader (e.g. sizes of the synthetic generator)."""
    protocol: Literal["labels", "implicit"] = "labels"
    """'labels': IFRU's explicit protocol (liked / disliked labels, judged by AUC); 'implicit': the
    positive interactions alone, judged by top-K ranking of all items (models train with BPR)."""
    threshold: float | None = 3.0
    """Liked = rating > threshold (3: MovieLens' 4 and 5 stars); None (or "none" in TOML) keeps the
    loader's labels, where every row is a positive interaction (a table without ratings)."""
    k_core: int = Field(5, ge=1)
    """Keep users and items with at least this many interactions."""
    split: Literal["random", "temporal"] = "random"
    """'random': shuffled (IFRU's 60/20/20 over all rows; per user for 'implicit'); 'temporal': by
    time (each user's last interaction to test; per user, the latest rows to test, for 'implicit')."""
    ratios: tuple[float, float, float] | None = None
    """Train/validation/test fractions; None: 60/20/20 for 'labels' (IFRU), 80/10/10 for 'implicit'."""
    seed: Seed = 1024
    """Seed of the split (IFRU's reference code uses 1024)."""

    @classmethod
    def synthetic(
        cls, *, n_interactions: int, n_users: int, n_items: int, **prepared: Any
    ) -> DataSpec:
        """The synthetic generator at this size, prepared as ``prepared`` says: the small logs that the
        quick presets run on in seconds."""
        sizes = {"n_interactions": n_interactions, "n_users": n_users, "n_items": n_items}
        return cls(dataset="synthetic", options=sizes, **prepared)

    @classmethod
    def synthetic_implicit(cls) -> DataSpec:
        """The small implicit-feedback log (every row a positive, 3-core) of the implicit quick presets."""
        return cls.synthetic(
            n_interactions=3000,
            n_users=100,
            n_items=80,
            protocol="implicit",
            threshold=None,
            k_core=3,
        )

    @field_validator("threshold", mode="before")
    @classmethod
    def _none_in_toml(cls, value: Any) -> Any:
        """TOML has no null: the string "none" stands for it."""
        return None if isinstance(value, str) and value.strip().lower() == "none" else value


class DeletionSpec(BaseModel):
    """What is forgotten."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal[
        "label_flip", "random", "users", "items", "fake_positives", "fake_users", "named"
    ] = "label_flip"
    """'label_flip': IFRU's attack (a fraction of training labels flipped, then removed);
    'random': random interactions; 'users' / 'items': all interactions of random users / items;
    'fake_positives': random fake positives injected (noise in implicit feedback), then removed;
    'fake_users': injected fake users (a shilling attack on implicit feedback), then removed;
    'named': the ``users`` and ``pairs`` listed here."""
    fraction: float = Field(0.02, gt=0, lt=1)
    """Fraction of training rows for 'label_flip', 'random' and 'fake_positives'; of the real users, as
    fake ones, for 'fake_users'."""
    count: int = Field(1, ge=1)
    """Number of users or items for 'users' / 'items'."""
    users: list[str] = Field(default_factory=list)
    """'named': users all of whose interactions are deleted (external ids)."""
    pairs: list[tuple[str, str]] = Field(default_factory=list)
    """'named': (user, item) interactions deleted (external ids)."""
    seed: Seed = 0

    @model_validator(mode="after")
    def _names_only_when_named(self) -> DeletionSpec:
        if self.kind == "named" and not (self.users or self.pairs):
            raise ValueError("a 'named' deletion lists users or pairs to delete")
        if self.kind != "named" and (self.users or self.pairs):
            raise ValueError(f"users and pairs are listed for kind = 'named', not {self.kind!r}")
        return self


class ExperimentConfig(BenchConfig):
    """A full experiment; the TOML file of `recunlearn run` has these keys."""

    data: DataSpec = Field(default_factory=DataSpec)
    deletion: DeletionSpec = Field(default_factory=DeletionSpec)
    model: dict[str, Any] = Field(default_factory=lambda: {"kind": "mf"})
    """Model settings given to every method (e.g. {kind = "lightgcn", dim = 32})."""
    train: dict[str, Any] = Field(default_factory=dict)
    """Training settings given to every method (lr, l2, batch_size, max_epochs, patience, seed)."""
    methods: MethodNames = Field(default_factory=list)
    """Methods to compare; empty = every registered method for interaction data. 'retrain' always runs."""
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-method settings, e.g. {sisa = {n_shards = 10}}."""
    k: int = Field(20, ge=1)
    """Cut-off of the ranking metrics."""
    executor: str | None = None
    """Where shard-based methods train their shards ('inprocess', 'process', 'ray'); None keeps each
    method's own setting. Shards are independent, so a process pool uses every core."""

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str | None) -> str | None:
        if (
            value is not None and value not in available_executors()
        ):  # refused before anything trains
            raise ValueError(
                f"unknown executor {value!r}; available: {', '.join(available_executors())}"
            )
        return value

    @classmethod
    def from_toml(cls, path: str | Path) -> ExperimentConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no such config file: {path}")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {validation_problems(exc)}") from None


def prepare(spec: DataSpec) -> Split:
    data = load_dataset(spec.dataset, **spec.options)
    if spec.protocol == "implicit":
        return implicit_protocol(
            data,
            spec.threshold,
            spec.k_core,
            spec.ratios or (0.8, 0.1, 0.1),
            spec.seed,
            by="time" if spec.split == "temporal" else "random",
        )
    if spec.threshold is not None:
        data = binarize(data, spec.threshold)
    data = k_core(data, spec.k_core)
    if spec.split == "random":
        return random_split(data, spec.ratios or (0.6, 0.2, 0.2), spec.seed)
    return temporal_leave_last(data)


def make_deletion(spec: DeletionSpec, split: Split) -> tuple[Split, DeletionRequest]:
    """The split methods fit on (the polluted training table for an attack) and the request they must
    honour; refuses, before anything trains, a request the data cannot satisfy."""
    train = split.train
    if spec.kind == "label_flip":
        polluted, request = label_flip_attack(train, spec.fraction, spec.seed)
        return Split(polluted, split.valid, split.test), request
    if spec.kind == "random":
        return split, random_interactions(train, spec.fraction, spec.seed)
    if spec.kind in ("users", "items"):
        present = len(np.unique(train.user if spec.kind == "users" else train.item))
        if spec.count > present:
            raise ConfigError(
                f"deletion.count = {spec.count}: the training data has only {present} {spec.kind}"
            )
        if spec.kind == "users":
            return split, user_deletion(train, n_users=spec.count, seed=spec.seed)
        return split, item_deletion(train, n_items=spec.count, seed=spec.seed)
    if spec.kind == "fake_positives":
        polluted, request = fake_positive_attack(train, spec.fraction, spec.seed)
        return Split(polluted, split.valid, split.test), request
    if spec.kind == "fake_users":
        n_fake = max(1, round(spec.fraction * len(np.unique(train.user))))
        polluted, request, _ = fake_user_attack(train, n_fake, seed=spec.seed)
        return Split(
            polluted,
            *(part.reindexed(polluted.users, polluted.items) for part in (split.valid, split.test)),
        ), request
    request = DeletionRequest(users=spec.users, pairs=spec.pairs)
    request.rows(train)  # an unknown user or item is named here, before anything trains
    if spec.pairs:
        held = member_mask(request.pair_keys(train), train.pair_keys)
        if not held.all():
            missing = [list(pair) for pair, there in zip(spec.pairs, held) if not there]
            raise ConfigError(
                f"deletion.pairs: {len(missing)} pair(s) are not in the training data, e.g. {missing[:3]}"
            )
    return split, request


def _train_settings(config: ExperimentConfig) -> dict[str, Any]:
    """Training settings for every method: on implicit feedback the loss is BPR unless one is given."""
    if config.data.protocol == "implicit":
        return {"loss": "bpr", **config.train}
    return config.train


def _method_config(config: ExperimentConfig, name: str) -> dict[str, Any]:
    return method_settings(
        name,
        config.method_options,
        model=config.model,
        train=_train_settings(config),
        executor=config.executor,
    )


def run_experiment(config: ExperimentConfig, log=print) -> dict[str, Any]:
    """Run every method; returns (and writes, if ``config.output``) a results document."""
    start = time.perf_counter()
    candidates = config.methods or list(available_methods("interactions"))
    unknown = [m for m in candidates if m not in available_methods()]
    if unknown:
        raise ConfigError(
            f"unknown method(s) {unknown}; available: {', '.join(available_methods('interactions'))}"
        )
    on_samples = [m for m in candidates if m not in available_methods("interactions")]
    if on_samples:  # the language-model methods run on prompt samples, in `bench apa` and the demo's second part
        raise ConfigError(
            f"method(s) {on_samples} work on prompt samples, not an interaction table; "
            f"use `recunlearn bench apa`, or one of: {', '.join(available_methods('interactions'))}"
        )
    names = retrain_first(candidates)
    for name in names:  # every method's settings are checked before anything loads or trains
        make_config(get_method(name).Config, _method_config(config, name), {})
    clean = prepare(config.data)
    split, request = make_deletion(config.deletion, clean)
    train = split.train
    removed = train.take(request.rows(train))
    if (
        config.deletion.kind == "label_flip"
    ):  # judge completeness on the true labels of the flipped rows
        removed = clean.train.take(request.rows(clean.train))
    log(f"data: {split.describe()}")
    log(f"deletion: {config.deletion.kind}, {len(removed):,} training rows")

    # The original model is fitted once (as 'retrain'); methods that update a trained model in place
    # (the approximate ones) start from a copy of it instead of training the same model again.
    reference = get_method("retrain")(_method_config(config, "retrain"))
    log("retrain: fitting the original model ...")
    reference.fit(train, split.valid)
    methods: dict[str, Unlearner] = {"retrain": reference}
    for name in names[1:]:
        cls = get_method(name)
        try:
            methods[name] = (
                cls.adopt(reference, _method_config(config, name))
                if hasattr(cls, "adopt")
                else None
            )
        except (TypeError, ValueError):  # different model or training settings: train its own
            methods[name] = None
    before_removed = reference.score_index(removed.user, removed.item)
    before_test = reference.score_index(split.test.user, split.test.item)
    remaining = train.drop(
        request.rows(train)
    )  # every row masks these training items, the original's too
    popular = MostPopular(remaining)
    baseline = {
        "method": "most-popular",
        "exact": None,
        **auc_report(popular, split.test, removed),
        **ranking_report(popular, remaining, split.test, config.k),
    }
    original = {
        "method": "original",
        "exact": None,
        "fit_seconds": round(reference.fit_seconds, 3),
        **auc_report(reference, split.test, removed),
        **ranking_report(reference, remaining, split.test, config.k),
    }

    rows: list[dict[str, Any]] = []
    seconds: list[float] = []  # each row's own forget time, unrounded, for the speed-ups
    for name in names:
        method = methods[name]
        if method is None:
            method = methods[name] = get_method(name)(_method_config(config, name))
            log(f"{name}: fitting ...")
            method.fit(train, split.valid)
        report = method.forget(request)
        rows.append(
            {
                "method": name,
                "exact": method.exact,
                "fit_seconds": round(method.fit_seconds, 3),
                "forget_seconds": round(report.seconds, 4),
                "changed_parts": len(report.changed_parts),
                "removed_rows": report.removed_rows,
                "removed_valid_rows": report.removed_valid_rows,
                "details": _jsonable(report.details),
            }
        )
        seconds.append(report.seconds)
        log(f"{name}: forget took {report.seconds:.3f} s")

    after_removed = reference.score_index(removed.user, removed.item)
    after_test = reference.score_index(split.test.user, split.test.item)
    original["dist_removed"] = float(
        np.mean(np.abs(before_removed.astype(np.float64) - after_removed))
    )
    original["dist_test"] = float(np.mean(np.abs(before_test.astype(np.float64) - after_test)))
    for row, own in zip(rows, seconds):
        method = methods[row["method"]]
        row.update(auc_report(method, split.test, removed))
        row.update(ranking_report(method, remaining, split.test, config.k))
        row["dist_removed"] = score_distance(method, reference, removed)
        row["dist_test"] = score_distance(method, reference, split.test)
        row["speedup"] = seconds[0] / max(own, 1e-9)  # rows[0] is retraining's
    rows[:0] = [baseline, original]
    document = {
        "data": split.describe(),
        "deletion": {
            "kind": config.deletion.kind,
            "rows": len(removed),
            "users": list(request.users),
            "pairs": [list(pair) for pair in request.pairs],
        },
        "rows": rows,
    }
    return finish(document, config, "experiment", start, markdown_table)


def _jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


COLUMNS = [
    ("method", "method", "{}"),
    ("auc", "AUC", "{:.4f}"),
    ("auc_or", "AUC OR", "{:.4f}"),
    ("auc_and", "AUC AND", "{:.4f}"),
    ("recall@20", "Recall@20", "{:.4f}"),
    ("ndcg@20", "NDCG@20", "{:.4f}"),
    ("mrr@20", "MRR@20", "{:.4f}"),
    ("coverage@20", "coverage@20", "{:.3f}"),
    ("dist_removed", "|Δ| removed", "{:.4f}"),
    ("dist_test", "|Δ| test", "{:.4f}"),
    ("forget_seconds", "forget s", "{:.3f}"),
    ("speedup", "speed-up", "{:.1f}x"),
]
LABEL_ONLY = ("auc", "auc_or", "auc_and")
"""Columns an implicit-feedback table leaves out: every held-out row is a positive, AUC is undefined."""


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the comparison table."""
    k = results["config"]["k"]
    implicit = results["config"]["data"].get("protocol") == "implicit"
    columns = [
        (key.replace("@20", f"@{k}"), title.replace("@20", f"@{k}"), fmt)
        for key, title, fmt in COLUMNS
        if not (implicit and key in LABEL_ONLY)
    ]
    cells = []
    for row in results["rows"]:
        cells.append(
            [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in columns]
        )
    return [title for _, title, _ in columns], cells


def markdown_table(results: dict[str, Any]) -> str:
    """The comparison table (see :func:`table_rows`)."""
    return markdown_grid(*table_rows(results))
