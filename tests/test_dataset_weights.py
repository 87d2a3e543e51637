"""--dataset-weight: per-dataset sampling weights of the training images."""
from __future__ import annotations

import json

import numpy as np
import pytest

from retinacli.train.datasets import draw_probabilities

IDS = ["drive/21", "drive/22", "chase/01L", "hrf/01_h", "hrf/02_g", "hrf/03_dr"]


def test_no_weights_means_uniform_draws_by_integers():
    assert draw_probabilities(IDS, {}) is None


def test_weights_scale_each_dataset_and_unnamed_ones_weigh_one():
    p = draw_probabilities(IDS, {"drive": 3.0})
    # raw weights 3, 3, 1, 1, 1, 1 -> sum 10
    np.testing.assert_allclose(p, [0.3, 0.3, 0.1, 0.1, 0.1, 0.1])
    assert p.sum() == pytest.approx(1.0)
    # equal weights on every dataset are the same as none
    np.testing.assert_allclose(draw_probabilities(IDS, {"drive": 2, "chase": 2, "hrf": 2}), np.full(6, 1 / 6))


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="dataset weight for rite: no such training dataset"):
        draw_probabilities(IDS, {"rite": 2.0})


def test_config_refuses_non_positive_weights(tmp_path):
    from retinacli.train.config import TrainConfig

    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="dataset weights must be > 0"):
            TrainConfig(data=[], run_dir=tmp_path, dataset_weights={"drive": bad})
    assert TrainConfig(data=[], run_dir=tmp_path, dataset_weights={"drive": 2.0}).to_json()["dataset_weights"] == {
        "drive": 2.0}


def test_weighted_draws_follow_the_probabilities():
    """The loop's draw: rng.choice with these probabilities; over many draws each dataset's share matches."""
    p = draw_probabilities(IDS, {"drive": 3.0})
    rng = np.random.default_rng(0)
    draws = rng.choice(len(IDS), size=20000, p=p)
    share_drive = np.isin(draws, [0, 1]).mean()
    assert share_drive == pytest.approx(0.6, abs=0.015)


torch = pytest.importorskip("torch")


def _args(data, run, *extra):
    return ["train", "vessels", "-d", f"folder:{data}", "--run-dir", str(run), "--steps-per-epoch", "2",
            "--batch-size", "2", "--patch-px", "64", "--val-every", "0", "--threads", "1", "--channels", "4,8",
            "--canvas-px", "96", "--fov-diameter-px", "88", "--epochs", "1", *extra]


def test_train_cli_weight_reaches_the_config_and_bad_ones_exit_2(tmp_path):
    from typer.testing import CliRunner

    from conftest import make_folder_dataset
    from retinacli.cli.main import app

    data = make_folder_dataset(tmp_path / "ds", n=2)
    res = CliRunner().invoke(app, _args(data, tmp_path / "R", "--dataset-weight", "ds=2.5"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "R" / "config.json").read_text())["dataset_weights"] == {"ds": 2.5}
    for value, message in (("ds", "expected NAME=W"), ("ds=x", "expected NAME=W"), ("ds=0", "must be > 0"),
                           ("drive=2", "no such training dataset")):
        run = tmp_path / f"R_{value}"
        res = CliRunner().invoke(app, _args(data, run, "--dataset-weight", value))
        assert res.exit_code == 2, (value, res.output)
        assert message in res.output, (value, res.output)
        assert not any(run.glob("*.pt"))  # refused before any training


@pytest.mark.parametrize("command", ["refine", "hemorrhage", "av"])
def test_every_other_train_command_takes_dataset_weights(tmp_path, tiny_checkpoint, command):
    from typer.testing import CliRunner

    from conftest import make_folder_dataset
    from retinacli.cli.main import app

    data = make_folder_dataset(tmp_path / "ds", n=1)
    base = {"refine": ["train", "refine", "--stage1", str(tiny_checkpoint), "-d", f"folder:{data}"],
            "hemorrhage": ["train", "hemorrhage", "-d", f"folder:{data}"],
            "av": ["train", "av", "-d", f"folder:{data}", "--vessel-init", str(tiny_checkpoint)]}[command]
    res = CliRunner().invoke(app, [*base, "--run-dir", str(tmp_path / "R"), "--dataset-weight", "ds=-1"])
    assert res.exit_code == 2, res.output
    assert "dataset weights must be > 0" in res.output


def test_training_batches_draw_images_by_the_probabilities(tmp_path):
    """The loop's batch builder takes every patch from the image the probabilities allow (label all 1 vs all 0;
    augmentation may pad a patch, so "from the first" = any label pixel)."""
    from types import SimpleNamespace

    from retinacli.train.config import TrainConfig
    from retinacli.train.loop import _batch

    fov = np.ones((96, 96), bool)
    img = np.full((96, 96, 3), 0.5, np.float32)
    samples = [SimpleNamespace(image=img, label=np.ones((96, 96), bool), fov=fov),
               SimpleNamespace(image=img, label=np.zeros((96, 96), bool), fov=fov)]
    cfg = TrainConfig(data=[], run_dir=tmp_path, batch_size=16, patch_px=32)
    for p, from_first in (([1.0, 0.0], True), ([0.0, 1.0], False)):
        _, lab, _, _ = _batch(samples, None, cfg, np.random.default_rng(1), draw_p=np.array(p))
        assert lab.shape[0] == 16
        assert [bool(v > 0) for v in lab.float().sum(dim=(1, 2, 3))] == [from_first] * 16
    _, lab, _, _ = _batch(samples, None, cfg, np.random.default_rng(1))  # uniform: both images appear
    assert 0 < int((lab.float().sum(dim=(1, 2, 3)) > 0).sum()) < 16


def test_a_folder_dataset_name_keeps_its_case(tmp_path):
    from typer.testing import CliRunner

    from conftest import make_folder_dataset
    from retinacli.cli.main import app

    data = make_folder_dataset(tmp_path / "Clinic_A", n=1)
    res = CliRunner().invoke(app, _args(data, tmp_path / "R", "--dataset-weight", "Clinic_A=2"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "R" / "config.json").read_text())["dataset_weights"] == {"Clinic_A": 2.0}
