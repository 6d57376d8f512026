"""``kinemask-sim-bridge-node``: the PyBullet tabletop (``KineMaskPush-v0``) as a ROS 2 camera + pusher.

Publishes ``camera/image_raw`` (sensor_msgs/Image rgb8) and ``camera/camera_info`` (intrinsics
``K`` from :class:`kinemask_ros.camera.CameraModel`) at ``rate_hz`` with sensor-data QoS; the
scene's goal on ``goal`` (geometry_msgs/PointStamped, ``table`` frame) and the target's name on
``target_label`` (std_msgs/String, e.g. "red box"), both reliable + transient local so late
joiners get them.

Executes ``sim/execute_push`` (kinemask_ros_interfaces/PushStroke, reliable) one at a time and
publishes what really happened on ``sim/outcome`` (PredictedRollout: simulated frames, instance
masks with the simulator's ids, object tracks, a text description with the goal distance), then
republishes the goal with a new stamp (a new scene when the push reached the goal and
``reset_on_done``). ``sim/reset`` (std_srvs/Trigger) samples a new scene.
"""

from __future__ import annotations

import threading

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from kinemask_ros.envs.push_env import KineMaskPushEnv, PushEnvConfig
from kinemask_ros.ros.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, ConfigParameters, Throttle, run, warn_throttled
from kinemask_ros.ros.config import SimBridgeNodeConfig
from kinemask_ros.ros.messages import camera_info_msg, rgb_to_msg, rollout_msg, stroke_from_msg
from kinemask_ros.sim_bridge.scene import SceneConfig
from kinemask_ros_interfaces.msg import PredictedRollout
from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg


def make_env(cfg: SimBridgeNodeConfig) -> KineMaskPushEnv:
    scene = SceneConfig(camera=cfg.camera_config(cfg.image_width, cfg.image_height))
    n = cfg.num_objects
    return KineMaskPushEnv(PushEnvConfig(scene=scene, num_objects=(n, n) if n else None))


class SimBridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_bridge", **kwargs)
        self.params = ConfigParameters(self, SimBridgeNodeConfig(), read_only=("image_width", "image_height", "seed", "num_objects",
                                                                                "camera_fov_deg", "camera_eye", "camera_target", "camera_up"),
                                       on_change=self._on_change)
        cfg = self.config
        self._throttle = Throttle()
        self._lock = threading.Lock()
        self.env = make_env(cfg)
        self.pushes = 0
        self.pub_image = self.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        self.pub_info = self.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS)
        self.pub_goal = self.create_publisher(PointStamped, "goal", LATCHED_QOS)
        self.pub_label = self.create_publisher(String, "target_label", LATCHED_QOS)
        self.pub_outcome = self.create_publisher(PredictedRollout, "sim/outcome", RELIABLE_QOS)
        self._reset(seed=cfg.seed)
        exec_group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(PushStrokeMsg, "sim/execute_push", self._on_push, RELIABLE_QOS, callback_group=exec_group)
        self.create_service(Trigger, "sim/reset", self._on_reset, callback_group=exec_group)
        self._timer = self.create_timer(1.0 / cfg.rate_hz, self._tick, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"simulator bridge: {cfg.image_width}x{cfg.image_height} camera at {cfg.rate_hz:g} Hz")

    @property
    def config(self) -> SimBridgeNodeConfig:
        return self.params.config

    def close(self) -> None:
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
    def _reset(self, seed: int | None = None) -> str:
        with self._lock:
            obs, info = self.env.reset(seed=seed)
            self._rgb = obs["image"]
            desc = self._describe()
        self._publish_goal()
        self.get_logger().info(f"new scene: {desc}")
        return desc

    def _describe(self) -> str:
        objs = ", ".join(o.name for o in self.env.objects)
        g = self.env.goal
        return f"{len(self.env.objects)} objects ({objs}); push the {self.env.objects[self.env.target - 1].name} to ({g[0]:.3f}, {g[1]:.3f}) m"

    def _publish_goal(self) -> None:
        with self._lock:
            g = self.env.goal
            label = self.env.objects[self.env.target - 1].name
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
        with self._lock:
            rgb = self._rgb
            K = self.env.scene.camera.K
        h = self._header(self.config.frame_id)
        self.pub_image.publish(rgb_to_msg(rgb, h))
        self.pub_info.publish(camera_info_msg(K, rgb.shape[1], rgb.shape[0], h))

    # ------------------------------------------------------------------ pushes
    def _on_push(self, msg: PushStrokeMsg) -> None:
        try:
            stroke = stroke_from_msg(msg)
        except ValueError as e:
            warn_throttled(self, self._throttle, "push", f"dropping push stroke: {e}")
            return
        try:
            with self._lock:
                action = self.env.stroke_to_action(stroke)
                obs, reward, terminated, truncated, info = self.env.step(action)
                ep = self.env.last_episode
                self._rgb = obs["image"]
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
