"""The two denoisers of the world model (diffusers ``ModelMixin``/``ConfigMixin``).

* :class:`TrackDenoiser` - Mask2IV's first stage: object centroid tracks ``(K, T-1, 2)`` from the
  first frame, its object masks and the KineMask velocity mask (and/or the InterDyn driver mask).
  A small CNN encodes the condition once; a slot transformer (one token per object, so objects can
  reason about hitting each other) denoises the tracks. Cheap enough for hundreds of candidates.
* :class:`VideoDenoiser` - KineMask's video model: a factorised (2+1)D conv UNet that denoises RGB
  frames *and* per-object mask channels, conditioned by concatenation (Mask2IV found it beats a
  ControlNet branch) on the first frame, its object masks, the velocity mask ``V`` and/or the
  driver mask ``D``, with the diffusion time (+ optional text) as FiLM.

Both are trained with rectified flow (SD3 convention, diffusers ``FlowMatchEulerDiscreteScheduler``):
``x_s = (1 - s) x_0 + s * noise`` and the network predicts ``noise - x_0``.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def flow_match_sample(scheduler, fn, shape: tuple, num_inference_steps: int, generator: torch.Generator | None,
                      device, start: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
    """Euler flow-matching sampling with a (copied) diffusers ``FlowMatchEulerDiscreteScheduler``:
    ``fn(x, t (B,)) -> velocity``, from noise of ``shape`` to a sample.

    With ``start``, sampling begins at noise level ``strength`` from ``(1 - strength) * start +
    strength * noise`` (SDEdit) and runs ``num_inference_steps`` steps down to 0; else from pure
    noise with the scheduler's own (shifted) sigmas.
    """
    sched = copy.deepcopy(scheduler)
    noise = torch.randn(shape, generator=generator, device=device)
    if start is None:
        sched.set_timesteps(num_inference_steps, device=device)
        x = noise
    else:
        sigmas = np.linspace(strength, 0.0, num_inference_steps + 1)[:-1]
        sched.set_timesteps(sigmas=sigmas.tolist(), device=device)
        x = (1 - strength) * start + strength * noise
    for t in sched.timesteps:
        x = sched.step(fn(x, t.expand(shape[0]).to(device)), t, x).prev_sample
    return x


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps ``(B,)`` in [0, 1000] -> ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TrackDenoiser(ModelMixin, ConfigMixin):
    """Denoises object tracks ``x (B, K, T-1, 2)`` (displacement from frame 0, / ``track_scale``).

    Condition tensors (see :meth:`encode`):
        image ``(B, 3, H, W)`` in [-1, 1]; slot_masks ``(B, K, H, W)`` in {0, 1};
        velocity0 ``(B, 3, H, W)`` first-frame velocity mask; driver ``(B, T, H, W)``;
        text ``(B, text_dim)`` or None.
    """

    @register_to_config
    def __init__(self, height: int = 32, width: int = 32, num_frames: int = 16, max_objects: int = 4,
                 conditioning: str = "velocity", text_dim: int = 0, dim: int = 128, layers: int = 3):
        super().__init__()
        in_ch = 3 + 1  # rgb + "any object" extent
        if conditioning in ("velocity", "both"):
            in_ch += 3
        if conditioning in ("driver", "both"):
            in_ch += num_frames
        self.encoder = nn.Sequential(
            nn.Conv2d(in_ch, 48, 3, padding=1), nn.SiLU(),
            nn.Conv2d(48, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(),
            nn.Conv2d(64, 96, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(96, 96, 3, padding=1), nn.SiLU(),
        )
        feat = 96
        slot_in = feat + feat + 2 + 2 + 1 + 1  # own pooled feat, global feat, centroid, mean velocity, area, present
        self.slot_proj = nn.Sequential(nn.Linear(slot_in, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.track_proj = nn.Linear((num_frames - 1) * 2, dim)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.text_proj = nn.Linear(text_dim, dim) if text_dim > 0 else None
        layer = nn.TransformerEncoderLayer(dim, 4, dim * 2, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, (num_frames - 1) * 2))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)

    def encode(self, image: torch.Tensor, slot_masks: torch.Tensor, velocity0: torch.Tensor | None = None,
               driver: torch.Tensor | None = None, text: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Condition -> slot tokens ``(B, K, dim)`` and presence ``(B, K)``; run once per rollout."""
        cfg = self.config
        B, K, H, W = slot_masks.shape
        parts = [image, slot_masks.amax(1, keepdim=True)]
        if cfg.conditioning in ("velocity", "both"):
            parts.append(velocity0)
        if cfg.conditioning in ("driver", "both"):
            parts.append(driver)
        fmap = self.encoder(torch.cat(parts, 1))  # (B, C, H/4, W/4)
        small = F.adaptive_avg_pool2d(slot_masks, tuple(int(s) for s in fmap.shape[-2:]))  # (B, K, h, w); int sizes export to ONNX
        area_s = small.sum((-1, -2)).clamp_min(1e-6)
        own = torch.einsum("bkhw,bchw->bkc", small, fmap) / area_s[..., None]
        glob = fmap.mean((-1, -2))[:, None].expand(B, K, -1)
        area = slot_masks.sum((-1, -2))  # (B, K) pixels
        present = (area > 0).float()
        vv, uu = torch.meshgrid(torch.arange(H, device=image.device, dtype=image.dtype) + 0.5,
                                torch.arange(W, device=image.device, dtype=image.dtype) + 0.5, indexing="ij")
        denom = area.clamp_min(1.0)
        cu = (slot_masks * uu).sum((-1, -2)) / denom / W * 2 - 1
        cv = (slot_masks * vv).sum((-1, -2)) / denom / H * 2 - 1
        if cfg.conditioning in ("velocity", "both"):
            mv = torch.einsum("bkhw,bchw->bkc", slot_masks, velocity0[:, :2]) / denom[..., None]
        else:
            mv = torch.zeros(B, K, 2, device=image.device, dtype=image.dtype)
        tokens = self.slot_proj(torch.cat([own, glob, cu[..., None], cv[..., None], mv, (area / (H * W))[..., None], present[..., None]], -1))
        if self.text_proj is not None and text is not None:
            tokens = tokens + self.text_proj(text)[:, None]
        return {"tokens": tokens, "present": present}

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """``sample (B, K, T-1, 2)``, ``timestep (B,)`` in [0, 1000] -> prediction, same shape."""
        B, K, Tm1, _ = sample.shape
        temb = self.time_mlp(timestep_embedding(timestep, self.config.dim))
        h = cond["tokens"] + self.track_proj(sample.reshape(B, K, Tm1 * 2)) + temb[:, None]
        pad = cond["present"] < 0.5
        pad = pad & ~pad.all(1, keepdim=True)  # an all-empty scene attends to itself rather than to nothing
        # The layers are applied one by one instead of through TransformerEncoder's inference "fast
        # path", which converts padded batches to nested tensors and is 2-3x slower on CPU here.
        for layer in self.transformer.layers:
            h = h + layer._sa_block(layer.norm1(h), None, pad, is_causal=False)
            h = h + layer._ff_block(layer.norm2(h))
        return self.head(h).reshape(B, K, Tm1, 2)


