"""Benchmark: seconds per training step of each model, by precision and memory layout, on this CPU.

Times what `retina train` does per step (forward under the chosen precision and layout, the loss in float32,
backward, AdamW) on random patches of the shipped training sizes, after one warm-up step, and prints the median
step time and patches/second with the machine. It reads no data. The options measured are the `retina train ...
--precision` choices and the channels-last layout every run now uses (`TrainConfig.channels_last`).

    python bench/train_step_speed.py [--models av,hemorrhage,vessels] [--steps 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from process_throughput import cpu_name
from retinacli.models.registry import create_model
from retinacli.runtime.cpu_features import NATIVE_BF16_FLAGS, cpu_flags
from retinacli.train.config import TrainConfig
from retinacli.train.loop import training_forward

# model, its constructor arguments, batch and patch side of its shipped training run (model cards)
MODELS = {"vessels": ("vessel_unet", {"channels": (8, 16, 32, 64)}, 8, 256),
          "av": ("av_seqnet", {"channels": (8, 16, 32, 64)}, 4, 512),
          "hemorrhage": ("hemorrhage_unet", {"channels": (8, 16, 32, 64, 128)}, 8, 320)}
MODES = (("fp32", False), ("fp32", True), ("bf16", True))


def step_seconds(key: str, precision: str, channels_last: bool, steps: int) -> float:
    name, kwargs, batch, patch = MODELS[key]
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cfg = TrainConfig(data=[], run_dir=Path("."), precision=precision, channels_last=channels_last)
    x = torch.randn(batch, 3, patch, patch)
    y = (torch.rand(batch, 1, patch, patch) > 0.85).float()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        out = training_forward(model, x, cfg)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(out["logits"], y)
        if "av_logits" in out:
            loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(out["av_logits"], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--steps", type=int, default=4, help="timed steps per setting (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    flags = ", ".join(sorted({"avx512f", *NATIVE_BF16_FLAGS} & cpu_flags())) or "none of note"
    print(f"CPU: {cpu_name()}; flags: {flags}; torch {torch.__version__}, {args.threads} threads")
    for key in args.models.split(","):
        name, _, batch, patch = MODELS[key]
        base = None
        for precision, channels_last in MODES:
            sec = step_seconds(key, precision, channels_last, args.steps)
            base = base or sec
            layout = "channels-last" if channels_last else "NCHW"
            print(f"{key:<10} ({name}, {batch} x {patch}^2 patches)  {precision} {layout:<13} {sec:6.2f} s/step  "
                  f"{batch / sec:5.2f} patches/s  x{base / sec:.2f} vs fp32 NCHW", flush=True)


if __name__ == "__main__":
    main()
