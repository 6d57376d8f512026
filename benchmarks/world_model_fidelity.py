"""World-model fidelity on held-out simulator episodes (DESIGN §5), with baselines in the same run.

    python benchmarks/world_model_fidelity.py --checkpoint runs/wm \
        --ablation velocity-only=runs/wm_velocity

Rows: copy-first-frame, constant-velocity (pushed object slides with friction, nothing else
moves), the simulator with nominal mass/friction (the oracle: it knows shapes and poses but, like
the model, not the hidden mass/friction), the world model's tracks (+ ablations), and the video
model after stage 1 only vs stage 1+2, both given the first-frame velocity mask only.

The headline is the **planner path** — what the planner and the nodes run: the first frame's
instance mask and the *commanded* stroke, nothing measured in the simulator. With the object
model (v2) that is the object scene from the mask + the stroke; with the raster model it is the
contact model's velocity from the 32x32 mask. Feeding the raster model the simulator-measured
first-frame velocity is kept as an ablation row ("measured velocity"): it is optimistic, no user
has that velocity before pushing. Errors are reported in mm on the table (and px at 32x32).
Writes ``OUT/world_model_fidelity.json``, ``OUT/world_model_fidelity.md`` and ``OUT/rollouts.gif``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine, save_comparison_gif  # noqa: E402
from kinemask_ros.metrics import centroids_from_masks, direction_correct, mask_iou, motion_fidelity, psnr, ssim
from kinemask_ros.push import PushStroke
from kinemask_ros.sim_bridge.dataset import COLOR_NAMES, EVAL_SEED_OFFSET, GeneratorConfig, generate, load_dataset, load_manifest
from kinemask_ros.sim_bridge.scene import SHAPES, ObjectSpec, SceneConfig, TabletopScene
from kinemask_ros.world_model.networks import VideoDenoiser
from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT, KineMaskPipeline

HIT_MIN_MOVE_PX = 1.0


def ensure_eval_data(path: Path, episodes: int) -> dict:
    if not (path / "manifest.json").exists():
        print(f"generating {episodes} held-out episodes (seeds from {EVAL_SEED_OFFSET}) in {path}")
        generate(GeneratorConfig(num_episodes=episodes, seed=EVAL_SEED_OFFSET), path, workers=2)
    m = load_manifest(path)
    if m["config"]["seed"] < EVAL_SEED_OFFSET:
        raise ValueError(f"{path} was generated from training seeds (seed {m['config']['seed']} < {EVAL_SEED_OFFSET}); use held-out data")
    return load_dataset(path, max_episodes=episodes)


# ----------------------------------------------------------------------------- track predictors
def copy_first_frame(d: dict) -> np.ndarray:
    c0 = d["centroids_px"][:, :1]
    return np.repeat(c0, d["centroids_px"].shape[1], 1)


def constant_velocity(d: dict, decel_px: float) -> np.ndarray:
    """Pushed object starts with its frame-0 velocity and decelerates by Coulomb friction."""
    c = copy_first_frame(d).copy()
    N, T = c.shape[:2]
    for n in range(N):
        p = int(d["pushed_id"][n])
        if not p:
            continue
        v0 = d["velocities_px"][n, 0, p - 1].astype(float)
        speed = np.linalg.norm(v0)
        if speed < 1e-9:
            continue
        t = np.arange(T, dtype=float)
        t_stop = speed / decel_px
        tt = np.minimum(t, t_stop)
        dist = speed * tt - 0.5 * decel_px * tt**2
        c[n, :, p - 1] = c[n, 0, p - 1] + dist[:, None] * (v0 / speed)
    return c


def oracle_simulator(d: dict, scene_cfg: SceneConfig) -> np.ndarray:
    """Re-simulate each episode with the true shapes/poses/stroke but nominal mass and friction."""
    scene = TabletopScene(scene_cfg)
    mass = float(np.mean(scene_cfg.mass_range))
    fric = float(np.mean(scene_cfg.friction_range))
    out = copy_first_frame(d).copy()
    for n in range(len(d["seeds"])):
        k = int(d["num_objects"][n])
        specs = [ObjectSpec(SHAPES[d["object_shape"][n, i]], tuple(float(s) for s in d["object_size"][n, i]), scene_cfg.object_height,
                            mass, fric, COLOR_NAMES[d["object_color"][n, i]]) for i in range(k)]
        scene.set_objects(specs, d["states"][n, 0, :k, :3])
        ep = scene.execute(PushStroke.from_array(d["stroke"][n]), render=False)
        out[n, :, :k] = ep.centroids_px
    scene.close()
    return out


def model_tracks(pipe: KineMaskPipeline, d: dict, samples: int, steps: int, batch: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and all samples of the world model's tracks: ``(N, T, K, 2)``, ``(N, S, T, K, 2)``."""
    N = len(d["seeds"])
    K, T = pipe.config.max_objects, pipe.config.num_frames
    g = torch.Generator().manual_seed(seed)
    means, alls = [], []
    enc = None
    if pipe.config.text_dim:
        from kinemask_ros.world_model.text_encoder import TextEncoder

        enc = TextEncoder()
    for s in range(0, N, batch):
        sl = slice(s, min(N, s + batch))
        inputs = episode_inputs(d, sl, K, T, enc)
        out = pipe(**inputs, num_samples=samples, num_inference_steps=steps, generator=g)
        tr = out.tracks.numpy().transpose(0, 1, 3, 2, 4)  # (B, S, T, K, 2)
        alls.append(tr)
        means.append(tr.mean(1))
    return np.concatenate(means), np.concatenate(alls)


