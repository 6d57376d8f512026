"""Message <-> numpy / core-type conversion for the nodes (thin wrappers over :mod:`kinemask_ros.ros_convert`)."""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped, TransformStamped
from sensor_msgs.msg import CameraInfo, Image

from kinemask_ros import ros_convert
from kinemask_ros.push import PushStroke
from kinemask_ros_interfaces.msg import CostTerm, ObjectTrack, PredictedRollout, ScoredCandidate
from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg

GOAL_FRAMES = ("", "table")


def _fields(msg: Image) -> tuple:
    return (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian, msg.data)


def image_is_empty(msg: Image) -> bool:
    """An 'absent' optional image in a request (width or height 0 and no data)."""
    return (msg.width == 0 or msg.height == 0) and len(msg.data) == 0


def check_image_size(msg: Image, max_pixels: int, param: str = "max_image_pixels") -> None:
    """``ValueError`` when an image has more than ``max_pixels`` pixels (checked on the header, before decoding)."""
    w, h = int(msg.width), int(msg.height)
    if w * h > max_pixels:
        raise ValueError(f"image of {w}x{h} (width x height) = {w * h} pixels exceeds {param}={max_pixels}; "
                         f"send a smaller image or raise the parameter {param}")


def check_rgb_msg(msg: Image) -> None:
    """Cheap header/size check of a colour image (no decoding): for subscription callbacks."""
    ros_convert.check_image(*_fields(msg), allowed=ros_convert.COLOR_ENCODINGS, what="colour image")


