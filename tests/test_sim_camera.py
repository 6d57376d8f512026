"""The simulator with any camera and any look: oblique RGB-D renders, their rectification into the
canonical table frame, depth geometry, looks (canonical = unchanged images, randomized = new
colours/texture/light/noise), and the SceneConfig round trip through a dataset manifest."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from kinemask_ros.camera import CameraConfig, CameraModel, mask_centroid
from kinemask_ros.push import PushStroke
from kinemask_ros.sim_bridge.look import Look, LookConfig
from kinemask_ros.sim_bridge.scene import PUSHER_ID, SceneConfig, TabletopScene
from kinemask_ros.table_frame import CameraCalibration, TableFrame, depth_to_table_points, rectify, splat_top_down

FRAME = TableFrame(0.2, 64)
OBLIQUE = CameraConfig.oblique(640, 480, elevation_deg=45, distance=0.8)


@pytest.fixture(scope="module")
def oblique_scene():
    s = TabletopScene(SceneConfig(camera=OBLIQUE, look=LookConfig.randomized()))
    yield s
    s.close()


def _scene(s: TabletopScene, seed: int, k: int = 4):
    rng = np.random.default_rng(seed)
    specs, poses = s.sample_objects(rng, k)
    s.set_objects(specs, poses)
    return specs, poses


def test_oblique_camera_config():
    cam = CameraModel(OBLIQUE)
    assert np.linalg.norm(cam.eye) == pytest.approx(0.8) and cam.eye[2] == pytest.approx(0.8 / np.sqrt(2))
    assert cam.eye[1] < 0 and abs(cam.eye[0]) < 1e-12  # in front of the table (-y), looking forward
    # image orientation as the canonical camera: +x is image right, +y (away from the camera) is image up
    uv = cam.project_table(np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]]))
    assert uv[1, 0] > uv[0, 0] + 10 and uv[2, 1] < uv[0, 1] - 10
    assert np.allclose(uv[0], [320, 240])  # the target is the image centre
    calib = CameraCalibration.from_camera_model(cam)
    assert calib.check_workspace(FRAME) == 1.0 and calib.check_workspace(FRAME, plane_z=0.03) == 1.0
    top = CameraModel(CameraConfig.oblique(64, 64, elevation_deg=90, distance=1.5, fov_deg=15.19))
    assert np.allclose(top.R, CameraModel(CameraConfig(width=64, height=64)).R)  # 90 deg = today's top-down camera
    with pytest.raises(ValueError, match="elevation_deg"):
        CameraConfig.oblique(elevation_deg=0.0)


def test_default_render_is_unchanged():
    """Golden hashes of frames + masks made before looks, depth and the composed table existed."""
    want = {(32, 0): "91c46d0de6f5b917", (32, 7): "a4b9f67a4a62f2b3", (64, 0): "1cda418cdff3626e", (64, 7): "0bc8b373156631e6"}
    for (w, seed), h in want.items():
        s = TabletopScene(SceneConfig(camera=CameraConfig(width=w, height=w)))
        specs, poses = _scene(s, seed, None)
        ep = s.execute(PushStroke(float(poses[0, 0]) - 0.08, float(poses[0, 1]), 0.0, 0.12, 0.2), num_frames=4)
        got = hashlib.sha256(ep.frames.tobytes() + ep.masks.tobytes()).hexdigest()[:16]
        s.close()
        assert got == h, f"canonical render changed at {w}x{w}, seed {seed} (or pybullet's TinyRenderer changed version)"


def test_canonical_view_of_the_default_camera_is_its_own_image():
    s = TabletopScene(SceneConfig(camera=CameraConfig(width=64, height=64)))
    _scene(s, 3)
    rgb, ids, depth = s.render_rgbd()
    calib = CameraCalibration.from_camera_model(s.camera)
    r_ids = rectify(ids, calib, FRAME, interpolation="nearest")
    r_rgb, valid = rectify(rgb, calib, FRAME, return_valid=True)
    s.close()
    assert valid.all()
    assert (r_ids == ids).mean() > 0.995  # the homography is a 1.00005 scaling
    assert np.abs(r_rgb.astype(int) - rgb).mean() < 1.0


def test_oblique_rectified_centroids_match_the_true_poses(oblique_scene):
    s = oblique_scene
    calib = CameraCalibration.from_camera_model(s.camera)
    errs, errs_depth, errs_z0 = [], [], []
    for seed in range(6):
        specs, poses = _scene(s, seed)
        s.sample_look(np.random.default_rng(seed))
        rgb, ids, depth = s.render_rgbd(noise=False)
        assert rgb.shape == (480, 640, 3) and ids.shape == (480, 640) and depth.dtype == np.float32
        h = specs[0].height
        rid = rectify(ids, calib, FRAME, plane_z=h / 2, interpolation="nearest")
        rid0 = rectify(ids, calib, FRAME, plane_z=0.0, interpolation="nearest")
        top = splat_top_down(depth_to_table_points(depth, calib), ids, FRAME, min_height=0.005)
        for k in range(1, len(specs) + 1):
            for img, out in ((rid, errs), (top, errs_depth), (rid0, errs_z0)):
                out.append(np.linalg.norm(FRAME.to_table(mask_centroid(img == k)) - poses[k - 1, :2]) / FRAME.pixel_size)
    errs, errs_depth, errs_z0 = map(np.asarray, (errs, errs_depth, errs_z0))
    assert np.mean(errs) < 0.6 and np.max(errs) < 1.2  # canonical pixels (6.25 mm)
    assert np.mean(errs_depth) < 0.3 and np.max(errs_depth) < 0.6
    assert np.mean(errs_z0) > 2.0  # rectifying at the table plane is biased away from the camera (the stated approximation)


def test_depth_matches_the_geometry(oblique_scene):
    s = oblique_scene
    s.apply_look(Look())
    specs, poses = _scene(s, 11)
    rgb, ids, depth = s.render_rgbd()
    cam = s.camera
    table = ids == 0
    # the table plane
    pts = depth_to_table_points(depth, CameraCalibration.from_camera_model(cam))
    assert np.abs(pts[table][:, 2]).max() < 2e-3
    # the top face of every object, from the renderer's depth buffer: z of its centre along the optical axis
    errs = []
    for k, (spec, pose) in enumerate(zip(specs, poses), start=1):
        u, v = cam.project(np.array([pose[0], pose[1], spec.height]))
        j, i = int(u), int(v)
        # exact: the ray through that pixel's centre meets the top face (plane z = height) at this depth
        ray = np.linalg.inv(cam.K) @ np.array([j + 0.5, i + 0.5, 1.0])  # camera frame, z = 1
        ray_w = cam.R.T @ ray
        want = (spec.height - cam.eye[2]) / ray_w[2]
        assert ids[i, j] == k
        errs.append(abs(depth[i, j] - want))
        assert abs(pts[i, j, 2] - spec.height) < 2e-3
    assert max(errs) < 2e-3 and np.mean(errs) < 1e-3, errs


def test_randomized_look_changes_colours_and_canonical_is_unchanged():
    s = TabletopScene(SceneConfig(camera=CameraConfig(width=64, height=64), look=LookConfig.randomized()))
    _scene(s, 5)
    s.apply_look(Look())
    rgb0, ids0 = s.render()
    look = s.sample_look(np.random.default_rng(1))
    assert look.object_rgb is not None and not look.is_canonical
    rgb1, ids1 = s.render()
    assert np.array_equal(ids0, ids1)  # geometry is the same
    obj = (ids0 >= 1) & (ids0 < PUSHER_ID)
    assert np.abs(rgb1[obj].astype(int) - rgb0[obj]).mean() > 20  # new object colours
    assert np.abs(rgb1[ids0 == 0].astype(int) - rgb0[ids0 == 0]).mean() > 5  # new table colour
    # per-frame sensor noise: two renders of the same state differ, the depth has holes
    rgb2, _ = s.render()
    if look.rgb_noise_std > 0.5:
        assert not np.array_equal(rgb1, rgb2)
    # back to the canonical look: bit-identical to the first render
    s.apply_look(Look())
    assert np.array_equal(s.render()[0], rgb0)
    s.close()


def test_looks_are_seeded_and_continuous():
    cfg = LookConfig.randomized()
    a, b = cfg.sample(np.random.default_rng(3)), cfg.sample(np.random.default_rng(3))
    assert a == b
    looks = [cfg.sample(np.random.default_rng(i)) for i in range(40)]
    hues = np.array([[max(c) - min(c) for c in lk.object_rgb] for lk in looks])
    assert len({lk.object_rgb[0] for lk in looks}) == 40 and hues.std() > 0.05  # continuous, not a palette
    assert {lk.table_texture for lk in looks} == {"flat", "noise", "checker", "wood"}
    for lk in looks:  # objects stand out from the table
        assert min(np.linalg.norm(np.subtract(c, lk.table_rgb)) for c in lk.object_rgb) >= cfg.min_contrast - 1e-9
    # the canonical config draws nothing from the rng (datasets keep their random streams)
    rng = np.random.default_rng(9)
    state = rng.bit_generator.state
    assert LookConfig.canonical().sample(rng) == Look() and rng.bit_generator.state == state
    with pytest.raises(ValueError, match="object_hue_range"):
        LookConfig(object_hue_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="look must be"):
        LookConfig.named("fancy")


def test_depth_noise_and_holes():
    look = Look(depth_noise_std=0.002, depth_hole_fraction=0.02, rgb_noise_std=3.0, noise_seed=4)
    s = TabletopScene(SceneConfig(camera=CameraConfig(width=64, height=64)))
    _scene(s, 2)
    clean = s.render_rgbd(noise=False)[2]
    s.apply_look(look)
    rgb, ids, noisy = s.render_rgbd()
    holes = np.isnan(noisy)
    assert 0.01 < holes.mean() < 0.03
    diff = (noisy - clean)[~holes]
    assert 0.002 * 1.5**2 * 0.7 < diff.std() < 0.002 * 1.5**2 * 1.3  # std grows with z^2 (z = 1.5 m here)
    s.apply_look(Look(depth_hole_fraction=0.02, depth_hole_value="zero", noise_seed=1))
    d = s.render_rgbd()[2]
    assert not np.isnan(d).any() and (d == 0).mean() > 0.01
    s.close()


def test_scene_config_look_round_trips_through_a_manifest():
    import json

    from kinemask_ros.sim_bridge.dataset import GeneratorConfig

    g = GeneratorConfig(scene=SceneConfig(look=LookConfig.randomized()))
    back = GeneratorConfig.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back.scene.look == LookConfig.randomized()
    assert SceneConfig().look.is_canonical
    with pytest.raises(ValueError, match="SceneConfig.look"):
        SceneConfig(look="randomized")
