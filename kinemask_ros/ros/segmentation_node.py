"""``kinemask-segmentation-node``: camera image -> instance mask + object list + selected target.

Subscribes ``camera/image_raw`` (sensor_msgs/Image, sensor-data QoS). The subscription callback
only stores the newest frame; a timer (``rate_hz``, its own callback group) segments the newest
unprocessed frame, so a slow segmentation never queues frames (latest frame wins).

Publishes ``segmentation/instance_mask`` (sensor_msgs/Image mono8, same header as the camera
image) and ``segmentation/objects`` (kinemask_ros_interfaces/DetectedObjects: mask, objects,
``target_id``). The target is chosen by the ``target_id`` / ``target_pixel`` / ``target_label``
parameter, or by a label received on ``target_label`` (std_msgs/String, e.g. from the simulator), or
by a point on ``target_point`` (geometry_msgs/PointStamped: a table point in frame ``table``, or a
3-D point in the camera's optical frame; mapped to a pixel with ``camera/camera_info`` +
``camera/table_pose``); the newest of the two topics wins.
With ``backend`` "rgbd" each frame is segmented together with the depth image of the same stamp
(``camera/depth/image_raw``) and the calibration from ``camera/camera_info`` + ``camera/table_pose``
(geometry_msgs/TransformStamped, table -> camera; latched); a missing or unusable one is named in
a warning once per cause and the frame is skipped. "rgb" needs only the image.
Malformed images, and images above ``max_image_pixels``, are dropped with a throttled warning.
Images above ``max_segment_pixels`` are box-downscaled by an integer factor before segmenting (a
4096x4096 frame took 28 s at full resolution); the published mask is scaled back to the image
size (nearest) and the objects' centroids, boxes and areas are given in image pixels.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from geometry_msgs.msg import PointStamped, TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from kinemask_ros.ros.common import LATCHED_QOS, SENSOR_QOS, ConfigParameters, Throttle, run, warn_throttled
from kinemask_ros.ros.config import SegmentationNodeConfig
from kinemask_ros.ros.messages import CalibrationCache, check_image_size, check_rgb_msg, depth_from_msg, ids_to_msg, rgb_from_msg
from kinemask_ros.ros_convert import resize_ids, resize_rgb
from kinemask_ros.segmentation.classical import ClassicalSegmenter
from kinemask_ros.segmentation.core import downscale_factor
from kinemask_ros.segmentation.targets import select_by_id, select_by_label, select_by_point
from kinemask_ros.segmentation.tracking import IdTracker, TrackedSegmenter

_KEEP_DEPTH = 16


def _key(header) -> tuple[int, int]:
    return (int(header.stamp.sec), int(header.stamp.nanosec))


def scaled_calibration(calib, width: int, height: int):
    """The calibration of the same camera for an image resized to ``width x height`` (K scaled)."""
    from kinemask_ros.table_frame import CameraCalibration

    if (width, height) == (calib.width, calib.height):
        return calib
    S = np.diag([width / calib.width, height / calib.height, 1.0])  # continuous pixels scale with the image
    return CameraCalibration(K=S @ calib.K, D=calib.D, width=width, height=height, T_cam_table=calib.T_cam_table)
from kinemask_ros_interfaces.msg import DetectedObject, DetectedObjects


def point_to_pixel(msg: PointStamped, calib) -> tuple[float, float]:
    """Camera pixel ``(u, v)`` of a ``target_point``: a point in the ``table`` frame ("" = table) [m],
    or a 3-D point in the camera's optical frame [m, z forward] (any other ``frame_id``: the
    camera's). ``ValueError`` naming the fix (no calibration yet, behind the camera, NaN)."""
    from kinemask_ros.table_frame import table_to_camera_pixels

    p = msg.point
    if not all(np.isfinite([p.x, p.y, p.z])):
        raise ValueError(f"target_point ({p.x}, {p.y}, {p.z}) is not finite")
    if calib is None:
        raise ValueError("target_point needs camera/camera_info + camera/table_pose to map it to a pixel")
    if msg.header.frame_id in ("", "table"):
        uv = table_to_camera_pixels(np.array([[p.x, p.y]]), calib, p.z)[0]
    else:
        if p.z <= 0:
            raise ValueError(f"target_point in frame {msg.header.frame_id!r} has z = {p.z} m: a point in the camera's optical "
                             "frame must be in front of it (z > 0); for a table point use frame_id 'table'")
        uv = calib.camera_points_to_pixels(np.array([[p.x, p.y, p.z]]))[0]
    if not np.all(np.isfinite(uv)) or not (0 <= uv[0] < calib.width and 0 <= uv[1] < calib.height):
        raise ValueError(f"target_point maps to pixel ({uv[0]:.1f}, {uv[1]:.1f}), outside the {calib.width}x{calib.height} image")
    return float(uv[0]), float(uv[1])


