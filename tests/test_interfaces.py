"""The ROS 2 interfaces package ``kinemask_ros_interfaces`` (msg/), as built by scripts/setup.sh.

Checks that every message, service and action imports from the venv, has the documented fields
and types, round-trips through rclpy's CDR serialisation, is readable by an independent peer
(the pure-Python ``rosbags`` CDR decoder, fed the .msg sources), and works over real DDS for a
service call and an action goal (with feedback) inside one process.
"""

from __future__ import annotations

import math
import os
import random
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MSG_DIR = REPO / "msg"

try:
    import rclpy
    from rclpy.serialization import deserialize_message, serialize_message

    from kinemask_ros_interfaces import action as km_action
    from kinemask_ros_interfaces import msg as km_msg
    from kinemask_ros_interfaces import srv as km_srv
except ImportError as exc:  # pragma: no cover - only without `bash scripts/setup.sh`
    pytest.skip(
        f"kinemask_ros_interfaces is not built in this environment ({exc}); run `bash scripts/setup.sh`",
        allow_module_level=True,
    )

from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import Image

# --------------------------------------------------------------------------- expected layout
EXPECTED_FIELDS = {
    km_msg.PushStroke: {"x": "double", "y": "double", "theta": "double", "length": "double", "speed": "double"},
    km_msg.CostTerm: {"name": "string", "value": "double", "weight": "double"},
    km_msg.ScoredCandidate: {
        "stroke": "kinemask_ros_interfaces/PushStroke",
        "target_id": "uint32",
        "total_cost": "double",
        "terms": "sequence<kinemask_ros_interfaces/CostTerm>",
        "valid": "boolean",
        "reason": "string",
        "rollout_index": "int32",
    },
    km_msg.ScoredCandidateArray: {
        "header": "std_msgs/Header",
        "planner": "string",
        "world_model": "string",
        "iterations": "uint32",
        "num_rollouts": "uint32",
        "decision_latency_s": "double",
        "candidates": "sequence<kinemask_ros_interfaces/ScoredCandidate>",
        "left_out_ids": "sequence<uint32>",
        "warning": "string",
    },
    km_msg.ObjectTrack: {
        "object_id": "uint32",
        "label": "string",
        "u": "sequence<float>",
        "v": "sequence<float>",
        "area": "sequence<float>",
        "x": "sequence<float>",
        "y": "sequence<float>",
        "yaw": "sequence<float>",
    },
    km_msg.PredictedRollout: {
        "header": "std_msgs/Header",
        "candidate_index": "uint32",
        "sample_index": "uint32",
        "frame_dt_s": "double",
        "frames": "sequence<sensor_msgs/Image>",
        "object_masks": "sequence<sensor_msgs/Image>",
        "tracks": "sequence<kinemask_ros_interfaces/ObjectTrack>",
        "text": "string",
    },
    km_srv.ImagineOutcomes.Request: {
        "image": "sensor_msgs/Image",
        "instance_mask": "sensor_msgs/Image",
        "candidates": "sequence<kinemask_ros_interfaces/PushStroke>",
        "num_samples": "uint32",
        "return_frames": "boolean",
        "goal": "geometry_msgs/Point",
        "use_goal_yaw": "boolean",
        "goal_yaw": "double",
        "target_id": "uint32",
        "text": "string",
    },
    km_srv.ImagineOutcomes.Response: {
        "success": "boolean",
        "message": "string",
        "candidates": "sequence<kinemask_ros_interfaces/ScoredCandidate>",
        "ranking": "sequence<uint32>",
        "rollouts": "sequence<kinemask_ros_interfaces/PredictedRollout>",
        "latency_s": "double",
        "left_out_ids": "sequence<uint32>",
    },
    km_action.PlanPush.Goal: {
        "goal": "geometry_msgs/PointStamped",
        "use_goal_yaw": "boolean",
        "goal_yaw": "double",
        "target_id": "uint32",
        "planner": "string",
        "num_candidates": "uint32",
        "iterations": "uint32",
        "image": "sensor_msgs/Image",
        "instance_mask": "sensor_msgs/Image",
    },
    km_action.PlanPush.Result: {
        "success": "boolean",
        "message": "string",
        "ranked": "kinemask_ros_interfaces/ScoredCandidateArray",
        "best": "kinemask_ros_interfaces/PushStroke",
    },
    km_action.PlanPush.Feedback: {
        "iteration": "uint32",
        "total_iterations": "uint32",
        "rollouts_done": "uint32",
        "best_cost": "double",
        "stage": "string",
    },
}


