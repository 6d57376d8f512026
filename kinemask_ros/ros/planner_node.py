"""``kinemask-planner-node``: goal + camera frame -> ranked pushes (world model in-process).

Inputs: ``camera/image_raw`` (sensor_msgs/Image) paired by stamp with ``segmentation/objects``
(DetectedObjects: instance mask + selected target), both sensor-data QoS; ``goal``
(geometry_msgs/PointStamped in the ``table`` frame, reliable + transient local); the
``plan_push`` action (PlanPush: progress feedback per planner iteration, cancellable).

Outputs: ``planner/candidates`` (ScoredCandidateArray, all evaluated candidates best first) and
``planner/best_push`` (PushStroke) as soon as the ranking is known, then ``planner/rollouts``
(PredictedRollout with frames for the ``rollout_top_k`` best candidates; rendering them with the
video model takes longer than planning, so it never delays the ranking) and ``planner/preview``
(sensor_msgs/Image: the best rollout's final frame with its pusher path and the goal, for RViz /
rqt_image_view), all reliable. With ``camera/camera_info`` + ``camera/table_pose`` (parameter
``use_camera_info``) frames are rectified into the canonical table frame by the perception front
end and the rollouts are drawn in the camera's own pixels.

The world model runs in this process (:class:`kinemask_ros.planning.PushPlanner`): a planner
asks for hundreds of rollouts per decision, and in-process calls avoid serialising them (the
``world_model`` node's ``imagine_outcomes`` service is the way for other clients). Planning runs
off the executor: topic-driven plans on a worker thread, action goals in a reentrant callback
group; both go through one :class:`~kinemask_ros.admission.Admission`. Cancellation is checked
before every planner iteration (the dynamics callable raises :class:`PlanCancelled`), so a cancel
takes effect within one iteration.

Admission of PlanPush goals: every goal is accepted and always finished with a definite status.
One plan runs, at most ``max_queue`` goals wait (FIFO); a goal beyond that is aborted at once with
``message="busy: ... retry later"``. Each goal has ``time_budget_s`` from its arrival: one that
cannot start in time is aborted busy; one whose planning runs out of time stops iterating and
succeeds with the best ranking so far (the message says after how many iterations). Topic-driven
replanning and rollout rendering wait without taking a queue place. Goal, cancel and result
services use a reliable keep-all QoS (``REQUEST_QOS``); results are kept 300 s for clients
that ask late.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

import numpy as np
from geometry_msgs.msg import PointStamped, PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import CameraInfo, Image

from kinemask_ros.admission import Admission, Busy, Deadline
from kinemask_ros.decision import DecisionRequest, PlanCancelled, decide
from kinemask_ros.perception import perceive
from kinemask_ros.ros.common import LATCHED_QOS, RELIABLE_QOS, REQUEST_QOS, SENSOR_QOS, ConfigParameters, Throttle, run, torch_setup, warn_throttled
from kinemask_ros.ros.config import PlannerNodeConfig
from kinemask_ros.ros.messages import (CalibrationCache, check_image_size, check_rgb_msg, depth_from_msg, goal_pose_from_msg,
                                       goal_xy_from_msg, goal_yaw_from_fields, ids_from_msg, image_is_empty, rgb_from_msg, rgb_to_msg,
                                       rollout_msg, scored_candidate, stroke_to_msg)
from kinemask_ros.ros.world_model_node import checkpoint_name, resolve_device
from kinemask_ros_interfaces.action import PlanPush
from kinemask_ros_interfaces.msg import DetectedObjects, ScoredCandidate, ScoredCandidateArray
from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg
from kinemask_ros_interfaces.msg import PredictedRollout

_KEEP_FRAMES = 64
#: seconds a finished goal's result stays available to a client that asks for it late
RESULT_TIMEOUT_S = 300


def _key(header) -> tuple[int, int]:
    return (int(header.stamp.sec), int(header.stamp.nanosec))


def _stamp_s(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


@dataclasses.dataclass
class Frame:
    """A camera image paired with its segmentation."""

    image: Image
    objects: DetectedObjects | None  # None: segment on the planner (action goals carrying only an image)
    mask: np.ndarray | None = None  # explicit instance ids (action goals carrying a mask)


@dataclasses.dataclass
class Decision:
    """A ranking, published at once; ``render`` makes the top-k rollouts' frames afterwards (slower)."""

    ranked: ScoredCandidateArray
    best: PushStrokeMsg | None
    message: str
    render: Callable[[], list[PredictedRollout]] | None = None


class PlannerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("planner", **kwargs)
        self.params = ConfigParameters(self, PlannerNodeConfig(), read_only=("checkpoint", "device", "torch_threads", "max_queue"))
        cfg = self.config
        torch_setup(cfg.torch_threads)
        from kinemask_ros.world_model.pipeline import KineMaskPipeline

        t0 = time.perf_counter()
        try:
            self.pipeline = KineMaskPipeline.from_pretrained(cfg.checkpoint or None, device=resolve_device(cfg.device))
        except (OSError, ValueError) as e:
            raise ValueError(f"planner could not load the world model {cfg.checkpoint or '(embedded)'}: {e}") from e
        wc = self.pipeline.config
        self.get_logger().info(f"loaded world model {checkpoint_name(cfg.checkpoint)} in {time.perf_counter() - t0:.2f} s "
                               f"({wc.width}x{wc.height}, K={wc.max_objects}, video={'yes' if self.pipeline.video_model is not None else 'no'})")
        self._rng = np.random.default_rng(cfg.seed)
        self._throttle = Throttle()
        self.admission = Admission(cfg.max_queue, "plan_push goal", "max_queue")
        self.executor_threads = cfg.executor_threads
        self._cv = threading.Condition()
        self._images: OrderedDict = OrderedDict()
        self._objects: OrderedDict = OrderedDict()
        self._depths: OrderedDict = OrderedDict()  # depth images by stamp (RGB-D cameras)
        self._first_image_t: float | None = None
        self._calib = CalibrationCache(
            on_new=lambda c: self.get_logger().info(f"camera calibration from camera/camera_info + camera/table_pose: {c.width}x{c.height}, "
                                                    f"camera at {np.round(c.camera_position, 3).tolist()} m in the table frame"),
            on_error=lambda m: self.get_logger().error(m))
        self._latest: Frame | None = None
        self._frame_seq = 0
        self._goal: tuple[np.ndarray, float | None, float] | None = None  # (xy [m], yaw [rad] or None, stamp [s])
        self._goal_seq = 0
        self._stop = threading.Event()
        self._jobs: deque = deque()  # rollout rendering, done by the worker after the ranking is out
        self.decisions = 0

        self.pub_candidates = self.create_publisher(ScoredCandidateArray, "planner/candidates", RELIABLE_QOS)
        self.pub_best = self.create_publisher(PushStrokeMsg, "planner/best_push", RELIABLE_QOS)
        self.pub_rollouts = self.create_publisher(PredictedRollout, "planner/rollouts", RELIABLE_QOS)
        self.pub_preview = self.create_publisher(Image, "planner/preview", RELIABLE_QOS)
        inputs = MutuallyExclusiveCallbackGroup()
        self.create_subscription(Image, "camera/image_raw", self._on_image, SENSOR_QOS, callback_group=inputs)
        self.create_subscription(DetectedObjects, "segmentation/objects", self._on_objects, SENSOR_QOS, callback_group=inputs)
        self.create_subscription(PointStamped, "goal", self._on_goal, LATCHED_QOS, callback_group=inputs)
        self.create_subscription(PoseStamped, "goal_pose", self._on_goal_pose, LATCHED_QOS, callback_group=inputs)
        self.create_subscription(CameraInfo, "camera/camera_info", self._on_info, SENSOR_QOS, callback_group=inputs)
        self.create_subscription(TransformStamped, "camera/table_pose", self._on_table_pose, LATCHED_QOS, callback_group=inputs)
        self.create_subscription(Image, "camera/depth/image_raw", self._on_depth, SENSOR_QOS, callback_group=inputs)
        rq = REQUEST_QOS
        self._action = ActionServer(self, PlanPush, "plan_push", execute_callback=self._execute,
                                    goal_callback=lambda g: GoalResponse.ACCEPT, cancel_callback=lambda g: CancelResponse.ACCEPT,
                                    callback_group=ReentrantCallbackGroup(), goal_service_qos_profile=rq, result_service_qos_profile=rq,
                                    cancel_service_qos_profile=rq, result_timeout=RESULT_TIMEOUT_S)
        self._worker = threading.Thread(target=self._work, name="planner-worker", daemon=True)
        self._worker.start()

    @property
    def config(self) -> PlannerNodeConfig:
        return self.params.config

    def close(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        self._worker.join(timeout=5.0)
        self._action.destroy()

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg: Image) -> None:
        if self._first_image_t is None:
            self._first_image_t = time.monotonic()
        try:
            check_rgb_msg(msg)
        except ValueError as e:
            warn_throttled(self, self._throttle, "image", f"dropping camera image: {e}")
            return
        k = _key(msg.header)
        objs = self._objects.pop(k, None)
        if objs is not None:
            self._set_latest(Frame(msg, objs))
        else:
            self._images[k] = msg
            while len(self._images) > _KEEP_FRAMES:
                self._images.popitem(last=False)

    def _on_info(self, msg: CameraInfo) -> None:
        self._calib.info = msg

    def _on_table_pose(self, msg: TransformStamped) -> None:
        self._calib.pose = msg

    def _on_depth(self, msg: Image) -> None:
        self._depths[_key(msg.header)] = msg
        while len(self._depths) > _KEEP_FRAMES:
            self._depths.popitem(last=False)

    def calibration(self, width: int, height: int):
        """The camera's :class:`~kinemask_ros.table_frame.CameraCalibration` from ``camera/camera_info`` +
        ``camera/table_pose`` when both arrived, ``use_camera_info`` is set and the image is the
        CameraInfo's size; None = use the ``camera_*`` parameters. ``ValueError`` (naming the fix,
        logged once per cause) when those messages are unusable."""
        info = self._calib.info
        if not self.config.use_camera_info:
            return None
        if not self._calib.ready:
            # no camera stream at all (e.g. goals carrying their own images): nothing to wait for
            waited = time.monotonic() - self._first_image_t if self._first_image_t is not None else math.inf
            if waited < self.config.camera_info_wait_s:
                raise ValueError(f"waiting for camera/camera_info + camera/table_pose ({waited:.1f} of camera_info_wait_s="
                                 f"{self.config.camera_info_wait_s:g} s), then the camera_* parameters are used")
            warn_throttled(self, self._throttle, "calib-missing", "no camera/camera_info + camera/table_pose: planning with the "
                           "camera_* parameters (a top-down camera); publish them for any other camera")
            return None
        if (int(info.width), int(info.height)) != (width, height):
            warn_throttled(self, self._throttle, "calib-size", f"the image is {width}x{height} but camera/camera_info says "
                           f"{info.width}x{info.height}: planning with the camera_* parameters for it")
            return None
        return self._calib.get()

    def _on_objects(self, msg: DetectedObjects) -> None:
        k = _key(msg.header)
        img = self._images.pop(k, None)
        if img is not None:
            self._set_latest(Frame(img, msg))
            for old in [x for x in self._images if x < k]:  # older frames will never be paired now
                del self._images[old]
        else:
            self._objects[k] = msg
            while len(self._objects) > _KEEP_FRAMES:
                self._objects.popitem(last=False)

    def _set_latest(self, frame: Frame) -> None:
        with self._cv:
            self._latest = frame
            self._frame_seq += 1
            self._cv.notify_all()

    def _on_goal(self, msg: PointStamped) -> None:
        try:
            xy = goal_xy_from_msg(msg)
        except ValueError as e:
            warn_throttled(self, self._throttle, "goal", f"dropping goal: {e}")
            return
        self._set_goal(xy, None, msg.header)

    def _on_goal_pose(self, msg: PoseStamped) -> None:
        try:
            xy, yaw = goal_pose_from_msg(msg)
        except ValueError as e:
            warn_throttled(self, self._throttle, "goal", f"dropping goal_pose: {e}")
            return
        self._set_goal(xy, yaw, msg.header)

    def _set_goal(self, xy: np.ndarray, yaw: float | None, header) -> None:
        with self._cv:
            self._goal = (xy, yaw, _stamp_s(header))
            self._goal_seq += 1
            self._cv.notify_all()
        self.get_logger().info(f"goal ({xy[0]:.3f}, {xy[1]:.3f}) m" + ("" if yaw is None else f", yaw {yaw:.3f} rad"))

    # ------------------------------------------------------------------ topic-driven planning
    def _work(self) -> None:
        seen_frame, seen_goal = 0, 0
        while not self._stop.is_set() and self.context.ok():
            with self._cv:
                job = self._jobs.popleft() if self._jobs else None
            if job is not None:
                self._render(job)
                continue
            with self._cv:
                cfg = self.config
                if cfg.replan == "every_frame":
                    self._cv.wait_for(lambda: self._stop.is_set() or bool(self._jobs) or (self._goal is not None and self._frame_seq != seen_frame),
                                      timeout=0.5)
                    if self._stop.is_set() or self._jobs or self._goal is None or self._frame_seq == seen_frame:
                        continue
                else:
                    self._cv.wait_for(lambda: self._stop.is_set() or bool(self._jobs) or self._goal_seq != seen_goal, timeout=0.5)
                    if self._stop.is_set() or self._jobs or self._goal_seq == seen_goal:
                        continue
                    seen_goal = self._goal_seq
                    goal_t = self._goal[2]
                    deadline = time.monotonic() + cfg.goal_frame_timeout_s
                    self._cv.wait_for(lambda: self._stop.is_set() or (self._latest is not None and _stamp_s(self._latest.image.header) >= goal_t),
                                      timeout=max(0.0, deadline - time.monotonic()))
                    if self._latest is None:
                        warn_throttled(self, self._throttle, "noframe", "goal received but no segmented camera frame yet")
                        continue
                frame, goal, seen_frame = self._latest, self._goal, self._frame_seq
            if frame.objects is not None and frame.objects.target_id == 0 and frame.objects.target_status != "no target selection configured":
                warn_throttled(self, self._throttle, "target", f"not planning: no target ({frame.objects.target_status})")
                continue
            try:
                with self.admission.admit(internal=True):
                    d = self.decide(frame, goal[0], target_id=int(frame.objects.target_id), cancelled=self._stop.is_set, goal_yaw=goal[1])
            except PlanCancelled:
                return
            except ValueError as e:
                warn_throttled(self, self._throttle, "plan", f"planning failed: {e}")
                continue
            except Exception as e:  # pragma: no cover - keep the worker alive
                warn_throttled(self, self._throttle, "crash", f"planning crashed: {type(e).__name__}: {e}")
                continue
            self._publish(d)

    def _ok(self) -> bool:
        return not self._stop.is_set() and self.context.ok()

    def _publish(self, d: Decision) -> None:
        """Ranking and best push now; the rollouts' frames are rendered next by the worker."""
        if not self._ok():
            return  # shutting down: the context may already be invalid
        try:
            self.pub_candidates.publish(d.ranked)
            if d.best is not None:
                self.pub_best.publish(d.best)
        except Exception as e:  # context shut down between the check and the publish
            if self.context.ok():
                raise
            self.get_logger().debug(f"not published (shutting down): {e}")
            return
        self.decisions += 1
        if d.render is not None:
            with self._cv:
                self._jobs.append(d.render)
                self._cv.notify_all()

    def _render(self, job) -> None:
        try:
            with self.admission.admit(internal=True):
                rollouts, preview = job()
            for r in rollouts:
                if not self._ok():
                    return
                self.pub_rollouts.publish(r)
            self.pub_preview.publish(preview)
        except Exception as e:
            if self._ok():
                warn_throttled(self, self._throttle, "render", f"rendering rollouts failed: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ action
    def _execute(self, gh) -> PlanPush.Result:
        g = gh.request
        cfg = self.config
        deadline = Deadline(cfg.time_budget_s)
        result = PlanPush.Result()

        def fail(msg: str) -> PlanPush.Result:
            result.success, result.message = False, msg
            warn_throttled(self, self._throttle, "action", f"plan_push goal failed: {msg}")
            gh.abort()
            return result

        try:
            goal_xy = goal_xy_from_msg(g.goal)
            goal_yaw = goal_yaw_from_fields(g.use_goal_yaw, g.goal_yaw)
            method, nc, iters = DecisionRequest(goal_xy=tuple(goal_xy), method=g.planner, num_candidates=int(g.num_candidates),
                                                iterations=int(g.iterations)).resolve(cfg.decision_config())
            if image_is_empty(g.image):
                if not image_is_empty(g.instance_mask):
                    return fail("the goal carries an instance_mask but no image: send both, or neither (the server's latest segmented frame)")
                with self._cv:
                    frame = self._latest
                if frame is None:
                    return fail("no camera frame received yet and the goal carries no image")
            else:
                check_image_size(g.image, cfg.max_image_pixels)
                frame = Frame(g.image, None, None if image_is_empty(g.instance_mask) else ids_from_msg(g.instance_mask))
        except ValueError as e:
            return fail(str(e))

        def feedback(it: int, total: int, done: int, best: float, stage: str) -> None:
            gh.publish_feedback(PlanPush.Feedback(iteration=it, total_iterations=total, rollouts_done=done, best_cost=best, stage=stage))

        def cancelled() -> bool:
            return gh.is_cancel_requested or self._stop.is_set()

        try:
            with self.admission.admit(deadline):
                d = self.decide(frame, goal_xy, int(g.target_id), method, nc, iters, cancelled, feedback, deadline, goal_yaw)
        except Busy as e:
            return fail(str(e))
        except PlanCancelled as e:
            gh.canceled()
            result.success, result.message = False, f"cancelled ({e})"
            return result
        except ValueError as e:
            return fail(str(e))
        except Exception as e:
            self.get_logger().error(f"plan_push crashed: {type(e).__name__}: {e}")
            return fail(f"internal error: {type(e).__name__}: {e}")
        self._publish(d)
        result.ranked, result.message = d.ranked, d.message
        if d.best is None:
            gh.abort()
            result.success = False
            return result
        result.best, result.success = d.best, True
        gh.succeed()
        return result

    # ------------------------------------------------------------------ core
    def decide(self, frame: Frame, goal_xy: np.ndarray, target_id: int = 0, method: str | None = None,
               num_candidates: int | None = None, iterations: int | None = None, cancelled=None, feedback=None,
               deadline: Deadline | None = None, goal_yaw: float | None = None) -> Decision:
        """Plan on one frame (messages -> :func:`kinemask_ros.decision.decide` -> messages).

        ``target_id`` 0 = the object nearest the goal; ``goal_yaw`` [rad] or None. ``ValueError``
        for bad input; planning stops before the next iteration once ``deadline`` expires.
        """
        cfg = self.config
        pipe = self.pipeline
        t_in = time.time()
        header = frame.image.header
        rgb = rgb_from_msg(frame.image)
        ids, labels = None, None
        if frame.objects is not None:
            ids = ids_from_msg(frame.objects.instance_mask)
            labels = {int(o.object_id): o.label for o in frame.objects.objects}
        elif frame.mask is not None:
            ids = frame.mask
        calib = self.calibration(rgb.shape[1], rgb.shape[0])
        depth = None
        if calib is not None:
            dmsg = self._depths.get(_key(header))
            if dmsg is not None and (dmsg.width, dmsg.height) == (frame.image.width, frame.image.height):
                try:
                    depth = depth_from_msg(dmsg)
                except ValueError as e:
                    warn_throttled(self, self._throttle, "depth", f"ignoring the depth image: {e}")
        camera = calib if calib is not None else cfg.camera_config(rgb.shape[1], rgb.shape[0])
        seen = perceive(pipe, rgb, camera, ids, labels, object_height=cfg.object_height, depth=depth)
        dc = cfg.decision_config()
        req = DecisionRequest(goal_xy=tuple(float(v) for v in goal_xy), goal_yaw=goal_yaw, target_id=int(target_id), method=method or "",
                              num_candidates=int(num_candidates or 0), iterations=int(iterations or 0))
        d = decide(pipe, seen, req, dc, self._rng, cancelled, feedback, deadline)
        out = d.plan
        order = [int(i) for i in out.order]
        rank_of = {i: r for r, i in enumerate(order)}
        rollout_idx = {i: j for j, i in enumerate(d.top)}
        name = checkpoint_name(cfg.checkpoint)

        def render() -> tuple[list[PredictedRollout], Image]:
            rf = d.render()
            dt = cfg.frame_dt_s * pipe.config.video_frame_stride
            msgs = [rollout_msg(header, rank_of[i], rf.frames[j], rf.masks[j], rf.tracks[j], rf.areas[j], dt, seen.labels, d.fit.id_map,
                                f"candidate {rank_of[i]} imagined by {name} ({rf.source})",
                                poses=None if rf.poses is None else rf.poses[j])
                    for j, i in enumerate(d.top)]
            return msgs, rgb_to_msg(d.preview(rf), header)

        weights = {k: float(dc.score.weights.get(k, 0.0)) for k in out.scores.terms}
        arr = ScoredCandidateArray(planner=out.planner, world_model=name, iterations=int(out.iterations),
                                   num_rollouts=int(len(out.strokes) * dc.num_samples), left_out_ids=[int(o) for o in d.left_out],
                                   warning=d.fit.warning())
        arr.header.stamp = header.stamp
        arr.header.frame_id = "table"
        for i in order:
            arr.candidates.append(scored_candidate(out.strokes[i], d.frame_id(out.imagined.target_ids[i]), float(out.scores.total[i]),
                                                   {k: v[i] for k, v in out.scores.terms.items()}, weights, bool(out.scores.valid[i]),
                                                   out.scores.reasons[i], rollout_idx.get(i, ScoredCandidate.NO_ROLLOUT)))
        stamp = _stamp_s(header)
        now = time.time()
        arr.decision_latency_s = float(now - stamp) if 0 < now - stamp < 3600 else float(now - t_in)
        best = stroke_to_msg(out.best_stroke) if out.valid else None
        return Decision(arr, best, d.message, render if d.render is not None else None)


def main(args=None) -> int:
    return run(PlannerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
