"""Any camera over ROS, in real processes: the sim bridge as an oblique 320x240 RGB-D camera with a
randomised look -> RGB-D segmentation (depth + CameraInfo + table pose) -> the planner in the
camera's canonical table frame (object model) -> rollouts rendered in the camera's own pixels; and a
separate client asking the world-model service about the camera's own frame."""

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
    from kinemask_ros_interfaces.msg import DetectedObjects, PredictedRollout, ScoredCandidateArray
    from kinemask_ros_interfaces.srv import ImagineOutcomes
except ImportError as exc:  # pragma: no cover
    pytest.skip(f"kinemask_ros_interfaces not built ({exc}); run `bash scripts/setup.sh`", allow_module_level=True)
from rclpy.executors import SingleThreadedExecutor
from ros_utils import make_tiny_checkpoint, ros_env, wait_for

from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import Image

from kinemask_ros.ros.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS


def _checkpoint(root):
    from kinemask_ros.world_model.objects import ObjectTrackDenoiser, ObjectWorldModel

    ckpt = make_tiny_checkpoint(root, video=False)
    ObjectWorldModel(ObjectTrackDenoiser(num_frames=16, dim=32, layers=1, heads=2)).save_pretrained(ckpt / "objects")
    return ckpt


def test_oblique_rgbd_camera_end_to_end(tmp_path):
    domain = random.randint(110, 200)
    env = ros_env(tmp_path / "ros_log", domain)
    log_path = tmp_path / "graph.log"
    cmd = [sys.executable, "-m", "kinemask_ros.ros.graph", "--checkpoint", str(_checkpoint(tmp_path / "wm")),
           "--set", "sim_bridge.image_width=320", "--set", "sim_bridge.image_height=240", "--set", "sim_bridge.camera_distance=0.8",
           "--set", "sim_bridge.camera_elevation_deg=50.0", "--set", "sim_bridge.camera_fov_deg=42.0",
           "--set", "sim_bridge.look=randomized", "--set", "sim_bridge.rate_hz=5.0", "--set", "sim_bridge.seed=4",
           "--set", "segmentation.backend=rgbd", "--set", "segmentation.rate_hz=5.0",
           "--set", "planner.torch_threads=1", "--set", "planner.num_candidates=8", "--set", "planner.iterations=1",
           "--set", "planner.rollout_top_k=1", "--set", "world_model.torch_threads=1"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ["ROS_DOMAIN_ID"], os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = str(domain), "LOCALHOST"
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("any_camera_client", context=ctx)
    got: dict[str, list] = {"objects": [], "candidates": [], "rollouts": [], "preview": [], "image": [], "goal": []}
    node.create_subscription(Image, "camera/image_raw", got["image"].append, SENSOR_QOS)
    node.create_subscription(PointStamped, "goal", got["goal"].append, LATCHED_QOS)
    imagine = node.create_client(ImagineOutcomes, "imagine_outcomes")
    node.create_subscription(DetectedObjects, "segmentation/objects", got["objects"].append, SENSOR_QOS)
    node.create_subscription(ScoredCandidateArray, "planner/candidates", got["candidates"].append, RELIABLE_QOS)
    node.create_subscription(PredictedRollout, "planner/rollouts", got["rollouts"].append, RELIABLE_QOS)
    node.create_subscription(Image, "planner/preview", got["preview"].append, RELIABLE_QOS)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()
    spin = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.1) for _ in iter(stop.is_set, True)], daemon=True)
    spin.start()
    try:
        wait_for(lambda: (got["rollouts"] and got["preview"]) or proc.poll() is not None, 240, 0.5, "a rollout from the oblique RGB-D graph")
        assert proc.poll() is None, log_path.read_text()[-4000:]
        objs = got["objects"][-1]
        assert objs.instance_mask.width == 320 and len(objs.objects) >= 1  # segmented at the camera's size, depth-based
        arr = got["candidates"][-1]
        assert arr.candidates and arr.candidates[0].valid and not arr.left_out_ids
        r = got["rollouts"][0]
        assert (r.frames[0].width, r.frames[0].height) == (320, 240)  # previews in the camera's own pixels
        assert "se2_warp_camera" in r.text
        moving = [t for t in r.tracks if len(t.x) == len(r.frames)]
        assert moving and all(np.isfinite(t.yaw).all() for t in moving)  # SE(2) pose tracks in the table frame
        pv = got["preview"][0]
        img = np.frombuffer(bytes(pv.data), np.uint8).reshape(pv.height, pv.width, 3)
        assert (pv.width, pv.height) == (320, 240) and np.all(img == (255, 215, 0), -1).any()  # the goal ring is drawn
        text = log_path.read_text()
        assert "camera calibration from camera/camera_info + camera/table_pose" in text
        # a separate client sends the camera's own 320x240 frame + its segmentation to the service: it
        # is read in the calibrated table frame, so the planner's best push touches the same object
        def planned_frame():  # the camera image and segmentation the planner's newest ranking was made from
            stamp = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
            images, segs = {stamp(m): m for m in list(got["image"])}, {stamp(m): m for m in list(got["objects"])}
            a = next((a for a in reversed(list(got["candidates"])) if stamp(a) in images and stamp(a) in segs
                      and any(c.valid for c in a.candidates)), None)
            return None if a is None else (images[stamp(a)], segs[stamp(a)], a)

        img, objs, arr = wait_for(planned_frame, 60, 0.1, "a ranking with its camera image and segmentation")
        best = next(c for c in arr.candidates if c.valid)
        g = got["goal"][-1].point
        assert imagine.wait_for_service(timeout_sec=30)
        fut = imagine.call_async(ImagineOutcomes.Request(image=img, instance_mask=objs.instance_mask, candidates=[best.stroke],
                                                         num_samples=1, goal=Point(x=g.x, y=g.y), target_id=objs.target_id))
        wait_for(fut.done, 60, 0.1, "the world-model service's answer")
        resp = fut.result()
        assert resp.success and resp.message.endswith("image read with camera/camera_info + camera/table_pose"), resp.message
        assert resp.candidates[0].valid, resp.candidates[0].reason
        assert resp.candidates[0].target_id == best.target_id != 0  # the same object touched first, in the same table frame
    finally:
        stop.set()
        spin.join(timeout=5)
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
