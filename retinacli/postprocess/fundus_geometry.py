"""Disc/fovea geometry: quadrants, hemifields, DD distances and their fallbacks (clinical-rules §3.2, §3.3).

Pure functions. Coordinates are continuous input pixels, x right, y down (pixel centre = index + 0.5, as in
``preprocess.fov``). D = disc centre, F = fovea, DD = disc diameter in px.

The single source of the §3.1/§3.3 anatomy constants, the disc/fovea plausibility test, the fallback fovea
estimate and the ``quadrant_method`` names: ``disc_fovea`` (the image locator) uses them too.

Decisions where the rules are silent (documented in ``fundus_axes``):
- superior/inferior are swapped only when the caller *knows* the image is inverted (``inverted=True``);
  ``possibly_inverted`` (tilt > +4.3 deg) is a weak cue and only flags;
- a point on an axis (|a| or |b| <= ``ON_AXIS_TOL_PX``) has no quadrant (and no hemifield when on the
  hemifield line): counts built on it are lower bounds;
- disc not found but fovea found -> image-centred quadrants; the fovea is kept for DD distances.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

DFD_PER_DD = 2.65  # mean disc-fovea distance / DD (Beijing Eye Study)
DFD_PER_DD_SD = 0.30  # its SD
TILT_MEAN_DEG = -5.6  # mean disc->fovea tilt, fovea below the disc (Rohrschneider 2004)
TILT_SD_DEG = 3.3  # its SD
DFD_PER_DD_RANGE = (2.05, 3.25)  # plausible DFD/DD, mean +- 2 SD
TILT_RANGE_DEG = (-15.5, 4.3)  # plausible tilt for a non-inverted image, mean +- 3 SD
DD_PER_FOV_DIAMETER = 0.139  # DD_px ~= 0.139 x FOV diameter_px (45 deg field)
ON_AXIS_TOL_PX = 1e-9  # |a| or |b| at most this (px): the point lies on an axis and gets no label

DISC_FOVEA = "disc_fovea"  # quadrant_method: detected disc and a detected fovea that passed the checks
DISC_ONLY_ESTIMATED_FOVEA = "disc_only_estimated_fovea"  # detected disc, fovea from estimate_fovea_xy
IMAGE_CENTRED = "image_centred"  # no disc axis: image axes about the FOV centre
QUADRANT_METHODS = (DISC_FOVEA, DISC_ONLY_ESTIMATED_FOVEA, IMAGE_CENTRED)
Point = tuple[float, float]


class PairCheck(NamedTuple):
    """Plausibility of one disc/fovea pair (§3.3): tilt (deg), DFD/DD, and whether each is in its range."""

    tilt_deg: float
    dfd_per_dd: float
    dfd_ok: bool  # DFD/DD in DFD_PER_DD_RANGE
    tilt_ok: bool  # tilt in TILT_RANGE_DEG (mirrored, [-4.3, +15.5], when the image is known to be inverted)

    @property
    def plausible(self) -> bool:
        return self.dfd_ok and self.tilt_ok


@dataclass(frozen=True)
class FundusAxes:
    """Axes for quadrant/hemifield labels and fovea distances of one image.

    quadrant_method: 'disc_fovea' | 'disc_only_estimated_fovea' | 'image_centred'.
    disc_xy, fovea_xy: px; fovea_xy is the detected or estimated fovea, None when neither exists.
    fov_centre_xy, fov_diameter_px: the FOV circle (px). dd_px: disc diameter (px); dd_source:
        'segmented' (given) | 'fov_diameter' (0.139 x FOV diameter).
    u_xy, n_xy: unit temporal direction (D->F) and its perpendicular with n_y < 0 (None when image-centred).
    tilt_deg, dfd_per_dd: of the *detected* disc/fovea pair (degrees, DD), None otherwise.
    geometry_plausible: detected pair inside DFD/DD [2.05, 3.25] and tilt [-15.5, +4.3] (mirrored when
        inverted); None without a detected pair.
    inverted: the caller's statement that the image is stored rotated 180 degrees (swaps superior/inferior).
    """

    quadrant_method: str
    disc_xy: Point | None
    fovea_xy: Point | None
    fov_centre_xy: Point
    fov_diameter_px: float
    dd_px: float
    dd_source: str
    u_xy: Point | None
    n_xy: Point | None
    tilt_deg: float | None
    dfd_per_dd: float | None
    geometry_plausible: bool | None
    inverted: bool
    disc_not_found: bool
    fovea_not_found: bool
    fovea_rejected_implausible: bool
    possibly_inverted: bool

    @property
    def quadrants_image_centred(self) -> bool:
        return self.quadrant_method == IMAGE_CENTRED

    @property
    def fovea_estimated(self) -> bool:
        return self.quadrant_method == DISC_ONLY_ESTIMATED_FOVEA

    def flags(self) -> dict[str, bool]:
        """The §9 geometry flags plus ``fovea_rejected_implausible``."""
        return {"disc_not_found": self.disc_not_found, "fovea_not_found": self.fovea_not_found,
                "quadrants_image_centred": self.quadrants_image_centred,
                "possibly_inverted": self.possibly_inverted,
                "fovea_rejected_implausible": self.fovea_rejected_implausible}

    def axis_coordinates(self, p_xy: Point) -> tuple[float, float]:
        """(a, b) in px. Disc/fovea: a = (p-F).u (> 0 temporal), b = (p-F).n (> 0 image-up side).
        Image-centred: a = x - cx (> 0 right), b = cy - y (> 0 up)."""
        px, py = float(p_xy[0]), float(p_xy[1])
        if self.u_xy is None or self.n_xy is None or self.fovea_xy is None:
            cx, cy = self.fov_centre_xy
            return px - cx, cy - py
        dx, dy = px - self.fovea_xy[0], py - self.fovea_xy[1]
        return dx * self.u_xy[0] + dy * self.u_xy[1], dx * self.n_xy[0] + dy * self.n_xy[1]

    def hemifield_of(self, p_xy: Point) -> str | None:
        """'superior' | 'inferior' (disc/fovea axes) or 'upper' | 'lower' (image-centred); None on the line."""
        _, b = self.axis_coordinates(p_xy)
        if abs(b) <= ON_AXIS_TOL_PX:
            return None
        if self.quadrants_image_centred:
            return "upper" if b > 0 else "lower"
        return "superior" if (b > 0) != self.inverted else "inferior"

    def quadrant_of(self, p_xy: Point) -> str | None:
        """'ST' | 'IT' | 'SN' | 'IN' (disc/fovea axes) or 'UL' | 'UR' | 'LL' | 'LR' (image-centred, about the
        FOV centre); None for a point on either axis."""
        a, b = self.axis_coordinates(p_xy)
        if abs(a) <= ON_AXIS_TOL_PX or abs(b) <= ON_AXIS_TOL_PX:
            return None
        if self.quadrants_image_centred:
            return ("U" if b > 0 else "L") + ("R" if a > 0 else "L")
        sup = (b > 0) != self.inverted
        return ("S" if sup else "I") + ("T" if a > 0 else "N")

    def distance_to_fovea_dd(self, p_xy: Point) -> float:
        """|p - F| / DD; NaN when there is no fovea (found or estimated)."""
        if self.fovea_xy is None:
            return math.nan
        return math.hypot(float(p_xy[0]) - self.fovea_xy[0], float(p_xy[1]) - self.fovea_xy[1]) / self.dd_px


def tilt_deg(disc_xy: Point, fovea_xy: Point):
    """theta = atan2(-(F_y - D_y), |F_x - D_x|) in degrees; positive = fovea above the disc.

    Scalars -> float; array coordinates (e.g. a grid of candidate foveae) broadcast -> float64 array.
    """
    t = np.degrees(np.arctan2(-np.subtract(fovea_xy[1], disc_xy[1]), np.abs(np.subtract(fovea_xy[0], disc_xy[0]))))
    return float(t) if np.ndim(t) == 0 else t


def check_disc_fovea_pair(disc_xy: Point, fovea_xy: Point, dd_px: float, inverted: bool = False) -> PairCheck:
    """Tilt and DFD/DD of a detected pair against the §3.3 ranges (mean +- 2 SD, mean +- 3 SD)."""
    tilt = tilt_deg(disc_xy, fovea_xy)
    ratio = math.hypot(fovea_xy[0] - disc_xy[0], fovea_xy[1] - disc_xy[1]) / dd_px
    lo, hi = TILT_RANGE_DEG if not inverted else (-TILT_RANGE_DEG[1], -TILT_RANGE_DEG[0])
    return PairCheck(tilt, ratio, DFD_PER_DD_RANGE[0] <= ratio <= DFD_PER_DD_RANGE[1], lo <= tilt <= hi)


def axes_from_disc_fovea(disc_xy: Point, fovea_xy: Point) -> tuple[Point, Point]:
    """(u, n): u = (F - D)/|F - D|; n = the perpendicular of u with n_y < 0. Raises if F = D or F is
    straight above/below D (no perpendicular with n_y < 0)."""
    dx, dy = fovea_xy[0] - disc_xy[0], fovea_xy[1] - disc_xy[1]
    norm = math.hypot(dx, dy)
    if norm == 0 or dx == 0:
        raise ValueError("disc->fovea axis is degenerate (zero length or vertical)")
    ux, uy = dx / norm, dy / norm
    n = (uy, -ux) if -ux < 0 else (-uy, ux)
    return (ux, uy), n


def estimate_fovea_xy(disc_xy: Point, dd_px: float, fov_centre_xy: Point, inverted: bool = False) -> Point | None:
    """Fallback 1 (§3.3): F^ = D + 2.65 DD (unit horizontal toward the FOV centre, rotated 5.6 deg downward;
    upward when ``inverted``). None when the disc is exactly on the FOV's vertical centre line."""
    side = fov_centre_xy[0] - disc_xy[0]
    if side == 0:
        return None
    ang = math.radians(-TILT_MEAN_DEG)
    dist = DFD_PER_DD * dd_px
    return (disc_xy[0] + math.copysign(dist * math.cos(ang), side),
            disc_xy[1] + (-1.0 if inverted else 1.0) * dist * math.sin(ang))


