"""Planning on PushT: CEM / MPPI / random shooting over T-centric strokes with an SE(2) goal cost.

The planners are the project's own (:mod:`kinemask_ros.policies.shooting`): they take a cost
function over ``[-1, 1]^3`` parameters and know nothing of the model. Here the parameters become
strokes (:func:`kinemask_ros.pusht_strokes.params_to_strokes`), a *dynamics* callable imagines the
T's final pose for each, and the cost is the SE(2) distance to the goal pose:

    cost = |cog - cog_goal| [px] + yaw_weight * |wrap(yaw - yaw_goal)| [px / rad]
           + reach_weight * |start - agent| [px]          (a little effort for far starts)

Dynamics (``(pose (3,), strokes (N, 5)) -> final poses (N, S, 3)``):

* :class:`WorldModelDynamics` — the PushT world model (object-token denoiser), batched;
* :class:`SimulatorDynamics` — the oracle: every stroke simulated in a second gym-pusht env from
  the live state (same sweep, agent placed at the start at rest; the approach is not imagined).

    planner = PushTPlanner(PushTPlannerConfig(method="cem"))
    plan = planner.plan(adapter.poses()[0], adapter.agent(), WorldModelDynamics(PushTWorldModel.from_pretrained()))
    adapter.execute(plan.best_stroke)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from kinemask_ros.envs.pusht import AGENT_RADIUS, GOAL_POSE, cog_of, t_distance, wrap
from kinemask_ros.policies.shooting import CEM, MPPI, CEMConfig, MPPIConfig, RandomShooting, RandomShootingConfig
from kinemask_ros.push import PushStroke
from kinemask_ros.pusht_strokes import StrokeParamConfig, params_to_strokes, strokes_in_arena

PUSHT_PLANNERS = ("cem", "mppi", "random")
PoseDynamics = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PushTPlannerConfig:
    """One stroke decision on PushT.

    Attributes:
        method: "cem", "mppi" or "random".
        goal: SE(2) goal ``(x, y, yaw)`` of the T's body origin [px, rad] (gym-pusht's fixed goal).
        yaw_weight: px of position error one radian of yaw error is worth (the T's size, ~ 60 px).
        reach_weight: cost per px between the agent and the stroke's start (approach time).
        stroke: ranges of the T-centric stroke parameters.
    """

    method: str = "cem"
    goal: tuple[float, float, float] = tuple(GOAL_POSE.tolist())
    yaw_weight: float = 60.0
    reach_weight: float = 0.01
    cem: CEMConfig = CEMConfig(num_samples=64, iterations=3, num_elites=8, init_std=0.5, min_std=0.03)
    mppi: MPPIConfig = MPPIConfig(num_samples=64, iterations=3, temperature=3.0, noise_std=0.3)
    random: RandomShootingConfig = RandomShootingConfig(num_samples=192)
    stroke: StrokeParamConfig = field(default_factory=StrokeParamConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in PUSHT_PLANNERS:
            raise ValueError(f"PushTPlannerConfig.method must be one of {PUSHT_PLANNERS}, got {self.method!r}")
        g = np.asarray(self.goal, float)
        if g.shape != (3,) or not np.all(np.isfinite(g)):
            raise ValueError(f"PushTPlannerConfig.goal must be 3 finite numbers (x, y, yaw), got {self.goal!r}")
        for name in ("yaw_weight", "reach_weight"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"PushTPlannerConfig.{name} must be a finite number >= 0, got {v!r}")


def se2_cost(poses: np.ndarray, goal: np.ndarray, yaw_weight: float) -> np.ndarray:
    """``(...,)`` SE(2) goal cost of body-origin poses ``(..., 3)``: cog distance [px] + yaw_weight * |yaw error|."""
    poses = np.asarray(poses, float)
    goal = np.asarray(goal, float)
    e_pos = np.linalg.norm(cog_of(poses) - cog_of(goal), axis=-1)
    return e_pos + yaw_weight * np.abs(wrap(poses[..., 2] - goal[2]))


def pose_errors(pose: np.ndarray, goal: np.ndarray = GOAL_POSE) -> tuple[float, float]:
    """Position error of the T's centre [px] and |yaw error| [deg] of one pose."""
    e = float(np.linalg.norm(cog_of(np.asarray(pose, float)) - cog_of(np.asarray(goal, float))))
    return e, float(np.degrees(abs(wrap(pose[2] - goal[2]))))


@dataclass
class PushTPlan:
    """Ranked strokes of one decision: ``strokes (N, 5)`` best first, ``costs (N,)``, predicted final ``poses (N, S, 3)``."""

    strokes: np.ndarray
    costs: np.ndarray
    poses: np.ndarray
    params: np.ndarray
    latency_s: float
    iterations: int

    @property
    def best_stroke(self) -> PushStroke | None:
        return PushStroke(*map(float, self.strokes[0])) if len(self.costs) and np.isfinite(self.costs[0]) else None

    def stroke(self, i: int) -> PushStroke:
        return PushStroke(*map(float, self.strokes[i]))


class WorldModelDynamics:
    """Final T poses ``(N, S, 3)`` imagined by a :class:`~kinemask_ros.world_model.pusht_model.PushTWorldModel`."""

    def __init__(self, model, num_samples: int = 1, num_inference_steps: int = 4, seed: int = 0):
        self.model, self.num_samples, self.steps = model, int(num_samples), int(num_inference_steps)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, pose: np.ndarray, strokes: np.ndarray) -> np.ndarray:
        return self.model.predict(pose, strokes, self.num_samples, self.steps, self.generator)[:, :, -1]


