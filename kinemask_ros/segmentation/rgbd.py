"""RGB-D segmenter: objects are what stands above the table plane (numpy + scipy.ndimage).

Works on a real registered RGB-D camera: a depth image aligned with the colour image (metres
along the optical axis; 16-bit integer images are millimetres, the ROS ``16UC1`` convention), the
intrinsics ``K`` (+ optional plumb-bob distortion ``D``) and the table's pose in the camera frame
``T_cam_table`` (4x4, table points -> camera points; table z is up, the plane is z = 0).

Steps of :meth:`RgbdSegmenter.analyse`:

1. **Back-projection**: every pixel with valid depth (finite, within ``[min_depth, max_depth]``;
   NaN, 0 and negative are holes) becomes a camera-frame point ``X = depth * ray(u, v)``.
2. **Table plane** (:meth:`RgbdSegmenter.fit_plane`): RANSAC over a fixed-seed subsample of the
   points within ``plane_max_offset`` of the calibrated plane, each hypothesis constrained to
   ``plane_max_tilt_deg`` of the calibrated normal, then a least-squares refit on the inliers.
   A slightly wrong table pose (a few degrees, a few cm) still gives heights good to ~1 mm;
   when too few points support any plane the calibrated plane is used (``TablePlane.refined``).
3. **Height** above the plane per pixel; holes get the height of the nearest valid pixel (so a
   hole in the table stays table and a hole inside an object stays object), and an object must
   have at least ``min_valid_fraction`` of real depth pixels (a hole never becomes an object).
4. **Foreground**: height in ``(height_threshold, max_height]``, grown (hysteresis) into
   connected pixels above ``grow_threshold`` (and, with
   ``workspace_half_extent``, inside that square of the table).
5. **Pusher rule**: a compact tall part — a connected set of foreground pixels higher than
   ``pusher_min_height`` whose table-plane spread is at most ``2 * pusher_radius`` — is the
   pusher's top; every foreground pixel whose table-plane position lies within
   ``pusher_radius + pusher_margin`` of its axis is the pusher (top and side) and is **ignored**
   (background in the result, returned as ``RgbdResult.pusher_mask``). The objects here are
   3 cm high and the simulator's pusher is a 5 cm high, 12 mm radius cylinder (id 255 in the
   simulator's ground truth); ``pusher_min_height=None`` turns the rule off.
6. **Instances**: connected components over foreground neighbours whose heights differ by less
   than ``height_step`` (depth discontinuities cut) and, when a colour image is given, whose
   chromaticity differs by less than ``color_threshold`` (colour edges cut); adjacent regions of
   close mean colour whose shared boundary is mostly smooth merge again; then each region is
   split at narrow necks of its footprint's distance transform (two touching objects of the
   same colour and height), computed on a metric top-down grid of the table plane (cell
   ``max(grid_cell, pixel footprint)``), so an oblique view splits as well as a top-down one.
7. Ids ``1..K`` in raster order; labels from
   :func:`~kinemask_ros.segmentation.colors.color_name` of the mean colour (None without image).

Bad input raises ``ValueError`` naming the fix: depth not matching the image, a calibration
that is not finite / puts the camera below the table, a depth image without a single valid
pixel (:class:`InvalidDepthError`; a node should log it once per cause and keep running).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kinemask_ros.segmentation.core import (
    DEFAULT_MAX_PIXELS,
    MAX_OBJECT_ID,
    Segmentation,
    check_float,
    check_positive_int,
    prepare_image,
)
from kinemask_ros.segmentation.rgb import fast_chromaticity, finish, label_regions, merge_similar, relabel_raster, require_scipy, split_region


class InvalidDepthError(ValueError):
    """The depth image has no usable pixel (all NaN / zero / out of range)."""


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class RgbdConfig:
    """Parameters of :class:`RgbdSegmenter` (lengths in metres).

    Attributes:
        height_threshold: a pixel higher than this above the table is foreground (objects here
            are ~0.03 m high; depth noise of the camera must stay well below it).
        grow_threshold: hysteresis: pixels higher than this that connect to a foreground pixel
            are foreground too (the bottom of an object's sides in an oblique view).
        max_height: higher points (an arm, the ceiling) are ignored.
        min_depth, max_depth: valid depth range; outside it (and NaN / 0) is a hole.
        integer_depth_scale: metres per unit of integer depth images (0.001: millimetres, ROS 16UC1).
        plane_max_offset: only points within this distance of the calibrated plane may support
            the refined plane (how wrong the table pose may be along its normal).
        plane_max_tilt_deg: largest angle between the refined and the calibrated normal.
        plane_inlier_threshold: point-to-plane distance of a RANSAC inlier.
        ransac_iterations: plane hypotheses.
        ransac_samples: points used for RANSAC (a fixed-seed subsample: deterministic).
        min_plane_fraction: below this fraction of supporting points the calibrated plane is kept.
        refine_plane: False = trust the calibration as is.
        min_valid_fraction: an object needs at least this fraction of real (not hole-filled) depth.
        workspace_half_extent: optional square ``[-w, w]^2`` of the table frame outside which
            nothing is an object (None = the whole image).
        pusher_min_height: tall-part height of the pusher rule (None = no pusher rule).
        pusher_radius: pusher radius; pixels within ``pusher_radius + pusher_margin`` of its axis
            (in the table plane) are the pusher.
        pusher_margin: see above.
        height_step: neighbours whose heights differ by more than this are not joined.
        color_threshold: chromaticity distance that still joins neighbours / regions (colour edges).
        use_color: use colour edges when an image is given.
        split_touching: split regions at narrow necks of their footprint.
        neck_ratio: neck / smaller part's inscribed radius below which they split.
        grid_cell: finest cell of the top-down grid used for splitting [m].
        min_area: smallest object [pixels] (also ``min_area_fraction * H * W``).
        min_area_fraction: smallest object as a fraction of the image.
        min_object_area_m2: smallest object footprint on the table [m^2] (the area its pixels
            cover on planes parallel to the table; the objects here have >= 19 cm^2).
        min_object_height: an object's 75th-percentile height must reach this [m] (depth-noise
            blobs just above the pixel threshold are not objects; 0 = off).
        max_objects: keep at most this many objects (the largest).
        max_pixels: larger input images are rejected.
        adaptive_noise: estimate the depth noise of the frame (robust std of neighbour height
            differences) and, when it is above ``height_threshold / 4``, smooth the height map
            (3x3 mean over the neighbours of the same colour; a 3x3 median without colour) and raise the thresholds to ``noise_sigmas`` (foreground) and half of that
            (grow) times the remaining noise; the RANSAC inlier band becomes at least 2.5 sigma.
        noise_sigmas: see ``adaptive_noise``.
        seed: seed of the RANSAC subsample (results are deterministic per frame).
    """

    height_threshold: float = 0.006
    grow_threshold: float = 0.0025
    max_height: float = 0.5
    min_depth: float = 0.05
    max_depth: float = 10.0
    integer_depth_scale: float = 0.001
    plane_max_offset: float = 0.05
    plane_max_tilt_deg: float = 10.0
    plane_inlier_threshold: float = 0.003
    ransac_iterations: int = 64
    ransac_samples: int = 3000
    min_plane_fraction: float = 0.2
    refine_plane: bool = True
    min_valid_fraction: float = 0.3
    workspace_half_extent: float | None = None
    pusher_min_height: float | None = 0.04
    pusher_radius: float = 0.012
    pusher_margin: float = 0.003
    height_step: float = 0.012
    color_threshold: float = 0.07
    use_color: bool = True
    split_touching: bool = True
    neck_ratio: float = 0.75
    grid_cell: float = 0.0025
    min_area: int = 3
    min_area_fraction: float = 1e-4
    min_object_area_m2: float = 4e-4
    min_object_height: float = 0.01
    max_objects: int = MAX_OBJECT_ID
    max_pixels: int = DEFAULT_MAX_PIXELS
    adaptive_noise: bool = True
    noise_sigmas: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        o = "RgbdConfig"
        check_float(o, "height_threshold", self.height_threshold, 0.0, 1.0, lo_open=True)
        check_float(o, "grow_threshold", self.grow_threshold, 0.0, self.height_threshold)
        check_float(o, "max_height", self.max_height, self.height_threshold, 100.0, lo_open=True)
        check_float(o, "min_depth", self.min_depth, 0.0)
        check_float(o, "max_depth", self.max_depth, self.min_depth, lo_open=True)
        check_float(o, "integer_depth_scale", self.integer_depth_scale, 0.0, 1.0, lo_open=True)
        check_float(o, "plane_max_offset", self.plane_max_offset, 0.0, 10.0, lo_open=True)
        check_float(o, "plane_max_tilt_deg", self.plane_max_tilt_deg, 0.0, 60.0)
        check_float(o, "plane_inlier_threshold", self.plane_inlier_threshold, 0.0, 1.0, lo_open=True)
        check_positive_int(o, "ransac_iterations", self.ransac_iterations)
        check_positive_int(o, "ransac_samples", self.ransac_samples, minimum=10)
        check_float(o, "min_plane_fraction", self.min_plane_fraction, 0.0, 1.0)
        check_float(o, "min_valid_fraction", self.min_valid_fraction, 0.0, 1.0)
        if self.workspace_half_extent is not None:
            check_float(o, "workspace_half_extent", self.workspace_half_extent, 0.0, lo_open=True)
        if self.pusher_min_height is not None:
            check_float(o, "pusher_min_height", self.pusher_min_height, self.height_threshold, lo_open=True)
        check_float(o, "pusher_radius", self.pusher_radius, 0.0, 1.0, lo_open=True)
        check_float(o, "pusher_margin", self.pusher_margin, 0.0, 1.0)
        check_float(o, "height_step", self.height_step, 0.0, lo_open=True)
        check_float(o, "color_threshold", self.color_threshold, 0.0, 2.0, lo_open=True)
        check_float(o, "neck_ratio", self.neck_ratio, 0.0, 1.0)
        check_float(o, "grid_cell", self.grid_cell, 0.0, 1.0, lo_open=True)
        check_positive_int(o, "min_area", self.min_area)
        check_float(o, "min_area_fraction", self.min_area_fraction, 0.0, 0.5)
        check_float(o, "min_object_area_m2", self.min_object_area_m2, 0.0)
        check_float(o, "min_object_height", self.min_object_height, 0.0, self.max_height)
        check_positive_int(o, "max_objects", self.max_objects)
        if self.max_objects > MAX_OBJECT_ID:
            raise ValueError(f"{o}.max_objects must be <= {MAX_OBJECT_ID}, got {self.max_objects}")
        check_positive_int(o, "max_pixels", self.max_pixels)
        check_float(o, "noise_sigmas", self.noise_sigmas, 0.0, 100.0, lo_open=True)
        check_positive_int(o, "seed", self.seed, minimum=0)

    def min_area_for(self, height: int, width: int) -> int:
        return max(self.min_area, int(math.ceil(self.min_area_fraction * height * width)))


# ----------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class Calibration:
    """What the RGB-D backend needs of a camera: ``K (3, 3)``, ``T_cam_table (4, 4)`` (table -> camera),
    plumb-bob ``D`` (up to 5 numbers, or empty) and optionally the image size it belongs to."""

    K: np.ndarray
    T_cam_table: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)):
            raise ValueError(f"calibration K must be a finite 3x3 matrix, got {np.asarray(self.K).shape}: fill CameraInfo.k (row-major K)")
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError(f"calibration K has focal lengths fx={K[0, 0]:g}, fy={K[1, 1]:g}: they must be > 0 (is CameraInfo.k filled in?)")
        T = np.asarray(self.T_cam_table, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"T_cam_table must be a finite 4x4 transform, got shape {T.shape}")
        R = T[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
            raise ValueError("T_cam_table[:3, :3] is not a rotation matrix (orthonormal, det +1)")
        cam_height = float(-(R[:, 2] @ T[:3, 3]))  # camera origin above the table plane
        if cam_height <= 0:
            raise ValueError(f"T_cam_table puts the camera {cam_height:.3f} m *below* the table: it must map table points into the "
                             "camera frame (camera_T_table); pass its inverse if you have table_T_camera")
        D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        if D.size > 8 or not np.all(np.isfinite(D)):
            raise ValueError(f"distortion D must be up to 8 finite numbers (plumb-bob k1 k2 p1 p2 k3), got {D.tolist()}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "T_cam_table", T)
        object.__setattr__(self, "D", D)

    @classmethod
    def from_any(cls, calibration=None, K=None, T_cam_table=None, D=None) -> "Calibration":
        """From an object with ``.K`` and ``.T_cam_table`` (e.g. ``table_frame.CameraCalibration``;
        ``.D``, ``.width``, ``.height`` are used when present), a dict with those keys, or arrays."""
        if isinstance(calibration, Calibration):
            return calibration
        if calibration is not None:
            get = calibration.get if isinstance(calibration, dict) else lambda k, d=None: getattr(calibration, k, d)
            K, T_cam_table = get("K"), get("T_cam_table")
            D = get("D", None) if D is None else D
            w, h = get("width", None), get("height", None)
        else:
            w = h = None
        if K is None or T_cam_table is None:
            raise ValueError("the RGB-D backend needs a calibration: K (3x3 intrinsics) and T_cam_table (4x4 table pose in the "
                             "camera frame), e.g. RgbdSegmenter(calibration=CameraCalibration.from_camera_model(model))")
        return cls(np.asarray(K), np.asarray(T_cam_table), np.zeros(0) if D is None else np.asarray(D),
                   None if w is None else int(w), None if h is None else int(h))

    @property
    def normal(self) -> np.ndarray:
        """Table normal (up) in the camera frame ``(3,)``."""
        return self.T_cam_table[:3, 2].copy()

    @property
    def offset(self) -> float:
        """``d`` of the calibrated plane: height = ``normal @ X + d``."""
        return float(-(self.normal @ self.T_cam_table[:3, 3]))


def _guided_mean(height: np.ndarray, feats: np.ndarray, threshold: float) -> np.ndarray:
    """3x3 mean of ``height (H, W)`` over the neighbours whose colour ``feats (H, W, F)`` is within
    ``threshold`` of the centre pixel's (a binary cross-bilateral filter: noise drops ~3x, object
    edges stay where the colour changes)."""
    h, w = height.shape
    feats = feats.astype(np.float32, copy=False)
    ph = np.pad(height.astype(np.float32, copy=False), 1, mode="edge")
    pf = np.pad(feats, ((1, 1), (1, 1), (0, 0)), mode="edge")
    acc = np.zeros((h, w), np.float32)
    cnt = np.zeros((h, w), np.float32)
    t2 = np.float32(threshold**2)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            diff = pf[dy:dy + h, dx:dx + w] - feats
            wgt = np.einsum("ijk,ijk->ij", diff, diff) < t2
            acc += np.where(wgt, ph[dy:dy + h, dx:dx + w], np.float32(0.0))
            cnt += wgt
    return (acc / np.maximum(cnt, 1)).astype(np.float32)


def _undistort(xd: np.ndarray, yd: np.ndarray, D: np.ndarray, iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Plumb-bob / rational-polynomial undistortion of normalised coordinates (fixed-point iteration, as OpenCV)."""
    d = np.zeros(8)
    d[: min(8, D.size)] = D[:8]
    k1, k2, p1, p2, k3, k4, k5, k6 = d  # plumb-bob (5) or rational polynomial (8)
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = (1 + k1 * r2 + k2 * r2 * r2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2 * r2 + k6 * r2**3)
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TablePlane:
    """Table plane in the camera frame: height of a point ``X`` = ``normal @ X + offset`` [m].

    ``refined``: fitted to the depth (else the calibrated plane); ``inlier_fraction`` of the
    candidate points; ``tilt_deg`` / ``shift_m``: difference to the calibrated plane (at the
    point of the calibrated plane under the camera's optical centre ray).
    """

    normal: np.ndarray
    offset: float
    refined: bool
    inlier_fraction: float
    tilt_deg: float
    shift_m: float


