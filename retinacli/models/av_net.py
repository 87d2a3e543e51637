"""Two-stream artery/vein network after SeqNet (Li et al., MICCAI 2020).

Segmentation stream: the stage-1 vessel U-Net (same module names ``trunk``/``head``, so it loads the shipped vessel
model's weights directly) -> vessel logit v. Classification stream: a second U-Net on the image plus the segmentation
stream's vessel probability -> artery-vs-vein logit c. The classification output is multiplied element-wise with the
segmentation result, giving per-pixel probabilities

    p_vessel = sigmoid(v),   p_artery = p_vessel * sigmoid(c),   p_vein = p_vessel * (1 - sigmoid(c)).

Input: float32 [N, 3, H, W] RGB normalised inside the FOV (``models.normalise``); H, W multiples of
``2 ** (len(channels) - 1)``. ``forward`` -> logits [N, 2, H, W] (v, c); ``probabilities`` -> [N, 3, H, W]
(vessel, artery, vein), which is what the exported graph and every backend return for this model.
"""
from __future__ import annotations

import torch
from torch import nn

from retinacli.models.unet import UNetTrunk

AV_CHANNELS = ("vessel", "artery", "vein")


class AvSeqNet(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64), av_channels: tuple[int, ...] = (8, 16, 32, 64)):
        super().__init__()
        self.trunk = UNetTrunk(3, channels)
        self.head = nn.Conv2d(channels[0], 1, 1)
        self.cls_trunk = UNetTrunk(4, av_channels)
        self.cls_head = nn.Conv2d(av_channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.head(self.trunk(x))
        c = self.cls_head(self.cls_trunk(torch.cat([x, torch.sigmoid(v)], dim=1)))
        return torch.cat([v, c], dim=1)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Vessel logits under the keys every vessel model uses, plus the artery-vs-vein logit ``av_logits``."""
        out = self.forward(x)
        return {"logits": out[:, :1], "stage1_logits": out[:, :1], "av_logits": out[:, 1:]}

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W]: vessel, artery, vein probabilities (artery + vein = vessel)."""
        out = self.forward(x)
        p_v = torch.sigmoid(out[:, :1])
        p_a = torch.sigmoid(out[:, 1:])
        return torch.cat([p_v, p_v * p_a, p_v * (1.0 - p_a)], dim=1)
