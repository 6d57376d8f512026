"""Your own data, end to end: record pushes through ROS with an oblique camera and a randomised look,
fine-tune the embedded object model on them, and measure before/after on held-out recordings.

The sim bridge stands in for the robot, and everything goes through ROS topics between processes:

1. ``kinemask-sim-bridge-node`` with an oblique RGB-D camera (default 640x480, 45 deg elevation,
   0.8 m, 42 deg fov) and ``look:=randomized``, plus ``kinemask-record`` (``clip_source:=outcome``);
2. this script, a separate ROS node, aims random strokes at objects: it finds them in the bridge's
   depth image (``camera/depth/image_raw`` + ``camera/camera_info`` + ``camera/table_pose``:
   pixels more than 1 cm above the table, connected components), publishes each stroke on
   ``sim/execute_push``, waits for ``sim/outcome``, and calls ``sim/reset`` every
   ``--pushes-per-scene`` pushes. The recorder turns each push into an episode (or drops it with
   a reason); train and test recordings use different bridge seeds (different scenes and looks);
3. ``kinemask-train-objects --init-from kinemask_ros/checkpoints/kinemask_embedded/objects``
   fine-tunes on the train recording (``--steps``; default learning rate ``FINETUNE_LR``);
4. both models on the held-out recording, planner path (tokens from the recorded first mask at
   128 and 64 px + the commanded stroke, ``benchmarks/object_model.py``'s functions): pushed-object
   and hit-object final error [mm] and the other metrics of that benchmark, beside the still and
   constant-velocity baselines. Truth is what the recorder measured from the rectified masks.

    python benchmarks/finetune_recorded.py --episodes 200 60 --steps 2000

Prints the table and writes ``benchmarks/results/finetune_recorded.json``. Re-running reuses complete
recordings in ``--data`` and a finished fine-tuning run in ``--run`` (both resumable).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402
from object_model import constant_velocity, final_poses_still, metrics, object_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _env(domain: int, log_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(log_dir), PYTHONUNBUFFERED="1",
               RCUTILS_COLORIZED_OUTPUT="0", OMP_NUM_THREADS="1")
    log_dir.mkdir(parents=True, exist_ok=True)
    return env


def _cmd(script: str, module_fallback: list[str]) -> list[str]:
    exe = shutil.which(script) or (str(Path(sys.executable).parent / script) if (Path(sys.executable).parent / script).exists() else None)
    return [exe] if exe else [sys.executable, *module_fallback]


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


class Pusher:
    """The script's ROS node: finds objects in the depth image, publishes strokes, waits for outcomes."""

    def __init__(self, domain: int, rng: np.random.Generator):
        import rclpy
        from geometry_msgs.msg import TransformStamped
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image
        from std_srvs.srv import Trigger

        from kinemask_ros.ros.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
        from kinemask_ros_interfaces.msg import PredictedRollout
        from kinemask_ros_interfaces.msg import PushStroke as PushStrokeMsg

        self.rclpy, self.rng = rclpy, rng
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = n = rclpy.create_node("finetune_pusher", context=self.ctx)
        self.lock = threading.Lock()
        self.depth = self.info = self.pose = None
        self.outcomes = 0
        n.create_subscription(Image, "camera/depth/image_raw", lambda m: self._set("depth", m), SENSOR_QOS)
        n.create_subscription(CameraInfo, "camera/camera_info", lambda m: self._set("info", m), SENSOR_QOS)
        n.create_subscription(TransformStamped, "camera/table_pose", lambda m: self._set("pose", m), LATCHED_QOS)
        n.create_subscription(PredictedRollout, "sim/outcome", self._on_outcome, RELIABLE_QOS)
        self.pub = n.create_publisher(PushStrokeMsg, "sim/execute_push", RELIABLE_QOS)
        self.reset_client = n.create_client(Trigger, "sim/reset")
        self.Msg, self.Trigger = PushStrokeMsg, Trigger
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(n)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()

    def _set(self, key, msg):
        with self.lock:
            setattr(self, key, msg)

    def _on_outcome(self, msg):
        with self.lock:
            self.outcomes += 1

    def close(self) -> None:
        self.ex.shutdown(timeout_sec=5)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)

    def wait_ready(self, bridge: subprocess.Popen, timeout_s: float = 90.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if bridge.poll() is not None:
                raise RuntimeError(f"the sim bridge exited with {bridge.returncode} (see its log)")
            with self.lock:
                if self.depth is not None and self.info is not None and self.pose is not None and self.reset_client.service_is_ready():
                    return
            time.sleep(0.1)
        raise TimeoutError("the sim bridge did not publish depth / camera_info / table_pose within 90 s")

    def reset(self) -> None:
        fut = self.reset_client.call_async(self.Trigger.Request())
        t0 = time.monotonic()
        while not fut.done() and time.monotonic() - t0 < 30:
            time.sleep(0.02)

    def fresh_depth(self, after_ns: int, timeout_s: float = 15.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            with self.lock:
                d = self.depth
            if d is not None and d.header.stamp.sec * 10**9 + d.header.stamp.nanosec > after_ns:
                return d
            time.sleep(0.02)
        raise TimeoutError("no fresh depth frame")

    def objects(self, after_ns: int) -> list[np.ndarray]:
        """Table-frame centres ``(2,)`` [m] of the objects in a depth frame newer than ``after_ns``."""
        from scipy.ndimage import label

        from kinemask_ros.table_frame import CameraCalibration, height_above_table, pose_to_matrix

        d = self.fresh_depth(after_ns)
        with self.lock:
            info, pose = self.info, self.pose
        t, r = pose.transform.translation, pose.transform.rotation
        calib = CameraCalibration.from_camera_info(info, T_cam_table=np.linalg.inv(pose_to_matrix((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))))
        depth = np.frombuffer(bytes(d.data), "<f4").reshape(d.height, d.width)
        from kinemask_ros.table_frame import depth_to_table_points

        pts = depth_to_table_points(depth, calib)
        h = height_above_table(depth, calib)
        lab, n = label(np.nan_to_num(h, nan=0.0) > 0.01)
        out = []
        for k in range(1, n + 1):
            m = lab == k
            if m.sum() >= 20:
                top = m & (h > 0.02)  # top faces: exact table xy
                p = pts[top if top.sum() >= 5 else m][:, :2]
                c = p.mean(0)
                if np.all(np.abs(c) < 0.18):
                    out.append(c)
        return out

    def stroke_at(self, c: np.ndarray):
        """A stroke aimed at an object centre ``c``: roughly towards the table centre, lateral offsets from centred to misses."""
        rng = self.rng
        theta = math.atan2(-c[1], -c[0]) + rng.uniform(-math.pi / 2, math.pi / 2) if np.linalg.norm(c) > 0.03 else rng.uniform(-math.pi, math.pi)
        d = np.array([math.cos(theta), math.sin(theta)])
        nrm = np.array([-d[1], d[0]])
        back = 0.05 + rng.uniform(0.004, 0.03)
        start = np.clip(c - back * d + rng.uniform(-1, 1) * 0.05 * nrm, -0.19, 0.19)
        length = float(rng.uniform(max(0.03, back + 0.01), 0.12))
        return self.Msg(x=float(start[0]), y=float(start[1]), theta=float(theta), length=length, speed=float(rng.uniform(0.2, 0.5)))

    def push(self, stroke, timeout_s: float = 20.0) -> bool:
        with self.lock:
            n0 = self.outcomes
        self.pub.publish(stroke)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            with self.lock:
                if self.outcomes > n0:
                    return True
            time.sleep(0.02)
        return False


def record(split: str, n: int, seed: int, a, data: Path, logs: Path) -> dict:
    """Record ``n`` episodes into ``data/split`` with a bridge of seed ``seed``; returns the manifest."""
    from kinemask_ros.sim_bridge.object_dataset import load_episodes

    out = data / split
    have = len(load_episodes(out)["seeds"]) if list(out.glob("shard_*.npz")) else 0
    if have >= n:
        print(f"[{split}] {have} episodes already recorded in {out}", file=sys.stderr)
        return json.loads((out / "manifest.json").read_text())
    domain = random.randint(120, 220)
    env = _env(domain, logs / split)
    bridge_cmd = _cmd("kinemask-sim-bridge-node", ["-m", "kinemask_ros.ros.entry", "kinemask-sim-bridge-node"]) + [
        "--ros-args", "-p", f"image_width:={a.width}", "-p", f"image_height:={a.height}", "-p", f"camera_distance:={a.distance}",
        "-p", f"camera_elevation_deg:={a.elevation}", "-p", f"camera_fov_deg:={a.fov}", "-p", f"look:={a.look}", "-p", "rate_hz:=3.0",
        "-p", f"seed:={seed}", "-p", "reset_on_done:=false"]
    rec_cmd = _cmd("kinemask-record", ["-c", "from kinemask_ros.ros.entry import recorder_node; raise SystemExit(recorder_node())"]) + [
        "--ros-args", "-p", f"out:={out}", "-p", f"max_episodes:={n - have}", "-p", "episodes_per_shard:=50"]
    rec_log = logs / f"recorder_{split}.log"
    with open(logs / f"bridge_{split}.log", "w") as bl, open(rec_log, "w") as rl:
        bridge = subprocess.Popen(bridge_cmd, env=env, stdout=bl, stderr=subprocess.STDOUT, start_new_session=True)
        rec = subprocess.Popen(rec_cmd, env=env, stdout=rl, stderr=subprocess.STDOUT, start_new_session=True)
    pusher = Pusher(domain, np.random.default_rng([seed, 5]))
    from tqdm import tqdm

    bar = tqdm(total=n - have, desc=f"record {split}", file=sys.stderr)
    pushes = lost = misses = 0
    t_start = time.perf_counter()
    try:
        pusher.wait_ready(bridge)
        while "recording pushes" not in rec_log.read_text():
            if rec.poll() is not None:
                raise RuntimeError(f"kinemask-record exited with {rec.returncode}: {rec_log.read_text()[-2000:]}")
            time.sleep(0.2)
        t_wait = time.monotonic()
        while pusher.pub.get_subscription_count() < 2 and time.monotonic() - t_wait < 60:  # the bridge and the recorder
            time.sleep(0.1)
        time.sleep(1.0)
        last_ns = 0
        while rec.poll() is None and pushes < 4 * n + 20:
            if bridge.poll() is not None:
                raise RuntimeError(f"the sim bridge exited with {bridge.returncode} (see {logs / f'bridge_{split}.log'})")
            if pushes % a.pushes_per_scene == 0:
                pusher.reset()
                last_ns = pusher.node.get_clock().now().nanoseconds
            try:
                objs = pusher.objects(last_ns)
            except TimeoutError:  # a best-effort depth frame lost under load: try again on a new scene
                misses += 1
                if misses > 20:
                    raise
                objs = []
            if not objs:
                pusher.reset()
                last_ns = pusher.node.get_clock().now().nanoseconds
                continue
            c = objs[int(pusher.rng.integers(len(objs)))]
            if not pusher.push(pusher.stroke_at(c)):
                lost += 1
            pushes += 1
            last_ns = pusher.node.get_clock().now().nanoseconds
            done = rec_log.read_text().count("recorded an episode")
            bar.update(done - bar.n)
            # the recorder handles the outcome right after it arrives; give it a moment before the next push
            t0 = time.monotonic()
            while rec.poll() is None and time.monotonic() - t0 < 5 and \
                    rec_log.read_text().count("recorded an episode") + rec_log.read_text().count("dropped a push") < pushes:
                time.sleep(0.02)
        rc = rec.wait(timeout=60)
    finally:
        bar.close()
        pusher.close()
        _stop(rec)
        _stop(bridge)
    m = json.loads((out / "manifest.json").read_text())
    m["run"] = {"pushes": pushes, "outcomes_lost": lost, "seconds": round(time.perf_counter() - t_start, 1), "recorder_exit": rc}
    print(f"[{split}] {m['episodes']} episodes from {pushes} pushes in {m['run']['seconds']} s; dropped {m['dropped']}", file=sys.stderr)
    return m


def evaluate(model, d: dict, samples: int, steps: int, resolutions: list[int]) -> dict:
    idx = np.arange(len(d["seeds"]))
    return {f"@{r}px": metrics(d, object_model(model, d, idx, r, samples, steps), idx) for r in resolutions}


def main(argv: list[str] | None = None) -> int:
    from kinemask_ros.world_model.objects import FINETUNE_LR

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, nargs=2, default=[200, 60], metavar=("TRAIN", "TEST"))
    p.add_argument("--steps", type=int, default=2000, help="fine-tuning steps")
    p.add_argument("--lr", type=float, default=FINETUNE_LR)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data", default="data/recorded_finetune")
    p.add_argument("--run", default="runs/finetune_recorded")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--elevation", type=float, default=45.0)
    p.add_argument("--distance", type=float, default=0.8)
    p.add_argument("--fov", type=float, default=42.0)
    p.add_argument("--look", default="randomized")
    p.add_argument("--pushes-per-scene", type=int, default=3)
    p.add_argument("--seed", type=int, default=1, help="train bridge seed (test: seed + 1000)")
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--sample-steps", type=int, default=8)
    p.add_argument("--resolutions", type=int, nargs="+", default=[128, 64])
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from kinemask_ros.sim_bridge.object_dataset import load_episodes
    from kinemask_ros.world_model.objects import ObjectWorldModel
    from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT

    data, run = Path(a.data), Path(a.run)
    logs = run.parent / (run.name + "_logs")
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifests = {"train": record("train", a.episodes[0], a.seed, a, data, logs),
                 "test": record("test", a.episodes[1], a.seed + 1000, a, data, logs)}
    t_record = time.perf_counter() - t0
    init = EMBEDDED_CHECKPOINT / "objects"
    t0 = time.perf_counter()
    cmd = _cmd("kinemask-train-objects", ["-m", "kinemask_ros.world_model.objects"]) + [
        "--init-from", str(init), "--data", str(data / "train"), "--out", str(run), "--steps", str(a.steps), "--lr", str(a.lr),
        "--batch", str(a.batch), "--resolutions", *[str(r) for r in a.resolutions], "--threads", "1", "--ckpt-every", "250"]
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    t_train = time.perf_counter() - t0
    test, train = load_episodes(data / "test"), load_episodes(data / "train")
    before, after = ObjectWorldModel.from_pretrained(init), ObjectWorldModel.from_pretrained(run / "model")
    t0 = time.perf_counter()
    rows = {}
    for split, d in (("test", test), ("train", train)):
        idx = np.arange(len(d["seeds"]))
        cam = __import__("kinemask_ros.recording", fromlist=["canonical_camera"]).canonical_camera(d["masks"].shape[1])
        rows[split] = {"still": metrics(d, final_poses_still(d), idx), "constant velocity": metrics(d, constant_velocity(d, idx, cam), idx)}
        for name, m in (("embedded (before)", before), ("fine-tuned (after)", after)):
            for res, met in evaluate(m, d, a.samples, a.sample_steps, a.resolutions).items():
                rows[split][f"{name} {res}"] = met
    t_eval = time.perf_counter() - t0
    cols = ["pushed_err_mm", "hit_err_mm", "direction_acc", "false_motion", "missed_motion", "overlap_rate"]
    lines = [f"# Fine-tuning on recorded pushes ({a.width}x{a.height} camera at {a.elevation:g} deg, {a.distance:g} m, look {a.look})", "",
             f"Machine: {machine()}", "",
             f"Recorded through ROS (sim bridge -> kinemask-record): train {manifests['train']['episodes']} episodes "
             f"(dropped {manifests['train']['dropped']}), test {manifests['test']['episodes']} (dropped {manifests['test']['dropped']}); "
             f"fine-tuned {a.steps} steps, lr {a.lr:g}, batch {a.batch}, from the embedded object model.", ""]
    for split in ("test", "train"):
        d = test if split == "test" else train
        lines += [f"## {split} recordings ({len(d['seeds'])} episodes{', held out' if split == 'test' else ', the fine-tuning data'})", "",
                  "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, m in rows[split].items():
            lines.append(f"| {name} | " + " | ".join(f"{m[c]:.1f}" if c.endswith("_mm") else f"{m[c]:.3f}" for c in cols) + " |")
        lines.append("")
    lines.append(f"Time: recording {t_record:.0f} s, fine-tuning {t_train:.0f} s, evaluation {t_eval:.0f} s.")
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"machine": machine(), "camera": {"width": a.width, "height": a.height, "elevation_deg": a.elevation, "distance_m": a.distance,
                                            "fov_deg": a.fov, "look": a.look},
           "recording": {k: {"episodes": m["episodes"], "dropped": m["dropped"], **m.get("run", {})} for k, m in manifests.items()},
           "finetune": {"init_from": str(init.relative_to(REPO)) if init.is_relative_to(REPO) else str(init), "steps": a.steps, "lr": a.lr,
                        "batch": a.batch, "resolutions": a.resolutions, "command": " ".join(cmd)},
           "rows": rows, "timing_s": {"record": round(t_record, 1), "finetune": round(t_train, 1), "eval": round(t_eval, 1)}}
    (out / "finetune_recorded.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