def episode_inputs(d: dict, sl, K: int, T: int, text_encoder=None) -> dict:
    """Dataset arrays -> pipeline inputs (true first frame, masks, frame-0 velocity, driver, and the
    rule-predicted description when ``text_encoder`` is given: the text is never the true one)."""
    frames = torch.from_numpy(d["frames"][sl, 0]).permute(0, 3, 1, 2).float() / 255
    mask = torch.from_numpy(d["masks"][sl, 0].astype(np.int64))
    vel = torch.zeros(frames.shape[0], K, 2)
    k = d["velocities_px"].shape[2]
    vel[:, :k] = torch.from_numpy(d["velocities_px"][sl, 0])
    drv = torch.from_numpy(d["driver"][sl, :T]).float()[:, :, None]
    out = {"image": frames, "instance_mask": mask, "velocities": vel, "driver": drv}
    if text_encoder is not None:
        from kinemask_ros.text import object_names, predict_description

        idx = np.arange(len(d["seeds"]))[sl]
        texts = []
        for n in idx:
            p = int(d["pushed_id"][n])
            names = object_names(d["frames"][n, 0], d["masks"][n, 0])
            texts.append(predict_description(d["masks"][n, 0], p, d["velocities_px"][n, 0, p - 1] if p else np.zeros(2), names))
        out["text"] = torch.from_numpy(text_encoder.encode(texts))
    return out


def planner_path_tracks(pipe: KineMaskPipeline, d: dict, samples: int, steps: int, use_objects: bool, seed: int = 0) -> np.ndarray:
    """Mean tracks ``(N, T, K, 2)`` [px] on the planner path: mask + commanded stroke -> imagination.

    ``use_objects``: the object-token model (object scene measured from the 32x32 mask); else the
    raster model with the contact model's velocity. Slots beyond an episode's objects are NaN.
    """
    from kinemask_ros.camera import CameraConfig, CameraModel
    from kinemask_ros.contact import ContactModel, ContactModelConfig
    from kinemask_ros.planning import make_dynamics

    N = len(d["seeds"])
    K, T = pipe.config.max_objects, pipe.config.num_frames
    H, W = d["masks"].shape[2:4]
    contact = ContactModel(CameraModel(CameraConfig(width=W, height=H)), ContactModelConfig(num_frames=T))
    g = torch.Generator().manual_seed(seed)
    out = np.full((N, T, K, 2), np.nan, np.float32)
    for n in range(N):
        k = int(d["num_objects"][n])
        mask = d["masks"][n, 0].astype(np.uint8)
        mask = np.where(mask <= k, mask, 0).astype(np.uint8)  # the pusher (255) is not an object
        dyn = make_dynamics(pipe, contact, d["frames"][n, 0], mask, samples, steps, g, use_objects=use_objects)
        tr = dyn([PushStroke.from_array(d["stroke"][n])]).tracks[0].mean(0)  # (K', T, 2)
        out[n, :, : min(K, tr.shape[0])] = tr[:K].transpose(1, 0, 2)
    return out


