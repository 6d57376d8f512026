"""KineMask velocity masks and InterDyn driver masks (DESIGN §3), as pure numpy functions.

Paper symbol -> name here:
    V (velocity mask, T x 3 x H x W)   -> ``encode_velocity_mask`` / ``encode_first_frame_velocity_mask``
    D (driver mask, T x 1 x H x W)     -> ``encode_driver_mask``
    k (last kept frame in stage 2)     -> ``keep_until`` in ``stage2_dropout`` / ``stage2_keep_until``
"""

from __future__ import annotations

import math

import numpy as np


def _check_vmax(v_max: float) -> None:
    if not (isinstance(v_max, (int, float, np.floating)) and math.isfinite(v_max) and v_max > 0):
        raise ValueError(f"v_max must be a finite number > 0 (pixels/frame), got {v_max!r}")


def encode_velocity_mask(instance_masks: np.ndarray, velocities: np.ndarray, v_max: float) -> np.ndarray:
    """Full-sequence velocity mask (stage-1 conditioning).

    Args:
        instance_masks: ``(T, H, W)`` integer ids: 0 background, ``1..K`` objects; any other id
            (e.g. the pusher, 255) is ignored.
        velocities: ``(T, K, 2)`` pixel velocity ``(vu, vv)`` [px/frame] of object ``k+1`` at frame ``t``.
        v_max: normalisation [px/frame]; values are clipped to [-1, 1].

    Returns:
        ``(T, 3, H, W)`` float32: ch0 = vu / v_max, ch1 = vv / v_max inside each object, ch2 = 1 on
        every object.
    """
    _check_vmax(v_max)
    m = np.asarray(instance_masks)
    v = np.asarray(velocities, dtype=np.float32)
    if m.ndim != 3:
        raise ValueError(f"instance_masks must be (T, H, W), got shape {m.shape}")
    if v.ndim != 3 or v.shape[0] != m.shape[0] or v.shape[2] != 2:
        raise ValueError(f"velocities must be (T, K, 2) with T={m.shape[0]}, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("velocities contain NaN or inf")
    T, H, W = m.shape
    K = v.shape[1]
    # Lookup table per frame: id -> (vu, vv, present); index 0 = background.
    lut = np.zeros((T, 256, 3), np.float32)
    lut[:, 1 : K + 1, :2] = np.clip(v / v_max, -1.0, 1.0)
    lut[:, 1 : K + 1, 2] = 1.0
    ids = np.where((m >= 1) & (m <= K), m, 0).astype(np.int64)
    out = lut[np.arange(T)[:, None, None], ids]  # (T, H, W, 3)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def encode_first_frame_velocity_mask(instance_mask: np.ndarray, velocities: np.ndarray, v_max: float, num_frames: int) -> np.ndarray:
    """Inference-time velocity mask: frame 0 only (DESIGN §3), frames ``1..T-1`` zero.

    Args:
        instance_mask: ``(H, W)`` ids of the first frame.
        velocities: ``(K, 2)`` planned post-contact velocity [px/frame] per object (zeros = still).
        v_max: normalisation [px/frame].
        num_frames: ``T``.

    Returns:
        ``(T, 3, H, W)`` float32.
    """
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")
    m = np.asarray(instance_mask)
    if m.ndim != 2:
        raise ValueError(f"instance_mask must be (H, W), got shape {m.shape}")
    v = np.asarray(velocities, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != 2:
        raise ValueError(f"velocities must be (K, 2), got shape {v.shape}")
    first = encode_velocity_mask(m[None], v[None], v_max)
    out = np.zeros((num_frames,) + first.shape[1:], np.float32)
    out[0] = first[0]
    return out


def stage2_dropout(velocity_mask: np.ndarray, keep_until: int) -> np.ndarray:
    """Stage-2 conditioning: keep frames ``0..keep_until`` and zero the rest.

    Works on ``(T, C, H, W)`` or batched ``(B, T, C, H, W)`` arrays (numpy or torch).
    ``keep_until = 0`` is the inference setting (first frame only).
    """
    if not isinstance(keep_until, (int, np.integer)) or keep_until < 0:
        raise ValueError(f"keep_until must be an int >= 0, got {keep_until!r}")
    if velocity_mask.ndim not in (4, 5):
        raise ValueError(f"velocity_mask must be (T, C, H, W) or (B, T, C, H, W), got {tuple(velocity_mask.shape)}")
    out = velocity_mask.clone() if hasattr(velocity_mask, "clone") else np.array(velocity_mask, copy=True)
    t_axis = velocity_mask.ndim - 4
    index = [slice(None)] * velocity_mask.ndim
    index[t_axis] = slice(keep_until + 1, None)
    out[tuple(index)] = 0
    return out


def stage2_keep_until(step: int, total_steps: int, num_frames: int, final_fraction: float = 0.3) -> int:
    """Annealed ``k`` for stage 2: from ``T-1`` (all frames) at step 0 linearly down to 0.

    The last ``final_fraction`` of stage 2 trains with ``k = 0`` only (the inference setting).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps!r}")
    if not 0.0 <= final_fraction < 1.0:
        raise ValueError(f"final_fraction must be in [0, 1), got {final_fraction!r}")
    ramp = total_steps * (1.0 - final_fraction)
    frac = min(1.0, max(0.0, step / ramp)) if ramp > 0 else 1.0
    return int(round((num_frames - 1) * (1.0 - frac)))


def encode_driver_mask(pusher_px: np.ndarray, radius_px: float, height: int, width: int) -> np.ndarray:
    """Pusher footprint per frame (InterDyn's driving-entity mask).

    Args:
        pusher_px: ``(T, 2)`` pusher centre in continuous pixel coordinates (u, v); NaN = not in view.
        radius_px: footprint radius [px].
        height, width: image size.

    Returns:
        ``(T, 1, H, W)`` float32 in {0, 1}.
    """
    p = np.asarray(pusher_px, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pusher_px must be (T, 2), got shape {p.shape}")
    if not (math.isfinite(radius_px) and radius_px > 0):
        raise ValueError(f"radius_px must be > 0, got {radius_px!r}")
    vv, uu = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    d2 = (uu[None] - p[:, 0, None, None]) ** 2 + (vv[None] - p[:, 1, None, None]) ** 2
    # Always cover the pixel the centre falls in: that pixel's centre is at most sqrt(1/2) px
    # away (centre on a pixel corner), so a smaller radius could leave the mask empty.
    r = max(float(radius_px), math.sqrt(0.5))
    out = (d2 <= r * r).astype(np.float32)
    out[~np.all(np.isfinite(p), axis=1)] = 0.0
    return out[:, None]
