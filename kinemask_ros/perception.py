"""Perception front end (pure logic, no rclpy): camera image (+ ids) + camera model -> the frame
the world model and the planner work on (DESIGN §3 "Object scene").

One function, :func:`perceive`, used by the planner node, the world-model node, the envs, the
demo and the benchmarks, so that every caller resizes, segments, labels and maps pixels to the
table the same way:

* the image is brought to the *planning size* (:func:`kinemask_ros.planning.planning_size`: the
  raster model's own resolution, or the camera's resolution (integer-downscaled above 640x480)
  for the object model, whose object scene is measured from the full-resolution masks);
* instance ids come from the caller (a segmentation node, a mask in a request) or from a
  segmenter run at the planning size (never on a full camera frame);
* the frame's :class:`~kinemask_ros.camera.CameraModel` maps its pixels to the table.

    frame = perceive(pipeline, rgb, camera=CameraConfig(...), ids=None)   # segments with the classical backend
    target = frame.select_target(0, goal_xy=(0.05, 0.0))                  # 0: the object nearest the goal
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.object_scene import IGNORED_IDS, object_ids
from kinemask_ros.planning import planning_size
from kinemask_ros.ros_convert import resize_ids, resize_rgb


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
    """

    rgb: np.ndarray
    ids: np.ndarray
    labels: dict[int, str]
    camera: CameraModel
    source_size: tuple[int, int]
    object_height: float = 0.03
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


def perceive(pipeline, rgb: np.ndarray, camera: CameraConfig, ids: np.ndarray | None = None, labels: dict[int, str] | None = None,
             segmenter=None, object_height: float = 0.03) -> PerceivedFrame:
    """Camera image -> :class:`PerceivedFrame` at the pipeline's planning size.

    Args:
        pipeline: the world model (decides the planning size).
        rgb: ``(H, W, 3)`` uint8 camera image.
        camera: the camera that took it; width/height are replaced by the planning size (the
            geometry — pose and field of view — is what matters).
        ids: ``(H, W)`` instance ids for ``rgb``; None = segment at the planning size with
            ``segmenter`` (default: the classical backend).
        labels: ``{id: label}`` for ``ids``.
    ``ValueError`` when the ids do not match the image, or nothing is in the frame.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {img.shape}")
    H, W = img.shape[:2]
    if ids is not None and np.asarray(ids).shape != (H, W):
        a = np.asarray(ids)
        raise ValueError(f"instance_mask is {a.shape[1] if a.ndim == 2 else '?'}x{a.shape[0]} but the image is {W}x{H} (width x height)")
    h, w = planning_size(pipeline, (H, W))
    small = resize_rgb(img, h, w)
    if ids is None:
        if segmenter is None:
            from kinemask_ros.segmentation.classical import ClassicalSegmenter

            segmenter = ClassicalSegmenter()
        seg = segmenter.segment(small)
        m = seg.instance_ids
        labels = {int(o): (lab or "") for o, lab in zip(seg.object_ids, seg.labels)}
    else:
        m = resize_ids(np.asarray(ids), h, w)
    frame = PerceivedFrame(small, m, dict(labels or {}), CameraModel(replace(camera, width=w, height=h)), (H, W), object_height)
    if not frame.present:
        raise ValueError("no object in the segmented image")
    return frame


__all__ = ["IGNORED_IDS", "PerceivedFrame", "perceive"]
