"""Planning benchmark (DESIGN §5) on ``KineMaskPush-v0`` with fixed seeds, all methods in one run.

    python benchmarks/planning.py --episodes 50

Methods: world-model CEM, world-model MPPI, oracle (CEM with the simulator's true state as the
dynamics: upper bound), heuristic (straight towards the goal), random. Every method sees the same
seeds. Scenes where another object lies in the straight corridor from the target to the goal are
reported separately ("blocked"). Writes ``OUT/planning.json`` and ``OUT/planning.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import kinemask_ros  # noqa: F401  (registers the envs)
from kinemask_ros.camera import CameraModel
from kinemask_ros.planning import PlannerConfig, PushPlanner
from kinemask_ros.scoring import ScoreConfig
from kinemask_ros.policies.baselines import HeuristicPolicy, RandomPolicy, SimulatorDynamics
from kinemask_ros.policies.mpc import MPCController
from kinemask_ros.envs.scenarios import blocked_scene_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402


#: "clean" success: the goal is reached and the other objects moved less than this in total [m].
CLEAN_DISTURBANCE_M = 0.02


def blocked(env) -> bool:
    """Another object's footprint comes within reach of the straight target -> goal corridor."""
    u = env.unwrapped
    st = u.get_state()
    poses = np.asarray(st["poses"])
    t = u.target - 1
    a, b = poses[t, :2], np.asarray(st["goal"])
    specs = u.objects
    ab = b - a
    for j, (s, q) in enumerate(zip(specs, poses)):
        if j == t:
            continue
        w = np.clip((q[:2] - a) @ ab / max(ab @ ab, 1e-12), 0, 1)
        if np.linalg.norm(a + w * ab - q[:2]) < s.bounding_radius + specs[t].bounding_radius:
            return True
    return False


