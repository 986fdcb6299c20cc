"""The command line: help everywhere, experiments from TOML, clear errors on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recunlearn.cli import _load_commands, main
from recunlearn.cli._app import app
from recunlearn.testing import FAST_TRAIN
from tests.conftest import make_tiny

_load_commands()
runner = CliRunner()


def write_atomic(data, folder):
    """The tiny data as RecBole atomic files, a format the loaders read."""
    folder.mkdir()
    frame = data.to_frame()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{r.user}\t{r.item}\t{r.rating:g}\t{r.timestamp}" for r in frame.itertuples()]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("args", [[], ["demo"], ["run"], ["methods"], ["data", "info"], ["bench"]])
def test_help_everywhere(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_methods_lists_the_registry():
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0
    assert "retrain" in result.output and "sisa" in result.output


def test_data_info_on_shared_movielens():
    from tests.conftest import ml100k_path

    result = runner.invoke(app, ["data", "info", str(ml100k_path()), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["rows"], info["users"], info["items"], info["titles"]) == (100000, 943, 1682, True)


def test_run_experiment_from_toml(tmp_path):
    folder = write_atomic(make_tiny(), tmp_path / "tiny")
    out = tmp_path / "results.json"
    train = ", ".join(f"{k} = {v}" for k, v in FAST_TRAIN.items())
    config = tmp_path / "exp.toml"
    config.write_text(f"""
methods = ["sisa", "finetune"]
output = "{out}"
train = {{ {train} }}
method_options = {{ sisa = {{ n_shards = 2 }} }}
[data]
dataset = "{folder}"
k_core = 1
[deletion]
kind = "users"
count = 2
""")
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert [r["method"] for r in results["rows"]] == [
        "most-popular",
        "original",
        "retrain",
        "sisa",
        "finetune",
    ]
    popular, original, retrain, sisa, finetune = results["rows"]
    assert 0 <= popular["recall@20"] <= 1
    assert retrain["dist_removed"] == 0.0 and retrain["dist_test"] == 0.0
    assert original["dist_removed"] > 0, "forgetting two users changes the retrained model"
    assert sisa["dist_test"] > 0 and sisa["removed_rows"] == retrain["removed_rows"] > 0
    # fine-tuning starts from the original model instead of training it again
    assert finetune["fit_seconds"] == original["fit_seconds"] == retrain["fit_seconds"]
    assert 0.5 < retrain["auc"] <= 1.0
    assert out.with_suffix(".md").read_text().startswith("| method | AUC")


def write_clicks(tmp_path):
    """The tiny data as a user,item CSV: implicit feedback with no rating column."""
    frame = make_tiny().to_frame()
    path = tmp_path / "clicks.csv"
    frame[["user", "item"]].to_csv(path, index=False)
    return path


def test_a_user_item_file_trains_and_forgets_named_users_through_toml(tmp_path):
    from recunlearn.bench.experiment import DataSpec, prepare

    clicks = write_clicks(tmp_path)
    train = prepare(
        DataSpec(dataset=str(clicks), protocol="implicit", threshold="none", k_core=2)
    ).train
    pair = [str(train.users.ids[train.user[0]]), str(train.items.ids[train.item[0]])]
    out = tmp_path / "results.json"
    settings = ", ".join(f"{k} = {v}" for k, v in FAST_TRAIN.items())
    config = tmp_path / "clicks.toml"
    config.write_text(f"""
methods = ["ifru", "sisa"]
output = "{out}"
train = {{ {settings} }}
method_options = {{ sisa = {{ n_shards = 2 }} }}
[data]
dataset = "{clicks}"
protocol = "implicit"
threshold = "none"
k_core = 2
[deletion]
kind = "named"
users = ["u3", "u7"]
pairs = [["{pair[0]}", "{pair[1]}"]]
""")
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    deletion = results["summary"]["deletion"]
    assert deletion["users"] == ["u3", "u7"] and deletion["pairs"] == [pair]
    assert results["config"]["data"]["threshold"] is None
    rows = {r["method"]: r for r in results["rows"]}
    assert rows["ifru"]["details"]["objective"] == "bpr"
    assert "auc" not in out.with_suffix(".md").read_text().split("\n")[0].lower()


def test_the_demo_runs_on_a_user_item_file(tmp_path):
    clicks = write_clicks(tmp_path)
    result = runner.invoke(
        app,
        [
            "demo",
            "--data",
            str(clicks),
            "--threshold",
            "none",
            "--no-llm",
            "-m",
            "retrain",
            "-m",
            "scif",
            "--executor",
            "inprocess",
            "--out",
            str(tmp_path / "demo"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "most-popular" in result.output and "scif" in result.output


def test_deleting_more_users_than_exist_is_refused_before_training(tmp_path, capsys):
    clicks = write_clicks(tmp_path)
    config = tmp_path / "too-many.toml"
    config.write_text(f"""
