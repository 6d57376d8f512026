"""Canonical table frame: any calibrated camera -> the model's metric top-down view (DESIGN §3).

The world model sees the table, not a camera. :class:`TableFrame` is a square, metric, top-down
raster of the workspace ``[-h, h]^2`` (table frame: x right, y forward, z up, origin at the table
centre). A real camera is described by :class:`CameraCalibration` (``sensor_msgs/CameraInfo``
intrinsics + plumb_bob distortion, and the table's pose in the camera's optical frame, e.g. from
the TF ``table -> camera optical frame``). :func:`rectify` warps the camera image into the
canonical frame through the table plane (a homography for an undistorted camera,
:func:`table_homography`; with distortion every canonical pixel is mapped exactly: canonical pixel
-> table point -> camera ray -> plumb_bob distortion -> sample). :func:`table_to_camera_pixels`
maps table metres back into the user's camera for drawing strokes and tracks;
:func:`camera_pixels_to_table` turns a clicked pixel into a table point.

Pixel convention (the project's, same as :mod:`kinemask_ros.camera`): *continuous* coordinates
``(u, v)``, pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` so its centre is
``(j + 0.5, i + 0.5)``. ROS / OpenCV put the centre of pixel (0, 0) at (0, 0); the CameraInfo
converters (:meth:`CameraCalibration.from_camera_info`, :meth:`CameraCalibration.to_camera_info`)
shift the principal point by half a pixel, so ``CameraCalibration.K`` is always in the
continuous convention (``K[0, 2] = cx_ros + 0.5``).

Object height (the approximation every user must know): the rectification is exact for points
*on* the plane ``z = plane_z`` only. Anything above it is seen along the camera's rays, so in the
canonical view an object of height ``h`` appears stretched away from the camera by
``h * cot(elevation)`` (its top and visible side faces land behind its footprint). Rectifying at
``plane_z = h / 2`` makes that stretch symmetric (footprint grown by ``h/2 * cot(elevation)``
towards and away from the camera), so mask centroids are unbiased; the extent along the viewing
direction is overestimated. With depth the footprint is exact: :func:`depth_to_table_points`
gives every pixel's 3-D table point, and :func:`splat_top_down` drops them vertically onto the
canonical raster (the object's base is the vertical projection of what the camera sees of it).

Pure numpy, no rclpy (DESIGN §2). OpenCV is not needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinemask_ros.camera import CameraConfig, CameraModel

DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8}
INTERPOLATIONS = ("linear", "nearest")


# ----------------------------------------------------------------------------- canonical frame
@dataclass(frozen=True)
class TableFrame:
    """The model's canonical, metric, top-down view of the workspace.

    Attributes:
        half_extent: the view covers the square ``[-h, h]^2`` of the table [m], centred at the
            table origin (default 0.20: the 0.40 m table).
        resolution: pixels per side ``R`` (DESIGN §3 asks >= 64 for the v2 object model, i.e.
            <= 6.25 mm per pixel at the default extent; down to 8 is accepted, e.g. 32 for the
            v1 raster model).

    Orientation is that of the default top-down simulator camera (:class:`CameraConfig`: eye
    above the origin, ``up`` = +y): image right = +x, image down = -y. So ``u = (x + h) / s``,
    ``v = (h - y) / s`` with ``s`` = :attr:`pixel_size`, continuous pixel coordinates.
    """

    half_extent: float = 0.20
    resolution: int = 64

    def __post_init__(self) -> None:
        h = self.half_extent
        if isinstance(h, bool) or not (isinstance(h, (int, float, np.floating)) and math.isfinite(h) and 0.0 < h <= 10.0):
            raise ValueError(f"TableFrame.half_extent must be a number in (0, 10] m, got {h!r}")
        r = self.resolution
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 8 <= r <= 4096:
            raise ValueError(f"TableFrame.resolution must be an int in [8, 4096] (>= 64 for the v2 model), got {r!r}")

    @property
    def pixel_size(self) -> float:
        """Metres per canonical pixel (``2 h / R``; 6.25 mm at the defaults)."""
        return 2.0 * self.half_extent / self.resolution

    @property
    def shape(self) -> tuple[int, int]:
        return (self.resolution, self.resolution)

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """Table points ``(..., 2)`` [m] -> canonical continuous pixels ``(..., 2)`` as ``(u, v)``."""
        xy = np.asarray(xy, dtype=float)
        s, h = self.pixel_size, self.half_extent
        return np.stack([(xy[..., 0] + h) / s, (h - xy[..., 1]) / s], axis=-1)

    def to_table(self, uv: np.ndarray) -> np.ndarray:
        """Canonical continuous pixels ``(..., 2)`` -> table points ``(..., 2)`` [m]."""
        uv = np.asarray(uv, dtype=float)
        s, h = self.pixel_size, self.half_extent
        return np.stack([uv[..., 0] * s - h, h - uv[..., 1] * s], axis=-1)

    def pixel_matrix(self) -> np.ndarray:
        """``(3, 3)`` affine map canonical pixel ``(u, v, 1)`` -> table ``(x, y, 1)``."""
        s, h = self.pixel_size, self.half_extent
        return np.array([[s, 0.0, -h], [0.0, -s, h], [0.0, 0.0, 1.0]])

    def pixel_centres(self) -> np.ndarray:
        """``(R, R, 2)`` table points [m] of the canonical pixel centres (row i, column j)."""
        c = np.arange(self.resolution) + 0.5
        uu, vv = np.meshgrid(c, c)
        return self.to_table(np.stack([uu, vv], axis=-1))

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """``(...,)`` bool: table point inside the canonical square."""
        xy = np.asarray(xy, dtype=float)
        return np.all(np.abs(xy) <= self.half_extent, axis=-1)

    def camera_model(self, eye_height: float = 1.5) -> CameraModel:
        """A pinhole :class:`CameraModel` whose image of the table plane ``z = 0`` IS this frame.

        A camera ``eye_height`` [m] straight above the origin, ``up`` = +y, ``R x R`` pixels, with
        the field of view ``2 atan(h / eye_height)``: for points on the plane ``z = 0`` its
        projection equals :meth:`to_pixels` exactly (a top-down pinhole maps a parallel plane by a
        pure scaling). The canonical frame itself is orthographic, which a pinhole cannot be:
        points at height ``z`` project ``eye_height / (eye_height - z)`` times further from the
        centre (2 % for a 3 cm object top at 1.5 m). The defaults (``h`` = 0.20, 1.5 m) give
        the simulator's default camera (``fov_deg`` 15.19) at ``R x R``.
        """
        if not (math.isfinite(eye_height) and eye_height > 0):
            raise ValueError(f"TableFrame.camera_model: eye_height must be > 0 m, got {eye_height!r}")
        fov = 2.0 * math.degrees(math.atan(self.half_extent / eye_height))
        cfg = CameraConfig(width=int(self.resolution), height=int(self.resolution), fov_deg=fov, eye=(0.0, 0.0, float(eye_height)),
                           target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), near=min(0.5, eye_height / 4), far=max(3.0, 2 * eye_height))
        return CameraModel(cfg)


# ----------------------------------------------------------------------------- calibration
def _as_matrix(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.array(value, dtype=float).reshape(shape)
    except (TypeError, ValueError):
        raise ValueError(f"CameraCalibration.{name} must be {int(np.prod(shape))} numbers of shape {shape}, got {value!r}") from None
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class CameraCalibration:
    """A calibrated camera looking at the table.

    Attributes:
        K: ``(3, 3)`` intrinsics in the project's continuous pixel convention (see the module doc;
            :meth:`from_camera_info` converts from ROS).
        D: distortion coefficients, plumb_bob ``(k1, k2, p1, p2, k3)`` (5) or rational_polynomial
            ``(k1, k2, p1, p2, k3, k4, k5, k6)`` (8); ``()`` or all zeros = none.
        width, height: image size [px].
        T_cam_table: ``(4, 4)`` pose of the table frame (x right, y forward, z up, origin at the
            table centre, metres) in the OpenCV camera optical frame (x right, y down, z forward):
            ``p_cam = T_cam_table @ [p_table, 1]``. This is the TF transform ``camera -> table``
            (the inverse of ``table -> camera``, which gives the camera's pose on the table).

    Construction validates: finite positive focal lengths, a rotation matrix, the camera above
    the table plane and looking down at it. :meth:`check_workspace` and :meth:`check_image`
    check a frame and an image against it; every error names the fix.
    """

    K: np.ndarray
    D: np.ndarray
    width: int
    height: int
    T_cam_table: np.ndarray

    def __post_init__(self) -> None:
        K = _as_matrix("K", self.K, (3, 3))
        d = np.array(self.D if self.D is not None else (), dtype=float).reshape(-1)
        if d.size == 0:
            d = np.zeros(5)
        if d.size not in (4, 5, 8) or not np.all(np.isfinite(d)):
            raise ValueError(f"CameraCalibration.D must be 5 finite plumb_bob coefficients (k1, k2, p1, p2, k3) or 8 rational_polynomial "
                             f"ones, got {d.tolist()!r}")
        if d.size == 4:
            d = np.concatenate([d, [0.0]])
        d.setflags(write=False)
        T = _as_matrix("T_cam_table", self.T_cam_table, (4, 4))
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", d)
        object.__setattr__(self, "T_cam_table", T)
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 16384:
                raise ValueError(f"CameraCalibration.{name} must be an int in [1, 16384] px, got {v!r} "
                                 "(CameraInfo width/height 0 means the driver has not filled it in)")
            object.__setattr__(self, name, int(v))
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        if not (np.all(np.isfinite(K)) and fx > 0 and fy > 0):
            raise ValueError(f"CameraCalibration.K has focal lengths fx={fx!r}, fy={fy!r}: they must be finite and > 0; the camera is "
                             "not calibrated (CameraInfo.k all zeros?) - calibrate it (e.g. camera_calibration) or set the intrinsics")
        if abs(K[1, 0]) > 1e-9 or abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9 or abs(K[2, 2] - 1.0) > 1e-9:
            raise ValueError(f"CameraCalibration.K must be upper triangular with K[2, 2] = 1, got {K.tolist()!r} (row-major CameraInfo.k?)")
        if not (-self.width <= cx <= 2 * self.width and -self.height <= cy <= 2 * self.height):
            raise ValueError(f"CameraCalibration.K principal point ({cx:g}, {cy:g}) is far outside the {self.width}x{self.height} image: "
                             "the intrinsics belong to another resolution - rescale K or use the matching CameraInfo")
        if not np.all(np.isfinite(T)) or np.max(np.abs(T[3] - [0, 0, 0, 1])) > 1e-9:
            raise ValueError(f"CameraCalibration.T_cam_table must be a finite 4x4 rigid transform with last row [0, 0, 0, 1], got {T.tolist()!r}")
        R = T[:3, :3]
        if np.max(np.abs(R @ R.T - np.eye(3))) > 1e-6 or np.linalg.det(R) < 0:
            raise ValueError("CameraCalibration.T_cam_table rotation is not a rotation matrix (R R^T != I or det < 0): "
                             "normalise the quaternion of the table pose / check the axis order")
        eye = self.camera_position
        if eye[2] <= 0.0:
            raise ValueError(f"the camera is below the table plane (z = {eye[2]:.3f} m in the table frame): T_cam_table is probably "
                             "inverted (pass the table's pose in the camera frame, i.e. the TF camera -> table, not table -> camera) "
                             "or the table frame's z axis points down (z must point up, out of the table)")
        axis = self.optical_axis
        if axis[2] > -1e-3:
            raise ValueError(f"the camera looks away from the table (optical axis {np.round(axis, 3).tolist()} in the table frame has "
                             "no downward component): point the camera at the table, or fix the table pose's rotation "
                             "(camera optical frame: z forward, y down)")

    # -------------------------------------------------------------- constructors
    @classmethod
    def from_camera_model(cls, camera: CameraModel) -> "CameraCalibration":
        """The simulator's pinhole camera (exact: same K, no distortion, world frame = table frame)."""
        return cls(K=np.array(camera.K, dtype=float), D=np.zeros(5), width=camera.width, height=camera.height,
                   T_cam_table=camera.T_cam_table)

    @classmethod
    def from_camera_info(cls, info=None, *, T_cam_table, k=None, d=None, distortion_model: str | None = None,
                         width: int | None = None, height: int | None = None) -> "CameraCalibration":
        """From a ``sensor_msgs/CameraInfo`` (message, dict or plain fields) and the table pose.

        ``info`` may be a CameraInfo message or any object / dict with ``k`` (9, row-major, ROS
        pixel convention), ``d``, ``distortion_model``, ``width``, ``height``; keyword fields
        override it (so this stays rclpy-free). ``T_cam_table`` ``(4, 4)``: table pose in the
        camera optical frame (:func:`pose_to_matrix` builds it from a TF translation + quaternion).
        The principal point is shifted by +0.5 px into the continuous convention.
        """
        def get(name, given):
            if given is not None:
                return given
            if info is None:
                return None
            return info.get(name) if isinstance(info, dict) else getattr(info, name, None)

        k, d, model = get("k", k), get("d", d), get("distortion_model", distortion_model)
        width, height = get("width", width), get("height", height)
        if k is None or width is None or height is None:
            raise ValueError("CameraCalibration.from_camera_info needs k, width and height (a CameraInfo or those fields)")
        model = (model or "plumb_bob").strip() or "plumb_bob"
        d = np.asarray(d if d is not None else (), dtype=float).reshape(-1)
        if model not in DISTORTION_MODELS:
            raise ValueError(f"CameraInfo.distortion_model {model!r} is not supported: use one of {sorted(DISTORTION_MODELS)} "
                             "(rectify the image first, e.g. image_proc, and pass its CameraInfo with d = 0)")
        if d.size and d.size != DISTORTION_MODELS[model] and not (model == "plumb_bob" and d.size == 4):
            raise ValueError(f"CameraInfo.d has {d.size} coefficients, {model} needs {DISTORTION_MODELS[model]}")
        K = np.array(k, dtype=float).reshape(3, 3).copy()
        K[0, 2] += 0.5
        K[1, 2] += 0.5
        return cls(K=K, D=d, width=int(width), height=int(height), T_cam_table=np.asarray(T_cam_table, dtype=float))

    def to_camera_info(self) -> dict:
        """CameraInfo fields in the ROS convention: ``k``, ``d``, ``r``, ``p`` (row-major lists),
        ``width``, ``height``, ``distortion_model`` (``P = [K' | 0]``, monocular, not rectified)."""
        K = np.array(self.K, dtype=float)
        K[0, 2] -= 0.5
        K[1, 2] -= 0.5
        P = np.zeros((3, 4))
        P[:, :3] = K
        model = "rational_polynomial" if self.D.size == 8 else "plumb_bob"
        return {"k": K.reshape(-1).tolist(), "d": self.D.tolist(), "r": np.eye(3).reshape(-1).tolist(), "p": P.reshape(-1).tolist(),
                "width": self.width, "height": self.height, "distortion_model": model}

    # -------------------------------------------------------------- geometry
    @property
    def R(self) -> np.ndarray:
        """``(3, 3)`` table -> camera rotation."""
        return self.T_cam_table[:3, :3]

    @property
    def t(self) -> np.ndarray:
        """``(3,)`` table -> camera translation [m]."""
        return self.T_cam_table[:3, 3]

    @property
    def camera_position(self) -> np.ndarray:
        """Camera centre in the table frame ``(3,)`` [m]."""
        return -self.R.T @ self.t

    @property
    def optical_axis(self) -> np.ndarray:
        """Unit viewing direction in the table frame ``(3,)``."""
        return self.R.T @ np.array([0.0, 0.0, 1.0])

    @property
    def T_table_cam(self) -> np.ndarray:
        """``(4, 4)`` camera pose in the table frame (the TF ``table -> camera``)."""
        T = np.eye(4)
        T[:3, :3] = self.R.T
        T[:3, 3] = self.camera_position
        return T

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.D != 0.0))

    def distort(self, xn: np.ndarray) -> np.ndarray:
        """Normalised ideal image coordinates ``(..., 2)`` -> distorted normalised coordinates."""
        xn = np.asarray(xn, dtype=float)
        if not self.has_distortion:
            return xn
        k1, k2, p1, p2, k3, k4, k5, k6 = np.concatenate([self.D, np.zeros(8 - self.D.size)])
        x, y = xn[..., 0], xn[..., 1]
        r2 = x * x + y * y
        rad = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xd = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return np.stack([xd, yd], axis=-1)

    def undistort(self, xd: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Distorted normalised coordinates ``(..., 2)`` -> ideal ones (Newton on the plumb_bob model).

        Points where the model is not invertible (far outside the calibrated field) are NaN.
        """
        xd = np.asarray(xd, dtype=float)
        if not self.has_distortion:
            return xd
        k1, k2, p1, p2, k3, k4, k5, k6 = np.concatenate([self.D, np.zeros(8 - self.D.size)])
        x, y = xd[..., 0].copy(), xd[..., 1].copy()
        for _ in range(iterations):
            r2 = x * x + y * y
            a = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
            b = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
            rad = a / b
            da = k1 + r2 * (2 * k2 + 3 * k3 * r2)
            db = k4 + r2 * (2 * k5 + 3 * k6 * r2)
            drad = (da * b - a * db) / (b * b)  # d rad / d r2
            fx = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd[..., 0]
            fy = y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - xd[..., 1]
            jxx = rad + 2 * x * x * drad + 2 * p1 * y + 6 * p2 * x
            jxy = 2 * x * y * drad + 2 * p1 * x + 2 * p2 * y
            jyy = rad + 2 * y * y * drad + 6 * p1 * y + 2 * p2 * x
            det = jxx * jyy - jxy * jxy
            with np.errstate(divide="ignore", invalid="ignore"):
                x = x - (jyy * fx - jxy * fy) / det
                y = y - (jxx * fy - jxy * fx) / det
            if not (np.nanmax(np.abs(fx), initial=0.0) > 1e-13 or np.nanmax(np.abs(fy), initial=0.0) > 1e-13):
                break  # converged (quadratically: the step just taken is far below 1e-13)
        out = np.stack([x, y], axis=-1)
        bad = ~np.all(np.isfinite(out), axis=-1) | (np.linalg.norm(self.distort(out) - xd, axis=-1) > 1e-9 * (1 + np.linalg.norm(xd, axis=-1)))
        out[bad] = np.nan
        return out

    def camera_points_to_pixels(self, p_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points ``(..., 3)`` [m] -> continuous pixels ``(..., 2)`` (NaN behind the camera)."""
        p = np.asarray(p_cam, dtype=float)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xn = p[..., :2] / z[..., None]
        xn = np.where((z > 1e-9)[..., None], xn, np.nan)
        xd = self.distort(xn)
        K = self.K
        u = K[0, 0] * xd[..., 0] + K[0, 1] * xd[..., 1] + K[0, 2]
        v = K[1, 1] * xd[..., 1] + K[1, 2]
        return np.stack([u, v], axis=-1)

    def pixel_rays(self, uv: np.ndarray) -> np.ndarray:
        """Continuous pixels ``(..., 2)`` -> camera-frame rays ``(..., 3)`` with z = 1 (undistorted)."""
        uv = np.asarray(uv, dtype=float)
        K = self.K
        yd = (uv[..., 1] - K[1, 2]) / K[1, 1]
        xd = (uv[..., 0] - K[0, 2] - K[0, 1] * yd) / K[0, 0]
        xn = self.undistort(np.stack([xd, yd], axis=-1))
        return np.concatenate([xn, np.ones(xn.shape[:-1] + (1,))], axis=-1)

    def visible_fraction(self, frame: TableFrame, plane_z: float = 0.0, samples: int = 41) -> float:
        """Fraction of the canonical square at height ``plane_z`` that lands inside the image."""
        c = (np.arange(samples) + 0.5) / samples * 2 * frame.half_extent - frame.half_extent
        xx, yy = np.meshgrid(c, c)
        uv = table_to_camera_pixels(np.stack([xx, yy], -1), self, z=plane_z)
        inside = _inside(uv, self.width, self.height)
        return float(inside.mean())

    def check_workspace(self, frame: TableFrame, plane_z: float = 0.0, min_visible: float = 0.9) -> float:
        """Raise ``ValueError`` (with the visible fraction) unless ``min_visible`` of the workspace is in view; returns the fraction."""
        f = self.visible_fraction(frame, plane_z)
        if f < min_visible:
            uv = table_to_camera_pixels(np.zeros(2), self, z=plane_z)
            raise ValueError(f"only {100 * f:.0f} % of the {2 * frame.half_extent:.2f} m workspace is in the camera's "
                             f"{self.width}x{self.height} view (need {100 * min_visible:.0f} %; the table centre projects to "
                             f"({uv[0]:.0f}, {uv[1]:.0f}) px): aim the camera at the table centre, move it further away or "
                             f"use a wider lens, or shrink TableFrame.half_extent; if the table is in view, the table pose is wrong "
                             f"(T_cam_table is the table's pose in the camera optical frame, the TF camera -> table: an inverted "
                             f"transform or a non-optical camera frame gives this)")
        return f

    def check_image(self, image: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``image`` is ``(height, width[, C])``."""
        shape = np.shape(image)
        if len(shape) < 2 or shape[0] != self.height or shape[1] != self.width:
            hw = f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(shape)
            raise ValueError(f"the image is {hw} but its CameraInfo says {self.width}x{self.height}: pair each image with the "
                             "CameraInfo of the same stream (after any resize/crop, scale K and width/height with it)")


def pose_to_matrix(translation, quaternion_xyzw) -> np.ndarray:
    """``(4, 4)`` from a translation ``(3,)`` and a unit quaternion ``(x, y, z, w)`` (TF order)."""
    q = np.asarray(quaternion_xyzw, dtype=float).reshape(4)
    n = np.linalg.norm(q)
    if not (np.isfinite(n) and n > 1e-9):
        raise ValueError(f"quaternion {q.tolist()} is zero or not finite: fill in the transform's rotation")
    x, y, z, w = q / n
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(translation, dtype=float).reshape(3)
    return T


def matrix_to_pose(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(4, 4)`` -> translation ``(3,)`` and quaternion ``(x, y, z, w)``."""
    T = np.asarray(T, dtype=float)
    R = T[:3, :3]
    tr = np.trace(R)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k]) * 2
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    q = np.array(q)
    return T[:3, 3].copy(), q / np.linalg.norm(q)


