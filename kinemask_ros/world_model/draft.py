"""Track-guided draft videos (Mask2IV's "mask trajectories, then video", made explicit).

The first frame's objects are cut out, the holes filled with the table colour, and each object is
pasted back shifted along its predicted track. The video denoiser then refines the draft from a
partially noised start (SDEdit-style), with the velocity mask rebuilt on every frame from the
draft's masks and the tracks' velocities (the stage-1 conditioning it was trained with).
"""

from __future__ import annotations

import torch


def shift_image(img: torch.Tensor, du: int, dv: int) -> torch.Tensor:
    """``img (..., H, W)`` moved by whole pixels ``(du, dv)`` (right, down); uncovered pixels are 0."""
    H, W = img.shape[-2:]
    out = torch.zeros_like(img)
    if abs(du) >= W or abs(dv) >= H:
        return out
    ys, yd = (slice(0, H - dv), slice(dv, H)) if dv >= 0 else (slice(-dv, H), slice(0, H + dv))
    xs, xd = (slice(0, W - du), slice(du, W)) if du >= 0 else (slice(-du, W), slice(0, W + du))
    out[..., yd, xd] = img[..., ys, xs]
    return out


def draft_video(image: torch.Tensor, slot_masks: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Compose a draft rollout.

    Args:
        image: ``(B, 3, H, W)`` first frame in [-1, 1].
        slot_masks: ``(B, K, H, W)`` first-frame object masks in {0, 1}.
        displacement: ``(B, K, Tv, 2)`` object displacement from frame 0 [px] per video frame
            (NaN for absent slots is allowed).

    Returns:
        ``(B, 3 + K, Tv, H, W)``: RGB in [-1, 1] and mask channels in {-1, 1}, the layout the video
        denoiser works in.
    """
    B, K, H, W = slot_masks.shape
    Tv = displacement.shape[2]
    anyobj = slot_masks.amax(1, keepdim=True)
    bg = torch.stack([
        image[b][:, anyobj[b, 0] < 0.5].median(-1).values if bool((anyobj[b, 0] < 0.5).any()) else image[b].flatten(1).median(-1).values
        for b in range(B)])
    base = image * (1 - anyobj) + bg[:, :, None, None] * anyobj
    disp = torch.nan_to_num(displacement, nan=0.0).round().to(torch.int64)
    out = torch.empty(B, 3 + K, Tv, H, W, dtype=image.dtype, device=image.device)
    for b in range(B):
        objects = [(k, slot_masks[b, k], image[b] * slot_masks[b, k]) for k in range(K) if bool(slot_masks[b, k].any())]
        for t in range(Tv):
            canvas = base[b].clone()
            masks = torch.zeros(K, H, W, dtype=image.dtype, device=image.device)
            for k, m0, rgb0 in objects:
                du, dv = int(disp[b, k, t, 0]), int(disp[b, k, t, 1])
                m = shift_image(m0, du, dv)
                canvas = canvas * (1 - m) + shift_image(rgb0, du, dv)
                masks[k] = m
            out[b, :3, t] = canvas
            out[b, 3:, t] = masks * 2 - 1
    return out


def mask_centroids(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``masks (..., H, W)`` in {0, 1} -> centroids ``(..., 2)`` [px, (u, v), pixel centres at +0.5]
    and a bool ``(...)`` "mask not empty" (empty masks give centroid 0)."""
    H, W = masks.shape[-2:]
    vv, uu = torch.meshgrid(torch.arange(H, device=masks.device) + 0.5, torch.arange(W, device=masks.device) + 0.5, indexing="ij")
    area = masks.sum((-1, -2))
    cent = torch.stack([(masks * uu).sum((-1, -2)), (masks * vv).sum((-1, -2))], -1) / area.clamp_min(1)[..., None]
    return cent, area > 0


def first_frame_velocity_mask(slot_masks: torch.Tensor, velocities: torch.Tensor | None, v_max: float) -> torch.Tensor:
    """KineMask's frame-0 velocity mask ``(B, 3, H, W)`` from slot masks ``(B, K, H, W)`` in {0, 1}
    and per-slot velocities ``(B, K, 2)`` [px/frame] (None = nothing moves): ch0/1 = velocity / v_max
    clipped to [-1, 1] inside each object, ch2 = 1 on every object."""
    B, _, H, W = slot_masks.shape
    v0 = torch.zeros(B, 3, H, W, device=slot_masks.device)
    if velocities is not None:
        v0[:, :2] = torch.einsum("bkhw,bkc->bchw", slot_masks, (velocities.float() / v_max).clamp(-1, 1))
    v0[:, 2] = slot_masks.amax(1)
    return v0


def split_draft(draft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A :func:`draft_video` ``(B, 3 + K, Tv, H, W)`` -> frames ``(B, Tv, 3, H, W)`` in [0, 1] and bool
    object masks ``(B, Tv, K, H, W)``."""
    return ((draft[:, :3] + 1) / 2).clamp(0, 1).transpose(1, 2), (draft[:, 3:] > 0).transpose(1, 2)


def velocity_mask_from_draft(draft_masks: torch.Tensor, velocities: torch.Tensor, v_max: float) -> torch.Tensor:
    """Full-sequence velocity mask ``(B, Tv, 3, H, W)`` from draft masks ``(B, K, Tv, H, W)`` in {0, 1}
    and per-frame object velocities ``(B, K, Tv, 2)`` [px/frame]."""
    v = (torch.nan_to_num(velocities, nan=0.0) / v_max).clamp(-1, 1)
    ch01 = torch.einsum("bkthw,bktc->btchw", draft_masks, v)
    ch2 = draft_masks.amax(1)[:, :, None]
    return torch.cat([ch01, ch2], 2)
