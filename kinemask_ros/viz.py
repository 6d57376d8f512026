"""Small picture helpers: upscaling, overlays, grids, GIF/PNG writing (numpy + imageio only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscale of ``(..., H, W, C)`` or ``(..., H, W)`` by an integer factor."""
    if factor == 1:
        return img
    img = np.repeat(img, factor, axis=-2 if img.ndim >= 3 and img.shape[-1] in (1, 3, 4) else -1)
    if img.ndim >= 3 and img.shape[-1] in (1, 3, 4):
        return np.repeat(img, factor, axis=-3)
    return np.repeat(img, factor, axis=-2)


def colorize_ids(ids: np.ndarray) -> np.ndarray:
    """Instance ids ``(..., H, W)`` -> RGB uint8 with a fixed colour per id (0 black, 255 grey)."""
    lut = np.zeros((256, 3), np.uint8)
    rng = np.random.default_rng(7)
    lut[1:255] = rng.integers(60, 255, (254, 3))
    lut[255] = (128, 128, 128)
    return lut[np.asarray(ids, dtype=np.uint8)]


def velocity_to_rgb(vm: np.ndarray) -> np.ndarray:
    """Velocity mask ``(3, H, W)`` -> RGB uint8 (red/green = +/- u/v, blue = object extent)."""
    u, v, ext = vm
    rgb = np.stack([0.5 + 0.5 * u, 0.5 + 0.5 * v, 0.35 * ext], axis=-1) * (ext[..., None] > 0)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def grid(tiles: list[np.ndarray], cols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Arrange equal-size ``(H, W, 3)`` uint8 tiles row-major into one image."""
    if not tiles:
        raise ValueError("grid() needs at least one tile")
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), pad_value, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = t
    return out


def save_gif(path: str | Path, frames: list[np.ndarray] | np.ndarray, fps: float = 8.0) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames as a looping GIF."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # imageio >= 2.28 (pillow plugin) takes the GIF frame duration in milliseconds; seconds here
    # gave 0 ms frames that viewers play at their own default speed.
    imageio.mimsave(path, [np.asarray(f, np.uint8) for f in frames], duration=1000.0 / fps, loop=0)
    return path


def save_png(path: str | Path, img: np.ndarray) -> Path:
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, np.asarray(img, np.uint8))
    return path
