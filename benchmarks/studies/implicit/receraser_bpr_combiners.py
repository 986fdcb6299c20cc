# Answers: Recall@20 of closed-form combiners of RecEraser's BPR shard models (owner shard, logit means, weighted), beside the attention.
import sys

import numpy as np
import torch
from _ml100k import study_split

from recunlearn.bench.implicit import _method_config
from recunlearn.evaluate import ranking_report
from recunlearn.train.ranking import RankingTask
from recunlearn.unlearn import get_method

kind = sys.argv[1]
seed = int(sys.argv[2])
cfg, split, request = study_split("users", seed)
conf = {
    **_method_config(cfg, "receraser", kind, seed),
    "aggregator": {"kind": "attention"},
    "shard_l2": 1e-3,
}
m = get_method("receraser")(conf).fit(split.train, split.valid)
tr = m.train
print("attention", round(ranking_report(m, tr, split.test, 20)["recall@20"], 4), flush=True)
n_u, n_i = tr.n_users, tr.n_items
owner = np.zeros(n_u, np.int64)
owner[tr.user] = m.assignment
with torch.no_grad():
    L = torch.stack([mod.score_all(torch.arange(n_u)) for mod in m.models]).double()  # K x U x I
test = RankingTask(tr, split.test, 20)
valid = RankingTask(tr, split.valid, 20)


def ev(name, S):
    def f(users):
        return S[torch.as_tensor(users)]

    print(
        name,
        "test",
        round(test.evaluate(f)["recall@20"], 4),
        "valid",
        round(valid.evaluate(f)["recall@20"], 4),
        flush=True,
    )


own = L[torch.as_tensor(owner), torch.arange(n_u)]
ev("owner", own)
ev("mean logits", L.mean(0))
Z = (L - L.mean(2, keepdim=True)) / L.std(2, keepdim=True)
ev("mean z", Z.mean(0))
for w in (0.3, 0.5, 0.7):
    ev(
        f"owner z w{w} + rest",
        w * Z[torch.as_tensor(owner), torch.arange(n_u)] + (1 - w) * Z.mean(0),
    )
