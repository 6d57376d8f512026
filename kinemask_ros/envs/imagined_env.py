"""``KineMaskImagined-v0``: the push env with transitions imagined by the world model.

Same spaces, reward and ``info`` keys as ``KineMaskPush-v0``. ``reset`` samples a real simulated
scene (the first camera image); every ``step`` asks the world model what the push does (contact
model -> velocity + driver masks -> sampled object tracks) and moves the objects to the imagined
positions, so policies can be tested offline against the model. Observation images are renders
of the imagined state (objects keep their yaw: the tracks carry positions only).

Each step draws the sampler's seed from ``np_random``: ``pickle`` / ``copy.deepcopy`` clones (which
carry ``np_random``) imagine bit-identical steps; :meth:`set_state` leaves ``np_random`` alone, so
copy it too (``other.np_random = copy.deepcopy(env.np_random)``) for identical imagined steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kinemask_ros.camera import CameraModel
from kinemask_ros.contact import ContactModel, ContactModelConfig
from kinemask_ros.envs.push_env import KineMaskPushEnv, PushEnvConfig
from kinemask_ros.text import ObjectMotion, describe


class KineMaskImaginedEnv(KineMaskPushEnv):
    """Args: ``checkpoint`` (world-model directory; None = embedded), ``num_inference_steps``,
    ``device``, plus every ``PushEnvConfig`` field / ``config``."""

    def __init__(self, config: PushEnvConfig | None = None, render_mode: str | None = None, checkpoint: str | None = None,
                 num_inference_steps: int = 8, device: str = "cpu", **kwargs: Any) -> None:
        super().__init__(config, render_mode, **kwargs)
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an int >= 1, got {num_inference_steps!r}")
        self.checkpoint, self.num_inference_steps, self.device = checkpoint, num_inference_steps, device
        self._pipe = None
        sc = self.config.scene
        self._contact = ContactModel(CameraModel(sc.camera), ContactModelConfig(
            pusher_radius=sc.pusher_radius, object_height=sc.object_height, frame_dt=sc.frame_dt, num_frames=sc.num_frames))

    @property
    def pipeline(self):
        if self._pipe is None:
            from kinemask_ros.world_model.pipeline import KineMaskPipeline

            self._pipe = KineMaskPipeline.from_pretrained(self.checkpoint, device=self.device, load_video=False)
            c = self._pipe.config
            cam = self.config.scene.camera
            if (c.height, c.width, c.num_frames) != (cam.height, cam.width, self.config.scene.num_frames):
                raise ValueError(f"the world model works at {c.width}x{c.height}, {c.num_frames} frames; the env renders "
                                 f"{cam.width}x{cam.height}, {self.config.scene.num_frames} frames")
        return self._pipe

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._check_open()
        if not self._objects:
            raise RuntimeError("call reset() before step()")
        stroke = self.scene.resolve_start(self.action_to_stroke(action))
        pipe = self.pipeline
        K = pipe.config.max_objects
        mask = self._mask
        vel, pred = self._contact.velocities(mask, stroke, K)
        H, W = mask.shape
        inputs = {
            "image": torch.from_numpy(self._rgb).permute(2, 0, 1).float()[None] / 255,
            "instance_mask": torch.from_numpy(mask.astype(np.int64))[None],
            "velocities": torch.from_numpy(vel)[None],
            "driver": torch.from_numpy(self._contact.driver_mask(stroke, H, W))[None],
        }
        gen = torch.Generator().manual_seed(int(self.np_random.integers(2**31)))
        out = pipe(**inputs, num_samples=1, num_inference_steps=self.num_inference_steps, generator=gen)
        tracks = out.tracks[0, 0].numpy()  # (K, T, 2)
        before = self._poses.copy()
        k = len(self._objects)
        after = before.copy()
        for i in range(k):
            if np.all(np.isfinite(tracks[i, -1])) and np.all(np.isfinite(tracks[i, 0])):
                z = self._objects[i].height / 2
                delta = self.scene.camera.unproject_table(tracks[i, -1], z) - self.scene.camera.unproject_table(tracks[i, 0], z)
                after[i, :2] = before[i, :2] + delta
        after[:, :2] = np.clip(after[:, :2], -0.5, 0.5)
        self._set_poses(after)
        self._velocities = np.zeros((k, 3))
        self._rgb, self._mask = self.scene.render()
        self.last_episode = None
        t = self._target - 1
        moved = np.linalg.norm(after[:, :2] - before[:, :2], axis=1)
        others = np.arange(k) != t
        out_ws = self.scene.out_of_workspace()
        goal_distance = float(np.linalg.norm(after[t, :2] - self._goal))
        is_success = goal_distance < self.config.success_radius
        names = [o.name for o in self._objects]
        hit = [(ObjectMotion(names[pred.target_id - 1], *(after[pred.target_id - 1, :2] - before[pred.target_id - 1, :2])),
                ObjectMotion(names[j], *(after[j, :2] - before[j, :2]))) for j in range(k)
               if pred.target_id and j != pred.target_id - 1 and moved[j] > 0.005]
        pushed = ObjectMotion(names[pred.target_id - 1], *(after[pred.target_id - 1, :2] - before[pred.target_id - 1, :2])) if pred.target_id else None
        info = {
            "goal_distance": goal_distance,
            "disturbance": float(moved[others].sum()),
            "target_displacement": float(moved[t]),
            "out_of_workspace": int(out_ws.sum()),
            "target_out_of_workspace": bool(out_ws[t]),
            "pushed_id": int(pred.target_id),
            "hit_target": bool(pred.target_id == self._target),
            "collided": bool(hit),
            "description": describe(pushed, hit),
            "stroke": stroke.as_array(),
            "is_success": bool(is_success),
        }
        return self._observation(), -goal_distance, bool(is_success or out_ws[t]), False, info

    def __getstate__(self) -> dict[str, Any]:
        d = super().__getstate__()
        d["_pipe"] = None  # reloaded from the checkpoint path on first use
        return d
