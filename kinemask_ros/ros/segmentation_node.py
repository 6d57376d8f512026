"""``kinemask-segmentation-node``: camera image -> instance mask + object list + selected target.

Subscribes ``camera/image_raw`` (sensor_msgs/Image, sensor-data QoS). The subscription callback
only stores the newest frame; a timer (``rate_hz``, its own callback group) segments the newest
unprocessed frame, so a slow segmentation never queues frames (latest frame wins).

Publishes ``segmentation/instance_mask`` (sensor_msgs/Image mono8, same header as the camera
image) and ``segmentation/objects`` (kinemask_ros_interfaces/DetectedObjects: mask, objects,
``target_id``). The target is chosen by the ``target_id`` / ``target_pixel`` / ``target_label``
parameter, or by a label received on ``target_label`` (std_msgs/String, e.g. from the simulator).
Malformed images, and images above ``max_image_pixels``, are dropped with a throttled warning.
Images above ``max_segment_pixels`` are box-downscaled by an integer factor before segmenting (a
4096x4096 frame took 28 s at full resolution); the published mask is scaled back to the image
size (nearest) and the objects' centroids, boxes and areas are given in image pixels.
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
from kinemask_ros.ros.messages import check_image_size, check_rgb_msg, ids_to_msg, rgb_from_msg
from kinemask_ros.ros_convert import resize_ids, resize_rgb
from kinemask_ros.segmentation.classical import ClassicalSegmenter
from kinemask_ros.segmentation.core import downscale_factor
from kinemask_ros.segmentation.targets import select_by_id, select_by_label, select_by_point
from kinemask_ros.segmentation.tracking import TrackedSegmenter
from kinemask_ros_interfaces.msg import DetectedObject, DetectedObjects


def select(seg, cfg: SegmentationNodeConfig, label_override: str = "", scale: tuple[float, float] = (1.0, 1.0)) -> tuple[int, str]:
    """``(target_id, status)`` for a segmentation under the node's target parameters.

    ``scale``: image pixels per segmentation pixel ``(sx, sy)`` (``target_pixel`` is in image pixels).
    """
    try:
        if label_override.strip():
            t = select_by_label(seg, label_override)
            return t, f"label {label_override!r}" if t else f"no object labelled {label_override!r} (labels: {[l for l in seg.labels if l]})"
        if cfg.target_id:
            t = select_by_id(seg, cfg.target_id)
            return t, f"id {cfg.target_id}" if t else f"id {cfg.target_id} not in the image (ids: {seg.object_ids.tolist()})"
        if cfg.target_pixel:
            t = select_by_point(seg, (cfg.target_pixel[0] / scale[0], cfg.target_pixel[1] / scale[1]), nearest=True)
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
            check_image_size(msg, self.config.max_image_pixels)
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
        H, W = rgb.shape[:2]
        f = downscale_factor(H, W, self.config.max_segment_pixels)
        small = resize_rgb(rgb, -(-H // f), -(-W // f)) if f > 1 else rgb
        try:
            seg = self.segmenter.segment(small)
        except ValueError as e:
            warn_throttled(self, self._throttle, "segment", f"segmentation failed: {e}")
            return
        sy, sx = H / small.shape[0], W / small.shape[1]
        target, status = select(seg, self.config, self._label_override, (sx, sy))
        mask_msg = ids_to_msg(resize_ids(seg.instance_ids, H, W) if f > 1 else seg.instance_ids, msg.header)
        out = DetectedObjects(instance_mask=mask_msg, target_id=int(target), target_status=status)
        out.header = msg.header
        cents = seg.centroids()
        for i, oid in enumerate(seg.object_ids):
            out.objects.append(DetectedObject(object_id=int(oid), label=seg.labels[i] or "", score=float(seg.scores[i]),
                                              u=float(cents[i, 0] * sx), v=float(cents[i, 1] * sy), area=int(round(seg.areas[i] * sx * sy)),
                                              box=[float(b) * s for b, s in zip(seg.boxes[i], (sx, sy, sx, sy))]))
        self.pub_mask.publish(mask_msg)
        self.pub_objects.publish(out)
        self.frames_done += 1


def main(args=None) -> int:
    return run(SegmentationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
