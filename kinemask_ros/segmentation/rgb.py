"""RGB-only segmenter that does not depend on the simulator's palette (numpy + scipy.ndimage).

Steps of :meth:`RgbSegmenter.segment` (image ``(H, W, 3)`` uint8, any input
:func:`~kinemask_ros.segmentation.core.prepare_image` accepts):

1. **Colour space**: OKLab (:mod:`.colors`), lightness weighted by ``lightness_weight`` in every
   distance (shading and shadows change lightness more than hue).
2. **Table model** (:func:`fit_table_model`): up to ``table_modes`` colour modes, each a robust
   mean + covariance (iteratively trimmed) grown from the densest OKLab histogram bin. A mode is
   table, not object, when it holds at least ``min_mode_fraction`` of the pixels *and* is spread
   over the image (pixel-coordinate std >= ``min_mode_spread`` of the image side in both axes):
   a textured or two-tone table is several spread modes, an object is compact. The covariance,
   floored at ``table_sigma_floor`` per axis, is the texture/noise tolerance.
3. **Foreground**: Mahalanobis distance to the nearest table mode > ``foreground_sigma`` and
   weighted OKLab distance > ``min_color_distance``; the distance is box-smoothed over
   ``smoothing_px`` (auto: 1 below a 161 px image side, 3 up to 479 px, 5 from 480 px) against sensor noise.
4. **Ignore colours** (the pusher, by default the simulator's dark grey ``PUSHER_COLOR``, matched
   as a shaded copy like the classical backend): never objects.
5. **Instances**: connected components over foreground neighbours whose weighted OKLab distance
   is below ``color_threshold``; adjacent regions of close mean colour merge; then
   :func:`split_touching` splits a region at narrow necks of its distance transform (touching
   objects of the same colour) and regions below the minimum area are dropped.
6. Labels: :func:`~kinemask_ros.segmentation.colors.color_name` of each object's mean RGB.
   Ids ``1..K`` in raster order of each object's first pixel.

Limits: an object of the table's colour is invisible to it (use the RGB-D backend); two
same-colour objects touching along a full side (no neck in their union) stay one instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinemask_ros.segmentation.classical import PUSHER_COLOR, _neighbour_pairs, connected_components
from kinemask_ros.segmentation.colors import color_name
from kinemask_ros.segmentation.core import (
    DEFAULT_MAX_PIXELS,
    MAX_OBJECT_ID,
    Segmentation,
    check_float,
    check_positive_int,
    check_rgb,
    prepare_image,
)

try:
    from scipy import ndimage as _ndi
except ImportError:  # pragma: no cover - scipy ships with the project's requirements
    _ndi = None


def require_scipy(who: str):
    """``scipy.ndimage`` or an ``ImportError`` naming the fix."""
    if _ndi is None:  # pragma: no cover
        raise ImportError(f"{who} needs scipy (scipy.ndimage): pip install scipy (it is normally pulled in by requirements.txt)")
    return _ndi


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class RgbConfig:
    """Parameters of :class:`RgbSegmenter` (colour distances are in OKLab units, L in [0, 1]).

    Attributes:
        table_modes: most colour modes of the table model (a two-tone or textured table).
        min_mode_fraction: a table mode holds at least this fraction of the pixels.
        min_mode_spread: ... and its pixels' coordinate std is at least this fraction of the image
            width and height (0.29 for a mode spread uniformly; a compact object is far below).
        table_sigma_floor: lower bound on a mode's per-axis std (sensor noise on a flat table).
        foreground_sigma: Mahalanobis distance to the nearest table mode above which a pixel is
            foreground.
        min_color_distance: and its weighted OKLab distance to that mode's mean must exceed this.
        lightness_weight: weight of L against a, b in every distance (shading tolerance).
        smoothing_px: box filter size for the foreground distance (odd; 1 = off; 0 = automatic:
            ``2 * round(min(H, W) / 320) + 1``).
        color_threshold: weighted OKLab distance below which neighbouring pixels / adjacent regions
            belong together.
        split_touching: split regions at narrow necks (touching objects of one colour).
        neck_ratio: a neck narrower than this fraction of the smaller part's inscribed radius
            separates two objects (distance-transform criterion, scale-free).
        min_area: smallest object kept [pixels] (also ``min_area_fraction * H * W``).
        min_area_fraction: smallest object kept as a fraction of the image.
        ignore_colors: colours that are never objects (default: the simulator's pusher); ``()`` for none.
        ignore_threshold: RGB distance to a shaded ignore colour ``s * c`` that counts as a match.
        ignore_brightness_range: the shading factors ``s`` allowed.
        max_objects: keep at most this many objects (the largest).
        max_pixels: larger input images are rejected.
    """

    table_modes: int = 3
    min_mode_fraction: float = 0.10
    min_mode_spread: float = 0.15
    table_sigma_floor: float = 0.012
    foreground_sigma: float = 4.5
    min_color_distance: float = 0.05
    lightness_weight: float = 0.5
    smoothing_px: int = 0
    color_threshold: float = 0.07
    split_touching: bool = True
    neck_ratio: float = 0.75
    min_area: int = 3
    min_area_fraction: float = 3e-4
    ignore_colors: tuple[tuple[float, float, float], ...] = (PUSHER_COLOR,)
    ignore_threshold: float = 0.08
    ignore_brightness_range: tuple[float, float] = (0.4, 1.6)
    max_objects: int = MAX_OBJECT_ID
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        o = "RgbConfig"
        check_positive_int(o, "table_modes", self.table_modes)
        check_float(o, "min_mode_fraction", self.min_mode_fraction, 0.0, 1.0, lo_open=True)
        check_float(o, "min_mode_spread", self.min_mode_spread, 0.0, 0.5)
        check_float(o, "table_sigma_floor", self.table_sigma_floor, 0.0, 1.0, lo_open=True)
        check_float(o, "foreground_sigma", self.foreground_sigma, 0.0, lo_open=True)
        check_float(o, "min_color_distance", self.min_color_distance, 0.0, 2.0)
        check_float(o, "lightness_weight", self.lightness_weight, 0.0, 10.0)
        check_positive_int(o, "smoothing_px", self.smoothing_px, minimum=0)
        if self.smoothing_px and self.smoothing_px % 2 == 0:
            raise ValueError(f"{o}.smoothing_px must be odd (or 0 = automatic), got {self.smoothing_px}")
        check_float(o, "color_threshold", self.color_threshold, 0.0, 2.0, lo_open=True)
        check_float(o, "neck_ratio", self.neck_ratio, 0.0, 1.0)
        check_positive_int(o, "min_area", self.min_area)
        check_float(o, "min_area_fraction", self.min_area_fraction, 0.0, 0.5)
        object.__setattr__(self, "ignore_colors", _check_colors(o, self.ignore_colors))
        check_float(o, "ignore_threshold", self.ignore_threshold, 0.0, 3**0.5)
        _check_brightness_range(o, self.ignore_brightness_range)
        check_positive_int(o, "max_objects", self.max_objects)
        if self.max_objects > MAX_OBJECT_ID:
            raise ValueError(f"{o}.max_objects must be <= {MAX_OBJECT_ID}, got {self.max_objects}")
        check_positive_int(o, "max_pixels", self.max_pixels)

    def smoothing_for(self, height: int, width: int) -> int:
        """Box-filter size used for an ``height x width`` image."""
        return self.smoothing_px or 2 * int(round(min(height, width) / 320.0)) + 1

    def min_area_for(self, height: int, width: int) -> int:
        """Smallest object [px] kept on an ``height x width`` image."""
        return max(self.min_area, int(math.ceil(self.min_area_fraction * height * width)))


def _check_colors(owner: str, colors) -> tuple[tuple[float, float, float], ...]:
    try:
        return tuple(check_rgb(owner, "ignore_colors", c) for c in colors)
    except TypeError:
        raise ValueError(f"{owner}.ignore_colors must be a sequence of RGB triples, got {colors!r}") from None


def _check_brightness_range(owner: str, value) -> None:
    r = tuple(value)
    if len(r) != 2 or not all(isinstance(x, (int, float)) for x in r) or not (0.0 <= r[0] < r[1]):
        raise ValueError(f"{owner}.ignore_brightness_range must be (low, high) with 0 <= low < high, got {value!r}")


# ----------------------------------------------------------------------------- colour helpers
_LIN_LUT = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92, ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4)


def oklab_image(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 sRGB -> ``(H, W, 3)`` float32 OKLab (L in [0, 1])."""
    from kinemask_ros.segmentation.colors import _M1, _M2

    lin = _LIN_LUT[image]
    lms = np.cbrt(lin @ _M1.T)
    return (lms @ _M2.T).astype(np.float32)


def weighted(lab: np.ndarray, lightness_weight: float) -> np.ndarray:
    """OKLab with L scaled by ``lightness_weight`` (Euclidean distances in it are the weighted ones)."""
    out = np.array(lab, dtype=np.float32, copy=True)
    out[..., 0] *= lightness_weight
    return out


def ignore_mask(rgb01: np.ndarray, colors, threshold: float, brightness_range: tuple[float, float]) -> np.ndarray:
    """Pixels ``(..., 3)`` (RGB in [0, 1]) within ``threshold`` of a shaded ``s * c`` of an ignore colour."""
    out = np.zeros(rgb01.shape[:-1], bool)
    lo, hi = brightness_range
    for c in colors:
        c = np.asarray(c, np.float32)
        if float(c @ c) <= 0:
            continue
        s = np.clip((rgb01 @ c) / float(c @ c), lo, hi)
        out |= np.linalg.norm(rgb01 - s[..., None] * c, axis=-1) < threshold
    return out


# ----------------------------------------------------------------------------- table model
@dataclass(frozen=True)
class TableMode:
    """One colour mode of the table: mean ``(3,)`` and inverse covariance ``(3, 3)`` in weighted OKLab."""

    mean: np.ndarray
    inv_cov: np.ndarray
    fraction: float
    spread: tuple[float, float]


def _robust_mode(x: np.ndarray, start: np.ndarray, floor: float, trim: float = 3.06, iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed mean/covariance of samples ``x (N, 3)`` grown from ``start``; returns ``(mean, inv_cov)``.

    Starts from a ball of radius ``trim * 2 * floor``; every iteration re-estimates the mean and
    covariance from the samples within Mahalanobis distance ``trim`` (97.5 % of a 3-D Gaussian),
    corrected for the truncation and floored at ``floor`` per axis, so the mode grows over the
    table's texture but not over the objects.
    """
    mean = start.astype(np.float64)
    cov = np.eye(3) * (2.0 * floor) ** 2
    for _ in range(iterations):
        d = x - mean
        inl = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) < trim**2
        if inl.sum() < 4:
            break
        new_mean = x[inl].mean(axis=0)
        new_cov = np.cov(x[inl].T) / 0.87 + np.eye(3) * floor**2  # 0.87: variance kept by a 3.06-sigma trim
        done = np.allclose(new_mean, mean, atol=1e-4) and np.allclose(new_cov, cov, rtol=0.02, atol=1e-6)
        mean, cov = new_mean, new_cov
        if done:
            break
    return mean, np.linalg.inv(cov)


def fit_table_model(wlab: np.ndarray, config: RgbConfig, max_samples: int = 20000) -> list[TableMode]:
    """Table colour modes of a weighted-OKLab image ``(H, W, 3)`` (see the module docstring, step 2).

    Always returns at least one mode (the densest colour, even if it fails the spread test: then
    the image is mostly one object and the result is a best effort).
    """
    h, w = wlab.shape[:2]
    step = max(1, int(math.ceil(math.sqrt(h * w / max_samples))))
    sub = wlab[::step, ::step]
    rows, cols = np.mgrid[0:sub.shape[0], 0:sub.shape[1]]
    x = sub.reshape(-1, 3).astype(np.float64)
    pos = np.stack([(cols.reshape(-1) + 0.5) / sub.shape[1], (rows.reshape(-1) + 0.5) / sub.shape[0]], axis=1)
    free = np.ones(len(x), bool)
    modes: list[TableMode] = []
    bins = np.array([0.04, 0.02, 0.02])  # weighted L, a, b bin sizes
    for _ in range(config.table_modes):
        if free.sum() < 4:
            break
        q = np.floor(x[free] / bins).astype(np.int64)
        q -= q.min(axis=0)
        dims = q.max(axis=0) + 1
        key = (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
        best = np.bincount(key).argmax()
        start = np.median(x[free][key == best], axis=0)
        mean, inv = _robust_mode(x, start, config.table_sigma_floor)
        d = x - mean
        inl = free & (np.einsum("ni,ij,nj->n", d, inv, d) < config.foreground_sigma**2)
        frac = float(inl.sum()) / len(x)
        spread = (float(pos[inl, 0].std()), float(pos[inl, 1].std())) if inl.any() else (0.0, 0.0)
        is_table = frac >= config.min_mode_fraction and min(spread) >= config.min_mode_spread
        if not is_table:
            if not modes:  # best effort: the densest colour even if it is not spread out
                modes.append(TableMode(mean.astype(np.float32), inv.astype(np.float32), frac, spread))
            break
        modes.append(TableMode(mean.astype(np.float32), inv.astype(np.float32), frac, spread))
        free &= ~inl
    return modes


def table_distance(wlab: np.ndarray, modes: list[TableMode]) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: smallest Mahalanobis distance to a table mode and the Euclidean distance to that mode's mean."""
    flat = wlab.reshape(-1, 3)
    best_m = np.full(flat.shape[0], np.inf, np.float32)
    best_e = np.zeros(flat.shape[0], np.float32)
    for m in modes:
        d = flat - m.mean
        m2 = np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", d, m.inv_cov, d), 0.0))
        better = m2 < best_m
        best_m = np.where(better, m2, best_m)
        best_e = np.where(better, np.linalg.norm(d, axis=1), best_e)
    return best_m.reshape(wlab.shape[:2]), best_e.reshape(wlab.shape[:2])


# ----------------------------------------------------------------------------- regions
def label_regions(valid: np.ndarray, features: np.ndarray | None, threshold: float, cut: np.ndarray | None = None,
                  heights: np.ndarray | None = None, height_step: float = np.inf, connectivity: int = 8) -> np.ndarray:
    """Connected regions of ``valid`` ``(H, W)`` pixels, ``1..N`` in raster order of the first pixel.

    Neighbours join when both are valid, their ``features`` ``(H, W, F)`` differ by less than
    ``threshold`` (Euclidean; None = no colour test), and their ``heights`` ``(H, W)`` differ by
    less than ``height_step`` (None = no height test).
    """
    h, w = valid.shape
    v = valid.reshape(-1)
    f = None if features is None else features.reshape(h * w, -1)
    z = None if heights is None else heights.reshape(-1)
    src, dst = [], []
    for a, b in _neighbour_pairs(h, w, connectivity):
        keep = v[a] & v[b]
        a, b = a[keep], b[keep]
        ok = np.ones(a.size, bool)
        if f is not None:
            ok &= np.linalg.norm(f[a] - f[b], axis=1) < threshold
        if z is not None:
            ok &= np.abs(z[a] - z[b]) < height_step
        src.append(a[ok])
        dst.append(b[ok])
    return _rank_components(h, w, v, np.concatenate(src), np.concatenate(dst))


def _rank_components(h: int, w: int, v: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    comp = connected_components(h * w, src, dst)
    out = np.zeros(h * w, np.int64)
    idx = np.nonzero(v)[0]
    if idx.size:
        _, first, inv = np.unique(comp[idx], return_index=True, return_inverse=True)
        rank = np.empty(first.size, np.int64)
        rank[np.argsort(first)] = np.arange(1, first.size + 1)
        out[idx] = rank[inv.reshape(-1)]
    return out.reshape(h, w)


def region_means(regions: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N+1, F)`` mean of ``values (H, W, F)`` per region id and ``(N+1,)`` areas (row 0 = background)."""
    n = int(regions.max())
    flat = regions.reshape(-1)
    area = np.bincount(flat, minlength=n + 1)
    vals = values.reshape(flat.size, -1).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=vals[:, k], minlength=n + 1) for k in range(vals.shape[1])], axis=1)
    return sums / np.maximum(area, 1)[:, None], area


def merge_similar(regions: np.ndarray, features: np.ndarray, threshold: float, heights: np.ndarray | None = None,
                  height_step: float = np.inf, connectivity: int = 8) -> np.ndarray:
    """Merge adjacent regions whose mean ``features`` differ by less than ``threshold`` and (with
    ``heights``) whose shared boundary is mostly (> half its pixel pairs) free of height steps."""
    n = int(regions.max())
    if n < 2:
        return regions
    mean, _ = region_means(regions, features)
    flat = regions.reshape(-1)
    z = None if heights is None else heights.reshape(-1)
    src, dst, smooth = [], [], []
    for a, b in _neighbour_pairs(*regions.shape, connectivity):
        la, lb = flat[a], flat[b]
        sel = (la > 0) & (lb > 0) & (la != lb)
        src.append(np.minimum(la[sel], lb[sel]))
        dst.append(np.maximum(la[sel], lb[sel]))
        smooth.append(np.ones(int(sel.sum()), bool) if z is None else np.abs(z[a[sel]] - z[b[sel]]) < height_step)
    src, dst, smooth = np.concatenate(src), np.concatenate(dst), np.concatenate(smooth)
    if src.size == 0:
        return regions
    key = src * (n + 1) + dst
    uk, inv = np.unique(key, return_inverse=True)
    frac_smooth = np.bincount(inv, weights=smooth.astype(np.float64)) / np.bincount(inv)
    ps, pd = uk // (n + 1), uk % (n + 1)
    close = (np.linalg.norm(mean[ps] - mean[pd], axis=1) < threshold) & (frac_smooth > 0.5)
    if not close.any():
        return regions
    comp = connected_components(n + 1, ps[close], pd[close])
    _, first, cinv = np.unique(comp, return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first)] = np.arange(first.size)  # node 0 (background) stays 0
    return rank[cinv.reshape(-1)][regions]


def _flood(markers: np.ndarray, dt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Marker-controlled watershed of ``-dt`` inside ``mask`` (level by level, 8-neighbour growth)."""
    lab = markers.copy()
    levels = np.unique(np.floor(dt[mask] * 2.0) / 2.0)[::-1]
    for lev in list(levels) + [-1.0]:
        allowed = mask & (dt >= lev)
        while True:
            p = np.pad(lab, 1)
            nb = np.zeros_like(lab)
            h, w = lab.shape
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if dy or dx:
                        np.maximum(nb, p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w], out=nb)
            new = (lab == 0) & allowed & (nb > 0)
            if not new.any():
                break
            lab[new] = nb[new]
    return lab


def _find(root: list[int], i: int) -> int:
    while root[i] != i:
        root[i] = root[root[i]]
        i = root[i]
    return i


def split_region(mask: np.ndarray, neck_ratio: float, min_area: int) -> np.ndarray:
    """Split one region ``mask (h, w)`` bool at narrow necks; returns ``(h, w)`` int labels ``0..P``.

    Markers are the plateaus of local maxima of the Euclidean distance transform (the inscribed
    radius); a marker-controlled watershed makes one piece per marker; adjacent pieces merge
    (largest neck first) unless the neck between them, ``max`` over their boundary of the smaller
    distance value, is below ``neck_ratio`` x the smaller piece's peak radius. Pieces below
    ``min_area`` pixels join the neighbour they share the widest neck with.
    """
    ndi = require_scipy("split_region")
    dt = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    peaks = mask & (dt >= ndi.maximum_filter(dt, size=3) - 1e-6) & (dt >= 1.0)
    markers, nm = ndi.label(peaks, structure=np.ones((3, 3), int))
    if nm <= 1:
        return mask.astype(np.int64)
    lab = _flood(markers.astype(np.int64), dt, mask)
    peak = np.zeros(nm + 1)
    np.maximum.at(peak, lab[mask], dt[mask])
    area = np.bincount(lab[mask], minlength=nm + 1).astype(np.int64)
    neck = np.zeros((nm + 1, nm + 1))
    h, w = mask.shape
    for (a0, a1), (b0, b1) in (((slice(None), slice(0, w - 1)), (slice(None), slice(1, w))),
                               ((slice(0, h - 1), slice(None)), (slice(1, h), slice(None)))):
        la, lb = lab[a0, a1], lab[b0, b1]
        sel = (la > 0) & (lb > 0) & (la != lb)
        v = np.minimum(dt[a0, a1][sel], dt[b0, b1][sel])
        np.maximum.at(neck, (la[sel], lb[sel]), v)
        np.maximum.at(neck, (lb[sel], la[sel]), v)
    root = list(range(nm + 1))
    gpeak, garea = peak.copy(), area.copy()
    ii, jj = np.nonzero(np.triu(neck, 1))
    order = np.argsort(-neck[ii, jj], kind="stable")
    for k in order:
        a, b = _find(root, int(ii[k])), _find(root, int(jj[k]))
        if a != b and neck[ii[k], jj[k]] >= neck_ratio * min(gpeak[a], gpeak[b]):
            root[b] = a
            gpeak[a] = max(gpeak[a], gpeak[b])
            garea[a] += garea[b]
    # small pieces join their widest-neck neighbour
    for _ in range(nm):
        groups = {_find(root, i) for i in range(1, nm + 1)}
        small = [g for g in groups if garea[g] < min_area]
        if not small or len(groups) == 1:
            break
        g = min(small, key=lambda x: garea[x])
        members = [i for i in range(1, nm + 1) if _find(root, i) == g]
        best, best_v = None, -1.0
        for i in members:
            for j in np.nonzero(neck[i])[0]:
                r = _find(root, int(j))
                if r != g and neck[i, j] > best_v:
                    best, best_v = r, neck[i, j]
        if best is None:
            break
        root[g] = best
        garea[best] += garea[g]
        gpeak[best] = max(gpeak[best], gpeak[g])
    lut = np.array([_find(root, i) for i in range(nm + 1)])
    out = lut[lab]
    out[~mask] = 0
    _, dense = np.unique(out, return_inverse=True)
    return dense.reshape(out.shape)


def split_touching(regions: np.ndarray, neck_ratio: float, min_area: int) -> np.ndarray:
    """:func:`split_region` on every region of ``regions (H, W)`` int (0 = background); new ids ``1..N``
    in raster order of each piece's first pixel."""
    ndi = require_scipy("split_touching")
    out = np.zeros(regions.shape, np.int64)
    nxt = 1
    for r, sl in enumerate(ndi.find_objects(regions.astype(np.int64)), start=1):
        if sl is None:
            continue
        m = regions[sl] == r
        parts = split_region(m, neck_ratio, min_area) if m.sum() >= 2 * min_area else m.astype(np.int64)
        k = int(parts.max())
        sub = out[sl]
        sub[m] = parts[m] + nxt - 1
        nxt += k
    return relabel_raster(out)


def relabel_raster(regions: np.ndarray) -> np.ndarray:
    """Renumber the non-zero ids of ``regions`` to ``1..N`` in raster order of their first pixel."""
    flat = regions.reshape(-1)
    idx = np.flatnonzero(flat)
    n = int(flat[idx].max()) if idx.size else 0
    lut = np.zeros(n + 1, np.int64)
    if idx.size:
        first = np.full(n + 1, flat.size, np.int64)
        np.minimum.at(first, flat[idx], idx)
        present = np.nonzero(first < flat.size)[0]
        lut[present[np.argsort(first[present])]] = np.arange(1, present.size + 1)
    return lut[regions]


def fast_chromaticity(image: np.ndarray) -> np.ndarray:
    """``rgb / (r + g + b)`` of a uint8 ``(H, W, 3)`` image as float32 (black -> 1/3 each), as
    :func:`~kinemask_ros.segmentation.classical.chromaticity`."""
    x = image.astype(np.float32)
    s = x.sum(axis=-1, keepdims=True)
    out = x / np.maximum(s, np.float32(1e-6))
    out[s[..., 0] <= 0] = np.float32(1.0 / 3.0)
    return out


def finish(regions: np.ndarray, image: np.ndarray | None, min_area: int, max_objects: int, scores: np.ndarray | None = None) -> Segmentation:
    """Regions ``(H, W)`` int -> :class:`Segmentation`: drop regions below ``min_area``, keep the
    ``max_objects`` largest, ids ``1..K`` in raster order; labels from :func:`color_name` of each
    object's mean colour when ``image`` ``(H, W, 3)`` uint8 is given. ``scores`` ``(N+1,)`` per region id."""
    n = int(regions.max())
    if n == 0:
        return Segmentation.empty(*regions.shape)
    area = np.bincount(regions.reshape(-1), minlength=n + 1)
    keep = np.nonzero(area[1:] >= min_area)[0] + 1
    if keep.size > max_objects:
        keep = keep[np.argsort(-area[keep], kind="stable")[:max_objects]]
    if keep.size == 0:
        return Segmentation.empty(*regions.shape)
    lut = np.zeros(n + 1, np.int64)
    lut[keep] = keep
    kept = relabel_raster(lut[regions])
    k = int(kept.max())
    sc = None
    if scores is not None:
        m = np.zeros(k + 1)
        m[kept.reshape(-1)] = np.asarray(scores)[regions.reshape(-1)]
        sc = np.clip(m[1:], 0.0, 1.0)
    seg = Segmentation.from_instance_ids(kept.astype(np.uint8), image=image, scores=sc)
    if image is None:
        return seg
    seg.labels = tuple(color_name(c) for c in seg.colors)
    return seg


# ----------------------------------------------------------------------------- segmenter
class RgbSegmenter:
    """Palette-free RGB segmenter: table colour model + colour components + neck splitting."""

    requires_depth = False

    def __init__(self, config: RgbConfig | None = None) -> None:
        self.config = config or RgbConfig()
        require_scipy("RgbSegmenter")

    def __repr__(self) -> str:
        return f"RgbSegmenter({self.config!r})"

    def foreground(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[TableMode]]:
        """For a prepared ``(H, W, 3)`` uint8 image: object pixels, ignored pixels, weighted OKLab
        ``(H, W, 3)`` and the table modes."""
        cfg = self.config
        ndi = require_scipy("RgbSegmenter")
        wlab = weighted(oklab_image(image), cfg.lightness_weight)
        modes = fit_table_model(wlab, cfg)
        dm, de = table_distance(wlab, modes)
        k = cfg.smoothing_for(*image.shape[:2])
        if k > 1:
            dm = ndi.uniform_filter(dm, size=k, mode="nearest")
            de = ndi.uniform_filter(de, size=k, mode="nearest")
        fg = (dm > cfg.foreground_sigma) & (de > cfg.min_color_distance)
        ignored = np.zeros_like(fg)
        if cfg.ignore_colors:
            ignored = fg & ignore_mask(image.astype(np.float32) / 255.0, cfg.ignore_colors, cfg.ignore_threshold, cfg.ignore_brightness_range)
        return fg & ~ignored, ignored, wlab, modes

    def segment(self, image) -> Segmentation:
        """Instance segmentation of one image (any input :func:`prepare_image` accepts)."""
        cfg = self.config
        img = prepare_image(image, cfg.max_pixels)
        h, w = img.shape[:2]
        obj, _, _, _ = self.foreground(img)
        chroma = fast_chromaticity(img)
        regions = label_regions(obj, chroma, cfg.color_threshold)
        regions = merge_similar(regions, chroma, cfg.color_threshold)
        min_area = cfg.min_area_for(h, w)
        if cfg.ignore_colors and regions.max() > 0:  # whole regions of an ignore colour (noisy pusher pixels)
            mean_rgb, _ = region_means(regions, img.astype(np.float32) / 255.0)
            drop = ignore_mask(mean_rgb.astype(np.float32), cfg.ignore_colors, cfg.ignore_threshold, cfg.ignore_brightness_range)
            drop[0] = False
            regions = np.where(drop[regions], 0, regions)
        if cfg.split_touching:
            regions = split_touching(regions, cfg.neck_ratio, min_area)
        return finish(regions, img, min_area, cfg.max_objects, scores=_homogeneity(regions, chroma, cfg.color_threshold))


def _homogeneity(regions: np.ndarray, feats: np.ndarray, threshold: float) -> np.ndarray:
    """``(N+1,)`` fraction of each region's pixels within ``threshold`` of its mean feature."""
    if regions.max() == 0:
        return np.zeros(1)
    mean, area = region_means(regions, feats)
    flat = regions.reshape(-1)
    d = np.linalg.norm(feats.reshape(flat.size, -1) - mean[flat], axis=1)
    return np.bincount(flat, weights=(d < threshold).astype(np.float64), minlength=mean.shape[0]) / np.maximum(area, 1)
