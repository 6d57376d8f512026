"""``kinemask-world-model-node``: lifecycle node serving ``imagine_outcomes`` (ImagineOutcomes).

Lifecycle (rclpy.lifecycle, as in ros2/demos lifecycle_py):

* ``on_configure`` loads the checkpoint (``checkpoint`` parameter, "" = embedded) on ``device``;
* ``on_activate`` / ``on_deactivate`` open / close the service for requests;
* ``on_cleanup`` / ``on_shutdown`` free the weights (and the CUDA cache).

A request while the node is not active, with more than ``max_batch`` candidates, a malformed or
oversized image or mask, an unknown target id or a non-finite / out-of-image goal gets
``success=False`` and a readable ``message``; a candidate with NaN/inf values or outside the stroke
bounds (``stroke_*_range``) is returned ``valid=False`` with its ``reason`` while the others are
scored. ``autostart:=true`` configures and activates at start-up.

Cameras: with ``use_camera_info`` (default) and ``camera/camera_info`` + ``camera/table_pose``
received, a request image of the CameraInfo's size is rectified into the camera's canonical table
frame (as the planner does), so a separate client can send its own camera's frames; any other
image, or one from the very camera the ``camera_*`` parameters describe (read as it is, without
resampling), is read with the ``camera_*`` parameters. The response's ``message`` says which.

Admission (:mod:`kinemask_ros.admission`): one request runs, at most ``max_queue`` wait (FIFO);
a request beyond that is answered at once with ``success=False, message="busy: ... retry later"``.
Every request has ``time_budget_s`` from its arrival: if it cannot start in time it is answered
busy; if scoring runs out of time the candidates not reached are ``valid=False`` with the reason.
The service runs in a reentrant callback group on ``max_queue + 4`` executor threads, so a full
queue never stops the node from answering. Deactivate / cleanup wait for the running and queued
requests to be answered first.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import torch
from geometry_msgs.msg import TransformStamped
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo

from kinemask_ros.admission import Admission, Busy, Deadline
from kinemask_ros.camera import CameraModel
from kinemask_ros.contact import ContactModel, ContactModelConfig
from kinemask_ros.imagination import imagine_candidates, rollout_frames, stroke_or_reason
from kinemask_ros.ros.common import LATCHED_QOS, REQUEST_QOS, SENSOR_QOS, ConfigParameters, Throttle, run, torch_setup, warn_throttled
from kinemask_ros.ros.config import WorldModelNodeConfig
from kinemask_ros.ros.messages import (CalibrationCache, check_image_size, goal_yaw_from_fields, ids_from_msg, image_is_empty, rgb_from_msg, rollout_msg,
                                       scored_candidate, stroke_values)
from kinemask_ros.object_scene import fit_to_slots
from kinemask_ros.perception import perceive
from kinemask_ros.planning import slot_limit
from kinemask_ros.ros_convert import finite_or_reason
from kinemask_ros.table_frame import same_camera
from kinemask_ros_interfaces.msg import ScoredCandidate
from kinemask_ros_interfaces.srv import ImagineOutcomes


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return name


def checkpoint_name(path: str) -> str:
    return "embedded" if not path else Path(path).name or path


def _stroke_or_none(values):
    return stroke_or_reason(values)[0]


class RequestError(ValueError):
    """A request rejected as a whole (becomes success=False, message=str(e))."""


def load_frame(pipeline, image_msg, mask_msg, camera, object_height: float = 0.03):
    """Request image (+ optional mask) -> :class:`~kinemask_ros.perception.PerceivedFrame` at the planning size.

    An empty mask (width 0) is segmented by the front end on the image already downscaled to the
    planning size (segmenting a 4096x4096 frame first took 28 s). The image size limit is checked
    on the header before this (``WorldModelNode._check``). ``camera(width, height)`` gives the
    camera geometry of the image.
    """
    try:
        rgb = rgb_from_msg(image_msg)
    except ValueError as e:
        raise RequestError(f"image: {e}") from None
    ids = None
    if not image_is_empty(mask_msg):
        try:
            ids = ids_from_msg(mask_msg)
        except ValueError as e:
            raise RequestError(f"instance_mask: {e}") from None
    try:
        return perceive(pipeline, rgb, camera(rgb.shape[1], rgb.shape[0]), ids, object_height=object_height)
    except ValueError as e:
        raise RequestError(str(e)) from None


class WorldModelNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("world_model", **kwargs)
        self.params = ConfigParameters(self, WorldModelNodeConfig(), read_only=("max_queue",))
        self._throttle = Throttle()
        self._model_lock = threading.Lock()
        self.pipeline = None
        self.contact: ContactModel | None = None
        self.state_label = "unconfigured"
        self._rng = np.random.default_rng(self.config.seed)
        cfg = self.config
        self.admission = Admission(cfg.max_queue, "imagine_outcomes request", "max_queue")
        self.executor_threads = cfg.executor_threads
        self.srv = self.create_service(ImagineOutcomes, "imagine_outcomes", self._on_request, callback_group=ReentrantCallbackGroup(),
                                       qos_profile=REQUEST_QOS)
        self._calib = CalibrationCache(
            on_new=lambda c: self.get_logger().info(f"camera calibration from camera/camera_info + camera/table_pose: {c.width}x{c.height}; "
                                                    f"requests of that size are read in its table frame"),
            on_error=lambda m: self.get_logger().error(m))
        self.create_subscription(CameraInfo, "camera/camera_info", lambda m: setattr(self._calib, "info", m), SENSOR_QOS)
        self.create_subscription(TransformStamped, "camera/table_pose", lambda m: setattr(self._calib, "pose", m), LATCHED_QOS)
        if self.config.autostart:
            self._autostart_timer = self.create_timer(0.01, self._autostart)
        self.get_logger().info("world-model node up (unconfigured); configure + activate it to serve imagine_outcomes")

    @property
    def config(self) -> WorldModelNodeConfig:
        return self.params.config

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        self.state_label = "starting"  # requests meanwhile are told to retry
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()
        elif self.state_label == "starting":
            self.state_label = "unconfigured"

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        t0 = time.perf_counter()  # before the import: loading diffusers is most of the time
        from kinemask_ros.world_model.pipeline import KineMaskPipeline

        cfg = self.config
        try:
            torch_setup(cfg.torch_threads)
            device = resolve_device(cfg.device)
            pipe = KineMaskPipeline.from_pretrained(cfg.checkpoint or None, device=device)
        except Exception as e:  # a missing/corrupt checkpoint must not kill the node
            self.get_logger().error(f"configure failed: could not load world model {cfg.checkpoint or '(embedded)'}: {e}")
            return TransitionCallbackReturn.FAILURE
        wc = pipe.config
        cam = CameraModel(cfg.camera_config(wc.width, wc.height))
        contact = ContactModel(cam, ContactModelConfig(pusher_radius=cfg.pusher_radius, friction_coefficient=cfg.friction_coefficient,
                                                       object_height=cfg.object_height, frame_dt=cfg.frame_dt_s, num_frames=wc.num_frames))
        with self._model_lock:
            self.pipeline, self.contact = pipe, contact
        self.state_label = "inactive"
        self.get_logger().info(f"loaded world model {checkpoint_name(cfg.checkpoint)} on {device} in {time.perf_counter() - t0:.2f} s "
                               f"({wc.width}x{wc.height}, T={wc.num_frames}, K={wc.max_objects}, video={'yes' if pipe.video_model is not None else 'no'})")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.state_label = "active"
        self.get_logger().info("active: serving imagine_outcomes")
        return super().on_activate(state)

    def _drain(self, what: str) -> None:
        """Wait until the running and queued requests are answered (new ones see the new state)."""
        if not self.admission.wait_idle(timeout_s=self.config.time_budget_s + 5.0):
            self.get_logger().warning(f"{what}: requests still running after {self.config.time_budget_s + 5.0:.0f} s; going ahead")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.state_label = "inactive"
        self._drain("deactivate")
        return super().on_deactivate(state)

    def _free(self) -> None:
        with self._model_lock:
            dev = self.pipeline.device if self.pipeline is not None else None
            self.pipeline, self.contact = None, None
        gc.collect()
        if dev is not None and dev.type == "cuda":
            torch.cuda.empty_cache()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drain("cleanup")
        self._free()
        self.state_label = "unconfigured"
        self.get_logger().info("cleaned up: world model freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._free()
        self.state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._free()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ service
    def _on_request(self, req: ImagineOutcomes.Request, resp: ImagineOutcomes.Response) -> ImagineOutcomes.Response:
        t0 = time.perf_counter()
        deadline = Deadline(self.config.time_budget_s)
        try:
            self._check(req)
            with self.admission.admit(deadline):
                self._serve(req, resp, deadline)
            resp.success = True
        except Busy as e:
            resp.success, resp.message = False, str(e)
            resp.candidates, resp.ranking, resp.rollouts = [], [], []
            warn_throttled(self, self._throttle, "busy", f"imagine_outcomes: {e}")
        except RequestError as e:
            resp.success, resp.message = False, str(e)
            resp.candidates, resp.ranking, resp.rollouts = [], [], []
            warn_throttled(self, self._throttle, "request", f"imagine_outcomes request failed: {e}")
        except Exception as e:  # never let a request kill the node
            resp.success, resp.message = False, f"internal error: {type(e).__name__}: {e}"
            resp.candidates, resp.ranking, resp.rollouts = [], [], []
            self.get_logger().error(f"imagine_outcomes: {resp.message}")
        resp.latency_s = time.perf_counter() - t0
        return resp

    def _check(self, req) -> int:
        """Cheap checks of a request, before it takes a queue place (a malformed request never makes a
        valid one busy). Returns the number of samples. ``RequestError`` with the reason."""
        cfg = self.config
        if self.state_label == "starting":
            raise RequestError("the world-model node is starting (loading the model): retry in a few seconds")
        if self.state_label != "active":
            raise RequestError(f"the world-model node is {self.state_label}: configure and activate it (lifecycle) before sending requests")
        n = len(req.candidates)
        if n == 0:
            raise RequestError("the request has no candidates")
        if n > cfg.max_batch:
            raise RequestError(f"{n} candidates exceed max_batch={cfg.max_batch}; split the request")
        S = int(req.num_samples) or cfg.num_samples
        if S > cfg.max_samples:
            raise RequestError(f"num_samples={S} exceeds max_samples={cfg.max_samples}")
        why = finite_or_reason(goal_x=req.goal.x, goal_y=req.goal.y)
        if why:
            raise RequestError(f"goal: {why}")
        try:
            check_image_size(req.image, cfg.max_image_pixels, "max_image_pixels")
        except ValueError as e:
            raise RequestError(f"image: {e}") from None
        return S

    def camera_for(self, width: int, height: int):
        """``(camera, source)`` for a request image of ``width x height``: the calibration from
        ``camera/camera_info`` + ``camera/table_pose`` when ``use_camera_info`` is set, both arrived and
        the image has the CameraInfo's size, else the ``camera_*`` parameters' camera. ``RequestError``
        when those messages are unusable."""
        cfg = self.config
        info = self._calib.info
        params = cfg.camera_config(width, height)
        if cfg.use_camera_info and self._calib.ready and (int(info.width), int(info.height)) == (width, height):
            try:
                calib = self._calib.get()
            except ValueError as e:
                raise RequestError(str(e)) from None
            if same_camera(calib, CameraModel(params), cfg.object_height / 2):
                return params, "the camera_* parameters (camera/camera_info describes the same camera: no rectification)"
            return calib, "camera/camera_info + camera/table_pose"
        return params, "the camera_* parameters"

    def _serve(self, req, resp, deadline: Deadline) -> None:
        cfg = self.config
        S = self._check(req)  # again: the state may have changed while the request waited
        n = len(req.candidates)
        with self._model_lock:
            pipe, contact = self.pipeline, self.contact
            if pipe is None:
                raise RequestError("the world model is not loaded")
            wc = pipe.config
            used = []  # the camera is chosen for the decoded image (load_frame checks the message first)
            seen = load_frame(pipe, req.image, req.instance_mask, lambda w, h: used.append(self.camera_for(w, h)) or used[-1][0],
                              cfg.object_height)
            camera_source = used[-1][1]
            rgb, ids, labels = seen.rgb, seen.ids, seen.labels
            if seen.shape != (wc.height, wc.width):  # object model: measure the scene at the frame's resolution
                contact = ContactModel(seen.camera, contact.config)
            present = seen.present
            target = int(req.target_id)
            if target and target not in present:
                raise RequestError(f"target id {target} is not in the instance mask (ids present: {present})")
            try:
                goal_yaw = goal_yaw_from_fields(req.use_goal_yaw, req.goal_yaw)
            except ValueError as e:
                raise RequestError(str(e)) from None
            strokes = [stroke_values(c) for c in req.candidates]
            bounds = cfg.push_bounds()
            region = [st for st in map(_stroke_or_none, strokes) if st is not None and not bounds.violation(st)]
            fit = fit_to_slots(ids, slot_limit(pipe), contact.camera, target, region, pusher_radius=cfg.pusher_radius,
                               object_height=cfg.object_height)
            slots, id_map = fit.slots, fit.id_map
            back = dict(id_map)
            slot_target = fit.slot_of(target) if target else 0
            resp.left_out_ids = [int(o) for o in fit.left_out]
            gen = torch.Generator().manual_seed(int(self._rng.integers(2**31)))
            try:
                imag = imagine_candidates(pipe, contact, rgb, slots, strokes,
                                          (req.goal.x, req.goal.y), slot_target, S, cfg.num_inference_steps, cfg.score_config(), gen,
                                          bounds=bounds, bounds_params=cfg.BOUNDS_PARAMS, deadline=deadline, goal_yaw=goal_yaw)
            except ValueError as e:
                raise RequestError(str(e)) from None
            rollout_index = np.full(n, ScoredCandidate.NO_ROLLOUT, np.int64)
            if req.return_frames and cfg.max_rollouts and len(imag.order) and not deadline.expired:
                top = [int(i) for i in imag.order[: cfg.max_rollouts]]
                rf = rollout_frames(pipe, contact, rgb, slots, [imag.strokes[i] for i in top], imag.tracks[top, 0],
                                    cfg.video_inference_steps, gen, poses=None if imag.poses is None else imag.poses[top, 0])
                dt = cfg.frame_dt_s * wc.video_frame_stride
                for j, i in enumerate(top):
                    rollout_index[i] = j
                    resp.rollouts.append(rollout_msg(req.image.header, i, rf.frames[j], rf.masks[j], rf.tracks[j], rf.areas[j], dt,
                                                     labels, id_map, req.text or f"imagined by {checkpoint_name(cfg.checkpoint)} ({rf.source})",
                                                     poses=None if rf.poses is None else rf.poses[j]))
        for i in range(n):
            resp.candidates.append(scored_candidate(imag.strokes[i] or req.candidates[i], back.get(int(imag.contact_ids[i]), 0), imag.total[i],
                                                    {k: v[i] for k, v in imag.terms.items()}, imag.weights, bool(imag.valid[i]),
                                                    imag.reasons[i], int(rollout_index[i])))
        resp.ranking = [int(i) for i in imag.order]
        nv = int(imag.valid.sum())
        resp.message = f"{nv}/{n} candidates valid" + ("" if nv == n else f"; first invalid: {imag.reasons[int(np.argmin(imag.valid))]}")
        resp.message += f"; image read with {camera_source}"
        if fit.left_out:
            resp.message += f"; {len(fit.left_out)} objects got no slot (left_out_ids)" + (f": {fit.warning()}" if fit.warning() else "")


def main(args=None) -> int:
    return run(WorldModelNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
