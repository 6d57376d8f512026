"""One planning decision (pure logic, no rclpy): perceived frame + goal -> ranked pushes.

What the planner node (and any other caller) does per request, in one place: pick the target,
fit the objects into the world model's slots by the stated rule (never a silent drop:
``left_out``), assemble the planner's configuration, imagine and rank candidates with progress,
cancellation and a time budget, and prepare the top-k rollouts' frames for later (rendering is
slower than ranking and never delays it).

    frame = perceive(pipeline, rgb, camera)
    d = decide(pipeline, frame, DecisionRequest(goal_xy=(0.05, 0.0)), DecisionConfig(), rng)
    d.plan.best_stroke, d.message, d.left_out
    frames = d.render()            # RolloutFrames of the top-k candidates
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from kinemask_ros.admission import Deadline
from kinemask_ros.contact import ContactModelConfig
from kinemask_ros.imagination import RolloutFrames, rollout_frames
from kinemask_ros.object_scene import SlotFit, fit_to_slots
from kinemask_ros.perception import PerceivedFrame
from kinemask_ros.planning import PLANNERS, PlannerConfig, PlanOutput, PushPlanner, make_dynamics, slot_limit
from kinemask_ros.policies.shooting import CEMConfig, MPPIConfig, RandomShootingConfig
from kinemask_ros.preview import CameraMapping, draw_path, preview_image, warp_se2
from kinemask_ros.scoring import ScoreConfig, score_tracks

#: most planner iterations one request may ask for
MAX_ITERATIONS = 1000
#: stages reported to ``feedback`` (PlanPush.Feedback.stage)
FEEDBACK_STAGES = ("imagining", "done")


class PlanCancelled(Exception):
    """Raised inside planning when the request was cancelled (or its owner shuts down)."""


@dataclass(frozen=True)
class DecisionConfig:
    """Server-side defaults of a decision (a node's parameters; see ``PlannerNodeConfig``).

    Attributes:
        method, num_candidates, iterations: planner defaults (a request may override them).
        max_candidates: requests for more candidates per iteration are refused.
        num_samples, num_inference_steps: stochastic rollouts per candidate, sampler steps.
        pusher_radius, friction_coefficient, object_height, frame_dt_s: contact model [m, s].
        score: cost weights.
        rollout_top_k, video_inference_steps: rollouts rendered for the best k candidates.
    """

    method: str = "cem"
    num_candidates: int = 64
    iterations: int = 3
    max_candidates: int = 1024
    num_samples: int = 2
    num_inference_steps: int = 8
    pusher_radius: float = 0.012
    friction_coefficient: float = 0.5
    object_height: float = 0.03
    frame_dt_s: float = 0.08
    score: ScoreConfig = field(default_factory=ScoreConfig)
    rollout_top_k: int = 3
    video_inference_steps: int = 10


@dataclass(frozen=True)
class DecisionRequest:
    """What one request asks (0 / "" / None = the server default).

    Attributes:
        goal_xy: table point [m] the target should reach; goal_yaw: its final yaw [rad] or None.
        target_id: object id to move; 0 = the object nearest the goal.
        method, num_candidates, iterations: planner overrides.
    """

    goal_xy: tuple[float, float]
    goal_yaw: float | None = None
    target_id: int = 0
    method: str = ""
    num_candidates: int = 0
    iterations: int = 0

    def resolve(self, cfg: DecisionConfig) -> tuple[str, int, int]:
        """``(method, num_candidates, iterations)`` with defaults filled in (``ValueError`` naming the limit)."""
        method = self.method or cfg.method
        if method not in PLANNERS:
            raise ValueError(f"unknown planner {self.method!r}; known: {list(PLANNERS)}")
        nc = int(self.num_candidates) or cfg.num_candidates
        if nc > cfg.max_candidates:
            raise ValueError(f"num_candidates={nc} exceeds max_candidates={cfg.max_candidates} (parameter max_candidates)")
        if nc < 2 and method != "random":
            raise ValueError(f"num_candidates={nc} is too few for {method} (it needs >= 2 per iteration); use planner='random' for one candidate")
        iters = int(self.iterations) or cfg.iterations
        if iters > MAX_ITERATIONS:
            raise ValueError(f"iterations={iters} exceeds {MAX_ITERATIONS}")
        return method, nc, iters


@dataclass
class Decision:
    """A ranking and how it came about.

    Attributes:
        plan: the planner's output (strokes, scores, imagined tracks/poses, ``order`` best first).
        target_id: the frame's id of the object pushed towards the goal.
        fit: which objects got a model slot (``fit.id_map`` slot -> frame id) and which were left out.
        planned_iterations: iterations asked for (``plan.iterations`` ran; fewer = time budget).
        message: human-readable summary (best cost, objects left out, time budget).
        render: ``render(draw_paths=False)`` makes the top ``rollout_top_k`` rollouts' frames (None when k = 0 or
            no valid candidate); ``draw_paths`` draws each pusher path (frame 0 is then no longer the input image).
            With a calibrated camera (``frame.source``) and the object model the frames are in the user's
            camera at its native resolution (:func:`camera_view`), else in the planning image.
        top: plan indices of those rollouts, best first.
        preview: ``preview(render())`` -> ``(H, W, 3)`` uint8: the best rollout's final frame with its
            pusher path and the goal drawn (for a viewer).
    """

    plan: PlanOutput
    target_id: int
    fit: SlotFit
    planned_iterations: int
    message: str
    render: Callable[..., RolloutFrames] | None
    top: list[int]
    preview: Callable[[RolloutFrames], np.ndarray] | None = None

    @property
    def left_out(self) -> list[int]:
        return list(self.fit.left_out)

    def frame_id(self, slot: int) -> int:
        """The frame's id of a model slot (0 stays 0: a miss)."""
        return int(self.fit.id_map.get(int(slot), 0))


