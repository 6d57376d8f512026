"""Typed configuration of every ROS 2 node (pure Python, no rclpy).

One frozen dataclass per node; each field is one ROS parameter of the same name (DESIGN §6).
``__post_init__`` validates and raises ``ValueError`` naming the bad value; the nodes use that
reason when they reject a parameter change (``SetParametersResult(successful=False, reason=...)``).

:func:`config_to_params` / :func:`config_replace` convert between a config and parameter values
(ints are accepted for float fields, lists for tuple fields), so launch files, ``kinemask-graph``
and tests all speak the same names.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields, replace
from typing import Any

from kinemask_ros.camera import CameraConfig
from kinemask_ros.push import PushBounds
from kinemask_ros.scoring import TERM_NAMES, ScoreConfig

PLANNER_METHODS = ("cem", "mppi", "random")
SEGMENTATION_BACKENDS = ("classical", "rgb", "rgbd")
REPLAN_MODES = ("every_frame", "on_goal")


def _finite(owner: str, name: str, v, lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo or v > hi or (lo_open and v <= lo):
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{owner}.{name} must be a finite number in {rng}, got {v!r}")


def _int(owner: str, name: str, v, lo: int = 0, hi: int | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise ValueError(f"{owner}.{name} must be an int in [{lo}, {hi if hi is not None else 'inf'}], got {v!r}")


def _device(owner: str, v: str) -> None:
    ok = isinstance(v, str) and (v in ("cpu", "cuda", "auto") or (v.startswith("cuda:") and v[5:].isdigit()))
    if not ok:
        raise ValueError(f"{owner}.device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {v!r}")


@dataclass(frozen=True)
class _CameraFields:
    """Camera geometry shared by the nodes that map table points to pixels (see :class:`CameraConfig`).

    Attributes:
        camera_fov_deg: vertical field of view [deg] (square pixels; intrinsics K follow from it and the image size).
        camera_eye: camera position in the table frame [m].
        camera_target: table point the optical axis passes through [m].
        camera_up: table-frame direction that appears "up" in the image.
    """

    camera_fov_deg: float = CameraConfig.fov_deg
    camera_eye: tuple[float, ...] = CameraConfig.eye
    camera_target: tuple[float, ...] = CameraConfig.target
    camera_up: tuple[float, ...] = CameraConfig.up

    def camera_config(self, width: int, height: int) -> CameraConfig:
        return CameraConfig(width=int(width), height=int(height), fov_deg=float(self.camera_fov_deg),
                            eye=tuple(self.camera_eye), target=tuple(self.camera_target), up=tuple(self.camera_up))

    def _check_camera(self, owner: str) -> None:
        for name in ("camera_eye", "camera_target", "camera_up"):
            v = getattr(self, name)
            if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise ValueError(f"{owner}.{name} must be 3 finite numbers, got {list(v)!r}")
        try:
            self.camera_config(32, 32)
        except ValueError as e:
            raise ValueError(f"{owner}: {e}") from None


@dataclass(frozen=True)
class _ScoreFields:
    """Weights of the named cost terms (:data:`kinemask_ros.scoring.TERM_NAMES`).

    Attributes:
        weight_goal_distance: weight of the target's final distance to the goal [per m].
        weight_disturbance: weight of the summed displacement of the other objects [per m].
        weight_workspace: weight of how far objects end outside the workspace [per m].
        weight_disagreement: weight of the spread of the target's final position across samples [per m].
        weight_effort: weight of the stroke length [per m].
        weight_goal_yaw: weight of the target's final rotation error [per rad] (goals with a yaw only).
    """

    weight_goal_distance: float = ScoreConfig().weights["goal_distance"]
    weight_disturbance: float = ScoreConfig().weights["disturbance"]
    weight_workspace: float = ScoreConfig().weights["workspace"]
    weight_disagreement: float = ScoreConfig().weights["disagreement"]
    weight_effort: float = ScoreConfig().weights["effort"]
    weight_goal_yaw: float = ScoreConfig().weights["goal_yaw"]

    def score_config(self) -> ScoreConfig:
        return ScoreConfig(weights={k: float(getattr(self, f"weight_{k}")) for k in TERM_NAMES})

    def _check_weights(self, owner: str) -> None:
        for k in TERM_NAMES:
            _finite(owner, f"weight_{k}", getattr(self, f"weight_{k}"), 0.0)


@dataclass(frozen=True)
class _ContactFields:
    """Contact model and clip timing (see :class:`kinemask_ros.contact.ContactModelConfig`).

    Attributes:
        frame_dt_s: seconds between rollout frames (the world model's training data: 0.08).
        object_height: nominal object height [m]; masks are read at half of it.
        pusher_radius: pusher disk radius [m].
        friction_coefficient: pusher-object friction of the contact model's friction cone.
    """

    frame_dt_s: float = 0.08
    object_height: float = 0.03
    pusher_radius: float = 0.012
    friction_coefficient: float = 0.5

    def _check_contact(self, owner: str) -> None:
        for name in ("frame_dt_s", "object_height", "pusher_radius"):
            _finite(owner, name, getattr(self, name), 0.0, lo_open=True)
        _finite(owner, "friction_coefficient", self.friction_coefficient, 0.0)


@dataclass(frozen=True)
class _AdmissionFields:
    """Admission control and per-request limits (see :mod:`kinemask_ros.admission`, docs/ros2.md).

    Attributes:
        max_queue: requests / goals that may wait behind the running one; more are answered at once with "busy: ... retry".
        time_budget_s: per-request wall time from arrival (queue wait included); when it runs out the best result so far is returned.
        max_image_pixels: images with more pixels are refused (before any decoding work); smaller ones are downscaled to the model before segmenting.
    """

    max_queue: int = 8
    time_budget_s: float = 10.0
    max_image_pixels: int = 4096 * 4096

    @property
    def executor_threads(self) -> int:
        """One executor thread per queued request, the running one and spares for fast replies."""
        return self.max_queue + 4

    def _check_admission(self, owner: str) -> None:
        _int(owner, "max_queue", self.max_queue, 0, 1024)
        _finite(owner, "time_budget_s", self.time_budget_s, 0.0, 3600.0, lo_open=True)
        _int(owner, "max_image_pixels", self.max_image_pixels, 16, 8192 * 8192)


@dataclass(frozen=True)
class _StrokeBoundsFields:
    """Bounds of the strokes a request may ask about (the world model's training box, :class:`PushBounds`).

    Attributes:
        stroke_x_range, stroke_y_range: start point [m] in the table frame.
        stroke_length_range: stroke length [m].
        stroke_speed_range: pusher speed [m/s].
    """

    stroke_x_range: tuple[float, ...] = PushBounds.x_range
    stroke_y_range: tuple[float, ...] = PushBounds.y_range
    stroke_length_range: tuple[float, ...] = PushBounds.length_range
    stroke_speed_range: tuple[float, ...] = PushBounds.speed_range

    #: reason texts name these parameters
    BOUNDS_PARAMS = {"x_range": "stroke_x_range", "y_range": "stroke_y_range", "length_range": "stroke_length_range",
                     "speed_range": "stroke_speed_range"}

    def push_bounds(self) -> PushBounds:
        return PushBounds(*(tuple(getattr(self, f"stroke_{k}")) for k in ("x_range", "y_range", "length_range", "speed_range")))

    def _check_bounds(self, owner: str) -> None:
        for k in ("x_range", "y_range", "length_range", "speed_range"):
            v = getattr(self, f"stroke_{k}")
            if len(v) != 2:
                raise ValueError(f"{owner}.stroke_{k} must be two numbers [low, high], got {list(v)!r}")
        try:
            self.push_bounds()
        except ValueError as e:
            raise ValueError(f"{owner}: {e}") from None


@dataclass(frozen=True)
class SegmentationNodeConfig:
    """Parameters of ``kinemask-segmentation-node``.

    Attributes:
        rate_hz: most frames segmented per second (a timer takes the newest frame; older ones are dropped).
        target_id: select the target by instance id (0 = not by id).
        target_pixel: select the object under / nearest to pixel (u, v); empty = not by pixel.
        target_label: select by label, e.g. "red" or "the red box"; "" = not by label. At most
            one of target_id, target_pixel, target_label may be set. The ``target_label`` topic
            (std_msgs/String) overrides the label at run time.
        backend: "classical" (the simulator's palette colours), "rgb" (palette-free colour:
            any table, any object colours) or "rgbd" (height above the table from
            ``camera/depth/image_raw`` + ``camera/camera_info`` + ``camera/table_pose``; splits
            touching objects of one colour); see docs/segmentation.md.
        background_threshold, color_threshold, min_area, max_objects: the classical segmenter
            (:class:`kinemask_ros.segmentation.classical.ClassicalConfig`).
        track_ids: keep object ids stable from frame to frame (:class:`~kinemask_ros.segmentation.TrackedSegmenter`),
            so that ``target_id`` names the same object over a stream.
        max_image_pixels: larger camera images are dropped with a warning.
        max_segment_pixels: larger images are box-downscaled (integer factor) to at most this many
            pixels before segmenting; the mask is scaled back to the image size (nearest).
    """

    rate_hz: float = 30.0
    backend: str = "classical"
    target_id: int = 0
    target_pixel: tuple[float, ...] = ()
    target_label: str = ""
    background_threshold: float = 0.12
    color_threshold: float = 0.06
    min_area: int = 3
    max_objects: int = 254
    track_ids: bool = True
    max_image_pixels: int = 4096 * 4096
    max_segment_pixels: int = 320 * 240

    def __post_init__(self) -> None:
        o = "SegmentationNodeConfig"
        if self.backend not in SEGMENTATION_BACKENDS:
            raise ValueError(f"{o}.backend must be one of {SEGMENTATION_BACKENDS}, got {self.backend!r}")
        if not isinstance(self.track_ids, bool):
            raise ValueError(f"{o}.track_ids must be a bool, got {self.track_ids!r}")
        _finite(o, "rate_hz", self.rate_hz, 0.0, 1000.0, lo_open=True)
        _int(o, "target_id", self.target_id, 0, 254)
        if len(self.target_pixel) not in (0, 2) or not all(isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 for x in self.target_pixel):
            raise ValueError(f"{o}.target_pixel must be empty or two finite numbers (u, v) >= 0, got {list(self.target_pixel)!r}")
        if not isinstance(self.target_label, str):
            raise ValueError(f"{o}.target_label must be a string, got {self.target_label!r}")
        given = [n for n, on in (("target_id", self.target_id > 0), ("target_pixel", bool(self.target_pixel)),
                                 ("target_label", bool(self.target_label.strip()))) if on]
        if len(given) > 1:
            raise ValueError(f"{o}: set at most one of target_id, target_pixel, target_label; got {given}")
        _int(o, "max_image_pixels", self.max_image_pixels, 16, 8192 * 8192)
        _int(o, "max_segment_pixels", self.max_segment_pixels, 16, 8192 * 8192)
        self.segmenter_config()  # validates the segmenter fields

    def segmenter_config(self):
        from kinemask_ros.segmentation.classical import ClassicalConfig

        return ClassicalConfig(background_threshold=float(self.background_threshold), color_threshold=float(self.color_threshold),
                               min_area=self.min_area, max_objects=self.max_objects)


@dataclass(frozen=True)
class WorldModelNodeConfig(_CameraFields, _ScoreFields, _ContactFields, _AdmissionFields, _StrokeBoundsFields):
    """Parameters of ``kinemask-world-model-node`` (a lifecycle node serving ``imagine_outcomes``).

    Attributes:
        checkpoint: world-model directory ("" = the embedded checkpoint); read on configure.
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available); read on configure.
        autostart: configure and activate right after start-up (no lifecycle manager needed).
        max_batch: requests with more candidates fail (protects the node's memory and latency).
        Admission (max_queue, time_budget_s, max_image_pixels) and stroke
        bounds (stroke_*_range): see the mixins; a stroke outside the bounds is an invalid
        candidate with the reason, never imagined.
        num_samples: default stochastic samples per candidate (a request's 0 means this).
        max_samples: requests asking for more samples fail.
        num_inference_steps, video_inference_steps: sampler steps of the track / video model.
        max_rollouts: with return_frames, frames are rendered for at most this many candidates (the best).
        torch_threads: CPU threads for torch (0 = torch's default).
        seed: seed of the sampling noise.
        use_camera_info: read a request image of the size of ``camera/camera_info`` in that camera's
            canonical table frame (with ``camera/table_pose``); false = always the ``camera_*`` parameters.
    """

    checkpoint: str = ""
    device: str = "cpu"
    autostart: bool = False
    use_camera_info: bool = True
    max_batch: int = 256
    num_samples: int = 2
    max_samples: int = 16
    num_inference_steps: int = 8
    video_inference_steps: int = 10
    max_rollouts: int = 16
    torch_threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        o = "WorldModelNodeConfig"
        if not isinstance(self.checkpoint, str):
            raise ValueError(f"{o}.checkpoint must be a path string, got {self.checkpoint!r}")
        _device(o, self.device)
        if not isinstance(self.autostart, bool):
            raise ValueError(f"{o}.autostart must be a bool, got {self.autostart!r}")
        if not isinstance(self.use_camera_info, bool):
            raise ValueError(f"{o}.use_camera_info must be true or false, got {self.use_camera_info!r}")
        _int(o, "max_batch", self.max_batch, 1, 100_000)
        _int(o, "num_samples", self.num_samples, 1, 64)
        _int(o, "max_samples", self.max_samples, 1, 64)
        if self.num_samples > self.max_samples:
            raise ValueError(f"{o}.num_samples ({self.num_samples}) must be <= max_samples ({self.max_samples})")
        _int(o, "num_inference_steps", self.num_inference_steps, 1, 200)
        _int(o, "video_inference_steps", self.video_inference_steps, 1, 200)
        _int(o, "max_rollouts", self.max_rollouts, 0, 1024)
        _int(o, "torch_threads", self.torch_threads, 0, 256)
        _int(o, "seed", self.seed, 0, 2**31 - 1)
        self._check_camera(o)
        self._check_weights(o)
        self._check_contact(o)
        self._check_admission(o)
        self._check_bounds(o)


@dataclass(frozen=True)
class PlannerNodeConfig(_CameraFields, _ScoreFields, _ContactFields, _AdmissionFields):
    """Parameters of ``kinemask-planner-node`` (world model in-process, see docs/ros2.md).

    Attributes:
        checkpoint, device, torch_threads, seed: as for the world-model node (read at start-up).
        method: "cem", "mppi" or "random" (default planner; a PlanPush goal may pick another).
        num_candidates: candidates imagined per planner iteration.
        iterations: CEM/MPPI iterations.
        num_samples, num_inference_steps, video_inference_steps: world-model sampling.
        max_candidates: PlanPush goals asking for more candidates per iteration fail.
        replan: "every_frame" = while a goal is set (``goal`` topic), plan on every new segmented
            frame (newest frame wins, frames arriving during a plan are dropped);
            "on_goal" = plan once per goal message, on the first frame stamped at or after the goal.
        goal_frame_timeout_s: "on_goal": how long to wait for such a frame before planning on the newest one.
        rollout_top_k: PredictedRollouts published for the best k candidates of each decision (0 = none).
        use_camera_info: plan in the canonical table frame of the calibrated camera given by
            ``camera/camera_info`` + ``camera/table_pose`` (+ ``camera/depth/image_raw`` when
            published) once they arrive; false = the ``camera_*`` parameters.
        camera_info_wait_s: with ``use_camera_info``, how long after the first camera image to wait
            for those messages (no plan meanwhile) before planning with the ``camera_*`` parameters.
        max_queue, time_budget_s, max_image_pixels: admission of PlanPush goals
            (see the mixin); topic-driven replanning never takes a queue place.
    """

    checkpoint: str = ""
    device: str = "cpu"
    torch_threads: int = 0
    seed: int = 0
    method: str = "cem"
    num_candidates: int = 64
    iterations: int = 3
    num_samples: int = 2
    num_inference_steps: int = 8
    video_inference_steps: int = 10
    max_candidates: int = 1024
    replan: str = "every_frame"
    goal_frame_timeout_s: float = 5.0
    rollout_top_k: int = 3
    use_camera_info: bool = True
    camera_info_wait_s: float = 5.0

    def __post_init__(self) -> None:
        o = "PlannerNodeConfig"
        if not isinstance(self.checkpoint, str):
            raise ValueError(f"{o}.checkpoint must be a path string, got {self.checkpoint!r}")
        _device(o, self.device)
        _int(o, "torch_threads", self.torch_threads, 0, 256)
        _int(o, "seed", self.seed, 0, 2**31 - 1)
        if self.method not in PLANNER_METHODS:
            raise ValueError(f"{o}.method must be one of {PLANNER_METHODS}, got {self.method!r}")
        _int(o, "max_candidates", self.max_candidates, 1, 100_000)
        _int(o, "num_candidates", self.num_candidates, 2, self.max_candidates)
        _int(o, "iterations", self.iterations, 1, 1000)
        _int(o, "num_samples", self.num_samples, 1, 64)
        _int(o, "num_inference_steps", self.num_inference_steps, 1, 200)
        _int(o, "video_inference_steps", self.video_inference_steps, 1, 200)
        if self.replan not in REPLAN_MODES:
            raise ValueError(f"{o}.replan must be one of {REPLAN_MODES}, got {self.replan!r}")
        _finite(o, "goal_frame_timeout_s", self.goal_frame_timeout_s, 0.0, 3600.0)
        _int(o, "rollout_top_k", self.rollout_top_k, 0, 64)
        if not isinstance(self.use_camera_info, bool):
            raise ValueError(f"{o}.use_camera_info must be true or false, got {self.use_camera_info!r}")
        _finite(o, "camera_info_wait_s", self.camera_info_wait_s, 0.0, 3600.0)
        self._check_camera(o)
        self._check_weights(o)
        self._check_contact(o)
        self._check_admission(o)

    def decision_config(self):
        """The core's :class:`~kinemask_ros.decision.DecisionConfig` of these parameters."""
        from kinemask_ros.decision import DecisionConfig

        return DecisionConfig(method=self.method, num_candidates=self.num_candidates, iterations=self.iterations,
                              max_candidates=self.max_candidates, num_samples=self.num_samples,
                              num_inference_steps=self.num_inference_steps, pusher_radius=self.pusher_radius,
                              friction_coefficient=self.friction_coefficient, object_height=self.object_height,
                              frame_dt_s=self.frame_dt_s, score=self.score_config(), rollout_top_k=self.rollout_top_k,
                              video_inference_steps=self.video_inference_steps)


@dataclass(frozen=True)
class SimBridgeNodeConfig(_CameraFields):
    """Parameters of ``kinemask-sim-bridge-node`` (PyBullet tabletop <-> ROS 2).

    Attributes:
        rate_hz: camera frame rate.
        image_width, image_height: simulated camera resolution (the world model's by default).
        seed: seed of the scene, target and goal sampling.
        num_objects: objects per scene (0 = random between the scene's limits).
        reset_on_done: sample a new scene after a push that reaches the goal or loses the target.
        frame_id: frame of the camera images: the camera's optical frame (x right, y down, z forward).
        camera_distance: 0 = the camera pose is ``camera_eye`` / ``camera_target`` / ``camera_up``;
            > 0 [m] = the camera looks at ``camera_target`` from this distance at
            ``camera_elevation_deg`` above the table and ``camera_azimuth_deg`` (table-plane
            direction from the target to the camera, -90 = in front of the table), as
            :meth:`CameraConfig.oblique` (e.g. 0.8 m at 45 deg with ``camera_fov_deg`` 42).
        camera_elevation_deg, camera_azimuth_deg: see ``camera_distance``.
        look: "canonical" (palette colours, the training default) or "randomized" (a new
            :meth:`LookConfig.randomized` look per scene, drawn from ``seed``).
        publish_depth: publish the registered depth image and its CameraInfo.
        table_frame_id: TF frame of the table (parent of ``frame_id`` on ``/tf_static`` and
            ``camera/table_pose``).
    """

    rate_hz: float = 30.0
    image_width: int = 32
    image_height: int = 32
    seed: int = 0
    num_objects: int = 0
    reset_on_done: bool = True
    frame_id: str = "camera"
    camera_distance: float = 0.0
    camera_elevation_deg: float = 90.0
    camera_azimuth_deg: float = -90.0
    look: str = "canonical"
    publish_depth: bool = True
    table_frame_id: str = "table"

    def __post_init__(self) -> None:
        o = "SimBridgeNodeConfig"
        _finite(o, "rate_hz", self.rate_hz, 0.0, 1000.0, lo_open=True)
        _int(o, "image_width", self.image_width, 4, 4096)
        _int(o, "image_height", self.image_height, 4, 4096)
        _int(o, "seed", self.seed, 0, 2**31 - 1)
        _int(o, "num_objects", self.num_objects, 0, 4)
        if not isinstance(self.reset_on_done, bool):
            raise ValueError(f"{o}.reset_on_done must be a bool, got {self.reset_on_done!r}")
        if not isinstance(self.frame_id, str) or not self.frame_id:
            raise ValueError(f"{o}.frame_id must be a non-empty string, got {self.frame_id!r}")
        if not isinstance(self.table_frame_id, str) or not self.table_frame_id or self.table_frame_id == self.frame_id:
            raise ValueError(f"{o}.table_frame_id must be a non-empty string other than frame_id, got {self.table_frame_id!r}")
        _finite(o, "camera_distance", self.camera_distance, 0.0, 100.0)
        _finite(o, "camera_elevation_deg", self.camera_elevation_deg, 1.0, 90.0)
        _finite(o, "camera_azimuth_deg", self.camera_azimuth_deg, -360.0, 360.0)
        if self.look not in ("canonical", "randomized"):
            raise ValueError(f"{o}.look must be 'canonical' or 'randomized', got {self.look!r}")
        if not isinstance(self.publish_depth, bool):
            raise ValueError(f"{o}.publish_depth must be a bool, got {self.publish_depth!r}")
        self._check_camera(o)
        try:
            self.sim_camera_config()
        except ValueError as e:
            raise ValueError(f"{o}: {e}") from None

    def sim_camera_config(self) -> CameraConfig:
        """The simulated camera: ``camera_*`` as given, or placed by distance/elevation/azimuth."""
        if self.camera_distance == 0.0:
            return self.camera_config(self.image_width, self.image_height)
        return CameraConfig.oblique(int(self.image_width), int(self.image_height), elevation_deg=float(self.camera_elevation_deg),
                                    distance=float(self.camera_distance), azimuth_deg=float(self.camera_azimuth_deg),
                                    fov_deg=float(self.camera_fov_deg), target=tuple(float(v) for v in self.camera_target))


NODE_CONFIGS = {
    "kinemask-segmentation-node": SegmentationNodeConfig,
    "kinemask-world-model-node": WorldModelNodeConfig,
    "kinemask-planner-node": PlannerNodeConfig,
    "kinemask-sim-bridge-node": SimBridgeNodeConfig,
}


# ----------------------------------------------------------------------------- params <-> config
def field_types(cls) -> dict[str, type]:
    """Field name -> base type (bool, int, float, str or tuple) of a config dataclass."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        t = hints[f.name]
        out[f.name] = tuple if typing.get_origin(t) is tuple else t
    return out


def config_to_params(cfg) -> dict[str, Any]:
    """Parameter values of a config (tuples become lists)."""
    return {f.name: (list(v) if isinstance(v, tuple) else v) for f in fields(cfg) for v in [getattr(cfg, f.name)]}


def coerce(cls, name: str, value):
    """A parameter value converted to the config field's type, or ``ValueError`` naming the mismatch."""
    types = field_types(cls)
    if name not in types:
        raise ValueError(f"unknown parameter {name!r} for {cls.__name__}; known: {sorted(types)}")
    t = types[name]
    bad = ValueError(f"parameter {name!r} must be {t.__name__ if t is not tuple else 'a list of numbers'}, got {value!r}")
    if t is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if t is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if t is str:
        if not isinstance(value, str):
            raise bad
        return value
    if t is tuple:
        if isinstance(value, (str, bytes)) or value is None:
            raise bad
        try:
            items = list(value)
        except TypeError:
            raise bad from None
        if any(isinstance(x, (bool, str, bytes)) or not isinstance(x, (int, float)) for x in items):
            raise bad
        return tuple(float(x) for x in items)
    raise bad  # pragma: no cover


def config_replace(cfg, updates: dict[str, Any]):
    """``cfg`` with parameter values replaced (coerced and validated; ``ValueError`` with the reason)."""
    cls = type(cfg)
    return replace(cfg, **{k: coerce(cls, k, v) for k, v in updates.items()})
