"""Generic colour names from a mean RGB, independent of the simulator's palette (pure numpy).

The rule works in OKLab / OKLCh (Björn Ottosson, 2020), a perceptual space whose hue angle is
nearly uniform also between blue and purple, where CIELAB bends. For sRGB in [0, 1]:

1. ``L, C, h`` = lightness (0..1), chroma (0..~0.32) and hue angle (degrees) in OKLCh.
2. Achromatic when ``C < ACHROMATIC_CHROMA`` (0.04), or very dark (``L < BLACK_LIGHTNESS``):
   ``black`` (L < 0.30), ``white`` (L >= 0.85), else ``grey``.
3. Otherwise the hue sector (``HUE_SECTORS``, degrees, start inclusive):
   pink [335, 10), red [10, 45), orange [45, 78), yellow [78, 120), green [120, 170),
   cyan [170, 220), blue [220, 285), purple [285, 335).
4. Lightness refinements: a dark orange/yellow (``35 <= h < 100`` and ``L < BROWN_LIGHTNESS``)
   is ``brown``; a very light red (``L >= PINK_LIGHTNESS``) is ``pink``.

Every palette colour of :mod:`kinemask_ros.palette` gets its own name (tested, also shaded
x0.75..x1.15), so :func:`~kinemask_ros.segmentation.targets.select_by_label` keeps working with
"red", "blue", ... on segmentations labelled by this rule. ``normalize_color_word`` maps common
synonyms (gray, violet, magenta, ...) onto the twelve names.
"""

from __future__ import annotations

import numpy as np

#: The names :func:`color_name` can return.
COLOR_NAMES: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown", "white", "grey", "black")

#: Hue sectors in OKLCh degrees: ``(start, name)``, each running to the next start (cyclic).
HUE_SECTORS: tuple[tuple[float, str], ...] = (
    (10.0, "red"),
    (45.0, "orange"),
    (78.0, "yellow"),
    (120.0, "green"),
    (170.0, "cyan"),
    (220.0, "blue"),
    (285.0, "purple"),
    (335.0, "pink"),
)
#: OKLCh chroma below which a colour is achromatic (black / grey / white).
ACHROMATIC_CHROMA = 0.04
#: Lightness below which any colour is black.
BLACK_LIGHTNESS = 0.20
#: Achromatic lightness limits: black below the first, white from the second.
ACHROMATIC_LIGHTNESS = (0.30, 0.85)
#: Orange/yellow hues (35..100 deg) darker than this are brown.
BROWN_LIGHTNESS = 0.52
BROWN_HUES = (35.0, 100.0)
#: Red hues at least this light are pink.
PINK_LIGHTNESS = 0.78

#: Words people use for the twelve names (lower case).
COLOR_SYNONYMS: dict[str, str] = {
    "gray": "grey", "silver": "grey", "violet": "purple", "magenta": "purple", "fuchsia": "purple", "lilac": "purple",
    "indigo": "purple", "navy": "blue", "teal": "cyan", "turquoise": "cyan", "aqua": "cyan", "lime": "green",
    "olive": "green", "gold": "yellow", "golden": "yellow", "crimson": "red", "maroon": "red", "scarlet": "red",
    "tan": "brown", "beige": "white", "cream": "white", "rose": "pink", "amber": "orange",
}

_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005]])
_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660]])


def srgb_to_linear(rgb) -> np.ndarray:
    """sRGB in [0, 1] ``(..., 3)`` -> linear RGB (float64, clipped to [0, 1] first)."""
    c = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_to_oklab(rgb) -> np.ndarray:
    """sRGB in [0, 1] ``(..., 3)`` -> OKLab ``(..., 3)`` = ``(L, a, b)``, L in [0, 1] (float64)."""
    lms = np.cbrt(srgb_to_linear(rgb) @ _M1.T)
    return lms @ _M2.T


def srgb_to_oklch(rgb) -> np.ndarray:
    """sRGB in [0, 1] ``(..., 3)`` -> OKLCh ``(..., 3)`` = ``(L, C, h)``, hue in degrees [0, 360)."""
    lab = srgb_to_oklab(rgb)
    c = np.hypot(lab[..., 1], lab[..., 2])
    h = np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360.0
    return np.stack([lab[..., 0], c, h], axis=-1)


def _hue_name(h: float) -> str:
    name = HUE_SECTORS[-1][1]  # below the first start: the last sector wraps around
    for start, n in HUE_SECTORS:
        if h >= start:
            name = n
    return name


def color_name(rgb) -> str:
    """Name of one colour: ``rgb`` = 3 numbers in [0, 1] (e.g. ``Segmentation.colors[i]``).

    Raises ``ValueError`` for anything but 3 finite numbers. Values outside [0, 1] are clipped.
    """
    try:
        c = np.asarray(rgb, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        c = np.zeros(0)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"color_name needs one RGB triple of finite numbers in [0, 1], got {rgb!r}")
    L, C, h = (float(x) for x in srgb_to_oklch(c))
    if L < BLACK_LIGHTNESS:
        return "black"
    if C < ACHROMATIC_CHROMA:
        lo, hi = ACHROMATIC_LIGHTNESS
        return "black" if L < lo else "white" if L >= hi else "grey"
    name = _hue_name(h)
    if BROWN_HUES[0] <= h < BROWN_HUES[1] and L < BROWN_LIGHTNESS:
        return "brown"
    if name == "red" and L >= PINK_LIGHTNESS:
        return "pink"
    return name


def color_names(colors) -> list[str | None]:
    """:func:`color_name` of every row of ``colors`` ``(K, 3)``; NaN rows (no image) give None."""
    a = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    return [color_name(c) if np.all(np.isfinite(c)) else None for c in a]


def normalize_color_word(word: str) -> str:
    """Lower-case ``word`` with :data:`COLOR_SYNONYMS` applied ("Gray" -> "grey"); other words unchanged."""
    w = word.strip().lower()
    return COLOR_SYNONYMS.get(w, w)
