"""``KineMaskPush-v0``: push a target object to a goal on the PyBullet tabletop (DESIGN §3, §5, §6).

One step is one pusher stroke (a whole simulated clip, :meth:`TabletopScene.execute`). The
observation is what a camera-based planner sees (RGB, instance mask, goal mask) plus the
privileged object states that the oracle and heuristic baselines use.

State convention: at the end of every step the env rebuilds the scene at rest at the objects'
final poses and lifts the pusher out of view (the next stroke re-parks it at its own start).
The env keeps the exact ``(K, 3)`` float64 poses it built the scene from (``_poses``) and never
re-reads them from PyBullet: reading back goes through a quaternion and changes the last bits of
the yaw, which contact-rich pushes amplify to millimetres within a few steps. The simulator state
between steps is therefore fully described by :meth:`get_state` (object specs, those poses,
target, goal), so :meth:`set_state`, ``pickle`` and ``copy.deepcopy`` reproduce the env exactly:
same actions give bit-identical observations and rewards (tested over 24 seeds).

Forked workers (``gymnasium.make_vec(..., vectorization_mode="async")`` with the default
``fork`` start method on Linux): importing this module registers an ``os.fork`` hook that sets
torch to one thread in the child, because GNU OpenMP (libgomp) deadlocks in a forked child whose
parent had already started its thread pool (see ``docs/envs.md``).

See ``docs/envs.md`` for the spaces, reward, ``info`` keys and examples.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from kinemask_ros.push import PushStroke
from kinemask_ros.sim_bridge.scene import ObjectSpec, SceneConfig, TabletopScene, spec_from_dict

ENV_ID = "KineMaskPush-v0"

#: Bounds of the object-state columns ``present, x, y, yaw, vx, vy, wz`` (values are clipped).
STATE_LOW = np.array([0.0, -1.0, -1.0, -math.pi, -5.0, -5.0, -50.0], dtype=np.float32)
STATE_HIGH = np.array([1.0, 1.0, 1.0, math.pi, 5.0, 5.0, 50.0], dtype=np.float32)

_GOAL_TRIES = 200
_SCENE_TRIES = 50
_OPTION_KEYS = ("objects", "poses", "target", "goal")
_STATE_KEYS = ("objects", "poses", "target", "goal")


def _single_torch_thread_in_forked_child() -> None:
    """``os.fork`` child hook: run torch single-threaded in the child (no-op when torch is not loaded).

    GNU OpenMP keeps its thread pool across ``fork`` only in the parent: the first parallel torch
    op in a child forked after the parent ran one waits forever for pool threads that do not exist
    there (``KineMaskImagined-v0`` in ``AsyncVectorEnv`` workers). With one thread torch never
    enters an OpenMP parallel region. PyTorch's own ``DataLoader`` workers make the same choice.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX; registered once per import of this module
    os.register_at_fork(after_in_child=_single_torch_thread_in_forked_child)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


