"""Admission control and time budgets for request/response work (pure logic, no rclpy).

The world-model service and the planner's action run one request at a time (the model is not
re-entrant and two requests would only share the same two CPU cores). :class:`Admission` makes
the queue in front of it explicit and bounded:

* one request runs; at most ``max_queue`` wait behind it, first come first served;
* a request arriving when ``max_queue`` are already waiting is refused at once with
  :class:`Busy` (``"busy: 8 requests queued ... retry"``): the client gets a definite answer in
  milliseconds instead of waiting on a queue it cannot see;
* a waiting request whose time budget runs out before it could start is refused the same way;
* internal work (the planner's topic-driven replanning and rollout rendering) waits without a
  place in the bounded queue (``internal=True``), so it never makes a client's request busy.

:class:`Deadline` is the per-request time budget handed to the work itself: the planner stops
iterating and returns its best ranking so far, the world-model service stops scoring batches and
returns the candidates scored so far (the others are marked invalid with the reason).

    adm = Admission(max_queue=8, param="max_queue")
    deadline = Deadline(budget_s=5.0)
    with adm.admit(deadline):          # Busy when full, or when the budget runs out in the queue
        work(deadline)                 # checks deadline.expired between iterations / batches
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator


class Busy(RuntimeError):
    """A request refused by admission control (queue full, or its budget ran out while queued)."""


@dataclass
class Deadline:
    """A request's time budget, counted from its arrival (``start``, ``time.monotonic()`` seconds)."""

    budget_s: float = math.inf
    start: float = field(default_factory=time.monotonic)

    @property
    def at(self) -> float:
        return self.start + self.budget_s

    def remaining(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.start


@dataclass
class AdmissionStats:
    """Counters since start-up (reported in logs and by the soak benchmark)."""

    admitted: int = 0
    rejected_full: int = 0
    rejected_budget: int = 0
    completed: int = 0


class Admission:
    """One running request, at most ``max_queue`` waiting (FIFO), the rest refused at once.

    Args:
        max_queue: requests that may wait behind the running one (0 = refuse whenever busy).
        what: noun used in messages ("imagine_outcomes request", "plan_push goal").
        param: the parameter that sets ``max_queue`` (named in the refusal so users can raise it).
    """

    def __init__(self, max_queue: int, what: str = "request", param: str = "max_queue"):
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue must be an int >= 0, got {max_queue!r}")
        self.max_queue = max_queue
        self.what, self.param = what, param
        self._cv = threading.Condition()
        self._running = False
        self._queue: deque[object] = deque()  # tickets of waiting requests, oldest first
        self._internal = 0
        self.stats = AdmissionStats()

    # ------------------------------------------------------------------ state
    @property
    def queued(self) -> int:
        """Client requests waiting now (internal work not counted)."""
        with self._cv:
            return len(self._queue) - self._internal

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running or bool(self._queue)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until nothing runs and nothing waits (True) or ``timeout_s`` passes (False)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._running and not self._queue, timeout=timeout_s)

    # ------------------------------------------------------------------ admission
    @contextmanager
    def admit(self, deadline: Deadline | None = None, internal: bool = False) -> Iterator[None]:
        """Run the ``with`` body as the single running request, after those queued before it.

        Raises :class:`Busy` at once when ``max_queue`` client requests already wait, or when
        ``deadline`` expires before this request's turn comes (it is then removed from the queue).
        """
        deadline = deadline or Deadline()
        ticket = object()
        with self._cv:
            waiting = len(self._queue) - self._internal
            if not internal and (self._running or self._queue) and waiting >= self.max_queue:
                self.stats.rejected_full += 1
                raise Busy(f"busy: {waiting} {self.what}s queued behind the running one (at most {self.max_queue}, "
                           f"parameter {self.param}); retry later")
            self._queue.append(ticket)
            self._internal += internal
            try:
                turn = self._cv.wait_for(lambda: not self._running and self._queue[0] is ticket,
                                         timeout=None if math.isinf(deadline.remaining()) else max(0.0, deadline.remaining()))
            finally:
                self._queue.remove(ticket)
                self._internal -= internal
                self._cv.notify_all()
            if not turn:
                self.stats.rejected_budget += 1
                raise Busy(f"busy: waited {deadline.elapsed():.2f} s in the queue and the time budget of {deadline.budget_s:g} s "
                           f"ran out before this {self.what} could start; retry later")
            self._running = True
            self.stats.admitted += 1
        try:
            yield
        finally:
            with self._cv:
                self._running = False
                self.stats.completed += 1
                self._cv.notify_all()
