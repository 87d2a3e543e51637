"""Decode any supported image file into an RGB uint8 array, or explain clearly why it cannot be."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE_PX = 64


class DecodeError(Exception):
    """The file is not a usable image. ``reason`` is a short machine-friendly code, str(e) the explanation."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an integer or float array to uint8 by its bit depth (16-bit: top 8 of the used bits)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        hi = float(np.nanmax(arr)) if arr.size else 1.0
        scale = 255.0 if hi <= 1.0 else 255.0 / max(hi, 1e-6)
        return np.clip(np.nan_to_num(arr) * scale, 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    arr = np.clip(arr, 0, None)
    hi = int(arr.max()) if arr.size else 0
    bits = max(8, int(hi).bit_length())
    return (arr >> (bits - 8)).astype(np.uint8)


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL image -> RGB uint8 [H, W, 3]. Alpha is composited onto black (the fundus background)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "1":
        img = img.convert("L")
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        rgba = np.asarray(img.convert("RGBA")).astype(np.float32)
        alpha = rgba[..., 3:4] / 255.0
        return np.round(rgba[..., :3] * alpha).astype(np.uint8)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _is_16bit_colour(img: Image.Image, path: Path) -> bool:
    """True for 16-bit-per-channel colour PNG/TIFF, which Pillow would silently cut to their high bytes."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    if img.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        return len(head) == 26 and head[24] == 16 and head[25] in (2, 6)  # IHDR bit depth, colour type RGB(A)
    if img.format == "TIFF":
        bps = getattr(img, "tag_v2", {}).get(258)
        return bool(bps) and max(bps if isinstance(bps, tuple) else (bps,)) == 16
    return False


_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
           8: lambda a: np.rot90(a, 1)}


def _read_16bit_colour(path: Path, orientation: int = 1) -> np.ndarray:
    """16-bit colour PNG/TIFF via OpenCV -> RGB uint8 scaled by the bits actually used (alpha onto black)."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3:
        raise OSError("16-bit colour image could not be decoded")
    rgb = arr[..., [2, 1, 0]].astype(np.float64)
    if arr.shape[2] == 4:
        rgb *= arr[..., 3:4] / 65535.0
    rgb8 = _to_uint8(np.round(rgb).astype(np.uint16))
    return np.ascontiguousarray(_ORIENT.get(orientation, lambda a: a)(rgb8))  # EXIF orientation, as Pillow does


def decode_image(path: Path) -> np.ndarray:
    """Read ``path`` -> RGB uint8 [H, W, 3], EXIF orientation applied.

    Handles 8/16-bit, grayscale, RGBA, CMYK and palette images whatever the file extension says.
    Raises DecodeError (reason one of: missing, unreadable, empty_file, not_an_image, truncated, corrupt, too_small).
    """
    path = Path(path)
    if not path.exists():
        raise DecodeError("missing", f"file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise DecodeError("empty_file", "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                if _is_16bit_colour(img, path):
                    rgb = _read_16bit_colour(path, int(img.getexif().get(0x0112, 1)))
                else:
                    rgb = pil_to_rgb(ImageOps.exif_transpose(img))
    except PermissionError as exc:
        raise DecodeError("unreadable", f"file cannot be read: {exc.strerror}") from None
    except UnidentifiedImageError:
        raise DecodeError("not_an_image", f"not a recognised image format ({size} bytes)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or "broken data stream" in text.lower() or "image file is" in text.lower():
            raise DecodeError("truncated", f"image data is truncated or incomplete: {text}") from None
        raise DecodeError("corrupt", f"image could not be decoded: {text}") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError("corrupt", f"image refused as too large: {exc}") from None
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE_PX:
        raise DecodeError("too_small", f"image is {w}x{h} px; at least {MIN_SIDE_PX} px per side is needed")
    return rgb


def read_mask(path: Path) -> np.ndarray:
    """Read a label/mask image (any format) -> 2-D uint8 array of the stored values (no scaling of 0/1 labels)."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("P", "L", "1", "I;16", "I"):
            arr = np.asarray(img.convert("L") if img.mode == "1" else img)
        else:
            arr = np.asarray(img.convert("L"))
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def read_label_rgb(path: Path) -> np.ndarray:
    """Read a colour-coded label image (e.g. RITE's red/blue/green/white A/V map) -> uint8 [H, W, 3] RGB of the
    stored values, with no size checks or orientation changes (labels are stored as their images are)."""
    with Image.open(path) as img:
        img.load()
        return np.asarray(img.convert("RGB"))
