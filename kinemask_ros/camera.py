"""Pinhole camera model: the only place that maps table points to pixels (DESIGN §3).

Conventions
-----------
* World frame: metres, table plane z = 0, x right, y forward, z up.
* Camera frame: OpenCV (x right, y down, z forward along the optical axis).
* Pixel coordinates are *continuous*: pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)``,
  so its centre is ``(u, v) = (j + 0.5, i + 0.5)``. :func:`mask_centroid` follows the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def _check_finite_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class CameraConfig:
    """Fixed camera looking at the table.

    Attributes:
        width, height: image size in pixels.
        fov_deg: vertical field of view in degrees (square pixels).
        eye: camera position in the world [m].
        target: point the optical axis passes through [m].
        up: world direction that appears "up" in the image.
        near, far: clipping planes used by the renderer [m].
    """

    width: int = 32
    height: int = 32
    fov_deg: float = 15.19  # sees about 0.40 m x 0.40 m of table from 1.5 m
    eye: tuple[float, float, float] = (0.0, 0.0, 1.5)
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    near: float = 0.5
    far: float = 3.0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 4:
                raise ValueError(f"CameraConfig.{name} must be an int >= 4, got {v!r}")
        if not (math.isfinite(self.fov_deg) and 1.0 <= self.fov_deg <= 170.0):
            raise ValueError(f"CameraConfig.fov_deg must be in [1, 170], got {self.fov_deg!r}")
        _check_finite_positive("CameraConfig.near", self.near)
        if not (math.isfinite(self.far) and self.far > self.near):
            raise ValueError(f"CameraConfig.far must be > near ({self.near}), got {self.far!r}")
        for name in ("eye", "target", "up"):
            v = np.asarray(getattr(self, name), dtype=float)
            if v.shape != (3,) or not np.all(np.isfinite(v)):
                raise ValueError(f"CameraConfig.{name} must be 3 finite numbers, got {getattr(self, name)!r}")
        if np.linalg.norm(np.subtract(self.target, self.eye)) < 1e-6:
            raise ValueError("CameraConfig.eye and target must differ")

    @classmethod
    def oblique(cls, width: int = 640, height: int = 480, elevation_deg: float = 45.0, distance: float = 0.8,
                azimuth_deg: float = -90.0, fov_deg: float = 42.0, target: tuple[float, float, float] = (0.0, 0.0, 0.0),
                near: float = 0.05, far: float = 4.0) -> "CameraConfig":
        """A camera looking at ``target`` from ``distance`` [m] at ``elevation_deg`` above the table plane.

        ``azimuth_deg`` is the direction from the target to the camera, measured in the table plane
        from +x towards +y: the default -90 puts the camera on the -y side ("in front of the table",
        like a robot looking forward), so the image keeps the canonical orientation (image right =
        +x, image up = away from the camera). ``elevation_deg`` 90 is the straight top-down view
        (then ``up`` = +y, the default camera's orientation). ``fov_deg`` is vertical; 42 deg is a
        typical RGB-D colour camera (640x480 at 42 deg sees the 0.40 m table from 0.8 m at 45 deg).
        ``near``/``far`` [m] bound what the renderer draws and the depth it can measure.

        Example: ``CameraConfig.oblique(640, 480, elevation_deg=45, distance=0.8)``.
        """
        for name, v, lo, hi in (("elevation_deg", elevation_deg, 1.0, 90.0), ("distance", distance, 1e-3, 100.0),
                                ("azimuth_deg", azimuth_deg, -360.0, 360.0)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"CameraConfig.oblique: {name} must be in [{lo:g}, {hi:g}], got {v!r}")
        el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
        h = np.array([math.cos(az), math.sin(az), 0.0])  # horizontal direction target -> camera
        t = np.asarray(target, dtype=float)
        eye = t + distance * np.array([math.cos(el) * h[0], math.cos(el) * h[1], math.sin(el)])
        up = -h  # horizontal, pointing away from the camera: "up" in the image for every elevation
        if elevation_deg >= 90.0:
            eye = t + np.array([0.0, 0.0, distance])
        return cls(width=int(width), height=int(height), fov_deg=float(fov_deg), eye=tuple(float(v) for v in eye),
                   target=tuple(float(v) for v in t), up=tuple(float(v) for v in up), near=float(near), far=float(far))


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics ``K`` and world-to-camera pose ``(R, t)`` built from a :class:`CameraConfig`."""

    config: CameraConfig
    K: np.ndarray = field(init=False, repr=False)
    R: np.ndarray = field(init=False, repr=False)  # world -> camera rotation (3, 3)
    t: np.ndarray = field(init=False, repr=False)  # world -> camera translation (3,)

    def __post_init__(self) -> None:
        c = self.config
        f = (c.height / 2.0) / math.tan(math.radians(c.fov_deg) / 2.0)
        K = np.array([[f, 0.0, c.width / 2.0], [0.0, f, c.height / 2.0], [0.0, 0.0, 1.0]])
        eye, target, up = (np.asarray(v, dtype=float) for v in (c.eye, c.target, c.up))
        z = target - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, up)  # image right
        if np.linalg.norm(x) < 1e-9:
            raise ValueError("CameraConfig.up must not be parallel to the viewing direction")
        x /= np.linalg.norm(x)
        y = np.cross(z, x)  # image down
        R = np.stack([x, y, z])
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", -R @ eye)

    @property
    def width(self) -> int:
        return self.config.width

    @property
    def eye(self) -> np.ndarray:
        """Camera centre in the world (= table) frame ``(3,)`` [m]."""
        return -self.R.T @ self.t

    @property
    def D(self) -> np.ndarray:
        """Distortion ``(5,)`` (plumb_bob k1, k2, p1, p2, k3): the simulated pinhole camera has none."""
        return np.zeros(5)

    @property
    def T_cam_table(self) -> np.ndarray:
        """``(4, 4)`` pose of the table (= world) frame in the OpenCV camera frame: ``p_cam = T @ [p_table, 1]``."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    @property
    def height(self) -> int:
        return self.config.height

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` [m] -> continuous pixel coordinates ``(..., 2)`` as (u, v)."""
        p = np.asarray(points, dtype=float)
        cam = p @ self.R.T + self.t
        if np.any(cam[..., 2] <= 0):
            raise ValueError("a point lies behind the camera")
        uvw = cam @ self.K.T
        return uvw[..., :2] / uvw[..., 2:3]

    def project_table(self, xy: np.ndarray, z: float = 0.0) -> np.ndarray:
        """Table points ``(..., 2)`` at height ``z`` -> pixels ``(..., 2)``."""
        xy = np.asarray(xy, dtype=float)
        pts = np.concatenate([xy, np.full(xy.shape[:-1] + (1,), z)], axis=-1)
        return self.project(pts)

    def unproject_table(self, uv: np.ndarray, z: float = 0.0) -> np.ndarray:
        """Pixels ``(..., 2)`` -> table points ``(..., 2)`` on the plane at height ``z``."""
        uv = np.asarray(uv, dtype=float)
        rays_cam = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], axis=-1) @ np.linalg.inv(self.K).T
        rays_world = rays_cam @ self.R  # R^T applied to row vectors
        eye = -self.R.T @ self.t
        s = (z - eye[2]) / rays_world[..., 2]
        return (eye[:2] + s[..., None] * rays_world[..., :2])

    def table_velocity_to_pixels(self, xy: np.ndarray, v_xy: np.ndarray, z: float = 0.0) -> np.ndarray:
        """Planar velocity ``(..., 2)`` [m/s] at table point ``xy`` -> pixel velocity [px/s].

        Exact for the linearised projection (central difference of :meth:`project_table`).
        """
        xy = np.asarray(xy, dtype=float)
        v = np.asarray(v_xy, dtype=float)
        h = 1e-4
        return (self.project_table(xy + h * v, z) - self.project_table(xy - h * v, z)) / (2 * h)

    def pixels_per_metre(self, z: float = 0.0) -> float:
        """Scale at the image centre on the plane at height ``z``."""
        c = self.unproject_table(np.array([self.width / 2.0, self.height / 2.0]), z)
        return float(np.linalg.norm(self.project_table(c + np.array([1e-3, 0.0]), z) - self.project_table(c, z)) / 1e-3)

    # Renderer matrices (OpenGL, column-major flattened), used by the PyBullet scene.
    def gl_view_matrix(self) -> list[float]:
        # OpenGL camera looks down -z with y up: flip y and z of the OpenCV frame.
        flip = np.diag([1.0, -1.0, -1.0])
        V = np.eye(4)
        V[:3, :3] = flip @ self.R
        V[:3, 3] = flip @ self.t
        return V.T.reshape(-1).tolist()

    def gl_projection_matrix(self) -> list[float]:
        c = self.config
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        n, f = c.near, c.far
        P = np.zeros((4, 4))
        P[0, 0] = 2 * fx / c.width
        P[1, 1] = 2 * fy / c.height
        # TinyRenderer samples pixel corners, not centres: shift by half a pixel so that the
        # rendered masks agree with project() (checked in tests/test_scene.py).
        cx, cy = cx - 0.5, cy + 0.5
        P[0, 2] = 1 - 2 * cx / c.width
        P[1, 2] = 2 * cy / c.height - 1
        P[2, 2] = -(f + n) / (f - n)
        P[2, 3] = -2 * f * n / (f - n)
        P[3, 2] = -1.0
        return P.T.reshape(-1).tolist()


def mask_centroid(mask: np.ndarray) -> np.ndarray:
    """Centroid ``(u, v)`` of a boolean mask ``(H, W)`` in continuous pixel coordinates; NaN if empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return np.array([np.nan, np.nan])
    return np.array([cols.mean() + 0.5, rows.mean() + 0.5])
