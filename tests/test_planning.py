"""Planning: contact model vs the simulator, candidates, scoring, planners, MPC, baselines, demo."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

import kinemask_ros  # noqa: F401
from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.candidates import CandidateConfig, ObjectCentricActions
from kinemask_ros.contact import ContactModel, ContactModelConfig
from kinemask_ros.planning import Imagined, PlannerConfig, PushPlanner
from kinemask_ros.policies.baselines import HeuristicPolicy, RandomPolicy, SimulatorDynamics
from kinemask_ros.policies.mpc import MPCController
from kinemask_ros.policies.shooting import CEM, MPPI, CEMConfig, MPPIConfig, RandomShooting
from kinemask_ros.push import PushStroke
from kinemask_ros.scoring import Goal, ScoreConfig, score_tracks
from kinemask_ros.sim_bridge.scene import ObjectSpec, TabletopScene

CAM = CameraModel(CameraConfig())


def one_box_scene():
    scene = TabletopScene()
    scene.set_objects([ObjectSpec("box", (0.03, 0.03), 0.03, 0.2, 0.15, "red"), ObjectSpec("cylinder", (0.025, 0.025), 0.03, 0.2, 0.15, "blue")],
                      np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.0]]))
    return scene


# ----------------------------------------------------------------------------- contact model
def test_contact_model_matches_simulator_direction_and_speed():
    scene = one_box_scene()
    _, ids = scene.render()
    cm = ContactModel(CAM)
    for theta in (0.0, math.pi / 2, math.pi, -math.pi / 2):
        d = np.array([math.cos(theta), math.sin(theta)])
        stroke = PushStroke(*(-0.06 * d), theta, 0.08, 0.3)
        v, pred = cm.velocities(ids, stroke, 4)
        assert pred.target_id == 1 and pred.sticking
        scene.set_objects(scene.objects, np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.0]]))
        ep = scene.execute(stroke, render=False)
        measured = ep.velocities_px[0, 0]
        assert np.linalg.norm(v[0] - measured) < 0.35 * np.linalg.norm(measured), (theta, v[0], measured)
        assert np.all(v[1:] == 0)
    scene.close()


def test_contact_model_miss_and_bad_config():
    scene = one_box_scene()
    _, ids = scene.render()
    pred = ContactModel(CAM).predict(ids, PushStroke(-0.15, -0.15, math.pi, 0.05, 0.3))
    assert pred.target_id == 0 and np.all(pred.velocity_px == 0)
    with pytest.raises(ValueError, match="friction_coefficient"):
        ContactModelConfig(friction_coefficient=-1)
    with pytest.raises(ValueError, match="instance_mask"):
        ContactModel(CAM).predict(ids[None], PushStroke(0, 0, 0, 0.1, 0.3))
    drv = ContactModel(CAM).driver_mask(PushStroke(0, 0, 0, 0.1, 0.3), 32, 32)
    assert drv.shape == (16, 1, 32, 32) and drv[0, 0].sum() >= 1
    scene.close()


# ----------------------------------------------------------------------------- candidates
def test_object_centric_strokes_start_outside_and_touch_target():
    scene = one_box_scene()
    _, ids = scene.render()
    acts = ObjectCentricActions(ids, 1, CAM)
    rng = np.random.default_rng(0)
    strokes = acts.to_strokes(acts.sample(40, rng, goal_xy=np.array([0.1, 0.0])))
    cm = ContactModel(CAM)
    poses = scene.poses()
    for s in strokes:
        assert scene.objects[0].distance_to(poses[0], s.start) > 0.012  # starts clear of the object
        assert cm.predict(ids, s).target_id in (1, 2)
    assert np.mean([cm.predict(ids, s).target_id == 1 for s in strokes]) > 0.9
    with pytest.raises(ValueError, match="not in the scene"):
        ObjectCentricActions(ids, 7, CAM)
    with pytest.raises(ValueError, match="max_lateral"):
        CandidateConfig(max_lateral=-1)
    scene.close()


# ----------------------------------------------------------------------------- scoring
def test_score_terms_and_ranking():
    T = 4
    tracks = np.zeros((3, 2, 2, T, 2))
    tracks[:, :, 0, :, :] = [10.0, 10.0]
    tracks[:, :, 1, :, :] = [20.0, 20.0]
    tracks[0, :, 0, -1] = [15.0, 10.0]  # reaches the goal
    tracks[1, :, 0, -1] = [12.0, 10.0]
    tracks[1, :, 1, -1] = [20.0, 25.0]  # disturbs object 2
    tracks[2, 0, 0, -1] = [15.0, 10.0]
    tracks[2, 1, 0, -1] = [15.0, 14.0]  # samples disagree
    sc = score_tracks(tracks, 1, Goal(point_px=np.array([15.0, 10.0])), 0.0125, (32, 32), np.array([0.05, 0.05, 0.05]))
    assert sc.terms["goal_distance"][0] == pytest.approx(0.0)
    assert sc.terms["disturbance"][1] == pytest.approx(5 * 0.0125)
    assert sc.terms["disagreement"][2] > 0 and sc.terms["disagreement"][0] == 0
    assert list(sc.ranking())[0] == 0
    w = ScoreConfig().weights
    np.testing.assert_allclose(sc.total, sum(w[k] * v for k, v in sc.terms.items()))


def test_score_invalid_and_bad_goals():
    tracks = np.zeros((2, 1, 1, 3, 2)) + 5.0
    tracks[1, 0, 0, -1, 0] = np.nan
    sc = score_tracks(tracks, 1, Goal(point_px=np.array([6.0, 5.0])), 0.01, (32, 32))
    assert sc.valid.tolist() == [True, False] and "NaN" in sc.reasons[1]
    assert list(sc.ranking()) == [0, 1]
    with pytest.raises(ValueError, match="outside"):
        Goal(point_px=np.array([40.0, 5.0])).check_inside(32, 32)
    with pytest.raises(ValueError, match="exactly one"):
        Goal()
    with pytest.raises(ValueError, match="not one of the model's object slots"):
        score_tracks(tracks, 3, Goal(point_px=np.array([6.0, 5.0])), 0.01, (32, 32))
    with pytest.raises(ValueError, match="no candidates"):
        score_tracks(np.zeros((0, 1, 1, 3, 2)), 1, Goal(point_px=np.array([6.0, 5.0])), 0.01, (32, 32))
    region = np.zeros((32, 32), bool)
    region[10:12, 10:12] = True
    g = Goal(region=region)
    assert g.distance_px(np.array([11.0, 11.0])) == 0 and g.distance_px(np.array([20.5, 10.5])) > 8
    with pytest.raises(ValueError, match="unknown terms"):
        ScoreConfig(weights={"speed": 1.0})


# ----------------------------------------------------------------------------- planners
def quadratic(target):
    return lambda p: ((p - target) ** 2).sum(1)


@pytest.mark.parametrize("planner", [CEM(CEMConfig(num_samples=64, iterations=4)), MPPI(MPPIConfig(num_samples=64, iterations=4)),
                                     RandomShooting()])
def test_planners_find_minimum(planner):
    target = np.array([0.3, -0.5, 0.1, 0.7])
    res = planner.plan(quadratic(target), 4, np.random.default_rng(0))
    assert res.best is not None
    assert np.linalg.norm(res.best - target) < (0.25 if not isinstance(planner, RandomShooting) else 0.8)
    assert np.all(np.diff(res.costs) >= 0)
    assert res.evaluations == len(res.costs)


def test_planners_never_pick_invalid():
    res = CEM(CEMConfig(num_samples=16, num_elites=4)).plan(lambda p: np.full(len(p), np.nan), 4, np.random.default_rng(0))
    assert res.best is None
    half = lambda p: np.where(p[:, 0] > 0, np.nan, (p**2).sum(1))  # noqa: E731
    res = MPPI(MPPIConfig(num_samples=16)).plan(half, 4, np.random.default_rng(0))
    assert res.best is not None and res.best[0] <= 0
    with pytest.raises(ValueError, match="num_elites"):
        CEMConfig(num_samples=4, num_elites=8)


def test_push_planner_with_simulator_oracle_reaches_goal():
    env = gym.make("KineMaskPush-v0")
    obs, _ = env.reset(seed=4)
    u = env.unwrapped
    cfg = PlannerConfig(method="cem", cem=CEMConfig(num_samples=24, iterations=2, num_elites=5))
    planner = PushPlanner(CAM, cfg)
    mpc = MPCController(planner, dynamics_factory=lambda o: SimulatorDynamics(u.get_state(), u.config.scene))
    d0 = u.goal_distance()
    stroke, plan = mpc.act(obs)
    assert plan.valid and stroke is not None and len(plan.strokes) == 48
    predicted = plan.scores.terms["goal_distance"][plan.order[0]]
    obs, r, term, trunc, info = env.step(u.stroke_to_action(stroke))
    # the oracle's prediction is the simulator's outcome (same state, deterministic physics)
    assert info["goal_distance"] == pytest.approx(predicted, abs=0.006)
    assert info["goal_distance"] < d0
    assert mpc._last is not None  # warm start stored for the next decision
    env.close()


def test_planner_candidates_stay_inside_the_bounds_the_service_accepts():
    """An object at the table edge: strokes from behind it start beyond x_range; they are never valid
    candidates (the world-model service would refuse them), and no candidate is longer than length_range."""
    scene = TabletopScene()
    scene.set_objects([ObjectSpec("box", (0.03, 0.03), 0.03, 0.2, 0.15, "red")], np.array([[0.17, 0.0, 0.0]]))
    _, ids = scene.render()
    scene.close()
    b = CandidateConfig().push_bounds
    dyn = lambda strokes: Imagined(np.zeros((len(strokes), 1, 4, 16, 2)) + 16.0, np.ones(len(strokes), int),  # noqa: E731
                                   np.eye(4, dtype=bool)[[0] * len(strokes)])
    plan = PushPlanner(CAM, PlannerConfig(method="random")).plan(np.zeros((32, 32, 3), np.uint8), ids, 1,
                                                                   Goal(point_px=np.array([16.0, 16.0])), dynamics=dyn)
    starts_out = [abs(s.x) > b.x_range[1] for s in plan.strokes]
    assert any(starts_out) and not all(starts_out)
    for s, ok, why in zip(plan.strokes, plan.scores.valid, plan.scores.reasons):
        assert s.length <= b.length_range[1]
        assert ok == (b.violation(s) == ""), (s, why)
        if not ok:
            assert "is outside" in why, why
    assert b.violation(plan.best_stroke) == ""


def test_push_planner_world_model_and_bad_requests(tmp_path):
    from test_world_model import tiny_checkpoint

    planner = PushPlanner.from_pretrained(tiny_checkpoint(tmp_path / "ck", video=False),
                                          config=PlannerConfig(method="mppi", mppi=MPPIConfig(num_samples=8, iterations=2)))
    env = gym.make("KineMaskPush-v0")
    obs, _ = env.reset(seed=1)
    goal = planner.goal_from_table(obs["goal"])
    plan = planner.plan(obs["image"], obs["instance_mask"], int(obs["target"]), goal)
    assert plan.valid and len(plan.strokes) == 16 and plan.imagined.tracks.shape[:3] == (16, 2, 4)
    assert set(plan.scores.terms) == {"goal_distance", "disturbance", "workspace", "disagreement", "effort", "goal_yaw"}
    with pytest.raises(ValueError, match="outside"):
        planner.goal_from_table(np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="not in the scene"):
        planner.plan(obs["image"], obs["instance_mask"], 9, goal)
    with pytest.raises(ValueError, match="num_candidates"):
        planner.plan(obs["image"], obs["instance_mask"], int(obs["target"]), goal, num_candidates=0)
    # a model that returns NaN for everything gives an explicit "no valid candidate"
    nan_dyn = lambda strokes: Imagined(np.full((len(strokes), 1, 4, 16, 2), np.nan), np.zeros(len(strokes), int),  # noqa: E731
                                       np.ones((len(strokes), 4), bool))
    plan = planner.plan(obs["image"], obs["instance_mask"], int(obs["target"]), goal, dynamics=nan_dyn)
    assert not plan.valid and plan.best_stroke is None and "no valid candidate" in plan.message
    with pytest.raises(ValueError, match="method"):
        PlannerConfig(method="greedy")
    env.close()


def test_baselines_act():
    env = gym.make("KineMaskPush-v0")
    obs, _ = env.reset(seed=2)
    planner = PushPlanner(CAM)
    s = HeuristicPolicy(planner).stroke(obs["instance_mask"], int(obs["target"]), obs["goal"])
    g = obs["goal"] - ObjectCentricActions(obs["instance_mask"], int(obs["target"]), CAM).center
    assert abs(math.remainder(s.theta - math.atan2(g[1], g[0]), 2 * math.pi)) < 1e-6
    r1 = RandomPolicy(planner, 0).stroke(obs["instance_mask"], int(obs["target"]))
    r2 = RandomPolicy(planner, 0).stroke(obs["instance_mask"], int(obs["target"]))
    assert r1 == r2
    env.close()


def test_cluttered_scene_options():
    from kinemask_ros.envs.scenarios import cluttered_scene_options
    from kinemask_ros.sim_bridge.scene import SceneConfig, spec_from_dict

    env = gym.make("KineMaskPush-v0", scene=SceneConfig(max_objects=8))
    counts = set()
    for seed in range(6):
        opt = cluttered_scene_options(env, seed)
        assert opt == cluttered_scene_options(env, seed)  # a function of the seed
        k = len(opt["objects"])
        counts.add(k)
        assert 6 <= k <= 8 and len(opt["poses"]) == k and 1 <= opt["target"] <= k
        obs, info = env.reset(seed=seed, options=opt)  # the env accepts the options as they are
        assert info["num_objects"] == k and not info["is_success"]
        assert set(np.unique(obs["instance_mask"]).tolist()) - {0} == set(range(1, k + 1))  # every object visible
        specs, poses = [spec_from_dict(o) for o in opt["objects"]], np.asarray(opt["poses"])
        t, goal = opt["target"] - 1, np.asarray(opt["goal"])
        assert np.all(np.abs(goal) <= env.unwrapped.config.scene.placement_half_extent)
        for i in range(k):
            for j in range(i):
                assert np.linalg.norm(poses[i, :2] - poses[j, :2]) > specs[i].bounding_radius + specs[j].bounding_radius
            if i != t:  # the goal is free for the target, and the target is packed in
                assert specs[i].distance_to(poses[i], goal) > specs[t].bounding_radius
        near = sorted(np.linalg.norm(poses[:, :2] - poses[t, :2], axis=1))[1:4]
        assert max(near) < 0.15
    assert len(counts) > 1
    with pytest.raises(ValueError, match="max_objects"):
        cluttered_scene_options(gym.make("KineMaskPush-v0"), 0, num_objects=6)
    env.close()


def test_demo_writes_report(tmp_path):
    from test_world_model import tiny_checkpoint

    from kinemask_ros.demo import main

    ck = tiny_checkpoint(tmp_path / "ck")
    rc = main(["--checkpoint", str(ck), "--out", str(tmp_path / "demo"), "--pushes", "1", "--top-k", "2", "--seed", "3"])
    assert rc == 0
    rep = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert len(rep["steps"]) == 1 and rep["steps"][0]["candidates"] == 192
    assert (tmp_path / "demo" / "push_1" / "imagined_vs_real.gif").stat().st_size > 1000
    assert (tmp_path / "demo" / "push_1" / "candidates.png").stat().st_size > 1000
    assert "imagined pushes vs reality" in (tmp_path / "demo" / "report.html").read_text()
    assert main(["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "d2")]) == 2


def test_imagined_env_checker_determinism_and_pickle(tmp_path):
    import pickle
    import warnings

    from gymnasium.utils.env_checker import check_env
    from test_world_model import tiny_checkpoint

    ck = str(tiny_checkpoint(tmp_path / "ck", video=False))
    env = gym.make("KineMaskImagined-v0", checkpoint=ck, num_inference_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
    a = np.array([0.1, -0.2, 0.3, 0.5, 0.0], np.float32)
    o1, _ = env.reset(seed=5)
    r1 = env.step(a)
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    env2 = gym.make("KineMaskImagined-v0", checkpoint=ck, num_inference_steps=2)
    env2.reset(seed=5)
    r2 = env2.step(a)
    np.testing.assert_array_equal(r1[0]["image"], r2[0]["image"])
    assert r1[1] == r2[1] and set(r1[4]) >= {"goal_distance", "disturbance", "description", "is_success"}
    np.testing.assert_array_equal(clone.step(a)[0]["object_states"], env.unwrapped.step(a)[0]["object_states"])
    with pytest.raises(ValueError, match="num_inference_steps"):
        gym.make("KineMaskImagined-v0", checkpoint=ck, num_inference_steps=0)
    env.close()
    env2.close()


def test_predict_description_and_names():
    from kinemask_ros.text import canonical_text, object_names, predict_description

    scene = one_box_scene()  # red box at the centre, blue cylinder up-right of it
    img, ids = scene.render()
    names = object_names(img, ids)
    assert names == {1: "red object", 2: "blue object"}
    c1, c2 = [np.argwhere(ids == i).mean(0)[::-1] for i in (1, 2)]
    towards = (c2 - c1) / np.linalg.norm(c2 - c1) * 2.0
    hit = predict_description(ids, 1, towards, names)
    assert hit.startswith("the red object slides forward-right and hits the blue object"), hit
    away = predict_description(ids, 1, -towards, names)
    assert "hits" not in away and "back-left" in away
    assert "misses" in predict_description(ids, 0, np.zeros(2), names)
    assert canonical_text("the red box hits the blue cylinder") == "the red object hits the blue object"
    scene.close()


def test_text_conditioned_world_model_in_planner(tmp_path):
    from dataclasses import replace

    from test_world_model import TINY, tiny_checkpoint

    from kinemask_ros.world_model.networks import TrackDenoiser

    cfg = replace(TINY, text_dim=384)
    ck = tiny_checkpoint(tmp_path / "ck", cfg, video=False)
    TrackDenoiser(conditioning=cfg.conditioning, text_dim=384, dim=cfg.track_dim, layers=cfg.track_layers).save_pretrained(ck / "track")
    planner = PushPlanner.from_pretrained(ck, config=PlannerConfig(method="random"))
    env = gym.make("KineMaskPush-v0")
    obs, _ = env.reset(seed=1)
    from kinemask_ros.planning import WorldModelDynamics

    dyn = WorldModelDynamics(planner.pipeline, planner.contact, obs["image"], obs["instance_mask"])
    strokes = ObjectCentricActions(obs["instance_mask"], int(obs["target"]), CAM).to_strokes(np.zeros((3, 4)))
    inp = dyn.inputs(strokes)
    assert inp["text"].shape == (3, 384) and all(t.startswith("the ") and "object" in t for t in inp["_texts"])
    im = dyn(strokes)
    assert np.isfinite(im.tracks[:, :, int(obs["target"]) - 1]).all()
    env.close()
