"""numpy <-> sensor_msgs/Image conversion (pure functions, no rclpy), the node configs, and the
pure imagination core behind the ImagineOutcomes service."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from kinemask_ros import ros_convert as rc


def fields(arr: np.ndarray, encoding: str, pad: int = 0, big: bool = False) -> tuple:
    """ROS image fields for an (H, W[, C]) array in the encoding's dtype, with ``pad`` bytes per row."""
    a = np.asarray(arr)
    h, w = a.shape[:2]
    a = a.astype(a.dtype.newbyteorder(">" if big else "<"))
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], 1)
    return h, w, encoding, rows.shape[1], int(big), rows.tobytes()


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_bgr8_rgba8_bgra8(pad):
    np.testing.assert_array_equal(rc.image_to_rgb(*fields(RGB, "rgb8", pad)), RGB)
    np.testing.assert_array_equal(rc.image_to_rgb(*fields(RGB[..., ::-1], "bgr8", pad)), RGB)
    alpha = np.full((5, 7, 1), 9, np.uint8)
    np.testing.assert_array_equal(rc.image_to_rgb(*fields(np.concatenate([RGB, alpha], 2), "rgba8", pad)), RGB)
    np.testing.assert_array_equal(rc.image_to_rgb(*fields(np.concatenate([RGB[..., ::-1], alpha], 2), "bgra8", pad)), RGB)


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_16bit_and_float_honour_step_and_endianness(big, pad):
    ids = RNG.integers(0, 60000, (4, 6)).astype(np.uint16)
    for enc in ("mono16", "16UC1"):
        out = rc.image_to_ids(*fields(ids, enc, pad, big))
        assert out.dtype == np.uint16
        np.testing.assert_array_equal(out, ids)
    grey = rc.image_to_rgb(*fields(ids, "mono16", pad, big))
    np.testing.assert_array_equal(grey, np.repeat((ids >> 8).astype(np.uint8)[..., None], 3, 2))
    f = ids.astype(np.float32)
    np.testing.assert_array_equal(rc.image_to_ids(*fields(f, "32FC1", pad, big)), ids.astype(np.int32))


def test_mono8_both_ways():
    m = RNG.integers(0, 256, (3, 4), dtype=np.uint8)
    np.testing.assert_array_equal(rc.image_to_ids(*fields(m, "mono8", 5)), m)
    np.testing.assert_array_equal(rc.image_to_ids(*fields(m, "8UC1")), m)
    np.testing.assert_array_equal(rc.image_to_rgb(*fields(m, "mono8")), np.repeat(m[..., None], 3, 2))


def test_round_trip_and_output_encodings():
    f = rc.rgb_to_image(RGB)
    assert (f["encoding"], f["step"], f["is_bigendian"], len(f["data"])) == ("rgb8", 21, 0, 105)
    np.testing.assert_array_equal(rc.image_to_rgb(**f), RGB)
    np.testing.assert_array_equal(rc.image_to_rgb(**rc.rgb_to_image(RGB, "bgr8")), RGB)
    small = np.array([[0, 3], [255, 1]])
    assert rc.ids_to_image(small)["encoding"] == "mono8"
    big = np.array([[0, 300], [65535, 1]])
    f16 = rc.ids_to_image(big)
    assert f16["encoding"] == "16UC1" and f16["step"] == 4
    np.testing.assert_array_equal(rc.image_to_ids(**f16), big)
    # data may be bytes, bytearray, array.array (rclpy) or a numpy array (rosbags)
    import array

    for data in (bytearray(f["data"]), array.array("B", f["data"]), np.frombuffer(f["data"], np.uint8)):
        np.testing.assert_array_equal(rc.image_to_rgb(5, 7, "rgb8", 21, 0, data), RGB)


