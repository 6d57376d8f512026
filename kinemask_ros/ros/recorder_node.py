"""``kinemask-record``: record executed pushes from a running graph as object-dataset episodes (thin node).

Listens to the executed strokes (``stroke_topic``, PushStroke), the calibration
(``camera/camera_info`` + the table pose on ``camera/table_pose``, geometry_msgs/TransformStamped
``table -> camera optical frame``, or ``/tf_static`` where tf2_msgs is installed) and one clip
source (:class:`~kinemask_ros.recording.RecorderConfig` ``clip_source``):

* ``outcome``: the simulator's ``sim/outcome`` (PredictedRollout: per-frame instance masks with
  the simulator's ids); outcomes are paired with the strokes in arrival order (the bridge executes
  one push at a time);
* ``camera``: the segmented camera stream (``segmentation/objects``, DetectedObjects with the
  tracker's stable ids); the clip starts at the newest segmented frame before the stroke arrived
  and is resampled to ``num_frames`` x ``frame_dt_s``.

Everything else (rectification into the canonical frame, poses, drop rules, atomic shards) is
:mod:`kinemask_ros.recording`. Bad input (CameraInfo with zero / NaN focal length, a missing table
pose, masks of another size than the CameraInfo) is logged once per cause with the fix and the
push is dropped with its reason (counted in the log and in ``manifest.json``); the node stays up.
A shard is flushed every ``episodes_per_shard`` episodes and on shutdown; with ``max_episodes``
the node flushes and exits after that many episodes.

    kinemask-record --ros-args -p out:=data/recorded -p max_episodes:=200
    kinemask-record --ros-args -p clip_source:=camera -p stroke_topic:=planner/best_push
"""

from __future__ import annotations

import collections
import re
import time

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

from kinemask_ros.recording import ClipBuffer, ClipRectifier, EpisodeRejected, RecorderConfig, RecordingWriter, episode_from_canonical, episode_from_clip
from kinemask_ros.ros.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, ConfigParameters, run
from kinemask_ros.ros.messages import ids_from_msg, stroke_from_msg
from kinemask_ros.table_frame import CameraCalibration, pose_to_matrix
from kinemask_ros.world_model import objects as _objects  # noqa: F401  (stroke features: imported at start-up, not at the first push)
from kinemask_ros_interfaces.msg import DetectedObjects, PredictedRollout
from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg

try:  # tf2_msgs has no PyPI wheel; a full ROS 2 install has it
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the installation
    TFMessage = None

TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _transform_matrix(msg: TransformStamped) -> np.ndarray:
    t, r = msg.transform.translation, msg.transform.rotation
    return pose_to_matrix((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("recorder", **kwargs)
        fields = tuple(RecorderConfig.__dataclass_fields__)
        self.params = ConfigParameters(self, RecorderConfig(), read_only=fields)  # a recording has one layout
        cfg = self.config
        self.writer = RecordingWriter(cfg.out, cfg)
        self._group = MutuallyExclusiveCallbackGroup()  # one callback at a time: no shared-state races
        self._info: CameraInfo | None = None
        self._poses: dict[tuple[str, str], np.ndarray] = {}  # (parent, child) -> T_parent_child
        self._calib_key = None
        self._rect: ClipRectifier | None = None
        self._causes: dict[str, int] = {}
        self._pending = collections.deque()  # outcome: (arrival_ns, stroke); camera: (t0_ns, stroke, deadline_ns)
        self._frame_problem: EpisodeRejected | None = None
        self._done = False
        g = self._group
        self.create_subscription(CameraInfo, cfg.camera_info_topic, self._on_info, SENSOR_QOS, callback_group=g)
        self.create_subscription(TransformStamped, cfg.table_pose_topic, self._on_pose, LATCHED_QOS, callback_group=g)
        if TFMessage is not None:
            self.create_subscription(TFMessage, "/tf_static", self._on_tf, TF_STATIC_QOS, callback_group=g)
        self.create_subscription(PushStrokeMsg, cfg.stroke_topic, self._on_stroke, RELIABLE_QOS, callback_group=g)
        if cfg.clip_source == "outcome":
            self.create_subscription(PredictedRollout, cfg.outcome_topic, self._on_outcome, RELIABLE_QOS, callback_group=g)
        else:
            self._buffer = ClipBuffer(cfg)
            self.create_subscription(DetectedObjects, cfg.objects_topic, self._on_objects, SENSOR_QOS, callback_group=g)
        self.create_timer(0.05, self._tick, callback_group=g)
        self._last_progress = time.monotonic()
        src = cfg.outcome_topic if cfg.clip_source == "outcome" else cfg.objects_topic
        self.get_logger().info(f"recording pushes from {cfg.stroke_topic} with clips from {src} into {cfg.out} "
                               f"({self.writer.episodes} episodes already there; {cfg.num_frames} frames x {cfg.frame_dt_s:g} s, "
                               f"masks {cfg.mask_size}x{cfg.mask_size}" + (f", stop after {cfg.max_episodes}" if cfg.max_episodes else "") + ")")

    @property
    def config(self) -> RecorderConfig:
        return self.params.config

    def close(self) -> None:
        self.writer.close()
        self.get_logger().info(f"recording closed: {self._progress()}")

    # ------------------------------------------------------------------ reporting
    def _once(self, cause: str, message: str) -> None:
        """Log an error once per cause (numbers ignored), then only count it."""
        key = re.sub(r"[-+]?\d[\d.e+-]*", "#", cause + "|" + message)
        n = self._causes.get(key, 0) + 1
        self._causes[key] = n
        if n == 1:
            self.get_logger().error(message + " (logged once; the recorder keeps running and drops pushes until this is fixed)")

    def _progress(self) -> str:
        s = self.writer.summary()
        cfg = self.config
        of = f"/{cfg.max_episodes}" if cfg.max_episodes else ""
        return (f"{s['recorded_this_run']}{of} episodes recorded this run, {s['episodes_on_disk']} on disk, {s['buffered']} buffered; "
                f"dropped: {s['dropped'] or 'none'}")

    def _drop(self, reason: str, detail: str) -> None:
        self.writer.drop(reason)
        self.get_logger().info(f"dropped a push ({reason}): {detail} | {self._progress()}")

    # ------------------------------------------------------------------ calibration
    def _on_info(self, msg: CameraInfo) -> None:
        self._info = msg

    def _on_pose(self, msg: TransformStamped) -> None:
        self._poses[(msg.header.frame_id, msg.child_frame_id)] = _transform_matrix(msg)

    def _on_tf(self, msg) -> None:
        for tr in msg.transforms:
            self._poses[(tr.header.frame_id, tr.child_frame_id)] = _transform_matrix(tr)

    def _T_cam_table(self, cam_frame: str) -> np.ndarray | None:
        table = self.config.table_frame_id
        if (table, cam_frame) in self._poses:
            return np.linalg.inv(self._poses[(table, cam_frame)])  # pose of the camera in the table -> table in the camera
        if (cam_frame, table) in self._poses:
            return self._poses[(cam_frame, table)]
        cands = [T for (p, c), T in self._poses.items() if p == table]
        return np.linalg.inv(cands[0]) if len(cands) == 1 and not cam_frame else None

    def _rectifier(self) -> ClipRectifier:
        """The rectifier of the current calibration (``EpisodeRejected('no_calibration')`` with the fix)."""
        cfg = self.config
        if self._info is None:
            raise EpisodeRejected("no_calibration", f"no CameraInfo on {cfg.camera_info_topic} yet: start the camera driver "
                                  "(or remap camera_info_topic) so the recorder can rectify the masks")
        info = self._info
        T = self._T_cam_table(info.header.frame_id)
        if T is None:
            raise EpisodeRejected("no_calibration", f"no table pose for camera frame {info.header.frame_id!r}: publish the TF "
                                  f"{cfg.table_frame_id} -> {info.header.frame_id or '<camera optical frame>'} on /tf_static or a "
                                  f"geometry_msgs/TransformStamped on {cfg.table_pose_topic} (latched)")
        key = (tuple(info.k), tuple(info.d), info.distortion_model, info.width, info.height, T.tobytes())
        if key != self._calib_key:
            try:
                calib = CameraCalibration.from_camera_info(info, T_cam_table=T)
                rect = ClipRectifier(calib, cfg.mask_size, cfg.object_height)
            except ValueError as e:
                raise EpisodeRejected("no_calibration", f"the calibration is unusable: {e}") from None
            seen = float(rect.valid.mean())
            if seen < 0.9:
                self._once("view", f"the camera sees only {100 * seen:.0f} % of the canonical {2 * rect.frame.half_extent:.2f} m "
                           "workspace: objects outside it are dropped (object_out_of_view); aim the camera at the table centre")
            self._calib_key, self._rect = key, rect
            self.writer.set_calibration(calib)
            self.get_logger().info(f"calibration: {info.width}x{info.height} camera at "
                                   f"{np.round(calib.camera_position, 3).tolist()} m in the table frame, sees {100 * seen:.0f} % of "
                                   "the workspace")
        return self._rect

    # ------------------------------------------------------------------ strokes and clips
    def _on_stroke(self, msg: PushStrokeMsg) -> None:
        if self._done:
            return
        now = self.get_clock().now().nanoseconds
        try:
            stroke = stroke_from_msg(msg)
        except ValueError as e:
            self._drop("bad_stroke", str(e))
            return
        if self.config.clip_source == "outcome":
            self._pending.append((now, stroke))
            return
        if self._pending:
            self._drop("busy", "a stroke arrived while the previous stroke's clip is still being recorded")
            return
        try:
            if self._frame_problem is not None and not self._buffer.stamps:
                raise self._frame_problem
            t0 = self._buffer.first_frame(now)
        except EpisodeRejected as e:
            self._report(e)
            return
        self._pending.append((t0, stroke, now + int(1e9 * (self.config.clip_duration_s + self.config.clip_timeout_s))))

    def _report(self, e: EpisodeRejected) -> None:
        if e.reason in ("no_calibration", "size_mismatch"):
            self._once(e.reason, str(e))
        self._drop(e.reason, e.detail)

    def _on_outcome(self, msg: PredictedRollout) -> None:
        if self._done:
            return
        if not self._pending:
            self._drop("no_stroke", f"an outcome arrived but no stroke was heard on {self.config.stroke_topic} "
                       "(the recorder started after the push, or the stroke topic is wrong)")
            return
        _, stroke = self._pending.popleft()
        t0 = time.perf_counter()
        try:
            rect = self._rectifier()
            try:
                masks = [ids_from_msg(m) for m in msg.object_masks]
            except ValueError as e:
                raise EpisodeRejected("bad_message", f"an outcome mask cannot be decoded: {e}") from None
            dt = msg.frame_dt_s if msg.frame_dt_s > 0 else self.config.frame_dt_s
            ep = episode_from_clip(masks, stroke, rect, self.config, times_s=np.arange(len(masks)) * dt,
                                   stamp_ns=_stamp_ns(msg.header.stamp))
        except EpisodeRejected as e:
            self._report(e)
            return
        self._record(ep, time.perf_counter() - t0)

    def _on_objects(self, msg: DetectedObjects) -> None:
        try:
            rect = self._rectifier()
            try:
                ids = ids_from_msg(msg.instance_mask)
            except ValueError as e:
                raise EpisodeRejected("bad_message", f"a segmentation mask cannot be decoded: {e}") from None
            canon = rect(ids)
        except EpisodeRejected as e:
            if e.reason in ("no_calibration", "size_mismatch"):
                self._once(e.reason, str(e))
            self._frame_problem = e
            return
        self._frame_problem = None
        self._buffer.add(_stamp_ns(msg.header.stamp), canon)

    def _tick(self) -> None:
        if self._done:
            return
        now = self.get_clock().now().nanoseconds
        cfg = self.config
        if cfg.clip_source == "outcome":
            limit = int(1e9 * (cfg.clip_duration_s + cfg.clip_timeout_s + 10.0))
            while self._pending and now - self._pending[0][0] > limit:
                self._pending.popleft()
                self._drop("clip_timeout", f"no outcome on {cfg.outcome_topic} within {limit / 1e9:.0f} s of the stroke")
        elif self._pending:
            t0, stroke, deadline = self._pending[0]
            try:
                clip = self._buffer.clip(t0)
                if clip is None and now > deadline:
                    raise EpisodeRejected("clip_timeout", f"the segmented stream did not cover the {cfg.clip_duration_s:.2f} s "
                                          f"clip within clip_timeout_s={cfg.clip_timeout_s:g} s")
            except EpisodeRejected as e:
                self._pending.popleft()
                self._report(e)
                return
            if clip is None:
                return  # the clip's frames are still coming
            self._pending.popleft()
            t1 = time.perf_counter()
            try:
                ep = episode_from_canonical(clip, stroke, cfg, self._rect.valid if self._rect else None, stamp_ns=t0)
            except EpisodeRejected as e:
                self._report(e)
                return
            self._record(ep, time.perf_counter() - t1)

    def _record(self, ep, seconds: float) -> None:
        self.writer.add(ep)
        cfg = self.config
        self.get_logger().info(f"recorded an episode: {ep.num_objects} objects, pushed {ep.pushed or 'none'} ({seconds:.2f} s) | "
                               f"{self._progress()}")
        if cfg.max_episodes and self.writer.recorded_this_run >= cfg.max_episodes:
            self._done = True
            self.writer.flush()
            self.get_logger().info(f"max_episodes={cfg.max_episodes} reached: flushed, stopping | {self._progress()}")
            from kinemask_ros.ros.entry import STOP

            STOP.set()


def main(args=None) -> int:
    return run(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
