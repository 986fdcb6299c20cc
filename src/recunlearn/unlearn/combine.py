"""How the K LoRA adapters of an LLM method give one logit per prompt: the LLM family's counterpart of
the collaborative aggregators (:mod:`recunlearn.unlearn.aggregate`).

- :class:`SingleAdapter`: adapter 0 alone (``llm-retrain``, ``llm-neggrad``).
- :class:`OutputAverage`: the logit of the present adapters' mean probability, K forward passes
  (``llm-sisa``, ``llm-receraser``, ``llm-grapheraser``).
- :class:`AdapterAttention`: APA's sample-adaptive weights over the adapters, mixed at the parameter
  level in one forward pass.

A method picks its partition and its combiner; the partition path refits the combiner whenever adapters
or the validation data change. A quarantined adapter, like an emptied one, is absent
(``method.present``): the average runs over the rest, the attention gives it zero weight and
renormalises, so quarantine needs nothing of a combiner but that refit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np
import torch

from recunlearn.data.samples import SampleTable
from recunlearn.train.auc import roc_auc

if TYPE_CHECKING:
    from recunlearn.unlearn._llm_common import LLMUnlearner


def average_probabilities(adapter_logits: np.ndarray) -> np.ndarray:
    """Output ensemble: the logit of the mean probability over adapters (rows; NaN rows = empty adapters)."""
    probs = np.nanmean(1.0 / (1.0 + np.exp(-adapter_logits.astype(np.float64))), axis=0)
    probs = np.clip(probs, 1e-12, 1 - 1e-12)
    return np.log(probs / (1 - probs)).astype(np.float32)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so that a dot product of two is their cosine similarity."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class AdapterCombiner(ABC):
    """Combines the adapters' outputs into one logit per prompt. It reads the adapters through the
    method (its forward passes, ``present``, the cached validation logits) and holds only what it
    fitted, so the partition path can deep-copy it before a refit and put it back if ``forget`` fails."""

    @abstractmethod
    def logits(
        self, method: LLMUnlearner, token_ids: list[list[int]], samples: SampleTable
    ) -> np.ndarray:
        """Logits of tokenised prompts from the method's current adapters."""

    def fit(self, method: LLMUnlearner) -> None:
        """(Re)fit after adapters were (re)trained or set aside, or the validation data changed."""
        return None

    def tensors(self) -> dict[str, torch.Tensor]:
        """Fitted state that cannot be recomputed on load from the adapters and validation data."""
        return {}

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take up :meth:`tensors` from a saved folder (the method's state tensors, by name)."""
        return None


class SingleAdapter(AdapterCombiner):
    """One adapter on all samples: its logits."""

    def logits(self, method, token_ids, samples):
        return method._pass(token_ids, single=0)


class OutputAverage(AdapterCombiner):
    """The mean of the present adapters' probabilities, as a logit (K forward passes)."""

    def logits(self, method, token_ids, samples):
        return average_probabilities(
            np.stack(
                [method._pass(token_ids, single=int(k)) for k in np.flatnonzero(method.present)]
            )
        )


class AdapterAttention(AdapterCombiner):
    """APA's sample-adaptive attention: a prompt's weight on adapter k is softmax_k(-tau x adapter k's
    mean error on the prompt's nearest validation prompts), from every adapter's cached error on every
    validation prompt (``valid_errors``), with tau chosen on validation (``tau_``, ``tau_selection``).

    Its settings (weighting, tau, tau_grid, tau_holdout, neighbours, error) are read from the method's
    config at each fit and weighting, so that ``set_options`` changes them in one place. ``centres``
    (the shards' centres that 'semantic' weighting compares prompts with) come from the partition and
    are saved: they are not recomputed on load."""

    def __init__(self) -> None:
        self.centres: np.ndarray = np.zeros((0, 0), np.float32)
        self.valid_errors = torch.zeros(0)
        self.tau_: float = float("nan")
        self.tau_selection: dict[str, float] = {}

    def fit(self, method):
        """Refresh the attention cache from every adapter's cached validation logits (the cache of
        unchanged adapters is recomputed too: it is cheap, and the validation data may have changed)."""
        config = method.config
        self.tau_ = config.tau
        self.tau_selection = {}
        if method.valid is None:
            return
        probs = 1.0 / (1.0 + np.exp(-method.valid_logits.astype(np.float64)))
        label = method.valid.label.astype(np.float64)[None, :]
        if config.error == "absolute":
            errors = np.abs(probs - label)
        else:
            p = np.clip(probs, 1e-7, 1 - 1e-7)
            errors = -(label * np.log(p) + (1 - label) * np.log(1 - p))
        self.valid_errors = torch.as_tensor(errors, dtype=torch.float32)
        if (
            config.tau_grid is not None
            and config.weighting == "attention"
            and len(method.valid) > 1
        ):
            scores = self._validation_auc_by_tau(method, probs)
            if all(np.isfinite(list(scores.values()))):  # else one class only: nothing to rank by
                self.tau_selection = scores
                self.tau_ = float(
                    max(scores, key=lambda t: (scores[t], -float(t)))
                )  # ties: the softer

    def held_out_error(self, method: LLMUnlearner, chunk: int = 2048) -> torch.Tensor:
        """Per validation prompt (rows) and adapter, the mean error on its nearest validation prompts
        among those it is not held out from (``tau_holdout``)."""
        valid = method.valid
        neighbours = min(method.config.neighbours, len(valid) - 1)
        reps = torch.as_tensor(method.valid_repr)
        _, user = np.unique(valid.user, return_inverse=True)
        user = torch.as_tensor(np.where(valid.user == "", -1 - np.arange(len(user)), user))
        error = torch.empty(len(reps), method.n_parts)
        for start in range(
            0, len(reps), chunk
        ):  # valid x valid similarities, a chunk of rows at a time
            rows = torch.arange(start, min(start + chunk, len(reps)))
            similarity = reps[rows] @ reps.T
            held_out = torch.zeros_like(similarity, dtype=torch.bool)
            held_out[torch.arange(len(rows)), rows] = True
            if method.config.tau_holdout == "user":
                same = user[rows][:, None] == user[None, :]
                alone = same.sum(1) >= len(reps)  # the prompt's user holds every validation prompt
                held_out |= same & ~alone[:, None]
            values, top = similarity.masked_fill(held_out, -torch.inf).topk(neighbours, dim=1)
            usable = torch.isfinite(
                values
            ).float()  # fewer usable prompts than neighbours: average those
            picked = self.valid_errors[:, top] * usable
            error[rows] = (picked.sum(-1) / usable.sum(-1).clamp_min(1)).T
        return error

    @staticmethod
    def softmax(method: LLMUnlearner, error: torch.Tensor, tau: float) -> torch.Tensor:
        """Attention weights from errors (rows: prompts); absent adapters get zero."""
        return torch.softmax(
            (-tau * error).masked_fill(~torch.as_tensor(method.present), -torch.inf), dim=1
        )

    def _validation_auc_by_tau(self, method: LLMUnlearner, probs: np.ndarray) -> dict[str, float]:
        """Held-out validation AUC of the attention-weighted mixture of cached probabilities, per tau."""
        error = self.held_out_error(method)
        mixed = torch.as_tensor(probs.T, dtype=torch.float32)
        return {
            f"{tau:g}": roc_auc(
                method.valid.label, (self.softmax(method, error, tau) * mixed).sum(1).numpy()
            )
            for tau in method.config.tau_grid
        }

    def weights(
        self, method: LLMUnlearner, samples: SampleTable, token_ids: list[list[int]] | None = None
    ) -> np.ndarray:
        """Per-sample adapter weights (n x K) under the configured weighting; absent adapters get 0."""
        config = method.config
        present = torch.as_tensor(method.present)
        n, k = len(samples), method.n_parts
        if config.weighting == "average":
            w = present.float().expand(n, k) / present.sum()
            return w.numpy().copy()
        query = torch.as_tensor(unit_rows(method.representations(samples, token_ids)))
        if config.weighting == "semantic":
            logits = config.tau * query @ torch.as_tensor(unit_rows(self.centres)).T
        else:
            similarity = query @ torch.as_tensor(method.valid_repr).T
            top = similarity.topk(min(config.neighbours, similarity.shape[1]), dim=1).indices
            error = self.valid_errors[:, top].mean(-1).T  # n x K
            logits = -self.tau_ * error
        logits = logits.masked_fill(~present, -torch.inf)
        if config.weighting == "major":
            return torch.nn.functional.one_hot(logits.argmax(1), k).float().numpy()
        return torch.softmax(logits, dim=1).numpy()

    def logits(self, method, token_ids, samples):
        return method._pass(token_ids, weights=self.weights(method, samples, token_ids))

    def tensors(self):
        return {"centres": torch.from_numpy(self.centres)}

    def restore(self, tensors):
        self.centres = tensors["centres"].numpy()
