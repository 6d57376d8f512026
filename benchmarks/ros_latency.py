"""End-to-end ROS 2 latency: simulated camera frame -> scored candidates, over real DDS.

Brings up the simulator graph with ``kinemask_ros.ros.graph.Graph`` (the same nodes and
parameters as ``kinemask-graph`` / ``launch/kinemask_sim.launch.py``) on an isolated domain, with
the camera at ``--rate`` Hz, and records for ``--duration`` seconds (after ``--warmup``):

* latency of every decision = arrival time of ``planner/candidates`` at this client minus the
  header stamp of the camera frame it was planned on (the simulator stamps frames when it
  publishes them; same machine, same clock);
* the planner's own ``decision_latency_s``, decisions/s, camera frames/s received;
* resident memory (VmRSS) and CPU use of every node process, sampled every ``--sample-every`` s.

Writes ``benchmarks/results/ros_latency.{json,md}``.

    python benchmarks/ros_latency.py                      # embedded model (runs/wm until it ships), 150 s
    python benchmarks/ros_latency.py --duration 30 --checkpoint runs/wm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def default_checkpoint() -> str:
    from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT

    if (EMBEDDED_CHECKPOINT / "world_model_config.json").exists():
        return ""
    return str(REPO / "runs" / "wm")


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds user+system) of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return rss, (int(parts[11]) + int(parts[12])) / tck


def machine_info() -> dict:
    import rclpy  # noqa: F401
    import torch

    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    from importlib.metadata import version

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "rclpy": version("ros-kilted-rclpy") if _has("ros-kilted-rclpy") else "?",
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU run)"}


def _has(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False


def stats(x: list[float]) -> dict:
    a = np.asarray(x, float)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="world model ('' = embedded; default: embedded if present, else runs/wm)")
    p.add_argument("--duration", type=float, default=150.0, help="measured seconds (after warm-up)")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds after the first decision that are not measured")
    p.add_argument("--rate", type=float, default=30.0, help="camera rate [Hz]")
    p.add_argument("--window", type=float, default=30.0, help="window of the time series [s]")
    p.add_argument("--sample-every", type=float, default=5.0, help="memory/CPU sampling period [s]")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="extra graph parameter (repeatable)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ros_latency"))
    p.add_argument("--render-only", action="store_true", help="rewrite OUT.md from OUT.json without measuring")
    a = p.parse_args(argv)
    if a.render_only:
        out = Path(a.out)
        out.with_suffix(".md").write_text(markdown(json.loads(out.with_suffix(".json").read_text())))
        return 0

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from kinemask_ros.ros.common import RELIABLE_QOS, SENSOR_QOS
    from kinemask_ros.ros.graph import Graph, parse_set
    from kinemask_ros_interfaces.msg import DetectedObjects, ScoredCandidateArray
    from sensor_msgs.msg import Image

    ckpt = default_checkpoint() if a.checkpoint is None else a.checkpoint
    domain = random.randint(201, 230)
    log_dir = REPO / "build" / "ros_latency"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOG_DIR=str(log_dir / "ros_log"),
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR")})
    overrides = parse_set([f"sim_bridge.rate_hz={a.rate}"] + a.set)
    graph_log = open(log_dir / "graph.log", "w")
    g = Graph("sim", checkpoint=ckpt, device="cpu", overrides=overrides, env=env, stdout=graph_log, stderr=graph_log, workdir=log_dir)

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("ros_latency_bench", context=ctx)
    lock = threading.Lock()
    rec = {"frames": [], "segs": [], "decisions": []}  # (receive wall time, ...)

    def on_image(m):
        with lock:
            rec["frames"].append(time.time())

    def on_objects(m):
        with lock:
            rec["segs"].append((time.time(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9))

    def on_candidates(m):
        now = time.time()
        with lock:
            rec["decisions"].append((now, now - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), m.decision_latency_s, len(m.candidates)))

    node.create_subscription(Image, "camera/image_raw", on_image, SENSOR_QOS)
    node.create_subscription(DetectedObjects, "segmentation/objects", on_objects, SENSOR_QOS)
    node.create_subscription(ScoredCandidateArray, "planner/candidates", on_candidates, RELIABLE_QOS)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()

    load0 = os.getloadavg()
    t_launch = time.time()
    g.start()
    mem: list[dict] = []
    try:
        while True:
            with lock:
                n = len(rec["decisions"])
            if n:
                break
            dead = {k: v for k, v in g.poll().items() if v is not None}
            if dead:
                raise SystemExit(f"node(s) died during start-up: {dead}; see {log_dir / 'graph.log'}")
            if time.time() - t_launch > 300:
                raise SystemExit("no decision within 300 s")
            time.sleep(0.1)
        t_first = time.time()
        startup_s = t_first - t_launch
        print(f"first decision {startup_s:.1f} s after launch; warming up {a.warmup:.0f} s, then measuring {a.duration:.0f} s", flush=True)
        t_start = t_first + a.warmup
        t_end = t_start + a.duration
        pids = g.pids()
        last_cpu = {k: proc_stats(pid)[1] for k, pid in pids.items()}
        last_t = time.time()
        next_sample = time.time()
        while time.time() < t_end:
            dead = {k: v for k, v in g.poll().items() if v is not None}
            if dead:
                raise SystemExit(f"node(s) died: {dead}; see {log_dir / 'graph.log'}")
            if time.time() >= next_sample:
                now = time.time()
                row = {"t": now - t_start}
                for k, pid in pids.items():
                    rss, cpu = proc_stats(pid)
                    row[k] = {"rss_mib": round(rss, 1), "cpu_pct": round(100 * (cpu - last_cpu[k]) / max(now - last_t, 1e-6), 1)}
                    last_cpu[k] = cpu
                last_t = now
                mem.append(row)
                next_sample += a.sample_every
                d = [x for x in rec["decisions"] if x[0] >= t_start]
                if d and row["t"] >= 0:
                    print(f"t={row['t']:6.1f} s  decisions={len(d):4d}  median latency={np.median([x[1] for x in d]) * 1000:7.1f} ms  "
                          + "  ".join(f"{k}={v['rss_mib']:.0f}MiB" for k, v in row.items() if k != "t"), flush=True)
            time.sleep(0.05)
    finally:
        load1 = os.getloadavg()
        rcs = g.stop()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        graph_log.close()

    with lock:
        dec = [x for x in rec["decisions"] if t_start <= x[0] < t_end]
        frames = [t for t in rec["frames"] if t_start <= t < t_end]
        segs = [x for x in rec["segs"] if t_start <= x[0] < t_end]
    lat = [x[1] for x in dec]
    windows = []
    w0 = 0.0
    while w0 < a.duration - 1e-6:
        w1 = min(w0 + a.window, a.duration)
        sel = [x for x in dec if t_start + w0 <= x[0] < t_start + w1]
        fr = [t for t in frames if t_start + w0 <= t < t_start + w1]
        ms = [r for r in mem if w0 <= r["t"] < w1]
        windows.append({
            "t0_s": w0, "t1_s": w1, "decisions": len(sel),
            "latency_median_ms": float(np.median([x[1] for x in sel]) * 1000) if sel else None,
            "latency_p95_ms": float(np.percentile([x[1] for x in sel], 95) * 1000) if sel else None,
            "camera_hz": len(fr) / (w1 - w0),
            "rss_mib": {k: float(np.mean([r[k]["rss_mib"] for r in ms])) for k in pids} if ms else {},
        })
        w0 = w1
    measured = [r for r in mem if 0 <= r["t"] <= a.duration]
    rss = {}
    for k in pids:
        ts = np.array([r["t"] for r in measured])
        ys = np.array([r[k]["rss_mib"] for r in measured])
        slope = float(np.polyfit(ts, ys, 1)[0] * 60) if len(ts) > 2 else float("nan")
        rss[k] = {"first_mib": float(ys[0]), "last_mib": float(ys[-1]), "max_mib": float(ys.max()), "growth_mib": float(ys[-1] - ys[0]),
                  "slope_mib_per_min": slope, "cpu_pct_mean": float(np.mean([r[k]["cpu_pct"] for r in measured]))}
    thirds = np.array_split(np.array(lat), 3) if len(lat) >= 3 else []
    result = {
        "benchmark": "ros_latency",
        "what": "camera frame (simulator stamp) -> planner/candidates received by a separate client process, real DDS on one machine",
        "machine": machine_info(),
        "load_average_before": load0, "load_average_after": load1,
        "checkpoint": ckpt or "embedded", "device": "cpu",
        "graph_parameters": g.params,
        "camera_rate_hz": a.rate, "duration_s": a.duration, "warmup_s": a.warmup, "startup_to_first_decision_s": startup_s,
        "latency_s": stats(lat),
        "planner_decision_latency_s": stats([x[2] for x in dec]),
        "decisions_per_s": len(dec) / a.duration,
        "candidates_per_decision": float(np.mean([x[3] for x in dec])) if dec else 0,
        "camera_hz_received": len(frames) / a.duration,
        "segmentation_hz": len(segs) / a.duration,
        "latency_median_by_third_ms": [float(np.median(t) * 1000) for t in thirds],
        "windows": windows,
        "rss": rss,
        "memory_samples": mem,
        "exit_codes": rcs,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    m, L, D = r["machine"], r["latency_s"], r["planner_decision_latency_s"]
    pp = r["graph_parameters"]["planner"]
    sb = r["graph_parameters"].get("sim_bridge", {})
    seg = r["graph_parameters"].get("segmentation", {})
    cam = (f"{sb.get('image_width', 32)}x{sb.get('image_height', 32)} rgb8"
           + (f", oblique {sb.get('camera_elevation_deg')} deg from {sb.get('camera_distance')} m" if sb.get("camera_distance") else "")
           + (f", depth, look {sb.get('look')}" if sb.get("look", "canonical") != "canonical" else "")
           + (f"; segmentation backend {seg.get('backend')}" if seg.get("backend", "classical") != "classical" else ""))
    lines = [
        "# ROS 2 end-to-end latency: camera frame -> scored candidates",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB RAM, {m['gpu']}; Python {m['python']}, torch {m['torch']}, "
        f"rclpy {m['rclpy']} (pip wheels, Fast DDS). Load average before/after: "
        f"{r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f} (other jobs were running on this machine).",
        "",
        f"Graph: `kinemask-graph` (sim mode) - sim bridge (camera {r['camera_rate_hz']:g} Hz, {cam}) -> segmentation -> planner "
        f"(world model in-process, checkpoint `{r['checkpoint']}`, CPU, {pp['method']} {pp['num_candidates']} candidates x "
        f"{pp['iterations']} iterations x {pp['num_samples']} samples, frames for the top {pp['rollout_top_k']}) + world-model node. "
        f"Measured {r['duration_s']:.0f} s after a {r['warmup_s']:.0f} s warm-up; start-up to first decision {r['startup_to_first_decision_s']:.1f} s.",
        "",
        "| quantity | median | p95 | p99 | mean | n |",
        "|---|---|---|---|---|---|",
        f"| camera frame -> candidates at client [ms] | {L['median'] * 1000:.0f} | {L['p95'] * 1000:.0f} | {L['p99'] * 1000:.0f} | {L['mean'] * 1000:.0f} | {L['n']} |",
        f"| planner `decision_latency_s` [ms] | {D['median'] * 1000:.0f} | {D['p95'] * 1000:.0f} | {D['p99'] * 1000:.0f} | {D['mean'] * 1000:.0f} | {D['n']} |",
        "",
        f"Decisions/s: {r['decisions_per_s']:.2f} ({r['candidates_per_decision']:.0f} candidates each); camera frames received: "
        f"{r['camera_hz_received']:.1f} Hz; segmentations: {r['segmentation_hz']:.1f} Hz. The planner starts each plan on the newest "
        "segmented frame (frames arriving meanwhile are dropped), so latency = one plan + the frame's age at plan start (under one "
        "camera period + segmentation); the top candidates' rollout frames are rendered after the ranking is published and set "
        "the gap between decisions.",
        "",
        "## Over time",
        "",
        "| window [s] | decisions | latency median [ms] | p95 [ms] | camera [Hz] | " + " | ".join(f"RSS {k} [MiB]" for k in r["rss"]) + " |",
        "|---|---|---|---|---|" + "---|" * len(r["rss"]),
    ]
    for w in r["windows"]:
        med = f"{w['latency_median_ms']:.0f}" if w["latency_median_ms"] is not None else "-"
        p95 = f"{w['latency_p95_ms']:.0f}" if w["latency_p95_ms"] is not None else "-"
        lines.append(f"| {w['t0_s']:.0f}-{w['t1_s']:.0f} | {w['decisions']} | {med} | {p95} | {w['camera_hz']:.1f} | "
                     + " | ".join(f"{w['rss_mib'].get(k, float('nan')):.0f}" for k in r["rss"]) + " |")
    lines += ["", "## Memory per node (RSS)", "", "| node | first [MiB] | last [MiB] | max [MiB] | growth [MiB] | slope [MiB/min] | CPU [%] |",
              "|---|---|---|---|---|---|---|"]
    for k, v in r["rss"].items():
        lines.append(f"| {k} | {v['first_mib']:.0f} | {v['last_mib']:.0f} | {v['max_mib']:.0f} | {v['growth_mib']:+.1f} | "
                     f"{v['slope_mib_per_min']:+.2f} | {v['cpu_pct_mean']:.0f} |")
    thirds = ", ".join(f"{x:.0f}" for x in r["latency_median_by_third_ms"])
    lines += ["", f"Median latency in the first, middle and last third of the run: {thirds} ms.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