[data]
dataset = "{clicks}"
protocol = "implicit"
threshold = "none"
k_core = 2
[deletion]
kind = "users"
count = 100000
""")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "deletion.count = 100000" in err and len(err.strip().splitlines()) == 1
    assert "fitting" not in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("no_such_key = 1\n", "no_such_key"),
        ("[data]\nk_core = 0\n", "k_core"),
        ('methods = ["nope"]\n[data]\ndataset = "{folder}"\nk_core = 1\n', "unknown method"),
        ('methods = ["apa"]\n[data]\ndataset = "{folder}"\nk_core = 1\n', "work on prompt samples"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, capsys, content, message):
    folder = write_atomic(make_tiny(), tmp_path / "tiny")
    config = tmp_path / "bad.toml"
    config.write_text(content.replace("{folder}", str(folder)))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_missing_paths_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "info", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nowhere" in err and "nor an existing path" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tmp_path / "missing.toml")])
    assert exit_info.value.code == 2
    assert "no such config file" in capsys.readouterr().err


def test_every_method_says_what_it_does():
    from recunlearn.unlearn import available_methods

    undocumented = [
        name for name, cls in available_methods().items() if not (cls.__doc__ or "").strip()
    ]
    assert not undocumented, (
        f"methods without a docstring (shown by `recunlearn methods`): {undocumented}"
    )


def test_data_info_passes_loader_options():
    result = runner.invoke(
        app, ["data", "info", "synthetic", "-o", "n_interactions=3000", "-o", "seed=2", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"] == 3000


def test_data_info_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        main(["data", "info", "synthetic", "-o", "n_interactions"])
    assert "expected key=value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "info", "synthetic", "-o", "colour=blue"])
    assert "colour" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--fraction", "2", "--no-llm"], "fraction"),
        (["bench", "ifru", "--quick", "--fraction", "1.5"], "fraction must be in (0, 1)"),
        (["bench", "apa", "--shards", "0"], "shards"),
        (["data", "info", "{csv}", "-o", "encoding=no-such-codec"], "unknown encoding"),
    ],
)
def test_bad_option_values_are_one_line_errors(tmp_path, capsys, args, message):
    csv = tmp_path / "log.csv"
    csv.write_text("user,item\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        main([a.replace("{csv}", str(csv)) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_report_of_missing_results_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "missing.json"), "--out", str(tmp_path / "report")])
    assert capsys.readouterr().err.startswith("error:")
    assert not (tmp_path / "report").exists()


def test_experiment_executor_reaches_shard_methods():
    from recunlearn.bench.experiment import ExperimentConfig, _method_config

    config = ExperimentConfig(executor="process")
    assert _method_config(config, "sisa")["executor"] == "process"
    assert "executor" not in _method_config(config, "retrain")
    pinned = ExperimentConfig(
        executor="process", method_options={"sisa": {"executor": "inprocess"}}
    )
    assert _method_config(pinned, "sisa")["executor"] == "inprocess"


class Built(Exception):
    """Raised in place of a benchmark run: carries the configuration the command built."""


@pytest.fixture
def built(monkeypatch, tmp_path):
    """``built(module, function, args)``: the config a bench command hands to its run function (run in
    a scratch folder, so that a regression cannot write over committed results)."""
    import importlib

    monkeypatch.chdir(tmp_path)

    def run(module: str, function: str, args: list[str]):
        def capture(config, *rest, **options):
            raise Built(config)

        monkeypatch.setattr(importlib.import_module(module), function, capture)
        result = runner.invoke(app, args)
        assert isinstance(result.exception, Built), result.output
        return result.exception.args[0]

    return run


@pytest.mark.parametrize(
    "args, module, function, output",
    [
        (
            ["bench", "scaling", "--quick"],
            "recunlearn.bench.scaling",
            "run_scaling_benchmark",
            "runs/scaling/quick-cpu.json",
        ),
        (
            ["bench", "exact", "--quick"],
            "recunlearn.bench.exact",
            "run_exact_benchmark",
            "runs/exact/quick-cpu.json",
        ),
        (
            ["bench", "exact", "--data", "ml-100k", "--seed", "2", "--seed", "5"],
            "recunlearn.bench.exact",
            "run_exact_benchmark",
            "runs/exact/ml100k-seed2-cpu.json",
        ),
        (
            ["bench", "ifru", "--quick"],
            "recunlearn.bench.ifru",
            "run_ifru_benchmark",
            "runs/ifru/quick-cpu.json",
        ),
        (
            ["bench", "ifru", "--data", "some/where/ml-100k"],
            "recunlearn.bench.ifru",
            "run_ifru_benchmark",
            "runs/ifru/ml100k-cpu.json",
        ),
        (
            ["bench", "apa", "--quick"],
            "recunlearn.bench.apa",
            "run_apa_benchmark",
            "runs/apa/quick-cpu.json",
        ),
        (
            ["bench", "apa", "--demo"],
            "recunlearn.bench.apa",
            "run_apa_benchmark",
            "runs/apa/demo-cpu.json",
        ),
        (
            ["bench", "apa"],
            "recunlearn.bench.apa",
            "run_apa_benchmark",
            "runs/apa/ml100k-minilm-cpu.json",
        ),
        (
            ["bench", "scaling", "--quick", "--out", "x"],
            "recunlearn.bench.scaling",
            "run_scaling_benchmark",
            "x/quick-cpu.json",
        ),
        (
            ["bench", "scaling"],
            "recunlearn.bench.scaling",
            "run_scaling_benchmark",
            "runs/scaling/synthetic-cpu.json",
        ),
        (
            ["bench", "ifru-scaling", "--quick"],
            "recunlearn.bench.ifru",
            "run_ifru_scaling",
            "runs/ifru-scaling/quick-cpu.json",
        ),
    ],
)
def test_results_files_are_named_by_configuration_under_runs(built, args, module, function, output):
    """A library run writes under ./runs/ (or --out), one file per configuration and hardware, so a
    rerun overwrites its own file and never another configuration's."""
    assert built(module, function, args).output == output


