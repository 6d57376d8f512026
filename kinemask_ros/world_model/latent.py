"""Latent KineMask video model: a small autoencoder + a video denoiser in its latent (issue #12).

KineMask generates videos in a VAE latent (CogVideoX). Here the same recipe, sized for the CPU:

* :func:`build_autoencoder` - a diffusers :class:`~diffusers.AutoencoderKL` configured small,
  trained on simulator frames at 64x64. It encodes RGB **and** the K object-mask channels
  ``(3 + K, H, W)`` into ``(C, H/4, W/4)`` (default ``C = 8``, a 16x16 latent), so generated videos
  come with object masks after decoding (mask channels are logits).
* :class:`LatentVideoDenoiser` - a factorised (2+1)D conv UNet (diffusers ``ModelMixin``) on the
  latent video. It denoises the *residual* of the future frames' latents from the first frame's
  latent (most of the table does not move), conditioned by concatenation on the first frame's
  latent, its object masks, the KineMask velocity mask (frame 0 broadcast to every frame, plus
  frame ``t``'s own mask where training keeps it), the InterDyn driver mask and the pushed layout
  (``push_prior``: the objects moving in frame 0 carried by the pusher's progress,
  :func:`pushed_layout`), all pooled to latent resolution.
* :class:`LatentVideoModel` - the two together with the latent statistics, encode / decode /
  sample with shape and range checks, ``save_pretrained`` / ``from_pretrained`` (``vae/`` +
  ``latent_video/`` subfolders of a checkpoint).
* :class:`LatentVideoPipeline` - ``generate`` (KineMask proper: first-frame velocity mask only),
  ``refine`` (a track-warped draft encoded, then denoised from ``strength``) and ``draft`` (the
  draft alone), at the latent model's resolution.
* ``kinemask-train-latent`` (:func:`main`) - resumable training: autoencoder, latent cache, then the
  denoiser in KineMask's two stages (stage 1: every frame's velocity mask; stage 2: future masks
  removed down to frame 0, gradually), with a time-step distribution that trains the high-noise
  end (logit-normal shifted towards noise, mixed with uniform).

Rectified flow, SD3 convention as everywhere in this package: ``x_s = (1 - s) x_0 + s * noise``,
the network predicts ``noise - x_0``; sampled with diffusers' ``FlowMatchEulerDiscreteScheduler``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from kinemask_ros.world_model.config import CONDITIONING_MODES, VideoClipFields
from kinemask_ros.world_model.draft import draft_video, first_frame_velocity_mask, mask_centroids, split_draft, velocity_mask_from_draft
from kinemask_ros.world_model.networks import add_unet_layers, flow_match_sample, timestep_embedding, unet_forward

LATENT_VIDEO_MODES = ("generate", "refine", "draft")
LATENT_CONFIG_NAME = "latent_video_config.json"


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class LatentVideoConfig(VideoClipFields):
    """Sizes of the latent video model; saved as ``latent_video/latent_video_config.json``.

    Attributes:
        height, width: frame size [px] (>= 64 for this model; divisible by ``downscale``).
        num_frames: frames of an episode ``T``; the video is frames ``0, s, 2s, ...``.
        video_frame_stride: ``s``; ``video_frames = ceil(T / s)`` (frame 0 = the input).
        max_objects: object slots ``K`` (instance ids ``1..K``), decoded as mask channels.
        v_max: velocity-mask normalisation [px/frame at this resolution, stride 1].
        conditioning: "velocity" (KineMask), "driver" (InterDyn) or "both".
        latent_channels: ``C`` of the autoencoder latent.
        downscale: autoencoder compression per side (4 -> a 16x16 latent at 64x64).
        ae_channels: autoencoder widths per level (``log2(downscale) + 1`` levels).
        denoiser_channels: UNet widths per level of the latent denoiser.
        sample_shift: ``shift`` of the FlowMatchEulerDiscreteScheduler used for sampling.
        push_prior: add the *pushed layout* to the condition: the first-frame mask of every object
            the frame-0 velocity mask sets moving, carried along its velocity's direction by the
            pusher's progress along it (from the driver masks; quasi-static pushing), K channels per
            frame (:func:`pushed_layout`). Uses only what ``generate`` is given (the frame-0 velocity
            mask and the driver), so it stays KineMask's first-frame-only inference; the denoiser
            learns what differs from it (contact timing, sliding, rotation, and every object the
            pushed one hits - those have no frame-0 velocity, so the layout keeps them still).
            False in checkpoints made before it existed.
    """

    height: int = 64
    width: int = 64
    num_frames: int = 16
    video_frame_stride: int = 2
    max_objects: int = 4
    v_max: float = 8.0
    conditioning: str = "both"
    latent_channels: int = 8
    downscale: int = 4
    ae_channels: tuple[int, ...] = (16, 16, 32)
    denoiser_channels: tuple[int, ...] = (32, 64, 64)
    sample_shift: float = 2.0
    push_prior: bool = False

    def __post_init__(self) -> None:
        if self.downscale not in (2, 4, 8):
            raise ValueError(f"LatentVideoConfig.downscale must be 2, 4 or 8, got {self.downscale!r}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 16 or v % self.downscale:
                raise ValueError(f"LatentVideoConfig.{name} must be an int >= 16 divisible by downscale={self.downscale}, got {v!r}")
        if not isinstance(self.num_frames, int) or self.num_frames < 2:
            raise ValueError(f"LatentVideoConfig.num_frames must be an int >= 2, got {self.num_frames!r}")
        if not isinstance(self.video_frame_stride, int) or not 1 <= self.video_frame_stride < self.num_frames:
            raise ValueError(f"LatentVideoConfig.video_frame_stride must be in [1, num_frames), got {self.video_frame_stride!r}")
        if not isinstance(self.max_objects, int) or not 1 <= self.max_objects <= 8:
            raise ValueError(f"LatentVideoConfig.max_objects must be in [1, 8], got {self.max_objects!r}")
        if not (isinstance(self.v_max, (int, float)) and math.isfinite(self.v_max) and self.v_max > 0):
            raise ValueError(f"LatentVideoConfig.v_max must be > 0, got {self.v_max!r}")
        if self.conditioning not in CONDITIONING_MODES:
            raise ValueError(f"LatentVideoConfig.conditioning must be one of {CONDITIONING_MODES}, got {self.conditioning!r}")
        if not isinstance(self.latent_channels, int) or not 1 <= self.latent_channels <= 32:
            raise ValueError(f"LatentVideoConfig.latent_channels must be an int in [1, 32], got {self.latent_channels!r}")
        levels = int(round(math.log2(self.downscale))) + 1
        if len(self.ae_channels) != levels or any(not isinstance(c, int) or c < 8 or c % 8 for c in self.ae_channels):
            raise ValueError(f"LatentVideoConfig.ae_channels must be {levels} ints >= 8 divisible by 8 for downscale={self.downscale}, "
                             f"got {self.ae_channels!r}")
        if not self.denoiser_channels or any(not isinstance(c, int) or c < 8 or c % 8 for c in self.denoiser_channels):
            raise ValueError(f"LatentVideoConfig.denoiser_channels must be ints >= 8 divisible by 8, got {self.denoiser_channels!r}")
        if not (isinstance(self.sample_shift, (int, float)) and math.isfinite(self.sample_shift) and self.sample_shift > 0):
            raise ValueError(f"LatentVideoConfig.sample_shift must be > 0, got {self.sample_shift!r}")
        if not isinstance(self.push_prior, bool):
            raise ValueError(f"LatentVideoConfig.push_prior must be a bool, got {self.push_prior!r}")
        if self.push_prior and self.conditioning != "both":
            raise ValueError(f"LatentVideoConfig.push_prior needs the velocity mask and the driver: conditioning 'both', "
                             f"got {self.conditioning!r}")

    @property
    def latent_height(self) -> int:
        return self.height // self.downscale

    @property
    def latent_width(self) -> int:
        return self.width // self.downscale

    @property
    def cond_channels(self) -> int:
        return (self.latent_channels + self.max_objects + (6 if self.uses_velocity else 0) + (1 if self.uses_driver else 0)
                + (self.max_objects if self.push_prior else 0))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ae_channels"], d["denoiser_channels"] = list(self.ae_channels), list(self.denoiser_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LatentVideoConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown LatentVideoConfig fields {sorted(unknown)}: the checkpoint was made by another version")
        d = dict(d)
        for k in ("ae_channels", "denoiser_channels"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "LatentVideoConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------- networks
def build_autoencoder(cfg: LatentVideoConfig) -> AutoencoderKL:
    """A small diffusers ``AutoencoderKL``: ``(3 + K, H, W)`` in [-1, 1] <-> ``(C, H/d, W/d)``.

    Input channels: RGB in [-1, 1] then K object masks in {-1, 1}; output: RGB and K mask logits.
    No attention (the 16x16 mid block is convolutional), one ResNet per encoder level.
    """
    n = len(cfg.ae_channels)
    return AutoencoderKL(in_channels=3 + cfg.max_objects, out_channels=3 + cfg.max_objects,
                         down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                         block_out_channels=tuple(cfg.ae_channels), layers_per_block=1, latent_channels=cfg.latent_channels,
                         norm_num_groups=8, sample_size=cfg.height, mid_block_add_attention=False, force_upcast=False)


class LatentVideoDenoiser(ModelMixin, ConfigMixin):
    """Denoises the future frames' latent residual ``sample (B, C, F, h, w)``, ``F = video_frames - 1``.

    ``cond (B, C_cond, F, h, w)`` from :meth:`LatentVideoModel.condition`. The latent statistics
    (``latent_mean``/``latent_std`` per channel, ``residual_std``) live in this config so a
    checkpoint carries everything needed to interpret its samples.
    """

    @register_to_config
    def __init__(self, latent_channels: int = 8, latent_height: int = 16, latent_width: int = 16, num_frames: int = 7,
                 max_objects: int = 4, conditioning: str = "both", cond_channels: int = 19,
                 channels: tuple[int, ...] = (64, 96), emb_dim: int = 128,
                 latent_mean: tuple[float, ...] | None = None, latent_std: tuple[float, ...] | None = None,
                 residual_std: float = 1.0):
        super().__init__()
        self.emb = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        add_unet_layers(self, latent_channels + cond_channels, latent_channels, list(channels), emb_dim, mid_blocks=2)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``sample (B, C, F, h, w)``, ``timestep (B,)`` in [0, 1000], ``cond (B, C_cond, F, h, w)`` -> ``(B, C, F, h, w)``."""
        emb = self.emb(timestep_embedding(timestep, self.config.emb_dim))
        return unet_forward(self, torch.cat([sample, cond], 1), emb)


