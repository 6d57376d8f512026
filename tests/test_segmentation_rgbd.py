"""RGB-D segmenter (kinemask_ros.segmentation.rgbd) on synthetic RGB-D renders (tests/synthetic_scenes.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinemask_ros.segmentation import (
    ClassicalSegmenter,
    InvalidDepthError,
    RgbdConfig,
    RgbdSegmenter,
    RgbSegmenter,
    backend_requires_depth,
    make_segmenter,
    match_instances,
    select_by_label,
)
from synthetic_scenes import PUSHER_ID, Obj, oblique_camera, random_objects, render, t_cam_table, top_down_camera


def calib(cam) -> dict:
    return {"K": cam.K, "T_cam_table": t_cam_table(cam)}


def touching_boxes(color=(0.3, 0.7, 0.4)) -> list[Obj]:
    # two equal-colour boxes, yawed differently, corner pressed 2 mm into the other's face (so they
    # touch in the image at any resolution)
    a = Obj("box", -0.035, 0.0, 0.0, (0.03, 0.03), 0.03, color)
    b = Obj("box", 0.0, 0.0, math.pi / 4, (0.028, 0.028), 0.03, color)
    b.x = a.x + a.size[0] + b.size[0] * math.sqrt(2) - 0.002
    return [a, b]


@pytest.mark.parametrize("camera", ["top64", "oblique"])
def test_touching_same_colour_boxes_split_into_two(camera: str) -> None:
    cam = top_down_camera(64) if camera == "top64" else oblique_camera(320, 240)
    rgb, ids, depth = render(cam, touching_boxes(), rgb_noise=2.0, depth_noise=0.001, rng=np.random.default_rng(0))
    seg = RgbdSegmenter(calibration=calib(cam)).segment(rgb, depth)
    m = match_instances(seg.instance_ids, ids)
    assert seg.num_objects == 2 and min(m.gt_iou.values()) >= 0.8, m
    merged = RgbdSegmenter(RgbdConfig(split_touching=False), calibration=calib(cam)).segment(rgb, depth)
    assert merged.num_objects == 1  # same colour, same height: only the footprint split separates them


def test_nan_and_zero_holes_do_not_crash_or_create_objects() -> None:
    cam = top_down_camera(64)
    objs = [Obj("box", -0.06, 0.05, 0.4, (0.03, 0.025), 0.03, (0.9, 0.2, 0.2)), Obj("cylinder", 0.06, -0.05, 0.0, (0.03, 0.03), 0.03, (0.2, 0.3, 0.9))]
    rgb, ids, depth = render(cam, objs, depth_noise=0.001, rng=np.random.default_rng(1))
    rng = np.random.default_rng(2)
    holes = depth.copy()
    holes[rng.random(depth.shape) < 0.05] = np.nan  # speckle
    holes[rng.random(depth.shape) < 0.03] = 0.0
    holes[40:60, 2:22] = np.nan  # a big hole on the table
    holes[20:24, 14:18] = np.nan  # a hole inside the box
    seg = RgbdSegmenter(calibration=calib(cam)).segment(rgb, holes)
    m = match_instances(seg.instance_ids, ids)
    assert seg.num_objects == 2 and not m.unmatched_pred and min(m.gt_iou.values()) >= 0.9
    # holes under colour-only geometry (no image): still no object from the big hole
    geo = RgbdSegmenter(calibration=calib(cam)).segment(None, holes)
    assert geo.num_objects == 2 and geo.labels == (None, None)
    with pytest.raises(InvalidDepthError, match="no valid pixel"):
        RgbdSegmenter(calibration=calib(cam)).segment(rgb, np.full(depth.shape, np.nan, np.float32))
    with pytest.raises(InvalidDepthError):
        RgbdSegmenter(calibration=calib(cam)).segment(rgb, np.zeros(depth.shape, np.float32))


def _tilt(T: np.ndarray, deg: float, shift: float) -> np.ndarray:
    """Table pose rotated by ``deg`` about the table x axis and moved ``shift`` m along its normal."""
    a = math.radians(deg)
    Rx = np.array([[1, 0, 0, 0], [0, math.cos(a), -math.sin(a), 0], [0, math.sin(a), math.cos(a), shift], [0, 0, 0, 1.0]])
    return T @ Rx


def test_wrong_table_pose_is_refined_from_depth() -> None:
    cam = oblique_camera(320, 240)
    objs = [Obj("box", -0.05, 0.02, 0.3, (0.03, 0.025), 0.03, (0.9, 0.6, 0.1)), Obj("cylinder", 0.06, -0.03, 0.0, (0.025, 0.025), 0.03, (0.5, 0.2, 0.7))]
    rgb, ids, depth = render(cam, objs, depth_noise=0.001, rng=np.random.default_rng(3))
    wrong = {"K": cam.K, "T_cam_table": _tilt(t_cam_table(cam), 3.0, 0.015)}  # 3 deg and 1.5 cm off
    res = RgbdSegmenter(calibration=wrong).analyse(rgb, depth)
    assert res.plane.refined and 2.0 < res.plane.tilt_deg < 4.0 and abs(abs(res.plane.shift_m) - 0.015) < 0.005
    m = match_instances(res.segmentation.instance_ids, ids)
    assert res.segmentation.num_objects == 2 and min(m.gt_iou.values()) >= 0.9
    table_h = res.height[ids == 0]
    assert np.nanmedian(np.abs(table_h)) < 0.002  # heights are relative to the refined plane
    unrefined = RgbdSegmenter(RgbdConfig(refine_plane=False), calibration=wrong).segment(rgb, depth)
    assert match_instances(unrefined.instance_ids, ids).mean_iou < m.mean_iou - 0.1  # the calibration alone is not good enough


def test_tilted_table_segments() -> None:
    # the table itself tilted 8 deg in the camera frame (a camera mounted at an odd angle, correct calibration)
    cam = oblique_camera(320, 240, elevation_deg=60.0)
    objs = [Obj("box", 0.0, 0.0, 0.0, (0.03, 0.03), 0.03, (0.2, 0.6, 0.9))]
    rgb, ids, depth = render(cam, objs, rng=np.random.default_rng(4))
    seg = RgbdSegmenter(calibration=calib(cam)).segment(rgb, depth)
    assert seg.num_objects == 1 and match_instances(seg.instance_ids, ids).gt_iou[1] >= 0.9


def test_object_of_the_table_colour_found_by_depth_not_by_colour() -> None:
    cam = top_down_camera(64)
    table = (0.55, 0.45, 0.35)
    objs = [Obj("box", -0.05, 0.0, 0.2, (0.03, 0.03), 0.03, table), Obj("cylinder", 0.06, 0.04, 0.0, (0.03, 0.03), 0.03, (0.30, 0.55, 0.60))]
    rgb, ids, depth = render(cam, objs, table_rgb=table, light_dir=(0, 0, 1), ambient=0.6, diffuse=0.4, rng=np.random.default_rng(5))
    seg = RgbdSegmenter(calibration=calib(cam)).segment(rgb, depth)
    m = match_instances(seg.instance_ids, ids)
    assert seg.num_objects == 2 and min(m.gt_iou.values()) >= 0.9
    assert match_instances(ClassicalSegmenter().segment(rgb).instance_ids, ids).gt_iou[1] == 0.0
    assert match_instances(RgbSegmenter().segment(rgb).instance_ids, ids).gt_iou[1] == 0.0
    assert select_by_label(seg, "cyan") != 0  # off-palette teal -> "cyan"


def test_pusher_is_ignored_by_the_tall_thin_rule() -> None:
    for cam in (top_down_camera(64), oblique_camera(320, 240)):
        objs = [Obj("box", 0.0, 0.0, 0.0, (0.03, 0.03), 0.03, (0.9, 0.5, 0.1))]
        rgb, ids, depth = render(cam, objs, pusher_xy=(0.0425, 0.0), rng=np.random.default_rng(6))
        res = RgbdSegmenter(calibration=calib(cam)).analyse(rgb, depth)
        assert res.segmentation.num_objects == 1
        assert match_instances(res.segmentation.instance_ids, ids).gt_iou[1] >= 0.85
        assert res.pusher_mask[ids == PUSHER_ID].mean() > 0.8 and not res.segmentation.instance_ids[res.pusher_mask].any()
        kept = RgbdSegmenter(RgbdConfig(pusher_min_height=None), calibration=calib(cam)).segment(rgb, depth)
        assert kept.instance_ids[ids == PUSHER_ID].any()  # rule off: the pusher is foreground


def test_random_scenes_mean_iou_with_touching_pairs() -> None:
    rng = np.random.default_rng(7)
    ious = []
    for cam in (top_down_camera(64), oblique_camera(320, 240)):
        seg = RgbdSegmenter(calibration=calib(cam))
        for k in range(6):
            objs = random_objects(rng, 3, touching_pair=(k % 2 == 0))
            rgb, ids, depth = render(cam, objs, table_rgb=tuple(rng.uniform(0.3, 0.8, 3)), table_texture=("plain", "grain", "checker")[k % 3],
                                     rgb_noise=2.0, depth_noise=0.002, rng=rng)
            ious += list(match_instances(seg.segment(rgb, depth).instance_ids, ids).gt_iou.values())
    assert np.mean(ious) >= 0.9


def test_integer_millimetre_depth_and_bad_inputs() -> None:
    cam = top_down_camera(32)
    rgb, ids, depth = render(cam, [Obj("box", 0.0, 0.0, 0.0, (0.03, 0.03), 0.03, (0.9, 0.2, 0.2))])
    s = RgbdSegmenter(calibration=calib(cam))
    mm = np.rint(depth * 1000).astype(np.uint16)
    assert match_instances(s.segment(rgb, mm).instance_ids, ids).gt_iou[1] >= 0.9
    with pytest.raises(ValueError, match="registered"):
        s.segment(rgb, depth[:-1])
    with pytest.raises(ValueError, match="needs a depth image"):
        s.segment(rgb)
    with pytest.raises(ValueError, match="below"):
        RgbdSegmenter(calibration={"K": cam.K, "T_cam_table": t_cam_table(cam) @ np.diag([1.0, -1.0, -1.0, 1.0])})  # table upside down
    with pytest.raises(ValueError, match="focal"):
        RgbdSegmenter(calibration={"K": np.diag([0.0, 0.0, 1.0]), "T_cam_table": t_cam_table(cam)})
    with pytest.raises(ValueError, match="no calibration"):
        RgbdSegmenter().segment(rgb, depth)
    with pytest.raises(ValueError, match="RgbdConfig.height_threshold"):
        RgbdConfig(height_threshold=-1.0)
    big = {"K": cam.K, "T_cam_table": t_cam_table(cam), "width": 64, "height": 64}
    with pytest.raises(ValueError, match="calibration is for 64x64"):
        RgbdSegmenter(calibration=big).segment(rgb, depth)


def test_factory_and_duck_typed_calibration() -> None:
    cam = top_down_camera(32)

    class Cal:  # e.g. kinemask_ros.table_frame.CameraCalibration
        K = cam.K
        T_cam_table = t_cam_table(cam)
        D = np.zeros(5)
        width, height = 32, 32

    seg = make_segmenter("rgbd", calibration=Cal(), height_threshold=0.005)
    assert isinstance(seg, RgbdSegmenter) and seg.config.height_threshold == 0.005 and backend_requires_depth("rgbd")
    assert not backend_requires_depth("rgb")
    rgb, ids, depth = render(cam, [Obj("cylinder", 0.0, 0.0, 0.0, (0.03, 0.03), 0.03, (0.1, 0.8, 0.2))])
    out = seg.segment(rgb, depth)
    assert out.num_objects == 1 and out.labels == ("green",)
    with pytest.raises(ValueError, match="track_ids"):
        make_segmenter("rgbd", track_ids=True)


def test_distortion_is_undone() -> None:
    from kinemask_ros.segmentation.rgbd import Calibration, _undistort

    x = np.linspace(-0.4, 0.4, 9)
    xx, yy = np.meshgrid(x, x)
    D = np.array([-0.2, 0.05, 0.001, -0.001, 0.0])
    r2 = xx**2 + yy**2
    radial = 1 + D[0] * r2 + D[1] * r2**2
    xd = xx * radial + 2 * D[2] * xx * yy + D[3] * (r2 + 2 * xx**2)
    yd = yy * radial + D[2] * (r2 + 2 * yy**2) + 2 * D[3] * xx * yy
    ux, uy = _undistort(xd, yd, D, iterations=30)
    np.testing.assert_allclose(ux, xx, atol=1e-6)
    np.testing.assert_allclose(uy, yy, atol=1e-6)
    Calibration(np.eye(3), np.diag([1.0, -1.0, -1.0, 1.0]) @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -1.0], [0, 0, 0, 1]]), D)
