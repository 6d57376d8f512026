"""Canonical table frame and camera calibration (pure numpy): round trips, the homography, the
CameraInfo convention, rectification with distortion, depth back-projection, bad calibrations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.table_frame import (CameraCalibration, Rectifier, TableFrame, camera_pixels_to_table, depth_to_table_points,
                                      height_above_table, matrix_to_pose, pose_to_matrix, rectify, splat_top_down, table_homography,
                                      table_to_camera_pixels)

FRAME = TableFrame()
DIST = (0.12, -0.21, 0.0015, -0.0012, 0.05)  # a typical wide-ish webcam (plumb_bob)


def oblique(width=640, height=480, **kw) -> CameraCalibration:
    return CameraCalibration.from_camera_model(CameraModel(CameraConfig.oblique(width, height, **kw)))


def distorted(calib: CameraCalibration, d=DIST) -> CameraCalibration:
    return CameraCalibration(calib.K, d, calib.width, calib.height, calib.T_cam_table)


def table_points(n=500, h=0.2, seed=0):
    return np.random.default_rng(seed).uniform(-h, h, (n, 2))


# ----------------------------------------------------------------------------- frame
def test_frame_pixels_round_trip_and_orientation():
    f = TableFrame(0.2, 64)
    assert f.pixel_size == pytest.approx(0.00625)
    xy = table_points()
    assert np.abs(f.to_table(f.to_pixels(xy)) - xy).max() < 1e-12
    # corners: (-h, +h) is the top-left corner of the image, +x is right, +y is up
    assert np.allclose(f.to_pixels(np.array([[-0.2, 0.2], [0.2, -0.2]])), [[0, 0], [64, 64]])
    assert np.allclose(f.pixel_centres()[0, 0], [-0.2 + 0.003125, 0.2 - 0.003125])
    # same orientation as the default simulator camera: its canonical view is a scaling of its image
    cam = CameraModel(CameraConfig(width=64, height=64))
    assert np.abs(cam.project_table(xy) - f.to_pixels(xy)).max() < 0.01  # fov 15.19 vs 15.189: < 0.01 px
    assert np.abs(f.camera_model().project_table(xy) - f.to_pixels(xy)).max() < 1e-9  # exact on the plane z = 0
    assert f.camera_model().config.fov_deg == pytest.approx(15.19, abs=1e-3)


def test_frame_validation():
    with pytest.raises(ValueError, match="half_extent"):
        TableFrame(half_extent=0.0)
    with pytest.raises(ValueError, match="resolution"):
        TableFrame(resolution=4)
    with pytest.raises(ValueError, match="resolution"):
        TableFrame(resolution=64.0)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("make", [lambda: CameraCalibration.from_camera_model(CameraModel(CameraConfig(width=64, height=64))),
                                  lambda: oblique(), lambda: oblique(1280, 720, elevation_deg=30, distance=1.0, azimuth_deg=-60),
                                  lambda: oblique(640, 480, elevation_deg=70, distance=0.6, azimuth_deg=0)])
@pytest.mark.parametrize("z", [0.0, 0.03])
def test_table_camera_table_round_trip(make, z):
    c = make()
    xy = table_points()
    uv = table_to_camera_pixels(xy, c, z=z)
    assert np.isfinite(uv).all()
    assert np.abs(camera_pixels_to_table(uv, c, z=z) - xy).max() < 1e-9
    d = distorted(c)
    uvd = table_to_camera_pixels(xy, d, z=z)
    assert np.abs(uvd - uv).max() > 0.1  # the distortion really moves pixels
    assert np.abs(camera_pixels_to_table(uvd, d, z=z) - xy).max() < 1e-6
    # rational_polynomial (8 coefficients)
    r = distorted(c, (0.1, -0.05, 0.001, 0.0005, 0.01, 0.02, -0.01, 0.003))
    assert np.abs(camera_pixels_to_table(table_to_camera_pixels(xy, r, z=z), r, z=z) - xy).max() < 1e-6


def test_simulator_camera_is_exact():
    cam = CameraModel(CameraConfig.oblique(640, 480))
    c = CameraCalibration.from_camera_model(cam)
    pts = np.concatenate([table_points(), np.full((500, 1), 0.015)], 1)
    assert np.abs(c.camera_points_to_pixels(pts @ c.R.T + c.t) - cam.project(pts)).max() < 1e-9
    assert np.allclose(c.camera_position, cam.eye) and np.linalg.norm(cam.eye) == pytest.approx(0.8)
    assert math.degrees(math.asin(-c.optical_axis[2])) == pytest.approx(45.0)


def test_homography_matches_the_projection():
    for c in (oblique(), CameraCalibration.from_camera_model(CameraModel(CameraConfig(width=64, height=64)))):
        for z in (0.0, 0.015):
            H = table_homography(c, FRAME, plane_z=z)
            uv_c = np.random.default_rng(1).uniform(0, FRAME.resolution, (200, 2))
            p = np.concatenate([uv_c, np.ones((200, 1))], 1) @ H.T
            want = table_to_camera_pixels(FRAME.to_table(uv_c), c, z=z)
            assert np.abs(p[:, :2] / p[:, 2:] - want).max() < 1e-9
    # the default camera at the frame's resolution: the homography is (almost) the identity
    H = table_homography(CameraCalibration.from_camera_model(CameraModel(CameraConfig(width=64, height=64))), FRAME)
    assert np.abs(H - np.eye(3)).max() < 2e-3


def test_camera_info_convention_round_trip():
    c = distorted(oblique())
    info = c.to_camera_info()
    assert info["k"][2] == pytest.approx(c.K[0, 2] - 0.5) and info["distortion_model"] == "plumb_bob"
    assert info["p"][:3] == info["k"][:3] and len(info["d"]) == 5 and len(info["r"]) == 9
    back = CameraCalibration.from_camera_info(info, T_cam_table=c.T_cam_table)
    assert np.allclose(back.K, c.K) and np.allclose(back.D, c.D) and (back.width, back.height) == (640, 480)
    # plain fields, ROS convention: an ideal 640x480 camera has cx = 319.5, the continuous centre is 320
    c2 = CameraCalibration.from_camera_info(k=[500, 0, 319.5, 0, 500, 239.5, 0, 0, 1], d=[], width=640, height=480,
                                            T_cam_table=c.T_cam_table)
    assert c2.K[0, 2] == 320.0 and c2.K[1, 2] == 240.0 and not c2.has_distortion


class _Info:  # duck-typed sensor_msgs/CameraInfo
    k = [500.0, 0, 320.0, 0, 500.0, 240.0, 0, 0, 1]
    d = [0.0] * 5
    distortion_model = "plumb_bob"
    width, height = 640, 480


def test_from_camera_info_object_and_pose_helpers():
    T = oblique().T_cam_table
    t, q = matrix_to_pose(T)
    assert np.abs(pose_to_matrix(t, q) - T).max() < 1e-12
    c = CameraCalibration.from_camera_info(_Info(), T_cam_table=pose_to_matrix(t, q))
    assert c.K[0, 2] == 320.5 and c.width == 640


# ----------------------------------------------------------------------------- bad calibrations
@pytest.mark.parametrize("fix, match", [
    (dict(K=np.diag([0.0, 500.0, 1.0])), "focal"),
    (dict(K=np.array([[np.nan, 0, 320], [0, 500, 240], [0, 0, 1]])), "focal"),
    (dict(K=np.zeros((3, 3))), "focal"),
    (dict(width=0), "width"),
    (dict(D=[0.1, np.nan, 0, 0, 0]), "D must be"),
    (dict(K=np.array([[500, 0, 3200], [0, 500, 240], [0, 0, 1]])), "another resolution"),
])
def test_bad_intrinsics_are_refused_with_the_fix(fix, match):
    c = oblique()
    kw = dict(K=c.K, D=c.D, width=c.width, height=c.height, T_cam_table=c.T_cam_table)
    kw.update(fix)
    with pytest.raises(ValueError, match=match):
        CameraCalibration(**kw)


def test_bad_poses_are_refused_with_the_fix():
    c = oblique()
    with pytest.raises(ValueError, match="below the table.*inverted"):
        CameraCalibration.from_camera_model(CameraModel(CameraConfig(eye=(0.0, 0.0, -1.0))))
    inverted = CameraCalibration(c.K, c.D, 640, 480, c.T_table_cam)  # the camera's pose passed instead of the table's
    with pytest.raises(ValueError, match="only 0 % of the 0.40 m workspace.*inverted"):
        inverted.check_workspace(FRAME)
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # camera turned around its x axis: above the table, looking up
    T_up = c.T_cam_table.copy()
    T_up[:3, :3] = flip[:3, :3] @ c.R
    T_up[:3, 3] = -T_up[:3, :3] @ c.camera_position
    with pytest.raises(ValueError, match="looks away"):
        CameraCalibration(c.K, c.D, 640, 480, T_up)
    bad = c.T_cam_table.copy()
    bad[:3, :3] *= 1.1
    with pytest.raises(ValueError, match="not a rotation"):
        CameraCalibration(c.K, c.D, 640, 480, bad)
    with pytest.raises(ValueError, match="not supported"):
        CameraCalibration.from_camera_info(k=_Info.k, d=[0.1] * 4, distortion_model="equidistant", width=640, height=480,
                                           T_cam_table=c.T_cam_table)


def test_workspace_out_of_view_names_the_visible_fraction():
    c = oblique(target=(0.5, 0.0, 0.0), fov_deg=20.0)  # aimed 0.5 m to the side of the table
    f = c.visible_fraction(FRAME)
    assert f < 0.2
    with pytest.raises(ValueError, match=rf"only {100 * f:.0f} % of the 0.40 m workspace.*aim the camera"):
        c.check_workspace(FRAME)
    assert oblique().check_workspace(FRAME) == pytest.approx(1.0)


def test_image_size_mismatch():
    with pytest.raises(ValueError, match="the image is 320x240 but its CameraInfo says 640x480"):
        rectify(np.zeros((240, 320, 3), np.uint8), oblique(), FRAME)


# ----------------------------------------------------------------------------- rectification
def _pattern(xy: np.ndarray) -> np.ndarray:
    """A smooth colour pattern on the table (so bilinear sampling is accurate)."""
    x, y = xy[..., 0], xy[..., 1]
    r = 128 + 100 * np.sin(2 * np.pi * x / 0.13)
    g = 128 + 100 * np.cos(2 * np.pi * y / 0.17)
    b = 128 + 60 * np.sin(2 * np.pi * (x + y) / 0.2)
    return np.stack([r, g, b], -1)


def _camera_image(c: CameraCalibration) -> np.ndarray:
    jj, ii = np.meshgrid(np.arange(c.width) + 0.5, np.arange(c.height) + 0.5)
    xy = camera_pixels_to_table(np.stack([jj, ii], -1), c)
    return np.clip(np.rint(_pattern(np.nan_to_num(xy))), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dist", [False, True])
def test_rectify_recovers_the_table_pattern(dist):
    c = oblique(320, 240)
    if dist:
        c = distorted(c)
    img = _camera_image(c)
    out, valid = rectify(img, c, FRAME, return_valid=True)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and valid.all()
    want = _pattern(FRAME.pixel_centres())
    err = np.abs(out.astype(float) - want)
    assert err.mean() < 2.0 and np.percentile(err, 99) < 8.0  # levels of 255
    if dist:  # ignoring the distortion would be visibly wrong
        wrong = rectify(img, CameraCalibration(c.K, (), c.width, c.height, c.T_cam_table), FRAME)
        assert np.abs(wrong.astype(float) - want).mean() > 3 * err.mean()


def test_rectify_nearest_ids_fill_and_valid_mask():
    c = oblique(160, 120, target=(0.15, 0.0, 0.0), fov_deg=25.0)  # part of the workspace is out of view
    ids = np.arange(160 * 120, dtype=np.int32).reshape(120, 160) % 7 + 1
    r = Rectifier(c, FRAME)
    out = r(ids, interpolation="nearest", fill=0)
    assert out.dtype == np.int32 and 0.3 < r.valid.mean() < 0.99
    assert np.all(out[~r.valid] == 0) and np.all(out[r.valid] > 0)
    assert set(np.unique(out[r.valid])) <= set(range(1, 8))  # nearest never blends ids
    with pytest.raises(ValueError, match="interpolation"):
        r(ids, interpolation="cubic")


def test_depth_back_projection_and_top_down_splat():
    c = oblique(320, 240)
    # synthetic depth of the table plane plus a 3 cm high 6 x 6 cm block at the origin
    jj, ii = np.meshgrid(np.arange(320) + 0.5, np.arange(240) + 0.5)
    rays = c.pixel_rays(np.stack([jj, ii], -1))
    rays_t, eye = rays @ c.R, c.camera_position

    def hit(z):
        s = (z - eye[2]) / rays_t[..., 2]
        return s, eye[:2] + s[..., None] * rays_t[..., :2]

    s0, _ = hit(0.0)
    s3, xy3 = hit(0.03)
    on_top = np.all(np.abs(xy3) <= 0.03, -1)
    depth = np.where(on_top, s3, s0)  # rays have z = 1 in the camera frame, so s is the depth
    depth[5, 7] = np.nan
    pts = depth_to_table_points(depth, c)
    assert np.isnan(pts[5, 7]).all()
    z = height_above_table(depth, c)
    assert np.nanmax(np.abs(z[~on_top])) < 1e-9 and np.abs(z[on_top] - 0.03).max() < 1e-9
    top = splat_top_down(pts, on_top.astype(np.uint8), FRAME, min_height=0.01)
    ys, xs = np.nonzero(top)
    xy = FRAME.to_table(np.stack([xs + 0.5, ys + 0.5], -1))
    assert np.abs(xy).max() <= 0.03 and np.abs(xy.mean(0)).max() < FRAME.pixel_size  # the footprint, not its shadow


def test_same_camera_tells_an_identical_camera_from_a_moved_one():
    from dataclasses import replace as _replace

    from kinemask_ros.camera import CameraConfig, CameraModel
    from kinemask_ros.table_frame import CameraCalibration, same_camera

    cam = CameraModel(CameraConfig())
    assert same_camera(CameraCalibration.from_camera_model(cam), cam, 0.015)
    moved = CameraModel(_replace(CameraConfig(), eye=(0.01, 0.0, 1.5), target=(0.01, 0.0, 0.0)))  # 1 cm aside: 0.8 px at 32 px
    assert not same_camera(CameraCalibration.from_camera_model(moved), cam, 0.015)
    bigger = CameraModel(CameraConfig(width=64, height=64))
    assert not same_camera(CameraCalibration.from_camera_model(bigger), cam, 0.015)
