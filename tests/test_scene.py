"""Tests for the PyBullet tabletop scene (sim_bridge/scene.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinemask_ros.camera import CameraConfig, mask_centroid
from kinemask_ros.push import PushStroke
from kinemask_ros.sim_bridge.scene import PUSHER_ID, ObjectSpec, SceneConfig, TabletopScene

RED_CYL = ObjectSpec("cylinder", (0.025, 0.025), 0.03, 0.2, 0.15, "red")
BLUE_BOX = ObjectSpec("box", (0.025, 0.025), 0.03, 0.2, 0.15, "blue")


@pytest.fixture(scope="module")
def scene():
    s = TabletopScene(SceneConfig())
    yield s
    s.close()


def stroke_behind(scene: TabletopScene, obj: int, theta: float, length: float = 0.1, speed: float = 0.3) -> PushStroke:
    spec = scene.objects[obj - 1]
    pose = scene.poses()[obj - 1]
    d = np.array([math.cos(theta), math.sin(theta)])
    start = pose[:2] - (spec.support(pose[2], d) + scene.config.pusher_radius + 0.006) * d
    return PushStroke(float(start[0]), float(start[1]), theta, length, speed)


def test_rendered_masks_agree_with_projection(scene: TabletopScene) -> None:
    """Mask centroids match CameraModel.project of the object centres (the half-pixel renderer fix)."""
    rng = np.random.default_rng(0)
    errs, bias = [], []
    for _ in range(15):
        specs, poses = scene.sample_objects(rng)
        scene.set_objects(specs, poses)
        rgb, inst = scene.render()
        assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
        assert inst.shape == (32, 32) and inst.dtype == np.uint8
        assert set(np.unique(inst)) <= {0, PUSHER_ID, *range(1, len(specs) + 1)}
        cents = scene.object_centroids_px()
        for k in range(len(specs)):
            m = inst == k + 1
            assert m.sum() >= 4, "every object is visible"
            d = mask_centroid(m) - cents[k]
            errs.append(float(np.linalg.norm(d)))
            bias.append(d)
    assert np.mean(errs) < 0.35, np.mean(errs)
    # No systematic half-pixel shift in either axis.
    assert np.all(np.abs(np.mean(bias, axis=0)) < 0.15), np.mean(bias, axis=0)


def test_pusher_is_rendered_with_its_id(scene: TabletopScene) -> None:
    scene.set_objects([RED_CYL], np.array([[0.1, 0.1, 0.0]]))
    ep = scene.execute(PushStroke(-0.05, -0.05, 0.0, 0.03, 0.3), num_frames=2)
    assert ep.pushed_id == 0
    pusher = ep.masks[0] == PUSHER_ID
    assert pusher.sum() >= 1
    np.testing.assert_allclose(mask_centroid(pusher), ep.pusher_px[0], atol=0.7)


def test_same_seed_identical_episode() -> None:
    def run(scene: TabletopScene, seed: int):
        rng = np.random.default_rng(seed)
        specs, poses = scene.sample_objects(rng)
        scene.set_objects(specs, poses)
        theta = float(rng.uniform(-math.pi, math.pi))
        return scene.execute(stroke_behind(scene, 1, theta))

    a, b = TabletopScene(), TabletopScene()
    try:
        run(a, 99)  # history in the same client must not matter
        e1, e2 = run(a, 5), run(b, 5)
        e3 = run(b, 6)
    finally:
        a.close()
        b.close()
    for name in ("frames", "masks", "states", "centroids_px", "velocities_px", "pusher_xy", "contact_velocity"):
        np.testing.assert_array_equal(getattr(e1, name), getattr(e2, name), err_msg=name)
    assert e1.events == e2.events and e1.pushed_id == e2.pushed_id
    assert not np.array_equal(e1.states, e3.states)  # a different seed is a different episode


@pytest.mark.parametrize("theta", [0.0, math.pi / 2, -3 * math.pi / 4])
def test_push_moves_single_object(scene: TabletopScene, theta: float) -> None:
    scene.set_objects([RED_CYL], np.array([[0.0, 0.0, 0.0]]))
    ep = scene.execute(stroke_behind(scene, 1, theta))
    T = scene.config.num_frames
    assert ep.frames.shape == (T, 32, 32, 3) and ep.masks.shape == (T, 32, 32)
    assert ep.states.shape == (T, 1, 6) and ep.states.dtype == np.float32
    assert ep.velocities_px.shape == (T, 1, 2) and ep.pusher_px.shape == (T, 2)
    assert ep.pushed_id == 1 and not ep.collided
    assert ep.events[0]["a"] == PUSHER_ID and ep.events[0]["b"] == 1
    # Moves visibly in the pixel direction of the push (y forward = image up).
    disp_px = ep.centroids_px[-1, 0] - ep.centroids_px[0, 0]
    expect = np.array([math.cos(theta), -math.sin(theta)])
    assert np.linalg.norm(disp_px) > 3.0, disp_px
    assert disp_px @ expect / np.linalg.norm(disp_px) > math.cos(math.radians(25))
    # The rendered mask moved too.
    mdisp = mask_centroid(ep.masks[-1] == 1) - mask_centroid(ep.masks[0] == 1)
    assert np.linalg.norm(mdisp - disp_px) < 1.0
    # Frame 0 carries the post-contact velocity [px/frame], pointing along the push.
    v0 = ep.velocities_px[0, 0]
    assert np.linalg.norm(v0) > 0.3 and v0 @ expect / np.linalg.norm(v0) > math.cos(math.radians(25))
    assert np.linalg.norm(ep.contact_velocity[0]) > 0
    # Later frames: forward difference of the centroids; the last frame repeats the previous.
    np.testing.assert_allclose(ep.velocities_px[1:-1, 0], np.diff(ep.centroids_px[1:, 0], axis=0), atol=1e-5)
    np.testing.assert_array_equal(ep.velocities_px[-1], ep.velocities_px[-2])
    # The object ends at rest (friction), and the text says where it went.
    assert np.linalg.norm(ep.states[-1, 0, 3:5]) < 0.01
    assert ep.describe().startswith("the red cylinder slides")


def test_collision_episode(scene: TabletopScene) -> None:
    scene.set_objects([RED_CYL, BLUE_BOX], np.array([[-0.05, 0.0, 0.0], [0.03, 0.0, 0.0]]))
    ep = scene.execute(stroke_behind(scene, 1, 0.0, length=0.12))
    assert ep.pushed_id == 1
    assert ep.collided
    pairs = [(e["a"], e["b"]) for e in ep.events]
    assert pairs[0] == (PUSHER_ID, 1)
    assert (1, 2) in pairs  # the pushed object is the hitter
    ev = next(e for e in ep.events if (e["a"], e["b"]) == (1, 2))
    assert 1 <= ev["frame"] < scene.config.num_frames and ev["time"] > 0
    # The hit object moved right, and only the pushed object has a frame-0 velocity.
    assert ep.states[-1, 1, 0] - ep.states[0, 1, 0] > 0.005
    assert np.all(ep.velocities_px[0, 1] == 0) and ep.velocities_px[0, 0, 0] > 0
    text = ep.describe()
    assert "red cylinder" in text and "blue box" in text and "hits" in text, text


def test_miss_episode(scene: TabletopScene) -> None:
    scene.set_objects([RED_CYL], np.array([[0.1, 0.1, 0.0]]))
    ep = scene.execute(PushStroke(-0.1, -0.1, math.pi, 0.05, 0.3))
    assert ep.pushed_id == 0 and not ep.collided and ep.events == []
    assert np.all(ep.velocities_px[0] == 0)  # no post-contact velocity for a miss
    assert np.abs(ep.velocities_px).max() < 0.01  # only settling jitter afterwards
    assert np.allclose(ep.states[-1, 0, :2], [0.1, 0.1], atol=1e-4)
    assert "misses" in ep.describe()


def test_first_contact(scene: TabletopScene) -> None:
    scene.set_objects([RED_CYL, BLUE_BOX], np.array([[-0.05, 0.0, 0.0], [0.05, 0.0, 0.0]]))
    assert scene.first_contact(PushStroke(-0.12, 0.0, 0.0, 0.2, 0.3)) == 1
    assert scene.first_contact(PushStroke(0.12, 0.0, math.pi, 0.2, 0.3)) == 2
    assert scene.first_contact(PushStroke(-0.12, 0.1, 0.0, 0.2, 0.3)) == 0


def test_resolve_start_moves_start_out_of_object(scene: TabletopScene) -> None:
    scene.set_objects([RED_CYL], np.array([[0.0, 0.0, 0.0]]))
    stroke = PushStroke(0.01, 0.0, 0.0, 0.06, 0.3)  # starts inside the cylinder
    assert RED_CYL.distance_to(scene.poses()[0], stroke.start) == 0.0
    fixed = scene.resolve_start(stroke)
    r = scene.config.pusher_radius
    assert RED_CYL.distance_to(scene.poses()[0], fixed.start) > r
    assert fixed.start[0] < stroke.start[0] and fixed.y == pytest.approx(0.0)  # moved back along the stroke
    np.testing.assert_allclose(fixed.end, stroke.end, atol=1e-9)  # the end point is kept
    assert fixed.theta == stroke.theta and fixed.speed == stroke.speed
    clear = PushStroke(-0.1, 0.0, 0.0, 0.05, 0.3)
    assert scene.resolve_start(clear) is clear
    # execute() applies the rule: the recorded stroke starts outside and the object is pushed.
    ep = scene.execute(stroke, num_frames=6)
    assert ep.stroke.x == pytest.approx(fixed.x) and ep.pushed_id == 1
    assert np.all(np.isfinite(ep.states)) and np.abs(ep.states[:, 0, :2]).max() < 0.2


def test_execute_without_objects_raises() -> None:
    s = TabletopScene()
    try:
        with pytest.raises(RuntimeError, match="set_objects"):
            s.execute(PushStroke(0.0, 0.0, 0.0, 0.05, 0.3))
    finally:
        s.close()


def test_set_objects_checks(scene: TabletopScene) -> None:
    with pytest.raises(ValueError, match="poses"):
        scene.set_objects([RED_CYL], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        scene.set_objects([RED_CYL], np.array([[np.nan, 0.0, 0.0]]))


def test_sample_objects_do_not_overlap(scene: TabletopScene) -> None:
    rng = np.random.default_rng(3)
    cfg = scene.config
    for _ in range(20):
        specs, poses = scene.sample_objects(rng)
        assert cfg.min_objects <= len(specs) <= cfg.max_objects and poses.shape == (len(specs), 3)
        assert len({s.color for s in specs}) == len(specs)  # names are unique
        assert np.all(np.abs(poses[:, :2]) <= cfg.placement_half_extent)
        for s in specs:
            assert cfg.friction_range[0] <= s.friction <= cfg.friction_range[1]
            assert cfg.object_size_range[0] <= min(s.size) <= max(s.size) <= cfg.object_size_range[1]
        for i in range(len(specs)):
            for j in range(i):
                gap = np.linalg.norm(poses[i, :2] - poses[j, :2]) - specs[i].bounding_radius - specs[j].bounding_radius
                assert gap > cfg.min_clearance


def test_scene_config_timing() -> None:
    cfg = SceneConfig()
    assert cfg.num_frames == 16 and cfg.steps_per_frame == 20  # 0.08 s at 250 Hz


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_frames": 1}, "num_frames"),
        ({"num_frames": 0}, "num_frames"),
        ({"frame_dt": -0.1}, "frame_dt"),
        ({"frame_dt": float("nan")}, "frame_dt"),
        ({"sim_hz": 10}, "sim_hz"),
        ({"object_size_range": (-0.02, 0.03)}, "object_size_range"),
        ({"object_size_range": (0.03, 0.02)}, "object_size_range"),
        ({"mass_range": (0.0, 0.3)}, "mass_range"),
        ({"friction_range": (float("nan"), 0.2)}, "friction_range"),
        ({"friction_range": (0.1, float("nan"))}, "friction_range"),
        ({"object_height": -0.03}, "object_height"),
        ({"pusher_radius": 0.0}, "pusher_radius"),
        ({"workspace_half_extent": float("nan")}, "workspace_half_extent"),
        ({"min_clearance": -0.01}, "min_clearance"),
        ({"placement_half_extent": 0.3}, "placement_half_extent"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"camera": "top"}, "camera"),
    ],
)
def test_scene_config_rejects_bad_values(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SceneConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"shape": "sphere"}, "shape"),
        ({"color": "mauve"}, "color"),
        ({"mass": -1.0}, "mass"),
        ({"friction": float("nan")}, "friction"),
        ({"size": (0.02, -0.01)}, "size"),
    ],
)
def test_object_spec_rejects_bad_values(kwargs: dict, field: str) -> None:
    args = {"shape": "box", "size": (0.02, 0.02), "height": 0.03, "mass": 0.2, "friction": 0.15, "color": "red"} | kwargs
    with pytest.raises(ValueError, match=field):
        ObjectSpec(**args)


def test_other_resolution_renders() -> None:
    s = TabletopScene(SceneConfig(camera=CameraConfig(width=48, height=40)))
    try:
        s.set_objects([RED_CYL], np.array([[0.0, 0.0, 0.0]]))
        rgb, inst = s.render()
        assert rgb.shape == (40, 48, 3) and inst.shape == (40, 48)
        np.testing.assert_allclose(mask_centroid(inst == 1), s.object_centroids_px()[0], atol=0.35)
    finally:
        s.close()
