"""The slot rule for scenes with more objects than the world model's K (kinemask_ros.object_scene)."""

from __future__ import annotations

import numpy as np
import pytest

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.object_scene import fit_to_slots
from kinemask_ros.push import PushStroke

CAM = CameraModel(CameraConfig(width=32, height=32))


def _row_scene() -> np.ndarray:
    """Six 3x4 px objects in a row through the image centre (ids 1..6, left to right) and a big one (7) in a corner."""
    ids = np.zeros((32, 32), np.uint8)
    for i, u in enumerate(range(2, 30, 5)):
        ids[14:18, u:u + 3] = i + 1
    ids[0:8, 24:32] = 7  # largest object, far from any push along the row
    return ids


def test_keeps_what_the_push_can_reach_not_the_largest():
    ids = _row_scene()
    stroke = PushStroke(-0.19, 0.0, 0.0, 0.12, 0.3)  # along the row, from the left edge
    fit = fit_to_slots(ids, 4, CAM, target_id=1, strokes=[stroke], reach_m=0.15)
    assert fit.kept == [1, 2, 3, 4] and 7 in fit.left_out  # the big corner object is not kept
    assert sorted(fit.kept + fit.left_out) == list(range(1, 8))
    assert fit.id_map == {1: 1, 2: 2, 3: 3, 4: 4} and fit.slot_of(5) == 0
    assert set(np.unique(fit.slots)) == {0, 1, 2, 3, 4}
    assert np.array_equal(fit.slots == 3, ids == 3)
    # gaps grow along the row; object 5 (within reach_m) is reported as reachable-but-left-out, 6 is not
    assert fit.gaps_m[2] <= fit.gaps_m[3] <= fit.gaps_m[4] <= fit.gaps_m[5] <= fit.gaps_m[6]
    assert fit.reachable_left_out == [5] and "objects [5] are within reach" in fit.warning()


def test_target_always_kept_and_no_drop_below_k():
    ids = _row_scene()
    fit = fit_to_slots(ids, 2, CAM, target_id=6)  # target at the far right, no strokes: region = its footprint
    assert fit.kept[0] == 6 and fit.kept[1] == 5 and len(fit.left_out) == 5
    fit = fit_to_slots(ids, 8, CAM, target_id=3)
    assert not fit.left_out and not fit.warning() and sorted(fit.kept) == list(range(1, 8))


def test_pusher_id_ignored_and_errors():
    ids = _row_scene()
    ids[0, 0] = 255
    fit = fit_to_slots(ids, 8, CAM)
    assert 255 not in fit.kept and fit.slots[0, 0] == 0
    with pytest.raises(ValueError, match="target id 9 is not in the id map"):
        fit_to_slots(ids, 4, CAM, target_id=9)
    with pytest.raises(ValueError, match="camera model is 32x32 but the id map is 16x32"):
        fit_to_slots(ids[:, :16], 4, CAM)


def test_planner_plans_on_more_objects_than_slots_and_reports_left_out(tmp_path):
    from ros_utils import make_tiny_checkpoint

    from kinemask_ros.planning import PlannerConfig, PushPlanner
    from kinemask_ros.policies.shooting import CEMConfig
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    pipe = KineMaskPipeline.from_pretrained(make_tiny_checkpoint(tmp_path / "wm"))  # K = 4
    ids = _row_scene()
    image = np.full((32, 32, 3), 200, np.uint8)
    image[ids > 0] = (200, 30, 30)
    planner = PushPlanner(CAM, PlannerConfig(cem=CEMConfig(num_samples=8, iterations=1, num_elites=4)), pipe)
    goal = planner.goal_from_table((0.0, 0.1))
    out = planner.plan(image, ids, 3, goal)
    assert sorted(out.left_out) == sorted(set(range(1, 8)) - set(out.id_map.values())) and len(out.left_out) == 3
    assert out.id_map[1] == 3 and 3 not in out.left_out  # the target keeps slot 1
    assert set(np.unique(out.imagined.target_ids)) <= {0} | set(out.id_map.values())  # reported in the caller's ids
    assert out.valid and out.best_stroke is not None


