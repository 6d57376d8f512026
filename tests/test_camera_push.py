"""Tests for the camera model (kinemask_ros/camera.py) and push strokes (kinemask_ros/push.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinemask_ros.camera import CameraConfig, CameraModel, mask_centroid
from kinemask_ros.push import PushBounds, PushStroke


@pytest.fixture(scope="module")
def cam() -> CameraModel:
    return CameraModel(CameraConfig())


# ----------------------------------------------------------------------------- camera
def test_image_centre_sees_target(cam: CameraModel) -> None:
    np.testing.assert_allclose(cam.project_table(np.zeros(2)), [16.0, 16.0], atol=1e-9)


def test_axes_x_right_y_forward_is_image_up(cam: CameraModel) -> None:
    c = cam.project_table(np.zeros(2))
    right = cam.project_table(np.array([0.05, 0.0])) - c
    forward = cam.project_table(np.array([0.0, 0.05])) - c
    assert right[0] > 3 and abs(right[1]) < 1e-9  # +x -> +u (image right)
    assert forward[1] < -3 and abs(forward[0]) < 1e-9  # +y -> -v (image up)


@pytest.mark.parametrize("z", [0.0, 0.015, 0.05])
def test_project_unproject_round_trip(cam: CameraModel, z: float) -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.2, 0.2, (50, 2))
    uv = cam.project_table(xy, z)
    assert uv.shape == (50, 2)
    np.testing.assert_allclose(cam.unproject_table(uv, z), xy, atol=1e-9)
    uv2 = rng.uniform(0, 32, (7, 3, 2))  # batched leading dims
    np.testing.assert_allclose(cam.project_table(cam.unproject_table(uv2, z), z), uv2, atol=1e-9)


def test_project_behind_camera_raises(cam: CameraModel) -> None:
    with pytest.raises(ValueError, match="behind"):
        cam.project(np.array([0.0, 0.0, 2.0]))


def test_table_velocity_matches_finite_difference(cam: CameraModel) -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        xy = rng.uniform(-0.15, 0.15, 2)
        v = rng.uniform(-0.5, 0.5, 2)
        z = float(rng.uniform(0, 0.03))
        dt = 1e-3
        fd = (cam.project_table(xy + v * dt, z) - cam.project_table(xy, z)) / dt
        np.testing.assert_allclose(cam.table_velocity_to_pixels(xy, v, z), fd, rtol=1e-3, atol=1e-3)
    # Batched input, and zero velocity gives zero pixel velocity.
    xy = rng.uniform(-0.1, 0.1, (4, 2))
    assert cam.table_velocity_to_pixels(xy, np.zeros((4, 2))).shape == (4, 2)
    np.testing.assert_allclose(cam.table_velocity_to_pixels(xy, np.zeros((4, 2))), 0.0, atol=1e-9)


def test_pixels_per_metre_default(cam: CameraModel) -> None:
    assert cam.pixels_per_metre() == pytest.approx(80.0, abs=0.5)
    # Closer to the camera (object tops) looks bigger; scales with the image size.
    assert cam.pixels_per_metre(0.03) > cam.pixels_per_metre(0.0)
    big = CameraModel(CameraConfig(width=64, height=64))
    assert big.pixels_per_metre() == pytest.approx(2 * cam.pixels_per_metre(), rel=1e-6)
    # The field of view covers about 0.40 m of table.
    corners = cam.unproject_table(np.array([[0.0, 0.0], [32.0, 32.0]]))
    assert abs(corners[1, 0] - corners[0, 0]) == pytest.approx(0.40, abs=0.01)


def test_mask_centroid_pixel_centres() -> None:
    m = np.zeros((8, 8), bool)
    m[2, 5] = True
    np.testing.assert_allclose(mask_centroid(m), [5.5, 2.5])
    m[2:4, 5:7] = True
    np.testing.assert_allclose(mask_centroid(m), [6.0, 3.0])
    assert np.all(np.isnan(mask_centroid(np.zeros((4, 4), bool))))


def test_gl_matrices_are_16_floats(cam: CameraModel) -> None:
    for m in (cam.gl_view_matrix(), cam.gl_projection_matrix()):
        assert len(m) == 16 and all(math.isfinite(x) for x in m)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"width": -32}, "width"),
        ({"height": 0}, "height"),
        ({"width": 16.0}, "width"),
        ({"fov_deg": float("nan")}, "fov_deg"),
        ({"fov_deg": 0.0}, "fov_deg"),
        ({"near": -0.1}, "near"),
        ({"near": float("nan")}, "near"),
        ({"far": 0.1}, "far"),
        ({"eye": (0.0, float("nan"), 1.5)}, "eye"),
        ({"target": (0.0, 0.0)}, "target"),
        ({"eye": (0.0, 0.0, 0.0)}, "eye"),
    ],
)
def test_camera_config_rejects_bad_values(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CameraConfig(**kwargs)


def test_camera_up_parallel_to_view_raises() -> None:
    with pytest.raises(ValueError, match="up"):
        CameraModel(CameraConfig(up=(0.0, 0.0, 1.0)))


# ----------------------------------------------------------------------------- push strokes
def test_stroke_geometry() -> None:
    s = PushStroke(0.01, -0.02, math.pi / 2, 0.1, 0.25)
    np.testing.assert_allclose(s.end, [0.01, 0.08], atol=1e-12)
    assert s.duration == pytest.approx(0.4)
    np.testing.assert_allclose(s.position_at(0.2), [0.01, 0.03], atol=1e-12)
    np.testing.assert_allclose(s.position_at(5.0), s.end, atol=1e-12)  # rests at the end
    np.testing.assert_allclose(s.position_at(-1.0), s.start, atol=1e-12)
    assert s.position_at(np.array([0.0, 0.1, 0.2])).shape == (3, 2)
    a = s.as_array()
    assert a.dtype == np.float32 and a.shape == (5,)
    s2 = PushStroke.from_array(a)
    np.testing.assert_allclose(s2.as_array(), a)


def test_stroke_from_array_wrong_size() -> None:
    with pytest.raises(ValueError, match="5 values"):
        PushStroke.from_array(np.zeros(4))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"length": 0.0}, "length"),
        ({"length": -0.05}, "length"),
        ({"speed": 0.0}, "speed"),
        ({"speed": -1.0}, "speed"),
        ({"x": float("nan")}, "x"),
        ({"theta": float("inf")}, "theta"),
        ({"y": "0.1"}, "y"),
        ({"speed": float("nan")}, "speed"),
    ],
)
def test_stroke_rejects_bad_values(kwargs: dict, field: str) -> None:
    args = {"x": 0.0, "y": 0.0, "theta": 0.0, "length": 0.1, "speed": 0.3} | kwargs
    with pytest.raises(ValueError, match=rf"PushStroke\.{field}\b"):
        PushStroke(**args)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"x_range": (0.1, -0.1)}, "x_range"),
        ({"y_range": (0.0, float("nan"))}, "y_range"),
        ({"length_range": (-0.05, 0.1)}, "length_range"),
        ({"length_range": (0.0, 0.1)}, "length_range"),
        ({"speed_range": (-0.2, 0.5)}, "speed_range"),
        ({"speed_range": (0.3, 0.3)}, "speed_range"),
    ],
)
def test_bounds_reject_bad_values(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PushBounds(**kwargs)


def test_bounds_normalise_denormalise_round_trip() -> None:
    b = PushBounds()
    rng = np.random.default_rng(2)
    for _ in range(50):
        a = rng.uniform(-1, 1, 5)
        s = b.denormalise(a)
        assert b.x_range[0] <= s.x <= b.x_range[1]
        assert b.length_range[0] <= s.length <= b.length_range[1]
        assert b.speed_range[0] <= s.speed <= b.speed_range[1]
        back = b.normalise(s)
        assert back.dtype == np.float32 and back.shape == (5,)
        np.testing.assert_allclose(back, a, atol=1e-5)
    # Corners map to the box corners; out-of-range actions are clipped.
    s = b.denormalise(np.array([-1, 1, 0, -1, 1]))
    assert (s.x, s.y, s.theta, s.length, s.speed) == pytest.approx((-0.18, 0.18, 0.0, 0.03, 0.5))
    s = b.denormalise(np.array([5, -5, 0, 9, -9]))
    assert (s.x, s.y, s.length, s.speed) == pytest.approx((0.18, -0.18, 0.12, 0.2))


def test_bounds_normalise_wraps_theta() -> None:
    b = PushBounds()
    s = PushStroke(0.0, 0.0, 2 * math.pi + 0.5, 0.05, 0.3)
    assert b.normalise(s)[2] == pytest.approx(0.5 / math.pi, abs=1e-6)
    assert b.denormalise(b.normalise(s)).theta == pytest.approx(0.5, abs=1e-5)


@pytest.mark.parametrize("action", [np.zeros(4), np.array([0, 0, float("nan"), 0, 0])])
def test_bounds_denormalise_rejects_bad_action(action: np.ndarray) -> None:
    with pytest.raises(ValueError, match="action"):
        PushBounds().denormalise(action)
