"""World-model speed (DESIGN §5): torch vs ONNX Runtime in one run, CPU always, GPU when present.

    python benchmarks/speed.py --checkpoint runs/wm --preliminary

Rows (medians of ``--repeats`` timed calls after one warm-up call, same inputs for every backend):

* rollouts/s at batch 1 and batch 64 (track rollouts, 1 sample, ``--steps`` Euler steps);
* decision latency: 64 candidates x 4 samples x 8 steps of track rollouts, then scoring with the
  planner's named cost terms (:func:`kinemask_ros.scoring.score_tracks`) and ranking (the
  segmentation of the camera image is not included);
* video render of one candidate (only when the checkpoint has a video model).

Backends are timed round-robin, call by call, so load changes on a shared machine hit all alike.

The checkpoint is copied to a temporary snapshot first (a training job may rewrite it meanwhile)
and exported to ONNX there. Writes ``OUT/speed.json`` and ``OUT/speed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kinemask_ros.world_model.backends import load_pipeline
from kinemask_ros.world_model.onnx_backend import CUDA_PROVIDER, export_checkpoint
from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402

NO_GPU_LINE = "GPU: not measured (no GPU lent to this task)"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def scene(world, B: int, seed: int = 0):
    """A fixed synthetic scene: two boxes and a cylinder-like blob; candidate velocities vary."""
    g = torch.Generator().manual_seed(seed)
    H, W, K = world.height, world.width, world.max_objects
    image = torch.rand(1, 3, H, W, generator=g).expand(B, -1, -1, -1).contiguous()
    inst = torch.zeros(B, H, W, dtype=torch.long)
    inst[:, H // 4:H // 4 + 5, W // 4:W // 4 + 5] = 1
    if K >= 2:
        inst[:, H // 2:H // 2 + 5, W // 2:W // 2 + 6] = 2
    if K >= 3:
        inst[:, 3 * H // 4 - 2:3 * H // 4 + 2, W // 8:W // 8 + 4] = 3
    vel = torch.zeros(B, K, 2)
    vel[:, 0] = torch.randn(B, 2, generator=g) * world.v_max / 2
    driver = torch.zeros(B, world.num_frames, 1, H, W)
    driver[:, :4, :, H // 4:H // 4 + 3, 0:3] = 1
    return image, inst, vel, driver


def timed_interleaved(fns: list, repeats: int) -> list[list[float]]:
    """Time several callables round-robin (one warm-up call each first), so that a load change on a
    shared machine hits every backend alike; returns the times per callable."""
    for fn in fns:
        fn()  # warm-up (allocations, ONNX Runtime arena, lazy init)
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            out[i].append(time.perf_counter() - t0)
    return out


def workloads(pipe, world, steps: int, with_video: bool):
    from kinemask_ros.scoring import Goal, score_tracks

    def rollouts(B: int, S: int):
        image, inst, vel, driver = scene(world, B)
        drv = driver if world.uses_driver else None
        return lambda: pipe(image, inst, vel, drv, num_samples=S, num_inference_steps=steps,
                            generator=torch.Generator().manual_seed(0))

    def decision():
        image, inst, vel, driver = scene(world, 64)
        drv = driver if world.uses_driver else None
        goal = Goal(point_px=np.array([world.width * 0.75, world.height * 0.25]))

        def run():
            out = pipe(image, inst, vel, drv, num_samples=4, num_inference_steps=8, generator=torch.Generator().manual_seed(0))
            scores = score_tracks(out.tracks.cpu().numpy(), 1, goal, 0.01, (world.height, world.width), present=out.present.cpu().numpy())
            return scores.ranking()
        return run

    rows = [("rollouts/s, batch 1", 1, rollouts(1, 1)), ("rollouts/s, batch 64", 64, rollouts(64, 1)),
            ("decision latency (64 cand. x 4 samples x 8 steps + scoring)", 64, decision())]
    if with_video:
        image, inst, vel, driver = scene(world, 1)
        drv = driver if world.uses_driver else None
        rows.append(("video render, 1 candidate (10 steps)", 1,
                     lambda: pipe(image, inst, vel, drv, num_inference_steps=steps, return_video=True, video_inference_steps=10,
                                  generator=torch.Generator().manual_seed(0))))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=str(EMBEDDED_CHECKPOINT))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="track sampler steps for the rollouts/s rows")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime (default: torch's)")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--preliminary", action="store_true", help="label the numbers preliminary (e.g. a training job shares the CPU)")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    if a.repeats < 5:
        p.error("--repeats must be >= 5 (medians of at least 5)")
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    ckpt = Path(a.checkpoint)
    if not (ckpt / "world_model_config.json").is_file():
        print(f"speed.py: error: {ckpt} is not a world-model checkpoint (no world_model_config.json)", file=sys.stderr)
        return 2
    load_avg = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kinemask_speed_") as tmp:
        snap = Path(tmp) / "ckpt"
        snap.mkdir()
        shutil.copy(ckpt / "world_model_config.json", snap)
        for sub in ("track", "video"):
            if (ckpt / sub).is_dir() and not (a.no_video and sub == "video"):
                shutil.copytree(ckpt / sub, snap / sub)
        t0 = time.perf_counter()
        export = export_checkpoint(snap, snap / "onnx", video=not a.no_video)
        export_s = time.perf_counter() - t0
        backends = [("torch", "cpu", {}), ("onnxruntime", "cpu", {"intra_op_threads": threads})]
        gpu_note = NO_GPU_LINE
        if torch.cuda.is_available():
            import onnxruntime as ort

            backends.append(("torch", "cuda", {}))
            if CUDA_PROVIDER in ort.get_available_providers():
                backends.append(("onnxruntime", "cuda", {}))
            gpu_note = f"GPU: {torch.cuda.get_device_name(0)}"
        pipes = [load_pipeline(snap, backend=b, device=d, load_video=not a.no_video, **o) for b, d, o in backends]
        world = pipes[0].config
        with_video = all(p.video_model is not None for p in pipes)
        table = [workloads(p, world, a.steps, with_video) for p in pipes]
        results = []
        for w in range(len(table[0])):
            name, batch = table[0][w][:2]
            fns = []
            for (backend, device, _), rows in zip(backends, table):
                fn = rows[w][2]
                if device == "cuda":
                    def fn(base=fn):
                        base()
                        torch.cuda.synchronize()
                fns.append(fn)
            for (backend, device, _), ts in zip(backends, timed_interleaved(fns, a.repeats)):
                med = statistics.median(ts)
                row = {"workload": name, "backend": backend, "device": device, "batch": batch, "repeats": a.repeats,
                       "median_s": med, "min_s": min(ts), "max_s": max(ts), "times_s": ts}
                if name.startswith("rollouts/s"):
                    row["rollouts_per_s"] = batch / med
                results.append(row)
                print(f"{backend:>11} {device:>4} | {name:<62} | median {med * 1000:9.1f} ms"
                      + (f" | {row['rollouts_per_s']:8.1f} rollouts/s" if "rollouts_per_s" in row else ""), flush=True)
    ratios = {}
    for dev in ("cpu", "cuda"):
        for r in results:
            if r["backend"] == "onnxruntime" and r["device"] == dev:
                ref = next((x for x in results if x["backend"] == "torch" and x["device"] == dev and x["workload"] == r["workload"]), None)
                if ref:
                    ratios.setdefault(dev, {})[r["workload"]] = ref["median_s"] / r["median_s"]
    res = {
        "machine": machine(), "cpu": cpu_name(), "threads": threads, "checkpoint": str(ckpt), "world_model_config": world.to_dict(),
        "preliminary": a.preliminary, "load_average_at_start": load_avg, "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__, "track_steps": a.steps, "repeats": a.repeats,
        "onnx_export_s": export_s, "onnx_max_abs_diff": export.max_abs_diff, "results": results,
        "ort_over_torch_speed": ratios, "gpu": gpu_note,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(res, indent=1))
    title = "# World-model speed" + (" — PRELIMINARY" if a.preliminary else "")
    lines = [title, "", f"Machine: {res['machine']}; CPU: {res['cpu']}; {threads} threads for torch and ONNX Runtime "
             f"(onnxruntime {res['onnxruntime']}). Load average at start: {', '.join(f'{x:.2f}' for x in load_avg)}.",
             f"Checkpoint: `{ckpt}` ({world.height}x{world.width}, T={world.num_frames}, K={world.max_objects}, "
             f"conditioning={world.conditioning}). Medians of {a.repeats} timed calls after one warm-up, backends interleaved call by call.", ""]
    if a.preliminary:
        lines += ["**Preliminary:** measured while another job (model training) shared the CPU; rerun on an idle machine.", ""]
    lines += ["| workload | backend | device | median [ms] | min–max [ms] | rollouts/s | ORT/torch speed |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = ratios.get(r["device"], {}).get(r["workload"]) if r["backend"] == "onnxruntime" else None
        rps = f"{r['rollouts_per_s']:.1f}" if "rollouts_per_s" in r else "–"
        rtxt = f"{ratio:.2f}" if ratio is not None else "–"
        lines.append(f"| {r['workload']} | {r['backend']} | {r['device']} | {r['median_s'] * 1000:.1f} | "
                     f"{r['min_s'] * 1000:.1f}–{r['max_s'] * 1000:.1f} | {rps} | {rtxt} |")
    lines += ["", "ORT/torch speed = torch median / ONNX Runtime median (> 1: ONNX Runtime faster).",
              f"ONNX export: {export_s:.1f} s; max |torch − ORT| per graph on random inputs: "
              + ", ".join(f"{k} {v:.1e}" for k, v in export.max_abs_diff.items()) + ".", "", gpu_note, ""]
    (out / "speed.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