# ----------------------------------------------------------------------------- metric object scene + object model
def test_object_scene_estimates_poses_below_a_pixel():
    from kinemask_ros.object_scene import ObjectScene
    from kinemask_ros.sim_bridge.scene import SceneConfig, TabletopScene

    for res, tol_mm in ((32, 4.0), (128, 1.5)):
        scene = TabletopScene(SceneConfig(camera=CameraConfig(width=res, height=res), max_objects=8))
        rng = np.random.default_rng(3)
        errs = []
        for _ in range(4):
            specs, poses = scene.sample_objects(rng, 6)
            scene.set_objects(specs, poses)
            _, mask = scene.render()
            os_ = ObjectScene.from_mask(mask, scene.camera)
            assert list(os_.ids) == list(range(1, len(specs) + 1))
            errs += list(np.linalg.norm(os_.poses[:, :2] - scene.poses()[:, :2], axis=1))
            # distances: 0 inside a footprint, positive outside
            assert np.allclose(np.diag(os_.distances(os_.poses[:, :2])), 0.0)
        scene.close()
        px_mm = 400.0 / res
        assert np.median(errs) * 1e3 < min(tol_mm, px_mm / 2), (res, np.median(errs))


def _object_checkpoint(tmp_path):
    from ros_utils import make_tiny_checkpoint

    from kinemask_ros.world_model.objects import ObjectTrackDenoiser, ObjectWorldModel

    root = make_tiny_checkpoint(tmp_path / "wm")
    ObjectWorldModel(ObjectTrackDenoiser(num_frames=16, dim=32, layers=1, heads=2)).save_pretrained(root / "objects")
    return root


def test_object_model_plans_on_any_number_of_objects(tmp_path):
    from kinemask_ros.planning import ObjectDynamics, PlannerConfig, PushPlanner
    from kinemask_ros.policies.shooting import CEMConfig
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    pipe = KineMaskPipeline.from_pretrained(_object_checkpoint(tmp_path))
    assert pipe.object_model is not None and KineMaskPipeline.from_pretrained(tmp_path / "wm", load_objects=False).object_model is None
    ids = _row_scene()
    image = np.full((32, 32, 3), 200, np.uint8)
    planner = PushPlanner(CAM, PlannerConfig(cem=CEMConfig(num_samples=8, iterations=2, num_elites=4)), pipe)
    out = planner.plan(image, ids, 3, planner.goal_from_table((0.0, 0.1)))
    assert out.left_out == [] and out.valid  # 7 objects, no slot limit
    assert out.imagined.tracks.shape == (16, 2, 7, 16, 2) and out.imagined.poses.shape == (16, 2, 7, 16, 3)
    # frame 0 of the tracks is the measured scene; the first-touched object is reported per stroke
    dyn = ObjectDynamics(pipe.object_model, CAM, ids)
    im = dyn([PushStroke(-0.19, 0.0, 0.0, 0.12, 0.3), PushStroke(0.0, 0.17, 0.0, 0.05, 0.3)])
    assert list(im.target_ids) == [1, 0]  # along the row hits object 1 first; along the top edge touches nothing
    assert np.allclose(im.poses[:, :, :, 0], dyn.scene.poses[None, None])


def test_goal_yaw_is_scored_with_poses_and_refused_without(tmp_path):
    from kinemask_ros.planning import PlannerConfig, PushPlanner
    from kinemask_ros.policies.shooting import CEMConfig
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    root = _object_checkpoint(tmp_path)
    ids = _row_scene()
    image = np.full((32, 32, 3), 200, np.uint8)
    cfg = PlannerConfig(cem=CEMConfig(num_samples=4, iterations=1, num_elites=2))
    planner = PushPlanner(CAM, cfg, KineMaskPipeline.from_pretrained(root))
    out = planner.plan(image, ids, 3, planner.goal_from_table((0.0, 0.1), yaw=1.0))
    yaw_err = out.scores.terms["goal_yaw"]
    assert np.all((yaw_err >= 0) & (yaw_err <= np.pi / 2)) and yaw_err.max() > 0
    raster = PushPlanner(CAM, cfg, KineMaskPipeline.from_pretrained(root, load_objects=False))
    ids4 = np.where(ids <= 4, ids, 0).astype(np.uint8)
    with pytest.raises(ValueError, match="predicts no rotations"):
        raster.plan(image, ids4, 3, raster.goal_from_table((0.0, 0.1), yaw=1.0))