def camera_view(frame: PerceivedFrame, fit: SlotFit, poses: np.ndarray, frame_indices: list[int], strokes: list,
                draw_paths: bool = False) -> RolloutFrames:
    """Rollouts with model-slot poses ``(n, K, Tv, 3)`` (at ``frame_indices``) drawn in the user's camera at
    its native resolution: each object's own camera pixels moved rigidly along its SE(2) pose track, the
    uncovered table filled in (:func:`kinemask_ros.preview.warp_se2`). Masks keep model slots
    (``fit.id_map`` maps them to the frame's ids, as for canonical rollouts); tracks are in camera
    pixels; objects without a slot stay where they are."""
    src = frame.source
    lut = {int(o): s for s, o in fit.id_map.items()}
    slot_ids = np.zeros(src.ids.shape, np.uint8)
    for o in np.unique(src.ids):
        if int(o) in lut:
            slot_ids[src.ids == o] = lut[int(o)]
        elif o:
            slot_ids[src.ids == o] = 255 if int(o) == 255 else 0  # the pusher stays; objects without a slot stay put
    K = poses.shape[1]
    frames, masks = warp_se2(src.rgb, slot_ids, poses, src.mapping, object_ids=list(range(1, K + 1)))
    masks = masks.astype(np.uint8)
    if draw_paths:
        for b, st in enumerate(strokes):
            draw_path(frames[b], st, src.mapping, width_px=max(1, round(src.rgb.shape[1] / 320)))
    tracks = src.mapping.to_pixels(poses[..., :2]).astype(np.float32)  # (n, K, Tv, 2)
    areas = np.stack([(masks == k).sum((-1, -2)) for k in range(1, K + 1)], 1).astype(np.float32)
    return RolloutFrames(frames, masks, tracks, areas, list(frame_indices), "se2_warp_camera", poses)


