"""What every benchmark protocol shares, so that a protocol says only what it measures.

A protocol is a module of this package with

- a :class:`BenchConfig` subclass: its settings, a ``quick()`` preset (:meth:`BenchConfig.quick_values`)
  and ``output``, the results file (None writes nothing: the library never writes unless asked);
- ``run_<name>_benchmark(config, log)``: it checks every method's settings with :func:`check_methods`
  before anything loads or trains, builds each method's settings with :func:`method_settings`, measures,
  and hands its results document (a dict with ``rows``) to :func:`finish`;
- ``markdown_table(document)``: its table, from a run's document or from its results file
  (:func:`load_document`), so the docs' tables are generated from the files they cite.

:func:`finish` records the run's wall time, command line and environment (one :func:`environment` for
every protocol) and writes one results-file format (:mod:`recunlearn.bench._results`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from recunlearn.bench._results import (
    ResultsFile,
    command_line,
    environment,
    load_results,
    make_results,
)
from recunlearn.errors import ConfigError
from recunlearn.unlearn import get_method
from recunlearn.unlearn.base import make_config

SUMMARY_KEYS = ("config", "rows", "seconds", "environment", "command")
"""Keys of a results document that the results file keeps as its own fields; the rest go to its summary."""


class BenchConfig(BaseModel):
    """Settings every protocol has: where its results go."""

    model_config = ConfigDict(extra="forbid")
    output: str | None = None
    """Results JSON (a markdown table beside it, same name, ``.md``); None writes nothing."""

    @classmethod
    def quick_values(cls) -> dict[str, Any]:
        """The quick preset's settings (a run of seconds or minutes, for tests and smoke checks)."""
        return {}

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """The quick preset, with ``overrides`` on top."""
        return cls.model_validate({**cls.quick_values(), **overrides})

    def with_values(self, **values: Any) -> Self:
        """A copy with ``values`` replaced, validated like the original (a command's options on top)."""
        return self.model_validate({**self.model_dump(), **values})


def hardware_tag() -> str:
    """'cuda' or 'cpu': where a run's models go, as results file names record it."""
    from recunlearn.train.runtime import resolve_device

    return "cuda" if resolve_device().type == "cuda" else "cpu"


def method_settings(
    name: str,
    options: Mapping[str, Mapping[str, Any]],
    **shared: Any,
) -> dict[str, Any]:
    """A method's settings: its own ``options[name]``, then every ``shared`` setting (model, train,
    n_shards, backbone, ...) that its configuration has and that its own options leave unset; a
    ``shared`` value of None is left out."""
    fields = get_method(name).Config.model_fields
    values = dict(options.get(name, {}))
    for key, value in shared.items():
        if key in fields and value is not None:
            values.setdefault(key, value)
    return values


def retrain_first(methods: Iterable[str]) -> list[str]:
    """``methods`` with 'retrain' first, added if missing: it always runs, the others' reference."""
    return ["retrain"] + [m for m in methods if m != "retrain"]


def check_methods(
    protocol: str,
    names: list[str],
    allowed: Iterable[str],
    settings: Callable[[str], Iterable[dict[str, Any]]],
    runs_on: str = "methods on interactions",
) -> None:
    """Refuse, before anything loads or trains, a method ``protocol`` cannot run (one not in ``allowed``)
    and any of the ``settings(name)`` a method's configuration refuses."""
    allowed = list(allowed)
    for name in names:
        cls = get_method(name)  # an unknown name is refused here, with the registered ones
        if name not in allowed:
            raise ConfigError(
                f"bench {protocol} runs {runs_on} ({', '.join(allowed)}), not {name!r}"
            )
        for values in settings(name):
            make_config(cls.Config, values, {})


def finish(
    document: dict[str, Any],
    config: BenchConfig,
    protocol: str,
    start: float,
    markdown: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """``document`` with the run's configuration, wall time (since ``start``), environment and command
    line; written to ``config.output`` (with ``markdown(document)`` beside it) when that is set."""
    document = {
        "config": config.model_dump(mode="json"),
        **document,
        "seconds": round(time.perf_counter() - start, 2),
        "environment": environment(),
        "command": command_line(),
    }
    if config.output:
        to_results(document, protocol).write(config.output, markdown(document))
    return document


def to_results(document: dict[str, Any], protocol: str) -> ResultsFile:
    """A results document as a results file: its rows and configuration, everything else as summary."""
    results = make_results(
        document["rows"],
        document["config"],
        document["command"],
        protocol=protocol,
        summary={k: v for k, v in document.items() if k not in SUMMARY_KEYS},
        seconds=document["seconds"],
    )
    return results.model_copy(update={"environment": document["environment"]})


def load_document(path: str | Path) -> dict[str, Any]:
    """A results file read back as the document its protocol's ``markdown_table`` renders."""
    results = load_results(path)
    return {
        **results.summary,
        "config": results.config,
        "rows": results.rows,
        "seconds": results.seconds,
        "environment": results.environment,
        "command": results.command,
    }
