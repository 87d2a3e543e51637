"""The image-pair export form of the U-Net models: the same function, laid out for ONNX Runtime on AVX-512 CPUs.

ONNX Runtime's x86 convolutions work on channel blocks: 16 channels on AVX-512 CPUs, 8 on AVX2 ones. The vessel
model and both streams of the A/V model have 8 channels at full resolution (the haemorrhage model 12). On an AVX-512
CPU those maps are padded to 16 inside each convolution, and every concatenation, residual addition and pooling of
8-channel maps needs them reordered between the blocked and the plain layout; on the 2-core Xeon of the development
machine the reorders alone took about a fifth of the vessel model's inference time. This module rewrites a trained
model, for inference only, so that:

1. batch norm is folded into the convolutions;
2. the full-resolution level runs on image pairs: the C-channel maps of images 2k and 2k+1 side by side form one map
   of 2C channels (``[N/2, 2C, H, W]`` is a free reshape of ``[N, C, H, W]``), through block-diagonal weights;
   the lower levels (16 channels and more) run per image;
3. an odd batch gets a black canvas appended inside the graph, and its output is dropped.

The result equals the model's `ProbabilityGraph` up to float rounding (about 1e-6 in probability); every export is
checked against the torch checkpoint by the parity check. On an AVX2 CPU the block-diagonal weights cost more
than they save, so an artefact keeps the plain graph as ``model.onnx`` and this form beside it (``graphs`` in
metadata.json); the ONNX Runtime backend picks it only on AVX-512 CPUs (`runtime.cpu_features`). (Splitting each
concatenation into a sum of convolutions over its parts was tried too: slower, the sums are not fused.)

Measured there (ONNX Runtime 1.32, batch 4, best of 6 interleaved runs, ms per image, plain -> pair graph): vessels
226 -> 195 at 1056 px, A/V 477 -> 440 at 1056 px, haemorrhages 754 -> 728 at 1824 px.

Shapes: the graph takes uint8 ``[N, 3, H, W]`` and returns float32 ``[N, C, H, W]`` like `ProbabilityGraph`.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from retinacli.models.av_net import AvSeqNet
from retinacli.models.hemorrhage_unet import GREEN, HemorrhageUNet
from retinacli.models.normalise import standardise_in_fov
from retinacli.models.unet import Block, RefinedVesselUNet, UNetTrunk, VesselUNet

RGB = 3


def fold_bn(conv_bn: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """A conv (no bias) + BatchNorm2d pair (eval statistics) -> (weight [Co, Ci, k, k], bias [Co])."""
    conv, bn = conv_bn[0], conv_bn[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


def pair_weight(weight: torch.Tensor) -> torch.Tensor:
    """[Co, Ci, k, k] -> block-diagonal [2Co, 2Ci, k, k]: image 0 of a pair in the first half of the channels,
    image 1 in the second, no mixing between them."""
    co, ci = weight.shape[:2]
    out = weight.new_zeros((2 * co, 2 * ci, *weight.shape[2:]))
    out[:co, :ci] = weight
    out[co:, ci:] = weight
    return out


def to_pairs(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] (N even) -> [N/2, 2C, H, W]: a reshape, no copy."""
    return x.reshape(-1, 2 * x.shape[1], x.shape[2], x.shape[3])


