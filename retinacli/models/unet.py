"""Compact U-Net for vessel segmentation (stage 1) with an optional ERA-Net error-attention head (stage 2).

Input of every model here: float32 tensor [N, 3, H, W], RGB already normalised (see `models.normalise`).
H and W must be multiples of ``2 ** (len(channels) - 1)``.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU; keeps H x W."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class Block(nn.Module):
    """Two conv-BN-ReLU layers with a 1x1 residual shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class UNetTrunk(nn.Module):
    """Encoder-decoder trunk. Returns decoder features [N, channels[0], H, W]."""

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (8, 16, 32, 64)):
        super().__init__()
        self.channels = tuple(channels)
        self.enc = nn.ModuleList()
        c_prev = in_channels
        for c in channels:
            self.enc.append(Block(c_prev, c))
            c_prev = c
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for c_low, c_high in zip(channels[::-1][:-1], channels[::-1][1:]):
            self.up.append(nn.Conv2d(c_low, c_high, 1, bias=False))
            self.dec.append(Block(2 * c_high, c_high))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = F.interpolate(up(x), scale_factor=2.0, mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return x


class VesselUNet(nn.Module):
    """Stage-1 vessel segmenter: trunk + 1x1 logit head. forward -> logits [N, 1, H, W]."""

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (8, 16, 32, 64)):
        super().__init__()
        self.trunk = UNetTrunk(in_channels, channels)
        self.head = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage-1 logits under the keys used by every vessel model."""
        logits = self.forward(x)
        return {"logits": logits, "stage1_logits": logits}


class ErrorAttentionHead(nn.Module):
    """ERA-Net error-attention head: 3x3 conv-BN-ReLU, 3x3 conv-BN-ReLU, 1x1 conv, sigmoid -> A in [0, 1]."""

    def __init__(self, c_in: int, c_mid: int = 16):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(c_in, c_mid), conv_bn_relu(c_mid, c_mid), nn.Conv2d(c_mid, 1, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(feats))


class RefinedVesselUNet(VesselUNet):
    """Stage-2 (ERA-Net) vessel model: refined logits = lam * l + mu * (A * l).

    ``forward`` returns the refined logits [N, 1, H, W]; ``forward_all`` also returns the stage-1
    logits ``l`` and the attention map ``A`` (supervised by the stage-1 error map during training).
    """

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (8, 16, 32, 64),
                 attention_channels: int = 16, lam: float = 0.5, mu: float = 0.5):
        super().__init__(in_channels, channels)
        self.attention = ErrorAttentionHead(channels[0] + 1, attention_channels)
        self.lam = float(lam)
        self.mu = float(mu)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.trunk(x)
        logits1 = self.head(feats)
        attn = self.attention(torch.cat([feats, logits1], dim=1))
        refined = self.lam * logits1 + self.mu * (attn * logits1)
        return {"logits": refined, "stage1_logits": logits1, "attention": attn}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["logits"]
