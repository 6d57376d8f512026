"""Embedded default segmenter: table-colour background model + colour-aware connected components.

No weights, no download, pure numpy (scipy's sparse connected components when available, an
equivalent numpy union-find otherwise). Steps of :meth:`ClassicalSegmenter.segment`:

1. background colour: ``ClassicalConfig.background_color`` or the dominant colour of the image
   (mode of a 16-level-per-channel colour histogram);
2. foreground = pixels whose RGB distance to it exceeds ``background_threshold``;
3. pixels matching an ``ignore_colors`` entry (by default the simulator's dark-grey pusher) are
   dropped from the foreground;
4. connected components over neighbouring foreground pixels whose *chromaticity*
   ``rgb / (r + g + b)`` differs by less than ``color_threshold``: the shaded sides of an object
   join its lit top (same chromaticity, lower brightness), while two touching objects of
   different colours split;
5. parts of one colour separated only by an ignored region (an object cut in two by the pusher)
   are merged (``merge_occluded``); components smaller than ``min_area`` are dropped;
6. ids ``1..K`` in raster order of each object's first pixel; labels are the nearest
   ``label_colors`` name by chromaticity (None when farther than ``label_max_distance``).

Limits: two touching objects of the same colour become one instance; a textured or shadowed
table needs a larger ``background_threshold`` or an explicit ``background_color``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinemask_ros.palette import PALETTE, PUSHER_RGB
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
    from scipy.sparse import coo_matrix as _coo_matrix
    from scipy.sparse.csgraph import connected_components as _scipy_cc
except ImportError:  # pragma: no cover - exercised by forcing USE_SCIPY = False in the tests
    _scipy_cc = None

#: Set to False to force the numpy union-find (tests compare both paths).
USE_SCIPY = _scipy_cc is not None

#: Colour names for labels: the simulator's palette (``kinemask_ros.palette``).
DEFAULT_COLOR_NAMES: dict[str, tuple[float, float, float]] = dict(PALETTE)
#: The simulator's pusher colour.
PUSHER_COLOR = PUSHER_RGB


@dataclass(frozen=True)
class ClassicalConfig:
    """Parameters of :class:`ClassicalSegmenter` (colours are RGB in [0, 1]).

    Attributes:
        background_color: table colour; None = estimate it as the image's dominant colour.
        background_threshold: RGB distance (0..sqrt(3)) above which a pixel is foreground.
        color_threshold: chromaticity distance below which neighbouring pixels belong together.
        min_area: smallest object kept [pixels].
        connectivity: 4 or 8 neighbours.
        ignore_colors: colours that are never objects (default: the pusher).
        ignore_threshold: RGB distance to a shaded ignore colour ``s * c`` that counts as a match.
        ignore_brightness_range: the shading factors ``s`` allowed (the pusher's sides are darker).
        merge_occluded: merge same-colour parts separated only by an ignored region.
        label_colors: name -> colour used for labels; empty = no labels.
        label_max_distance: chromaticity distance beyond which an object stays unlabelled.
        max_objects: keep at most this many objects (the largest).
        max_pixels: larger input images are rejected.
    """

    background_color: tuple[float, float, float] | None = None
    background_threshold: float = 0.16
    color_threshold: float = 0.09
    min_area: int = 3
    connectivity: int = 8
    ignore_colors: tuple[tuple[float, float, float], ...] = (PUSHER_COLOR,)
    ignore_threshold: float = 0.08
    ignore_brightness_range: tuple[float, float] = (0.4, 1.6)
    merge_occluded: bool = True
    label_colors: dict[str, tuple[float, float, float]] = field(default_factory=lambda: dict(DEFAULT_COLOR_NAMES))
    label_max_distance: float = 0.08
    max_objects: int = MAX_OBJECT_ID
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        o = "ClassicalConfig"
        if self.background_color is not None:
            object.__setattr__(self, "background_color", check_rgb(o, "background_color", self.background_color))
        check_float(o, "background_threshold", self.background_threshold, 0.0, 3**0.5, lo_open=True)
        check_float(o, "color_threshold", self.color_threshold, 0.0, 2.0, lo_open=True)
        check_positive_int(o, "min_area", self.min_area)
        if self.connectivity not in (4, 8) or isinstance(self.connectivity, bool):
            raise ValueError(f"{o}.connectivity must be 4 or 8, got {self.connectivity!r}")
        try:
            colors = tuple(check_rgb(o, "ignore_colors", c) for c in self.ignore_colors)
        except TypeError:
            raise ValueError(f"{o}.ignore_colors must be a sequence of RGB triples, got {self.ignore_colors!r}") from None
        object.__setattr__(self, "ignore_colors", colors)
        check_float(o, "ignore_threshold", self.ignore_threshold, 0.0, 3**0.5)
        r = tuple(self.ignore_brightness_range)
        if len(r) != 2 or not all(isinstance(x, (int, float)) for x in r) or not (0.0 <= r[0] < r[1]):
            raise ValueError(f"{o}.ignore_brightness_range must be (low, high) with 0 <= low < high, got {self.ignore_brightness_range!r}")
        if not isinstance(self.label_colors, dict):
            raise ValueError(f"{o}.label_colors must be a dict name -> RGB, got {type(self.label_colors).__name__}")
        for name, c in self.label_colors.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"{o}.label_colors keys must be non-empty strings, got {name!r}")
            check_rgb(o, f"label_colors[{name!r}]", c)
        check_float(o, "label_max_distance", self.label_max_distance, 0.0, 2.0)
        check_positive_int(o, "max_objects", self.max_objects)
        if self.max_objects > MAX_OBJECT_ID:
            raise ValueError(f"{o}.max_objects must be <= {MAX_OBJECT_ID}, got {self.max_objects}")
        check_positive_int(o, "max_pixels", self.max_pixels)


# ----------------------------------------------------------------------------- helpers
def chromaticity(rgb: np.ndarray) -> np.ndarray:
    """``rgb / (r + g + b)`` along the last axis (float); black maps to (1/3, 1/3, 1/3)."""
    x = np.asarray(rgb, dtype=np.float32)
    s = x.sum(axis=-1, keepdims=True)
    return np.where(s > 1e-6, x / np.maximum(s, 1e-6), np.float32(1.0 / 3.0))


def dominant_color(image: np.ndarray) -> np.ndarray:
    """Most frequent colour of a ``(H, W, 3)`` uint8 image (16 levels per channel), as RGB in [0, 1].

    Returns the median colour of the pixels in the most populated histogram bin.
    """
    q = (image >> 4).astype(np.int64)
    key = (q[..., 0] * 16 + q[..., 1]) * 16 + q[..., 2]
    best = int(np.argmax(np.bincount(key.reshape(-1), minlength=4096)))
    return np.median(image[key == best], axis=0).astype(np.float32) / 255.0


def _numpy_components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected-component labels of an undirected graph (parallel union-find with pointer jumping)."""
    parent = np.arange(n, dtype=np.int64)
    while src.size:
        ps, pd = parent[src], parent[dst]
        diff = ps != pd
        if not diff.any():
            break
        hi, lo = np.maximum(ps[diff], pd[diff]), np.minimum(ps[diff], pd[diff])
        np.minimum.at(parent, hi, lo)  # hook the larger root under the smaller one
        while True:  # compress every path to its root
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
    return parent


def connected_components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Component label per node (labels are arbitrary ints; equal label = same component)."""
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    if USE_SCIPY and _scipy_cc is not None:
        g = _coo_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(n, n))
        return _scipy_cc(g, directed=False)[1].astype(np.int64)
    return _numpy_components(n, src, dst)


def _neighbour_pairs(h: int, w: int, connectivity: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index arrays ``(a, b)`` into the flattened image for each forward neighbour offset."""
    idx = np.arange(h * w).reshape(h, w)
    pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])]
    if connectivity == 8:
        pairs += [(idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1])]
    return [(a.reshape(-1), b.reshape(-1)) for a, b in pairs]