def build_denoiser(cfg: LatentVideoConfig, latent_mean=None, latent_std=None, residual_std: float = 1.0) -> LatentVideoDenoiser:
    return LatentVideoDenoiser(latent_channels=cfg.latent_channels, latent_height=cfg.latent_height, latent_width=cfg.latent_width,
                               num_frames=cfg.video_frames - 1, max_objects=cfg.max_objects, conditioning=cfg.conditioning,
                               cond_channels=cfg.cond_channels, channels=tuple(cfg.denoiser_channels),
                               latent_mean=None if latent_mean is None else [float(v) for v in latent_mean],
                               latent_std=None if latent_std is None else [float(v) for v in latent_std],
                               residual_std=float(residual_std))


# ----------------------------------------------------------------------------- conditioning helpers
def pool_to_latent(x: torch.Tensor, downscale: int) -> torch.Tensor:
    """Average-pool the last two (pixel) axes by ``downscale``: ``(..., H, W) -> (..., H/d, W/d)``."""
    lead = x.shape[:-2]
    y = F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), downscale)
    return y.reshape(*lead, *y.shape[-2:])


def carry_slots(first_slots: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """First-frame object masks translated: ``first_slots (B, K, H, W)`` in {0, 1} and
    ``displacement (B, F, K, 2)`` [px, (u, v)] -> ``(B, F, K, H, W)`` in [0, 1] (bilinear; a mask
    carried off the image vanishes, it never wraps)."""
    B, K, H, W = first_slots.shape
    Fr = displacement.shape[1]
    ys, xs = torch.meshgrid(torch.arange(H, device=first_slots.device, dtype=first_slots.dtype),
                            torch.arange(W, device=first_slots.device, dtype=first_slots.dtype), indexing="ij")
    # output pixel p samples the first frame at p - displacement (align_corners=False pixel centres)
    gx = ((xs - displacement[..., 0, None, None]) + 0.5) / W * 2 - 1  # (B, F, K, H, W)
    gy = ((ys - displacement[..., 1, None, None]) + 0.5) / H * 2 - 1
    grid = torch.stack([gx, gy], -1).reshape(-1, H, W, 2)
    src = first_slots[:, None].expand(-1, Fr, -1, -1, -1).reshape(-1, 1, H, W)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(B, Fr, K, H, W)


def pushed_displacement(first_slots: torch.Tensor, velocity0: torch.Tensor, driver: torch.Tensor) -> torch.Tensor:
    """Per-object displacement a quasi-static push predicts, from ``generate``'s inputs only.

    Every object the frame-0 velocity mask sets moving is carried along its velocity's direction
    ``d`` by the pusher's progress along ``d``: ``((p_t - p_0) . d) d`` with ``p_t`` the driver
    mask's centroid at frame ``t`` (a frame without a driver keeps the last displacement; no driver
    in frame 0: no push). Still objects stay; the objects the pushed one will hit are the model's job.

    Args:
        first_slots: ``(B, K, H, W)`` object masks in {0, 1}.
        velocity0: ``(B, 3, H, W)`` velocity mask of frame 0 (ch0/1 = velocity / v_max inside objects).
        driver: ``(B, Tv, 1, H, W)`` pusher footprint per video frame (frame 0 first).

    Returns:
        ``(B, Tv - 1, K, 2)`` [px, (u, v)] for video frames ``1..Tv-1``.
    """
    area = first_slots.sum((-2, -1))  # (B, K)
    v = torch.einsum("bkhw,bchw->bkc", first_slots, velocity0[:, :2]) / area.clamp_min(1.0)[..., None]  # (B, K, 2)
    speed = v.norm(dim=-1, keepdim=True)
    direction = torch.where(speed > 1e-3, v / speed.clamp_min(1e-6), torch.zeros_like(v))  # (B, K, 2); 0 = still
    cent, seen = mask_centroids(driver[:, :, 0].float())  # (B, Tv, 2), (B, Tv)
    for t in range(1, cent.shape[1]):  # out of view: keep the last seen position
        cent[:, t] = torch.where(seen[:, t, None], cent[:, t], cent[:, t - 1])
    progress = torch.where(seen[:, :1, None], cent[:, 1:] - cent[:, :1], torch.zeros_like(cent[:, 1:]))  # (B, F, 2)
    along = torch.einsum("bfc,bkc->bfk", progress, direction)  # (B, F, K)
    return along[..., None] * direction[:, None]


def pushed_layout(first_slots: torch.Tensor, velocity0: torch.Tensor, driver: torch.Tensor) -> torch.Tensor:
    """The ``push_prior`` condition: ``(B, Tv - 1, K, H, W)`` first-frame masks carried by
    :func:`pushed_displacement` (same arguments)."""
    return carry_slots(first_slots, pushed_displacement(first_slots, velocity0, driver))


def slot_masks(instance_mask: torch.Tensor, max_objects: int) -> torch.Tensor:
    """Instance ids ``(..., H, W)`` -> float slot masks ``(..., K, H, W)`` in {0, 1} (the pusher 255 is ignored)."""
    ids = torch.arange(1, max_objects + 1, device=instance_mask.device).view(max_objects, 1, 1)
    return (instance_mask.unsqueeze(-3) == ids).float()


def decode_masks(logits: torch.Tensor) -> torch.Tensor:
    """Mask logits ``(..., K, H, W)`` -> bool masks: a pixel belongs to the slot with the highest
    positive logit (objects do not overlap on a top-down table)."""
    top = logits.amax(-3, keepdim=True)
    return (logits > 0) & (logits >= top)


# ----------------------------------------------------------------------------- the model
class LatentVideoModel:
    """Autoencoder + latent denoiser + statistics, with the checks a user needs.

    Shapes: frames ``(N, 3, H, W)`` in [0, 1]; masks ``(N, K, H, W)`` in {0, 1}; latents
    ``(N, C, h, w)`` normalised per channel; video latents ``(B, C, Tv, h, w)``.
    """

    def __init__(self, config: LatentVideoConfig, vae: AutoencoderKL, denoiser: LatentVideoDenoiser):
        self.config = config
        self.vae = vae.eval()
        self.denoiser = denoiser.eval()
        self.check_components(config, vae, denoiser)
        dc = denoiser.config
        C = config.latent_channels
        self.latent_mean = torch.tensor(dc.latent_mean if dc.latent_mean is not None else [0.0] * C).view(1, C, 1, 1)
        self.latent_std = torch.tensor(dc.latent_std if dc.latent_std is not None else [1.0] * C).view(1, C, 1, 1)
        self.residual_std = float(dc.residual_std)
        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=float(config.sample_shift))

    @staticmethod
    def check_components(config: LatentVideoConfig, vae: AutoencoderKL, denoiser: LatentVideoDenoiser) -> None:
        """``ValueError`` naming any mismatch between the autoencoder, the denoiser and the config."""
        vc, dc = vae.config, denoiser.config
        fix = ("the checkpoint mixes an autoencoder (vae/) and a latent denoiser (latent_video/) from different runs; "
               "export both from the same `kinemask-train-latent --out DIR` run (DIR/vae and DIR/latent_video)")
        vdown = 2 ** (len(vc.block_out_channels) - 1)
        problems = []
        if vc.latent_channels != dc.latent_channels or vc.latent_channels != config.latent_channels:
            problems.append(f"latent channels: autoencoder {vc.latent_channels}, denoiser {dc.latent_channels}, config {config.latent_channels}")
        if vc.in_channels != 3 + config.max_objects or dc.max_objects != config.max_objects:
            problems.append(f"object slots: autoencoder has {vc.in_channels} input channels (= 3 + K), denoiser K={dc.max_objects}, "
                            f"config K={config.max_objects}")
        if vdown != config.downscale:
            problems.append(f"compression: autoencoder downsamples x{vdown}, config says x{config.downscale}")
        if vc.sample_size != config.height or (dc.latent_height, dc.latent_width) != (config.latent_height, config.latent_width):
            problems.append(f"resolution: autoencoder trained at {vc.sample_size}px, denoiser latent {dc.latent_height}x{dc.latent_width}, "
                            f"config {config.height}x{config.width} (latent {config.latent_height}x{config.latent_width})")
        if dc.num_frames != config.video_frames - 1 or dc.conditioning != config.conditioning or dc.cond_channels != config.cond_channels:
            problems.append(f"video: denoiser F={dc.num_frames} {dc.conditioning} ({dc.cond_channels} cond channels), config "
                            f"F={config.video_frames - 1} {config.conditioning} ({config.cond_channels})")
        if problems:
            raise ValueError("latent video model mismatch - " + "; ".join(problems) + f". Fix: {fix}")

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    def to(self, device) -> "LatentVideoModel":
        self.vae.to(device)
        self.denoiser.to(device)
        self.latent_mean, self.latent_std = self.latent_mean.to(device), self.latent_std.to(device)
        return self

    # -------------------------------------------------------------- io
    @classmethod
    def from_pretrained(cls, root: str | Path, device: str | torch.device = "cpu",
                        denoiser_subfolder: str = "latent_video") -> "LatentVideoModel":
        """Load ``root/vae`` (AutoencoderKL) and ``root/<denoiser_subfolder>`` (denoiser + config;
        ``latent_video_stage1`` in the embedded checkpoint is the stage-1-only ablation)."""
        root = Path(root)
        for sub in ("vae", denoiser_subfolder):
            if not (root / sub).exists():
                raise FileNotFoundError(f"latent video checkpoint part {sub}/ not found in {root}; pass a directory written by "
                                        "`kinemask-train-latent --out DIR` (it holds vae/ and latent_video/)")
        cfg_path = root / denoiser_subfolder / LATENT_CONFIG_NAME
        if not cfg_path.exists():
            raise FileNotFoundError(f"{cfg_path} is missing: {denoiser_subfolder}/ must hold {LATENT_CONFIG_NAME} next to the weights")
        config = LatentVideoConfig.load(cfg_path)
        vae = AutoencoderKL.from_pretrained(root / "vae", low_cpu_mem_usage=False)
        den = LatentVideoDenoiser.from_pretrained(root / denoiser_subfolder, low_cpu_mem_usage=False)
        return cls(config, vae, den).to(device)

    def save_pretrained(self, root: str | Path, denoiser_subfolder: str = "latent_video") -> None:
        root = Path(root)
        self.vae.save_pretrained(root / "vae")
        self.denoiser.save_pretrained(root / denoiser_subfolder)
        self.config.save(root / denoiser_subfolder / LATENT_CONFIG_NAME)

    # -------------------------------------------------------------- checks
    def check_frames(self, frames: torch.Tensor, name: str = "frames") -> None:
        cfg = self.config
        if not isinstance(frames, torch.Tensor) or frames.dim() < 3 or tuple(frames.shape[-3:]) != (3, cfg.height, cfg.width):
            raise ValueError(f"{name} must be a float tensor (..., 3, {cfg.height}, {cfg.width}) in [0, 1], got "
                             f"{tuple(getattr(frames, 'shape', ()))}; resize to the latent model's resolution first")
        if not frames.is_floating_point():
            raise ValueError(f"{name} must be floating point in [0, 1], got dtype {frames.dtype}; divide uint8 images by 255")
        if not torch.isfinite(frames).all():
            raise ValueError(f"{name} contain NaN or inf")
        lo, hi = float(frames.min()), float(frames.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{name} values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]; "
                             "images in [-1, 1] need (x + 1) / 2, uint8 images / 255")

    def check_latents(self, z: torch.Tensor, name: str = "latents") -> None:
        C, h, w = self.config.latent_channels, self.config.latent_height, self.config.latent_width
        if not isinstance(z, torch.Tensor) or z.dim() < 3 or tuple(z.shape[-3:]) != (C, h, w):
            raise ValueError(f"{name} must be (..., {C}, {h}, {w}) for this autoencoder ({self.config.height}x{self.config.width} "
                             f"frames, x{self.config.downscale}, {C} channels), got {tuple(getattr(z, 'shape', ()))}; "
                             "encode frames with this model's encode()")

    # -------------------------------------------------------------- autoencoder
    @torch.no_grad()
    def encode(self, frames: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """``frames (N, 3, H, W)`` in [0, 1], ``masks (N, K, H, W)`` in {0, 1} -> normalised latents ``(N, C, h, w)`` (posterior mean)."""
        self.check_frames(frames)
        K = self.config.max_objects
        if masks is None:
            masks = torch.zeros(frames.shape[0], K, *frames.shape[-2:], device=frames.device)
        if tuple(masks.shape) != (frames.shape[0], K) + tuple(frames.shape[-2:]):
            raise ValueError(f"masks must be (N, {K}, H, W) matching frames {tuple(frames.shape)}, got {tuple(masks.shape)}")
        x = torch.cat([frames * 2 - 1, masks.float() * 2 - 1], 1)
        z = self.vae.encode(x).latent_dist.mode()
        return (z - self.latent_mean) / self.latent_std

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised latents ``(N, C, h, w)`` -> frames ``(N, 3, H, W)`` in [0, 1] and mask logits ``(N, K, H, W)``."""
        self.check_latents(z)
        y = self.vae.decode(z * self.latent_std + self.latent_mean).sample
        return ((y[:, :3] + 1) / 2).clamp(0, 1), y[:, 3:]

    # -------------------------------------------------------------- denoiser
    def condition(self, z0: torch.Tensor, first_slots: torch.Tensor, velocity: torch.Tensor | None,
                  driver: torch.Tensor | None) -> torch.Tensor:
        """Concatenated condition ``(B, C_cond, F, h, w)`` at latent resolution.

        Args:
            z0: ``(B, C, h, w)`` normalised latent of the first frame.
            first_slots: ``(B, K, H, W)`` first-frame object masks in {0, 1} (pixels).
            velocity: ``(B, Tv, 3, H, W)`` velocity mask (frames a model must not see are zero) or None.
            driver: ``(B, Tv, 1, H, W)`` pusher footprint in {0, 1} or None.

        Order: z0, slots, [frame-0 velocity mask, frame t's velocity mask], [driver],
        [pushed layout (``push_prior``)] - new parts go last, so a model grown from an
        older one (``--init-from``) keeps its input weights in place.
        """
        cfg = self.config
        self.check_latents(z0, "z0")
        Fr, d = cfg.video_frames - 1, cfg.downscale
        rep = lambda x: x[:, :, None].expand(-1, -1, Fr, -1, -1)  # noqa: E731  (B, c, h, w) -> (B, c, F, h, w)
        parts = [rep(z0), rep(pool_to_latent(first_slots.float(), d) * 2 - 1)]
        if cfg.uses_velocity:
            if velocity is None or tuple(velocity.shape[1:3]) != (cfg.video_frames, 3):
                raise ValueError(f"velocity must be (B, {cfg.video_frames}, 3, {cfg.height}, {cfg.width}) for conditioning="
                                 f"{cfg.conditioning!r}, got {None if velocity is None else tuple(velocity.shape)}")
            v = pool_to_latent(velocity, d)  # (B, Tv, 3, h, w)
            parts += [rep(v[:, 0]), v[:, 1:].transpose(1, 2)]
        if cfg.uses_driver:
            if driver is None or tuple(driver.shape[1:3]) != (cfg.video_frames, 1):
                raise ValueError(f"driver must be (B, {cfg.video_frames}, 1, {cfg.height}, {cfg.width}) for conditioning="
                                 f"{cfg.conditioning!r}, got {None if driver is None else tuple(driver.shape)}")
            parts.append(pool_to_latent(driver.float(), d)[:, 1:].transpose(1, 2) * 2 - 1)
        if cfg.push_prior:
            prior = pushed_layout(first_slots.float(), velocity[:, 0], driver.float())  # (B, F, K, H, W)
            parts.append(pool_to_latent(prior, d).transpose(1, 2) * 2 - 1)
        return torch.cat(parts, 1)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, num_inference_steps: int = 8, generator: torch.Generator | None = None,
               start: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
        """Euler flow-matching sampling of the residual ``(B, C, F, h, w)`` (normalised by ``residual_std``).

        With ``start`` (a residual of the same shape) sampling begins at noise level ``strength``
        (SDEdit); else from pure noise with the scheduler's shifted sigmas.
        """
        cfg = self.config
        shape = (cond.shape[0], cfg.latent_channels, cfg.video_frames - 1, cfg.latent_height, cfg.latent_width)
        if start is not None and tuple(start.shape) != shape:
            raise ValueError(f"start must be {shape}, got {tuple(start.shape)}")
        return flow_match_sample(self.scheduler, lambda x, t: self.denoiser(x, t, cond), shape, num_inference_steps, generator,
                                 cond.device, start, strength)

    def residual_to_latents(self, z0: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``z0 (B, C, h, w)`` + residual ``(B, C, F, h, w)`` -> video latents ``(B, C, 1 + F, h, w)``."""
        return torch.cat([z0[:, :, None], z0[:, :, None] + residual * self.residual_std], 2)

    def decode_video(self, zv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video latents ``(B, C, Tv, h, w)`` -> frames ``(B, Tv, 3, H, W)`` and mask logits ``(B, Tv, K, H, W)``."""
        B, C, Tv = zv.shape[:3]
        rgb, logits = self.decode(zv.transpose(1, 2).reshape(B * Tv, C, *zv.shape[-2:]))
        return rgb.view(B, Tv, *rgb.shape[1:]), logits.view(B, Tv, *logits.shape[1:])


# ----------------------------------------------------------------------------- pipeline
@dataclass
class LatentVideoOutput:
    """Imagined videos at the latent model's resolution.

    Attributes:
        frames: ``(B, Tv, 3, H, W)`` float32 in [0, 1], frame 0 = the input.
        object_masks: ``(B, Tv, K, H, W)`` bool (decoded mask channels; frame 0 = the input masks).
        frame_indices: which of the ``T`` episode frames the video frames are.
        tracks: ``(B, K, T, 2)`` [px at this resolution] mean track-model tracks used by ``draft``/``refine`` (None for ``generate``).
    """

    frames: torch.Tensor
    object_masks: torch.Tensor
    frame_indices: list[int]
    tracks: torch.Tensor | None = None


def _downsample_ids(ids: torch.Tensor, f: int) -> torch.Tensor:
    """Instance ids ``(B, H, W)`` -> ``(B, H/f, W/f)``: a block takes its largest object id, so small objects never vanish."""
    x = torch.where(ids == 255, torch.zeros_like(ids), ids).float()[:, None]
    return F.max_pool2d(x, f)[:, 0].to(ids.dtype)


class LatentVideoPipeline:
    """First frame + object masks + planned push -> video and object masks, in the latent model.

    ``track_pipeline`` (a :class:`~kinemask_ros.world_model.pipeline.KineMaskPipeline` with a raster
    track model) is needed for the ``draft`` / ``refine`` modes only; its inputs are made by
    down-sampling to its resolution and its tracks scaled back.
    """

    def __init__(self, model: LatentVideoModel, track_pipeline=None):
        self.model = model
        self.track_pipeline = track_pipeline

    @property
    def config(self) -> LatentVideoConfig:
        return self.model.config

    def check_inputs(self, image, instance_mask, velocities, driver, mode: str, steps: int, strength: float) -> None:
        cfg = self.config
        H, W, K, T = cfg.height, cfg.width, cfg.max_objects, cfg.num_frames
        if mode not in LATENT_VIDEO_MODES:
            raise ValueError(f"video_mode must be one of {LATENT_VIDEO_MODES}, got {mode!r}")
        self.model.check_frames(image, "image")
        if image.dim() != 4:
            raise ValueError(f"image must be (B, 3, {H}, {W}), got {tuple(image.shape)}")
        B = image.shape[0]
        if tuple(instance_mask.shape) != (B, H, W) or instance_mask.is_floating_point():
            raise ValueError(f"instance_mask must be an integer tensor (B, {H}, {W}) of ids 0..{K}, got {tuple(instance_mask.shape)} {instance_mask.dtype}")
        ids = instance_mask[(instance_mask > 0) & (instance_mask != 255)]
        if ids.numel() and int(ids.max()) > K:
            raise ValueError(f"instance_mask holds id {int(ids.max())} but the model has only {K} object slots")
        if cfg.uses_velocity and (velocities is None or tuple(velocities.shape) != (B, K, 2)):
            raise ValueError(f"velocities must be (B, {K}, 2) px/frame at {W}x{H}, got {None if velocities is None else tuple(velocities.shape)}")
        if velocities is not None and not torch.isfinite(velocities).all():
            raise ValueError("velocities contain NaN or inf")
        if cfg.uses_driver and (driver is None or tuple(driver.shape) != (B, T, 1, H, W)):
            raise ValueError(f"driver must be (B, {T}, 1, {H}, {W}), got {None if driver is None else tuple(driver.shape)}")
        if not isinstance(steps, int) or not 1 <= steps <= 200:
            raise ValueError(f"num_inference_steps must be an int in [1, 200], got {steps!r}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength!r}")
        if mode != "generate" and self.track_pipeline is None:
            raise ValueError(f"video_mode={mode!r} needs tracks: build LatentVideoPipeline(model, track_pipeline=KineMaskPipeline...) "
                             "or use video_mode='generate'")

    def _tracks(self, image, instance_mask, velocities, driver, samples: int, steps: int, generator) -> torch.Tensor:
        """Mean raster-model tracks ``(B, K, T, 2)`` [px at this resolution]."""
        tp = self.track_pipeline
        f = self.config.height // tp.config.height
        if f * tp.config.height != self.config.height or tp.config.width * f != self.config.width:
            raise ValueError(f"the track model works at {tp.config.height}x{tp.config.width}, which does not divide the latent model's "
                             f"{self.config.height}x{self.config.width}")
        img = F.avg_pool2d(image, f) if f > 1 else image
        ids = _downsample_ids(instance_mask, f) if f > 1 else instance_mask
        vel = velocities / f if velocities is not None else None
        drv = F.max_pool2d(driver.flatten(0, 1), f).view(*driver.shape[:3], *img.shape[-2:]) if (driver is not None and f > 1) else driver
        out = tp(img, ids, vel if tp.config.uses_velocity else None, drv if tp.config.uses_driver else None,
                 num_samples=samples, num_inference_steps=steps, generator=generator)
        return out.mean_tracks * f  # continuous pixel coordinates scale with the grid

    def _decode_future(self, zv: torch.Tensor, image: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode frames ``1..Tv-1`` of ``zv (B, C, Tv, h, w)``; frame 0 is the input itself (not decoded)."""
        rgb, logits = self.model.decode_video(zv[:, :, 1:])
        return torch.cat([image[:, None], rgb], 1), torch.cat([(slots > 0)[:, None], decode_masks(logits)], 1)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, instance_mask: torch.Tensor, velocities: torch.Tensor | None = None,
                 driver: torch.Tensor | None = None, video_mode: str = "generate", num_inference_steps: int = 8,
                 strength: float = 0.3, track_samples: int = 1, track_steps: int = 8,
                 generator: torch.Generator | None = None) -> LatentVideoOutput:
        """Imagine ``B`` pushes as videos.

        Args:
            image: ``(B, 3, H, W)`` first frame in [0, 1] at the latent model's resolution.
            instance_mask: ``(B, H, W)`` int ids (0 background, 1..K objects, 255 pusher ignored).
            velocities: ``(B, K, 2)`` planned post-contact velocity [px/frame at H x W] per slot (0 = still).
            driver: ``(B, T, 1, H, W)`` pusher footprint per frame.
            video_mode: ``"generate"`` (KineMask: velocity mask on frame 0 only, from noise),
                ``"refine"`` (track-warped draft, encoded, denoised from noise ``strength`` with the
                velocity mask rebuilt on every frame from the draft) or ``"draft"`` (the draft alone).
            num_inference_steps: Euler steps of the latent sampler.
            strength: starting noise level of ``refine``.
            track_samples, track_steps: track-model sampling for ``draft``/``refine``.
            generator: ``torch.Generator`` for determinism.
        """
        m, cfg = self.model, self.config
        dev = m.device
        # 1. check inputs
        image, instance_mask = image.to(dev).float(), instance_mask.to(dev)
        velocities = velocities.to(dev).float() if velocities is not None else None
        driver = driver.to(dev).float() if driver is not None else None
        self.check_inputs(image, instance_mask, velocities, driver, video_mode, num_inference_steps, strength)
        B, K, Tv, s = image.shape[0], cfg.max_objects, cfg.video_frames, cfg.video_frame_stride
        # 2. first-frame conditions
        slots = slot_masks(instance_mask, K)  # (B, K, H, W)
        v0 = first_frame_velocity_mask(slots, velocities, cfg.v_max)  # (B, 3, H, W)
        drv = driver[:, ::s] if cfg.uses_driver else None
        z0 = m.encode(image, slots)
        tracks = None
        # 3. video latents
        if video_mode == "generate":
            vel = torch.zeros(B, Tv, 3, cfg.height, cfg.width, device=dev)
            vel[:, 0] = v0  # KineMask inference: frame 0 only
            cond = m.condition(z0, slots, vel if cfg.uses_velocity else None, drv)
            zv = m.residual_to_latents(z0, m.sample(cond, num_inference_steps, generator))
            rgb, masks = self._decode_future(zv, image, slots)
        else:
            tracks = self._tracks(image, instance_mask, velocities, driver, track_samples, track_steps, generator)
            disp = (tracks - tracks[:, :, :1])[:, :, ::s]
            draft = draft_video(image * 2 - 1, slots, disp)  # (B, 3+K, Tv, H, W) in [-1, 1]
            d_rgb, d_masks = split_draft(draft)  # (B, Tv, 3, H, W), (B, Tv, K, H, W)
            if video_mode == "draft":
                rgb, masks = d_rgb, d_masks
            else:
                step_v = torch.diff(tracks, dim=2, append=tracks[:, :, -1:])[:, :, ::s]
                vel = velocity_mask_from_draft(d_masks.transpose(1, 2).float(), step_v, cfg.v_max)
                vel[:, 0] = v0
                cond = m.condition(z0, slots, vel if cfg.uses_velocity else None, drv)
                zd = m.encode(d_rgb.flatten(0, 1), d_masks.flatten(0, 1).float()).view(B, Tv, cfg.latent_channels,
                                                                                      cfg.latent_height, cfg.latent_width)
                start = (zd[:, 1:] - z0[:, None]).transpose(1, 2) / m.residual_std
                zv = m.residual_to_latents(z0, m.sample(cond, num_inference_steps, generator, start=start, strength=strength))
                rgb, masks = self._decode_future(zv, image, slots)
        rgb = rgb.clone()
        masks = masks.clone()
        rgb[:, 0] = image
        masks[:, 0] = slots > 0
        return LatentVideoOutput(frames=rgb, object_masks=masks, frame_indices=list(range(0, cfg.num_frames, s)), tracks=tracks)


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class LatentTrainConfig:
    """Settings of a ``kinemask-train-latent`` run (the model's sizes live in :class:`LatentVideoConfig`).

    ``t_logit_mean``/``t_uniform_fraction``: the training noise level ``s`` is drawn as
    ``sigmoid(N(t_logit_mean, 1))`` (logit-normal shifted towards noise) with probability
    ``1 - t_uniform_fraction``, else uniform in (0, 1) - so the high-noise end that pure
    generation starts from is trained (the measured weak spot of the pixel model).
    """

    data: str
    out: str
    look_data: str | None = None
    what: str = "all"  # "ae", "denoiser" or "all"
    ae_steps: int = 1500
    ae_batch: int = 32
    ae_lr: float = 2e-3
    ae_kl_weight: float = 1e-6
    ae_object_weight: float = 4.0
    ae_mask_weight: float = 1.0
    stage1_steps: int = 1500
    stage2_steps: int = 1500
    batch: int = 8
    lr: float = 1e-3
    contact_weight: float = 5.0
    morph_prob: float = 0.2
    t_logit_mean: float = 0.5
    t_uniform_fraction: float = 0.25
    stage2_final_fraction: float = 0.3
    ema_decay: float = 0.999
    ckpt_every: int = 250
    max_episodes: int | None = None
    seed: int = 0
    device: str = "auto"
    init_from: str = ""

    def __post_init__(self) -> None:
        if self.what not in ("ae", "denoiser", "all"):
            raise ValueError(f"LatentTrainConfig.what must be ae, denoiser or all, got {self.what!r}")
        for name in ("ae_steps", "stage1_steps", "stage2_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"LatentTrainConfig.{name} must be an int >= 0, got {v!r}")
        for name in ("ae_batch", "batch", "ckpt_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"LatentTrainConfig.{name} must be an int >= 1, got {v!r}")
        for name in ("ae_lr", "lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"LatentTrainConfig.{name} must be > 0, got {v!r}")
        if not (math.isfinite(self.contact_weight) and self.contact_weight >= 1.0):
            raise ValueError(f"LatentTrainConfig.contact_weight must be >= 1, got {self.contact_weight!r}")
        if not 0.0 <= self.t_uniform_fraction <= 1.0:
            raise ValueError(f"LatentTrainConfig.t_uniform_fraction must be in [0, 1], got {self.t_uniform_fraction!r}")
        if not 0.0 <= self.morph_prob <= 1.0:
            raise ValueError(f"LatentTrainConfig.morph_prob must be in [0, 1], got {self.morph_prob!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"LatentTrainConfig.ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not 0.0 <= self.stage2_final_fraction < 1.0:
            raise ValueError(f"LatentTrainConfig.stage2_final_fraction must be in [0, 1), got {self.stage2_final_fraction!r}")


def sample_noise_level(n: int, gen: torch.Generator, logit_mean: float, uniform_fraction: float,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n,)`` noise levels in (0, 1): logit-normal around ``logit_mean`` mixed with uniform."""
    s = torch.sigmoid(torch.randn(n, generator=gen, device=device) + logit_mean)
    u = torch.rand(n, generator=gen, device=device)
    pick = torch.rand(n, generator=gen, device=device) < uniform_fraction
    return torch.where(pick, u, s).clamp(1e-4, 1 - 1e-4)


def autoencoder_loss(vae: AutoencoderKL, x: torch.Tensor, gen: torch.Generator, kl_weight: float,
                     object_weight: float, mask_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """AE loss on ``x (N, 3 + K, H, W)`` (RGB in [-1, 1], masks in {-1, 1}): object-weighted RGB MSE +
    ``mask_weight`` * (mask BCE (logits, positives x5) + 0.1 soft Dice) + ``kl_weight`` * KL."""
    post = vae.encode(x).latent_dist
    z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen, device=x.device)
    y = vae.decode(z).sample
    obj = (x[:, 3:] > 0).any(1, keepdim=True).float()
    w = 1.0 + (object_weight - 1.0) * obj
    rgb = ((y[:, :3] - x[:, :3]) ** 2 * w).mean() / w.mean()
    target = (x[:, 3:] > 0).float()
    bce = F.binary_cross_entropy_with_logits(y[:, 3:], target, pos_weight=torch.tensor(5.0, device=x.device))
    # soft Dice per (frame, slot) with an object: objects cover ~2 % of a 64x64 frame, so BCE alone
    # learns "background everywhere" first; Dice weighs every object's overlap equally.
    prob = torch.sigmoid(y[:, 3:])
    inter = (prob * target).sum((-1, -2))
    present = target.sum((-1, -2)) > 0
    dice = 1 - (2 * inter + 1) / (prob.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    dice = (dice * present).sum() / present.sum().clamp_min(1)
    kl = post.kl().mean() / x[0].numel()
    return rgb + mask_weight * (bce + 0.1 * dice) + kl_weight * kl, {"rgb": rgb.item(), "bce": bce.item(), "dice": dice.item(), "kl": kl.item()}


def _frames_and_masks(d: dict, ep: np.ndarray, t: np.ndarray, K: int, dihedral_kind: np.ndarray | None = None) -> torch.Tensor:
    """Dataset frames of episodes ``ep`` at times ``t`` -> AE input ``(N, 3 + K, H, W)`` in [-1, 1]."""
    from kinemask_ros.world_model.data import dihedral, slot_masks_from_ids

    rgb = d["frames"][ep, t]  # (N, H, W, 3) uint8
    ids = d["masks"][ep, t]
    H, W = ids.shape[-2:]
    out = []
    for j in range(len(ep)):
        r, m = rgb[j], ids[j]
        if dihedral_kind is not None:
            img, _, _ = dihedral(int(dihedral_kind[j]), H, W)
            r, m = img(r, 0), img(m, 0)
        out.append(np.concatenate([r.transpose(2, 0, 1) / 127.5 - 1, slot_masks_from_ids(m, K) * 2 - 1]).astype(np.float32))
    return torch.from_numpy(np.stack(out))


def write_look_frames(out: str | Path, episodes: int = 300, seed: int = 5_000_000, height: int = 64, width: int = 64,
                      held_out: bool = False) -> Path:
    """Autoencoder-only data with randomised looks (:meth:`LookConfig.randomized`: colours, table
    textures, light, sensor noise): ``episodes`` simulated pushes (one look each) saved as
    ``out`` (.npz with ``frames (N, T, H, W, 3)`` uint8 and ``masks (N, T, H, W)``). Seeds are
    training seeds (< EVAL_SEED_OFFSET) unless ``held_out`` (benchmarks: seeds >= EVAL_SEED_OFFSET)."""
    from tqdm import tqdm

    from kinemask_ros.sim_bridge.dataset import EVAL_SEED_OFFSET, GeneratorConfig, simulate_episode
    from kinemask_ros.sim_bridge.look import LookConfig
    from kinemask_ros.sim_bridge.scene import SceneConfig, TabletopScene

    if held_out and seed < EVAL_SEED_OFFSET:
        raise ValueError(f"held-out look frames need seeds >= {EVAL_SEED_OFFSET}, got {seed}")
    if not held_out and seed + episodes > EVAL_SEED_OFFSET:
        raise ValueError(f"look-data seeds {seed}..{seed + episodes - 1} would reach the held-out range (>= {EVAL_SEED_OFFSET})")
    base = SceneConfig()
    sc = replace(base, camera=replace(base.camera, width=width, height=height), look=LookConfig.randomized())
    cfg = GeneratorConfig(num_episodes=episodes, seed=seed, scene=sc)
    scene = TabletopScene(sc)
    frames, masks = [], []
    for s in tqdm(range(seed, seed + episodes), desc="look episodes", unit="ep"):
        scene.sample_look(np.random.default_rng([s, 7]))
        ep, _ = simulate_episode(scene, cfg, s)
        frames.append(ep.frames)
        masks.append(ep.masks)
    scene.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, frames=np.stack(frames), masks=np.stack(masks))
    return out


def train_autoencoder(tc: LatentTrainConfig, cfg: LatentVideoConfig, datasets: list[dict], device: torch.device) -> AutoencoderKL:
    """Train (or resume) the autoencoder on random frames of ``datasets``; exports ``OUT/vae``."""
    from tqdm import tqdm

    from kinemask_ros.world_model.train import _Run, _log, plot_curves

    vae = build_autoencoder(cfg)
    run = _Run("ae", vae, tc.ae_lr, tc.ae_steps, tc, device)
    sizes = np.array([len(d["frames"]) for d in datasets], float)
    bar = tqdm(total=tc.ae_steps, initial=run.step, desc="autoencoder", unit="step")
    while run.step < tc.ae_steps:
        which = run.rng.choice(len(datasets), size=tc.ae_batch, p=sizes / sizes.sum())
        xs = []
        for k in np.unique(which):
            n = int((which == k).sum())
            d = datasets[k]
            ep = run.rng.integers(len(d["frames"]), size=n)
            t = run.rng.integers(d["frames"].shape[1], size=n)
            xs.append(_frames_and_masks(d, ep, t, cfg.max_objects, run.rng.integers(8, size=n)))
        x = torch.cat(xs).to(device)
        loss, parts = autoencoder_loss(vae, x, run.gen, tc.ae_kl_weight, tc.ae_object_weight, tc.ae_mask_weight)
        run.update(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(run.losses[-50:]):.4f}", rgb=f"{parts['rgb']:.4f}", bce=f"{parts['bce']:.3f}", dice=f"{parts['dice']:.3f}")
        if run.step % tc.ckpt_every == 0 or run.step == tc.ae_steps:
            run.save_state()
            run.export(Path(tc.out) / "vae")
            _log(tc, {"run": "ae", "step": run.step, "loss": float(np.mean(run.losses[-tc.ckpt_every:])), **parts, "time": time.time()})
            plot_curves(tc.out)
    bar.close()
    vae.load_state_dict(run.ema)
    return vae.eval()


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, d: dict, cfg: LatentVideoConfig, device: torch.device, batch: int = 256) -> np.ndarray:
    """Raw (unnormalised) posterior-mean latents of every episode's video frames: ``(N, Tv, C, h, w)`` float16."""
    from tqdm import tqdm

    N, s, Tv = len(d["frames"]), cfg.video_frame_stride, cfg.video_frames
    out = np.zeros((N, Tv, cfg.latent_channels, cfg.latent_height, cfg.latent_width), np.float16)
    pairs = [(n, t) for n in range(N) for t in range(Tv)]
    for i in tqdm(range(0, len(pairs), batch), desc="encode latents", unit="batch"):
        chunk = np.array(pairs[i : i + batch])
        x = _frames_and_masks(d, chunk[:, 0], chunk[:, 1] * s, cfg.max_objects).to(device)
        z = vae.encode(x).latent_dist.mode().cpu().numpy().astype(np.float16)
        out[chunk[:, 0], chunk[:, 1]] = z
    return out


def latent_statistics(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-channel mean/std of latents ``(N, Tv, C, h, w)`` and the std of the normalised residual from frame 0."""
    zf = z.astype(np.float32)
    mean = zf.mean((0, 1, 3, 4))
    std = zf.std((0, 1, 3, 4)) + 1e-6
    zn = (zf - mean[None, None, :, None, None]) / std[None, None, :, None, None]
    res = zn[:, 1:] - zn[:, :1]
    return mean, std, float(res.std() + 1e-6)


def denoiser_batch(d: dict, zraw: np.ndarray, idx: np.ndarray, model: LatentVideoModel, rng: np.random.Generator,
                   morph_prob: float, device: torch.device) -> dict[str, torch.Tensor]:
    """One training batch for the latent denoiser.

    Returns ``z0 (B, C, h, w)``, ``residual (B, C, F, h, w)`` (normalised), ``first_slots (B, K, H, W)``,
    ``velocity (B, Tv, 3, H, W)`` full (stage-1) velocity mask, ``driver (B, Tv, 1, H, W)``,
    ``moving (B, F, h, w)`` latent-resolution interaction region in [0, 1].
    """
    from kinemask_ros.velocity_mask import encode_velocity_mask
    from kinemask_ros.world_model.data import morph_ids, slot_masks_from_ids

    cfg = model.config
    s, K, Tv = cfg.video_frame_stride, cfg.max_objects, cfg.video_frames
    vels, slots, drvs, movs = [], [], [], []
    for i in idx:
        masks = d["masks"][i, ::s][:Tv]
        cond_ids = masks[0]
        if rng.random() < morph_prob:
            cond_ids = morph_ids(cond_ids, dilate=bool(rng.random() < 0.5))
        nobj = int(d["num_objects"][i])
        kv = np.zeros((Tv, K, 2), np.float32)
        kv[:, :nobj] = d["velocities_px"][i, ::s][:Tv, :nobj]
        vels.append(encode_velocity_mask(np.concatenate([cond_ids[None], masks[1:]]), kv, cfg.v_max))
        slots.append(slot_masks_from_ids(cond_ids, K))
        drvs.append(d["driver"][i, ::s][:Tv, None].astype(np.float32))
        cents = d["centroids_px"][i]
        disp = np.linalg.norm(cents[-1, :nobj] - cents[0, :nobj], axis=-1)
        moving_ids = [k + 1 for k in range(nobj) if disp[k] > 1.0] + [255]
        movs.append(np.isin(masks[1:], moving_ids).astype(np.float32))
    z = torch.from_numpy(zraw[idx].astype(np.float32)).to(device)  # (B, Tv, C, h, w)
    z = (z - model.latent_mean[:, None]) / model.latent_std[:, None]
    mov = torch.from_numpy(np.stack(movs)).to(device)
    return {"z0": z[:, 0], "residual": ((z[:, 1:] - z[:, :1]) / model.residual_std).transpose(1, 2).contiguous(),
            "first_slots": torch.from_numpy(np.stack(slots)).to(device), "velocity": torch.from_numpy(np.stack(vels)).to(device),
            "driver": torch.from_numpy(np.stack(drvs)).to(device),
            "moving": F.max_pool2d(mov, cfg.downscale)}


def denoiser_loss(model: LatentVideoModel, b: dict, gen: torch.Generator, tc: LatentTrainConfig,
                  keep_until: np.ndarray | None) -> torch.Tensor:
    """Rectified-flow loss of the latent denoiser on batch ``b``; ``keep_until (B,)`` applies stage-2 dropout."""
    from kinemask_ros.velocity_mask import stage2_dropout

    vel = b["velocity"]
    if keep_until is not None:
        vel = torch.stack([stage2_dropout(vel[i], int(k)) for i, k in enumerate(keep_until)])
    cond = model.condition(b["z0"], b["first_slots"], vel if model.config.uses_velocity else None,
                           b["driver"] if model.config.uses_driver else None)
    x0 = b["residual"]
    B = x0.shape[0]
    s = sample_noise_level(B, gen, tc.t_logit_mean, tc.t_uniform_fraction, x0.device)
    noise = torch.randn(x0.shape, generator=gen, device=x0.device)
    sv = s.view(B, 1, 1, 1, 1)
    pred = model.denoiser((1 - sv) * x0 + sv * noise, s * 1000.0, cond)
    w = 1.0 + (tc.contact_weight - 1.0) * b["moving"][:, None]
    return ((pred - (noise - x0)) ** 2 * w).mean() / w.mean()


def grow_denoiser_from(den: LatentVideoDenoiser, init_dir: str | Path) -> LatentVideoDenoiser:
    """Fine-tuning start: a denoiser like ``den`` with the weights of ``init_dir`` (a checkpoint or run
    directory holding ``latent_video/``, or that folder itself).

    The two may differ only in appended condition channels (e.g. ``push_prior`` added): the input
    layer grows with zero weights, so the grown model's predictions equal the old one's at step 0.
    The latent statistics come from the old model (they define what its outputs mean).
    """
    d = Path(init_dir)
    d = d / "latent_video" if (d / "latent_video").is_dir() else d
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"--init-from {init_dir}: no latent denoiser there (expected latent_video/config.json)")
    old = LatentVideoDenoiser.from_pretrained(d, low_cpu_mem_usage=False)
    oc, nc = old.config, den.config
    for k in ("latent_channels", "latent_height", "latent_width", "num_frames", "max_objects", "conditioning", "channels", "emb_dim"):
        if tuple(np.atleast_1d(getattr(oc, k))) != tuple(np.atleast_1d(getattr(nc, k))):
            raise ValueError(f"--init-from {init_dir}: its denoiser has {k}={getattr(oc, k)!r}, this run {getattr(nc, k)!r}; "
                             "only appended condition channels can differ")
    if oc.cond_channels > nc.cond_channels:
        raise ValueError(f"--init-from {init_dir}: its denoiser reads {oc.cond_channels} condition channels, this run only "
                         f"{nc.cond_channels}; channels can be added, not removed")
    new = build_like(den, latent_mean=oc.latent_mean, latent_std=oc.latent_std, residual_std=oc.residual_std)
    sd = new.state_dict()
    for k, v in old.state_dict().items():
        if k == "inp.weight" and v.shape[1] < sd[k].shape[1]:
            sd[k].zero_()
            sd[k][:, : v.shape[1]] = v
        else:
            sd[k] = v
    new.load_state_dict(sd)
    return new


def build_like(den: LatentVideoDenoiser, **overrides) -> LatentVideoDenoiser:
    """A fresh denoiser with ``den``'s config and ``overrides``."""
    kw = {k: v for k, v in dict(den.config).items() if not k.startswith("_")}
    kw.update(overrides)
    return LatentVideoDenoiser(**kw)


def train_denoiser(tc: LatentTrainConfig, cfg: LatentVideoConfig, d: dict, vae: AutoencoderKL, device: torch.device) -> None:
    """Encode the dataset once (cached), then train the latent denoiser in two stages; exports
    ``OUT/latent_video`` (stage 1+2) and ``OUT/stage1/latent_video`` (+ ``vae``) for the ablation."""
    from tqdm import tqdm

    from kinemask_ros.velocity_mask import stage2_keep_until
    from kinemask_ros.world_model.train import _Run, _log, plot_curves

    out = Path(tc.out)
    cache = out / "latents.npy"
    if cache.exists() and np.load(cache, mmap_mode="r").shape[0] == len(d["frames"]):
        zraw = np.load(cache)
    else:
        zraw = encode_dataset(vae.to(device), d, cfg, device)
        np.save(cache, zraw)
    mean, std, rstd = latent_statistics(zraw)
    den = build_denoiser(cfg, mean, std, rstd)
    if tc.init_from:  # its weights and latent statistics (a resumed run's state then replaces the weights)
        den = grow_denoiser_from(den, tc.init_from)
        if not (out / "state_latent_video.pt").exists():
            print(f"latent denoiser initialised from {tc.init_from}", flush=True)
    model = LatentVideoModel(cfg, vae, den).to(device)
    total = tc.stage1_steps + tc.stage2_steps
    run = _Run("latent_video", den, tc.lr, total, tc, device)
    model.denoiser = den.train()
    Tv = cfg.video_frames

    def export(directory: Path) -> None:
        run.export(directory / "latent_video")
        cfg.save(directory / "latent_video" / LATENT_CONFIG_NAME)
        vae.save_pretrained(directory / "vae")

    bar = tqdm(total=total, initial=run.step, desc="latent denoiser", unit="step")
    while run.step < total:
        b = denoiser_batch(d, zraw, run.rng.integers(len(d["frames"]), size=tc.batch), model, run.rng, tc.morph_prob, device)
        stage2 = run.step >= tc.stage1_steps
        keep = None
        if stage2:
            k_max = stage2_keep_until(run.step - tc.stage1_steps, tc.stage2_steps, Tv, tc.stage2_final_fraction)
            keep = run.rng.integers(0, k_max + 1, size=tc.batch)
        loss = denoiser_loss(model, b, run.gen, tc, keep)
        run.update(loss)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(run.losses[-50:]):.4f}", stage=2 if stage2 else 1)
        if run.step == tc.stage1_steps:
            export(out / "stage1")
        if run.step % tc.ckpt_every == 0 or run.step == total:
            run.save_state()
            export(out if (stage2 or tc.stage2_steps == 0) else out / "stage1")
            _log(tc, {"run": "latent_video", "step": run.step, "stage": 2 if stage2 else 1,
                      "loss": float(np.mean(run.losses[-tc.ckpt_every:])), "time": time.time()})
            plot_curves(tc.out)
    bar.close()


def train_latent(tc: LatentTrainConfig, cfg: LatentVideoConfig) -> Path:
    """The whole resumable run: autoencoder -> latent cache -> denoiser stage 1 -> stage 2."""
    from kinemask_ros.sim_bridge.dataset import load_dataset
    from kinemask_ros.world_model.train import resolve_device

    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / LATENT_CONFIG_NAME
    if cfg_path.exists() and LatentVideoConfig.load(cfg_path) != cfg:
        raise ValueError(f"{out} was trained with another latent model config ({cfg_path}); use a new --out or the same settings")
    cfg.save(cfg_path)
    (out / "train_config.json").write_text(json.dumps(asdict(tc), indent=1))
    device = resolve_device(tc.device)
    torch.manual_seed(tc.seed)
    d = load_dataset(tc.data, max_episodes=tc.max_episodes)
    T, H, W = d["frames"].shape[1:4]
    if (H, W) != (cfg.height, cfg.width):
        raise ValueError(f"dataset {tc.data} has {H}x{W} frames but the latent model is {cfg.height}x{cfg.width}; "
                         f"generate with `kinemask-generate --height {cfg.height} --width {cfg.width}`")
    if T < cfg.num_frames:
        raise ValueError(f"dataset episodes have {T} frames, the model needs {cfg.num_frames}")
    if d["states"].shape[2] > cfg.max_objects:
        raise ValueError(f"dataset has up to {d['states'].shape[2]} objects, the model only {cfg.max_objects} slots")
    print(f"training the latent video model on {len(d['frames'])} episodes from {tc.data} on {device}", flush=True)
    vae_sets = [d]
    if tc.look_data:
        look = dict(np.load(tc.look_data)) if str(tc.look_data).endswith(".npz") else load_dataset(tc.look_data)
        if look["frames"].shape[2:4] != (H, W):
            raise ValueError(f"--look-data {tc.look_data} has {look['frames'].shape[2:4]} frames, need {H}x{W}")
        vae_sets.append(look)
    init_vae = Path(tc.init_from) / "vae" if tc.init_from else None
    if tc.what == "denoiser" and not (out / "vae").exists() and init_vae is not None and init_vae.is_dir():
        import shutil

        shutil.copytree(init_vae, out / "vae")  # fine-tuning the denoiser keeps the autoencoder it was trained on
        print(f"autoencoder copied from {init_vae}", flush=True)
    if tc.what in ("ae", "all") and tc.ae_steps:
        vae = train_autoencoder(tc, cfg, vae_sets, device)
    elif (out / "vae").exists():
        vae = AutoencoderKL.from_pretrained(out / "vae", low_cpu_mem_usage=False).to(device).eval()
    else:
        raise ValueError(f"no autoencoder in {out}/vae: run with --what ae or all first")
    if tc.what in ("denoiser", "all") and (tc.stage1_steps + tc.stage2_steps):
        train_denoiser(tc, cfg, d, vae, device)
    return out


def main(argv: list[str] | None = None) -> int:
    d = LatentTrainConfig(data="", out="")
    m = LatentVideoConfig()
    p = argparse.ArgumentParser(prog="kinemask-train-latent", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="dataset from `kinemask-generate --height 64 --width 64`")
    p.add_argument("--look-data", default=None, help="extra dataset (e.g. randomised looks) for the autoencoder only")
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    p.add_argument("--what", default=d.what, choices=["ae", "denoiser", "all"])
    p.add_argument("--ae-steps", type=int, default=d.ae_steps)
    p.add_argument("--ae-batch", type=int, default=d.ae_batch)
    p.add_argument("--stage1-steps", type=int, default=d.stage1_steps)
    p.add_argument("--stage2-steps", type=int, default=d.stage2_steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--t-logit-mean", type=float, default=d.t_logit_mean, help="logit-normal mean of the training noise level")
    p.add_argument("--t-uniform-fraction", type=float, default=d.t_uniform_fraction)
    p.add_argument("--size", type=int, default=m.height, help="frame height = width [px] (the dataset's)")
    p.add_argument("--num-frames", type=int, default=m.num_frames)
    p.add_argument("--max-objects", type=int, default=m.max_objects)
    p.add_argument("--latent-channels", type=int, default=m.latent_channels)
    p.add_argument("--ae-channels", type=int, nargs="+", default=list(m.ae_channels))
    p.add_argument("--denoiser-channels", type=int, nargs="+", default=list(m.denoiser_channels))
    p.add_argument("--v-max", type=float, default=m.v_max)
    p.add_argument("--push-prior", action=argparse.BooleanOptionalAction, default=True,
                   help="condition on the pushed layout: moving objects carried by the pusher's progress (LatentVideoConfig.push_prior)")
    p.add_argument("--stage2-final-fraction", type=float, default=d.stage2_final_fraction,
                   help="last fraction of stage 2 trained with the first frame's velocity mask only")
    p.add_argument("--init-from", default="", help="fine-tune: start the denoiser from this checkpoint or run directory "
                   "(its latent_video/; appended condition channels start at zero)")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--max-episodes", type=int, default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        tc = LatentTrainConfig(data=a.data, out=a.out, look_data=a.look_data, what=a.what, ae_steps=a.ae_steps, ae_batch=a.ae_batch,
                               stage1_steps=a.stage1_steps, stage2_steps=a.stage2_steps, batch=a.batch, lr=a.lr,
                               t_logit_mean=a.t_logit_mean, t_uniform_fraction=a.t_uniform_fraction, ckpt_every=a.ckpt_every,
                               max_episodes=a.max_episodes, seed=a.seed, device=a.device,
                               stage2_final_fraction=a.stage2_final_fraction, init_from=a.init_from)
        cfg = replace(m, height=a.size, width=a.size, num_frames=a.num_frames, max_objects=a.max_objects,
                      latent_channels=a.latent_channels, ae_channels=tuple(a.ae_channels),
                      denoiser_channels=tuple(a.denoiser_channels), v_max=a.v_max, push_prior=a.push_prior)
        out = train_latent(tc, cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"kinemask-train-latent: error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoints in {out}: vae/, latent_video/ (stage 1+2), stage1/ (stage 1 only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
