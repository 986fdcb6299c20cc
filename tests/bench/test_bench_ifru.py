import json

from typer.testing import CliRunner

from recunlearn.bench.ifru import IFRUBenchConfig, run_ifru_benchmark
from recunlearn.cli import _load_commands, app


def test_quick_ifru_benchmark_measures_every_method(tmp_path):
    out = tmp_path / "ifru.json"
    results = run_ifru_benchmark(IFRUBenchConfig.quick(output=str(out)), log=lambda m: None)
    assert [(r["model"], r["fraction"]) for r in results["runs"]] == [
        ("mf", 0.05),
        ("lightgcn", 0.05),
    ]
    for run in results["runs"]:
        names = [row["method"] for row in run["rows"]]
        assert names == ["original", "retrain", "sisa", "if", "scif", "finetune", "neggrad", "ifru"]
        rows = {row["method"]: row for row in run["rows"]}
        assert rows["retrain"]["dist_test"] == 0 and rows["retrain"]["param_distance"] == 0
        assert rows["original"]["dist_removed"] > 0, (
            "the original model still knows the flipped rows"
        )
        assert rows["retrain"]["speedup"] == 1.0
        for name in ("if", "scif", "ifru", "finetune", "neggrad"):
            assert rows[name]["forget_seconds"] > 0 and 0 <= rows[name]["mia_removed"] <= 1
            assert 0 <= rows[name]["auc"] <= 1
        assert rows["ifru"]["details"]["kept_users"] > 0
    saved = json.loads(out.read_text())
    assert saved["summary"]["runs"][0]["rows"][0]["method"] == "original"
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))
    markdown = out.with_suffix(".md").read_text()
    assert "| ifru |" in markdown
    header, rule = [line for line in markdown.splitlines() if line.startswith("|")][:2]
    cells = [c for c in header.replace("\\|", "").split("|")[1:-1]]
    assert "\\|Δ\\| removed" in header and len(cells) == rule.count("---"), (
        "the header splits into its columns"
    )


def test_cli_bench_ifru_quick(tmp_path):
    _load_commands()
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["bench", "ifru", "--quick", "--model", "mf", "-m", "ifru", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert any(line.startswith("ifru ") for line in result.output.splitlines())
    assert "| ifru |" in (out / "quick-cpu.md").read_text() and (out / "quick-cpu.json").is_file()


def test_scaling_run_times_ifru_and_retraining(tmp_path):
    from recunlearn.bench.ifru import IFRUScalingConfig, run_ifru_scaling

    config = IFRUScalingConfig(
        sizes=[2000],
        removed=20,
        model={"kind": "lightgcn", "dim": 8},
        train={"max_epochs": 3, "patience": 2, "batch_size": 512},
        output=str(tmp_path / "s.json"),
    )
    row = run_ifru_scaling(config, log=lambda m: None)["rows"][0]
    assert row["removed_rows"] == 20 and row["ifru_seconds"] > 0 and row["retrain_seconds"] > 0
    assert 0 < row["kept_rows"] <= row["users"] + row["items"]
    assert row["ifru_peak_mib"] is not None and row["retrain_peak_mib"] is not None
    assert row["influence_seconds"] > 0 and row["bookkeeping_seconds"] > 0
    assert row["spillover_rows"] > 0 and row["hessian_rows"] > 0
    assert "| 2,000 |" in (tmp_path / "s.md").read_text()


def test_scaling_run_can_remove_whole_users(tmp_path):
    from recunlearn.bench.ifru import IFRUScalingConfig, run_ifru_scaling

    config = IFRUScalingConfig(
        sizes=[2000],
        removal="users",
        removed=2,
        model={"kind": "lightgcn", "dim": 8},
        train={"max_epochs": 2, "patience": 2, "batch_size": 512},
        output=None,
    )
    row = run_ifru_scaling(config, log=lambda m: None)["rows"][0]
    assert row["removal"] == "users" and row["removed_rows"] > 2  # every row of two users
    assert (
        row["seeds"] > 2 and row["kept_rows"] >= row["seeds"] - 2
    )  # the users themselves are reset, not kept


def test_peak_memory_sees_what_a_block_allocates_on_cpu():
    import mmap

    import numpy as np

    from recunlearn.bench._memory import PeakMemory

    with PeakMemory("cpu") as small:
        np.ones(1000).sum()
    with PeakMemory(
        "cpu"
    ) as large:  # fresh pages (a mapping of its own, not freed heap), all touched
        block = mmap.mmap(-1, 160 * 2**20)
        np.frombuffer(block, np.uint8)[:] = 1
    block.close()
    assert large.mib is not None and large.mib > 120
    assert small.mib is not None and small.mib < large.mib - 100


def test_speedups_below_ten_keep_two_significant_figures():
    from recunlearn.bench.ifru import speedup_text

    assert [speedup_text(x) for x in (1449.2, 12.4, 3.21, 0.334)] == [
        "1449x",
        "12x",
        "3.2x",
        "0.33x",
    ]
