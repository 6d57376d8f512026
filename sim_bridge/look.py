"""Appearance of the simulated tabletop: object and table colours, table texture, light, sensor noise.

:class:`LookConfig` is a distribution, :class:`Look` one draw of it (per episode, from a seeded
``numpy.random.Generator``), applied with :meth:`TabletopScene.apply_look`.

* :meth:`LookConfig.canonical` (the default, and the training default): today's look. Objects in
  their palette colours (:data:`kinemask_ros.palette.PALETTE`), the flat table colour, the fixed
  light, no noise. Sampling it draws nothing from the rng and renders bit-identical images.
* :meth:`LookConfig.randomized`: object colours from a continuous HSV distribution (kept apart
  from the table colour by ``min_contrast``), table colour and a procedural texture (value noise,
  checker, wood-like stripes) fixed to the table plane, light direction and intensity, a
  white-balance gain, and per-frame sensor noise: Gaussian RGB noise, depth noise growing with
  distance squared, and depth holes (NaN or 0), like a real RGB-D camera.

Pure numpy (no pybullet, no rclpy): the scene turns a :class:`Look` into pybullet colours and
light arguments and composes the textured table itself.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from kinemask_ros.palette import TABLE_RGB

#: Light of today's renders (TabletopScene.render before looks existed).
CANONICAL_LIGHT_DIRECTION = (0.3, -0.4, 1.0)
CANONICAL_AMBIENT = 0.65
CANONICAL_DIFFUSE = 0.45
CANONICAL_SPECULAR = 0.0
TEXTURES = ("flat", "noise", "checker", "wood")
OBJECT_COLOR_MODES = ("palette", "hsv")
DEPTH_HOLE_VALUES = ("nan", "zero")
MAX_OBJECT_SLOTS = 8

Range = tuple[float, float]


def _check_range(name: str, r, lo: float, hi: float) -> None:
    if not (isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r)):
        raise ValueError(f"LookConfig.{name} must be a (low, high) pair of numbers, got {r!r}")
    a, b = r
    if not (math.isfinite(a) and math.isfinite(b) and lo <= a <= b <= hi):
        raise ValueError(f"LookConfig.{name} must satisfy {lo:g} <= low <= high <= {hi:g}, got {tuple(r)!r}")


def _rgb(name: str, v) -> None:
    if not (isinstance(v, (tuple, list)) and len(v) == 3 and all(isinstance(c, (int, float)) and math.isfinite(c) and 0 <= c <= 1 for c in v)):
        raise ValueError(f"{name} must be 3 numbers in [0, 1], got {v!r}")


def _u(rng: np.random.Generator, r: Range) -> float:
    """Uniform draw; a degenerate range returns its value without touching ``rng``."""
    lo, hi = float(r[0]), float(r[1])
    return lo if lo == hi else float(rng.uniform(lo, hi))


@dataclass(frozen=True)
class Look:
    """One sampled appearance (all colours RGB in [0, 1]).

    Attributes:
        object_rgb: colour per object slot (instance id ``i`` gets ``object_rgb[i - 1]``), or
            ``None`` = each object's palette colour (``ObjectSpec.color``).
        table_rgb: mean table colour.
        table_texture: one of :data:`TEXTURES`; ``texture_scale`` [m] (period / feature size),
            ``texture_angle`` [rad], ``texture_contrast`` (0 = flat), ``texture_phase`` (offsets).
        light_direction: direction *towards* the light (table frame), ``light_ambient``,
            ``light_diffuse``, ``light_specular``: pybullet TinyRenderer coefficients.
        rgb_gain: per-channel gain applied to the rendered image (white balance / exposure).
        rgb_noise_std: Gaussian noise on RGB [levels of 255], new every frame.
        depth_noise_std: depth noise [m] at 1 m; the std grows with depth squared.
        depth_hole_fraction: fraction of depth pixels dropped per frame, set to NaN or 0
            (``depth_hole_value``).
        noise_seed: seed of the per-frame noise stream.
    """

    object_rgb: tuple[tuple[float, float, float], ...] | None = None
    table_rgb: tuple[float, float, float] = TABLE_RGB
    table_texture: str = "flat"
    texture_scale: float = 0.05
    texture_angle: float = 0.0
    texture_contrast: float = 0.0
    texture_phase: tuple[float, float] = (0.0, 0.0)
    light_direction: tuple[float, float, float] = CANONICAL_LIGHT_DIRECTION
    light_ambient: float = CANONICAL_AMBIENT
    light_diffuse: float = CANONICAL_DIFFUSE
    light_specular: float = CANONICAL_SPECULAR
    rgb_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgb_noise_std: float = 0.0
    depth_noise_std: float = 0.0
    depth_hole_fraction: float = 0.0
    depth_hole_value: str = "nan"
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.object_rgb is not None:
            if len(self.object_rgb) < 1:
                raise ValueError("Look.object_rgb must hold at least one colour, or be None for palette colours")
            for i, c in enumerate(self.object_rgb):
                _rgb(f"Look.object_rgb[{i}]", c)
        _rgb("Look.table_rgb", self.table_rgb)
        if self.table_texture not in TEXTURES:
            raise ValueError(f"Look.table_texture must be one of {TEXTURES}, got {self.table_texture!r}")
        if not (math.isfinite(self.texture_scale) and self.texture_scale > 0):
            raise ValueError(f"Look.texture_scale must be > 0 m, got {self.texture_scale!r}")
        if not (0.0 <= self.texture_contrast <= 1.0):
            raise ValueError(f"Look.texture_contrast must be in [0, 1], got {self.texture_contrast!r}")
        d = np.asarray(self.light_direction, dtype=float)
        if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) < 1e-9:
            raise ValueError(f"Look.light_direction must be 3 finite numbers, not all zero, got {self.light_direction!r}")
        for name in ("light_ambient", "light_diffuse", "light_specular", "rgb_noise_std", "depth_noise_std"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"Look.{name} must be >= 0, got {v!r}")
        g = np.asarray(self.rgb_gain, dtype=float)
        if g.shape != (3,) or not np.all(np.isfinite(g) & (g > 0)):
            raise ValueError(f"Look.rgb_gain must be 3 numbers > 0, got {self.rgb_gain!r}")
        if not (0.0 <= self.depth_hole_fraction <= 0.5):
            raise ValueError(f"Look.depth_hole_fraction must be in [0, 0.5], got {self.depth_hole_fraction!r}")
        if self.depth_hole_value not in DEPTH_HOLE_VALUES:
            raise ValueError(f"Look.depth_hole_value must be one of {DEPTH_HOLE_VALUES}, got {self.depth_hole_value!r}")

    @property
    def is_canonical(self) -> bool:
        """True when rendering with this look equals today's (palette) render."""
        return self == Look()

    @property
    def has_sensor_noise(self) -> bool:
        return self.rgb_noise_std > 0 or self.depth_noise_std > 0 or self.depth_hole_fraction > 0

    def object_color(self, instance_id: int, palette_rgb: tuple[float, float, float]) -> tuple[float, float, float]:
        """Colour of object ``instance_id`` (1-based): the look's slot colour, else its palette colour."""
        if self.object_rgb is None:
            return tuple(palette_rgb)
        return tuple(self.object_rgb[(instance_id - 1) % len(self.object_rgb)])

    def table_albedo(self, xy: np.ndarray) -> np.ndarray:
        """Table colour ``(..., 3)`` in [0, 1] at table points ``xy`` ``(..., 2)`` [m] (texture fixed to the table)."""
        xy = np.asarray(xy, dtype=float)
        base = np.asarray(self.table_rgb, dtype=float)
        if self.table_texture == "flat" or self.texture_contrast == 0.0:
            return np.broadcast_to(base, xy.shape[:-1] + (3,)).copy()
        c, s = math.cos(self.texture_angle), math.sin(self.texture_angle)
        a = (c * xy[..., 0] + s * xy[..., 1]) / self.texture_scale + self.texture_phase[0]
        b = (-s * xy[..., 0] + c * xy[..., 1]) / self.texture_scale + self.texture_phase[1]
        k = self.texture_contrast
        if self.table_texture == "checker":
            m = np.where((np.floor(a) + np.floor(b)) % 2 == 0, 1.0, 1.0 - k)
        elif self.table_texture == "wood":  # stripes along b, gently wavy, with fine grain
            w = a + 0.35 * np.sin(2 * math.pi * b / 3.1 + self.texture_phase[1])
            m = 1.0 - k * (0.5 + 0.5 * np.sin(2 * math.pi * w)) ** 3 - 0.15 * k * np.sin(2 * math.pi * 7.3 * w) ** 2
        else:  # "noise": smooth value noise from a few rotated sinusoids
            m = np.zeros(xy.shape[:-1])
            for i, (fa, fb) in enumerate(((1.0, 0.31), (-0.43, 1.17), (2.3, -1.9), (-3.7, 2.9))):
                m += np.sin(2 * math.pi * (fa * a + fb * b) + 1.7 * i + self.texture_phase[0]) / (1 + i)
            m = 1.0 + k * 0.5 * m / 2.08
        return np.clip(base * m[..., None], 0.0, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LookConfig:
    """Distribution of :class:`Look` (ranges are ``(low, high)``, sampled uniformly).

    Attributes:
        object_colors: "palette" (each object's palette colour) or "hsv" (sampled per slot).
        object_hue_range, object_saturation_range, object_value_range: HSV ranges in [0, 1].
        min_contrast: minimum RGB distance between an object and the table colour (resampled).
        table_rgb: a fixed table colour, or ``None`` to sample it from the table HSV ranges.
        table_hue_range, table_saturation_range, table_value_range: HSV ranges of the table.
        table_textures: textures to choose from (:data:`TEXTURES`).
        texture_scale_range [m], texture_contrast_range: texture period and strength.
        light_direction: a fixed direction towards the light, or ``None`` to sample it from
            ``light_elevation_deg_range`` / ``light_azimuth_deg_range``.
        ambient_range, diffuse_range, specular_range: TinyRenderer light coefficients.
        rgb_gain_range: per-channel gain (white balance), drawn independently per channel.
        rgb_noise_std_range [levels], depth_noise_std_range [m at 1 m], depth_hole_fraction_range.
        depth_hole_value: "nan" or "zero" for dropped depth pixels.
    """

    object_colors: str = "palette"
    object_hue_range: Range = (0.0, 1.0)
    object_saturation_range: Range = (0.35, 1.0)
    object_value_range: Range = (0.35, 1.0)
    min_contrast: float = 0.25
    table_rgb: tuple[float, float, float] | None = TABLE_RGB
    table_hue_range: Range = (0.0, 1.0)
    table_saturation_range: Range = (0.0, 0.35)
    table_value_range: Range = (0.35, 0.9)
    table_textures: tuple[str, ...] = ("flat",)
    texture_scale_range: Range = (0.05, 0.05)
    texture_contrast_range: Range = (0.0, 0.0)
    light_direction: tuple[float, float, float] | None = CANONICAL_LIGHT_DIRECTION
    light_elevation_deg_range: Range = (35.0, 90.0)
    light_azimuth_deg_range: Range = (0.0, 360.0)
    ambient_range: Range = (CANONICAL_AMBIENT, CANONICAL_AMBIENT)
    diffuse_range: Range = (CANONICAL_DIFFUSE, CANONICAL_DIFFUSE)
    specular_range: Range = (CANONICAL_SPECULAR, CANONICAL_SPECULAR)
    rgb_gain_range: Range = (1.0, 1.0)
    rgb_noise_std_range: Range = (0.0, 0.0)
    depth_noise_std_range: Range = (0.0, 0.0)
    depth_hole_fraction_range: Range = (0.0, 0.0)
    depth_hole_value: str = "nan"

    def __post_init__(self) -> None:
        for f in fields(self):  # lists from JSON / ROS parameters -> tuples
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        if self.object_colors not in OBJECT_COLOR_MODES:
            raise ValueError(f"LookConfig.object_colors must be one of {OBJECT_COLOR_MODES}, got {self.object_colors!r}")
        for name in ("object_hue_range", "object_saturation_range", "object_value_range", "table_hue_range",
                     "table_saturation_range", "table_value_range", "texture_contrast_range"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        _check_range("texture_scale_range", self.texture_scale_range, 1e-3, 10.0)
        _check_range("light_elevation_deg_range", self.light_elevation_deg_range, 1.0, 90.0)
        _check_range("light_azimuth_deg_range", self.light_azimuth_deg_range, -360.0, 720.0)
        for name in ("ambient_range", "diffuse_range", "specular_range"):
            _check_range(name, getattr(self, name), 0.0, 2.0)
        _check_range("rgb_gain_range", self.rgb_gain_range, 0.1, 10.0)
        _check_range("rgb_noise_std_range", self.rgb_noise_std_range, 0.0, 64.0)
        _check_range("depth_noise_std_range", self.depth_noise_std_range, 0.0, 0.1)
        _check_range("depth_hole_fraction_range", self.depth_hole_fraction_range, 0.0, 0.5)
        if not (math.isfinite(self.min_contrast) and 0.0 <= self.min_contrast <= 1.0):
            raise ValueError(f"LookConfig.min_contrast must be in [0, 1], got {self.min_contrast!r}")
        if self.table_rgb is not None:
            _rgb("LookConfig.table_rgb", self.table_rgb)
        if not self.table_textures or any(t not in TEXTURES for t in self.table_textures):
            raise ValueError(f"LookConfig.table_textures must be a non-empty subset of {TEXTURES}, got {self.table_textures!r}")
        if self.light_direction is not None:
            d = np.asarray(self.light_direction, dtype=float)
            if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) < 1e-9:
                raise ValueError(f"LookConfig.light_direction must be 3 finite numbers (not all 0) or None, got {self.light_direction!r}")
        if self.depth_hole_value not in DEPTH_HOLE_VALUES:
            raise ValueError(f"LookConfig.depth_hole_value must be one of {DEPTH_HOLE_VALUES}, got {self.depth_hole_value!r}")

    @classmethod
    def canonical(cls) -> "LookConfig":
        """Today's palette look (the training default): sampling it always gives ``Look()``."""
        return cls()

    @classmethod
    def randomized(cls, **overrides) -> "LookConfig":
        """Continuous object colours, random table colour/texture, light and sensor noise."""
        kw = dict(object_colors="hsv", table_rgb=None, table_textures=TEXTURES, texture_scale_range=(0.02, 0.12),
                  texture_contrast_range=(0.05, 0.3), light_direction=None, ambient_range=(0.45, 0.8),
                  diffuse_range=(0.2, 0.6), specular_range=(0.0, 0.15), rgb_gain_range=(0.9, 1.1), rgb_noise_std_range=(0.0, 4.0),
                  depth_noise_std_range=(0.0005, 0.003), depth_hole_fraction_range=(0.0, 0.01))
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def named(cls, name: str) -> "LookConfig":
        """``"canonical"`` or ``"randomized"`` (the values of the sim bridge's ``look`` parameter)."""
        if name == "canonical":
            return cls.canonical()
        if name == "randomized":
            return cls.randomized()
        raise ValueError(f"look must be 'canonical' or 'randomized', got {name!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "LookConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_canonical(self) -> bool:
        return self == LookConfig()

    def sample(self, rng: np.random.Generator) -> Look:
        """One :class:`Look`. Degenerate ranges draw nothing, so the canonical config leaves ``rng`` untouched."""
        if self.is_canonical:
            return Look()
        if self.table_rgb is not None:
            table = tuple(float(c) for c in self.table_rgb)
        else:
            table = colorsys.hsv_to_rgb(_u(rng, self.table_hue_range), _u(rng, self.table_saturation_range), _u(rng, self.table_value_range))
        objects = None
        if self.object_colors == "hsv":
            objects = []
            for _ in range(MAX_OBJECT_SLOTS):
                for _try in range(32):
                    c = colorsys.hsv_to_rgb(_u(rng, self.object_hue_range) % 1.0, _u(rng, self.object_saturation_range),
                                            _u(rng, self.object_value_range))
                    if np.linalg.norm(np.subtract(c, table)) >= self.min_contrast:
                        break
                objects.append(tuple(float(v) for v in c))
            objects = tuple(objects)
        tex = self.table_textures[int(rng.integers(len(self.table_textures)))] if len(self.table_textures) > 1 else self.table_textures[0]
        scale, contrast = _u(rng, self.texture_scale_range), _u(rng, self.texture_contrast_range)
        angle = _u(rng, (0.0, math.pi)) if tex != "flat" else 0.0
        phase = (_u(rng, (0.0, 10.0)), _u(rng, (0.0, 10.0))) if tex != "flat" else (0.0, 0.0)
        if self.light_direction is not None:
            light = tuple(float(v) for v in self.light_direction)
        else:
            el, az = math.radians(_u(rng, self.light_elevation_deg_range)), math.radians(_u(rng, self.light_azimuth_deg_range))
            light = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
        amb, dif, spec = _u(rng, self.ambient_range), _u(rng, self.diffuse_range), _u(rng, self.specular_range)
        gain = tuple(_u(rng, self.rgb_gain_range) for _ in range(3))
        rgb_n, depth_n, holes = _u(rng, self.rgb_noise_std_range), _u(rng, self.depth_noise_std_range), _u(rng, self.depth_hole_fraction_range)
        seed = int(rng.integers(2**31 - 1)) if (rgb_n > 0 or depth_n > 0 or holes > 0) else 0
        return Look(object_rgb=objects, table_rgb=tuple(float(c) for c in table), table_texture=tex, texture_scale=scale,
                    texture_angle=angle, texture_contrast=contrast if tex != "flat" else 0.0, texture_phase=phase,
                    light_direction=light, light_ambient=amb, light_diffuse=dif, light_specular=spec, rgb_gain=gain,
                    rgb_noise_std=rgb_n, depth_noise_std=depth_n, depth_hole_fraction=holes, depth_hole_value=self.depth_hole_value,
                    noise_seed=seed)
