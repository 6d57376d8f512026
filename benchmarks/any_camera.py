"""Any camera: the same seeds planned from the canonical top-down camera and from an oblique RGB-D camera.

    python benchmarks/any_camera.py                       # 50 open + 50 blocked scenes, both cameras
    python benchmarks/any_camera.py --episodes 5 --out /tmp/cam

The user's path in both conditions: camera image (+ depth) -> the perception front end
(:func:`kinemask_ros.perception.perceive`) -> the decision core (:func:`kinemask_ros.decision.decide`,
world-model CEM, 64 candidates x 3 iterations) -> the env executes the best push; at most 5
pushes. Conditions (same seeds, same scenes, same planner):

* ``canonical``: the simulator's top-down 32x32 camera with the palette look (the training
  default), instance ids from the simulator;
* ``oblique``: a 640x480 RGB-D camera 0.8 m away at 45 deg elevation (``CameraConfig.oblique``)
  with a randomised look per episode (object/table colours, texture, light, sensor noise),
  rectified into the canonical table frame with depth footprints; ids from the simulator
  (``--segmenter gt``, default) or from the RGB-D segmenter (``--segmenter rgbd``, the full
  user path; the target is the segment that covers most of the true target).

Targets (issue "any camera"): success and blocked-scene clean success within 5 points of the
canonical camera. Writes ``OUT/any_camera.json`` and ``OUT/any_camera.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import kinemask_ros  # noqa: F401  (registers the envs)
from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.decision import DecisionConfig, DecisionRequest, decide
from kinemask_ros.perception import perceive
from kinemask_ros.sim_bridge.look import LookConfig
from kinemask_ros.sim_bridge.scene import SceneConfig
from kinemask_ros.table_frame import CameraCalibration

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402
from planning import CLEAN_DISTURBANCE_M, build_sets  # noqa: E402

TARGET_POINTS = 0.05


def _segment_ids(seg, obs: dict) -> tuple[np.ndarray, int]:
    """RGB-D segmenter ids for the observation and the id of the segment that covers the true target."""
    ids = seg.segment(obs["image"], np.where(obs["depth"] > 0, obs["depth"], np.nan)).instance_ids
    truth = obs["instance_mask"] == int(obs["target"])
    votes = np.bincount(ids[truth], minlength=int(ids.max()) + 1)
    votes[0] = 0
    return ids, int(np.argmax(votes)) if votes.max() > 0 else 0


def run_episode(env, seed: int, options, pipe, camera, cfg: DecisionConfig, max_pushes: int, segmenter=None) -> dict:
    obs, info = env.reset(seed=seed, options=options)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    success, disturbance, pushes, lat, fails = bool(info.get("is_success", False)), 0.0, 0, [], ""
    for _ in range(max_pushes):
        if success:
            break
        t0 = time.perf_counter()
        ids, target = (obs["instance_mask"], int(obs["target"])) if segmenter is None else _segment_ids(segmenter, obs)
        if target == 0:
            fails = "the segmenter found no object on the target"
            break
        try:
            depth = obs.get("depth")
            frame = perceive(pipe, obs["image"], camera, ids=np.where(ids == 255, 0, ids),
                             depth=None if depth is None else np.where(depth > 0, depth, np.nan))
            d = decide(pipe, frame, DecisionRequest(goal_xy=tuple(float(v) for v in obs["goal"]), target_id=target), cfg, rng)
        except ValueError as e:
            fails = str(e)
            break
        lat.append(time.perf_counter() - t0)
        if not d.plan.valid:
            fails = d.message
            break
        obs, r, term, trunc, info = env.step(u.stroke_to_action(d.plan.best_stroke))
        pushes += 1
        disturbance += float(info["disturbance"])
        success = bool(info["is_success"])
        if term or trunc:
            break
    return {"seed": seed, "success": success, "clean_success": success and disturbance < CLEAN_DISTURBANCE_M, "pushes": pushes,
            "disturbance": disturbance, "final_distance": float(u.goal_distance()), "latency_s": lat, "failure": fails}


def summary(rows: list[dict]) -> dict:
    lat = [x for r in rows for x in r["latency_s"]]
    return {"episodes": len(rows), "success_rate": float(np.mean([r["success"] for r in rows])),
            "clean_success_rate": float(np.mean([r["clean_success"] for r in rows])),
            "final_distance_m": float(np.mean([r["final_distance"] for r in rows])),
            "pushes_mean": float(np.mean([r["pushes"] for r in rows])),
            "decision_latency_median_s": float(np.median(lat)) if lat else None,
            "failures": sum(bool(r["failure"]) for r in rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--episodes", type=int, default=50, help="episodes of the open and of the blocked set")
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--blocked-first-seed", type=int, default=2000)
    p.add_argument("--max-pushes", type=int, default=5)
    p.add_argument("--candidates", type=int, default=64)
    p.add_argument("--segmenter", choices=("gt", "rgbd"), default="gt", help="instance ids for the oblique camera")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    pipe = KineMaskPipeline.from_pretrained(a.checkpoint, load_video=False)
    if getattr(pipe, "object_model", None) is None:
        p.error("this benchmark needs a checkpoint with an object model (objects/)")
    a.sets, a.clutter_episodes, a.clutter_first_seed = ["open", "blocked"], 0, 0
    scenes = build_sets(a)
    oblique = CameraConfig.oblique(a.width, a.height, elevation_deg=45.0, distance=0.8)
    conditions = {
        "canonical": (gym.make("KineMaskPush-v0", num_objects=None), CameraConfig(), None),
        f"oblique {a.width}x{a.height} RGB-D, randomised look, ids: {a.segmenter}":
            (gym.make("KineMaskPush-v0", scene=SceneConfig(camera=oblique, look=LookConfig.randomized()), depth=True),
             CameraCalibration.from_camera_model(CameraModel(oblique)), a.segmenter),
    }
    cfg = DecisionConfig(num_candidates=a.candidates, iterations=3, rollout_top_k=0)
    t_all = time.perf_counter()
    results: dict[str, dict[str, list]] = {}
    for name, (env, camera, segname) in conditions.items():
        seg = None
        if segname == "rgbd":
            from kinemask_ros.segmentation import make_segmenter

            seg = make_segmenter("rgbd", calibration=camera)
        results[name] = {}
        for s in ("open", "blocked"):
            t0 = time.perf_counter()
            results[name][s] = [run_episode(env, seed, opt, pipe, camera, cfg, a.max_pushes, seg) for seed, opt, _ in scenes[s]]
            sm = summary(results[name][s])
            print(f"{name} / {s}: success {sm['success_rate']:.2f}, clean {sm['clean_success_rate']:.2f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        env.close()
    table = {n: {s: summary(r) for s, r in v.items()} | {"overall": summary([x for r in v.values() for x in r])} for n, v in results.items()}
    base, other = list(table)
    checks = []
    for s, key in (("overall", "success_rate"), ("blocked", "clean_success_rate"), ("open", "success_rate")):
        b, o = table[base][s][key], table[other][s][key]
        checks.append({"target": f"{s} {key.replace('_', ' ')}: oblique within {TARGET_POINTS * 100:.0f} points of canonical",
                       "canonical": b, "oblique": o, "difference": o - b, "pass": abs(o - b) <= TARGET_POINTS + 1e-9})
    res = {"machine": machine(), "checkpoint": a.checkpoint or "embedded", "max_pushes": a.max_pushes, "candidates": a.candidates,
           "seeds": {s: [x[0] for x in scenes[s]] for s in scenes if scenes[s]}, "summary": table, "targets": checks,
           "episodes_detail": results, "wall_s": time.perf_counter() - t_all}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "any_camera.json").write_text(json.dumps(res, indent=1))
    lines = [f"# Any camera: canonical vs oblique, same seeds ({res['machine']})", "",
             f"World model `{res['checkpoint']}`, world-model CEM {a.candidates} x 3 through `perceive` + `decide`, at most {a.max_pushes} pushes; "
             f"clean = other objects moved < {CLEAN_DISTURBANCE_M} m. Wall time {res['wall_s'] / 60:.1f} min.", "",
             "| condition | set | episodes | success | clean success | final distance [m] | pushes | decision latency (median) [s] | failures |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, v in table.items():
        for s, m in v.items():
            lat = "–" if m["decision_latency_median_s"] is None else f"{m['decision_latency_median_s']:.2f}"
            lines.append(f"| {n} | {s} | {m['episodes']} | {m['success_rate']:.2f} | {m['clean_success_rate']:.2f} | "
                         f"{m['final_distance_m']:.3f} | {m['pushes_mean']:.2f} | {lat} | {m['failures']} |")
    lines += ["", "| target | canonical | oblique | difference | result |", "|---|---|---|---|---|"]
    lines += [f"| {c['target']} | {c['canonical']:.2f} | {c['oblique']:.2f} | {c['difference']:+.2f} | {'PASS' if c['pass'] else 'FAIL'} |"
              for c in checks]
    md = "\n".join(lines) + "\n"
    (out / "any_camera.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
