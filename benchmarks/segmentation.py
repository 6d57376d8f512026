"""Segmentation benchmark: speed (images/s, masks/s) and mean mask IoU on held-out simulator scenes.

    python benchmarks/segmentation.py                      # classical on 100 episodes x 3 frames, 32 and 64 px
    python benchmarks/segmentation.py --sam2-checkpoint ~/weights/sam2.1_hiera_tiny.pt --sam2-image-size 1024

Scenes: held-out episodes (seeds from ``EVAL_SEED_OFFSET``, never used for training), frames
0, T/2 and T-1 of each (the pusher is in view; mid-push frames include collisions, so objects
touch). Ground truth: the simulator's instance masks. Predicted instances are matched to
ground-truth objects by the Hungarian algorithm on IoU; the mean IoU is over ground-truth
objects (an unmatched one counts 0); false positives are unmatched predictions.

Rows:
* classical (embedded default), on clean renders and with Gaussian pixel noise (robustness);
* randomised looks (``--look-scenes``, ``LookConfig.randomized()``: continuous object colours, table
  colour/texture, light, RGB/depth noise, depth holes) on the canonical top-down camera (64 and
  32 px) and an oblique 640x480 RGB-D camera (45 deg, 0.8 m): classical (palette-keyed, expected
  to fail off-palette), ``rgb`` and ``rgbd``. Half of the scenes hold a touching pair of the same
  colour (object 2 slid against object 1 and given its colour); a quarter have the pusher pressed
  against an object. Reported: mean IoU, recall (IoU >= 0.5), IoU over the touching pairs, false
  positives, ms/frame;
* classical + IdTracker (speed of the id association);
* SAM 2 hiera-tiny automatic masks and point prompts. Without ``--sam2-checkpoint`` it is a
  **random-init** model: its speed is real, its IoU is meaningless.

Writes ``OUT/segmentation.json`` and ``OUT/segmentation.md`` (default OUT: benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import dataclasses
import math

from kinemask_ros.camera import CameraConfig, mask_centroid
from kinemask_ros.push import PushStroke
from kinemask_ros.segmentation import ClassicalSegmenter, RgbdSegmenter, RgbSegmenter, TrackedSegmenter, match_instances
from kinemask_ros.sim_bridge.dataset import EVAL_SEED_OFFSET, GeneratorConfig, simulate_episode
from kinemask_ros.sim_bridge.look import LookConfig
from kinemask_ros.sim_bridge.scene import PUSHER_ID, SceneConfig, TabletopScene
from kinemask_ros.table_frame import CameraCalibration

#: Cameras of the randomised-look rows.
LOOK_CAMERAS = {
    "top-down 64x64": lambda: CameraConfig(width=64, height=64),
    "top-down 32x32": lambda: CameraConfig(),
    "oblique 640x480": lambda: CameraConfig.oblique(640, 480, elevation_deg=45.0, distance=0.8),
}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def held_out_images(size: int, episodes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(rgb, gt_ids)`` for frames 0, T/2, T-1 of ``episodes`` held-out episodes at ``size`` px."""
    scene = TabletopScene(SceneConfig(camera=CameraConfig(width=size, height=size)))
    cfg = GeneratorConfig(num_episodes=episodes, seed=EVAL_SEED_OFFSET, scene=scene.config)
    out = []
    for seed in range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + episodes):
        ep, _ = simulate_episode(scene, cfg, seed)
        T = ep.frames.shape[0]
        for t in (0, T // 2, T - 1):
            out.append((ep.frames[t], ep.masks[t]))
    scene.close()
    return out


def score(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict:
    ious, fp, n_gt = [], 0, 0
    for p, g in zip(preds, gts):
        m = match_instances(p, g)
        ious += list(m.gt_iou.values())
        fp += len(m.unmatched_pred)
        n_gt += len(m.gt_iou)
    a = np.array(ious)
    return {"mean_iou": float(a.mean()) if a.size else float("nan"), "min_iou": float(a.min()) if a.size else float("nan"),
            "frac_iou_ge_0.9": float((a >= 0.9).mean()) if a.size else float("nan"), "gt_objects": n_gt, "false_positives": fp}


def timed(fn, images: list) -> tuple[list, list[float]]:
    outs, times = [], []
    for im in images:
        t0 = time.perf_counter()
        outs.append(fn(im))
        times.append(time.perf_counter() - t0)
    return outs, times


def speed(times: list[float], masks: int) -> dict:
    total = sum(times)
    return {"images": len(times), "images_per_s": len(times) / total, "masks_per_s": masks / total,
            "median_ms_per_image": 1e3 * statistics.median(times)}


def bench_classical(data: dict[int, list], noise: list[float], rng: np.random.Generator) -> list[dict]:
    rows = []
    seg = ClassicalSegmenter()
    for size, items in data.items():
        images = [im for im, _ in items]
        gts = [g for _, g in items]
        for sigma in [0.0] + noise:
            imgs = images if sigma == 0 else [np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8) for im in images]
            seg.segment(imgs[0])  # warm-up
            outs, times = timed(seg.segment, imgs)
            row = {"backend": "classical", "size": size, "noise_sigma": sigma}
            row.update(speed(times, sum(o.num_objects for o in outs)))
            row.update(score([o.instance_ids for o in outs], gts))
            rows.append(row)
        # id association on top (frames of one episode come in threes; reset per episode)
        tracked = TrackedSegmenter(ClassicalSegmenter())
        times = []
        n = 0
        for i, im in enumerate(images):
            if i % 3 == 0:
                tracked.reset()
            t0 = time.perf_counter()
            n += tracked.segment(im).num_objects
            times.append(time.perf_counter() - t0)
        row = {"backend": "classical+tracker", "size": size, "noise_sigma": 0.0}
        row.update(speed(times, n))
        rows.append(row)
    return rows


def bench_sam2(data: dict[int, list], n_images: int, image_size: int, checkpoint: str | None, threads: int) -> list[dict]:
    import torch

    from kinemask_ros.segmentation import Sam2Config, Sam2Segmenter, build_sam2_model

    torch.set_num_threads(threads)
    random_init = checkpoint is None
    # random weights predict IoU ~0.5 and every mask would be filtered out; thresholds 0 keep the
    # whole post-processing path (NMS over all grid masks) in the timing
    thresholds = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0) if random_init else {}
    cfg = Sam2Config(checkpoint=checkpoint, image_size=image_size, points_per_side=16, **thresholds)
    t0 = time.perf_counter()
    if random_init:
        torch.manual_seed(0)
        seg = Sam2Segmenter(cfg, model=build_sam2_model(cfg.model_config, None, cfg.device, image_size))
    else:
        seg = Sam2Segmenter(cfg)
    load_s = time.perf_counter() - t0
    rows = []
    note = "random-init weights: IoU meaningless, speed only (quality thresholds 0)" if random_init else f"weights: {Path(checkpoint).name}"
    for size, items in data.items():
        items = items[:n_images]
        images = [im for im, _ in items]
        gts = [g for _, g in items]
        seg.segment(images[0])  # warm-up
        outs, times = timed(seg.segment, images)
        row = {"backend": "sam2-tiny automatic", "size": size, "model_image_size": image_size, "note": note, "load_s": load_s,
               "points_per_side": cfg.points_per_side}
        row.update(speed(times, sum(o.num_objects for o in outs)))
        row["grid_prompts_per_s"] = cfg.points_per_side**2 * len(times) / sum(times)
        row.update(score([o.instance_ids for o in outs], gts))
        rows.append(row)
        # embedding vs prompt cost: one point prompt per ground-truth object, at its mask centroid
        embed, per_prompt, total, preds = [], [], 0.0, []
        for im, g in items:
            seg._image_key = None  # force a fresh embedding
            t0 = time.perf_counter()
            seg.set_image(im)
            t1 = time.perf_counter()
            pts = [mask_centroid(g == i) for i in np.unique(g) if i not in (0, PUSHER_ID)]
            out = seg.segment_prompts(im, points=pts)  # reuses the embedding
            t2 = time.perf_counter()
            embed.append(t1 - t0)
            per_prompt.append((t2 - t1) / len(pts))
            total += t2 - t0
            preds.append(out.instance_ids)
        row = {"backend": "sam2-tiny point prompts", "size": size, "model_image_size": image_size, "note": note,
               "images": len(items), "images_per_s": len(items) / total, "masks_per_s": 1.0 / statistics.median(per_prompt),
               "median_embed_ms": 1e3 * statistics.median(embed), "median_ms_per_point_prompt": 1e3 * statistics.median(per_prompt)}
        row.update(score(preds, gts))
        rows.append(row)
    return rows