def test_a_repeated_seed_reaches_every_seed_of_the_protocol(built):
    exact = built(
        "recunlearn.bench.exact",
        "run_exact_benchmark",
        ["bench", "exact", "--quick", "--seed", "3", "--seed", "4"],
    )
    assert (exact.deletion_seed, exact.train["seed"]) == (3, 3)
    assert exact.output == "runs/exact/quick-seed3-cpu.json"


def test_options_given_with_a_preset_apply_on_top_of_it(built):
    scaling = "recunlearn.bench.scaling", "run_scaling_benchmark"
    assert built(*scaling, ["bench", "scaling", "--quick"]).train["max_epochs"] == 1
    assert (
        built(*scaling, ["bench", "scaling", "--quick", "--max-epochs", "3"]).train["max_epochs"]
        == 3
    )
    exact = built(
        "recunlearn.bench.exact",
        "run_exact_benchmark",
        ["bench", "exact", "--quick", "--batch-users", "4", "--batch-interactions", "7"],
    )
    assert (exact.batch_users, exact.batch_interactions, exact.data.dataset) == (4, 7, "synthetic")
    apa = "recunlearn.bench.apa", "run_apa_benchmark"
    quick = built(
        *apa,
        [
            "bench",
            "apa",
            "--quick",
            "--data",
            "ml-100k",
            "--n-train",
            "40",
            "--n-valid",
            "20",
            "--n-test",
            "30",
            "--max-epochs",
            "3",
            "--patience",
            "2",
            "--eval-every",
            "2",
            "--lr",
            "0.05",
        ],
    )
    assert (quick.data, quick.n_train, quick.n_valid, quick.n_test, quick.tiny_backbone) == (
        "ml-100k",
        40,
        20,
        30,
        "causal",
    )
    assert quick.train == {
        "lr": 0.05,
        "batch_size": 16,
        "max_epochs": 3,
        "patience": 2,
        "eval_every": 2,
        "seed": 0,
    }
    demo = built(*apa, ["bench", "apa", "--demo", "--backbone", "smollm2"])
    assert demo.backbone == {"max_length": 96, "name": "smollm2"} and demo.n_train == 96


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """Bad input must be refused before any data is prepared (and so before any model trains); in a
    scratch folder, so that a regression cannot write over committed results."""
    monkeypatch.chdir(tmp_path)

    def prepare(*args, **kwargs):
        raise AssertionError("data prepared before the settings were checked")

    for module in ("experiment", "exact", "ifru"):
        monkeypatch.setattr(f"recunlearn.bench.{module}.prepare", prepare)


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "exact", "--quick", "-k", "0"], "n_shards"),
        (["bench", "exact", "--quick", "-m", "ifru"], "exact methods"),
        (["bench", "exact", "--quick", "-m", "sisa", "-m", "sisa"], "listed more than once: sisa"),
        (["bench", "ifru", "--quick", "-m", "apa"], "not 'apa'"),
        (
            ["bench", "scaling", "--quick", "-m", "retrain", "-m", "retrain"],
            "listed more than once: retrain",
        ),
        (["demo", "--executor", "foo", "--no-llm"], "unknown executor 'foo'"),
        (["demo", "-m", "ifru", "-m", "ifru", "--no-llm"], "listed more than once: ifru"),
        (["bench", "exact", "--quick", "--data", "ml-100k"], "--data"),
        (["bench", "ifru", "--quick", "--data", "ml-100k"], "--data"),
        (["bench", "implicit", "--quick", "--data", "ml-100k"], "--data"),
        (["bench", "apa", "--quick", "--backbone", "smollm2"], "--backbone"),
        (["bench", "apa", "--quick", "--demo"], "choose one"),
        (["bench", "all", "-p", "nosuch"], "no module recunlearn.bench.nosuch"),
        (["bench", "all", "-p", "exact", "--out", "{file}/results"], "cannot create"),
        (["bench", "exact", "--quick", "--out", "{file}/r"], "cannot create a folder there"),
        (["bench", "ifru", "--quick", "--out", "{file}"], "is not a folder"),
        (
            ["bench", "ifru-scaling", "--size", "1000", "--out", "{file}/r"],
            "cannot create a folder there",
        ),
        (["bench", "apa", "--quick", "--out", "{file}/r"], "cannot create a folder there"),
        (["bench", "implicit", "--quick", "--out", "{file}/r"], "cannot create a folder there"),
        (["demo", "--no-llm", "-m", "ifru", "--out", "{file}/demo"], "cannot create the folder"),
        (
            ["bench", "executors", "--interactions", "2000", "--out", "{file}/e"],
            "cannot create a folder there",
        ),
        (["report", "{file}", "--out", "{file}/report"], "cannot create a folder there"),
        (
            ["service", "init", "--data", "{file}", "--home", "{file}/svc"],
            "cannot create a folder there",
        ),
        (
            ["bench", "ifru", "--quick", "--seed", "-1"],
            "seeds.0: Input should be greater than or equal to 0",
        ),
        (
            ["bench", "apa", "--quick", "--seed", "99999999999999999999"],
            "sample_seed: Input should be less than",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_runs(no_training, tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                a.replace("{file}", str(tmp_path / "file")).replace("{dir}", str(tmp_path))
                for a in args
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1


def test_a_method_listed_twice_is_refused(no_training, tmp_path, capsys):
    """Its second forget would find nothing left to forget, and its time would stand for both."""
    config = tmp_path / "dup.toml"
    config.write_text('methods = ["ifru", "ifru", "finetune"]\n')
    with pytest.raises(SystemExit):
        main(["run", str(config)])
    assert "methods: Value error, listed more than once: ifru" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "99999"],
        ["bench", "ifru-scaling", "--max-epochs", "0"],
        ["bench", "executors", "-k", "0"],
    ],
)
def test_out_of_range_numbers_are_usage_errors(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_bench_runs_with_other_settings_never_replace_the_cited_results(
    no_training, tmp_path, monkeypatch
):
    """`bench executors -k 2` once wrote its K=2 run over mf-k4.json, and `bench scaling -n ...` over
    the full study's file; and a command that fails leaves no empty results folder behind."""
    from pathlib import Path

    from recunlearn.bench import scaling

    written = []

    class Recorded(Exception):
        pass

    def record(config):
        written.append(config.output)
        raise Recorded

    monkeypatch.setattr(scaling, "run_executors_benchmark", record)
    monkeypatch.setattr(scaling, "run_scaling_benchmark", record)
    monkeypatch.chdir(tmp_path)
    for args in (
        ["bench", "executors", "-k", "2", "--interactions", "4000", "--max-epochs", "1"],
        ["bench", "executors"],
        ["bench", "scaling", "-n", "2000", "-m", "retrain"],
        ["bench", "scaling"],
    ):
        with pytest.raises(Recorded):
            main(args)
    assert written == [
        "runs/executors/mf-k2-n4000-e1-cpu.json",
        "runs/executors/mf-k4-cpu.json",
        "runs/scaling/custom-cpu.json",
        "runs/scaling/synthetic-cpu.json",
    ]
    assert not Path("runs").exists(), "the failed runs left a folder behind"


BENCH_COMMANDS = ["all", "scaling", "executors", "ifru", "ifru-scaling", "exact", "apa", "implicit"]


@pytest.mark.parametrize("command", BENCH_COMMANDS)
def test_bench_help_names_values_not_python_types(command):
    _load_commands()
    result = CliRunner().invoke(app, ["bench", command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    options = [line for line in result.output.splitlines() if "--help" not in line]
    for shown in ("<bool>", "<int>", "<str>", "<float>", "<path>", "list["):
        assert not any(shown in line for line in options), (command, shown)
    for name in ("--quick", "--out") + (("--seed",) if command != "all" else ()):
        assert name in result.output, (command, name)
