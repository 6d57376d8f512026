"""Console-script entry points of the nodes: signal handling first, heavy imports after.

A node module imports torch, diffusers and rclpy (seconds on a loaded machine). A SIGINT in that
window used to raise ``KeyboardInterrupt`` inside some import and kill the node with -2 and a
traceback (seen in ``benchmarks/ros_shutdown_stress.py``). Here SIGINT / SIGTERM are caught
before anything heavy is imported: they only set :data:`STOP`, which
:func:`kinemask_ros.ros.common.run` then honours (a node stopped while starting exits 0 without
spinning). ``python -m kinemask_ros.ros.entry kinemask-planner-node --ros-args ...`` does the same
for environments without the console scripts on ``PATH``.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading

#: set by SIGINT / SIGTERM; shared with :func:`kinemask_ros.ros.common.run`
STOP = threading.Event()

NODES = {
    "kinemask-segmentation-node": "kinemask_ros.ros.segmentation_node",
    "kinemask-world-model-node": "kinemask_ros.ros.world_model_node",
    "kinemask-planner-node": "kinemask_ros.ros.planner_node",
    "kinemask-sim-bridge-node": "kinemask_ros.sim_bridge.bridge_node",
}


def _on_signal(signum, frame) -> None:
    STOP.set()


def install_signal_handlers() -> None:
    """SIGINT / SIGTERM set :data:`STOP` (main thread only; idempotent)."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _on_signal)


def limit_malloc_arenas(n: int = 2) -> None:
    """Cap glibc's malloc arenas (default: 8 per core) before the executor starts its threads: every
    thread that allocates would otherwise get an arena of its own, and the nodes' RSS grows in steps
    with the executor's thread count (seen in the soak benchmark). No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, int(n))  # M_ARENA_MAX
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def launch(module: str, args: list[str] | None = None) -> int:
    install_signal_handlers()
    limit_malloc_arenas()
    if STOP.is_set():
        return 0
    mod = importlib.import_module(module)
    return int(mod.main(args) or 0)


def segmentation_node() -> int:
    return launch(NODES["kinemask-segmentation-node"])


def world_model_node() -> int:
    return launch(NODES["kinemask-world-model-node"])


def planner_node() -> int:
    return launch(NODES["kinemask-planner-node"])


def sim_bridge_node() -> int:
    return launch(NODES["kinemask-sim-bridge-node"])


def recorder_node() -> int:
    """``kinemask-record``: :mod:`kinemask_ros.ros.recorder_node`."""
    return launch("kinemask_ros.ros.recorder_node")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in NODES:
        print(f"usage: python -m kinemask_ros.ros.entry {{{','.join(NODES)}}} [--ros-args ...]", file=sys.stderr)
        raise SystemExit(2)
    name = sys.argv.pop(1)
    raise SystemExit(launch(NODES[name], sys.argv))
