"""Tests for the Gymnasium env ``KineMaskPush-v0`` (kinemask_ros/envs/push_env.py)."""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import gymnasium as gym
import numpy as np
import pybullet as pb
import pytest
from gymnasium.utils.env_checker import check_env

import kinemask_ros
from kinemask_ros.envs import ENV_ID, KineMaskPushEnv, PushEnvConfig
from kinemask_ros.push import PushStroke
from kinemask_ros.sim_bridge.scene import ObjectSpec, SceneConfig

RED = ObjectSpec("cylinder", (0.025, 0.025), 0.03, 0.2, 0.15, "red")
BLUE = ObjectSpec("box", (0.025, 0.025), 0.03, 0.2, 0.15, "blue")


def push_action(env: KineMaskPushEnv, obj: int, theta: float, length: float = 0.1, speed: float = 0.3) -> np.ndarray:
    """Normalised action for a stroke that starts just behind object ``obj`` and pushes along ``theta``."""
    spec = env.objects[obj - 1]
    pose = np.asarray(env.get_state()["poses"][obj - 1])
    d = np.array([math.cos(theta), math.sin(theta)])
    back = spec.support(pose[2], d) + env.config.scene.pusher_radius + 0.006
    start = pose[:2] - back * d
    return env.stroke_to_action(PushStroke(float(start[0]), float(start[1]), theta, length, speed))


def assert_obs_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def rollout(env: gym.Env, actions: list[np.ndarray]) -> list[tuple]:
    return [env.step(a) for a in actions]


@pytest.fixture
def env():
    e = KineMaskPushEnv()
    yield e
    e.close()


# ----------------------------------------------------------------------------- API / checker
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_env_checker_passes_without_warnings(render_mode):
    env = gym.make(ENV_ID, render_mode=render_mode)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped)
    finally:
        env.close()


def test_env_checker_on_made_env():
    env = gym.make(ENV_ID)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # the only expected warning: check_env recommends passing env.unwrapped
            warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
            check_env(env)
    finally:
        env.close()


def test_registered_id_time_limit_and_no_internal_truncation():
    env = gym.make(ENV_ID, success_radius=0.02)
    assert isinstance(env.unwrapped, KineMaskPushEnv)
    assert env.unwrapped.config.success_radius == 0.02
    assert env.spec.max_episode_steps == 8
    # a lone object and a miss stroke far from it: nothing terminates, TimeLimit truncates at 8
    env.reset(seed=0, options={"objects": [RED], "poses": [[0.1, 0.1, 0.0]], "target": 1, "goal": [0.0, 0.1]})
    miss = env.unwrapped.stroke_to_action(PushStroke(-0.15, -0.15, 0.0, 0.05, 0.3))
    flags = [env.step(miss)[2:4] for _ in range(8)]
    assert flags[:-1] == [(False, False)] * 7
    assert flags[-1] == (False, True)
    # the unwrapped env itself never truncates
    raw = env.unwrapped
    assert all(raw.step(miss)[3] is False for _ in range(3))
    env.close()


def test_registration_is_idempotent():
    kinemask_ros._register_envs()  # what a second import / reload runs
    kinemask_ros._register_envs()
    spec = gym.spec(ENV_ID)
    assert spec.entry_point == "kinemask_ros.envs.push_env:KineMaskPushEnv"
    assert sum(1 for k in gym.registry if k == ENV_ID) == 1


def test_make_accepts_config_object_and_kwargs():
    cfg = PushEnvConfig(success_radius=0.05, goal_min_distance=0.06)
    env = gym.make(ENV_ID, config=cfg, render_scale=2)
    assert env.unwrapped.config.success_radius == 0.05
    assert env.unwrapped.config.render_scale == 2
    env.close()
    with pytest.raises(TypeError, match="succes_radius"):
        KineMaskPushEnv(succes_radius=0.05)