def label_regions(valid: np.ndarray, chroma: np.ndarray | None, threshold: float, connectivity: int = 8) -> np.ndarray:
    """Label connected regions of ``valid`` pixels; with ``chroma`` (H, W, 3), neighbours join only
    when their chromaticity distance is below ``threshold``.

    Returns ``(H, W)`` int64: 0 outside ``valid``, regions numbered ``1..N`` in raster order.
    """
    h, w = valid.shape
    v = valid.reshape(-1)
    c = None if chroma is None else chroma.reshape(-1, 3)
    src, dst = [], []
    for a, b in _neighbour_pairs(h, w, connectivity):
        keep = v[a] & v[b]
        if c is not None:
            keep &= np.linalg.norm(c[a] - c[b], axis=1) < threshold
        src.append(a[keep])
        dst.append(b[keep])
    comp = connected_components(h * w, np.concatenate(src), np.concatenate(dst))
    out = np.zeros(h * w, np.int64)
    fg_idx = np.nonzero(v)[0]  # raster order
    if fg_idx.size:
        _, first, inv = np.unique(comp[fg_idx], return_index=True, return_inverse=True)
        rank = np.empty(first.size, np.int64)
        rank[np.argsort(first)] = np.arange(1, first.size + 1)  # 1..N by first pixel
        out[fg_idx] = rank[inv.reshape(-1)]
    return out.reshape(h, w)


