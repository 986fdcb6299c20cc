"""NegGrad for the language-model recommender: one LoRA adapter on all prompt samples (as
``llm-retrain``); forgetting climbs the removed samples' loss for a few AdamW steps from the current
adapter instead of retraining it. An approximate baseline: cheap, and nothing makes the adapter one
that never saw the samples."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from recunlearn.models.llm.lora import adapter_tensors, load_adapter
from recunlearn.models.llm.scoring import collate
from recunlearn.train.adapter import init_adapter
from recunlearn.unlearn._llm_common import LLMMethodConfig, LLMUnlearner
from recunlearn.unlearn.base import PartChange, UnlearningReport, register, restored_on_error


class LLMNegGradConfig(LLMMethodConfig):
    """How far the adapter climbs the removed samples' loss."""

    steps: int = Field(5, ge=1)
    """AdamW steps of ascent, each on every removed sample."""
    lr: float = Field(1e-3, gt=0)
    """AdamW learning rate of the ascent."""


@register("llm-neggrad")
class LLMNegGrad(LLMUnlearner):
    """One adapter; ``forget`` is gradient ascent on the removed samples' binary cross-entropy."""

    exact = False
    Config = LLMNegGradConfig

    def _forget(self, mask: np.ndarray) -> UnlearningReport:
        removed, before = self.train.take(mask), self.train.content_hash()
        with restored_on_error(
            self, self._forget_state, after=lambda: self.trainer.reload(self, [0])
        ):
            self.train, self.assignment = self.train.drop(mask), self.assignment[~mask]
            adapter, loss = self._ascend(removed)
            self.models[0] = adapter
            self.shard_info[0] = {**self.shard_info[0], "data_hash": self.train.content_hash()}
            load_adapter(self.scorer, 0, adapter)
        part = PartChange(
            part="adapter-0",
            action="updated",
            data_hash_before=before,
            data_hash_after=self.train.content_hash(),
            rows_before=len(mask),
            rows_after=len(self.train),
        )
        return self._report([part], steps=self.config.steps, final_removed_loss=loss)

    def _ascend(self, removed) -> tuple[dict[str, torch.Tensor], float]:
        """The current adapter after ``steps`` AdamW steps up the removed samples' loss."""
        scorer, params = init_adapter(self.adapter_job(0))  # a private trainable copy, seeded
        current = self.models[0]
        with torch.no_grad():
            for name, param in scorer.named_parameters():
                key = name.replace(".lora_A.default.weight", ".A").replace(
                    ".lora_B.default.weight", ".B"
                )  # adapter_tensors' names; a head's are its own
                if key in current:
                    param.copy_(current[key].reshape(param.shape))
        ids, attention = collate(
            self._tokenize(removed), self.backbone.tokenizer.pad_token_id, self.device
        )
        labels = torch.tensor(removed.label, dtype=torch.float32, device=self.device)
        optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=0.0)
        scorer.train()
        for _ in range(self.config.steps):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                scorer(ids, attention), labels
            )
            (-loss).backward()
            optimizer.step()
        scorer.eval()
        return adapter_tensors(scorer), float(loss.item())
