"""Unit tests for patch augmentation (retinacli.train.augment) and the training losses (retinacli.train.losses)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from retinacli.train.augment import AugmentConfig, photometric, sample_patch

S = 128      # synthetic canvas side
PATCH = 48   # patch side

NO_AUG = AugmentConfig(scale_min=1.0, scale_max=1.0, rotate=False, flip=False, brightness=0.0, contrast=0.0,
                       gamma=0.0, channel_jitter=0.0, blur_prob=0.0, noise_std=0.0)


def _canvas(seed: int = 0):
    """(image uint8 [S,S,3], label uint8 0/1 [S,S], fov uint8 0/1 [S,S]) of a synthetic canvas sample."""
    rng = np.random.default_rng(seed)
    fov = np.zeros((S, S), np.uint8)
    cv2.circle(fov, (S // 2, S // 2), S // 2 - 4, 1, -1)
    label = np.zeros((S, S), np.uint8)
    cv2.line(label, (20, 30), (110, 90), 1, 3)
    cv2.line(label, (64, 10), (60, 120), 1, 2)
    label &= fov
    img = np.zeros((S, S, 3), np.float32)
    img[fov > 0] = (180, 90, 40)
    img[label > 0] *= 0.5
    img += rng.normal(0, 5, img.shape) * fov[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    img[fov == 0] = 0
    return img, label, fov


# ---------------------------------------------------------------- sample_patch


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sample_patch_shapes_dtypes_and_binary_outputs(seed):
    img, label, fov = _canvas()
    extra = (img[..., 0] > 100).astype(np.float32)
    out = sample_patch(img, label, fov, PATCH, np.random.default_rng(seed), AugmentConfig(), extra=extra)
    assert len(out) == 4
    p_img, p_lab, p_fov, p_extra = out
    assert p_img.shape == (PATCH, PATCH, 3) and p_img.dtype == np.uint8
    for a in (p_lab, p_fov, p_extra):
        assert a.shape == (PATCH, PATCH) and a.dtype == np.float32
        assert set(np.unique(a)) <= {0.0, 1.0}
    assert len(sample_patch(img, label, fov, PATCH, np.random.default_rng(seed), AugmentConfig())) == 3
    # outside the FOV the image is black and there is no vessel; inside it is never black
    outside = p_fov == 0
    assert (p_img[outside] == 0).all()
    assert (p_lab[outside] == 0).all()
    assert (p_img[~outside] >= 1).all()
    assert p_fov.sum() > 0  # the centre is drawn inside the FOV


def test_sample_patch_deterministic_for_a_seed():
    img, label, fov = _canvas()
    a = sample_patch(img, label, fov, PATCH, np.random.default_rng(42), AugmentConfig())
    b = sample_patch(img, label, fov, PATCH, np.random.default_rng(42), AugmentConfig())
    c = sample_patch(img, label, fov, PATCH, np.random.default_rng(43), AugmentConfig())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("seed", range(6))
def test_image_and_label_stay_aligned_under_geometric_augmentation(seed):
    """Encode the label in the image itself; after rotation/scale/flip the two must still agree."""
    _, label, fov = _canvas()
    img = np.zeros((S, S, 3), np.uint8)
    img[..., 0] = label * 255
    img[..., 1] = 100
    img[fov == 0] = 0
    cfg = AugmentConfig(brightness=0.0, contrast=0.0, gamma=0.0, channel_jitter=0.0, blur_prob=0.0, noise_std=0.0)
    p_img, p_lab, p_fov = sample_patch(img, label, fov, PATCH, np.random.default_rng(seed), cfg)
    inside = p_fov > 0
    from_image = p_img[..., 0] >= 128
    assert (from_image[inside] != (p_lab[inside] > 0)).mean() < 0.01


def test_sample_patch_without_augmentation_is_a_plain_crop():
    img, label, fov = _canvas()
    rng = np.random.default_rng(5)
    p_img, p_lab, p_fov = sample_patch(img, label, fov, PATCH, rng, NO_AUG)
    # find where the patch came from: an exact integer-shift crop of the canvas
    res = cv2.matchTemplate(img, p_img, cv2.TM_SQDIFF)
    y, x = np.unravel_index(np.argmin(res), res.shape)
    np.testing.assert_array_equal(p_img, img[y:y + PATCH, x:x + PATCH])
    np.testing.assert_array_equal(p_lab, label[y:y + PATCH, x:x + PATCH].astype(np.float32))
    np.testing.assert_array_equal(p_fov, fov[y:y + PATCH, x:x + PATCH].astype(np.float32))


# ---------------------------------------------------------------- photometric


def test_photometric_output_and_fov():
    img, _, fov = _canvas()
    patch = img.astype(np.float32)
    f = fov > 0
    out = photometric(patch.copy(), f, np.random.default_rng(0), AugmentConfig(blur_prob=1.0))
    assert out.shape == patch.shape and out.dtype == np.uint8
    assert (out[~f] == 0).all() and (out[f] >= 1).all()
    assert not np.array_equal(out, img)  # something changed
    again = photometric(patch.copy(), f, np.random.default_rng(0), AugmentConfig(blur_prob=1.0))
    np.testing.assert_array_equal(out, again)


def test_photometric_identity_when_all_ranges_are_zero():
    img, _, fov = _canvas()
    f = fov > 0
    out = photometric(img.astype(np.float32), f, np.random.default_rng(0), NO_AUG)
    expected = np.clip(img, 1, 255)
    expected[~f] = 0
    np.testing.assert_array_equal(out, expected)


def test_photometric_brightness_moves_the_mean():
    img, _, fov = _canvas()
    f = fov > 0
    means = []
    for b in (-0.2, 0.2):
        cfg = AugmentConfig(brightness=0.0, contrast=0.0, gamma=0.0, channel_jitter=0.0, blur_prob=0.0, noise_std=0.0)
        out = photometric(img.astype(np.float32) * (1 + b), f, np.random.default_rng(0), cfg)
        means.append(out[f].mean())
    assert means[0] < img[f].mean() < means[1]


# ---------------------------------------------------------------- losses


torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _tensors(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    label = (torch.rand(2, 1, 16, 16, generator=g) < 0.3).float()
    fov = torch.zeros(2, 1, 16, 16)
    fov[..., 2:14, 2:14] = 1.0
    label = label * fov
    return label, fov, g


def test_bce_dice_lower_for_perfect_than_wrong_prediction():
    from retinacli.train.losses import bce_dice_loss

    label, fov, g = _tensors()
    perfect = (label * 2 - 1) * 10.0
    wrong = -perfect
    random = torch.randn(label.shape, generator=g)
    lp, lw, lr = (bce_dice_loss(x, label, fov) for x in (perfect, wrong, random))
    assert lp.ndim == 0
    assert lp < lr < lw
    assert lp.item() < 0.01  # near zero: BCE ~ 0 and Dice ~ 1
    assert lw.item() > 5.0


def test_bce_dice_ignores_pixels_outside_fov():
    from retinacli.train.losses import bce_dice_loss

    label, fov, g = _tensors(1)
    logits = torch.randn(label.shape, generator=g)
    base = bce_dice_loss(logits, label, fov)
    outside = fov == 0
    logits2 = logits.clone()
    logits2[outside] = torch.randn(int(outside.sum()), generator=g) * 20
    label2 = label.clone()
    label2[outside] = 1.0  # vessels claimed outside the FOV must not count either
    assert torch.allclose(bce_dice_loss(logits2, label2, fov), base, atol=1e-6)
    # and no gradient flows to the outside logits
    x = logits.clone().requires_grad_(True)
    bce_dice_loss(x, label, fov).backward()
    assert (x.grad[outside] == 0).all() and (x.grad[~outside] != 0).any()


def test_bce_dice_weight():
    from retinacli.train.losses import bce_dice_loss

    label, fov, g = _tensors(2)
    logits = torch.randn(label.shape, generator=g)
    l0 = bce_dice_loss(logits, label, fov, dice_weight=0.0)
    l1 = bce_dice_loss(logits, label, fov, dice_weight=1.0)
    l2 = bce_dice_loss(logits, label, fov, dice_weight=2.0)
    assert l1 > l0
    assert torch.allclose(l2 - l1, l1 - l0, atol=1e-6)  # linear in the weight


def test_attention_mse_loss():
    from retinacli.train.losses import attention_mse_loss

    _, fov, g = _tensors(3)
    att = torch.rand(fov.shape, generator=g)
    assert attention_mse_loss(att, att.clone(), fov).item() == 0.0
    err = att.clone()
    err[fov == 0] = 5.0  # differences outside the FOV do not count
    assert attention_mse_loss(att, err, fov).item() == 0.0
    err = att + 0.5 * fov
    assert attention_mse_loss(att, err, fov).item() == pytest.approx(0.25, abs=1e-6)
