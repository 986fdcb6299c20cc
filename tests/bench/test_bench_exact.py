import json

from typer.testing import CliRunner

from recunlearn.bench.exact import ExactBenchConfig, run_exact_benchmark
from recunlearn.cli import _load_commands, app


def test_quick_exact_benchmark_measures_every_method_and_deletion_set(tmp_path):
    out = tmp_path / "exact.json"
    results = run_exact_benchmark(ExactBenchConfig.quick(output=str(out)), log=lambda m: None)
    methods = [(r["method"], r["n_shards"]) for r in results["rows"]]
    assert methods == [("retrain", None), ("sisa", 2), ("receraser", 2), ("grapheraser", 2)]
    for row in results["rows"]:
        for kind, n in (("users", 3), ("random", 10)):
            measured = row[kind]
            assert measured["request_seconds"] > 0 and measured["batch_seconds"] > 0
            assert 0 <= measured["after_recall@20"] <= 1 and measured["removed_rows"] >= n
        if row["method"] != "retrain":
            assert 1 <= row["users"]["request_retrained_shards"] <= 2
            assert row["partition"]["n_shards"] == 2 and sum(row["partition"]["sizes"]) > 0
    retrain = results["rows"][0]
    assert retrain["users"]["request_speedup"] == 1.0
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))
    assert "| receraser | 2 |" in out.with_suffix(".md").read_text()


def test_cli_bench_exact_quick(tmp_path):
    _load_commands()
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["bench", "exact", "--quick", "-m", "sisa", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert any(line.split()[:2] == ["sisa", "2"] for line in result.output.splitlines() if line)
    assert "| sisa | 2 |" in (out / "quick-cpu.md").read_text()
