"""Object-token world model (v2) vs baselines on held-out episodes of every curriculum, in mm.

Held-out data: ``kinemask-generate-objects --seed 10000000`` (generated here if missing). The
planner path is the headline: object tokens estimated from the first frame's instance mask at
the camera resolution (32x32 = 12.5 mm/px like the simulator graph, 64x64, 128x128), the
commanded stroke, nothing measured from the simulator. Baselines in the same run:

* ``still``: nothing moves (copy-first-frame);
* ``constant velocity``: the object the stroke touches first (by geometry) moves with the pusher
  for the rest of the stroke, then slides to rest with Coulomb friction; nothing else moves;
* ``nominal-physics oracle``: the simulator re-run with the true shapes and poses but mid-range
  mass and friction (what a perfect model of nominal physics would predict);
* ``raster model``: the embedded 32x32, K = 4 slot track model on its own planner path
  (contact-model velocity from the 32x32 mask), on the episodes it can take (<= 4 objects).

Metrics (truth = the simulator with each object's own mass and friction): pushed-object final
error (the first object the pusher truly touched), hit-object final error (other objects that
truly move > 5 mm), interaction direction (hit objects predicted to move within 45 deg of the
true direction), false motion (truly still < 2 mm, predicted > 5 mm), missed motion (truly > 5 mm,
predicted < 2 mm), predicted overlaps (pairs of final footprints that overlap by > 1 mm, among
pairs where an object moved), and yaw error of moving boxes [deg]. Medians over objects; the
model's tracks are the mean of its samples.

    python benchmarks/object_model.py --checkpoint runs/objects/model --episodes 600
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402

from kinemask_ros.camera import CameraConfig, CameraModel  # noqa: E402
from kinemask_ros.object_scene import ObjectScene  # noqa: E402
from kinemask_ros.push import PushStroke  # noqa: E402
from kinemask_ros.sim_bridge.object_dataset import CURRICULA, EVAL_SEED_OFFSET, GeneratorConfig, generate, load_episodes  # noqa: E402
from kinemask_ros.sim_bridge.scene import PALETTE, SHAPES, ObjectSpec, SceneConfig, TabletopScene  # noqa: E402
from kinemask_ros.world_model.objects import FEATURES, ObjectWorldModel, downsample_ids, stroke_features  # noqa: E402

STILL_M, MOVE_M = 0.002, 0.005


def final_poses_still(d: dict) -> np.ndarray:
    return d["states"][:, 0, :, :3].astype(float)


def _specs(d: dict, n: int, mass: float | None = None, fric: float | None = None) -> list[ObjectSpec]:
    colors = list(PALETTE)
    out = []
    for i in range(int(d["num_objects"][n])):
        sh, a, b, m, f = d["specs"][n, i]
        out.append(ObjectSpec(SHAPES[int(sh)], (float(a), float(b)), 0.03, float(mass if mass else m), float(fric if fric else f), colors[i]))
    return out


def oracle(d: dict, idx: np.ndarray) -> np.ndarray:
    """Final poses from the simulator with nominal mass and friction."""
    sc = GeneratorConfig().scene_config()
    scene = TabletopScene(SceneConfig(max_objects=8))
    mass, fric = float(np.mean(sc.mass_range)), float(np.mean(sc.friction_range))
    out = final_poses_still(d)
    for n in idx:
        k = int(d["num_objects"][n])
        scene.set_objects(_specs(d, n, mass, fric), d["states"][n, 0, :k, :3])
        ep = scene.execute(PushStroke.from_array(d["strokes"][n]), render=False)
        out[n, :k] = ep.states[-1, :, :3]
    scene.close()
    return out


def constant_velocity(d: dict, idx: np.ndarray, cam: CameraModel) -> np.ndarray:
    out = final_poses_still(d)
    g_mu = 9.81 * float(np.mean(GeneratorConfig().scene_config().friction_range))
    for n in idx:
        scene = ObjectScene.from_mask(d["masks"][n], cam)
        s = PushStroke.from_array(d["strokes"][n])
        f = stroke_features(scene, [s])[0]  # the geometric first touch the planner path uses
        first = f[:, FEATURES.index("first_touch")] > 0
        if not first.any():
            continue
        k = int(np.argmax(first))
        rest = s.length * (1 - float(f[k, FEATURES.index("touch_at")]))
        slide = s.speed**2 / (2 * g_mu)
        out[n, int(scene.ids[k]) - 1, :2] += (rest + slide) * s.direction
    return out


def object_model(model: ObjectWorldModel, d: dict, idx: np.ndarray, res: int, samples: int, steps: int, seed: int = 0) -> np.ndarray:
    cam = CameraModel(CameraConfig(width=res, height=res))
    out = final_poses_still(d)
    gen = torch.Generator().manual_seed(seed)
    for n in idx:
        scene = ObjectScene.from_mask(downsample_ids(d["masks"][n], res), cam)
        if not len(scene):
            continue
        p = model.predict(scene, [PushStroke.from_array(d["strokes"][n])], samples, steps, gen)[0]  # (S, K, T, 3)
        fin = p[:, :, -1].mean(0)
        # poses relative to the measured start, applied to the true start (errors = predicted motion errors)
        delta = fin - p[0, :, 0]
        out[n, scene.ids - 1, :2] = d["states"][n, 0, scene.ids - 1, :2] + delta[:, :2]
        out[n, scene.ids - 1, 2] = d["states"][n, 0, scene.ids - 1, 2] + delta[:, 2]
    return out


def object_model_camera(model: ObjectWorldModel, d: dict, idx: np.ndarray, camera: CameraConfig, samples: int, steps: int,
                        use_depth: bool = True, segment: bool = False, resolution: int = 128, seed: int = 0) -> np.ndarray:
    """The object model on the user's path with another camera: each episode's first frame rendered by
    ``camera`` with a randomised look (RGB-D, sensor noise), rectified into the canonical table
    frame (:func:`kinemask_ros.perception.perceive`: depth footprints, or the plane), tokens from
    that. ``segment``: instance ids from the RGB-D segmenter (matched to the true objects by mask
    overlap, unmatched objects are predicted still) instead of the simulator's ids."""
    from kinemask_ros.perception import perceive
    from kinemask_ros.sim_bridge.look import LookConfig
    from kinemask_ros.table_frame import CameraCalibration, TableFrame

    scene = TabletopScene(SceneConfig(camera=camera, look=LookConfig.randomized(), max_objects=8))
    calib = CameraCalibration.from_camera_model(scene.camera)
    frame_cfg = TableFrame(resolution=resolution)
    seg = None
    if segment:
        from kinemask_ros.segmentation import make_segmenter

        seg = make_segmenter("rgbd", calibration=calib)
    out = final_poses_still(d)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    for n in idx:
        k = int(d["num_objects"][n])
        scene.set_objects(_specs(d, n), d["states"][n, 0, :k, :3])
        scene.sample_look(rng)
        rgb, ids, depth = scene.render_rgbd()
        ids = np.where(ids == 255, 0, ids)
        if seg is not None:
            pred = seg.segment(rgb, depth).instance_ids
            mapped = np.zeros_like(ids)
            for o in np.unique(pred[pred > 0]):
                m = pred == o
                votes = np.bincount(ids[m], minlength=k + 1)
                votes[0] = 0
                if votes.max() > 0.5 * m.sum():
                    mapped[m] = int(np.argmax(votes))
            ids = mapped
        try:
            frame = perceive(None, rgb, calib, ids=ids, depth=depth if use_depth else None, table_frame=frame_cfg)
        except ValueError:
            continue  # nothing found: everything predicted still
        sc = ObjectScene.from_mask(frame.ids, frame.camera)
        if not len(sc):
            continue
        p = model.predict(sc, [PushStroke.from_array(d["strokes"][n])], samples, steps, gen)[0]
        delta = p[:, :, -1].mean(0) - p[0, :, 0]
        out[n, sc.ids - 1, :2] = d["states"][n, 0, sc.ids - 1, :2] + delta[:, :2]
        out[n, sc.ids - 1, 2] = d["states"][n, 0, sc.ids - 1, 2] + delta[:, 2]
    scene.close()
    return out