class _ResBlock(nn.Module):
    """(2+1)D residual block: spatial 3x3 conv, FiLM from the embedding, temporal 3-tap conv."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1))
        self.film = nn.Linear(emb, 2 * cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0))
        self.c3 = nn.Conv3d(cout, cout, (1, 3, 3), padding=(0, 1, 1))
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(emb)[:, :, None, None, None].chunk(2, 1)
        h = self.n2(h) * (1 + scale) + shift
        h = self.c3(self.c2(F.silu(h)))
        return self.skip(x) + h


def add_unet_layers(module: nn.Module, in_ch: int, out_ch: int, channels: list[int], emb_dim: int, mid_blocks: int) -> None:
    """Give ``module`` the layers of a factorised (2+1)D conv UNet - ``inp``, ``down`` / ``downsample``
    (one level per entry of ``channels``, spatial stride 2 between levels), ``mid`` (+ ``mid2``),
    ``up``, ``out_norm``, ``out`` (zero-initialised) - run by :func:`unet_forward`. The attribute
    names are the checkpoints' weight names."""
    ch = list(channels)
    module.inp = nn.Conv3d(in_ch, ch[0], (1, 3, 3), padding=(0, 1, 1))
    module.down = nn.ModuleList()
    module.downsample = nn.ModuleList()
    for i, c in enumerate(ch):
        module.down.append(_ResBlock(ch[max(0, i - 1)], c, emb_dim))
        module.downsample.append(nn.Conv3d(c, c, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)) if i < len(ch) - 1 else nn.Identity())
    module.mid = _ResBlock(ch[-1], ch[-1], emb_dim)
    if mid_blocks == 2:
        module.mid2 = _ResBlock(ch[-1], ch[-1], emb_dim)
    elif mid_blocks != 1:
        raise ValueError(f"mid_blocks must be 1 or 2, got {mid_blocks!r}")
    module.up = nn.ModuleList()
    for i in reversed(range(len(ch))):
        cin = ch[-1] if i == len(ch) - 1 else ch[i + 1]
        module.up.append(_ResBlock(cin + ch[i], ch[i], emb_dim))
    module.out_norm = nn.GroupNorm(8, ch[0])
    module.out = nn.Conv3d(ch[0], out_ch, (1, 3, 3), padding=(0, 1, 1))
    nn.init.zeros_(module.out.weight)
    nn.init.zeros_(module.out.bias)


