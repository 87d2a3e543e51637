"""The training loop for the segmentation models (vessels stage 1: `vessel_unet`; stage 2: `vessel_unet_refined`,
ERA-Net; haemorrhages: `hemorrhage_unet`; artery/vein: `av_seqnet`)."""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from retinacli.metrics import ScoreHistogram
from retinacli.models.normalise import standardise_in_fov
from retinacli.models.registry import MODEL_TASKS, count_parameters, create_model
from retinacli.preprocess.normalise import ScaleSpec
from retinacli.train.augment import PositiveIndex, sample_patch
from retinacli.train.calibrate import ScaleCandidate, calibrate_threshold
from retinacli.train.checkpoint import (load_checkpoint, make_checkpoint, make_checkpoint_state, model_from_checkpoint,
                                        promote_checkpoint, save_checkpoint)
from retinacli.train.config import TrainConfig
from retinacli.train.datasets import draw_probabilities, read_spec
from retinacli.train.losses import attention_mse_loss, av_bce_loss, bce_dice_loss
from retinacli.train.prepare_data import CanvasSample, load_canvas_samples, split_train_val

METRIC_FIELDS = ["epoch", "step", "seconds", "train_loss", "val_auc", "val_aupr", "val_f1_at_0.5", "val_best_f1",
                 "val_best_threshold", "val_stage1_auc", "val_av_accuracy", "lr"]


