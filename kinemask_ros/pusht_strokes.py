"""T-centric stroke parameters for PushT: ``[-1, 1]^3`` -> strokes that aim at the T's outline.

``p = (u, a, l)``: ``u`` picks a point on the T's outline (arc length, 480 px around), ``a`` tilts
the push direction up to ``max_tilt`` from that edge's inward normal, ``l`` sets how deep the
agent pushes past first contact. The stroke starts ``gap`` px clear of the T (backed off along the
push direction until it is), at a fixed speed. Shared by the planner and the data generator, so
the world model is trained on the strokes it is asked about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinemask_ros.envs.pusht import AGENT_RADIUS, WORLD_SIZE, local_distance, rot, t_distance

#: the T's outline in the body frame (8 corners, one way round)
OUTLINE = np.array([[-60, 0], [60, 0], [60, 30], [15, 30], [15, 120], [-15, 120], [-15, 30], [-60, 30]], float)


@dataclass(frozen=True)
class StrokeParamConfig:
    """Ranges of the T-centric stroke parameters (px, rad, px/s)."""

    max_tilt: float = math.radians(45)
    depth_range: tuple[float, float] = (4.0, 90.0)
    gap: float = 6.0
    speed: float = 250.0

    def __post_init__(self) -> None:
        lo, hi = self.depth_range
        if not (0 < lo < hi):
            raise ValueError(f"StrokeParamConfig.depth_range must satisfy 0 < low < high, got {self.depth_range!r}")
        if not (0 <= self.max_tilt < math.pi / 2):
            raise ValueError(f"StrokeParamConfig.max_tilt must be in [0, pi/2), got {self.max_tilt!r}")
        if not (self.gap > 0 and self.speed > 0):
            raise ValueError(f"StrokeParamConfig.gap and speed must be > 0, got {self.gap!r}, {self.speed!r}")


_SEG = np.roll(OUTLINE, -1, 0) - OUTLINE
_LEN = np.linalg.norm(_SEG, axis=1)
_CUM = np.concatenate([[0.0], np.cumsum(_LEN)])
#: outward unit normals of the outline edges (flipped if the winding made them point inwards)
_N = np.stack([_SEG[:, 1], -_SEG[:, 0]], 1) / _LEN[:, None]
if (local_distance(OUTLINE + 0.5 * _SEG + _N) < 0).any():
    _N = -_N


def params_to_strokes(pose: np.ndarray, params: np.ndarray, cfg: StrokeParamConfig | None = None) -> np.ndarray:
    """``params (N, 3)`` in [-1, 1] for the T at ``pose (3,)`` -> strokes ``(N, 5)`` x, y, theta, length, speed."""
    cfg = cfg or StrokeParamConfig()
    p = np.clip(np.asarray(params, float).reshape(-1, 3), -1, 1)
    pose = np.asarray(pose, float)
    s = (p[:, 0] + 1) / 2 * _CUM[-1]
    j = np.clip(np.searchsorted(_CUM, s, side="right") - 1, 0, len(_LEN) - 1)
    contact_l = OUTLINE[j] + ((s - _CUM[j]) / _LEN[j])[:, None] * _SEG[j]
    n_l = _N[j]
    tilt = p[:, 1] * cfg.max_tilt
    d_l = -np.einsum("nij,nj->ni", rot(tilt), n_l)  # push direction (into the T)
    R = rot(pose[2])
    contact = contact_l @ R.T + pose[:2]
    d = d_l @ R.T
    back = (AGENT_RADIUS + cfg.gap) / np.cos(tilt)
    start = contact - d * back[:, None]
    # back off along -d until the disk is clear of the T (corners, concave pockets)
    for _ in range(8):
        dist = t_distance(pose, start[None])[0]
        bad = dist < AGENT_RADIUS + 1.0
        if not bad.any():
            break
        start[bad] -= d[bad] * 8.0
        back[bad] += 8.0
    depth = cfg.depth_range[0] + (p[:, 2] + 1) / 2 * (cfg.depth_range[1] - cfg.depth_range[0])
    length = np.maximum(back - AGENT_RADIUS, 1.0) + depth
    theta = np.arctan2(d[:, 1], d[:, 0])
    return np.stack([start[:, 0], start[:, 1], theta, length, np.full(len(p), cfg.speed)], 1)


def strokes_in_arena(strokes: np.ndarray) -> np.ndarray:
    """``(N,)`` True where the stroke's start and end keep the agent disk inside the 512 world."""
    st = np.asarray(strokes, float).reshape(-1, 5)
    end = st[:, :2] + st[:, 3:4] * np.stack([np.cos(st[:, 2]), np.sin(st[:, 2])], 1)
    lo, hi = AGENT_RADIUS, WORLD_SIZE - AGENT_RADIUS
    return ((st[:, :2] >= lo) & (st[:, :2] <= hi) & (end >= lo) & (end <= hi)).all(1)
