# Answers: how much of the Recall@20 the fake-positive attack costs BPR MF each IFRU setting wins back, and at what cost.
import json
import os
import sys

import numpy as np

from recunlearn.bench.experiment import prepare
from recunlearn.bench.implicit import ImplicitBenchConfig, _method_config, deletion
from recunlearn.data import DeletionRequest
from recunlearn.evaluate import ranking_report
from recunlearn.unlearn import get_method

kind = sys.argv[1]
seed = int(sys.argv[2])
cfg = ImplicitBenchConfig.model_validate(
    {
        "data": {
            "dataset": os.environ.get("RECUNLEARN_ML100K", "../shared/data/ml-100k"),
            "protocol": "implicit",
            "threshold": 3.0,
        }
    }
)
split = prepare(cfg.data)
split, request = deletion(cfg, "fake_positives", split, seed)
ref = get_method("retrain")(_method_config(cfg, "retrain", kind, seed)).fit(
    split.train, split.valid
)
orig = get_method("finetune").adopt(ref)
r_orig = ranking_report(orig, ref.train, split.test, 20)["recall@20"]
rep = ref.forget(request)
r_ret = ranking_report(ref, ref.train, split.test, 20)["recall@20"]
print(f"original {r_orig:.4f} retrain {r_ret:.4f} ({rep.seconds:.2f} s)", flush=True)
for v in sys.argv[3:]:
    name, extra = v.split("=", 1)
    extra = json.loads(extra)
    chunks = extra.pop("chunks", 1)
    conf = {**_method_config(cfg, name, kind, seed), **extra}
    m = get_method(name).adopt(orig, conf)
    pairs = request.pairs
    seconds, notes = 0.0, []
    for part in np.array_split(np.arange(len(pairs)), chunks):
        r = m.forget(DeletionRequest(pairs=[pairs[i] for i in part]))
        seconds += r.seconds
        notes.append((r.details.get("update"), r.details.get("guard")))
    rec = ranking_report(m, m.train, split.test, 20)["recall@20"]
    print(
        f"{v}: recall {rec:.4f} recovered {(rec - r_orig) / (r_ret - r_orig):.0%} forget {seconds:.3f} s speedup {rep.seconds / seconds:.0f}x {notes[:2]}",
        flush=True,
    )