@pytest.mark.parametrize("cls", list(EXPECTED_FIELDS), ids=lambda c: c.__qualname__)
def test_fields_and_types(cls):
    assert cls.get_fields_and_field_types() == EXPECTED_FIELDS[cls]


def test_constants():
    assert km_msg.ScoredCandidate.NO_ROLLOUT == -1
    assert km_msg.ScoredCandidate.TARGET_NONE == 0
    assert km_msg.ScoredCandidate().rollout_index == 0  # defaults are zero; producers set NO_ROLLOUT explicitly


# --------------------------------------------------------------------------- sample messages
def _image(h: int = 4, w: int = 6, encoding: str = "rgb8") -> Image:
    ch = {"rgb8": 3, "mono8": 1}[encoding]
    img = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * ch)
    img.data = bytes((i * 7) % 256 for i in range(h * w * ch))
    img.header.frame_id = "camera"
    img.header.stamp.sec = 12
    img.header.stamp.nanosec = 345
    return img


def _stroke(k: int = 0) -> km_msg.PushStroke:
    return km_msg.PushStroke(x=0.1 + k, y=-0.05, theta=math.pi / 4, length=0.12, speed=0.2)


def _candidate(k: int = 0) -> km_msg.ScoredCandidate:
    terms = [
        km_msg.CostTerm(name="goal_distance", value=0.08, weight=1.0),
        km_msg.CostTerm(name="disturbance", value=0.01, weight=0.5),
    ]
    return km_msg.ScoredCandidate(
        stroke=_stroke(k),
        target_id=2,
        total_cost=sum(t.value * t.weight for t in terms),
        terms=terms,
        valid=True,
        reason="",
        rollout_index=km_msg.ScoredCandidate.NO_ROLLOUT,
    )


def _array() -> km_msg.ScoredCandidateArray:
    a = km_msg.ScoredCandidateArray(
        planner="cem", world_model="kinemask-tiny", iterations=3, num_rollouts=96, decision_latency_s=1.25
    )
    a.header.frame_id = "table"
    a.candidates = [_candidate(0), _candidate(1)]
    return a


def _rollout() -> km_msg.PredictedRollout:
    r = km_msg.PredictedRollout(candidate_index=1, sample_index=0, frame_dt_s=1 / 8, text="the red box slides right")
    r.header.frame_id = "camera"
    r.frames = [_image() for _ in range(3)]
    r.object_masks = [_image(encoding="mono8") for _ in range(3)]
    r.tracks = [km_msg.ObjectTrack(object_id=1, label="red box", u=[1.0, 2.0, 3.5], v=[2.0, 2.0, 2.5], area=[5.0, 5.0, 4.0],
                                   x=[0.01, 0.02, 0.03], y=[-0.05, -0.05, -0.04], yaw=[0.0, 0.1, 0.25]),
                km_msg.ObjectTrack(object_id=2, label="", u=[4.0, 4.0, 4.0], v=[1.0, 1.0, 1.0], area=[3.0, 3.0, 3.0])]
    return r