def test_stroke_frame_round_trip():
    """Targets expressed in the stroke frame come back as the same table-frame motion."""
    from kinemask_ros.world_model.objects import DISP_SCALE, stroke_frames, targets_from_states

    rng = np.random.default_rng(0)
    strokes = [PushStroke(0.0, 0.0, float(th), 0.1, 0.3) for th in rng.uniform(-np.pi, np.pi, 5)]
    states = np.zeros((5, 16, 2, 6))
    states[:, :, :, :2] = rng.normal(0, 0.05, (5, 16, 2, 2))
    y = targets_from_states(states, strokes).reshape(5, 2, 15, 3)
    R = stroke_frames(strokes)
    back = np.einsum("nij,nkti->nktj", R, y[..., :2] * DISP_SCALE)
    want = (states[:, 1:, :, :2] - states[:, :1, :, :2]).transpose(0, 2, 1, 3)
    assert np.allclose(back, want, atol=1e-6)


def test_object_data_and_training_resume(tmp_path):
    """kinemask-generate-objects writes resumable shards; kinemask-train-objects resumes where it stopped."""
    import json

    from kinemask_ros.sim_bridge.object_dataset import GeneratorConfig, generate, load_episodes
    from kinemask_ros.world_model.objects import ObjectTrainConfig, ObjectWorldModel, train

    cfg = GeneratorConfig(num_episodes=12, episodes_per_shard=6, mask_size=64)
    generate(cfg, tmp_path / "data", progress=False)
    d = load_episodes(tmp_path / "data")
    assert d["masks"].shape == (12, 64, 64) and d["states"].shape == (12, 16, 8, 6)
    assert np.all(d["num_objects"] >= 1) and np.all(d["num_objects"] <= 8)
    generate(cfg, tmp_path / "data", progress=False)  # complete already: no shard is rewritten
    with pytest.raises(ValueError, match="another config"):
        generate(GeneratorConfig(num_episodes=13, episodes_per_shard=6, mask_size=64), tmp_path / "data", progress=False)
    tc = ObjectTrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), steps=4, batch=4, dim=16, layers=1, heads=2,
                           ckpt_every=2, resolutions=(32, 64))
    train(tc)
    assert json.loads((tmp_path / "run" / "losses.json").read_text())["step"] == 4
    from dataclasses import replace

    train(replace(tc, steps=6))
    assert json.loads((tmp_path / "run" / "losses.json").read_text())["step"] == 6
    assert ObjectWorldModel.from_pretrained(tmp_path / "run" / "model").num_frames == 16


def test_minimum_area_rectangle_gives_squares_an_orientation():
    from kinemask_ros.object_scene import ObjectScene, min_area_rect_angle

    cam = CameraModel(CameraConfig(width=128, height=128))
    vv, uu = np.mgrid[0:128, 0:128]
    xy = cam.unproject_table(np.stack([uu.ravel() + 0.5, vv.ravel() + 0.5], 1).astype(float), 0.015).reshape(128, 128, 2)
    for yaw in (0.1, 0.5, -0.3, 0.7):
        c, s = np.cos(yaw), np.sin(yaw)
        lx, ly = c * xy[..., 0] + s * xy[..., 1], -s * xy[..., 0] + c * xy[..., 1]
        ids = ((np.abs(lx) < 0.03) & (np.abs(ly) < 0.03)).astype(np.uint8)  # a square: moments say nothing
        sc = ObjectScene.from_mask(ids, cam)
        want = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
        err = (sc.quarter_yaw[0] - want + np.pi / 4) % (np.pi / 2) - np.pi / 4
        assert abs(err) < np.radians(3), (yaw, sc.quarter_yaw[0])
        assert abs((sc.poses[0, 2] - want + np.pi / 4) % (np.pi / 2) - np.pi / 4) < np.radians(3)  # yaw from it too
    assert min_area_rect_angle(np.zeros((1, 2))) == 0.0  # a single point: no orientation, no error


def test_expanding_an_older_models_features_keeps_its_predictions():
    import torch

    from kinemask_ros.world_model.objects import FEATURES, FEATURES_V1, ObjectTrackDenoiser, expand_features

    old = ObjectTrackDenoiser(num_frames=16, feature_dim=len(FEATURES_V1), dim=32, layers=1, heads=2).eval()
    new = expand_features(old).eval()
    assert new.config.feature_dim == len(FEATURES)
    x, t = torch.randn(3, 4, 45), torch.full((3,), 500.0)
    f = torch.randn(3, 4, len(FEATURES))
    pad = torch.zeros(3, 4, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(old(x, t, f[..., : len(FEATURES_V1)], pad), new(x, t, f, pad), atol=1e-5)
