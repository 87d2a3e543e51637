"""The installed package carries every file the shipped model folders name (a pip install, not only a checkout)."""
from __future__ import annotations

import fnmatch
import json
import tomllib

import pytest

from conftest import REPO_ROOT

ENGINES = REPO_ROOT / "engines"


def test_package_data_covers_every_file_of_each_shipped_model():
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "retinacli.engines"]
    folders = sorted(p.parent for p in ENGINES.glob("*/metadata.json"))
    if not folders:
        pytest.skip("no shipped model folders in engines/")
    for folder in folders:
        meta = json.loads((folder / "metadata.json").read_text())
        names = set(meta["sha256"]) | {"metadata.json", "MODEL_CARD.md"}
        for name in names:
            rel = f"{folder.name}/{name}"
            assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} would be left out of the installed package"
