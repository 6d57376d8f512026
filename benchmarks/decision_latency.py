"""Decision latency on the path users run: ``PushPlanner.plan`` (CEM, 64 candidates x 3 iterations
= 192 candidates, 2 samples each, 8 sampler steps, scoring and ranking included) on simulated
scenes of 4 and 8 objects, for the object-token model (v2) and the raster model (K = 4 slots; an
8-object scene is fitted to its slots first). Medians over ``--scenes`` decisions, torch on
``--threads`` CPU threads. Writes ``OUT/decision_latency.{json,md}``.

    python benchmarks/decision_latency.py --scenes 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402

from kinemask_ros.camera import CameraConfig, CameraModel  # noqa: E402
from kinemask_ros.planning import PlannerConfig, PushPlanner  # noqa: E402
from kinemask_ros.policies.shooting import CEMConfig  # noqa: E402
from kinemask_ros.sim_bridge.scene import SceneConfig, TabletopScene  # noqa: E402
from kinemask_ros.world_model.pipeline import KineMaskPipeline  # noqa: E402

TARGET_S = 0.5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    models = {"object model (v2)": KineMaskPipeline.from_pretrained(a.checkpoint, load_video=False),
              "raster model (K=4)": KineMaskPipeline.from_pretrained(a.checkpoint, load_video=False, load_objects=False)}
    cam = CameraModel(CameraConfig(width=32, height=32))
    scene = TabletopScene(SceneConfig(max_objects=8))
    cfg = PlannerConfig(cem=CEMConfig(num_samples=64, iterations=3, num_elites=10), num_samples=2, num_inference_steps=8)
    rows = {}
    for k in (4, 8):
        frames = []
        rng = np.random.default_rng(k)
        while len(frames) < a.scenes:
            specs, poses = scene.sample_objects(rng, k)
            if len(specs) < k:
                continue
            scene.set_objects(specs, poses)
            rgb, mask = scene.render()
            if len(np.unique(mask[mask > 0])) == k:
                frames.append((rgb, mask))
        for name, pipe in models.items():
            planner = PushPlanner(cam, cfg, pipe)
            goal = planner.goal_from_table((0.0, 0.0))
            planner.plan(*frames[0], 1, goal)  # warm-up
            times, left = [], []
            for rgb, mask in frames:
                t0 = time.perf_counter()
                out = planner.plan(rgb, mask, 1, goal)
                times.append(time.perf_counter() - t0)
                left.append(len(out.left_out))
            rows[f"{name}, {k} objects"] = {"median_s": statistics.median(times), "p90_s": float(np.percentile(times, 90)),
                                            "candidates": len(out.strokes), "samples": cfg.num_samples, "left_out_mean": float(np.mean(left))}
    scene.close()
    lines = [f"# Decision latency ({machine()}, torch {a.threads} thread(s))", "",
             "`PushPlanner.plan`, CEM 64 x 3 iterations = 192 candidates x 2 samples x 8 steps, scoring included; "
             f"{a.scenes} simulated 32x32 scenes per row; target <= {TARGET_S} s median at 8 objects.", "",
             "| model, scene | median [s] | p90 [s] | candidates | objects left out / decision |", "|---|---|---|---|---|"]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['median_s']:.3f} | {r['p90_s']:.3f} | {r['candidates']} | {r['left_out_mean']:.1f} |")
    head = rows["object model (v2), 8 objects"]["median_s"]
    lines += ["", f"Target (object model, 8 objects, median <= {TARGET_S} s): {head:.3f} s -> {'PASS' if head <= TARGET_S else 'FAIL'}"]
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decision_latency.md").write_text(text + "\n")
    (out / "decision_latency.json").write_text(json.dumps({"machine": machine(), "threads": a.threads, "rows": rows,
                                                           "target_s": TARGET_S, "pass": head <= TARGET_S}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
