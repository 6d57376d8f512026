"""Shared rclpy helpers: QoS profiles, config-backed parameters, throttled warnings, ``main``."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import fields
from typing import Callable

import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from kinemask_ros.ros.config import config_replace, config_to_params

#: Camera-like streams (images, masks, detections): best effort, newest few only. A best-effort
#: subscriber also matches reliable publishers (most camera drivers).
SENSOR_QOS: QoSProfile = qos_profile_sensor_data
#: Commands and results (push strokes, scored candidates, rollouts): reliable, keep the last 10.
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
#: Service requests / responses and action goal / cancel / result: reliable, keep *all*. With keep-last
#: (rclpy's default depth 10) a burst dropped requests beyond the tenth, and a shared response writer
#: could overwrite one client's answer while another client was slow to acknowledge. Admission
#: control (:mod:`kinemask_ros.admission`) bounds what is queued above this.
REQUEST_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
#: State that late joiners need (the current goal / target label): reliable + transient local, depth 1.
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)

#: Minimum seconds between two warnings from the same place about malformed input.
WARN_THROTTLE_S = 2.0


class ConfigParameters:
    """Declares a node's parameters from its config dataclass and validates every change.

    All parameters use dynamic typing so that e.g. ``rate_hz:=30`` (an int) is accepted for a
    float field; the config's ``__post_init__`` is the single place that decides what is valid,
    and its ``ValueError`` becomes the ``reason`` of a rejected ``set_parameters`` call.
    ``read_only`` names are fixed after start-up (e.g. the planner's checkpoint).
    """

    def __init__(self, node, default_config, read_only: tuple[str, ...] = (), on_change: Callable | None = None):
        self.node = node
        self.on_change = on_change
        doc = "\n".join(c.__doc__ or "" for c in type(default_config).__mro__)
        for name, value in config_to_params(default_config).items():
            desc = ParameterDescriptor(description=_field_doc(doc, name), dynamic_typing=True, read_only=name in read_only)
            node.declare_parameter(name, value, desc)
        values = {f.name: node.get_parameter(f.name).value for f in fields(default_config)}
        self.config = config_replace(default_config, values)  # ValueError: bad start-up parameters
        node.add_on_set_parameters_callback(self._on_set)

    def _on_set(self, params) -> SetParametersResult:
        try:
            new = config_replace(self.config, {p.name: p.value for p in params})
        except (ValueError, TypeError) as e:
            return SetParametersResult(successful=False, reason=str(e))
        old, self.config = self.config, new
        if self.on_change is not None:
            try:
                self.on_change(old, new)
            except Exception as e:  # keep the node alive; report why
                self.config = old
                return SetParametersResult(successful=False, reason=f"could not apply: {e}")
        return SetParametersResult(successful=True)


def _field_doc(doc: str, name: str) -> str:
    """The line(s) of a config docstring that document ``name`` (best effort)."""
    for line in doc.splitlines():
        s = line.strip()
        if s.startswith(name + ":") or s.startswith(name + ",") or f" {name}:" in s or f", {name}," in s:
            return s
    return ""


class Throttle:
    """``ok(key)`` is True at most once per ``period_s`` per key (for rate-limited warnings with counts)."""

    def __init__(self, period_s: float = WARN_THROTTLE_S):
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def ok(self, key: str) -> bool:
        self.counts[key] = self.counts.get(key, 0) + 1
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.period_s:
            self._last[key] = now
            return True
        return False


def warn_throttled(node, throttle: Throttle, key: str, message: str) -> None:
    """Log ``message`` as a warning at most every ``throttle.period_s`` per kind of problem.

    The kind is ``key`` plus the message with its numbers blanked out, so a stream of truncated
    images logs once per period while a different problem (a bad encoding) is still reported.
    """
    k = key + "|" + re.sub(r"[-+]?\d[\d.e+-]*", "#", message)[:80]
    if throttle.ok(k):
        node.get_logger().warning(f"{message} [{throttle.counts[k]} so far]")


def torch_setup(threads: int) -> None:
    if threads > 0:
        import torch

        torch.set_num_threads(int(threads))


def _watch_parent(pid: int, period_s: float = 1.0) -> None:
    """SIGINT ourselves (rclpy's clean shutdown path) when the launching process ``pid`` is gone."""
    while True:
        time.sleep(period_s)
        if os.getppid() != pid:
            os.kill(os.getpid(), signal.SIGINT)
            return


def run(make_node: Callable[[], object], args=None, num_threads: int = 4) -> int:
    """``rclpy.init``, build the node, spin a :class:`MultiThreadedExecutor`, clean up; the console scripts' body.

    Shutdown is ours, not rclpy's: rclpy is initialised without its signal handlers
    (``SignalHandlerOptions.NO``) and SIGINT / SIGTERM only set an event that the main thread's
    ``spin_once(timeout)`` loop checks every 0.1 s. rclpy's own handler runs on a separate thread
    and triggers the executor's guard conditions, which raced ``executor.shutdown()`` /
    ``destroy_node()`` freeing them (a segfault in ~1 of 9 shutdowns). Teardown is then strictly
    ordered: the node's own threads (``close()``), the executor (waits for running callbacks), the
    node, the context.

    Signals are caught from the very start of a node process (:mod:`kinemask_ros.ros.entry`): a
    SIGINT while importing or loading the model makes the node exit 0 as soon as it can.

    The executor gets ``node.executor_threads`` threads when the node defines it (nodes with a
    request queue need one thread per queued request plus spares, see :mod:`kinemask_ros.admission`).
    Returns 2 (after printing the reason) when the node's parameters are invalid.
    """
    from rclpy.signals import SignalHandlerOptions

    from kinemask_ros.ros.entry import STOP as stop
    from kinemask_ros.ros.entry import install_signal_handlers

    install_signal_handlers()  # already done by the console scripts, before the heavy imports
    if stop.is_set():
        return 0  # stopped while importing: nothing was started
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    parent = os.environ.get("KINEMASK_PARENT_PID", "")
    if parent.isdigit():  # started by kinemask-graph: do not outlive it
        threading.Thread(target=_watch_parent, args=(int(parent),), daemon=True).start()
    node = None
    ex = None
    code = 0
    try:
        try:
            node = make_node()
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
        ex = MultiThreadedExecutor(num_threads=int(getattr(node, "executor_threads", num_threads)))
        ex.add_node(node)
        while not stop.is_set() and node.context.ok():
            ex.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # pragma: no cover - logged for the operator
        traceback.print_exc()
        code = 1
    finally:
        stage = _teardown_watchdog(lambda: code)
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    traceback.print_exc()
        stage[0] = "the executor's shutdown (a callback still running)"
        if ex is not None:
            ex.shutdown(timeout_sec=10.0)  # joins the pool: no callback runs past this line
        stage[0] = "destroy_node"
        if node is not None:
            node.destroy_node()
        stage[0] = "rclpy shutdown"
        rclpy.try_shutdown()
        stage[0] = "interpreter exit (joining threads)"
    return code


#: Longest a node's teardown may take after a stop request (close, executor, node, context and the
#: interpreter joining its threads); kinemask-graph waits 30 s before SIGTERM / SIGKILL.
TEARDOWN_LIMIT_S = 20.0


def _teardown_watchdog(code: Callable[[], int]) -> list[str]:
    """Start a daemon thread that ends the process with ``code()`` if it has not exited
    :data:`TEARDOWN_LIMIT_S` after teardown began, naming the stage that hung (a stuck worker thread
    would otherwise keep a stopped node alive until SIGKILL). Returns the mutable stage label."""
    stage = ["node.close()"]
    t0 = time.monotonic()

    def watch() -> None:
        time.sleep(TEARDOWN_LIMIT_S)
        busy = [t.name for t in threading.enumerate() if t is not threading.current_thread() and t is not threading.main_thread()
                and t.is_alive() and not t.daemon]
        print(f"teardown still in {stage[0]} {time.monotonic() - t0:.0f} s after the stop request "
              f"(threads still running: {', '.join(busy) or 'none'}); exiting without waiting for it", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code())

    threading.Thread(target=watch, name="teardown-watchdog", daemon=True).start()
    return stage
