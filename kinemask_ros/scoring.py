"""Cost of imagined rollouts (DESIGN §3): a weighted sum of named terms, lower is better.

Terms (all in metres on the table, converted from pixels with the camera scale):
    goal_distance  final distance of the target's centre to the goal;
    disturbance    summed final displacement of every other object;
    workspace      how far objects end outside the workspace (image minus a margin);
    disagreement   spread of the target's final position across stochastic samples;
    effort         stroke length;
    goal_yaw       final rotation error of the target [rad] when the goal carries a yaw (needs a
                   world model that predicts rotations: the object model's SE(2) poses).
Goals: a pixel or table point, a region (boolean mask: distance to its nearest pixel), or a goal
image's instance mask (the target's centroid in it), each optionally with a yaw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TERM_NAMES = ("goal_distance", "disturbance", "workspace", "disagreement", "effort", "goal_yaw")


@dataclass(frozen=True)
class ScoreConfig:
    """Weights of the cost terms and the workspace margin."""

    weights: dict = field(default_factory=lambda: {"goal_distance": 1.0, "disturbance": 3.0, "workspace": 2.0,
                                                   "disagreement": 0.2, "effort": 0.02, "goal_yaw": 0.05})
    workspace_margin_px: float = 1.0

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(TERM_NAMES)
        if unknown:
            raise ValueError(f"ScoreConfig.weights has unknown terms {sorted(unknown)}; known: {list(TERM_NAMES)}")
        for k, v in self.weights.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"ScoreConfig.weights[{k!r}] must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.workspace_margin_px) and self.workspace_margin_px >= 0):
            raise ValueError(f"ScoreConfig.workspace_margin_px must be >= 0, got {self.workspace_margin_px!r}")


@dataclass(frozen=True)
class Goal:
    """Where the target should go, in pixels: a point, or a region mask ``(H, W)``; optionally its
    final ``yaw`` [rad, table frame], compared modulo ``yaw_period`` (pi for a footprint that looks
    the same turned half way round, e.g. a box; 2 pi for a shape without that symmetry)."""

    point_px: np.ndarray | None = None
    region: np.ndarray | None = None
    yaw: float | None = None
    yaw_period: float = math.pi

    def __post_init__(self) -> None:
        if (self.point_px is None) == (self.region is None):
            raise ValueError("a Goal needs exactly one of point_px or region")
        if self.point_px is not None:
            p = np.asarray(self.point_px, float)
            if p.shape != (2,) or not np.all(np.isfinite(p)):
                raise ValueError(f"goal point must be 2 finite numbers (u, v) in pixels, got {self.point_px!r}")
        if self.region is not None:
            r = np.asarray(self.region, bool)
            if r.ndim != 2 or not r.any():
                raise ValueError("goal region must be a non-empty (H, W) boolean mask")
        if self.yaw is not None and not math.isfinite(self.yaw):
            raise ValueError(f"goal yaw must be finite [rad], got {self.yaw!r}")
        if not (math.isfinite(self.yaw_period) and self.yaw_period > 0):
            raise ValueError(f"goal yaw_period must be > 0, got {self.yaw_period!r}")

    @classmethod
    def from_goal_image_mask(cls, goal_instance_mask: np.ndarray, target_id: int) -> "Goal":
        """Goal from a goal image's instance mask: where the target is in it."""
        from kinemask_ros.camera import mask_centroid

        c = mask_centroid(np.asarray(goal_instance_mask) == target_id)
        if not np.all(np.isfinite(c)):
            raise ValueError(f"target id {target_id} does not appear in the goal image's mask")
        return cls(point_px=c)

    @classmethod
    def from_table(cls, camera, xy, z: float, yaw: float | None = None) -> "Goal":
        """Goal pixel of a table point ``xy = (x, y)`` [m] seen at height ``z`` [m] through ``camera``
        (a :class:`~kinemask_ros.camera.CameraModel`), optionally with a final ``yaw`` [rad];
        ``ValueError`` when it is not two finite numbers or lies outside the camera's image."""
        p = np.asarray(xy, float).reshape(-1)
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise ValueError(f"goal must be two finite numbers (x, y) in metres, got {np.asarray(xy).tolist()}")
        g = cls(point_px=camera.project_table(p, z), yaw=None if yaw is None else float(yaw))
        g.check_inside(camera.height, camera.width)
        return g

    def check_inside(self, height: int, width: int) -> None:
        if self.point_px is not None:
            u, v = self.point_px
            if not (0 <= u <= width and 0 <= v <= height):
                raise ValueError(f"goal ({u:.1f}, {v:.1f}) px is outside the {width}x{height} image/workspace")
        elif self.region.shape != (height, width):
            raise ValueError(f"goal region is {self.region.shape}, the image is {(height, width)}")

    def distance_px(self, points: np.ndarray) -> np.ndarray:
        """Distance [px] of points ``(..., 2)`` to the goal (0 inside a region)."""
        p = np.asarray(points, float)
        if self.point_px is not None:
            return np.linalg.norm(p - self.point_px, axis=-1)
        rows, cols = np.nonzero(self.region)
        c = np.stack([cols + 0.5, rows + 0.5], 1)
        gap = np.maximum(np.abs(p[..., None, :] - c) - 0.5, 0.0)  # distance to each pixel's square
        return np.sqrt((gap**2).sum(-1)).min(-1)


