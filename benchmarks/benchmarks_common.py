"""Shared helpers of the benchmark scripts."""

from __future__ import annotations

import os
import platform

import numpy as np
import torch


def machine() -> str:
    """One line naming the machine the numbers come from."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}")


def save_comparison_gif(path, truth: np.ndarray, videos: dict, stride: int, scale: int, fps: float = 4.0) -> None:
    """A GIF with one row per episode: the true frames, then each method's video.

    Args:
        truth: ``(N, T, H, W, 3)`` uint8 episode frames; the video frames are ``0, stride, ...``.
        videos: label -> ``(N, Tv, 3, H, W)`` float in [0, 1] (only the first ``N`` are shown).
    """
    from kinemask_ros.viz import grid, save_gif, upscale

    Tv = next(iter(videos.values())).shape[1]
    frames = []
    for t in range(Tv):
        tiles = []
        for j in range(len(truth)):
            tiles.append(upscale(truth[j, t * stride], scale))
            for v in videos.values():
                tiles.append(upscale((v[j, t].transpose(1, 2, 0) * 255).astype(np.uint8), scale))
        frames.append(grid(tiles, cols=1 + len(videos)))
    save_gif(path, frames, fps=fps)
    print(f"GIF (columns: truth, {', '.join(videos)}): {path}")
