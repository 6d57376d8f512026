"""The flagship demo: imagine, rank and execute pushes in the simulated scene.

    python -m kinemask_ros.demo            # or: bash scripts/demo.sh

For each decision: render the camera image -> segment it (embedded classical segmenter) -> pick
the target under its pixel -> sample candidate pushes -> imagine every candidate with the
embedded world model (tracks) and the top-k as video -> rank by the cost terms -> execute the
best push in the simulator -> compare. Writes ``OUT/report.html`` with GIFs of the imagined top-k
beside the real outcome, the cost terms, and a plot of the candidates coloured by cost.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kinemask_ros.viz import grid, save_gif, save_png, upscale


def _segment(image: np.ndarray, true_ids: np.ndarray, target_true: int):
    """Segment ``image`` and find the target by its pixel (the user's click in a real set-up)."""
    from kinemask_ros.camera import mask_centroid
    from kinemask_ros.segmentation.classical import ClassicalSegmenter
    from kinemask_ros.segmentation.targets import select_by_point

    seg = ClassicalSegmenter().segment(image)
    click = mask_centroid(true_ids == target_true)
    target = select_by_point(seg, click, nearest=True)
    return seg, target


def candidate_plot(path: Path, image: np.ndarray, plan, target_id: int, goal_px: np.ndarray, camera, top_k: int) -> Path:
    """First frame with every candidate's stroke as an arrow coloured by cost, and imagined end points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kinemask_ros.candidates import CandidateConfig

    H, W = image.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    ax = axes[0]
    ax.imshow(image, extent=(0, W, H, 0))
    costs = plan.scores.total
    valid = plan.scores.valid
    lo, hi = np.nanpercentile(costs[valid], [2, 98]) if valid.any() else (0, 1)
    cmap = plt.get_cmap("viridis_r")
    z = 0.5 * CandidateConfig().object_height
    for i in plan.order[::-1]:
        s = plan.strokes[i]
        a, b = camera.project_table(s.start, z), camera.project_table(s.end, z)
        c = cmap(np.clip((costs[i] - lo) / max(hi - lo, 1e-9), 0, 1)) if valid[i] else (1, 0, 0, 0.3)
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color=c, lw=0.8, alpha=0.7))
    for rank, i in enumerate(plan.top(top_k)):
        end = np.nanmean(plan.imagined.tracks[i, :, target_id - 1, -1], 0)
        ax.plot(*end, "o", ms=7, mfc="none", mec="white", mew=1.5)
        ax.text(end[0] + 0.4, end[1] - 0.4, str(rank + 1), color="white", fontsize=9, weight="bold")
    ax.plot(*goal_px, "*", ms=14, color="gold", mec="black")
    ax.set_title("candidate pushes (colour = cost)\n★ goal, ○ imagined end of the top-k target", fontsize=10)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    fig.colorbar(sm, ax=ax, fraction=0.046, label="cost (lower is better)")
    ax = axes[1]
    order = plan.order[valid[plan.order]]
    names = list(plan.scores.terms)
    bottom = np.zeros(min(len(order), 20))
    from kinemask_ros.scoring import ScoreConfig

    weights = ScoreConfig().weights
    for n in names:
        vals = np.array([plan.scores.terms[n][i] * weights.get(n, 0) for i in order[:20]])
        ax.bar(np.arange(len(vals)) + 1, vals, bottom=bottom, label=n)
        bottom += vals
    ax.set_xlabel("rank")
    ax.set_ylabel("weighted cost term")
    ax.set_title("cost terms of the 20 best candidates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _relabel(ids: np.ndarray, id_map: dict[int, int]) -> np.ndarray:
    """Segmentation ids -> the planner's slots (``id_map``: slot -> id); ids without a slot become background."""
    out = np.zeros(ids.shape, np.uint8)
    for slot, oid in id_map.items():
        out[ids == oid] = slot
    return out


def _label_tile(tile: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(tile)
    canvas = Image.new("RGB", (im.width, im.height + 14), (255, 255, 255))
    canvas.paste(im, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def run(args) -> dict:
    import gymnasium as gym

    import kinemask_ros  # noqa: F401  (registers the envs)
    from kinemask_ros.camera import CameraModel
    from kinemask_ros.envs.scenarios import blocked_scene_options
    from kinemask_ros.planning import PlannerConfig, PushPlanner
    from kinemask_ros.world_model.pipeline import KineMaskPipeline

    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    print(f"loading the world model ({args.checkpoint or 'embedded checkpoint'}) ...", flush=True)
    pipe = KineMaskPipeline.from_pretrained(args.checkpoint, device=args.device)
    env = gym.make("KineMaskPush-v0")
    options = blocked_scene_options(env, args.seed) if args.scene == "blocked" else None
    obs, info = env.reset(seed=args.seed, options=options)
    u = env.unwrapped
    camera = CameraModel(u.scene.camera.config)
    planner = PushPlanner(camera, PlannerConfig(method=args.planner, seed=args.seed), pipe)
    scale = 8
    steps = []
    warm = None
    for step in range(args.pushes):
        image = obs["image"]
        seg, target = _segment(image, obs["instance_mask"], int(obs["target"]))
        if target == 0:
            raise RuntimeError("the segmenter found no object under the target's pixel")
        goal = planner.goal_from_table(obs["goal"])
        d0 = float(u.goal_distance())
        plan = planner.plan(image, seg.instance_ids, target, goal, warm_start=warm)
        if not plan.valid:
            print(f"step {step}: {plan.message}")
            break
        warm = plan.params[plan.order[0]]
        top = plan.top(args.top_k)
        # imagine the top-k as pictures (the planner scored tracks only): the video model, or with an
        # object model the SE(2) warp of the very pose tracks that were scored (pusher path drawn)
        from kinemask_ros.imagination import rollout_frames

        mask = seg.instance_ids if plan.id_map is None else _relabel(seg.instance_ids, plan.id_map)
        t_vid = time.perf_counter()
        rf = rollout_frames(pipe, planner.contact, image, mask, [plan.strokes[i] for i in top], plan.imagined.tracks[top, 0],
                            generator=torch.Generator().manual_seed(args.seed),
                            poses=None if plan.imagined.poses is None else plan.imagined.poses[top, 0], draw_paths=True)
        t_vid = time.perf_counter() - t_vid
        best = plan.best_stroke
        obs, reward, term, trunc, info = env.step(u.stroke_to_action(best))
        real = u.last_episode
        d1 = float(u.goal_distance())
        # pictures
        sdir = out / f"push_{step + 1}"
        sdir.mkdir(exist_ok=True)
        tiles_t = []
        s_v = pipe.config.video_frame_stride
        Tv = rf.frames.shape[1]
        goal_px = goal.point_px
        for t in range(Tv):
            row = [_label_tile(upscale(real.frames[min(t * s_v, len(real.frames) - 1)], scale), "simulator (real)")]
            for r, i in enumerate(top):
                row.append(_label_tile(upscale(rf.frames[r, t], scale), f"imagined #{r + 1} c={plan.scores.total[i]:.3f}"))
            tiles_t.append(grid(row, cols=len(row)))
        gif = save_gif(sdir / "imagined_vs_real.gif", tiles_t, fps=4)
        save_png(sdir / "imagined_vs_real_last.png", tiles_t[-1])
        plot = candidate_plot(sdir / "candidates.png", image, plan, target, goal_px, camera, args.top_k)
        rows = []
        for r, i in enumerate(plan.order[: args.top_k * 2]):
            s = plan.strokes[i]
            rows.append({"rank": r + 1, "cost": float(plan.scores.total[i]),
                         **{k: float(v[i]) for k, v in plan.scores.terms.items()},
                         "stroke": {"x": s.x, "y": s.y, "theta": s.theta, "length": s.length, "speed": s.speed},
                         "contact_object": int(plan.imagined.target_ids[i])})
        steps.append({"step": step + 1, "target": target, "segmented_objects": int(seg.num_objects),
                      "candidates": len(plan.strokes), "decision_latency_s": plan.latency_s, "video_s": t_vid,
                      "goal_distance_before_m": d0, "goal_distance_after_m": d1,
                      "imagined_goal_distance_m": float(plan.scores.terms["goal_distance"][plan.order[0]]),
                      "real_description": real.describe(), "success": bool(info["is_success"]), "top": rows,
                      "gif": str(gif.relative_to(out)), "plot": str(plot.relative_to(out))})
        print(f"push {step + 1}: {len(plan.strokes)} candidates ranked in {plan.latency_s:.2f} s "
              f"(+{t_vid:.2f} s video for top {len(top)}); imagined goal distance "
              f"{steps[-1]['imagined_goal_distance_m'] * 100:.1f} cm, real {d0 * 100:.1f} -> {d1 * 100:.1f} cm; "
              f"{real.describe()}", flush=True)
        if term or trunc:
            break
    env.close()
    result = {"seed": args.seed, "scene": args.scene, "planner": args.planner, "success": bool(steps and steps[-1]["success"]),
              "steps": steps, "wall_s": time.perf_counter() - t_start, "checkpoint": str(args.checkpoint or "embedded")}
    (out / "report.json").write_text(json.dumps(result, indent=1))
    write_html(out / "report.html", result)
    return result


def write_html(path: Path, result: dict) -> None:
    parts = ["<html><head><meta charset='utf-8'><title>kinemask_ros demo</title>"
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}img{image-rendering:pixelated}</style></head><body>",
             f"<h1>kinemask_ros: imagined pushes vs reality</h1><p>seed {result['seed']}, scene <b>{html.escape(result['scene'])}</b>, "
             f"planner {html.escape(result['planner'])}, world model: {html.escape(result['checkpoint'])}. "
             f"Outcome: <b>{'success' if result['success'] else 'not reached'}</b> in {len(result['steps'])} push(es), {result['wall_s']:.1f} s.</p>"]
    for s in result["steps"]:
        parts.append(f"<h2>Push {s['step']}</h2><p>{s['candidates']} candidates ranked in {s['decision_latency_s']:.2f} s; "
                     f"target object {s['target']} of {s['segmented_objects']} segmented. Goal distance {s['goal_distance_before_m'] * 100:.1f} cm → "
                     f"imagined {s['imagined_goal_distance_m'] * 100:.1f} cm, real {s['goal_distance_after_m'] * 100:.1f} cm. "
                     f"What happened: <i>{html.escape(s['real_description'])}</i></p>")
        parts.append(f"<p><img src='{s['gif']}'><br><small>left: simulator; then the top imagined rollouts (KineMask video model, "
                     "first-frame velocity mask + driver mask)</small></p>")
        parts.append(f"<p><img src='{s['plot']}' width='900'></p>")
        keys = [k for k in s["top"][0] if k not in ("stroke",)] if s["top"] else []
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "<th>stroke (x, y, θ, d, s)</th></tr>")
        for r in s["top"]:
            st = r["stroke"]
            cells = "".join(f"<td>{r[k]:.4f}</td>" if isinstance(r[k], float) else f"<td>{r[k]}</td>" for k in keys)
            parts.append(f"<tr>{cells}<td>{st['x']:.3f}, {st['y']:.3f}, {st['theta']:.2f}, {st['length']:.3f}, {st['speed']:.2f}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kinemask-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=3, help="scene seed")
    p.add_argument("--scene", choices=["blocked", "random"], default="blocked",
                   help="blocked: another object sits in the straight path to the goal")
    p.add_argument("--planner", choices=["cem", "mppi", "random"], default="cem")
    p.add_argument("--pushes", type=int, default=5, help="maximum pushes (MPC steps)")
    p.add_argument("--top-k", type=int, default=3, help="candidates imagined as video")
    p.add_argument("--checkpoint", default=None, help="world-model directory (default: the embedded one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="out/demo")
    a = p.parse_args(argv)
    try:
        res = run(a)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"kinemask-demo: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {Path(a.out) / 'report.html'} ({'success' if res['success'] else 'goal not reached'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
