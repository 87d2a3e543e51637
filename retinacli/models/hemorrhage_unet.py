"""Haemorrhage segmenter after the haemorrhage seed paper (Skouta et al. 2022): a U-Net with batch norm on
the green channel, whose last decoder features are concatenated with the input image before the logit head.

Input, as for every model here: float32 [N, 3, H, W] RGB normalised inside the FOV (``models.normalise``;
the black border is already removed by the FOV crop). The network keeps only the green channel
(index 1): haemorrhages are dark red and stand out most there. Output: logits [N, 1, H, W]; the sigmoid is
applied by the exported graph / backends. H and W must be multiples of ``2 ** (len(channels) - 1)``.
"""
from __future__ import annotations

import torch
from torch import nn

from retinacli.models.unet import UNetTrunk, conv_bn_relu

GREEN = 1


class HemorrhageUNet(nn.Module):
    """Green channel -> U-Net trunk -> concat(decoder features, green input) -> 3x3 conv-BN-ReLU -> 1x1 logits."""

    def __init__(self, channels: tuple[int, ...] = (12, 24, 48, 96), head_channels: int = 8):
        super().__init__()
        self.trunk = UNetTrunk(1, channels)
        self.fuse = conv_bn_relu(channels[0] + 1, head_channels)
        self.head = nn.Conv2d(head_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        green = x[:, GREEN:GREEN + 1]
        return self.head(self.fuse(torch.cat([self.trunk(green), green], dim=1)))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits under the keys the training loop reads for every single-stage model."""
        logits = self.forward(x)
        return {"logits": logits, "stage1_logits": logits}
