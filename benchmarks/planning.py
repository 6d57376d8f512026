"""Planning benchmark (DESIGN §5) on ``KineMaskPush-v0`` with fixed seeds, all methods in one run.

    python benchmarks/planning.py                      # 50 open + 50 blocked + 50 cluttered scenes
    python benchmarks/planning.py --episodes 3 --clutter-episodes 3 --checkpoint runs/ckpt_v2 --out /tmp/plan

Methods: world-model CEM, world-model MPPI, oracle (CEM with the simulator's true state as the
dynamics: upper bound), heuristic (straight towards the goal), random. Every method sees the same
scenes. Three scene sets, each reported on its own, with seeds of their own:

* ``open``: sampled scenes (1-4 objects) where no other object lies in the straight corridor from
  the target to the goal (seeds from ``--first-seed``; blocked samples are skipped);
* ``blocked``: scenes rebuilt by :func:`~kinemask_ros.envs.scenarios.blocked_scene_options` so
  that another object sits in the middle of that corridor (seeds from ``--blocked-first-seed``);
* ``cluttered``: 6-8 objects packed around the target
  (:func:`~kinemask_ros.envs.scenarios.cluttered_scene_options`, an env with
  ``scene.max_objects = 8``; seeds from ``--clutter-first-seed``).

With a raster-only checkpoint (``K`` = 4 slots) scenes with more objects go through slot fitting:
each decision's ``plan.left_out`` count is recorded per episode. Writes ``OUT/planning.json`` and
``OUT/planning.md``, including the targets of the issue with pass / fail.
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
from kinemask_ros.envs.scenarios import blocked_scene_options, cluttered_scene_options
from kinemask_ros.sim_bridge.scene import SceneConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402


#: "clean" success: the goal is reached and the other objects moved less than this in total [m].
CLEAN_DISTURBANCE_M = 0.02
SETS = ("open", "blocked", "cluttered")
#: targets of the issue: wm-cem clean success on blocked scenes, wm-cem / oracle clean success on
#: cluttered scenes, and wm-cem overall success (all sets pooled) >= the heuristic's.
MIN_SEEDS_PER_SET = 50
TARGET_BLOCKED_CLEAN = 0.80
TARGET_CLUTTER_VS_ORACLE = 0.7


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
    sims: list[SimulatorDynamics] = []

    def oracle(o):
        sims.append(SimulatorDynamics(u.get_state(), u.config.scene))
        return sims[-1]

    mpc = None
    if method.startswith("wm"):
        mpc = MPCController(planner)
    elif method == "oracle":
        mpc = MPCController(planner, dynamics_factory=oracle)
    lat, left_out, pushes, success, disturbance = [], [], 0, bool(info.get("is_success", False)), 0.0
    for _ in range(max_pushes):
        if success:
            break
        t0 = time.perf_counter()
        if mpc is not None:
            stroke, plan = mpc.act(obs)
            while sims:  # one private PyBullet client per oracle decision: free it
                sims.pop().close()
            left_out.append(len(plan.left_out))
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
    return {"seed": seed, "num_objects": len(u.objects), "success": success,
            "clean_success": success and disturbance < CLEAN_DISTURBANCE_M, "disturbance": disturbance,
            "final_distance": float(u.goal_distance()), "pushes": pushes, "latency_s": lat, "left_out": left_out}


def build_sets(a) -> dict[str, list[tuple[int, dict | None, bool]]]:
    """``set -> [(seed, reset options, blocked)]``; open / blocked walk seeds until they have enough."""
    sets: dict[str, list] = {s: [] for s in SETS}
    env = gym.make("KineMaskPush-v0")
    multi = gym.make("KineMaskPush-v0", num_objects=(2, 4))  # blocked scenes need a second object
    clutter = gym.make("KineMaskPush-v0", scene=SceneConfig(max_objects=8))
    want = {"open": a.episodes if "open" in a.sets else 0, "blocked": a.episodes if "blocked" in a.sets else 0,
            "cluttered": a.clutter_episodes if "cluttered" in a.sets else 0}
    s = a.first_seed
    while len(sets["open"]) < want["open"]:
        env.reset(seed=s)
        if not blocked(env):
            sets["open"].append((s, None, False))
        s += 1
    s = a.blocked_first_seed
    while len(sets["blocked"]) < want["blocked"]:
        opt = blocked_scene_options(multi, s)
        if opt is not None:
            env.reset(seed=s, options=opt)
            if blocked(env):
                sets["blocked"].append((s, opt, True))
        s += 1
    for s in range(a.clutter_first_seed, a.clutter_first_seed + want["cluttered"]):
        opt = cluttered_scene_options(clutter, s)
        clutter.reset(seed=s, options=opt)
        sets["cluttered"].append((s, opt, blocked(clutter)))
    for e in (env, multi, clutter):
        e.close()
    return sets


def summary(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    lat = [x for r in rows for x in r["latency_s"]]
    lo = [max(r["left_out"], default=0) for r in rows]
    return {"episodes": len(rows),
            "success_rate": float(np.mean([r["success"] for r in rows])),
            "clean_success_rate": float(np.mean([r["clean_success"] for r in rows])),
            "final_distance_m": float(np.mean([r["final_distance"] for r in rows])),
            "pushes_mean": float(np.mean([r["pushes"] for r in rows])),
            "decision_latency_median_s": float(np.median(lat)) if lat else None,
            "disturbance_m": float(np.mean([r["disturbance"] for r in rows])),
            "episodes_with_left_out": int(sum(v > 0 for v in lo)),
            "left_out_max": int(max(lo))}


def targets(table: dict) -> list[dict]:
    """The issue's targets with pass / fail (None: not measured in this run)."""
    def get(s, m, k):
        return ((table.get(s) or {}).get(m) or {}).get(k)

    out = []
    for s in SETS:
        for m in ("wm-cem", "oracle", "heuristic"):
            n = get(s, m, "episodes")
            if n is not None:
                out.append({"target": f"{s}: >= {MIN_SEEDS_PER_SET} seeds ({m})", "value": n, "threshold": MIN_SEEDS_PER_SET,
                            "pass": n >= MIN_SEEDS_PER_SET})
    v = get("blocked", "wm-cem", "clean_success_rate")
    out.append({"target": f"blocked: wm-cem clean success >= {TARGET_BLOCKED_CLEAN}", "value": v, "threshold": TARGET_BLOCKED_CLEAN,
                "pass": None if v is None else v >= TARGET_BLOCKED_CLEAN})
    w, o = get("cluttered", "wm-cem", "clean_success_rate"), get("cluttered", "oracle", "clean_success_rate")
    thr = None if o is None else TARGET_CLUTTER_VS_ORACLE * o
    out.append({"target": f"cluttered: wm-cem clean success >= {TARGET_CLUTTER_VS_ORACLE} x oracle's", "value": w, "threshold": thr,
                "pass": None if w is None or thr is None else w >= thr})
    w, h = get("overall", "wm-cem", "success_rate"), get("overall", "heuristic", "success_rate")
    out.append({"target": "overall (all sets): wm-cem success >= heuristic's", "value": w, "threshold": h,
                "pass": None if w is None or h is None else w >= h})
    return out


