"""The APA protocol end to end on a tiny random model (seconds), and its table."""

import json

import numpy as np

from recunlearn.bench.apa import ApaBenchConfig, markdown_table, run_apa_benchmark, simple_features
from recunlearn.data import binarize
from recunlearn.data.tallrec import (
    build_samples,
    read_tallrec_json,
    split_samples,
    write_tallrec_json,
)
from tests.conftest import make_tiny


def test_quick_protocol_reports_every_method_and_variant(tmp_path):
    out = tmp_path / "apa.json"
    results = run_apa_benchmark(ApaBenchConfig.quick(output=str(out)), log=lambda m: None)
    rows = {r["method"]: r for r in results["rows"]}
    assert list(rows) == ["llm-retrain", "apa", "llm-sisa", "llm-receraser", "llm-grapheraser"]
    assert set(rows["apa"]["variants"]) == {
        "APA(ND)",
        "APA(D)",
        "average (ND)",
        "major (ND)",
        "semantic (ND)",
    }
    for name, row in rows.items():
        assert 0.0 <= row["auc"] <= 1.0 and row["unlearn_s"] > 0 and row["latency_batch_s"] > 0
        assert len(row["retrained_adapters"]) == 1
        if name != "llm-retrain":
            assert len(row["adapter_auc"]) == 4 and row["partition"]["n_shards"] == 4
    assert rows["llm-retrain"]["unlearn_speedup"] == 1.0
    assert json.loads(out.read_text())["rows"][1]["method"] == "apa"
    table = out.with_suffix(".md").read_text()
    assert "APA ablation: semantic (ND)" in table and "logistic regression" in table
    assert markdown_table(results).count("\n") == len(table.strip().splitlines()) - 1
    fewer = {
        **results,
        "samples": {**results["samples"], "test": 5},
    }  # fewer test samples than the batch
    assert "batch of 5 s" in markdown_table(fewer).splitlines()[0], (
        "the column names the batch actually scored"
    )


def test_simple_features_read_the_prompt():
    samples = build_samples(make_tiny(), history=4, max_samples=20)
    features = simple_features(samples, {}, 0.5)
    first = samples.input[0].split("\n")
    liked, disliked = first[0].count('"') // 2, first[1].count('"') // 2
    assert np.isclose(features[0, 0], liked / max(liked + disliked, 1)) and features[0, 1] == 0.5


def test_cli_seed_reaches_the_draws_and_training(tmp_path):
    from typer.testing import CliRunner

    from recunlearn.cli import _load_commands
    from recunlearn.cli._app import app

    _load_commands()
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "apa",
            "--quick",
            "-m",
            "apa",
            "--seed",
            "0",
            "--seed",
            "3",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    documents = {
        seed: json.loads((tmp_path / f"quick-seed{seed}-cpu.json").read_text()) for seed in (0, 3)
    }
    for seed, document in documents.items():
        assert (
            document["config"]["sample_seed"] == seed
            and document["config"]["train"]["seed"] == seed
        )
    assert (
        documents[0]["rows"][0]["auc"] != documents[3]["rows"][0]["auc"]
    )  # other samples, other model


def test_cli_runs_a_tallrec_book_folder_with_the_shared_head_and_no_forgetting(tmp_path):
    """docs/apa.md's book protocol: a folder of TALLRec JSON files for books, as BookCrossing gives it."""
    from typer.testing import CliRunner

    from recunlearn.cli import _load_commands
    from recunlearn.cli._app import app

    samples = build_samples(binarize(make_tiny(), 3.0), "book", history=4, max_samples=None)
    folder = tmp_path / "books"
    folder.mkdir()
    for name, part in zip(("train", "valid", "test"), split_samples(samples, by="user")):
        write_tallrec_json(part, folder / f"{name}.json")
    _load_commands()
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "apa",
            "--quick",
            "--data",
            str(folder),
            "-m",
            "apa",
            "--head",
            "shared",
            "--no-forget",
            "--n-train",
            "40",
            "--n-valid",
            "10",
            "--n-test",
            "20",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "quick-cpu.json").read_text())
    assert document["config"]["backbone"]["head"] == "shared" and not document["config"]["forget"]
    assert [r["method"] for r in document["rows"]] == ["llm-retrain", "apa"]
    assert all("unlearn_s" not in r and 0 <= r["auc"] <= 1 for r in document["rows"])
    assert "target book" in read_tallrec_json(folder / "test.json").input[0]
    assert "| - | - |" in (out / "quick-cpu.md").read_text()
