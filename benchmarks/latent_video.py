"""Latent KineMask video model at 64x64 (issue #12): autoencoder quality and video fidelity.

    python benchmarks/latent_video.py                                  # the embedded checkpoint
    python benchmarks/latent_video.py --checkpoint runs/latent64/run   # a training run (vae/, latent_video/, stage1/)

Held-out episodes (seeds >= 10,000,000) rendered at 64x64, half with collisions. Rows, all from the
same episodes: copy-first-frame; two drafts without a model - constant velocity (each object's
first-frame pixels moved at its first-frame velocity) and the pushed layout the ``push_prior``
condition holds (objects moving in frame 0 carried by the pusher's progress, nobody hit); the
autoencoder's reconstruction of the true video (the ceiling of every latent row); the track draft (raster track model on the 2x down-sampled inputs, objects
moved along its tracks, no diffusion); refine (draft encoded, denoised from noise 0.3 with the
velocity mask rebuilt from the draft); and KineMask generate (velocity mask on frame 0 only, from
noise) after stage 1+2 and after stage 1 only. Per row: PSNR / SSIM (frames 1..), mask IoU of
moving objects and of all objects, pushed- and hit-object final errors from the generated masks
[mm], hit direction from the masks, motion fidelity (InterDyn eq. 1-2 on mask-centroid tracklets),
s/video. Plus the raster track model's own errors on the same episodes and the top-3 preview
latency (batch of 3: encode + sampling + decoding). The same rows on the hard-scene categories
(DESIGN section 5) that fit the model's slots, ``--hard-per-category`` verified scenes each.
Writes ``OUT/latent_video.{json,md,gif}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine, save_comparison_gif  # noqa: E402
from kinemask_ros.metrics import centroids_from_masks, direction_correct, mask_iou, motion_fidelity, psnr, ssim
from kinemask_ros.sim_bridge.dataset import EVAL_SEED_OFFSET, GeneratorConfig, generate, load_dataset, load_manifest
from kinemask_ros.sim_bridge.scene import SceneConfig
from kinemask_ros.world_model.latent import LatentVideoModel, LatentVideoPipeline, decode_masks, slot_masks
from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT, KineMaskPipeline

MOVE_PX = 2.0  # an object "moves" if its true centroid moves more than this [px at 64x64] (1 px at 32x32)
#: Hard-scene categories with in-bounds strokes and at most 4 objects (clutter6/8 need more slots
#: than the latent model's K = 4; long/fast strokes are refused before any imagination).
HARD_CATEGORIES = ("chain2", "chain3", "chain4", "glancing", "near_miss", "bystander", "double_hit", "edge", "property_ends")
HARD_SEED = 20_000_000


def ensure_eval_data(path: Path, episodes: int, size: int) -> dict:
    if not (path / "manifest.json").exists():
        base = SceneConfig()
        sc = replace(base, camera=replace(base.camera, width=size, height=size))
        print(f"generating {episodes} held-out {size}x{size} episodes (seeds from {EVAL_SEED_OFFSET}) in {path}")
        generate(GeneratorConfig(num_episodes=episodes, seed=EVAL_SEED_OFFSET, scene=sc), path, workers=1)
    m = load_manifest(path)
    if m["config"]["seed"] < EVAL_SEED_OFFSET:
        raise ValueError(f"{path} was generated from training seeds; use held-out data")
    d = load_dataset(path, max_episodes=episodes)
    if d["frames"].shape[2] != size:
        raise ValueError(f"{path} holds {d['frames'].shape[2]}px frames, the latent model needs {size}px")
    return d


def inputs(d: dict, idx: np.ndarray, K: int, T: int) -> dict:
    """Pipeline inputs: true first frame, its instance mask, frame-0 velocities [px/frame], driver."""
    vel = torch.zeros(len(idx), K, 2)
    k = d["velocities_px"].shape[2]
    vel[:, :k] = torch.from_numpy(d["velocities_px"][idx, 0])
    return {"image": torch.from_numpy(d["frames"][idx, 0]).permute(0, 3, 1, 2).float() / 255,
            "instance_mask": torch.from_numpy(d["masks"][idx, 0].astype(np.int64)),
            "velocities": vel, "driver": torch.from_numpy(d["driver"][idx, :T]).float()[:, :, None]}


def score(d: dict, idx: np.ndarray, frames: np.ndarray, masks: np.ndarray, s: int, mm_per_px: float) -> dict:
    """Metrics of videos ``frames (N, Tv, 3, H, W)`` and masks ``(N, Tv, K, H, W)`` against the truth."""
    W = frames.shape[-1]
    ps, ss, iou_mov, iou_all, pushed, hit, hit_dir, mf, lost = [], [], [], [], [], [], [], [], []
    for j, n in enumerate(idx):
        Tv = frames.shape[1]
        gt = d["frames"][n, : Tv * s : s].transpose(0, 3, 1, 2) / 255.0
        ps.append(psnr(frames[j, 1:], gt[1:]))
        ss.append(ssim(frames[j, 1:], gt[1:]))
        k, p = int(d["num_objects"][n]), int(d["pushed_id"][n])
        gtm = d["masks"][n, : Tv * s : s]
        true_c = d["centroids_px"][n, : Tv * s : s, :k]  # (Tv, k, 2)
        moved = np.linalg.norm(true_c[-1] - true_c[0], axis=-1) > MOVE_PX
        pred_c = centroids_from_masks(masks[j, :, :k])  # (Tv, k, 2)
        for t in range(1, Tv):
            for o in range(k):
                v = mask_iou(masks[j, t, o], gtm[t] == o + 1)
                if not np.isnan(v):
                    iou_all.append(v)
                    if moved[o]:
                        iou_mov.append(v)

        def err(o: int) -> float:
            c = pred_c[-1, o]
            if not np.all(np.isfinite(c)):
                lost.append(1.0)
                return float(W) * mm_per_px
            lost.append(0.0)
            return float(np.linalg.norm(c - true_c[-1, o])) * mm_per_px

        if p:
            pushed.append(err(p - 1))
        tl_true, tl_pred = [], []
        for o in range(k):
            if moved[o]:
                tl_true.append(true_c[:, o])
                tl_pred.append(np.nan_to_num(pred_c[:, o], nan=0.0) if np.all(np.isfinite(pred_c[:, o])) else np.repeat(true_c[:1, o], Tv, 0))
            if o + 1 != p and moved[o] and d["collided"][n]:
                hit.append(err(o))
                c = pred_c[-1, o]
                hit_dir.append(bool(np.all(np.isfinite(c))) and direction_correct(c - true_c[0, o], true_c[-1, o] - true_c[0, o]))
        if tl_true:
            mf.append(motion_fidelity(tl_true, tl_pred))
    m = lambda x: float(np.mean(x)) if x else None  # noqa: E731
    return {"psnr": m(ps), "ssim": m(ss), "moving_mask_iou": m(iou_mov), "mask_iou": m(iou_all), "pushed_err_mm": m(pushed),
            "hit_err_mm": m(hit), "hit_direction_acc": m(hit_dir), "motion_fidelity": m(mf), "lost_object_rate": m(lost),
            "n": len(ps), "n_hit": len(hit)}


def track_row(d: dict, idx: np.ndarray, tracks: np.ndarray, s: int, Tv: int, mm_per_px: float) -> dict:
    """The track model's own errors (``tracks (N, K, T, 2)`` px at 64x64) at the video's last frame."""
    pushed, hit, hit_dir = [], [], []
    for j, n in enumerate(idx):
        k, p = int(d["num_objects"][n]), int(d["pushed_id"][n])
        tc = d["centroids_px"][n, (Tv - 1) * s, :k]
        c0 = d["centroids_px"][n, 0, :k]
        pc = tracks[j, :k, (Tv - 1) * s]
        if p:
            pushed.append(float(np.linalg.norm(pc[p - 1] - tc[p - 1])) * mm_per_px)
        for o in range(k):
            if o + 1 != p and np.linalg.norm(tc[o] - c0[o]) > MOVE_PX and d["collided"][n]:
                hit.append(float(np.linalg.norm(pc[o] - tc[o])) * mm_per_px)
                hit_dir.append(direction_correct(pc[o] - c0[o], tc[o] - c0[o]))
    m = lambda x: float(np.mean(x)) if x else None  # noqa: E731
    return {"pushed_err_mm": m(pushed), "hit_err_mm": m(hit), "hit_direction_acc": m(hit_dir), "n_hit": len(hit)}


CONST_VEL = "constant-velocity draft (first-frame V extrapolated, no model)"
PUSHED = "pushed-layout draft (push_prior alone: carried by the pusher, no model)"


def layout_rows(d: dict, idx: np.ndarray, cfg, s: int, mm_per_px: float, rows: dict, gif: dict | None = None) -> None:
    """Two baselines without a model, composed like the track draft (nobody is hit in either):
    every object's first-frame pixels moved at its first-frame velocity (``CONST_VEL``), and the
    layout of :func:`~kinemask_ros.world_model.latent.pushed_displacement` (``PUSHED``)."""
    from kinemask_ros.world_model.draft import draft_video, first_frame_velocity_mask, split_draft
    from kinemask_ros.world_model.latent import pushed_displacement

    K, T, Tv = cfg.max_objects, cfg.num_frames, cfg.video_frames
    out = {CONST_VEL: ([], []), PUSHED: ([], [])}
    for b in range(0, len(idx), 16):
        inp = inputs(d, idx[b : b + 16], K, T)
        slots = slot_masks(inp["instance_mask"], K)
        t = torch.arange(Tv, dtype=torch.float32) * s
        v0 = first_frame_velocity_mask(slots, inp["velocities"], cfg.v_max)  # as the pipeline builds it
        pushed = pushed_displacement(slots, v0, inp["driver"][:, ::s]).transpose(1, 2)  # (B, K, F, 2)
        for label, disp in ((CONST_VEL, inp["velocities"][:, :, None] * t[None, None, :, None]),
                            (PUSHED, torch.cat([torch.zeros_like(pushed[:, :, :1]), pushed], 2))):
            rgb, masks = split_draft(draft_video(inp["image"] * 2 - 1, slots, disp))
            out[label][0].append(rgb.numpy())
            out[label][1].append(masks.numpy())
    for label, (frs, mks) in out.items():
        frs, mks = np.concatenate(frs), np.concatenate(mks)
        rows[label] = score(d, idx, frs, mks, s, mm_per_px)
        if gif is not None and label == PUSHED:
            gif[label] = frs


def video_rows(d: dict, idx: np.ndarray, runs: list, track, a, s: int, mm_per_px: float, rows: dict, gif: dict | None = None,
               progress: bool = True) -> None:
    """Run each ``(label, model, mode, steps)`` of ``runs`` on episodes ``idx`` of ``d``; scores into ``rows[label]``
    (and the videos into ``gif[label]``)."""
    from tqdm import tqdm

    K, T = runs[0][1].config.max_objects, runs[0][1].config.num_frames
    for label, mdl, mode, steps in runs:
        pipe = LatentVideoPipeline(mdl, track_pipeline=track)
        g = torch.Generator().manual_seed(0)
        frs, mks = [], []
        tv = time.perf_counter()
        for b in tqdm(range(0, len(idx), 16), desc=label[:40], unit="batch", disable=not progress):
            o = pipe(**inputs(d, idx[b : b + 16], K, T), video_mode=mode, num_inference_steps=steps, strength=a.strength, generator=g)
            frs.append(o.frames.numpy())
            mks.append(o.object_masks.numpy())
        dt = (time.perf_counter() - tv) / len(idx)
        frs, mks = np.concatenate(frs), np.concatenate(mks)
        rows[label] = {**score(d, idx, frs, mks, s, mm_per_px), "s_per_video": dt}
        if gif is not None:
            gif[label] = frs


def hard_scene_data(category: str, n: int, size: int, max_objects: int) -> tuple[dict | None, int]:
    """``n`` verified hard scenes of ``category`` rendered at ``size`` px, packed like a dataset; scenes
    with more than ``max_objects`` objects are skipped (counted in the second value)."""
    from kinemask_ros.sim_bridge.dataset import pack_episodes
    from kinemask_ros.sim_bridge.hard_scenes import HARD_SCENE_CONFIG, sample_hard_scene, simulate
    from kinemask_ros.sim_bridge.scene import TabletopScene

    cfg = replace(HARD_SCENE_CONFIG, camera=replace(HARD_SCENE_CONFIG.camera, width=size, height=size))
    sim = TabletopScene(cfg)
    eps, skipped = [], 0
    try:
        for i in range(n):
            seed = HARD_SEED + 1000 * list(HARD_CATEGORIES).index(category) + i
            hs = sample_hard_scene(category, np.random.default_rng(seed), cfg, sim=sim)
            if len(hs.specs) > max_objects:
                skipped += 1
                continue
            eps.append((seed, 0, simulate(hs, sim, render=True)))
    finally:
        sim.close()
    return (pack_episodes(eps, replace(cfg, max_objects=max_objects)) if eps else None), skipped


def hard_scene_rows(runs: list, track, a, cfg, mm_per_px: float) -> dict:
    """Per hard-scene category (DESIGN section 5; the in-bounds ones a K-slot model can hold): the video
    rows of ``runs`` plus copy-first-frame and the two layout drafts."""
    from tqdm import tqdm

    out = {}
    s = cfg.video_frame_stride
    for cat in tqdm(HARD_CATEGORIES, desc="hard scenes", unit="category"):
        d, skipped = hard_scene_data(cat, a.hard_per_category, cfg.height, cfg.max_objects)
        entry = {"skipped_more_objects_than_slots": skipped, "rows": {}}
        if d is not None:
            idx = np.arange(len(d["frames"]))
            Tv, K = cfg.video_frames, cfg.max_objects
            first = d["frames"][:, :1].transpose(0, 1, 4, 2, 3) / 255.0
            first_masks = slot_masks(torch.from_numpy(d["masks"][:, :1].astype(np.int64)), K).numpy() > 0
            entry["rows"]["copy-first-frame"] = score(d, idx, np.repeat(first, Tv, 1), np.repeat(first_masks, Tv, 1), s, mm_per_px)
            layout_rows(d, idx, cfg, s, mm_per_px, entry["rows"])
            video_rows(d, idx, runs, track, a, s, mm_per_px, entry["rows"], progress=False)
            entry["n"] = int(len(idx))
        out[cat] = entry
    return out


@torch.no_grad()
def autoencoder_rows(model: LatentVideoModel, d: dict, idx: np.ndarray, s: int, looks: dict | None) -> dict:
    """Reconstruction PSNR / SSIM / object-mask IoU of the autoencoder on the true videos (and on randomised looks)."""
    K, Tv = model.config.max_objects, model.config.video_frames

    def rec(frames_u8: np.ndarray, ids: np.ndarray) -> dict:
        x = torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float() / 255
        m = slot_masks(torch.from_numpy(ids.astype(np.int64)), K)
        ps, ss, ious = [], [], []
        for b in range(0, len(x), 128):
            rgb, logits = model.decode(model.encode(x[b : b + 128], m[b : b + 128]))
            masks = decode_masks(logits).numpy()
            for j in range(len(rgb)):
                ps.append(psnr(rgb[j].numpy(), x[b + j].numpy()))
                ss.append(ssim(rgb[j].numpy(), x[b + j].numpy()))
                for o in range(K):
                    v = mask_iou(masks[j, o], m[b + j, o].numpy() > 0)
                    if not np.isnan(v):
                        ious.append(v)
        return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "object_mask_iou": float(np.mean(ious)), "frames": len(ps)}

    out = {"canonical look (held-out episodes)": rec(d["frames"][idx, : Tv * s : s].reshape(-1, *d["frames"].shape[2:]),
                                                     d["masks"][idx, : Tv * s : s].reshape(-1, *d["masks"].shape[2:]))}
    if looks is not None:
        out["randomised looks (held-out seeds)"] = rec(looks["frames"][:, : Tv * s : s].reshape(-1, *looks["frames"].shape[2:]),
                                                       looks["masks"][:, : Tv * s : s].reshape(-1, *looks["masks"].shape[2:]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="directory with vae/, latent_video/ and latent_video_stage1/ (or stage1/); default: embedded")
    p.add_argument("--track-checkpoint", default=None, help="raster track model for draft/refine (default: the embedded checkpoint)")
    p.add_argument("--eval-data", default="data/latent64_eval", help="held-out 64x64 dataset (generated if missing)")
    p.add_argument("--episodes", type=int, default=160)
    p.add_argument("--video-episodes", type=int, default=48)
    p.add_argument("--look-episodes", type=int, default=24, help="held-out randomised-look episodes for the autoencoder row (0 = none)")
    p.add_argument("--steps", type=int, default=8, help="latent sampler steps (generate)")
    p.add_argument("--refine-steps", type=int, default=4)
    p.add_argument("--strength", type=float, default=0.3)
    p.add_argument("--hard-per-category", type=int, default=8, help="hard scenes per category (0 = none)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(a.checkpoint) if a.checkpoint else EMBEDDED_CHECKPOINT
    model = LatentVideoModel.from_pretrained(root)
    if (root / "latent_video_stage1").exists():
        model1 = LatentVideoModel.from_pretrained(root, denoiser_subfolder="latent_video_stage1")
    elif (root / "stage1" / "latent_video").exists():
        model1 = LatentVideoModel.from_pretrained(root / "stage1")
    else:
        model1 = None
    cfg = model.config
    track = KineMaskPipeline.from_pretrained(a.track_checkpoint, load_video=False, load_objects=False, load_latent_video=False)
    d = ensure_eval_data(Path(a.eval_data), a.episodes, cfg.height)
    looks = None
    if a.look_episodes:
        from kinemask_ros.world_model.latent import write_look_frames

        lp = Path(a.eval_data) / f"looks_{a.look_episodes}.npz"
        if not lp.exists():
            write_look_frames(lp, a.look_episodes, seed=EVAL_SEED_OFFSET, height=cfg.height, width=cfg.width, held_out=True)
        looks = dict(np.load(lp))
    from kinemask_ros.camera import CameraConfig, CameraModel

    mm_per_px = 1000.0 / CameraModel(CameraConfig(width=cfg.width, height=cfg.height)).pixels_per_metre(0.015)
    K, T, s, Tv = cfg.max_objects, cfg.num_frames, cfg.video_frame_stride, cfg.video_frames
    free = np.where(~d["collided"] & (d["pushed_id"] > 0))[0]
    coll = np.where(d["collided"])[0]
    rng = np.random.default_rng(0)
    n2 = a.video_episodes // 2
    idx = np.sort(np.concatenate([rng.choice(coll, min(len(coll), n2), replace=False),
                                  rng.choice(free, min(len(free), a.video_episodes - n2), replace=False)]))
    t0 = time.perf_counter()
    result = {"machine": machine(), "checkpoint": str(a.checkpoint or "embedded"), "eval_data": a.eval_data, "mm_per_px": mm_per_px,
              "episodes": int(len(idx)), "collision_episodes": int(np.isin(idx, coll).sum()), "resolution": [cfg.height, cfg.width],
              "latent": [cfg.latent_channels, cfg.latent_height, cfg.latent_width], "video_frames": Tv, "stride": s,
              "steps": a.steps, "autoencoder": autoencoder_rows(model, d, idx, s, looks), "video": {}, "timings": {}}
    rows, gif = result["video"], {}
    # copy-first-frame and the autoencoder ceiling
    gt_frames = d["frames"][idx, : Tv * s : s].transpose(0, 1, 4, 2, 3) / 255.0
    gt_ids = d["masks"][idx, : Tv * s : s].astype(np.int64)
    gt_masks = slot_masks(torch.from_numpy(gt_ids), K).numpy() > 0
    rows["copy-first-frame"] = score(d, idx, np.repeat(gt_frames[:, :1], Tv, 1), np.repeat(gt_masks[:, :1], Tv, 1), s, mm_per_px)
    layout_rows(d, idx, cfg, s, mm_per_px, rows)
    with torch.no_grad():
        x = torch.from_numpy(gt_frames.reshape(-1, 3, cfg.height, cfg.width)).float()
        rgb, logits = model.decode(model.encode(x, torch.from_numpy(gt_masks.reshape(-1, K, cfg.height, cfg.width)).float()))
    rows["autoencoder reconstruction of the truth (ceiling)"] = score(
        d, idx, rgb.numpy().reshape(gt_frames.shape), decode_masks(logits).numpy().reshape(gt_masks.shape), s, mm_per_px)
    # the track model's own numbers (what draft / refine move the objects by)
    g = torch.Generator().manual_seed(0)
    lp_track = LatentVideoPipeline(model, track_pipeline=track)
    inp = inputs(d, idx, K, T)
    tracks = lp_track._tracks(inp["image"], inp["instance_mask"], inp["velocities"], inp["driver"], 4, 8, g).numpy()
    result["track_model"] = track_row(d, idx, tracks, s, Tv, mm_per_px)
    runs = [("track draft, no diffusion (draft)", model, "draft", a.refine_steps),
            ("refine: draft + latent denoiser from 0.3 (refine)", model, "refine", a.refine_steps),
            ("KineMask generate, first-frame V only, stage 1+2 (generate)", model, "generate", a.steps)]
    if model1 is not None:
        runs.append(("KineMask generate, first-frame V only, stage 1 only", model1, "generate", a.steps))
    video_rows(d, idx, runs, track, a, s, mm_per_px, rows, gif)
    if a.hard_per_category:
        result["hard_scenes"] = hard_scene_rows(runs, track, a, cfg, mm_per_px)
    # top-3 previews: batch of 3, encode + sampling + decoding
    pipe = LatentVideoPipeline(model, track_pipeline=track)
    three = inputs(d, idx[:3], K, T)
    for mode, steps in (("generate", a.steps), ("refine", a.refine_steps), ("draft", a.refine_steps)):
        pipe(**three, video_mode=mode, num_inference_steps=steps)
        ts = []
        for _ in range(5):
            tq = time.perf_counter()
            pipe(**three, video_mode=mode, num_inference_steps=steps)
            ts.append(time.perf_counter() - tq)
        result["timings"][f"top-3 previews, {mode} ({steps} steps) [s, median of 5]"] = float(np.median(ts))
    result["wall_s"] = time.perf_counter() - t0
    (out / "latent_video.json").write_text(json.dumps(result, indent=1))

    def f(x, nd=2):
        return "–" if x is None else f"{x:.{nd}f}"

    lines = [f"# Latent KineMask video model ({result['machine']})", "",
             f"Checkpoint: {result['checkpoint']}. Held-out episodes: {len(idx)} at {cfg.height}x{cfg.width} "
             f"({result['collision_episodes']} with collisions; seeds >= {EVAL_SEED_OFFSET}); video = frames 0..{(Tv - 1) * s} at stride {s}; "
             f"latent {cfg.latent_channels}x{cfg.latent_height}x{cfg.latent_width}. 1 px = {mm_per_px:.2f} mm.", "",
             "Autoencoder reconstruction:", "", "| frames | PSNR [dB] | SSIM | object-mask IoU | n |", "|---|---|---|---|---|"]
    for k, r in result["autoencoder"].items():
        lines.append(f"| {k} | {f(r['psnr'])} | {f(r['ssim'], 3)} | {f(r['object_mask_iou'], 3)} | {r['frames']} |")
    lines += ["", "Video (errors from the generated masks at the last video frame; lost = the object's mask vanished, "
              "counted as a 64 px error):", "",
              "| method | PSNR [dB] | SSIM | moving-object mask IoU | mask IoU (all) | pushed err [mm] | hit err [mm] | hit direction | "
              "motion fidelity | lost | s/video |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        lines.append(f"| {k} | {f(r['psnr'])} | {f(r['ssim'], 3)} | {f(r['moving_mask_iou'], 3)} | {f(r['mask_iou'], 3)} | "
                     f"{f(r['pushed_err_mm'], 1)} | {f(r['hit_err_mm'], 1)} | {f(r['hit_direction_acc'])} | {f(r['motion_fidelity'])} | "
                     f"{f(r['lost_object_rate'])} | {f(r.get('s_per_video'), 3)} |")
    tr = result["track_model"]
    lines += ["", f"Raster track model on the same episodes (mean of 4 samples, tracks x2): pushed {f(tr['pushed_err_mm'], 1)} mm, "
              f"hit {f(tr['hit_err_mm'], 1)} mm ({tr['n_hit']} hit objects), hit direction {f(tr['hit_direction_acc'])}.", "",
              "| timing | median |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in result["timings"].items()]
    if result.get("hard_scenes"):
        short = {"copy-first-frame": "copy", CONST_VEL: "const. velocity", PUSHED: "pushed layout", "track draft, no diffusion (draft)": "draft",
                 "refine: draft + latent denoiser from 0.3 (refine)": "refine",
                 "KineMask generate, first-frame V only, stage 1+2 (generate)": "generate 1+2",
                 "KineMask generate, first-frame V only, stage 1 only": "generate 1"}
        lines += ["", f"Hard scenes (DESIGN section 5), {a.hard_per_category} per category at {cfg.height}x{cfg.width}; per method: "
                  "PSNR / moving-object mask IoU / pushed err [mm] / hit err [mm] / hit direction:", "",
                  "| category | n | " + " | ".join(short.values()) + " |", "|---|---|" + "---|" * len(short)]
        for cat, e in result["hard_scenes"].items():
            cells = []
            for k in short:
                r = e["rows"].get(k)
                cells.append("–" if r is None else f"{f(r['psnr'], 1)} / {f(r['moving_mask_iou'])} / {f(r['pushed_err_mm'], 0)} / "
                                                   f"{f(r['hit_err_mm'], 0)} / {f(r['hit_direction_acc'])}")
            skip = f" ({e['skipped_more_objects_than_slots']} skipped: > K objects)" if e["skipped_more_objects_than_slots"] else ""
            lines.append(f"| {cat}{skip} | {e.get('n', 0)} | " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    (out / "latent_video.md").write_text(md)
    print(md)
    n_show = min(6, len(idx))
    save_comparison_gif(out / "latent_video.gif", d["frames"][idx[:n_show]], gif, s, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
