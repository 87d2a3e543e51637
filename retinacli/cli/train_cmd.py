"""`retina train ...`: train the vessel and haemorrhage models."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="Train models on labelled data.", no_args_is_help=True)

DATA_HELP = ("Dataset spec KIND:PATH[:SPLIT], repeatable. KIND: drive (split training|test), chase "
             "(train|test|all; first 20 images train), hrf (HRF-AV layout, training|test; vessel = label > 0), "
             "folder (images/ + masks/ [+ fov/]).")
HEMORRHAGE_DATA_HELP = ("Dataset spec KIND:PATH[:SPLIT], repeatable: idrid (IDRiD 'A. Segmentation' folder, split "
                        "train|test; haemorrhage masks) or folder (images/ + masks/ [+ fov/]).")

PRECISION_HELP = ("fp32 | bf16. Precision of the training steps: bf16 runs the convolutions in bfloat16 under "
                  "autocast; weights, losses, validation and checkpoints stay float32. Measured 1.4-1.9x faster per "
                  "step on a Xeon with AMX and 1.9-2.5x (vessel networks) on an AMD EPYC with avx512_bf16 "
                  "(bench/train_step_speed.py); emulated on CPUs without native bfloat16, where it should be slower.")
EMA_HELP = ("Decay of an exponential moving average of the weights and batch-norm statistics (e.g. 0.998; it warms "
            "up as min(decay, (1+n)/(10+n)) over the first updates), updated every step. Validation, best.pt, "
            "model.pt and the state_dict of last.pt then hold the average (last.pt keeps the raw weights for "
            "--resume, which needs the same setting). 0: off.")
WEIGHT_HELP = ("NAME=W, repeatable: draw training images of dataset NAME (the sample-id prefix: drive, chase, hrf, "
               "rite, idrid, or a folder's name) W times as often as one of weight 1 (the default for every "
               "dataset: each training image equally likely). E.g. drive=2.")
DICE_HELP = "Loss = binary cross-entropy + this x (1 - soft Dice) on the vessel or lesion map; 0 = cross-entropy only."


def _dataset_weights(specs: List[str]) -> dict[str, float]:
    """``["drive=2", ...]`` -> {"drive": 2.0}; a malformed entry exits 2 with the reason (values > 0 are checked by
    TrainConfig, names against the training data by the loop)."""
    weights: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not name.strip() or weight is None:
            typer.secho(f"error: --dataset-weight {spec!r}: expected NAME=W, e.g. drive=2", fg="red", err=True)
            raise typer.Exit(2)
        weights[name.strip()] = weight  # as the sample ids spell it (a folder's name keeps its case)
    return weights


def _run(**config) -> None:
    """Build the TrainConfig from ``config`` and train; an invalid setting or a bad dataset exits 2 with the reason."""
    from retinacli.train.config import TrainConfig
    from retinacli.train.datasets import DatasetLayoutError
    from retinacli.train.loop import train_vessels

    if config.get("precision") == "bf16":
        from retinacli.runtime.cpu_features import has_native_bf16

        if not has_native_bf16():
            typer.secho("note: this CPU has no native bfloat16 units (avx512_bf16 / amx_bf16): --precision bf16 is "
                        "emulated here and slower than fp32", fg="yellow", err=True)
    try:
        final = train_vessels(TrainConfig(**config))
    except (DatasetLayoutError, FileExistsError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(f"final checkpoint: {final}")


def _load_checkpoint_or_exit(path: Path) -> dict:
    """A retina checkpoint; an unreadable one exits 2 with the reason."""
    from retinacli.train.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path)
    except (FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)


def _checkpoint_scale(ck: dict) -> dict:
    """TrainConfig fields taken from a checkpoint: its channels and the scale it runs at (fixed, or
    image-following with its min/max FOV)."""
    pre = ck["preprocess"]
    return {"channels": tuple(ck["model"]["kwargs"]["channels"]), "canvas_px": pre["canvas_px"],
            "fov_diameter_px": pre["fov_diameter_px"], "min_fov_diameter_px": pre.get("min_fov_diameter_px")}


@app.command("vessels")
def train_vessels_cmd(
    data: List[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    run_dir: Path = typer.Option(..., "--run-dir", help="Run folder (checkpoints, config.json, metrics.csv)."),
    epochs: int = typer.Option(15, help="Epochs."),
    steps_per_epoch: int = typer.Option(200, help="Optimiser steps per epoch."),
    batch_size: int = typer.Option(8, help="Patches per step."),
    patch_px: int = typer.Option(256, help="Patch side in model pixels."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (AdamW, warm-up then cosine)."),
    channels: str = typer.Option("8,16,32,64", help="U-Net channels per level, comma separated."),
    canvas_px: int = typer.Option(672, help="Model canvas side (pixels)."),
    fov_diameter_px: int = typer.Option(640, help="FOV diameter on the canvas (pixels): the scale normalisation."),
    val_every: int = typer.Option(10, help="Every n-th image of each dataset is held out for validation (0: none)."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, help="CPU threads for torch."),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    ema_decay: float = typer.Option(0.0, help=EMA_HELP),
    dice_weight: float = typer.Option(1.0, help=DICE_HELP),
    dataset_weight: List[str] = typer.Option([], "--dataset-weight", help=WEIGHT_HELP),
    init_from: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last.pt."),
) -> None:
    """Stage 1: train the compact vessel U-Net."""
    _run(data=data, run_dir=run_dir, model="vessel_unet", channels=tuple(int(c) for c in channels.split(",")),
         canvas_px=canvas_px, fov_diameter_px=fov_diameter_px, epochs=epochs, steps_per_epoch=steps_per_epoch,
         batch_size=batch_size, patch_px=patch_px, lr=lr, val_every=val_every, seed=seed, threads=threads,
         precision=precision, ema_decay=ema_decay, dice_weight=dice_weight,
         dataset_weights=_dataset_weights(dataset_weight),
         init_from=init_from, resume=resume)


@app.command("refine")
def train_refine_cmd(
    stage1: Path = typer.Option(..., "--stage1", help="Stage-1 checkpoint (model.pt of `retina train vessels`)."),
    data: List[str] = typer.Option(..., "--data", "-d", help=DATA_HELP),
    run_dir: Path = typer.Option(..., "--run-dir", help="Run folder."),
    epochs: int = typer.Option(6),
    steps_per_epoch: int = typer.Option(200),
    batch_size: int = typer.Option(8),
    patch_px: int = typer.Option(256),
    lr: float = typer.Option(5e-4, help="Peak learning rate (the trunk is fine-tuned)."),
    attention_weight: float = typer.Option(1.0, help="Weight of the error-attention MSE loss L_EA."),
    val_every: int = typer.Option(10),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    ema_decay: float = typer.Option(0.0, help=EMA_HELP),
    dice_weight: float = typer.Option(1.0, help=DICE_HELP),
    dataset_weight: List[str] = typer.Option([], "--dataset-weight", help=WEIGHT_HELP),
    resume: bool = typer.Option(False, "--resume"),
) -> None:
    """Stage 2 (ERA-Net): error-attention refinement, initialised from a stage-1 checkpoint, trained and
    calibrated at the stage-1 checkpoint's scale (fixed, or image-following with its min/max FOV).

    Computes the stage-1 error maps (ground truth vessel missed by stage 1) on the training images itself.
    """
    scale = _checkpoint_scale(_load_checkpoint_or_exit(stage1))
    _run(data=data, run_dir=run_dir, model="vessel_unet_refined", **scale, epochs=epochs,
         steps_per_epoch=steps_per_epoch,
         batch_size=batch_size, patch_px=patch_px, lr=lr, warmup_steps=20, attention_weight=attention_weight,
         val_every=val_every, seed=seed, threads=threads,
         precision=precision, ema_decay=ema_decay, dice_weight=dice_weight,
         dataset_weights=_dataset_weights(dataset_weight), init_from=stage1, resume=resume)


@app.command("hemorrhage")
def train_hemorrhage_cmd(
    data: List[str] = typer.Option(..., "--data", "-d", help=HEMORRHAGE_DATA_HELP),
    run_dir: Path = typer.Option(..., "--run-dir", help="Run folder (checkpoints, config.json, metrics.csv)."),
    epochs: int = typer.Option(30, help="Epochs."),
    steps_per_epoch: int = typer.Option(200, help="Optimiser steps per epoch."),
    batch_size: int = typer.Option(8, help="Patches per step."),
    patch_px: int = typer.Option(256, help="Patch side in model pixels."),
    lr: float = typer.Option(2e-3, help="Peak learning rate (AdamW, warm-up then cosine)."),
    channels: str = typer.Option("8,16,32,64,128", help="U-Net channels per level, comma separated."),
    canvas_px: int = typer.Option(1312, help="Model canvas side (pixels; a multiple of 2^(levels-1))."),
    fov_diameter_px: int = typer.Option(1280, help="FOV diameter on the canvas (pixels). Haemorrhages of 100 "
                                                   "input px (IDRiD, FOV ~3500 px) keep ~4 px across at 1280."),
    positive_fraction: float = typer.Option(0.5, help="Share of patches centred on a haemorrhage pixel."),
    positive_sampling: str = typer.Option("pixel", help="How that pixel is drawn: 'pixel' (uniform over haemorrhage "
                                                        "pixels, large lesions dominate) or 'component' (a lesion "
                                                        "uniformly, then a pixel of it)."),
    val_every: int = typer.Option(10, help="Every n-th image is held out for validation (0: none)."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, help="CPU threads for torch."),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    ema_decay: float = typer.Option(0.0, help=EMA_HELP),
    dice_weight: float = typer.Option(1.0, help=DICE_HELP),
    dataset_weight: List[str] = typer.Option([], "--dataset-weight", help=WEIGHT_HELP),
    init_from: Optional[Path] = typer.Option(None, help="Start from this checkpoint's weights."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last.pt."),
) -> None:
    """Haemorrhage segmenter (green channel, U-Net with batch norm, input concatenated before the head)."""
    _run(data=data, run_dir=run_dir, model="hemorrhage_unet",
         channels=tuple(int(c) for c in channels.split(",")), canvas_px=canvas_px,
         fov_diameter_px=fov_diameter_px, epochs=epochs, steps_per_epoch=steps_per_epoch,
         batch_size=batch_size, patch_px=patch_px, lr=lr, positive_fraction=positive_fraction,
         positive_sampling=positive_sampling, val_every=val_every, seed=seed, threads=threads,
         precision=precision, ema_decay=ema_decay, dice_weight=dice_weight,
         dataset_weights=_dataset_weights(dataset_weight),
         init_from=init_from, resume=resume)


AV_DATA_HELP = ("Dataset spec KIND:PATH[:SPLIT] with artery/vein labels, repeatable: rite (RITE folder, the DRIVE "
                "folder beside it gives the photographs; training|test) or hrf (HRF-AV, training|test; label 3 "
                "= uncertain, ignored by the A/V loss).")


@app.command("av")
def train_av_cmd(
    data: List[str] = typer.Option(..., "--data", "-d", help=AV_DATA_HELP),
    run_dir: Path = typer.Option(..., "--run-dir", help="Run folder (checkpoints, config.json, metrics.csv)."),
    vessel_init: Optional[Path] = typer.Option(None, "--vessel-init", help="Vessel checkpoint whose weights start the "
                                                                           "segmentation stream and whose scale is used. "
                                                                           "Default: the shipped engines/vessels/model.pt."),
    epochs: int = typer.Option(20),
    steps_per_epoch: int = typer.Option(200),
    batch_size: int = typer.Option(8),
    patch_px: int = typer.Option(256),
    lr: float = typer.Option(1e-3, help="Peak learning rate (AdamW, warm-up then cosine)."),
    av_channels: str = typer.Option("8,16,32,64", help="Classification-stream U-Net channels per level."),
    av_weight: float = typer.Option(1.0, help="Weight of the artery-vs-vein loss against the vessel loss."),
    val_every: int = typer.Option(10),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2),
    precision: str = typer.Option("fp32", help=PRECISION_HELP),
    ema_decay: float = typer.Option(0.0, help=EMA_HELP),
    dice_weight: float = typer.Option(1.0, help=DICE_HELP),
    dataset_weight: List[str] = typer.Option([], "--dataset-weight", help=WEIGHT_HELP),
    init_from: Optional[Path] = typer.Option(None, "--init", help="An A/V checkpoint to continue from: both streams "
                                                                  "start from its weights, and its scale and "
                                                                  "classification-stream channels are used "
                                                                  "(--vessel-init and --av-channels are then ignored)."),
    resume: bool = typer.Option(False, "--resume"),
) -> None:
    """Artery/vein: two-stream network after SeqNet (segmentation stream x classification stream), trained at the
    scale of the checkpoint it starts from (--vessel-init, or --init to continue an A/V model); validation A/V
    accuracy on labelled artery/vein pixels picks the best epoch."""
    from retinacli.cli.defaults import default_model_dir

    init = init_from or vessel_init or default_model_dir("vessels") / "model.pt"
    ck = _load_checkpoint_or_exit(init)
    if init_from is None:
        channels_av = [int(c) for c in av_channels.split(",")]
    elif ck.get("task") == "av":
        channels_av = [int(c) for c in ck["model"]["kwargs"]["av_channels"]]
    else:
        typer.secho(f"error: {init_from} is a {ck.get('task')!r} checkpoint; --init needs an A/V checkpoint "
                    "(use --vessel-init for a vessel model)", fg="red", err=True)
        raise typer.Exit(2)
    _run(data=data, run_dir=run_dir, model="av_seqnet", **_checkpoint_scale(ck),
         model_kwargs={"av_channels": channels_av}, epochs=epochs,
         steps_per_epoch=steps_per_epoch, batch_size=batch_size, patch_px=patch_px, lr=lr,
         av_weight=av_weight, val_every=val_every, seed=seed, threads=threads,
         precision=precision, ema_decay=ema_decay, dice_weight=dice_weight,
         dataset_weights=_dataset_weights(dataset_weight), init_from=init,
         resume=resume)


@app.command("calibrate")
def train_calibrate_cmd(
    run_dir: Path = typer.Option(..., "--run-dir", help="A finished run folder (model.pt, config.json, split.json)."),
    fov_candidates: str = typer.Option("", help="Comma-separated inference scales to try: N = every FOV drawn N model px "
                                                "across; MIN-MAX = each image keeps its own FOV diameter clipped to "
                                                "[MIN, MAX] (canvas sized for MAX). E.g. 800,1024,800-1024; the best "
                                                "mean validation AUC wins. Default: keep the current scale."),
    checkpoint: str = typer.Option("model", help="model: calibrate model.pt (best validation F1); last: make the "
                                                 "final epoch (last.pt) the run's model.pt first, then calibrate it."),
) -> None:
    """Recompute the default threshold (and optionally the inference scale) of RUN_DIR/model.pt on the run's
    validation images, at full resolution: threshold = max mean F1 over the validation datasets. The threshold
    part runs automatically at the end of training."""
    from retinacli.train.calibrate import parse_scale_candidates
    from retinacli.train.datasets import DatasetLayoutError
    from retinacli.train.loop import calibrate_run

    try:
        info = calibrate_run(run_dir, parse_scale_candidates(fov_candidates) or None, checkpoint)
    except (DatasetLayoutError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)
    f1 = ", ".join(f"{k} {v:.4f}" for k, v in info["per_dataset_f1"].items())
    for row in info["scale_search"]:
        aucs = ", ".join(f"{k} {v:.4f}" for k, v in row["per_dataset_auc"].items())
        typer.echo(f"FOV {row['label']} px (canvas {row['canvas_px']}): validation AUC {aucs}; "
                   f"mean {row['mean_auc']:.4f}")
    lo = info["min_fov_diameter_px"]
    scale = f"{info['fov_diameter_px']}" if lo is None else f"{lo}-{info['fov_diameter_px']} (each image's own, clipped)"
    typer.echo(f"inference scale: FOV {scale} px; threshold {info['previous_threshold']:.4f} -> "
               f"{info['threshold']:.4f} (validation F1: {f1})")
