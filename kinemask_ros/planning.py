"""Image + goal -> ranked pushes: the glue between the world model, the contact model, candidate
sampling, scoring and the planners. Pure logic (no rclpy); used by the demo, the ROS 2 planner
node, the imagined Gymnasium env and the benchmarks.

    planner = PushPlanner.from_pretrained()              # embedded world model
    plan = planner.plan(image, instance_mask, target_id=2, goal=Goal(point_px=(20, 9)))
    plan.best_stroke, plan.scores.terms["goal_distance"][plan.order[0]]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.candidates import CandidateConfig, ObjectCentricActions
from kinemask_ros.contact import ContactModel, ContactModelConfig
from kinemask_ros.object_scene import fit_to_slots, object_ids
from kinemask_ros.policies.shooting import CEM, MPPI, CEMConfig, MPPIConfig, PlanResult, RandomShooting, RandomShootingConfig
from kinemask_ros.push import PushStroke
from kinemask_ros.scoring import Goal, ScoreConfig, Scores, score_tracks

PLANNERS = ("cem", "mppi", "random")


@dataclass(frozen=True)
class PlannerConfig:
    """Everything a push planner needs besides the model.

    Attributes:
        method: "cem", "mppi" or "random" (random shooting).
        num_samples: stochastic track samples per candidate (uncertainty term).
        num_inference_steps: Euler steps of the track sampler.
        max_candidates: refuse larger requests (a planner asking for more is misconfigured).
        seed: seed of the planner's own randomness (candidate sampling).
    """

    method: str = "cem"
    num_samples: int = 2
    num_inference_steps: int = 8
    max_candidates: int = 1024
    seed: int = 0
    cem: CEMConfig = CEMConfig()
    mppi: MPPIConfig = MPPIConfig()
    random: RandomShootingConfig = RandomShootingConfig()
    candidates: CandidateConfig = CandidateConfig()
    contact: ContactModelConfig = ContactModelConfig()
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def __post_init__(self) -> None:
        if self.method not in PLANNERS:
            raise ValueError(f"PlannerConfig.method must be one of {PLANNERS}, got {self.method!r}")
        for name in ("num_samples", "num_inference_steps", "max_candidates"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"PlannerConfig.{name} must be an int >= 1, got {v!r}")


@dataclass
class Imagined:
    """Rollouts of ``N`` strokes: tracks ``(N, S, K, T, 2)`` px, per-stroke contact targets ``(N,)``,
    ``present (N, K)``, and with an object model the SE(2) poses ``(N, S, K, T, 3)`` [m, rad]."""

    tracks: np.ndarray
    target_ids: np.ndarray
    present: np.ndarray
    poses: np.ndarray | None = None


@dataclass
class PlanOutput:
    """Ranked candidates of one decision.

    Attributes:
        strokes: every evaluated stroke; ``order`` ranks them best first (invalid last).
        params: ``(N, 4)`` object-centric parameters of the strokes.
        scores: cost terms and totals per stroke.
        imagined: the rollouts that were scored (track slot ``k`` is object ``id_map[k]``).
        latency_s: wall time of the decision.
        valid: False when no candidate had a finite cost (``best_stroke`` is then None).
        left_out: object ids that got no world-model slot (:func:`kinemask_ros.object_scene.fit_to_slots`);
            ``id_map`` maps slots to the caller's ids when slots were fitted (None: ids are the slots);
            ``warning`` is non-empty when a left-out object was within reach of the push.
    """

    strokes: list[PushStroke]
    params: np.ndarray
    scores: Scores
    imagined: Imagined
    order: np.ndarray
    latency_s: float
    planner: str
    iterations: int
    message: str = ""
    left_out: list[int] = field(default_factory=list)
    id_map: dict[int, int] | None = None
    warning: str = ""

    @property
    def valid(self) -> bool:
        return bool(len(self.order)) and bool(self.scores.valid[self.order[0]])

    @property
    def best_stroke(self) -> PushStroke | None:
        return self.strokes[self.order[0]] if self.valid else None

    def top(self, k: int) -> list[int]:
        return [int(i) for i in self.order[:k] if self.scores.valid[i]]


DynamicsFn = Callable[[list[PushStroke]], Imagined]


class WorldModelDynamics:
    """Strokes -> imagined tracks with the world-model pipeline (batched, one call per planner iteration)."""

    def __init__(self, pipeline, contact: ContactModel, image: np.ndarray, instance_mask: np.ndarray,
                 num_samples: int = 2, num_inference_steps: int = 8, generator: torch.Generator | None = None,
                 text_encoder=None):
        cfg = pipeline.config
        img = np.asarray(image)
        if img.shape != (cfg.height, cfg.width, 3) or img.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (H, W, 3) = ({cfg.height}, {cfg.width}, 3) at model resolution, got {img.shape} {img.dtype}")
        m = np.asarray(instance_mask)
        if m.shape != (cfg.height, cfg.width):
            raise ValueError(f"instance_mask must be ({cfg.height}, {cfg.width}), got {m.shape}")
        self.pipeline, self.contact = pipeline, contact
        self.image = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
        self.mask_np = m
        self.mask = torch.from_numpy(m.astype(np.int64))[None]
        self.num_samples, self.steps = num_samples, num_inference_steps
        self.generator = generator
        self.text_encoder = text_encoder
        if cfg.text_dim and text_encoder is None:
            from kinemask_ros.world_model.text_encoder import TextEncoder

            self.text_encoder = TextEncoder()
        if cfg.text_dim:
            from kinemask_ros.text import object_names

            self.names = object_names(img, m)

    def inputs(self, strokes: list[PushStroke]) -> dict[str, torch.Tensor]:
        cfg = self.pipeline.config
        n = len(strokes)
        vel = np.zeros((n, cfg.max_objects, 2), np.float32)
        drv = np.zeros((n, cfg.num_frames, 1, cfg.height, cfg.width), np.float32)
        tids = np.zeros(n, np.int64)
        for i, s in enumerate(strokes):
            vel[i], pred = self.contact.velocities(self.mask_np, s, cfg.max_objects)
            tids[i] = pred.target_id
            drv[i] = self.contact.driver_mask(s, cfg.height, cfg.width)
        out = {"image": self.image.expand(n, -1, -1, -1), "instance_mask": self.mask.expand(n, -1, -1),
               "velocities": torch.from_numpy(vel), "driver": torch.from_numpy(drv), "_targets": tids}
        if cfg.text_dim:
            from kinemask_ros.text import predict_description

            texts = [predict_description(self.mask_np, int(t), vel[i, t - 1] if t else np.zeros(2), self.names)
                     for i, t in enumerate(tids)]
            out["text"] = torch.from_numpy(self.text_encoder.encode(texts))
            out["_texts"] = texts
        return out

    def __call__(self, strokes: list[PushStroke]) -> Imagined:
        inp = self.inputs(strokes)
        tids = inp.pop("_targets")
        inp.pop("_texts", None)
        out = self.pipeline(**inp, num_samples=self.num_samples, num_inference_steps=self.steps, generator=self.generator)
        return Imagined(out.tracks.cpu().numpy(), tids, out.present.cpu().numpy())


class ObjectDynamics:
    """Strokes -> imagined tracks with the object-token model (v2): every object, SE(2), metric.

    ``instance_mask`` holds ids ``1..K`` (any ``K``; the planner relabels) at the resolution of
    ``camera``, which maps its pixels to the table: the higher the resolution, the more precise the
    object scene. Tracks are returned in that camera's pixels (for scoring) and as poses.
    """

    def __init__(self, object_model, camera: CameraModel, instance_mask: np.ndarray, num_samples: int = 2,
                 num_inference_steps: int = 8, generator: torch.Generator | None = None, object_height: float = 0.03):
        from kinemask_ros.object_scene import ObjectScene

        m = np.asarray(instance_mask)
        self.model, self.camera, self.z = object_model, camera, object_height / 2
        self.scene = ObjectScene.from_mask(m, camera, object_height)
        K = int(self.scene.ids.max()) if len(self.scene) else 0
        if not np.array_equal(self.scene.ids, np.arange(1, K + 1)):
            raise ValueError(f"instance_mask must hold ids 1..K without gaps, got {self.scene.ids.tolist()}")
        self.num_samples, self.steps, self.generator = num_samples, num_inference_steps, generator

    def __call__(self, strokes: list[PushStroke]) -> Imagined:
        from kinemask_ros.world_model.objects import FEATURES, stroke_features

        f = stroke_features(self.scene, strokes, self.model.pusher_radius)
        poses = self.model.predict(self.scene, strokes, self.num_samples, self.steps, self.generator, features=f)
        first = f[..., FEATURES.index("first_touch")] > 0
        tids = np.where(first.any(1), first.argmax(1) + 1, 0).astype(np.int64)
        tracks = self.camera.project_table(poses[..., :2], self.z).astype(np.float32)
        present = np.ones((len(strokes), len(self.scene)), bool)
        return Imagined(tracks, tids, present, poses)


def make_dynamics(pipeline, contact: ContactModel, image: np.ndarray, instance_mask: np.ndarray, num_samples: int = 2,
                  num_inference_steps: int = 8, generator: torch.Generator | None = None, use_objects: bool = True):
    """The pipeline's imagination for strokes on this frame: :class:`ObjectDynamics` when the checkpoint
    has an object model (and ``use_objects``), else :class:`WorldModelDynamics` (raster, ``K`` slots)."""
    if use_objects and getattr(pipeline, "object_model", None) is not None:
        return ObjectDynamics(pipeline.object_model, contact.camera, instance_mask, num_samples, num_inference_steps, generator,
                              contact.config.object_height)
    return WorldModelDynamics(pipeline, contact, image, instance_mask, num_samples, num_inference_steps, generator)


def slot_limit(pipeline) -> int:
    """How many objects the pipeline can imagine at once (the raster model's ``K``; the object model: 32)."""
    return MAX_SCENE_OBJECTS if getattr(pipeline, "object_model", None) is not None else pipeline.config.max_objects


#: objects the object-token model takes in one scene (attention cost grows with its square)
MAX_SCENE_OBJECTS = 32
#: largest frame the object model plans on (larger frames are downscaled by an integer factor)
MAX_PLANNING_PIXELS = 640 * 480


def planning_size(pipeline, shape: tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` a frame of ``shape`` is planned at: the raster model's resolution, or with an
    object model the frame's own (downscaled by an integer factor above ``MAX_PLANNING_PIXELS``), so
    object poses and first touches are measured at camera resolution."""
    if getattr(pipeline, "object_model", None) is None:
        return pipeline.config.height, pipeline.config.width
    from kinemask_ros.segmentation.core import downscale_factor

    h, w = shape
    f = downscale_factor(h, w, MAX_PLANNING_PIXELS)
    return -(-h // f), -(-w // f)


class PushPlanner:
    """Ranks pushes of a target towards a goal with any dynamics (world model or simulator)."""

    def __init__(self, camera: CameraModel, config: PlannerConfig | None = None, pipeline=None):
        self.camera = camera
        self.config = config or PlannerConfig()
        self.pipeline = pipeline
        self.contact = ContactModel(camera, self.config.contact)
        self._rng = np.random.default_rng(self.config.seed)

    @classmethod
    def from_pretrained(cls, path=None, camera: CameraConfig | None = None, config: PlannerConfig | None = None,
                        device: str = "cpu") -> "PushPlanner":
        from kinemask_ros.world_model.pipeline import KineMaskPipeline

        pipe = KineMaskPipeline.from_pretrained(path, device=device)
        cam = CameraModel(camera or CameraConfig(width=pipe.config.width, height=pipe.config.height))
        return cls(cam, config, pipe)

    def _make_planner(self):
        c = self.config
        return {"cem": lambda: CEM(c.cem), "mppi": lambda: MPPI(c.mppi), "random": lambda: RandomShooting(c.random)}[c.method]()

    def plan(self, image: np.ndarray, instance_mask: np.ndarray, target_id: int, goal: Goal,
             dynamics: DynamicsFn | None = None, warm_start: np.ndarray | None = None,
             num_candidates: int | None = None, stop: Callable[[], bool] | None = None) -> PlanOutput:
        """Rank pushes of ``target_id`` towards ``goal``.

        Args:
            image: ``(H, W, 3)`` uint8 at model resolution.
            instance_mask: ``(H, W)`` ids (0 background, 1..K objects).
            target_id: object to move.
            goal: :class:`Goal` in pixels (must lie inside the image).
            dynamics: strokes -> :class:`Imagined`; default the world model.
            warm_start: ``(4,)`` parameters of the previous best push (MPC warm start).
            num_candidates: override the planner's samples per iteration.
            stop: checked before every CEM/MPPI iteration after the first; True returns the
                ranking of the iterations done so far (a time budget). ``PlanOutput.iterations``
                says how many ran.
        """
        t0 = time.perf_counter()
        cfg = self.config
        H, W = self.camera.height, self.camera.width
        goal.check_inside(H, W)
        fit = None
        present = object_ids(instance_mask)
        if dynamics is None and self.pipeline is not None and (len(present) > slot_limit(self.pipeline) or present != list(range(1, len(present) + 1))):
            fit = fit_to_slots(instance_mask, slot_limit(self.pipeline), self.camera, target_id,
                               pusher_radius=cfg.contact.pusher_radius, object_height=cfg.candidates.object_height)
            instance_mask, target_id = fit.slots, fit.slot_of(target_id)
        actions = ObjectCentricActions(instance_mask, target_id, self.camera, cfg.candidates)
        if dynamics is None:
            if self.pipeline is None:
                raise ValueError("this planner has no world model: pass dynamics= or build it with from_pretrained()")
            gen = torch.Generator().manual_seed(int(self._rng.integers(2**31)))
            dynamics = make_dynamics(self.pipeline, self.contact, image, instance_mask, cfg.num_samples,
                                          cfg.num_inference_steps, gen)
        planner = self._make_planner()
        if num_candidates is not None:
            if not 1 <= num_candidates <= cfg.max_candidates:
                raise ValueError(f"num_candidates must be in [1, {cfg.max_candidates}], got {num_candidates}")
            if num_candidates < 2 and cfg.method != "random":
                raise ValueError(f"num_candidates={num_candidates} is too few for {cfg.method} (it needs >= 2 per iteration); "
                                 f"use method='random' for one candidate")
            planner.config = replace(planner.config, num_samples=num_candidates)
            if cfg.method == "cem" and planner.config.num_elites > planner.config.num_samples:
                planner.config = replace(planner.config, num_elites=planner.config.num_samples)
        goal_xy = self._goal_table(goal)
        n0 = planner.config.num_samples
        init = actions.sample(n0, self._rng, goal_xy)
        if warm_start is not None:
            init[0] = np.clip(np.asarray(warm_start, float), -1, 1)
        mpp = 1.0 / self.camera.pixels_per_metre(cfg.candidates.object_height / 2)
        bounds = cfg.candidates.push_bounds
        log: list[tuple[np.ndarray, list[PushStroke], Imagined, Scores]] = []

        def cost_fn(params: np.ndarray) -> np.ndarray:
            strokes = actions.to_strokes(params)
            im = dynamics(strokes)
            sc = score_tracks(im.tracks, target_id, goal, mpp, (H, W), np.array([s.length for s in strokes]), cfg.score, im.present,
                              im.poses)
            for i, st in enumerate(strokes):  # the service's rule: a stroke outside the trained box is never a candidate
                why = bounds.violation(st)
                if why:
                    sc.total[i], sc.valid[i], sc.reasons[i] = np.inf, False, why
            log.append((np.clip(params, -1, 1), strokes, im, sc))
            return sc.total

        kwargs = {"mean": warm_start} if (warm_start is not None and cfg.method in ("cem", "mppi")) else {}
        result: PlanResult = planner.plan(cost_fn, actions.dim, self._rng, init=init, stop=stop, **kwargs)
        params = np.concatenate([p for p, _, _, _ in log])
        strokes = [s for _, st, _, _ in log for s in st]
        imag = Imagined(*(np.concatenate([getattr(im, f) for _, _, im, _ in log]) for f in ("tracks", "target_ids", "present")),
                        np.concatenate([im.poses for _, _, im, _ in log]) if log[0][2].poses is not None else None)
        scores = Scores(np.concatenate([s.total for *_, s in log]),
                        {k: np.concatenate([s.terms[k] for *_, s in log]) for k in log[0][3].terms},
                        np.concatenate([s.valid for *_, s in log]), [r for *_, s in log for r in s.reasons])
        order = scores.ranking()
        msg = "" if scores.valid.any() else "no valid candidate: every imagined rollout was invalid (" + scores.reasons[0] + ")"
        out = PlanOutput(strokes, params, scores, imag, order, time.perf_counter() - t0, cfg.method, result.iterations, msg)
        if fit is not None:
            out.left_out, out.id_map, out.warning = list(fit.left_out), dict(fit.id_map), fit.warning()
            lut = np.array([0] + [fit.id_map[k] for k in sorted(fit.id_map)], np.int64)
            out.imagined.target_ids = lut[np.asarray(out.imagined.target_ids, np.int64)]
        return out

    def _goal_table(self, goal: Goal) -> np.ndarray:
        if goal.point_px is not None:
            p = goal.point_px
        else:
            rows, cols = np.nonzero(goal.region)
            p = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
        return self.camera.unproject_table(np.asarray(p, float), self.config.candidates.object_height / 2)

    def goal_from_table(self, xy: np.ndarray, yaw: float | None = None) -> Goal:
        """Goal from a table point [m] and optionally a final yaw [rad] (checked against the workspace image)."""
        return Goal.from_table(self.camera, xy, self.config.candidates.object_height / 2, yaw)
