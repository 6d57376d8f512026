"""What a stroke planner needs from a planar-push env: the adapter protocol and its implementations.

A planner (world-model CEM/MPPI, the simulator oracle, the baselines) talks to any planar-push
env through :class:`PlanarPushAdapter`: pictures at a chosen size with instance masks and the
camera model of those pictures, the objects' SE(2) poses, executing a stroke, and exact get/set
of the simulator state (so an oracle can imagine a stroke in the same env and come back). Two
implementations:

* :class:`TabletopAdapter` — our own PyBullet tabletop (``KineMaskPush-v0``), table metres;
* :class:`kinemask_ros.envs.pusht.PushTAdapter` — LeRobot's ``gym-pusht`` 0.1.8, px of its 512 world.

    adapter = TabletopAdapter(seed=0)          # or PushTAdapter()
    obs = adapter.reset(seed=3)
    obs.rgb, obs.instance_mask, obs.poses      # (H, W, 3), (H, W), (K, 3)
    s = adapter.get_state(); r = adapter.execute(stroke); adapter.set_state(s)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kinemask_ros.push import PushStroke


class UnreachableStroke(ValueError):
    """The pusher cannot execute this stroke (start outside the arena, inside an object, no free path)."""


@dataclass(frozen=True)
class AdapterSpec:
    """Static facts of an env.

    Attributes:
        name: short name ("tabletop", "pusht").
        units: length unit of poses and strokes ("m" on the table, "px" in PushT's 512 world).
        world_low, world_high: the workspace box ``(x, y)`` in those units.
        pusher_radius: radius of the pusher disk in those units.
        object_ids: ids of the objects (instance-mask values).
        goal: a fixed SE(2) goal ``(x, y, yaw)`` when the env has one (PushT), else None.
    """

    name: str
    units: str
    world_low: tuple[float, float]
    world_high: tuple[float, float]
    pusher_radius: float
    object_ids: tuple[int, ...]
    goal: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.units not in ("m", "px"):
            raise ValueError(f"AdapterSpec.units must be 'm' or 'px', got {self.units!r}")
        if not all(lo < hi for lo, hi in zip(self.world_low, self.world_high)):
            raise ValueError(f"AdapterSpec.world_low must be < world_high, got {self.world_low} / {self.world_high}")
        if not (math.isfinite(self.pusher_radius) and self.pusher_radius > 0):
            raise ValueError(f"AdapterSpec.pusher_radius must be > 0, got {self.pusher_radius!r}")


@dataclass(frozen=True)
class PlaneCamera:
    """Camera model of an adapter's image: the homography from the world plane to pixels.

    ``H (3, 3)`` maps homogeneous world points ``(x, y, 1)`` to homogeneous pixel coordinates
    ``(u, v, 1)`` (u right, v down, origin at the top-left corner of the top-left pixel).
    """

    width: int
    height: int
    H: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        H = np.asarray(self.H, float)
        if H.shape != (3, 3) or not np.all(np.isfinite(H)) or abs(np.linalg.det(H)) < 1e-12:
            raise ValueError(f"PlaneCamera.H must be an invertible finite (3, 3) matrix, got {self.H!r}")
        object.__setattr__(self, "H", H)

    @classmethod
    def scaling(cls, width: int, height: int, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> "PlaneCamera":
        """``u = scale * x + ox``, ``v = scale * y + oy`` (a top-down camera, y down)."""
        return cls(width, height, np.array([[scale, 0, offset[0]], [0, scale, offset[1]], [0, 0, 1.0]]))

    def project(self, xy: np.ndarray) -> np.ndarray:
        """World points ``(..., 2)`` -> pixels ``(..., 2)``."""
        p = np.asarray(xy, float)
        q = p @ self.H[:, :2].T + self.H[:, 2]
        return q[..., :2] / q[..., 2:3]

    def unproject(self, uv: np.ndarray) -> np.ndarray:
        """Pixels ``(..., 2)`` -> world points ``(..., 2)``."""
        Hi = np.linalg.inv(self.H)
        p = np.asarray(uv, float)
        q = p @ Hi[:, :2].T + Hi[:, 2]
        return q[..., :2] / q[..., 2:3]


@dataclass
class Observation:
    """One look at the env.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 (None when the adapter was built without rendering).
        instance_mask: ``(H, W)`` uint8: 0 background, object ids, 255 the pusher.
        poses: ``(K, 3)`` SE(2) poses ``(x, y, yaw)`` of the objects in ``object_ids`` order.
        object_ids: instance ids of the rows of ``poses``.
        camera: the :class:`PlaneCamera` of ``rgb`` / ``instance_mask``.
        pusher: ``(2,)`` pusher position (NaN when it is out of the scene).
        info: env-specific numbers (PushT: coverage, steps).
    """

    rgb: np.ndarray | None
    instance_mask: np.ndarray
    poses: np.ndarray
    object_ids: tuple[int, ...]
    camera: PlaneCamera
    pusher: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StrokeResult:
    """What executing one stroke did.

    Attributes:
        before, after: ``(K, 3)`` object poses.
        track: ``(T, K, 3)`` object poses over the stroke (frame 0 = ``before``).
        env_steps: env steps the stroke used (PushT: including the approach); 1 for the tabletop.
        coverage: PushT coverage after the stroke (NaN elsewhere); coverages: after every env step.
        success: the env's success flag after the stroke.
    """

    stroke: PushStroke
    before: np.ndarray
    after: np.ndarray
    track: np.ndarray
    env_steps: int
    coverage: float = math.nan
    coverages: np.ndarray = field(default_factory=lambda: np.zeros(0))
    success: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class PlanarPushAdapter(Protocol):
    """The planar-push env interface the planners and benchmarks use (see the module docstring)."""

    spec: AdapterSpec

    def reset(self, seed: int | None = None) -> Observation: ...

    def observe(self, size: int | None = None) -> Observation: ...

    def poses(self) -> np.ndarray: ...

    def camera(self, size: int | None = None) -> PlaneCamera: ...

    def execute(self, stroke: PushStroke) -> StrokeResult: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- our own env
class TabletopAdapter:
    """``KineMaskPush-v0`` (PyBullet tabletop, table metres) behind :class:`PlanarPushAdapter`.

    Wraps :class:`~kinemask_ros.envs.push_env.KineMaskPushEnv` without changing it: images come
    from its camera (``size`` must be the env camera's, rendering is done by PyBullet at reset /
    after each stroke), poses from its exact state, strokes through its ``step``.
    """

    def __init__(self, config=None, seed: int | None = None, **env_kwargs: Any):
        from kinemask_ros.envs.push_env import KineMaskPushEnv

        self.env = KineMaskPushEnv(config, **env_kwargs)
        sc = self.env.config.scene
        w = float(sc.workspace_half_extent)
        self._cam = sc.camera
        self._z = sc.object_height / 2
        self._obs: dict | None = None
        self._seed = seed
        self.spec = AdapterSpec(name="tabletop", units="m", world_low=(-w, -w), world_high=(w, w), pusher_radius=float(sc.pusher_radius),
                                object_ids=())

    def reset(self, seed: int | None = None) -> Observation:
        self._obs, _ = self.env.reset(seed=self._seed if seed is None else seed)
        self._refresh_spec()
        return self.observe()

    def _refresh_spec(self) -> None:
        from dataclasses import replace

        ids = tuple(range(1, len(self.env.objects) + 1))
        goal = self.env.goal
        self.spec = replace(self.spec, object_ids=ids, goal=(float(goal[0]), float(goal[1]), math.nan))

    def _need_obs(self) -> dict:
        if self._obs is None:
            raise RuntimeError("call reset() or set_state() first")
        return self._obs

    def camera(self, size: int | None = None) -> PlaneCamera:
        """The homography of the env's camera on the plane at half the object height (the poses' plane)."""
        from kinemask_ros.camera import CameraModel

        cm = CameraModel(self._cam)
        if size is not None and size not in (cm.width, cm.height):
            raise ValueError(f"the tabletop env renders {cm.width}x{cm.height} images; size={size} needs another camera config "
                             f"(PushEnvConfig.scene.camera)")
        world = np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
        uv = cm.project_table(world, self._z)
        return PlaneCamera(cm.width, cm.height, _homography(world, uv))

    def observe(self, size: int | None = None) -> Observation:
        o = self._need_obs()
        k = len(self.env.objects)
        return Observation(rgb=o["image"].copy(), instance_mask=o["instance_mask"].copy(), poses=self.poses(),
                           object_ids=tuple(range(1, k + 1)), camera=self.camera(size), pusher=np.full(2, np.nan),
                           info={"target": int(self.env.target), "goal": self.env.goal})

    def poses(self) -> np.ndarray:
        """``(K, 3)`` the exact float64 poses the scene was built from [m, rad]."""
        return np.array(self.env.get_state()["poses"], float).reshape(-1, 3)

    def execute(self, stroke: PushStroke) -> StrokeResult:
        """One env step (one simulated clip); strokes outside the env's push bounds are refused."""
        self._need_obs()
        why = self.env.config.scene.push_bounds.violation(stroke, workspace=self.env.config.scene.workspace_half_extent)
        if why:
            raise UnreachableStroke(f"the tabletop pusher cannot execute this stroke: {why}")
        before = self.poses()
        self._obs, _, term, _, info = self.env.step(self.env.stroke_to_action(stroke))
        ep = self.env.last_episode
        track = np.asarray(ep.states[..., :3], float) if ep is not None and getattr(ep, "states", None) is not None else np.stack([before, self.poses()])
        return StrokeResult(stroke=stroke, before=before, after=self.poses(), track=track, env_steps=1, success=bool(info["is_success"]),
                            info={k: info[k] for k in ("goal_distance", "pushed_id", "collided")})

    def get_state(self) -> dict:
        return self.env.get_state()

    def set_state(self, state: dict) -> None:
        self._obs = self.env.set_state(state)
        self._refresh_spec()

    def close(self) -> None:
        self.env.close()


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """DLT homography ``(3, 3)`` from 4+ point pairs ``(N, 2)``."""
    A = []
    for (x, y), (u, v) in zip(src, dst):
        A.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        A.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(A, float))
    H = vt[-1].reshape(3, 3)
    return H / H[2, 2]
