"""``kinemask-graph``: bring up the kinemask node graph from a pip environment (no ``ros2 launch``).

The pip wheels of ROS 2 have no ``launch``/``launch_ros``; this starts the same nodes with the
same parameters as ``launch/kinemask_sim.launch.py`` (``--mode sim``, default) and
``launch/kinemask_camera.launch.py`` (``--mode camera``) as subprocesses, writes their
parameters to a ROS parameter file, forwards Ctrl-C / SIGTERM and stops all nodes when one dies.

    kinemask-graph                                   # simulator + segmentation + world model + planner
    kinemask-graph --mode camera --camera-topic /camera/color/image_raw
    kinemask-graph --checkpoint runs/wm --set planner.num_candidates=32 --set sim_bridge.rate_hz=15
    kinemask-graph --close-loop        # the simulator executes the planner's best push, plans once per goal
    kinemask-graph --respawn           # restart a node that dies (as launch_ros' respawn=True) instead of stopping

The parameter tables below are kept equal to the launch files by ``tests/test_ros_launch.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------- graph definition
SIM_BRIDGE_PARAMS = {"rate_hz": 30.0, "image_width": 32, "image_height": 32, "seed": 0, "reset_on_done": True}
SEGMENTATION_PARAMS = {"rate_hz": 30.0}
WORLD_MODEL_PARAMS = {"autostart": True, "max_batch": 256, "num_samples": 2, "num_inference_steps": 8}
PLANNER_PARAMS = {"method": "cem", "num_candidates": 64, "iterations": 3, "num_samples": 2, "replan": "every_frame", "rollout_top_k": 3}
CAMERA_SEGMENTATION_PARAMS = {"rate_hz": 15.0, "target_label": "red"}
CAMERA_PLANNER_PARAMS = {"method": "cem", "num_candidates": 64, "iterations": 3, "num_samples": 2, "replan": "on_goal", "rollout_top_k": 3,
                         "camera_fov_deg": 15.19, "camera_eye": [0.0, 0.0, 1.5], "camera_target": [0.0, 0.0, 0.0], "camera_up": [0.0, 1.0, 0.0]}


@dataclass(frozen=True)
class NodeSpec:
    executable: str
    name: str
    module: str
    params: dict
    remap_camera: bool = False  # subscribes the camera topic (remapped by --camera-topic)
    takes_model: bool = False  # gets --checkpoint / --device


_SIM = NodeSpec("kinemask-sim-bridge-node", "sim_bridge", "kinemask_ros.sim_bridge.bridge_node", SIM_BRIDGE_PARAMS)
GRAPHS: dict[str, list[NodeSpec]] = {
    "sim": [
        _SIM,
        NodeSpec("kinemask-segmentation-node", "segmentation", "kinemask_ros.ros.segmentation_node", SEGMENTATION_PARAMS, True),
        NodeSpec("kinemask-world-model-node", "world_model", "kinemask_ros.ros.world_model_node", WORLD_MODEL_PARAMS, False, True),
        NodeSpec("kinemask-planner-node", "planner", "kinemask_ros.ros.planner_node", PLANNER_PARAMS, True, True),
    ],
    "camera": [
        NodeSpec("kinemask-segmentation-node", "segmentation", "kinemask_ros.ros.segmentation_node", CAMERA_SEGMENTATION_PARAMS, True),
        NodeSpec("kinemask-world-model-node", "world_model", "kinemask_ros.ros.world_model_node", WORLD_MODEL_PARAMS, False, True),
        NodeSpec("kinemask-planner-node", "planner", "kinemask_ros.ros.planner_node", CAMERA_PLANNER_PARAMS, True, True),
    ],
}


def graph_parameters(mode: str, checkpoint: str = "", device: str = "cpu", overrides: dict[str, dict] | None = None) -> dict[str, dict]:
    """Node name -> parameters of a graph (launch-file values, then --checkpoint/--device, then overrides)."""
    if mode not in GRAPHS:
        raise ValueError(f"unknown graph mode {mode!r}; known: {sorted(GRAPHS)}")
    out = {}
    for spec in GRAPHS[mode]:
        p = copy.deepcopy(spec.params)
        if spec.takes_model:
            p.update({"checkpoint": checkpoint, "device": device})
        out[spec.name] = p
    for node, params in (overrides or {}).items():
        if node not in out:
            raise ValueError(f"--set names node {node!r}, which is not in the {mode} graph ({sorted(out)})")
        out[node].update(params)
    return out


def validate_parameters(mode: str, params: dict[str, dict]) -> None:
    """Check every value against the node's config dataclass (``ValueError`` with the reason)."""
    from kinemask_ros.ros.config import NODE_CONFIGS, config_replace

    for spec in GRAPHS[mode]:
        cls = NODE_CONFIGS[spec.executable]
        try:
            config_replace(cls(), params[spec.name])
        except ValueError as e:
            raise ValueError(f"{spec.name}: {e}") from None


