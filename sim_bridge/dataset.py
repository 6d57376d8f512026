"""Synthetic KineMask training data: sharded, resumable, reproducible from seeds.

Run ``kinemask-generate --out data/train --episodes 4000`` (see ``docs/dataset.md`` for the
format). Episode ``i`` of a run with ``--seed S`` is simulated from seed ``S + i`` alone, so any
shard can be regenerated bit-identically and different worker counts give the same data.
"""

from __future__ import annotations

import argparse
import hashlib
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
from kinemask_ros.sim_bridge.scene import PALETTE, PUSHER_ID, SHAPES, Episode, SceneConfig, TabletopScene

FORMAT = "kinemask_ros.dataset"
FORMAT_VERSION = 1
#: Seeds at or above this are never used for training; benchmarks draw held-out episodes here.
EVAL_SEED_OFFSET = 10_000_000
KIND_FREE, KIND_COLLISION, KIND_MISS = 0, 1, 2
KIND_NAMES = ("free", "collision", "miss")
COLOR_NAMES = tuple(PALETTE)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Everything except ``workers`` is part of the dataset's identity."""

    num_episodes: int = 4000
    seed: int = 0
    episodes_per_shard: int = 200
    collision_fraction: float = 0.5
    miss_fraction: float = 0.05
    max_tries: int = 40
    scene: SceneConfig = field(default_factory=SceneConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.num_episodes, int) or self.num_episodes < 1:
            raise ValueError(f"GeneratorConfig.num_episodes must be an int >= 1, got {self.num_episodes!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"GeneratorConfig.seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.episodes_per_shard, int) or self.episodes_per_shard < 1:
            raise ValueError(f"GeneratorConfig.episodes_per_shard must be an int >= 1, got {self.episodes_per_shard!r}")
        for name in ("collision_fraction", "miss_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"GeneratorConfig.{name} must be in [0, 1], got {v!r}")
        if self.collision_fraction + self.miss_fraction > 1.0:
            raise ValueError(
                f"GeneratorConfig.collision_fraction + miss_fraction must be <= 1, got {self.collision_fraction} + {self.miss_fraction}"
            )
        if self.collision_fraction > 0 and self.scene.max_objects < 2:
            raise ValueError("GeneratorConfig.collision_fraction > 0 needs scene.max_objects >= 2")
        if not isinstance(self.max_tries, int) or self.max_tries < 1:
            raise ValueError(f"GeneratorConfig.max_tries must be an int >= 1, got {self.max_tries!r}")
        if self.seed < EVAL_SEED_OFFSET < self.seed + self.num_episodes:
            raise ValueError(
                f"GeneratorConfig.seed + num_episodes must not cross EVAL_SEED_OFFSET={EVAL_SEED_OFFSET} "
                f"(seeds {self.seed}..{self.seed + self.num_episodes - 1} would mix training and held-out episodes)"
            )

    @property
    def num_shards(self) -> int:
        return (self.num_episodes + self.episodes_per_shard - 1) // self.episodes_per_shard

    def shard_range(self, index: int) -> tuple[int, int]:
        """Seeds ``[start, stop)`` of shard ``index``."""
        start = self.seed + index * self.episodes_per_shard
        return start, min(start + self.episodes_per_shard, self.seed + self.num_episodes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        s = dict(d["scene"])
        s["camera"] = CameraConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in s["camera"].items()})
        from kinemask_ros.push import PushBounds

        s["push_bounds"] = PushBounds(**{k: tuple(v) for k, v in s["push_bounds"].items()})
        s = {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}
        top = {k: v for k, v in d.items() if k != "scene"}
        return cls(scene=SceneConfig(**s), **top)


# ----------------------------------------------------------------------------- sampling
def episode_kind(cfg: GeneratorConfig, seed: int) -> int:
    """Kind of episode ``seed`` (free / collision / miss), drawn from the seed alone."""
    u = np.random.default_rng([seed, 1]).random()
    if u < cfg.miss_fraction:
        return KIND_MISS
    if u < cfg.miss_fraction + cfg.collision_fraction:
        return KIND_COLLISION
    return KIND_FREE


