"""Which objects get the world model's ``K`` slots (DESIGN §3 "Object scene"): one rule for the
core, the ROS nodes and the envs, and never a silent drop.

A world model has ``K`` object slots; a table may hold more objects. :func:`fit_to_slots` keeps the
objects a push can affect, not the largest ones:

1. the *action region* is the pusher's swept corridor of every given stroke (a capsule of the
   pusher radius from start to end) plus the target's footprint; without strokes it is the
   target's footprint (a planner samples its strokes around the target);
2. each object's *gap* is the distance [m] from its footprint to the action region (0 = it
   overlaps the region);
3. the target comes first, then the objects by increasing gap (ties: larger area first, then id);
   the first ``K`` are kept;
4. an object within ``reach_m`` of the region (default: the longest stroke the model knows, so a
   pushed object or a chain can still reach it) that does not fit is *reachable but left out*:
   the caller must say so (``K`` too small for this scene), and every response lists
   ``left_out`` ids.

    fit = fit_to_slots(ids, 4, camera, target_id=7, strokes=[stroke])
    fit.slots          # (H, W) uint8, ids 1..n (n <= 4), 0 background
    fit.id_map         # {slot: original id}
    fit.left_out       # original ids that are not in the model's scene
    fit.warning()      # "" or a sentence naming the reachable objects that were left out
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kinemask_ros.camera import CameraModel
from kinemask_ros.push import PushBounds, PushStroke

#: ids that are never objects (the simulator draws its pusher as 255)
IGNORED_IDS = (255,)


@dataclass
class SlotFit:
    """Result of :func:`fit_to_slots`.

    Attributes:
        slots: ``(H, W)`` uint8 id map with ids ``1..n`` (``n <= K``), 0 = background.
        id_map: ``{slot: original id}`` for the kept objects.
        kept: original ids in slot order.
        left_out: original ids that did not get a slot (farthest from the action region first left out).
        reachable_left_out: the subset of ``left_out`` within ``reach_m`` of the action region.
        gaps_m: ``{original id: gap to the action region [m]}`` for every object.
    """

    slots: np.ndarray
    id_map: dict[int, int]
    kept: list[int]
    left_out: list[int]
    reachable_left_out: list[int]
    gaps_m: dict[int, float] = field(default_factory=dict)

    def slot_of(self, obj_id: int) -> int:
        """Slot of an original id (0 when it was left out or is unknown)."""
        for s, o in self.id_map.items():
            if o == obj_id:
                return s
        return 0

    def warning(self) -> str:
        """``""``, or the sentence every response carries when reachable objects were left out."""
        if not self.reachable_left_out:
            return ""
        return (f"objects {self.reachable_left_out} are within reach of the push but did not fit the world model's "
                f"{len(self.kept)} object slots: their motion is not imagined (use a checkpoint with more slots)")


def object_ids(ids: np.ndarray, ignore: tuple[int, ...] = IGNORED_IDS) -> list[int]:
    """Object ids in an id map (0 and ``ignore`` excluded), ascending."""
    return [int(i) for i in np.unique(ids) if i != 0 and int(i) not in ignore]


def _corridor(shape: tuple[int, int], camera: CameraModel, strokes: list[PushStroke], radius_m: float, z: float) -> np.ndarray:
    """``(H, W)`` bool: pixel centres within ``radius_m`` of any stroke segment (on the plane at height ``z``)."""
    H, W = shape
    out = np.zeros(shape, bool)
    if not strokes:
        return out
    uu, vv = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pts = camera.unproject_table(np.stack([uu.ravel(), vv.ravel()], 1), z)  # (H*W, 2) table metres
    for s in strokes:
        a, b = s.start, s.end
        ab = b - a
        t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        d = np.linalg.norm(pts - (a + t[:, None] * ab), axis=1)
        out |= (d <= radius_m).reshape(H, W)
    return out


def fit_to_slots(ids: np.ndarray, max_objects: int, camera: CameraModel, target_id: int = 0,
                 strokes: list[PushStroke] | None = None, reach_m: float | None = None, pusher_radius: float = 0.012,
                 object_height: float = 0.03, ignore: tuple[int, ...] = IGNORED_IDS) -> SlotFit:
    """Relabel ``ids (H, W)`` to at most ``max_objects`` slots by the rule of this module.

    Args:
        ids: instance ids at the camera's resolution (``camera`` maps its pixels to the table).
        max_objects: the world model's ``K``.
        target_id: the object to move (always kept; 0 = none given).
        strokes: candidate strokes whose corridors make the action region (None / [] = none).
        reach_m: gap within which a left-out object counts as reachable (default: the longest
            stroke of :class:`PushBounds` plus the pusher radius).
        pusher_radius, object_height: the corridor's half-width [m]; masks are read at half the height.
    """
    a = np.asarray(ids)
    if a.ndim != 2:
        raise ValueError(f"ids must be an (H, W) id map, got shape {a.shape}")
    if (camera.height, camera.width) != a.shape:
        raise ValueError(f"the camera model is {camera.width}x{camera.height} but the id map is {a.shape[1]}x{a.shape[0]} (width x height)")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    present = object_ids(a, ignore)
    if target_id and target_id not in present:
        raise ValueError(f"target id {target_id} is not in the id map (ids present: {present})")
    reach = (PushBounds().length_range[1] + pusher_radius) if reach_m is None else float(reach_m)
    z = object_height / 2
    region = _corridor(a.shape, camera, list(strokes or []), pusher_radius, z)
    if target_id:
        region |= a == target_id
    m_per_px = 1.0 / camera.pixels_per_metre(z)
    gaps: dict[int, float] = {}
    if region.any():
        from scipy.ndimage import distance_transform_edt

        dist_px = distance_transform_edt(~region)  # distance of each pixel centre to the region [px]
        for o in present:
            gaps[o] = max(0.0, float(dist_px[a == o].min()) - 0.5) * m_per_px  # footprint edge, not centre
    else:
        gaps = {o: 0.0 for o in present}
    areas = {o: int((a == o).sum()) for o in present}
    order = ([target_id] if target_id else []) + sorted((o for o in present if o != target_id), key=lambda o: (gaps[o], -areas[o], o))
    kept, left = order[:max_objects], order[max_objects:]
    out = np.zeros(a.shape, np.uint8)
    for slot, o in enumerate(kept, start=1):
        out[a == o] = slot
    return SlotFit(out, {s: o for s, o in enumerate(kept, start=1)}, kept, left, [o for o in left if gaps[o] <= reach], gaps)


# ----------------------------------------------------------------------------- metric object scene
#: fill ratio area / (4 a b) above which a footprint is taken as a disk (rectangle: 1, disk: pi/3 ~ 1.047)
DISK_FILL = 1.02


def min_area_rect_angle(points: np.ndarray, pixel_size: float = 0.0) -> float:
    """Orientation [rad] in [-pi/4, pi/4) of the minimum-area rectangle around ``points (M, 2)``
    (rotating calipers over the convex hull; each point stands for a pixel of ``pixel_size``)."""
    from scipy.spatial import ConvexHull, QhullError

    p = np.asarray(points, float)
    if pixel_size > 0:  # the pixels' corners, so that small footprints still have an area
        h = pixel_size / 2
        p = np.concatenate([p + [h, h], p + [h, -h], p + [-h, h], p + [-h, -h]])
    try:
        hull = p[ConvexHull(p).vertices]
    except (QhullError, ValueError):
        return 0.0
    e = np.roll(hull, -1, 0) - hull
    ang = np.unique(np.round(np.arctan2(e[:, 1], e[:, 0]) % (math.pi / 2), 9))
    c, s_ = np.cos(ang), np.sin(ang)
    u = hull @ np.stack([c, s_])  # (H, A) coordinates along each candidate axis
    v = hull @ np.stack([-s_, c])
    area = (u.max(0) - u.min(0)) * (v.max(0) - v.min(0))
    a = float(ang[int(np.argmin(area))])
    return (a + math.pi / 4) % (math.pi / 2) - math.pi / 4


@dataclass
class ObjectScene:
    """Per-object metric geometry estimated from an instance mask (DESIGN §3 "Object scene").

    Every quantity is in the table frame (metres, radians), estimated from all of the object's
    pixels unprojected through the camera model onto the plane at half the object height, so the
    precision is sub-pixel (the centroid of ~N pixels is good to about a pixel / sqrt(N)).

    Attributes:
        ids: ``(K,)`` the objects' ids in the mask, ascending.
        poses: ``(K, 3)`` ``(x, y, yaw)``; ``yaw`` is the footprint's major axis (defined modulo
            pi; 0 for disks and squares, whose second moments carry no direction).
        extents: ``(K, 2)`` half sizes ``(a, b)`` along / across the major axis [m] (uniform-
            rectangle moments rescaled to the measured area; for disks ``a = b = radius``).
        areas: ``(K,)`` footprint areas [m^2].
        fill: ``(K,)`` ``area / (4 a b)`` of the moment rectangle before rescaling (1 box, ~1.05 disk).
        is_disk: ``(K,)`` bool, ``fill > DISK_FILL``.
        at_border: ``(K,)`` bool, the mask touches the image border (the object may be cut:
            its pose and size are then biased towards the inside).
        pixel_size: ground size of one pixel [m] at the image centre.
        quarter_yaw: ``(K,)`` orientation of the footprint's minimum-area rectangle modulo pi/2, in
            [-pi/4, pi/4) (0 for disks): defined for squares too, where second moments carry no
            direction (``yaw`` is then taken from it as well).
    """

    ids: np.ndarray
    poses: np.ndarray
    extents: np.ndarray
    areas: np.ndarray
    fill: np.ndarray
    is_disk: np.ndarray
    at_border: np.ndarray
    pixel_size: float
    quarter_yaw: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.quarter_yaw is None:
            self.quarter_yaw = np.zeros(len(self.ids))

    def __len__(self) -> int:
        return int(self.ids.size)

    @classmethod
    def from_mask(cls, ids: np.ndarray, camera: CameraModel, object_height: float = 0.03,
                  ignore: tuple[int, ...] = IGNORED_IDS) -> "ObjectScene":
        """Estimate the geometry of every object of ``ids (H, W)`` (camera pixels)."""
        a = np.asarray(ids)
        if a.ndim != 2 or (camera.height, camera.width) != a.shape:
            raise ValueError(f"ids must be the camera's ({camera.height}, {camera.width}) id map, got shape {a.shape}")
        z = object_height / 2
        px = 1.0 / camera.pixels_per_metre(z)
        obj = object_ids(a, ignore)
        K = len(obj)
        poses, ext, areas, fill = np.zeros((K, 3)), np.zeros((K, 2)), np.zeros(K), np.zeros(K)
        border = np.zeros(K, bool)
        quarter = np.zeros(K)
        for k, o in enumerate(obj):
            rows, cols = np.nonzero(a == o)
            border[k] = rows.min() == 0 or cols.min() == 0 or rows.max() == a.shape[0] - 1 or cols.max() == a.shape[1] - 1
            pts = camera.unproject_table(np.stack([cols + 0.5, rows + 0.5], 1).astype(float), z)
            c = pts.mean(0)
            d = pts - c
            cov = d.T @ d / len(pts) + np.eye(2) * px**2 / 12.0  # each pixel is a square, not a point
            lam, vec = np.linalg.eigh(cov)  # ascending
            major = vec[:, 1]
            area = len(pts) * px**2
            ra, rb = math.sqrt(3.0 * lam[1]), math.sqrt(3.0 * lam[0])
            f = area / (4.0 * ra * rb)
            if f > DISK_FILL:
                r = math.sqrt(area / math.pi)
                ea, eb, yaw = r, r, 0.0
            else:
                s = math.sqrt(f)  # rescale the moment rectangle to the measured area
                ea, eb = ra * s, rb * s
                quarter[k] = min_area_rect_angle(pts, px)
                # elongated: the major axis (precise); near-square: moments carry no direction, use the rectangle's
                yaw = quarter[k] if lam[1] - lam[0] < 0.05 * lam[1] else math.atan2(major[1], major[0])
                yaw = (yaw + math.pi / 2) % math.pi - math.pi / 2
            poses[k] = (c[0], c[1], yaw)
            ext[k] = (ea, eb)
            areas[k], fill[k] = area, f
        return cls(np.array(obj, np.int64), poses, ext, areas, fill, fill > DISK_FILL, border, px, quarter)

    def distances(self, points: np.ndarray) -> np.ndarray:
        """``(..., K)`` distance [m] from table points ``(..., 2)`` to each footprint (0 inside)."""
        p = np.asarray(points, float)[..., None, :] - self.poses[:, :2]  # (..., K, 2)
        c, s = np.cos(self.poses[:, 2]), np.sin(self.poses[:, 2])
        lx = c * p[..., 0] + s * p[..., 1]
        ly = -s * p[..., 0] + c * p[..., 1]
        q = np.stack([np.abs(lx) - self.extents[:, 0], np.abs(ly) - self.extents[:, 1]], -1)
        box = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        disk = np.maximum(np.linalg.norm(p, axis=-1) - self.extents[:, 0], 0.0)
        return np.where(self.is_disk, disk, box)
