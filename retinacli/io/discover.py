"""Find fundus photographs under one or more input paths."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".ppm"})


@dataclass(frozen=True)
class InputItem:
    """One input file. ``image_id`` is its path relative to the input root, with '/' separators."""

    image_id: str
    path: Path


def _id_for(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def discover_inputs(inputs: list[Path], exclude: Path | None = None) -> list[InputItem]:
    """Every image file under ``inputs`` (files or folders, searched recursively, extensions case-insensitive).

    Ids are paths relative to the folder given (a file given directly gets its own name). When several
    inputs would produce the same id, the later ones get the input's folder name as a prefix. Sorted by id
    within each input; hidden files and folders (starting with '.') are skipped.
    Files under ``exclude`` (the output folder, when it lies inside an input) are never inputs.
    Raises FileNotFoundError for an input path that does not exist.
    """
    return discover(inputs, exclude)[0]


def discover(inputs: list[Path], exclude: Path | None = None) -> tuple[list[InputItem], list[InputItem]]:
    """(images, other files): like `discover_inputs`, plus the non-hidden files whose extension is not an
    image extension, so a report can account for every file it was given."""
    excluded = Path(exclude).resolve() if exclude is not None else None
    others: list[InputItem] = []
    items: list[InputItem] = []
    seen: set[str] = set()
    for raw in inputs:
        root = Path(raw)
        if not root.exists():
            raise FileNotFoundError(f"input not found: {root}")
        if root.is_file():
            found = [(root.name, root)]
        else:
            found = []
            for p in root.rglob("*"):
                rel = p.relative_to(root)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if p.is_dir():
                    continue
                if not p.is_file():  # broken link, FIFO, socket...: listed, never silently dropped
                    others.append(InputItem(_id_for(p, root), p))
                    continue
                if excluded is not None and (excluded == p.resolve().parent or excluded in p.resolve().parents):
                    continue
                if p.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append((_id_for(p, root), p))
                else:
                    others.append(InputItem(_id_for(p, root), p))
            found.sort()
        for image_id, path in found:
            if image_id in seen:
                folder = root.resolve().parent if root.is_file() else root.resolve()  # a file: its folder
                image_id = f"{folder.name}/{image_id}"
            n = 2
            base = image_id
            while image_id in seen:
                image_id = f"{base}~{n}"
                n += 1
            seen.add(image_id)
            items.append(InputItem(image_id, path))
    return items, others
