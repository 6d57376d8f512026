"""Segmentation result, segmenter protocol, image-input handling and prompt checks (pure numpy).

Conventions (DESIGN §3): images are ``(H, W)`` row-major with the origin top-left. Pixel
``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` in continuous coordinates ``(u, v)``, so point
prompts ``(u, v)`` and boxes ``(x0, y0, x1, y1)`` use the same continuous frame as
:mod:`kinemask_ros.camera`. A box of a mask covers its pixels fully: ``x1 = last column + 1``.

Instance ids: 0 is background, objects are ``1..254`` (255 is reserved for the pusher in the
simulator's masks, so a segmentation never uses it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

#: Largest object id a segmentation may use (255 is the simulator's pusher id).
MAX_OBJECT_ID = 254
#: Default limit on input size (pixels); larger images are rejected with a ValueError.
DEFAULT_MAX_PIXELS = 4096 * 4096


# ----------------------------------------------------------------------------- image input
def downscale_factor(height: int, width: int, max_pixels: int) -> int:
    """Smallest integer ``f >= 1`` with ``ceil(height / f) * ceil(width / f) <= max_pixels``."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    f = max(1, int(math.ceil(math.sqrt(height * width / max_pixels))))
    while math.ceil(height / f) * math.ceil(width / f) > max_pixels:
        f += 1
    return f