# ----------------------------------------------------------------------------- point maps
def _inside(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.isfinite(uv).all(-1) & (uv[..., 0] >= 0) & (uv[..., 0] <= width) & (uv[..., 1] >= 0) & (uv[..., 1] <= height)


def table_to_camera_pixels(xy: np.ndarray, calib: CameraCalibration, z: float | np.ndarray = 0.0) -> np.ndarray:
    """Table points ``(..., 2)`` [m] at height ``z`` [m] (scalar or ``(...)``) -> camera pixels ``(..., 2)``.

    Continuous pixel coordinates with distortion applied; NaN for points behind the camera.
    Use it to draw strokes, tracks and goals in the user's camera image.
    """
    xy = np.asarray(xy, dtype=float)
    zz = np.broadcast_to(np.asarray(z, dtype=float), xy.shape[:-1])
    p = np.concatenate([xy, zz[..., None]], axis=-1)
    return calib.camera_points_to_pixels(p @ calib.R.T + calib.t)


def same_camera(calib: CameraCalibration, model, z: float = 0.0, tol_px: float = 0.05, half_extent: float = 0.2) -> bool:
    """True when ``calib`` and ``model`` (a :class:`~kinemask_ros.camera.CameraModel` of the same image
    size) put every table point of ``[-half_extent, half_extent]^2`` at height ``z`` on the same pixel
    within ``tol_px``: the image needs no rectification to be read with ``model``."""
    if (int(calib.width), int(calib.height)) != (int(model.width), int(model.height)):
        return False
    g = np.linspace(-half_extent, half_extent, 9)
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    d = np.abs(model.project_table(xy, z) - table_to_camera_pixels(xy, calib, z))
    return bool(np.all(np.isfinite(d)) and d.max() <= tol_px)


def camera_pixels_to_table(uv: np.ndarray, calib: CameraCalibration, z: float | np.ndarray = 0.0) -> np.ndarray:
    """Camera pixels ``(..., 2)`` (continuous, distorted) -> table points ``(..., 2)`` on the plane at height ``z``.

    The pixel's ray is undistorted and intersected with the plane; NaN where it misses (a ray
    parallel to or pointing away from the plane). For a pixel-prompted target, pass the object's
    mid-height (or its measured height from depth) as ``z``.
    """
    rays = calib.pixel_rays(uv) @ calib.R  # camera -> table (R^T on row vectors)
    eye = calib.camera_position
    zz = np.asarray(z, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (zz - eye[2]) / rays[..., 2]
    s = np.where(s > 0, s, np.nan)
    return eye[:2] + s[..., None] * rays[..., :2]


def table_homography(calib: CameraCalibration, frame: TableFrame, plane_z: float = 0.0) -> np.ndarray:
    """``(3, 3)`` homography canonical pixel ``(u, v, 1)`` -> ideal (undistorted) camera pixel, for the plane ``z = plane_z``.

    ``H = K [r1 r2 (r3 plane_z + t)] A`` with ``A`` = :meth:`TableFrame.pixel_matrix`. Exact for
    points on that plane. Object-height approximation: a footprint is taken at the plane height,
    so an object of height ``h`` rectified at ``plane_z = 0`` is stretched away from the camera
    by ``h cot(elevation)``; ``plane_z = h / 2`` centres that stretch on the object (unbiased
    centroids); with depth, use the base (:func:`depth_to_table_points`, :func:`splat_top_down`).
    With distortion the homography maps to *undistorted* pixels; :func:`rectify` applies the
    distortion exactly.
    """
    R, t = calib.R, calib.t
    M = np.stack([R[:, 0], R[:, 1], R[:, 2] * float(plane_z) + t], axis=1)
    H = calib.K @ M @ frame.pixel_matrix()
    return H / H[2, 2] if abs(H[2, 2]) > 1e-12 else H


# ----------------------------------------------------------------------------- rectification
class Rectifier:
    """Precomputed sampling maps from one camera into one canonical frame (reuse it per frame).

    Attributes:
        uv: ``(S R, S R, 2)`` camera continuous pixel sampled for each canonical sub-pixel
            (``S`` = :attr:`supersample`).
        valid: ``(R, R)`` bool, canonical pixels whose samples all fall inside the image (the
            others get the fill value, for both interpolations).
        supersample: linear interpolation averages ``S x S`` bilinear samples per canonical
            pixel (an area filter, so a 640x480 view does not alias down to 64x64); nearest
            interpolation always samples the canonical pixel centre.
    """

    def __init__(self, calib: CameraCalibration, frame: TableFrame, plane_z: float = 0.0, supersample: int | None = None) -> None:
        if not math.isfinite(plane_z):
            raise ValueError(f"plane_z must be finite, got {plane_z!r}")
        self.calib, self.frame, self.plane_z = calib, frame, float(plane_z)
        self.centres = self._map(1)
        if supersample is None:
            # camera pixels per canonical pixel at the image of the frame centre, rounded up
            c = frame.resolution // 2
            row = self.centres[c, max(c - 1, 0):c + 1]
            col = self.centres[max(c - 1, 0):c + 1, c]
            step = max(np.linalg.norm(row[-1] - row[0]), np.linalg.norm(col[-1] - col[0]))
            supersample = int(np.clip(math.ceil(step - 1e-6) if np.isfinite(step) else 1, 1, 8))
        if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or not 1 <= supersample <= 16:
            raise ValueError(f"supersample must be an int in [1, 16] or None, got {supersample!r}")
        self.supersample = int(supersample)
        self.uv = self.centres if self.supersample == 1 else self._map(self.supersample)
        S, R = self.supersample, frame.resolution
        ok = _inside(self.uv, calib.width, calib.height)
        self.valid = ok.reshape(R, S, R, S).all(axis=(1, 3)) & _inside(self.centres, calib.width, calib.height)

    def _map(self, s: int) -> np.ndarray:
        n = self.frame.resolution * s
        c = (np.arange(n) + 0.5) / s
        uu, vv = np.meshgrid(c, c)
        xy = self.frame.to_table(np.stack([uu, vv], -1))
        uv = table_to_camera_pixels(xy, self.calib, z=self.plane_z)
        # a strongly distorted model folds back far outside the image: keep only rays whose
        # distorted image is consistent (undistorting the pixel gives the same ray back)
        if self.calib.has_distortion:
            back = camera_pixels_to_table(uv, self.calib, z=self.plane_z)
            uv[~(np.linalg.norm(back - xy, axis=-1) < 1e-6)] = np.nan
        return uv

    def __call__(self, image: np.ndarray, interpolation: str = "linear", fill: float = 0) -> np.ndarray:
        """Warp ``image`` ``(H, W[, C])`` (uint8 RGB, float depth, int ids) into ``(R, R[, C])``.

        ``"linear"``: bilinear with the area filter, computed in float32 and cast back to the
        input dtype (rounded for integers); NaN in a float image spreads to the canonical
        pixels that sample it (turn zero depth holes into NaN first). ``"nearest"``: the camera
        pixel under each canonical pixel centre (use it for instance ids). Pixels outside the
        image get ``fill``; :attr:`valid` says which.
        """
        self.calib.check_image(image)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        img = np.asarray(image)
        R = self.frame.resolution
        if interpolation == "nearest":
            uv = self.centres
            j = np.clip(np.floor(np.nan_to_num(uv[..., 0], nan=0.0)).astype(np.int64), 0, img.shape[1] - 1)
            i = np.clip(np.floor(np.nan_to_num(uv[..., 1], nan=0.0)).astype(np.int64), 0, img.shape[0] - 1)
            out = img[i, j].copy()
            out[~self.valid] = fill
            return out
        op = self._linear_operator()
        flat = img.reshape(img.shape[0] * img.shape[1], -1).astype(np.float32, copy=False)
        if op[0] == "sparse":
            val = op[1] @ flat
        else:  # numpy fallback: weighted scatter-add of the 4 S^2 samples per canonical pixel
            _, rows, cols, w = op
            g = flat[cols] * w[:, None]
            val = np.stack([np.bincount(rows, weights=g[:, c], minlength=R * R) for c in range(flat.shape[1])], -1)
        val = np.asarray(val, dtype=np.float32).reshape((R, R) + img.shape[2:])
        if np.issubdtype(img.dtype, np.integer):
            info = np.iinfo(img.dtype)
            val = np.clip(np.rint(val), info.min, info.max)
        out = val.astype(img.dtype)
        out[~self.valid] = fill
        return out

    def _linear_operator(self):
        """The warp as a sparse ``(R^2, H W)`` matrix: bilinear weights of every sub-sample, / S^2 (built once)."""
        if getattr(self, "_op", None) is not None:
            return self._op
        H, W = self.calib.height, self.calib.width
        R, S = self.frame.resolution, self.supersample
        x = np.clip(np.nan_to_num(self.uv[..., 0], nan=0.0) - 0.5, 0.0, W - 1.0)  # array index coordinates
        y = np.clip(np.nan_to_num(self.uv[..., 1], nan=0.0) - 0.5, 0.0, H - 1.0)
        j0 = np.clip(np.floor(x).astype(np.int64), 0, max(W - 2, 0))
        i0 = np.clip(np.floor(y).astype(np.int64), 0, max(H - 2, 0))
        j1, i1 = np.minimum(j0 + 1, W - 1), np.minimum(i0 + 1, H - 1)
        fx, fy = x - j0, y - i0
        rr, cc = np.meshgrid(np.arange(R * S) // S, np.arange(R * S) // S, indexing="ij")
        row = (rr * R + cc).reshape(-1)
        rows = np.tile(row, 4)
        cols = np.concatenate([(i0 * W + j0).reshape(-1), (i0 * W + j1).reshape(-1), (i1 * W + j0).reshape(-1), (i1 * W + j1).reshape(-1)])
        w = np.concatenate([((1 - fx) * (1 - fy)).reshape(-1), (fx * (1 - fy)).reshape(-1), ((1 - fx) * fy).reshape(-1),
                            (fx * fy).reshape(-1)]) / (S * S)
        keep = w > 0  # no explicit zeros: NaN spreads only from samples that carry weight
        rows, cols, w = rows[keep], cols[keep], w[keep].astype(np.float32)
        try:
            from scipy.sparse import csr_matrix

            self._op = ("sparse", csr_matrix((w, (rows, cols)), shape=(R * R, H * W), dtype=np.float32))
        except ImportError:  # pragma: no cover - scipy is optional
            self._op = ("numpy", rows, cols, w)
        return self._op


def rectify(image: np.ndarray, calib: CameraCalibration, frame: TableFrame, plane_z: float = 0.0, interpolation: str = "linear",
            fill: float = 0, return_valid: bool = False, supersample: int | None = None):
    """Warp a camera image ``(H, W[, C])`` into the canonical frame ``(R, R[, C])`` through the plane ``z = plane_z``.

    RGB uint8 / grey / float depth with ``"linear"`` (area-filtered bilinear), instance ids with
    ``"nearest"``. Undistorts with the calibration's plumb_bob model. Out-of-view pixels get
    ``fill``; with ``return_valid`` the ``(R, R)`` bool validity mask is returned too. For a
    stream, build a :class:`Rectifier` once and call it per frame. See :func:`table_homography`
    for the object-height approximation (``plane_z``).
    """
    r = Rectifier(calib, frame, plane_z, supersample=supersample)
    out = r(image, interpolation=interpolation, fill=fill)
    return (out, r.valid.copy()) if return_valid else out


# ----------------------------------------------------------------------------- depth
def depth_to_table_points(depth: np.ndarray, calib: CameraCalibration) -> np.ndarray:
    """Depth ``(H, W)`` [m, z along the optical axis] -> table-frame points ``(H, W, 3)`` [m].

    Invalid depth (NaN, <= 0, inf) gives NaN points. ``[..., 2]`` is the height above the table.
    """
    calib.check_image(depth)
    d = np.asarray(depth, dtype=float)
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    H, W = d.shape
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = calib.pixel_rays(np.stack([jj, ii], -1))
    p_cam = rays * d[..., None]
    return (p_cam - calib.t) @ calib.R  # R^T (p - t) on row vectors


def height_above_table(depth: np.ndarray, calib: CameraCalibration) -> np.ndarray:
    """``(H, W)`` height [m] of each depth pixel above the table plane (NaN where depth is invalid)."""
    return depth_to_table_points(depth, calib)[..., 2]


def splat_top_down(points: np.ndarray, values: np.ndarray, frame: TableFrame, fill: float = 0, min_height: float | None = None) -> np.ndarray:
    """Drop 3-D table points vertically onto the canonical raster (orthographic footprint).

    ``points`` ``(..., 3)`` table frame [m], ``values`` ``(...)`` or ``(..., C)`` (e.g. instance
    ids); where several points fall into one canonical pixel the highest wins (the top face).
    Points below ``min_height`` (if given) or with NaN are skipped. Returns ``(R, R[, C])``;
    pixels no point reached get ``fill``. This is the depth-based, height-exact footprint.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 3)
    vals = np.asarray(values)
    lead = np.asarray(points).shape[:-1]
    v = vals.reshape((int(np.prod(lead)),) + vals.shape[len(lead):])
    ok = np.isfinite(p).all(-1)
    if min_height is not None:
        ok &= p[:, 2] >= min_height
    uv = frame.to_pixels(p[:, :2])
    R = frame.resolution
    j, i = np.floor(uv[:, 0]), np.floor(uv[:, 1])
    ok &= (j >= 0) & (j < R) & (i >= 0) & (i < R)
    p, v, j, i = p[ok], v[ok], j[ok].astype(np.int64), i[ok].astype(np.int64)
    out = np.full((R, R) + v.shape[1:], fill, dtype=vals.dtype)
    order = np.argsort(p[:, 2], kind="stable")  # low first, so the highest point is written last
    out[i[order], j[order]] = v[order]
    return out
