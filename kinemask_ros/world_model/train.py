"""Train the world model: ``kinemask-train --data data/train --out runs/wm``.

Trains the track denoiser, then the video denoiser in KineMask's two stages (stage 1: velocity
masks on every frame; stage 2: future masks removed with ``k`` annealed to 0). Resumable: rerun the
same command and it continues from ``OUT/state_*.pt``. Writes diffusers-style checkpoints
(``OUT/track``, ``OUT/video_stage1``, ``OUT/video``), ``OUT/log.jsonl`` and ``OUT/training_curve.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kinemask_ros.velocity_mask import stage2_dropout, stage2_keep_until
from kinemask_ros.world_model.config import CONDITIONING_MODES, WorldModelConfig
from kinemask_ros.world_model.data import Augment, EpisodeTensors
from kinemask_ros.world_model.networks import TrackDenoiser, VideoDenoiser, video_cond_channels, video_condition


@dataclass(frozen=True)
class TrainConfig:
    """Training run settings (the model's own sizes live in :class:`WorldModelConfig`)."""

    data: str
    out: str
    what: str = "all"  # "track", "video" or "all"
    track_steps: int = 3000
    video_stage1_steps: int = 1500
    video_stage2_steps: int = 1500
    track_batch: int = 64
    video_batch: int = 8
    track_lr: float = 1e-3
    video_lr: float = 5e-4
    contact_weight: float = 5.0
    morph_prob: float = 0.2
    dihedral: bool = True
    ema_decay: float = 0.999
    stage2_final_fraction: float = 0.3
    ckpt_every: int = 200
    max_episodes: int | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.what not in ("track", "video", "all"):
            raise ValueError(f"TrainConfig.what must be track, video or all, got {self.what!r}")
        for name in ("track_steps", "video_stage1_steps", "video_stage2_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {v!r}")
        for name in ("track_batch", "video_batch", "ckpt_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {v!r}")
        for name in ("track_lr", "video_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"TrainConfig.{name} must be > 0, got {v!r}")
        if not (math.isfinite(self.contact_weight) and self.contact_weight >= 1.0):
            raise ValueError(f"TrainConfig.contact_weight must be >= 1, got {self.contact_weight!r}")
        if not 0.0 <= self.morph_prob <= 1.0:
            raise ValueError(f"TrainConfig.morph_prob must be in [0, 1], got {self.morph_prob!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay!r}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but no CUDA GPU is available; use --device cpu or auto")
    return dev


def flow_match_pair(x0: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rectified-flow training pair: ``(x_s, s * 1000, target = noise - x0)`` with logit-normal ``s``."""
    B = x0.shape[0]
    s = torch.sigmoid(torch.randn(B, generator=gen, device=x0.device))
    noise = torch.randn(x0.shape, generator=gen, device=x0.device)
    sv = s.view(B, *([1] * (x0.dim() - 1)))
    return (1 - sv) * x0 + sv * noise, s * 1000.0, noise - x0


class _Run:
    """One resumable optimisation run with EMA weights, periodic checkpoints and a loss log."""

    def __init__(self, name: str, model: torch.nn.Module, lr: float, total: int, tc: TrainConfig, device: torch.device):
        self.name, self.model, self.total, self.tc, self.device = name, model.to(device), total, tc, device
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total))))))
        self.step = 0
        self.losses: list[float] = []
        self.rng = np.random.default_rng([tc.seed, zlib.crc32(name.encode())])
        self.gen = torch.Generator(device=device).manual_seed(tc.seed)
        self.path = Path(tc.out) / f"state_{name}.pt"
        if self.path.exists():
            st = torch.load(self.path, map_location=device, weights_only=False)
            model.load_state_dict(st["model"])
            self.ema = st["ema"]
            self.opt.load_state_dict(st["opt"])
            self.sched.load_state_dict(st["sched"])
            self.step, self.losses = st["step"], st["losses"]
            self.rng.bit_generator.state = st["rng"]
            self.gen.set_state(st["gen"].cpu() if device.type == "cpu" else st["gen"])

    def update(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.step += 1
        d = min(self.tc.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    self.ema[k].copy_(v)
        self.losses.append(loss.item())

    def save_state(self) -> None:
        st = {"model": self.model.state_dict(), "ema": self.ema, "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
              "step": self.step, "losses": self.losses, "rng": self.rng.bit_generator.state, "gen": self.gen.get_state()}
        tmp = self.path.with_suffix(".tmp")
        torch.save(st, tmp)
        os.replace(tmp, self.path)

    def export(self, directory: Path) -> None:
        """Save the EMA weights as a diffusers checkpoint directory."""
        live = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        self.model.save_pretrained(directory)
        self.model.load_state_dict(live)


def _log(tc: TrainConfig, rec: dict) -> None:
    with open(Path(tc.out) / "log.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def plot_curves(out: str | Path) -> Path | None:
    """``training_curve.png`` from every ``state_*.pt`` loss history in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    states = sorted(out.glob("state_*.pt"))
    if not states:
        return None
    fig, axes = plt.subplots(1, len(states), figsize=(5 * len(states), 3.5), squeeze=False)
    for ax, p in zip(axes[0], states):
        losses = np.asarray(torch.load(p, map_location="cpu", weights_only=False)["losses"])
        if len(losses):
            k = max(1, len(losses) // 50)
            smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
            ax.plot(losses, alpha=0.25, lw=0.5)
            ax.plot(np.arange(len(smooth)) + k - 1, smooth, lw=1.5)
        ax.set_title(p.stem.replace("state_", "") + " loss")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    fig.tight_layout()
    path = out / "training_curve.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def train_track(tc: TrainConfig, mc: WorldModelConfig, data: EpisodeTensors, device: torch.device) -> None:
    from tqdm import tqdm

    model = TrackDenoiser(height=mc.height, width=mc.width, num_frames=mc.num_frames, max_objects=mc.max_objects,
                          conditioning=mc.conditioning, text_dim=mc.text_dim, dim=mc.track_dim, layers=mc.track_layers)
    run = _Run("track", model, tc.track_lr, tc.track_steps, tc, device)
    aug = Augment(dihedral=tc.dihedral, morph_prob=tc.morph_prob)
    bar = tqdm(total=tc.track_steps, initial=run.step, desc="track", unit="step")
    while run.step < tc.track_steps:
        b = data.batch(run.rng.integers(data.n, size=tc.track_batch), run.rng, aug, with_video=False)
        b = {k: v.to(device) for k, v in b.items()}
        cond = model.encode(b["image"], b["cond_slot_masks"], b["velocity0"], b["driver"][:, :, 0], b.get("text"))
        x_s, t, target = flow_match_pair(b["tracks"] / mc.track_scale, run.gen)
        pred = model(x_s, t, cond)
        w = b["present"][:, :, None, None]
        loss = ((pred - target) ** 2 * w).sum() / (w.sum() * target.shape[2] * 2).clamp_min(1)
        run.update(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(run.losses[-50:]):.4f}")
        if run.step % tc.ckpt_every == 0 or run.step == tc.track_steps:
            run.save_state()
            run.export(Path(tc.out) / "track")
            _log(tc, {"run": "track", "step": run.step, "loss": float(np.mean(run.losses[-tc.ckpt_every:])), "time": time.time()})
            plot_curves(tc.out)
    bar.close()


def video_batch_tensors(b: dict, mc: WorldModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Subsample frames by the video stride: ``x0 (B, 3+K, Tv, H, W)``, velocity ``(B, Tv, 3, H, W)``, driver."""
    s = mc.video_frame_stride
    frames = b["frames"][:, ::s]
    masks = b["slot_masks"][:, ::s] * 2 - 1
    x0 = torch.cat([frames, masks], 2).transpose(1, 2).contiguous()
    vel = b["velocity"][:, ::s] if mc.uses_velocity else None
    drv = b["driver"][:, ::s] if mc.uses_driver else None
    return x0, vel, drv


def train_video(tc: TrainConfig, mc: WorldModelConfig, data: EpisodeTensors, device: torch.device) -> None:
    from tqdm import tqdm

    model = VideoDenoiser(max_objects=mc.max_objects, cond_channels=video_cond_channels(mc.max_objects, mc.conditioning),
                          channels=tuple(mc.video_channels), text_dim=mc.text_dim)
    total = tc.video_stage1_steps + tc.video_stage2_steps
    run = _Run("video", model, tc.video_lr, total, tc, device)
    aug = Augment(dihedral=tc.dihedral, morph_prob=tc.morph_prob)
    Tv = mc.video_frames
    bar = tqdm(total=total, initial=run.step, desc="video", unit="step")
    while run.step < total:
        b = data.batch(run.rng.integers(data.n, size=tc.video_batch), run.rng, aug)
        b = {k: v.to(device) for k, v in b.items()}
        x0, vel, drv = video_batch_tensors(b, mc)
        stage2 = run.step >= tc.video_stage1_steps
        if stage2 and vel is not None:
            k_max = stage2_keep_until(run.step - tc.video_stage1_steps, tc.video_stage2_steps, Tv, tc.stage2_final_fraction)
            ks = run.rng.integers(0, k_max + 1, size=vel.shape[0])
            vel = torch.stack([stage2_dropout(vel[i], int(k)) for i, k in enumerate(ks)])
        cond = video_condition(b["image"], b["cond_slot_masks"], vel, drv, Tv)
        x_s, t, target = flow_match_pair(x0, run.gen)
        pred = model(x_s, t, cond, b.get("text"))
        w = 1.0 + (tc.contact_weight - 1.0) * b["moving"][:, ::mc.video_frame_stride][:, None]
        loss = ((pred - target) ** 2 * w).mean() / w.mean()
        run.update(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(run.losses[-50:]):.4f}", stage=2 if stage2 else 1)
        if run.step == tc.video_stage1_steps:
            run.export(Path(tc.out) / "video_stage1")
        if run.step % tc.ckpt_every == 0 or run.step == total:
            run.save_state()
            run.export(Path(tc.out) / ("video" if stage2 or tc.video_stage2_steps == 0 else "video_stage1"))
            _log(tc, {"run": "video", "step": run.step, "stage": 2 if stage2 else 1,
                      "loss": float(np.mean(run.losses[-tc.ckpt_every:])), "time": time.time()})
            plot_curves(tc.out)
    bar.close()


def train(tc: TrainConfig, mc: WorldModelConfig) -> Path:
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "world_model_config.json"
    if cfg_path.exists():
        old = WorldModelConfig.load(cfg_path)
        if old != mc:
            raise ValueError(f"{out} was trained with another model config ({cfg_path}); use a new --out or the same settings")
    mc.save(cfg_path)
    (out / "train_config.json").write_text(json.dumps(asdict(tc), indent=1))
    device = resolve_device(tc.device)
    torch.manual_seed(tc.seed)
    data = EpisodeTensors.from_dir(tc.data, mc, max_episodes=tc.max_episodes)
    if mc.text_dim:
        from kinemask_ros.world_model.text_encoder import TEXT_DIM, TextEncoder

        if mc.text_dim != TEXT_DIM:
            raise ValueError(f"text_dim must be {TEXT_DIM} (all-MiniLM-L6-v2) or 0, got {mc.text_dim}")
        data.attach_text_embeddings(TextEncoder(), out / "text_embeddings.npy")
    print(f"training on {data.n} episodes from {tc.data} on {device}", flush=True)
    if tc.what in ("track", "all") and tc.track_steps:
        train_track(tc, mc, data, device)
    if tc.what in ("video", "all") and (tc.video_stage1_steps + tc.video_stage2_steps):
        train_video(tc, mc, data, device)
    for sub in ("track", "video", "video_stage1"):
        if (out / sub).exists():
            mc.save(out / sub / "world_model_config.json")
    plot_curves(out)
    return out


def main(argv: list[str] | None = None) -> int:
    d = TrainConfig(data="", out="")
    m = WorldModelConfig()
    p = argparse.ArgumentParser(prog="kinemask-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="dataset directory from kinemask-generate")
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    p.add_argument("--what", default=d.what, choices=["track", "video", "all"])
    p.add_argument("--track-steps", type=int, default=d.track_steps)
    p.add_argument("--video-stage1-steps", type=int, default=d.video_stage1_steps)
    p.add_argument("--video-stage2-steps", type=int, default=d.video_stage2_steps)
    p.add_argument("--track-batch", type=int, default=d.track_batch)
    p.add_argument("--video-batch", type=int, default=d.video_batch)
    p.add_argument("--contact-weight", type=float, default=d.contact_weight, help="Mask2IV loss weight on moving-object pixels")
    p.add_argument("--morph-prob", type=float, default=d.morph_prob, help="Mask2IV random dilate/erode probability")
    p.add_argument("--no-dihedral", action="store_true", help="no flip/rotate augmentation")
    p.add_argument("--conditioning", default=m.conditioning, choices=CONDITIONING_MODES)
    p.add_argument("--text", action="store_true", help="condition on the episode descriptions (all-MiniLM-L6-v2 embeddings)")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--max-episodes", type=int, default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        tc = TrainConfig(data=a.data, out=a.out, what=a.what, track_steps=a.track_steps, video_stage1_steps=a.video_stage1_steps,
                         video_stage2_steps=a.video_stage2_steps, track_batch=a.track_batch, video_batch=a.video_batch,
                         contact_weight=a.contact_weight, morph_prob=a.morph_prob, dihedral=not a.no_dihedral,
                         ckpt_every=a.ckpt_every, max_episodes=a.max_episodes, seed=a.seed, device=a.device)
        mc = replace(m, conditioning=a.conditioning, text_dim=384 if a.text else 0)
        out = train(tc, mc)
    except (ValueError, FileNotFoundError) as e:
        print(f"kinemask-train: error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoints in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
