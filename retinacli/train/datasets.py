"""Readers for the vessel datasets' on-disk layouts -> lists of `Sample` (paths only, nothing loaded).

Spec strings name a layout, a root and a split: ``drive:PATH:training``, ``chase:PATH:train``,
``hrf:PATH:test``, ``folder:PATH`` (generic ``images/`` + ``masks/`` [+ ``fov/``], matched by file stem),
for haemorrhages ``idrid:PATH:train`` (IDRiD "A. Segmentation", haemorrhage masks), and for artery/vein labels
``rite:PATH:training`` (RITE, images from the DRIVE folder beside it) and ``hrf:PATH:training``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from retinacli.io.decode import decode_image, read_label_rgb, read_mask
from retinacli.io.discover import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``label_kind`` says how to turn the label file into a binary vessel mask."""

    sample_id: str
    image: Path
    label: Path | None  # None: nothing of the kind in this image (an all-background label)
    fov: Path | None
    label_kind: str = "binary"  # "binary": label > 0 ; "hrf_av": 0 bg, 1 artery, 2 vein, 3 uncertain ;
    #                             "rite_av": RGB, red artery, blue vein, green crossing, white uncertain


class DatasetLayoutError(ValueError):
    """The folder does not have the layout its spec names."""


def _need(path: Path) -> Path:
    if not path.exists():
        raise DatasetLayoutError(f"expected {path} (check the dataset root and split)")
    return path


def read_drive(root: Path, split: str = "training") -> list[Sample]:
    """DRIVE: ``{training,test}/images/NN_<split>.tif``, ``1st_manual/NN_manual1.gif``, ``mask/NN_<split>_mask.gif``."""
    if split not in ("training", "test"):
        raise DatasetLayoutError(f"DRIVE split must be training or test, not {split!r}")
    base = _need(Path(root) / split)
    out = []
    for img in sorted(_need(base / "images").glob("*.tif")):
        num = img.stem.split("_")[0]
        out.append(Sample(f"drive/{img.stem}", img, _need(base / "1st_manual" / f"{num}_manual1.gif"),
                          _need(base / "mask" / f"{img.stem}_mask.gif")))
    return out


CHASE_TRAIN_COUNT = 20  # common practice: Image_01L..Image_10R train, Image_11L..Image_14R test


def read_chase(root: Path, split: str = "train") -> list[Sample]:
    """CHASE_DB1: ``Image_XXY.jpg``, ``Image_XXY_1stHO.png``, ``mask/mask_XXY.png``; first 20 train / last 8 test."""
    root = Path(root)
    images = sorted(p for p in root.glob("Image_*.jpg"))
    if not images:
        raise DatasetLayoutError(f"no Image_*.jpg in {root}")
    if split == "train":
        images = images[:CHASE_TRAIN_COUNT]
    elif split == "test":
        images = images[CHASE_TRAIN_COUNT:]
    elif split != "all":
        raise DatasetLayoutError(f"CHASE split must be train, test or all, not {split!r}")
    out = []
    for img in images:
        key = img.stem.split("_")[1]
        fov = root / "mask" / f"mask_{key}.png"
        out.append(Sample(f"chase/{img.stem}", img, _need(root / f"{img.stem}_1stHO.png"), fov if fov.exists() else None))
    return out


def second_observer_label(sample: Sample) -> Path | None:
    """The second observer's vessel mask of a DRIVE or CHASE_DB1 sample, beside the first observer's
    (DRIVE ``2nd_manual/NN_manual2.gif``, CHASE ``Image_XXY_2ndHO.png``); None when the file is absent or the
    dataset has one observer only."""
    first = Path(sample.label) if sample.label is not None else None
    if first is None or sample.label_kind != "binary":
        return None
    if first.name.endswith("_manual1.gif"):
        second = first.parent.parent / "2nd_manual" / first.name.replace("_manual1", "_manual2")
    elif first.name.endswith("_1stHO.png"):
        second = first.with_name(first.name.replace("_1stHO", "_2ndHO"))
    else:
        return None
    return second if second.exists() else None