@dataclass(frozen=True)
class PushEnvConfig:
    """Configuration of :class:`KineMaskPushEnv` (all lengths in metres).

    Attributes:
        scene: simulator, camera and push-bound settings; ``scene.max_objects`` is ``K_max``,
            the number of rows of ``object_states``.
        success_radius: the episode succeeds when the target's centre is closer than this to
            the goal; also the radius of the ``goal_mask`` disk.
        goal_min_distance, goal_max_distance: the goal is drawn at a distance in this range from
            the target's start (``goal_min_distance >= success_radius``, so no episode starts
            solved), inside the placement square and not inside another object.
        num_objects: ``(low, high)`` inclusive object-count range for sampled scenes; ``None``
            uses ``(scene.min_objects, scene.max_objects)``.
        render_scale: integer upscale of ``render()`` images in ``"rgb_array"`` mode.
        depth: observations also carry ``"depth"`` ``(H, W)`` float32: metres along the optical
            axis, 0 where the sensor has no return (like a 16UC1 RGB-D driver).

    The camera and the look come from ``scene`` (``scene.camera``: any size / pose, e.g.
    ``CameraConfig.oblique(640, 480)``; ``scene.look``: ``LookConfig.randomized()`` draws object
    and table colours, texture, light and sensor noise per episode from the episode's seed, on a
    stream of its own, so the scenes of a seed are the same under every look).
    """

    scene: SceneConfig = field(default_factory=SceneConfig)
    success_radius: float = 0.03
    goal_min_distance: float = 0.04
    goal_max_distance: float = 0.12
    num_objects: tuple[int, int] | None = None
    render_scale: int = 8
    depth: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.scene, SceneConfig):
            raise ValueError(f"PushEnvConfig.scene must be a SceneConfig, got {type(self.scene).__name__}")
        if not (_is_real(self.success_radius) and self.success_radius > 0):
            raise ValueError(f"PushEnvConfig.success_radius must be a finite number > 0, got {self.success_radius!r}")
        if not (_is_real(self.goal_min_distance) and self.goal_min_distance >= self.success_radius):
            raise ValueError(
                f"PushEnvConfig.goal_min_distance must be a finite number >= success_radius ({self.success_radius}), "
                f"got {self.goal_min_distance!r}"
            )
        reach = 2.0 * self.scene.placement_half_extent
        if not (_is_real(self.goal_max_distance) and self.goal_min_distance <= self.goal_max_distance <= reach):
            raise ValueError(
                f"PushEnvConfig.goal_max_distance must be in [goal_min_distance, 2 * scene.placement_half_extent] = "
                f"[{self.goal_min_distance}, {reach}], got {self.goal_max_distance!r}"
            )
        if self.num_objects is not None:
            n = self.num_objects
            ok = (
                isinstance(n, (tuple, list))
                and len(n) == 2
                and all(_is_int(v) for v in n)
                and 1 <= n[0] <= n[1] <= self.scene.max_objects
            )
            if not ok:
                raise ValueError(
                    f"PushEnvConfig.num_objects must be None or two ints (low, high) with "
                    f"1 <= low <= high <= scene.max_objects ({self.scene.max_objects}), got {n!r}"
                )
            object.__setattr__(self, "num_objects", (int(n[0]), int(n[1])))
        if not (_is_int(self.render_scale) and 1 <= self.render_scale <= 32):
            raise ValueError(f"PushEnvConfig.render_scale must be an int in [1, 32], got {self.render_scale!r}")
        if not isinstance(self.depth, bool):
            raise ValueError(f"PushEnvConfig.depth must be True or False, got {self.depth!r}")

    @property
    def object_count_range(self) -> tuple[int, int]:
        """Inclusive ``(low, high)`` object count of sampled scenes."""
        return self.num_objects if self.num_objects is not None else (self.scene.min_objects, self.scene.max_objects)

    @classmethod
    def from_kwargs(cls, config: "PushEnvConfig | None" = None, **kwargs: Any) -> "PushEnvConfig":
        """``config`` (or the defaults) with the named fields replaced; unknown names raise ``TypeError``."""
        if config is not None and not isinstance(config, PushEnvConfig):
            raise ValueError(f"config must be a PushEnvConfig, got {type(config).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown PushEnvConfig field(s) {unknown}; valid fields: {sorted(names)}")
        base = config if config is not None else cls()
        return replace(base, **kwargs) if kwargs else base


