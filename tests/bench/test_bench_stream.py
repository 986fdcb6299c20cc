import json

from typer.testing import CliRunner

from recunlearn.bench.stream import StreamBenchConfig, refresh_policy, run_stream_benchmark
from recunlearn.cli import _load_commands, app


def test_quick_stream_exact_methods_meet_retraining_and_quarantine_ends_as_forget(tmp_path):
    out = tmp_path / "quick.json"
    config = StreamBenchConfig.quick(
        output=str(out), streams=["users"], methods=["ifru", "receraser", "quarantine"]
    )
    results = run_stream_benchmark(config, log=lambda m: None)
    stream = results["streams"]["users"]
    curves = stream["curves"]
    assert stream["checkpoints"] == [1, 3, 8] and stream["requests"] == 8
    assert set(curves) == {
        "retrain",
        "ifru",
        "receraser",
        "quarantine",
        "ifru/1",
        "ifru/2",
        "ifru/4",
    }
    assert all(p["recall_gap"] == 0 and p["dist_test"] == 0 for p in curves["retrain"])
    assert all(p["dist_test"] == 0 for p in curves["ifru/1"]), "retrained after every request"
    assert curves["ifru"][-1]["dist_test"] > 0, "IFRU alone drifts from retraining"
    # RecEraser forgetting one by one and quarantine + repair end on the same exact model
    assert curves["quarantine"][-1]["recall"] == curves["receraser"][-1]["recall"]
    assert curves["quarantine"][-1]["dist_test"] == curves["receraser"][-1]["dist_test"]
    seconds = [p["seconds"] for p in curves["ifru"]]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert stream["refresh_policy"]["policy"] is not None  # ifru/1 always holds the bound
    assert {(r["stream"], r["method"], r["requests"]) for r in results["rows"]} == {
        ("users", name, n) for name in curves for n in (1, 3, 8)
    }
    assert out.is_file() and (tmp_path / "quick-users.png").is_file()
    assert "![quick-users.png](quick-users.png)" in out.with_suffix(".md").read_text()


def test_refresh_policy_is_the_cheapest_within_the_bound_counting_drift_before_a_retraining():
    config = StreamBenchConfig.quick(refresh_every=[1, 2, 4])

    def curve(gaps, seconds):
        return [
            {"requests": n, "recall_gap": g, "seconds": s}
            for n, g, s in zip([1, 3, 8], gaps, seconds)
        ]

    curves = {
        "retrain": curve([0, 0, 0], [1, 3, 8]),
        "ifru": curve([0.001, 0.004, 0.02], [0.1, 0.3, 0.8]),
        "ifru/1": curve([0, 0, 0], [1, 3, 8]),
        "ifru/2": curve([0.001, 0.001, 0], [0.1, 1, 4]),
        "ifru/4": curve([0.001, 0.004, 0], [0.1, 0.3, 2]),  # cheapest, but IFRU drifts 0.004 by 3
    }
    assert refresh_policy(config, curves)["policy"] == "ifru/4"
    curves["ifru"][1]["recall_gap"] = 0.006  # drift past the bound before the fourth request
    assert refresh_policy(config, curves)["policy"] == "ifru/2"


def test_cli_bench_stream_quick(tmp_path):
    _load_commands()
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "stream",
            "--quick",
            "-m",
            "ifru",
            "--stream",
            "attack",
            "--refresh-every",
            "2",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    [out] = tmp_path.glob("quick-*.json")
    document = json.loads(out.read_text())
    assert document["protocol"] == "stream" and document["environment"]["versions"]
    streams = document["summary"]["streams"]
    assert list(streams) == ["attack"]
    assert set(streams["attack"]["curves"]) == {"retrain", "ifru", "ifru/2"}
    assert {r["method"] for r in document["rows"]} == {"retrain", "ifru", "ifru/2"}
    assert out.with_name(f"{out.stem}-attack.png").is_file()
    assert "attack stream" in result.output
