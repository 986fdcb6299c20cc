"""`bench apa`: APA's own settings are checked before any training, and its row reports what they give."""

from __future__ import annotations

import pytest

from recunlearn.bench import apa
from recunlearn.bench.apa import ApaBenchConfig, run_apa_benchmark
from recunlearn.errors import ConfigError


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"tau": 10}, "tau is chosen from tau_grid"),
        ({"no_such_option": 1}, "no_such_option"),
        ({"weighting": "loudest"}, "weighting"),
    ],
)
def test_apa_settings_are_refused_before_any_sample_or_adapter(monkeypatch, settings, message):
    def prepare_samples(config):
        raise AssertionError("samples built before APA's settings were checked")

    monkeypatch.setattr(apa, "prepare_samples", prepare_samples)
    with pytest.raises(ConfigError, match=message):
        run_apa_benchmark(ApaBenchConfig.quick(methods=["apa"], apa=settings), log=lambda m: None)


def test_a_fixed_tau_with_no_grid_is_accepted(monkeypatch):
    class Checked(Exception):
        pass

    def prepare_samples(config):
        raise Checked

    monkeypatch.setattr(apa, "prepare_samples", prepare_samples)
    with pytest.raises(Checked):
        run_apa_benchmark(
            ApaBenchConfig.quick(methods=["apa"], apa={"tau": 10, "tau_grid": None}),
            log=lambda m: None,
        )


def test_the_main_auc_is_scored_under_the_configured_options():
    """An ablation weighting asked for is what the row's AUC and latency measure, not the attention's."""
    results = run_apa_benchmark(
        ApaBenchConfig.quick(methods=["apa"], apa={"weighting": "major"}), log=lambda m: None
    )
    row = results["rows"][1]
    assert row["auc"] == row["variants"]["major (ND)"]["auc"]
    assert row["auc"] != row["variants"]["APA(ND)"]["auc"]  # so the check above tells them apart
    assert row["latency_batch_s"] > 0


def test_the_label_threshold_follows_the_prompt_style_unless_given():
    """TALLRec labels movies liked above 3 and books above 5; books built with 3 were mislabelled."""
    assert ApaBenchConfig().label_threshold == 3.0
    assert ApaBenchConfig(style="book").label_threshold == 5.0
    assert ApaBenchConfig(style="book", threshold=7).label_threshold == 7.0
