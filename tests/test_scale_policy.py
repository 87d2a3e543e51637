"""Image-following scale (ScaleSpec.min_fov_diameter_px) and the calibration's scale candidates."""
from __future__ import annotations

import numpy as np
import pytest

from retinacli.preprocess.fov import FovCircle
from retinacli.preprocess.normalise import ScaleSpec, make_transform, prepare, scale_spec_of

ADAPTIVE = ScaleSpec(canvas_px=256, fov_diameter_px=240, min_fov_diameter_px=120)


@pytest.mark.parametrize("input_d,model_d", [(60.0, 120.0), (120.0, 120.0), (180.5, 180.5), (240.0, 240.0),
                                             (1000.0, 240.0)])
def test_model_fov_diameter_is_the_input_diameter_clipped(input_d, model_d):
    assert ADAPTIVE.model_fov_diameter_px(input_d) == model_d
    assert ScaleSpec(256, 240).model_fov_diameter_px(input_d) == 240.0  # fixed scale ignores the input


def test_transform_keeps_a_mid_sized_fov_at_its_own_size():
    t = make_transform(FovCircle(cx=100.0, cy=90.0, r=90.0, fitted=True), 180, 200, ADAPTIVE)
    assert t.scale == pytest.approx(1.0)  # 180 px FOV lies in [120, 240]: no resampling
    t = make_transform(FovCircle(cx=100.0, cy=90.0, r=30.0, fitted=True), 180, 200, ADAPTIVE)
    assert t.scale == pytest.approx(2.0)  # 60 px FOV is drawn at the 120 px minimum
    t = make_transform(FovCircle(cx=500.0, cy=500.0, r=480.0, fitted=True), 1000, 1000, ADAPTIVE)
    assert t.scale == pytest.approx(0.25)  # 960 px FOV is shrunk to the 240 px maximum


def test_prepare_draws_the_fov_at_the_clipped_diameter_on_a_fixed_canvas():
    yy, xx = np.mgrid[:200, :200]
    rgb = np.zeros((200, 200, 3), np.uint8)
    rgb[(yy - 99.5) ** 2 + (xx - 99.5) ** 2 < 80 ** 2] = (180, 90, 40)  # FOV diameter 160 px
    prep = prepare(rgb, ADAPTIVE)
    assert prep.canvas.shape == (256, 256, 3)
    cols = np.nonzero(prep.canvas_fov.any(axis=0))[0]
    assert abs((cols.max() - cols.min() + 1) - 160) <= 2


def test_min_above_max_is_refused_and_spec_round_trips_through_metadata():
    with pytest.raises(ValueError):
        ScaleSpec(256, 240, 300)
    assert scale_spec_of({"canvas_px": 256, "fov_diameter_px": 240, "min_fov_diameter_px": 120}) == ADAPTIVE
    assert scale_spec_of({"canvas_px": 256, "fov_diameter_px": 240}) == ScaleSpec(256, 240)


def test_parse_scale_candidates():
    from retinacli.train.calibrate import ScaleCandidate, canvas_for, parse_scale_candidates

    assert parse_scale_candidates("800, 1024,800-1024") == [ScaleCandidate(800), ScaleCandidate(1024),
                                                            ScaleCandidate(1024, 800)]
    assert parse_scale_candidates("") == []
    assert ScaleCandidate(1024, 800).label() == "800-1024" and ScaleCandidate(640).label() == "640"
    assert canvas_for(1024) == 1056 and canvas_for(800) == 832
    for bad in ("abc", "1024-800", "800-"):
        with pytest.raises(ValueError):
            parse_scale_candidates(bad)
