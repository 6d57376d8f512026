"""Perception front end (pure logic, no rclpy): camera image (+ depth, ids) + camera model -> the
frame the world model and the planner work on (DESIGN §3 "Canonical table frame", "Object scene").

One function, :func:`perceive`, used by the planner node, the world-model node, the envs, the
demo and the benchmarks, so that every caller resizes, segments, labels and maps pixels to the
table the same way:

* the image is brought to the *planning size* (:func:`kinemask_ros.planning.planning_size`: the
  raster model's own resolution, or the camera's resolution (integer-downscaled above 640x480)
  for the object model, whose object scene is measured from the full-resolution masks);
* instance ids come from the caller (a segmentation node, a mask in a request) or from a
  segmenter run at the planning size (never on a full camera frame);
* the frame's :class:`~kinemask_ros.camera.CameraModel` maps its pixels to the table.

With a :class:`~kinemask_ros.table_frame.CameraCalibration` (any calibrated camera: CameraInfo +
the table's pose) instead of the simulator's camera geometry, the image is *rectified* into the
canonical metric top-down :class:`~kinemask_ros.table_frame.TableFrame` through the table plane
at half the object height, and the frame keeps the camera's own view (``source``) for previews in
the user's pixels. Instance ids: given in camera pixels (a segmentation node), they are carried
into the canonical frame by depth when there is depth (every pixel's 3-D point dropped vertically
onto the table: the footprint, exact for prisms) or by the plane (nearest); without ids the
canonical image is segmented.

    frame = perceive(pipeline, rgb, camera=CameraConfig(...), ids=None)   # segments with the classical backend
    frame = perceive(pipeline, rgb, calib, ids=ids, depth=depth)          # any calibrated RGB-D camera
    target = frame.select_target(0, goal_xy=(0.05, 0.0))                  # 0: the object nearest the goal
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.object_scene import IGNORED_IDS, object_ids
from kinemask_ros.planning import planning_size
from kinemask_ros.preview import CameraMapping
from kinemask_ros.ros_convert import resize_ids, resize_rgb
from kinemask_ros.table_frame import (CameraCalibration, Rectifier, TableFrame, camera_pixels_to_table, splat_top_down,
                                      table_to_camera_pixels)

#: canonical resolutions the object model plans at with a calibrated camera (>= 64: <= 6.25 mm/px; 128 = 3.1 mm/px,
#: where mask poses are good to ~1 mm and the cost of larger frames buys nothing measurable)
MIN_CANONICAL, MAX_CANONICAL = 64, 128
#: rectifiers kept for reuse (one per camera / frame / plane; building one costs a few ms to ~0.1 s)
_RECTIFIERS: OrderedDict = OrderedDict()


@dataclass
class SourceView:
    """The user's camera view of a frame (for previews and pixel prompts in its own pixels).

    Attributes:
        rgb: ``(H, W, 3)`` uint8 camera image; ids: ``(H, W)`` instance ids in camera pixels.
        calibration: the camera; mapping: pixel <-> table at the object mid-height.
    """

    rgb: np.ndarray
    ids: np.ndarray
    calibration: CameraCalibration
    mapping: CameraMapping


@dataclass
class PerceivedFrame:
    """A camera frame as the world model sees it.

    Attributes:
        rgb: ``(h, w, 3)`` uint8 at the planning size.
        ids: ``(h, w)`` instance ids (0 background, 255 the pusher, others objects).
        labels: ``{id: label}`` from the segmenter ("" when unknown).
        camera: maps the pixels of ``rgb`` to the table (``(w, h)`` image).
        source_size: ``(H, W)`` of the camera image this frame came from.
        object_height: objects' nominal height [m]; masks are read at half of it.
        source: the calibrated camera's own view (None for the simulator's camera geometry,
            where ``rgb`` is the camera image itself, resized).
        table_frame: the canonical frame of ``rgb`` (None when ``rgb`` is a resized camera image).
    """

    rgb: np.ndarray
    ids: np.ndarray
    labels: dict[int, str]
    camera: CameraModel
    source_size: tuple[int, int]
    object_height: float = 0.03
    source: SourceView | None = None
    table_frame: TableFrame | None = None
    present: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.present = object_ids(self.ids)

    @property
    def shape(self) -> tuple[int, int]:
        return self.ids.shape

    @property
    def metres_per_pixel(self) -> float:
        return 1.0 / self.camera.pixels_per_metre(self.object_height / 2)

    def centroids_table(self) -> dict[int, np.ndarray]:
        """``{id: (x, y)}`` table-frame centroid [m] of every object's pixels."""
        out = {}
        for o in self.present:
            rows, cols = np.nonzero(self.ids == o)
            uv = np.stack([cols + 0.5, rows + 0.5], 1).astype(float)
            out[o] = self.camera.unproject_table(uv, self.object_height / 2).mean(0)
        return out

    def select_target(self, target_id: int = 0, goal_xy=None) -> int:
        """``target_id`` checked against the frame, or (0) the object nearest to ``goal_xy`` [m]."""
        if not self.present:
            raise ValueError("no object in the segmented image")
        if target_id:
            if target_id not in self.present:
                raise ValueError(f"target id {target_id} is not in the segmented image (ids present: {self.present})")
            return int(target_id)
        if goal_xy is None:
            raise ValueError("target_id 0 (the object nearest the goal) needs a goal")
        g = np.asarray(goal_xy, float).reshape(2)
        c = self.centroids_table()
        return int(min(self.present, key=lambda o: float(np.linalg.norm(c[o] - g))))


