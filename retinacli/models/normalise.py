"""Input normalisation used in training and baked into exported graphs.

``standardise_in_fov``: float tensor [N, 3, H, W] of 0..255 RGB with black (0) outside the FOV ->
per-image, per-channel zero mean / unit variance computed over FOV pixels (any channel > 0); outside
stays 0. Making contrast per image removes most camera-to-camera exposure differences.
"""
from __future__ import annotations

import torch
from torch import nn


def standardise_in_fov(x: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    fov = (x.sum(dim=1, keepdim=True) > 0).to(x.dtype)
    n = fov.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * fov).sum(dim=(2, 3), keepdim=True) / n
    var = (((x - mean) * fov) ** 2).sum(dim=(2, 3), keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps) * fov


class ProbabilityGraph(nn.Module):
    """Deployment wrapper: uint8 image [N, 3, H, W] -> vessel probability float32 [N, 1, H, W]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = standardise_in_fov(image.to(torch.float32))
        return torch.sigmoid(self.model(x))