def stroke_towards(scene: TabletopScene, target: int, theta: float, rng: np.random.Generator) -> PushStroke:
    """A stroke that starts just behind object ``target`` (1..K) and pushes it along ``theta``."""
    cfg = scene.config
    spec = scene.objects[target - 1]
    pose = scene.poses()[target - 1]
    d = np.array([math.cos(theta), math.sin(theta)])
    n = np.array([-d[1], d[0]])
    back = spec.support(pose[2], d) + cfg.pusher_radius + rng.uniform(0.003, 0.015)
    lateral = rng.uniform(-0.5, 0.5) * spec.support(pose[2], n)
    start = pose[:2] - back * d + lateral * n
    lo, hi = cfg.push_bounds.length_range
    length = rng.uniform(max(lo, back - spec.support(pose[2], d) + 0.02), hi)
    return PushStroke(float(start[0]), float(start[1]), float(theta), float(length), float(rng.uniform(*cfg.push_bounds.speed_range)))


def simulate_episode(scene: TabletopScene, cfg: GeneratorConfig, seed: int) -> tuple[Episode, int]:
    """Simulate the episode for ``seed`` until it is of the kind the seed asks for.

    Returns the episode and its kind. Raises ``RuntimeError`` after ``cfg.max_tries`` failures.
    """
    kind = episode_kind(cfg, seed)
    rng = np.random.default_rng([seed, 2])
    sc = cfg.scene
    for _ in range(cfg.max_tries):
        k = int(rng.integers(max(2, sc.min_objects), sc.max_objects + 1)) if kind == KIND_COLLISION else None
        specs, poses = scene.sample_objects(rng, k)
        scene.set_objects(specs, poses)
        K = len(specs)
        if kind == KIND_MISS:
            p = rng.uniform(-sc.workspace_half_extent * 0.9, sc.workspace_half_extent * 0.9, 2)
            stroke = PushStroke(float(p[0]), float(p[1]), float(rng.uniform(-math.pi, math.pi)),
                                float(rng.uniform(*sc.push_bounds.length_range)), float(rng.uniform(*sc.push_bounds.speed_range)))
            if scene.first_contact(stroke) != 0 or any(s.distance_to(q, stroke.start) <= sc.pusher_radius for s, q in zip(specs, poses)):
                continue
            ep = scene.execute(stroke)
            if ep.pushed_id == 0:
                return ep, kind
            continue
        if kind == KIND_COLLISION:
            if K < 2:
                continue
            target = int(rng.integers(K)) + 1
            others = [j for j in range(1, K + 1) if j != target]
            dists = [np.linalg.norm(poses[j - 1, :2] - poses[target - 1, :2]) for j in others]
            j = others[int(np.argmin(dists))]
            if min(dists) > 0.16:
                continue
            delta = poses[j - 1, :2] - poses[target - 1, :2]
            theta = math.atan2(delta[1], delta[0]) + rng.normal(0.0, math.radians(12))
        else:
            target = int(rng.integers(K)) + 1
            theta = float(rng.uniform(-math.pi, math.pi))
        stroke = stroke_towards(scene, target, theta, rng)
        if any(s.distance_to(q, stroke.start) <= sc.pusher_radius + 0.002 for s, q in zip(specs, poses)):
            continue
        ep = scene.execute(stroke)
        if ep.pushed_id != target:
            continue
        if (kind == KIND_COLLISION) == ep.collided:
            return ep, kind
    raise RuntimeError(f"episode seed {seed}: no {KIND_NAMES[kind]} episode after {cfg.max_tries} tries")


