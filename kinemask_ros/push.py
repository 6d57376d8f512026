"""Push strokes (DESIGN §3): a planar pusher moving in a straight line over the table."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PushStroke:
    """Start ``(x, y)`` [m], direction ``theta`` [rad], length ``length`` [m], speed ``speed`` [m/s]."""

    x: float
    y: float
    theta: float
    length: float
    speed: float

    def __post_init__(self) -> None:
        for name in ("x", "y", "theta", "length", "speed"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValueError(f"PushStroke.{name} must be a finite number, got {v!r}")
        if self.length <= 0:
            raise ValueError(f"PushStroke.length must be > 0, got {self.length!r}")
        if self.speed <= 0:
            raise ValueError(f"PushStroke.speed must be > 0, got {self.speed!r}")

    @property
    def direction(self) -> np.ndarray:
        return np.array([math.cos(self.theta), math.sin(self.theta)])

    @property
    def start(self) -> np.ndarray:
        return np.array([self.x, self.y], dtype=float)

    @property
    def end(self) -> np.ndarray:
        return self.start + self.length * self.direction

    @property
    def duration(self) -> float:
        return self.length / self.speed

    def position_at(self, t: float | np.ndarray) -> np.ndarray:
        """Pusher position ``(..., 2)`` at time(s) ``t`` [s]: moves, then rests at the end point."""
        s = np.clip(np.asarray(t, dtype=float), 0.0, self.duration) * self.speed
        return self.start + s[..., None] * self.direction

    def as_array(self) -> np.ndarray:
        """``(5,)`` float32: x, y, theta, length, speed."""
        return np.array([self.x, self.y, self.theta, self.length, self.speed], dtype=np.float32)

    @classmethod
    def from_array(cls, a: np.ndarray) -> "PushStroke":
        a = np.asarray(a, dtype=float).reshape(-1)
        if a.shape != (5,):
            raise ValueError(f"a push stroke array must have 5 values (x, y, theta, length, speed), got shape {a.shape}")
        return cls(*(float(v) for v in a))


BOUND_TOLERANCE = 1e-6
"""Relative slack of :meth:`PushBounds.violation` (float32 keeps ~7 digits; its rounding is < 6e-8)."""


@dataclass(frozen=True)
class PushBounds:
    """Box of legal strokes; maps the normalised action ``[-1, 1]^5`` to strokes and back."""

    x_range: tuple[float, float] = (-0.18, 0.18)
    y_range: tuple[float, float] = (-0.18, 0.18)
    length_range: tuple[float, float] = (0.03, 0.12)
    speed_range: tuple[float, float] = (0.2, 0.5)

    def __post_init__(self) -> None:
        for name in ("x_range", "y_range", "length_range", "speed_range"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"PushBounds.{name} must be finite with low < high, got {(lo, hi)!r}")
        for name in ("length_range", "speed_range"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"PushBounds.{name} must be > 0, got {getattr(self, name)!r}")

    def violation(self, stroke: PushStroke, params: dict[str, str] | None = None, workspace: float | None = None) -> str:
        """``""`` when ``stroke`` lies inside the box, else a reason naming the field, the limit and
        the parameter that sets it (``params`` maps ``"length_range"`` etc. to parameter names).

        Values within :data:`BOUND_TOLERANCE` (relative) of a limit count as inside: a stroke the
        planner put on the boundary comes back through a ``float32`` message a rounding step outside.
        ``theta`` must lie in ``[-2 pi, 2 pi]`` (larger angles are almost surely a unit mistake,
        and beyond ~1e16 rad a float no longer holds a direction). ``workspace`` (half-size [m],
        optional) also bounds the stroke's end point, so a stroke cannot leave the table.
        """
        params = params or {}
        for name, key in (("x", "x_range"), ("y", "y_range"), ("length", "length_range"), ("speed", "speed_range")):
            lo, hi = getattr(self, key)
            v = float(getattr(stroke, name))
            # a stroke on the boundary survives a float32 message round trip (0.03 -> 0.0299999993)
            tol = BOUND_TOLERANCE * max(1.0, abs(lo), abs(hi))
            if not lo - tol <= v <= hi + tol:
                unit = "m/s" if name == "speed" else "m"
                return (f"{name}={v:g} {unit} is outside [{lo:g}, {hi:g}] {unit} (parameter {params.get(key, 'PushBounds.' + key)}; "
                        f"the world model was not trained beyond it)")
        if not -2 * math.pi <= stroke.theta <= 2 * math.pi:
            return f"theta={stroke.theta:g} rad is outside [-2 pi, 2 pi] (give the direction in radians)"
        if workspace is not None:
            end = stroke.end
            if np.any(np.abs(end) > workspace):
                return f"the stroke ends at ({end[0]:.3f}, {end[1]:.3f}) m, outside the workspace |x|, |y| <= {workspace:g} m"
        return ""

    def _ranges(self) -> np.ndarray:
        return np.array([self.x_range, self.y_range, (-math.pi, math.pi), self.length_range, self.speed_range])

    def denormalise(self, action: np.ndarray) -> PushStroke:
        """``(5,)`` action in [-1, 1] -> :class:`PushStroke` (values are clipped into the box)."""
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape != (5,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be 5 finite numbers in [-1, 1], got {action!r}")
        r = self._ranges()
        v = r[:, 0] + (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (r[:, 1] - r[:, 0])
        return PushStroke(*(float(x) for x in v))

    def normalise(self, stroke: PushStroke) -> np.ndarray:
        """:class:`PushStroke` -> ``(5,)`` float32 action in [-1, 1] (theta wrapped to [-pi, pi))."""
        r = self._ranges()
        theta = (stroke.theta + math.pi) % (2 * math.pi) - math.pi
        v = np.array([stroke.x, stroke.y, theta, stroke.length, stroke.speed])
        return np.clip(2.0 * (v - r[:, 0]) / (r[:, 1] - r[:, 0]) - 1.0, -1.0, 1.0).astype(np.float32)
