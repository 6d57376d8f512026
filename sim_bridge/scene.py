"""Tabletop pushing scene in PyBullet (headless, ``DIRECT`` + TinyRenderer).

Why PyBullet: it renders RGB + instance segmentation on CPU at ~0.03 s per 16-frame clip, about
4x faster than MuJoCo with shadows off (``../shared/ML_STACK.md``), and the dataset generator,
the Gymnasium env and the oracle planner all call the simulator in their inner loops.

The scene: a table (z = 0), 1-4 rigid boxes/upright cylinders with random size, colour, mass and
friction, and a cylindrical pusher (the robot's finger) held by a stiff constraint that follows a
:class:`~kinemask_ros.push.PushStroke`. Everything is reproducible from a seed.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field

import numpy as np
import pybullet as pb

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.palette import PALETTE, PUSHER_RGB, TABLE_RGB  # PALETTE is re-exported for callers
from kinemask_ros.push import PushBounds, PushStroke
from kinemask_ros.sim_bridge.look import Look, LookConfig

#: Instance id of the pusher in segmentation images (objects are 1..K, background 0).
PUSHER_ID = 255

SHAPES = ("box", "cylinder")


def _check_range(name: str, r: tuple[float, float], positive: bool = True) -> None:
    lo, hi = r
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"SceneConfig.{name} must be finite with low <= high, got {r!r}")
    if positive and lo <= 0:
        raise ValueError(f"SceneConfig.{name} must be > 0, got {r!r}")


@dataclass(frozen=True)
class SceneConfig:
    """Scene and simulation parameters (all lengths in metres)."""

    camera: CameraConfig = field(default_factory=CameraConfig)
    num_frames: int = 16
    frame_dt: float = 0.08
    sim_hz: int = 250
    min_objects: int = 1
    max_objects: int = 4
    object_size_range: tuple[float, float] = (0.022, 0.034)  # box half-extent / cylinder radius
    object_height: float = 0.03
    mass_range: tuple[float, float] = (0.1, 0.4)
    friction_range: tuple[float, float] = (0.12, 0.22)
    placement_half_extent: float = 0.12  # object centres are placed in [-h, h]^2
    min_clearance: float = 0.012
    workspace_half_extent: float = 0.19  # leaving [-w, w]^2 means leaving the workspace
    pusher_radius: float = 0.012
    push_bounds: PushBounds = field(default_factory=PushBounds)
    look: LookConfig = field(default_factory=LookConfig)  # canonical: today's palette look

    def __post_init__(self) -> None:
        if isinstance(self.look, dict):  # from a dataset manifest (JSON)
            object.__setattr__(self, "look", LookConfig.from_dict(self.look))
        if not isinstance(self.look, LookConfig):
            raise ValueError(f"SceneConfig.look must be a LookConfig, got {type(self.look).__name__}")
        if not isinstance(self.camera, CameraConfig):
            raise ValueError(f"SceneConfig.camera must be a CameraConfig, got {type(self.camera).__name__}")
        if not isinstance(self.num_frames, (int, np.integer)) or self.num_frames < 2:
            raise ValueError(f"SceneConfig.num_frames must be an int >= 2, got {self.num_frames!r}")
        if not (math.isfinite(self.frame_dt) and self.frame_dt > 0):
            raise ValueError(f"SceneConfig.frame_dt must be > 0, got {self.frame_dt!r}")
        if not isinstance(self.sim_hz, (int, np.integer)) or self.sim_hz < 60:
            raise ValueError(f"SceneConfig.sim_hz must be an int >= 60, got {self.sim_hz!r}")
        if not (1 <= self.min_objects <= self.max_objects <= 8):
            raise ValueError(
                f"SceneConfig needs 1 <= min_objects <= max_objects <= 8, got {self.min_objects}, {self.max_objects}"
            )
        _check_range("object_size_range", self.object_size_range)
        _check_range("mass_range", self.mass_range)
        _check_range("friction_range", self.friction_range)
        for name in ("object_height", "placement_half_extent", "workspace_half_extent", "pusher_radius"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"SceneConfig.{name} must be > 0, got {v!r}")
        if not (math.isfinite(self.min_clearance) and self.min_clearance >= 0):
            raise ValueError(f"SceneConfig.min_clearance must be >= 0, got {self.min_clearance!r}")
        if self.placement_half_extent >= self.workspace_half_extent:
            raise ValueError("SceneConfig.placement_half_extent must be < workspace_half_extent")

    @property
    def steps_per_frame(self) -> int:
        return max(1, round(self.frame_dt * self.sim_hz))


@dataclass(frozen=True)
class ObjectSpec:
    """One rigid object. ``size`` is the box half-extent pair or ``(radius, radius)`` for cylinders."""

    shape: str
    size: tuple[float, float]
    height: float
    mass: float
    friction: float
    color: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"ObjectSpec.shape must be one of {SHAPES}, got {self.shape!r}")
        if self.color not in PALETTE:
            raise ValueError(f"ObjectSpec.color must be one of {list(PALETTE)}, got {self.color!r}")
        for name in ("height", "mass", "friction"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"ObjectSpec.{name} must be > 0, got {v!r}")
        if len(self.size) != 2 or not all(math.isfinite(s) and s > 0 for s in self.size):
            raise ValueError(f"ObjectSpec.size must be two numbers > 0, got {self.size!r}")

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def bounding_radius(self) -> float:
        return math.hypot(*self.size) if self.shape == "box" else self.size[0]

    def support(self, yaw: float, direction: np.ndarray) -> float:
        """Half-width of the footprint along unit ``direction`` when rotated by ``yaw``."""
        if self.shape == "cylinder":
            return self.size[0]
        c, s = math.cos(yaw), math.sin(yaw)
        return abs(direction[0] * c + direction[1] * s) * self.size[0] + abs(-direction[0] * s + direction[1] * c) * self.size[1]

    def distance_to(self, pose: np.ndarray, point: np.ndarray) -> float:
        """Distance from a table point to this object's footprint at ``pose = (x, y, yaw)`` (0 inside)."""
        d = np.asarray(point, dtype=float) - pose[:2]
        if self.shape == "cylinder":
            return max(0.0, float(np.linalg.norm(d)) - self.size[0])
        c, s = math.cos(pose[2]), math.sin(pose[2])
        local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
        q = np.abs(local) - np.asarray(self.size)
        return float(np.linalg.norm(np.maximum(q, 0.0)))