def _samples():
    req = km_srv.ImagineOutcomes.Request(
        image=_image(),
        instance_mask=_image(encoding="mono8"),
        candidates=[_stroke(0), _stroke(1)],
        num_samples=2,
        return_frames=True,
        goal=Point(x=0.2, y=0.1, z=0.0),
        target_id=1,
        text="",
    )
    resp = km_srv.ImagineOutcomes.Response(
        success=True, message="ok", candidates=[_candidate(0)], ranking=[0], rollouts=[_rollout()], latency_s=0.5
    )
    goal = km_action.PlanPush.Goal(target_id=1, planner="mppi", num_candidates=64, iterations=4)
    goal.goal = PointStamped()
    goal.goal.header.frame_id = "table"
    goal.goal.point = Point(x=0.1, y=0.2, z=0.0)
    result = km_action.PlanPush.Result(success=True, message="done", ranked=_array(), best=_stroke(0))
    feedback = km_action.PlanPush.Feedback(
        iteration=2, total_iterations=4, rollouts_done=128, best_cost=float("inf"), stage="imagining"
    )
    return [
        _stroke(),
        km_msg.CostTerm(name="effort", value=0.12, weight=0.1),
        _candidate(),
        _array(),
        km_msg.ObjectTrack(object_id=3, label="blue cylinder", u=[0.5], v=[0.25], area=[0.0]),
        _rollout(),
        req,
        resp,
        goal,
        result,
        feedback,
    ]


@pytest.mark.parametrize("message", _samples(), ids=lambda m: type(m).__name__)
def test_serialization_round_trip(message):
    raw = serialize_message(message)
    assert isinstance(raw, bytes) and len(raw) > 4
    back = deserialize_message(raw, type(message))
    assert back == message


def test_default_construction_of_every_type():
    for cls in EXPECTED_FIELDS:
        m = cls()
        assert deserialize_message(serialize_message(m), cls) == m
    # the action's wire-level messages are generated too
    for cls in (
        km_action.PlanPush.Impl.SendGoalService.Request,
        km_action.PlanPush.Impl.GetResultService.Response,
        km_action.PlanPush.Impl.FeedbackMessage,
    ):
        m = cls()
        assert deserialize_message(serialize_message(m), cls) == m


# --------------------------------------------------------------------------- independent peer
def _rosbags_typestore():
    rosbags_typesys = pytest.importorskip("rosbags.typesys")
    store = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_KILTED)
    types = {}
    for f in sorted((MSG_DIR / "msg").glob("*.msg")):
        types.update(rosbags_typesys.get_types_from_msg(f.read_text(), f"kinemask_ros_interfaces/msg/{f.stem}"))
    store.register(types)
    return store


def test_rosbags_decodes_rclpy_cdr():
    """rclpy's CDR bytes decode with rosbags from the .msg sources: the wire layout matches them."""
    store = _rosbags_typestore()
    rollout = _rollout()
    dec = store.deserialize_cdr(serialize_message(rollout), "kinemask_ros_interfaces/msg/PredictedRollout")
    assert dec.text == rollout.text and dec.candidate_index == 1
    assert len(dec.frames) == 3 and bytes(dec.frames[0].data) == bytes(rollout.frames[0].data)
    assert dec.tracks[0].label == "red box"
    assert list(dec.tracks[0].u) == pytest.approx([1.0, 2.0, 3.5])
    assert list(dec.tracks[0].yaw) == pytest.approx([0.0, 0.1, 0.25]) and len(dec.tracks[1].x) == 0

    arr = _array()
    dec = store.deserialize_cdr(serialize_message(arr), "kinemask_ros_interfaces/msg/ScoredCandidateArray")
    assert dec.planner == "cem" and len(dec.candidates) == 2
    assert dec.candidates[1].stroke.x == pytest.approx(1.1)
    assert [t.name for t in dec.candidates[0].terms] == ["goal_distance", "disturbance"]
    assert dec.candidates[0].rollout_index == -1


