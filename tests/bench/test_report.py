"""Results files and reports: context recorded, plots found by key, the HTML renders its plots in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from recunlearn.bench._results import SCHEMA, find_seeds, load_results, write_results
from recunlearn.bench.report import flatten, label, plots, slopes, write_report
from recunlearn.cli import _load_commands
from recunlearn.cli._app import app
from recunlearn.errors import RecUnlearnError

METHOD_ROWS = [
    {"method": "retrain", "auc": 0.77, "forget_seconds": 3.5, "speedup": 1.0, "dist_removed": 0.0, "dist_test": 0.0},
    {"method": "ifru", "auc": 0.76, "forget_seconds": 1.2, "speedup": 2.9, "dist_removed": 0.08, "dist_test": 0.03},
    {"method": "sisa", "n_shards": 5, "auc": 0.71, "forget_seconds": 0.9, "speedup": 3.9, "dist_removed": 0.2,
     "dist_test": 0.15},
]


def scaling_rows(exponent: float = 1.5):
    return [{"method": m, "n_interactions": n, "fit_seconds": c * (n / 1e5) ** exponent,
             "forget_seconds": c / 10 * (n / 1e5), "peak_memory_mb": 50 + n / 1e4}
            for m, c in (("retrain", 2.0), ("sisa", 0.5)) for n in (100_000, 1_000_000, 10_000_000)]


@pytest.fixture
def results_paths(tmp_path):
    config = {"data": {"dataset": "synthetic", "seed": 1024}, "train": {"seed": 0, "lr": 0.01}}
    methods = tmp_path / "ifru" / "tiny.json"
    write_results(methods, METHOD_ROWS, config, "recunlearn bench ifru --quick", markdown="| table |")
    scaling = tmp_path / "scaling" / "synthetic.json"
    write_results(scaling, scaling_rows(), {"sizes": [100_000, 1_000_000, 10_000_000], "seed": 7},
                  "recunlearn bench scaling", summary={"note": "made up"})
    return methods, scaling


def test_results_file_records_its_context(results_paths):
    methods, _ = results_paths
    document = json.loads(methods.read_text())
    assert document["schema_version"] == SCHEMA and document["protocol"] == "ifru"
    assert document["command"] == "recunlearn bench ifru --quick"
    assert document["seeds"] == {"data.seed": 1024, "train.seed": 0}
    assert document["environment"]["versions"]["torch"] and document["environment"]["versions"]["python"]
    hardware = document["environment"]["hardware"]
    assert hardware["cpu_count"] >= 1 and hardware["memory_gb"] > 0
    assert methods.with_suffix(".md").read_text() == "| table |\n"
    assert load_results(methods).rows == METHOD_ROWS


def test_older_documents_and_bad_files(tmp_path):
    legacy = tmp_path / "exact" / "old.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps({"config": {"deletion_seed": 3}, "rows": [{"method": "sisa", "auc": 0.7}],
                                  "command": "recunlearn bench exact", "data": {"train": {"rows": 10}}}))
    results = load_results(legacy)
    assert (results.protocol, results.seeds, results.summary) == ("exact", {"deletion_seed": 3},
                                                                   {"data": {"train": {"rows": 10}}})
    (tmp_path / "nope.json").write_text("[1, 2]")
    with pytest.raises(RecUnlearnError, match="needs a top-level 'rows' list"):
        load_results(tmp_path / "nope.json")
    with pytest.raises(RecUnlearnError, match="no such results file"):
        load_results(tmp_path / "missing.json")


def test_seeds_are_found_at_any_depth():
    config = {"seed": 1, "methods": [{"partition_seed": 2}], "data": {"seed": 3, "seeds": "x", "flag": True}}
    assert find_seeds(config) == {"seed": 1, "methods.0.partition_seed": 2, "data.seed": 3}


def test_slopes_recover_the_exponent():
    fitted = slopes(scaling_rows(exponent=1.5))
    assert fitted["retrain"]["fit_seconds"] == pytest.approx(1.5, abs=1e-3)
    assert fitted["sisa"]["forget_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert 0 < fitted["sisa"]["peak_memory_mb"] < 1


def test_plots_are_chosen_by_the_keys_rows_have(results_paths):
    methods, scaling = results_paths
    assert [p.slug for p in plots(load_results(methods))] == ["utility_vs_time", "speedup", "completeness"]
    assert [p.slug for p in plots(load_results(scaling))] == ["scaling"]
    nested = load_results(methods).model_copy(update={"rows": [
        {"method": "sisa", "auc": 0.7, "users": {"request_seconds": 0.5, "request_speedup": 4.0}}]})
    assert [p.slug for p in plots(nested)] == ["utility_vs_time", "speedup"]
    assert flatten({"a": {"b": 1, "c": {"d": 2}}}) == {"a.b": 1, "a.c.d": 2}
    assert label({"method": "sisa", "n_shards": 4, "model": "mf", "seed": 1}, ("model",)) == "sisa K=4 model=mf"


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
    assert len(linked) == 4 and all((tmp_path / "out" / link).stat().st_size > 5000 for link in linked)
    assert "| method | auc | forget_seconds |" in markdown


def test_cli_writes_the_report(results_paths):
    methods, _ = results_paths
    _load_commands()
    result = CliRunner().invoke(app, ["report", str(methods)])
    assert result.exit_code == 0, result.output
    assert (methods.parent / "tiny-report" / "report.html").is_file()


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "the screenshot test needs Debian's chromium: apt-get install -y chromium (.ci/run does this)"
    return path


def screenshot(page, png, profile):
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1300,2200",
                    f"--screenshot={png}", page.as_uri()], check=True, capture_output=True, timeout=120)
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
    tab_blue = np.abs(with_plots - np.array([31, 119, 180]) / 255).max(axis=2) < 0.05  # matplotlib's C0
    assert tab_blue.sum() > 500