def random_spec(rng: np.random.Generator, cfg: SceneConfig, color: str, shape: str | None = None,
                size_range: tuple[float, float] | None = None, mass: float | None = None, friction: float | None = None) -> ObjectSpec:
    """A random object of the scene's ranges (draws: shape, sizes, mass, friction); given values are kept."""
    shape = shape or SHAPES[int(rng.integers(len(SHAPES)))]
    lo, hi = size_range or cfg.object_size_range
    a = float(rng.uniform(lo, hi))
    b = float(rng.uniform(lo, hi)) if shape == "box" else a
    return ObjectSpec(shape=shape, size=(a, b), height=cfg.object_height,
                      mass=float(rng.uniform(*cfg.mass_range)) if mass is None else float(mass),
                      friction=float(rng.uniform(*cfg.friction_range)) if friction is None else float(friction), color=color)


@dataclass
class Episode:
    """A simulated push: everything the dataset stores for one clip.

    Shapes (``T`` frames, ``K`` = scene's object count):
        frames ``(T, H, W, 3)`` uint8; masks ``(T, H, W)`` uint8 (0 bg, 1..K objects, 255 pusher);
        states ``(T, K, 6)`` float32 world ``x, y, yaw, vx, vy, wz``;
        centroids_px ``(T, K, 2)`` projected object centres (u, v);
        velocities_px ``(T, K, 2)`` pixel velocity [px/frame]: forward difference of
        ``centroids_px`` (last frame repeats the previous), frame 0 carries the post-contact velocity;
        pusher_xy ``(T, 2)`` world; pusher_px ``(T, 2)`` pixels.
    """

    objects: list[ObjectSpec]
    stroke: PushStroke
    frames: np.ndarray
    masks: np.ndarray
    states: np.ndarray
    centroids_px: np.ndarray
    velocities_px: np.ndarray
    pusher_xy: np.ndarray
    pusher_px: np.ndarray
    pushed_id: int  # 1..K, or 0 for a miss
    contact_velocity: np.ndarray  # (K, 2) world velocity [m/s] just after first pusher contact (0 if untouched)
    events: list[dict]  # {"frame", "time", "a", "b"}; a/b are instance ids, PUSHER_ID for the pusher

    @property
    def collided(self) -> bool:
        """True when two objects touched each other."""
        return any(e["a"] != PUSHER_ID and e["b"] != PUSHER_ID for e in self.events)

    def describe(self) -> str:
        from kinemask_ros.text import ObjectMotion, describe

        disp = self.states[-1, :, :2] - self.states[0, :, :2]

        def motion(i: int) -> ObjectMotion:
            return ObjectMotion(self.objects[i - 1].name, float(disp[i - 1, 0]), float(disp[i - 1, 1]))

        if self.pushed_id == 0:
            return describe(None, [])
        hits = [(motion(e["a"]), motion(e["b"])) for e in self.events if e["a"] != PUSHER_ID and e["b"] != PUSHER_ID]
        return describe(motion(self.pushed_id), hits)


