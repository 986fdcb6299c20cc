"""Results files and reports: context recorded, plots found by key, the HTML renders its plots in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recunlearn.bench._results import SCHEMA, find_seeds, load_results, write_results
from recunlearn.bench.report import flatten, label, measured_rows, plots, slopes, write_report
from recunlearn.cli import _load_commands
from recunlearn.cli._app import app
from recunlearn.errors import RecUnlearnError

METHOD_ROWS = [
    {
        "method": "retrain",
        "auc": 0.77,
        "forget_seconds": 3.5,
        "speedup": 1.0,
        "dist_removed": 0.0,
        "dist_test": 0.0,
    },
    {
        "method": "ifru",
        "auc": 0.76,
        "forget_seconds": 1.2,
        "speedup": 2.9,
        "dist_removed": 0.08,
        "dist_test": 0.03,
    },
    {
        "method": "sisa",
        "n_shards": 5,
        "auc": 0.71,
        "forget_seconds": 0.9,
        "speedup": 3.9,
        "dist_removed": 0.2,
        "dist_test": 0.15,
    },
]


def scaling_rows(exponent: float = 1.5):
    return [
        {
            "method": m,
            "n_interactions": n,
            "fit_seconds": c * (n / 1e5) ** exponent,
            "forget_seconds": c / 10 * (n / 1e5),
            "peak_memory_mb": 50 + n / 1e4,
        }
        for m, c in (("retrain", 2.0), ("sisa", 0.5))
        for n in (100_000, 1_000_000, 10_000_000)
    ]


@pytest.fixture
def results_paths(tmp_path):
    config = {"data": {"dataset": "synthetic", "seed": 1024}, "train": {"seed": 0, "lr": 0.01}}
    methods = tmp_path / "ifru" / "tiny.json"
    write_results(
        methods, METHOD_ROWS, config, "recunlearn bench ifru --quick", markdown="| table |"
    )
    scaling = tmp_path / "scaling" / "synthetic.json"
    write_results(
        scaling,
        scaling_rows(),
        {"sizes": [100_000, 1_000_000, 10_000_000], "seed": 7},
        "recunlearn bench scaling",
        summary={"note": "made up"},
    )
    return methods, scaling


def test_results_file_records_its_context(results_paths):
    methods, _ = results_paths
    document = json.loads(methods.read_text())
    assert document["schema_version"] == SCHEMA and document["protocol"] == "ifru"
    assert document["command"] == "recunlearn bench ifru --quick"
    assert document["seeds"] == {"data.seed": 1024, "train.seed": 0}
    assert (
        document["environment"]["versions"]["torch"]
        and document["environment"]["versions"]["python"]
    )
    hardware = document["environment"]["hardware"]
    assert hardware["cpu_count"] >= 1 and hardware["memory_gb"] > 0
    assert methods.with_suffix(".md").read_text() == "| table |\n"
    assert load_results(methods).rows == METHOD_ROWS


def test_older_documents_and_bad_files(tmp_path):
    legacy = tmp_path / "exact" / "old.json"
    legacy.parent.mkdir()
    legacy.write_text(
        json.dumps(
            {
                "config": {"deletion_seed": 3},
                "rows": [{"method": "sisa", "auc": 0.7}],
                "command": "recunlearn bench exact",
                "data": {"train": {"rows": 10}},
            }
        )
    )
    results = load_results(legacy)
    assert (results.protocol, results.seeds, results.summary) == (
        "exact",
        {"deletion_seed": 3},
        {"data": {"train": {"rows": 10}}},
    )
    (tmp_path / "nope.json").write_text("[1, 2]")
    with pytest.raises(RecUnlearnError, match="needs a top-level 'rows' list"):
        load_results(tmp_path / "nope.json")
    with pytest.raises(RecUnlearnError, match="no such results file"):
        load_results(tmp_path / "missing.json")


def test_seeds_are_found_at_any_depth():
    config = {
        "seed": 1,
        "methods": [{"partition_seed": 2}],
        "data": {"seed": 3, "seeds": "x", "flag": True},
    }
    assert find_seeds(config) == {"seed": 1, "methods.0.partition_seed": 2, "data.seed": 3}


def test_lists_of_seeds_are_seeds():
    """IFRU's protocol repeats its runs over ``seeds: list[int]``; the report's Seeds line names them."""
    config = {
        "seeds": [0, 1, 2],
        "data": {"seed": 1024},
        "train": {"n_seeds": 3, "seeds": [], "flags": [True]},
    }
    assert find_seeds(config) == {"seeds": [0, 1, 2], "data.seed": 1024}


def test_older_documents_are_dated_by_their_file(tmp_path):
    """Not by the time the report is made: a file that records no date says which date it shows."""
    legacy = tmp_path / "ifru" / "old.json"
    legacy.parent.mkdir()
    legacy.write_text(
        json.dumps({"config": {"seeds": [0, 1]}, "rows": [{"method": "ifru", "auc": 0.7}]})
    )
    then = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    os.utime(legacy, (then.timestamp(), then.timestamp()))
    results = load_results(legacy)
    assert (results.created, results.created_from) == (
        "2021-03-04T05:06:07+00:00",
        "file modification time",
    )
    assert results.seeds == {"seeds": [0, 1]}
    dated = tmp_path / "dated.json"
    dated.write_text(json.dumps({"rows": [], "created": "2020-01-01T00:00:00+00:00"}))
    assert (load_results(dated).created, load_results(dated).created_from) == (
        "2020-01-01T00:00:00+00:00",
        "recorded",
    )
    markdown = write_report([legacy], tmp_path / "out")["markdown"].read_text()
    assert "Written 2021-03-04T05:06:07+00:00 (file modification time" in markdown
    assert "Seeds: seeds [0, 1]" in markdown


def test_slopes_recover_the_exponent():
    fitted = slopes(scaling_rows(exponent=1.5))
    assert fitted["retrain"]["fit_seconds"] == pytest.approx(1.5, abs=1e-3)
    assert fitted["sisa"]["forget_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert 0 < fitted["sisa"]["peak_memory_mb"] < 1


def test_plots_are_chosen_by_the_keys_rows_have(results_paths):
    methods, scaling = results_paths
    assert [p.slug for p in plots(load_results(methods))] == [
        "utility_vs_time",
        "speedup",
        "completeness",
    ]
    assert [p.slug for p in plots(load_results(scaling))] == ["scaling"]
    nested = load_results(methods).model_copy(
        update={
            "rows": [
                {
                    "method": "sisa",
                    "auc": 0.7,
                    "users": {"request_seconds": 0.5, "request_speedup": 4.0},
                }
            ]
        }
    )
    assert [p.slug for p in plots(nested)] == ["utility_vs_time", "speedup"]
    assert flatten({"a": {"b": 1, "c": {"d": 2}}}) == {"a.b": 1, "a.c.d": 2}
    assert (
        label({"method": "sisa", "n_shards": 4, "model": "mf", "seed": 1}, ("model",))
        == "sisa K=4 model=mf"
    )


def test_report_is_self_contained_and_records_context(results_paths, tmp_path):
    paths = write_report(list(results_paths), tmp_path / "out")
    page = paths["html"].read_text()
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4 and all(len(i) > 5000 for i in images)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for fact in ("recunlearn bench ifru --quick", "data.seed", "torch", "cpu_count", "slope"):
        assert fact in page
    markdown = paths["markdown"].read_text()
    linked = re.findall(r"!\[[^\]]+\]\((figures/[^)]+\.png)\)", markdown)
    assert len(linked) == 4 and all(
        (tmp_path / "out" / link).stat().st_size > 5000 for link in linked
    )
    assert "| method | auc | forget_seconds |" in markdown


def test_figures_of_inputs_with_the_same_name_do_not_overwrite_each_other(tmp_path):
    """Two runs of one protocol kept in two folders under the same file name, in one report."""
    paths = [tmp_path / run / "ifru" / "tiny.json" for run in ("a", "b")]
    for path, auc in zip(paths, (0.6, 0.9)):
        write_results(
            path, [{**row, "auc": auc} for row in METHOD_ROWS], {}, "recunlearn bench ifru"
        )
    markdown = write_report(paths, tmp_path / "out")["markdown"].read_text()
    linked = re.findall(r"!\[[^\]]+\]\((figures/[^)]+\.png)\)", markdown)
    assert len(linked) == 6 and len(set(linked)) == 6
    assert len(list((tmp_path / "out" / "figures").glob("*.png"))) == 6
    assert len(list((tmp_path / "out" / "figures").glob("*.svg"))) == 6


def ifru_scaling_rows():
    """Rows as `bench ifru-scaling` writes them: one per size, a column set per method."""
    return [
        {
            "interactions": n,
            "removed_rows": 1000,
            "ifru_seconds": 0.01 * n / 1e5,
            "influence_seconds": 0.005,
            "retrain_seconds": 5.0 * (n / 1e5) ** 2,
            "speedup": 500.0 * n / 1e5,
            "ifru_peak_mib": 20.0,
            "retrain_peak_mib": None,
            "auc_original": 0.7,
            "auc_ifru": 0.72,
            "auc_retrain": 0.74,
        }
        for n in (100_000, 1_000_000)
    ]


def test_ifru_scaling_rows_are_plotted_per_method(tmp_path):
    path = tmp_path / "ifru" / "scaling.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {"config": {"seed": 0}, "rows": ifru_scaling_rows(), "command": "bench ifru-scaling"}
        )
    )
    results = load_results(path)
    rows = measured_rows(results.rows)
    assert [(r["method"], r["n_interactions"]) for r in rows] == [
        ("ifru", 100_000),
        ("retrain", 100_000),
        ("ifru", 1_000_000),
        ("retrain", 1_000_000),
    ]
    assert rows[2]["speedup"] == pytest.approx(5000.0) and rows[3]["speedup"] == 1.0
    assert [p.slug for p in plots(results)] == ["utility_vs_time", "speedup", "scaling"]
    fitted = slopes(rows)
    assert fitted["retrain"]["forget_seconds"] == pytest.approx(2.0) and fitted["ifru"][
        "forget_seconds"
    ] == pytest.approx(1.0)
    assert "peak_memory_mb" in fitted["ifru"] and "peak_memory_mb" not in fitted["retrain"]
    page = write_report([path], tmp_path / "out")["html"].read_text()
    assert "Slopes" in page and page.count("data:image/png;base64,") == 3


def test_committed_ifru_scaling_results_still_load():
    root = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "ifru-scaling"
    committed = sorted(root.glob("synthetic-rows-*.json"))
    assert committed, "the committed scaling results are part of the repository"
    for path in committed:
        rows = measured_rows(load_results(path).rows)
        assert {r["method"] for r in rows} == {"ifru", "retrain"}, path


def test_cli_writes_the_report(results_paths):
    methods, _ = results_paths
    _load_commands()
    result = CliRunner().invoke(app, ["report", str(methods)])
    assert result.exit_code == 0, result.output
    assert (methods.parent / "tiny-report" / "report.html").is_file()


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, (
        "the screenshot test needs Debian's chromium: apt-get install -y chromium (.ci/run does this)"
    )
    return path


def screenshot(page, png, profile):
    subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1300,2200",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from matplotlib.image import imread

    return imread(png)[..., :3]


def colourful_fraction(pixels: np.ndarray) -> float:
    """Share of pixels with a saturated colour (plot markers and bars; text and tables are grey)."""
    return float(((pixels.max(axis=2) - pixels.min(axis=2)) > 0.3).mean())


@pytest.mark.slow
def test_browser_shows_the_plots(results_paths, tmp_path):
    paths = write_report(list(results_paths), tmp_path / "out")
    with_plots = screenshot(paths["html"], tmp_path / "page.png", tmp_path / "profile")
    stripped = tmp_path / "out" / "no-plots.html"
    stripped.write_text(re.sub(r"<img [^>]+>", "", paths["html"].read_text()))
    without = screenshot(stripped, tmp_path / "bare.png", tmp_path / "profile")
    assert with_plots.shape[0] >= 2000 and with_plots.std() > 0.05  # a real page, not blank
    distinct = len(np.unique((with_plots * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert distinct > 300  # antialiased plots, not flat text
    assert colourful_fraction(with_plots) > 0.01 > 10 * colourful_fraction(without)
    tab_blue = (
        np.abs(with_plots - np.array([31, 119, 180]) / 255).max(axis=2) < 0.05
    )  # matplotlib's C0
    assert tab_blue.sum() > 500


def test_a_scripts_argument_dict_is_a_command_and_a_bad_file_is_named(tmp_path):
    """Study scripts record their arguments as a dict (vars(args)); a file that is not a results
    file is refused with its path, not a bare validation error."""
    path = tmp_path / "study.json"
    path.write_text(
        json.dumps({"command": {"seed": 1, "calls": 20}, "rows": [{"method": "ifru", "auc": 0.7}]})
    )
    assert json.loads(load_results(path).command) == {"seed": 1, "calls": 20}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": SCHEMA, "rows": [], "protocol": 3}))
    from recunlearn.errors import RecUnlearnError

    with pytest.raises(RecUnlearnError, match=f"{bad}: not a results file"):
        load_results(bad)


def multi_seed_rows():
    """Three seeds of three methods, as `bench ifru` writes them: one row per method and seed."""
    return [
        {
            **row,
            "seed": seed,
            "auc": row["auc"] + 0.01 * seed,
            "forget_seconds": row["forget_seconds"] * (1 + seed),
        }
        for seed in (0, 1, 2)
        for row in METHOD_ROWS
    ]


def _legend_texts(svg: bytes) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]+)</text>", svg.decode())


def test_a_multi_seed_report_has_one_legend_entry_per_method(tmp_path):
    path = tmp_path / "ifru" / "seeds.json"
    write_results(path, multi_seed_rows(), {"seeds": [0, 1, 2]}, "recunlearn bench ifru")
    paths = write_report([path], tmp_path / "out")
    svg = next((tmp_path / "out" / "figures").glob("*utility_vs_time.svg")).read_bytes()
    texts = _legend_texts(svg)
    for method in ("retrain", "ifru", "sisa K=5"):
        assert texts.count(method) == 1, texts
    assert not any("seed" in t for t in texts)
    markdown = paths["markdown"].read_text()
    assert "mean over 3 seeds, whiskers from the lowest to the highest" in markdown


def test_seeds_are_averaged_with_their_range():
    from recunlearn.bench.report import aggregate_seeds

    merged = aggregate_seeds(multi_seed_rows(), ())
    assert [r["_label"] for r in merged] == ["retrain", "ifru", "sisa K=5"]
    ifru = merged[1]
    assert ifru["_runs"] == 3 and ifru["auc"] == pytest.approx(0.77)
    assert ifru["_range"]["auc"] == pytest.approx((0.76, 0.78))
    assert ifru["forget_seconds"] == pytest.approx(2.4)


def test_figures_name_measures_in_words_and_come_as_svg_too(results_paths, tmp_path):
    methods, scaling = results_paths
    write_report([methods, scaling], tmp_path / "out")
    figures = tmp_path / "out" / "figures"
    pngs, svgs = sorted(figures.glob("*.png")), sorted(figures.glob("*.svg"))
    assert [p.stem for p in pngs] == [s.stem for s in svgs] and len(svgs) == 4
    words = [t for svg in svgs for t in _legend_texts(svg.read_bytes())]
    assert "time to forget (s), log scale" in words and "AUC" in words
    assert "score distance on the removed rows" in words
    assert not [t for t in words if re.search(r"\w_\w", t) and "K=" not in t], words


def test_a_crowded_figure_gives_no_layout_warnings(tmp_path):
    from recunlearn.bench.report import plots

    rows = [
        {**row, "model": model, "fraction": fraction, "seed": seed}
        for row in METHOD_ROWS * 2
        for model in ("mf", "lightgcn", "ncf")
        for fraction in (0.01, 0.02, 0.05)
        for seed in (0, 1)
    ]
    path = tmp_path / "ifru" / "crowded.json"
    write_results(path, rows, {}, "recunlearn bench ifru")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(plots(load_results(path))) == 3
