"""Unit tests for retinacli.io.discover (files only need to exist: nothing is decoded)."""
from __future__ import annotations

from pathlib import Path

import pytest

from retinacli.io.discover import discover, discover_inputs


def _touch(root: Path, rel: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def _ids(items) -> list[str]:
    return [it.image_id for it in items]


def test_recursive_case_insensitive_and_sorted(tmp_path):
    root = tmp_path / "in"
    for rel in ["b.JPG", "a.png", "sub/c.TiFF", "sub/deeper/d.jpeg", "e.Bmp", "f.gif", "g.ppm", "h.tif"]:
        _touch(root, rel)
    items = discover_inputs([root])
    assert _ids(items) == sorted(["b.JPG", "a.png", "sub/c.TiFF", "sub/deeper/d.jpeg", "e.Bmp", "f.gif", "g.ppm",
                                  "h.tif"])
    for it in items:
        assert it.path == root / it.image_id
        assert it.path.is_file()


def test_non_images_and_folders_are_not_inputs_but_are_reported(tmp_path):
    root = tmp_path / "in"
    _touch(root, "a.png")
    _touch(root, "notes.txt")
    _touch(root, "sub/readme")
    (root / "folder.png").mkdir()  # a folder with an image-like name is not a file
    images, others = discover([root])
    assert _ids(images) == ["a.png"]
    assert sorted(_ids(others)) == ["notes.txt", "sub/readme"]


def test_hidden_files_and_folders_are_skipped(tmp_path):
    root = tmp_path / "in"
    _touch(root, "ok.png")
    _touch(root, ".hidden.png")
    _touch(root, ".cache/x.png")
    _touch(root, "sub/.y.jpg")
    _touch(root, "sub/.thumbs/z.jpg")
    _touch(root, ".notes.txt")
    images, others = discover([root])
    assert _ids(images) == ["ok.png"]
    assert others == []


def test_hidden_root_itself_is_searched(tmp_path):
    root = tmp_path / ".photos"
    _touch(root, "a.png")
    assert _ids(discover_inputs([root])) == ["a.png"]


def test_ids_use_forward_slashes_relative_to_root(tmp_path):
    root = tmp_path / "in"
    _touch(root, "x/y/z.png")
    (item,) = discover_inputs([root])
    assert item.image_id == "x/y/z.png"
    assert "\\" not in item.image_id and not item.image_id.startswith("/")


def test_duplicate_ids_from_two_inputs_are_made_distinct(tmp_path):
    a, b = tmp_path / "siteA", tmp_path / "siteB"
    _touch(a, "eye.png")
    _touch(a, "only_a.png")
    _touch(b, "eye.png")
    items = discover_inputs([a, b])
    ids = _ids(items)
    assert len(ids) == len(set(ids)) == 3
    assert ids[:2] == ["eye.png", "only_a.png"]  # the first input keeps its plain ids
    assert ids[2] == "siteB/eye.png"
    assert items[2].path == b / "eye.png"


def test_duplicate_ids_still_distinct_when_prefixed_id_is_taken(tmp_path):
    a, b = tmp_path / "one", tmp_path / "two"
    _touch(a, "eye.png")
    _touch(a, "two/eye.png")  # the id "two/eye.png" already exists in the first input
    _touch(b, "eye.png")
    items = discover_inputs([a, b])
    ids = _ids(items)
    assert len(ids) == len(set(ids)) == 3
    assert {it.path for it in items} == {a / "eye.png", a / "two/eye.png", b / "eye.png"}


def test_same_folder_twice_gives_distinct_ids(tmp_path):
    a = tmp_path / "in"
    _touch(a, "eye.png")
    ids = _ids(discover_inputs([a, a]))
    assert len(ids) == len(set(ids)) == 2


def test_file_given_directly(tmp_path):
    p = _touch(tmp_path / "deep/dir", "photo.JPG")
    (item,) = discover_inputs([p])
    assert item.image_id == "photo.JPG" and item.path == p


def test_two_files_with_the_same_name_given_directly(tmp_path):
    p1 = _touch(tmp_path / "left", "eye.png")
    p2 = _touch(tmp_path / "right", "eye.png")
    items = discover_inputs([p1, p2])
    assert _ids(items)[0] == "eye.png"
    assert _ids(items)[1] == "right/eye.png"  # prefixed with the file's folder name
    assert items[1].path == p2


def test_file_and_folder_mixed(tmp_path):
    folder = tmp_path / "in"
    _touch(folder, "a.png")
    single = _touch(tmp_path, "b.jpg")
    assert _ids(discover_inputs([folder, single])) == ["a.png", "b.jpg"]


def test_missing_input_raises(tmp_path):
    _touch(tmp_path / "in", "a.png")
    with pytest.raises(FileNotFoundError):
        discover_inputs([tmp_path / "in", tmp_path / "does_not_exist"])


def test_exclude_output_folder_inside_input(tmp_path):
    root = tmp_path / "in"
    _touch(root, "a.png")
    _touch(root, "out/a.png/mask.png")
    _touch(root, "out/b/overlay.png")
    _touch(root, "outside.png")  # shares a name prefix with the excluded folder: still an input
    images, others = discover([root], exclude=root / "out")
    assert _ids(images) == ["a.png", "outside.png"]
    assert others == []
