# Answers: Recall@20 (test and validation) of RecEraser's BPR shards combined by folding each user into every other shard (implicit least squares by CG), mixed with the owner shard, over fold-in settings.
import sys
import time

import numpy as np
import torch
from _ml100k import study_split

from recunlearn.bench.implicit import _method_config
from recunlearn.evaluate import ranking_report
from recunlearn.train.ranking import RankingTask
from recunlearn.unlearn import get_method
from recunlearn.unlearn.aggregate import fold_in

torch.set_num_threads(1)
kind = sys.argv[1]
seed = int(sys.argv[2])
cfg, split, request = study_split("users", seed)
conf = _method_config(cfg, "receraser", kind, seed)
t = time.time()
m = get_method("receraser")(conf).fit(split.train, split.valid)
print("fit", round(time.time() - t, 1))
m.forget(request)
tr = m.train
print(
    "owner(default, after forget)",
    round(ranking_report(m, tr, split.test, 20)["recall@20"], 4),
    flush=True,
)
n_u, n_i = tr.n_users, tr.n_items
owner = np.zeros(n_u, np.int64)
owner[tr.user] = m.assignment
users = torch.as_tensor(np.asarray(tr.user))
items = torch.as_tensor(np.asarray(tr.item))
test = RankingTask(tr, split.test, 20)
valid = RankingTask(tr, split.valid, 20)


def ev(name, S):
    def f(u):
        return S[torch.as_tensor(u)]

    r = test.evaluate(f)["recall@20"]
    print(name, "test", round(r, 4), "valid", round(valid.evaluate(f)["recall@20"], 4), flush=True)
    return r


shards = []
for mod in m.models:
    with torch.no_grad():
        U, V = [w.detach().double() for w in mod.representations()]
    shards.append((U, V))
ar = torch.arange(n_u)
own_t = torch.as_tensor(owner)
for alpha, lam, iters in [(5.0, 1.0, 10), (5.0, 10.0, 10), (10.0, 3.0, 10)]:
    t = time.time()
    Ls = []
    for s, (U, V) in enumerate(shards):
        P = fold_in(V, users, items, n_u, alpha, lam, iters)
        own = own_t == s
        P[own] = U[own]
        Ls.append(P @ V.T)
    L = torch.stack(Ls)
    print("alpha", alpha, "lam", lam, "iters", iters, "fold+score s", round(time.time() - t, 2))
    Z = (L - L.mean(2, keepdim=True)) / L.std(2, keepdim=True).clamp_min(1e-12)
    for w in (0.35, 0.5):
        ev(f"  owner z w{w} + mean z", w * Z[own_t, ar] + (1 - w) * Z.mean(0))
