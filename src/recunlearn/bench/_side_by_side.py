"""What the protocols that compare methods on one request share: one original model, every method
started from it (or fitted on the same data), each asked to forget the same request; and their runs'
rows as one flat table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from recunlearn.data import DeletionRequest, Interactions
from recunlearn.unlearn import Unlearner, UnlearningReport, get_method


def fit_and_forget(
    names: list[str],
    settings: Callable[[str], dict[str, Any]],
    train: Interactions,
    valid: Interactions | None,
    request: DeletionRequest,
    log,
) -> tuple[Unlearner, dict[str, Unlearner], dict[str, UnlearningReport]]:
    """``names[0]`` must be 'retrain': it is fitted once and is the reference. Methods that update a
    trained model start from a copy of it (``adopt``), so their ``forget`` is the only cost they add;
    the others fit on the same data. Returns a scoring copy of the model before forgetting, every
    method (retrained afterwards) and every report."""
    reference = get_method("retrain")(settings("retrain")).fit(train, valid)
    original = get_method("finetune").adopt(
        reference
    )  # a copy that only scores: the model before forgetting
    methods: dict[str, Unlearner] = {}
    for name in names[1:]:
        cls = get_method(name)
        if hasattr(cls, "adopt"):
            methods[name] = cls.adopt(reference, settings(name))
        else:
            log(f"{name}: fitting ...")
            methods[name] = cls(settings(name)).fit(train, valid)
    reports = {"retrain": reference.forget(request)}
    log(f"retrain: {reports['retrain'].seconds:.2f} s")
    for name, method in methods.items():
        reports[name] = method.forget(request)
        log(f"{name}: forget {reports[name].seconds:.4f} s")
    return original, {"retrain": reference, **methods}, reports


def flat_rows(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per (run, method), led by the run's ``keys`` (model, seed, ...) and without the
    method's details: what `recunlearn report` reads."""
    return [
        {**{key: run[key] for key in keys}, **{k: v for k, v in row.items() if k != "details"}}
        for run in runs
        for row in run["rows"]
    ]