_PROBE_LOCK = threading.Lock()
_PROBE: dict = {"client": None, "cache": {}}


def _shaded_table_rgb(albedo: tuple[float, float, float], look: Look) -> np.ndarray:
    """``(3,)`` uint8: what TinyRenderer draws for a flat, upward table of colour ``albedo`` under ``look``'s light.

    A directional light without specular shades a plane uniformly, so one probe render (in a
    private PyBullet client, cached) gives the exact colour of every table pixel: the scene
    composes the table itself instead of rasterising a 2 m box at full resolution (that was
    ~85 % of a 640x480 render), bit-identical for the canonical look.
    """
    key = (tuple(albedo), tuple(look.light_direction), look.light_ambient, look.light_diffuse)
    with _PROBE_LOCK:
        if key in _PROBE["cache"]:
            return _PROBE["cache"][key]
        c = _PROBE["client"]
        if c is None or not pb.isConnected(c):
            c = _PROBE["client"] = pb.connect(pb.DIRECT)
        pb.resetSimulation(physicsClientId=c)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[1, 1, 0.01], rgbaColor=[*albedo, 1], physicsClientId=c)
        pb.createMultiBody(0, -1, vis, basePosition=[0, 0, -0.01], physicsClientId=c)
        view = pb.computeViewMatrix([0, 0, 1.5], [0, 0, 0], [0, 1, 0], physicsClientId=c)
        proj = pb.computeProjectionMatrixFOV(20, 1.0, 0.5, 3.0, physicsClientId=c)
        _, _, rgba, _, _ = pb.getCameraImage(4, 4, view, proj, renderer=pb.ER_TINY_RENDERER, lightDirection=list(look.light_direction),
                                             lightAmbientCoeff=look.light_ambient, lightDiffuseCoeff=look.light_diffuse,
                                             lightSpecularCoeff=0.0, shadow=0, physicsClientId=c)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(4, 4, 4)[2, 2, :3].copy()
        if len(_PROBE["cache"]) > 256:
            _PROBE["cache"].clear()
        _PROBE["cache"][key] = rgb
        return rgb


