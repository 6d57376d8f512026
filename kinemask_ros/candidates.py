"""Candidate pushes around a target object, parameterised for planners.

Planners search an *object-centric* box ``[-1, 1]^4``: (push direction, lateral offset across the
object, stroke length, speed). :class:`ObjectCentricActions` maps those parameters to
:class:`PushStroke` s that start just behind the target (from its mask, through the camera model),
so every sample is a meaningful push. Free strokes anywhere on the table can be mixed in too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinemask_ros.camera import CameraModel, mask_centroid
from kinemask_ros.push import PushBounds, PushStroke


@dataclass(frozen=True)
class CandidateConfig:
    """How candidate strokes are built.

    Attributes:
        push_bounds: legal stroke box (length and speed ranges are used here).
        pusher_radius: [m]; start_gap: clearance between pusher and object at the start [m].
        max_lateral: lateral offset range as a fraction of the object's half-width.
        object_height: nominal height [m] (masks are read at half of it).
        goal_bias_deg: std of the direction around target->goal when sampling initial candidates.
        free_fraction: share of random free strokes mixed into random candidate sets.
    """

    push_bounds: PushBounds = PushBounds()
    pusher_radius: float = 0.012
    start_gap: float = 0.008
    max_lateral: float = 0.6
    object_height: float = 0.03
    goal_bias_deg: float = 35.0
    free_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pusher_radius", "object_height"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"CandidateConfig.{name} must be > 0, got {v!r}")
        for name in ("start_gap", "max_lateral", "goal_bias_deg"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"CandidateConfig.{name} must be >= 0, got {v!r}")
        if not 0.0 <= self.free_fraction <= 1.0:
            raise ValueError(f"CandidateConfig.free_fraction must be in [0, 1], got {self.free_fraction!r}")


class ObjectCentricActions:
    """Maps parameters ``(N, 4)`` in [-1, 1] to strokes pushing object ``target_id`` of a mask.

    Parameter meaning: 0 -> direction ``theta = pi * p0`` (table frame), 1 -> lateral offset,
    2 -> length within ``push_bounds.length_range``, 3 -> speed within ``speed_range``.
    """

    dim = 4

    def __init__(self, instance_mask: np.ndarray, target_id: int, camera: CameraModel, config: CandidateConfig | None = None):
        m = np.asarray(instance_mask)
        if m.ndim != 2:
            raise ValueError(f"instance_mask must be (H, W), got shape {m.shape}")
        if not (m == target_id).any() or target_id in (0, 255):
            present = sorted(int(i) for i in np.unique(m) if i not in (0, 255))
            raise ValueError(f"target id {target_id} is not in the scene (object ids present: {present})")
        self.config = config or CandidateConfig()
        self.camera = camera
        self.target_id = int(target_id)
        z = self.config.object_height / 2
        self._z = z
        rows, cols = np.nonzero(m == target_id)
        self._pixels_xy = camera.unproject_table(np.stack([cols + 0.5, rows + 0.5], 1), z)  # table coords of target pixels
        self.center = camera.unproject_table(mask_centroid(m == target_id), z)
        self._half_px = math.sqrt(0.5) / camera.pixels_per_metre(z)  # half a pixel diagonal: pixels are squares

    def support(self, direction: np.ndarray) -> float:
        """Half-extent [m] of the target's footprint along unit ``direction`` (from its pixels)."""
        return float(np.max((self._pixels_xy - self.center) @ direction)) + self._half_px

    def to_strokes(self, params: np.ndarray) -> list[PushStroke]:
        p = np.clip(np.asarray(params, dtype=float).reshape(-1, self.dim), -1.0, 1.0)
        if not np.all(np.isfinite(p)):
            raise ValueError("candidate parameters contain NaN or inf")
        cfg, b = self.config, self.config.push_bounds
        out = []
        for p0, p1, p2, p3 in p:
            theta = math.pi * p0
            d = np.array([math.cos(theta), math.sin(theta)])
            n = np.array([-d[1], d[0]])
            back = self.support(-d) + cfg.pusher_radius + cfg.start_gap
            lateral = p1 * cfg.max_lateral * max(self.support(n), 1e-3)
            start = self.center - back * d + lateral * n
            length = b.length_range[0] + (p2 + 1) / 2 * (b.length_range[1] - b.length_range[0]) + (back - self.support(-d) - cfg.pusher_radius)
            length = min(length, b.length_range[1])  # the approach gap counts towards the trained length
            speed = b.speed_range[0] + (p3 + 1) / 2 * (b.speed_range[1] - b.speed_range[0])
            out.append(PushStroke(float(start[0]), float(start[1]), float(theta), float(length), float(speed)))
        return out

    def from_stroke_direction(self, theta: float) -> float:
        """Parameter ``p0`` for a table-frame direction."""
        return float(((theta + math.pi) % (2 * math.pi) - math.pi) / math.pi)

    def sample(self, n: int, rng: np.random.Generator, goal_xy: np.ndarray | None = None) -> np.ndarray:
        """``(n, 4)`` initial parameters; directions biased towards ``goal_xy`` when given."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"number of candidates must be >= 1, got {n!r}")
        p = rng.uniform(-1, 1, (n, self.dim))
        if goal_xy is not None:
            g = np.asarray(goal_xy, float) - self.center
            theta0 = math.atan2(g[1], g[0])
            k = n // 2  # half biased towards the goal, half uniform
            th = theta0 + rng.normal(0.0, math.radians(self.config.goal_bias_deg), k)
            p[:k, 0] = ((th + math.pi) % (2 * math.pi) - math.pi) / math.pi
        return p
