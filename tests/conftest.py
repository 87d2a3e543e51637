"""Shared test helpers: synthetic fundus images, a tiny random-init checkpoint and its exported model folder.

Everything here is small on purpose (canvas 96 px, U-Net channels (4, 8)) so the suite runs on a
2-core machine in seconds; the models are untrained, which is fine for plumbing tests.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS = REPO_ROOT.parent / "shared" / "datasets"

requires_data = pytest.mark.skipif(not DATASETS.exists(),
                                   reason="../shared/datasets not present (real-data tests need it)")

TINY_CHANNELS = (4, 8)
TINY_CANVAS_PX = 96
TINY_FOV_DIAMETER_PX = 88


def draw_fundus(h: int, w: int, seed: int = 0, return_mask: bool = False):
    """Synthetic RGB uint8 [h, w, 3] fundus photograph: a reddish disc on black with a few dark curved
    'vessel' lines and a little noise. With ``return_mask`` also returns the vessel mask bool [h, w]
    (the drawn lines, inside the disc)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    cy, cx = h / 2 + rng.uniform(-0.03, 0.03) * h, w / 2 + rng.uniform(-0.03, 0.03) * w
    r = 0.46 * min(h, w)
    centre = (int(round(cx)), int(round(cy)))
    cv2.circle(img, centre, int(r), (int(rng.integers(170, 210)), int(rng.integers(70, 100)), 40), -1)
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, centre, int(r), 1, -1)
    vessels = np.zeros((h, w), np.uint8)
    thick = max(1, min(h, w) // 60)
    for _ in range(4):  # arcs through the disc
        axes = (int(r * rng.uniform(0.4, 0.9)), int(r * rng.uniform(0.2, 0.6)))
        start = float(rng.uniform(0, 180))
        cv2.ellipse(vessels, centre, axes, float(rng.uniform(0, 180)), start, start + 160, 1, thick)
    for _ in range(3):  # straight branches
        p0 = (int(cx + rng.uniform(-0.5, 0.5) * r), int(cy + rng.uniform(-0.5, 0.5) * r))
        p1 = (int(cx + rng.uniform(-0.9, 0.9) * r), int(cy + rng.uniform(-0.9, 0.9) * r))
        cv2.line(vessels, p0, p1, 1, thick)
    vmask = (vessels > 0) & (disc > 0)
    out = img.astype(np.float32)
    out[vmask] *= 0.45
    out += rng.normal(0, 4, out.shape) * disc[..., None]
    out = np.clip(out, 0, 255).astype(np.uint8)
    out[disc == 0] = 0
    return (out, vmask) if return_mask else out


def write_rgb(path: Path, rgb: np.ndarray, quality: int = 95) -> Path:
    """Write an RGB uint8 image with OpenCV (format from the extension, case-insensitive)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def make_folder_dataset(root: Path, n: int = 2, size: tuple[int, int] = (120, 128), seed: int = 0) -> Path:
    """A generic `folder:` dataset: root/images/<stem>.png + root/masks/<stem>.png (vessel 255)."""
    for i in range(n):
        rgb, mask = draw_fundus(*size, seed=seed + i, return_mask=True)
        write_rgb(root / "images" / f"img{i:02d}.png", rgb)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "masks" / f"img{i:02d}.png"), mask.astype(np.uint8) * 255)
    return root


def build_tiny_checkpoint(path: Path, seed: int = 0, model_name: str = "vessel_unet",
                          canvas_px: int = TINY_CANVAS_PX, fov_diameter_px: int = TINY_FOV_DIAMETER_PX,
                          min_fov_diameter_px: int | None = None) -> Path:
    import torch

    from retinacli.models.registry import MODEL_TASKS, create_model
    from retinacli.preprocess.normalise import ScaleSpec
    from retinacli.train.checkpoint import make_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    model = create_model(model_name, channels=TINY_CHANNELS)
    ck = make_checkpoint(model, model_name, {"channels": list(TINY_CHANNELS)},
                         ScaleSpec(canvas_px, fov_diameter_px, min_fov_diameter_px), threshold=0.5,
                         provenance={"data": ["synthetic"]}, metrics={}, task=MODEL_TASKS[model_name])
    save_checkpoint(ck, path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The test machine is shared with training jobs: keep torch to one thread."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init `vessel_unet` (channels (4, 8), canvas 96, FOV 88) saved as a retina checkpoint."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint exported as a shipped model folder (model.onnx + model.pt + metadata.json)."""
    from retinacli.export.artefact_writer import export_model_folder

    out = tmp_path_factory.mktemp("engines") / "tiny"
    export_model_folder(tiny_checkpoint, out, [])
    return out


@pytest.fixture(scope="session")
def tiny_hemorrhage_dir(tmp_path_factory) -> Path:
    """A random-init `hemorrhage_unet` (channels (4, 8), canvas 112, FOV 104: not the vessel model's scale)
    exported as a model folder."""
    from retinacli.export.artefact_writer import export_model_folder

    ck = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt_h") / "tiny_h.pt", seed=1, model_name="hemorrhage_unet",
                               canvas_px=112, fov_diameter_px=104)
    out = tmp_path_factory.mktemp("engines_h") / "tiny_h"
    export_model_folder(ck, out, [])
    return out


@pytest.fixture(scope="session")
def tiny_av_dir(tmp_path_factory) -> Path:
    """A random-init `av_seqnet` at the tiny vessel model's scale (so it shares its canvas), as a model folder."""
    from retinacli.export.artefact_writer import export_model_folder

    ck = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt_av") / "tiny_av.pt", seed=2, model_name="av_seqnet")
    out = tmp_path_factory.mktemp("engines_av") / "tiny_av"
    export_model_folder(ck, out, [])
    return out