def prepare_image(image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Any reasonable image -> contiguous ``(H, W, 3)`` uint8 RGB, or ``ValueError`` with the reason.

    Accepted: uint8 RGB ``(H, W, 3)``; RGBA ``(H, W, 4)`` (alpha dropped); grayscale ``(H, W)`` or
    ``(H, W, 1)`` (replicated to 3 channels); 16-bit integers (scaled by 255/65535); other integer
    types whose values fit 0..255 (used as is) or 0..65535 (scaled); floats in ``[0, 1]``; bool
    (False -> 0, True -> 255); anything ``np.asarray`` turns into such an array (e.g. a PIL image).

    Rejected (``ValueError``): zero-size, wrong number of dimensions or channels (channels-first
    arrays get a hint), NaN/inf, negative values, floats outside [0, 1], integers above 65535,
    non-numeric dtypes, and images with more than ``max_pixels`` pixels.
    """
    if image is None:
        raise ValueError("image is None")
    try:
        a = np.asarray(image)
    except Exception as e:  # pragma: no cover - exotic objects
        raise ValueError(f"image cannot be converted to an array: {e}") from e
    if a.dtype == object or not (a.dtype == bool or np.issubdtype(a.dtype, np.number)):
        raise ValueError(f"image must hold numbers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"image must be real-valued, got dtype {a.dtype}")
    if a.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.ndim} dimensions {a.shape}")
    if a.size == 0 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"image is empty (shape {a.shape})")
    if a.ndim == 3 and a.shape[2] not in (1, 3, 4):
        hint = " (looks channels-first: transpose to (H, W, C))" if a.shape[0] in (1, 3, 4) else ""
        raise ValueError(f"image must have 1, 3 or 4 channels in the last axis, got shape {a.shape}{hint}")
    h, w = a.shape[:2]
    if h * w > max_pixels:
        raise ValueError(f"image of {h}x{w} = {h * w} pixels exceeds max_pixels={max_pixels}; downscale it or raise the limit")

    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError("image contains NaN or inf")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"float images must have values in [0, 1], got [{lo:.4g}, {hi:.4g}] (divide 0..255 data by 255)")
        a = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise ValueError(f"integer images must be >= 0, got minimum {lo}")
        if a.dtype == np.uint16 or 255 < hi <= 65535:
            a = np.rint(a.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        elif hi <= 255:
            a = a.astype(np.uint8)
        else:
            raise ValueError(f"integer images must be 8- or 16-bit, got maximum {hi} (dtype {a.dtype})")

    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[..., :3]
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------- prompts
def check_point(point, shape: tuple[int, int]) -> tuple[float, float]:
    """Validate a point prompt ``(u, v)`` against an image of ``shape = (H, W)``; returns floats."""
    p = np.asarray(point, dtype=float).reshape(-1)
    if p.shape != (2,):
        raise ValueError(f"a point must be (u, v), got {point!r}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"point {point!r} is not finite")
    h, w = shape
    u, v = float(p[0]), float(p[1])
    if not (0.0 <= u < w and 0.0 <= v < h):
        raise ValueError(f"point (u, v) = ({u:g}, {v:g}) lies outside the {h}x{w} image (needs 0 <= u < {w}, 0 <= v < {h})")
    return u, v


def check_box(box, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Validate a box ``(x0, y0, x1, y1)`` (continuous pixels, ``x0 < x1``, ``y0 < y1``, inside the image)."""
    b = np.asarray(box, dtype=float).reshape(-1)
    if b.shape != (4,):
        raise ValueError(f"a box must be (x0, y0, x1, y1), got {box!r}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"box {box!r} is not finite")
    x0, y0, x1, y1 = (float(x) for x in b)
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty: needs x0 < x1 and y0 < y1")
    h, w = shape
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise ValueError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the {h}x{w} image (needs 0 <= x0 < x1 <= {w}, 0 <= y0 < y1 <= {h})")
    return x0, y0, x1, y1


def box_mask(box, shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels whose centres lie inside ``box`` (checked with :func:`check_box`)."""
    x0, y0, x1, y1 = check_box(box, shape)
    h, w = shape
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    return ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None, :]


# ----------------------------------------------------------------------------- result
def _as_labels(labels, k: int) -> tuple[str | None, ...]:
    if labels is None:
        return (None,) * k
    out = tuple(None if s is None else str(s) for s in labels)
    if len(out) != k:
        raise ValueError(f"Segmentation.labels must have one entry per object ({k}), got {len(out)}")
    return out


@dataclass(repr=False)
class Segmentation:
    """Instance segmentation of one image. Per-object arrays are aligned with ``object_ids``.

    Attributes:
        instance_ids: ``(H, W)`` uint8: 0 background, otherwise the object's id (1..254).
        object_ids: ``(K,)`` int64, ascending, the ids present (``1..K`` from a backend; a
            :class:`~kinemask_ros.segmentation.tracking.TrackedSegmenter` keeps ids stable
            over a stream, so they may have gaps).
        scores: ``(K,)`` float32 confidence in [0, 1].
        boxes: ``(K, 4)`` float32 ``(x0, y0, x1, y1)`` in continuous pixels.
        areas: ``(K,)`` int64 pixel counts.
        colors: ``(K, 3)`` float32 mean RGB in [0, 1] (NaN when built without an image).
        labels: ``K`` names (e.g. colour names) or None where unknown.
    """

    instance_ids: np.ndarray
    object_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    colors: np.ndarray
    labels: tuple[str | None, ...] = field(default=())

    def __post_init__(self) -> None:
        m = np.asarray(self.instance_ids)
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"Segmentation.instance_ids must be a non-empty (H, W) array, got shape {m.shape}")
        if m.dtype != np.uint8:
            if not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() > MAX_OBJECT_ID:
                raise ValueError(f"Segmentation.instance_ids must hold ids 0..{MAX_OBJECT_ID}")
            m = m.astype(np.uint8)
        ids = np.asarray(self.object_ids, dtype=np.int64).reshape(-1)
        k = ids.size
        if k and (ids.min() < 1 or ids.max() > MAX_OBJECT_ID or np.any(np.diff(ids) <= 0)):
            raise ValueError(f"Segmentation.object_ids must be ascending unique ids in 1..{MAX_OBJECT_ID}, got {ids.tolist()}")
        present = np.unique(m)
        present = present[present != 0]
        if not np.array_equal(present, ids):
            raise ValueError(f"Segmentation.object_ids {ids.tolist()} do not match the ids in instance_ids {present.tolist()}")
        self.instance_ids = m
        self.object_ids = ids
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.areas = np.asarray(self.areas, dtype=np.int64).reshape(-1)
        self.colors = np.asarray(self.colors, dtype=np.float32).reshape(-1, 3)
        for name in ("scores", "boxes", "areas", "colors"):
            if getattr(self, name).shape[0] != k:
                raise ValueError(f"Segmentation.{name} must have {k} rows (one per object), got {getattr(self, name).shape[0]}")
        self.labels = _as_labels(self.labels if self.labels != () else None, k)

    def __repr__(self) -> str:
        h, w = self.shape
        return f"Segmentation({h}x{w}, object_ids={self.object_ids.tolist()}, areas={self.areas.tolist()}, labels={list(self.labels)})"

    # ---------------------------------------------------------------- constructors
    @classmethod
    def empty(cls, height: int, width: int) -> "Segmentation":
        """No objects on an ``height x width`` image."""
        return cls.from_instance_ids(np.zeros((height, width), np.uint8))

    @classmethod
    def from_instance_ids(cls, instance_ids: np.ndarray, image: np.ndarray | None = None, scores=None, labels=None) -> "Segmentation":
        """Build from an id map; boxes, areas and mean colours are computed (``image`` (H, W, 3) uint8)."""
        m = np.asarray(instance_ids)
        if m.ndim != 2 or m.size == 0:
            raise ValueError(f"instance_ids must be a non-empty (H, W) array, got shape {m.shape}")
        if not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() > MAX_OBJECT_ID:
            raise ValueError(f"instance_ids must hold integer ids 0..{MAX_OBJECT_ID}")
        m = m.astype(np.uint8)
        counts = np.bincount(m.reshape(-1), minlength=256)
        ids = np.nonzero(counts[1:])[0] + 1
        k = ids.size
        boxes = np.zeros((k, 4), np.float32)
        colors = np.full((k, 3), np.nan, np.float32)
        if k:
            rows, cols = np.nonzero(m)
            lab = m[rows, cols].astype(np.int64)
            big = np.iinfo(np.int64).max
            for j, (arr, reducer, init) in enumerate(((cols, np.minimum, big), (rows, np.minimum, big), (cols, np.maximum, -1), (rows, np.maximum, -1))):
                acc = np.full(256, init, np.int64)
                reducer.at(acc, lab, arr)
                boxes[:, j] = acc[ids] + (1 if j >= 2 else 0)
            if image is not None:
                img = np.asarray(image)
                if img.shape[:2] != m.shape or img.ndim != 3 or img.shape[2] != 3:
                    raise ValueError(f"image must be (H, W, 3) matching instance_ids {m.shape}, got {img.shape}")
                sums = np.zeros((256, 3), np.float64)
                np.add.at(sums, lab, img[rows, cols].astype(np.float64))
                colors = (sums[ids] / counts[ids, None] / 255.0).astype(np.float32)
        sc = np.ones(k, np.float32) if scores is None else np.asarray(scores, np.float32).reshape(-1)
        return cls(m, ids, sc, boxes, counts[ids], colors, _as_labels(labels, k))

    @classmethod
    def from_masks(cls, masks: np.ndarray, scores=None, image: np.ndarray | None = None, labels=None, min_area: int = 1) -> "Segmentation":
        """Build from ``(N, H, W)`` boolean masks (ids ``1..K`` in the given order).

        Overlaps go to the mask with the higher score (later mask on ties); masks left with fewer
        than ``min_area`` pixels are dropped, as are their scores and labels.
        """
        ms = np.asarray(masks, dtype=bool)
        if ms.ndim != 3 or ms.shape[1] == 0 or ms.shape[2] == 0:
            raise ValueError(f"masks must be (N, H, W) with H, W > 0, got shape {ms.shape}")
        n = ms.shape[0]
        if n > MAX_OBJECT_ID:
            raise ValueError(f"at most {MAX_OBJECT_ID} masks fit in a uint8 id map, got {n}")
        sc = np.ones(n, np.float32) if scores is None else np.asarray(scores, np.float32).reshape(-1)
        if sc.shape != (n,):
            raise ValueError(f"scores must have one entry per mask ({n}), got shape {sc.shape}")
        labs = _as_labels(labels, n)
        m = np.zeros(ms.shape[1:], np.uint8)
        for i in np.argsort(sc, kind="stable"):  # ascending: higher scores paint last and win
            m[ms[i]] = i + 1
        counts = np.bincount(m.reshape(-1), minlength=n + 1)[1:]
        keep = np.nonzero(counts >= max(1, int(min_area)))[0]
        remap = np.zeros(256, np.uint8)
        remap[keep + 1] = np.arange(1, keep.size + 1)
        m = remap[m]
        return cls.from_instance_ids(m, image=image, scores=sc[keep], labels=[labs[i] for i in keep])

    # ---------------------------------------------------------------- access
    @property
    def num_objects(self) -> int:
        return int(self.object_ids.size)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.instance_ids.shape)  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.num_objects

    def index_of(self, obj_id: int) -> int:
        """Row of ``obj_id`` in the per-object arrays; ``KeyError`` if absent."""
        hit = np.nonzero(self.object_ids == int(obj_id))[0]
        if hit.size == 0:
            raise KeyError(f"object id {obj_id} is not in this segmentation (ids {self.object_ids.tolist()})")
        return int(hit[0])

    def mask(self, obj_id: int) -> np.ndarray:
        """Boolean ``(H, W)`` mask of one object."""
        self.index_of(obj_id)
        return self.instance_ids == int(obj_id)

    def masks(self) -> np.ndarray:
        """``(K, H, W)`` boolean masks in ``object_ids`` order."""
        return self.instance_ids[None] == self.object_ids[:, None, None].astype(np.uint8)

    def centroids(self) -> np.ndarray:
        """``(K, 2)`` mask centroids ``(u, v)`` in continuous pixels (same rule as ``camera.mask_centroid``)."""
        rows, cols = np.nonzero(self.instance_ids)
        lab = self.instance_ids[rows, cols]
        su = np.bincount(lab, weights=cols + 0.5, minlength=256)
        sv = np.bincount(lab, weights=rows + 0.5, minlength=256)
        n = np.maximum(np.bincount(lab, minlength=256), 1)
        return np.stack([su[self.object_ids] / n[self.object_ids], sv[self.object_ids] / n[self.object_ids]], axis=1)

    def relabel(self, mapping: dict[int, int]) -> "Segmentation":
        """New segmentation with object ``old`` renamed ``mapping[old]`` (ids not in ``mapping`` keep theirs)."""
        new_ids = np.array([int(mapping.get(int(i), int(i))) for i in self.object_ids], np.int64)
        if new_ids.size and (new_ids.min() < 1 or new_ids.max() > MAX_OBJECT_ID or np.unique(new_ids).size != new_ids.size):
            raise ValueError(f"relabel must map to unique ids in 1..{MAX_OBJECT_ID}, got {new_ids.tolist()}")
        lut = np.zeros(256, np.uint8)
        lut[self.object_ids] = new_ids
        order = np.argsort(new_ids)
        return Segmentation(
            lut[self.instance_ids], new_ids[order], self.scores[order], self.boxes[order], self.areas[order],
            self.colors[order], tuple(self.labels[i] for i in order),
        )

    def subset(self, obj_ids: Sequence[int]) -> "Segmentation":
        """Only the listed objects (ids kept); the others become background."""
        keep = np.array(sorted({int(i) for i in obj_ids}), np.int64)
        for i in keep:
            self.index_of(int(i))
        rows = np.array([self.index_of(int(i)) for i in keep], np.int64)
        m = np.where(np.isin(self.instance_ids, keep), self.instance_ids, 0).astype(np.uint8)
        return Segmentation(m, keep, self.scores[rows], self.boxes[rows], self.areas[rows], self.colors[rows],
                            tuple(self.labels[i] for i in rows))


@runtime_checkable
class Segmenter(Protocol):
    """Anything that turns an image into a :class:`Segmentation`.

    ``segment`` must accept every input :func:`prepare_image` accepts and raise ``ValueError``
    (with the reason) for everything it rejects.
    """

    def segment(self, image: np.ndarray) -> Segmentation: ...


def check_positive_int(owner: str, name: str, value, minimum: int = 1) -> None:
    """``ValueError`` naming ``owner.name`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def check_float(owner: str, name: str, value, lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False) -> None:
    """``ValueError`` naming ``owner.name`` unless ``value`` is a finite number in the range."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise ValueError(f"{owner}.{name} must be a finite number in {bracket}{lo:g}, {hi:g}], got {value!r}")


def check_rgb(owner: str, name: str, value) -> tuple[float, float, float]:
    """``ValueError`` naming ``owner.name`` unless ``value`` is 3 finite numbers in [0, 1]."""
    try:
        c = tuple(float(x) for x in value)
    except Exception:
        raise ValueError(f"{owner}.{name} must be an RGB triple in [0, 1], got {value!r}") from None
    if len(c) != 3 or not all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in c):
        raise ValueError(f"{owner}.{name} must be an RGB triple in [0, 1], got {value!r}")
    return c  # type: ignore[return-value]
