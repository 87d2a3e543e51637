"""Typed training configuration. Every field is written to the run folder as config.json."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from retinacli.train.augment import POSITIVE_SAMPLING, AugmentConfig

# Precision of the training steps (forward and backward). Weights, optimiser state, losses, validation and the saved
# checkpoints stay float32 in both. "bf16" runs the convolutions under torch.autocast(bfloat16): per step 1.4-1.9x
# faster than "fp32" in the same channels-last layout (2.1-2.6x faster than fp32 NCHW, the layout before session 10)
# on a 2-core Xeon with AMX-BF16, 1.9-2.5x for the vessel networks on a 2-core AMD EPYC (Zen 4) with avx512_bf16
# and no AMX (bench/train_step_speed.py); on a CPU without native
# bfloat16 (no avx512_bf16 / amx_bf16 flag) it is emulated and slower, so it is never the default.
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """One training run of a segmentation model: vessels (stage 1 or stage 2), haemorrhages or artery/vein.

    data: dataset specs (``kind:path[:split]``, see train.datasets); run_dir: where checkpoints, config.json
    and metrics.csv go. init_from: stage-1 checkpoint (required for stage 2 = model vessel_unet_refined; for the
    A/V model av_seqnet a vessel checkpoint initialises the segmentation stream, an A/V checkpoint both streams).
    """

    data: list[str]
    run_dir: Path
    model: str = "vessel_unet"
    channels: tuple[int, ...] = (8, 16, 32, 64)
    model_kwargs: dict = field(default_factory=dict)  # further constructor arguments (e.g. av_channels)
    canvas_px: int = 672
    fov_diameter_px: int = 640
    min_fov_diameter_px: int | None = None  # image-following scale (see preprocess.normalise.ScaleSpec); None: fixed
    epochs: int = 15
    steps_per_epoch: int = 200
    batch_size: int = 8
    patch_px: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    dice_weight: float = 1.0
    attention_weight: float = 1.0
    av_weight: float = 1.0  # weight of the artery-vs-vein loss (model av_seqnet)
    # sampling weight of each dataset (its name = the sample-id prefix: drive, chase, hrf, rite, idrid, or a
    # folder's name): a training patch comes from an image drawn with probability proportional to its dataset's
    # weight (unnamed datasets weigh 1). Empty (the default): every training image equally likely.
    dataset_weights: dict[str, float] = field(default_factory=dict)
    val_every: int = 10  # every n-th image of each dataset goes to validation (0: no validation split)
    positive_fraction: float = 0.0  # share of patches centred on a label pixel (sparse targets, e.g. haemorrhages)
    positive_sampling: str = "pixel"  # how that pixel is drawn: "pixel" (uniform) or "component" (lesion-balanced)
    seed: int = 0
    threads: int = 2
    init_from: Path | None = None
    resume: bool = False
    precision: str = "fp32"  # "fp32", or "bf16": the training steps' convolutions in bfloat16 (see PRECISIONS)
    channels_last: bool = True  # NHWC memory layout in the training steps: the same maths, faster CPU convolutions
    ema_decay: float = 0.0  # > 0: validate and save an exponential moving average of the weights (0: the weights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.positive_sampling not in POSITIVE_SAMPLING:
            raise ValueError(f"positive_sampling must be one of {POSITIVE_SAMPLING}, not {self.positive_sampling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), not {self.ema_decay}")
        if self.dice_weight < 0.0:
            raise ValueError(f"dice_weight must be >= 0, not {self.dice_weight}")
        bad = {k: w for k, w in self.dataset_weights.items() if not w > 0.0}
        if bad:
            raise ValueError(f"dataset weights must be > 0, not {bad}")
        if not 0.0 <= self.positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must lie in [0, 1], not {self.positive_fraction}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["init_from"] = None if self.init_from is None else str(self.init_from)
        d["channels"] = list(self.channels)
        return d
