"""Training data for the object-token world model (v2): SE(2) tracks of every object, with curricula.

One episode = a scene of 1..8 objects, one push stroke, the first frame's instance mask at
``mask_size`` (128x128 by default, ~3 mm per pixel: the model's object tokens are estimated from
it, at several resolutions, during training) and the true states ``(T, K, 6)`` of every object.
Only the first frame is rendered, so generation is fast (physics only).

Curricula (``CURRICULA``; each episode's curriculum is drawn from its seed with the weights of
``GeneratorConfig.weights``):

* ``aimed``: a random scene (1-8 objects), a stroke aimed at one object with a lateral offset
  drawn over the whole range from a centred hit through glancing contacts to mm-level near misses
  and clear misses (so first touch is learned at the contact boundary, not just in its middle);
* ``chain``: 2-4 objects in a row along the push with gaps of 1-8 mm (chains), plus bystanders;
* ``clutter``: 6-8 objects packed in a smaller area, a stroke into them (double hits, pile-ups);
* ``bystander``: a pushed object with another placed 1-5 mm beside the pusher's path;
* ``edge``: objects near the workspace edge, pushed towards it;
* ``free``: random strokes anywhere (mostly misses).

Strokes stay inside the trained ``PushBounds`` (0.03-0.12 m, 0.2-0.5 m/s): the nodes refuse
strokes outside them rather than extrapolate. Episode ``i`` of a run with ``--seed S`` is
simulated from seed ``S + i`` alone; shards are written atomically and skipped when present, so an
interrupted run resumes where it stopped. Held-out seeds start at ``EVAL_SEED_OFFSET``.

    kinemask-generate-objects --out data/objects --episodes 20000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from kinemask_ros.camera import CameraConfig
from kinemask_ros.push import PushStroke
from kinemask_ros.sim_bridge.dataset import EVAL_SEED_OFFSET
from kinemask_ros.palette import PALETTE
from kinemask_ros.sim_bridge.scene import SHAPES, ObjectSpec, SceneConfig, TabletopScene, random_spec

FORMAT = "kinemask_ros.object_dataset"
FORMAT_VERSION = 1
CURRICULA = ("aimed", "chain", "clutter", "bystander", "edge", "free")
MAX_OBJECTS = 8
__all__ = ["GeneratorConfig", "generate", "load_episodes", "simulate", "EVAL_SEED_OFFSET", "CURRICULA"]


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate (everything but the worker count is part of the dataset's identity).

    Attributes:
        num_episodes, seed: episodes ``seed .. seed + num_episodes - 1``.
        episodes_per_shard: episodes per ``shard_XXXXX.npz``.
        mask_size: resolution of the stored first-frame mask (square, the simulator's top-down camera).
        weights: curriculum name -> relative frequency.
    """

    num_episodes: int = 20000
    seed: int = 0
    episodes_per_shard: int = 500
    mask_size: int = 128
    weights: dict = field(default_factory=lambda: {"aimed": 0.35, "chain": 0.2, "clutter": 0.2, "bystander": 0.1, "edge": 0.08,
                                                   "free": 0.07})

    def __post_init__(self) -> None:
        for name in ("num_episodes", "episodes_per_shard", "mask_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"GeneratorConfig.{name} must be an int >= 1, got {v!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"GeneratorConfig.seed must be an int >= 0, got {self.seed!r}")
        unknown = set(self.weights) - set(CURRICULA)
        if unknown or not self.weights or any(not (isinstance(w, (int, float)) and w >= 0) for w in self.weights.values()):
            raise ValueError(f"GeneratorConfig.weights must map {CURRICULA} to weights >= 0, got {self.weights!r}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("GeneratorConfig.weights must not all be 0")

    def scene_config(self) -> SceneConfig:
        return SceneConfig(camera=CameraConfig(width=self.mask_size, height=self.mask_size), max_objects=MAX_OBJECTS)

    def curriculum(self, seed: int) -> str:
        names = [n for n in CURRICULA if self.weights.get(n, 0) > 0]
        p = np.array([self.weights[n] for n in names], float)
        return names[int(np.random.default_rng([seed, 11]).choice(len(names), p=p / p.sum()))]


# ----------------------------------------------------------------------------- scene builders
def _free(specs: list[ObjectSpec], poses: list[np.ndarray], spec: ObjectSpec, pose: np.ndarray, clearance: float = 0.001) -> bool:
    lim = 0.17
    return bool(np.all(np.abs(pose[:2]) < lim)) and all(
        _gap(spec, pose, s, q) > clearance for s, q in zip(specs, poses))


def _gap(sa: ObjectSpec, pa: np.ndarray, sb: ObjectSpec, pb: np.ndarray) -> float:
    """Conservative gap between two footprints (exact for disks; boxes by their support along the centre line)."""
    d = pb[:2] - pa[:2]
    n = float(np.linalg.norm(d))
    if n < 1e-9:
        return -1.0
    u = d / n
    return n - sa.support(pa[2], u) - sb.support(pb[2], -u)


def _stroke_at(pose: np.ndarray, spec: ObjectSpec, theta: float, lateral: float, rng: np.random.Generator, sc: SceneConfig) -> PushStroke:
    """A stroke along ``theta`` passing the object's centre at ``lateral`` [m] to the side, starting behind it."""
    d = np.array([math.cos(theta), math.sin(theta)])
    n = np.array([-d[1], d[0]])
    back = spec.bounding_radius + sc.pusher_radius + rng.uniform(0.004, 0.03)
    start = pose[:2] - back * d + lateral * n
    lo, hi = sc.push_bounds.length_range
    length = float(rng.uniform(max(lo, min(hi, back + 0.01)), hi))
    return PushStroke(float(start[0]), float(start[1]), float(theta), length, float(rng.uniform(*sc.push_bounds.speed_range)))


def _random_scene(scene: TabletopScene, rng: np.random.Generator, k: int, half: float | None = None) -> tuple[list, np.ndarray]:
    """``scene.sample_objects`` with object centres in ``[-half, half]^2`` (denser clutter) when given."""
    if half is None:
        return scene.sample_objects(rng, k)
    old = scene.config
    scene.config = replace(old, placement_half_extent=half)
    try:
        return scene.sample_objects(rng, k)
    finally:
        scene.config = old


def build(curriculum: str, scene: TabletopScene, rng: np.random.Generator) -> tuple[list[ObjectSpec], np.ndarray, PushStroke]:
    """Objects, poses ``(K, 3)`` and a stroke of one episode of ``curriculum`` (not yet simulated)."""
    sc = scene.config
    colors = list(rng.permutation(list(PALETTE)))
    if curriculum in ("aimed", "clutter", "edge"):
        k = int(rng.integers(1, MAX_OBJECTS + 1)) if curriculum == "aimed" else int(rng.integers(6, MAX_OBJECTS + 1)) if curriculum == "clutter" else int(rng.integers(1, 5))
        specs, poses = _random_scene(scene, rng, k, 0.105 if curriculum == "clutter" else None)
        if curriculum == "edge":  # move the scene towards one edge and push towards it
            side = rng.uniform(-math.pi, math.pi)
            shift = np.array([math.cos(side), math.sin(side)]) * 0.05
            poses = poses.copy()
            poses[:, :2] = np.clip(poses[:, :2] + shift, -0.16, 0.16)
        t = int(rng.integers(len(specs)))
        theta = float(side + rng.normal(0, 0.4)) if curriculum == "edge" else float(rng.uniform(-math.pi, math.pi))
        d = np.array([math.cos(theta), math.sin(theta)])
        reach = specs[t].support(poses[t, 2], np.array([-d[1], d[0]])) + sc.pusher_radius
        lateral = float(rng.uniform(-1.0, 1.0)) * (reach + 0.012)  # centred hits .. glancing .. near miss .. miss
        return specs, poses, _stroke_at(poses[t], specs[t], theta, lateral, rng, sc)
    if curriculum == "chain":
        n = int(rng.integers(2, 5))
        theta = float(rng.uniform(-math.pi, math.pi))
        d = np.array([math.cos(theta), math.sin(theta)])
        nrm = np.array([-d[1], d[0]])
        specs, poses = [], []
        pos = rng.uniform(-0.06, 0.06, 2) - d * 0.06
        for i in range(n):
            s = random_spec(rng, sc, colors[i])
            yaw = float(rng.uniform(-math.pi, math.pi))
            if i:
                prev_s, prev_p = specs[-1], poses[-1]
                gap = rng.uniform(0.001, 0.008)
                along = prev_s.support(prev_p[2], d) + s.support(yaw, -d) + gap
                pos = prev_p[:2] + along * d + nrm * rng.normal(0, 0.004)
            p = np.array([pos[0], pos[1], yaw])
            if not _free(specs, poses, s, p, 0.0005):
                break
            specs.append(s)
            poses.append(p)
        for i in range(int(rng.integers(0, 3))):  # bystanders
            s = random_spec(rng, sc, colors[n + i])
            p = np.array([*rng.uniform(-0.15, 0.15, 2), rng.uniform(-math.pi, math.pi)])
            if _free(specs, poses, s, p, 0.01):
                specs.append(s)
                poses.append(p)
        poses = np.array(poses)
        lateral = float(rng.normal(0, 0.3)) * specs[0].support(poses[0, 2], nrm)
        return specs, poses, _stroke_at(poses[0], specs[0], theta, lateral, rng, sc)
    if curriculum == "bystander":
        specs, poses = _random_scene(scene, rng, int(rng.integers(1, 4)))
        specs, poses = list(specs), [p for p in poses]
        theta = float(rng.uniform(-math.pi, math.pi))
        d = np.array([math.cos(theta), math.sin(theta)])
        nrm = np.array([-d[1], d[0]])
        lateral = float(rng.uniform(-0.4, 0.4)) * specs[0].support(poses[0][2], nrm)
        stroke = _stroke_at(poses[0], specs[0], theta, lateral, rng, sc)
        s = random_spec(rng, sc, colors[len(specs)])
        yaw = float(rng.uniform(-math.pi, math.pi))
        side = 1.0 if rng.random() < 0.5 else -1.0
        along = float(rng.uniform(0.0, stroke.length * 0.6))
        clear = float(rng.uniform(0.001, 0.005))
        path = stroke.start + along * d
        off = sc.pusher_radius + s.support(yaw, -side * nrm) + clear
        p = np.array([*(path + side * off * nrm), yaw])
        if _free(specs, poses, s, p, 0.002):
            specs.append(s)
            poses.append(p)
        return specs, np.array(poses), stroke
    # free: a random stroke anywhere
    specs, poses = _random_scene(scene, rng, int(rng.integers(1, MAX_OBJECTS + 1)))
    p = rng.uniform(-0.16, 0.16, 2)
    stroke = PushStroke(float(p[0]), float(p[1]), float(rng.uniform(-math.pi, math.pi)),
                        float(rng.uniform(*sc.push_bounds.length_range)), float(rng.uniform(*sc.push_bounds.speed_range)))
    return specs, poses, stroke


def simulate(scene: TabletopScene, curriculum: str, seed: int, max_tries: int = 30) -> dict:
    """One episode: ``{"mask" (H, W) uint8, "states" (T, K, 6), "stroke" (5,), "specs": [...], "curriculum"}``."""
    rng = np.random.default_rng([seed, 12])
    for _ in range(max_tries):
        specs, poses, stroke = build(curriculum, scene, rng)
        if not specs or not np.all(np.abs(poses[:, :2]) < 0.185):
            continue
        scene.set_objects(specs, poses)
        _, mask = scene.render()  # the first frame, pusher parked out of view
        try:
            ep = scene.execute(stroke, render=False)
        except ValueError:  # no free start point
            continue
        return {"mask": mask, "states": ep.states, "stroke": ep.stroke.as_array(), "specs": specs, "curriculum": curriculum,
                "pushed": ep.pushed_id}
    raise RuntimeError(f"episode seed {seed} ({curriculum}): no valid scene after {max_tries} tries")


# ----------------------------------------------------------------------------- shards
def _shard(args: tuple[GeneratorConfig, int, str]) -> str:
    cfg, index, out = args
    path = Path(out) / f"shard_{index:05d}.npz"
    if path.exists():
        return str(path)
    scene = TabletopScene(cfg.scene_config())
    lo = cfg.seed + index * cfg.episodes_per_shard
    hi = min(cfg.seed + cfg.num_episodes, lo + cfg.episodes_per_shard)
    T = scene.config.num_frames
    n = hi - lo
    S = cfg.mask_size
    masks = np.zeros((n, S, S), np.uint8)
    states = np.zeros((n, T, MAX_OBJECTS, 6), np.float32)
    strokes = np.zeros((n, 5), np.float32)
    num = np.zeros(n, np.int64)
    kinds = np.zeros(n, np.int64)
    pushed = np.zeros(n, np.int64)
    spec_rows = np.zeros((n, MAX_OBJECTS, 5), np.float32)  # shape (0 box, 1 cylinder), a, b, mass, friction
    for j, seed in enumerate(range(lo, hi)):
        cur = cfg.curriculum(seed)
        ep = simulate(scene, cur, seed)
        k = len(ep["specs"])
        masks[j], states[j, :, :k], strokes[j], num[j] = ep["mask"], ep["states"], ep["stroke"], k
        kinds[j], pushed[j] = CURRICULA.index(cur), ep["pushed"]
        spec_rows[j, :k] = [[SHAPES.index(s.shape), s.size[0], s.size[1], s.mass, s.friction] for s in ep["specs"]]
    scene.close()
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, masks=masks, states=states, strokes=strokes, num_objects=num, curriculum=kinds, pushed=pushed,
                        specs=spec_rows, seeds=np.arange(lo, hi))
    os.replace(tmp, path)
    return str(path)


def generate(cfg: GeneratorConfig, out: str | Path, workers: int = 1, progress: bool = True) -> Path:
    """Write (or complete) the dataset in ``out``; returns the directory."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": asdict(cfg)}
    mpath = out / "manifest.json"
    if mpath.exists():
        old = json.loads(mpath.read_text())
        if old.get("config") != meta["config"]:
            raise ValueError(f"{out} holds a dataset with another config; use another --out or delete it")
    mpath.write_text(json.dumps(meta, indent=1))
    shards = -(-cfg.num_episodes // cfg.episodes_per_shard)
    jobs = [(cfg, i, str(out)) for i in range(shards)]
    from tqdm import tqdm

    bar = tqdm(total=shards, desc="shards", disable=not progress, file=sys.stderr)
    t0 = time.perf_counter()
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_shard, jobs):
                bar.update()
    else:
        for j in jobs:
            _shard(j)
            bar.update()
    bar.close()
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    mpath.write_text(json.dumps(meta, indent=1))
    return out


def load_episodes(root: str | Path, max_episodes: int | None = None) -> dict[str, np.ndarray]:
    """Concatenate the shards of a dataset (arrays as written by :func:`generate`)."""
    files = sorted(Path(root).glob("shard_*.npz"))
    if not files:
        raise FileNotFoundError(f"no shards in {root}: run kinemask-generate-objects --out {root}")
    parts = [dict(np.load(f)) for f in files]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if max_episodes is not None:
        out = {k: v[:max_episodes] for k, v in out.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    from kinemask_ros.sim_bridge.pusht_dataset import ENVS, env_choice

    env, argv = env_choice(argv)
    if env == "pusht":  # the PushT generator (sim_bridge/pusht_dataset.py) takes the rest of the flags
        from kinemask_ros.sim_bridge.pusht_dataset import main as pusht_main

        return pusht_main(argv)
    p = argparse.ArgumentParser(prog="kinemask-generate-objects", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", choices=ENVS, default="tabletop", help="tabletop (this generator) or pusht (gym-pusht strokes; see --env pusht --help)")
    p.add_argument("--out", required=True)
    p.add_argument("--episodes", type=int, default=GeneratorConfig.num_episodes)
    p.add_argument("--seed", type=int, default=0, help=f"first episode seed (held-out data: >= {EVAL_SEED_OFFSET})")
    p.add_argument("--shard-size", type=int, default=GeneratorConfig.episodes_per_shard)
    p.add_argument("--mask-size", type=int, default=GeneratorConfig.mask_size)
    p.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    a = p.parse_args(argv)
    try:
        cfg = GeneratorConfig(num_episodes=a.episodes, seed=a.seed, episodes_per_shard=a.shard_size, mask_size=a.mask_size)
        out = generate(cfg, a.out, a.workers)
    except (ValueError, RuntimeError) as e:
        print(f"kinemask-generate-objects: {e}", file=sys.stderr)
        return 2
    print(f"kinemask-generate-objects: {cfg.num_episodes} episodes in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
