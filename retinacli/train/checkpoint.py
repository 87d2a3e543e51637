"""Self-describing checkpoints: loading needs only the path.

A checkpoint dict holds: format, retina_version, task, model {name, kwargs}, preprocess {canvas_px,
fov_diameter_px, normalisation, input}, threshold, state_dict, provenance (data, config, step) and
metrics; resumable ones (``last.pt``) add optimizer / scheduler / RNG state.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from retinacli import __version__
from retinacli.models.registry import create_model
from retinacli.preprocess.normalise import ScaleSpec

FORMAT = "retina-checkpoint/1"


def make_checkpoint_state(model: nn.Module) -> dict:
    """The model's state dict as plain contiguous CPU tensors (a channels-last training model saves as any other)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def make_checkpoint(model: nn.Module, model_name: str, model_kwargs: dict, spec: ScaleSpec,
                    threshold: float, provenance: dict, metrics: dict, task: str = "vessels") -> dict:
    """``spec``: the scale the model was trained at (recorded in ``preprocess``, as ``scale_spec_of`` reads it)."""
    scale = {"canvas_px": spec.canvas_px, "fov_diameter_px": spec.fov_diameter_px,
             **({} if spec.min_fov_diameter_px is None else {"min_fov_diameter_px": spec.min_fov_diameter_px})}
    return {
        "format": FORMAT,
        "retina_version": __version__,
        "task": task,
        "model": {"name": model_name, "kwargs": model_kwargs},
        "preprocess": {**scale, "normalisation": "standardise_in_fov", "input": "RGB uint8, black outside the FOV"},
        "threshold": float(threshold),
        "state_dict": make_checkpoint_state(model),
        "provenance": provenance,
        "metrics": metrics,
    }


def save_checkpoint(ckpt: dict, path: Path) -> None:
    """Write atomically (temporary file + rename) so a killed run never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)


# what only resuming needs: dropped from model.pt, from exported artefacts and from a checkpoint's metadata
# (raw_state_dict / ema_updates: the raw weights and update count of a run with --ema-decay)
TRAINING_STATE_KEYS = ("optimizer", "rng", "torch_rng", "epoch", "step", "best_f1", "seconds", "raw_state_dict",
                       "ema_updates")


def promote_checkpoint(src: Path, dst: Path) -> None:
    """Copy checkpoint ``src`` (e.g. the resumable ``last.pt``) to ``dst`` without its training state."""
    ck = torch.load(Path(src), map_location="cpu", weights_only=False)
    for k in TRAINING_STATE_KEYS:
        ck.pop(k, None)
    save_checkpoint(ck, dst)


def load_checkpoint(path: Path) -> dict:
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a retina checkpoint (format {FORMAT})")
    return ckpt


def model_from_checkpoint(ckpt: dict) -> nn.Module:
    """Rebuild the model (eval mode) from a checkpoint dict."""
    kwargs = dict(ckpt["model"]["kwargs"])
    if "channels" in kwargs:
        kwargs["channels"] = tuple(kwargs["channels"])
    model = create_model(ckpt["model"]["name"], **kwargs)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