def select(seg, cfg: SegmentationNodeConfig, label_override: str = "", scale: tuple[float, float] = (1.0, 1.0),
           pixel_override: tuple[float, float] | None = None) -> tuple[int, str]:
    """``(target_id, status)`` for a segmentation under the node's target parameters.

    ``scale``: image pixels per segmentation pixel ``(sx, sy)`` (``target_pixel`` is in image pixels).
    ``pixel_override`` (from the ``target_point`` topic, image pixels) and ``label_override`` (the
    ``target_label`` topic) win over the parameters, the newest of the two topics first.
    """
    try:
        if pixel_override is not None:
            t = select_by_point(seg, (pixel_override[0] / scale[0], pixel_override[1] / scale[1]), nearest=True)
            return t, f"target_point pixel ({pixel_override[0]:.1f}, {pixel_override[1]:.1f})" if t else "no object in the image"
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
        self.params = ConfigParameters(self, SegmentationNodeConfig(), on_change=self._on_change, read_only=("backend",))
        self.segmenter = self._make_segmenter(self.params.config)
        self._tracker = IdTracker() if self.params.config.track_ids else None
        self._throttle = Throttle()
        self._lock = threading.Lock()
        self._latest: Image | None = None
        self._label_override = ""
        self._point_override: PointStamped | None = None
        self._depths: OrderedDict = OrderedDict()
        self._recent: OrderedDict = OrderedDict()  # rgbd: the last camera frames by stamp
        self._calib = CalibrationCache(on_error=lambda m: self.get_logger().error(m))
        self.frames_in = 0
        self.frames_done = 0
        self.pub_mask = self.create_publisher(Image, "segmentation/instance_mask", SENSOR_QOS)
        self.pub_objects = self.create_publisher(DetectedObjects, "segmentation/objects", SENSOR_QOS)
        self.create_subscription(Image, "camera/image_raw", self._on_image, SENSOR_QOS)
        self.create_subscription(String, "target_label", self._on_label, LATCHED_QOS)
        self.create_subscription(PointStamped, "target_point", self._on_point, LATCHED_QOS)
        self.create_subscription(CameraInfo, "camera/camera_info", self._on_info, SENSOR_QOS)
        self.create_subscription(TransformStamped, "camera/table_pose", self._on_table_pose, LATCHED_QOS)
        if self.config.backend == "rgbd":
            self.create_subscription(Image, "camera/depth/image_raw", self._on_depth, SENSOR_QOS)
        self._work_group = MutuallyExclusiveCallbackGroup()
        self._timer = self.create_timer(1.0 / self.params.config.rate_hz, self._tick, callback_group=self._work_group)
        self.get_logger().info(f"segmentation node ready ({self.config.backend} segmenter, ids {'tracked' if self.config.track_ids else 'per frame'})")

    @property
    def config(self) -> SegmentationNodeConfig:
        return self.params.config

    @staticmethod
    def _make_segmenter(cfg: SegmentationNodeConfig):
        from kinemask_ros.segmentation import make_segmenter

        if cfg.backend == "classical":
            seg = ClassicalSegmenter(cfg.segmenter_config())
            return TrackedSegmenter(seg) if cfg.track_ids else seg
        if cfg.backend == "rgb":
            return make_segmenter("rgb", track_ids=cfg.track_ids)
        return make_segmenter("rgbd")  # ids tracked by self._tracker (its segment takes depth)

    def _on_change(self, old: SegmentationNodeConfig, new: SegmentationNodeConfig) -> None:
        self.segmenter = self._make_segmenter(new)
        self._tracker = IdTracker() if new.track_ids else None
        if new.rate_hz != old.rate_hz:
            self._timer.timer_period_ns = int(1e9 / new.rate_hz)
            self._timer.reset()
        if new.target_id or new.target_pixel or new.target_label:
            self._label_override = ""  # an explicit parameter change wins over the topics
            self._point_override = None

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
            if self.config.backend == "rgbd":  # its depth may come a little later: keep a few to pair by stamp
                self._recent[_key(msg.header)] = msg
                while len(self._recent) > _KEEP_DEPTH:
                    self._recent.popitem(last=False)

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._depths[_key(msg.header)] = msg
            while len(self._depths) > _KEEP_DEPTH:
                self._depths.popitem(last=False)

    def _on_info(self, msg: CameraInfo) -> None:
        self._calib.info = msg

    def _on_table_pose(self, msg: TransformStamped) -> None:
        self._calib.pose = msg

    def _segment_rgbd(self, msg: Image, small: np.ndarray):
        with self._lock:
            dmsg = self._depths.get(_key(msg.header))
        if dmsg is None:
            raise ValueError("no depth image with this camera image's stamp on camera/depth/image_raw (backend 'rgbd')")
        if (dmsg.width, dmsg.height) != (msg.width, msg.height):
            raise ValueError(f"the depth image is {dmsg.width}x{dmsg.height} but the camera image is {msg.width}x{msg.height}: "
                             "publish depth registered to the colour image")
        calib = self._calib.get()
        if calib is None:
            raise ValueError("backend 'rgbd' waits for camera/camera_info and camera/table_pose (the table -> camera transform)")
        if (calib.width, calib.height) != (msg.width, msg.height):
            raise ValueError(f"camera/camera_info is for {calib.width}x{calib.height} images, the camera image is {msg.width}x{msg.height}")
        depth = resize_ids(depth_from_msg(dmsg), small.shape[0], small.shape[1])  # nearest: depth is never blended
        seg = self.segmenter.segment(small, depth, scaled_calibration(calib, small.shape[1], small.shape[0]))
        return self._tracker.update(seg) if self._tracker is not None else seg

    def _on_point(self, msg: PointStamped) -> None:
        self._point_override = msg  # mapped to a pixel per frame (the calibration may arrive later)
        self._label_override = ""
        p = msg.point
        self.get_logger().info(f"target point ({p.x:.3f}, {p.y:.3f}, {p.z:.3f}) in frame {msg.header.frame_id or 'table'!r} "
                               "from the target_point topic")

    def _on_label(self, msg: String) -> None:
        self._point_override = None
        self._label_override = msg.data
        self.get_logger().info(f"target label set to {msg.data!r} from the target_label topic")

    def _next_frame(self) -> Image | None:
        """The newest unprocessed camera frame; for "rgbd" the newest one whose depth has arrived
        (older ones are dropped: the latest frame wins)."""
        with self._lock:
            if self.config.backend != "rgbd":
                msg, self._latest = self._latest, None
                return msg
            both = [k for k in self._recent if k in self._depths]
            if not both:
                if self._latest is not None and len(self._recent) >= _KEEP_DEPTH:
                    self._latest = None
                    raise ValueError("no depth image with the stamp of any of the last camera images on camera/depth/image_raw "
                                     "(backend 'rgbd'): publish registered depth with the colour image's stamp")
                return None
            k = max(both)
            msg = self._recent[k]
            for old in [x for x in self._recent if x <= k]:
                del self._recent[old]
            self._latest = None
            return msg

    def _tick(self) -> None:
        try:
            msg = self._next_frame()
        except ValueError as e:
            warn_throttled(self, self._throttle, "segment", f"segmentation failed: {e}")
            return
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
            seg = self._segment_rgbd(msg, small) if self.config.backend == "rgbd" else self.segmenter.segment(small)
        except ValueError as e:
            warn_throttled(self, self._throttle, "segment", f"segmentation failed: {e}")
            return
        sy, sx = H / small.shape[0], W / small.shape[1]
        pixel = None
        if self._point_override is not None:
            try:
                pixel = point_to_pixel(self._point_override, self._calib.get())
            except ValueError as e:
                warn_throttled(self, self._throttle, "point", f"target_point not usable: {e}")
        target, status = select(seg, self.config, self._label_override, (sx, sy), pixel)
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