def canonical_camera(frame: TableFrame, plane_z: float) -> CameraModel:
    """A top-down pinhole whose image of the plane ``z = plane_z`` is exactly ``frame`` (1.5 m above it,
    like the simulator's default camera, so the models see the geometry they were trained on)."""
    eye = 1.5
    fov = 2.0 * math.degrees(math.atan(frame.half_extent / eye))
    return CameraModel(CameraConfig(width=frame.resolution, height=frame.resolution, fov_deg=fov, eye=(0.0, 0.0, plane_z + eye),
                                    target=(0.0, 0.0, plane_z), up=(0.0, 1.0, 0.0)))


def canonical_resolution(pipeline, calib: CameraCalibration, half_extent: float = 0.20, plane_z: float = 0.015) -> int:
    """Canonical pixels per side for a calibrated camera: the raster model's own resolution, or for
    the object model the camera's ground sampling at the table centre, in [64, 256], a multiple of 32."""
    if getattr(pipeline, "object_model", None) is None:
        return int(pipeline.config.width)
    c = table_to_camera_pixels(np.zeros((1, 2)), calib, plane_z)[0]
    xy = camera_pixels_to_table(np.array([c - 0.5, c + 0.5]), calib, plane_z)
    ground = float(np.linalg.norm(xy[1] - xy[0])) / math.sqrt(2.0) if np.all(np.isfinite(xy)) else 2 * half_extent / MIN_CANONICAL
    r = 32 * math.ceil(2 * half_extent / max(ground, 1e-6) / 32)
    return int(min(MAX_CANONICAL, max(MIN_CANONICAL, r)))


def _rectifier(calib: CameraCalibration, frame: TableFrame, plane_z: float) -> Rectifier:
    key = (calib.K.tobytes(), calib.D.tobytes(), calib.T_cam_table.tobytes(), calib.width, calib.height, frame, float(plane_z))
    r = _RECTIFIERS.get(key)
    if r is None:
        r = _RECTIFIERS[key] = Rectifier(calib, frame, plane_z)
        while len(_RECTIFIERS) > 8:
            _RECTIFIERS.popitem(last=False)
    _RECTIFIERS.move_to_end(key)
    return r


def ids_to_canonical(ids: np.ndarray, calib: CameraCalibration, frame: TableFrame, plane_z: float, depth: np.ndarray | None = None) -> np.ndarray:
    """Camera-pixel ids ``(H, W)`` -> canonical ids ``(R, R)``.

    With ``depth`` every pixel's 3-D table point is dropped vertically onto the canonical raster
    (the highest point wins: object tops over the table); sampling gaps inside a footprint are
    closed (3x3), while the table hidden behind an object (no depth return) stays background. A
    frame with mostly invalid depth falls back to the plane. Without depth: the camera pixel
    under each canonical pixel centre through the plane ``plane_z``.
    """
    plane = _rectifier(calib, frame, plane_z)(np.asarray(ids), "nearest", fill=0)
    if depth is None:
        return plane
    d = np.asarray(depth, dtype=float)
    good = np.isfinite(d) & (d > 0)
    if good.mean() < 0.5:  # mostly holes: the plane is the better estimate
        return plane
    a = np.asarray(ids)
    sel = good & (a > 0)  # only object pixels need 3-D points (the table is the background anyway)
    rows, cols = np.nonzero(sel)
    rays = calib.pixel_rays(np.stack([cols + 0.5, rows + 0.5], 1).astype(float))
    pts = (rays * d[rows, cols, None] - calib.t) @ calib.R  # camera -> table frame (R^T (p - t) on row vectors)
    top = splat_top_down(pts, a[rows, cols].astype(np.int32), frame, fill=0)
    out = np.zeros(top.shape, plane.dtype)
    for o in np.unique(top):
        if o <= 0:
            continue
        m = top == o  # sampling gaps inside a footprint are closed; the occlusion shadow stays table
        out[ndimage.binary_closing(m, np.ones((3, 3), bool)) | m] = o
    return out


