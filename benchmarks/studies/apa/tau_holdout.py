"""Which validation protocol picks an attention tau that carries to test? (docs/apa.md)

For APA models fitted and saved by ``variants_cpu.py PRESET apa-pershard apa-shared --save DIR``,
prints, per held-out protocol ('sample': leave-one-out; 'user': the prompt's own user held out), the
tau APA chooses on validation and APA(ND)'s test AUC at that tau, beside the test AUC of every tau in
the grid (one test pass each). Run from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/studies/apa/tau_holdout.py PRESET DIR [variant ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from variants_cpu import PRESETS

from recunlearn.bench.apa import prepare_samples
from recunlearn.train.auc import roc_auc
from recunlearn.unlearn import get_method


def main(preset: str, folder: Path, variants: list[str]) -> None:
    torch.set_num_threads(1)
    _, _, test = prepare_samples(PRESETS[preset]["bench"])
    for variant in variants:
        apa = get_method("apa").load(folder / variant)
        apa.set_options(aggregation="ND", weighting="attention")
        on_test = {}
        for tau in apa.config.tau_grid:
            apa.set_options(tau=tau, tau_grid=None)
            on_test[tau] = roc_auc(test.label, apa.score(test))
        apa.set_options(tau_grid=tuple(on_test))
        picks = {}
        for holdout in ("sample", "user"):
            apa.set_options(tau_holdout=holdout)
            picks[holdout] = apa.tau_
        best = max(on_test, key=on_test.get)
        print(
            f"{variant}: leave-one-out picks {picks['sample']:g} (test {on_test[picks['sample']]:.3f}); "
            f"own user held out picks {picks['user']:g} (test {on_test[picks['user']]:.3f}); "
            f"best on test {best:g} ({on_test[best]:.3f}); every tau: "
            + ", ".join(f"{t:g} {a:.3f}" for t, a in on_test.items())
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset", choices=list(PRESETS))
    parser.add_argument("folder", type=Path)
    parser.add_argument("variants", nargs="*", default=["apa-pershard", "apa-shared"])
    args = parser.parse_args()
    main(args.preset, args.folder, args.variants)
