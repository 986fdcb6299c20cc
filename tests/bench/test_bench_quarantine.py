import json

from typer.testing import CliRunner

from recunlearn.bench.quarantine import QuarantineBenchConfig, run_quarantine_benchmark
from recunlearn.cli import _load_commands, app


def test_quick_quarantine_benchmark_repairs_to_forgets_model(tmp_path):
    out = tmp_path / "quick.json"
    results = run_quarantine_benchmark(
        QuarantineBenchConfig.quick(output=str(out), methods=["receraser"]), log=lambda m: None
    )
    rows = {(r["method"], r["request"]): r for r in results["rows"]}
    assert set(rows) == {(m, k) for m in ("receraser", "apa") for k in ("user", "interaction")}
    for key, row in rows.items():
        assert row["exact"] and len(row["quarantined"]) == 1
        assert row["quarantine_seconds"] < row["forget_seconds"]
        assert row["repair_equals_forget"], (key, row)
        assert row["after_repair"] == row["after_forget"]
    document = json.loads(out.read_text())
    assert document["protocol"] == "quarantine" and document["environment"]["commit"] is not None
    assert document["rows"] and out.with_suffix(".md").is_file()


def test_cli_bench_quarantine_quick_says_when_sisa_serves_popularity_for_a_user(tmp_path):
    _load_commands()
    result = CliRunner().invoke(
        app, ["bench", "quarantine", "--quick", "-m", "sisa", "--no-apa", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    [out] = tmp_path.glob("quick-*.json")
    document = json.loads(out.read_text())
    assert document["protocol"] == "quarantine" and document["environment"]["versions"]
    rows = document["rows"]
    assert [r["request"] for r in rows] == ["user", "interaction"]
    user, interaction = rows  # SISA's random shards each hold some of the user's rows
    assert user["serving"] == "popularity" and len(user["quarantined"]) == user["n_shards"]
    assert user["exact"] and user["repair_equals_forget"] and interaction["repair_equals_forget"]
    assert interaction["serving"] == "parts"
    assert "popularity served" in out.with_suffix(".md").read_text()
