"""Haemorrhage findings -> DR hints (clinical-rules §2.2, §9). Pure functions; every hint is a lower bound.

Inputs: lesion components (``lesions.Lesion``, px), the image's ``FundusAxes`` (DD in px, quadrant method),
a ``QualityVerdict`` and a ``HintConfig``. Outputs never contain the words the rules forbid (§0, §9).
Threshold comparisons use a 1e-9 relative tolerance, so a value equal to a threshold on paper (e.g. a pixel
exactly 1 DD from the fovea) counts as equal despite float rounding.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from retinacli.postprocess.fundus_geometry import DISC_FOVEA, DISC_ONLY_ESTIMATED_FOVEA, IMAGE_CENTRED, FundusAxes
from retinacli.postprocess.lesions import Lesion, min_distance_to_point_px

_REL_TOL = 1e-9
QUADRANTS = {DISC_FOVEA: ("ST", "IT", "SN", "IN"), DISC_ONLY_ESTIMATED_FOVEA: ("ST", "IT", "SN", "IN"),
             IMAGE_CENTRED: ("UL", "UR", "LL", "LR")}
HEMIFIELDS = {DISC_FOVEA: ("superior", "inferior"), DISC_ONLY_ESTIMATED_FOVEA: ("superior", "inferior"),
              IMAGE_CENTRED: ("upper", "lower")}
# most urgent first; codes in one tuple share a rank (the listed order breaks the tie for the headline)
PRIORITY: tuple[tuple[str, ...], ...] = (
    ("NOT_ASSESSED",), ("H_LARGE_OR_PRERETINAL",), ("H_HEMIFIELD_4PLUS_BOTH", "H_4Q_GT20", "H_MULTIPLE_BLOT"),
    ("H_MACULAR",), ("H_HEMIFIELD_4PLUS_ONE",), ("H_PRESENT",), ("H_NONE_DETECTED",))
CODE_ORDER = tuple(c for tier in PRIORITY for c in tier)
WORDING = {
    "NOT_ASSESSED": "Not assessed: {reason}. Refer for human grading.",
    "H_NONE_DETECTED": "No haemorrhages detected. Microaneurysms, exudates, venous/IRMA/new-vessel signs not "
                       "assessed; DR not excluded.",
    "H_PRESENT": "Haemorrhage(s) detected: ICDR ≥ moderate-NPDR-compatible finding / NHS R1 feature, if "
                 "confirmed by a grader.",
    "H_MACULAR": "Haemorrhage within 1 DD of the fovea: NHS M1 only if VA ≤ 6/12; Scottish M2 if blot "
                 "haemorrhage. Grader review.",
    "H_HEMIFIELD_4PLUS_ONE": "Scottish R2 (observable) pattern",
    "H_HEMIFIELD_4PLUS_BOTH": "Scottish R3 (referable) pattern",
    "H_MULTIPLE_BLOT": "NHS R2-like pattern ('multiple deep, round or blot haemorrhages'). Grader review.",
    "H_4Q_GT20": "ICDR severe-NPDR haemorrhage criterion met in the imaged field (single field under-counts).",
    "H_LARGE_OR_PRERETINAL": "Large haemorrhage: possible pre-retinal/vitreous haemorrhage (PDR sign). "
                             "Urgent human review.",
}


@dataclass(frozen=True)
class HintConfig:
    """Every rule threshold (§2). Lengths in µm, DD or px as named; counts are component counts.

    min_component_area_px: components smaller than this (px) are ignored (mask speckle); project default 4.
    blot_min_diameter_um: blot-sized = equivalent diameter >= this (µm); 125 µm = not a small red dot
        (no published cut-off). blot_min_diameter_dd: the same in DD (0.069 DD = 125 µm at DD = 1800 µm),
        used when the image has no µm scale.
    nhs_multiple_blot_n: blot-sized count for H_MULTIPLE_BLOT. The NHS text gives no number ("multiple");
        4 is a project default matching the Scottish hemifield count, so with the defaults H_MULTIPLE_BLOT
        fires whenever H_HEMIFIELD_4PLUS_ONE does and outranks it as headline.
    hemifield_blot_n: blot-sized count per hemifield for the Scottish rule (>= 4).
    quadrant_gt: H_4Q_GT20 needs more than this many components in each of the 4 quadrants (> 20).
    macular_radius_dd: H_MACULAR radius about the fovea (<= 1 DD). near_fovea_radii_dd: summary counts.
    large_min_disc_areas: H_LARGE_OR_PRERETINAL when a component's area >= this many disc areas
        (disc area = pi (DD/2)^2 px).
    """

    min_component_area_px: int = 4
    blot_min_diameter_um: float = 125.0
    blot_min_diameter_dd: float = 0.069
    nhs_multiple_blot_n: int = 4
    hemifield_blot_n: int = 4
    quadrant_gt: int = 20
    macular_radius_dd: float = 1.0
    near_fovea_radii_dd: tuple[float, float] = (1.0, 2.0)
    large_min_disc_areas: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_component_area_px", "nhs_multiple_blot_n", "hemifield_blot_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("blot_min_diameter_um", "blot_min_diameter_dd", "macular_radius_dd", "large_min_disc_areas"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.quadrant_gt < 0:
            raise ValueError("quadrant_gt must be >= 0")


@dataclass(frozen=True)
class QualityVerdict:
    """Quality gate result: ``gradable`` False (ungradable or OOD) -> NOT_ASSESSED with ``reason``."""

    gradable: bool
    reason: str = ""


@dataclass(frozen=True)
class HaemorrhageFindings:
    """Haemorrhage components of one image plus what the rules need besides them.

    fov_area_px: FOV pixel count (for the share of FOV); um_per_px: µm per px when the scale is known;
    preretinal_suspected: an external cue of boat-shaped/pre-retinal appearance (not computed here).
    """

    lesions: tuple[Lesion, ...]
    fov_area_px: int | None = None
    um_per_px: float | None = None
    preretinal_suspected: bool = False


@dataclass(frozen=True)
class HaemorrhageSummary:
    """Per-image measures of components >= ``min_component_area_px`` (§2.1). Labels come from the centroid;
    ``n_unassigned_*`` count centroids lying on an axis (left out of the per-label counts)."""

    n_components: int
    n_blot: int
    n_small_red_dots: int
    blot_size_basis: str  # 'um' (µm scale known) or 'dd'
    blot_min_diameter_px: float
    per_quadrant: dict[str, int]
    per_hemifield: dict[str, int]
    per_hemifield_blot: dict[str, int]
    n_unassigned_quadrant: int
    n_unassigned_hemifield: int
    total_area_px: int
    area_share_fov: float  # 0..1, NaN when the FOV area is unknown
    total_area_disc_areas: float
    largest_area_px: int
    largest_area_disc_areas: float
    nearest_to_fovea_dd: float  # min over all H pixels; NaN without a fovea or without components
    nearest_is_blot: bool | None
    n_within_dd: dict[float, int] | None  # radius (DD) -> components with a pixel within it; None: no fovea
    quadrant_method: str


@dataclass(frozen=True)
class HintResult:
    """The hint row: headline code and wording, every code that fired (priority order), basis and flags."""

    headline: str
    headline_text: str
    codes: tuple[str, ...]
    texts: tuple[str, ...]
    hint_basis: str
    quadrant_method: str
    quadrants_image_centred: bool
    fovea_not_found: bool
    macular_evaluated: bool
    summary: HaemorrhageSummary | None = None
    basis_by_code: dict[str, str] = field(default_factory=dict)
    hint_is_lower_bound: bool = True

    def as_row(self) -> dict[str, object]:
        """Flat CSV columns (``dr_hint_*``, ``hint_basis``, ``hint_is_lower_bound``, flags)."""
        return {"dr_hint_headline": self.headline, "dr_hint_text": self.headline_text,
                "dr_hint_codes": ";".join(self.codes), "hint_basis": self.hint_basis,
                "hint_is_lower_bound": self.hint_is_lower_bound, "quadrant_method": self.quadrant_method,
                "quadrants_image_centred": self.quadrants_image_centred, "fovea_not_found": self.fovea_not_found}


def _as_findings(findings: HaemorrhageFindings | Sequence[Lesion]) -> HaemorrhageFindings:
    return findings if isinstance(findings, HaemorrhageFindings) else HaemorrhageFindings(tuple(findings))


def blot_min_diameter_px(geometry: FundusAxes, cfg: HintConfig, um_per_px: float | None) -> tuple[float, str]:
    """Blot cut-off as an equivalent diameter in px, and its basis ('um' with a µm scale, else 'dd')."""
    if um_per_px is not None and um_per_px > 0:
        return cfg.blot_min_diameter_um / um_per_px, "um"
    return cfg.blot_min_diameter_dd * geometry.dd_px, "dd"


def summarise_haemorrhages(findings: HaemorrhageFindings | Sequence[Lesion], geometry: FundusAxes,
                           cfg: HintConfig = HintConfig()) -> HaemorrhageSummary:
    """Counts per quadrant/hemifield (by centroid), blot-sized counts, areas, and fovea distances in DD."""
    f = _as_findings(findings)
    method = geometry.quadrant_method
    kept = [les for les in f.lesions if les.area_px >= cfg.min_component_area_px]
    blot_px, basis = blot_min_diameter_px(geometry, cfg, f.um_per_px)
    is_blot = [les.equivalent_diameter_px >= blot_px * (1 - _REL_TOL) for les in kept]
    quad = dict.fromkeys(QUADRANTS[method], 0)
    hemi = dict.fromkeys(HEMIFIELDS[method], 0)
    hemi_blot = dict.fromkeys(HEMIFIELDS[method], 0)
    no_quad = no_hemi = 0
    for les, blot in zip(kept, is_blot):
        q, h = geometry.quadrant_of(les.centroid_xy), geometry.hemifield_of(les.centroid_xy)
        if q is None:
            no_quad += 1
        else:
            quad[q] += 1
        if h is None:
            no_hemi += 1
        else:
            hemi[h] += 1
            hemi_blot[h] += int(blot)
    disc_area_px = math.pi * (geometry.dd_px / 2.0) ** 2
    total = sum(les.area_px for les in kept)
    largest = max((les.area_px for les in kept), default=0)
    nearest, nearest_blot, within = math.nan, None, None
    if geometry.fovea_xy is not None:
        dists = [min_distance_to_point_px(les, geometry.fovea_xy) / geometry.dd_px for les in kept]
        within = {r: sum(d <= r * (1 + _REL_TOL) for d in dists) for r in cfg.near_fovea_radii_dd}
        if dists:
            i = min(range(len(dists)), key=dists.__getitem__)
            nearest, nearest_blot = dists[i], is_blot[i]
    share = total / f.fov_area_px if f.fov_area_px else math.nan
    return HaemorrhageSummary(
        n_components=len(kept), n_blot=sum(is_blot), n_small_red_dots=len(kept) - sum(is_blot),
        blot_size_basis=basis, blot_min_diameter_px=blot_px, per_quadrant=quad, per_hemifield=hemi,
        per_hemifield_blot=hemi_blot, n_unassigned_quadrant=no_quad, n_unassigned_hemifield=no_hemi,
        total_area_px=total, area_share_fov=share, total_area_disc_areas=total / disc_area_px,
        largest_area_px=largest, largest_area_disc_areas=largest / disc_area_px,
        nearest_to_fovea_dd=nearest, nearest_is_blot=nearest_blot, n_within_dd=within, quadrant_method=method)


def _fired_rules(s: HaemorrhageSummary, f: HaemorrhageFindings, geometry: FundusAxes, cfg: HintConfig,
                 ) -> tuple[dict[str, str], bool]:
    """Code -> basis text for every rule that fires on a gradable image; and whether H_MACULAR was evaluated."""
    fired: dict[str, str] = {}
    if s.n_components == 0:
        return {"H_NONE_DETECTED": f"0 components >= {cfg.min_component_area_px} px"}, geometry.fovea_xy is not None
    fired["H_PRESENT"] = f"{s.n_components} components >= {cfg.min_component_area_px} px"
    large = s.largest_area_disc_areas >= cfg.large_min_disc_areas * (1 - _REL_TOL)
    if large or f.preretinal_suspected:
        why = [f"largest component {s.largest_area_disc_areas:.2f} disc areas >= {cfg.large_min_disc_areas:g}"] \
            if large else []
        fired["H_LARGE_OR_PRERETINAL"] = "; ".join(why + (["pre-retinal appearance cue"]
                                                          if f.preretinal_suspected else []))
    hb = s.per_hemifield_blot
    n_hemi = sum(v >= cfg.hemifield_blot_n for v in hb.values())
    counts = ", ".join(f"{k}={v}" for k, v in hb.items())
    if n_hemi == 2:
        fired["H_HEMIFIELD_4PLUS_BOTH"] = f"blot-sized per hemifield {counts}, both >= {cfg.hemifield_blot_n}"
    if all(v > cfg.quadrant_gt for v in s.per_quadrant.values()):
        fired["H_4Q_GT20"] = ("components per quadrant " + ", ".join(f"{k}={v}" for k, v in s.per_quadrant.items())
                              + f", each > {cfg.quadrant_gt}")
    if s.n_blot >= cfg.nhs_multiple_blot_n:
        fired["H_MULTIPLE_BLOT"] = f"{s.n_blot} blot-sized components >= {cfg.nhs_multiple_blot_n}"
    evaluated = geometry.fovea_xy is not None
    if evaluated and s.nearest_to_fovea_dd <= cfg.macular_radius_dd * (1 + _REL_TOL):
        fired["H_MACULAR"] = (f"nearest haemorrhage pixel {s.nearest_to_fovea_dd:.3f} DD from the "
                              f"{'estimated ' if geometry.fovea_estimated else ''}fovea <= {cfg.macular_radius_dd:g}"
                              f" DD ({'blot-sized' if s.nearest_is_blot else 'small red dot'})")
    if n_hemi == 1:
        fired["H_HEMIFIELD_4PLUS_ONE"] = (f"blot-sized per hemifield {counts}, only one >= "
                                          f"{cfg.hemifield_blot_n}")
    return fired, evaluated


def dr_hints(findings: HaemorrhageFindings | Sequence[Lesion], geometry: FundusAxes, quality: QualityVerdict,
             cfg: HintConfig = HintConfig()) -> HintResult:
    """§2.2 hint table: every code that fires, the most urgent as headline, with basis and flags.

    Ungradable -> only NOT_ASSESSED. H_MACULAR is evaluated only with a fovea (found or estimated).
    """
    method = geometry.quadrant_method
    tail = f"; quadrant_method={method}"
    if not quality.gradable:
        reason = quality.reason.strip() or "quality check failed"
        text = WORDING["NOT_ASSESSED"].format(reason=reason)
        basis = f"NOT_ASSESSED: quality gate ({reason})"
        return HintResult("NOT_ASSESSED", text, ("NOT_ASSESSED",), (text,), basis + tail, method,
                          geometry.quadrants_image_centred, geometry.fovea_not_found, False, None,
                          {"NOT_ASSESSED": basis})
    f = _as_findings(findings)
    summary = summarise_haemorrhages(f, geometry, cfg)
    fired, evaluated = _fired_rules(summary, f, geometry, cfg)
    codes = tuple(c for c in CODE_ORDER if c in fired)
    head = codes[0]
    extra = f"; blot size basis={summary.blot_size_basis} (>= {summary.blot_min_diameter_px:.2f} px)"
    if not evaluated:
        extra += "; H_MACULAR not evaluated (fovea_not_found)"
    return HintResult(head, WORDING[head], codes, tuple(WORDING[c] for c in codes),
                      f"{head}: {fired[head]}{tail}{extra}", method, geometry.quadrants_image_centred,
                      geometry.fovea_not_found, evaluated, summary, fired)
