"""``KineMaskImagined-v0``: the push env with transitions imagined by the world model.

Same spaces, reward and ``info`` keys as ``KineMaskPush-v0``. ``reset`` samples a real simulated
scene (the first camera image); every ``step`` asks the world model what the push does (contact
model -> velocity + driver masks -> sampled object tracks) and moves the objects to the imagined
positions, so policies can be tested offline against the model. Observation images are renders
of the imagined state. With an object model (v2 checkpoints) the objects also turn by the
imagined yaw; a raster model predicts positions only, so objects keep their yaw. ``info`` has
``left_out_ids``: objects that got no world-model slot (they do not move in the imagined step).

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
from kinemask_ros.object_scene import fit_to_slots
from kinemask_ros.planning import make_dynamics, slot_limit
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
        fit = fit_to_slots(self._mask, slot_limit(pipe), self.scene.camera, int(self._target), [stroke],
                           pusher_radius=self.config.scene.pusher_radius, object_height=self.config.scene.object_height)
        gen = torch.Generator().manual_seed(int(self.np_random.integers(2**31)))
        dyn = make_dynamics(pipe, self._contact, self._rgb, fit.slots, 1, self.num_inference_steps, gen)
        im = dyn([stroke])
        tracks = im.tracks[0, 0]  # (slots, T, 2) px
        before = self._poses.copy()
        k = len(self._objects)
        after = before.copy()
        for slot, oid in fit.id_map.items():
            i, tr = oid - 1, tracks[slot - 1]
            if im.poses is not None:  # object model: SE(2) poses, rotations included
                after[i] = before[i] + (im.poses[0, 0, slot - 1, -1] - im.poses[0, 0, slot - 1, 0])
            elif np.all(np.isfinite(tr[-1])) and np.all(np.isfinite(tr[0])):
                z = self._objects[i].height / 2
                after[i, :2] = before[i, :2] + self.scene.camera.unproject_table(tr[-1], z) - self.scene.camera.unproject_table(tr[0], z)
        pushed_id = fit.id_map.get(int(im.target_ids[0]), 0)
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
        hit = [(ObjectMotion(names[pushed_id - 1], *(after[pushed_id - 1, :2] - before[pushed_id - 1, :2])),
                ObjectMotion(names[j], *(after[j, :2] - before[j, :2]))) for j in range(k)
               if pushed_id and j != pushed_id - 1 and moved[j] > 0.005]
        pushed = ObjectMotion(names[pushed_id - 1], *(after[pushed_id - 1, :2] - before[pushed_id - 1, :2])) if pushed_id else None
        info = {
            "goal_distance": goal_distance,
            "disturbance": float(moved[others].sum()),
            "target_displacement": float(moved[t]),
            "out_of_workspace": int(out_ws.sum()),
            "target_out_of_workspace": bool(out_ws[t]),
            "pushed_id": int(pushed_id),
            "hit_target": bool(pushed_id == self._target),
            "left_out_ids": [int(o) for o in fit.left_out],
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