def _finite_or_none(p_xy: Point | None) -> Point | None:
    """A point with a NaN/inf coordinate means "not found" (the locator's convention): None."""
    return None if p_xy is None or not all(math.isfinite(float(v)) for v in p_xy) else p_xy


def fundus_axes(fov_centre_xy: Point, fov_diameter_px: float, disc_xy: Point | None = None,
                fovea_xy: Point | None = None, dd_px: float | None = None, inverted: bool = False) -> FundusAxes:
    """Choose the axes for one image (§3.3).

    - Disc and fovea found and plausible -> 'disc_fovea'. A pair with DFD/DD outside [2.05, 3.25] or
      |tilt| > 15.5 deg is rejected (``fovea_rejected_implausible``, ``fovea_not_found``) and the fallback
      applies. A tilt in (+4.3, +15.5] is kept (the image may be inverted, nasal/temporal still hold) with
      ``possibly_inverted`` and ``geometry_plausible = False``.
    - Disc only -> 'disc_only_estimated_fovea' with the estimated fovea (``estimate_fovea_xy``).
    - Otherwise -> 'image_centred' about the FOV centre (a detected fovea without a disc is still kept for
      DD distances).
    ``dd_px``: the locator's disc diameter (px; ``DiscFovea.disc_diameter_px``, the working DD, reported as
    dd_source "segmented"); None or <= 0 -> 0.139 x ``fov_diameter_px`` (dd_source "fov_diameter").
    """
    if not fov_diameter_px > 0 or not math.isfinite(fov_diameter_px):
        raise ValueError(f"fov_diameter_px must be finite and > 0, got {fov_diameter_px}")
    disc_xy, fovea_xy = _finite_or_none(disc_xy), _finite_or_none(fovea_xy)  # NaN = not found (disc_fovea)
    segmented = dd_px is not None and math.isfinite(dd_px) and dd_px > 0
    dd = float(dd_px) if segmented else DD_PER_FOV_DIAMETER * float(fov_diameter_px)
    centre = (float(fov_centre_xy[0]), float(fov_centre_xy[1]))
    disc = None if disc_xy is None else (float(disc_xy[0]), float(disc_xy[1]))
    fovea = None if fovea_xy is None else (float(fovea_xy[0]), float(fovea_xy[1]))
    tilt = ratio = plausible = None
    rejected = possibly_inverted = False
    if disc is not None and fovea is not None:
        check = check_disc_fovea_pair(disc, fovea, dd, inverted)
        tilt, ratio, plausible = check.tilt_deg, check.dfd_per_dd, check.plausible
        if check.dfd_ok and abs(tilt) <= max(-TILT_RANGE_DEG[0], TILT_RANGE_DEG[1]):
            possibly_inverted = tilt > TILT_RANGE_DEG[1]
            u, n = axes_from_disc_fovea(disc, fovea)
            return FundusAxes(DISC_FOVEA, disc, fovea, centre, float(fov_diameter_px), dd,
                              "segmented" if segmented else "fov_diameter", u, n, tilt, ratio, plausible,
                              inverted, False, False, False, possibly_inverted)
        rejected = True
    common = dict(fov_centre_xy=centre, fov_diameter_px=float(fov_diameter_px), dd_px=dd,
                  dd_source="segmented" if segmented else "fov_diameter", tilt_deg=tilt, dfd_per_dd=ratio,
                  geometry_plausible=plausible, inverted=inverted, disc_not_found=disc is None,
                  fovea_rejected_implausible=rejected, possibly_inverted=False)
    if disc is not None:
        est = estimate_fovea_xy(disc, dd, centre, inverted)
        if est is not None:
            u, n = axes_from_disc_fovea(disc, est)
            return FundusAxes(quadrant_method=DISC_ONLY_ESTIMATED_FOVEA, disc_xy=disc, fovea_xy=est,
                              u_xy=u, n_xy=n, fovea_not_found=True, **common)
        return FundusAxes(quadrant_method=IMAGE_CENTRED, disc_xy=disc, fovea_xy=None, u_xy=None, n_xy=None,
                          fovea_not_found=True, **common)
    return FundusAxes(quadrant_method=IMAGE_CENTRED, disc_xy=None, fovea_xy=fovea, u_xy=None, n_xy=None,
                      fovea_not_found=fovea is None, **common)


def points_distance_to_fovea_dd(axes: FundusAxes, points_xy: np.ndarray) -> np.ndarray:
    """float [N, 2] points (px) -> float [N] distances to the fovea in DD (all NaN without a fovea)."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    if axes.fovea_xy is None:
        return np.full(len(pts), np.nan)
    return np.hypot(pts[:, 0] - axes.fovea_xy[0], pts[:, 1] - axes.fovea_xy[1]) / axes.dd_px
