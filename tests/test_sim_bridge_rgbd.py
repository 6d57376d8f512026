"""The sim bridge as an RGB-D driver, in its own process over real DDS: an oblique 160x120 camera
with a randomized look publishes RGB, registered depth (32FC1), CameraInfo for both with one stamp
and frame, and the camera pose (camera/table_pose, /tf_static where tf2_msgs exists); the table
geometry recovered from those messages alone matches the simulator's."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
try:
    import kinemask_ros_interfaces.msg  # noqa: F401  (the bridge node needs them)
except ImportError as exc:  # pragma: no cover
    pytest.skip(f"kinemask_ros_interfaces not built ({exc}); run `bash scripts/setup.sh`", allow_module_level=True)

from geometry_msgs.msg import TransformStamped
from rclpy.executors import SingleThreadedExecutor
from ros_utils import ros_env, wait_for
from sensor_msgs.msg import CameraInfo, Image

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.ros.common import LATCHED_QOS, SENSOR_QOS
from kinemask_ros.table_frame import CameraCalibration, TableFrame, depth_to_table_points, pose_to_matrix

W, H = 160, 120
PARAMS = {"image_width": W, "image_height": H, "camera_distance": 0.8, "camera_elevation_deg": 45.0, "camera_fov_deg": 42.0,
          "look": "randomized", "rate_hz": 15.0, "seed": 5, "frame_id": "sim_camera_optical_frame"}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim_bridge_rgbd")
    domain = random.randint(110, 200)
    env = ros_env(tmp / "ros_log", domain)
    args = [a for k, v in PARAMS.items() for a in ("-p", f"{k}:={v}")]
    log_path = tmp / "bridge.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "kinemask_ros.ros.entry", "kinemask-sim-bridge-node", "--ros-args", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("rgbd_test_client", context=ctx)
    got: dict[str, list] = {k: [] for k in ("rgb", "info", "depth", "depth_info", "pose", "tf")}
    lock = threading.Lock()

    def keep(key):
        def cb(msg):
            with lock:
                got[key].append(msg)
                del got[key][:-20]
        return cb

    node.create_subscription(Image, "camera/image_raw", keep("rgb"), SENSOR_QOS)
    node.create_subscription(CameraInfo, "camera/camera_info", keep("info"), SENSOR_QOS)
    node.create_subscription(Image, "camera/depth/image_raw", keep("depth"), SENSOR_QOS)
    node.create_subscription(CameraInfo, "camera/depth/camera_info", keep("depth_info"), SENSOR_QOS)
    node.create_subscription(TransformStamped, "camera/table_pose", keep("pose"), LATCHED_QOS)
    try:
        from tf2_msgs.msg import TFMessage

        from kinemask_ros.sim_bridge.bridge_node import TF_STATIC_QOS
        node.create_subscription(TFMessage, "/tf_static", keep("tf"), TF_STATIC_QOS)
        has_tf = True
    except ImportError:
        has_tf = False
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    thread = threading.Thread(target=ex.spin, daemon=True)
    thread.start()
    try:
        wait_for(lambda: (all(len(got[k]) >= 3 for k in ("rgb", "info", "depth", "depth_info")) and got["pose"]) or proc.poll() is not None,
                 120, 0.1, "RGB-D frames and the camera pose from the sim bridge")
        assert proc.poll() is None, f"the bridge exited:\n{log_path.read_text()[-3000:]}"
        if has_tf:
            wait_for(lambda: got["tf"], 10, what="/tf_static")
        with lock:
            snap = {k: list(v) for k, v in got.items()}
        yield {"msgs": snap, "has_tf": has_tf, "log": log_path}
    finally:
        ex.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        thread.join(timeout=5.0)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _pair(msgs):
    """The newest RGB and depth frame with identical stamps, and the CameraInfo of that stamp."""
    stamps = lambda key: {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in msgs[key]}
    rgb, depth, info, dinfo = stamps("rgb"), stamps("depth"), stamps("info"), stamps("depth_info")
    common = sorted(set(rgb) & set(depth) & set(info) & set(dinfo))
    assert common, "RGB, depth and both CameraInfos must share stamps"
    s = common[-1]
    return rgb[s], depth[s], info[s], dinfo[s]


def test_rgbd_messages_share_stamp_frame_and_size(bridge):
    rgb, depth, info, dinfo = _pair(bridge["msgs"])
    frame = PARAMS["frame_id"]
    assert rgb.header.frame_id == depth.header.frame_id == info.header.frame_id == dinfo.header.frame_id == frame
    assert (rgb.encoding, rgb.width, rgb.height) == ("rgb8", W, H)
    assert (depth.encoding, depth.width, depth.height, depth.step, depth.is_bigendian) == ("32FC1", W, H, 4 * W, 0)
    assert (info.width, info.height, info.distortion_model) == (W, H, "plumb_bob")
    assert list(info.k) == list(dinfo.k) and list(info.d) == [0.0] * 5 and list(info.r) == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert list(info.p)[:3] == list(info.k)[:3] and info.p[3] == 0.0
    # intrinsics: the simulator's camera, principal point in the ROS convention (centre of pixel 0 at 0)
    cam = CameraModel(CameraConfig.oblique(W, H, elevation_deg=45, distance=0.8, fov_deg=42.0))
    k = np.array(info.k).reshape(3, 3)
    assert np.allclose(k[:2, :2], cam.K[:2, :2]) and np.allclose(k[:2, 2], cam.K[:2, 2] - 0.5)


def test_camera_pose_and_depth_give_the_table_geometry(bridge):
    msgs = bridge["msgs"]
    pose = msgs["pose"][-1]
    assert (pose.header.frame_id, pose.child_frame_id) == ("table", PARAMS["frame_id"])
    tr, q = pose.transform.translation, pose.transform.rotation
    T_table_cam = pose_to_matrix([tr.x, tr.y, tr.z], [q.x, q.y, q.z, q.w])
    cam = CameraModel(CameraConfig.oblique(W, H, elevation_deg=45, distance=0.8, fov_deg=42.0))
    assert np.abs(T_table_cam[:3, 3] - cam.eye).max() < 1e-6
    _, depth_msg, info, _ = _pair(msgs)
    calib = CameraCalibration.from_camera_info(info, T_cam_table=np.linalg.inv(T_table_cam))
    assert np.abs(calib.K - cam.K).max() < 1e-9 and np.abs(calib.T_cam_table - cam.T_cam_table).max() < 1e-6
    assert calib.check_workspace(TableFrame()) == 1.0
    depth = np.frombuffer(bytes(depth_msg.data), dtype="<f4").reshape(H, W)
    z = depth_to_table_points(depth, calib)[..., 2]
    holes = np.isnan(depth) | (depth == 0)
    assert holes.mean() < 0.05  # the randomized look drops a few pixels, like a real sensor
    assert np.nanmedian(np.abs(z)) < 3e-3  # most pixels are table: height ~0 despite the sensor noise
    assert np.nanpercentile(z, 99) > 0.02  # objects stand ~3 cm above it
    if bridge["has_tf"]:
        tf = msgs["tf"][-1].transforms[0]
        assert (tf.header.frame_id, tf.child_frame_id) == ("table", PARAMS["frame_id"])


def test_randomized_look_and_per_frame_noise(bridge):
    msgs = bridge["msgs"]
    frames = [np.frombuffer(bytes(m.data), np.uint8).reshape(H, W, 3) for m in msgs["rgb"][-3:]]
    assert not np.array_equal(frames[-1], frames[-2])  # new sensor noise every frame
    assert np.abs(frames[-1].astype(int) - frames[-2]).mean() < 8  # ... on the same scene
    assert "look randomized" in bridge["log"].read_text()
