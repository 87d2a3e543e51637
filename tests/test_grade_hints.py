"""Unit tests for retinacli.postprocess.grade_hints: every rule of clinical-rules §2.2 at its boundaries.

Layout used unless stated: right eye, 400 x 400 px, fovea F = (200.5, 200.5) (a pixel centre), disc
D = (350.5, 200.5), DD = 60 px, horizontal raphe: ST = upper-left, IT = lower-left, SN = upper-right,
IN = lower-right of F. Blot cut-off without a µm scale: 0.069 DD = 4.14 px equivalent diameter.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from retinacli.postprocess.fundus_geometry import fundus_axes
from retinacli.postprocess.grade_hints import (CODE_ORDER, WORDING, HaemorrhageFindings, HintConfig, QualityVerdict,
                                               dr_hints, summarise_haemorrhages)
from retinacli.postprocess.lesions import Lesion, lesion_components

F = (200.5, 200.5)
D = (350.5, 200.5)
DD = 60.0
OK = QualityVerdict(True, "")
FORBIDDEN = re.compile(r"\b(no dr|mild|diagnosis|grade)\b", re.IGNORECASE)

TEXT_NONE = ("No haemorrhages detected. Microaneurysms, exudates, venous/IRMA/new-vessel signs not assessed; "
             "DR not excluded.")
TEXT_PRESENT = ("Haemorrhage(s) detected: ICDR ≥ moderate-NPDR-compatible finding / NHS R1 feature, if confirmed "
                "by a grader.")


def _axes(**kw):
    return fundus_axes(F, 400, disc_xy=D, fovea_xy=F, dd_px=DD, **kw)


def _les(x: float, y: float, eqd: float = 2.0, area: int | None = None, label: int = 1) -> Lesion:
    """A hand-made component at centroid (x, y) px with the given equivalent diameter (px)."""
    area = area if area is not None else max(4, round(math.pi * eqd ** 2 / 4))
    pix = np.array([[int(x), int(y)]], np.int32)
    return Lesion(label, area, eqd, (float(x), float(y)), (int(x), int(y), 1, 1), 0.0, pix)


def _row(n: int, x0: float, y: float, eqd: float = 5.0, step: float = 12.0) -> list[Lesion]:
    return [_les(x0 + i * step, y, eqd) for i in range(n)]


def _grid(mask: np.ndarray, x0: int, y0: int, n: int, side: int = 2, step: int = 5, per_row: int = 7) -> None:
    """Draw ``n`` separate side x side squares in rows from (x0, y0) (px indices)."""
    for i in range(n):
        x, y = x0 + (i % per_row) * step, y0 + (i // per_row) * step
        mask[y:y + side, x:x + side] = True


# ------------------------------------------------------------------ none / present / min size


def test_no_components_gives_none_detected():
    r = dr_hints([], _axes(), OK)
    assert r.codes == ("H_NONE_DETECTED",) and r.headline == "H_NONE_DETECTED"
    assert r.headline_text == TEXT_NONE
    assert r.hint_is_lower_bound is True
    assert r.hint_basis == ("H_NONE_DETECTED: 0 components >= 4 px; quadrant_method=disc_fovea; "
                            "blot size basis=dd (>= 4.14 px)")
    assert r.macular_evaluated is True and r.fovea_not_found is False


def test_min_component_size_boundary():
    m = np.zeros((400, 400), bool)
    m[50, 50:53] = True  # 3 px: speckle
    assert dr_hints(lesion_components(m), _axes(), OK).codes == ("H_NONE_DETECTED",)
    m[51, 50] = True  # 4 px
    r = dr_hints(lesion_components(m), _axes(), OK)
    assert r.codes == ("H_PRESENT",) and r.headline_text == TEXT_PRESENT
    assert r.hint_basis.startswith("H_PRESENT: 1 components >= 4 px; quadrant_method=disc_fovea")
    assert dr_hints(lesion_components(m), _axes(), OK, HintConfig(min_component_area_px=5)).headline == \
        "H_NONE_DETECTED"


# ------------------------------------------------------------------ H_MACULAR


@pytest.mark.parametrize("col, row, fires", [(260, 200, True), (261, 200, False),  # 60 px = 1 DD; 61 px
                                             (236, 248, True), (237, 248, False)])  # 3-4-5 x 12 = 60 px
def test_macular_exactly_one_dd_vs_just_over(col, row, fires):
    m = np.zeros((400, 400), bool)
    m[row:row + 2, col:col + 2] = True  # nearest pixel centre = (col + 0.5, row + 0.5)
    r = dr_hints(lesion_components(m), _axes(), OK)
    assert ("H_MACULAR" in r.codes) is fires
    assert r.headline == ("H_MACULAR" if fires else "H_PRESENT")
    if fires:
        assert r.headline_text == ("Haemorrhage within 1 DD of the fovea: NHS M1 only if VA ≤ 6/12; Scottish M2 "
                                   "if blot haemorrhage. Grader review.")
        assert r.hint_basis.startswith("H_MACULAR: nearest haemorrhage pixel 1.000 DD from the fovea <= 1 DD "
                                       "(small red dot); quadrant_method=disc_fovea")


def test_macular_uses_nearest_pixel_not_centroid():
    m = np.zeros((400, 400), bool)
    m[199:203, 260:300] = True  # centroid 0.95 DD further out, nearest pixel exactly 1 DD
    r = dr_hints(lesion_components(m), _axes(), OK)
    assert "H_MACULAR" in r.codes
    assert r.summary.nearest_is_blot is True


def test_macular_with_estimated_fovea():
    ax = fundus_axes(F, 400, disc_xy=D, dd_px=DD)  # no fovea: F^ = D + 159 px at 5.6 deg down, toward centre
    fx, fy = ax.fovea_xy
    r = dr_hints([_les(fx, fy)], ax, OK)
    assert r.macular_evaluated and "H_MACULAR" in r.codes and r.fovea_not_found
    assert "from the estimated fovea" in r.hint_basis
    assert "quadrant_method=disc_only_estimated_fovea" in r.hint_basis


def test_macular_not_evaluated_without_fovea():
    ax = fundus_axes(F, 400)  # neither disc nor fovea
    r = dr_hints([_les(200.5, 200.5)], ax, OK)  # would be at the fovea in the usual layout
    assert r.codes == ("H_PRESENT",)
    assert r.macular_evaluated is False and r.fovea_not_found is True and r.quadrants_image_centred is True
    assert r.hint_basis.endswith("; H_MACULAR not evaluated (fovea_not_found)")
    assert r.summary.n_within_dd is None and math.isnan(r.summary.nearest_to_fovea_dd)


# ------------------------------------------------------------------ blot size and hemifields


@pytest.mark.parametrize("eqd, blot", [(0.069 * DD, True), (4.14, True), (4.13, False)])
def test_blot_cut_off_in_dd_without_scale(eqd, blot):
    r = dr_hints(_row(4, 30, 50, eqd=eqd), _axes(), OK)
    assert r.summary.blot_size_basis == "dd"
    assert r.summary.n_blot == (4 if blot else 0)
    assert r.summary.n_small_red_dots == (0 if blot else 4)
    assert ("H_HEMIFIELD_4PLUS_ONE" in r.codes) is blot and ("H_MULTIPLE_BLOT" in r.codes) is blot


@pytest.mark.parametrize("eqd, blot", [(12.5, True), (12.49, False)])
def test_blot_cut_off_in_um_with_scale(eqd, blot):
    f = HaemorrhageFindings(tuple(_row(4, 30, 50, eqd=eqd)), um_per_px=10.0)  # 125 µm = 12.5 px
    r = dr_hints(f, _axes(), OK)
    assert r.summary.blot_size_basis == "um" and r.summary.blot_min_diameter_px == pytest.approx(12.5)
    assert r.summary.n_blot == (4 if blot else 0)
    assert "blot size basis=um (>= 12.50 px)" in r.hint_basis


@pytest.mark.parametrize("n_sup, n_inf, expected", [
    (3, 0, ("H_PRESENT",)),
    (4, 0, ("H_MULTIPLE_BLOT", "H_HEMIFIELD_4PLUS_ONE", "H_PRESENT")),
    (4, 3, ("H_MULTIPLE_BLOT", "H_HEMIFIELD_4PLUS_ONE", "H_PRESENT")),
    (3, 3, ("H_MULTIPLE_BLOT", "H_PRESENT")),
    (4, 4, ("H_HEMIFIELD_4PLUS_BOTH", "H_MULTIPLE_BLOT", "H_PRESENT"))])
def test_hemifield_rule_three_vs_four(n_sup, n_inf, expected):
    lesions = _row(n_sup, 30, 50) + _row(n_inf, 30, 350)  # superior: y < 200.5; inferior: y > 200.5
    r = dr_hints(lesions, _axes(), OK)
    assert r.codes == expected and r.headline == expected[0]
    assert r.summary.per_hemifield_blot == {"superior": n_sup, "inferior": n_inf}


def test_hemifield_one_headlines_when_nhs_multiple_is_higher():
    cfg = HintConfig(nhs_multiple_blot_n=8)
    r = dr_hints(_row(4, 30, 50) + _row(3, 30, 350), _axes(), OK, cfg)
    assert r.codes == ("H_HEMIFIELD_4PLUS_ONE", "H_PRESENT")
    assert r.headline_text == "Scottish R2 (observable) pattern"
    assert r.hint_basis.startswith("H_HEMIFIELD_4PLUS_ONE: blot-sized per hemifield superior=4, inferior=3, "
                                   "only one >= 4; quadrant_method=disc_fovea")
    both = dr_hints(_row(4, 30, 50) + _row(4, 30, 350), _axes(), OK, cfg)
    assert both.headline == "H_HEMIFIELD_4PLUS_BOTH" and both.headline_text == "Scottish R3 (referable) pattern"


def test_small_red_dots_do_not_count_for_hemifields():
    r = dr_hints(_row(10, 30, 50, eqd=2.0), _axes(), OK)
    assert r.codes == ("H_PRESENT",) and r.summary.n_small_red_dots == 10


@pytest.mark.parametrize("n", [3, 4])
def test_nhs_multiple_blot_boundary(n):
    lesions = _row(2, 30, 50) + _row(n - 2, 30, 350)  # split so no hemifield reaches 4
    r = dr_hints(lesions, _axes(), OK)
    assert ("H_MULTIPLE_BLOT" in r.codes) is (n == 4)
    if n == 4:
        assert r.headline_text == ("NHS R2-like pattern ('multiple deep, round or blot haemorrhages'). "
                                   "Grader review.")


# ------------------------------------------------------------------ four quadrants > 20


def _four_quadrant_mask(counts: dict[str, int]) -> np.ndarray:
    m = np.zeros((400, 400), bool)
    origin = {"ST": (20, 20), "SN": (250, 20), "IT": (20, 250), "IN": (250, 250)}
    for q, n in counts.items():
        _grid(m, *origin[q], n)
    return m


@pytest.mark.parametrize("st, fires", [(21, True), (20, False)])
def test_four_quadrants_20_vs_21(st, fires):
    m = _four_quadrant_mask({"ST": st, "SN": 21, "IT": 21, "IN": 30})
    r = dr_hints(lesion_components(m), _axes(), OK)
    assert r.summary.per_quadrant == {"ST": st, "IT": 21, "SN": 21, "IN": 30}
    assert r.codes == (("H_4Q_GT20", "H_PRESENT") if fires else ("H_PRESENT",))
    if fires:
        assert r.headline_text == ("ICDR severe-NPDR haemorrhage criterion met in the imaged field "
                                   "(single field under-counts).")
        assert r.hint_basis.startswith("H_4Q_GT20: components per quadrant ST=21, IT=21, SN=21, IN=30, each > 20; "
                                       "quadrant_method=disc_fovea")


def test_four_quadrants_fire_with_image_centred_quadrants():
    m = _four_quadrant_mask({"ST": 21, "SN": 21, "IT": 21, "IN": 21})
    r = dr_hints(lesion_components(m), fundus_axes(F, 400), OK)
    assert r.summary.per_quadrant == {"UL": 21, "UR": 21, "LL": 21, "LR": 21}
    assert r.codes == ("H_4Q_GT20", "H_PRESENT")
    assert r.quadrants_image_centred is True and r.quadrant_method == "image_centred"
    assert "quadrant_method=image_centred" in r.hint_basis


# ------------------------------------------------------------------ large / pre-retinal and headline order


@pytest.mark.parametrize("area, fires", [(2828, True), (2827, False)])  # disc area = pi * 30^2 = 2827.43 px
def test_large_haemorrhage_one_disc_area_boundary(area, fires):
    r = dr_hints([_les(60, 60, eqd=math.sqrt(4 * area / math.pi), area=area)], _axes(), OK)
    assert ("H_LARGE_OR_PRERETINAL" in r.codes) is fires
    assert r.summary.largest_area_px == area
    if fires:
        assert r.headline == "H_LARGE_OR_PRERETINAL"
        assert r.headline_text == ("Large haemorrhage: possible pre-retinal/vitreous haemorrhage (PDR sign). "
                                   "Urgent human review.")


def test_preretinal_cue_fires_large_rule():
    r = dr_hints(HaemorrhageFindings((_les(60, 60),), preretinal_suspected=True), _axes(), OK)
    assert r.codes == ("H_LARGE_OR_PRERETINAL", "H_PRESENT")
    assert r.hint_basis.startswith("H_LARGE_OR_PRERETINAL: pre-retinal appearance cue;")


def test_code_order_is_the_documented_priority():
    assert CODE_ORDER == ("NOT_ASSESSED", "H_LARGE_OR_PRERETINAL", "H_HEMIFIELD_4PLUS_BOTH", "H_4Q_GT20",
                          "H_MULTIPLE_BLOT", "H_MACULAR", "H_HEMIFIELD_4PLUS_ONE", "H_PRESENT", "H_NONE_DETECTED")


def test_headline_order_with_everything_firing():
    m = _four_quadrant_mask({"ST": 21, "SN": 21, "IT": 21, "IN": 21})
    m[198:204, 198:204] = True  # at the fovea, blot-sized (36 px, eqd 6.8)
    m[100:160, 20:80] = True  # 3600 px > 1 disc area
    base = lesion_components(m)
    extra = _row(4, 30, 180, eqd=5.0) + _row(4, 30, 230, eqd=5.0)  # 4 + 4 blot-sized near the raphe
    r = dr_hints(base + extra, _axes(), OK)
    assert r.codes == ("H_LARGE_OR_PRERETINAL", "H_HEMIFIELD_4PLUS_BOTH", "H_4Q_GT20", "H_MULTIPLE_BLOT",
                       "H_MACULAR", "H_PRESENT")
    assert r.texts == tuple(WORDING[c] for c in r.codes)
    small = [c for c in base if c.area_px < 1000]  # without the large one
    r2 = dr_hints(small + extra, _axes(), OK)
    assert r2.headline == "H_HEMIFIELD_4PLUS_BOTH"  # tie-break inside the referable tier: listed order
    r3 = dr_hints(small, _axes(), OK)
    assert r3.codes == ("H_4Q_GT20", "H_MACULAR", "H_PRESENT")


def test_macular_outranks_hemifield_one():
    cfg = HintConfig(nhs_multiple_blot_n=10)
    r = dr_hints(_row(4, 30, 50) + [_les(201, 201)], _axes(), OK, cfg)
    assert r.codes == ("H_MACULAR", "H_HEMIFIELD_4PLUS_ONE", "H_PRESENT")


# ------------------------------------------------------------------ quality gate


def test_ungradable_gives_only_not_assessed():
    big = _les(60, 60, eqd=80.0, area=5000)
    r = dr_hints([big] + _row(8, 30, 50), _axes(), QualityVerdict(False, "image out of focus"))
    assert r.codes == ("NOT_ASSESSED",) and r.headline == "NOT_ASSESSED"
    assert r.headline_text == "Not assessed: image out of focus. Refer for human grading."
    assert r.hint_basis == "NOT_ASSESSED: quality gate (image out of focus); quadrant_method=disc_fovea"
    assert r.summary is None and r.hint_is_lower_bound is True
    assert dr_hints([], _axes(), QualityVerdict(False)).headline_text == (
        "Not assessed: quality check failed. Refer for human grading.")


# ------------------------------------------------------------------ summary


def test_summary_counts_areas_and_distances():
    m = np.zeros((400, 400), bool)
    m[50:54, 50:54] = True  # ST, 16 px, blot (eqd 4.51)
    m[60:62, 120:122] = True  # ST, 4 px, dot
    m[300:302, 300:302] = True  # IN, 4 px, dot
    m[230:234, 290:294] = True  # IN, 16 px, blot
    m[210:212, 250:252] = True  # IN, 4 px, nearest: pixel centre (250.5, 210.5) -> hypot(50, 10) / 60
    m[150:152, 199:203] = True  # centroid x = 201.0 > 200.5: SN, 8 px, dot; nearest (200.5, 151.5): 49 px
    f = HaemorrhageFindings(tuple(lesion_components(m)), fov_area_px=100_000)
    s = summarise_haemorrhages(f, _axes())
    assert s.n_components == 6 and s.n_blot == 2 and s.n_small_red_dots == 4
    assert s.per_quadrant == {"ST": 2, "IT": 0, "SN": 1, "IN": 3}
    assert s.per_hemifield == {"superior": 3, "inferior": 3}
    assert s.per_hemifield_blot == {"superior": 1, "inferior": 1}
    assert s.n_unassigned_quadrant == 0 and s.n_unassigned_hemifield == 0
    assert s.total_area_px == 52 and s.area_share_fov == pytest.approx(52 / 100_000)
    assert s.total_area_disc_areas == pytest.approx(52 / (math.pi * 900))
    assert s.largest_area_px == 16
    assert s.nearest_to_fovea_dd == pytest.approx(49 / 60) and s.nearest_is_blot is False
    # within 1 DD: 49/60 and hypot(50, 10)/60 = 0.85; within 2 DD also the IN blot, hypot(90, 30)/60 = 1.58;
    # the IN dot at 141/60 = 2.35 and both ST lesions are further out
    assert s.n_within_dd == {1.0: 2, 2.0: 3}


def test_summary_on_axis_centroid_is_unassigned_and_fov_unknown():
    m = np.zeros((400, 400), bool)
    m[200, 40:44] = True  # centroid y = 200.5: on the raphe
    s = summarise_haemorrhages(lesion_components(m), _axes())
    assert s.n_unassigned_hemifield == 1 and s.n_unassigned_quadrant == 1
    assert sum(s.per_quadrant.values()) == 0 and math.isnan(s.area_share_fov)


def test_right_and_left_eye_layouts_give_the_same_quadrant_counts():
    m = np.zeros((400, 400), bool)
    _grid(m, 20, 20, 3)  # right eye: upper-left of the fovea = superior temporal
    _grid(m, 300, 300, 1)  # lower-right = inferior nasal
    right = summarise_haemorrhages(lesion_components(m), _axes())
    left_axes = fundus_axes((199.5, 200.5), 400, disc_xy=(49.5, 200.5), fovea_xy=(199.5, 200.5), dd_px=DD)
    left = summarise_haemorrhages(lesion_components(m[:, ::-1]), left_axes)  # mirrored image of a left eye
    assert right.per_quadrant == left.per_quadrant == {"ST": 3, "IT": 0, "SN": 0, "IN": 1}


# ------------------------------------------------------------------ wording, rows, config


def test_no_output_string_uses_forbidden_words():
    cases = [dr_hints([], _axes(), OK), dr_hints([], _axes(), QualityVerdict(False, "fov not found")),
             dr_hints(_row(4, 30, 50) + _row(4, 30, 350) + [_les(201, 201)], _axes(), OK),
             dr_hints(_row(4, 30, 50), fundus_axes(F, 400), OK),
             dr_hints([_les(60, 60, eqd=80.0, area=5000)], _axes(), OK)]
    strings = list(WORDING.values())
    for r in cases:
        strings += [r.headline_text, r.hint_basis, *r.texts, *r.codes, *r.basis_by_code.values(),
                    *map(str, r.as_row().keys()), *(v for v in r.as_row().values() if isinstance(v, str))]
    bad = [s for s in strings if FORBIDDEN.search(s)]
    assert bad == []
    assert FORBIDDEN.search("No DR") and FORBIDDEN.search("a mild case")  # the check itself can fail


def test_as_row_columns():
    row = dr_hints([_les(60, 60)], _axes(), OK).as_row()
    assert row == {"dr_hint_headline": "H_PRESENT", "dr_hint_text": TEXT_PRESENT, "dr_hint_codes": "H_PRESENT",
                   "hint_basis": row["hint_basis"], "hint_is_lower_bound": True, "quadrant_method": "disc_fovea",
                   "quadrants_image_centred": False, "fovea_not_found": False}


def test_config_defaults_and_validation():
    cfg = HintConfig()
    assert (cfg.blot_min_diameter_um, cfg.blot_min_diameter_dd, cfg.nhs_multiple_blot_n, cfg.hemifield_blot_n,
            cfg.quadrant_gt, cfg.macular_radius_dd, cfg.large_min_disc_areas, cfg.min_component_area_px) == \
        (125.0, 0.069, 4, 4, 20, 1.0, 1.0, 4)
    with pytest.raises(ValueError):
        HintConfig(nhs_multiple_blot_n=0)
    with pytest.raises(ValueError):
        HintConfig(macular_radius_dd=0)