class KineMaskPushEnv(gym.Env):
    """Push the target object (id ``1..K``) until its centre is within ``success_radius`` of the goal.

    Spaces (``H, W`` = camera size, ``K_max`` = ``scene.max_objects``):
        action: ``Box(-1, 1, (5,), float32)``, a normalised stroke ``x, y, theta, length, speed``
            mapped by ``scene.push_bounds.denormalise`` (finite values outside [-1, 1] are clipped).
        observation: ``Dict`` with ``image (H, W, 3) uint8``, ``instance_mask (H, W) uint8``
            (0 background, 1..K objects, 255 pusher), ``goal_mask (H, W) uint8`` in {0, 1},
            ``goal (2,) float32`` [m], ``target`` (``Discrete(K_max, start=1)``) and
            ``object_states (K_max, 7) float32`` rows ``present, x, y, yaw, vx, vy, wz``.

    Reward: ``-goal_distance`` [m] after the push; the other terms are reported in ``info``.
    Terminates on success or when the target leaves the workspace; truncation is left to the
    ``TimeLimit`` wrapper added by ``gymnasium.make`` (8 pushes).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, config: PushEnvConfig | None = None, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.config = PushEnvConfig.from_kwargs(config, **kwargs)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        sc = self.config.scene
        H, W, K = sc.camera.height, sc.camera.width, sc.max_objects
        w = np.float32(sc.workspace_half_extent)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (H, W, 3), np.uint8),
                "instance_mask": spaces.Box(0, 255, (H, W), np.uint8),
                "goal_mask": spaces.Box(0, 1, (H, W), np.uint8),
                "goal": spaces.Box(-w, w, (2,), np.float32),
                "target": spaces.Discrete(K, start=1),
                "object_states": spaces.Box(np.tile(STATE_LOW, (K, 1)), np.tile(STATE_HIGH, (K, 1)), (K, 7), np.float32),
                **({"depth": spaces.Box(0.0, np.float32(sc.camera.far), (H, W), np.float32)} if self.config.depth else {}),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (5,), np.float32)
        self.scene = TabletopScene(sc)
        self.last_episode = None  #: the :class:`Episode` of the last push (None after reset)
        self._closed = False
        self._objects: list[ObjectSpec] = []
        self._target = 0
        self._goal = np.zeros(2)
        self._poses = np.zeros((0, 3))  # (K, 3) x, y, yaw the scene was built from (the canonical state)
        self._velocities = np.zeros((0, 3))  # velocities at the end of the last clip (K, 3)
        self._rgb: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._depth: np.ndarray | None = None

    # ------------------------------------------------------------------ public helpers
    @property
    def target(self) -> int:
        """Target object id (1..K); 0 before the first reset."""
        return self._target

    @property
    def goal(self) -> np.ndarray:
        """Goal table point ``(2,)`` [m] (a copy)."""
        return self._goal.copy()

    @property
    def objects(self) -> list[ObjectSpec]:
        return list(self._objects)

    def goal_distance(self) -> float:
        """Distance [m] from the target's centre to the goal."""
        return float(np.linalg.norm(self._poses[self._target - 1, :2] - self._goal))

    def action_to_stroke(self, action: np.ndarray) -> PushStroke:
        """Normalised action ``(5,)`` -> :class:`PushStroke` (validated; clipped into the bounds)."""
        return self.config.scene.push_bounds.denormalise(self._check_action(action))

    def stroke_to_action(self, stroke: PushStroke) -> np.ndarray:
        """:class:`PushStroke` -> normalised ``(5,)`` float32 action (clipped into the bounds)."""
        return self.config.scene.push_bounds.normalise(stroke)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Sample a scene, target and goal from ``np_random``; ``options`` may fix any of them.

        Options (all optional): ``objects`` (list of :class:`ObjectSpec` or their dicts) together
        with ``poses`` (``(K, 3)`` x, y, yaw); ``target`` (1..K); ``goal`` (``(2,)`` [m]).
        """
        super().reset(seed=seed)
        self._check_open()
        options = dict(options or {})
        unknown = sorted(set(options) - set(_OPTION_KEYS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid options: {list(_OPTION_KEYS)}")
        if ("objects" in options) != ("poses" in options):
            raise ValueError("reset options 'objects' and 'poses' must be given together")
        # One child seed per episode: the whole episode (scene, target, goal) is a function of it.
        scene_seed = int(self.np_random.integers(2**31 - 1))
        rng = np.random.default_rng(scene_seed)
        lo, hi = self.config.object_count_range
        for _ in range(_SCENE_TRIES):
            if "objects" in options:
                specs, poses = self._parse_objects(options["objects"], options["poses"])
            else:
                specs, poses = self.scene.sample_objects(rng, int(rng.integers(lo, hi + 1)))
            target = self._parse_target(options["target"], len(specs)) if "target" in options else int(rng.integers(len(specs))) + 1
            if "goal" in options:
                goal = self._parse_goal(options["goal"])
            else:
                goal = self._sample_goal(rng, specs, poses, target)
                if goal is None:
                    if "objects" in options:
                        raise ValueError("could not sample a goal for the given objects; pass options['goal']")
                    continue
            break
        else:  # pragma: no cover - the default config always finds a goal within a few tries
            raise RuntimeError(f"could not sample a scene with a reachable goal in {_SCENE_TRIES} tries")
        self.scene.sample_look(np.random.default_rng([scene_seed, 7]))  # nothing is drawn for the canonical look
        self._load(specs, poses, target, goal, np.zeros((len(specs), 3)))
        self.last_episode = None
        info = {
            "goal_distance": self.goal_distance(),
            "is_success": False,
            "target": self._target,
            "num_objects": len(self._objects),
            "scene_seed": scene_seed,
        }
        return self._observation(), info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._check_open()
        if not self._objects:
            raise RuntimeError("call reset() before step()")
        stroke = self.action_to_stroke(action)
        before = self._poses.copy()
        episode = self.scene.execute(stroke)
        self.last_episode = episode
        after = self.scene.states()
        # Rebuild the scene at rest at the final poses, pusher out of view (see the module docstring).
        self._set_poses(after[:, :3])
        self._velocities = after[:, 3:].copy()
        self._render()

        t = self._target - 1
        moved = np.linalg.norm(after[:, :2] - before[:, :2], axis=1)
        others = np.arange(len(self._objects)) != t
        out = self.scene.out_of_workspace()
        goal_distance = float(np.linalg.norm(after[t, :2] - self._goal))
        is_success = goal_distance < self.config.success_radius
        target_out = bool(out[t])
        info = {
            "goal_distance": goal_distance,
            "disturbance": float(moved[others].sum()),
            "target_displacement": float(moved[t]),
            "out_of_workspace": int(out.sum()),
            "target_out_of_workspace": target_out,
            "pushed_id": int(episode.pushed_id),
            "hit_target": bool(episode.pushed_id == self._target),
            "collided": bool(episode.collided),
            "description": episode.describe(),
            "stroke": episode.stroke.as_array(),
            "is_success": bool(is_success),
        }
        return self._observation(), -goal_distance, bool(is_success or target_out), False, info

    def render(self) -> np.ndarray | None:
        """``"rgb_array"``: the current image upscaled by ``render_scale`` with the goal drawn as a white ring."""
        if self.render_mode is None:
            return None
        if self._rgb is None:
            raise RuntimeError("call reset() before render()")
        s = self.config.render_scale
        img = np.repeat(np.repeat(self._rgb, s, axis=0), s, axis=1)
        u, v = self._goal_px()
        r = max(self.config.success_radius * self._px_per_m(), 0.5) * s
        vv, uu = np.mgrid[0 : img.shape[0], 0 : img.shape[1]] + 0.5
        d = np.hypot(uu - u * s, vv - v * s)
        img[np.abs(d - r) <= max(1.0, s / 4)] = 255
        img[d <= max(1.0, s / 4)] = 255
        return img

    def close(self) -> None:
        """Disconnect the physics client (safe to call twice)."""
        if not getattr(self, "_closed", True):
            self.scene.close()
            self._closed = True
        super().close()

    # ------------------------------------------------------------------ state (planners, pickling)
    def get_state(self) -> dict[str, Any]:
        """Plain-Python snapshot: ``{"objects": [spec dicts], "poses": [[x, y, yaw], ...],
        "target": int, "goal": [x, y], "velocities": [[vx, vy, wz], ...]}``.

        ``poses`` are the exact float64 values the scene was built from (Python floats, so a JSON
        round trip keeps every bit), not poses read back from PyBullet. ``velocities`` only feeds
        ``object_states`` (the scene itself is at rest between steps); :meth:`set_state` treats it
        as optional.
        """
        if not self._objects:
            raise RuntimeError("call reset() before get_state()")
        return {
            "objects": [asdict(s) for s in self._objects],
            "poses": self._poses.tolist(),
            "target": int(self._target),
            "goal": [float(v) for v in self._goal],
            "velocities": self._velocities.tolist(),
        }

    def set_state(self, state: dict[str, Any]) -> dict[str, np.ndarray]:
        """Restore a :meth:`get_state` snapshot (``np_random`` is untouched); returns the observation."""
        self._check_open()
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict from get_state(), got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state is missing key(s) {missing}")
        specs, poses = self._parse_objects(state["objects"], state["poses"])
        target = self._parse_target(state["target"], len(specs))
        goal = self._parse_goal(state["goal"])
        vel = np.asarray(state.get("velocities", np.zeros((len(specs), 3))), dtype=float)
        if vel.shape != (len(specs), 3) or not np.all(np.isfinite(vel)):
            raise ValueError(f"state['velocities'] must be ({len(specs)}, 3) finite numbers, got shape {vel.shape}")
        self._load(specs, poses, target, goal, vel)
        self.last_episode = None
        return self._observation()

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d.pop("scene", None)  # the PyBullet client cannot be pickled; rebuilt from ``_poses``
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)
        self.scene = TabletopScene(self.config.scene)
        if self._closed:
            self.scene.close()
        elif self._objects:
            self.scene.set_objects(self._objects, self._poses)

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the environment is closed")

    @staticmethod
    def _check_action(action: Any) -> np.ndarray:
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"action must be an array of 5 numbers, got {action!r}") from e
        if a.shape != (5,):
            raise ValueError(f"action must have shape (5,) (x, y, theta, length, speed in [-1, 1]), got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite (no NaN or inf), got {a.tolist()}")
        return a

    def _parse_objects(self, objects: Any, poses: Any) -> tuple[list[ObjectSpec], np.ndarray]:
        try:
            specs = [o if isinstance(o, ObjectSpec) else spec_from_dict(o) for o in objects]
        except (TypeError, KeyError) as e:
            raise ValueError(f"objects must be ObjectSpec instances or their dicts: {e!r}") from e
        k_max = self.config.scene.max_objects
        if not 1 <= len(specs) <= k_max:
            raise ValueError(f"a scene needs 1..{k_max} objects (scene.max_objects), got {len(specs)}")
        p = np.asarray(poses, dtype=float)
        if p.shape != (len(specs), 3) or not np.all(np.isfinite(p)):
            raise ValueError(f"poses must be ({len(specs)}, 3) finite numbers x, y, yaw, got shape {p.shape}")
        return specs, p

    @staticmethod
    def _parse_target(target: Any, k: int) -> int:
        if not (_is_int(target) and 1 <= target <= k):
            raise ValueError(f"target must be an object id in 1..{k}, got {target!r}")
        return int(target)

    def _parse_goal(self, goal: Any) -> np.ndarray:
        g = np.asarray(goal, dtype=float)
        w = self.config.scene.workspace_half_extent
        if g.shape != (2,) or not np.all(np.isfinite(g)) or np.any(np.abs(g) > w):
            raise ValueError(f"goal must be 2 finite numbers inside the workspace [-{w}, {w}]^2, got {goal!r}")
        return g

    def _sample_goal(self, rng: np.random.Generator, specs: list[ObjectSpec], poses: np.ndarray, target: int) -> np.ndarray | None:
        """A goal at distance [goal_min, goal_max] from the target, inside the placement square and
        at least the target's inscribed radius away from every other object; None if none found."""
        cfg, t = self.config, target - 1
        h = cfg.scene.placement_half_extent
        clearance = min(specs[t].size)
        for _ in range(_GOAL_TRIES):
            ang = rng.uniform(-math.pi, math.pi)
            dist = rng.uniform(cfg.goal_min_distance, cfg.goal_max_distance)
            g = poses[t, :2] + dist * np.array([math.cos(ang), math.sin(ang)])
            if np.all(np.abs(g) <= h) and all(
                s.distance_to(q, g) > clearance for i, (s, q) in enumerate(zip(specs, poses)) if i != t
            ):
                return g
        return None

    def _set_poses(self, poses: np.ndarray, specs: list[ObjectSpec] | None = None) -> None:
        """Rebuild the scene at rest with ``specs`` (default: the current objects) at ``poses``
        ``(K, 3)`` x, y, yaw, and keep these exact values as the env's state."""
        poses = np.array(poses, dtype=float).reshape(-1, 3)
        specs = self._objects if specs is None else list(specs)
        self.scene.set_objects(specs, poses)
        self._objects, self._poses = specs, poses

    def _load(self, specs: list[ObjectSpec], poses: np.ndarray, target: int, goal: np.ndarray, velocities: np.ndarray) -> None:
        self._set_poses(poses, specs)
        self._target = int(target)
        self._goal = np.asarray(goal, dtype=float).copy()
        self._velocities = np.asarray(velocities, dtype=float).copy()
        self._render()

    def _render(self) -> None:
        if self.config.depth or not self.config.scene.look.is_canonical:
            self._rgb, self._mask, d = self.scene.render_rgbd(noise=True)
            self._depth = np.nan_to_num(d, nan=0.0).astype(np.float32)
        else:  # the canonical camera look: no sensor noise, as the training data
            self._rgb, self._mask = self.scene.render()
            self._depth = None

    def _px_per_m(self) -> float:
        return self.scene.camera.pixels_per_metre(z=self._objects[self._target - 1].height / 2)

    def _goal_px(self) -> np.ndarray:
        """Goal pixel (u, v), projected at the target's mid-height like ``Episode.centroids_px``."""
        return self.scene.camera.project_table(self._goal, z=self._objects[self._target - 1].height / 2)

    def _goal_mask(self) -> np.ndarray:
        H, W = self._mask.shape
        u, v = self._goal_px()
        r = max(self.config.success_radius * self._px_per_m(), 0.5)
        vv, uu = np.mgrid[0:H, 0:W] + 0.5
        m = ((uu - u) ** 2 + (vv - v) ** 2 <= r * r).astype(np.uint8)
        j, i = int(math.floor(u)), int(math.floor(v))
        if 0 <= i < H and 0 <= j < W:
            m[i, j] = 1  # always mark the pixel the goal falls in
        return m

    def _observation(self) -> dict[str, np.ndarray]:
        K = self.config.scene.max_objects
        states = np.zeros((K, 7), np.float32)
        k = len(self._objects)
        states[:k, 0] = 1.0
        states[:k, 1:4] = self._poses
        states[:k, 4:7] = self._velocities
        states = np.clip(states, STATE_LOW, STATE_HIGH)
        w = np.float32(self.config.scene.workspace_half_extent)
        return {
            "image": self._rgb.copy(),
            "instance_mask": self._mask.copy(),
            "goal_mask": self._goal_mask(),
            "goal": np.clip(self._goal.astype(np.float32), -w, w),
            "target": np.int64(self._target),
            "object_states": states,
            **({"depth": self._depth.copy()} if self.config.depth else {}),
        }