def run_episode(env, seed: int, method: str, planner: PushPlanner, max_pushes: int, rng_seed: int, options: dict | None = None) -> dict:
    obs, info = env.reset(seed=seed, options=options)
    u = env.unwrapped
    heuristic, rand = HeuristicPolicy(planner), RandomPolicy(planner, rng_seed)
    mpc = None
    if method.startswith("wm"):
        mpc = MPCController(planner)
    elif method == "oracle":
        mpc = MPCController(planner, dynamics_factory=lambda o: SimulatorDynamics(u.get_state(), u.config.scene))
    lat, pushes, success, disturbance = [], 0, bool(info.get("is_success", False)), 0.0
    for _ in range(max_pushes):
        if success:
            break
        t0 = time.perf_counter()
        if mpc is not None:
            stroke, plan = mpc.act(obs)
            if stroke is None:
                break
        elif method == "heuristic":
            stroke = heuristic.stroke(obs["instance_mask"], int(obs["target"]), obs["goal"])
        else:
            stroke = rand.stroke(obs["instance_mask"], int(obs["target"]))
        lat.append(time.perf_counter() - t0)
        obs, r, term, trunc, info = env.step(u.stroke_to_action(stroke))
        pushes += 1
        disturbance += float(info["disturbance"])
        success = bool(info["is_success"])
        if term or trunc:
            break
    return {"seed": seed, "success": success, "clean_success": success and disturbance < CLEAN_DISTURBANCE_M,
            "disturbance": disturbance, "final_distance": float(u.goal_distance()), "pushes": pushes, "latency_s": lat}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="world model (default: embedded)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--max-pushes", type=int, default=5)
    p.add_argument("--methods", default="wm-cem,wm-mppi,oracle,heuristic,random")
    p.add_argument("--candidates", type=int, default=64, help="samples per planner iteration")
    p.add_argument("--blocked-fraction", type=float, default=0.5, help="share of episodes rebuilt with an obstacle in the straight path")
    p.add_argument("--disturbance-weight", type=float, default=None, help="override the planner's disturbance cost weight")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    pipe = KineMaskPipeline.from_pretrained(a.checkpoint, load_video=False)
    env = gym.make("KineMaskPush-v0")
    multi = gym.make("KineMaskPush-v0", num_objects=(2, 4))  # blocked scenes need a second object
    seeds = list(range(a.first_seed, a.first_seed + a.episodes))
    options: dict[int, dict | None] = {}
    blocked_seeds = set()
    for i, s in enumerate(seeds):
        options[s] = blocked_scene_options(multi, s) if i < round(a.blocked_fraction * len(seeds)) else None
        env.reset(seed=s, options=options[s])
        if blocked(env):
            blocked_seeds.add(s)
    multi.close()
    results: dict[str, list] = {}
    t_all = time.perf_counter()
    for method in a.methods.split(","):
        kind = {"wm-cem": "cem", "wm-mppi": "mppi", "oracle": "cem"}.get(method, "random")
        cfg = PlannerConfig(method=kind, seed=0)
        cfg = dataclasses.replace(cfg, cem=dataclasses.replace(cfg.cem, num_samples=a.candidates),
                                  mppi=dataclasses.replace(cfg.mppi, num_samples=a.candidates))
        if a.disturbance_weight is not None:
            cfg = dataclasses.replace(cfg, score=ScoreConfig(weights={**cfg.score.weights, "disturbance": a.disturbance_weight}))
        planner = PushPlanner(CameraModel(env.unwrapped.scene.camera.config), cfg, pipe)
        rows = []
        t0 = time.perf_counter()
        for s in seeds:
            rows.append(run_episode(env, s, method, planner, a.max_pushes, s, options[s]))
        results[method] = rows
        sr = np.mean([r["success"] for r in rows])
        print(f"{method}: success {sr:.2f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    def summary(rows):
        lat = [x for r in rows for x in r["latency_s"]]
        bl = [r for r in rows if r["seed"] in blocked_seeds]
        return {"success_rate": float(np.mean([r["success"] for r in rows])),
                "final_distance_m": float(np.mean([r["final_distance"] for r in rows])),
                "pushes_mean": float(np.mean([r["pushes"] for r in rows])),
                "decision_latency_median_s": float(np.median(lat)) if lat else None,
                "blocked_success_rate": float(np.mean([r["success"] for r in bl])) if bl else None,
                "clean_success_rate": float(np.mean([r["clean_success"] for r in rows])),
                "blocked_clean_success_rate": float(np.mean([r["clean_success"] for r in bl])) if bl else None,
                "disturbance_m": float(np.mean([r["disturbance"] for r in rows]))}

    table = {m: summary(r) for m, r in results.items()}
    oracle_sr = table.get("oracle", {}).get("success_rate")

    res = {"machine": machine(), "episodes": a.episodes, "seeds": [seeds[0], seeds[-1]], "blocked_episodes": len(blocked_seeds),
           "max_pushes": a.max_pushes, "candidates_per_iteration": a.candidates, "score_weights": dict(cfg.score.weights),
           "summary": table, "episodes_detail": results,
           "wall_s": time.perf_counter() - t_all}
    (out / "planning.json").write_text(json.dumps(res, indent=1))
    lines = [f"# Planning on KineMaskPush-v0 ({res['machine']})", "",
             f"{a.episodes} episodes (seeds {seeds[0]}..{seeds[-1]}), at most {a.max_pushes} pushes, success = target within 3 cm of the goal; "
             f"{len(blocked_seeds)} episodes have another object in the straight path (\"blocked\"). "
             f"Planners: {a.candidates} candidates x 3 iterations.", "",
             f"\"Clean\" success also requires the other objects to move < {CLEAN_DISTURBANCE_M} m in total.", "",
             "| method | success | vs oracle | blocked success | clean success | blocked clean success | disturbance [m] | final distance [m] | pushes | decision latency (median) [s] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, s in table.items():
        ratio = f"{s['success_rate'] / oracle_sr:.2f}" if oracle_sr else "–"
        bl = "–" if s["blocked_success_rate"] is None else f"{s['blocked_success_rate']:.2f}"
        bc = "–" if s["blocked_clean_success_rate"] is None else f"{s['blocked_clean_success_rate']:.2f}"
        lat = "–" if s["decision_latency_median_s"] is None else f"{s['decision_latency_median_s']:.3f}"
        lines.append(f"| {m} | {s['success_rate']:.2f} | {ratio} | {bl} | {s['clean_success_rate']:.2f} | {bc} | {s['disturbance_m']:.3f} | "
                     f"{s['final_distance_m']:.3f} | {s['pushes_mean']:.2f} | {lat} |")
    md = "\n".join(lines) + "\n"
    (out / "planning.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
