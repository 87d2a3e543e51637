"""Unit tests for retinacli.io.decode on small synthetic files (every format the CLI claims to read)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retinacli.io.decode import MIN_SIDE_PX, DecodeError, decode_image, pil_to_rgb, read_mask

H, W = 80, 100  # every test image is at least MIN_SIDE_PX on each side


def _smooth_rgb(h: int = H, w: int = W) -> np.ndarray:
    """A smooth colour gradient (survives JPEG almost unchanged)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 40 + 180 * xx / (w - 1)
    g = 30 + 150 * yy / (h - 1)
    b = 60 + 60 * (xx + yy) / (h + w - 2)
    return np.stack([r, g, b], axis=2).round().astype(np.uint8)


def _noisy_rgb(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _reason(path: Path) -> str:
    with pytest.raises(DecodeError) as info:
        decode_image(path)
    assert str(info.value)  # always a human explanation as well as the code
    return info.value.reason


# ---------------------------------------------------------------- lossless 8-bit RGB formats


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".tif", "TIFF"), (".bmp", "BMP"), (".ppm", "PPM")])
def test_lossless_rgb_formats_round_trip_exactly(tmp_path, ext, fmt):
    rgb = _noisy_rgb()
    path = tmp_path / f"img{ext}"
    Image.fromarray(rgb).save(path, format=fmt)
    out = decode_image(path)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg"])
def test_jpeg_rgb_is_close_to_original(tmp_path, ext):
    rgb = _smooth_rgb()
    path = tmp_path / f"img{ext}"
    Image.fromarray(rgb).save(path, format="JPEG", quality=95)
    out = decode_image(path)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 2.0


def test_uppercase_extension_and_tiff_lzw(tmp_path):
    rgb = _noisy_rgb(seed=3)
    path = tmp_path / "IMG.TIFF"
    Image.fromarray(rgb).save(path, format="TIFF", compression="tiff_lzw")
    np.testing.assert_array_equal(decode_image(path), rgb)


def test_palette_gif_gives_the_palette_colours(tmp_path):
    idx = (np.arange(H * W).reshape(H, W) % 4).astype(np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 200, 150, 100]
    img = Image.frombytes("P", (W, H), idx.tobytes())
    img.putpalette(palette + [0] * (768 - len(palette)))
    path = tmp_path / "pal.gif"
    img.save(path)
    out = decode_image(path)
    colours = np.array(palette, np.uint8).reshape(4, 3)
    np.testing.assert_array_equal(out, colours[idx])


def test_grayscale_l_is_replicated_to_three_channels(tmp_path):
    gray = np.random.default_rng(1).integers(0, 256, (H, W), dtype=np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    out = decode_image(path)
    assert out.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


# ---------------------------------------------------------------- 16-bit, alpha, CMYK


def test_16bit_png_full_range_keeps_top_8_bits(tmp_path):
    vals = (np.arange(H * W).reshape(H, W) * 8).astype(np.uint16)  # 0 .. 63992
    vals[0, 0] = 65535
    path = tmp_path / "deep.png"
    Image.fromarray(vals).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit
    out = decode_image(path)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out[..., 0], (vals >> 8).astype(np.uint8))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert out.max() == 255


def test_16bit_png_with_12_used_bits_is_scaled_by_its_bit_depth(tmp_path):
    vals = (np.arange(H * W).reshape(H, W) % 4096).astype(np.uint16)  # a 12-bit sensor in a 16-bit file
    path = tmp_path / "deep12.png"
    Image.fromarray(vals).save(path)
    out = decode_image(path)
    np.testing.assert_array_equal(out[..., 1], (vals >> 4).astype(np.uint8))
    assert out.max() == 255  # not left at 4095 >> 8 = 15 (a nearly black image)


def test_pil_to_rgb_16bit_small_values_not_amplified():
    vals = np.full((H, W), 200, np.uint16)
    out = pil_to_rgb(Image.fromarray(vals))
    assert out.dtype == np.uint8 and (out == 200).all()