@dataclass
class RgbdResult:
    """Everything :meth:`RgbdSegmenter.analyse` computed for one frame (all ``(H, W)``)."""

    segmentation: Segmentation
    height: np.ndarray  # float32 m above the table, NaN at depth holes
    valid: np.ndarray  # bool: real depth
    foreground: np.ndarray  # bool: above the table, pusher excluded
    pusher_mask: np.ndarray  # bool: pixels taken for the pusher (ignored)
    plane: TablePlane


# ----------------------------------------------------------------------------- segmenter
class RgbdSegmenter:
    """Height-above-table segmentation with geometric instance separation (module docstring).

    ``calibration`` (or ``K`` + ``T_cam_table``) can be given once here or per frame.
    """

    requires_depth = True

    def __init__(self, config: RgbdConfig | None = None, calibration=None, *, K=None, T_cam_table=None, D=None) -> None:
        self.config = config or RgbdConfig()
        require_scipy("RgbdSegmenter")
        self.calibration = None if calibration is None and K is None else Calibration.from_any(calibration, K, T_cam_table, D)
        self._rays_key = None
        self._rays = None
        self.last_noise_std = 0.0  # depth noise [m] estimated on the last frame

    def __repr__(self) -> str:
        return f"RgbdSegmenter({self.config!r})"

    # ---------------------------------------------------------------- inputs
    def _calib(self, calibration) -> Calibration:
        if calibration is not None:
            return Calibration.from_any(calibration)
        if self.calibration is None:
            raise ValueError("RgbdSegmenter has no calibration: pass calibration=... (K and T_cam_table) to the constructor or to segment()")
        return self.calibration

    def prepare_depth(self, depth, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Depth image -> ``(H, W)`` float64 metres with NaN at holes (NaN, inf, <= 0, out of range).

        Float input is metres; integer input is scaled by ``integer_depth_scale`` (mm by default).
        ``shape``: the colour image's ``(H, W)`` it must match.
        """
        cfg = self.config
        if depth is None:
            raise ValueError("RgbdSegmenter needs a depth image: segment(image, depth, calibration); for colour only use the 'rgb' backend")
        d = np.asarray(depth)
        if d.ndim == 3 and d.shape[2] == 1:
            d = d[..., 0]
        if d.ndim != 2 or d.size == 0:
            raise ValueError(f"depth must be an (H, W) image, got shape {d.shape}")
        if not (np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)):
            raise ValueError(f"depth must hold numbers (float metres or integer millimetres), got dtype {d.dtype}")
        if shape is not None and d.shape != tuple(shape):
            raise ValueError(f"depth is {d.shape[0]}x{d.shape[1]} but the image is {shape[0]}x{shape[1]}: use the depth registered "
                             "to the colour camera (aligned_depth_to_color) or resize both to the same size")
        z = d.astype(np.float64) * (cfg.integer_depth_scale if np.issubdtype(d.dtype, np.integer) else 1.0)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(z) | (z < cfg.min_depth) | (z > cfg.max_depth) | (z <= 0)
        z[bad] = np.nan
        return z

    def rays(self, calib: Calibration, height: int, width: int) -> np.ndarray:
        """``(H, W, 3)`` camera-frame ray per pixel centre with z = 1 (undistorted), cached."""
        if calib.width is not None and calib.height is not None and (calib.width, calib.height) != (width, height):
            raise ValueError(f"the image is {width}x{height} but the calibration is for {calib.width}x{calib.height}: "
                             "use the CameraInfo of this image (or scale K with the image)")
        key = (calib.K.tobytes(), calib.D.tobytes(), height, width)
        if self._rays_key != key:
            v, u = np.mgrid[0:height, 0:width]
            K = calib.K
            xd = (u + 0.5 - K[0, 2] - K[0, 1] * (v + 0.5 - K[1, 2]) / K[1, 1]) / K[0, 0]
            yd = (v + 0.5 - K[1, 2]) / K[1, 1]
            x, y = _undistort(xd, yd, calib.D) if calib.D.size and np.any(calib.D != 0) else (xd, yd)
            self._rays = np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float32)
            self._rays_key = key
        return self._rays

    # ---------------------------------------------------------------- geometry
    @staticmethod
    def noise_std(z: np.ndarray) -> float:
        """Robust std [m] of per-pixel noise of a depth-like map ``(H, W)`` (NaN = missing): MAD of
        horizontal and vertical neighbour differences / sqrt(2); edges are too few to matter."""
        k = max(1, int(math.sqrt(z.size / 40000.0)))  # every k-th row / column: <= ~80k differences
        zr, zc = z[::k], z[:, ::k]
        d = np.concatenate([(zr[:, 1:] - zr[:, :-1]).reshape(-1), (zc[1:, :] - zc[:-1, :]).reshape(-1)])
        d = d[np.isfinite(d)]
        if d.size < 8:
            return 0.0
        return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))

    def fit_plane(self, points: np.ndarray, calib: Calibration, inlier_threshold: float | None = None) -> TablePlane:
        """Table plane from camera-frame ``points (N, 3)`` near the calibrated plane (module docstring, step 2)."""
        cfg = self.config
        thr = cfg.plane_inlier_threshold if inlier_threshold is None else max(cfg.plane_inlier_threshold, inlier_threshold)
        n0, d0 = calib.normal, calib.offset
        prior = TablePlane(n0, d0, False, 0.0, 0.0, 0.0)
        if not cfg.refine_plane or len(points) < 3:
            return prior
        h0 = points @ n0 + d0
        cand = points[np.abs(h0) < cfg.plane_max_offset]
        if len(cand) < 3:
            return prior
        rng = np.random.default_rng(cfg.seed)
        if len(cand) > cfg.ransac_samples:
            cand = cand[rng.choice(len(cand), cfg.ransac_samples, replace=False)]
        cos_max = math.cos(math.radians(cfg.plane_max_tilt_deg))
        best_n, best_d, best_count = n0, d0, int((np.abs(cand @ n0 + d0) < thr).sum())
        tri = rng.integers(0, len(cand), size=(cfg.ransac_iterations, 3))
        for i, j, k in tri:
            n = np.cross(cand[j] - cand[i], cand[k] - cand[i])
            nn = np.linalg.norm(n)
            if nn < 1e-12:
                continue
            n = n / nn
            if n @ n0 < 0:
                n = -n
            if n @ n0 < cos_max:
                continue
            d = -float(n @ cand[i])
            count = int((np.abs(cand @ n + d) < thr).sum())
            if count > best_count:
                best_n, best_d, best_count = n, d, count
        n, d = best_n, best_d
        for _ in range(3):  # least-squares refit on the inliers
            inl = cand[np.abs(cand @ n + d) < thr]
            if len(inl) < 3:
                break
            c = inl.mean(axis=0)
            _, _, vt = np.linalg.svd(inl - c, full_matrices=False)
            m = vt[-1] if vt[-1] @ n0 >= 0 else -vt[-1]
            if m @ n0 < cos_max:
                break
            n, d = m, -float(m @ c)
        frac = float((np.abs(cand @ n + d) < thr).mean())
        if frac < cfg.min_plane_fraction:
            return TablePlane(n0, d0, False, frac, 0.0, 0.0)
        tilt = math.degrees(math.acos(float(np.clip(n @ n0, -1.0, 1.0))))
        # shift: height of the calibrated table origin over the refined plane
        shift = float(n @ calib.T_cam_table[:3, 3] + d)
        return TablePlane(n, d, True, frac, tilt, shift)

    def height_map(self, depth, calibration=None, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, TablePlane]:
        """``(height (H, W) float32 m, NaN at holes; valid (H, W) bool; points (H, W, 3) camera frame; plane)``.

        Raises :class:`InvalidDepthError` when no pixel has usable depth.
        """
        calib = self._calib(calibration)
        z = self.prepare_depth(depth, shape)
        h, w = z.shape
        valid = np.isfinite(z)
        if not valid.any():
            raise InvalidDepthError(f"depth image ({h}x{w}) has no valid pixel (all NaN/zero or outside "
                                    f"[{self.config.min_depth:g}, {self.config.max_depth:g}] m): check the depth topic, its encoding "
                                    "(32FC1 metres or 16UC1 millimetres) and RgbdConfig.min_depth/max_depth")
        pts = self.rays(calib, h, w) * np.where(valid, z, 0.0).astype(np.float32)[..., None]
        self.last_noise_std = self.noise_std(z) if self.config.adaptive_noise else 0.0  # depth noise bounds the height noise
        plane = self.fit_plane(pts[valid], calib, 2.5 * self.last_noise_std)
        height = (pts @ plane.normal.astype(np.float32) + np.float32(plane.offset)).astype(np.float32)
        height[~valid] = np.nan
        if self.config.adaptive_noise:
            self.last_noise_std = self.noise_std(height)
        return height, valid, pts, plane

    def _table_xy(self, pts: np.ndarray, calib: Calibration) -> np.ndarray:
        """Camera-frame points ``(..., 3)`` -> table-frame ``(x, y)`` ``(..., 2)`` (calibrated axes)."""
        R, t = calib.T_cam_table[:3, :3], calib.T_cam_table[:3, 3]
        return ((pts - t) @ R)[..., :2]

    # ---------------------------------------------------------------- main
    def segment(self, image, depth=None, calibration=None) -> Segmentation:
        """Instance segmentation of one RGB-D frame (see :meth:`analyse`)."""
        return self.analyse(image, depth, calibration).segmentation

    def analyse(self, image, depth, calibration=None) -> RgbdResult:
        """Segment one frame.

        Args:
            image: colour image (any input :func:`prepare_image` accepts) registered with the depth,
                or None for geometry only (no colour edges, no labels).
            depth: ``(H, W)`` float metres along the optical axis (or integer millimetres); NaN /
                0 are holes.
            calibration: ``.K`` / ``.T_cam_table`` object, dict, or :class:`Calibration`; default:
                the one given to the constructor.
        """
        cfg = self.config
        ndi = require_scipy("RgbdSegmenter")
        calib = self._calib(calibration)
        img = None if image is None else prepare_image(image, cfg.max_pixels)
        shape = None if img is None else img.shape[:2]
        height, valid, pts, plane = self.height_map(depth, calib, shape)
        h, w = height.shape
        # holes take the height (and position) of the nearest valid pixel
        if not valid.all():
            _, (ri, ci) = ndi.distance_transform_edt(~valid, return_indices=True)
            hf = height[ri, ci]
            pf = pts[ri, ci]
        else:
            hf, pf = height, pts
        xy = self._table_xy(pf, calib)
        thr, grow = cfg.height_threshold, cfg.grow_threshold
        sigma = self.last_noise_std
        feats = fast_chromaticity(img) if (img is not None and cfg.use_color) else None
        if cfg.adaptive_noise and sigma > cfg.height_threshold / 4.0:
            hf = ndi.median_filter(hf, size=3, mode="nearest") if feats is None else _guided_mean(hf, feats, cfg.color_threshold)
            sigma = self.noise_std(hf)
            thr = max(thr, cfg.noise_sigmas * sigma)
            grow = min(thr, max(grow, 0.5 * cfg.noise_sigmas * sigma))
        fg = (hf > thr) & (hf <= cfg.max_height)
        if grow < thr:
            low = (hf > grow) & (hf <= cfg.max_height)
            lab, _ = ndi.label(low, structure=np.ones((3, 3), int))
            seeds = np.zeros(int(lab.max()) + 1, bool)
            seeds[lab[fg]] = True
            seeds[0] = False
            fg = seeds[lab]
        if cfg.workspace_half_extent is not None:
            fg &= np.all(np.abs(xy) <= cfg.workspace_half_extent, axis=-1)
        pusher = self._pusher(fg, hf, xy) if cfg.pusher_min_height is not None else np.zeros_like(fg)
        obj = fg & ~pusher
        min_area = cfg.min_area_for(h, w)
        # instances, one foreground component (bounding-box crop) at a time
        comps, _ = ndi.label(obj, structure=np.ones((3, 3), int))
        regions = np.zeros((h, w), np.int64)
        nxt = 0
        for c, sl in enumerate(ndi.find_objects(comps), start=1):
            if sl is None:
                continue
            m = comps[sl] == c
            if m.sum() < min_area:
                continue
            fc = None if feats is None else feats[sl]
            r = label_regions(m, fc, cfg.color_threshold, heights=hf[sl], height_step=cfg.height_step)
            if fc is not None:
                r = merge_similar(r, fc, cfg.color_threshold, heights=hf[sl], height_step=cfg.height_step)
            if cfg.split_touching:
                r = self._split(r, xy[sl], pf[sl], calib, min_area)
            sub = regions[sl]
            sub[m] = r[m] + nxt
            nxt += int(r.max())
        regions = relabel_raster(regions)
        # an object must stand on real depth (filled holes alone never make one), cover
        # min_object_area_m2 of the table and reach min_object_height
        scores = None
        n = int(regions.max())
        if n > 0:
            sel = regions > 0
            lab_sel = regions[sel]
            p_sel = pf[sel]
            cos_view = np.abs(p_sel @ plane.normal) / np.maximum(np.linalg.norm(p_sel, axis=-1), 1e-9)
            pix_area = p_sel[:, 2] ** 2 / (calib.K[0, 0] * calib.K[1, 1]) / np.maximum(cos_view, 0.2)
            area_m2 = np.bincount(lab_sel, weights=pix_area, minlength=n + 1)
            vfrac = np.bincount(lab_sel, weights=valid[sel].astype(np.float64), minlength=n + 1) / np.maximum(np.bincount(lab_sel, minlength=n + 1), 1)
            q75 = np.zeros(n + 1)
            med = np.zeros(n + 1)
            for r, sl in enumerate(ndi.find_objects(regions), start=1):
                if sl is not None:
                    hr = hf[sl][regions[sl] == r]
                    q75[r], med[r] = np.percentile(hr, 75), np.median(hr)
            drop = (vfrac < cfg.min_valid_fraction) | (area_m2 < cfg.min_object_area_m2) | (q75 < cfg.min_object_height)
            drop[0] = False
            regions = np.where(drop[regions], 0, regions)
            scores = np.clip((med - thr) / (2 * thr), 0.0, 1.0)  # how clearly it stands above the threshold
        seg = finish(regions, img, min_area, cfg.max_objects, scores=scores)
        return RgbdResult(seg, height, valid, obj & (seg.instance_ids > 0), pusher, plane)

    def _pusher(self, fg: np.ndarray, height: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Pixels of the pusher by the tall-and-thin rule (module docstring, step 5)."""
        cfg = self.config
        ndi = require_scipy("RgbdSegmenter")
        tall = fg & (height > cfg.pusher_min_height)
        out = np.zeros_like(fg)
        if not tall.any():
            return out
        lab, n = ndi.label(tall, structure=np.ones((3, 3), int))
        reach = cfg.pusher_radius + cfg.pusher_margin
        for r, sl in enumerate(ndi.find_objects(lab), start=1):
            p = xy[sl][lab[sl] == r]
            c = np.median(p, axis=0)
            if np.max(np.linalg.norm(p - c, axis=1)) > 2.0 * cfg.pusher_radius:
                continue  # a tall wide thing: an object, not the pusher
            c = p.mean(axis=0)
            out |= fg & (np.linalg.norm(xy - c, axis=-1) <= reach)
        return out

    def _split(self, regions: np.ndarray, xy: np.ndarray, pts: np.ndarray, calib: Calibration, min_area: int) -> np.ndarray:
        """Neck splitting of every region on a top-down metric grid of its table-plane footprint."""
        cfg = self.config
        ndi = require_scipy("RgbdSegmenter")
        out = np.zeros_like(regions)
        nxt = 1
        f = 0.5 * (calib.K[0, 0] + calib.K[1, 1])
        for r, sl in enumerate(ndi.find_objects(regions), start=1):
            if sl is None:
                continue
            m = regions[sl] == r
            p = xy[sl][m]
            # pixel footprint on the table: depth / f stretched by the viewing angle
            X = pts[sl][m]
            rng_ = np.linalg.norm(X, axis=1)
            cos_view = np.abs(X @ calib.normal) / np.maximum(rng_, 1e-9)
            foot = float(np.median(X[:, 2] / f / np.maximum(cos_view, 0.2)))
            cell = max(cfg.grid_cell, foot)
            if np.median(cos_view) >= 0.9 and cell <= 1.5 * float(np.median(X[:, 2] / f)):
                # (nearly) top-down and the grid would not be finer than the image: the image is
                # already a metric top-down grid up to scale; split there (no resampling)
                parts = split_region(m, cfg.neck_ratio, min_area) if m.sum() >= 2 * min_area else None
                sub = out[sl]
                if parts is None or parts.max() <= 1:
                    sub[m] = nxt
                    nxt += 1
                else:
                    sub[m] = parts[m] + nxt - 1
                    nxt += int(parts.max())
                continue
            g = np.floor((p - p.min(axis=0)) / cell).astype(np.int64) + 2
            gh, gw = int(g[:, 1].max()) + 3, int(g[:, 0].max()) + 3
            if gh * gw > 4_000_000 or m.sum() < 2 * min_area:
                parts = None
            else:
                occ = np.zeros((gh, gw), bool)
                occ[g[:, 1], g[:, 0]] = True
                occ = ndi.binary_fill_holes(occ)
                min_cells = max(2, int(math.ceil(cfg.min_object_area_m2 / cell**2 * 0.5)))
                grid_parts = split_region(occ, cfg.neck_ratio, min_cells)
                parts = grid_parts[g[:, 1], g[:, 0]]
                if parts.max() <= 1 or np.any(parts == 0):
                    parts = None if np.any(parts == 0) else parts
            sub = out[sl]
            if parts is None:
                sub[m] = nxt
                nxt += 1
            else:
                _, dense = np.unique(parts, return_inverse=True)
                sub[m] = dense.reshape(-1) + nxt
                nxt += int(dense.max()) + 1
        return relabel_raster(out)