def rgb_from_msg(msg: Image) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``(H, W, 3)`` uint8 RGB (``ValueError`` naming the problem)."""
    return ros_convert.image_to_rgb(*_fields(msg))


def ids_from_msg(msg: Image) -> np.ndarray:
    """Instance-id ``sensor_msgs/Image`` -> ``(H, W)`` integer ids."""
    return ros_convert.image_to_ids(*_fields(msg))


def rgb_to_msg(rgb: np.ndarray, header=None, encoding: str = "rgb8") -> Image:
    f = ros_convert.rgb_to_image(rgb, encoding)
    msg = Image(height=f["height"], width=f["width"], encoding=f["encoding"], step=f["step"], is_bigendian=f["is_bigendian"])
    msg.data = f["data"]
    if header is not None:
        msg.header = header
    return msg


def ids_to_msg(ids: np.ndarray, header=None) -> Image:
    f = ros_convert.ids_to_image(ids)
    msg = Image(height=f["height"], width=f["width"], encoding=f["encoding"], step=f["step"], is_bigendian=f["is_bigendian"])
    msg.data = f["data"]
    if header is not None:
        msg.header = header
    return msg


def camera_info_msg(K: np.ndarray, width: int, height: int, header=None) -> CameraInfo:
    """CameraInfo for an undistorted pinhole camera with intrinsics ``K (3, 3)``."""
    info = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [float(v) for v in np.asarray(K, float).reshape(-1)]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:, :3] = K
    info.p = [float(v) for v in P.reshape(-1)]
    if header is not None:
        info.header = header
    return info


def depth_from_msg(msg: Image) -> np.ndarray:
    """32FC1 (metres) or 16UC1 (millimetres) depth ``sensor_msgs/Image`` -> ``(H, W)`` float32 metres (0 -> NaN)."""
    h, w, enc = int(msg.height), int(msg.width), msg.encoding
    dtypes = {"32FC1": np.dtype("<f4"), "16UC1": np.dtype("<u2")}
    if enc not in dtypes:
        raise ValueError(f"depth encoding {enc!r} is not supported: use 32FC1 (metres) or 16UC1 (millimetres)")
    dt = dtypes[enc].newbyteorder(">" if msg.is_bigendian else "<")
    if h <= 0 or w <= 0 or msg.step < w * dt.itemsize or len(msg.data) != msg.step * h:
        raise ValueError(f"depth image {w}x{h} has step {msg.step} and {len(msg.data)} bytes: expected step >= {w * dt.itemsize} "
                         f"and step * height bytes")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(h, msg.step)[:, : w * dt.itemsize]
    d = rows.copy().view(dt).reshape(h, w).astype(np.float32)
    if enc == "16UC1":
        d = d / 1000.0
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d


def calibration_from_msgs(info: CameraInfo, pose: TransformStamped):
    """``CameraInfo`` + the camera's pose on the table (``table -> camera`` transform, e.g. the sim
    bridge's ``camera/table_pose`` or TF) -> :class:`~kinemask_ros.table_frame.CameraCalibration`
    (``ValueError`` naming the fix: uncalibrated intrinsics, frames that do not match, ...)."""
    from kinemask_ros.table_frame import CameraCalibration, pose_to_matrix

    if info.header.frame_id and pose.child_frame_id and info.header.frame_id != pose.child_frame_id:
        raise ValueError(f"the table pose is for frame {pose.child_frame_id!r} but the CameraInfo is for {info.header.frame_id!r}: "
                         "publish the transform table -> the camera's optical frame")
    t, q = pose.transform.translation, pose.transform.rotation
    why = ros_convert.finite_or_reason(x=t.x, y=t.y, z=t.z, qx=q.x, qy=q.y, qz=q.z, qw=q.w)
    if why:
        raise ValueError(f"table pose: {why}")
    T_table_cam = pose_to_matrix((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
    return CameraCalibration.from_camera_info(info, T_cam_table=np.linalg.inv(T_table_cam))


class CalibrationCache:
    """The newest ``camera/camera_info`` + ``camera/table_pose`` as a ``CameraCalibration``, rebuilt only
    when they change; an unusable pair is reported once through ``on_error`` (not per frame) and
    raised as ``ValueError`` until new messages arrive. Subscriptions set :attr:`info` / :attr:`pose`."""

    def __init__(self, on_new=None, on_error=None) -> None:
        self.info: CameraInfo | None = None
        self.pose: TransformStamped | None = None
        self._key = None
        self._calib = None
        self._on_new, self._on_error = on_new, on_error

    @property
    def ready(self) -> bool:
        return self.info is not None and self.pose is not None

    def get(self):
        """The calibration, None until both messages arrived; ``ValueError`` when they are unusable."""
        info, pose = self.info, self.pose
        if info is None or pose is None:
            return None
        t, q = pose.transform.translation, pose.transform.rotation
        key = (tuple(info.k), tuple(info.d), info.distortion_model, info.width, info.height, info.header.frame_id,
               pose.child_frame_id, t.x, t.y, t.z, q.x, q.y, q.z, q.w)
        if key != self._key:
            self._key = key
            try:
                self._calib = calibration_from_msgs(info, pose)
                if self._on_new is not None:
                    self._on_new(self._calib)
            except ValueError as e:
                self._calib = ValueError(f"camera/camera_info + camera/table_pose are unusable: {e}")
                if self._on_error is not None:
                    self._on_error(str(self._calib))
        if isinstance(self._calib, ValueError):
            raise self._calib
        return self._calib


def stroke_values(msg: PushStrokeMsg) -> tuple[float, float, float, float, float]:
    return (msg.x, msg.y, msg.theta, msg.length, msg.speed)


def stroke_from_msg(msg: PushStrokeMsg) -> PushStroke:
    """``PushStroke`` message -> core stroke (``ValueError`` for NaN/inf, length or speed <= 0)."""
    return PushStroke(*(float(v) for v in stroke_values(msg)))


def stroke_to_msg(s: PushStroke | None) -> PushStrokeMsg:
    if s is None:
        return PushStrokeMsg(x=math.nan, y=math.nan, theta=math.nan, length=math.nan, speed=math.nan)
    return PushStrokeMsg(x=float(s.x), y=float(s.y), theta=float(s.theta), length=float(s.length), speed=float(s.speed))


def goal_yaw_from_fields(use_goal_yaw: bool, goal_yaw: float) -> float | None:
    """The goal's yaw [rad] when the request asks for one (``ValueError`` for NaN/inf), else None."""
    if not use_goal_yaw:
        return None
    why = ros_convert.finite_or_reason(goal_yaw=goal_yaw)
    if why:
        raise ValueError(f"goal {why}")
    return float(goal_yaw)