class SimulatorDynamics:
    """The oracle: each stroke executed in a private gym-pusht env from the live state (bit-exact physics)."""

    def __init__(self, adapter_factory=None):
        from kinemask_ros.envs.pusht import PushTAdapter

        self.sim = (adapter_factory or (lambda: PushTAdapter(render=False)))()
        self.state = None

    def bind(self, state) -> "SimulatorDynamics":
        """Imagine from this :class:`~kinemask_ros.envs.pusht.PushTState` (the live env's)."""
        self.state = state
        return self

    def __call__(self, pose: np.ndarray, strokes: np.ndarray) -> np.ndarray:
        from kinemask_ros.envs.pusht import PushTState

        if self.state is None:
            raise RuntimeError("SimulatorDynamics.bind(state) first")
        st = self.state
        out = np.zeros((len(strokes), 1, 3))
        for i, s in enumerate(np.asarray(strokes, float)):
            self.sim.set_state(PushTState(st.agent, (0.0, 0.0), st.block, (0.0, 0.0), 0.0), check=False)
            try:
                r = self.sim.execute(PushStroke(*map(float, s)), approach=False)
                out[i, 0] = r.after[0]
            except ValueError:
                out[i, 0] = np.nan
        return out


class PushTPlanner:
    """Ranks T-centric strokes with any pose dynamics (world model or simulator)."""

    def __init__(self, config: PushTPlannerConfig | None = None):
        self.config = config or PushTPlannerConfig()
        self._rng = np.random.default_rng(self.config.seed)

    def _make(self):
        c = self.config
        return {"cem": lambda: CEM(c.cem), "mppi": lambda: MPPI(c.mppi), "random": lambda: RandomShooting(c.random)}[c.method]()

    def plan(self, pose: np.ndarray, agent: np.ndarray, dynamics: PoseDynamics, warm_start: np.ndarray | None = None) -> PushTPlan:
        """One decision.

        Args:
            pose: ``(3,)`` the T's body-origin pose (x, y, yaw) [px, rad].
            agent: ``(2,)`` the agent's position [px] (effort term).
            dynamics: ``(pose, strokes (N, 5)) -> final poses (N, S, 3)``.
            warm_start: ``(3,)`` parameters of the previous decision (evaluated first).
        """
        t0 = time.perf_counter()
        cfg = self.config
        pose = np.asarray(pose, float)
        if pose.shape != (3,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"pose must be 3 finite numbers (x, y, yaw), got {pose!r}")
        agent = np.asarray(agent, float)
        goal = np.asarray(cfg.goal, float)
        log: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

        def cost_fn(params: np.ndarray) -> np.ndarray:
            strokes = params_to_strokes(pose, params, cfg.stroke)
            final = dynamics(pose, strokes)  # (N, S, 3)
            c = se2_cost(final, goal, cfg.yaw_weight).mean(1) + cfg.reach_weight * np.linalg.norm(strokes[:, :2] - agent, axis=1)
            clear = t_distance(pose, strokes[None, :, :2])[0] >= AGENT_RADIUS + 0.5  # the disk fits at the start
            c = np.where(strokes_in_arena(strokes) & clear & np.isfinite(c), c, np.inf)
            log.append((params, strokes, final, c))
            return c

        planner = self._make()
        n0 = planner.config.num_samples
        init = self._rng.uniform(-1, 1, (n0, 3))
        kwargs = {}
        if warm_start is not None:
            init[0] = np.clip(np.asarray(warm_start, float), -1, 1)
            if cfg.method in ("cem", "mppi"):
                kwargs["mean"] = init[0]
        res = planner.plan(cost_fn, 3, self._rng, init=init, **kwargs)
        params = np.concatenate([p for p, *_ in log])
        strokes = np.concatenate([s for _, s, *_ in log])
        final = np.concatenate([f for _, _, f, _ in log])
        costs = np.concatenate([c for *_, c in log])
        order = np.argsort(np.where(np.isfinite(costs), costs, np.inf), kind="stable")
        return PushTPlan(strokes[order], costs[order], final[order], params[order], time.perf_counter() - t0, res.iterations)


def scripted_stroke(pose: np.ndarray, goal: np.ndarray = GOAL_POSE, speed: float = 250.0) -> PushStroke:
    """Push-to-goal heuristic: push the T's centre straight towards the goal's centre (from behind
    it, the whole distance); once within 15 px, turn it by pushing the bar's end sideways."""
    from kinemask_ros.envs.pusht import AGENT_RADIUS, T_RADIUS, to_world

    pose, goal = np.asarray(pose, float), np.asarray(goal, float)
    c, g = cog_of(pose), cog_of(goal)
    d = g - c
    dist = float(np.linalg.norm(d))
    if dist > 15.0:
        u = d / dist
        start = c - u * (T_RADIUS + AGENT_RADIUS + 5)
        return PushStroke(float(start[0]), float(start[1]), math.atan2(u[1], u[0]), float(T_RADIUS + AGENT_RADIUS + 5 - 30 + dist), speed)
    e = float(wrap(goal[2] - pose[2]))
    # push a bar end perpendicular to the bar: positive e turns the T with increasing yaw
    end = to_world(pose, np.array([[55.0 if e > 0 else -55.0, 0.0]]))[0]
    normal = to_world(pose, np.array([[0.0, -1.0]]))[0] - pose[:2]  # out of the bar's top edge
    start = end + normal * (AGENT_RADIUS + 6)
    u = -normal
    return PushStroke(float(start[0]), float(start[1]), math.atan2(u[1], u[0]), float(AGENT_RADIUS + 6 + min(40.0, abs(e) * 60)), speed)
