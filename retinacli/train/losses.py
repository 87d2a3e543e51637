"""Losses on logits inside the FOV. Tensors: logits/label/fov [N, 1, H, W] float."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_dice_loss(logits: torch.Tensor, label: torch.Tensor, fov: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy (mean over FOV pixels) + dice_weight * (1 - soft Dice over the batch)."""
    bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
    bce = (bce * fov).sum() / fov.sum().clamp_min(1.0)
    prob = torch.sigmoid(logits) * fov
    inter = (prob * label).sum()
    dice = (2 * inter + 1.0) / (prob.sum() + (label * fov).sum() + 1.0)
    return bce + dice_weight * (1.0 - dice)


def attention_mse_loss(attention: torch.Tensor, error_map: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
    """ERA-Net L_EA: mean squared error between the attention map A and the stage-1 error map E, inside the FOV."""
    return (((attention - error_map) ** 2) * fov).sum() / fov.sum().clamp_min(1.0)


def av_bce_loss(av_logits: torch.Tensor, artery: torch.Tensor, vein: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
    """Artery-vs-vein cross-entropy on the classification logit c (artery = 1), averaged over the pixels labelled
    artery or vein inside the FOV; uncertain, crossing and background pixels are ignored. 0 when there are none."""
    known = ((artery + vein) > 0).to(av_logits.dtype) * fov
    bce = F.binary_cross_entropy_with_logits(av_logits, artery, reduction="none")
    return (bce * known).sum() / known.sum().clamp_min(1.0)