def raster_model(d: dict, idx: np.ndarray, samples: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The embedded 32x32 K=4 track model on its planner path; returns final poses and the episodes it took."""
    from kinemask_ros.contact import ContactModel, ContactModelConfig
    from kinemask_ros.planning import WorldModelDynamics
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    pipe = KineMaskPipeline.from_pretrained(load_video=False, load_objects=False)
    cfg = pipe.config
    scene = TabletopScene(SceneConfig(max_objects=8))
    contact = ContactModel(scene.camera, ContactModelConfig(num_frames=cfg.num_frames))
    out = final_poses_still(d)
    took = []
    z = 0.015
    for n in idx:
        k = int(d["num_objects"][n])
        if k > cfg.max_objects:
            continue
        scene.set_objects(_specs(d, n), d["states"][n, 0, :k, :3])
        rgb, mask = scene.render()
        dyn = WorldModelDynamics(pipe, contact, rgb, mask, samples, steps, torch.Generator().manual_seed(int(n)))
        tr = dyn([PushStroke.from_array(d["strokes"][n])]).tracks[0].mean(0)  # (K, T, 2) px
        xy = scene.camera.unproject_table(tr[:k, [0, -1]].astype(float), z)  # (k, 2, 2)
        out[n, :k, :2] = d["states"][n, 0, :k, :2] + (xy[:, 1] - xy[:, 0])
        took.append(n)
    scene.close()
    return out, np.array(took, np.int64)


def penetration(spec_a, pose_a: np.ndarray, spec_b, pose_b: np.ndarray) -> float:
    """How deep two footprints overlap [m] (<= 0: apart). Boxes: separating-axis test; disks exact."""
    def shape(row):
        return SHAPES[int(row[0])], float(row[1]), float(row[2])

    (sa, aa, ba), (sb, ab, bb) = shape(spec_a), shape(spec_b)
    c = pose_b[:2] - pose_a[:2]
    if sa == "cylinder" and sb == "cylinder":
        return aa + ab - float(np.linalg.norm(c))
    if sa == "cylinder" or sb == "cylinder":  # disk vs box: box distance to the disk centre
        (r, box_pose, centre, (ea, eb)) = ((aa, pose_b, pose_a[:2], (ab, bb)) if sa == "cylinder" else (ab, pose_a, pose_b[:2], (aa, ba)))
        q = centre - box_pose[:2]
        co, si = math.cos(box_pose[2]), math.sin(box_pose[2])
        local = np.abs([co * q[0] + si * q[1], -si * q[0] + co * q[1]]) - np.array([ea, eb])
        outside = float(np.linalg.norm(np.maximum(local, 0.0)))
        inside = float(min(max(local[0], local[1]), 0.0))
        return r - (outside if outside > 0 else inside)

    def axes(yaw):
        return [np.array([math.cos(yaw), math.sin(yaw)]), np.array([-math.sin(yaw), math.cos(yaw)])]

    def half(yaw, a, b, u):
        ax = axes(yaw)
        return abs(u @ ax[0]) * a + abs(u @ ax[1]) * b

    depth = math.inf
    for u in axes(pose_a[2]) + axes(pose_b[2]):
        depth = min(depth, half(pose_a[2], aa, ba, u) + half(pose_b[2], ab, bb, u) - abs(float(c @ u)))
    return depth


def metrics(d: dict, pred: np.ndarray, idx: np.ndarray) -> dict:
    """Per-object statistics over episodes ``idx`` (see the module docstring)."""
    pushed_err, hit_err, dir_ok, yaw_err = [], [], [], []
    still_n = still_moved = move_n = move_missed = 0
    pairs = overlaps = 0
    for n in idx:
        k = int(d["num_objects"][n])
        s0, s1 = d["states"][n, 0, :k, :3].astype(float), d["states"][n, -1, :k, :3].astype(float)
        p1 = pred[n, :k]
        true_d = np.linalg.norm(s1[:, :2] - s0[:, :2], axis=1)
        pred_d = np.linalg.norm(p1[:, :2] - s0[:, :2], axis=1)
        err = np.linalg.norm(p1[:, :2] - s1[:, :2], axis=1)
        pushed = int(d["pushed"][n]) - 1
        for o in range(k):
            if true_d[o] < STILL_M:
                still_n += 1
                still_moved += pred_d[o] > MOVE_M
            elif true_d[o] > MOVE_M:
                move_n += 1
                move_missed += pred_d[o] < STILL_M
            if o == pushed:
                pushed_err.append(err[o])
            elif true_d[o] > MOVE_M:
                hit_err.append(err[o])
                tv, pv = s1[o, :2] - s0[o, :2], p1[o, :2] - s0[o, :2]
                dir_ok.append(np.linalg.norm(pv) > 1e-4 and float(tv @ pv) / (np.linalg.norm(tv) * np.linalg.norm(pv)) > math.cos(math.radians(45)))
            if true_d[o] > MOVE_M and SHAPES[int(d["specs"][n, o, 0])] == "box":
                dy = ((p1[o, 2] - s0[o, 2]) - (s1[o, 2] - s0[o, 2]) + math.pi / 2) % math.pi - math.pi / 2
                yaw_err.append(abs(dy))
        for i in range(k):
            for j in range(i + 1, k):
                if max(true_d[i], true_d[j], pred_d[i], pred_d[j]) < STILL_M:
                    continue
                pairs += 1
                overlaps += penetration(d["specs"][n, i], p1[i], d["specs"][n, j], p1[j]) > 0.001

    def med(x):
        return float(np.median(x) * 1e3) if len(x) else float("nan")

    return {"episodes": int(len(idx)), "pushed_err_mm": med(pushed_err), "hit_err_mm": med(hit_err), "hit_objects": len(hit_err),
            "direction_acc": float(np.mean(dir_ok)) if dir_ok else float("nan"),
            "false_motion": still_moved / max(still_n, 1), "missed_motion": move_missed / max(move_n, 1),
            "overlap_rate": overlaps / max(pairs, 1), "yaw_err_deg": float(np.degrees(np.median(yaw_err))) if yaw_err else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="object model directory (default: the embedded checkpoint's objects/)")
    p.add_argument("--eval-data", default="data/objects_eval")
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--no-raster", action="store_true", help="skip the embedded raster model row")
    p.add_argument("--oblique", action="store_true",
                   help="add rows for an oblique 640x480 RGB-D camera (45 deg, 0.8 m) with randomised looks: rectified with depth, "
                        "with the plane only, and with the RGB-D segmenter's ids")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    root = Path(a.eval_data)
    if not list(root.glob("shard_*.npz")):
        generate(GeneratorConfig(num_episodes=max(a.episodes, 1000), seed=EVAL_SEED_OFFSET), root, workers=1)
    d = load_episodes(root, a.episodes)
    N = len(d["seeds"])
    from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT

    ckpt = Path(a.checkpoint) if a.checkpoint else EMBEDDED_CHECKPOINT / "objects"
    model = ObjectWorldModel.from_pretrained(ckpt)
    cam128 = CameraModel(CameraConfig(width=d["masks"].shape[2], height=d["masks"].shape[1]))
    splits = {c: np.where(d["curriculum"] == i)[0] for i, c in enumerate(CURRICULA)}
    splits = {k: v for k, v in splits.items() if len(v)}
    splits["all"] = np.arange(N)
    allidx = np.arange(N)
    rows, timing = {}, {}
    t0 = time.perf_counter()
    truth = d["states"][:, -1, :, :3].astype(float)
    preds = {"truth (sanity)": truth, "still": final_poses_still(d), "constant velocity": constant_velocity(d, allidx, cam128)}
    timing["baselines_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    preds["nominal-physics oracle"] = oracle(d, allidx)
    timing["oracle_s"] = time.perf_counter() - t0
    for r in a.resolutions:
        t0 = time.perf_counter()
        preds[f"object model @{r}px"] = object_model(model, d, allidx, r, a.samples, a.steps)
        timing[f"object_model_{r}_s_per_episode"] = (time.perf_counter() - t0) / N
    if a.oblique:
        obl = CameraConfig.oblique(640, 480, elevation_deg=45.0, distance=0.8)
        for label, kw in (("depth", {}), ("plane", {"use_depth": False}), ("RGB-D segmenter", {"segment": True})):
            t0 = time.perf_counter()
            preds[f"object model, oblique 640x480 randomised look, {label}"] = object_model_camera(model, d, allidx, obl, a.samples, a.steps, **kw)
            timing[f"oblique_{label}_s_per_episode"] = (time.perf_counter() - t0) / N
    raster_idx = None
    if not a.no_raster:
        t0 = time.perf_counter()
        preds["raster model (K=4) @32px"], raster_idx = raster_model(d, allidx, a.samples, a.steps)
        timing["raster_s"] = time.perf_counter() - t0
    for name, pr in preds.items():
        rows[name] = {k: metrics(d, pr, v if name.startswith("raster") is False else np.intersect1d(v, raster_idx)) for k, v in splits.items()}
    if raster_idx is not None:  # the others on the raster model's episodes, for a like-for-like comparison
        sub = {"<=4 objects": raster_idx}
        for name, pr in preds.items():
            rows[name]["<=4 objects"] = metrics(d, pr, sub["<=4 objects"])
    # table
    cols = ["pushed_err_mm", "hit_err_mm", "direction_acc", "false_motion", "missed_motion", "overlap_rate", "yaw_err_deg"]
    lines = [f"# Object world model (v2), held-out episodes ({N}, seeds from {EVAL_SEED_OFFSET})", "", f"Machine: {machine()}", ""]
    for split in list(splits) + (["<=4 objects"] if raster_idx is not None else []):
        lines += [f"## {split} ({rows['still'][split]['episodes']} episodes)", "",
                  "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name in preds:
            m = rows[name][split]
            lines.append(f"| {name} | " + " | ".join(f"{m[c]:.3f}" if "rate" in c or "motion" in c or "acc" in c else f"{m[c]:.1f}" for c in cols) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "object_model.md").write_text(text + "\n")
    (out / "object_model.json").write_text(json.dumps({"machine": machine(), "checkpoint": str(ckpt), "episodes": N, "rows": rows,
                                                       "timing": timing, "thresholds_m": {"still": STILL_M, "move": MOVE_M}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