# ----------------------------------------------------------------------------- spaces
def test_observation_contents(env):
    obs, info = env.reset(seed=3, options={"objects": [RED, BLUE], "poses": [[0.0, 0.0, 0.0], [0.08, 0.05, 0.3]], "target": 2, "goal": [0.05, -0.06]})
    assert obs in env.observation_space
    H, W = env.config.scene.camera.height, env.config.scene.camera.width
    assert obs["image"].shape == (H, W, 3) and obs["image"].dtype == np.uint8
    assert set(np.unique(obs["instance_mask"])) == {0, 1, 2}  # pusher lifted out of view between pushes
    assert obs["target"] == 2
    np.testing.assert_allclose(obs["goal"], [0.05, -0.06], atol=1e-6)
    st = obs["object_states"]
    assert st.shape == (env.config.scene.max_objects, 7)
    np.testing.assert_allclose(st[:2, 0], 1.0)
    np.testing.assert_allclose(st[:2, 1:3], [[0.0, 0.0], [0.08, 0.05]], atol=2e-3)
    assert np.all(st[2:] == 0)
    # goal mask: a disk of success_radius around the goal pixel, away from the image border
    gm = obs["goal_mask"]
    u, v = env.scene.camera.project_table(np.array([0.05, -0.06]), z=BLUE.height / 2)
    assert gm[int(v), int(u)] == 1
    r_px = env.config.success_radius * env.scene.camera.pixels_per_metre(z=BLUE.height / 2)
    assert 0.6 * math.pi * r_px**2 < gm.sum() < 1.4 * math.pi * r_px**2
    assert info["goal_distance"] == pytest.approx(math.hypot(0.08 - 0.05, 0.05 + 0.06), abs=2e-3)


def test_observations_stay_in_space_after_random_pushes(env):
    env.action_space.seed(5)
    env.reset(seed=5)
    for _ in range(12):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs in env.observation_space
        assert isinstance(reward, float) and isinstance(terminated, bool) and truncated is False
        if terminated:
            env.reset()


def test_object_states_clipped_far_outside_workspace(env):
    obs, _ = env.reset(options={"objects": [RED, BLUE], "poses": [[0.0, 0.0, 0.0], [0.9, -0.9, 0.0]], "target": 1, "goal": [0.05, 0.0]})
    assert obs in env.observation_space
    np.testing.assert_allclose(obs["object_states"][1, 1:3], [0.9, -0.9], atol=2e-3)


def test_goal_sampling_respects_config():
    env = KineMaskPushEnv(goal_min_distance=0.05, goal_max_distance=0.08)
    h = env.config.scene.placement_half_extent
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        g = obs["goal"]
        assert np.all(np.abs(g) <= h + 1e-6)
        assert 0.05 - 1e-3 <= info["goal_distance"] <= 0.08 + 1e-3
        assert 1 <= info["target"] <= info["num_objects"]
        st = env.get_state()
        for i, (s, p) in enumerate(zip(st["objects"], st["poses"])):
            if i + 1 != info["target"]:
                spec = ObjectSpec(**{**s, "size": tuple(s["size"])})
                assert spec.distance_to(np.asarray(p), g.astype(float)) > 0
    env.close()


def test_num_objects_range():
    env = KineMaskPushEnv(num_objects=(3, 3))
    counts = {env.reset(seed=s)[1]["num_objects"] for s in range(5)}
    assert counts == {3}
    env.close()


# ----------------------------------------------------------------------------- reward / info / termination
def test_reward_terms_in_info_for_a_target_push(env):
    env.reset(seed=0, options={"objects": [RED, BLUE], "poses": [[-0.05, 0.0, 0.0], [0.05, 0.12, 0.0]], "target": 1, "goal": [0.1, 0.0]})
    obs, reward, terminated, truncated, info = env.step(push_action(env, 1, 0.0, length=0.08))
    for key in ("goal_distance", "disturbance", "target_displacement", "out_of_workspace", "target_out_of_workspace",
                "pushed_id", "hit_target", "collided", "description", "stroke", "is_success"):
        assert key in info, key
    assert reward == -info["goal_distance"]
    assert info["pushed_id"] == 1 and info["hit_target"] is True and info["collided"] is False
    assert info["target_displacement"] > 0.02
    assert info["disturbance"] < 1e-3  # the blue box is far from the stroke
    assert "red cylinder" in info["description"] and "right" in info["description"]
    # reward is the target's distance to the goal as seen in the observation
    d = np.linalg.norm(obs["object_states"][0, 1:3] - obs["goal"])
    assert info["goal_distance"] == pytest.approx(float(d), abs=1e-5)
    assert env.last_episode is not None and env.last_episode.pushed_id == 1