def unet_forward(module: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """The UNet of :func:`add_unet_layers` on input ``h (B, in_ch, T, H, W)`` with embedding ``emb (B, E)``."""
    h = module.inp(h)
    skips = []
    for block, ds in zip(module.down, module.downsample):
        h = block(h, emb)
        skips.append(h)
        h = ds(h)
    h = module.mid(h, emb)
    if hasattr(module, "mid2"):
        h = module.mid2(h, emb)
    for block in module.up:
        s = skips.pop()
        if h.shape[-2:] != s.shape[-2:]:
            h = F.interpolate(h, size=s.shape[-3:], mode="nearest")
        h = block(torch.cat([h, s], 1), emb)
    return module.out(F.silu(module.out_norm(h)))


class VideoDenoiser(ModelMixin, ConfigMixin):
    """Denoises ``sample (B, 3 + K, T, H, W)``: RGB in [-1, 1] and K object-mask channels in [-1, 1].

    ``cond (B, C_cond, T, H, W)`` is the concatenation built by :func:`video_condition` (first frame
    and its slot masks repeated over time, then the velocity mask and/or the driver mask).
    """

    @register_to_config
    def __init__(self, max_objects: int = 4, cond_channels: int = 10, channels: tuple[int, ...] = (32, 64, 64),
                 text_dim: int = 0, emb_dim: int = 128):
        super().__init__()
        out_ch = 3 + max_objects
        ch = list(channels)
        self.emb = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.text_proj = nn.Linear(text_dim, emb_dim) if text_dim > 0 else None
        add_unet_layers(self, out_ch + cond_channels, out_ch, ch, emb_dim, mid_blocks=1)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor,
                text: torch.Tensor | None = None) -> torch.Tensor:
        """``sample (B, 3+K, T, H, W)``, ``timestep (B,)`` in [0, 1000], ``cond (B, C, T, H, W)`` -> same shape as sample."""
        emb = self.emb(timestep_embedding(timestep, self.config.emb_dim))
        if self.text_proj is not None and text is not None:
            emb = emb + self.text_proj(text)
        return unet_forward(self, torch.cat([sample, cond], 1), emb)


def video_cond_channels(max_objects: int, conditioning: str) -> int:
    return 3 + max_objects + (3 if conditioning in ("velocity", "both") else 0) + (1 if conditioning in ("driver", "both") else 0)


def video_condition(image: torch.Tensor, slot_masks: torch.Tensor, velocity: torch.Tensor | None,
                    driver: torch.Tensor | None, num_frames: int) -> torch.Tensor:
    """Concatenate the video condition ``(B, C, T, H, W)``.

    Args:
        image: ``(B, 3, H, W)`` first frame in [-1, 1].
        slot_masks: ``(B, K, H, W)`` first-frame object masks.
        velocity: ``(B, T, 3, H, W)`` velocity mask (frames the model should not see are zero) or None.
        driver: ``(B, T, 1, H, W)`` driver mask or None.
        num_frames: ``T``.
    """
    first = torch.cat([image, slot_masks * 2 - 1], 1)[:, :, None].expand(-1, -1, num_frames, -1, -1)
    parts = [first]
    if velocity is not None:
        parts.append(velocity.transpose(1, 2))
    if driver is not None:
        parts.append(driver.transpose(1, 2) * 2 - 1)
    return torch.cat(parts, 1)