# ----------------------------------------------------------------------------- shards
def pack_episodes(episodes: list[tuple[int, int, Episode]], sc: SceneConfig) -> dict[str, np.ndarray]:
    """Stack episodes (seed, kind, episode) into fixed-size arrays padded to ``K = max_objects``."""
    N, T, K = len(episodes), sc.num_frames, sc.max_objects
    H, W = sc.camera.height, sc.camera.width
    from kinemask_ros.velocity_mask import encode_driver_mask

    radius_px = sc.pusher_radius * _ppm(sc)
    out = {
        "seeds": np.zeros(N, np.int64),
        "kind": np.zeros(N, np.uint8),
        "num_objects": np.zeros(N, np.uint8),
        "frames": np.zeros((N, T, H, W, 3), np.uint8),
        "masks": np.zeros((N, T, H, W), np.uint8),
        "driver": np.zeros((N, T, H, W), np.uint8),
        "states": np.zeros((N, T, K, 6), np.float32),
        "centroids_px": np.zeros((N, T, K, 2), np.float32),
        "velocities_px": np.zeros((N, T, K, 2), np.float32),
        "contact_velocity": np.zeros((N, K, 2), np.float32),
        "object_shape": np.zeros((N, K), np.uint8),
        "object_color": np.zeros((N, K), np.uint8),
        "object_size": np.zeros((N, K, 2), np.float32),
        "object_mass": np.zeros((N, K), np.float32),
        "object_friction": np.zeros((N, K), np.float32),
        "stroke": np.zeros((N, 5), np.float32),
        "pusher_xy": np.zeros((N, T, 2), np.float32),
        "pusher_px": np.zeros((N, T, 2), np.float32),
        "pushed_id": np.zeros(N, np.uint8),
        "collided": np.zeros(N, bool),
    }
    meta = []
    for n, (seed, kind, ep) in enumerate(episodes):
        k = len(ep.objects)
        out["seeds"][n], out["kind"][n], out["num_objects"][n] = seed, kind, k
        out["frames"][n], out["masks"][n] = ep.frames, ep.masks
        out["driver"][n] = encode_driver_mask(ep.pusher_px, radius_px, H, W)[:, 0].astype(np.uint8)
        out["states"][n, :, :k] = ep.states
        out["centroids_px"][n, :, :k] = ep.centroids_px
        out["velocities_px"][n, :, :k] = ep.velocities_px
        out["contact_velocity"][n, :k] = ep.contact_velocity
        for i, s in enumerate(ep.objects):
            out["object_shape"][n, i] = SHAPES.index(s.shape)
            out["object_color"][n, i] = COLOR_NAMES.index(s.color)
            out["object_size"][n, i] = s.size
            out["object_mass"][n, i] = s.mass
            out["object_friction"][n, i] = s.friction
        out["stroke"][n] = ep.stroke.as_array()
        out["pusher_xy"][n], out["pusher_px"][n] = ep.pusher_xy, ep.pusher_px
        out["pushed_id"][n], out["collided"][n] = ep.pushed_id, ep.collided
        meta.append({"seed": seed, "text": ep.describe(), "events": ep.events, "objects": [s.name for s in ep.objects]})
    out["meta_json"] = np.array(json.dumps(meta))
    return out


def _ppm(sc: SceneConfig) -> float:
    from kinemask_ros.camera import CameraModel

    return CameraModel(sc.camera).pixels_per_metre()


_WORKER_SCENE: TabletopScene | None = None