# ----------------------------------------------------------------------------- scoring
def track_metrics(d: dict, pred: np.ndarray, idx: np.ndarray) -> dict:
    """Centroid errors, interaction direction and motion fidelity over episodes ``idx``."""
    true = d["centroids_px"]
    pushed_err, hit_err, hit_dir, mf = [], [], [], []
    for n in idx:
        k = int(d["num_objects"][n])
        p = int(d["pushed_id"][n])
        T = pred.shape[1]
        disp_true = true[n, T - 1, :k] - true[n, 0, :k]
        if p:
            pushed_err.append(float(np.linalg.norm(pred[n, -1, p - 1] - true[n, T - 1, p - 1])))
        tl_true, tl_pred = [], []
        for j in range(k):
            moved = np.linalg.norm(disp_true[j]) > HIT_MIN_MOVE_PX
            if moved:
                tl_true.append(true[n, :T, j])
                tl_pred.append(pred[n, :, j])
            if j + 1 != p and moved and d["collided"][n]:
                hit_err.append(float(np.linalg.norm(pred[n, -1, j] - true[n, T - 1, j])))
                hit_dir.append(direction_correct(pred[n, -1, j] - pred[n, 0, j], disp_true[j]))
        if tl_true:
            mf.append(motion_fidelity(tl_true, tl_pred))

    def stat(x):
        return {"mean": float(np.mean(x)), "median": float(np.median(x)), "n": len(x)} if x else {"mean": None, "median": None, "n": 0}

    return {"pushed_final_err_px": stat(pushed_err), "hit_final_err_px": stat(hit_err),
            "direction_acc": float(np.mean(hit_dir)) if hit_dir else None, "motion_fidelity": stat(mf)}


def video_metrics(pipe: KineMaskPipeline, d: dict, idx: np.ndarray, steps: int, seed: int = 0, mode: str = "refine",
                  strength: float = 0.3) -> tuple[dict, np.ndarray]:
    """PSNR/SSIM (frames 1..), per-frame mask IoU, and pushed-object error from the video's masks."""
    K, T, s = pipe.config.max_objects, pipe.config.num_frames, pipe.config.video_frame_stride
    g = torch.Generator().manual_seed(seed)
    ps, ss, ious, errs, vids = [], [], [], [], []
    for b in range(0, len(idx), 16):
        ii = idx[b : b + 16]
        out = pipe(**episode_inputs(d, ii, K, T), num_samples=1, num_inference_steps=8, return_video=True,
                   video_inference_steps=steps, video_mode=mode, video_strength=strength, generator=g)
        fr = out.frames.numpy()
        om = out.object_masks.numpy()
        for j, n in enumerate(ii):
            gt = d["frames"][n, :T:s].transpose(0, 3, 1, 2) / 255.0
            ps.append(psnr(fr[j, 1:], gt[1:]))
            ss.append(ssim(fr[j, 1:], gt[1:]))
            k = int(d["num_objects"][n])
            gtm = d["masks"][n, :T:s]
            for t in range(1, gt.shape[0]):
                for o in range(k):
                    v = mask_iou(om[j, t, o], gtm[t] == o + 1)
                    if not np.isnan(v):
                        ious.append(v)
            p = int(d["pushed_id"][n])
            if p:
                c = centroids_from_masks(om[j, -1:, p - 1 : p])[0, 0]
                true_c = d["centroids_px"][n, (gt.shape[0] - 1) * s, p - 1]
                errs.append(float(np.linalg.norm(c - true_c)) if np.all(np.isfinite(c)) else float(pipe.config.width))
            vids.append(fr[j])
    return ({"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "mask_iou": float(np.mean(ious)) if ious else None,
             "pushed_final_err_px": float(np.mean(errs)) if errs else None, "n": len(ps)}, np.stack(vids))


def copy_frame_video_metrics(d: dict, idx: np.ndarray, T: int, s: int) -> dict:
    ps, ss, ious = [], [], []
    for n in idx:
        gt = d["frames"][n, :T:s].transpose(0, 3, 1, 2) / 255.0
        pred = np.repeat(gt[:1], len(gt), 0)
        ps.append(psnr(pred[1:], gt[1:]))
        ss.append(ssim(pred[1:], gt[1:]))
        k = int(d["num_objects"][n])
        gtm = d["masks"][n, :T:s]
        for t in range(1, len(gt)):
            for o in range(k):
                v = mask_iou(gtm[0] == o + 1, gtm[t] == o + 1)
                if not np.isnan(v):
                    ious.append(v)
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "mask_iou": float(np.mean(ious)), "n": len(ps)}


