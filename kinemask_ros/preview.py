"""Previews of imagined rollouts in any camera: the objects' own pixels moved along SE(2) tracks.

The world model predicts every object's table-frame pose ``(x, y, yaw)`` over the clip
(:mod:`kinemask_ros.world_model.objects`). A preview shows that motion in the image the user
knows — the camera's own pixels at its native resolution — rather than the model's small
canonical view:

* each object's pixels are moved rigidly: a destination pixel is mapped to the table plane, through
  the inverse of the object's SE(2) motion ``pose_t ∘ pose_0^-1``, and back into the first frame,
  where it takes the colour of that object's pixel (inverse mapping: no holes when an object turns);
* the table the objects uncover is filled from the nearest table pixels of the first frame
  (textures stay plausible; a mid-grey is never painted over a wooden table);
* the pusher's path is drawn on top.

Mapping between pixels and the table goes through two callables, so the same code serves the
simulator's pinhole camera (:class:`~kinemask_ros.camera.CameraModel`), a calibrated camera with
distortion (:mod:`kinemask_ros.table_frame`), or the canonical top-down frame. The object-height
approximation is the one of the object scene: every pixel of an object is taken on the plane at
``z`` (half the object height by default), so tall objects seen at a slant move their sides a
little less faithfully than their tops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kinemask_ros.camera import CameraModel
from kinemask_ros.push import PushStroke

#: ``(M, 2)`` pixels ``(u, v)`` -> ``(M, 2)`` table points ``(x, y)`` [m], and back
PixelsToTable = Callable[[np.ndarray], np.ndarray]
TableToPixels = Callable[[np.ndarray], np.ndarray]

PATH_RGB = (255, 255, 255)
PATH_EDGE_RGB = (20, 20, 20)


@dataclass(frozen=True)
class CameraMapping:
    """Pixel <-> table maps of one image at the plane height ``z`` [m]."""

    to_table: PixelsToTable
    to_pixels: TableToPixels
    width: int
    height: int

    @classmethod
    def from_camera(cls, camera: CameraModel, z: float = 0.015) -> "CameraMapping":
        """The simulator's (undistorted pinhole) camera at plane height ``z``."""
        return cls(lambda uv: camera.unproject_table(uv, z), lambda xy: camera.project_table(xy, z), camera.width, camera.height)


def _se2(p: np.ndarray) -> np.ndarray:
    """``(..., 3)`` poses -> ``(..., 3, 3)`` homogeneous transforms."""
    c, s = np.cos(p[..., 2]), np.sin(p[..., 2])
    T = np.zeros(p.shape[:-1] + (3, 3))
    T[..., 0, 0], T[..., 0, 1], T[..., 0, 2] = c, -s, p[..., 0]
    T[..., 1, 0], T[..., 1, 1], T[..., 1, 2] = s, c, p[..., 1]
    T[..., 2, 2] = 1.0
    return T


