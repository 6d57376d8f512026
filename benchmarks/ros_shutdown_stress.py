"""Shutdown stress: start ``kinemask-graph`` (sim mode) and Ctrl-C it at a random moment, N times.

Each run starts ``python -m kinemask_ros.ros.graph`` as a subprocess on its own DDS domain
(loopback only, logs in a temporary directory), waits a random ``--min-s`` .. ``--max-s`` seconds
(so some shutdowns hit start-up / model loading, others steady planning) and sends it one
SIGINT, as a terminal's Ctrl-C would. Every ``--client-every``-th run an in-process rclpy client
also keeps ``imagine_outcomes`` requests in flight while the graph is stopped.

A run passes when kinemask-graph exits 0 within ``--exit-timeout-s``, its last line
``kinemask-graph: stopped ({...})`` reports exit code 0 for every node (-2/-15/-9 mean the node
needed SIGINT-forwarding, SIGTERM or SIGKILL to stop... any code but 0 is a failure) and the log
holds no "Traceback", "Segmentation fault", "core dumped" or "Fatal Python error". Logs of
failing runs are kept under ``--keep-dir``.

Writes ``benchmarks/results/ros_shutdown_stress.{json,md}``.

    python benchmarks/ros_shutdown_stress.py                    # 100 runs, embedded checkpoint
    python benchmarks/ros_shutdown_stress.py --runs 5 --max-s 6
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from ros_utils import ros_env  # noqa: E402

NODES = ("sim_bridge", "segmentation", "world_model", "planner")
BAD_PATTERNS = ("Traceback", "Segmentation fault", "core dumped", "Fatal Python error")
STOPPED_RE = re.compile(r"kinemask-graph: stopped \((\{.*\})\)")
STARTED_RE = re.compile(r"(\w+) \(pid (\d+)\)")


def node_pids(log_path: Path) -> dict[str, int]:
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("kinemask-graph: started"):
            return {n: int(p) for n, p in STARTED_RE.findall(line)}
    return {}


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def watch_exits(pids: dict[str, int], t_sig: float, out: dict, stop: threading.Event) -> None:
    """Seconds from the SIGINT until each node process is gone (zombie or reaped), polled every 20 ms."""
    while not stop.is_set() and len(out) < len(pids):
        for n, pid in pids.items():
            if n not in out and _gone(pid):
                out[n] = round(time.monotonic() - t_sig, 3)
        time.sleep(0.02)


class RequestClient:
    """rclpy client (own context) that keeps imagine_outcomes requests in flight, ~5 per second."""

    def __init__(self, domain_id: int):
        import rclpy
        from geometry_msgs.msg import PointStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        from kinemask_ros.ros.common import LATCHED_QOS, SENSOR_QOS
        from kinemask_ros_interfaces.srv import ImagineOutcomes

        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = rclpy.create_node("shutdown_stress_client", context=self.ctx)
        self.image = None
        self.goal = None
        self.node.create_subscription(Image, "camera/image_raw", lambda m: setattr(self, "image", m), SENSOR_QOS)
        self.node.create_subscription(PointStamped, "goal", lambda m: setattr(self, "goal", m), LATCHED_QOS)
        self.cli = self.node.create_client(ImagineOutcomes, "imagine_outcomes", qos_profile=QoSProfile(depth=100))
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.sent = 0
        self.answered = 0
        self._stop = threading.Event()
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._send = threading.Thread(target=self._send_loop, daemon=True)
        self._spin.start()
        self._send.start()

    def _spin_loop(self):
        while not self._stop.is_set() and self.ctx.ok():
            try:
                self.ex.spin_once(timeout_sec=0.05)
            except Exception:
                break

    def _send_loop(self):
        from geometry_msgs.msg import Point

        from kinemask_ros_interfaces.msg import PushStroke
        from kinemask_ros_interfaces.srv import ImagineOutcomes

        while not self._stop.wait(0.2):
            if self.image is None or self.goal is None or not self.cli.service_is_ready():
                continue
            req = ImagineOutcomes.Request(image=self.image, candidates=[PushStroke(x=0.0, y=0.0, theta=0.0, length=0.1, speed=0.3)] * 2,
                                          num_samples=1, goal=Point(x=self.goal.point.x, y=self.goal.point.y))
            fut = self.cli.call_async(req)
            fut.add_done_callback(lambda f: setattr(self, "answered", self.answered + 1))
            self.sent += 1

    def close(self):
        self._stop.set()
        self._send.join(timeout=5)
        self._spin.join(timeout=5)
        self.ex.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)


def one_run(i: int, args, rng: random.Random, keep_dir: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"kinemask-stress-{i:03d}-"))
    domain = 110 + (i % 90)
    env = ros_env(tmp / "ros_log", domain)
    env.pop("OMP_NUM_THREADS", None)  # as users run it
    log_path = tmp / "graph.log"
    cmd = [sys.executable, "-m", "kinemask_ros.ros.graph"] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    for s in args.set:
        cmd += ["--set", s]
    delay = rng.uniform(args.min_s, args.max_s)
    with_client = args.client_every > 0 and i % args.client_every == args.client_every - 1
    rec = {"run": i, "domain": domain, "delay_s": round(delay, 3), "client": with_client}
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = None
        if with_client:
            try:
                client = RequestClient(domain)
            except Exception as e:  # pragma: no cover
                rec["client_error"] = repr(e)
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        early = proc.poll()
        pids = node_pids(log_path)
        exits: dict[str, float] = {}
        t_sig = time.monotonic()
        if early is None:
            proc.send_signal(signal.SIGINT)
        stop_watch = threading.Event()
        watcher = threading.Thread(target=watch_exits, args=(pids, t_sig, exits, stop_watch), daemon=True)
        watcher.start()
        try:
            rc = proc.wait(timeout=args.exit_timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in pids.values():  # nodes run in their own process groups
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait()
        rec["shutdown_s"] = round(time.monotonic() - t_sig, 3)
        stop_watch.set()
        watcher.join(timeout=2)
        rec["node_exit_s"] = dict(exits)
        if client is not None:
            rec["client_sent"], rec["client_answered"] = client.sent, client.answered
            client.close()
    text = log_path.read_text(errors="replace")
    rec["graph_rc"] = rc
    rec["exited_before_sigint"] = early is not None
    m = list(STOPPED_RE.finditer(text))
    try:
        codes = ast.literal_eval(m[-1].group(1)) if m else None
    except (ValueError, SyntaxError):
        codes = None
    rec["node_rc"] = codes
    rec["bad_patterns"] = [p for p in BAD_PATTERNS if p in text]
    problems = []
    if early is not None:
        problems.append(f"kinemask-graph exited by itself ({early}) before the SIGINT")
    if rc is None:
        problems.append(f"kinemask-graph did not exit within {args.exit_timeout_s:.0f} s (killed)")
    elif rc != 0:
        problems.append(f"kinemask-graph exit code {rc}")
    if codes is None:
        problems.append("no 'kinemask-graph: stopped (...)' line")
    else:
        bad = {n: c for n, c in codes.items() if c != 0}
        if bad:
            problems.append(f"node exit codes {bad}")
        missing = [n for n in NODES if n not in codes]
        if not codes and "before any node was started" in text:
            missing = []  # the SIGINT reached kinemask-graph before it had started any node: a clean stop
            rec["stopped_before_start"] = True
        if missing:
            problems.append(f"nodes missing from the stopped line: {missing}")
    if rec["bad_patterns"]:
        problems.append(f"log contains {rec['bad_patterns']}")
    rec["ok"] = not problems
    rec["problems"] = problems
    rec["loaded"] = "loaded world model" in text  # the world model had finished loading before the SIGINT
    rec["decided"] = "goal (" in text
    if problems:
        dst = keep_dir / f"run_{i:03d}"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, dst / "graph.log")
        if (tmp / "ros_log").exists():
            shutil.copytree(tmp / "ros_log", dst / "ros_log", dirs_exist_ok=True)
        (dst / "run.json").write_text(json.dumps(rec, indent=1))
        rec["kept"] = str(dst)
    shutil.rmtree(tmp, ignore_errors=True)
    return rec


def summarize(runs: list[dict], args, wall_s: float) -> dict:
    sd = np.array([r["shutdown_s"] for r in runs if r["graph_rc"] is not None], float)
    hist: dict[str, Counter] = {n: Counter() for n in NODES}
    for r in runs:
        for n in NODES:
            c = (r["node_rc"] or {}).get(n, "missing")
            hist[n][str(c)] += 1
    fails = [r for r in runs if not r["ok"]]
    crashes = [r for r in runs if r["bad_patterns"] or any(isinstance(c, int) and c < 0 and c not in (-2, -15, -9)
                                                        for c in (r["node_rc"] or {}).values())]
    from benchmarks_common import machine

    return {
        "benchmark": "ros_shutdown_stress",
        "what": "kinemask-graph (sim mode) started and SIGINTed at a random moment; every node must exit 0 with no traceback",
        "machine": machine(),
        "checkpoint": args.checkpoint or "embedded",
        "graph_set": args.set,
        "sigint_after_s": [args.min_s, args.max_s],
        "client_every": args.client_every,
        "runs": len(runs),
        "passed": len(runs) - len(fails),
        "failed": len(fails),
        "crashes": len(crashes),
        "graph_exit_codes": dict(Counter(str(r["graph_rc"]) for r in runs)),
        "node_exit_codes": {n: dict(h) for n, h in hist.items()},
        "shutdown_s": {"median": float(np.median(sd)) if len(sd) else None, "p95": float(np.percentile(sd, 95)) if len(sd) else None,
                       "max": float(sd.max()) if len(sd) else None},
        "node_exit_s": {n: {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)), "max": float(np.max(v))}
                        for n in NODES if (v := [r["node_exit_s"][n] for r in runs if n in r.get("node_exit_s", {})])},
        "failed_by_phase": {"sigint_before_model_loaded": sum((not r["ok"]) and not r["loaded"] for r in runs),
                            "sigint_after_model_loaded": sum((not r["ok"]) and r["loaded"] for r in runs)},
        "sigint_before_model_loaded": sum(not r["loaded"] for r in runs),
        "sigint_with_client": sum(r["client"] for r in runs),
        "failures": [{k: r.get(k) for k in ("run", "delay_s", "client", "graph_rc", "node_rc", "problems", "kept")} for r in fails],
        "wall_s": round(wall_s, 1),
        "per_run": runs,
    }


def markdown(s: dict) -> str:
    sh = s["shutdown_s"]
    lines = [
        "# ROS 2 shutdown stress: Ctrl-C of `kinemask-graph` at a random moment",
        "",
        f"Machine: {s['machine']}. Checkpoint `{s['checkpoint']}`, sim mode, launch parameters{' + ' + ', '.join(s['graph_set']) if s['graph_set'] else ''}.",
        f"{s['runs']} runs; SIGINT {s['sigint_after_s'][0]:g}-{s['sigint_after_s'][1]:g} s after start (uniform); "
        f"{s['sigint_before_model_loaded']} before the world-model node had loaded its model, {s['sigint_with_client']} with "
        f"imagine_outcomes requests in flight. Wall time {s['wall_s'] / 60:.1f} min.",
        "",
        f"**{s['passed']}/{s['runs']} passed**, {s['failed']} failed, {s['crashes']} crashes (traceback / segfault / signal death).",
        "",
        f"Shutdown time (SIGINT -> kinemask-graph exited): median {sh['median']:.2f} s, p95 {sh['p95']:.2f} s, max {sh['max']:.2f} s."
        if sh["median"] is not None else "",
        "",
        f"Failed runs by phase: {s['failed_by_phase']['sigint_before_model_loaded']} with the SIGINT before the world model had loaded, "
        f"{s['failed_by_phase']['sigint_after_model_loaded']} after.",
        "",
        "| node | exit codes (count) | exit after SIGINT: median / p95 / max [s] |",
        "|---|---|---|",
    ]
    for n, h in s["node_exit_codes"].items():
        e = s["node_exit_s"].get(n)
        et = f"{e['median']:.2f} / {e['p95']:.2f} / {e['max']:.2f}" if e else ""
        lines.append(f"| {n} | {', '.join(f'{c}: {k}' for c, k in sorted(h.items()))} | {et} |")
    lines.append(f"| kinemask-graph | {', '.join(f'{c}: {k}' for c, k in sorted(s['graph_exit_codes'].items()))} | "
                 f"{sh['median']:.2f} / {sh['p95']:.2f} / {sh['max']:.2f} |")
    if s["failures"]:
        lines += ["", "## Failures", "", "| run | SIGINT after [s] | client | problems | log |", "|---|---|---|---|---|"]
        for f in s["failures"]:
            lines.append(f"| {f['run']} | {f['delay_s']:.2f} | {f['client']} | {'; '.join(f['problems'])} | {f.get('kept') or ''} |")
    lines += ["", "Reproduce: `python benchmarks/ros_shutdown_stress.py --runs 100`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--min-s", type=float, default=1.0, help="earliest SIGINT after start [s]")
    p.add_argument("--max-s", type=float, default=12.0, help="latest SIGINT after start [s]")
    p.add_argument("--client-every", type=int, default=3, help="every Nth run keeps imagine_outcomes requests in flight (0 = never)")
    p.add_argument("--exit-timeout-s", type=float, default=60.0, help="kinemask-graph must exit within this after the SIGINT")
    p.add_argument("--checkpoint", default="", help="world model ('' = embedded)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="extra graph parameter (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep-dir", default=str(REPO / "benchmarks" / "results" / "ros_shutdown_stress_failures"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ros_shutdown_stress"))
    a = p.parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rng = random.Random(a.seed)
    keep = Path(a.keep_dir)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    runs: list[dict] = []
    t0 = time.monotonic()
    it = range(a.runs)
    bar = tqdm(it, desc="shutdown stress", unit="run", dynamic_ncols=True, file=sys.stdout) if tqdm else it
    for i in bar:
        r = one_run(i, a, rng, keep)
        runs.append(r)
        nfail = sum(not x["ok"] for x in runs)
        line = (f"run {i:3d}: SIGINT at {r['delay_s']:5.2f} s{' +client' if r['client'] else '':8s} -> graph rc {r['graph_rc']}, "
                f"nodes {r['node_rc']}, shutdown {r['shutdown_s']:.2f} s {'OK' if r['ok'] else 'FAIL: ' + '; '.join(r['problems'])}")
        if tqdm:
            bar.set_postfix(failed=nfail)
            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)
        sys.stdout.flush()
    s = summarize(runs, a, time.monotonic() - t0)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(s, indent=1))
    md = markdown(s)
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0 if s["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
