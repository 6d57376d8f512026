"""PushT (LeRobot's ``gym-pusht`` 0.1.8) behind the planar-push adapter protocol.

The real ``gym_pusht/PushT-v0`` env (pymunk physics, 512x512 world with y down, a PD-controlled
agent disk of radius 15 pushing a T to the fixed goal pose ``(256, 256, pi/4)``) with what a
stroke planner needs: exact get/set state, strokes (approach around the T, then a straight sweep)
executed with ordinary env steps, RGB + instance masks at any size, and the T's SE(2) pose.

Units: PushT's own world, 1 unit = 1 px of its 512 x 512 arena (there is no metric scale), so a
:class:`~kinemask_ros.push.PushStroke` here has ``x, y, length`` in px and ``speed`` in px/s.

Facts that shape this module (measured on 0.1.8, see ``docs/pusht.md``):

* ``reset(options={"reset_to_state": s})`` sets the block's position before its angle, and
  pymunk rotates about the centre of gravity, so the block ends elsewhere than asked. Our
  :meth:`PushTAdapter.set_state` rebuilds the pymunk space and sets the angle first, then the
  position, then the velocities: the state read back is the state given (bit-identical).
* ``deepcopy`` of the env fails and copies of a live mid-episode env diverge (pymunk keeps
  contact caches). The adapter therefore rebuilds the space from its state at every stroke
  boundary, in the live episode too: a simulation from :meth:`get_state` then reproduces the
  next stroke of the live env bit for bit (tested).
* Quasi-static: ``space.damping = 0`` removes all velocity every substep, so the T never slides.
* The reported block pose is the body origin, the middle of the bar's top edge, not the centre
  of gravity (local ``(0, 45)``); poses here are the body origin too, as gym-pusht reports them.

    adapter = PushTAdapter()
    obs = adapter.reset(seed=0)
    result = adapter.execute(PushStroke(x=200, y=180, theta=0.3, length=60, speed=250))
    result.coverage, result.env_steps, adapter.poses()        # (1, 3) x, y, yaw of the T
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass
from importlib import metadata

import numpy as np

from kinemask_ros.envs.adapter import AdapterSpec, Observation, PlaneCamera, StrokeResult, UnreachableStroke
from kinemask_ros.push import PushStroke

ENV_ID = "gym_pusht/PushT-v0"
PUSHT_VERSION = "0.1.8"
INSTALL_HINT = "pip install -e .[pusht]   (installs gym-pusht==0.1.8 from PyPI)"

#: the arena: walls are segments at 5 and 506 with radius 2, so their inner faces lie at 7 and 504
WORLD_SIZE = 512.0
ARENA_LOW, ARENA_HIGH = 7.0, 504.0
WALL_LOW, WALL_HIGH = 5.0, 506.0
AGENT_RADIUS = 15.0
#: the T in body-local coordinates (gym-pusht ``add_tee`` with scale 30, length 4): bar, stem
BAR = np.array([[-60.0, 0.0], [60.0, 0.0], [60.0, 30.0], [-60.0, 30.0]])
STEM = np.array([[-15.0, 30.0], [15.0, 30.0], [15.0, 120.0], [-15.0, 120.0]])
#: rectangles as (centre x, centre y, half width, half height) in the body frame
RECTS = np.array([[0.0, 15.0, 60.0, 15.0], [0.0, 75.0, 15.0, 45.0]])
COG = np.array([0.0, 45.0])
#: gym-pusht's keypoints: the 4 vertices of each shape in its vertex order (``get_keypoints``)
KEYPOINTS_LOCAL = np.array([[-60, 30], [60, 30], [60, 0], [-60, 0], [-15, 30], [-15, 120], [15, 120], [15, 30]], float)
GOAL_POSE = np.array([256.0, 256.0, math.pi / 4])
SUCCESS_COVERAGE = 0.95
#: radius of the T's circumscribed circle about its centre of gravity
T_RADIUS = float(np.max(np.linalg.norm(np.concatenate([BAR, STEM]) - COG, axis=1)))


def require_gym_pusht():
    """Import ``gym_pusht`` (registers ``gym_pusht/PushT-v0``) after checking it is version 0.1.8.

    Raises:
        ImportError: not installed, or another version (seeding and angle sampling changed
            after 0.1.5, so numbers are only comparable on the pinned version).
    """
    try:
        version = metadata.version("gym-pusht")
    except metadata.PackageNotFoundError:
        raise ImportError(f"the PushT adapter needs gym-pusht=={PUSHT_VERSION}, which is not installed; install it with: {INSTALL_HINT}") from None
    if version != PUSHT_VERSION:
        raise ImportError(f"the PushT adapter needs gym-pusht=={PUSHT_VERSION}, found {version} (seeding and angle sampling differ "
                          f"between versions); install the pinned one with: {INSTALL_HINT}")
    import gym_pusht  # noqa: F401  (registers the env id)

    return gym_pusht


# ----------------------------------------------------------------------------- geometry
def rot(yaw: np.ndarray) -> np.ndarray:
    """``(..., 2, 2)`` rotation matrices (pymunk's convention: ``R @ local + position``)."""
    yaw = np.asarray(yaw, float)
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def to_world(pose: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Body-local points ``(M, 2)`` of a T at ``pose (..., 3)`` -> world ``(..., M, 2)``."""
    pose = np.asarray(pose, float)
    return np.einsum("...ij,mj->...mi", rot(pose[..., 2]), np.asarray(local, float)) + pose[..., None, :2]


def to_local(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """World points ``(..., M, 2)`` -> the body frame of the T at ``pose (..., 3)``."""
    pose = np.asarray(pose, float)
    d = np.asarray(points, float) - pose[..., None, :2]
    return np.einsum("...ji,...mj->...mi", rot(pose[..., 2]), d)


def keypoints(pose: np.ndarray) -> np.ndarray:
    """The T's 8 gym-pusht keypoints ``(..., 8, 2)`` at ``pose (..., 3)``."""
    return to_world(pose, KEYPOINTS_LOCAL)


def cog_of(pose: np.ndarray) -> np.ndarray:
    """Centre of gravity ``(..., 2)`` of the T at ``pose (..., 3)`` (body origin + R @ (0, 45))."""
    return to_world(pose, COG[None])[..., 0, :]


def local_distance(local: np.ndarray) -> np.ndarray:
    """Signed distance ``(...,)`` from body-local points ``(..., 2)`` to the T (negative inside)."""
    p = np.asarray(local, float)[..., None, :]
    q = np.abs(p - RECTS[:, :2]) - RECTS[:, 2:]  # (..., 2 rects, 2)
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    inside = np.minimum(q.max(-1), 0.0)
    return (outside + inside).min(-1)


def t_distance(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed distance ``(..., M)`` from world points ``(..., M, 2)`` to the T at ``pose (..., 3)``."""
    return local_distance(to_local(pose, points))


def closest_local(p: np.ndarray) -> np.ndarray:
    """Closest point ``(N, 2)`` of the T's outline or interior (body frame) to body-frame points ``(N, 2)``."""
    p = np.asarray(p, float).reshape(-1, 2)
    best, out = np.full(len(p), np.inf), np.zeros_like(p)
    for cx, cy, hx, hy in RECTS:
        q = np.stack([np.clip(p[:, 0], cx - hx, cx + hx), np.clip(p[:, 1], cy - hy, cy + hy)], 1)
        dd = np.linalg.norm(q - p, axis=1)
        better = dd < best
        best[better], out[better] = dd[better], q[better]
    return out


def wrap(a: np.ndarray) -> np.ndarray:
    return (np.asarray(a, float) + math.pi) % (2 * math.pi) - math.pi


def coverage(pose: np.ndarray, goal: np.ndarray = GOAL_POSE) -> float:
    """gym-pusht's coverage: area of the T at ``pose`` inside the goal T / area of the T."""
    import shapely.geometry as sg

    def poly(p):
        return sg.MultiPolygon([sg.Polygon(to_world(p, BAR)), sg.Polygon(to_world(p, STEM))])

    g = poly(np.asarray(goal, float))
    return float(g.intersection(poly(np.asarray(pose, float))).area / g.area)


# ----------------------------------------------------------------------------- config and state
@dataclass(frozen=True)
class PushTConfig:
    """How strokes are executed with ordinary PushT env steps (10 Hz, agent = PD-tracked target).

    Attributes:
        approach_speed: agent speed along the approach path [px/s] (one env step is 0.1 s).
        final_speed: speed of the last leg into the stroke's start (no lead there: no overshoot).
        lead: feed-forward lead [s] of the commanded target along the path (the PD loop lags
            ``k_v / k_p = 0.2 s`` behind a moving target; leading by it keeps the agent on the path).
        clearance: margin [px] the approach path keeps between the agent disk and the T.
        orbit_margin: the approach orbits the T at ``T_RADIUS + agent radius + clearance + orbit_margin``
            around its centre of gravity.
        settle_steps: at most this many env steps holding the target at the stroke's start
            until the agent is within ``settle_tol`` px of it.
        hold_steps: env steps holding the target at the stroke's end (the PD agent catches up).
        max_stroke_steps: refuse strokes whose execution would need more env steps.
        image_size: default size of :meth:`PushTAdapter.observe` images.
    """

    approach_speed: float = 400.0
    final_speed: float = 250.0
    lead: float = 0.2
    clearance: float = 20.0
    orbit_margin: float = 5.0
    settle_steps: int = 3
    settle_tol: float = 1.5
    hold_steps: int = 1
    max_stroke_steps: int = 60
    image_size: int = 96

    def __post_init__(self) -> None:
        for name in ("approach_speed", "final_speed", "clearance", "orbit_margin", "settle_tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"PushTConfig.{name} must be a finite number > 0, got {v!r}")
        if not (math.isfinite(self.lead) and 0.0 <= self.lead <= 1.0):
            raise ValueError(f"PushTConfig.lead must be in [0, 1] s, got {self.lead!r}")
        for name, lo in (("settle_steps", 0), ("hold_steps", 0), ("max_stroke_steps", 2), ("image_size", 8)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"PushTConfig.{name} must be an int >= {lo}, got {v!r}")

    @property
    def orbit_radius(self) -> float:
        return T_RADIUS + AGENT_RADIUS + self.clearance + self.orbit_margin


@dataclass(frozen=True)
class PushTState:
    """Everything the pymunk space holds between strokes (floats, so a JSON round trip is exact).

    ``block`` is the body origin ``(x, y, yaw)`` as gym-pusht reports it; ``steps`` counts the
    env steps of the episode so far (the official budget is 300).
    """

    agent: tuple[float, float]
    agent_velocity: tuple[float, float]
    block: tuple[float, float, float]
    block_velocity: tuple[float, float]
    block_angular_velocity: float
    steps: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PushTState":
        try:
            return cls(tuple(map(float, d["agent"])), tuple(map(float, d["agent_velocity"])), tuple(map(float, d["block"])),
                       tuple(map(float, d["block_velocity"])), float(d["block_angular_velocity"]), int(d.get("steps", 0)))
        except (KeyError, TypeError) as e:
            raise ValueError(f"a PushT state needs agent, agent_velocity, block, block_velocity, block_angular_velocity: {e}") from None

    def check(self) -> None:
        """Raise ``ValueError`` for non-finite values or a state outside the arena."""
        vals = [*self.agent, *self.agent_velocity, *self.block, *self.block_velocity, self.block_angular_velocity]
        if len(self.agent) != 2 or len(self.agent_velocity) != 2 or len(self.block) != 3 or len(self.block_velocity) != 2:
            raise ValueError(f"PushTState has the wrong number of values: {self}")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"PushTState values must be finite, got {self}")
        ax, ay = self.agent
        if not (0.0 <= ax <= WORLD_SIZE and 0.0 <= ay <= WORLD_SIZE):
            raise ValueError(f"agent position ({ax:g}, {ay:g}) is outside the {WORLD_SIZE:g} x {WORLD_SIZE:g} PushT arena")
        kp = to_world(np.array(self.block), np.concatenate([BAR, STEM]))
        # gym-pusht's own resets can leave a corner a few px in or past a wall (its physics pushes
        # it back); such states only come from the env itself (reset, strokes), never checked here
        cog = cog_of(np.array(self.block))
        if not (ARENA_LOW <= cog[0] <= ARENA_HIGH and ARENA_LOW <= cog[1] <= ARENA_HIGH) or kp.min() < 0.0 or kp.max() > WORLD_SIZE:
            raise ValueError(f"the T at (x={self.block[0]:g}, y={self.block[1]:g}, yaw={self.block[2]:g}) is outside the arena: its corners "
                             f"span [{kp.min():.1f}, {kp.max():.1f}] px (the world is [0, {WORLD_SIZE:g}]) and its centre is at "
                             f"({cog[0]:.1f}, {cog[1]:.1f}) (walls at {ARENA_LOW:g} and {ARENA_HIGH:g})")
        if self.steps < 0:
            raise ValueError(f"PushTState.steps must be >= 0, got {self.steps}")


# ----------------------------------------------------------------------------- the adapter
class PushTAdapter:
    """The real ``gym_pusht/PushT-v0`` env as a :class:`~kinemask_ros.envs.adapter.PlanarPushAdapter`.

    One object (id 1, the T); the agent is the pusher (mask id 255). Strokes are executed with
    the env's own ``step`` (the physics loop of ``PushTEnv.step``), so step counts and coverage are
    the official ones; the space is rebuilt from :meth:`get_state` at every stroke boundary.
    """

    def __init__(self, config: PushTConfig | None = None, render: bool = True):
        require_gym_pusht()
        import gymnasium as gym

        self.config = config or PushTConfig()
        self.env = gym.make(ENV_ID, obs_type="state", render_mode="rgb_array", disable_env_checker=True).unwrapped
        self.spec = AdapterSpec(name="pusht", units="px", world_low=(0.0, 0.0), world_high=(WORLD_SIZE, WORLD_SIZE),
                                pusher_radius=AGENT_RADIUS, object_ids=(1,), goal=tuple(GOAL_POSE.tolist()))
        self._render = render
        self._state: PushTState | None = None
        self.max_coverage = 0.0

    # -------------------------------------------------------------- state
    def reset(self, seed: int | None = None) -> Observation:
        """gym-pusht's own reset (its RNG, its legacy position-then-angle order), then rebuilt."""
        self.env.reset(seed=seed)
        self._state = self._read(steps=0)
        self.set_state(self._state, check=False)
        self.max_coverage = self.coverage()
        return self.observe()

    def _read(self, steps: int) -> PushTState:
        e = self.env
        return PushTState(tuple(map(float, e.agent.position)), tuple(map(float, e.agent.velocity)),
                          (*map(float, e.block.position), float(e.block.angle)), tuple(map(float, e.block.velocity)),
                          float(e.block.angular_velocity), int(steps))

    def get_state(self) -> PushTState:
        if self._state is None:
            raise RuntimeError("call reset() or set_state() first")
        return self._read(self._state.steps)

    def set_state(self, state: PushTState | dict, check: bool = True) -> None:
        """Rebuild the pymunk space at ``state`` (angle before position, so the T ends where asked).

        ``check=False`` is for states the env produced itself (reset, the end of a stroke), which
        gym-pusht may leave touching a wall.

        Raises:
            ValueError: non-finite values, the T outside the arena or the agent outside the world.
        """
        st = state if isinstance(state, PushTState) else PushTState.from_dict(state)
        if check:
            st.check()
        e = self.env
        e._setup()
        e.agent.position = st.agent
        e.agent.velocity = st.agent_velocity
        e.block.angle = st.block[2]
        e.block.position = st.block[:2]
        e.block.velocity = st.block_velocity
        e.block.angular_velocity = st.block_angular_velocity
        # refresh the shapes' cached world geometry (drawing; a step recomputes it anyway)
        e.space.reindex_shapes_for_body(e.agent)
        e.space.reindex_shapes_for_body(e.block)
        e._last_action = None
        self._state = st

    @property
    def steps(self) -> int:
        return 0 if self._state is None else self._state.steps

    def poses(self) -> np.ndarray:
        """``(1, 3)`` the T's pose ``(x, y, yaw)`` [px, rad] (body origin, yaw wrapped to [-pi, pi))."""
        b = self.env.block
        return np.array([[b.position[0], b.position[1], wrap(b.angle)]])

    def agent(self) -> np.ndarray:
        return np.array(self.env.agent.position, float)

    def coverage(self) -> float:
        return float(self.env._get_coverage())

    # -------------------------------------------------------------- pictures
    def camera(self, size: int | None = None) -> PlaneCamera:
        """Image of ``size x size`` px covering the 512 world (y down in both): a pure scaling."""
        n = int(size or self.config.image_size)
        return PlaneCamera.scaling(n, n, n / WORLD_SIZE)

    def observe(self, size: int | None = None) -> Observation:
        """RGB ``(n, n, 3)`` uint8 (gym-pusht's own drawing, goal in green), instance mask ``(n, n)``
        (1 = T, 255 = agent, 0 = background), poses ``(1, 3)``."""
        n = int(size or self.config.image_size)
        cam = self.camera(n)
        rgb = None
        if self._render:
            screen = self.env._draw()
            rgb = self.env._get_img(screen, width=n, height=n, render_action=False)
        mask = self.instance_mask(n)
        return Observation(rgb=rgb, instance_mask=mask, poses=self.poses(), object_ids=(1,), camera=cam,
                           pusher=self.agent(), info={"coverage": self.coverage(), "steps": self.steps})

    def instance_mask(self, size: int) -> np.ndarray:
        """``(size, size)`` uint8 ids at pixel centres: T = 1, agent = 255."""
        n = int(size)
        s = WORLD_SIZE / n
        c = (np.arange(n) + 0.5) * s
        X, Y = np.meshgrid(c, c)
        pts = np.stack([X, Y], -1).reshape(-1, 2)
        m = np.zeros(n * n, np.uint8)
        m[np.linalg.norm(pts - self.agent(), axis=1) <= AGENT_RADIUS] = 255
        m[t_distance(self.poses()[0], pts[None])[0] <= 0] = 1
        return m.reshape(n, n)

    # -------------------------------------------------------------- strokes
    def plan_path(self, stroke: PushStroke, agent: np.ndarray | None = None, pose: np.ndarray | None = None) -> list[np.ndarray]:
        """Collision-free waypoints ``[agent, ..., start]`` from the agent to the stroke's start.

        A shortest path over a ring of points orbiting the T plus a pre-start point behind the
        start; every segment keeps ``clearance`` px between the agent disk and the T (a segment
        leaving the agent's current position may keep its current, smaller clearance).

        Raises:
            UnreachableStroke: the start is outside the arena, inside (or too close to) the T,
                or no path keeps clear of it.
        """
        cfg = self.config
        pose = self.poses()[0] if pose is None else np.asarray(pose, float)
        agent = self.agent() if agent is None else np.asarray(agent, float)
        start, end = stroke.start, stroke.end
        lo, hi = AGENT_RADIUS, WORLD_SIZE - AGENT_RADIUS
        for name, p in (("start", start), ("end", end)):
            if not (lo <= p[0] <= hi and lo <= p[1] <= hi):
                raise UnreachableStroke(f"the stroke's {name} ({p[0]:.1f}, {p[1]:.1f}) px is outside [{lo:g}, {hi:g}] px: the agent disk "
                                        f"(radius {AGENT_RADIUS:g}) cannot be there")
        need = AGENT_RADIUS + 0.5
        d0 = float(t_distance(pose, start[None])[0])
        if d0 < need:
            raise UnreachableStroke(f"the stroke starts {d0 - AGENT_RADIUS:.1f} px from the T (the agent disk would overlap it); "
                                    f"start it at least 0.5 px clear")
        a_clear = float(t_distance(pose, agent[None])[0])
        want = AGENT_RADIUS + cfg.clearance
        pre: list[np.ndarray] = []
        if a_clear < want:  # after a push the agent rests against the T: first back straight away from it
            loc = to_local(pose, agent[None, None])[0]
            away = (loc - closest_local(loc))[0]
            away = away / max(np.linalg.norm(away), 1e-9) if np.linalg.norm(away) > 1e-6 else (loc[0] - COG) / max(np.linalg.norm(loc[0] - COG), 1e-9)
            u = rot(pose[2]) @ away
            retreat = np.clip(agent + u * (want - a_clear + 2.0), lo, hi)
            pre, agent = [agent], retreat
            a_clear = float(t_distance(pose, agent[None])[0])
        r = cfg.orbit_radius
        cog = cog_of(pose)
        ang = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        ring = cog + r * np.stack([np.cos(ang), np.sin(ang)], 1)
        ring = ring[(ring >= lo).all(1) & (ring <= hi).all(1)]
        back = start - stroke.direction * 45.0
        nodes = [agent, start] + ([back] if (lo <= back).all() and (back <= hi).all() else []) + list(ring)
        nodes = np.array(nodes)
        n = len(nodes)

        # segment clearances, sampled every ~3 px
        i, j = np.triu_indices(n, 1)
        L = np.linalg.norm(nodes[j] - nodes[i], axis=1)
        m = int(max(2, math.ceil(L.max() / 3.0))) if len(L) else 2
        s = np.linspace(0, 1, m)
        pts = nodes[i][:, None] + s[None, :, None] * (nodes[j] - nodes[i])[:, None]
        dist = t_distance(pose, pts.reshape(-1, 2)[None])[0].reshape(len(i), m)
        ok = dist.min(1) >= want
        # edges touching the agent may keep the agent's own clearance; edges into the start may end at the start's
        from_agent = (i == 0)
        ok |= from_agent & (dist.min(1) >= min(want, a_clear) - 0.5)
        has_back = n > 2 and len(nodes) > 2 and np.allclose(nodes[2], back)
        d_back = float(t_distance(pose, back[None])[0]) if has_back else 0.0
        into_back = ((i == 2) | (j == 2)) & has_back & (i != 0)
        ok |= into_back & (dist.min(1) >= min(want, d_back) - 0.5)
        into_start = (i == 1) | (j == 1)
        both = from_agent & (j == 1)
        ok |= into_start & ~both & (dist.min(1) >= min(want, d0) - 0.5) & (j != 0)
        ok |= both & (dist.min(1) >= min(want, d0, a_clear) - 0.5)
        adj: dict[int, list[tuple[int, float]]] = {k: [] for k in range(n)}
        for a, b, l, good in zip(i, j, L, ok):
            if good:
                adj[a].append((b, l))
                adj[b].append((a, l))
        best = {0: 0.0}
        prev: dict[int, int] = {}
        heap = [(0.0, 0)]
        while heap:
            c, u = heapq.heappop(heap)
            if u == 1:
                break
            if c > best.get(u, math.inf):
                continue
            for v, l in adj[u]:
                if c + l < best.get(v, math.inf):
                    best[v], prev[v] = c + l, u
                    heapq.heappush(heap, (c + l, v))
        if 1 not in best:
            raise UnreachableStroke(f"no approach path from the agent at ({agent[0]:.1f}, {agent[1]:.1f}) to the stroke's start "
                                    f"({start[0]:.1f}, {start[1]:.1f}) keeps clear of the T")
        path, u = [nodes[1]], 1
        while u != 0:
            u = prev[u]
            path.append(nodes[u])
        return pre + path[::-1]

    def stroke_actions(self, stroke: PushStroke, path: list[np.ndarray] | None) -> tuple[list[np.ndarray], int]:
        """Env actions (agent targets) for the approach along ``path`` and the sweep; also the index
        where the sweep starts. Targets lead the path by ``lead`` s of motion (feed-forward)."""
        cfg = self.config
        acts: list[np.ndarray] = []
        if path is not None and len(path) > 1:
            P = np.array(path)
            pose = self.poses()[0]
            near = t_distance(pose, P[None])[0] < AGENT_RADIUS + cfg.clearance - 1.0  # waypoints close to the T
            # legs touching a waypoint close to the T (backing away, the last leg into the start) go slowly and
            # without lead, so the PD agent cannot overshoot into the T; runs of the other legs go fast, leading it
            k = 0
            while k < len(P) - 1:
                if near[k] or near[k + 1] or k == len(P) - 2:
                    acts += _along(P[k:k + 2], cfg.final_speed * 0.1, 0.0)
                    k += 1
                else:
                    m = k + 1
                    while m < len(P) - 2 and not near[m + 1]:
                        m += 1
                    acts += _along(P[k:m + 1], cfg.approach_speed * 0.1, cfg.lead * cfg.approach_speed)
                    k = m
        sweep_from = len(acts)
        acts += _along(np.array([stroke.start, stroke.end]), stroke.speed * 0.1, cfg.lead * stroke.speed)
        acts += [stroke.end.copy() for _ in range(cfg.hold_steps)]
        return acts, sweep_from

    def check_stroke(self, stroke: PushStroke) -> None:
        """Raise :class:`UnreachableStroke` (a ``ValueError``) for a stroke this agent cannot execute."""
        self.plan_path(stroke)
        n = math.ceil(stroke.length / (stroke.speed * 0.1))
        if n > self.config.max_stroke_steps:
            raise UnreachableStroke(f"the sweep needs {n} env steps (length {stroke.length:g} px at {stroke.speed:g} px/s), "
                                    f"more than max_stroke_steps={self.config.max_stroke_steps}")

    def execute(self, stroke: PushStroke, max_steps: int | None = None, approach: bool = True) -> StrokeResult:
        """Approach the stroke's start around the T, settle, sweep, hold; ends at a stroke boundary.

        Args:
            stroke: in px / px/s (see the module docstring).
            max_steps: stop after this many env steps of this stroke (an episode budget), or at success.
            approach: False teleports the agent to the start at rest (data generation and the
                oracle's imagination; not used for the benchmark's real episodes).

        Returns:
            :class:`StrokeResult` with the T's pose before and after, its track ``(steps + 1, 3)``
            and coverage after every env step. The space is rebuilt from the final state.

        Raises:
            UnreachableStroke: before any env step, so nothing is half-executed.
        """
        if self._state is None:
            raise RuntimeError("call reset() or set_state() first")
        cfg = self.config
        n_sweep = math.ceil(stroke.length / (stroke.speed * 0.1))
        if n_sweep > cfg.max_stroke_steps:
            raise UnreachableStroke(f"the sweep needs {n_sweep} env steps (length {stroke.length:g} px at {stroke.speed:g} px/s), "
                                    f"more than max_stroke_steps={cfg.max_stroke_steps}")
        before = self.poses()[0]
        if approach:
            path = self.plan_path(stroke)
        else:
            d = float(t_distance(before, stroke.start[None])[0])
            if d < AGENT_RADIUS + 0.5:
                raise UnreachableStroke(f"the stroke starts {d - AGENT_RADIUS:.1f} px from the T (the agent disk would overlap it)")
            st = self.get_state()
            self.set_state(PushTState(tuple(stroke.start.tolist()), (0.0, 0.0), st.block, (0.0, 0.0), 0.0, st.steps), check=False)
            path = None
        acts, sweep_from = self.stroke_actions(stroke, path)
        budget = math.inf if max_steps is None else int(max_steps)
        track, covs = [before.copy()], []
        steps = 0
        success = False
        i = 0
        settle = 0
        while i < len(acts) and steps < budget:
            a = acts[i]
            if i == sweep_from and approach and settle < cfg.settle_steps and np.linalg.norm(self.agent() - stroke.start) > cfg.settle_tol:
                a, settle = stroke.start.copy(), settle + 1  # hold at the start until the agent is there
            else:
                i += 1
            self._physics_step(a)
            steps += 1
            p = self.poses()[0]
            track.append(p)
            c = self.coverage() if approach else math.nan
            covs.append(c)
            if c > SUCCESS_COVERAGE:
                success = True
                break
        st = self._read(self._state.steps + steps)
        self.set_state(st, check=False)  # stroke boundary: rebuild the space (see the module docstring)
        cov = self.coverage()
        self.max_coverage = max(self.max_coverage, max([c for c in covs if c == c], default=cov))
        return StrokeResult(stroke=stroke, before=before[None], after=self.poses(), track=np.array(track)[:, None], env_steps=steps,
                            coverage=cov, coverages=np.array(covs), success=success or cov > SUCCESS_COVERAGE,
                            info={"sweep_started": sweep_from, "settle_steps": settle})

    def _physics_step(self, action: np.ndarray) -> None:
        """One env step: exactly the physics loop of ``PushTEnv.step`` (10 PD substeps of 10 ms),
        without its observation and coverage bookkeeping (tested bit-identical to ``env.step``)."""
        from pymunk.vec2d import Vec2d

        e = self.env
        action = np.asarray(action, dtype=np.float64)
        e._last_action = action
        n_steps = int(1 / (e.dt * e.control_hz))
        for _ in range(n_steps):
            acceleration = e.k_p * (action - e.agent.position) + e.k_v * (Vec2d(0, 0) - e.agent.velocity)
            e.agent.velocity += acceleration * e.dt
            e.space.step(e.dt)

    def close(self) -> None:
        self.env.close()


def _along(path: np.ndarray, step: float, lead: float) -> list[np.ndarray]:
    """Targets every ``step`` px along a polyline ``(P, 2)``, each ``lead`` px further along (clipped at its end)."""
    seg = np.diff(path, axis=0)
    L = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(L)])
    total = float(cum[-1])
    if total <= 1e-9:
        return [path[-1].copy()]
    n = max(1, math.ceil(total / step))
    out = []
    for k in range(1, n + 1):
        s = min(total, k * total / n + lead)
        j = min(int(np.searchsorted(cum, s, side="right")) - 1, len(L) - 1)
        f = (s - cum[j]) / max(L[j], 1e-9)
        out.append(path[j] + f * seg[j])
    return out