def _make_shard(args: tuple[GeneratorConfig, int, str]) -> dict:
    """Worker: simulate shard ``index`` and write it atomically (``.tmp`` then rename)."""
    global _WORKER_SCENE
    cfg, index, out_dir = args
    if _WORKER_SCENE is None or _WORKER_SCENE.config != cfg.scene:
        _WORKER_SCENE = TabletopScene(cfg.scene)
    start, stop = cfg.shard_range(index)
    eps = []
    for seed in range(start, stop):
        ep, kind = simulate_episode(_WORKER_SCENE, cfg, seed)
        eps.append((seed, kind, ep))
    arrays = pack_episodes(eps, cfg.scene)
    final = Path(out_dir) / shard_name(index)
    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    digest = _sha256(tmp)
    os.replace(tmp, final)
    return {
        "index": index, "file": final.name, "seed_start": start, "count": stop - start, "sha256": digest,
        "collisions": int(arrays["collided"].sum()), "misses": int((arrays["kind"] == KIND_MISS).sum()),
    }


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.npz"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DatasetError(ValueError):
    """A dataset directory that cannot be used as asked (not ours, other config, damaged shard)."""


def _prepare_dir(cfg: GeneratorConfig, out: Path, log) -> dict:
    """Check ``out`` and return the manifest to continue from (new or resumed)."""
    manifest_path = out / "manifest.json"
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not manifest_path.exists():
        raise DatasetError(
            f"{out} is not empty and has no manifest.json, so it is not a kinemask_ros dataset; "
            "choose a new or empty directory (nothing was written)"
        )
    out.mkdir(parents=True, exist_ok=True)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise DatasetError(f"{manifest_path} is not a kinemask_ros dataset manifest (format={manifest.get('format')!r})")
        old = manifest["config"]
        # Compare in JSON form: the manifest stores lists where the dataclasses hold tuples.
        new = json.loads(json.dumps(cfg.to_dict()))
        diff = [k for k in _config_diff(old, new) if k != "num_episodes"]
        if diff or old.get("num_episodes", 0) > cfg.num_episodes:
            detail = ", ".join(
                f"{k}: {_lookup(old, k)!r} in the manifest, {_lookup(new, k)!r} asked" for k in diff
            ) or f"num_episodes: {old.get('num_episodes')} in the manifest, fewer ({cfg.num_episodes}) asked"
            raise DatasetError(
                f"{out} holds a dataset made with another configuration (differs in {detail}); "
                "use a new directory, or rerun with the same settings to resume"
            )
        manifest["config"] = new
    else:
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "config": cfg.to_dict(), "shards": [], "stats": {}}
    done = {s["file"] for s in manifest["shards"]}
    for p in sorted(out.glob("shard_*.npz.tmp")):
        log(f"found partial shard {p.name} (an interrupted write); it is removed and regenerated from its seeds")
        p.unlink()
    for p in sorted(out.glob("shard_*.npz")):
        if p.name not in done:
            raise DatasetError(
                f"{p} is not listed in {manifest_path}: it may be damaged or from another run; "
                "delete it to regenerate it from its seeds"
            )
    for s in manifest["shards"]:
        if not (out / s["file"]).exists():
            raise DatasetError(f"{out / s['file']} is listed in the manifest but missing; delete the manifest entry or the directory")
    # A run with more episodes than the last one: a last shard that was cut short by the old
    # episode count holds fewer seeds than its range now asks for; regenerate it whole.
    for s in list(manifest["shards"]):
        start, stop = cfg.shard_range(s["index"])
        if s["seed_start"] != start or s["count"] != stop - start:
            log(f"shard {s['file']} holds {s['count']} episodes but now needs {stop - start}; it is regenerated")
            manifest["shards"].remove(s)
            (out / s["file"]).unlink()
    return manifest


#: fields added after datasets were written: older manifests implicitly had the canonical look
_IMPLICIT_DEFAULTS = ("scene.look",)


