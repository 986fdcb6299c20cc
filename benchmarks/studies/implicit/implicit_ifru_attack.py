# Answers: how much of the Recall@20 the fake-positive attack costs BPR MF each IFRU setting wins back, and at what cost.
import json
import sys

import numpy as np
from _ml100k import study_split

from recunlearn.bench.implicit import _method_config
from recunlearn.data import DeletionRequest
from recunlearn.evaluate import ranking_report
from recunlearn.unlearn import get_method

kind = sys.argv[1]
seed = int(sys.argv[2])
cfg, split, request = study_split("fake_positives", seed)
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
