"""``kinemask-sim-bridge-node``: the PyBullet tabletop (``KineMaskPush-v0``) as a ROS 2 RGB-D camera + pusher.

Publishes, like a real RGB-D driver, at ``rate_hz`` with sensor-data QoS and one stamp and
``frame_id`` (the camera's optical frame) per frame: ``camera/image_raw`` (sensor_msgs/Image
rgb8), ``camera/camera_info`` (K, D = 0, R, P of :class:`kinemask_ros.camera.CameraModel`, in the
ROS pixel convention), and with ``publish_depth`` the registered depth ``camera/depth/image_raw``
(32FC1, metres along the optical axis, NaN = no return) with ``camera/depth/camera_info`` (the
same intrinsics). The camera's pose: the static transform ``table_frame_id -> frame_id`` on
``/tf_static`` (tf2_msgs/TFMessage, reliable + transient local, when ``tf2_msgs`` is installed)
and always on ``camera/table_pose`` (geometry_msgs/TransformStamped, same transform, latched),
so :meth:`kinemask_ros.table_frame.CameraCalibration.from_camera_info` gets everything it needs.
The camera (``image_width``/``height``, ``camera_distance``/``elevation_deg``/``azimuth_deg``,
``camera_fov_deg``) and the ``look`` (canonical | randomized, a new look per scene from ``seed``,
with per-frame sensor noise) are parameters. The scene's goal goes on ``goal``
(geometry_msgs/PointStamped, ``table`` frame) and the target's name on ``target_label``
(std_msgs/String, e.g. "red box"), both reliable + transient local so late joiners get them.

Executes ``sim/execute_push`` (kinemask_ros_interfaces/PushStroke, reliable) one at a time and
publishes what really happened on ``sim/outcome`` (PredictedRollout: simulated frames, instance
masks with the simulator's ids, object tracks, a text description with the goal distance), then
republishes the goal with a new stamp (a new scene when the push reached the goal and
``reset_on_done``). ``sim/reset`` (std_srvs/Trigger) samples a new scene.
"""

from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import PointStamped, TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from kinemask_ros.envs.push_env import KineMaskPushEnv, PushEnvConfig
from kinemask_ros.ros.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, ConfigParameters, Throttle, run, warn_throttled
from kinemask_ros.ros.config import SimBridgeNodeConfig
from kinemask_ros.ros.messages import rgb_to_msg, rollout_msg, stroke_from_msg
from kinemask_ros.sim_bridge.look import LookConfig
from kinemask_ros.sim_bridge.scene import SceneConfig
from kinemask_ros.table_frame import CameraCalibration, TableFrame, matrix_to_pose
from kinemask_ros_interfaces.msg import PredictedRollout
from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg

try:  # tf2_msgs has no PyPI wheel; a full ROS 2 install has it
    from tf2_msgs.msg import TFMessage
except ImportError:  # pragma: no cover - depends on the installation
    TFMessage = None

#: QoS of /tf_static (as tf2_ros.StaticTransformBroadcaster): reliable, transient local, keep last 1.
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def make_env(cfg: SimBridgeNodeConfig) -> KineMaskPushEnv:
    scene = SceneConfig(camera=cfg.sim_camera_config(), look=LookConfig.named(cfg.look))
    n = cfg.num_objects
    return KineMaskPushEnv(PushEnvConfig(scene=scene, num_objects=(n, n) if n else None))


def depth_to_msg(depth: np.ndarray, header=None) -> Image:
    """Depth ``(H, W)`` [m] -> ``sensor_msgs/Image`` 32FC1 (little endian, NaN = no return)."""
    d = np.ascontiguousarray(depth, dtype="<f4")
    msg = Image(height=int(d.shape[0]), width=int(d.shape[1]), encoding="32FC1", is_bigendian=0, step=int(d.shape[1]) * 4)
    msg.data = d.tobytes()
    if header is not None:
        msg.header = header
    return msg


def camera_info_from_calibration(calib: CameraCalibration, header=None) -> CameraInfo:
    """``sensor_msgs/CameraInfo`` (ROS pixel convention) of a :class:`CameraCalibration`."""
    f = calib.to_camera_info()
    info = CameraInfo(width=f["width"], height=f["height"], distortion_model=f["distortion_model"])
    info.d, info.k, info.r, info.p = f["d"], f["k"], f["r"], f["p"]
    if header is not None:
        info.header = header
    return info