def test_disturbance_and_collision_reported(env):
    env.reset(seed=0, options={"objects": [RED, BLUE], "poses": [[-0.05, 0.0, 0.0], [0.015, 0.0, 0.0]], "target": 1, "goal": [0.0, 0.1]})
    _, _, _, _, info = env.step(push_action(env, 1, 0.0, length=0.12, speed=0.4))
    assert info["collided"] is True
    assert info["disturbance"] > 0.005
    assert "hits the blue box" in info["description"]


def test_success_terminates(env):
    opts = {"objects": [RED, BLUE], "poses": [[-0.05, 0.0, 0.0], [0.05, 0.12, 0.0]], "target": 1, "goal": [0.1, 0.0]}
    env.reset(seed=0, options=opts)
    action = push_action(env, 1, 0.0, length=0.08)
    # find where the push leaves the target (on a clone), then put the goal there
    probe = copy.deepcopy(env)
    end = probe.step(action)[0]["object_states"][0, 1:3]
    probe.close()
    assert np.linalg.norm(end - np.array([-0.05, 0.0])) > 0.02
    env.reset(seed=0, options={**opts, "goal": end.tolist()})
    _, reward, terminated, truncated, info = env.step(action)
    assert info["is_success"] is True and terminated is True and truncated is False
    assert reward > -env.config.success_radius
    # the same push with the original goal neither succeeds nor terminates
    env.reset(seed=0, options=opts)
    _, _, terminated, _, info = env.step(action)
    assert info["is_success"] is False and terminated is False


def test_target_leaving_workspace_terminates_without_success(env):
    env.reset(options={"objects": [RED], "poses": [[0.15, 0.0, 0.0]], "target": 1, "goal": [0.0, 0.0]})
    _, _, terminated, _, info = env.step(push_action(env, 1, 0.0, length=0.12, speed=0.5))
    assert info["target_out_of_workspace"] is True and info["out_of_workspace"] == 1
    assert terminated is True and info["is_success"] is False


# ----------------------------------------------------------------------------- determinism / cloning
def test_same_seed_same_trajectory():
    a, b = KineMaskPushEnv(), KineMaskPushEnv()
    b.reset(seed=99)  # different history must not matter
    b.step(b.action_space.sample())
    actions = [np.random.default_rng(1).uniform(-1, 1, 5).astype(np.float32) for _ in range(4)]
    oa, _ = a.reset(seed=7)
    ob, _ = b.reset(seed=7)
    assert_obs_equal(oa, ob)
    for x, y in zip(rollout(a, actions), rollout(b, actions)):
        assert_obs_equal(x[0], y[0])
        assert x[1:4] == y[1:4]
        assert x[4]["description"] == y[4]["description"]
    # a different seed gives a different scene
    oc, _ = b.reset(seed=8)
    assert not np.array_equal(oa["image"], oc["image"])
    a.close()
    b.close()


def test_pickle_and_deepcopy_reproduce_the_env(env):
    env.reset(seed=11)
    # push the target so the pickled state is not the initial one
    env.step(push_action(env, env.target, 0.5, length=0.06))
    clones = [pickle.loads(pickle.dumps(env)), copy.deepcopy(env)]
    actions = [push_action(env, env.target, -1.0, length=0.05)] + [np.random.default_rng(2).uniform(-1, 1, 5).astype(np.float32) for _ in range(2)]
    ref = rollout(env, actions)
    for clone in clones:
        assert clone.scene._client != env.scene._client  # its own physics client
        out = rollout(clone, actions)
        for x, y in zip(ref, out):
            assert_obs_equal(x[0], y[0])
            assert x[1:4] == y[1:4]
    # np_random travels with the pickle: the next unseeded reset draws the same scene
    c = pickle.loads(pickle.dumps(env))
    assert_obs_equal(env.reset()[0], c.reset()[0])
    for clone in clones + [c]:
        clone.close()


