"""``kinemask-record`` core (:mod:`kinemask_ros.recording`): clip -> episode, rectification, drop rules,
the atomic writer, fine-tuning on recordings; and one real bridge + recorder run across processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.object_scene import ObjectScene
from kinemask_ros.push import PushStroke
from kinemask_ros.recording import (MAX_OBJECTS, RECORDED_CURRICULUM, ClipBuffer, ClipRectifier, EpisodeRejected, RecorderConfig,
                                    RecordingWriter, canonical_camera, episode_from_clip)
from kinemask_ros.sim_bridge.object_dataset import load_episodes
from kinemask_ros.table_frame import CameraCalibration

H2 = 0.015  # masks are read at half the 3 cm object height
DT = 0.08
T = 16


def _raster(calib: CameraCalibration, objects: dict[int, tuple]) -> np.ndarray:
    """Instance ids ``(H, W)`` of flat footprints on the plane z = H2 as seen by ``calib`` (pixel centres).

    objects: id -> ("box", x, y, yaw, a, b) or ("disk", x, y, r).
    """
    from kinemask_ros.table_frame import camera_pixels_to_table

    jj, ii = np.meshgrid(np.arange(calib.width) + 0.5, np.arange(calib.height) + 0.5)
    xy = camera_pixels_to_table(np.stack([jj, ii], -1), calib, z=H2)
    out = np.zeros((calib.height, calib.width), np.uint8)
    for oid, o in objects.items():
        d = xy - np.array(o[1:3])
        if o[0] == "disk":
            inside = np.linalg.norm(d, axis=-1) <= o[3]
        else:
            c, s = math.cos(o[3]), math.sin(o[3])
            lx, ly = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]
            inside = (np.abs(lx) <= o[4]) & (np.abs(ly) <= o[5])
        out[inside] = oid
    return out


def _box_track(t: np.ndarray) -> np.ndarray:
    """True (x, y, yaw) of the pushed box: slides +x at 0.1 m/s from frame 2, turning 0.5 rad/s."""
    move = np.clip(t - 2 * DT, 0, None)
    return np.stack([-0.05 + 0.1 * move, 0.02 + 0 * t, 0.3 + 0.5 * move], -1)


def _clip(calib: CameraCalibration, vanish_at: int | None = None, appear_at: int | None = None) -> list[np.ndarray]:
    t = np.arange(T) * DT
    box = _box_track(t)
    frames = []
    for k in range(T):
        objs = {7: ("box", *box[k], 0.03, 0.015), 3: ("disk", 0.08, -0.06, 0.025)}
        if vanish_at is not None and k >= vanish_at:
            objs.pop(3)
        if appear_at is not None and k >= appear_at:
            objs[9] = ("disk", -0.1, -0.1, 0.02)
        frames.append(_raster(calib, objs))
    return frames


STROKE = PushStroke(-0.12, 0.02, 0.0, 0.1, 0.25)
OBLIQUE = CameraCalibration.from_camera_model(CameraModel(CameraConfig.oblique(320, 240, elevation_deg=45.0, distance=0.8)))
TOPDOWN = CameraCalibration.from_camera_model(canonical_camera(128))


@pytest.mark.parametrize("calib", [TOPDOWN, OBLIQUE], ids=["top-down 128", "oblique 320x240"])
def test_synthetic_clip_gives_true_poses_velocities_and_ids(calib):
    ep = episode_from_clip(_clip(calib), STROKE, calib, RecorderConfig())
    assert ep.num_objects == 2 and ep.source_ids == [3, 7]  # relabelled ascending: disk 3 -> 1, box 7 -> 2
    assert set(np.unique(ep.mask)) == {0, 1, 2} and ep.mask.shape == (128, 128)
    assert ep.states.shape == (T, MAX_OBJECTS, 6) and np.all(ep.states[:, 2:] == 0)
    truth = _box_track(np.arange(T) * DT)
    tol = 0.0015 if calib is TOPDOWN else 0.002
    assert np.max(np.abs(ep.states[:, 1, :2] - truth[:, :2])) < tol  # metres
    dyaw = (ep.states[:, 1, 2] - ep.states[0, 1, 2]) - (truth[:, 2] - truth[0, 2])
    assert np.max(np.abs(dyaw)) < math.radians(3)  # unwrapped across frames
    assert np.max(np.abs(ep.states[:, 0, :2] - [0.08, -0.06])) < tol  # the still disk
    vx = ep.states[:, 1, 3]
    assert abs(np.median(vx[5:-2]) - 0.1) < 0.01 and abs(vx[0]) < 0.05  # finite differences [m/s]
    assert ep.pushed == 2  # the box moved, the disk did not
    # the trainer's view of the stored mask gives back the recorded first poses
    sc = ObjectScene.from_mask(ep.mask, canonical_camera(128))
    assert np.allclose(sc.poses[:, :2], ep.states[0, :2, :2], atol=1e-6)


def test_oblique_rectification_matches_the_canonical_camera():
    objs = {1: ("box", 0.05, 0.1, 0.4, 0.04, 0.02), 2: ("disk", -0.12, -0.08, 0.03), 3: ("box", 0.1, -0.12, -1.0, 0.03, 0.03)}
    ref = _raster(TOPDOWN, objs)
    rect = ClipRectifier(OBLIQUE)
    got = rect(_raster(OBLIQUE, objs))
    assert rect.valid.mean() > 0.95
    for o in objs:
        iou = np.sum((got == o) & (ref == o)) / np.sum((got == o) | (ref == o))
        assert iou > 0.85, (o, iou)
    a, b = ObjectScene.from_mask(got, canonical_camera(128)), ObjectScene.from_mask(ref, canonical_camera(128))
    assert np.max(np.abs(a.poses[:, :2] - b.poses[:, :2])) < 0.0015
    with pytest.raises(EpisodeRejected, match="size_mismatch.*320x240"):
        rect(np.zeros((120, 160), np.uint8))


@pytest.mark.parametrize("case,reason", [("vanish", "object_vanished"), ("appear", "id_appeared"), ("empty", "no_objects"),
                                         ("many", "too_many_objects"), ("short", "clip_too_short"), ("border", "object_out_of_view"),
                                         ("size", "size_mismatch")])
def test_drop_rules_name_their_reason(case, reason):
    cfg = RecorderConfig()
    frames = _clip(TOPDOWN)
    if case == "vanish":
        frames = _clip(TOPDOWN, vanish_at=9)
    elif case == "appear":
        frames = _clip(TOPDOWN, appear_at=4)
    elif case == "empty":
        frames = [np.zeros_like(f) for f in frames]
    elif case == "many":
        objs = {i + 1: ("disk", -0.15 + 0.035 * i, 0.0, 0.012) for i in range(9)}
        frames = [_raster(TOPDOWN, objs)] * T
    elif case == "short":
        frames = frames[:10]
    elif case == "border":
        frames = [_raster(TOPDOWN, {1: ("disk", -0.19, 0.0, 0.03)})] * T
    elif case == "size":
        frames = [f[:100] for f in frames]
    with pytest.raises(EpisodeRejected) as e:
        episode_from_clip(frames, STROKE, TOPDOWN, cfg)
    assert e.value.reason == reason


def test_clip_buffer_resamples_a_camera_stream_by_time():
    cfg = RecorderConfig()
    buf = ClipBuffer(cfg)
    t0 = 10**12
    for k in range(30):  # a 30 Hz stream: frame k holds the value k (1 s so far)
        buf.add(t0 + int(k * 1e9 / 30), np.full((128, 128), k % 250, np.uint8))
    stroke_ns = t0 + int(0.1e9)
    first = buf.first_frame(stroke_ns)
    assert first == t0 + int(3 * 1e9 / 30)  # the newest frame at or before the stroke
    assert buf.clip(first) is None  # the clip (1.2 s) is not complete yet
    for k in range(30, 70):
        buf.add(t0 + int(k * 1e9 / 30), np.full((128, 128), k % 250, np.uint8))
    clip = buf.clip(first)
    assert clip.shape == (T, 128, 128)
    assert np.all(np.abs(clip[:, 0, 0] - (3 + np.arange(T) * 0.08 * 30)) <= 0.5 + 1e-9)  # nearest frames at 80 ms steps
    with pytest.raises(EpisodeRejected, match="no_first_frame"):
        buf.first_frame(t0 + int(20e9))  # the newest frame is far too old


def _episodes(n: int):
    eps = []
    for i in range(n):
        frames = _clip(TOPDOWN)
        eps.append(episode_from_clip(frames, PushStroke(-0.12, 0.02 + 0.001 * i, 0.0, 0.1, 0.25), TOPDOWN, RecorderConfig(),
                                     stamp_ns=i + 1))
    return eps


def test_writer_is_atomic_and_load_episodes_reads_it(tmp_path, monkeypatch):
    cfg = RecorderConfig(out=str(tmp_path / "rec"), episodes_per_shard=2)
    eps = _episodes(1)[0]
    w = RecordingWriter(cfg.out, cfg, calibration=TOPDOWN)
    for _ in range(4):
        w.add(eps)
    w.drop("object_vanished")
    assert w.episodes == 4 and w.buffered == 0
    w.add(eps)  # buffered, not yet on disk
    # an interruption in the middle of writing the next shard
    real = np.savez_compressed

    def dying(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", dying)
    with pytest.raises(KeyboardInterrupt):
        w.flush()
    monkeypatch.setattr(np, "savez_compressed", real)
    root = Path(cfg.out)
    assert sorted(p.name for p in root.glob("shard_*.npz")) == ["shard_00000.npz", "shard_00001.npz"]
    assert list(root.glob("tmp_*"))  # the broken file is a tmp file, never a shard
    d = load_episodes(root)
    assert len(d["seeds"]) == 4 and list(d["seeds"]) == [0, 1, 2, 3]
    assert d["masks"].shape == (4, 128, 128) and d["states"].shape == (4, T, MAX_OBJECTS, 6)
    assert np.all(d["curriculum"] == RECORDED_CURRICULUM) and np.all(d["num_objects"] == 2)
    # a new recorder in the same directory cleans up and appends after the last complete shard
    w2 = RecordingWriter(cfg.out, cfg)
    assert not list(root.glob("tmp_*")) and w2.episodes == 4 and w2.dropped["object_vanished"] == 1
    w2.add(eps)
    w2.close()
    assert (root / "shard_00002.npz").exists()
    m = json.loads((root / "manifest.json").read_text())
    assert m["format"] == "kinemask_ros.object_dataset" and m["version"] == 1 and m["episodes"] == 5
    assert m["dropped"] == {"object_vanished": 1}
    assert list(load_episodes(root)["seeds"]) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="mask_size"):
        RecordingWriter(cfg.out, RecorderConfig(out=cfg.out, mask_size=64))


def test_trainer_tokens_and_fine_tuning_on_a_recording(tmp_path):
    import torch

    from kinemask_ros.world_model.objects import ObjectTrackDenoiser, ObjectTrainConfig, episode_tokens, expand_features, train
    from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT

    torch.set_num_threads(1)
    cfg = RecorderConfig(out=str(tmp_path / "rec"), episodes_per_shard=3)
    w = RecordingWriter(cfg.out, cfg)
    for ep in _episodes(6):
        w.add(ep)
    w.close()
    d = load_episodes(cfg.out)
    for r in (32, 64, 128):  # every training resolution resamples the recorded masks
        tok = episode_tokens(d, (r,), progress=False)
        assert (~tok["pad"]).sum(1).tolist() == [2] * 6
        assert np.abs(tok["targets"][:, :2]).max() > 0.5  # the box's motion is in the targets (normalised)
    run = tmp_path / "ft"
    tc = ObjectTrainConfig(data=cfg.out, out=str(run), steps=4, batch=8, ckpt_every=2, threads=1, lr=2e-4,
                           init_from=str(EMBEDDED_CHECKPOINT))  # a checkpoint dir with objects/
    train(tc)
    init = ObjectTrackDenoiser.from_pretrained(EMBEDDED_CHECKPOINT / "objects")
    tuned = ObjectTrackDenoiser.from_pretrained(run / "model")
    if init.config.feature_dim < tuned.config.feature_dim:  # an older shipped model: fine-tuning added the new features
        init = expand_features(init)
    assert tuned.config.layers == init.config.layers
    diff = max(float((a - b).abs().max()) for a, b in zip(init.state_dict().values(), tuned.state_dict().values()))
    assert 0 < diff < 0.05  # started from the embedded weights and moved a little
    assert json.loads((run / "train_config.json").read_text())["layers"] == init.config.layers
    train(ObjectTrainConfig(**{**tc.__dict__, "steps": 6}))  # resumes from state_objects.pt
    assert json.loads((run / "losses.json").read_text())["step"] == 6


# ----------------------------------------------------------------------------- across processes
def test_bridge_and_recorder_record_two_pushes(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    try:
        from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"kinemask_ros_interfaces not built ({exc})")
    from ros_utils import ros_env, wait_for

    from kinemask_ros.ros.common import RELIABLE_QOS

    domain = int.from_bytes(os.urandom(1), "little") % 90 + 110
    env = ros_env(tmp_path / "log", domain)
    out = tmp_path / "rec"
    py = sys.executable
    bridge = subprocess.Popen([py, "-m", "kinemask_ros.ros.entry", "kinemask-sim-bridge-node", "--ros-args", "-p", "image_width:=160",
                               "-p", "image_height:=120", "-p", "camera_distance:=0.8", "-p", "camera_elevation_deg:=45.0",
                               "-p", "camera_fov_deg:=42.0", "-p", "rate_hz:=5.0", "-p", "seed:=3", "-p", "reset_on_done:=false"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    rec_log = tmp_path / "recorder.log"
    with open(rec_log, "w") as logf:
        rec = subprocess.Popen([py, "-c", "from kinemask_ros.ros.entry import recorder_node; raise SystemExit(recorder_node())",
                                "--ros-args", "-p", f"out:={out}", "-p", "max_episodes:=2", "-p", "episodes_per_shard:=1"],
                               env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("recording_test", context=ctx)
    pub = node.create_publisher(PushStrokeMsg, "sim/execute_push", RELIABLE_QOS)
    try:
        wait_for(lambda: pub.get_subscription_count() >= 2, 60.0, what="the bridge and the recorder to subscribe")
        wait_for(lambda: "recording pushes" in rec_log.read_text(), 30.0, what="the recorder to start")
        time.sleep(1.0)  # camera_info + the latched table pose reach the recorder
        sent = 0
        strokes = [(-0.15, 0.0, 0.0), (0.0, -0.15, math.pi / 2), (0.15, 0.0, math.pi), (0.0, 0.15, -math.pi / 2)] * 2
        for x, y, th in strokes:
            # stop at 2 recorded episodes (the recorder may log "max_episodes=2 reached" a moment later)
            if rec.poll() is not None or rec_log.read_text().count("recorded an episode") >= 2:
                break
            pub.publish(PushStrokeMsg(x=x, y=y, theta=th, length=0.1, speed=0.3))
            sent += 1
            n0 = rec_log.read_text().count("recorded an episode") + rec_log.read_text().count("dropped a push")
            wait_for(lambda: rec.poll() is not None or rec_log.read_text().count("recorded an episode")
                     + rec_log.read_text().count("dropped a push") > n0, 30.0, what="the recorder to handle the push")
        assert rec.wait(timeout=20) == 0, rec_log.read_text()[-3000:]  # exits by itself after max_episodes
    finally:
        for p in (rec, bridge):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in (rec, bridge):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    d = load_episodes(out)
    assert len(d["seeds"]) == 2 and d["masks"].shape[1:] == (128, 128)
    assert np.all(d["num_objects"] >= 1) and np.all(np.isfinite(d["states"]))
    m = json.loads((out / "manifest.json").read_text())
    assert m["episodes"] == 2 and sum(m["dropped"].values()) + 2 == sent
    assert m["calibration"]["width"] == 160 and not list(out.glob("tmp_*"))


def test_recorder_node_reports_bad_calibration_once_and_stays_up(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    try:
        from kinemask_ros_interfaces.msg import PredictedRollout
        from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"kinemask_ros_interfaces not built ({exc})")
    from geometry_msgs.msg import TransformStamped
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo

    from kinemask_ros.ros.messages import ids_to_msg
    from kinemask_ros.ros.recorder_node import RecorderNode
    from kinemask_ros.table_frame import matrix_to_pose

    def info_msg(k=None):
        f = OBLIQUE.to_camera_info()
        m = CameraInfo(width=f["width"], height=f["height"], distortion_model=f["distortion_model"])
        m.d, m.k, m.r, m.p = f["d"], (k if k is not None else f["k"]), f["r"], f["p"]
        m.header.frame_id = "camera"
        return m

    pose = TransformStamped()
    pose.header.frame_id, pose.child_frame_id = "table", "camera"
    t, q = matrix_to_pose(OBLIQUE.T_table_cam)
    pose.transform.translation.x, pose.transform.translation.y, pose.transform.translation.z = (float(v) for v in t)
    r = pose.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    frames = _clip(OBLIQUE)
    outcome = PredictedRollout(frame_dt_s=DT, object_masks=[ids_to_msg(f) for f in frames])
    small = PredictedRollout(frame_dt_s=DT, object_masks=[ids_to_msg(f[:120, :160]) for f in frames])
    stroke = PushStrokeMsg(x=STROKE.x, y=STROKE.y, theta=STROKE.theta, length=STROKE.length, speed=STROKE.speed)

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int.from_bytes(os.urandom(1), "little") % 90 + 110)
    node = RecorderNode(context=ctx, parameter_overrides=[Parameter("out", value=str(tmp_path / "rec")),
                                                          Parameter("episodes_per_shard", value=1)])
    try:
        def push(msg):
            node._on_stroke(stroke)
            node._on_outcome(msg)

        push(outcome)  # nothing yet
        assert node.writer.dropped["no_calibration"] == 1
        node._on_info(info_msg(k=[0.0] * 9))  # an uncalibrated camera
        node._on_pose(pose)
        push(outcome)
        push(outcome)
        assert node.writer.dropped["no_calibration"] == 3
        causes = {k: n for k, n in node._causes.items() if "not calibrated" in k}
        assert list(causes.values()) == [2]  # logged once, counted twice
        node._on_info(info_msg())
        push(small)  # masks of another size than the CameraInfo
        assert node.writer.dropped["size_mismatch"] == 1
        push(outcome)
        node._on_stroke(PushStrokeMsg(x=math.nan, y=0.0, theta=0.0, length=0.1, speed=0.3))
        assert node.writer.dropped["bad_stroke"] == 1
        assert node.writer.episodes == 1  # flushed (episodes_per_shard 1): the node kept working
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    d = load_episodes(tmp_path / "rec")
    assert len(d["seeds"]) == 1 and int(d["pushed"][0]) == 2
    m = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    assert m["dropped"] == {"no_calibration": 3, "size_mismatch": 1, "bad_stroke": 1}
