"""PushT (gym-pusht 0.1.8) adapter, data, world model and planner: real env, no stubs."""

from __future__ import annotations

import json
import math
from importlib import metadata

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from kinemask_ros.envs.adapter import PlanarPushAdapter, UnreachableStroke  # noqa: E402
from kinemask_ros.envs import pusht as pt  # noqa: E402
from kinemask_ros.envs.pusht import PushTAdapter, PushTConfig, PushTState, cog_of  # noqa: E402
from kinemask_ros.push import PushStroke  # noqa: E402
from kinemask_ros.pusht_strokes import params_to_strokes, strokes_in_arena  # noqa: E402


def _push_stroke(ad: PushTAdapter, rng: np.random.Generator) -> PushStroke:
    """A reachable T-centric stroke that pushes deep into the T."""
    pose = ad.poses()[0]
    for _ in range(50):
        p = rng.uniform(-1, 1, (1, 3))
        p[0, 1] *= 0.3
        p[0, 2] = 0.8
        s = params_to_strokes(pose, p)[0]
        if not strokes_in_arena(s[None])[0]:
            continue
        stroke = PushStroke(*map(float, s))
        try:
            ad.check_stroke(stroke)
        except UnreachableStroke:
            continue
        return stroke
    raise AssertionError("no reachable stroke found")


@pytest.fixture()
def adapter():
    ad = PushTAdapter()
    yield ad
    ad.close()


def test_version_check_names_the_install_command(monkeypatch):
    monkeypatch.setattr(metadata, "version", lambda name: "0.1.5")
    with pytest.raises(ImportError, match=r"found 0\.1\.5.*pip install -e \.\[pusht\]"):
        pt.require_gym_pusht()

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(ImportError, match=r"not installed.*pip install -e \.\[pusht\]"):
        PushTAdapter()


def test_adapter_satisfies_protocol_and_observes(adapter):
    assert isinstance(adapter, PlanarPushAdapter)
    obs = adapter.reset(seed=0)
    assert obs.rgb.shape == (96, 96, 3) and obs.rgb.dtype == np.uint8
    assert obs.instance_mask.shape == (96, 96) and set(np.unique(obs.instance_mask)) <= {0, 1, 255}
    assert obs.poses.shape == (1, 3)
    obs = adapter.observe(128)
    # the mask's T pixels are where gym-pusht drew the T (not white background, not the green goal)
    t = obs.rgb[obs.instance_mask == 1].astype(int)
    drawn = ((np.abs(t - 255).sum(1) > 30) & (np.abs(t - np.array([144, 238, 144])).sum(1) > 30)).mean()
    bg = obs.rgb[obs.instance_mask == 0].astype(int)
    white = (np.abs(bg - 255).sum(1) < 30).mean()
    assert (obs.instance_mask == 1).sum() > 100 and drawn > 0.9 and white > 0.8
    # the camera maps the T's centre into the mask's T pixels
    u, v = obs.camera.project(cog_of(obs.poses[0])).astype(int)
    assert obs.instance_mask[v, u] == 1
    assert np.allclose(obs.camera.unproject(obs.camera.project(np.array([100.0, 300.0]))), [100.0, 300.0])


def test_physics_step_is_bit_identical_to_env_step(adapter):
    adapter.reset(seed=3)
    s = adapter.get_state()
    acts = [np.array([200.0, 220.0]), np.array([260.0, 250.0]), np.array([300.0, 300.0]), np.array([250.0, 310.0])]
    adapter.set_state(s, check=False)
    for a in acts:
        adapter.env.step(a)
    ref = (adapter.poses().copy(), adapter.agent().copy())
    adapter.set_state(s, check=False)
    for a in acts:
        adapter._physics_step(a)
    assert np.array_equal(ref[0], adapter.poses()) and np.array_equal(ref[1], adapter.agent())


def test_get_set_state_is_exact_and_simulations_match_the_live_env(adapter):
    rng = np.random.default_rng(0)
    adapter.reset(seed=5)
    for _ in range(2):
        adapter.execute(_push_stroke(adapter, rng))
    s = adapter.get_state()
    assert PushTState.from_dict(s.as_dict()) == s
    adapter.set_state(s)
    assert adapter.get_state() == s
    stroke = _push_stroke(adapter, rng)
    live = adapter.execute(stroke)
    copy = PushTAdapter(render=False)
    copy.set_state(s)
    sim = copy.execute(stroke)
    assert np.array_equal(live.track, sim.track) and np.array_equal(live.coverages, sim.coverages)
    assert copy.get_state() == adapter.get_state()


def test_stroke_moves_the_t_and_counts_env_steps(adapter):
    rng = np.random.default_rng(1)
    adapter.reset(seed=2)
    before = adapter.poses()[0]
    r = adapter.execute(_push_stroke(adapter, rng))
    moved = np.linalg.norm(r.after[0, :2] - before[:2])
    assert moved > 5.0
    assert r.env_steps == adapter.steps == len(r.coverages) == len(r.track) - 1
    assert 0.0 <= r.coverage <= 1.0 and math.isclose(r.coverage, adapter.coverage())