CLONE_SEEDS = range(24)


def clone_actions(env: KineMaskPushEnv, rng: np.random.Generator, i: int) -> np.ndarray:
    """Alternate target pushes (contact-rich: where clones used to diverge) and random strokes."""
    if i % 2 == 0:
        return push_action(env, env.target, float(rng.uniform(-math.pi, math.pi)), length=float(rng.uniform(0.05, 0.12)))
    return rng.uniform(-1, 1, 5).astype(np.float32)


def test_clones_are_bit_identical_over_many_seeds():
    """pickle, deepcopy and get_state/set_state (through JSON, into an env with another history)
    clones taken after one push give bit-identical observations, rewards and states for the next
    3 pushes. Before the env kept its exact poses, 9 of 20 seeds diverged (re-read yaw)."""
    env, scratch = KineMaskPushEnv(), KineMaskPushEnv()
    scratch.reset(seed=12345)
    scratch.step(np.zeros(5, np.float32))  # a different simulator history must not matter
    try:
        for seed in CLONE_SEEDS:
            rng = np.random.default_rng(1000 + seed)
            env.reset(seed=seed)
            env.step(clone_actions(env, rng, 1))
            scratch.set_state(json.loads(json.dumps(env.get_state())))
            clones = {"pickle": pickle.loads(pickle.dumps(env)), "deepcopy": copy.deepcopy(env), "set_state": scratch}
            assert_obs_equal(scratch._observation(), env._observation())
            for i in range(3):
                a = clone_actions(env, rng, i)
                ref = env.step(a)
                for name, clone in clones.items():
                    out = clone.step(a)
                    for k in ref[0]:
                        assert np.array_equal(ref[0][k], out[0][k]), f"seed {seed}, push {i + 1}, {name}: {k} differs"
                    assert out[1:4] == ref[1:4], f"seed {seed}, push {i + 1}, {name}"
                    assert clone.get_state() == env.get_state(), f"seed {seed}, push {i + 1}, {name}"
            clones["pickle"].close()
            clones["deepcopy"].close()
    finally:
        env.close()
        scratch.close()


def test_imagined_env_clones_are_bit_identical():
    """KineMaskImagined-v0 draws its sampler seed from np_random: pickle/deepcopy carry it; a
    set_state clone needs np_random copied too (docs/envs.md)."""
    from kinemask_ros.envs.imagined_env import KineMaskImaginedEnv

    env, other = KineMaskImaginedEnv(num_inference_steps=1), KineMaskImaginedEnv(num_inference_steps=1)
    other.reset(seed=9)
    try:
        for seed in range(4):
            rng = np.random.default_rng(seed)
            env.reset(seed=seed)
            env.step(rng.uniform(-1, 1, 5).astype(np.float32))
            other.set_state(env.get_state())
            other.np_random = copy.deepcopy(env.np_random)
            clones = {"pickle": pickle.loads(pickle.dumps(env)), "deepcopy": copy.deepcopy(env), "set_state": other}
            for i in range(2):
                a = rng.uniform(-1, 1, 5).astype(np.float32)
                ref = env.step(a)
                for name, clone in clones.items():
                    out = clone.step(a)
                    for k in ref[0]:
                        assert np.array_equal(ref[0][k], out[0][k]), f"seed {seed}, push {i + 1}, {name}: {k} differs"
                    assert out[1:4] == ref[1:4], f"seed {seed}, push {i + 1}, {name}"
            clones["pickle"].close()
            clones["deepcopy"].close()
    finally:
        env.close()
        other.close()


def test_get_state_poses_are_the_values_the_scene_was_built_from(env):
    """Reading poses back from PyBullet (quaternion -> yaw) changes last bits; get_state must not."""
    yaw = 0.1234567891234567
    env.reset(seed=0, options={"objects": [BLUE], "poses": [[0.01, -0.02, yaw]], "target": 1, "goal": [0.08, 0.0]})
    assert env.get_state()["poses"] == [[0.01, -0.02, yaw]]
    assert env._observation()["object_states"][0, 3] == np.float32(yaw)


