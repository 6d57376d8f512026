"""PushT benchmark: world-model CEM / MPPI vs the simulator oracle, random and scripted strokes.

Real ``gym_pusht/PushT-v0`` (gym-pusht 0.1.8) resets by seed; every method runs the same seeds in
the same run. Two protocols, reported apart:

* ``official`` — gym-pusht's: 300 env steps including every repositioning step, success =
  coverage > 0.95 at any step (the env terminates there), mean of the episode's max coverage;
* ``strokes20`` — a fixed budget of 20 strokes from the same resets (no step limit).

One episode per (method, seed) serves both: it runs until success or until both budgets are
spent, and each protocol reads its own prefix (the policy does not know the budget).
Also: world-model fidelity on held-out strokes (seeds >= 10,000,000) vs a "no motion" baseline,
and the decision latency. Writes ``benchmarks/results/pusht.json`` and ``pusht.md`` (+ a GIF of a
planned episode with ``--gif``).

    python benchmarks/pusht.py               # 50 seeds, all methods (<= 30 min on 2 busy cores)
    python benchmarks/pusht.py --quick       # 8 seeds, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from kinemask_ros.envs.pusht import PushTAdapter, wrap
from kinemask_ros.push import PushStroke
from kinemask_ros.pusht_planning import (PushTPlanner, PushTPlannerConfig, SimulatorDynamics, WorldModelDynamics, pose_errors,
                                         scripted_stroke)
from kinemask_ros.pusht_strokes import params_to_strokes, strokes_in_arena
from kinemask_ros.world_model.pusht_model import PushTWorldModel

METHODS = ("wm-cem", "wm-mppi", "oracle", "random", "scripted")
OFFICIAL_STEPS, STROKE_BUDGET, MAX_STROKES = 300, 20, 40
RESULTS = Path(__file__).resolve().parent / "results"


def fidelity(model: PushTWorldModel, n: int, seed0: int = 10_000_000) -> dict:
    """Final T pose error of the world model vs the env on ``n`` held-out strokes, and of "no motion"."""
    from tqdm import tqdm

    from kinemask_ros.sim_bridge.pusht_dataset import PushTDataConfig, generate_episode

    ad = PushTAdapter(render=False)
    cfg = PushTDataConfig(out="/dev/null")
    eps = []
    for s in tqdm(range(seed0, seed0 + 4 * n), desc="held-out strokes", file=sys.stderr, mininterval=5):
        e = generate_episode(ad, s, cfg)
        if e is not None:
            eps.append(e)
        if len(eps) == n:
            break
    pose0 = np.stack([e["poses0"] for e in eps])
    strokes = np.stack([e["strokes"] for e in eps])
    true = np.stack([e["tracks"][-1] for e in eps])
    gen = torch.Generator().manual_seed(0)
    pred = np.concatenate([model.predict(pose0[i:i + 256], strokes[i:i + 256], 1, 4, gen)[:, 0, -1] for i in range(0, len(eps), 256)])

    def err(p):
        pos = np.linalg.norm(p[:, :2] - true[:, :2], axis=1)
        yaw = np.degrees(np.abs(wrap(p[:, 2] - true[:, 2])))
        return pos, yaw

    pw, yw = err(pred)
    p0, y0 = err(pose0)
    moved = (p0 > 1.0) | (y0 > 1.0)

    def summ(pos, yaw, m):
        return {"median_pos_px": float(np.median(pos[m])), "mean_pos_px": float(np.mean(pos[m])), "p90_pos_px": float(np.percentile(pos[m], 90)),
                "median_yaw_deg": float(np.median(yaw[m])), "mean_yaw_deg": float(np.mean(yaw[m])), "p90_yaw_deg": float(np.percentile(yaw[m], 90)),
                "n": int(m.sum())}

    allm = np.ones(len(eps), bool)
    return {"strokes": len(eps), "seeds_from": seed0, "pose": "body origin (gym-pusht's reported pose), px of the 512 world",
            "world_model": {"all": summ(pw, yw, allm), "T_moved": summ(pw, yw, moved)},
            "no_motion": {"all": summ(p0, y0, allm), "T_moved": summ(p0, y0, moved)},
            "sampler": "1 sample, 4 Euler steps (the planner's setting)"}


class Policy:
    def __init__(self, method: str, model: PushTWorldModel | None, seed: int):
        self.method = method
        self.rng = np.random.default_rng([seed, 5])
        self.warm = None
        if method in ("wm-cem", "wm-mppi", "oracle"):
            self.planner = PushTPlanner(PushTPlannerConfig(method="mppi" if method == "wm-mppi" else "cem", seed=seed))
        if method.startswith("wm"):
            self.dyn = WorldModelDynamics(model, num_samples=1, num_inference_steps=4, seed=seed)
        if method == "oracle":
            self.dyn = SimulatorDynamics()

    def candidates(self, ad: PushTAdapter) -> tuple[list[PushStroke], list, float]:
        """Ranked strokes (best first), their params, decision latency [s]; ``self.predicted`` holds the
        imagined final poses ``(k, 3)`` of the ranked strokes (planners only)."""
        self.predicted = None
        pose, agent = ad.poses()[0], ad.agent()
        t0 = time.perf_counter()
        if self.method in ("wm-cem", "wm-mppi", "oracle"):
            if self.method == "oracle":
                self.dyn.bind(ad.get_state())
            plan = self.planner.plan(pose, agent, self.dyn, self.warm)
            k = min(12, len(plan.costs))
            self.predicted = plan.poses[:k].mean(1)
            return [plan.stroke(i) for i in range(k)], list(plan.params[:k]), time.perf_counter() - t0
        if self.method == "scripted":
            s = scripted_stroke(pose)
            return [s], [None], time.perf_counter() - t0
        p = self.rng.uniform(-1, 1, (12, 3))
        st = params_to_strokes(pose, p)
        ok = strokes_in_arena(st)
        return [PushStroke(*map(float, s)) for s in st[ok]], list(p[ok]), time.perf_counter() - t0


def run_episode(method: str, seed: int, model, record: bool = False) -> dict:
    ad = PushTAdapter(render=record)
    pol = Policy(method, model, seed)
    ad.reset(seed=seed)
    cov = [ad.coverage()]  # coverage after every env step (index 0: after reset)
    boundaries = [0]  # env steps at the end of each stroke
    lat, frames, pred_real = [], [], []
    success_step = None
    if record:
        frames.append(ad.observe(160).rgb)
    while len(boundaries) - 1 < MAX_STROKES:
        if success_step is not None or (len(boundaries) - 1 >= STROKE_BUDGET and ad.steps >= OFFICIAL_STEPS):
            break
        strokes, params, dt = pol.candidates(ad)
        lat.append(dt)
        done = False
        for i, (s, p) in enumerate(zip(strokes, params)):
            try:
                r = ad.execute(s)
            except ValueError:  # unreachable: next best
                continue
            pol.warm = p
            done = True
            if pol.predicted is not None:  # imagined vs real outcome of the executed stroke (approach included)
                pred_real.append((pol.predicted[i].tolist(), r.after[0].tolist(), r.before[0].tolist()))
            break
        if not done:  # nothing reachable: a random reachable stroke
            for p in pol.rng.uniform(-1, 1, (30, 3)):
                s = PushStroke(*map(float, params_to_strokes(ad.poses()[0], p[None])[0]))
                try:
                    r = ad.execute(s)
                    done = True
                    break
                except ValueError:
                    continue
        if not done:
            break
        cov.extend(r.coverages.tolist())
        boundaries.append(ad.steps)
        if record:
            frames.append(ad.observe(160).rgb)
        if r.success:
            success_step = ad.steps
    cov = np.nan_to_num(np.array(cov))
    b = np.array(boundaries)
    official = cov[: OFFICIAL_STEPS + 1]
    s20 = cov[: b[min(STROKE_BUDGET, len(b) - 1)] + 1]
    pe, ye = pose_errors(ad.poses()[0])
    out = {"seed": seed, "official_success": bool(official.max() > 0.95), "official_max_coverage": float(official.max()),
           "strokes20_success": bool(s20.max() > 0.95), "strokes20_max_coverage": float(s20.max()),
           "strokes": len(b) - 1, "env_steps": int(ad.steps), "success_step": success_step,
           "strokes_to_success": (int(np.searchsorted(b, success_step)) if success_step is not None else None),
           "final_pos_err_px": pe, "final_yaw_err_deg": ye, "latency_s": lat, "pred_real": pred_real}
    if record:
        out["frames"] = frames
    ad.close()
    return out


def in_episode(episodes: dict[str, list[dict]]) -> dict:
    """Imagined vs real final T pose of every executed planner stroke (the real one includes the
    approach, which the dynamics do not imagine): median / p90 position [px] and yaw [deg] errors."""
    out = {}
    for m, eps in episodes.items():
        rows = [x for e in eps for x in e.get("pred_real", [])]
        if not rows:
            continue
        pred, real, before = (np.array([r[i] for r in rows]) for i in range(3))
        pos = np.linalg.norm(pred[:, :2] - real[:, :2], axis=1)
        yaw = np.degrees(np.abs(wrap(pred[:, 2] - real[:, 2])))
        still = np.linalg.norm(before[:, :2] - real[:, :2], axis=1)
        out[m] = {"strokes": len(rows), "median_pos_px": float(np.median(pos)), "p90_pos_px": float(np.percentile(pos, 90)),
                  "median_yaw_deg": float(np.median(yaw)), "p90_yaw_deg": float(np.percentile(yaw, 90)),
                  "no_motion_median_pos_px": float(np.median(still))}
    return out


def summarise(eps: list[dict], proto: str) -> dict:
    succ = np.array([e[f"{proto}_success"] for e in eps])
    cov = np.array([e[f"{proto}_max_coverage"] for e in eps])
    # gym-pusht's reward is clip(coverage / 0.95, 0, 1); LeRobot's evaluation averages its per-episode max
    return {"success_rate": float(succ.mean()), "mean_max_coverage": float(cov.mean()), "episodes": len(eps),
            "successes": int(succ.sum()), "mean_max_reward": float(np.clip(cov / 0.95, 0, 1).mean())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=50, help="episodes per method (gym-pusht reset seeds 0..N-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="8 seeds and 200 fidelity strokes (a smoke run)")
    p.add_argument("--methods", nargs="+", default=["wm-cem", "wm-mppi", "random", "scripted", "oracle"], choices=METHODS)
    p.add_argument("--checkpoint", default=None, help="PushT world model directory (default: the shipped one)")
    p.add_argument("--fidelity-strokes", type=int, default=1000)
    p.add_argument("--out", default=str(RESULTS / "pusht.json"))
    p.add_argument("--gif", action="store_true", help="also write pusht_episode.gif (wm-cem, first seed)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.quick:
        a.seeds, a.fidelity_strokes = 8, 200
    t0 = time.perf_counter()
    model = PushTWorldModel.from_pretrained(a.checkpoint)
    fid = fidelity(model, a.fidelity_strokes)
    print(f"fidelity: world model {fid['world_model']['all']['median_pos_px']:.2f} px / {fid['world_model']['all']['median_yaw_deg']:.2f} deg, "
          f"no motion {fid['no_motion']['all']['median_pos_px']:.2f} px / {fid['no_motion']['all']['median_yaw_deg']:.2f} deg", file=sys.stderr)
    from tqdm import tqdm

    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    episodes: dict[str, list[dict]] = {}
    timing = {}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for m in a.methods:
        tm = time.perf_counter()
        episodes[m] = [run_episode(m, s, model) for s in tqdm(seeds, desc=m, file=sys.stderr, mininterval=10)]
        timing[m] = time.perf_counter() - tm
        o, s20 = summarise(episodes[m], "official"), summarise(episodes[m], "strokes20")
        lat = np.concatenate([e["latency_s"] for e in episodes[m]])
        print(f"{m:9s} official {o['success_rate']:.2f} ({o['mean_max_coverage']:.3f})  strokes20 {s20['success_rate']:.2f} "
              f"({s20['mean_max_coverage']:.3f})  latency median {np.median(lat):.3f} s  {timing[m]:.0f} s", file=sys.stderr)
        res = build(episodes, seeds, fid, timing, t0, complete=len(episodes) == len(a.methods))
        out.write_text(json.dumps(res, indent=1))  # after every method: a partial run still leaves its numbers
    write_md(res, out.with_suffix(".md"))
    if a.gif:
        ep = run_episode("wm-cem", seeds[0], model, record=True)
        import imageio.v2 as imageio

        imageio.mimsave(out.with_name("pusht_episode.gif"), ep["frames"], duration=0.5, loop=0)
    print(f"wrote {out} in {res['wall_s']:.0f} s", file=sys.stderr)
    return 0


def build(episodes: dict, seeds: list[int], fid: dict, timing: dict, t0: float, complete: bool) -> dict:
    protocols = {proto: {m: summarise(episodes[m], proto) for m in episodes} for proto in ("official", "strokes20")}
    lat = {m: {"median_s": float(np.median(np.concatenate([e["latency_s"] for e in eps]))),
               "p95_s": float(np.percentile(np.concatenate([e["latency_s"] for e in eps]), 95))} for m, eps in episodes.items()}
    res = {
        "env": "gym_pusht/PushT-v0", "gym_pusht": "0.1.8", "seeds": seeds,
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared), torch {torch.__version__}, 1 thread, no GPU",
        "protocols": protocols,
        "protocol_notes": {
            "official": f"{OFFICIAL_STEPS} env steps including approach/repositioning, success = coverage > 0.95 at any step; "
                        "max coverage over those steps",
            "strokes20": f"{STROKE_BUDGET} strokes from the same resets, no step limit",
            "oracle": "same CEM planner and budget with the env as dynamics (each candidate's sweep simulated in a second "
                      "gym-pusht env from the live state, agent placed at the stroke's start at rest)",
            "random": "uniform random T-centric strokes", "scripted": "push the T's centre straight to the goal, then turn it",
        },
        "fidelity": fid,
        "decision_latency": lat,
        "in_episode_prediction": in_episode(episodes),
        "episodes": {m: [{k: v for k, v in e.items() if k not in ("latency_s", "frames", "pred_real")} for e in eps] for m, eps in episodes.items()},
        "method_wall_s": timing,
        "wall_s": time.perf_counter() - t0,
        "complete": complete,
    }
    if "wm-cem" in episodes and "oracle" in episodes:
        o = protocols["official"]
        res["wm_cem_over_oracle_official"] = (o["wm-cem"]["success_rate"] / o["oracle"]["success_rate"]) if o["oracle"]["success_rate"] else None
    return res


def write_md(res: dict, path: Path) -> None:
    lines = ["# PushT benchmark (gym-pusht 0.1.8)", "", f"Machine: {res['machine']}. Seeds: {len(res['seeds'])}. Wall: {res['wall_s']:.0f} s.", ""]
    for proto in ("official", "strokes20"):
        lines += [f"## {proto}: {res['protocol_notes'][proto]}", "", "| method | success | mean max coverage | episodes | latency median |",
                  "|---|---|---|---|---|"]
        for m, r in res["protocols"][proto].items():
            lines.append(f"| {m} | {r['success_rate']:.2f} | {r['mean_max_coverage']:.3f} | {r['episodes']} | {res['decision_latency'][m]['median_s']:.3f} s |")
        lines.append("")
    f = res["fidelity"]
    lines += ["## Fidelity (held-out strokes, final T pose)", "", "| | median pos [px] | median yaw [deg] | mean pos | mean yaw |", "|---|---|---|---|---|"]
    for k in ("world_model", "no_motion"):
        for part in ("all", "T_moved"):
            r = f[k][part]
            lines.append(f"| {k} ({part}, n={r['n']}) | {r['median_pos_px']:.2f} | {r['median_yaw_deg']:.2f} | {r['mean_pos_px']:.2f} | {r['mean_yaw_deg']:.2f} |")
    lines += ["", "## Imagined vs real outcome of the executed strokes (the real one includes the approach)", "",
              "| method | strokes | median pos [px] | p90 pos | median yaw [deg] | p90 yaw | no motion median pos |", "|---|---|---|---|---|---|---|"]
    for m, r in res.get("in_episode_prediction", {}).items():
        lines.append(f"| {m} | {r['strokes']} | {r['median_pos_px']:.2f} | {r['p90_pos_px']:.2f} | {r['median_yaw_deg']:.2f} | {r['p90_yaw_deg']:.2f} | "
                     f"{r['no_motion_median_pos_px']:.2f} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
