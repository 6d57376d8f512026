"""Hard-scene builders (sim_bridge/hard_scenes.py): each category's truth matches its definition,
and out-of-bounds strokes are refused by PushBounds."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kinemask_ros.push import PushBounds
from kinemask_ros.sim_bridge.hard_scenes import (CATEGORIES, GLANCING_MAX_MOVE_M, HARD_SCENE_CONFIG, MOVE_M, OUT_OF_BOUNDS, STILL_M,
                                                 HardScene, _verified, check_truth, displacements, object_contacts, path_clearance,
                                                 sample_hard_scene, separation, simulate)
from kinemask_ros.sim_bridge.scene import SceneConfig, TabletopScene

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def sim():
    s = TabletopScene(HARD_SCENE_CONFIG)
    yield s
    s.close()


def _scene(category: str, seed: int, sim) -> tuple[HardScene, object, np.ndarray]:
    hs = sample_hard_scene(category, np.random.default_rng([seed, 4242]), HARD_SCENE_CONFIG, sim=sim)
    ep = simulate(hs, sim, render=False)
    return hs, ep, displacements(ep)


def test_registry_and_config():
    assert {"chain2", "chain3", "chain4", "glancing", "near_miss", "bystander", "double_hit", "clutter6", "clutter8", "edge",
            "long_stroke", "fast_stroke"} <= set(CATEGORIES)
    assert HARD_SCENE_CONFIG.max_objects == 8
    with pytest.raises(ValueError, match="unknown hard-scene category"):
        sample_hard_scene("chain9", np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_objects"):  # 8 objects do not fit the default 4-object scene
        sample_hard_scene("clutter8", np.random.default_rng(0), SceneConfig(), verify=False)


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_truth_matches_definition(category, sim):
    for seed in SEEDS:
        hs, ep, disp = _scene(category, seed, sim)
        assert hs.category == category and hs.poses.shape == (hs.num_objects, 3) and hs.num_objects <= 8
        assert check_truth(hs, ep) == ""
        assert np.all(np.abs(hs.poses[:, :2]) <= 0.17)  # every object is in view in frame 0
        moving = set(np.nonzero(disp > MOVE_M)[0] + 1)
        reason = PushBounds().violation(hs.stroke)
        if category in OUT_OF_BOUNDS:
            assert reason, "an out-of-bounds stroke must be refused"
        else:
            assert reason == "", reason
        if category.startswith("chain"):
            n = int(category[-1])
            assert moving == set(range(1, n + 1)), disp
            assert {(i, i + 1) for i in range(1, n)} <= object_contacts(ep)
            assert all(0.002 <= g <= 0.006 for g in hs.expect["gaps_m"])
        elif category == "near_miss":
            assert ep.pushed_id == 0 and np.all(disp < STILL_M), disp
            assert 0.001 - 2e-4 <= path_clearance(hs.specs[0], hs.poses[0], hs.stroke, HARD_SCENE_CONFIG.pusher_radius) <= 0.003 + 2e-4
        elif category == "glancing":
            assert ep.pushed_id == 1 and MOVE_M < disp[0] < GLANCING_MAX_MOVE_M
            assert 0.7 <= hs.expect["lateral_ratio"] <= 0.9
            # the same stroke through the object's centre moves it far more
            n = np.array([-hs.stroke.direction[1], hs.stroke.direction[0]])
            off = float((hs.poses[0, :2] - hs.stroke.start) @ n)
            head_on = replace(hs.stroke, x=float(hs.stroke.x + off * n[0]), y=float(hs.stroke.y + off * n[1]))
            assert disp[0] < 0.35 * displacements(simulate(replace(hs, stroke=head_on), sim, render=False))[0]
        elif category == "bystander":
            b = hs.expect["bystander_id"]
            assert ep.pushed_id == 1 and disp[0] > MOVE_M and disp[b - 1] < STILL_M
            assert 0.001 - 3e-4 <= path_clearance(hs.specs[b - 1], hs.poses[b - 1], hs.stroke, HARD_SCENE_CONFIG.pusher_radius) <= 0.004 + 3e-4
        elif category == "double_hit":
            assert {1, 2, 3} <= moving and {(1, 2), (1, 3)} <= object_contacts(ep)
        elif category.startswith("clutter"):
            assert hs.num_objects == int(category[-1]) and 1 in moving and len(moving) >= 2
            gaps = [separation(hs.specs[i], hs.poses[i], hs.specs[j], hs.poses[j])
                    for i in range(hs.num_objects) for j in range(i + 1, hs.num_objects)]
            assert min(gaps) >= 0.0015  # packed, but no object starts in contact
        elif category == "edge":
            assert 1 in moving
            e = np.asarray(hs.expect["edge_direction"])
            assert (hs.poses[:, :2] @ e).max() >= 0.12  # an object sits near that edge
            assert hs.stroke.direction @ e > math.cos(math.radians(16))  # pushed towards that edge
        elif category == "long_stroke":
            assert 0.14 <= hs.stroke.length <= 0.16 and "length" in reason and 1 in moving
        elif category == "fast_stroke":
            assert 0.55 <= hs.stroke.speed <= 0.65 and "speed" in reason and 1 in moving
        elif category == "property_ends":
            cfg = HARD_SCENE_CONFIG
            assert all(s.mass in cfg.mass_range and s.friction in cfg.friction_range for s in hs.specs[:2])
            assert moving >= {1, 2}


def test_builders_are_deterministic(sim):
    a = sample_hard_scene("chain3", np.random.default_rng(7), sim=sim)
    b = sample_hard_scene("chain3", np.random.default_rng(7), sim=sim)
    assert a.stroke == b.stroke and np.array_equal(a.poses, b.poses) and a.specs == b.specs


def test_attempts_are_bounded():
    with pytest.raises(RuntimeError, match="no layout matched .* 3 attempts .*always wrong"):
        _verified("dummy", lambda rng, cfg: "always wrong", np.random.default_rng(0), None, None, True, 3)


def test_out_of_bounds_strokes_are_refused_with_a_reason():
    for category, field in (("long_stroke", "length"), ("fast_stroke", "speed")):
        for seed in SEEDS:
            hs = sample_hard_scene(category, np.random.default_rng(seed), verify=False)
            reason = PushBounds().violation(hs.stroke)
            assert reason.startswith(field + "=") and "not trained beyond" in reason


def test_benchmark_metrics_on_a_synthetic_scene():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import hard_scenes as bench

    # 3 objects: 1 pushed (moves 50 mm), 2 hit (moves 20 mm), 3 still
    true = [[50.0, 0.0], [20.0, 0.0], [0.0, 0.0]]
    preds = {m: [[50.0, 0.0], [0.0, 0.0], [0.0, 10.0]] for m in bench.METHODS}  # 2 missed, 3 falsely moved
    scene = {"num_objects": 3, "pushed_id": 1, "true_disp_mm": true, "true_yaw_deg": [0.0, 17.0, 0.0], "shapes": ["box", "box", "box"],
             "pred_disp_mm": preds, "pred_yaw_deg": {bench.ORACLE: [0.0, 17.0 + 180.0, 0.0]},
             "overlaps": {m: [1, 3] for m in (*bench.METHODS, bench.TRUTH)}}
    r = bench.aggregate([scene])[bench.MODEL]
    assert r["hit_final_err_mm"]["mean"] == pytest.approx(20.0) and r["pushed_final_err_mm"]["mean"] == pytest.approx(0.0)
    assert r["false_motion"] == {"rate": 1.0, "k": 1, "n": 1} and r["missed_motion"]["k"] == 1 and r["missed_motion"]["n"] == 2
    assert r["overlap"]["rate"] == pytest.approx(1 / 3) and r["hit_yaw_err_deg"] is None
    # boxes are 180-degree symmetric: a half-turn off is no error
    assert bench.aggregate([scene])[bench.ORACLE]["hit_yaw_err_deg"]["median"] == pytest.approx(0.0, abs=1e-9)