class TabletopScene:
    """A PyBullet world with its own physics client (several scenes can live in one process).

    Rendering (:meth:`render`, :meth:`render_rgbd`) draws the bodies with TinyRenderer and
    composes the table plane (colour, texture, depth) analytically from the camera model; the
    appearance comes from a :class:`~kinemask_ros.sim_bridge.look.Look` (:meth:`apply_look`,
    :meth:`sample_look`), the canonical one by default.
    """

    def __init__(self, config: SceneConfig | None = None) -> None:
        self.config = config or SceneConfig()
        self.camera = CameraModel(self.config.camera)
        self._view = self.camera.gl_view_matrix()
        self._proj = self.camera.gl_projection_matrix()
        self._client = pb.connect(pb.DIRECT)
        self._objects: list[ObjectSpec] = []
        self._bodies: list[int] = []
        self._look = Look()
        self._noise_rng = np.random.default_rng(0)
        self._table_rgb_img: np.ndarray | None = None
        self._table_geometry()
        self._build_static()
        if not self.config.look.is_canonical:
            self.sample_look(np.random.default_rng(0))

    # ------------------------------------------------------------------ construction
    def _build_static(self) -> None:
        c = self._client
        pb.resetSimulation(physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        pb.setTimeStep(1.0 / self.config.sim_hz, physicsClientId=c)
        pb.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=c)
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[1, 1, 0.01], physicsClientId=c)
        # a transparent visual (TinyRenderer skips it; without any visual it would draw the collision box):
        # the table top is composed by _render_raw from the camera model (exact, and ~7x cheaper at 640x480)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[1, 1, 0.01], rgbaColor=[*TABLE_RGB, 0], physicsClientId=c)
        self._table = pb.createMultiBody(0, col, vis, basePosition=[0, 0, -0.01], physicsClientId=c)
        pb.changeDynamics(self._table, -1, lateralFriction=1.0, physicsClientId=c)
        r, h = self.config.pusher_radius, 0.05
        col = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=r, height=h, physicsClientId=c)
        vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=r, length=h, rgbaColor=[*PUSHER_RGB, 1], physicsClientId=c)
        self._pusher_z = h / 2 + 0.002
        self._pusher = pb.createMultiBody(1.0, col, vis, basePosition=[0, 0, self._pusher_z + 1.0], physicsClientId=c)
        pb.setCollisionFilterPair(self._pusher, self._table, -1, -1, 0, physicsClientId=c)
        self._pusher_cid = pb.createConstraint(
            self._pusher, -1, -1, -1, pb.JOINT_FIXED, [0, 0, 0], [0, 0, 0], [0, 0, self._pusher_z + 1.0], physicsClientId=c
        )
        self._bodies = []
        self._objects = []

    def close(self) -> None:
        if self._client is not None and pb.isConnected(self._client):
            pb.disconnect(self._client)
        self._client = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def objects(self) -> list[ObjectSpec]:
        return list(self._objects)

    @property
    def num_objects(self) -> int:
        return len(self._objects)

    # ------------------------------------------------------------------ sampling
    def sample_objects(self, rng: np.random.Generator, num_objects: int | None = None) -> tuple[list[ObjectSpec], np.ndarray]:
        """Random specs and non-overlapping poses ``(K, 3)`` (x, y, yaw) from ``rng``."""
        cfg = self.config
        k = int(rng.integers(cfg.min_objects, cfg.max_objects + 1)) if num_objects is None else int(num_objects)
        if not 1 <= k <= len(PALETTE):
            raise ValueError(f"num_objects must be in [1, {len(PALETTE)}], got {k}")
        colors = rng.choice(list(PALETTE), size=k, replace=False)
        specs, poses = [], []
        for i in range(k):
            spec = random_spec(rng, cfg, str(colors[i]))
            for _ in range(200):
                pose = np.array([*rng.uniform(-cfg.placement_half_extent, cfg.placement_half_extent, 2), rng.uniform(-math.pi, math.pi)])
                if all(
                    np.linalg.norm(pose[:2] - q[:2]) > spec.bounding_radius + s.bounding_radius + cfg.min_clearance
                    for s, q in zip(specs, poses)
                ):
                    break
            else:
                break  # table is full: keep the objects placed so far
            specs.append(spec)
            poses.append(pose)
        return specs, np.array(poses, dtype=float).reshape(-1, 3)

    def set_objects(self, specs: list[ObjectSpec], poses: np.ndarray) -> None:
        """Replace the scene's objects. ``poses`` is ``(K, 3)``: x, y, yaw (objects rest on the table)."""
        poses = np.asarray(poses, dtype=float).reshape(-1, 3)
        if len(specs) != len(poses):
            raise ValueError(f"got {len(specs)} object specs but {len(poses)} poses")
        if not 1 <= len(specs) <= 8:
            raise ValueError(f"a scene holds 1..8 objects, got {len(specs)}")
        if not np.all(np.isfinite(poses)):
            raise ValueError("object poses must be finite")
        c = self._client
        for b in self._bodies:
            pb.removeBody(b, physicsClientId=c)
        self._bodies, self._objects = [], list(specs)
        for k, (spec, pose) in enumerate(zip(specs, poses)):
            rgba = [*self._look.object_color(k + 1, PALETTE[spec.color]), 1]
            if spec.shape == "box":
                col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[*spec.size, spec.height / 2], physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[*spec.size, spec.height / 2], rgbaColor=rgba, physicsClientId=c)
            else:
                col = pb.createCollisionShape(pb.GEOM_CYLINDER, radius=spec.size[0], height=spec.height, physicsClientId=c)
                vis = pb.createVisualShape(pb.GEOM_CYLINDER, radius=spec.size[0], length=spec.height, rgbaColor=rgba, physicsClientId=c)
            body = pb.createMultiBody(
                spec.mass, col, vis, basePosition=[pose[0], pose[1], spec.height / 2],
                baseOrientation=pb.getQuaternionFromEuler([0, 0, pose[2]]), physicsClientId=c,
            )
            pb.changeDynamics(body, -1, lateralFriction=spec.friction, spinningFriction=0.001, rollingFriction=0.0,
                              linearDamping=0.0, angularDamping=0.0, physicsClientId=c)
            self._bodies.append(body)
        self._park_pusher()

    def _park_pusher(self, xy: np.ndarray | None = None) -> None:
        """Put the pusher at ``xy`` on the table, or lift it out of view when ``xy`` is None."""
        c = self._client
        pos = [0.0, 0.0, self._pusher_z + 1.0] if xy is None else [float(xy[0]), float(xy[1]), self._pusher_z]
        pb.resetBasePositionAndOrientation(self._pusher, pos, [0, 0, 0, 1], physicsClientId=c)
        pb.resetBaseVelocity(self._pusher, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        pb.changeConstraint(self._pusher_cid, pos, maxForce=300.0, physicsClientId=c)

    # ------------------------------------------------------------------ state
    def poses(self) -> np.ndarray:
        """``(K, 3)`` x, y, yaw of every object."""
        out = np.zeros((len(self._bodies), 3))
        for i, b in enumerate(self._bodies):
            pos, orn = pb.getBasePositionAndOrientation(b, physicsClientId=self._client)
            out[i] = (pos[0], pos[1], pb.getEulerFromQuaternion(orn)[2])
        return out

    def states(self) -> np.ndarray:
        """``(K, 6)`` x, y, yaw, vx, vy, wz of every object."""
        out = np.zeros((len(self._bodies), 6))
        out[:, :3] = self.poses()
        for i, b in enumerate(self._bodies):
            lin, ang = pb.getBaseVelocity(b, physicsClientId=self._client)
            out[i, 3:] = (lin[0], lin[1], ang[2])
        return out

    def object_centroids_px(self) -> np.ndarray:
        """``(K, 2)`` projected centres of the objects (u, v)."""
        p = self.poses()
        z = np.array([[s.height / 2] for s in self._objects])
        return self.camera.project(np.concatenate([p[:, :2], z], axis=1))

    # ------------------------------------------------------------------ look
    @property
    def look(self) -> Look:
        """The appearance renders use now (:meth:`apply_look`)."""
        return self._look

    def apply_look(self, look: Look) -> None:
        """Use ``look`` from now on: object colours (pybullet ``rgbaColor``), table colour/texture,
        light, and a fresh per-frame noise stream seeded by ``look.noise_seed``."""
        if not isinstance(look, Look):
            raise ValueError(f"apply_look needs a Look (LookConfig.sample(rng)), got {type(look).__name__}")
        self._look = look
        self._noise_rng = np.random.default_rng(look.noise_seed)
        self._noise_banks: dict[str, np.ndarray] = {}
        self._table_rgb_img = None
        for i, (b, spec) in enumerate(zip(self._bodies, self._objects)):
            pb.changeVisualShape(b, -1, rgbaColor=[*look.object_color(i + 1, PALETTE[spec.color]), 1], physicsClientId=self._client)

    def visible_name(self, instance_id: int, rgb: np.ndarray | None = None, ids: np.ndarray | None = None) -> str:
        """How a person would name object ``instance_id`` (1-based) in the image: its colour under the
        current look (the generic colour-naming rule of :mod:`kinemask_ros.segmentation.colors`) and
        its shape, e.g. "cyan box"; the palette name for the canonical look. With a rendered frame
        (``rgb (H, W, 3)`` uint8 + ``ids (H, W)``) the colour is that of the object's pixels as the
        camera sees them (light and shading included: what a segmenter names), else its albedo."""
        spec = self._objects[instance_id - 1]
        if self._look.is_canonical or self._look.object_rgb is None:
            return spec.name
        from kinemask_ros.segmentation.colors import color_name

        if rgb is not None and ids is not None and (np.asarray(ids) == instance_id).any():
            c = np.asarray(rgb)[np.asarray(ids) == instance_id].reshape(-1, 3).mean(0) / 255.0
        else:
            c = self._look.object_color(instance_id, PALETTE[spec.color])
        return f"{color_name(c)} {spec.shape}"

    def sample_look(self, rng: np.random.Generator) -> Look:
        """Draw a look from ``config.look`` with ``rng`` (nothing is drawn for the canonical config), apply it, return it."""
        look = self.config.look.sample(rng)
        self.apply_look(look)
        return look

    def _table_geometry(self) -> None:
        """Per camera pixel (centre): where its ray meets the table plane, and that point's depth."""
        cam = self.camera
        H, W = cam.height, cam.width
        jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
        rays_cam = np.stack([jj, ii, np.ones_like(jj)], -1) @ np.linalg.inv(cam.K).T  # z = 1 in the camera frame
        rays_w = rays_cam @ cam.R
        eye = cam.eye
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -eye[2] / rays_w[..., 2]  # = depth along the optical axis, since rays have z_cam = 1
        xy = eye[:2] + s[..., None] * rays_w[..., :2]
        hit = (s > cam.config.near) & (s < cam.config.far) & np.all(np.abs(xy) <= 1.0, axis=-1)
        self._table_hit = hit
        self._table_xy = np.where(hit[..., None], xy, 0.0)
        self._table_depth = np.where(hit, s, np.nan).astype(np.float32)

    def _table_image(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 table colour as TinyRenderer would shade it (texture in table coordinates)."""
        if self._table_rgb_img is None:
            look = self._look
            if look.table_texture == "flat" or look.texture_contrast == 0.0:
                shade = _shaded_table_rgb(tuple(look.table_rgb), look)
                img = np.broadcast_to(shade, self._table_xy.shape[:-1] + (3,)).copy()
            else:
                grey = _shaded_table_rgb((0.5, 0.5, 0.5), look).astype(np.float32) / (0.5 * 255.0)
                albedo = look.table_albedo(self._table_xy).astype(np.float32)
                img = np.clip(albedo * 255.0 * grey, 0, 255).astype(np.uint8)
            self._table_rgb_img = img
        return self._table_rgb_img

    def _render_raw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """rgb ``(H, W, 3)`` uint8 (table composed), instance ids ``(H, W)`` uint8, clean depth ``(H, W)`` float32 [m], seg."""
        cam, look = self.config.camera, self._look
        _, _, rgba, zbuf, seg = pb.getCameraImage(
            cam.width, cam.height, self._view, self._proj, renderer=pb.ER_TINY_RENDERER,
            lightDirection=list(look.light_direction), lightAmbientCoeff=look.light_ambient, lightDiffuseCoeff=look.light_diffuse,
            lightSpecularCoeff=look.light_specular, shadow=0, physicsClientId=self._client,
        )
        H, W = cam.height, cam.width
        seg = np.asarray(seg, dtype=np.int32).reshape(H, W)
        # Work on the few pixels where a body is drawn (or nothing at all, beyond the table's edge);
        # everything else is the composed table (colour from _table_image, exact plane depth).
        idx = np.flatnonzero((seg >= 0) | ~self._table_hit)
        seg_i = seg.reshape(-1)[idx]
        # OpenGL depth buffer in [0, 1] -> z along the optical axis [m]
        n, f = np.float32(cam.near), np.float32(cam.far)
        zb = np.asarray(zbuf, dtype=np.float32).reshape(-1)[idx]
        z = f * n / (f - (f - n) * zb)
        # the table plane hides whatever lies below it (objects sink < 1 mm into it in contact)
        z_table = self._table_depth.reshape(-1)[idx]
        seg_i = np.where((seg_i >= 0) & (z > z_table), np.int32(-1), seg_i)
        keep = (seg_i >= 0) | ~self._table_hit.reshape(-1)[idx]  # body pixels, and pixels that see no table
        idx, seg_i, z = idx[keep], seg_i[keep], z[keep]
        rgb = self._table_image().copy()
        rgb.reshape(-1, 3)[idx] = np.asarray(rgba, dtype=np.uint8).reshape(-1, 4)[idx, :3]
        if look.rgb_gain != (1.0, 1.0, 1.0):
            rgb = np.clip(rgb * np.asarray(look.rgb_gain, np.float32), 0, 255).astype(np.uint8)
        lut = np.zeros(max([self._pusher, *self._bodies]) + 2, np.uint8)  # body uid + 1 -> instance id (index 0: nothing)
        lut[np.asarray(self._bodies, dtype=np.int64) + 1] = np.arange(1, len(self._bodies) + 1)
        lut[self._pusher + 1] = PUSHER_ID
        inst = np.zeros(H * W, np.uint8)
        inst[idx] = lut[np.clip(seg_i + 1, 0, len(lut) - 1)]
        depth = self._table_depth.copy()
        depth.reshape(-1)[idx] = np.where(seg_i >= 0, z, np.float32(np.nan))
        return rgb, inst.reshape(H, W), depth, seg

    def add_sensor_noise(self, rgb: np.ndarray | None = None, depth: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-frame sensor noise of the current look (new copies; inputs are not changed).

        RGB: Gaussian, ``rgb_noise_std`` levels. Depth ``(H, W)`` [m]: Gaussian with std
        ``depth_noise_std * z^2``, then ``depth_hole_fraction`` of the pixels set to NaN or 0.
        Canonical look: returned unchanged (no draws). For speed (640x480 at 30 Hz) each frame
        takes a window at a random offset of a bank of 2x the image's worth of noise drawn once
        per look: per-pixel statistics are exact, consecutive frames are shifted copies.
        """
        look, g = self._look, self._noise_rng
        if rgb is not None and look.rgb_noise_std > 0:
            bank = self._bank("rgb", rgb.size, lambda n: np.rint(g.standard_normal(n, dtype=np.float32) * look.rgb_noise_std).astype(np.int16))
            off = int(g.integers(rgb.size + 1))
            rgb = np.clip(rgb.astype(np.int16) + bank[off:off + rgb.size].reshape(rgb.shape), 0, 255).astype(np.uint8)
        if depth is not None and (look.depth_noise_std > 0 or look.depth_hole_fraction > 0):
            depth = np.array(depth, dtype=np.float32)
            n = depth.size
            if look.depth_noise_std > 0:
                bank = self._bank("depth", n, lambda m: g.standard_normal(m, dtype=np.float32) * np.float32(look.depth_noise_std))
                off = int(g.integers(n + 1))
                depth += bank[off:off + n].reshape(depth.shape) * depth * depth
            if look.depth_hole_fraction > 0:
                bank = self._bank("holes", n, lambda m: g.random(m, dtype=np.float32) < look.depth_hole_fraction)
                off = int(g.integers(n + 1))
                depth[bank[off:off + n].reshape(depth.shape)] = np.nan if look.depth_hole_value == "nan" else 0.0
        return rgb, depth

    def _bank(self, key: str, n: int, make) -> np.ndarray:
        banks = self.__dict__.setdefault("_noise_banks", {})
        b = banks.get(key)
        if b is None or b.size != 2 * n:
            b = banks[key] = make(2 * n)
        return b

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB ``(H, W, 3)`` uint8 and instance mask ``(H, W)`` uint8 (0 bg, 1..K objects, 255 pusher).

        With the current look (sensor noise on RGB included); the canonical look renders exactly
        as before looks existed.
        """
        rgb, inst, _, _ = self._render_raw()
        rgb, _ = self.add_sensor_noise(rgb, None)
        return rgb, inst

    def render_rgbd(self, noise: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB ``(H, W, 3)`` uint8, instance ids ``(H, W)`` uint8 (as :meth:`render`), depth ``(H, W)`` float32.

        Depth is z along the optical axis [m] (an OpenCV-style depth image, registered to the
        RGB: same pixels, same intrinsics), linearised from the depth buffer with the camera's
        near/far; the table plane is exact. Pixels that see nothing within near/far are NaN.
        ``noise``: add the look's per-frame sensor noise (RGB noise, depth noise and holes).
        """
        rgb, inst, depth, _ = self._render_raw()
        if noise:
            rgb, depth = self.add_sensor_noise(rgb, depth)
        return rgb, inst, depth

    # ------------------------------------------------------------------ pushing
    def resolve_start(self, stroke: PushStroke) -> PushStroke:
        """Move the start back along the stroke until the pusher does not overlap any object.

        A user (or a planner) may ask to start inside an object; dropping the finger there would
        make the physics explode, so the stroke is shifted back in 5 mm steps (its end point stays
        where it was asked to be). Returns the stroke unchanged when the start is clear.
        """
        poses = self.poses()
        r = self.config.pusher_radius + 0.002
        start, dirn = stroke.start, stroke.direction
        end = stroke.end
        for k in range(80):
            p = start - 0.005 * k * dirn
            if all(s.distance_to(q, p) > r for s, q in zip(self._objects, poses)):
                if k == 0:
                    return stroke
                return PushStroke(float(p[0]), float(p[1]), stroke.theta, float(np.linalg.norm(end - p)), stroke.speed)
        raise ValueError("could not find a free start point for the push stroke")

    def first_contact(self, stroke: PushStroke) -> int:
        """Id (1..K) of the object the pusher disk would touch first along the stroke, 0 for a miss (geometry only)."""
        poses = self.poses()
        r = self.config.pusher_radius
        n = max(2, int(stroke.length / 0.002) + 1)
        for s in np.linspace(0.0, stroke.length, n):
            p = stroke.start + s * stroke.direction
            for i, (spec, q) in enumerate(zip(self._objects, poses)):
                if spec.distance_to(q, p) <= r:
                    return i + 1
        return 0

    def execute(self, stroke: PushStroke, num_frames: int | None = None, render: bool = True) -> Episode:
        """Run a push from the current state and record ``num_frames`` frames (frame 0 = before motion)."""
        if not self._bodies:
            raise RuntimeError("the scene has no objects: call set_objects() first")
        cfg = self.config
        T = cfg.num_frames if num_frames is None else int(num_frames)
        if T < 2:
            raise ValueError(f"num_frames must be >= 2, got {T}")
        stroke = self.resolve_start(stroke)
        c, K = self._client, len(self._bodies)
        H, W = cfg.camera.height, cfg.camera.width
        self._park_pusher(stroke.start)
        frames = np.zeros((T, H, W, 3), np.uint8)
        masks = np.zeros((T, H, W), np.uint8)
        states = np.zeros((T, K, 6), np.float32)
        cents = np.zeros((T, K, 2), np.float32)
        pusher_xy = np.zeros((T, 2), np.float32)
        body_to_id = {b: i + 1 for i, b in enumerate(self._bodies)}
        body_to_id[self._pusher] = PUSHER_ID
        seen: set[tuple[int, int]] = set()
        events: list[dict] = []
        first_touch_step: dict[int, int] = {}
        contact_vel = np.zeros((K, 2), np.float32)
        probe_steps = max(1, round(0.04 * cfg.sim_hz))  # measure post-contact velocity 40 ms after first touch
        dt = 1.0 / cfg.sim_hz
        step = 0
        for t in range(T):
            if t > 0:
                for _ in range(cfg.steps_per_frame):
                    step += 1
                    target = stroke.position_at(step * dt)
                    pb.changeConstraint(self._pusher_cid, [float(target[0]), float(target[1]), self._pusher_z], maxForce=300.0, physicsClientId=c)
                    pb.stepSimulation(physicsClientId=c)
                    for cp in pb.getContactPoints(physicsClientId=c):
                        a, b = body_to_id.get(cp[1]), body_to_id.get(cp[2])
                        if a is None or b is None or cp[8] > 1e-3:
                            continue
                        key = (min(a, b), max(a, b))
                        if key not in seen:
                            seen.add(key)
                            # order: the pusher first; otherwise the faster-moving body is the hitter
                            if b == PUSHER_ID or (a != PUSHER_ID and self._speed(b) > self._speed(a)):
                                a, b = b, a
                            events.append({"frame": t, "time": step * dt, "a": int(a), "b": int(b)})
                            if a == PUSHER_ID and b not in first_touch_step:
                                first_touch_step[b] = step
                    for i, s0 in first_touch_step.items():
                        if step - s0 == probe_steps:
                            lin, _ = pb.getBaseVelocity(self._bodies[i - 1], physicsClientId=c)
                            contact_vel[i - 1] = lin[:2]
            st = self.states()
            states[t] = st
            cents[t] = self.object_centroids_px()
            pos, _ = pb.getBasePositionAndOrientation(self._pusher, physicsClientId=c)
            pusher_xy[t] = pos[:2]
            if render:
                frames[t], masks[t] = self.render()
        vel = np.zeros_like(cents)
        vel[:-1] = cents[1:] - cents[:-1]
        vel[-1] = vel[-2]
        pushed = min(first_touch_step, key=first_touch_step.get) if first_touch_step else 0
        vel[0] = 0.0
        if pushed:
            j = pushed - 1
            v_px_s = self.camera.table_velocity_to_pixels(states[0, j, :2], contact_vel[j], z=self._objects[j].height / 2)
            vel[0, j] = v_px_s * cfg.frame_dt
        return Episode(
            objects=list(self._objects), stroke=stroke, frames=frames, masks=masks, states=states,
            centroids_px=cents, velocities_px=vel, pusher_xy=pusher_xy,
            pusher_px=self.camera.project_table(pusher_xy.astype(float)).astype(np.float32),
            pushed_id=int(pushed), contact_velocity=contact_vel, events=events,
        )

    def _speed(self, instance_id: int) -> float:
        if instance_id == PUSHER_ID:
            return float("inf")
        lin, _ = pb.getBaseVelocity(self._bodies[instance_id - 1], physicsClientId=self._client)
        return math.hypot(lin[0], lin[1])

    def out_of_workspace(self) -> np.ndarray:
        """``(K,)`` bool: object centre outside the workspace square or fallen off the table plane."""
        st = self.poses()
        w = self.config.workspace_half_extent
        return np.any(np.abs(st[:, :2]) > w, axis=1)


def spec_to_dict(spec: ObjectSpec) -> dict:
    return asdict(spec)


def spec_from_dict(d: dict) -> ObjectSpec:
    return ObjectSpec(shape=d["shape"], size=tuple(d["size"]), height=d["height"], mass=d["mass"], friction=d["friction"], color=d["color"])