@dataclass
class Scores:
    """Per-candidate costs: ``total (N,)``, ``terms[name] (N,)``, ``valid (N,)`` and reasons."""

    total: np.ndarray
    terms: dict[str, np.ndarray]
    valid: np.ndarray
    reasons: list[str]

    def ranking(self) -> np.ndarray:
        """Candidate indices, best first; invalid candidates last."""
        key = np.where(self.valid, self.total, np.inf)
        return np.argsort(key, kind="stable")


def score_tracks(tracks: np.ndarray, target_id: int, goal: Goal, metres_per_px: float, image_size: tuple[int, int],
                 stroke_lengths: np.ndarray | None = None, config: ScoreConfig | None = None,
                 present: np.ndarray | None = None, poses: np.ndarray | None = None) -> Scores:
    """Score rollouts.

    Args:
        tracks: ``(N, S, K, T, 2)`` object centres [px] (S samples per candidate; NaN = absent slot).
        target_id: instance id (1..K) of the object to move.
        goal: where it should go.
        metres_per_px: camera scale on the table.
        image_size: ``(H, W)``.
        stroke_lengths: ``(N,)`` [m] for the effort term.
        present: ``(N, K)`` bool (default: slots whose frame-0 track is finite).
        poses: ``(N, S, K, T, 3)`` SE(2) poses [m, rad] (object model); needed for a goal with a yaw.
    """
    cfg = config or ScoreConfig()
    tr = np.asarray(tracks, float)
    if tr.ndim != 5 or tr.shape[-1] != 2:
        raise ValueError(f"tracks must be (N, S, K, T, 2), got shape {tr.shape}")
    N, S, K, T, _ = tr.shape
    if N == 0:
        raise ValueError("no candidates to score")
    if not 1 <= target_id <= K:
        raise ValueError(f"target id {target_id} is not one of the model's object slots 1..{K}")
    pres = np.isfinite(tr[:, 0, :, 0, 0]) if present is None else np.asarray(present, bool)
    if not pres[:, target_id - 1].any():
        raise ValueError(f"target id {target_id} is not in the scene")
    H, W = image_size
    final = tr[:, :, :, -1]  # (N, S, K, 2)
    start = tr[:, 0, :, 0]  # (N, K, 2)
    tgt = final[:, :, target_id - 1]  # (N, S, 2)
    terms: dict[str, np.ndarray] = {}
    terms["goal_distance"] = goal.distance_px(tgt.mean(1)) * metres_per_px
    others = pres.copy()
    others[:, target_id - 1] = False
    disp = np.linalg.norm(final.mean(1) - start, axis=-1)  # (N, K)
    terms["disturbance"] = np.where(others, disp, 0.0).sum(1) * metres_per_px
    m = cfg.workspace_margin_px
    fm = final.mean(1)
    out_u = np.maximum(0, m - fm[..., 0]) + np.maximum(0, fm[..., 0] - (W - m))
    out_v = np.maximum(0, m - fm[..., 1]) + np.maximum(0, fm[..., 1] - (H - m))
    terms["workspace"] = np.where(pres, out_u + out_v, 0.0).sum(1) * metres_per_px
    terms["disagreement"] = (np.sqrt(((tgt - tgt.mean(1, keepdims=True)) ** 2).sum(-1).mean(1)) if S > 1 else np.zeros(N)) * metres_per_px
    terms["effort"] = np.zeros(N) if stroke_lengths is None else np.asarray(stroke_lengths, float)
    if goal.yaw is None:
        terms["goal_yaw"] = np.zeros(N)
    else:
        if poses is None:
            raise ValueError("the goal has a yaw but this world model predicts no rotations; use a checkpoint with an object model (objects/)")
        yaw = np.asarray(poses, float)[:, :, target_id - 1, -1, 2]  # (N, S)
        per = goal.yaw_period
        err = (yaw - goal.yaw + per / 2) % per - per / 2
        terms["goal_yaw"] = np.abs(err).mean(1)
    total = sum(cfg.weights.get(k, 0.0) * v for k, v in terms.items())
    valid = np.isfinite(total)
    reasons = ["" if ok else "rollout produced NaN/inf for the target (" + ", ".join(k for k, v in terms.items() if not np.isfinite(v[i])) + ")"
               for i, ok in enumerate(valid)]
    return Scores(total=np.asarray(total, float), terms=terms, valid=valid, reasons=reasons)
