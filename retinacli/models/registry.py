"""Explicit model registry: name -> nn.Module class. ``create_model(name, **kwargs)`` builds one."""
from __future__ import annotations

from torch import nn

from retinacli.models.av_net import AvSeqNet
from retinacli.models.hemorrhage_unet import HemorrhageUNet
from retinacli.models.unet import RefinedVesselUNet, VesselUNet

MODELS: dict[str, type[nn.Module]] = {
    "vessel_unet": VesselUNet,
    "vessel_unet_refined": RefinedVesselUNet,
    "hemorrhage_unet": HemorrhageUNet,
    "av_seqnet": AvSeqNet,
}
# what each model's probability map shows (recorded in checkpoints and metadata as ``task``)
MODEL_TASKS: dict[str, str] = {
    "vessel_unet": "vessels",
    "vessel_unet_refined": "vessels",
    "hemorrhage_unet": "hemorrhage",
    "av_seqnet": "av",
}


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def downsampling_factor(model: nn.Module) -> int:
    """The largest down-sampling of any U-Net trunk in ``model``, 2^(levels - 1): a canvas side must be a multiple of
    it, and so must the shift between two canvas sides of one model, so that both keep the same pooling grid."""
    from retinacli.models.unet import UNetTrunk

    return max((2 ** (len(m.channels) - 1) for m in model.modules() if isinstance(m, UNetTrunk)), default=1)