def test_installed_definitions_match_sources(monkeypatch):
    """The venv holds the interface files of this checkout (setup.sh rebuilds when msg/ changes)."""
    from ament_index_python.packages import get_package_share_directory

    # ament_index_python reads AMENT_PREFIX_PATH, which a pip venv does not set: the venv prefix
    # is where setup.sh installs the package (and where the ROS wheels put their index).
    if not os.environ.get("AMENT_PREFIX_PATH"):
        monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)

    share = Path(get_package_share_directory("kinemask_ros_interfaces"))
    for sub, ext in (("msg", "msg"), ("srv", "srv"), ("action", "action")):
        for src in (MSG_DIR / sub).glob(f"*.{ext}"):
            installed = share / sub / src.name
            assert installed.is_file(), f"{installed} missing: run `bash scripts/setup.sh`"
            assert installed.read_text() == src.read_text(), f"{src.name} changed since the last build: run `bash scripts/setup.sh`"


# --------------------------------------------------------------------------- over real DDS
@pytest.fixture
def ros_context(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "ros_log"))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 100))
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def _spin_until(executor, predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def test_service_call_over_dds(ros_context):
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("iface_srv_test", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:

        def handle(req, resp):
            resp.success = True
            resp.message = f"{len(req.candidates)} candidates"
            resp.candidates = [_candidate(k) for k in range(len(req.candidates))]
            resp.ranking = list(range(len(req.candidates)))
            resp.rollouts = [_rollout()] if req.return_frames else []
            return resp

        node.create_service(km_srv.ImagineOutcomes, "imagine_outcomes", handle)
        cli = node.create_client(km_srv.ImagineOutcomes, "imagine_outcomes")
        assert _spin_until(ex, cli.service_is_ready), "service never became ready"
        req = _samples()[6]
        fut = cli.call_async(req)
        assert _spin_until(ex, fut.done), "no response"
        resp = fut.result()
        assert resp.success and resp.message == "2 candidates"
        assert len(resp.candidates) == 2 and list(resp.ranking) == [0, 1]
        assert resp.rollouts[0].frames[2] == _image()
    finally:
        ex.shutdown()
        node.destroy_node()


def test_action_goal_feedback_result_over_dds(ros_context):
    from rclpy.action import ActionClient, ActionServer
    from rclpy.executors import MultiThreadedExecutor

    node = rclpy.create_node("iface_action_test", context=ros_context)
    ex = MultiThreadedExecutor(num_threads=2, context=ros_context)
    ex.add_node(node)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    try:

        def execute(goal_handle):
            for i in range(3):
                goal_handle.publish_feedback(
                    km_action.PlanPush.Feedback(iteration=i + 1, total_iterations=3, best_cost=1.0 / (i + 1), stage="imagining")
                )
                time.sleep(0.02)
            goal_handle.succeed()
            res = km_action.PlanPush.Result(success=True, message=goal_handle.request.planner, ranked=_array())
            res.best = res.ranked.candidates[0].stroke
            return res

        server = ActionServer(node, km_action.PlanPush, "plan_push", execute_callback=execute)
        client = ActionClient(node, km_action.PlanPush, "plan_push")
        spinner.start()
        assert client.wait_for_server(timeout_sec=10.0), "action server never became ready"
        feedback = []
        send = client.send_goal_async(_samples()[8], feedback_callback=lambda fb: feedback.append(fb.feedback))
        deadline = time.monotonic() + 10.0
        while not send.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        handle = send.result()
        assert handle is not None and handle.accepted
        res_fut = handle.get_result_async()
        while not res_fut.done() and time.monotonic() < deadline + 10.0:
            time.sleep(0.01)
        result = res_fut.result().result
        assert result.success and result.message == "mppi"
        assert result.best == _stroke(0)
        assert [f.iteration for f in feedback] == [1, 2, 3][-len(feedback):]  # feedback is best-effort
        server.destroy()
        client.destroy()
    finally:
        ex.shutdown()
        spinner.join(timeout=5.0)
        node.destroy_node()