# ----------------------------------------------------------------------------- segmenter
class ClassicalSegmenter:
    """Background subtraction + colour-aware connected components (see module docstring)."""

    def __init__(self, config: ClassicalConfig | None = None) -> None:
        self.config = config or ClassicalConfig()
        cfg = self.config
        self._ignore = [np.asarray(c, np.float32) for c in cfg.ignore_colors if max(c) > 0]
        self._label_names = list(cfg.label_colors)
        self._label_chroma = chromaticity(np.array([cfg.label_colors[k] for k in self._label_names], np.float32).reshape(-1, 3))

    def __repr__(self) -> str:
        return f"ClassicalSegmenter({self.config!r})"

    def background_color(self, image: np.ndarray) -> np.ndarray:
        """Table colour used for ``image`` ((H, W, 3) uint8), RGB in [0, 1]."""
        bg = self.config.background_color
        return np.asarray(bg, np.float32) if bg is not None else dominant_color(image)

    def foreground(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Object pixels, ignored pixels (pusher) and chromaticity of a prepared uint8 image."""
        cfg = self.config
        x = image.astype(np.float32) / 255.0
        fg = np.linalg.norm(x - self.background_color(image), axis=-1) > cfg.background_threshold
        chroma = chromaticity(x)
        ignored = fg & self._is_ignored(x)
        return fg & ~ignored, ignored, chroma

    def _is_ignored(self, rgb: np.ndarray) -> np.ndarray:
        """Colours ``(..., 3)`` in [0, 1] within ``ignore_threshold`` (RGB distance) of a shaded ignore
        colour ``s * c`` with ``s`` in ``ignore_brightness_range``."""
        out = np.zeros(rgb.shape[:-1], bool)
        lo, hi = self.config.ignore_brightness_range
        for c in self._ignore:
            s = np.clip((rgb @ c) / float(c @ c), lo, hi)
            out |= np.linalg.norm(rgb - s[..., None] * c, axis=-1) < self.config.ignore_threshold
        return out

    def segment(self, image) -> Segmentation:
        """Instance segmentation of one image (any input :func:`prepare_image` accepts)."""
        cfg = self.config
        img = prepare_image(image, cfg.max_pixels)
        obj, ignored, chroma = self.foreground(img)
        regions = label_regions(obj, chroma, cfg.color_threshold, cfg.connectivity)
        n = int(regions.max())
        if n == 0:
            return Segmentation.empty(*img.shape[:2])
        flat = regions.reshape(-1)
        area = np.bincount(flat, minlength=n + 1)
        csum = np.zeros((n + 1, 3), np.float64)
        np.add.at(csum, flat, chroma.reshape(-1, 3))
        mean_chroma = csum / np.maximum(area, 1)[:, None]

        # merge adjacent regions of similar mean colour (pixel noise can break the pixel-level chains)
        src, dst = [], []
        for a, b in _neighbour_pairs(*regions.shape, cfg.connectivity):
            la, lb = flat[a], flat[b]
            sel = (la > 0) & (lb > 0) & (la != lb)
            src.append(la[sel])
            dst.append(lb[sel])
        src, dst = np.concatenate(src), np.concatenate(dst)
        close = np.linalg.norm(mean_chroma[src] - mean_chroma[dst], axis=1) < cfg.color_threshold
        if close.any():
            comp = connected_components(n + 1, src[close], dst[close])
            _, first, inv = np.unique(comp, return_index=True, return_inverse=True)
            rank = np.empty(first.size, np.int64)
            rank[np.argsort(first)] = np.arange(first.size)  # node 0 (background) stays 0
            flat = rank[inv.reshape(-1)][flat]
            n = int(flat.max())
            area = np.bincount(flat, minlength=n + 1)
            csum = np.zeros((n + 1, 3), np.float64)
            np.add.at(csum, flat, chroma.reshape(-1, 3))
            mean_chroma = csum / np.maximum(area, 1)[:, None]
            regions = flat.reshape(regions.shape)

        # drop whole regions whose mean colour is an ignore colour (noisy pusher pixels that
        # escaped the per-pixel test)
        if self._ignore:
            rsum = np.zeros((n + 1, 3), np.float64)
            np.add.at(rsum, flat, img.reshape(-1, 3) / 255.0)
            drop = self._is_ignored(rsum / np.maximum(area, 1)[:, None])
            drop[0] = False
            if drop.any():
                ignored = ignored | drop[flat].reshape(ignored.shape)
                flat = np.where(drop[flat], 0, flat)
                area = np.bincount(flat, minlength=n + 1)
                regions = flat.reshape(regions.shape)

        # merge parts of one colour that an ignored region (the pusher) cuts apart
        root = np.arange(n + 1)
        if cfg.merge_occluded and ignored.any():
            ign = label_regions(ignored, None, 0.0, 8)
            grown = _dilate_labels(regions)  # (H, W, 9) labels around every pixel
            for r in range(1, int(ign.max()) + 1):
                touching = np.unique(grown[ign == r])
                touching = touching[touching > 0]
                for i in range(len(touching)):
                    for j in range(i + 1, len(touching)):
                        a, b = int(touching[i]), int(touching[j])
                        if np.linalg.norm(mean_chroma[a] - mean_chroma[b]) < cfg.color_threshold:
                            ra, rb = _find(root, a), _find(root, b)
                            if ra != rb:
                                root[max(ra, rb)] = min(ra, rb)
            root = np.array([_find(root, i) for i in range(n + 1)])
            flat = root[flat]
            area = np.bincount(flat, minlength=n + 1)

        keep = np.nonzero(area[1:] >= cfg.min_area)[0] + 1
        if keep.size == 0:
            return Segmentation.empty(*img.shape[:2])
        if keep.size > cfg.max_objects:
            keep = np.sort(keep[np.argsort(-area[keep], kind="stable")[: cfg.max_objects]])
        lut = np.zeros(n + 1, np.uint8)
        lut[keep] = np.arange(1, keep.size + 1)  # keep is in raster order of first pixel
        ids = lut[flat].reshape(img.shape[:2])

        # per-object mean chromaticity -> score (fraction of pixels close to it) and colour label
        flat_ids = ids.reshape(-1)
        k = keep.size
        cnt = np.bincount(flat_ids, minlength=k + 1)
        s = np.zeros((k + 1, 3), np.float64)
        np.add.at(s, flat_ids, chroma.reshape(-1, 3))
        mc = s / np.maximum(cnt, 1)[:, None]
        dist = np.linalg.norm(chroma.reshape(-1, 3) - mc[flat_ids], axis=1)
        inlier = np.bincount(flat_ids, weights=(dist < cfg.color_threshold).astype(np.float64), minlength=k + 1)
        scores = (inlier / np.maximum(cnt, 1))[1:]
        labels = [self._label(mc[i]) for i in range(1, k + 1)]
        return Segmentation.from_instance_ids(ids, image=img, scores=scores, labels=labels)

    def _label(self, chroma: np.ndarray) -> str | None:
        if not self._label_names:
            return None
        d = np.linalg.norm(self._label_chroma - chroma[None], axis=1)
        i = int(np.argmin(d))
        return self._label_names[i] if d[i] <= self.config.label_max_distance else None


def _find(root: np.ndarray, i: int) -> int:
    while root[i] != i:
        i = int(root[i])
    return i


def _dilate_labels(labels: np.ndarray) -> np.ndarray:
    """``(H, W, 9)``: the labels in the 3x3 neighbourhood of every pixel (0 outside the image)."""
    h, w = labels.shape
    p = np.pad(labels, 1)
    return np.stack([p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=-1)
