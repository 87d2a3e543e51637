"""Atomic, confined output writing: every file is written to a temporary name and renamed into place,
and no path outside the output folder is ever written."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np


class OutsideOutputError(ValueError):
    """A path would land outside the output folder the user named."""


def confined_path(out_dir: Path, relative: str | Path) -> Path:
    """``out_dir / relative``, refusing absolute paths, '..' and symlink escapes."""
    out_dir = Path(out_dir).resolve()
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise OutsideOutputError(f"refusing to write {relative!r} outside {out_dir}")
    target = (out_dir / rel).resolve()
    if target != out_dir and out_dir not in target.parents:
        raise OutsideOutputError(f"refusing to write {target} outside {out_dir}")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` (mode 0666 minus the umask), fsync, rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs must be readable like any new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def encode_image(array: np.ndarray, ext: str, jpeg_quality: int = 90) -> bytes:
    """uint8 [H, W] or RGB [H, W, 3] -> encoded bytes ('.png' or '.jpg')."""
    arr = array
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:
        raise OSError(f"could not encode image as {ext}")
    return buf.tobytes()