def _config_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two (nested) config dicts (a field missing from
    an older manifest counts as its default: e.g. ``scene.look``, the canonical look)."""
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if f"{prefix}{k}" in _IMPLICIT_DEFAULTS and (a is None or b is None):
            from kinemask_ros.sim_bridge.look import LookConfig

            canonical = LookConfig().to_dict()
            if (a if a is not None else canonical) == (b if b is not None else canonical):
                continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys


def _lookup(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")


def generate(cfg: GeneratorConfig, out_dir: str | Path, workers: int = 1, progress: bool = True, log=print) -> dict:
    """Generate (or resume) the dataset in ``out_dir``; returns the manifest."""
    from tqdm import tqdm

    out = Path(out_dir)
    manifest = _prepare_dir(cfg, out, log)
    # Write the manifest before the first shard: a run interrupted during its first shard then
    # leaves a directory that is recognisably ours and can be resumed.
    _write_manifest(out, manifest)
    done = {s["index"] for s in manifest["shards"]}
    todo = [i for i in range(cfg.num_shards) if i not in done]
    remaining = sum(cfg.shard_range(i)[1] - cfg.shard_range(i)[0] for i in todo)
    if not todo:
        log(f"{out}: all {cfg.num_episodes} episodes present; nothing to do")
        return manifest
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.num_episodes, initial=cfg.num_episodes - remaining, unit="ep", desc="generating", disable=not progress)
    tasks = [(cfg, i, str(out)) for i in todo]

    def record(info: dict) -> None:
        manifest["shards"].append(info)
        manifest["shards"].sort(key=lambda s: s["index"])
        _write_manifest(out, manifest)
        bar.update(info["count"])

    if workers <= 1:
        for t in tasks:
            record(_make_shard(t))
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            for info in pool.imap_unordered(_make_shard, tasks):
                record(info)
    bar.close()
    dt = time.perf_counter() - t0
    n = sum(s["count"] for s in manifest["shards"])
    manifest["stats"] = {
        "episodes": n,
        "collision_episodes": sum(s["collisions"] for s in manifest["shards"]),
        "miss_episodes": sum(s["misses"] for s in manifest["shards"]),
        "last_run_episodes_per_second": round(remaining / dt, 2),
        "last_run_workers": workers,
    }
    _write_manifest(out, manifest)
    log(f"{out}: {n} episodes in {len(manifest['shards'])} shards; this run {remaining} episodes in {dt:.1f} s "
        f"({remaining / dt:.1f} episodes/s with {workers} worker(s))")
    return manifest


# ----------------------------------------------------------------------------- reading
def load_manifest(root: str | Path) -> dict:
    root = Path(root)
    path = root / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {root} is not a kinemask_ros dataset; generate one with `kinemask-generate --out {root}`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} is not a kinemask_ros dataset manifest")
    return manifest


def load_shard(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of one shard (see ``docs/dataset.md``); ``meta`` is the decoded per-episode list."""
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    d["meta"] = json.loads(str(d.pop("meta_json")))
    return d


def load_dataset(root: str | Path, max_episodes: int | None = None) -> dict[str, np.ndarray]:
    """Concatenate the shards of a dataset in seed order (``meta`` concatenated as a list)."""
    manifest = load_manifest(root)
    parts = []
    n = 0
    for s in manifest["shards"]:
        parts.append(load_shard(Path(root) / s["file"]))
        n += s["count"]
        if max_episodes is not None and n >= max_episodes:
            break
    if not parts:
        raise DatasetError(f"{root} has no shards yet")
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "meta"}
    out["meta"] = [m for p in parts for m in p["meta"]]
    if max_episodes is not None:
        out = {k: v[:max_episodes] for k, v in out.items()}
    return out


