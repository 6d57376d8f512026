"""World-model fidelity metrics (DESIGN §5): PSNR, SSIM, mask IoU, centroid errors, interaction
direction, and InterDyn's motion fidelity (eq. 1-2 of 004_). Pure numpy."""

from __future__ import annotations

import math

import numpy as np


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR [dB] of two images/videos with values in ``[0, data_range]`` (any matching shape)."""
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _gauss_filter(img: np.ndarray, sigma: float = 1.5, radius: int = 3) -> np.ndarray:
    x = np.arange(-radius, radius + 1)
    k = np.exp(-(x**2) / (2 * sigma**2))
    k /= k.sum()
    pad = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(radius, radius), (radius, radius)], mode="reflect")
    tmp = sum(k[i] * pad[..., :, i : i + img.shape[-1]] for i in range(len(k)))
    return sum(k[i] * tmp[..., i : i + img.shape[-2], :] for i in range(len(k)))


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM (Gaussian window sigma 1.5, Wang et al. 2004) over ``(..., H, W)`` arrays.

    Channels are treated as separate images (pass ``(C, H, W)`` or ``(T, C, H, W)``).
    """
    x = np.asarray(pred, np.float64)
    y = np.asarray(target, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {x.shape} and {y.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _gauss_filter(x), _gauss_filter(y)
    sxx = _gauss_filter(x * x) - mx * mx
    syy = _gauss_filter(y * y) - my * my
    sxy = _gauss_filter(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def mask_iou(pred: np.ndarray, target: np.ndarray) -> float:
    """IoU of two boolean masks; NaN when both are empty."""
    p, t = np.asarray(pred, bool), np.asarray(target, bool)
    union = np.logical_or(p, t).sum()
    return float("nan") if union == 0 else float(np.logical_and(p, t).sum() / union)


def tracklet_corr(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """InterDyn eq. 2: mean cosine of per-frame displacements of tracklets ``(F+1, 2)``.

    Frames where either tracklet does not move (|displacement| < eps) count as 0 (no agreement).
    """
    va, vb = np.diff(np.asarray(a, float), axis=0), np.diff(np.asarray(b, float), axis=0)
    na, nb = np.linalg.norm(va, axis=1), np.linalg.norm(vb, axis=1)
    ok = (na > eps) & (nb > eps)
    cos = np.zeros(len(va))
    cos[ok] = (va[ok] * vb[ok]).sum(1) / (na[ok] * nb[ok])
    return float(cos.mean()) if len(va) else float("nan")


def motion_fidelity(true_tracks: list[np.ndarray], pred_tracks: list[np.ndarray]) -> float:
    """InterDyn eq. 1 over two sets of tracklets (each ``(F+1, 2)``); NaN if either set is empty.

    Our tracklets are object centroid tracks (rigid objects: every point of a non-rotating object
    shares its centroid's displacement), in place of CoTracker3 point tracks.
    """
    if not true_tracks or not pred_tracks:
        return float("nan")
    c = np.array([[tracklet_corr(t, p) for p in pred_tracks] for t in true_tracks])
    return float(c.max(0).mean() + c.max(1).mean())


def direction_correct(pred_disp: np.ndarray, true_disp: np.ndarray, min_move_px: float = 0.5, max_angle_deg: float = 45.0) -> bool:
    """Interaction direction: the predicted displacement moves at least ``min_move_px`` and within
    ``max_angle_deg`` of the true displacement."""
    p, t = np.asarray(pred_disp, float), np.asarray(true_disp, float)
    if np.linalg.norm(p) < min_move_px or np.linalg.norm(t) < 1e-9:
        return False
    cos = float(p @ t / (np.linalg.norm(p) * np.linalg.norm(t)))
    return cos >= math.cos(math.radians(max_angle_deg))


def centroids_from_masks(masks: np.ndarray) -> np.ndarray:
    """``(T, K, H, W)`` bool -> ``(T, K, 2)`` centroids (u, v), NaN where a mask is empty."""
    m = np.asarray(masks, bool)
    T, K, H, W = m.shape
    vv, uu = np.mgrid[0:H, 0:W] + 0.5
    area = m.sum((-1, -2))
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (m * uu).sum((-1, -2)) / area
        v = (m * vv).sum((-1, -2)) / area
    out = np.stack([u, v], -1)
    out[area == 0] = np.nan
    return out
