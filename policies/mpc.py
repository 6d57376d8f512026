"""Model-predictive control: plan, execute the best push, observe, replan.

The controller owns warm-starting (the previous decision's best object-centric parameters seed the
next search) and wraps any :class:`~kinemask_ros.planning.PushPlanner`; the dynamics can be the
world model (default) or any callable, e.g. the simulator oracle.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from kinemask_ros.planning import DynamicsFn, PlanOutput, PushPlanner
from kinemask_ros.push import PushStroke


class MPCController:
    """Closed-loop push controller over ``KineMaskPush-v0`` style observations.

    Args:
        planner: the sub-planner (CEM / MPPI / random shooting inside).
        dynamics_factory: ``obs -> dynamics`` for a custom model (None = the planner's world model).
        warm_start: reuse the previous best parameters as the first candidate and search mean.
    """

    def __init__(self, planner: PushPlanner, dynamics_factory: Callable[[dict], DynamicsFn] | None = None,
                 warm_start: bool = True):
        self.planner = planner
        self.dynamics_factory = dynamics_factory
        self.warm_start = warm_start
        self._last: np.ndarray | None = None
        self.history: list[PlanOutput] = []

    def reset(self) -> None:
        self._last = None
        self.history.clear()

    def act(self, obs: dict) -> tuple[PushStroke | None, PlanOutput]:
        """Best stroke for the observation (None with the plan's message when nothing is valid)."""
        goal = self.planner.goal_from_table(obs["goal"])
        dyn = self.dynamics_factory(obs) if self.dynamics_factory is not None else None
        plan = self.planner.plan(obs["image"], obs["instance_mask"], int(obs["target"]), goal, dynamics=dyn,
                                 warm_start=self._last if self.warm_start else None)
        self.history.append(plan)
        if plan.valid:
            self._last = plan.params[plan.order[0]].copy()
        return plan.best_stroke, plan