def from_pairs(x: torch.Tensor) -> torch.Tensor:
    """[N/2, 2C, H, W] -> [N, C, H, W]: the inverse reshape of `to_pairs`."""
    return x.reshape(-1, x.shape[1] // 2, x.shape[2], x.shape[3])


def pair_concat_weight(weight: torch.Tensor, parts: Sequence[int]) -> torch.Tensor:
    """Weight [Co, sum(parts), k, k] of a convolution over the concatenation of ``parts`` -> the weight
    [2Co, 2 sum(parts), k, k] of the same convolution over the concatenation of the parts as image pairs
    (part 1 of images 0 and 1, then part 2 of images 0 and 1, ...), block-diagonal within each part."""
    if sum(parts) != weight.shape[1]:
        raise ValueError(f"parts {list(parts)} do not add up to the {weight.shape[1]} input channels")
    bounds = [0, *torch.tensor(list(parts)).cumsum(0).tolist()]
    return torch.cat([pair_weight(weight[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])], dim=1)


class PairConv(nn.Module):
    """A trained convolution (``weight`` [Co, sum(parts), k, k], ``bias`` [Co] or None) applied to image pairs.

    ``forward(parts)``: a list of pair tensors [N/2, 2 c_i, H, W] (the concatenation the trained convolution saw,
    cut into its parts) -> [N/2, 2 Co, H, W], ReLU applied when ``relu``. With ``paired=False`` it is the plain
    convolution of the concatenated per-image tensors [N, c_i, H, W]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, parts: Sequence[int], paired: bool,
                 relu: bool):
        super().__init__()
        w = pair_concat_weight(weight, parts) if paired else weight
        b = None if bias is None else (torch.cat([bias, bias]) if paired else bias)
        self.conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=w.shape[2] // 2, bias=b is not None)
        self.conv.weight.data.copy_(w.detach())
        if b is not None:
            self.conv.bias.data.copy_(b.detach())
        self.relu = relu

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = self.conv(xs[0] if len(xs) == 1 else torch.cat(xs, dim=1))
        return F.relu(y) if self.relu else y


class FoldedBlock(nn.Module):
    """`models.unet.Block` with batch norm folded, over a list of input parts."""

    def __init__(self, block: Block, parts: Sequence[int], paired: bool):
        super().__init__()
        w1, b1 = fold_bn(block.body[0])
        w2, b2 = fold_bn(block.body[1])
        self.c1 = PairConv(w1, b1, parts, paired, relu=True)
        self.c2 = PairConv(w2, b2, [w2.shape[1]], paired, relu=True)
        # an identity shortcut (c_in == c_out) of a concatenation becomes a 1x1 convolution with identity weights;
        # of a single part (pairs or not) it stays an addition
        self.skip = None if (isinstance(block.skip, nn.Identity) and len(parts) == 1) else \
            PairConv(skip_weight(block), None, parts, paired, relu=False)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = self.c2([self.c1(xs)])
        return y + (self.skip(xs) if self.skip is not None else xs[0])


def skip_weight(block: Block) -> torch.Tensor:
    """The shortcut of a `Block` as a 1x1 weight [Co, Ci, 1, 1]: its convolution, or the identity (Ci == Co)."""
    if isinstance(block.skip, nn.Conv2d):
        return block.skip.weight
    c = block.body[0][0].weight.shape[0]
    return torch.eye(c, dtype=block.body[0][0].weight.dtype)[:, :, None, None]


class PairTrunk(nn.Module):
    """`models.unet.UNetTrunk` in pair form: the full-resolution level on image pairs, the rest per image.

    ``forward(parts)``: the trunk's input as parts (pairs [N/2, 2 c_i, H, W]; ``in_parts`` = the c_i, the
    concatenation the trained trunk saw) -> decoder features as pairs [N/2, 2 channels[0], H, W].
    ``first_block`` replaces the trunk's first block (same function, other input channels).
    """

    def __init__(self, trunk: UNetTrunk, in_parts: Sequence[int], first_block: Block | None = None):
        super().__init__()
        ch = trunk.channels
        self.enc = nn.ModuleList([FoldedBlock(first_block or trunk.enc[0], in_parts, paired=True)]
                                 + [FoldedBlock(b, [ch[i]], paired=False) for i, b in enumerate(trunk.enc[1:])])
        n_up = len(trunk.up)
        self.up = nn.ModuleList([PairConv(u.weight, None, [u.weight.shape[1]], paired=(i == n_up - 1), relu=False)
                                 for i, u in enumerate(trunk.up)])
        self.dec = nn.ModuleList([FoldedBlock(d, [d.body[0][0].weight.shape[1] // 2] * 2, paired=(i == n_up - 1))
                                  for i, d in enumerate(trunk.dec)])

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        x = self.enc[0](parts)
        skips = [x]
        if len(self.enc) == 1:
            return x
        x = from_pairs(F.max_pool2d(x, 2))
        for i, block in enumerate(self.enc[1:]):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block([x])
            skips.append(x)
        skips.pop()
        last = len(self.up) - 1
        for i, (up, dec) in enumerate(zip(self.up, self.dec)):
            if i == last:
                x = to_pairs(x)
            x = F.interpolate(up([x]), scale_factor=2.0, mode="bilinear", align_corners=False)
            x = dec([x, skips.pop()])
        return x


def _head(conv: nn.Conv2d) -> PairConv:
    """A 1x1 logit convolution (with bias) on pairs."""
    return PairConv(conv.weight, conv.bias, [conv.weight.shape[1]], paired=True, relu=False)


def _green_weight(weight: torch.Tensor) -> torch.Tensor:
    """A convolution of the green channel [Co, 1, k, k] -> the same convolution of RGB [Co, 3, k, k] (zero weights
    on red and blue), so the paired RGB input needs no channel gather."""
    w = weight.new_zeros((weight.shape[0], RGB, *weight.shape[2:]))
    w[:, GREEN] = weight[:, 0]
    return w


class PairVessel(nn.Module):
    """VesselUNet / RefinedVesselUNet -> pairs of vessel probabilities [N/2, 2, H, W]."""

    def __init__(self, model: VesselUNet):
        super().__init__()
        c0 = model.trunk.channels[0]
        self.trunk = PairTrunk(model.trunk, [RGB])
        self.head = _head(model.head)
        self.attention = None
        if isinstance(model, RefinedVesselUNet):
            body = model.attention.body
            w1, b1 = fold_bn(body[0])
            w2, b2 = fold_bn(body[1])
            self.attention = nn.ModuleList([PairConv(w1, b1, [c0, 1], True, True),
                                            PairConv(w2, b2, [w2.shape[1]], True, True), _head(body[2])])
            self.lam, self.mu = model.lam, model.mu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.trunk([x])
        logits = self.head([feats])
        if self.attention is not None:
            a = self.attention[0]([feats, logits])
            attn = torch.sigmoid(self.attention[2]([self.attention[1]([a])]))
            logits = self.lam * logits + self.mu * (attn * logits)
        return torch.sigmoid(logits)


class PairHemorrhage(nn.Module):
    """HemorrhageUNet -> pairs of haemorrhage probabilities [N/2, 2, H, W]."""

    def __init__(self, model: HemorrhageUNet):
        super().__init__()
        trunk = model.trunk
        # the trunk sees the green channel only: give its first convolutions RGB weights with zeros off green
        rgb_block = copy.deepcopy(trunk.enc[0])
        rgb_block.body[0][0].weight = nn.Parameter(_green_weight(rgb_block.body[0][0].weight.data))
        rgb_block.skip = nn.Conv2d(RGB, rgb_block.body[0][0].weight.shape[0], 1, bias=False)
        rgb_block.skip.weight = nn.Parameter(_green_weight(skip_weight(trunk.enc[0]).data))
        self.trunk = PairTrunk(trunk, [RGB], rgb_block)
        w, b = fold_bn(model.fuse)
        c0 = trunk.channels[0]
        self.fuse = PairConv(torch.cat([w[:, :c0], _green_weight(w[:, c0:])], dim=1), b, [c0, RGB], True, True)
        self.head = _head(model.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head([self.fuse([self.trunk([x]), x])]))


class PairAv(nn.Module):
    """AvSeqNet -> pairs of (vessel, artery, vein) probabilities, as three pair maps [N/2, 2, H, W]."""

    def __init__(self, model: AvSeqNet):
        super().__init__()
        self.trunk = PairTrunk(model.trunk, [RGB])
        self.head = _head(model.head)
        self.cls_trunk = PairTrunk(model.cls_trunk, [RGB, 1])
        self.cls_head = _head(model.cls_head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p_v = torch.sigmoid(self.head([self.trunk([x])]))
        p_a = torch.sigmoid(self.cls_head([self.cls_trunk([x, p_v])]))
        return p_v, p_v * p_a, p_v * (1.0 - p_a)


def pair_form(model: nn.Module) -> nn.Module:
    """The pair-wise inference module of a registry model; ValueError for a model this form does not cover."""
    if isinstance(model, VesselUNet):  # RefinedVesselUNet included
        return PairVessel(model)
    if isinstance(model, HemorrhageUNet):
        return PairHemorrhage(model)
    if isinstance(model, AvSeqNet):
        return PairAv(model)
    raise ValueError(f"no pair form for {type(model).__name__}")


class PairProbabilityGraph(nn.Module):
    """Deployment wrapper in pair form: uint8 image [N, 3, H, W] -> probabilities float32 [N, C, H, W], the same
    function as `models.normalise.ProbabilityGraph` of the same model (module docstring)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.body = pair_form(model.eval())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        # odd batch: append a black canvas (a slice of 0 or 1 images, so the graph keeps a dynamic batch)
        image = torch.cat([image, torch.zeros_like(image[: n % 2])], dim=0)
        x = to_pairs(standardise_in_fov(image.to(torch.float32)))
        out = self.body(x)
        maps = out if isinstance(out, tuple) else (out,)
        probs = torch.cat([from_pairs(m) for m in maps], dim=1) if len(maps) > 1 else from_pairs(maps[0])
        return probs[:n]