def _f(v, fmt=".2f"):
    return "–" if v is None else format(v, fmt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="world model directory (default: the embedded checkpoint)")
    p.add_argument("--episodes", type=int, default=50, help="episodes of the open and of the blocked set")
    p.add_argument("--clutter-episodes", type=int, default=50, help="episodes of the cluttered set (6-8 objects)")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--first-seed", type=int, default=1000, help="first seed of the open set")
    p.add_argument("--blocked-first-seed", type=int, default=2000)
    p.add_argument("--clutter-first-seed", type=int, default=3000)
    p.add_argument("--max-pushes", type=int, default=5)
    p.add_argument("--methods", default="wm-cem,wm-mppi,oracle,heuristic,random")
    p.add_argument("--clutter-methods", default=None, help="methods on the cluttered set (default: --methods)")
    p.add_argument("--candidates", type=int, default=64, help="samples per planner iteration")
    p.add_argument("--disturbance-weight", type=float, default=None, help="override the planner's disturbance cost weight")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.sets = [s for s in a.sets.split(",") if s]
    if set(a.sets) - set(SETS):
        p.error(f"--sets must be a subset of {SETS}")
    methods = {s: a.methods.split(",") for s in SETS}
    if a.clutter_methods is not None:
        methods["cluttered"] = a.clutter_methods.split(",")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    pipe = KineMaskPipeline.from_pretrained(a.checkpoint, load_video=False)
    object_model = getattr(pipe, "object_model", None) is not None
    print(f"world model: {a.checkpoint or 'embedded'} ({'object-token model' if object_model else f'raster, K = {pipe.config.max_objects} slots'})",
          flush=True)
    t_all = time.perf_counter()
    scenes = build_sets(a)
    envs = {"open": gym.make("KineMaskPush-v0"), "cluttered": gym.make("KineMaskPush-v0", scene=SceneConfig(max_objects=8))}
    envs["blocked"] = envs["open"]
    cam = CameraModel(envs["open"].unwrapped.scene.camera.config)
    results: dict[str, dict[str, list]] = {}
    times: dict[str, dict[str, float]] = {}
    def write(done: bool) -> None:
        table: dict[str, dict] = {s: {m: summary(r) for m, r in results[s].items()} for s in results}
        all_methods = list(dict.fromkeys(m for s in results for m in results[s]))
        table["overall"] = {m: summary([r for s in results for r in results[s].get(m, [])])
                            for m in all_methods if all(m in results[s] for s in results)}
        tg = targets(table)
        res = {"machine": machine(), "checkpoint": a.checkpoint or "embedded", "object_model": object_model,
               "sets": {s: {"episodes": len(scenes[s]), "seeds": [x[0] for x in scenes[s]],
                            "blocked_episodes": sum(x[2] for x in scenes[s]),
                            "objects": [len(x[1]["objects"]) if x[1] else None for x in scenes[s]]} for s in a.sets},
               "max_pushes": a.max_pushes, "candidates_per_iteration": a.candidates, "score_weights": dict(cfg.score.weights),
               "clean_disturbance_m": CLEAN_DISTURBANCE_M, "targets": tg, "summary": table, "method_wall_s": times,
               "episodes_detail": results, "wall_s": time.perf_counter() - t_all, "complete": done}
        (out / "planning.json").write_text(json.dumps(res, indent=1))

        def seeds_text(s):
            sd = [x[0] for x in scenes[s]]
            return f"seeds {sd[0]}..{sd[-1]}" if sd else "no seeds"

        lines = [f"# Planning on KineMaskPush-v0 ({res['machine']})", "",
                 f"World model: `{res['checkpoint']}` ({'object-token model: any number of objects' if object_model else f'raster model, {pipe.config.max_objects} slots: larger scenes are slot-fitted'}). "
                 f"At most {a.max_pushes} pushes; success = target within 3 cm of the goal; \"clean\" success also requires the other "
                 f"objects to move < {CLEAN_DISTURBANCE_M} m in total. Planners: {a.candidates} candidates x 3 iterations. "
                 f"Wall time {res['wall_s'] / 60:.1f} min" + ("." if done else " so far (PARTIAL: the run is still going)."), ""]
        desc = {"open": "sampled scenes (1-4 objects), nothing in the straight path",
                "blocked": "another object in the middle of the straight path (2-4 objects)",
                "cluttered": "6-8 objects packed around the target"}
        for s in a.sets:
            sc = scenes[s]
            extra = ""
            if s == "cluttered" and sc:
                n = [len(x[1]["objects"]) for x in sc]
                extra = f"; {n.count(6)} / {n.count(7)} / {n.count(8)} scenes with 6 / 7 / 8 objects, {sum(x[2] for x in sc)} with the straight path blocked"
            lines.append(f"- **{s}**: {len(sc)} episodes ({seeds_text(s)}), {desc[s]}{extra}.")
        lines += ["", "## Targets", "", "| target | value | threshold | result |", "|---|---|---|---|"]
        for t in tg:
            fmt = "d" if isinstance(t["value"], int) else ".2f"
            res_txt = "–" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
            lines.append(f"| {t['target']} | {_f(t['value'], fmt)} | {_f(t['threshold'], fmt)} | {res_txt} |")
        for s in [*a.sets, "overall"]:
            if not table.get(s):
                continue
            oracle = (table[s].get("oracle") or {})
            lines += ["", f"## {s}", "",
                      "| method | episodes | success | clean success | clean vs oracle | disturbance [m] | final distance [m] | pushes | decision latency (median) [s] | episodes with left-out objects |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for m, v in table[s].items():
                ratio = v["clean_success_rate"] / oracle["clean_success_rate"] if oracle.get("clean_success_rate") else None
                lines.append(f"| {m} | {v['episodes']} | {v['success_rate']:.2f} | {v['clean_success_rate']:.2f} | {_f(ratio)} | "
                             f"{v['disturbance_m']:.3f} | {v['final_distance_m']:.3f} | {v['pushes_mean']:.2f} | "
                             f"{_f(v['decision_latency_median_s'], '.3f')} | {v['episodes_with_left_out']} |")
        md = "\n".join(lines) + "\n"
        (out / "planning.md").write_text(md)
        if done:
            print(md)

    cfg = PlannerConfig()
    for set_name in a.sets:
        results[set_name], times[set_name] = {}, {}
        for method in methods[set_name]:
            kind = {"wm-cem": "cem", "wm-mppi": "mppi", "oracle": "cem"}.get(method, "random")
            cfg = PlannerConfig(method=kind, seed=0)
            cfg = dataclasses.replace(cfg, cem=dataclasses.replace(cfg.cem, num_samples=a.candidates),
                                      mppi=dataclasses.replace(cfg.mppi, num_samples=a.candidates))
            if a.disturbance_weight is not None:
                cfg = dataclasses.replace(cfg, score=ScoreConfig(weights={**cfg.score.weights, "disturbance": a.disturbance_weight}))
            planner = PushPlanner(cam, cfg, pipe)
            t0 = time.perf_counter()
            rows = []
            for seed, opt, is_blocked in scenes[set_name]:
                r = run_episode(envs[set_name], seed, method, planner, a.max_pushes, seed, opt)
                r["blocked"] = is_blocked
                rows.append(r)
            results[set_name][method] = rows
            times[set_name][method] = time.perf_counter() - t0
            s = summary(rows)
            print(f"{set_name} / {method}: success {s['success_rate']:.2f}, clean {s['clean_success_rate']:.2f} "
                  f"({times[set_name][method]:.0f} s)", flush=True)
            write(False)  # partial results after every method, so a long run can be inspected
    for e in {id(e): e for e in envs.values()}.values():
        e.close()

    write(True)
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