def transform_msg(T_parent_child: np.ndarray, parent: str, child: str, stamp) -> TransformStamped:
    """``geometry_msgs/TransformStamped``: the pose of ``child`` in ``parent`` (the TF ``parent -> child``)."""
    t, q = matrix_to_pose(T_parent_child)
    msg = TransformStamped()
    msg.header.frame_id, msg.header.stamp, msg.child_frame_id = parent, stamp, child
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in t)
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


class SimBridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_bridge", **kwargs)
        self.params = ConfigParameters(self, SimBridgeNodeConfig(), read_only=("image_width", "image_height", "seed", "num_objects",
                                                                                "camera_fov_deg", "camera_eye", "camera_target", "camera_up",
                                                                                "camera_distance", "camera_elevation_deg", "camera_azimuth_deg",
                                                                                "look", "publish_depth", "frame_id", "table_frame_id"),
                                       on_change=self._on_change)
        cfg = self.config
        self._throttle = Throttle()
        self._lock = threading.Lock()
        self._closed = False  # set by close(): the simulator is gone
        self.env = make_env(cfg)
        self.calibration = CameraCalibration.from_camera_model(self.env.scene.camera)
        try:
            self.calibration.check_workspace(TableFrame())
        except ValueError as e:
            self.get_logger().warning(f"simulated camera: {e}")
        self._look_rng = np.random.default_rng([cfg.seed, 7])  # looks have their own stream: scenes stay those of `seed`
        self.pushes = 0
        self.pub_image = self.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        self.pub_info = self.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS)
        if cfg.publish_depth:
            self.pub_depth = self.create_publisher(Image, "camera/depth/image_raw", SENSOR_QOS)
            self.pub_depth_info = self.create_publisher(CameraInfo, "camera/depth/camera_info", SENSOR_QOS)
        self.pub_pose = self.create_publisher(TransformStamped, "camera/table_pose", LATCHED_QOS)
        self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS) if TFMessage is not None else None
        self._publish_camera_pose()
        self.pub_goal = self.create_publisher(PointStamped, "goal", LATCHED_QOS)
        self.pub_label = self.create_publisher(String, "target_label", LATCHED_QOS)
        self.pub_outcome = self.create_publisher(PredictedRollout, "sim/outcome", RELIABLE_QOS)
        self._reset(seed=cfg.seed)
        exec_group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(PushStrokeMsg, "sim/execute_push", self._on_push, RELIABLE_QOS, callback_group=exec_group)
        self.create_service(Trigger, "sim/reset", self._on_reset, callback_group=exec_group)
        self._timer = self.create_timer(1.0 / cfg.rate_hz, self._tick, callback_group=MutuallyExclusiveCallbackGroup())
        eye = self.calibration.camera_position
        self.get_logger().info(f"simulator bridge: {cfg.image_width}x{cfg.image_height} RGB{'-D' if cfg.publish_depth else ''} camera "
                               f"at {cfg.rate_hz:g} Hz, eye ({eye[0]:.3f}, {eye[1]:.3f}, {eye[2]:.3f}) m, look {cfg.look}"
                               + ("" if self.pub_tf_static is not None else "; tf2_msgs is not installed: the camera pose is on "
                                  "camera/table_pose only (not /tf_static)"))

    @property
    def config(self) -> SimBridgeNodeConfig:
        return self.params.config

    def close(self) -> None:
        """Stop the camera timer, refuse pushes from now on, then close the simulator (after any push
        that is running: it holds the lock)."""
        self._closed = True
        self._timer.cancel()
        with self._lock:
            self.env.close()

    def _on_change(self, old: SimBridgeNodeConfig, new: SimBridgeNodeConfig) -> None:
        if new.rate_hz != old.rate_hz:
            self._timer.timer_period_ns = int(1e9 / new.rate_hz)
            self._timer.reset()

    def _header(self, frame_id: str) -> Header:
        h = Header(frame_id=frame_id)
        h.stamp = self.get_clock().now().to_msg()
        return h

    # ------------------------------------------------------------------ scene
    def _publish_camera_pose(self) -> None:
        stamp = self.get_clock().now().to_msg()
        msg = transform_msg(self.calibration.T_table_cam, self.config.table_frame_id, self.config.frame_id, stamp)
        self.pub_pose.publish(msg)
        if self.pub_tf_static is not None:
            self.pub_tf_static.publish(TFMessage(transforms=[msg]))

    def _render(self) -> None:
        """The scene's clean RGB-D frame (sensor noise is added per published frame)."""
        self._rgb, self._ids, self._depth = self.env.scene.render_rgbd(noise=False)

    def _reset(self, seed: int | None = None) -> str:
        with self._lock:
            if self._closed:
                raise RuntimeError("the simulator bridge is shutting down")
            self.env.reset(seed=seed)
            self.env.scene.sample_look(self._look_rng)  # nothing is drawn for the canonical look
            self._render()
            desc = self._describe()
        self._publish_goal()
        self.get_logger().info(f"new scene: {desc}")
        return desc

    def _describe(self) -> str:
        names = [self.env.scene.visible_name(i + 1, self._rgb, self._ids) for i in range(len(self.env.objects))]
        g = self.env.goal
        target = names[self.env.target - 1]
        same = names.count(target) - 1
        warn = f" ({same} other object(s) look the same: a label alone cannot tell them apart)" if same else ""
        return f"{len(names)} objects ({', '.join(names)}); push the {target} to ({g[0]:.3f}, {g[1]:.3f}) m{warn}"

    def _publish_goal(self) -> None:
        with self._lock:
            g = self.env.goal
            label = self.env.scene.visible_name(self.env.target, self._rgb, self._ids)  # the colour the camera sees
        msg = PointStamped(header=self._header("table"))
        msg.point.x, msg.point.y = float(g[0]), float(g[1])
        self.pub_label.publish(String(data=label))
        self.pub_goal.publish(msg)

    def _on_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        try:
            resp.message = self._reset()
            resp.success = True
        except Exception as e:  # pragma: no cover
            resp.success, resp.message = False, f"reset failed: {e}"
        return resp

    # ------------------------------------------------------------------ camera
    def _tick(self) -> None:
        depth_on = self.config.publish_depth
        with self._lock:
            rgb, depth = self.env.scene.add_sensor_noise(self._rgb, self._depth if depth_on else None)
        h = self._header(self.config.frame_id)
        info = camera_info_from_calibration(self.calibration, h)
        self.pub_image.publish(rgb_to_msg(rgb, h))
        self.pub_info.publish(info)
        if depth_on:
            self.pub_depth.publish(depth_to_msg(depth, h))
            self.pub_depth_info.publish(info)

    # ------------------------------------------------------------------ pushes
    def _on_push(self, msg: PushStrokeMsg) -> None:
        try:
            stroke = stroke_from_msg(msg)
        except ValueError as e:
            warn_throttled(self, self._throttle, "push", f"dropping push stroke: {e}")
            return
        try:
            with self._lock:
                if self._closed:
                    self.get_logger().warning("dropping push stroke: the simulator bridge is shutting down")
                    return
                action = self.env.stroke_to_action(stroke)
                obs, reward, terminated, truncated, info = self.env.step(action)
                ep = self.env.last_episode
                self._render()
                dt = self.env.config.scene.frame_dt
        except (ValueError, RuntimeError) as e:
            warn_throttled(self, self._throttle, "exec", f"push failed in the simulator: {e}")
            return
        self.pushes += 1
        K = ep.centroids_px.shape[1]
        tracks = np.transpose(ep.centroids_px, (1, 0, 2))  # (K, T, 2)
        areas = np.stack([(ep.masks == k).sum((-1, -2)) for k in range(1, K + 1)]).astype(np.float32)
        labels = {k + 1: o.name for k, o in enumerate(ep.objects)}
        text = (f"{info['description']} | goal_distance={info['goal_distance']:.4f} m success={info['is_success']} "
                f"pushed_id={info['pushed_id']} hit_target={info['hit_target']}")
        out = rollout_msg(self._header(self.config.frame_id), 0, ep.frames, ep.masks, tracks, areas, dt, labels, None, text)
        self.pub_outcome.publish(out)
        self.get_logger().info(f"executed push {self.pushes}: {text}")
        if terminated and self.config.reset_on_done:
            self._reset()
        else:
            self._publish_goal()


def main(args=None) -> int:
    return run(SimBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