def goal_pose_from_msg(msg: PoseStamped) -> tuple[np.ndarray, float]:
    """Table-frame goal ``(x, y)`` and yaw [rad] of a ``PoseStamped`` (``ValueError`` for another frame,
    NaN/inf, or an orientation that is not a rotation about the table's z axis)."""
    if msg.header.frame_id not in GOAL_FRAMES:
        raise ValueError(f"goal frame_id {msg.header.frame_id!r} is not supported: give the goal in the 'table' frame (or '')")
    p, q = msg.pose.position, msg.pose.orientation
    why = ros_convert.finite_or_reason(x=p.x, y=p.y, qx=q.x, qy=q.y, qz=q.z, qw=q.w)
    if why:
        raise ValueError(f"goal {why}")
    n = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if n < 1e-9:
        raise ValueError("goal orientation is the zero quaternion: send a unit quaternion (w=1 for yaw 0)")
    qx, qy, qz, qw = q.x / n, q.y / n, q.z / n, q.w / n
    tilt = 2.0 * math.degrees(math.asin(min(1.0, math.hypot(qx, qy))))
    if tilt > 5.0:
        raise ValueError(f"goal orientation is tilted {tilt:.1f} deg out of the table plane: objects on a table only turn about z")
    return np.array([p.x, p.y], float), math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))


def goal_xy_from_msg(msg: PointStamped) -> np.ndarray:
    """Table-frame goal of a ``PointStamped`` (``ValueError`` for NaN/inf or another frame)."""
    if msg.header.frame_id not in GOAL_FRAMES:
        raise ValueError(f"goal frame_id {msg.header.frame_id!r} is not supported: give the goal in the 'table' frame (or '')")
    why = ros_convert.finite_or_reason(x=msg.point.x, y=msg.point.y)
    if why:
        raise ValueError(f"goal {why}")
    return np.array([msg.point.x, msg.point.y], float)


def scored_candidate(stroke: PushStroke | PushStrokeMsg | None, target_id: int, total: float, terms: dict[str, float],
                     weights: dict[str, float], valid: bool, reason: str, rollout_index: int = ScoredCandidate.NO_ROLLOUT) -> ScoredCandidate:
    """A ``ScoredCandidate``; non-finite totals are sent as +inf with ``valid=False``."""
    t = float(total) if (valid and math.isfinite(total)) else math.inf
    return ScoredCandidate(
        stroke=stroke if isinstance(stroke, PushStrokeMsg) else stroke_to_msg(stroke), target_id=int(max(target_id, 0)), total_cost=t,
        terms=[CostTerm(name=k, value=float(terms[k]), weight=float(weights.get(k, 0.0))) for k in terms],
        valid=bool(valid), reason=str(reason), rollout_index=int(rollout_index))


def rollout_msg(header, candidate_index: int, frames: np.ndarray | None, masks: np.ndarray | None, tracks: np.ndarray,
                areas: np.ndarray, frame_dt_s: float, labels: dict[int, str] | None = None, id_map: dict[int, int] | None = None,
                text: str = "", sample_index: int = 0, poses: np.ndarray | None = None) -> PredictedRollout:
    """``PredictedRollout`` from frames ``(Tv, H, W, 3)``, id masks ``(Tv, H, W)``, tracks ``(K, Tv, 2)``, areas ``(K, Tv)``
    and, from an object model, table-frame poses ``(K, Tv, 3)`` ``(x, y, yaw)`` [m, rad].

    ``id_map`` maps model slots back to the ids of the published instance mask (slot -> id);
    masks are relabelled with it too.
    """
    r = PredictedRollout(candidate_index=int(candidate_index), sample_index=int(sample_index), frame_dt_s=float(frame_dt_s), text=text)
    r.header = header
    id_map = id_map or {}
    if frames is not None:
        r.frames = [rgb_to_msg(f, header) for f in frames]
    if masks is not None:
        if id_map:
            lut = np.zeros(256, np.int64)
            for slot, oid in id_map.items():
                lut[slot] = oid
            masks = lut[masks]
        r.object_masks = [ids_to_msg(m, header) for m in masks]
    for k in range(tracks.shape[0]):
        if not np.isfinite(tracks[k, 0]).all():
            continue
        oid = id_map.get(k + 1, k + 1)
        tr = ObjectTrack(object_id=int(oid), label=(labels or {}).get(oid, ""),
                         u=[float(v) for v in tracks[k, :, 0]], v=[float(v) for v in tracks[k, :, 1]],
                         area=[float(a) for a in areas[k]])
        if poses is not None and np.isfinite(poses[k]).all():
            tr.x, tr.y, tr.yaw = ([float(v) for v in poses[k, :, j]] for j in range(3))
        r.tracks.append(tr)
    return r
