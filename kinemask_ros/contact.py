"""Push -> velocity contact model (DESIGN §3), in image space, from an instance mask.

The stroke is swept over the instance mask as a disk of the pusher's radius; the first object
pixel it touches is the contact. The contact normal is estimated from the object's mask (the
direction from the contact point to the object's centroid - a disk approximation of the object),
and the object's initial velocity follows the quasi-static point-pusher model with a friction
cone: the normal component of the pusher velocity is always transmitted; the tangential one only
while it stays inside the cone (sticking), else it is capped at ``mu * normal`` (sliding).
``benchmarks/contact_model.py`` checks it against the simulator's measured velocities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinemask_ros.camera import CameraModel, mask_centroid
from kinemask_ros.push import PushStroke
from kinemask_ros.velocity_mask import encode_driver_mask


@dataclass(frozen=True)
class ContactModelConfig:
    """Parameters of the push -> velocity model.

    Attributes:
        pusher_radius: pusher disk radius [m].
        friction_coefficient: pusher-object friction ``mu`` of the friction cone.
        speed_gain: measured object speed / pusher normal speed just after contact (fitted on
            simulator episodes by ``benchmarks/contact_model.py``).
        object_height: nominal object height [m]; masks are read at half this height.
        frame_dt: seconds between frames (velocities are returned in px/frame).
        num_frames: frames of a rollout (driver mask length).
    """

    pusher_radius: float = 0.012
    friction_coefficient: float = 0.5
    speed_gain: float = 1.0
    object_height: float = 0.03
    frame_dt: float = 0.08
    num_frames: int = 16

    def __post_init__(self) -> None:
        for name in ("pusher_radius", "speed_gain", "object_height", "frame_dt"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"ContactModelConfig.{name} must be > 0, got {v!r}")
        if not (math.isfinite(self.friction_coefficient) and self.friction_coefficient >= 0):
            raise ValueError(f"ContactModelConfig.friction_coefficient must be >= 0, got {self.friction_coefficient!r}")
        if not isinstance(self.num_frames, int) or self.num_frames < 2:
            raise ValueError(f"ContactModelConfig.num_frames must be an int >= 2, got {self.num_frames!r}")


@dataclass(frozen=True)
class ContactPrediction:
    """Outcome of the contact model for one stroke.

    Attributes:
        target_id: instance id of the first object touched (0 = miss).
        contact_px: contact point (u, v) [px] (NaN for a miss).
        normal_px: unit contact normal in image axes (pointing into the object).
        velocity_px: object velocity just after contact [px/frame] (zeros for a miss).
        sticking: whether the contact is inside the friction cone.
    """

    target_id: int
    contact_px: np.ndarray
    normal_px: np.ndarray
    velocity_px: np.ndarray
    sticking: bool


class ContactModel:
    """Maps strokes to post-contact object velocities and driver masks for one camera."""

    def __init__(self, camera: CameraModel, config: ContactModelConfig | None = None):
        self.camera = camera
        self.config = config or ContactModelConfig()
        self._z = self.config.object_height / 2
        self.radius_px = self.config.pusher_radius * camera.pixels_per_metre(self._z)

    def stroke_pixels(self, stroke: PushStroke, num: int) -> np.ndarray:
        """``num`` points ``(num, 2)`` evenly along the stroke, in pixels."""
        s = np.linspace(0.0, stroke.length, num)
        return self.camera.project_table(stroke.start + s[:, None] * stroke.direction, self._z)

    def predict(self, instance_mask: np.ndarray, stroke: PushStroke) -> ContactPrediction:
        """First contact along ``stroke`` on ``instance_mask (H, W)`` (ids 1..K; 0 and 255 ignored)."""
        m = np.asarray(instance_mask)
        if m.ndim != 2:
            raise ValueError(f"instance_mask must be (H, W), got shape {m.shape}")
        H, W = m.shape
        cfg = self.config
        step_px = 0.25
        length_px = float(np.linalg.norm(self.camera.project_table(stroke.end, self._z) - self.camera.project_table(stroke.start, self._z)))
        pts = self.stroke_pixels(stroke, max(2, int(length_px / step_px) + 2))
        rows, cols = np.nonzero((m > 0) & (m != 255))
        miss = ContactPrediction(0, np.full(2, np.nan), np.zeros(2), np.zeros(2, np.float32), False)
        if rows.size == 0:
            return miss
        centres = np.stack([cols + 0.5, rows + 0.5], 1)
        # nearest object pixel within the pusher radius (pixel half-diagonal added: pixels are squares)
        reach = self.radius_px + 0.5
        ignored = np.zeros(len(centres), bool)  # objects the pusher touches while moving away from them
        for p in pts:
            d2 = ((centres - p) ** 2).sum(1)
            hit = np.nonzero((d2 <= reach * reach) & ~ignored)[0]
            if hit.size:
                j = hit[np.argmin(d2[hit])]
                oid = int(m[rows[j], cols[j]])
                contact = centres[j]
                cen = mask_centroid(m == oid)
                n = cen - contact
                if np.linalg.norm(n) < 1e-6:
                    n = self._dir_px(stroke)
                n = n / np.linalg.norm(n)
                u = self._pusher_velocity_px(stroke, contact)
                un = float(u @ n)
                if un <= 0:  # grazing contact that moves away from the object: it is not pushed
                    ignored |= m[rows, cols] == oid
                    continue
                t_vec = u - un * n
                ut = float(np.linalg.norm(t_vec))
                sticking = ut <= cfg.friction_coefficient * un
                v = u if sticking else un * n + cfg.friction_coefficient * un * (t_vec / max(ut, 1e-12))
                return ContactPrediction(oid, contact, n, (cfg.speed_gain * v).astype(np.float32), bool(sticking))
        return miss

    def _dir_px(self, stroke: PushStroke) -> np.ndarray:
        d = self.camera.project_table(stroke.end, self._z) - self.camera.project_table(stroke.start, self._z)
        return d / max(float(np.linalg.norm(d)), 1e-12)

    def _pusher_velocity_px(self, stroke: PushStroke, at_px: np.ndarray) -> np.ndarray:
        xy = self.camera.unproject_table(at_px, self._z)
        return self.camera.table_velocity_to_pixels(xy, stroke.speed * stroke.direction, self._z) * self.config.frame_dt

    def velocities(self, instance_mask: np.ndarray, stroke: PushStroke, max_objects: int) -> tuple[np.ndarray, ContactPrediction]:
        """Per-slot velocity ``(K, 2)`` [px/frame] for the velocity mask (only the touched object moves)."""
        pred = self.predict(instance_mask, stroke)
        v = np.zeros((max_objects, 2), np.float32)
        if 1 <= pred.target_id <= max_objects:
            v[pred.target_id - 1] = pred.velocity_px
        return v, pred

    def driver_mask(self, stroke: PushStroke, height: int, width: int) -> np.ndarray:
        """``(T, 1, H, W)`` pusher footprint at the frame times of the rollout."""
        cfg = self.config
        t = np.arange(cfg.num_frames) * cfg.frame_dt
        px = self.camera.project_table(stroke.position_at(t), self._z)
        return encode_driver_mask(px, self.radius_px, height, width)