# ----------------------------------------------------------------------------- preview
def write_preview(root: str | Path, out_dir: str | Path | None = None, num: int = 8, scale: int = 4) -> list[Path]:
    """Contact sheet PNG (frames 0, T/2, T-1 + masks + velocity mask) and a GIF of ``num`` episodes."""
    from kinemask_ros.velocity_mask import encode_velocity_mask
    from kinemask_ros.viz import colorize_ids, grid, save_gif, save_png, upscale, velocity_to_rgb

    data = load_dataset(root, max_episodes=num)
    out_dir = Path(out_dir or Path(root) / "preview")
    vmax = 4.0
    tiles, gif_rows = [], []
    N, T = data["frames"].shape[:2]
    for n in range(N):
        k = int(data["num_objects"][n])
        vm = encode_velocity_mask(data["masks"][n], data["velocities_px"][n, :, :k], vmax)
        row = [data["frames"][n, 0], data["frames"][n, T // 2], data["frames"][n, -1], colorize_ids(data["masks"][n, 0]),
               velocity_to_rgb(vm[0]), np.repeat(data["driver"][n].max(0)[..., None] * 255, 3, -1).astype(np.uint8)]
        tiles += [upscale(t, scale) for t in row]
        gif_rows.append(upscale(data["frames"][n], scale))
    sheet = save_png(out_dir / "contact_sheet.png", grid(tiles, cols=6))
    cols = min(4, N)
    frames = [grid([g[t] for g in gif_rows], cols=cols) for t in range(T)]
    gif = save_gif(out_dir / "episodes.gif", frames, fps=8)
    (out_dir / "texts.txt").write_text("\n".join(f"{m['seed']}: {m['text']}" for m in data["meta"]) + "\n")
    return [sheet, gif]


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    d, s = GeneratorConfig(), SceneConfig()
    p = argparse.ArgumentParser(prog="kinemask-generate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="dataset directory (created; resumed if it holds a manifest)")
    p.add_argument("--episodes", type=int, default=d.num_episodes, help="number of episodes N")
    p.add_argument("--seed", type=int, default=d.seed, help="first seed; episode i uses seed+i")
    p.add_argument("--frames", type=int, default=s.num_frames, help="frames per episode T")
    p.add_argument("--height", type=int, default=s.camera.height, help="image height H")
    p.add_argument("--width", type=int, default=s.camera.width, help="image width W")
    p.add_argument("--frame-dt", type=float, default=s.frame_dt, help="seconds between frames")
    p.add_argument("--min-objects", type=int, default=s.min_objects)
    p.add_argument("--max-objects", type=int, default=s.max_objects)
    p.add_argument("--collision-fraction", type=float, default=d.collision_fraction, help="share of episodes with object-object collisions")
    p.add_argument("--miss-fraction", type=float, default=d.miss_fraction, help="share of strokes that touch nothing")
    p.add_argument("--shard-size", type=int, default=d.episodes_per_shard, help="episodes per shard file")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="parallel worker processes")
    p.add_argument("--preview", type=int, nargs="?", const=8, default=0, metavar="N",
                   help="also write a contact sheet and GIF of the first N episodes to OUT/preview")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(a: argparse.Namespace) -> GeneratorConfig:
    base = SceneConfig()
    scene = replace(base, camera=replace(base.camera, width=a.width, height=a.height), num_frames=a.frames,
                    frame_dt=a.frame_dt, min_objects=a.min_objects, max_objects=a.max_objects)
    return GeneratorConfig(num_episodes=a.episodes, seed=a.seed, episodes_per_shard=a.shard_size,
                           collision_fraction=a.collision_fraction, miss_fraction=a.miss_fraction, scene=scene)


def main(argv: list[str] | None = None) -> int:
    from kinemask_ros.sim_bridge.pusht_dataset import ENVS, env_choice

    env, argv = env_choice(argv)
    if env == "pusht":  # PushT strokes for the object-token model: same as kinemask-generate-objects --env pusht
        from kinemask_ros.sim_bridge.pusht_dataset import main as pusht_main

        return pusht_main(argv)
    parser = build_parser()
    parser.add_argument("--env", choices=ENVS, default="tabletop", help="tabletop (this generator) or pusht (see --env pusht --help)")
    a = parser.parse_args(argv)
    try:
        cfg = config_from_args(a)
        generate(cfg, a.out, workers=a.workers, progress=not a.no_progress)
        if a.preview:
            for p in write_preview(a.out, num=a.preview):
                print(f"preview: {p}")
    except (ValueError, FileNotFoundError) as e:
        print(f"kinemask-generate: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
