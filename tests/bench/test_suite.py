"""`bench all` and the scaling study: protocols found by convention, results and report kept together."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recunlearn.bench._protocol import BenchConfig
from recunlearn.bench._results import load_results
from recunlearn.bench.scaling import ScalingConfig
from recunlearn.bench.suite import Protocol, SuiteConfig, run_suite
from recunlearn.cli import _load_commands
from recunlearn.cli._app import app
from recunlearn.errors import ConfigError

SCALING = {"sizes": [2000, 4000], "methods": ["retrain"]}


@pytest.mark.slow
def test_quick_suite_keeps_results_and_reports(tmp_path):
    config = SuiteConfig(
        protocols=["exact", "scaling", "no-such-protocol"],
        out=str(tmp_path),
        overrides={"exact": {"methods": ["retrain", "sisa"]}, "scaling": SCALING},
    )
    suite = run_suite(config, log=lambda message: None)
    status = {r["protocol"]: r["status"] for r in suite.rows}
    assert status == {"exact": "ok", "scaling": "ok", "no-such-protocol": "missing"}
    assert suite.summary["missing"] == ["no-such-protocol"] and suite.summary["failed"] == []
    assert json.loads((tmp_path / "suite-quick.json").read_text())["rows"] == suite.rows

    exact = load_results(tmp_path / "exact" / "quick-cpu.json")
    assert {r["method"] for r in exact.rows} == {"retrain", "sisa"} and exact.command
    scaling = load_results(tmp_path / "scaling" / "quick-cpu.json")
    assert [(r["method"], r["n_interactions"]) for r in scaling.rows] == [
        ("retrain", 2000),
        ("retrain", 4000),
    ]
    assert all(
        r["fit_seconds"] > 0 and r["forget_seconds"] > 0 and r["process_peak_mb"] > 50
        for r in scaling.rows
    )
    assert set(scaling.summary["slopes"]["retrain"]) >= {"fit_seconds", "forget_seconds"}
    assert scaling.seeds == {"data_seed": 0, "deletion_seed": 0}
    assert scaling.environment["hardware"]["cpu_count"] >= 1

    page = (tmp_path / "report-quick" / "report.html").read_text()
    assert "exact: quick-cpu.json" in page and "scaling: quick-cpu.json" in page
    assert page.count("data:image/png;base64,") >= 3  # utility vs time, speed-up, scaling curves


def test_a_failing_protocol_is_recorded_and_the_others_run(tmp_path):
    config = SuiteConfig(
        protocols=["scaling", "exact"],
        out=str(tmp_path),
        overrides={"scaling": {"methods": ["no-such-method"]}, "exact": {"n_shards": [0]}},
    )
    suite = run_suite(config, log=lambda message: None)
    assert [r["status"] for r in suite.rows] == ["failed", "failed"]
    assert "no-such-method" in suite.rows[0]["detail"] and suite.summary["failed"] == [
        "scaling",
        "exact",
    ]
    assert suite.summary["report"] is None


class FakeBenchConfig(BenchConfig):
    """A protocol whose results file is not one (to check the suite says so)."""


class OtherBenchConfig(FakeBenchConfig):
    """A second config in the module: the runner's annotation decides."""


def run_fake_benchmark(config: FakeBenchConfig, log=print):
    Path(config.output).parent.mkdir(parents=True)
    Path(config.output).write_text(json.dumps({"runs": []}))


def test_unreadable_results_are_a_failure(tmp_path, monkeypatch):
    module = types.ModuleType("recunlearn.bench.fake")
    module.FakeBenchConfig, module.OtherBenchConfig, module.run_fake_benchmark = (
        FakeBenchConfig,
        OtherBenchConfig,
        run_fake_benchmark,
    )
    monkeypatch.setitem(sys.modules, "recunlearn.bench.fake", module)
    assert Protocol("fake").config_class is FakeBenchConfig
    suite = run_suite(SuiteConfig(protocols=["fake"], out=str(tmp_path)), log=lambda m: None)
    assert (
        suite.rows[0]["status"] == "failed"
        and "needs a top-level 'rows' list" in suite.rows[0]["detail"]
    )


def test_protocols_are_found_by_convention(tmp_path):
    exact = Protocol("exact")
    assert exact.config_class.__name__ == "ExactBenchConfig"
    quick = exact.config("quick", tmp_path, {})
    assert quick.output == str(tmp_path / "exact" / "quick-cpu.json")
    assert quick.data.dataset == "synthetic"
    full = exact.config("full", tmp_path, {})
    assert full.output == str(tmp_path / "exact" / "full-cpu.json")
    assert full.data.dataset == "ml-100k", "the full protocol reads the embedded MovieLens-100K"
    assert Protocol("scaling").config_class is ScalingConfig
    assert (
        Protocol("ifru").config_class.__name__ == "IFRUBenchConfig"
    )  # its module also has a scaling config
    with pytest.raises(ConfigError, match="no module recunlearn.bench.nope"):
        Protocol("nope")
    with pytest.raises(ConfigError, match="overrides for protocols that do not run"):
        run_suite(SuiteConfig(protocols=["exact"], overrides={"apa": {}}, out=str(tmp_path)))


def test_cli_bench_all_reports_missing_protocols(tmp_path, monkeypatch):
    """A default protocol that is not installed is recorded; one named with -p must exist (tests/test_cli.py)."""
    monkeypatch.setattr("recunlearn.bench.suite.PROTOCOLS", ("nope",))
    _load_commands()
    result = CliRunner().invoke(app, ["bench", "all", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "nope: missing" in " ".join(result.output.split())
    assert load_results(tmp_path / "suite-quick.json").rows[0]["status"] == "missing"


def test_executor_benchmark_records_runs_and_identity(tmp_path, monkeypatch):
    from recunlearn.bench.scaling import ExecutorBenchConfig, run_executors_benchmark

    monkeypatch.setenv(
        "RECUNLEARN_WORKERS", "1"
    )  # the pool's logic without its start-up (tested elsewhere)
    out = tmp_path / "executors" / "mf.json"
    results = run_executors_benchmark(
        ExecutorBenchConfig.quick(n_interactions=4000, output=str(out)), log=lambda m: None
    )
    assert [(r["executor"], r["pool"]) for r in results["rows"]] == [
        ("inprocess", "-"),
        ("inprocess", "-"),
        ("process", "cold"),
        ("process", "warm"),
    ]
    assert all(r["identical_to_inprocess"] and r["fit_seconds"] > 0 for r in results["rows"])
    assert results["rows"][0]["speedup_vs_inprocess"] == 1.0
    assert (
        load_results(out).protocol == "executors"
        and "same models" in out.with_suffix(".md").read_text()
    )
