# Answers: Recall@20 of scoring each user by the shard that holds their rows (RecEraser user partition, BPR shards), per shard setting.
# ruff: noqa: B023  (the closures run inside the loop iteration that defines them)
import json
import sys

import numpy as np
import torch
from _ml100k import study_split

from recunlearn.bench.implicit import _method_config
from recunlearn.train.ranking import RankingTask
from recunlearn.unlearn import get_method

kind = sys.argv[1]
seed = int(sys.argv[2])
cfg, split, request = study_split("users", seed)
for extra in sys.argv[3:]:
    extra = json.loads(extra)
    conf = _method_config(cfg, "receraser", kind, seed)
    conf["aggregator"] = {"kind": "average"}
    for k, v in extra.items():
        conf[k] = {**conf.get(k, {}), **v} if isinstance(v, dict) else v
    m = get_method("receraser")(conf).fit(split.train, split.valid)
    tr = m.train
    n_u = tr.n_users
    owner = np.zeros(n_u, np.int64)
    owner[tr.user] = m.assignment
    with torch.no_grad():
        L = torch.stack([mod.score_all(torch.arange(n_u)) for mod in m.models]).double()
    own = L[torch.as_tensor(owner), torch.arange(n_u)]

    def f(users):
        return own[torch.as_tensor(users)]

    print(
        extra,
        "owner test",
        round(RankingTask(tr, split.test, 20).evaluate(f)["recall@20"], 4),
        [i.get("best_epoch") for i in m.shard_info],
        flush=True,
    )
