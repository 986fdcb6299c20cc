"""Completeness: how close an unlearned model is to the model retrained without the data.

Always measured against the retrained model (not the original): the goal is to be what training
without the data would give.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recunlearn.data.interactions import Interactions
from recunlearn.evaluate.metrics import Scorer
from recunlearn.train.auc import roc_auc


def score_distance(model: Scorer, reference: Scorer, data: Interactions) -> float:
    """Mean absolute difference of the two models' scores on ``data``'s pairs."""
    if len(data) == 0:
        return float("nan")
    a = model.score_index(data.user, data.item)
    b = reference.score_index(data.user, data.item)
    return float(np.mean(np.abs(a.astype(np.float64) - b)))


def parameter_distance(model: Any, reference: Any) -> float:
    """Relative L2 distance of the embedding tables, |theta - theta_ref| / |theta_ref|.

    Defined for methods holding one MF/LightGCN model (``.model``); NaN for ensembles (SISA, ...),
    whose parameters do not correspond to the retrained model's.
    """
    a, b = getattr(model, "model", None), getattr(reference, "model", None)
    if a is None or b is None or not hasattr(a, "user_emb") or not hasattr(b, "user_emb"):
        return float("nan")
    with torch.no_grad():
        theta = torch.cat([a.user_emb.weight.flatten(), a.item_emb.weight.flatten()]).double().cpu()
        theta_ref = (
            torch.cat([b.user_emb.weight.flatten(), b.item_emb.weight.flatten()]).double().cpu()
        )
    if theta.shape != theta_ref.shape:
        return float("nan")
    return float((theta - theta_ref).norm() / theta_ref.norm().clamp_min(1e-30))


def pair_losses(model: Scorer, data: Interactions) -> np.ndarray:
    """Binary cross-entropy of the model's probability on each row's label."""
    p = np.clip(model.score_index(data.user, data.item).astype(np.float64), 1e-7, 1 - 1e-7)
    return -(data.label * np.log(p) + (1 - data.label) * np.log(1 - p))


def membership_inference(
    model: Scorer, members: Interactions, non_members: Interactions, removed: Interactions
) -> dict[str, float]:
    """A loss-threshold membership-inference attack (Yeom et al. 2018) against ``model``.

    The threshold is the loss that best separates the model's training rows (``members``) from
    unseen rows (``non_members``, e.g. the test set) by balanced accuracy; the attack calls a row a
    member when its loss is at most it. ``removed_member_rate`` is the fraction of the removed rows
    it calls members: after complete unlearning it should match the retrained model's, for which
    they are truly unseen. ``attack_auc`` says how well loss separates members at all. Any NaN loss
    (a diverged model) makes all three NaN.
    """
    member_loss, other_loss = pair_losses(model, members), pair_losses(model, non_members)
    removed_loss = pair_losses(model, removed)
    undefined = not len(member_loss) or not len(other_loss) or not len(removed_loss)
    if (
        undefined
        or np.isnan(member_loss).any()
        or np.isnan(other_loss).any()
        or np.isnan(removed_loss).any()
    ):
        # a NaN loss compares False with any threshold: the removed rows would all read as non-members
        return {
            "attack_auc": float("nan"),
            "threshold": float("nan"),
            "removed_member_rate": float("nan"),
        }
    losses = np.concatenate([member_loss, other_loss])
    is_member = np.concatenate([np.ones(len(member_loss)), np.zeros(len(other_loss))])
    candidates = np.unique(np.quantile(losses, np.linspace(0, 1, 201)))
    tpr = (member_loss[None, :] <= candidates[:, None]).mean(1)
    fpr = (other_loss[None, :] <= candidates[:, None]).mean(1)
    threshold = float(candidates[np.argmax(tpr - fpr)])
    return {
        "attack_auc": roc_auc(is_member, -losses),
        "threshold": threshold,
        "removed_member_rate": float((removed_loss <= threshold).mean()),
    }


def completeness_report(
    model: Scorer,
    retrained: Scorer,
    removed: Interactions,
    removed_true: Interactions,
    test: Interactions,
    members: Interactions,
) -> dict[str, float]:
    """Every completeness measure of ``model`` against the model retrained without the data.

    ``removed`` are the removed rows as trained on; ``removed_true`` the same rows with their
    original labels (they differ for the label-flip attack); ``members`` the remaining training rows.
    """
    attack = membership_inference(model, members, test, removed)
    reference_attack = membership_inference(retrained, members, test, removed)
    return {
        "dist_removed": score_distance(model, retrained, removed),
        "dist_test": score_distance(model, retrained, test),
        "param_distance": parameter_distance(model, retrained),
        "auc_removed": roc_auc(
            removed_true.label, model.score_index(removed_true.user, removed_true.item)
        ),
        "mia_removed": attack["removed_member_rate"],
        "mia_removed_retrain": reference_attack["removed_member_rate"],
        "mia_gap": attack["removed_member_rate"] - reference_attack["removed_member_rate"],
        "mia_attack_auc": attack["attack_auc"],
    }