def parse_set(items: list[str]) -> dict[str, dict]:
    """``["planner.num_candidates=32", ...]`` -> ``{"planner": {"num_candidates": 32}}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, dict] = {}
    for it in items:
        key, sep, val = it.partition("=")
        node, dot, name = key.partition(".")
        if not sep or not dot or not node or not name:
            raise ValueError(f"--set expects NODE.PARAM=VALUE, got {it!r}")
        out.setdefault(node, {})[name] = yaml.safe_load(val) if val != "" else ""
    return out


def node_command(spec: NodeSpec) -> list[str]:
    exe = shutil.which(spec.executable)
    return [exe] if exe else [sys.executable, "-m", "kinemask_ros.ros.entry", spec.executable]


class Graph:
    """The node processes of one graph. ``start()``, then ``stop()`` (also a context manager)."""

    def __init__(self, mode: str = "sim", checkpoint: str = "", device: str = "cpu", overrides: dict[str, dict] | None = None,
                 camera_topic: str = "", namespace: str = "", env: dict | None = None, stdout=None, stderr=None,
                 workdir: str | Path | None = None, close_loop: bool = False):
        self.mode = mode
        if close_loop:
            if mode != "sim":
                raise ValueError("--close-loop needs the simulator (--mode sim)")
            overrides = copy.deepcopy(overrides or {})
            overrides.setdefault("planner", {}).setdefault("replan", "on_goal")
        self.close_loop = close_loop
        self.params = graph_parameters(mode, checkpoint, device, overrides)
        validate_parameters(mode, self.params)
        self.camera_topic = camera_topic
        self.namespace = namespace
        self.env = dict(os.environ if env is None else env)
        self.stdout, self.stderr = stdout, stderr
        self._tmp = None
        self.workdir = Path(workdir) if workdir else None
        self.procs: dict[str, subprocess.Popen] = {}
        self._cmds: dict[str, list[str]] = {}
        self.restarts: dict[str, int] = {}

    def write_params(self) -> Path:
        """The ROS parameter file (JSON is valid YAML for rcl's parser)."""
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kinemask-graph-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / f"kinemask_{self.mode}_params.yaml"
        doc = {name: {"ros__parameters": p} for name, p in self.params.items()}
        path.write_text(json.dumps(doc, indent=1))
        return path

    def commands(self) -> dict[str, list[str]]:
        pfile = self.write_params()
        out = {}
        for spec in GRAPHS[self.mode]:
            cmd = node_command(spec) + ["--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(pfile)]
            if self.namespace:
                cmd += ["-r", f"__ns:={self.namespace}"]
            if spec.remap_camera and self.camera_topic:
                cmd += ["-r", f"camera/image_raw:={self.camera_topic}"]
            if self.close_loop and spec.name == "sim_bridge":
                cmd += ["-r", "sim/execute_push:=planner/best_push"]
            out[spec.name] = cmd
        return out

    def start(self) -> "Graph":
        self._cmds = self.commands()
        for name in self._cmds:
            self.start_node(name)
        return self

    def start_node(self, name: str) -> subprocess.Popen:
        """(Re)start one node process with its command from :meth:`start`."""
        # Own process group: a terminal's Ctrl-C reaches only kinemask-graph, which forwards one
        # SIGINT. KINEMASK_PARENT_PID makes a node stop by itself if kinemask-graph dies.
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
        env = dict(self.env, KINEMASK_PARENT_PID=str(os.getpid()))
        self.procs[name] = subprocess.Popen(self._cmds[name], env=env, stdout=self.stdout, stderr=self.stderr, **group)
        return self.procs[name]

    def respawn_dead(self) -> dict[str, int]:
        """Restart every node that has exited; returns ``{name: exit code}`` of those restarted."""
        dead = {n: rc for n, rc in self.poll().items() if rc is not None}
        for name in dead:
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.start_node(name)
        return dead

    def poll(self) -> dict[str, int | None]:
        return {n: p.poll() for n, p in self.procs.items()}

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items()}

    def stop(self, timeout_s: float = 30.0) -> dict[str, int | None]:
        """SIGINT every node, then SIGTERM / SIGKILL whatever is still running."""
        for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for p in alive:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            for p in alive:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return self.poll()

    def __enter__(self) -> "Graph":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kinemask-graph", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mode", choices=sorted(GRAPHS), default="sim", help="sim: with the PyBullet simulator bridge; camera: for a real camera")
    p.add_argument("--checkpoint", default="", help="world-model checkpoint directory ('' = the embedded one)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--camera-topic", default="", help="remap the nodes' camera/image_raw to this topic")
    p.add_argument("--namespace", default="", help="ROS namespace for every node")
    p.add_argument("--close-loop", action="store_true",
                   help="sim: execute the planner's best push in the simulator (sim/execute_push:=planner/best_push, planner.replan=on_goal)")
    p.add_argument("--respawn", action="store_true", help="restart a node that exits (default: stop the whole graph)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override a parameter (repeatable)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--print", action="store_true", help="print the node commands and parameters, start nothing")
    a = p.parse_args(argv)
    stop = {"sig": None}

    def handler(signum, frame):
        stop["sig"] = signum

    signal.signal(signal.SIGINT, handler)  # before anything slow: a Ctrl-C while starting is a clean stop
    signal.signal(signal.SIGTERM, handler)
    try:
        g = Graph(a.mode, a.checkpoint, a.device, parse_set(a.set), a.camera_topic, a.namespace, close_loop=a.close_loop)
    except ValueError as e:
        print(f"kinemask-graph: {e}", file=sys.stderr)
        return 2
    if a.print:
        for name, cmd in g.commands().items():
            print(" ".join(cmd))
        print(json.dumps(g.params, indent=1))
        g.stop()
        return 0
    if stop["sig"] is not None:
        print("kinemask-graph: stopped ({}) before any node was started", flush=True)
        return 0
    g.start()
    print(f"kinemask-graph: started {', '.join(f'{n} (pid {pid})' for n, pid in g.pids().items())}; Ctrl-C stops", flush=True)
    t0 = time.monotonic()
    code = 0
    try:
        while stop["sig"] is None:
            if a.respawn:
                for n, rc in g.respawn_dead().items():
                    print(f"kinemask-graph: {n} exited with {rc}; restarted it (restart {g.restarts[n]})", file=sys.stderr, flush=True)
            dead = {n: rc for n, rc in g.poll().items() if rc is not None}
            if dead:
                print(f"kinemask-graph: node(s) exited: {dead}; stopping the graph", file=sys.stderr, flush=True)
                code = 1
                break
            if a.duration and time.monotonic() - t0 >= a.duration:
                break
            time.sleep(0.2)
    finally:
        rcs = g.stop()
    print(f"kinemask-graph: stopped ({rcs})", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