def test_rgba_is_composited_onto_black(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, : W // 2, 3] = 255   # opaque left half
    rgba[:, W // 2:, 3] = 0      # transparent right half
    rgba[:10, :10, 3] = 128      # half-transparent corner
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    out = decode_image(path)
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out[20, 5], [200, 100, 50])
    assert (out[:, W // 2:] == 0).all()
    np.testing.assert_array_equal(out[5, 5], np.round(np.array([200, 100, 50]) * 128 / 255))


def test_la_image_is_composited_onto_black():
    la = np.zeros((H, W, 2), np.uint8)
    la[..., 0] = 180
    la[:, :50, 1] = 255
    out = pil_to_rgb(Image.fromarray(la))
    assert (out[:, :50] == 180).all() and (out[:, 50:] == 0).all()


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    rgb = _smooth_rgb()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = decode_image(path)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 3.0


def test_bilevel_mode_1_image():
    bits = np.zeros((H, W), bool)
    bits[:, :30] = True
    out = pil_to_rgb(Image.fromarray(bits).convert("1"))
    assert out.shape == (H, W, 3)
    assert (out[:, :30] == 255).all() and (out[:, 30:] == 0).all()


# ---------------------------------------------------------------- EXIF orientation and misnamed files


def test_exif_orientation_6_is_applied(tmp_path):
    rgb = np.full((H, W, 3), 20, np.uint8)
    rgb[:20, :20] = 240  # bright block in the stored top-left corner
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(rgb).save(path, format="JPEG", quality=95, exif=exif)
    out = decode_image(path)
    assert out.shape == (W, H, 3)  # height and width swapped
    # a clockwise quarter turn moves the top-left corner to the top-right
    assert out[:20, -20:].mean() > 200
    assert out[:20, :20].mean() < 60 and out[-20:, -20:].mean() < 60


def test_png_bytes_under_a_jpg_name_are_decoded_by_content(tmp_path):
    rgb = _noisy_rgb(seed=2)
    path = tmp_path / "actually_png.jpg"
    Image.fromarray(rgb).save(path, format="PNG")
    np.testing.assert_array_equal(decode_image(path), rgb)  # lossless: the PNG decoder was used


# ---------------------------------------------------------------- failures and their reason codes


def test_truncated_jpeg(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(_noisy_rgb(128, 128)).save(good, format="JPEG", quality=90)
    data = good.read_bytes()
    bad = tmp_path / "half.jpg"
    bad.write_bytes(data[: len(data) // 2])
    assert _reason(bad) == "truncated"


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert _reason(path) == "empty_file"


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n" * 10)
    assert _reason(path) == "not_an_image"


def test_missing_file(tmp_path):
    assert _reason(tmp_path / "nope.png") == "missing"


def test_too_small_image(tmp_path):
    path = tmp_path / "tiny.png"
    Image.fromarray(_noisy_rgb(33, 32)).save(path)  # 32 px wide, 33 px high
    assert _reason(path) == "too_small"


def test_min_side_is_accepted(tmp_path):
    path = tmp_path / "edge.png"
    Image.fromarray(_noisy_rgb(MIN_SIDE_PX, MIN_SIDE_PX + 7)).save(path)
    assert decode_image(path).shape == (MIN_SIDE_PX, MIN_SIDE_PX + 7, 3)
    Image.fromarray(_noisy_rgb(MIN_SIDE_PX - 1, 200)).save(path)
    assert _reason(path) == "too_small"


def test_decode_error_carries_reason_and_message():
    e = DecodeError("corrupt", "bad things")
    assert e.reason == "corrupt" and str(e) == "bad things" and isinstance(e, Exception)


# ---------------------------------------------------------------- read_mask


def test_read_mask_keeps_0_1_labels_unscaled(tmp_path):
    lab = np.zeros((H, W), np.uint8)
    lab[10:30, 20:40] = 1
    path = tmp_path / "lab.png"
    Image.fromarray(lab).save(path)
    out = read_mask(path)
    assert out.dtype == np.uint8 and out.shape == (H, W)
    np.testing.assert_array_equal(out, lab)


def test_read_mask_palette_gif_returns_indices(tmp_path):
    idx = np.zeros((H, W), np.uint8)
    idx[:, 50:] = 1
    img = Image.frombytes("P", (W, H), idx.tobytes())
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    path = tmp_path / "mask.gif"
    img.save(path)
    out = read_mask(path)
    assert out.ndim == 2
    assert set(np.unique(out)) == {0, 1}
    np.testing.assert_array_equal(out > 0, idx > 0)


def test_read_mask_rgb_and_bilevel(tmp_path):
    m = np.zeros((H, W), np.uint8)
    m[5:25, 5:25] = 255
    rgb_path = tmp_path / "m_rgb.png"
    Image.fromarray(np.repeat(m[..., None], 3, axis=2)).save(rgb_path)
    np.testing.assert_array_equal(read_mask(rgb_path), m)
    bl_path = tmp_path / "m_1.png"
    Image.fromarray(m).convert("1").save(bl_path)
    np.testing.assert_array_equal(read_mask(bl_path) > 0, m > 0)


def test_read_mask_16bit_values_are_clipped_not_scaled(tmp_path):
    lab = np.zeros((H, W), np.uint16)
    lab[:, :10] = 1
    lab[:, 10:20] = 3
    lab[:, 20:30] = 1000
    path = tmp_path / "lab16.png"
    Image.fromarray(lab).save(path)
    out = read_mask(path)
    assert out.dtype == np.uint8
    assert out[0, 0] == 1 and out[0, 15] == 3 and out[0, 25] == 255 and out[0, 50] == 0


def test_16bit_colour_png_keeps_its_low_bits(tmp_path):
    """A 12-bit-in-16 RGB PNG must not decode to a near-black image (Pillow alone keeps only the high byte)."""
    import cv2

    from retinacli.io.decode import decode_image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4096, size=(80, 90, 3), dtype=np.uint16)  # 12 bits used
    arr[0, 0] = 4095
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), arr)
    rgb = decode_image(path)
    assert rgb.shape == (80, 90, 3)
    assert rgb.max() == 255
    # channel order: OpenCV wrote BGR, so decoded R equals arr[..., 2] scaled to 8 bits
    assert np.array_equal(rgb[..., 0], (arr[..., 2] >> 4).astype(np.uint8))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_path_orientation_matches_pillow(tmp_path, orientation):
    from PIL import ImageOps

    from retinacli.io.decode import _ORIENT

    a = np.zeros((4, 6, 3), np.uint8)
    a[0, 1] = 255
    a[3, 0] = 128
    im = Image.fromarray(a)
    ex = im.getexif()
    ex[0x0112] = orientation
    im.save(tmp_path / "o.png", exif=ex.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    got = _ORIENT.get(orientation, lambda x: x)(a)
    assert np.array_equal(expected, got)
