"""Benchmark suites: every protocol in one command, results and a report kept together.

``recunlearn bench all --quick`` runs each protocol's quick preset (minutes on 2 cores) into
``<out>/<protocol>/quick-<hardware>.json``; ``--full`` runs their full defaults (hours on 2 cores)
into ``full-<hardware>.json``. Then one report covers them all, and ``suite-<mode>.json`` lists what
ran, how long it took, and which protocols were missing or failed.

A protocol is a module ``recunlearn.bench.<name>`` with a
:class:`~recunlearn.bench._protocol.BenchConfig` subclass and a ``run_<name>_benchmark(config, log)``
function (see :mod:`recunlearn.bench._protocol`). Protocols are looked up when the suite runs, so
one that is not installed or not written yet is reported as missing, not an import error.
"""

from __future__ import annotations

import importlib
import inspect
import time
import traceback
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recunlearn.bench._protocol import BenchConfig, hardware_tag
from recunlearn.bench._results import ResultsFile, load_results, write_results
from recunlearn.bench.report import write_report
from recunlearn.errors import ConfigError, RecUnlearnError

PROTOCOLS = ("exact", "ifru", "apa", "scaling")
"""Protocols of `bench all`, in the order they run."""


class SuiteConfig(BaseModel):
    """What `recunlearn bench all` runs."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["quick", "full"] = "quick"
    """'quick': each protocol's quick preset (minutes); 'full': their full defaults (hours on 2 cores)."""
    protocols: list[str] = Field(default_factory=lambda: list(PROTOCOLS))
    """Protocols to run, in order."""
    out: str = "runs/bench-all"
    """Folder of the results: <out>/<protocol>/<mode>-<hardware>.json, plus <out>/suite-<mode>.json and
    <out>/report-<mode>/."""
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Settings per protocol on top of the preset, e.g. {scaling = {sizes = [100000, 1000000]}}."""


class Protocol:
    """A protocol module's entry points, found by convention (see the module docstring)."""

    def __init__(self, name: str):
        self.name = name
        try:
            self.module = importlib.import_module(f"recunlearn.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"recunlearn.bench.{name}", "recunlearn.bench"):
                raise  # the protocol exists but one of its dependencies is missing: say so
            raise ConfigError(
                f"benchmark protocol {name!r} is not available (no module recunlearn.bench.{name})"
            ) from None
        self.runner = getattr(self.module, f"run_{name}_benchmark", None)
        if not callable(self.runner):
            raise ConfigError(
                f"recunlearn.bench.{name} has no run_{name}_benchmark(config, log) function"
            )
        self.config_class = self._config_class()

    def _config_class(self) -> type[BenchConfig]:
        """The type of the runner's first parameter; else the module's one ``*BenchConfig`` (or ``*Config``)
        that is a :class:`BenchConfig`."""
        hints = typing.get_type_hints(self.runner)
        first = next(iter(inspect.signature(self.runner).parameters), None)
        annotated = hints.get(first)
        if isinstance(annotated, type) and issubclass(annotated, BenchConfig):
            candidates = [annotated]
        else:
            candidates = [
                v
                for k, v in vars(self.module).items()
                if isinstance(v, type)
                and issubclass(v, BenchConfig)
                and v.__module__ == self.module.__name__
                and k.endswith("Config")
            ]
            candidates = [c for c in candidates if c.__name__.endswith("BenchConfig")] or candidates
        if len(candidates) != 1:
            raise ConfigError(
                f"recunlearn.bench.{self.name} needs one BenchConfig class; found "
                f"{[c.__name__ for c in candidates]}"
            )
        return candidates[0]

    def config(self, mode: str, out: Path, overrides: dict[str, Any]) -> BenchConfig:
        """The preset of ``mode`` writing <out>/<protocol>/<mode>-<hardware>.json."""
        values = {"output": str(out / self.name / f"{mode}-{hardware_tag()}.json"), **overrides}
        if mode == "quick":
            return self.config_class.quick(**values)
        return self.config_class.model_validate(values)


def run_suite(config: SuiteConfig, log=print) -> ResultsFile:
    """Run the protocols one after another; a failure is recorded and the others still run."""
    out = Path(config.out)
    unknown_overrides = sorted(set(config.overrides) - set(config.protocols))
    if unknown_overrides:
        raise ConfigError(f"overrides for protocols that do not run: {unknown_overrides}")
    try:  # a folder that cannot be written is found now, not after hours of runs
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"results folder {out}: cannot create it ({exc.strerror or exc})"
        ) from None
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for name in config.protocols:
        row: dict[str, Any] = {"protocol": name}
        began = time.perf_counter()
        try:
            protocol = Protocol(name)
        except ConfigError as exc:
            rows.append({**row, "status": "missing", "detail": str(exc)})
            log(f"{name}: skipped, {exc}")
            continue
        try:
            protocol_config = protocol.config(config.mode, out, config.overrides.get(name, {}))
            log(f"{name}: running the {config.mode} preset -> {protocol_config.output}")
            protocol.runner(
                protocol_config, log=lambda message, name=name: log(f"  [{name}] {message}")
            )
        except Exception as exc:  # a broken protocol must not cost the others their results
            rows.append(
                {
                    **row,
                    "status": "failed",
                    "detail": f"{type(exc).__name__}: {exc}",
                    "seconds": round(time.perf_counter() - began, 2),
                }
            )
            log(f"{name}: FAILED\n{traceback.format_exc()}")
            continue
        rows.append(
            {
                **row,
                "status": "ok",
                "results": str(protocol_config.output),
                "seconds": round(time.perf_counter() - began, 2),
            }
        )
    readable = []
    for row in rows:
        if row["status"] == "ok":
            try:
                load_results(row["results"])
                readable.append(Path(row["results"]))
            except RecUnlearnError as exc:
                row.update(status="failed", detail=f"results unreadable: {exc}")
                log(f"{row['protocol']}: FAILED, {exc}")
    report = write_report(readable, out / f"report-{config.mode}") if readable else None
    summary = {
        "report": str(report["html"]) if report else None,
        "missing": [r["protocol"] for r in rows if r["status"] == "missing"],
        "failed": [r["protocol"] for r in rows if r["status"] == "failed"],
    }
    return write_results(
        out / f"suite-{config.mode}.json",
        rows,
        config,
        protocol="suite",
        summary=summary,
        seconds=round(time.perf_counter() - start, 2),
    )
