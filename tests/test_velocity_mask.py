"""Tests for the KineMask velocity-mask and InterDyn driver-mask encoders (kinemask_ros/velocity_mask.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinemask_ros.velocity_mask import (
    encode_driver_mask,
    encode_first_frame_velocity_mask,
    encode_velocity_mask,
    stage2_dropout,
    stage2_keep_until,
)

T, H, W = 4, 8, 10


def two_object_masks() -> np.ndarray:
    """Object 1 (moving), object 2 (still), a pusher blob (255) and background."""
    m = np.zeros((T, H, W), np.uint8)
    m[:, 1:3, 1:4] = 1
    m[:, 5:7, 6:9] = 2
    m[:, 0, 9] = 255
    return m


def test_values_inside_and_outside_objects() -> None:
    m = two_object_masks()
    v = np.zeros((T, 2, 2), np.float32)
    v[:, 0] = [2.0, -1.0]  # object 1 moves, object 2 is still
    v[2, 0] = [0.5, 0.25]  # velocity can change per frame
    out = encode_velocity_mask(m, v, v_max=4.0)
    assert out.shape == (T, 3, H, W) and out.dtype == np.float32
    obj1, obj2 = m == 1, m == 2
    bg = m == 0
    pusher = m == 255
    for t in range(T):
        np.testing.assert_allclose(out[t, 0][obj1[t]], v[t, 0, 0] / 4.0)
        np.testing.assert_allclose(out[t, 1][obj1[t]], v[t, 0, 1] / 4.0)
    # Still object: zero velocity but present in the extent channel.
    assert np.all(out[:, :2].transpose(1, 0, 2, 3)[:, obj2] == 0)
    assert np.all(out[:, 2][obj1] == 1) and np.all(out[:, 2][obj2] == 1)
    # Background and the pusher (id 255) are zero in every channel.
    for mask in (bg, pusher):
        assert np.all(out.transpose(1, 0, 2, 3)[:, mask] == 0)
    assert pusher.sum() == T


def test_ids_above_k_are_ignored() -> None:
    m = two_object_masks()
    v = np.ones((T, 1, 2), np.float32)  # K = 1: id 2 is not an object of this clip
    out = encode_velocity_mask(m, v, 2.0)
    assert np.all(out[:, :, 5:7, 6:9] == 0)
    assert np.all(out[:, 2, 1:3, 1:4] == 1)


def test_frame_t_uses_masks_of_frame_t() -> None:
    m = np.zeros((2, H, W), np.uint8)
    m[0, 0, 0] = 1
    m[1, 4, 4] = 1
    out = encode_velocity_mask(m, np.full((2, 1, 2), 1.0), 1.0)
    assert out[0, 2, 0, 0] == 1 and out[0, 2, 4, 4] == 0
    assert out[1, 2, 0, 0] == 0 and out[1, 2, 4, 4] == 1


def test_values_are_clipped() -> None:
    m = two_object_masks()
    v = np.zeros((T, 2, 2), np.float32)
    v[:, 0] = [10.0, -30.0]
    v[:, 1] = [-2.0, 0.9]
    out = encode_velocity_mask(m, v, v_max=1.0)
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert np.all(out[:, 0][m == 1] == 1.0) and np.all(out[:, 1][m == 1] == -1.0)
    assert np.all(out[:, 0][m == 2] == -1.0)
    np.testing.assert_allclose(out[:, 1][m == 2], 0.9)


@pytest.mark.parametrize(
    "masks, vel, msg",
    [
        (np.zeros((H, W), np.uint8), np.zeros((T, 1, 2)), "instance_masks"),
        (np.zeros((T, H, W), np.uint8), np.zeros((T + 1, 1, 2)), "velocities"),
        (np.zeros((T, H, W), np.uint8), np.zeros((T, 1, 3)), "velocities"),
        (np.zeros((T, H, W), np.uint8), np.zeros((T, 2)), "velocities"),
    ],
)
def test_shape_checks(masks: np.ndarray, vel: np.ndarray, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        encode_velocity_mask(masks, vel, 1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_rejects_non_finite_velocities(bad: float) -> None:
    v = np.zeros((T, 2, 2), np.float32)
    v[1, 1, 0] = bad
    with pytest.raises(ValueError, match="NaN"):
        encode_velocity_mask(two_object_masks(), v, 1.0)


@pytest.mark.parametrize("vmax", [0.0, -1.0, float("nan"), float("inf")])
def test_rejects_bad_vmax(vmax: float) -> None:
    with pytest.raises(ValueError, match="v_max"):
        encode_velocity_mask(two_object_masks(), np.zeros((T, 2, 2)), vmax)


def test_first_frame_mask_zeros_later_frames() -> None:
    m = two_object_masks()[0]
    v = np.array([[1.0, 2.0], [0.0, 0.0]])
    out = encode_first_frame_velocity_mask(m, v, v_max=2.0, num_frames=6)
    assert out.shape == (6, 3, H, W) and out.dtype == np.float32
    assert np.all(out[1:] == 0)
    full = encode_velocity_mask(m[None], v[None], 2.0)
    np.testing.assert_array_equal(out[0], full[0])
    np.testing.assert_allclose(out[0, 0][m == 1], 0.5)
    np.testing.assert_allclose(out[0, 1][m == 1], 1.0)
    assert np.all(out[0, 2][m == 2] == 1) and np.all(out[0, :2][:, m == 2] == 0)
    with pytest.raises(ValueError, match="num_frames"):
        encode_first_frame_velocity_mask(m, v, 2.0, 0)
    with pytest.raises(ValueError, match="instance_mask"):
        encode_first_frame_velocity_mask(m[None], v, 2.0, 3)
    with pytest.raises(ValueError, match="velocities"):
        encode_first_frame_velocity_mask(m, v[None], 2.0, 3)


# ----------------------------------------------------------------------------- stage 2
def _ramp(shape: tuple[int, ...]) -> np.ndarray:
    return np.arange(1, np.prod(shape) + 1, dtype=np.float32).reshape(shape)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("k", [0, 2, 5, 9])
def test_stage2_dropout_keeps_first_frames(backend: str, batched: bool, k: int) -> None:
    shape = (2, 6, 3, H, W) if batched else (6, 3, H, W)
    x = _ramp(shape)
    if backend == "torch":
        x = torch.from_numpy(x)
    before = x.clone() if backend == "torch" else x.copy()
    out = stage2_dropout(x, k)
    assert type(out) is type(x)
    out_np = out.numpy() if backend == "torch" else out
    x_np = x.numpy() if backend == "torch" else x
    t_axis = 1 if batched else 0
    kept = np.take(out_np, range(0, min(k + 1, 6)), axis=t_axis)
    np.testing.assert_array_equal(kept, np.take(x_np, range(0, min(k + 1, 6)), axis=t_axis))
    if k + 1 < 6:
        assert np.all(np.take(out_np, range(k + 1, 6), axis=t_axis) == 0)
    # The input is not modified.
    if backend == "torch":
        assert torch.equal(x, before)
    else:
        np.testing.assert_array_equal(x, before)


def test_stage2_dropout_bad_args() -> None:
    with pytest.raises(ValueError, match="keep_until"):
        stage2_dropout(np.zeros((4, 3, H, W)), -1)
    with pytest.raises(ValueError, match="keep_until"):
        stage2_dropout(np.zeros((4, 3, H, W)), 1.5)
    with pytest.raises(ValueError, match="velocity_mask"):
        stage2_dropout(np.zeros((3, H, W)), 0)


def test_stage2_keep_until_anneals() -> None:
    total, T_ = 1000, 16
    ks = [stage2_keep_until(s, total, T_, final_fraction=0.3) for s in range(total + 1)]
    assert ks[0] == T_ - 1
    assert all(a >= b for a, b in zip(ks, ks[1:]))  # non-increasing
    assert all(0 <= k <= T_ - 1 for k in ks)
    assert all(k == 0 for k in ks[700:])  # final 30 % of stage 2 is the inference setting
    assert ks[650] > 0  # ... but k > 0 for most of the ramp (k is rounded, so 0 from ~97 % of the ramp)
    assert ks[350] == pytest.approx((T_ - 1) / 2, abs=1)
    assert set(range(T_)) <= set(ks)  # every k is visited
    assert stage2_keep_until(5000, total, T_) == 0  # past the end stays 0
    assert stage2_keep_until(0, 10, T_, final_fraction=0.0) == T_ - 1
    assert stage2_keep_until(10, 10, T_, final_fraction=0.0) == 0


def test_stage2_keep_until_bad_args() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        stage2_keep_until(0, 0, 16)
    with pytest.raises(ValueError, match="final_fraction"):
        stage2_keep_until(0, 10, 16, final_fraction=1.0)


# ----------------------------------------------------------------------------- driver mask
@pytest.mark.parametrize("radius", [0.1, 0.5, 0.96, 2.5])
def test_driver_mask_covers_centre_pixel(radius: float) -> None:
    # Centres at pixel centres, near pixel corners and on a corner exactly.
    p = np.array([[4.5, 3.5], [2.02, 5.03], [7.97, 1.98], [6.0, 6.0], [0.01, 0.01]], np.float32)
    out = encode_driver_mask(p, radius, H, W)
    assert out.shape == (len(p), 1, H, W) and out.dtype == np.float32
    assert set(np.unique(out)) <= {0.0, 1.0}
    for t, (u, v) in enumerate(p):
        col, row = min(int(u), W - 1), min(int(v), H - 1)
        assert out[t, 0, row, col] == 1, (t, u, v)


def test_driver_mask_radius_and_nan() -> None:
    p = np.array([[5.0, 4.0], [np.nan, np.nan], [5.0, np.nan], [50.0, 50.0]], np.float32)
    out = encode_driver_mask(p, 2.0, H, W)
    vv, uu = np.mgrid[0:H, 0:W] + 0.5
    expect = ((uu - 5.0) ** 2 + (vv - 4.0) ** 2 <= 4.0).astype(np.float32)
    np.testing.assert_array_equal(out[0, 0], expect)
    assert out[0].sum() == 12  # 4 + 8 pixel centres within 2 px of a pixel corner
    assert np.all(out[1:] == 0)  # NaN (not in view) and far outside the image


def test_driver_mask_bad_args() -> None:
    with pytest.raises(ValueError, match="pusher_px"):
        encode_driver_mask(np.zeros((3,)), 1.0, H, W)
    with pytest.raises(ValueError, match="radius_px"):
        encode_driver_mask(np.zeros((3, 2)), 0.0, H, W)
    with pytest.raises(ValueError, match="radius_px"):
        encode_driver_mask(np.zeros((3, 2)), float("nan"), H, W)