ASYNC_SCRIPT = textwrap.dedent(
    """
    import gymnasium as gym
    import numpy as np
    import torch

    import kinemask_ros

    torch.set_num_threads(2)
    x = torch.randn(384, 384)
    assert float((x @ x).relu().sum()) > 0  # starts torch's OpenMP thread pool before the fork
    for env_id, kwargs in [("KineMaskPush-v0", {}), ("KineMaskImagined-v0", {"num_inference_steps": 1})]:
        vec = gym.make_vec(env_id, 2, vectorization_mode="async", **kwargs)  # default start method: fork on Linux
        obs, _ = vec.reset(seed=0)
        assert obs["image"].shape == (2, 32, 32, 3)
        vec.action_space.seed(0)
        for _ in range(2):
            obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        assert reward.shape == (2,) and np.all(np.isfinite(reward))
        vec.close()
        print(env_id, "ok", flush=True)
    """
)


def test_async_vector_envs_after_torch_do_not_deadlock():
    """Forked AsyncVectorEnv workers used to hang in the world model's first torch op when the parent
    had already run torch (libgomp); run in a subprocess so a regression fails instead of hanging."""
    proc = subprocess.Popen([sys.executable, "-c", ASYNC_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    t0 = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and its (possibly deadlocked) workers
        out, _ = proc.communicate()
        pytest.fail(f"async vector envs did not finish in 120 s (deadlock?); output:\n{out}")
    assert proc.returncode == 0, out
    assert "KineMaskPush-v0 ok" in out and "KineMaskImagined-v0 ok" in out, out
    assert time.monotonic() - t0 < 120


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_torch_single_threaded():
    import torch

    prev = torch.get_num_threads()
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12 warns about fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(w, str(torch.get_num_threads()).encode())
        os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 16) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert torch.get_num_threads() == prev  # the parent is untouched


def test_pickle_made_env_with_wrappers():
    env = gym.make(ENV_ID)
    env.reset(seed=4)
    clone = pickle.loads(pickle.dumps(env))
    a = np.zeros(5, np.float32)
    x, y = env.step(a), clone.step(a)
    assert_obs_equal(x[0], y[0])
    assert x[1] == y[1]
    env.close()
    clone.close()


def test_get_state_set_state_roundtrip(env):
    env.reset(seed=21)
    env.step(push_action(env, env.target, 2.0, length=0.05))
    state = env.get_state()
    json.dumps(state)  # plain Python types only
    assert set(state) == {"objects", "poses", "target", "goal", "velocities"}
    other = KineMaskPushEnv()
    other.reset(seed=0)
    obs_other = other.set_state(json.loads(json.dumps(state)))
    assert_obs_equal(env._observation(), obs_other)
    a = push_action(env, env.target, 0.0, length=0.05)
    x, y = env.step(a), other.step(a)
    assert_obs_equal(x[0], y[0])
    assert x[1] == y[1]
    with pytest.raises(ValueError, match="missing"):
        other.set_state({"objects": state["objects"]})
    with pytest.raises(ValueError, match="target"):
        other.set_state({**state, "target": 9})
    other.close()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"success_radius": 0.0}, "success_radius"),
        ({"success_radius": float("nan")}, "success_radius"),
        ({"goal_min_distance": 0.01}, "goal_min_distance"),  # below success_radius
        ({"goal_max_distance": 0.035}, "goal_max_distance"),  # below goal_min_distance
        ({"goal_max_distance": 5.0}, "goal_max_distance"),
        ({"num_objects": (0, 2)}, "num_objects"),
        ({"num_objects": (2, 9)}, "num_objects"),
        ({"num_objects": (3, 2)}, "num_objects"),
        ({"render_scale": 0}, "render_scale"),
        ({"render_scale": 2.5}, "render_scale"),
        ({"scene": {"max_objects": 2}}, "scene"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PushEnvConfig(**kwargs)
    with pytest.raises(ValueError, match=field):
        gym.make(ENV_ID, **kwargs)


def test_num_objects_above_scene_max_rejected():
    with pytest.raises(ValueError, match="num_objects"):
        PushEnvConfig(scene=SceneConfig(max_objects=2), num_objects=(1, 3))


def test_bad_render_mode():
    with pytest.raises(ValueError, match="render_mode"):
        KineMaskPushEnv(render_mode="human")


@pytest.mark.parametrize(
    "action, match",
    [
        (np.array([0.0, 0.0, np.nan, 0.0, 0.0]), "finite"),
        (np.array([0.0, np.inf, 0.0, 0.0, 0.0]), "finite"),
        (np.zeros(4), r"shape \(5,\)"),
        (np.zeros((1, 5)), r"shape \(5,\)"),
        ("push", "5 numbers"),
    ],
)
def test_bad_action_raises_readable_error(env, action, match):
    env.reset(seed=0)
    before = env.get_state()
    with pytest.raises(ValueError, match=match):
        env.step(action)
    assert env.get_state() == before  # nothing was simulated


def test_step_before_reset_and_bad_options(env):
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"objcts": []})
    with pytest.raises(ValueError, match="together"):
        env.reset(options={"objects": [RED]})
    with pytest.raises(ValueError, match="target"):
        env.reset(options={"objects": [RED], "poses": [[0, 0, 0]], "target": 2})
    with pytest.raises(ValueError, match="goal"):
        env.reset(options={"objects": [RED], "poses": [[0, 0, 0]], "goal": [0.5, 0.0]})
    with pytest.raises(ValueError, match="1..4 objects"):
        env.reset(options={"objects": [RED] * 5, "poses": np.zeros((5, 3))})


