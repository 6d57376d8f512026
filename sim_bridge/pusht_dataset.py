"""PushT stroke dataset for the object-token world model: ``kinemask-generate-objects --env pusht``.

Each episode is one stroke in the real ``gym_pusht/PushT-v0`` physics (through
:class:`~kinemask_ros.envs.pusht.PushTAdapter`), from a T state drawn from one of two sources:

* ``random``: gym-pusht's own reset distribution (T in [100, 400]^2 px, yaw uniform), seeded;
* ``goal``: goal-directed states, the T near the goal pose (256, 256, pi/4) (Gaussian offsets of
  ``goal_sigma_px`` and ``goal_sigma_yaw``), where the planner makes its final, precise strokes.

Strokes: mostly the planner's T-centric parameters (:mod:`kinemask_ros.pusht_strokes`, uniform in
``[-1, 1]^3``), plus ``free_fraction`` of free strokes (random start around the T, random direction;
misses and glancing contacts). The agent starts at rest at the stroke's start (the approach is
not part of what the model predicts) and sweeps with the env's own PD steps; the T's pose is
recorded after every env step and padded with the last one to ``num_frames``.

Shards ``shard_XXXXX.npz``: ``poses0 (E, 3)``, ``strokes (E, 5)``, ``tracks (E, T, 3)`` (body origin,
px, rad, yaw unwrapped), ``source (E,)`` (0 random, 1 goal), ``seed (E,)``; ``meta.json``. Episode
``i`` of a run with ``--seed S`` uses seed ``S + i``; held-out data uses seeds >= 10,000,000.
Resumable: existing complete shards are kept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HELD_OUT_SEED = 10_000_000


@dataclass(frozen=True)
class PushTDataConfig:
    """Settings of ``kinemask-generate-objects --env pusht``.

    Attributes:
        out: dataset directory; episodes: number of strokes; shard_size: episodes per shard.
        seed: first episode seed (episode i uses seed + i).
        goal_fraction: share of goal-directed states; goal_sigma_px / goal_sigma_yaw their spread.
        free_fraction: share of free (not T-centric) strokes.
        num_frames: frames per track (frame 0 + one per env step of the sweep, padded).
        workers: processes.
    """

    out: str = "data/pusht"
    episodes: int = 100_000
    shard_size: int = 5000
    seed: int = 0
    goal_fraction: float = 0.5
    goal_sigma_px: float = 40.0
    goal_sigma_yaw: float = 0.6
    free_fraction: float = 0.15
    num_frames: int = 9
    workers: int = 1

    def __post_init__(self) -> None:
        for name in ("episodes", "shard_size", "num_frames", "workers"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"PushTDataConfig.{name} must be an int >= 1, got {v!r}")
        for name in ("goal_fraction", "free_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"PushTDataConfig.{name} must be in [0, 1], got {v!r}")
        if self.num_frames < 3:
            raise ValueError(f"PushTDataConfig.num_frames must be >= 3, got {self.num_frames}")


def sample_state(rng: np.random.Generator, adapter, goal: bool, cfg: PushTDataConfig, seed: int):
    """A legal T state (inside the arena) and an agent position clear of it."""
    from kinemask_ros.envs.pusht import GOAL_POSE, PushTState

    for _ in range(50):
        if goal:
            x, y = GOAL_POSE[:2] + rng.normal(0, cfg.goal_sigma_px, 2)
            yaw = GOAL_POSE[2] + rng.normal(0, cfg.goal_sigma_yaw)
            st = PushTState((10.0, 10.0), (0.0, 0.0), (float(x), float(y), float(yaw)), (0.0, 0.0), 0.0)
            try:
                st.check()
            except ValueError:
                continue
            return st
        adapter.env.reset(seed=int(seed))  # gym-pusht's reset distribution (no pictures needed)
        return adapter._read(steps=0)
    raise RuntimeError("could not sample a PushT state inside the arena")


def sample_strokes(rng: np.random.Generator, pose: np.ndarray, n: int, free: bool):
    """``(n, 5)`` candidate strokes for the T at ``pose``."""
    from kinemask_ros.envs.pusht import cog_of
    from kinemask_ros.pusht_strokes import params_to_strokes

    if not free:
        return params_to_strokes(pose, rng.uniform(-1, 1, (n, 3)))
    c = cog_of(pose)
    a = rng.uniform(-math.pi, math.pi, n)
    r = rng.uniform(80, 160, n)
    start = c + r[:, None] * np.stack([np.cos(a), np.sin(a)], 1)
    th = a + math.pi + rng.normal(0, 0.6, n)
    L = rng.uniform(20, 170, n)
    return np.stack([start[:, 0], start[:, 1], th, L, np.full(n, 250.0)], 1)


def generate_episode(adapter, seed: int, cfg: PushTDataConfig) -> dict | None:
    from kinemask_ros.envs.pusht import PushTState
    from kinemask_ros.push import PushStroke
    from kinemask_ros.pusht_strokes import strokes_in_arena

    rng = np.random.default_rng([seed, 77])
    goal = bool(rng.random() < cfg.goal_fraction)
    free = bool(rng.random() < cfg.free_fraction)
    st = sample_state(rng, adapter, goal, cfg, seed)
    pose = np.array(st.block)
    cands = sample_strokes(rng, pose, 8, free)
    cands = cands[strokes_in_arena(cands)]
    for s in cands:
        stroke = PushStroke(*map(float, s))
        if math.ceil(stroke.length / (stroke.speed * 0.1)) + adapter.config.hold_steps > cfg.num_frames - 1:
            continue
        try:
            adapter.set_state(PushTState(st.agent, (0.0, 0.0), st.block, (0.0, 0.0), 0.0))
            r = adapter.execute(stroke, approach=False)
        except ValueError:  # UnreachableStroke, or a reset state outside the arena
            continue
        tr = r.track[:, 0]
        tr[:, 2] = np.unwrap(tr[:, 2])
        out = np.repeat(tr[-1:], cfg.num_frames, 0)
        out[: len(tr)] = tr[: cfg.num_frames]
        return {"poses0": tr[0], "strokes": s, "tracks": out, "source": int(goal), "seed": seed}
    return None


def _write_shard(args: tuple[int, PushTDataConfig]) -> str:
    from tqdm import tqdm

    from kinemask_ros.envs.pusht import PushTAdapter

    k, cfg = args
    path = Path(cfg.out) / f"shard_{k:05d}.npz"
    if path.exists():
        return str(path)
    adapter = PushTAdapter(render=False)
    lo = cfg.seed + k * cfg.shard_size
    hi = min(cfg.seed + cfg.episodes, lo + cfg.shard_size)
    eps = []
    for seed in tqdm(range(lo, hi), desc=f"pusht shard {k}", file=sys.stderr, mininterval=5, position=k % max(1, cfg.workers)):
        e = generate_episode(adapter, seed, cfg)
        if e is not None:
            eps.append(e)
    adapter.close()
    data = {key: np.stack([e[key] for e in eps]) for key in eps[0]}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **data)
    os.replace(tmp, path)
    return str(path)


def generate(cfg: PushTDataConfig) -> Path:
    """Write (or complete) the dataset; returns its directory."""
    from kinemask_ros.envs.pusht import require_gym_pusht

    require_gym_pusht()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").write_text(json.dumps({"env": "pusht", "gym_pusht": "0.1.8", **asdict(cfg)}, indent=1))
    shards = list(range(math.ceil(cfg.episodes / cfg.shard_size)))
    jobs = [(k, cfg) for k in shards]
    if cfg.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(cfg.workers) as pool:
            for p in pool.imap_unordered(_write_shard, jobs):
                print(f"wrote {p}", file=sys.stderr)
    else:
        for j in jobs:
            print(f"wrote {_write_shard(j)}", file=sys.stderr)
    return out


def load_pusht(path: str | Path, max_episodes: int | None = None) -> dict[str, np.ndarray]:
    """All shards of a PushT dataset concatenated (``poses0 (E, 3)``, ``strokes (E, 5)``, ``tracks (E, T, 3)``, ...)."""
    path = Path(path)
    files = sorted(path.glob("shard_*.npz"))
    if not files:
        raise FileNotFoundError(f"no shard_*.npz in {path}; generate data with kinemask-generate-objects --env pusht --out {path}")
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else {}
    if meta.get("env", "pusht") != "pusht":
        raise ValueError(f"{path} holds {meta.get('env')!r} data, not PushT")
    parts = [dict(np.load(f)) for f in files]
    d = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if max_episodes:
        d = {k: v[:max_episodes] for k, v in d.items()}
    return d


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kinemask-generate-objects --env pusht", description=__doc__.split("\n\n")[0])
    for f in PushTDataConfig.__dataclass_fields__.values():
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    a = vars(p.parse_args(argv))
    try:
        generate(PushTDataConfig(**a))
    except (ValueError, ImportError, FileNotFoundError) as e:
        print(f"kinemask-generate-objects --env pusht: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


ENVS = ("tabletop", "pusht")


def env_choice(argv: list[str] | None) -> tuple[str, list[str]]:
    """``--env {tabletop,pusht}`` taken out of ``argv`` (default ``tabletop``): the hook the shared
    ``kinemask-generate``, ``kinemask-generate-objects`` and ``kinemask-train-objects`` CLIs use to
    forward ``--env pusht`` to the PushT generator / trainer. An unknown value is left in place for
    the caller's parser to reject (its ``--env`` has ``choices``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == "--env" and i + 1 < len(args) and args[i + 1] in ENVS:
            return args[i + 1], args[:i] + args[i + 2:]
        if a.startswith("--env=") and a.split("=", 1)[1] in ENVS:
            return a.split("=", 1)[1], args[:i] + args[i + 1:]
    return "tabletop", args
