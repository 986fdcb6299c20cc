"""Unlearning a model trained elsewhere: adopt its user and item factors, then ``forget``.

A matrix-factorisation model from another library (implicit's ``user_factors`` / ``item_factors``,
LensKit's ``user_embeddings`` / ``item_embeddings``, any numpy arrays) scores a pair by the dot
product of its rows, which is recunlearn's MF. :func:`adopt_factors` puts those factors in an MF
model under an approximate method (IFRU, IF, SCIF, fine-tuning, NegGrad) together with the table
they were trained on and the objective they minimise, so that ``forget`` updates them without
training anything first.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel

from recunlearn.data.interactions import Interactions, Vocabulary
from recunlearn.errors import ConfigError, DataError, RecUnlearnError
from recunlearn.models.config import MFConfig
from recunlearn.train.runtime import resolve_device
from recunlearn.unlearn._approximate import ApproximateUnlearner
from recunlearn.unlearn.base import get_method


def adopt_factors(
    method: str,
    user_factors: Any,
    item_factors: Any,
    train: Interactions,
    valid: Interactions | None = None,
    *,
    loss: Literal["bce", "bpr"],
    l2: float,
    user_ids: Any = None,
    item_ids: Any = None,
    config: BaseModel | dict | None = None,
    **overrides: Any,
) -> ApproximateUnlearner:
    """An approximate method holding the given factors as its fitted MF model, ready to ``forget``.

    ``user_factors`` (users x d) and ``item_factors`` (items x d): row k is the factor of
    ``train.users.ids[k]`` (``train.items.ids[k]``), the order of ``train``'s vocabularies; or pass
    ``user_ids`` / ``item_ids``, the id of each row, and the rows are put in that order.
    ``train``: the rows the factors were trained on (what ``forget`` removes rows from);
    ``valid``: validation rows for IFRU's guard and fine-tuning's choice of epoch (optional).
    ``loss`` and ``l2``: the objective the factors (approximately) minimise, the one the update
    differentiates (they set ``train.loss`` and ``train.l2``); the further the factors are from its
    optimum, the rougher the update. ``config`` and keyword overrides: the method's other settings
    (training settings other than these two go in ``config={"train": {...}}``).
    """
    cls = get_method(method)
    if not issubclass(cls, ApproximateUnlearner):
        raise ConfigError(
            f"{method!r} is not an approximate method; adopted factors can be updated by "
            "'ifru', 'if', 'scif', 'finetune' or 'neggrad', never retrained"
        )
    if len(train) == 0:
        raise RecUnlearnError("cannot adopt factors for an empty training table")
    if valid is not None and not (
        np.array_equal(valid.users.ids, train.users.ids)
        and np.array_equal(valid.items.ids, train.items.ids)
    ):
        raise RecUnlearnError("validation data must share the training data's vocabularies")
    users = _factor_rows("user_factors", user_factors, user_ids, train.users)
    items = _factor_rows("item_factors", item_factors, item_ids, train.items)
    if users.shape[1] != items.shape[1]:
        raise DataError(
            f"user_factors have {users.shape[1]} columns but item_factors {items.shape[1]}; "
            "both need the same dimension"
        )
    values = config.model_dump() if isinstance(config, BaseModel) else dict(config or {})
    values.update(overrides)
    if "model" in values:
        raise ConfigError(
            "adopt_factors makes the model from the factors (MF); leave 'model' out of the config"
        )
    values["model"] = {"kind": "mf", "dim": users.shape[1]}
    values["train"] = {**dict(values.get("train") or {}), "loss": loss, "l2": l2}
    adopted = cls(values)
    model = MFConfig(dim=users.shape[1]).build(train.n_users, train.n_items, torch.Generator())
    with torch.no_grad():
        model.user_emb.weight.copy_(torch.from_numpy(users))
        model.item_emb.weight.copy_(torch.from_numpy(items))
    adopted.model = model.to(resolve_device(adopted.config.train.device)).eval()
    adopted.fit_info = {"adopted": "factors"}
    adopted.train, adopted.valid, adopted.fit_seconds = train, valid, 0.0
    train.content_hash()  # fingerprinted as fit does: every forget report names it
    return adopted


def _factor_rows(name: str, factors: Any, ids: Any, vocabulary: Vocabulary) -> np.ndarray:
    """``factors`` as float32 rows in the vocabulary's order, checked: 2-D, numeric, finite, one row per id."""
    array = np.asarray(factors)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(
            f"{name} must be a 2-D array ({vocabulary.kind}s x dimension), got shape {array.shape}"
        )
    if array.dtype.kind not in "fiu":
        raise DataError(f"{name} must hold numbers, got dtype {array.dtype}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise DataError(
            f"{name} hold {int(bad.sum())} non-finite value(s) (NaN or inf), "
            f"the first in row {int(np.flatnonzero(bad.any(1))[0])}"
        )
    if ids is None:
        if len(array) != len(vocabulary):
            raise DataError(
                f"{name} have {len(array)} rows but the training data has {len(vocabulary)} "
                f"{vocabulary.kind}s; row k must be the factor of train.{vocabulary.kind}s.ids[k]"
            )
        return np.ascontiguousarray(array, np.float32)
    positions = vocabulary.index(np.asarray(ids))
    if len(positions) != len(array):
        raise DataError(
            f"{name} have {len(array)} rows but {len(positions)} {vocabulary.kind} ids were given"
        )
    if len(np.unique(positions)) != len(positions) or len(positions) != len(vocabulary):
        missing = np.setdiff1d(np.arange(len(vocabulary)), positions)
        detail = (
            f"missing e.g. {vocabulary.ids[missing[0]]!r}"
            if len(missing)
            else "some id is repeated"
        )
        raise DataError(
            f"{name}: the {vocabulary.kind} ids must name each training {vocabulary.kind} once ({detail})"
        )
    ordered = np.empty(array.shape, np.float32)
    ordered[positions] = array
    return ordered