# ----------------------------------------------------------------------------- render / close
def test_render_rgb_array_draws_goal():
    env = KineMaskPushEnv(render_mode="rgb_array", render_scale=4)
    obs, _ = env.reset(seed=2)
    img = env.render()
    H, W = obs["image"].shape[:2]
    assert img.shape == (4 * H, 4 * W, 3) and img.dtype == np.uint8
    u, v = env.scene.camera.project_table(env.goal.astype(float), z=env.objects[env.target - 1].height / 2)
    assert np.all(img[int(4 * v), int(4 * u)] == 255)  # goal centre marker
    # away from the marker the render is the observation image, upscaled
    np.testing.assert_array_equal(img[::4, ::4][obs["goal_mask"] == 0][:50], obs["image"][obs["goal_mask"] == 0][:50])
    env.close()
    assert KineMaskPushEnv().render() is None


def test_close_disconnects_pybullet():
    env = KineMaskPushEnv()
    env.reset(seed=0)
    client = env.scene._client
    assert pb.isConnected(client)
    env.close()
    assert not pb.isConnected(client)
    env.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        env.reset(seed=0)


def test_depth_observations_and_per_episode_looks_keep_the_scenes():
    from kinemask_ros.camera import CameraConfig
    from kinemask_ros.sim_bridge.look import LookConfig
    from kinemask_ros.sim_bridge.scene import SceneConfig

    cam = CameraConfig.oblique(64, 48, elevation_deg=50, distance=0.8)
    plain = gym.make("KineMaskPush-v0", scene=SceneConfig(camera=cam))
    looks = gym.make("KineMaskPush-v0", scene=SceneConfig(camera=cam, look=LookConfig.randomized()), depth=True)
    try:
        o1, _ = plain.reset(seed=5)
        o2, _ = looks.reset(seed=5)
        assert "depth" not in o1 and looks.observation_space.contains(o2)
        assert np.array_equal(o1["object_states"], o2["object_states"]) and np.array_equal(o1["goal"], o2["goal"])
        assert not np.array_equal(o1["image"], o2["image"])  # another look, same scene
        d = o2["depth"]
        assert d.shape == (48, 64) and np.all(d >= 0) and 0.5 < np.median(d[d > 0]) < 1.2  # metres to the table
        o3, _ = looks.reset(seed=6)
        assert not np.array_equal(o3["image"], o2["image"])
    finally:
        plain.close()
        looks.close()
