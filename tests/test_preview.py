"""Previews moved along SE(2) tracks (kinemask_ros.preview), the perception front end and the decision core."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.preview import CameraMapping, draw_path, fill_background, warp_se2
from kinemask_ros.push import PushStroke

CAM = CameraModel(CameraConfig(width=128, height=128))
MAP = CameraMapping.from_camera(CAM)


def _box_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 0.08 x 0.02 m box (id 1) at the table centre on a striped table; its pose (x, y, yaw)."""
    img = np.zeros((128, 128, 3), np.uint8)
    img[..., 0] = 120 + 40 * ((np.arange(128) // 4) % 2)[None, :]  # vertical stripes: a texture
    img[..., 1], img[..., 2] = 90, 60
    vv, uu = np.mgrid[0:128, 0:128]
    xy = CAM.unproject_table(np.stack([uu.ravel() + 0.5, vv.ravel() + 0.5], 1).astype(float), 0.015).reshape(128, 128, 2)
    box = (np.abs(xy[..., 0]) < 0.04) & (np.abs(xy[..., 1]) < 0.01)
    ids = box.astype(np.uint8)
    img[box] = (200, 30, 30)
    return img, ids, np.array([0.0, 0.0, 0.0])


def _moments(mask: np.ndarray) -> np.ndarray:
    r, c = np.nonzero(mask)
    return np.cov(np.stack([c, r]).astype(float))


def test_identity_poses_reproduce_the_image():
    img, ids, p0 = _box_scene()
    poses = np.repeat(p0[None, None, None], 3, 2)  # (1, 1, 3, 3)
    frames, masks = warp_se2(img, ids, poses, MAP)
    assert frames.shape == (1, 3, 128, 128, 3) and masks.shape == (1, 3, 128, 128)
    assert np.array_equal(frames[0, 0], img) and np.array_equal(masks[0, 2], ids)


def test_translation_and_rotation_move_the_objects_pixels_rigidly():
    img, ids, p0 = _box_scene()
    poses = np.stack([p0, p0 + [0.05, 0.0, 0.0], p0 + [0.0, 0.0, math.pi / 2]])[None, None]  # (1, 1, 3, 3)
    frames, masks = warp_se2(img, ids, poses, MAP)
    # translation by 5 cm = 5 cm of pixels, in the camera's direction of +x
    shift = CAM.project_table(np.array([[0.05, 0.0]]), 0.015)[0] - CAM.project_table(np.array([[0.0, 0.0]]), 0.015)[0]
    c0 = np.argwhere(ids == 1)[:, ::-1].mean(0)
    c1 = np.argwhere(masks[0, 1] == 1)[:, ::-1].mean(0)
    assert np.allclose(c1 - c0, shift, atol=0.6)
    assert abs(int((masks[0, 1] == 1).sum()) - int(ids.sum())) <= 0.03 * ids.sum()
    # a quarter turn swaps the footprint's long and short axes, area kept, centre kept
    m0, m2 = _moments(ids == 1), _moments(masks[0, 2] == 1)
    assert m0[0, 0] > 5 * m0[1, 1] and m2[1, 1] > 5 * m2[0, 0]
    assert abs(int((masks[0, 2] == 1).sum()) - int(ids.sum())) <= 0.05 * ids.sum()
    assert np.allclose(np.argwhere(masks[0, 2] == 1)[:, ::-1].mean(0), c0, atol=0.6)
    # the object's own colour moves with it; the uncovered table takes the table's texture, not a flat colour
    assert np.all(frames[0, 1][masks[0, 1] == 1] == (200, 30, 30))
    uncovered = (ids == 1) & (masks[0, 1] == 0)
    assert uncovered.sum() > 50
    assert len(np.unique(frames[0, 1][uncovered][:, 0])) >= 2  # stripes continue under the old footprint
    assert not np.any(np.all(frames[0, 1][uncovered] == (200, 30, 30), -1))


def test_non_finite_poses_leave_an_object_in_place_and_other_ids_stay():
    img, ids, p0 = _box_scene()
    ids = ids.copy()
    ids[0:4, 0:4] = 255  # the pusher: no track, stays where it is
    poses = np.stack([p0, np.full(3, np.nan)])[None, None]
    frames, masks = warp_se2(img, ids, poses, MAP)
    assert np.array_equal(masks[0, 1], ids) and np.array_equal(frames[0, 1], img)


def test_fill_background_takes_the_nearest_table_pixel():
    img = np.zeros((4, 6, 3), np.uint8)
    img[:, :3], img[:, 3:] = 10, 200
    hole = np.zeros((4, 6), bool)
    hole[1:3, 2:4] = True
    out = fill_background(img, hole)
    assert np.all(out[1:3, 2] == 10) and np.all(out[1:3, 3] == 200)


def test_draw_path_and_bad_input():
    img, ids, p0 = _box_scene()
    frames = np.repeat(img[None], 2, 0)
    draw_path(frames, PushStroke(-0.15, 0.05, 0.0, 0.1, 0.3), MAP)
    white = np.all(frames == 255, -1)
    assert white[0].sum() > 20 and np.array_equal(white[0], white[1])
    with pytest.raises(ValueError, match="same size"):
        warp_se2(img, ids[:10], np.zeros((1, 1, 2, 3)), MAP)
    with pytest.raises(ValueError, match=r"\(n, K, Tv, 3\)"):
        warp_se2(img, ids, np.zeros((1, 2, 3)), MAP)
    with pytest.raises(ValueError, match="camera mapping"):
        warp_se2(img[:64, :64], ids[:64, :64], np.zeros((1, 1, 2, 3)), MAP)


# ----------------------------------------------------------------------------- front end and decision core
def _object_pipeline(tmp_path):
    from ros_utils import make_tiny_checkpoint

    from kinemask_ros.world_model.objects import ObjectTrackDenoiser, ObjectWorldModel
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    root = make_tiny_checkpoint(tmp_path / "wm")
    ObjectWorldModel(ObjectTrackDenoiser(num_frames=16, dim=32, layers=1, heads=2)).save_pretrained(root / "objects")
    return KineMaskPipeline.from_pretrained(root)


def _scene(n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 6x6 px objects on a 64x64 image (more than 8: the old K)."""
    ids = np.zeros((64, 64), np.uint8)
    img = np.full((64, 64, 3), 180, np.uint8)
    for i in range(n):
        r, c = 6 + 18 * (i // 3), 6 + 18 * (i % 3)
        ids[r:r + 6, c:c + 6] = i + 1
        img[r:r + 6, c:c + 6] = (200, 40, 40)
    return img, ids


def test_perceive_resizes_checks_and_selects_the_target(tmp_path):
    from kinemask_ros.perception import perceive

    pipe = _object_pipeline(tmp_path)
    img, ids = _scene()
    frame = perceive(pipe, img, CameraConfig(), ids, {1: "red"})
    assert frame.shape == (64, 64) and frame.present == list(range(1, 10)) and frame.labels[1] == "red"
    assert (frame.camera.width, frame.camera.height) == (64, 64)
    c = frame.centroids_table()
    assert frame.select_target(0, goal_xy=c[5] + 0.001) == 5 and frame.select_target(7) == 7
    with pytest.raises(ValueError, match="not in the segmented image"):
        frame.select_target(12)
    with pytest.raises(ValueError, match="width x height"):
        perceive(pipe, img, CameraConfig(), ids[:32])
    with pytest.raises(ValueError, match="no object"):
        perceive(pipe, img, CameraConfig(), np.zeros_like(ids))


def test_decide_ranks_reports_slots_and_renders_se2_previews(tmp_path):
    from kinemask_ros.decision import DecisionConfig, DecisionRequest, PlanCancelled, decide
    from kinemask_ros.perception import perceive

    pipe = _object_pipeline(tmp_path)
    img, ids = _scene()
    frame = perceive(pipe, img, CameraConfig(), ids)
    cfg = DecisionConfig(num_candidates=8, iterations=2, rollout_top_k=2)
    seen = []
    d = decide(pipe, frame, DecisionRequest(goal_xy=(0.0, 0.05), goal_yaw=0.5, target_id=5), cfg, np.random.default_rng(0),
               feedback=lambda *a: seen.append(a))
    assert d.target_id == 5 and d.left_out == [] and d.plan.valid and d.planned_iterations == 2
    assert [a[4] for a in seen] == ["imagining", "imagining", "done"]
    assert np.isfinite(d.plan.scores.terms["goal_yaw"][d.plan.order[0]])  # the goal's yaw was scored
    rf = d.render(draw_paths=True)
    assert rf.source == "se2_warp" and rf.frames.shape[:2] == (2, len(rf.frame_indices)) and rf.poses.shape[:2] == (2, 9)
    assert np.all(np.all(rf.frames[:, 0] == 255, -1).sum((1, 2)) > 0)  # the pusher path is drawn
    pv = d.preview(rf)
    assert pv.shape == frame.rgb.shape and np.all(pv == (255, 215, 0), -1).any()  # the goal ring
    plain = d.render()
    assert np.array_equal(plain.frames[:, 0], np.repeat(frame.rgb[None], 2, 0))  # without paths frame 0 is the input image
    with pytest.raises(ValueError, match="max_candidates"):
        decide(pipe, frame, DecisionRequest(goal_xy=(0.0, 0.05), num_candidates=5000), cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown planner"):
        DecisionRequest(goal_xy=(0, 0), method="ga").resolve(cfg)
    with pytest.raises(PlanCancelled):
        decide(pipe, frame, DecisionRequest(goal_xy=(0.0, 0.05)), cfg, np.random.default_rng(0), cancelled=lambda: True)


def test_rollout_message_carries_se2_pose_tracks():
    pytest.importorskip("rclpy")
    pytest.importorskip("kinemask_ros_interfaces")
    from geometry_msgs.msg import PoseStamped

    from kinemask_ros.ros.messages import goal_pose_from_msg, goal_yaw_from_fields, rollout_msg

    tracks = np.zeros((2, 3, 2), np.float32)
    poses = np.stack([np.stack([np.linspace(0, 0.1, 3), np.zeros(3), np.linspace(0, 1, 3)], -1), np.full((3, 3), np.nan)])
    r = rollout_msg(None, 0, None, None, tracks, np.ones((2, 3)), 0.16, poses=poses)
    assert list(r.tracks[0].x) == pytest.approx([0.0, 0.05, 0.1]) and list(r.tracks[0].yaw) == pytest.approx([0.0, 0.5, 1.0])
    assert len(r.tracks[1].x) == 0  # no pose for that object: empty, never NaN
    msg = PoseStamped()
    msg.header.frame_id = "table"
    msg.pose.position.x, msg.pose.position.y = 0.05, -0.02
    msg.pose.orientation.z, msg.pose.orientation.w = math.sin(0.35), math.cos(0.35)
    xy, yaw = goal_pose_from_msg(msg)
    assert np.allclose(xy, (0.05, -0.02)) and yaw == pytest.approx(0.7)
    msg.pose.orientation.x, msg.pose.orientation.z, msg.pose.orientation.w = 0.5, 0.0, math.sqrt(0.75)
    with pytest.raises(ValueError, match="tilted"):
        goal_pose_from_msg(msg)
    assert goal_yaw_from_fields(False, math.nan) is None and goal_yaw_from_fields(True, 0.25) == 0.25
    with pytest.raises(ValueError, match="goal_yaw is nan"):
        goal_yaw_from_fields(True, math.nan)


def test_calibrated_oblique_camera_rectified_planned_and_previewed_in_camera_pixels(tmp_path):
    """A 320x240 oblique RGB-D view of the simulator: rectified into the canonical frame (poses match
    the truth), planned on, and previewed in the camera's own pixels."""
    from kinemask_ros.decision import DecisionConfig, DecisionRequest, decide
    from kinemask_ros.object_scene import ObjectScene
    from kinemask_ros.perception import perceive
    from kinemask_ros.sim_bridge.scene import SceneConfig, TabletopScene
    from kinemask_ros.table_frame import CameraCalibration

    pipe = _object_pipeline(tmp_path)
    cam_cfg = CameraConfig.oblique(320, 240, elevation_deg=50, distance=0.8)
    scene = TabletopScene(SceneConfig(camera=cam_cfg, min_objects=3, max_objects=3))
    try:
        specs, poses = scene.sample_objects(np.random.default_rng(3))
        scene.set_objects(specs, poses)
        rgb, ids, depth = scene.render_rgbd()
        truth = scene.poses()
    finally:
        scene.close()
    calib = CameraCalibration.from_camera_model(CameraModel(cam_cfg))
    for d in (None, depth):
        frame = perceive(pipe, rgb, calib, ids=ids, depth=d)
        assert frame.table_frame is not None and frame.shape[0] >= 64 and frame.source.rgb.shape == (240, 320, 3)
        est = ObjectScene.from_mask(frame.ids, frame.camera)
        err = np.linalg.norm(est.poses[:, :2] - truth[np.asarray(est.ids) - 1, :2], axis=1)
        assert len(est) == 3 and err.max() < (0.003 if d is not None else 0.004), err  # metres
    out = decide(pipe, frame, DecisionRequest(goal_xy=(0.0, 0.0)), DecisionConfig(num_candidates=6, iterations=1, rollout_top_k=2),
                 np.random.default_rng(0))
    rf = out.render(draw_paths=True)
    assert rf.source.endswith("_camera") and rf.frames.shape[2:4] == (240, 320)  # native camera resolution
    assert rf.tracks.shape[:2] == (2, 3) and np.all(np.isfinite(rf.tracks[:, :, 0]))
    # frame 0's objects are where the camera saw them (in camera pixels)
    for k in range(1, 4):
        o = out.fit.id_map[k]
        seen = np.argwhere(ids == o)[:, ::-1].mean(0) + 0.5
        assert np.linalg.norm(rf.tracks[0, k - 1, 0] - seen) < 6.0


def test_target_point_maps_table_and_camera_points_to_pixels():
    pytest.importorskip("rclpy")
    pytest.importorskip("kinemask_ros_interfaces")
    from geometry_msgs.msg import PointStamped

    from kinemask_ros.ros.segmentation_node import point_to_pixel
    from kinemask_ros.table_frame import CameraCalibration

    cam = CameraModel(CameraConfig.oblique(320, 240, elevation_deg=50, distance=0.8))
    calib = CameraCalibration.from_camera_model(cam)
    msg = PointStamped()
    msg.header.frame_id = "table"
    msg.point.x, msg.point.y, msg.point.z = 0.05, 0.02, 0.015
    uv = point_to_pixel(msg, calib)
    assert np.allclose(uv, cam.project(np.array([[0.05, 0.02, 0.015]]))[0], atol=1e-6)
    p_cam = calib.R @ np.array([0.05, 0.02, 0.015]) + calib.t  # the same point in the camera's optical frame
    msg.header.frame_id = "camera"
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in p_cam)
    assert np.allclose(point_to_pixel(msg, calib), uv, atol=1e-6)
    msg.point.z = -0.1
    with pytest.raises(ValueError, match="in front of it"):
        point_to_pixel(msg, calib)
    with pytest.raises(ValueError, match="camera_info"):
        point_to_pixel(msg, None)
    msg.header.frame_id, msg.point.x, msg.point.y, msg.point.z = "table", 3.0, 0.0, 0.0
    with pytest.raises(ValueError, match="outside"):
        point_to_pixel(msg, calib)