def fill_background(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``image (H, W, 3)`` with the ``hole (H, W)`` pixels replaced by their nearest non-hole pixel."""
    if not hole.any():
        return image.copy()
    if hole.all():
        return np.zeros_like(image)
    _, (ri, ci) = ndimage.distance_transform_edt(hole, return_indices=True)
    return image[ri, ci]


def warp_se2(image: np.ndarray, instance_mask: np.ndarray, poses: np.ndarray, mapping: CameraMapping,
             object_ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames of objects moved rigidly along SE(2) tracks.

    Args:
        image: ``(H, W, 3)`` uint8 first frame; instance_mask: ``(H, W)`` ids (0 background).
        poses: ``(n, K, Tv, 3)`` table-frame poses ``(x, y, yaw)`` [m, rad] of the objects
            ``object_ids`` (default ``1..K``) at the frames to draw; frame 0 is the pose measured
            in ``image``. Objects with non-finite poses stay where they are.
        mapping: pixel <-> table maps of ``image``.
    Returns ``frames (n, Tv, H, W, 3)`` uint8 and ``masks (n, Tv, H, W)`` of the moved ids (dtype of
    ``instance_mask`` when it is unsigned, else int32). Objects are drawn in order of their id.
    """
    img = np.asarray(image)
    ids = np.asarray(instance_mask)
    if img.ndim != 3 or img.shape[2] != 3 or ids.shape != img.shape[:2]:
        raise ValueError(f"image must be (H, W, 3) and instance_mask (H, W) of the same size, got {img.shape} and {ids.shape}")
    if (mapping.height, mapping.width) != ids.shape:
        raise ValueError(f"the camera mapping is for {mapping.width}x{mapping.height} images, the image is {ids.shape[1]}x{ids.shape[0]}")
    P = np.asarray(poses, float)
    if P.ndim != 4 or P.shape[-1] != 3:
        raise ValueError(f"poses must be (n, K, Tv, 3), got {P.shape}")
    n, K, Tv, _ = P.shape
    oids = list(range(1, K + 1)) if object_ids is None else [int(o) for o in object_ids]
    if len(oids) != K:
        raise ValueError(f"{len(oids)} object ids for {K} pose tracks")
    H, W = ids.shape
    dtype = ids.dtype if ids.dtype.kind == "u" else np.int32
    moving = np.isin(ids, oids)
    base = fill_background(img, moving)
    keep = ids * ~moving  # objects without tracks (e.g. the pusher) stay put
    frames = np.repeat(np.repeat(base[None, None], n, 0), Tv, 1)
    masks = np.repeat(np.repeat(keep.astype(dtype)[None, None], n, 0), Tv, 1)
    still = ~moving & (ids > 0)
    frames[:, :, still] = img[still]
    # the whole image in table coordinates once (destination pixels)
    vv, uu = np.mgrid[0:H, 0:W]
    for k, o in enumerate(oids):
        src = ids == o
        if not src.any():
            continue
        rows, cols = np.nonzero(src)
        xy0 = mapping.to_table(np.stack([cols + 0.5, rows + 0.5], 1).astype(float))
        for b in range(n):
            T0inv = np.linalg.inv(_se2(P[b, k, 0]))
            for t in range(Tv):
                dp = P[b, k, t] - P[b, k, 0]
                if not np.all(np.isfinite(dp)) or (abs(dp[0]) + abs(dp[1]) < 1e-5 and abs(dp[2]) < 1e-4):
                    frames[b, t, src] = img[src]  # no track, or it did not move: its pixels stay
                    masks[b, t, src] = o
                    continue
                M = _se2(P[b, k, t]) @ T0inv  # first frame -> frame t, on the table
                # destination window: where the object's pixels land, padded by a pixel
                xy = xy0 @ M[:2, :2].T + M[:2, 2]
                uv = mapping.to_pixels(xy)
                ok = np.all(np.isfinite(uv), 1)
                if not ok.any():
                    continue
                u0, v0 = np.floor(uv[ok].min(0)).astype(int) - 1
                u1, v1 = np.ceil(uv[ok].max(0)).astype(int) + 2
                u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, W), min(v1, H)
                if u0 >= u1 or v0 >= v1:
                    continue  # left the image
                du, dv = uu[v0:v1, u0:u1].ravel(), vv[v0:v1, u0:u1].ravel()
                dst = mapping.to_table(np.stack([du + 0.5, dv + 0.5], 1).astype(float))
                Minv = np.linalg.inv(M)
                back = mapping.to_pixels(dst @ Minv[:2, :2].T + Minv[:2, 2])
                c = np.floor(back[:, 0]).astype(np.int64)
                r = np.floor(back[:, 1]).astype(np.int64)
                inside = np.isfinite(back).all(1) & (r >= 0) & (r < H) & (c >= 0) & (c < W)
                hit = np.zeros_like(inside)
                hit[inside] = src[r[inside], c[inside]]
                frames[b, t, dv[hit], du[hit]] = img[r[hit], c[hit]]
                masks[b, t, dv[hit], du[hit]] = o
    return frames, masks


def draw_path(frames: np.ndarray, stroke: PushStroke, mapping: CameraMapping, width_px: int = 1) -> np.ndarray:
    """Draw the pusher's straight path (start -> end) on every frame ``(Tv, H, W, 3)`` in place; returns them."""
    s = np.array([stroke.x, stroke.y])
    d = np.array([np.cos(stroke.theta), np.sin(stroke.theta)])
    pts = s[None] + np.linspace(0.0, stroke.length, 200)[:, None] * d[None]
    uv = mapping.to_pixels(pts)
    uv = uv[np.all(np.isfinite(uv), 1)]
    H, W = frames.shape[1:3]
    # a dark edge keeps the path visible on light tables; small images get the bare line
    layers = ((PATH_EDGE_RGB, width_px + 1), (PATH_RGB, width_px)) if W >= 128 else ((PATH_RGB, width_px),)
    for colour, w in layers:
        for dx in range(-(w // 2), w - w // 2):
            for dy in range(-(w // 2), w - w // 2):
                c = np.floor(uv[:, 0]).astype(int) + dx
                r = np.floor(uv[:, 1]).astype(int) + dy
                ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
                frames[:, r[ok], c[ok]] = colour
    return frames


GOAL_RGB = (255, 215, 0)


def draw_goal(image: np.ndarray, goal_xy, mapping: CameraMapping, radius_m: float = 0.015) -> np.ndarray:
    """Draw the goal as a ring of ``radius_m`` on the table into ``image (H, W, 3)`` in place; returns it."""
    a = np.linspace(0.0, 2 * np.pi, 120, endpoint=False)
    pts = np.asarray(goal_xy, float).reshape(1, 2) + radius_m * np.stack([np.cos(a), np.sin(a)], 1)
    uv = mapping.to_pixels(pts)
    uv = uv[np.all(np.isfinite(uv), 1)]
    c, r = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    ok = (r >= 0) & (r < image.shape[0]) & (c >= 0) & (c < image.shape[1])
    image[r[ok], c[ok]] = GOAL_RGB
    return image


def preview_image(rf, strokes: list[PushStroke], mapping: CameraMapping, goal_xy=None) -> np.ndarray:
    """``(H, W, 3)`` uint8 for a viewer (RViz / rqt_image_view): the best rollout's final imagined frame
    with its pusher path and the goal drawn. ``rf`` holds the rollouts best first (``RolloutFrames``)."""
    img = np.ascontiguousarray(rf.frames[0, -1]).copy()
    draw_path(img[None], strokes[0], mapping, width_px=max(1, round(img.shape[1] / 320)))
    if goal_xy is not None:
        draw_goal(img, goal_xy, mapping)
    return img
