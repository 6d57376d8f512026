"""Hand-built hard scenes (DESIGN §5 "Hard scenes"): the situations the random episode generator
rarely makes, placed exactly (metres, radians) and checked against the simulator's truth.

    from kinemask_ros.sim_bridge.hard_scenes import CATEGORIES, HARD_SCENE_CONFIG, sample_hard_scene
    hs = sample_hard_scene("chain3", np.random.default_rng(0))
    scene.set_objects(hs.specs, hs.poses); ep = scene.execute(hs.stroke)   # all 3 objects move

Every category is a builder ``(rng, config) -> HardScene``. A builder proposes a layout, runs it
once in the simulator (``render=False``, the scene's own masses/frictions) and keeps it only when
the truth matches the category's definition (:func:`check_truth`); otherwise it draws again, at
most ``max_attempts`` times, then raises ``RuntimeError`` naming the last failure. The dataset
generator can reuse the builders as they are (``CATEGORIES``), and pass its own simulator through
``sim=`` to save the per-process one that is made otherwise.

Definitions (``MOVE_M`` / ``STILL_M`` are the truth thresholds on the final displacement):

``chain2/3/4``     pusher -> A -> B (-> C -> D) on one line, gaps 2-6 mm, every object moves.
``glancing``       the pusher's path passes the target's centre at a lateral offset of 0.7-0.9 of
                   the combined half-widths (pusher radius + target half-width across the path):
                   the target is touched and moves, but less than ``GLANCING_MAX_MOVE_M``.
``near_miss``      the pusher passes the target with 1-3 mm clearance: no contact, nothing moves.
``bystander``      the pusher passes 1-4 mm beside object B, then pushes A: A moves, B stays still.
``double_hit``     the pushed object A hits two objects B and C placed on either side ahead of it.
``clutter6/8``     6 or 8 objects packed with 2-10 mm gaps; the push goes into the clutter and at
                   least one other object moves.
``edge``           the target sits 0.12-0.15 m from the centre and is pushed towards the nearest
                   workspace edge, in half of the scenes into a second object at the edge.
``property_ends``  a head-on chain2 whose masses and frictions sit at the ends of their ranges.
``long_stroke``    a push of length 0.14-0.16 m   } outside the trained ``PushBounds`` (length
``fast_stroke``    a push at 0.55-0.65 m/s        } 0.03-0.12 m, speed 0.2-0.5 m/s): the system must
                                                    refuse them (``PushBounds.violation``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from kinemask_ros.palette import PALETTE
from kinemask_ros.push import PushStroke
from kinemask_ros.sim_bridge.scene import PUSHER_ID, Episode, ObjectSpec, SceneConfig, TabletopScene, random_spec

#: Truth thresholds [m] on an object's final displacement: "moves" above MOVE_M, "still" below STILL_M.
MOVE_M = 0.005
STILL_M = 0.002
#: A glancing contact moves the touched object less than this [m] (a head-on push of the same
#: stroke moves it several centimetres).
GLANCING_MAX_MOVE_M = 0.025
#: The scene configuration of the hard scenes: the default scene with room for 8 objects.
HARD_SCENE_CONFIG = SceneConfig(max_objects=8)
#: Object centres stay inside this half-size [m] so that every object is seen in frame 0.
VIEW_HALF_EXTENT = 0.17
MAX_ATTEMPTS = 60


@dataclass(frozen=True)
class HardScene:
    """One hand-built scene.

    Attributes:
        specs: the ``K`` objects (instance ids 1..K in this order).
        poses: ``(K, 3)`` x, y, yaw [m, rad].
        stroke: the push.
        category: name in :data:`CATEGORIES`.
        expect: what the truth must show (checked by :func:`check_truth`): ``target_id`` (the
            object the scene is built around), ``pushed_id`` (first object the pusher touches, 0 =
            none), ``moving`` / ``still`` (ids that must move more than ``MOVE_M`` / less than
            ``STILL_M``), optional ``hits`` (object pairs that must touch), ``max_move_m``
            (``{id: metres}`` upper bounds), ``min_others_moving`` and ``refused`` (the stroke lies
            outside the trained push bounds), plus the design numbers (gaps, clearance, ratio) and
            ``attempts`` (draws the builder needed).
    """

    specs: list[ObjectSpec]
    poses: np.ndarray
    stroke: PushStroke
    category: str
    expect: dict = field(default_factory=dict)

    @property
    def num_objects(self) -> int:
        return len(self.specs)


# ----------------------------------------------------------------------------- geometry helpers
def _unit(theta: float) -> np.ndarray:
    return np.array([math.cos(theta), math.sin(theta)])


def _perp(d: np.ndarray) -> np.ndarray:
    return np.array([-d[1], d[0]])


def boundary_points(spec: ObjectSpec, pose: np.ndarray, n: int = 48) -> np.ndarray:
    """``(M, 2)`` points on the footprint's outline (box corners included)."""
    if spec.shape == "cylinder":
        a = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
        return pose[:2] + spec.size[0] * np.stack([np.cos(a), np.sin(a)], 1)
    a, b = spec.size
    per = max(2, n // 4)
    s = np.linspace(-1.0, 1.0, per, endpoint=False)
    local = np.concatenate([np.stack([s * a, np.full(per, -b)], 1), np.stack([np.full(per, a), s * b], 1),
                            np.stack([-s * a, np.full(per, b)], 1), np.stack([np.full(per, -a), -s * b], 1)])
    c, si = math.cos(pose[2]), math.sin(pose[2])
    return pose[:2] + local @ np.array([[c, si], [-si, c]])


def footprint_distance(spec: ObjectSpec, pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Vectorised :meth:`ObjectSpec.distance_to`: ``(M,)`` distances [m] of ``points (M, 2)`` to the
    footprint at ``pose`` (0 inside)."""
    d = np.asarray(points, dtype=float) - pose[:2]
    if spec.shape == "cylinder":
        return np.maximum(0.0, np.linalg.norm(d, axis=-1) - spec.size[0])
    c, s = math.cos(pose[2]), math.sin(pose[2])
    local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)
    return np.linalg.norm(np.maximum(np.abs(local) - np.asarray(spec.size), 0.0), axis=-1)


def separation(spec_a: ObjectSpec, pose_a: np.ndarray, spec_b: ObjectSpec, pose_b: np.ndarray) -> float:
    """Gap [m] between two footprints (0 when they touch or overlap); exact for boxes, within
    ~0.1 mm for cylinders (outline sampling)."""
    if np.linalg.norm(np.subtract(pose_a[:2], pose_b[:2])) > spec_a.bounding_radius + spec_b.bounding_radius + 0.05:
        return float(np.linalg.norm(np.subtract(pose_a[:2], pose_b[:2])) - spec_a.bounding_radius - spec_b.bounding_radius)
    da = footprint_distance(spec_b, pose_b, boundary_points(spec_a, pose_a)).min()
    db = footprint_distance(spec_a, pose_a, boundary_points(spec_b, pose_b)).min()
    return float(min(da, db))


def place_at_gap(fixed: ObjectSpec, fixed_pose: np.ndarray, new: ObjectSpec, yaw: float, direction: np.ndarray,
                 gap: float, lateral: float = 0.0) -> np.ndarray:
    """Pose of ``new`` (yaw ``yaw``) on the ray ``fixed + s * direction + lateral * perp`` with the
    footprint gap to ``fixed`` equal to ``gap`` [m] (bisection on ``s``)."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    off = fixed_pose[:2] + lateral * _perp(d)
    lo, hi = 0.0, fixed.bounding_radius + new.bounding_radius + gap + abs(lateral) + 0.01

    def pose(s: float) -> np.ndarray:
        return np.array([*(off + s * d), yaw])

    for _ in range(24):  # ~0.01 um
        mid = 0.5 * (lo + hi)
        if separation(fixed, fixed_pose, new, pose(mid)) < gap:
            lo = mid
        else:
            hi = mid
    return pose(hi)


def path_clearance(spec: ObjectSpec, pose: np.ndarray, stroke: PushStroke, pusher_radius: float, step: float = 0.0005) -> float:
    """Smallest gap [m] between the pusher disk and ``spec``'s footprint along the stroke."""
    n = max(2, int(stroke.length / step) + 1)
    pts = stroke.start + np.linspace(0.0, stroke.length, n)[:, None] * stroke.direction
    return float(footprint_distance(spec, pose, pts).min() - pusher_radius)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    w = float(np.clip((p - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + w * ab)))


# ----------------------------------------------------------------------------- sampling helpers
def _colors(rng: np.random.Generator, k: int) -> list[str]:
    if k > len(PALETTE):
        raise ValueError(f"a scene holds at most {len(PALETTE)} objects (one per palette colour), got {k}")
    return [str(c) for c in rng.permutation(list(PALETTE))[:k]]


def _face_yaw(rng: np.random.Generator, spec: ObjectSpec, theta: float, jitter_deg: float = 4.0) -> float:
    """A yaw that shows a box's face to direction ``theta`` (cylinders: any yaw)."""
    if spec.shape == "cylinder":
        return float(rng.uniform(-math.pi, math.pi))
    return float(theta + int(rng.integers(4)) * math.pi / 2 + math.radians(rng.uniform(-jitter_deg, jitter_deg)))


def _random_yaw(rng: np.random.Generator) -> float:
    return float(rng.uniform(-math.pi, math.pi))


def _stroke_behind(spec: ObjectSpec, pose: np.ndarray, theta: float, cfg: SceneConfig, back_gap: float,
                   lateral: float, travel: float, speed: float) -> PushStroke:
    """A stroke along ``theta`` that starts ``back_gap`` behind the object's footprint (pusher
    surface to footprint, measured along the stroke) at ``lateral`` offset from its centre, and
    travels ``travel`` metres past that start-to-contact distance."""
    d = _unit(theta)
    back = spec.support(pose[2], d) + cfg.pusher_radius + back_gap
    start = pose[:2] - back * d + lateral * _perp(d)
    return PushStroke(float(start[0]), float(start[1]), float(theta), float(back_gap + travel), float(speed))


def _speed(rng: np.random.Generator, cfg: SceneConfig) -> float:
    return float(rng.uniform(*cfg.push_bounds.speed_range))


def _add_distractors(rng: np.random.Generator, cfg: SceneConfig, specs: list[ObjectSpec], poses: list[np.ndarray],
                     colors: list[str], count: int, stroke: PushStroke, keep_clear: float = 0.06) -> None:
    """Append up to ``count`` objects away from the others and from the stroke's corridor
    (extended ``keep_clear`` past its end, where pushed objects slide)."""
    a, b = stroke.start, stroke.end + keep_clear * stroke.direction
    h = cfg.placement_half_extent
    for _ in range(count):
        spec = random_spec(rng, cfg, colors[len(specs)])
        for _ in range(100):
            pose = np.array([*rng.uniform(-h, h, 2), _random_yaw(rng)])
            if _segment_distance(pose[:2], a, b) < cfg.pusher_radius + spec.bounding_radius + keep_clear:
                continue
            if all(np.linalg.norm(pose[:2] - q[:2]) > s.bounding_radius + spec.bounding_radius + 0.015 for s, q in zip(specs, poses)):
                specs.append(spec)
                poses.append(pose)
                break


def _recentre(poses: list[np.ndarray], stroke: PushStroke, shift: np.ndarray) -> tuple[list[np.ndarray], PushStroke]:
    out = [np.array([p[0] + shift[0], p[1] + shift[1], p[2]]) for p in poses]
    return out, replace(stroke, x=float(stroke.x + shift[0]), y=float(stroke.y + shift[1]))


def _layout_ok(cfg: SceneConfig, specs: list[ObjectSpec], poses: np.ndarray, stroke: PushStroke, out_of_bounds: bool = False) -> str:
    """Static checks of a proposal: in view, no overlaps, a free start, bounds as intended."""
    if np.any(np.abs(poses[:, :2]) > VIEW_HALF_EXTENT):
        return "an object centre is outside the view"
    for i in range(len(specs)):
        for j in range(i + 1, len(specs)):
            if np.linalg.norm(poses[i, :2] - poses[j, :2]) < specs[i].bounding_radius + specs[j].bounding_radius + 0.001:
                if separation(specs[i], poses[i], specs[j], poses[j]) < 0.0015:
                    return f"objects {i + 1} and {j + 1} overlap or touch"
    if any(s.distance_to(q, stroke.start) <= cfg.pusher_radius + 0.0025 for s, q in zip(specs, poses)):
        return "the pusher would start inside or against an object"
    reason = cfg.push_bounds.violation(stroke)
    if out_of_bounds != bool(reason):
        return f"push bounds: expected {'a violation' if out_of_bounds else 'none'}, got {reason or 'none'!r}"
    return ""


# ----------------------------------------------------------------------------- truth
def displacements(ep: Episode) -> np.ndarray:
    """``(K,)`` final displacement [m] of every object."""
    return np.linalg.norm(ep.states[-1, :, :2] - ep.states[0, :, :2], axis=1).astype(float)


def object_contacts(ep: Episode) -> set[tuple[int, int]]:
    """Object-object contacts of an episode as sorted id pairs."""
    return {(min(e["a"], e["b"]), max(e["a"], e["b"])) for e in ep.events if e["a"] != PUSHER_ID and e["b"] != PUSHER_ID}


def check_truth(hs: HardScene, ep: Episode) -> str:
    """``""`` when the simulated episode ``ep`` of ``hs`` matches ``hs.expect``, else the reason."""
    e = hs.expect
    disp = displacements(ep)
    if ep.stroke != hs.stroke:
        return "the simulator moved the stroke's start (it began inside an object)"
    if "pushed_id" in e and ep.pushed_id != e["pushed_id"]:
        return f"first touched object is {ep.pushed_id}, expected {e['pushed_id']}"
    for i in e.get("moving", []):
        if disp[i - 1] <= MOVE_M:
            return f"object {i} moved {disp[i - 1] * 1000:.1f} mm, expected > {MOVE_M * 1000:g} mm"
    for i in e.get("still", []):
        if disp[i - 1] >= STILL_M:
            return f"object {i} moved {disp[i - 1] * 1000:.1f} mm, expected < {STILL_M * 1000:g} mm"
    for i, m in e.get("max_move_m", {}).items():
        if disp[int(i) - 1] >= m:
            return f"object {i} moved {disp[int(i) - 1] * 1000:.1f} mm, expected < {m * 1000:g} mm"
    contacts = object_contacts(ep)
    for a, b in e.get("hits", []):
        if (min(a, b), max(a, b)) not in contacts:
            return f"objects {a} and {b} never touched"
    k = e.get("min_others_moving", 0)
    if k:
        others = [i for i in range(1, len(disp) + 1) if i != e.get("pushed_id") and disp[i - 1] > MOVE_M]
        if len(others) < k:
            return f"{len(others)} objects besides the pushed one moved, expected >= {k}"
    return ""


_SIMS: dict[SceneConfig, TabletopScene] = {}


def _simulator(cfg: SceneConfig) -> TabletopScene:
    if cfg not in _SIMS:
        _SIMS[cfg] = TabletopScene(cfg)
    return _SIMS[cfg]


def simulate(hs: HardScene, sim: TabletopScene, render: bool = True) -> Episode:
    """Run ``hs`` in ``sim`` (its own masses/frictions) and return the episode."""
    sim.set_objects(hs.specs, hs.poses)
    return sim.execute(hs.stroke, render=render)


Proposal = Callable[[np.random.Generator, SceneConfig], "HardScene | str"]


def _verified(category: str, propose: Proposal, rng: np.random.Generator, cfg: SceneConfig | None,
              sim: TabletopScene | None, verify: bool, max_attempts: int) -> HardScene:
    cfg = cfg or HARD_SCENE_CONFIG
    if sim is not None and sim.config != cfg:
        raise ValueError("sim= must be built from the same SceneConfig as config=")
    last = "no proposal"
    for attempt in range(1, max_attempts + 1):
        hs = propose(rng, cfg)
        if isinstance(hs, str):
            last = hs
            continue
        if len(hs.specs) > cfg.max_objects:
            raise ValueError(f"{category} needs {len(hs.specs)} objects but SceneConfig.max_objects={cfg.max_objects} "
                             f"(use HARD_SCENE_CONFIG or max_objects=8)")
        reason = _layout_ok(cfg, hs.specs, hs.poses, hs.stroke, bool(hs.expect.get("refused")))
        if not reason and verify:
            reason = check_truth(hs, simulate(hs, sim or _simulator(cfg), render=False))
        if not reason:
            return replace(hs, expect={**hs.expect, "attempts": attempt})
        last = reason
    raise RuntimeError(f"hard scene {category!r}: no layout matched its definition in {max_attempts} attempts (last: {last})")


def _finish(category: str, specs: list[ObjectSpec], poses: list[np.ndarray], stroke: PushStroke, expect: dict) -> HardScene:
    return HardScene(list(specs), np.array(poses, dtype=float).reshape(-1, 3), stroke, category, expect)


def _random_shift(rng: np.random.Generator, poses: list[np.ndarray], stroke: PushStroke, jitter: float = 0.03) -> np.ndarray:
    """Shift that centres the layout (objects + stroke start) on the origin, plus a random jitter."""
    pts = np.array([p[:2] for p in poses] + [stroke.start])
    centre = 0.5 * (pts.min(0) + pts.max(0))
    return -centre + rng.uniform(-jitter, jitter, 2)


# ----------------------------------------------------------------------------- categories
def _chain(n: int, category: str, properties_at_ends: bool = False) -> Proposal:
    def propose(rng: np.random.Generator, cfg: SceneConfig) -> HardScene:
        theta = float(rng.uniform(-math.pi, math.pi))
        d = _unit(theta)
        colors = _colors(rng, n + int(rng.integers(0, 2)) if n < 4 else n)
        specs, poses = [], []
        gaps = rng.uniform(0.002, 0.006, n - 1)
        for i in range(n):
            kw = {}
            if properties_at_ends:
                kw = {"mass": cfg.mass_range[int(rng.integers(2))], "friction": cfg.friction_range[int(rng.integers(2))]}
            spec = random_spec(rng, cfg, colors[i], **kw)
            yaw = _face_yaw(rng, spec, theta)
            if i == 0:
                pose = np.array([0.0, 0.0, yaw])
            else:
                lat = rng.uniform(-0.08, 0.08) * min(spec.support(yaw, _perp(d)), specs[-1].support(poses[-1][2], _perp(d)))
                pose = place_at_gap(specs[-1], poses[-1], spec, yaw, d, float(gaps[i - 1]), lateral=float(lat))
            specs.append(spec)
            poses.append(pose)
        back_gap = float(rng.uniform(0.004, 0.012))
        travel = float(gaps.sum() + rng.uniform(0.02, 0.04))
        lateral = float(rng.uniform(-0.1, 0.1) * specs[0].support(poses[0][2], _perp(d)))
        stroke = _stroke_behind(specs[0], poses[0], theta, cfg, back_gap, lateral, travel, _speed(rng, cfg))
        if stroke.length > cfg.push_bounds.length_range[1]:
            stroke = replace(stroke, length=float(cfg.push_bounds.length_range[1]))
        poses, stroke = _recentre(poses, stroke, _random_shift(rng, poses, stroke))
        _add_distractors(rng, cfg, specs, poses, colors, len(colors) - n, stroke)
        ids = list(range(1, n + 1))
        expect = {"target_id": 1, "pushed_id": 1, "moving": ids, "still": list(range(n + 1, len(specs) + 1)),
                  "hits": [(i, i + 1) for i in range(1, n)], "gaps_m": [float(g) for g in gaps]}
        if properties_at_ends:
            expect["properties"] = [{"mass": s.mass, "friction": s.friction} for s in specs[:n]]
        return _finish(category, specs, poses, stroke, expect)

    return propose


def _glancing(rng: np.random.Generator, cfg: SceneConfig) -> HardScene:
    theta = float(rng.uniform(-math.pi, math.pi))
    d, nrm = _unit(theta), _perp(_unit(theta))
    colors = _colors(rng, 1 + int(rng.integers(0, 3)))
    spec = random_spec(rng, cfg, colors[0])
    yaw = _random_yaw(rng)
    pose = np.array([0.0, 0.0, yaw])
    ratio = float(rng.uniform(0.7, 0.9))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    combined = cfg.pusher_radius + spec.support(yaw, nrm)
    back_gap = float(rng.uniform(0.004, 0.012))
    travel = float(rng.uniform(0.03, 0.05)) + spec.support(yaw, d)
    stroke = _stroke_behind(spec, pose, theta, cfg, back_gap, sign * ratio * combined, travel, _speed(rng, cfg))
    poses, stroke = _recentre([pose], stroke, _random_shift(rng, [pose], stroke, 0.06))
    specs = [spec]
    _add_distractors(rng, cfg, specs, poses, colors, len(colors) - 1, stroke)
    return _finish("glancing", specs, poses, stroke, {"target_id": 1, "pushed_id": 1, "moving": [1], "still": list(range(2, len(specs) + 1)),
                                                     "max_move_m": {1: GLANCING_MAX_MOVE_M}, "lateral_ratio": ratio})


def _near_miss(rng: np.random.Generator, cfg: SceneConfig) -> HardScene | str:
    theta = float(rng.uniform(-math.pi, math.pi))
    d, nrm = _unit(theta), _perp(_unit(theta))
    colors = _colors(rng, 1 + int(rng.integers(0, 3)))
    spec = random_spec(rng, cfg, colors[0])
    yaw = _random_yaw(rng)
    pose = np.array([0.0, 0.0, yaw])
    clearance = float(rng.uniform(0.001, 0.003))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    # a convex footprint lies support(n) to either side of its centre: the path line at
    # pusher_radius + support + clearance passes it with exactly that clearance
    offset = cfg.pusher_radius + spec.support(yaw, nrm) + clearance
    back = float(rng.uniform(0.01, 0.03)) + spec.support(yaw, d) + cfg.pusher_radius
    start = pose[:2] - back * d + sign * offset * nrm
    length = back + spec.support(yaw, d) + cfg.pusher_radius + float(rng.uniform(0.0, 0.02))
    stroke = PushStroke(float(start[0]), float(start[1]), theta, float(min(length, cfg.push_bounds.length_range[1])), _speed(rng, cfg))
    got = path_clearance(spec, pose, stroke, cfg.pusher_radius)
    if abs(got - clearance) > 2e-4:
        return f"near miss clearance {got * 1000:.2f} mm instead of {clearance * 1000:.2f} mm"
    poses, stroke = _recentre([pose], stroke, _random_shift(rng, [pose], stroke, 0.06))
    specs = [spec]
    _add_distractors(rng, cfg, specs, poses, colors, len(colors) - 1, stroke)
    return _finish("near_miss", specs, poses, stroke, {"target_id": 1, "pushed_id": 0, "moving": [], "still": list(range(1, len(specs) + 1)),
                                                      "clearance_m": clearance})


def _bystander(rng: np.random.Generator, cfg: SceneConfig) -> HardScene | str:
    theta = float(rng.uniform(-math.pi, math.pi))
    d, nrm = _unit(theta), _perp(_unit(theta))
    colors = _colors(rng, 2 + int(rng.integers(0, 2)))
    a_spec, b_spec = random_spec(rng, cfg, colors[0]), random_spec(rng, cfg, colors[1], size_range=(cfg.object_size_range[0], np.mean(cfg.object_size_range)))
    a_yaw, b_yaw = _face_yaw(rng, a_spec, theta), _random_yaw(rng)
    clearance = float(rng.uniform(0.001, 0.004))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    r = cfg.pusher_radius
    # along-path coordinate s from the stroke start; B is passed first, then A is pushed
    s_b = b_spec.support(b_yaw, d) + r + float(rng.uniform(0.003, 0.008))
    b_pose = np.array([*(s_b * d + sign * (r + b_spec.support(b_yaw, nrm) + clearance) * nrm), b_yaw])
    s_a = s_b + b_spec.support(b_yaw, d) + float(rng.uniform(0.004, 0.012)) + a_spec.support(a_yaw, d)
    a_pose = np.array([*(s_a * d + float(rng.uniform(-0.1, 0.1)) * a_spec.support(a_yaw, nrm) * nrm), a_yaw])
    contact = s_a - a_spec.support(a_yaw, d) - r
    length = contact + float(rng.uniform(0.015, 0.03))
    if length > cfg.push_bounds.length_range[1]:
        return f"bystander stroke would be {length:.3f} m long"
    stroke = PushStroke(0.0, 0.0, theta, float(length), _speed(rng, cfg))
    got = path_clearance(b_spec, b_pose, stroke, r)
    if abs(got - clearance) > 3e-4:
        return f"bystander clearance {got * 1000:.2f} mm instead of {clearance * 1000:.2f} mm"
    poses, stroke = _recentre([a_pose, b_pose], stroke, _random_shift(rng, [a_pose, b_pose], stroke))
    specs = [a_spec, b_spec]
    _add_distractors(rng, cfg, specs, poses, colors, len(colors) - 2, stroke)
    return _finish("bystander", specs, poses, stroke, {"target_id": 1, "pushed_id": 1, "moving": [1], "still": list(range(2, len(specs) + 1)),
                                                      "bystander_id": 2, "clearance_m": clearance})


def _double_hit(rng: np.random.Generator, cfg: SceneConfig) -> HardScene | str:
    theta = float(rng.uniform(-math.pi, math.pi))
    nrm = _perp(_unit(theta))
    colors = _colors(rng, 3 + int(rng.integers(0, 2)))
    a = random_spec(rng, cfg, colors[0], size_range=(np.mean(cfg.object_size_range), cfg.object_size_range[1]))
    a_pose = np.array([0.0, 0.0, _face_yaw(rng, a, theta)])
    specs, poses = [a], [a_pose]
    for k, sgn in enumerate((1.0, -1.0)):
        spec = random_spec(rng, cfg, colors[1 + k], shape="cylinder" if rng.random() < 0.5 else None,
                     size_range=(cfg.object_size_range[0], np.mean(cfg.object_size_range)))
        yaw = _random_yaw(rng)
        # direction from A's centre to the hit object: 25-45 deg off the push line
        ang = theta + sgn * math.radians(rng.uniform(25, 45))
        pose = place_at_gap(a, a_pose, spec, yaw, _unit(ang), float(rng.uniform(0.002, 0.006)))
        specs.append(spec)
        poses.append(pose)
    if separation(specs[1], poses[1], specs[2], poses[2]) < 0.003:
        return "the two hit objects overlap"
    back_gap = float(rng.uniform(0.004, 0.012))
    stroke = _stroke_behind(a, a_pose, theta, cfg, back_gap, float(rng.uniform(-0.08, 0.08) * a.support(a_pose[2], nrm)),
                            float(rng.uniform(0.03, 0.05)), _speed(rng, cfg))
    poses, stroke = _recentre(poses, stroke, _random_shift(rng, poses, stroke))
    _add_distractors(rng, cfg, specs, poses, colors, len(colors) - 3, stroke)
    return _finish("double_hit", specs, poses, stroke, {"target_id": 1, "pushed_id": 1, "moving": [1, 2, 3], "hits": [(1, 2), (1, 3)],
                                                       "still": list(range(4, len(specs) + 1))})


def _clutter(n: int) -> Proposal:
    category = f"clutter{n}"

    def propose(rng: np.random.Generator, cfg: SceneConfig) -> HardScene | str:
        colors = _colors(rng, n)
        size_range = (cfg.object_size_range[0], cfg.object_size_range[1] if n <= 6 else float(np.mean(cfg.object_size_range)) + 0.003)
        specs: list[ObjectSpec] = []
        poses: list[np.ndarray] = []
        # the clutter: objects 2..n packed around the centre with 2-10 mm gaps
        for i in range(1, n):
            spec = random_spec(rng, cfg, colors[i], size_range=size_range)
            for _ in range(300):
                if not poses:
                    pose = np.array([0.0, 0.0, _random_yaw(rng)])
                else:
                    j = int(rng.integers(len(poses)))
                    pose = place_at_gap(specs[j], poses[j], spec, _random_yaw(rng), _unit(rng.uniform(-math.pi, math.pi)),
                                        float(rng.uniform(0.002, 0.010)))
                if np.linalg.norm(pose[:2]) > 0.11:
                    continue
                if all(separation(s, q, spec, pose) > 0.0019 for s, q in zip(specs, poses)):
                    break
            else:
                return f"{category}: could not pack object {i + 1}"
            specs.append(spec)
            poses.append(pose)
        centre = np.mean([p[:2] for p in poses], 0)
        # the pushed object: approaches the clutter from outside along a ray to its centre
        phi = float(rng.uniform(-math.pi, math.pi))
        theta = phi + math.pi + math.radians(rng.uniform(-10, 10))
        a = random_spec(rng, cfg, colors[0], size_range=size_range)
        a_yaw = _face_yaw(rng, a, theta, jitter_deg=20)
        far = centre + 0.25 * _unit(phi)
        step = -_unit(phi)
        gap = float(rng.uniform(0.003, 0.010))
        s_lo, s_hi = 0.0, 0.25
        for _ in range(24):  # slide A in from far out until its nearest gap to the clutter is `gap`
            mid = 0.5 * (s_lo + s_hi)
            p = np.array([*(far + mid * step), a_yaw])
            if min(separation(s, q, a, p) for s, q in zip(specs, poses)) > gap:
                s_lo = mid
            else:
                s_hi = mid
        a_pose = np.array([*(far + s_lo * step), a_yaw])
        stroke = _stroke_behind(a, a_pose, theta, cfg, float(rng.uniform(0.004, 0.012)),
                                float(rng.uniform(-0.15, 0.15) * a.support(a_yaw, _perp(_unit(theta)))),
                                float(gap + rng.uniform(0.02, 0.04)), _speed(rng, cfg))
        specs, poses = [a] + specs, [a_pose] + poses
        poses, stroke = _recentre(poses, stroke, _random_shift(rng, poses, stroke, 0.02))
        return _finish(category, specs, poses, stroke, {"target_id": 1, "pushed_id": 1, "moving": [1], "min_others_moving": 1})

    return propose


def _edge(rng: np.random.Generator, cfg: SceneConfig) -> HardScene | str:
    axis = int(rng.integers(4))
    e = _unit(axis * math.pi / 2)
    t = _perp(e)
    theta = axis * math.pi / 2 + math.radians(rng.uniform(-15, 15))
    d = _unit(theta)
    with_second = bool(rng.random() < 0.5)
    colors = _colors(rng, 1 + int(with_second) + int(rng.integers(0, 2)))
    a = random_spec(rng, cfg, colors[0])
    a_yaw = _face_yaw(rng, a, theta, jitter_deg=10)
    tangential = float(rng.uniform(-0.10, 0.10)) * t
    expect: dict = {"target_id": 1, "pushed_id": 1, "moving": [1], "edge_direction": e.tolist()}
    if with_second:
        # B at the edge (centre 0.135-0.165 m out), A just behind it on the push line
        b = random_spec(rng, cfg, colors[1])
        b_pose = np.array([*(float(rng.uniform(0.135, 0.165)) * e + tangential), _face_yaw(rng, b, theta)])
        a_pose = place_at_gap(b, b_pose, a, a_yaw, -d, float(rng.uniform(0.002, 0.008)))
        specs, poses = [a, b], [a_pose, b_pose]
        expect.update(moving=[1, 2], hits=[(1, 2)])
    else:
        a_pose = np.array([*(float(rng.uniform(0.13, 0.16)) * e + tangential), a_yaw])
        specs, poses = [a], [a_pose]
    back_gap = float(rng.uniform(0.004, 0.012))
    stroke = _stroke_behind(a, a_pose, theta, cfg, back_gap, float(rng.uniform(-0.1, 0.1) * a.support(a_yaw, _perp(d))),
                            float(rng.uniform(0.03, 0.06)), _speed(rng, cfg))
    if cfg.push_bounds.violation(stroke):
        return "edge stroke outside the push bounds"
    _add_distractors(rng, cfg, specs, poses, colors, len(colors) - len(specs), stroke)
    expect["still"] = list(range(len(expect["moving"]) + 1, len(specs) + 1))
    return _finish("edge", specs, poses, stroke, expect)


def _out_of_bounds(category: str, length_range: tuple[float, float] | None, speed_range: tuple[float, float] | None) -> Proposal:
    def propose(rng: np.random.Generator, cfg: SceneConfig) -> HardScene:
        theta = float(rng.uniform(-math.pi, math.pi))
        colors = _colors(rng, 1 + int(rng.integers(0, 3)))
        a = random_spec(rng, cfg, colors[0])
        a_pose = np.array([0.0, 0.0, _face_yaw(rng, a, theta)])
        back_gap = float(rng.uniform(0.004, 0.012))
        lo, hi = length_range or (0.04, 0.10)
        length = float(rng.uniform(lo, hi))
        speed = float(rng.uniform(*(speed_range or cfg.push_bounds.speed_range)))
        stroke = _stroke_behind(a, a_pose, theta, cfg, back_gap, float(rng.uniform(-0.1, 0.1) * a.support(a_pose[2], _perp(_unit(theta)))),
                                length - back_gap, speed)
        # the long stroke reaches far: start it behind the centre so that it stays on the table
        poses, stroke = _recentre([a_pose], stroke, -0.5 * (stroke.start + stroke.end) + rng.uniform(-0.02, 0.02, 2))
        specs = [a]
        _add_distractors(rng, cfg, specs, poses, colors, len(colors) - 1, stroke)
        return _finish(category, specs, poses, stroke, {"target_id": 1, "pushed_id": 1, "moving": [1], "still": list(range(2, len(specs) + 1)),
                                                       "refused": True})

    return propose


def _builder(category: str, propose: Proposal) -> Callable[..., HardScene]:
    def build(rng: np.random.Generator, config: SceneConfig | None = None, *, sim: TabletopScene | None = None,
              verify: bool = True, max_attempts: int = MAX_ATTEMPTS) -> HardScene:
        return _verified(category, propose, rng, config, sim, verify, max_attempts)

    build.__name__ = f"build_{category}"
    build.__doc__ = f"A verified ``{category}`` scene from ``rng`` (see the module docstring for the definition)."
    return build


build_chain2 = _builder("chain2", _chain(2, "chain2"))
build_chain3 = _builder("chain3", _chain(3, "chain3"))
build_chain4 = _builder("chain4", _chain(4, "chain4"))
build_glancing = _builder("glancing", _glancing)
build_near_miss = _builder("near_miss", _near_miss)
build_bystander = _builder("bystander", _bystander)
build_double_hit = _builder("double_hit", _double_hit)
build_clutter6 = _builder("clutter6", _clutter(6))
build_clutter8 = _builder("clutter8", _clutter(8))
build_edge = _builder("edge", _edge)
build_property_ends = _builder("property_ends", _chain(2, "property_ends", properties_at_ends=True))
build_long_stroke = _builder("long_stroke", _out_of_bounds("long_stroke", (0.14, 0.16), None))
build_fast_stroke = _builder("fast_stroke", _out_of_bounds("fast_stroke", None, (0.55, 0.65)))

#: Category name -> builder ``(rng, config=None, *, sim=None, verify=True) -> HardScene``.
CATEGORIES: dict[str, Callable[..., HardScene]] = {
    "chain2": build_chain2, "chain3": build_chain3, "chain4": build_chain4, "glancing": build_glancing,
    "near_miss": build_near_miss, "bystander": build_bystander, "double_hit": build_double_hit,
    "clutter6": build_clutter6, "clutter8": build_clutter8, "edge": build_edge, "property_ends": build_property_ends,
    "long_stroke": build_long_stroke, "fast_stroke": build_fast_stroke,
}
#: Categories whose strokes lie outside the trained push bounds on purpose.
OUT_OF_BOUNDS = ("long_stroke", "fast_stroke")


def sample_hard_scene(category: str, rng: np.random.Generator, config: SceneConfig | None = None, **kwargs) -> HardScene:
    """A verified scene of ``category`` (a key of :data:`CATEGORIES`)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown hard-scene category {category!r}; choose from {sorted(CATEGORIES)}")
    return CATEGORIES[category](rng, config, **kwargs)