def time_ranking(pipe: KineMaskPipeline, d: dict, candidates: int, samples: int, steps: int, repeats: int = 5) -> float:
    """Median seconds to imagine ``candidates`` rollouts x ``samples`` track samples."""
    K, T = pipe.config.max_objects, pipe.config.num_frames
    idx = np.arange(candidates) % len(d["seeds"])
    inputs = episode_inputs(d, idx, K, T)
    pipe(**inputs, num_samples=samples, num_inference_steps=steps)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pipe(**inputs, num_samples=samples, num_inference_steps=steps)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def fmt(x, nd=2) -> str:
    if x is None:
        return "–"
    if isinstance(x, dict):
        return fmt(x["mean"], nd)
    return f"{x:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="world-model directory (default: the embedded checkpoint)")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR", help="extra track models to compare")
    p.add_argument("--eval-data", default="data/eval", help="held-out dataset (generated if missing)")
    p.add_argument("--episodes", type=int, default=400)
    p.add_argument("--video-episodes", type=int, default=48)
    p.add_argument("--samples", type=int, default=4, help="track samples per episode (the mean is scored)")
    p.add_argument("--steps", type=int, default=8, help="track sampler steps")
    p.add_argument("--video-steps", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    d = ensure_eval_data(Path(a.eval_data), a.episodes)
    N = len(d["seeds"])
    splits = {"free": np.where(~d["collided"] & (d["pushed_id"] > 0))[0], "collision": np.where(d["collided"])[0], "all": np.arange(N)}
    scene_cfg = SceneConfig()
    decel_px = 9.81 * float(np.mean(scene_cfg.friction_range)) * 80.0 * scene_cfg.frame_dt**2
    pipe = KineMaskPipeline.from_pretrained(a.checkpoint)
    T = pipe.config.num_frames
    rows: dict[str, dict] = {}
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    rows["copy-first-frame"] = {k: track_metrics(d, copy_first_frame(d)[:, :T], v) for k, v in splits.items()}
    rows["constant-velocity"] = {k: track_metrics(d, constant_velocity(d, decel_px)[:, :T], v) for k, v in splits.items()}
    t1 = time.perf_counter()
    oracle = oracle_simulator(d, scene_cfg)
    timings["oracle simulator s/episode"] = (time.perf_counter() - t1) / N
    rows["simulator, nominal mass/friction (oracle)"] = {k: track_metrics(d, oracle[:, :T], v) for k, v in splits.items()}
    # headline: the planner path (mask + commanded stroke)
    if pipe.object_model is not None:
        tp = time.perf_counter()
        rows["object model, planner path (headline)"] = {k: track_metrics(d, planner_path_tracks(pipe, d, a.samples, a.steps, True), v)
                                                         for k, v in splits.items()}
        timings["object model planner path s/episode"] = (time.perf_counter() - tp) / N
    rows["raster model, planner path (contact-model velocity)"] = {
        k: track_metrics(d, planner_path_tracks(pipe, d, a.samples, a.steps, False), v) for k, v in splits.items()}
    models = [(f"raster model, measured velocity (ablation, {pipe.config.conditioning})", pipe)]
    for spec in a.ablation:
        name, _, path = spec.partition("=")
        models.append((f"raster model, measured velocity ({name})", KineMaskPipeline.from_pretrained(path, load_video=False)))
    for name, pp in models:
        mean, _ = model_tracks(pp, d, a.samples, a.steps)
        rows[name] = {k: track_metrics(d, mean, v) for k, v in splits.items()}
    # video: stage 1 only vs stage 1+2, first-frame velocity mask only
    rng = np.random.default_rng(0)
    vid_idx = np.sort(np.concatenate([rng.choice(splits["collision"], min(len(splits["collision"]), a.video_episodes // 2), replace=False),
                                      rng.choice(splits["free"], min(len(splits["free"]), a.video_episodes - a.video_episodes // 2), replace=False)]))
    video_rows = {"copy-first-frame": copy_frame_video_metrics(d, vid_idx, T, pipe.config.video_frame_stride)}
    gif_rows = {}
    root = Path(a.checkpoint) if a.checkpoint else EMBEDDED_CHECKPOINT
    runs = [("track draft, no diffusion", "video", "draft"),
            ("video refine: track draft + denoiser (stage 1+2)", "video", "refine"),
            ("video generate, first-frame V only (stage 1+2)", "video", "generate"),
            ("video generate, first-frame V only (stage 1 only)", "video_stage1", "generate")]
    for label, sub, mode in runs:
        if not (root / sub).exists():
            continue
        pipe.video_model = VideoDenoiser.from_pretrained(root / sub, low_cpu_mem_usage=False).eval()
        tv = time.perf_counter()
        video_rows[label], vids = video_metrics(pipe, d, vid_idx, a.video_steps if mode == "generate" else 6, mode=mode)
        timings[f"{label} s/video"] = (time.perf_counter() - tv) / len(vid_idx)
        gif_rows[label] = vids
    timings["rank 64 candidates x 4 samples, 8 steps [s]"] = time_ranking(pipe, d, 64, 4, a.steps)
    timings["rank 64 candidates x 1 sample, 8 steps [s]"] = time_ranking(pipe, d, 64, 1, a.steps)
    from kinemask_ros.camera import CameraConfig, CameraModel

    mm_per_px = 1000.0 / CameraModel(CameraConfig(width=pipe.config.width, height=pipe.config.height)).pixels_per_metre(0.015)
    result = {"machine": machine(), "checkpoint": str(a.checkpoint or "embedded"), "eval_data": a.eval_data, "mm_per_px": mm_per_px,
              "episodes": {k: int(len(v)) for k, v in splits.items()}, "samples": a.samples, "steps": a.steps,
              "tracks": rows, "video": video_rows, "video_episodes": int(len(vid_idx)), "timings": timings,
              "wall_s": time.perf_counter() - t0}
    (out / "world_model_fidelity.json").write_text(json.dumps(result, indent=1))
    lines = [f"# World-model fidelity ({result['machine']})", "",
             f"Held-out episodes: {result['episodes']} (seeds >= {EVAL_SEED_OFFSET}); track metrics at {pipe.config.height}x{pipe.config.width}, "
             f"{T} frames; model = mean of {a.samples} samples, {a.steps} Euler steps.", "",
             f"Errors: mean final error in mm on the table (px at {pipe.config.width}x{pipe.config.height} in brackets; 1 px = {mm_per_px:.1f} mm).", "",
             "| method | pushed err free [mm] | pushed err collision [mm] | hit err [mm] | hit direction acc | motion fidelity (all) |",
             "|---|---|---|---|---|---|"]

    def mm(x):
        return "–" if x is None or x["mean"] is None else f"{x['mean'] * mm_per_px:.1f} ({x['mean']:.2f})"

    for name, r in rows.items():
        lines.append(f"| {name} | {mm(r['free']['pushed_final_err_px'])} | {mm(r['collision']['pushed_final_err_px'])} | "
                     f"{mm(r['collision']['hit_final_err_px'])} | {fmt(r['collision']['direction_acc'])} | {fmt(r['all']['motion_fidelity'])} |")
    lines += ["", f"Video ({len(vid_idx)} episodes, half collision; frames 1..{pipe.config.video_frames - 1} at stride {pipe.config.video_frame_stride}):", "",
              "| method | PSNR [dB] | SSIM | mask IoU | pushed err from masks [px] |", "|---|---|---|---|---|"]
    for name, r in video_rows.items():
        lines.append(f"| {name} | {fmt(r['psnr'])} | {fmt(r['ssim'], 3)} | {fmt(r['mask_iou'], 3)} | {fmt(r.get('pushed_final_err_px'))} |")
    lines += ["", "| timing | median |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in timings.items()]
    md = "\n".join(lines) + "\n"
    (out / "world_model_fidelity.md").write_text(md)
    print(md)
    if gif_rows:
        n_show = min(8, len(vid_idx))
        save_comparison_gif(out / "rollouts.gif", d["frames"][vid_idx[:n_show]], gif_rows, pipe.config.video_frame_stride, 4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
