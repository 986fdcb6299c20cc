"""`bench implicit`: every method on BPR models, a most-popular row, the attack's recovery."""

from __future__ import annotations

import json

import pytest

from recunlearn.bench.implicit import ImplicitBenchConfig, markdown_table, run_implicit_benchmark
from recunlearn.errors import ConfigError


@pytest.fixture(scope="module")
def results():
    config = ImplicitBenchConfig.quick(models=["mf"], methods=["retrain", "ifru", "sisa"])
    return run_implicit_benchmark(config, log=lambda _: None)


def test_every_run_has_most_popular_original_and_each_method(results):
    assert [run["deletion"] for run in results["runs"]] == [
        "random",
        "users",
        "fake_positives",
        "fake_users",
    ]
    for run in results["runs"]:
        assert [row["method"] for row in run["rows"]] == [
            "most-popular",
            "original",
            "retrain",
            "ifru",
            "sisa",
        ]
        retrain = run["rows"][2]
        assert retrain["dist_removed"] == 0.0 and retrain["speedup"] == pytest.approx(1.0)
        assert 0 <= run["rows"][0]["recall@20"] <= 1
    assert results["runs"][1]["request"]["users"] == 2
    ifru = results["runs"][0]["rows"][3]
    assert ifru["details"]["objective"] == "bpr" and not ifru["exact"]


def test_the_attack_row_says_how_much_each_forget_recovered(results):
    for attack in results["runs"][2:]:
        original, retrain = attack["rows"][1], attack["rows"][2]
        assert "attack_recovered" in retrain and "attack_recovered" not in attack["rows"][0]
        if retrain["recall@20"] > original["recall@20"]:
            assert (
                retrain["attack_recovered"] == pytest.approx(1.0)
                and original["attack_recovered"] == 0.0
            )
    assert "attack recovered" in markdown_table(results)


def test_more_users_than_the_data_has_are_refused_before_training():
    config = ImplicitBenchConfig.quick(models=["mf"], deletions=["users"], users=10_000)
    with pytest.raises(ConfigError, match="cannot delete 10000 users"):
        run_implicit_benchmark(config, log=lambda _: None)


def test_the_command_writes_its_results(tmp_path):
    from typer.testing import CliRunner

    from recunlearn.cli import _load_commands
    from recunlearn.cli._app import app

    _load_commands()
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "implicit",
            "--quick",
            "--model",
            "mf",
            "--deletion",
            "random",
            "-m",
            "retrain",
            "-m",
            "scif",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "quick-cpu.json").read_text())
    assert document["summary"]["runs"][0]["rows"][3]["method"] == "scif"
    assert "most-popular" in result.output