@pytest.mark.parametrize("args, match", [
    ((4, 4, "yuv422", 8, 0, bytes(32)), "unsupported colour image encoding 'yuv422'; supported: rgb8"),
    ((4, 4, "bayer_rggb8", 4, 0, bytes(16)), "unsupported"),
    ((4, 4, "", 12, 0, bytes(48)), "unsupported"),
    ((0, 4, "rgb8", 12, 0, b""), "empty"),
    ((4, 0, "rgb8", 0, 0, b""), "empty"),
    ((4, 4, "rgb8", 12, 0, bytes(47)), "truncated: 47 bytes, expected step \\* height = 12 \\* 4 = 48"),
    ((4, 4, "rgb8", 12, 0, bytes(49)), "too long"),
    ((4, 4, "rgb8", 11, 0, bytes(44)), "step 11 is smaller than width \\* bytes_per_pixel = 4 \\* 3 = 12"),
    ((4, 4, "mono16", 7, 0, bytes(28)), "step 7 is smaller"),
    ((4, -1, "rgb8", 12, 0, bytes(48)), "width must be an int >= 0"),
    ((4, 4, "rgb8", 12, 0, None), "not a byte buffer"),
    ((100000, 100000, "mono8", 100000, 0, b""), "exceeds the limit"),
])
def test_malformed_images_raise_with_reason(args, match):
    with pytest.raises(ValueError, match=match):
        rc.image_to_rgb(*args) if args[2] not in ("mono16",) else rc.image_to_ids(*args)


def test_wrong_kind_of_image():
    with pytest.raises(ValueError, match="unsupported instance-id image encoding 'rgb8'"):
        rc.image_to_ids(*fields(RGB, "rgb8"))
    with pytest.raises(ValueError, match="unsupported colour image encoding '32FC1'"):
        rc.image_to_rgb(*fields(np.zeros((2, 2), np.float32), "32FC1"))
    with pytest.raises(ValueError, match="NaN or inf"):
        rc.image_to_ids(*fields(np.array([[1, np.nan]], np.float32), "32FC1"))
    with pytest.raises(ValueError, match="whole numbers"):
        rc.image_to_ids(*fields(np.array([[1.5, 2]], np.float32), "32FC1"))
    with pytest.raises(ValueError, match="whole numbers"):
        rc.image_to_ids(*fields(np.array([[-1, 2]], np.float32), "32FC1"))
    with pytest.raises(ValueError, match="non-empty"):
        rc.rgb_to_image(np.zeros((0, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        rc.rgb_to_image(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="0..65535"):
        rc.ids_to_image(np.array([[70000]]))


def test_resize_and_fit_to_slots():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:32] = 200
    small = rc.resize_rgb(rgb, 32, 32)
    assert small.shape == (32, 32, 3) and small[0, 0, 0] == 200 and small[-1, 0, 0] == 0
    ids = np.zeros((64, 64), np.uint8)
    ids[10:20, 10:20] = 7
    r = rc.resize_ids(ids, 32, 32)
    assert set(np.unique(r)) == {0, 7} and (r == 7).sum() == 25


def test_finite_or_reason():
    assert rc.finite_or_reason(x=1.0, y=2) == ""
    assert "y is nan" in rc.finite_or_reason(x=1.0, y=math.nan)
    assert "x is inf" in rc.finite_or_reason(x=math.inf)
    assert "not a number" in rc.finite_or_reason(x="a")


# ----------------------------------------------------------------------------- node configs
def test_node_configs_validate_with_reasons():
    from kinemask_ros.ros.config import (PlannerNodeConfig, SegmentationNodeConfig, SimBridgeNodeConfig, WorldModelNodeConfig,
                                         config_replace, config_to_params)
    from kinemask_ros.scoring import TERM_NAMES

    for cls in (PlannerNodeConfig, SegmentationNodeConfig, SimBridgeNodeConfig, WorldModelNodeConfig):
        c = cls()
        assert config_replace(c, config_to_params(c)) == c  # params round trip
    assert {f"weight_{k}" for k in TERM_NAMES} <= set(config_to_params(PlannerNodeConfig()))
    assert config_replace(SegmentationNodeConfig(), {"rate_hz": 10}).rate_hz == 10.0  # int accepted for float
    assert config_replace(SegmentationNodeConfig(), {"target_pixel": [3, 4.5]}).target_pixel == (3.0, 4.5)
    bad = [
        (SegmentationNodeConfig(), {"rate_hz": 0.0}, "rate_hz"),
        (SegmentationNodeConfig(), {"target_id": 2, "target_label": "red"}, "at most one"),
        (SegmentationNodeConfig(), {"target_pixel": [1.0]}, "target_pixel"),
        (SegmentationNodeConfig(), {"color_threshold": -1.0}, "color_threshold"),
        (WorldModelNodeConfig(), {"device": "tpu"}, "device"),
        (WorldModelNodeConfig(), {"max_batch": 0}, "max_batch"),
        (WorldModelNodeConfig(), {"num_samples": 20}, "num_samples"),
        (WorldModelNodeConfig(), {"camera_eye": [0.0, 0.0]}, "camera_eye"),
        (WorldModelNodeConfig(), {"camera_eye": [0.0, 0.0, 0.0]}, "eye and target must differ"),
        (PlannerNodeConfig(), {"method": "gradient"}, "method"),
        (PlannerNodeConfig(), {"replan": "sometimes"}, "replan"),
        (PlannerNodeConfig(), {"weight_effort": math.nan}, "weight_effort"),
        (PlannerNodeConfig(), {"num_candidates": "many"}, "must be int"),
        (PlannerNodeConfig(), {"no_such": 1}, "unknown parameter"),
        (SimBridgeNodeConfig(), {"num_objects": 9}, "num_objects"),
        (SimBridgeNodeConfig(), {"reset_on_done": 1}, "must be bool"),
    ]
    for cfg, upd, match in bad:
        with pytest.raises(ValueError, match=match):
            config_replace(cfg, upd)


# ----------------------------------------------------------------------------- imagination core
@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    from ros_utils import make_tiny_checkpoint

    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    root = make_tiny_checkpoint(tmp_path_factory.mktemp("wm") / "tiny")
    return KineMaskPipeline.from_pretrained(root)


@pytest.fixture(scope="module")
def scene_frame():
    from kinemask_ros.envs.push_env import KineMaskPushEnv

    env = KineMaskPushEnv()
    obs, _ = env.reset(seed=5)
    yield obs, env
    env.close()


def _contact(pipe):
    from kinemask_ros.camera import CameraConfig, CameraModel
    from kinemask_ros.contact import ContactModel, ContactModelConfig

    return ContactModel(CameraModel(CameraConfig(width=32, height=32)), ContactModelConfig(num_frames=pipe.config.num_frames))


def test_imagine_candidates_scores_and_reasons(tiny_pipeline, scene_frame):
    import torch

    from kinemask_ros.imagination import imagine_candidates

    obs, env = scene_frame
    target = int(obs["target"])
    xy = env.scene.poses()[target - 1, :2]
    towards = [xy[0] - 0.06, xy[1], 0.0, 0.1, 0.3]  # starts left of the target, pushes +x
    strokes = [towards, [math.nan, 0, 0, 0.1, 0.3], [0, 0, 0, -0.1, 0.3], [0.17, 0.17, 0.0, 0.03, 0.3], towards]
    imag = imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], strokes, env.goal,
                              target_id=0, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert imag.valid.tolist()[:3] == [True, False, False]
    assert "x must be a finite number" in imag.reasons[1] and "length must be > 0" in imag.reasons[2]
    assert imag.contact_ids[0] == target and imag.target_ids[0] == target
    assert not imag.valid[3] and "miss" in imag.reasons[3]  # touches nothing, no target given
    assert list(imag.order) == sorted(imag.order, key=lambda i: imag.total[i]) and set(imag.order) == {0, 4}
    assert math.isclose(imag.total[0], sum(imag.weights[k] * imag.terms[k][0] for k in imag.terms), rel_tol=1e-9)
    # with an explicit target, the miss is scored too
    imag = imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], strokes[3:4], env.goal,
                              target_id=target, num_samples=1)
    assert imag.valid[0] and imag.contact_ids[0] == 0
    with pytest.raises(ValueError, match="target id 7 is not in the instance mask"):
        imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], strokes, env.goal, target_id=7)
    with pytest.raises(ValueError, match="outside"):
        imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], strokes, (5.0, 0.0))
    with pytest.raises(ValueError, match="finite"):
        imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], strokes, (math.inf, 0.0))
    with pytest.raises(ValueError, match="no candidates"):
        imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], [], env.goal)