def decide(pipeline, frame: PerceivedFrame, request: DecisionRequest, config: DecisionConfig, rng: np.random.Generator,
           cancelled: Callable[[], bool] | None = None, feedback: Callable[[int, int, int, float, str], None] | None = None,
           deadline: Deadline | None = None) -> Decision:
    """Plan on one perceived frame.

    ``cancelled()`` is checked before every planner iteration (raises :class:`PlanCancelled`);
    ``feedback(iteration, total, rollouts_done, best_cost, stage)`` is called after each;
    planning stops before the next iteration once ``deadline`` expires (best ranking so far).
    ``ValueError`` for bad input (unknown target, goal outside the image, limits exceeded).
    """
    method, nc, iters = request.resolve(config)
    cam = frame.camera
    h, w = frame.shape
    contact = ContactModelConfig(pusher_radius=config.pusher_radius, friction_coefficient=config.friction_coefficient,
                                 object_height=config.object_height, frame_dt=config.frame_dt_s, num_frames=pipeline.config.num_frames)
    pc = PlannerConfig(method=method, num_samples=config.num_samples, num_inference_steps=config.num_inference_steps,
                       max_candidates=config.max_candidates, seed=int(rng.integers(2**31)),
                       cem=CEMConfig(num_samples=max(nc, 2), iterations=iters, num_elites=min(10, max(nc, 2))),
                       mppi=MPPIConfig(num_samples=max(nc, 2), iterations=iters), random=RandomShootingConfig(num_samples=nc),
                       contact=contact, score=config.score)
    planner = PushPlanner(cam, pc, pipeline)
    goal = planner.goal_from_table(np.asarray(request.goal_xy, float), request.goal_yaw)  # ValueError when outside the image
    target_id = frame.select_target(request.target_id, request.goal_xy)
    fit = fit_to_slots(frame.ids, slot_limit(pipeline), cam, target_id, pusher_radius=config.pusher_radius,
                       object_height=config.object_height)
    slots = fit.slots
    slot_target = fit.slot_of(target_id)
    total_it = 1 if method == "random" else iters
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    base = make_dynamics(pipeline, planner.contact, frame.rgb, slots, config.num_samples, config.num_inference_steps, gen)
    progress = {"it": 0, "done": 0, "best": math.inf}

    def dynamics(strokes):
        if cancelled is not None and cancelled():
            raise PlanCancelled(f"after {progress['it']} of {total_it} iterations")
        im = base(strokes)
        progress["it"] += 1
        progress["done"] += len(strokes) * config.num_samples
        if feedback is not None:
            try:
                sc = score_tracks(im.tracks, slot_target, goal, frame.metres_per_pixel, (h, w), np.array([s.length for s in strokes]),
                                  pc.score, im.present, im.poses)
                if sc.valid.any():
                    progress["best"] = min(progress["best"], float(sc.total[sc.valid].min()))
            except ValueError:
                pass
            feedback(progress["it"], total_it, progress["done"], progress["best"], FEEDBACK_STAGES[0])
        return im

    stop = (lambda: deadline.expired) if deadline is not None else None
    out = planner.plan(frame.rgb, slots, slot_target, goal, dynamics=dynamics, stop=stop)
    if cancelled is not None and cancelled():
        raise PlanCancelled(f"after {progress['it']} of {total_it} iterations")
    top = out.top(config.rollout_top_k) if (config.rollout_top_k and out.valid) else []

    def preview(rf: RolloutFrames) -> np.ndarray:
        """The best rollout's final frame with its pusher path and the goal, in the frames' own pixels."""
        m = frame.source.mapping if rf.source.endswith("_camera") else CameraMapping.from_camera(cam, config.object_height / 2)
        return preview_image(rf, [out.strokes[i] for i in top], m, request.goal_xy)

    def render(draw_paths: bool = False) -> RolloutFrames:
        poses = out.imagined.poses[top, 0] if out.imagined.poses is not None else None
        strokes = [out.strokes[i] for i in top]
        if frame.source is not None and poses is not None:  # straight into the camera's pixels
            idx = list(range(0, pipeline.config.num_frames, pipeline.config.video_frame_stride))
            return camera_view(frame, fit, poses[:, :, idx], idx, strokes, draw_paths)
        return rollout_frames(pipeline, planner.contact, frame.rgb, slots, strokes, out.imagined.tracks[top, 0],
                              config.video_inference_steps, gen, poses=poses, draw_paths=draw_paths)

    order = [int(i) for i in out.order]
    msg = (f"best of {len(order)} candidates: cost {out.scores.total[order[0]]:.4f} (target {target_id})" if out.valid
           else (out.message or "no valid candidate"))
    if fit.left_out:
        msg += f"; {len(fit.left_out)} objects got no slot (left_out_ids)" + (f": {fit.warning()}" if fit.warning() else "")
    if deadline is not None and out.iterations < total_it:
        msg += (f"; the time budget of {deadline.budget_s:g} s ran out after {out.iterations} of {total_it} iterations "
                f"(parameter time_budget_s)")
    if feedback is not None:
        feedback(progress["it"], total_it, progress["done"], progress["best"], FEEDBACK_STAGES[1])
    return Decision(out, target_id, fit, total_it, msg, render if top else None, top, preview if top else None)