def read_hrf_av(root: Path, split: str = "training") -> list[Sample]:
    """HRF-AV: ``{training,test}/images/*``, ``1st_manual/<stem>_AVmanual.png`` (0 bg, 1 A, 2 V, 3 uncertain),
    ``mask/<stem>_mask.tif``. The vessel mask is label > 0."""
    base = _need(Path(root) / split)
    out = []
    for img in sorted(p for p in _need(base / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        fov = base / "mask" / f"{img.stem}_mask.tif"
        out.append(Sample(f"hrf/{img.stem}", img, _need(base / "1st_manual" / f"{img.stem}_AVmanual.png"),
                          fov if fov.exists() else None, "hrf_av"))
    return out


def read_folder(root: Path, split: str = "") -> list[Sample]:
    """Generic layout: ``images/<stem>.*`` with ``masks/<stem>.*`` (vessel > 0) and optional ``fov/<stem>.*``."""
    root = Path(root) / split if split else Path(root)
    masks = {p.stem: p for p in _need(root / "masks").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    fovs = {p.stem: p for p in (root / "fov").iterdir()} if (root / "fov").is_dir() else {}
    out = []
    for img in sorted(p for p in _need(root / "images").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        if img.stem not in masks:
            raise DatasetLayoutError(f"no mask for {img.name} in {root / 'masks'}")
        out.append(Sample(f"{root.name}/{img.stem}", img, masks[img.stem], fovs.get(img.stem)))
    return out


def read_rite(root: Path, split: str = "training") -> list[Sample]:
    """RITE: ``<split>/1st_manual/NN_<split>.png`` A/V labels on the DRIVE images; the photographs and FOV masks
    come from the DRIVE folder beside RITE (``root/../DRIVE/<split>/{images,mask}``)."""
    if split not in ("training", "test"):
        raise DatasetLayoutError(f"RITE split must be training or test, not {split!r}")
    root = Path(root)
    labels = _need(root / split / "1st_manual")
    drive = _need(root.parent / "DRIVE" / split)
    out = []
    for lab in sorted(labels.glob("*.png")):
        out.append(Sample(f"rite/{lab.stem}", _need(drive / "images" / f"{lab.stem}.tif"), lab,
                          _need(drive / "mask" / f"{lab.stem}_mask.gif"), "rite_av"))
    return out


IDRID_SPLITS = {"train": "a. Training Set", "test": "b. Testing Set"}


def read_idrid_hemorrhage(root: Path, split: str = "train") -> list[Sample]:
    """IDRiD lesion segmentation (``A. Segmentation``): ``1. Original Images/<split>/IDRiD_NN.jpg`` with
    ``2. All Segmentation Groundtruths/<split>/2. Haemorrhages/IDRiD_NN_HE.png``. An image without a
    haemorrhage file has no haemorrhage (label None = all background). No FOV masks (estimated)."""
    if split not in IDRID_SPLITS:
        raise DatasetLayoutError(f"IDRiD split must be train or test, not {split!r}")
    root = Path(root)
    images = _need(root / "1. Original Images" / IDRID_SPLITS[split])
    masks = _need(root / "2. All Segmentation Groundtruths" / IDRID_SPLITS[split] / "2. Haemorrhages")
    out = []
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        he = masks / f"{img.stem}_HE.png"
        if not he.exists():
            he = next(iter(sorted(masks.glob(f"{img.stem}_HE.*"))), None)
        out.append(Sample(f"idrid/{img.stem}", img, he, None))
    return out


READERS: dict[str, Callable[[Path, str], list[Sample]]] = {
    "drive": read_drive,
    "chase": read_chase,
    "hrf": read_hrf_av,
    "folder": read_folder,
    "idrid": read_idrid_hemorrhage,
    "rite": read_rite,
}
DEFAULT_SPLIT = {"drive": "training", "chase": "train", "hrf": "training", "folder": "", "idrid": "train",
                 "rite": "training"}
AV_LABEL_KINDS = ("hrf_av", "rite_av")
ARTERY, VEIN, AV_UNCERTAIN = 1, 2, 3


def parse_spec(spec: str) -> tuple[str, Path, str]:
    """``kind:path[:split]`` -> (kind, path, split). The path may itself contain ':' only on Windows drives."""
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if kind not in READERS or not rest:
        raise DatasetLayoutError(f"dataset spec {spec!r}: expected KIND:PATH[:SPLIT], KIND one of {sorted(READERS)}")
    path, sep, split = rest.rpartition(":")
    if not sep or not split or "/" in split:
        path, split = rest, DEFAULT_SPLIT[kind]
    return kind, Path(path), split


def read_spec(spec: str) -> list[Sample]:
    kind, path, split = parse_spec(spec)
    samples = READERS[kind](path, split)
    if not samples:
        raise DatasetLayoutError(f"dataset spec {spec!r} matched no images")
    return samples


def dataset_of(sample_id: str) -> str:
    """The dataset a sample id belongs to: its prefix before '/' (drive, chase, hrf, rite, idrid, a folder's name)."""
    return sample_id.split("/")[0]


def group_by_dataset(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by dataset (see dataset_of), in first-seen order."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(dataset_of(s.sample_id), []).append(s)
    return groups


def draw_probabilities(sample_ids: list[str], weights: dict[str, float]) -> np.ndarray | None:
    """Probability float64 [len(sample_ids)] of drawing each training image for a patch: proportional to the weight
    of its dataset (see dataset_of; datasets not in ``weights`` weigh 1). None when ``weights`` is empty (uniform
    over images, drawn with ``rng.integers``). A name in ``weights`` that matches no dataset is a ValueError; the
    weights themselves (> 0) are checked by TrainConfig."""
    if not weights:
        return None
    names = [dataset_of(i) for i in sample_ids]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"dataset weight for {', '.join(unknown)}: no such training dataset "
                         f"(have {', '.join(sorted(set(names)))})")
    p = np.array([weights.get(n, 1.0) for n in names], dtype=np.float64)
    return p / p.sum()


def load_label(sample: Sample, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Binary ground truth bool [H, W] of a sample (vessels: first observer; haemorrhages: the lesion mask).
    A sample without a label file is all background: ``shape`` (H, W) is then required."""
    if sample.label is None:
        if shape is None:
            raise ValueError(f"{sample.sample_id} has no label file; pass the image shape")
        return np.zeros(shape, bool)
    if sample.label_kind in AV_LABEL_KINDS:
        return load_av_label(sample) > 0
    return read_mask(sample.label) > 0


def load_av_label(sample: Sample) -> np.ndarray:
    """Artery/vein ground truth uint8 [H, W]: 0 background, 1 artery, 2 vein, 3 uncertain or crossing (vessel, but
    neither class: ignored by the A/V loss and metrics). Only for A/V datasets (HRF-AV, RITE)."""
    if sample.label_kind == "hrf_av":
        lab = read_mask(sample.label)
        return np.where(lab > AV_UNCERTAIN, AV_UNCERTAIN, lab).astype(np.uint8)
    if sample.label_kind == "rite_av":
        rgb = read_label_rgb(sample.label)
        hi = rgb > 127
        out = np.where(rgb.max(axis=2) > 0, AV_UNCERTAIN, 0).astype(np.uint8)
        out[hi[..., 0] & ~hi[..., 1] & ~hi[..., 2]] = ARTERY
        out[~hi[..., 0] & ~hi[..., 1] & hi[..., 2]] = VEIN
        return out
    raise ValueError(f"{sample.sample_id} has no artery/vein labels (label kind {sample.label_kind!r})")


def load_vessel_label(sample: Sample) -> np.ndarray:
    """Binary vessel ground truth bool [H, W] for a sample (first observer)."""
    return load_label(sample)


def load_fov(sample: Sample) -> np.ndarray | None:
    """Ground-truth FOV bool [H, W], or None when the dataset has none."""
    return None if sample.fov is None else read_mask(sample.fov) > 0


def load_image(sample: Sample) -> np.ndarray:
    return decode_image(sample.image)