@torch.no_grad()
def predict_canvas(model: torch.nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
    """Model (eval) on one canvas image uint8 [S,S,3] -> {"logits", "stage1_logits"[, "av_logits"]: probability
    float32 [S,S]} (av_logits: the artery-vs-vein probability of the A/V model)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    out = model.forward_all(standardise_in_fov(x))
    return {k: torch.sigmoid(v)[0, 0].numpy() for k, v in out.items() if k in ("logits", "stage1_logits", "av_logits")}


def compute_error_maps(stage1: torch.nn.Module, samples: list[CanvasSample], threshold: float) -> list[np.ndarray]:
    """ERA-Net error map per sample: E = 1 where ground truth is vessel but stage 1 says background."""
    maps = []
    for s in tqdm(samples, desc="stage-1 error maps", unit="img"):
        prob = predict_canvas(stage1, s.image)["logits"]
        maps.append((s.label & (prob < threshold) & s.fov).astype(np.uint8))
    return maps


def validate(model: torch.nn.Module, samples: list[CanvasSample]) -> dict[str, float]:
    model.eval()
    hist, hist1 = ScoreHistogram(), ScoreHistogram()
    av_right = av_total = 0
    for s in samples:
        probs = predict_canvas(model, s.image)
        hist.add(probs["logits"], s.label, s.fov)
        hist1.add(probs["stage1_logits"], s.label, s.fov)
        if "av_logits" in probs and s.av is not None:
            known = (s.av == 1) | (s.av == 2)
            av_right += int(np.count_nonzero(((probs["av_logits"] >= 0.5) == (s.av == 1)) & known))
            av_total += int(np.count_nonzero(known))
    thr, best_f1 = hist.best_threshold()
    model.train()
    out = {"val_auc": hist.auc(), "val_aupr": hist.aupr(), "val_f1_at_0.5": hist.f1_at(0.5), "val_best_f1": best_f1,
           "val_best_threshold": thr, "val_stage1_auc": hist1.auc()}
    if av_total:
        out["val_av_accuracy"] = av_right / av_total  # on labelled artery/vein pixels of the canvas
    return out


def ema_decay_at(decay: float, updates: int) -> float:
    """Decay used for the update after ``updates`` earlier ones: min(decay, (1 + updates) / (10 + updates)), so the
    average follows the weights closely at first and settles at ``decay`` (about 5000 updates for 0.998). Without this
    warm-up the average of a run that starts from random weights stays near them for thousands of steps."""
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


def make_ema(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """Exponential moving average of ``model``'s weights and batch-norm statistics (``use_buffers``), updated after
    every optimiser step: ema = d * ema + (1 - d) * weights with d = ``ema_decay_at(decay, updates so far)``; the
    first update copies. None when decay is 0."""
    if decay <= 0.0:
        return None
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def update(ema_params: list, params: list, updates) -> None:  # called per group of one device and dtype
        if ema_params and ema_params[0].is_floating_point():
            torch._foreach_lerp_(ema_params, params, 1.0 - ema_decay_at(decay, int(updates)))
        else:  # integer buffers (batch norm's num_batches_tracked) follow the model
            torch._foreach_copy_(ema_params, params)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def training_forward(model: torch.nn.Module, x: torch.Tensor, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """One training forward pass: x float32 [N, 3, P, P] (standardised) -> ``forward_all``'s outputs as float32,
    in ``cfg.precision`` (autocast for bf16) and the ``cfg.channels_last`` memory layout."""
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        out = model.forward_all(x)
    return {k: v.float() for k, v in out.items()}


def _lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _batch(samples, extras, cfg: TrainConfig, rng: np.random.Generator, positives=None, draw_p=None):
    """One training batch; ``draw_p`` (see datasets.draw_probabilities): each patch's image is drawn with these
    probabilities, or uniformly when None."""
    imgs, labs, fovs, errs = [], [], [], []
    for _ in range(cfg.batch_size):
        i = int(rng.integers(len(samples))) if draw_p is None else int(rng.choice(len(samples), p=draw_p))
        s = samples[i]
        out = sample_patch(s.image, s.label, s.fov, cfg.patch_px, rng, cfg.augment,
                           extra=None if extras is None else extras[i], positive_fraction=cfg.positive_fraction,
                           positives=None if positives is None else positives[i],
                           positive_sampling=cfg.positive_sampling)
        imgs.append(out[0]); labs.append(out[1]); fovs.append(out[2])
        if extras is not None:
            errs.append(out[3])
    to_t = lambda a: torch.from_numpy(np.stack(a))[:, None]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float()
    extra = None
    if extras is not None:  # [N, P, P] (error maps) -> [N, 1, P, P]; [N, P, P, K] (artery, vein) -> [N, K, P, P]
        e = np.stack(errs)
        extra = torch.from_numpy(e).permute(0, 3, 1, 2).contiguous() if e.ndim == 4 else torch.from_numpy(e)[:, None]
    return x, to_t(labs), to_t(fovs), extra


def train_vessels(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the final checkpoint ``model.pt`` in cfg.run_dir.

    Writes config.json, metrics.csv (one row per epoch), last.pt (resumable, every epoch), best.pt
    (best validation F1; for the A/V model the best validation A/V accuracy) and model.pt (= best.pt, or
    last.pt without validation).
    """
    torch.set_num_threads(cfg.threads)
    spec = ScaleSpec(cfg.canvas_px, cfg.fov_diameter_px, cfg.min_fov_diameter_px)  # checks the geometry first
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    last_path = run / "last.pt"
    if last_path.exists() and not cfg.resume:
        raise FileExistsError(f"{run} already holds a run; pass --resume to continue it or choose a new folder")
    state = torch.load(last_path, map_location="cpu", weights_only=False) if cfg.resume and last_path.exists() else None
    if state is not None and ("raw_state_dict" in state) != (cfg.ema_decay > 0):
        # best.pt and best_f1 were scored on one kind of weights (averaged or raw); switching would mix the two
        raise ValueError(f"{run} was trained {'with' if 'raw_state_dict' in state else 'without'} --ema-decay; "
                         "resume it with the same setting (or start a new run with --init-from)")
    (run / "config.json").write_text(json.dumps(cfg.to_json(), indent=2, default=str))
    samples = [s for d in cfg.data for s in read_spec(d)]
    train_s, val_s = split_train_val(samples, cfg.val_every)
    (run / "split.json").write_text(json.dumps({"train": [s.sample_id for s in train_s],
                                                "val": [s.sample_id for s in val_s]}, indent=2))
    task = MODEL_TASKS[cfg.model]
    draw_p = draw_probabilities([s.sample_id for s in train_s], cfg.dataset_weights)  # checked before loading
    train_c = load_canvas_samples(train_s, spec, "loading train", with_av=task == "av")
    val_c = load_canvas_samples(val_s, spec, "loading val", with_av=task == "av") if val_s else []

    kwargs = {"channels": list(cfg.channels), **cfg.model_kwargs}
    torch.manual_seed(cfg.seed)  # the random initial weights follow --seed too
    model = create_model(cfg.model, **{**kwargs, "channels": tuple(cfg.channels)})
    error_maps = None
    stage1_info = None
    if cfg.model == "vessel_unet_refined":
        if cfg.init_from is None:
            raise ValueError("stage 2 (vessel_unet_refined) needs init_from: a stage-1 checkpoint")
        ck1 = load_checkpoint(cfg.init_from)
        stage1 = model_from_checkpoint(ck1)
        missing, unexpected = model.load_state_dict(ck1["state_dict"], strict=False)
        if unexpected or any(not k.startswith("attention.") for k in missing):
            raise ValueError(f"{cfg.init_from} does not match the stage-2 trunk (missing {missing}, unexpected {unexpected})")
        error_maps = compute_error_maps(stage1, train_c, ck1["threshold"])
        stage1_info = {"checkpoint": str(cfg.init_from), "threshold": ck1["threshold"],
                       "error_pixel_share": float(np.mean([e[s.fov].mean() for e, s in zip(error_maps, train_c)]))}
        del stage1
    elif task == "av":
        # the extra inputs of each patch: artery and vein masks (uncertain/crossing pixels are in neither)
        error_maps = [np.stack([s.av == 1, s.av == 2], axis=-1).astype(np.float32) for s in train_c]
        if cfg.init_from is not None:  # a vessel model starts the segmentation stream; an A/V model starts both
            missing, unexpected = model.load_state_dict(load_checkpoint(cfg.init_from)["state_dict"], strict=False)
            if unexpected or any(not k.startswith("cls_") for k in missing):
                raise ValueError(f"{cfg.init_from} does not match the A/V segmentation stream "
                                 f"(missing {missing}, unexpected {unexpected})")
    elif cfg.init_from is not None:
        model.load_state_dict(load_checkpoint(cfg.init_from)["state_dict"])

    positives = [PositiveIndex.from_label(s.label) for s in train_c] if cfg.positive_fraction > 0 else None
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = make_ema(model, cfg.ema_decay)
    scored = model if ema is None else ema.module  # the weights validated, checkpointed and shipped
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    start_epoch, step, best_f1, elapsed = 0, 0, -1.0, 0.0
    if state is not None:
        model.load_state_dict(state.get("raw_state_dict", state["state_dict"]))  # with EMA, state_dict is the average
        if ema is not None:
            ema.module.load_state_dict(state["state_dict"])
            ema.n_averaged.fill_(int(state["ema_updates"]))
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start_epoch, step, best_f1, elapsed = state["epoch"], state["step"], state["best_f1"], state["seconds"]
    total = cfg.epochs * cfg.steps_per_epoch
    provenance = {"data": cfg.data, "train_ids": [s.sample_id for s in train_s], "val_ids": [s.sample_id for s in val_s],
                  "config": cfg.to_json(), "stage1": stage1_info, "parameters": count_parameters(model)}
    metrics_path = run / "metrics.csv"
    if not metrics_path.exists():
        with metrics_path.open("w", newline="") as f:
            csv.writer(f).writerow(METRIC_FIELDS)
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        losses = []
        bar = tqdm(range(cfg.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, unit="step")
        for _ in bar:
            lr = _lr_at(step, cfg, total)
            for g in opt.param_groups:
                g["lr"] = lr
            x, lab, fov, err = _batch(train_c, error_maps, cfg, rng, positives, draw_p)
            out = training_forward(model, standardise_in_fov(x), cfg)
            loss = bce_dice_loss(out["logits"], lab, fov, cfg.dice_weight)
            if task == "av":
                loss = loss + cfg.av_weight * av_bce_loss(out["av_logits"], err[:, :1], err[:, 1:], fov)
            elif err is not None:
                loss = loss + cfg.attention_weight * attention_mse_loss(out["attention"], err, fov)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", lr=f"{lr:.2e}")
        elapsed += time.time() - t0
        val = validate(scored, val_c) if val_c else {}
        row = {"epoch": epoch + 1, "step": step, "seconds": round(elapsed, 1), "train_loss": float(np.mean(losses)),
               **val, "lr": lr}
        with metrics_path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in METRIC_FIELDS])
        if progress:
            tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        threshold = val.get("val_best_threshold", 0.5)
        ck = make_checkpoint(scored, cfg.model, kwargs, spec, threshold,
                             {**provenance, "epoch": epoch + 1, "step": step}, row, task=task)
        score_key = "val_av_accuracy" if task == "av" else "val_best_f1"  # what "best" means for this model
        if val and val.get(score_key, -1.0) > best_f1:
            best_f1 = val[score_key]
            save_checkpoint(ck, run / "best.pt")
        ema_state = {} if ema is None else {"raw_state_dict": make_checkpoint_state(model),
                                            "ema_updates": int(ema.n_averaged)}
        save_checkpoint({**ck, **ema_state, "optimizer": opt.state_dict(), "rng": rng.bit_generator.state,
                         "torch_rng": torch.get_rng_state(), "epoch": epoch + 1, "step": step,
                         "best_f1": best_f1, "seconds": elapsed}, last_path)
    final = run / "model.pt"
    promote_checkpoint(run / "best.pt" if (run / "best.pt").exists() else last_path, final)
    if val_s:
        info = calibrate_threshold(final, val_s)
        if progress:
            tqdm.write(f"default threshold {info['threshold']:.4f} (mean F1 over validation datasets: "
                       f"{', '.join(f'{k} {v:.4f}' for k, v in info['per_dataset_f1'].items())})")
    return final


def calibrate_run(run_dir: Path, fov_candidates: list[ScaleCandidate] | None = None, checkpoint: str = "model") -> dict:
    """Re-run the calibration of ``run_dir/model.pt`` (scale among ``fov_candidates``, then threshold) on that
    run's own validation split. ``checkpoint``: "model" keeps model.pt (the best validation F1); "last" first
    makes the final epoch (last.pt, without its training state) the run's model.pt."""
    run = Path(run_dir)
    if checkpoint not in ("model", "last"):
        raise ValueError(f"checkpoint must be 'model' or 'last', not {checkpoint!r}")
    if checkpoint == "last":
        if not (run / "last.pt").exists():
            raise FileNotFoundError(f"{run} has no last.pt")
        promote_checkpoint(run / "last.pt", run / "model.pt")
    cfg = json.loads((run / "config.json").read_text())
    val_ids = set(json.loads((run / "split.json").read_text())["val"])
    samples = [s for d in cfg["data"] for s in read_spec(d) if s.sample_id in val_ids]
    if not samples:
        raise ValueError(f"{run} has no validation images to calibrate on")
    return calibrate_threshold(run / "model.pt", samples, fov_candidates)
