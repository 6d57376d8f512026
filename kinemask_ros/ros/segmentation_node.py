"""``kinemask-segmentation-node``: camera image -> instance mask + object list + selected target.

Subscribes ``camera/image_raw`` (sensor_msgs/Image, sensor-data QoS). The subscription callback
only stores the newest frame; a timer (``rate_hz``, its own callback group) segments the newest
unprocessed frame, so a slow segmentation never queues frames (latest frame wins).

Publishes ``segmentation/instance_mask`` (sensor_msgs/Image mono8, same header as the camera
image) and ``segmentation/objects`` (kinemask_ros_interfaces/DetectedObjects: mask, objects,
``target_id``). The target is chosen by the ``target_id`` / ``target_pixel`` / ``target_label``
parameter, or by a label received on ``target_label`` (std_msgs/String, e.g. from the simulator).
Malformed images are dropped with a throttled warning.
"""

from __future__ import annotations

import threading

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from kinemask_ros.ros.common import LATCHED_QOS, SENSOR_QOS, ConfigParameters, Throttle, run, warn_throttled
from kinemask_ros.ros.config import SegmentationNodeConfig
from kinemask_ros.ros.messages import check_rgb_msg, ids_to_msg, rgb_from_msg
from kinemask_ros.segmentation.classical import ClassicalSegmenter
from kinemask_ros.segmentation.targets import select_by_id, select_by_label, select_by_point
from kinemask_ros.segmentation.tracking import TrackedSegmenter
from kinemask_ros_interfaces.msg import DetectedObject, DetectedObjects


def select(seg, cfg: SegmentationNodeConfig, label_override: str = "") -> tuple[int, str]:
    """``(target_id, status)`` for a segmentation under the node's target parameters."""
    try:
        if label_override.strip():
            t = select_by_label(seg, label_override)
            return t, f"label {label_override!r}" if t else f"no object labelled {label_override!r} (labels: {[l for l in seg.labels if l]})"
        if cfg.target_id:
            t = select_by_id(seg, cfg.target_id)
            return t, f"id {cfg.target_id}" if t else f"id {cfg.target_id} not in the image (ids: {seg.object_ids.tolist()})"
        if cfg.target_pixel:
            t = select_by_point(seg, cfg.target_pixel, nearest=True)
            return t, f"pixel {list(cfg.target_pixel)}" if t else "no object in the image"
        if cfg.target_label.strip():
            t = select_by_label(seg, cfg.target_label)
            return t, f"label {cfg.target_label!r}" if t else f"no object labelled {cfg.target_label!r} (labels: {[l for l in seg.labels if l]})"
    except ValueError as e:
        return 0, f"target selection failed: {e}"
    return 0, "no target selection configured"


class SegmentationNode(Node):
    def __init__(self, **kwargs):
        super().__init__("segmentation", **kwargs)
        self.params = ConfigParameters(self, SegmentationNodeConfig(), on_change=self._on_change)
        self.segmenter = self._make_segmenter(self.params.config)
        self._throttle = Throttle()
        self._lock = threading.Lock()
        self._latest: Image | None = None
        self._label_override = ""
        self.frames_in = 0
        self.frames_done = 0
        self.pub_mask = self.create_publisher(Image, "segmentation/instance_mask", SENSOR_QOS)
        self.pub_objects = self.create_publisher(DetectedObjects, "segmentation/objects", SENSOR_QOS)
        self.create_subscription(Image, "camera/image_raw", self._on_image, SENSOR_QOS)
        self.create_subscription(String, "target_label", self._on_label, LATCHED_QOS)
        self._work_group = MutuallyExclusiveCallbackGroup()
        self._timer = self.create_timer(1.0 / self.params.config.rate_hz, self._tick, callback_group=self._work_group)
        self.get_logger().info(f"segmentation node ready (classical segmenter, ids {'tracked' if self.config.track_ids else 'per frame'})")

    @property
    def config(self) -> SegmentationNodeConfig:
        return self.params.config

    @staticmethod
    def _make_segmenter(cfg: SegmentationNodeConfig):
        seg = ClassicalSegmenter(cfg.segmenter_config())
        return TrackedSegmenter(seg) if cfg.track_ids else seg

    def _on_change(self, old: SegmentationNodeConfig, new: SegmentationNodeConfig) -> None:
        self.segmenter = self._make_segmenter(new)
        if new.rate_hz != old.rate_hz:
            self._timer.timer_period_ns = int(1e9 / new.rate_hz)
            self._timer.reset()
        if new.target_id or new.target_pixel or new.target_label:
            self._label_override = ""  # an explicit parameter change wins over the topic

    def _on_image(self, msg: Image) -> None:
        try:
            check_rgb_msg(msg)  # a malformed frame must not displace the newest good one
        except ValueError as e:
            warn_throttled(self, self._throttle, "image", f"dropping camera image: {e}")
            return
        with self._lock:
            self._latest = msg  # newest frame wins; the timer does the work
            self.frames_in += 1

    def _on_label(self, msg: String) -> None:
        self._label_override = msg.data
        self.get_logger().info(f"target label set to {msg.data!r} from the target_label topic")

    def _tick(self) -> None:
        with self._lock:
            msg, self._latest = self._latest, None
        if msg is None:
            return
        try:
            rgb = rgb_from_msg(msg)
        except ValueError as e:
            warn_throttled(self, self._throttle, "image", f"dropping camera image: {e}")
            return
        try:
            seg = self.segmenter.segment(rgb)
        except ValueError as e:
            warn_throttled(self, self._throttle, "segment", f"segmentation failed: {e}")
            return
        target, status = select(seg, self.config, self._label_override)
        mask_msg = ids_to_msg(seg.instance_ids, msg.header)
        out = DetectedObjects(instance_mask=mask_msg, target_id=int(target), target_status=status)
        out.header = msg.header
        cents = seg.centroids()
        for i, oid in enumerate(seg.object_ids):
            out.objects.append(DetectedObject(object_id=int(oid), label=seg.labels[i] or "", score=float(seg.scores[i]),
                                              u=float(cents[i, 0]), v=float(cents[i, 1]), area=int(seg.areas[i]),
                                              box=[float(b) for b in seg.boxes[i]]))
        self.pub_mask.publish(mask_msg)
        self.pub_objects.publish(out)
        self.frames_done += 1


def main(args=None) -> int:
    return run(SegmentationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