def test_imagine_candidates_bounds_and_time_budget(tiny_pipeline, scene_frame):
    from kinemask_ros.admission import Deadline
    from kinemask_ros.imagination import imagine_candidates
    from kinemask_ros.push import PushBounds

    obs, env = scene_frame
    target = int(obs["target"])
    xy = env.scene.poses()[target - 1, :2]
    good = [xy[0] - 0.06, xy[1], 0.0, 0.1, 0.3]
    strokes = [good, [0.0, 0.0, 0.0, 1e4, 0.3], [1e9, 0.0, 0.0, 0.1, 0.3], [0.0, 0.0, 1e30, 0.1, 0.3], [0.0, 0.0, 0.0, 0.1, 1e6]]
    names = {"length_range": "stroke_length_range", "x_range": "stroke_x_range", "speed_range": "stroke_speed_range"}
    t0 = time.perf_counter()
    imag = imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], strokes, env.goal,
                              target_id=target, num_samples=1, bounds=PushBounds(), bounds_params=names)
    assert time.perf_counter() - t0 < 5.0  # refused before any work: length 1e4 used to take 21 s, 1e9 to fail with MemoryError
    assert imag.valid.tolist() == [True, False, False, False, False]
    assert "stroke_length_range" in imag.reasons[1] and "stroke_x_range" in imag.reasons[2]
    assert "theta" in imag.reasons[3] and "stroke_speed_range" in imag.reasons[4]
    # an expired budget: the first batch is still scored, the rest are invalid with the reason
    imag = imagine_candidates(tiny_pipeline, _contact(tiny_pipeline), obs["image"], obs["instance_mask"], [good] * 5, env.goal,
                              target_id=target, num_samples=1, deadline=Deadline(0.0), chunk=2)
    assert imag.valid.tolist() == [True, True, False, False, False]
    assert all("time budget of 0 s ran out after 2 of 5" in r for r in imag.reasons[2:])