def camera_ids_from_canonical(canon: np.ndarray, calib: CameraCalibration, frame: TableFrame, plane_z: float) -> np.ndarray:
    """Canonical ids ``(R, R)`` -> camera pixels ``(H, W)`` through the plane (for previews when only
    the canonical image was segmented)."""
    jj, ii = np.meshgrid(np.arange(calib.width) + 0.5, np.arange(calib.height) + 0.5)
    uv = frame.to_pixels(camera_pixels_to_table(np.stack([jj, ii], -1), calib, plane_z))
    ok = np.isfinite(uv).all(-1)
    c = np.floor(np.nan_to_num(uv[..., 0], nan=-1)).astype(np.int64)
    r = np.floor(np.nan_to_num(uv[..., 1], nan=-1)).astype(np.int64)
    R = frame.resolution
    ok &= (c >= 0) & (c < R) & (r >= 0) & (r < R)
    out = np.zeros((calib.height, calib.width), canon.dtype)
    out[ok] = canon[r[ok], c[ok]]
    return out


def perceive(pipeline, rgb: np.ndarray, camera: CameraConfig | CameraCalibration, ids: np.ndarray | None = None,
             labels: dict[int, str] | None = None, segmenter=None, object_height: float = 0.03, depth: np.ndarray | None = None,
             table_frame: TableFrame | None = None) -> PerceivedFrame:
    """Camera image -> :class:`PerceivedFrame` at the pipeline's planning size.

    Args:
        pipeline: the world model (decides the planning size).
        rgb: ``(H, W, 3)`` uint8 camera image.
        camera: the simulator's camera geometry (:class:`CameraConfig`: the image is resized,
            width/height are replaced by the planning size), or any calibrated camera
            (:class:`CameraCalibration`: the image is rectified into the canonical table frame).
        ids: ``(H, W)`` instance ids for ``rgb``; None = segment the planning-size image with
            ``segmenter`` (default: the classical backend).
        labels: ``{id: label}`` for ``ids``.
        depth: ``(H, W)`` metres along the optical axis (calibrated cameras): footprints from depth.
        table_frame: the canonical frame (default: the 0.40 m table at :func:`canonical_resolution`).
    ``ValueError`` when the ids / depth do not match the image, the calibration does not match it,
    or nothing is in the frame.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {img.shape}")
    H, W = img.shape[:2]
    for name, a in (("instance_mask", ids), ("depth", depth)):
        if a is not None and np.asarray(a).shape != (H, W):
            a = np.asarray(a)
            raise ValueError(f"{name} is {a.shape[1] if a.ndim == 2 else '?'}x{a.shape[0]} but the image is {W}x{H} (width x height)")
    if isinstance(camera, CameraCalibration):
        frame = _perceive_calibrated(pipeline, img, camera, ids, labels, segmenter, object_height, depth, table_frame)
    else:
        if depth is not None:
            raise ValueError("depth needs a calibrated camera (CameraCalibration): pass camera=CameraCalibration.from_camera_info(...)")
        h, w = planning_size(pipeline, (H, W))
        small = resize_rgb(img, h, w)
        if ids is None:
            m, labels = _segment(small, segmenter)
        else:
            m = resize_ids(np.asarray(ids), h, w)
        frame = PerceivedFrame(small, m, dict(labels or {}), CameraModel(replace(camera, width=w, height=h)), (H, W), object_height)
    if not frame.present:
        raise ValueError("no object in the segmented image")
    return frame


def _segment(image: np.ndarray, segmenter) -> tuple[np.ndarray, dict[int, str]]:
    if segmenter is None:
        from kinemask_ros.segmentation.classical import ClassicalSegmenter

        segmenter = ClassicalSegmenter()
    seg = segmenter.segment(image)
    return seg.instance_ids, {int(o): (lab or "") for o, lab in zip(seg.object_ids, seg.labels)}


def _perceive_calibrated(pipeline, img, calib: CameraCalibration, ids, labels, segmenter, object_height, depth, table_frame) -> PerceivedFrame:
    calib.check_image(img)
    z = object_height / 2
    frame = table_frame or TableFrame(resolution=canonical_resolution(pipeline, calib, plane_z=z))
    rect = _rectifier(calib, frame, z)
    canon_rgb = rect(img, "linear", fill=0)
    if ids is None:
        canon_ids, labels = _segment(canon_rgb, segmenter)
        cam_ids = camera_ids_from_canonical(canon_ids, calib, frame, z)
    else:
        cam_ids = np.asarray(ids)
        canon_ids = ids_to_canonical(cam_ids, calib, frame, z, depth)
    mapping = CameraMapping(lambda uv: camera_pixels_to_table(uv, calib, z), lambda xy: table_to_camera_pixels(xy, calib, z),
                            calib.width, calib.height)
    return PerceivedFrame(canon_rgb, canon_ids, dict(labels or {}), canonical_camera(frame, z), img.shape[:2], object_height,
                          SourceView(img, cam_ids, calib, mapping), frame)


__all__ = ["IGNORED_IDS", "PerceivedFrame", "SourceView", "canonical_camera", "canonical_resolution", "perceive"]
