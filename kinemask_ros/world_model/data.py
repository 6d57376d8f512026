"""Dataset episodes -> training tensors, with the augmentations the model is trained with.

All conversions of dataset arrays into model inputs live here, so training, evaluation and the
pipeline build exactly the same tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kinemask_ros.velocity_mask import encode_velocity_mask
from kinemask_ros.world_model.config import WorldModelConfig


def slot_masks_from_ids(ids: np.ndarray, max_objects: int) -> np.ndarray:
    """Instance ids ``(..., H, W)`` -> one channel per slot ``(..., K, H, W)`` float32 in {0, 1}."""
    ids = np.asarray(ids)
    k = np.arange(1, max_objects + 1, dtype=ids.dtype).reshape((max_objects,) + (1,) * 2)
    return (ids[..., None, :, :] == k).astype(np.float32)


def dihedral(kind: int, H: int, W: int):
    """One of the 8 symmetries of the square image (top-down camera: physics is symmetric too).

    Returns functions that apply it to images ``(..., H, W[, C])`` given the axis of H, to points
    ``(..., 2)`` in continuous (u, v) pixels, and to vectors ``(..., 2)``.
    """
    transpose, flip_w, flip_h = bool(kind & 4), bool(kind & 1), bool(kind & 2)
    if transpose and H != W:
        raise ValueError("transposition needs square images")

    def img(a: np.ndarray, h_axis: int) -> np.ndarray:
        w_axis = h_axis + 1
        if transpose:
            a = np.swapaxes(a, h_axis, w_axis)
        if flip_w:
            a = np.flip(a, w_axis)
        if flip_h:
            a = np.flip(a, h_axis)
        return np.ascontiguousarray(a)

    def vec(v: np.ndarray) -> np.ndarray:
        v = v[..., ::-1] if transpose else v
        sign = np.array([-1.0 if flip_w else 1.0, -1.0 if flip_h else 1.0], np.float32)
        return (v * sign).astype(np.float32)

    def pts(p: np.ndarray) -> np.ndarray:
        p = p[..., ::-1] if transpose else p
        out = np.array(p, dtype=np.float32, copy=True)
        if flip_w:
            out[..., 0] = W - out[..., 0]
        if flip_h:
            out[..., 1] = H - out[..., 1]
        return out

    return img, pts, vec


def morph_ids(ids: np.ndarray, dilate: bool) -> np.ndarray:
    """3x3 dilation (objects grow into background) or erosion (boundary pixels -> 0) of an id map ``(H, W)``."""
    p = np.pad(ids, 1, mode="edge")
    H, W = ids.shape
    shifts = [p[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    if dilate:
        out = ids.copy()
        for s in shifts:
            out = np.where((out == 0) & (s != 0) & (s != 255), s, out)
        return out
    keep = np.all([s == ids for s in shifts], axis=0)
    return np.where(keep, ids, 0).astype(ids.dtype)


@dataclass
class Augment:
    """Training-time randomness: dihedral symmetries and Mask2IV's random dilate/erode (p = 0.2)."""

    dihedral: bool = True
    morph_prob: float = 0.2


