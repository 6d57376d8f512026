"""Baseline policies and the oracle dynamics for ``KineMaskPush-v0``.

* :class:`HeuristicPolicy` - push the target straight towards the goal, as far as the goal is.
* :class:`RandomPolicy` - a uniformly random push of the target (object-centric parameters).
* :class:`SimulatorDynamics` - the simulator itself as the dynamics model (upper bound): each
  candidate is executed in a private copy of the env's true state (true masses and frictions).
"""

from __future__ import annotations

import math

import numpy as np

from kinemask_ros.candidates import ObjectCentricActions
from kinemask_ros.planning import Imagined, PushPlanner
from kinemask_ros.push import PushStroke


class HeuristicPolicy:
    """Straight push along target -> goal, stroke length = remaining distance (clipped to bounds)."""

    def __init__(self, planner: PushPlanner):
        self.planner = planner

    def stroke(self, instance_mask: np.ndarray, target_id: int, goal_xy: np.ndarray) -> PushStroke:
        actions = ObjectCentricActions(instance_mask, target_id, self.planner.camera, self.planner.config.candidates)
        g = np.asarray(goal_xy, float) - actions.center
        theta = math.atan2(g[1], g[0])
        lo, hi = self.planner.config.candidates.push_bounds.length_range
        p2 = 2 * (np.clip(np.linalg.norm(g), lo, hi) - lo) / (hi - lo) - 1
        return actions.to_strokes(np.array([[actions.from_stroke_direction(theta), 0.0, p2, -0.5]]))[0]


class RandomPolicy:
    """A random push of the target."""

    def __init__(self, planner: PushPlanner, seed: int = 0):
        self.planner = planner
        self.rng = np.random.default_rng(seed)

    def stroke(self, instance_mask: np.ndarray, target_id: int) -> PushStroke:
        actions = ObjectCentricActions(instance_mask, target_id, self.planner.camera, self.planner.config.candidates)
        return actions.to_strokes(self.rng.uniform(-1, 1, (1, actions.dim)))[0]


class SimulatorDynamics:
    """Strokes -> true simulated tracks from an env state (``KineMaskPushEnv.get_state()``)."""

    def __init__(self, env_state: dict, scene_config=None):
        from kinemask_ros.sim_bridge.scene import SceneConfig, TabletopScene, spec_from_dict

        self.state = env_state
        self.scene = TabletopScene(scene_config or SceneConfig())
        self.specs = [spec_from_dict(o) for o in env_state["objects"]]
        self.poses = np.asarray(env_state["poses"], float)
        self.K = len(self.specs)

    def __call__(self, strokes: list[PushStroke]) -> Imagined:
        T = self.scene.config.num_frames
        N = len(strokes)
        tracks = np.full((N, 1, max(self.K, 1), T, 2), np.nan)
        tids = np.zeros(N, np.int64)
        for i, s in enumerate(strokes):
            self.scene.set_objects(self.specs, self.poses)
            ep = self.scene.execute(s, render=False)
            tracks[i, 0] = ep.centroids_px.transpose(1, 0, 2)
            tids[i] = ep.pushed_id
        return Imagined(tracks, tids, np.ones((N, self.K), bool))

    def close(self) -> None:
        self.scene.close()
