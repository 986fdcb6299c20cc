"""How a language model scores a prompt, and the batched plumbing around it.

Both scorers return one logit z per prompt, P(like) = sigmoid(z):

- :class:`CausalYesNoScorer` (TALLRec): z = logit("Yes") - logit("No") of the first answer token
  after the prompt, i.e. the softmax over the two answer tokens; only the last position's logits are
  computed (``logits_to_keep=1``).
- :class:`EncoderScorer`: a linear head on the mean-pooled last hidden states (encoders have no
  answer tokens). A per-adapter head starts at zero, so every adapter starts from the same function;
  a shared head is fixed and frozen (``BackboneConfig.head``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from recunlearn.errors import ConfigError


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class CausalYesNoScorer(nn.Module):
    model_prefix = "lm."
    """Where the Hugging Face model sits in the scorer (saved adapters are keyed relative to it)."""

    def __init__(self, lm: nn.Module, yes_id: int, no_id: int):
        super().__init__()
        self.lm = lm
        self.yes_id, self.no_id = yes_id, no_id
        self.model_type = lm.config.model_type

    @property
    def n_layers(self) -> int:
        return self.lm.config.num_hidden_layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            logits_to_keep=1,
            use_cache=False,
        )
        last = out.logits[:, -1].float()
        return last[:, self.yes_id] - last[:, self.no_id]

    def input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            output_hidden_states=True,
            logits_to_keep=1,
            use_cache=False,
        )
        return out.hidden_states


class EncoderScorer(nn.Module):
    model_prefix = "encoder."
    """Where the Hugging Face model sits in the scorer (saved adapters are keyed relative to it)."""

    def __init__(
        self, encoder: nn.Module, shared_head: tuple[torch.Tensor, torch.Tensor] | None = None
    ):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 1)
        self.head_shared = shared_head is not None
        """The head is the backbone's, frozen and common to every adapter (else trained with each)."""
        with torch.no_grad():
            if self.head_shared:
                self.head.weight.copy_(shared_head[0])
                self.head.bias.copy_(shared_head[1])
            else:
                self.head.weight.zero_()
                self.head.bias.zero_()
        self.model_type = encoder.config.model_type

    @property
    def n_layers(self) -> int:
        return self.encoder.config.num_hidden_layers

    def _encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **options
    ) -> tuple[torch.Tensor, ...]:
        """The encoder's hidden states (all layers if asked, else the last), left-aligned like the input.

        Batches are left-padded (what causal scoring needs); an encoder numbers positions from the
        first column (BERT) or from its own count of real tokens (RoBERTa), so each row is rotated
        to start at its first real token before encoding and rotated back after: a prompt's
        states do not depend on the other prompts in its batch."""
        width = input_ids.shape[1]
        columns = torch.arange(width, device=input_ids.device)[None, :]
        pads = (attention_mask == 0).sum(1, keepdim=True)
        to_right, to_left = (columns + pads) % width, (columns - pads) % width
        out = self.encoder(
            input_ids=input_ids.gather(1, to_right),
            attention_mask=attention_mask.gather(1, to_right),
            **options,
        )
        states = (
            out.hidden_states if options.get("output_hidden_states") else (out.last_hidden_state,)
        )
        index = to_left[..., None].expand(-1, -1, states[0].shape[-1])
        return tuple(s.gather(1, index) for s in states)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        (states,) = self._encode(input_ids, attention_mask)
        return masked_mean(states, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.pooled(input_ids, attention_mask)
        return self.head(pooled.to(self.head.weight.dtype)).squeeze(-1).float()

    def input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return self._encode(input_ids, attention_mask, output_hidden_states=True)


def masked_mean(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


# tokens and batches -------------------------------------------------------------------------------------
def tokenize(tokenizer, prompts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per prompt (no padding), cut from the left at ``max_length``."""
    return tokenizer(list(prompts), truncation=True, max_length=max_length, padding=False)[
        "input_ids"
    ]


def collate(
    token_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``input_ids`` and ``attention_mask`` of a batch."""
    width = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, tokens in enumerate(token_ids):
        ids[row, width - len(tokens) :] = torch.as_tensor(tokens, dtype=torch.long)
        mask[row, width - len(tokens) :] = 1
    return ids.to(device), mask.to(device)


def batches(n: int, size: int) -> list[np.ndarray]:
    """Consecutive index blocks of at most ``size``."""
    return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]


def length_batches(token_ids: Sequence[Sequence[int]], size: int) -> list[np.ndarray]:
    """Positions of ``token_ids`` in blocks of at most ``size``, shortest prompts first (stable)."""
    order = np.argsort(
        np.fromiter((len(t) for t in token_ids), np.int64, len(token_ids)), kind="stable"
    )
    return [order[block] for block in batches(len(order), size)]


@torch.no_grad()
def predict_logits(
    scorer: nn.Module,
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
    batch_size: int = 64,
    before_batch: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """Logits of every prompt, in batches of similar lengths (less padding, so less work for the same
    prompts). ``before_batch(rows)`` runs first with the batch's positions in ``token_ids``, e.g. to set
    per-sample mixture weights."""
    was_training = scorer.training
    scorer.eval()
    out = np.empty(len(token_ids), np.float32)
    for rows in length_batches(token_ids, batch_size):
        if before_batch is not None:
            before_batch(rows)
        ids, mask = collate([token_ids[r] for r in rows], pad_id, device)
        out[rows] = scorer(ids, mask).float().cpu().numpy()
    scorer.train(was_training)
    return out


@torch.no_grad()
def representations(
    scorer: nn.Module,
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
    layer: int = 0,
    pooling: str = "mean",
    batch_size: int = 64,
) -> np.ndarray:
    """Frozen-model representation of each prompt: the ``layer``-th hidden state (0 = token embeddings),
    pooled over the prompt's tokens by mean or by its last token."""
    n = scorer.n_layers
    if not -(n + 1) <= layer <= n:
        raise ConfigError(
            f"representation_layer {layer} is out of range for a model with {n} layers "
            f"(0..{n}, or -{n + 1}..-1 from the last)"
        )
    out = None
    for rows in length_batches(token_ids, batch_size):
        ids, mask = collate([token_ids[r] for r in rows], pad_id, device)
        if layer == 0:
            states = scorer.input_embeddings()(ids)
        else:
            states = scorer.hidden_states(ids, mask)[layer]
        pooled = (
            (masked_mean(states, mask) if pooling == "mean" else states[:, -1])
            .float()
            .cpu()
            .numpy()
        )
        if out is None:
            out = np.empty((len(token_ids), pooled.shape[1]), np.float32)
        out[rows] = pooled
    return out if out is not None else np.zeros((0, 0), np.float32)