def _touching_pose(specs, poses, rng: np.random.Generator) -> np.ndarray:
    """Pose of object 2 slid from a random direction against object 1 until their footprints meet."""
    a, b = specs[0], specs[1]
    pa, pb = poses[0], poses[1].copy()
    ang = rng.uniform(-math.pi, math.pi)
    u = np.array([math.cos(ang), math.sin(ang)])
    g = np.linspace(-a.bounding_radius, a.bounding_radius, 61)
    pts = pa[:2] + np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    pts = pts[[a.distance_to(pa, p) == 0.0 for p in pts]]  # object 1's footprint, 1 mm grid
    prev = a.bounding_radius + b.bounding_radius
    for dist in np.linspace(prev, 0.0, 150):
        pb[:2] = pa[:2] + dist * u
        if any(b.distance_to(pb, p) == 0.0 for p in pts):
            pb[:2] = pa[:2] + prev * u
            break
        prev = dist
    return pb


def _touch_in_image(ids: np.ndarray) -> bool:
    a, b = ids == 1, ids == 2
    near = np.zeros_like(b)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(b, dy, 0), dx, 1)
    return bool((a & near).any())


def look_scenes(camera: CameraConfig, n: int, seed0: int = EVAL_SEED_OFFSET) -> tuple[list[dict], CameraCalibration]:
    """``n`` held-out scenes with randomised looks seen by ``camera``: rgb, ids, depth, pair flag."""
    scene = TabletopScene(SceneConfig(camera=camera, look=LookConfig.randomized()))
    calib = CameraCalibration.from_camera_model(scene.camera)
    out = []
    for i in range(n):
        rng = np.random.default_rng(seed0 + i)
        pair = i % 2 == 0
        specs, poses = scene.sample_objects(rng, int(rng.integers(2, 5)) if pair else None)
        pair = pair and len(specs) >= 2
        if pair:
            poses[1] = _touching_pose(specs, poses, rng)
            keep = [0, 1] + [j for j in range(2, len(specs)) if np.linalg.norm(poses[j, :2] - poses[1, :2])
                             > specs[j].bounding_radius + specs[1].bounding_radius + 0.01]
            specs, poses = [specs[j] for j in keep], poses[keep]
        scene.set_objects(specs, poses)
        look = scene.sample_look(rng)
        if pair and look.object_rgb is not None:  # the touching pair shares one colour
            rgbs = list(look.object_rgb)
            rgbs[1] = rgbs[0]
            scene.apply_look(dataclasses.replace(look, object_rgb=tuple(rgbs)))
        if i % 4 == 1:  # the pusher pressed against object 1
            ang = float(rng.uniform(-math.pi, math.pi))
            d = np.array([math.cos(ang), math.sin(ang)])
            start = poses[0, :2] - d * (specs[0].bounding_radius + 0.03)
            scene.execute(PushStroke(float(start[0]), float(start[1]), ang, 0.02, 0.1), num_frames=3, render=False)
        rgb, ids, depth = scene.render_rgbd()
        out.append({"rgb": rgb, "ids": ids, "depth": depth, "pair": pair and _touch_in_image(ids)})
    scene.close()
    return out, calib