class EpisodeTensors:
    """Holds a loaded dataset in memory and builds batches of model inputs.

    Batch keys and shapes (``T`` = config.num_frames, ``K`` = config.max_objects):
        ``image (B, 3, H, W)`` first frame in [-1, 1]; ``frames (B, T, 3, H, W)`` in [-1, 1];
        ``slot_masks (B, T, K, H, W)`` ground-truth masks; ``cond_slot_masks (B, K, H, W)`` first-frame
        masks as the condition sees them (maybe dilated/eroded); ``velocity (B, T, 3, H, W)`` full
        velocity mask; ``driver (B, T, 1, H, W)``; ``tracks (B, K, T-1, 2)`` displacement [px] of each
        object's centre from frame 0; ``present (B, K)``; ``collided (B,)``; ``moving (B, T, H, W)``
        pixels of objects that move (or the pusher): the contact/interaction region.
    """

    def __init__(self, data: dict, config: WorldModelConfig):
        T, H, W = data["frames"].shape[1:4]
        if (H, W) != (config.height, config.width):
            raise ValueError(f"dataset images are {H}x{W} but the model config is {config.height}x{config.width}")
        if T < config.num_frames:
            raise ValueError(f"dataset episodes have {T} frames, the model needs {config.num_frames}")
        if data["states"].shape[2] > config.max_objects:
            raise ValueError(f"dataset has up to {data['states'].shape[2]} objects, the model only {config.max_objects} slots")
        self.data = data
        self.config = config
        self.n = len(data["frames"])
        self.texts = [m["text"] for m in data.get("meta", [])] or None
        self.text_emb: np.ndarray | None = None  # (N, text_dim) when the model is text-conditioned

    def attach_text_embeddings(self, encoder, cache: str | Path | None = None) -> None:
        """Embed every episode's description once (cached to ``cache`` as .npy)."""
        if self.texts is None:
            raise ValueError("the dataset has no descriptions (meta) to embed")
        if cache is not None and Path(cache).exists():
            emb = np.load(cache)
            if emb.shape[0] == self.n:
                self.text_emb = emb
                return
        self.text_emb = encoder.encode(self.texts).astype(np.float32)
        if cache is not None:
            np.save(cache, self.text_emb)

    @classmethod
    def from_dir(cls, root: str | Path, config: WorldModelConfig, max_episodes: int | None = None) -> "EpisodeTensors":
        from kinemask_ros.sim_bridge.dataset import load_dataset

        return cls(load_dataset(root, max_episodes=max_episodes), config)

    def batch(self, index: np.ndarray, rng: np.random.Generator | None = None, augment: Augment | None = None,
              with_video: bool = True) -> dict[str, torch.Tensor]:
        cfg, d = self.config, self.data
        T, K, H, W = cfg.num_frames, cfg.max_objects, cfg.height, cfg.width
        out: dict[str, list] = {k: [] for k in ("image", "frames", "slot_masks", "cond_slot_masks", "velocity", "driver",
                                                "tracks", "present", "collided", "moving", "velocity0")}
        for i in np.asarray(index):
            frames = d["frames"][i, :T]
            masks = d["masks"][i, :T]
            driver = d["driver"][i, :T]
            cents = d["centroids_px"][i, :T]
            vel = d["velocities_px"][i, :T]
            nobj = int(d["num_objects"][i])
            kind = int(rng.integers(8)) if (augment and augment.dihedral and rng is not None) else 0
            img, pts, vec = dihedral(kind, H, W)
            frames, masks = img(frames, 1), img(masks, 1)
            cents, vel = pts(cents), vec(vel)
            driver = img(driver, 1)[:, None].astype(np.float32)
            cond_ids = masks[0]
            if augment and rng is not None and rng.random() < augment.morph_prob:
                cond_ids = morph_ids(cond_ids, dilate=bool(rng.random() < 0.5))
            kv = np.zeros((T, K, 2), np.float32)
            kv[:, :nobj] = vel[:, :nobj]
            if with_video:
                velocity = encode_velocity_mask(np.concatenate([cond_ids[None], masks[1:]]), kv, cfg.v_max)
            else:
                velocity = encode_velocity_mask(cond_ids[None], kv[:1], cfg.v_max)
            tr = np.zeros((K, T - 1, 2), np.float32)
            tr[:nobj] = np.transpose(cents[1:, :nobj] - cents[:1, :nobj], (1, 0, 2))
            present = np.zeros(K, np.float32)
            present[:nobj] = 1
            disp = np.linalg.norm(cents[-1, :nobj] - cents[0, :nobj], axis=-1)
            moving_ids = [k + 1 for k in range(nobj) if disp[k] > 0.5] + [255]
            if with_video:
                out["moving"].append(np.isin(masks, moving_ids).astype(np.float32))
                out["frames"].append(frames.transpose(0, 3, 1, 2))
                out["slot_masks"].append(slot_masks_from_ids(masks, K))
                out["velocity"].append(velocity)
            out["image"].append(frames[0].transpose(2, 0, 1))
            out["cond_slot_masks"].append(slot_masks_from_ids(cond_ids, K))
            out["velocity0"].append(velocity[0])
            out["driver"].append(driver)
            out["tracks"].append(tr)
            out["present"].append(present)
            out["collided"].append(float(d["collided"][i]))
        b = {k: torch.from_numpy(np.stack(v)) for k, v in out.items() if v}
        if self.text_emb is not None:
            b["text"] = torch.from_numpy(self.text_emb[np.asarray(index)])
        b["image"] = b["image"].float() / 127.5 - 1
        if with_video:
            b["frames"] = b["frames"].float() / 127.5 - 1
        b["collided"] = b["collided"].float()
        return b