def test_rollout_frames_video_and_track_warp(tiny_pipeline, scene_frame):
    from kinemask_ros.imagination import rollout_frames, warp_frames
    from kinemask_ros.push import PushStroke

    obs, env = scene_frame
    mask = np.where(obs["instance_mask"] == 255, 0, obs["instance_mask"])
    s = [PushStroke(-0.1, 0.0, 0.0, 0.1, 0.3), PushStroke(0.1, 0.0, math.pi, 0.1, 0.3)]
    rf = rollout_frames(tiny_pipeline, _contact(tiny_pipeline), obs["image"], mask, s)
    Tv = tiny_pipeline.config.video_frames
    assert rf.source == "video_model" and rf.frames.shape == (2, Tv, 32, 32, 3) and rf.masks.shape == (2, Tv, 32, 32)
    np.testing.assert_array_equal(rf.frames[:, 0], np.broadcast_to(obs["image"], (2, 32, 32, 3)))
    assert rf.tracks.shape == (2, 4, Tv, 2) and rf.frame_indices == list(range(0, 16, 2))
    # track warp: an object moved by (+3, +1) px lands 3 columns right and 1 row down
    K = 4
    tracks = np.full((1, K, 16, 2), np.nan)
    ids = [int(i) for i in np.unique(mask) if i]
    for k in ids:
        tracks[0, k - 1] = 10.0
    k0 = ids[0]
    tracks[0, k0 - 1, -1] = [13.0, 11.0]
    frames, masks = warp_frames(obs["image"], mask, tracks, [0, 15])
    rows, cols = np.nonzero(mask == k0)
    rr, cc = np.nonzero(masks[0, 1] == k0)
    inside = (rows + 1 < 32) & (cols + 3 < 32)
    assert set(zip(rr, cc)) == set(zip(rows[inside] + 1, cols[inside] + 3))
    np.testing.assert_array_equal(masks[0, 0], mask)


def test_segmentation_node_target_selection():
    from kinemask_ros.ros.config import SegmentationNodeConfig
    from kinemask_ros.ros.segmentation_node import select
    from kinemask_ros.segmentation import Segmentation

    ids = np.zeros((8, 8), np.uint8)
    ids[1:3, 1:3] = 1
    ids[5:7, 5:7] = 2
    seg = Segmentation.from_instance_ids(ids, labels=["red", "blue"])
    assert select(seg, SegmentationNodeConfig())[0] == 0
    assert select(seg, SegmentationNodeConfig(target_id=2)) == (2, "id 2")
    t, why = select(seg, SegmentationNodeConfig(target_id=9))
    assert t == 0 and "id 9 not in the image (ids: [1, 2])" in why
    assert select(seg, SegmentationNodeConfig(target_pixel=(6.0, 6.0)))[0] == 2
    assert select(seg, SegmentationNodeConfig(target_pixel=(4.0, 0.5)))[0] == 1  # nearest object to a background pixel
    t, why = select(seg, SegmentationNodeConfig(target_pixel=(40.0, 4.0)))
    assert t == 0 and "outside" in why
    assert select(seg, SegmentationNodeConfig(target_label="the blue box"))[0] == 2
    assert select(seg, SegmentationNodeConfig(target_id=1), label_override="blue cylinder")[0] == 2  # the topic wins
    t, why = select(seg, SegmentationNodeConfig(target_label="green"))
    assert t == 0 and "no object labelled 'green'" in why