def bench_looks(n: int, cameras: list[str]) -> list[dict]:
    rows = []
    for cam_name in cameras:
        t0 = time.perf_counter()
        scenes, calib = look_scenes(LOOK_CAMERAS[cam_name](), n)
        print(f"{cam_name}: {n} randomised-look scenes in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        rgbd = RgbdSegmenter(calibration=calib)
        backends = {
            "classical": lambda sc, s=ClassicalSegmenter(): s.segment(sc["rgb"]),
            "rgb": lambda sc, s=RgbSegmenter(): s.segment(sc["rgb"]),
            "rgbd": lambda sc: rgbd.segment(sc["rgb"], sc["depth"]),
        }
        for name, fn in backends.items():
            fn(scenes[0])  # warm-up
            ious, pair, fp, times, n_obj = [], [], 0, [], 0
            for sc in scenes:
                t1 = time.perf_counter()
                seg = fn(sc)
                times.append(time.perf_counter() - t1)
                m = match_instances(seg.instance_ids, sc["ids"])
                ious += list(m.gt_iou.values())
                fp += len(m.unmatched_pred)
                n_obj += seg.num_objects
                if sc["pair"]:
                    pair += [m.gt_iou[1], m.gt_iou[2]]
            a = np.array(ious)
            rows.append({
                "backend": name, "camera": cam_name, "look": "randomized", "images": len(scenes), "gt_objects": int(a.size),
                "mean_iou": float(a.mean()), "min_iou": float(a.min()), "recall_iou_ge_0.5": float((a >= 0.5).mean()),
                "frac_iou_ge_0.9": float((a >= 0.9).mean()), "touching_pairs": len(pair) // 2,
                "touching_pair_mean_iou": float(np.mean(pair)) if pair else float("nan"), "false_positives": fp,
                "median_ms_per_image": 1e3 * statistics.median(times), "images_per_s": len(times) / sum(times),
            })
            r = rows[-1]
            print(f"  {name:9s} IoU {r['mean_iou']:.3f} pairs {r['touching_pair_mean_iou']:.3f} recall {r['recall_iou_ge_0.5']:.3f} "
                  f"fp {fp} {r['median_ms_per_image']:.1f} ms", file=sys.stderr)
    return rows


def markdown_looks(rows: list[dict], n: int) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        f"## Randomised looks ({n} held-out scenes per camera, seeds {EVAL_SEED_OFFSET}+; `LookConfig.randomized()`)",
        "",
        "Half the scenes hold a touching pair of one colour; a quarter have the pusher pressed against an object "
        "(ignored in scoring, id 255). Targets: RGB-D mean IoU ≥ 0.9 (pairs included), RGB ≥ 0.8.",
        "",
        "| backend | camera | mean IoU | min IoU | recall (IoU ≥ 0.5) | IoU ≥ 0.9 | touching pairs: IoU (n) | false pos. | median ms/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['camera']} | {r['mean_iou']:.3f} | {r['min_iou']:.3f} | {r['recall_iou_ge_0.5']:.3f} "
                     f"| {r['frac_iou_ge_0.9']:.3f} | {r['touching_pair_mean_iou']:.3f} ({r['touching_pairs']}) | {r['false_positives']} "
                     f"| {r['median_ms_per_image']:.1f} |")
    return lines


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Segmentation benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, torch {m.get('torch')} ({m.get('torch_threads')} threads), "
        f"GPU: {m.get('gpu') or 'none'}; load average at start {m.get('load_average_at_start')} "
        "(a training job shared the CPU, so speeds are conservative).",
        "",
        f"Data: {result['episodes']} held-out episodes (seeds {EVAL_SEED_OFFSET}+) x frames 0, T/2, T-1 "
        f"= {result['episodes'] * 3} images per size; SAM 2 on the first {result['sam2_images']} of them. "
        "IoU: Hungarian matching on IoU, mean over ground-truth objects (unmatched = 0).",
        "",
        "| backend | image | noise σ | images/s | masks/s | median ms/image | mean IoU | min IoU | IoU ≥ 0.9 | false pos. | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r.get("look") == "randomized":
            continue

        def f(key, fmt):
            v = r.get(key)
            return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

        ms = f("median_ms_per_image", ".2f") if "median_ms_per_image" in r else (
            f"{r['median_embed_ms']:.0f} embed + {r['median_ms_per_point_prompt']:.0f}/prompt")
        note = r.get("note", "")
        if "grid_prompts_per_s" in r:
            note = f"{r['points_per_side']}² grid prompts, {r['grid_prompts_per_s']:.0f} decoded/s; " + note
        lines.append(
            f"| {r['backend']} | {r['size']}×{r['size']}{' (model ' + str(r['model_image_size']) + ')' if 'model_image_size' in r else ''} "
            f"| {f('noise_sigma', '.0f') if 'noise_sigma' in r else '–'} | {f('images_per_s', '.1f')} | {f('masks_per_s', '.1f')} | {ms} "
            f"| {f('mean_iou', '.4f')} | {f('min_iou', '.3f')} | {f('frac_iou_ge_0.9', '.3f')} | {r.get('false_positives', '–')} | {note} |"
        )
    lines += markdown_looks([r for r in result["rows"] if r.get("look") == "randomized"], result.get("look_scenes", 0))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=100, help="held-out episodes per image size (3 frames each)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--noise", type=float, nargs="*", default=[5.0, 10.0], help="extra classical rows with Gaussian pixel noise (0..255 units)")
    ap.add_argument("--sam2-images", type=int, default=6, help="images per size for SAM 2 (0 = skip SAM 2)")
    ap.add_argument("--sam2-image-size", type=int, default=256)
    ap.add_argument("--sam2-checkpoint", default=None, help="local SAM 2.1 hiera-tiny checkpoint (default: random init, speed only)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for SAM 2")
    ap.add_argument("--look-scenes", type=int, default=40, help="randomised-look scenes per camera (0 = skip those rows)")
    ap.add_argument("--look-cameras", nargs="+", default=list(LOOK_CAMERAS), choices=list(LOOK_CAMERAS))
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args(argv)
    if a.episodes < 1:
        ap.error("--episodes must be >= 1")

    info = machine()
    t0 = time.perf_counter()
    data = {s: held_out_images(s, a.episodes) for s in a.sizes}
    print(f"simulated {a.episodes} held-out episodes per size in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = bench_classical(data, list(a.noise), np.random.default_rng(0))
    if a.sam2_images > 0:
        try:
            rows += bench_sam2(data, a.sam2_images, a.sam2_image_size, a.sam2_checkpoint, a.threads)
        except ImportError as e:
            print(f"skipping SAM 2: {e}", file=sys.stderr)
    if a.look_scenes > 0:
        rows += bench_looks(a.look_scenes, a.look_cameras)
    info["torch_threads"] = a.threads if a.sam2_images > 0 else info.get("torch_threads")
    result = {"machine": info, "episodes": a.episodes, "sam2_images": a.sam2_images, "seed_offset": EVAL_SEED_OFFSET,
              "frames": "0, T/2, T-1", "look_scenes": a.look_scenes, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "segmentation.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (out / "segmentation.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
