"""The docs' current-results tables are generated from the results files their records name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recunlearn.bench import exact, records
from recunlearn.bench._protocol import load_document
from recunlearn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_every_committed_table_is_reproduced_from_its_json():
    pages = records.render_tables(
        ROOT / "benchmarks" / "configs", ROOT / "docs" / "results", root=ROOT
    )
    assert pages, "no records"
    for committed, text in pages.items():
        assert committed.read_text() == text.replace(
            str(ROOT / "benchmarks" / "configs"), "benchmarks/configs"
        ), f"{committed} drifted from its results files: run `make results`"


def test_links_in_a_table_still_lead_to_their_files_from_the_docs():
    pages = records.render_tables(
        ROOT / "benchmarks" / "configs", ROOT / "docs" / "results", root=ROOT
    )
    targets = [
        (page.parent / target).resolve()
        for page, text in pages.items()
        for target in re.findall(r"\]\((?!https?:|#)([^)\s]+)\)", text)
    ]
    assert any(t.suffix == ".png" for t in targets), "expected the stream plots among the links"
    missing = [str(t) for t in targets if not t.exists()]
    assert not missing, f"links that lead nowhere: {missing[:5]}"


def test_a_table_comes_from_the_file_its_record_names(tmp_path):
    config = exact.ExactBenchConfig.quick(
        methods=["retrain", "sisa"], output=str(tmp_path / "r" / "quick-cpu.json")
    )
    exact.run_exact_benchmark(config, log=lambda m: None)
    configs = tmp_path / "configs {protocol}"  # braces in a path are text, not a format field
    configs.mkdir()
    (configs / "exact-quick-cpu.toml").write_text(
        'protocol = "exact"\nresults = "r/quick-cpu.json"\nhardware = "here"\ncommand = "x"\n'
    )
    [page] = records.write_tables(configs, tmp_path / "docs", root=tmp_path)
    text = page.read_text()
    assert exact.markdown_table(load_document(tmp_path / "r" / "quick-cpu.json")) in text
    assert "| sisa | 2 |" in text and "- hardware: here" in text
    assert text.startswith("# Current results: exact\n") and f"`{configs}/`" in text


def test_a_record_of_an_unknown_protocol_is_refused(tmp_path):
    (tmp_path / "x.toml").write_text(
        'protocol = "nope"\nresults = "r.json"\nhardware = "h"\ncommand = "c"\n'
    )
    with pytest.raises(ConfigError, match="unknown protocol 'nope'"):
        records.write_tables(tmp_path, tmp_path / "out")