def test_bad_input_errors_and_nothing_half_written(adapter):
    adapter.reset(seed=0)
    s = adapter.get_state()
    with pytest.raises(ValueError, match="outside the arena"):
        adapter.set_state(PushTState((100.0, 100.0), (0.0, 0.0), (600.0, 200.0, 0.0), (0.0, 0.0), 0.0))
    with pytest.raises(ValueError, match="outside the 512"):
        adapter.set_state(PushTState((-20.0, 100.0), (0.0, 0.0), (200.0, 200.0, 0.0), (0.0, 0.0), 0.0))
    with pytest.raises(ValueError, match="finite"):
        adapter.set_state(PushTState((100.0, 100.0), (0.0, 0.0), (200.0, math.nan, 0.0), (0.0, 0.0), 0.0))
    assert adapter.get_state() == s  # a refused state changes nothing
    c = cog_of(adapter.poses()[0])
    with pytest.raises(UnreachableStroke, match="outside"):
        adapter.execute(PushStroke(500.0, 250.0, 0.0, 50.0, 250.0))
    with pytest.raises(UnreachableStroke, match="overlap"):
        adapter.execute(PushStroke(float(c[0]), float(c[1]), 0.0, 30.0, 250.0))
    assert adapter.get_state() == s and adapter.steps == 0


def test_config_validation():
    with pytest.raises(ValueError, match="approach_speed"):
        PushTConfig(approach_speed=-1.0)
    with pytest.raises(ValueError, match="settle_steps"):
        PushTConfig(settle_steps=-1)


def test_generate_cli_env_pusht(tmp_path):
    from kinemask_ros.sim_bridge.dataset import main as generate_main
    from kinemask_ros.sim_bridge.object_dataset import main as generate_objects_main
    from kinemask_ros.sim_bridge.pusht_dataset import load_pusht

    assert generate_main(["--env", "pusht", "--out", str(tmp_path / "a"), "--episodes", "12", "--shard-size", "6"]) == 0
    assert generate_objects_main(["--env=pusht", "--out", str(tmp_path / "b"), "--episodes", "6"]) == 0
    a, b = load_pusht(tmp_path / "a"), load_pusht(tmp_path / "b")
    assert a["tracks"].shape[1:] == (9, 3) and len(a["strokes"]) >= 10
    assert np.array_equal(a["tracks"][:len(b["tracks"])], b["tracks"])  # same seeds, same strokes
    assert (np.linalg.norm(a["tracks"][:, -1, :2] - a["tracks"][:, 0, :2], axis=1) > 1).mean() > 0.5
    # the same command and pipeline as the tabletop model: kinemask-train-objects --env pusht, resumable
    from kinemask_ros.world_model.objects import main as train_main

    run = tmp_path / "run"
    args = ["--env", "pusht", "--data", str(tmp_path / "a"), "--out", str(run), "--batch", "4", "--dim", "32", "--layers", "1",
            "--ckpt-every", "2", "--threads", "1"]
    assert train_main(args + ["--steps", "2"]) == 0
    assert train_main(args + ["--steps", "4"]) == 0  # resumes at step 2
    losses = json.loads((run / "losses.json").read_text())
    assert losses["step"] == 4 and len(losses["loss"]) == 4 and (run / "model" / "config.json").is_file()


def test_world_model_beats_no_motion_on_held_out_strokes():
    import torch

    from kinemask_ros.sim_bridge.pusht_dataset import PushTDataConfig, generate_episode
    from kinemask_ros.world_model.pusht_model import PushTWorldModel

    model = PushTWorldModel.from_pretrained()
    ad = PushTAdapter(render=False)
    eps = [e for e in (generate_episode(ad, s, PushTDataConfig()) for s in range(10_000_000, 10_000_040)) if e is not None]
    pose0 = np.stack([e["poses0"] for e in eps])
    strokes = np.stack([e["strokes"] for e in eps])
    true = np.stack([e["tracks"][-1] for e in eps])
    pred = model.predict(pose0, strokes, 1, 4, torch.Generator().manual_seed(0))[:, 0, -1]
    err = np.linalg.norm(pred[:, :2] - true[:, :2], axis=1)
    still = np.linalg.norm(pose0[:, :2] - true[:, :2], axis=1)
    assert np.median(err) < 0.5 * np.median(still)
    assert np.median(err) < 10.0


def test_wm_planner_decision_improves_predicted_goal_cost():
    from kinemask_ros.envs.pusht import GOAL_POSE
    from kinemask_ros.pusht_planning import PushTPlanner, PushTPlannerConfig, WorldModelDynamics, se2_cost
    from kinemask_ros.world_model.pusht_model import PushTWorldModel

    ad = PushTAdapter(render=False)
    ad.reset(seed=2)
    pose = ad.poses()[0]
    plan = PushTPlanner(PushTPlannerConfig(method="cem")).plan(pose, ad.agent(), WorldModelDynamics(PushTWorldModel.from_pretrained()))
    assert plan.strokes.shape[1] == 5 and np.all(np.diff(plan.costs[np.isfinite(plan.costs)]) >= 0)
    now = se2_cost(pose, GOAL_POSE, 60.0)
    assert plan.costs[0] < now
    r = ad.execute(plan.best_stroke)  # the env agrees the T got closer
    assert se2_cost(r.after[0], GOAL_POSE, 60.0) < now
    with pytest.raises(ValueError, match="method"):
        PushTPlannerConfig(method="gradient")
