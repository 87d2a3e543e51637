"""Unit tests for dataset specs and layouts (retinacli.train.datasets) and the train/val split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retinacli.train.datasets import (DatasetLayoutError, Sample, load_fov, load_vessel_label, parse_spec, read_chase,
                                      read_drive, read_folder, read_spec, second_observer_label)
from retinacli.train.prepare_data import split_train_val


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# ---------------------------------------------------------------- parse_spec


@pytest.mark.parametrize("spec,expected", [
    ("drive:/a/b:test", ("drive", Path("/a/b"), "test")),
    ("drive:/a/b", ("drive", Path("/a/b"), "training")),
    ("chase:/x", ("chase", Path("/x"), "train")),
    ("chase:/x:all", ("chase", Path("/x"), "all")),
    ("CHASE:/x:test", ("chase", Path("/x"), "test")),           # kind is case-insensitive
    ("hrf:rel/dir:test", ("hrf", Path("rel/dir"), "test")),
    ("hrf:/data/HRF-AV", ("hrf", Path("/data/HRF-AV"), "training")),
    ("folder:/data/mine", ("folder", Path("/data/mine"), "")),
    ("folder:/data/mine:val", ("folder", Path("/data/mine"), "val")),
    ("folder:C:/data/mine", ("folder", Path("C:/data/mine"), "")),  # a drive letter is not a split
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["bogus:/x", "drive", "drive:", "/just/a/path", ":/x:test"])
def test_parse_spec_rejects_bad_specs(spec):
    with pytest.raises(DatasetLayoutError):
        parse_spec(spec)


def test_dataset_layout_error_is_a_value_error():
    assert issubclass(DatasetLayoutError, ValueError)


# ---------------------------------------------------------------- read_folder


def _folder_layout(root: Path, stems=("a", "b", "c"), fov=True) -> Path:
    for s in stems:
        _touch(root / "images" / f"{s}.png")
        _touch(root / "masks" / f"{s}.png")
        if fov:
            _touch(root / "fov" / f"{s}.png")
    return root


def test_read_folder_pairs_images_and_masks_by_stem(tmp_path):
    root = _folder_layout(tmp_path / "mine")
    _touch(root / "images" / "notes.txt")  # not an image: ignored
    _touch(root / "masks" / "zzz.png")     # a mask without an image: ignored
    samples = read_folder(root)
    assert [s.sample_id for s in samples] == ["mine/a", "mine/b", "mine/c"]
    for s in samples:
        stem = s.sample_id.split("/")[1]
        assert s.image == root / "images" / f"{stem}.png"
        assert s.label == root / "masks" / f"{stem}.png"
        assert s.fov == root / "fov" / f"{stem}.png"
        assert s.label_kind == "binary"


def test_read_folder_mask_with_other_extension_and_no_fov(tmp_path):
    root = tmp_path / "set"
    _touch(root / "images" / "eye1.JPG")
    _touch(root / "masks" / "eye1.tif")
    (s,) = read_folder(root)
    assert s.image.name == "eye1.JPG" and s.label.name == "eye1.tif" and s.fov is None


def test_read_folder_with_split_subfolder(tmp_path):
    _folder_layout(tmp_path / "mine" / "val", stems=("q",), fov=False)
    samples = read_spec(f"folder:{tmp_path / 'mine'}:val")
    assert [s.sample_id for s in samples] == ["val/q"]


def test_read_folder_missing_mask_raises(tmp_path):
    root = _folder_layout(tmp_path / "mine", stems=("a", "b"))
    _touch(root / "images" / "c.png")
    with pytest.raises(DatasetLayoutError, match="c.png"):
        read_folder(root)


def test_read_folder_missing_masks_dir_raises(tmp_path):
    _touch(tmp_path / "mine" / "images" / "a.png")
    with pytest.raises(DatasetLayoutError):
        read_folder(tmp_path / "mine")


def test_read_spec_with_no_images_raises(tmp_path):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DatasetLayoutError, match="no images"):
        read_spec(f"folder:{tmp_path / 'empty'}")


def test_load_label_and_fov_from_files(tmp_path):
    root = tmp_path / "set"
    lab = np.zeros((70, 80), np.uint8)
    lab[10:20, 10:60] = 255
    fov = np.zeros((70, 80), np.uint8)
    fov[5:65, 5:75] = 1  # a 0/1 mask
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "fov").mkdir()
    Image.fromarray(np.zeros((70, 80, 3), np.uint8)).save(root / "images" / "x.png")
    Image.fromarray(lab).save(root / "masks" / "x.png")
    Image.fromarray(fov).save(root / "fov" / "x.png")
    (s,) = read_folder(root)
    got = load_vessel_label(s)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, lab > 0)
    np.testing.assert_array_equal(load_fov(s), fov > 0)
    assert load_fov(Sample("x/y", s.image, s.label, None)) is None


# ---------------------------------------------------------------- DRIVE and CHASE layouts


def test_read_drive_layout(tmp_path):
    for n in (21, 22):
        base = tmp_path / "DRIVE" / "training"
        _touch(base / "images" / f"{n}_training.tif")
        _touch(base / "1st_manual" / f"{n}_manual1.gif")
        _touch(base / "mask" / f"{n}_training_mask.gif")
    samples = read_spec(f"drive:{tmp_path / 'DRIVE'}")
    assert [s.sample_id for s in samples] == ["drive/21_training", "drive/22_training"]
    assert samples[0].label.name == "21_manual1.gif" and samples[0].fov.name == "21_training_mask.gif"
    assert second_observer_label(samples[0]) is None  # no 2nd_manual/ here
    _touch(tmp_path / "DRIVE" / "training" / "2nd_manual" / "21_manual2.gif")
    assert second_observer_label(samples[0]) == tmp_path / "DRIVE" / "training" / "2nd_manual" / "21_manual2.gif"
    assert second_observer_label(Sample("x", Path("a.png"), None, None)) is None
    with pytest.raises(DatasetLayoutError):
        read_drive(tmp_path / "DRIVE", "validation")
    with pytest.raises(DatasetLayoutError):
        read_drive(tmp_path / "DRIVE", "test")  # no test/ folder here


def test_read_chase_splits(tmp_path):
    root = tmp_path / "CHASEDB1"
    keys = [f"{n:02d}{e}" for n in range(1, 15) for e in "LR"]
    for k in keys:
        _touch(root / f"Image_{k}.jpg")
        _touch(root / f"Image_{k}_1stHO.png")
        _touch(root / f"Image_{k}_2ndHO.png")
    _touch(root / "mask" / "mask_01L.png")
    train, test = read_chase(root, "train"), read_chase(root, "test")
    assert len(train) == 20 and len(test) == 8 and len(read_chase(root, "all")) == 28
    assert test[0].sample_id == "chase/Image_11L"
    assert train[0].fov == root / "mask" / "mask_01L.png" and train[1].fov is None
    assert train[0].label.name == "Image_01L_1stHO.png"
    assert second_observer_label(train[0]) == root / "Image_01L_2ndHO.png"
    (root / "Image_01R_2ndHO.png").unlink()
    assert second_observer_label(train[1]) is None  # absent file
    with pytest.raises(DatasetLayoutError):
        read_chase(root, "val")
    with pytest.raises(DatasetLayoutError):
        read_chase(tmp_path, "train")  # no images there


# ---------------------------------------------------------------- split_train_val


def _samples(prefix: str, n: int) -> list[Sample]:
    return [Sample(f"{prefix}/{i:02d}", Path(f"{prefix}{i}.png"), Path(f"{prefix}{i}_m.png"), None) for i in range(n)]


def test_split_train_val_every_nth_per_dataset():
    drive, chase, single = _samples("drive", 10), _samples("chase", 5), _samples("hrf", 1)
    train, val = split_train_val(drive + chase + single, 5)
    val_ids = sorted(s.sample_id for s in val)
    # counting from the last sample of each dataset: indices 0 and 5 from the end
    assert val_ids == ["chase/04", "drive/04", "drive/09"]
    assert "hrf/00" in {s.sample_id for s in train}  # a dataset of one sample is never held out
    assert len(train) + len(val) == 16
    assert {s.sample_id for s in train}.isdisjoint(val_ids)


def test_split_train_val_every_second_and_disabled():
    drive = _samples("drive", 6)
    train, val = split_train_val(drive, 2)
    assert sorted(s.sample_id for s in val) == ["drive/01", "drive/03", "drive/05"]
    assert sorted(s.sample_id for s in train) == ["drive/00", "drive/02", "drive/04"]
    train, val = split_train_val(drive, 0)
    assert train == drive and val == []
