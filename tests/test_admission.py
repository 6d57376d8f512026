"""Admission control, time budgets and stroke bounds (pure logic, no rclpy)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from kinemask_ros.admission import Admission, Busy, Deadline
from kinemask_ros.policies.shooting import CEM, MPPI, CEMConfig, MPPIConfig
from kinemask_ros.push import PushBounds, PushStroke


def _hold(adm: Admission, release: threading.Event, log: list, name: str, deadline: Deadline | None = None, internal=False):
    try:
        with adm.admit(deadline, internal=internal):
            log.append(("start", name))
            release.wait(10)
        log.append(("done", name))
    except Busy as e:
        log.append(("busy", name, str(e)))


def _wait(pred, timeout=5.0):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if pred():
            return True
        time.sleep(0.005)
    raise AssertionError("timed out")


def test_queue_is_bounded_fifo_and_refuses_at_once():
    adm = Admission(max_queue=2, what="request", param="max_queue")
    release = threading.Event()
    log: list = []
    threads = []
    for name in ("a", "b", "c"):  # a runs, b and c wait
        th = threading.Thread(target=_hold, args=(adm, release, log, name))
        th.start()
        threads.append(th)
        _wait(lambda n=name: adm.busy and (n == "a" or adm.queued == "abc".index(n)))
    assert adm.queued == 2
    t0 = time.monotonic()
    with pytest.raises(Busy, match=r"busy: 2 requests queued .*at most 2, parameter max_queue.*retry"):
        with adm.admit():
            pass
    assert time.monotonic() - t0 < 1.0  # refused at once, not after a wait (the holder runs until released)
    release.set()
    for th in threads:
        th.join(5)
    starts = [e[1] for e in log if e[0] == "start"]
    assert starts == ["a", "b", "c"]  # first come, first served
    assert adm.stats.admitted == 3 and adm.stats.rejected_full == 1 and adm.stats.completed == 3
    assert not adm.busy and adm.wait_idle(0.1)


def test_budget_running_out_in_the_queue_is_a_busy_answer():
    adm = Admission(max_queue=4)
    release = threading.Event()
    log: list = []
    th = threading.Thread(target=_hold, args=(adm, release, log, "long"))
    th.start()
    _wait(lambda: adm.busy)
    t0 = time.monotonic()
    with pytest.raises(Busy, match="time budget of 0.2 s ran out"):
        with adm.admit(Deadline(0.2)):
            pass
    assert 0.15 < time.monotonic() - t0 < 3.0  # after its 0.2 s budget, not when the holder is released
    assert adm.queued == 0 and adm.stats.rejected_budget == 1
    release.set()
    th.join(5)


def test_internal_work_waits_without_taking_a_queue_place():
    adm = Admission(max_queue=1)
    release = threading.Event()
    log: list = []
    ths = [threading.Thread(target=_hold, args=(adm, release, log, "run")),
           threading.Thread(target=_hold, args=(adm, release, log, "internal", None, True))]
    for th in ths:
        th.start()
        _wait(lambda: adm.busy)
    _wait(lambda: len(adm._queue) == 1)
    assert adm.queued == 0  # the internal waiter is not counted against max_queue
    th = threading.Thread(target=_hold, args=(adm, release, log, "client"))
    th.start()
    _wait(lambda: adm.queued == 1)
    with pytest.raises(Busy):
        with adm.admit():
            pass
    release.set()
    for t in ths + [th]:
        t.join(5)
    assert [e[1] for e in log if e[0] == "start"] == ["run", "internal", "client"]


def test_max_queue_zero_refuses_whenever_busy_and_validates():
    adm = Admission(max_queue=0)
    with adm.admit():
        with pytest.raises(Busy):
            with adm.admit():
                pass
    with adm.admit():  # idle again: admitted
        pass
    with pytest.raises(ValueError, match="max_queue"):
        Admission(max_queue=-1)


def test_deadline():
    d = Deadline(0.05)
    assert not d.expired and d.remaining() > 0
    time.sleep(0.06)
    assert d.expired and d.elapsed() >= 0.05
    assert not Deadline().expired and math.isinf(Deadline().remaining())


@pytest.mark.parametrize("planner", [CEM(CEMConfig(num_samples=8, iterations=50, num_elites=4)), MPPI(MPPIConfig(num_samples=8, iterations=50))])
def test_planners_stop_early_and_return_the_ranking_so_far(planner):
    calls = []

    def cost(p):
        calls.append(len(p))
        return np.sum(p**2, 1)

    res = planner.plan(cost, 4, np.random.default_rng(0), stop=lambda: len(calls) >= 3)
    assert res.iterations == 3 and len(res.costs) == 24 and len(calls) == 3
    assert np.all(np.diff(res.costs) >= 0) and res.best is not None
    full = planner.plan(cost, 4, np.random.default_rng(0))
    assert full.iterations == 50


def test_push_bounds_violation_names_field_limit_and_parameter():
    b = PushBounds()
    ok = PushStroke(0.0, 0.0, 0.3, 0.05, 0.3)
    assert b.violation(ok) == ""
    params = {"length_range": "stroke_length_range", "x_range": "stroke_x_range", "speed_range": "stroke_speed_range"}
    why = b.violation(PushStroke(0.0, 0.0, 0.0, 1e4, 0.3), params)
    assert "length=10000 m is outside [0.03, 0.12] m" in why and "stroke_length_range" in why
    assert "stroke_x_range" in b.violation(PushStroke(1e9, 0.0, 0.0, 0.05, 0.3), params)
    assert "speed=1e+06 m/s" in b.violation(PushStroke(0.0, 0.0, 0.0, 0.05, 1e6), params)
    assert "theta=1e+30 rad" in b.violation(PushStroke(0.0, 0.0, 1e30, 0.05, 0.3))
    assert "outside the workspace" in b.violation(PushStroke(0.17, 0.0, 0.0, 0.1, 0.3), workspace=0.2)


def test_push_bounds_accept_a_boundary_stroke_after_a_float32_round_trip():
    """The planner clips strokes onto the box edges; a ROS message (float32) rounds them a step outside."""
    b = PushBounds()
    corners = [PushStroke(x, y, 0.0, n, s) for x in b.x_range for y in b.y_range for n in b.length_range for s in b.speed_range]
    for st in corners:
        rt = PushStroke(*(float(np.float32(v)) for v in (st.x, st.y, st.theta, st.length, st.speed)))
        assert b.violation(rt) == "", (st, b.violation(rt))
    # but a real step outside is still refused
    assert "length=0.0299" in b.violation(PushStroke(0.0, 0.0, 0.0, 0.0299, 0.3))
    assert "x=0.1801" in b.violation(PushStroke(0.1801, 0.0, 0.0, 0.05, 0.3))
