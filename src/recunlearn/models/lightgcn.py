"""LightGCN (He et al., SIGIR 2020): embeddings propagated over the symmetric-normalised graph.

The graph holds the positive-label edges of the training data (IFRU's protocol), without
self-loops; the final representation is the mean of the layer-0..L embeddings. Unlearning methods
that remove edges call :meth:`set_graph` with the remaining data, so scoring never uses a deleted edge.
"""

from __future__ import annotations

import torch

from recunlearn.data.interactions import Interactions
from recunlearn.models.base import CFModel
from recunlearn.models.graph import normalized_adjacency


class LightGCN(CFModel):
    default_patience = 20
    """Longer than MF's: LightGCN's validation AUC can stay flat for a stretch of epochs before it
    climbs again, and a shorter patience stops some seeds on that plateau, so retraining would swing
    with the seed."""

    def __init__(self, *args, n_layers: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.n_layers = n_layers
        self.adjacency: torch.Tensor | None = None

    def set_graph(self, data: Interactions) -> None:
        pos = data.label > 0
        self.adjacency = normalized_adjacency(
            self.n_users, self.n_items, data.user[pos], data.item[pos]
        ).to(self.user_emb.weight.device)

    def _apply(self, fn, recurse=True):  # keep the graph on the module's device
        out = super()._apply(fn, recurse)
        if self.adjacency is not None:
            self.adjacency = fn(self.adjacency)
        return out

    def propagate(
        self, embeddings: torch.Tensor, adjacency: torch.Tensor | None = None
    ) -> torch.Tensor:
        adjacency = self.adjacency if adjacency is None else adjacency
        if adjacency is None:
            raise RuntimeError("LightGCN has no graph: call set_graph(train_data) first")
        layers = [embeddings]
        for _ in range(self.n_layers):
            layers.append(torch.sparse.mm(adjacency, layers[-1]))
        return torch.stack(layers).mean(0)

    def representations(self, user_weight=None, item_weight=None, adjacency=None):
        u = self.user_emb.weight if user_weight is None else user_weight
        i = self.item_emb.weight if item_weight is None else item_weight
        out = self.propagate(torch.cat([u, i]), adjacency)
        return out[: self.n_users], out[self.n_users :]
