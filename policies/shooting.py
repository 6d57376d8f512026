"""Sampling-based planners over a box of parameters ``[-1, 1]^D``.

They take callables and know nothing of the model (style anchors: pytorch_mppi, mbrl-lib
trajectory_opt):

    cost_fn(params (N, D)) -> costs (N,)   # imagine + score; NaN/inf marks an invalid candidate
    stop() -> bool                          # optional: True ends CEM/MPPI before the next iteration
                                            # (a time budget); the ranking so far is returned

Every planner returns a :class:`PlanResult` with all evaluated candidates and their costs, best
first, so callers can show the ranking. Invalid (non-finite) costs never win: if every candidate is
invalid the result says so (``best is None``) instead of returning the best of garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

CostFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class PlanResult:
    """Evaluated candidates ``params (N, D)`` with ``costs (N,)``, sorted best first."""

    params: np.ndarray
    costs: np.ndarray
    iterations: int
    evaluations: int
    info: dict = field(default_factory=dict)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.costs)

    @property
    def best(self) -> np.ndarray | None:
        """Best parameters, or None when no candidate had a finite cost."""
        return self.params[0] if len(self.costs) and np.isfinite(self.costs[0]) else None


def _evaluate(cost_fn: CostFn, params: np.ndarray) -> np.ndarray:
    c = np.asarray(cost_fn(params), dtype=float).reshape(-1)
    if c.shape != (len(params),):
        raise ValueError(f"cost function returned {c.shape[0]} costs for {len(params)} candidates")
    return c


def _sorted(params: np.ndarray, costs: np.ndarray, iterations: int, info: dict | None = None) -> PlanResult:
    key = np.where(np.isfinite(costs), costs, np.inf)
    order = np.argsort(key, kind="stable")
    return PlanResult(params[order], costs[order], iterations, len(costs), info or {})


def _initial(init: np.ndarray | None, n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` first-iteration candidates: the given ``init`` rows, topped up with uniform samples."""
    p = np.asarray(init, float)[:n] if init is not None else np.empty((0, dim))
    if len(p) < n:
        p = np.concatenate([p, rng.uniform(-1, 1, (n - len(p), dim))])
    return p


def _check_int(name: str, v, lo: int = 1) -> None:
    if not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")


@dataclass(frozen=True)
class RandomShootingConfig:
    num_samples: int = 128

    def __post_init__(self) -> None:
        _check_int("RandomShootingConfig.num_samples", self.num_samples)


class RandomShooting:
    """Evaluate ``num_samples`` candidates (from ``init`` or uniform) and rank them."""

    def __init__(self, config: RandomShootingConfig | None = None):
        self.config = config or RandomShootingConfig()

    def plan(self, cost_fn: CostFn, dim: int, rng: np.random.Generator, init: np.ndarray | None = None,
             stop: Callable[[], bool] | None = None) -> PlanResult:
        params = _initial(init, self.config.num_samples, dim, rng)
        return _sorted(params, _evaluate(cost_fn, params), 1)


@dataclass(frozen=True)
class CEMConfig:
    """Cross-entropy method; defaults after Visual Foresight (~200 samples, 3 iterations, 10 elites)."""

    num_samples: int = 64
    iterations: int = 3
    num_elites: int = 10
    init_std: float = 0.5
    min_std: float = 0.05
    momentum: float = 0.1

    def __post_init__(self) -> None:
        _check_int("CEMConfig.num_samples", self.num_samples, 2)
        _check_int("CEMConfig.iterations", self.iterations)
        _check_int("CEMConfig.num_elites", self.num_elites)
        if self.num_elites > self.num_samples:
            raise ValueError(f"CEMConfig.num_elites ({self.num_elites}) must be <= num_samples ({self.num_samples})")
        for name in ("init_std", "min_std"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"CEMConfig.{name} must be > 0, got {v!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"CEMConfig.momentum must be in [0, 1), got {self.momentum!r}")


class CEM:
    """Iteratively refit a diagonal Gaussian to the elites. The first iteration uses ``init`` samples."""

    def __init__(self, config: CEMConfig | None = None):
        self.config = config or CEMConfig()

    def plan(self, cost_fn: CostFn, dim: int, rng: np.random.Generator, init: np.ndarray | None = None,
             mean: np.ndarray | None = None, stop: Callable[[], bool] | None = None) -> PlanResult:
        cfg = self.config
        all_p, all_c = [], []
        mu = np.zeros(dim) if mean is None else np.asarray(mean, float)
        std = np.full(dim, cfg.init_std)
        for it in range(cfg.iterations):
            if it and stop is not None and stop():
                break
            if it == 0 and init is not None:
                p = _initial(init, cfg.num_samples, dim, rng)
            else:
                p = np.clip(mu + std * rng.standard_normal((cfg.num_samples, dim)), -1, 1)
            c = _evaluate(cost_fn, p)
            all_p.append(p)
            all_c.append(c)
            ok = np.isfinite(c)
            if ok.sum() == 0:
                continue
            elite = p[ok][np.argsort(c[ok])[: cfg.num_elites]]
            mu = cfg.momentum * mu + (1 - cfg.momentum) * elite.mean(0)
            std = np.maximum(cfg.momentum * std + (1 - cfg.momentum) * elite.std(0), cfg.min_std)
        return _sorted(np.concatenate(all_p), np.concatenate(all_c), len(all_c), {"mean": mu, "std": std})


@dataclass(frozen=True)
class MPPIConfig:
    """Model-predictive path integral for a one-step action: exponentially weighted averaging."""

    num_samples: int = 64
    iterations: int = 3
    temperature: float = 0.05  # in cost units (metres for goal distance)
    noise_std: float = 0.4

    def __post_init__(self) -> None:
        _check_int("MPPIConfig.num_samples", self.num_samples, 2)
        _check_int("MPPIConfig.iterations", self.iterations)
        for name in ("temperature", "noise_std"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"MPPIConfig.{name} must be > 0, got {v!r}")


class MPPI:
    """Sample around the current mean, reweight by ``exp(-(c - c_min) / temperature)``, repeat.

    Each iteration after the first evaluates the current weighted mean with its samples, so the
    returned ranking contains the MPPI solution of every iteration but the last reweighting.
    """

    def __init__(self, config: MPPIConfig | None = None):
        self.config = config or MPPIConfig()

    def plan(self, cost_fn: CostFn, dim: int, rng: np.random.Generator, init: np.ndarray | None = None,
             mean: np.ndarray | None = None, stop: Callable[[], bool] | None = None) -> PlanResult:
        cfg = self.config
        all_p, all_c = [], []
        mu = np.zeros(dim) if mean is None else np.asarray(mean, float)
        for it in range(cfg.iterations):
            if it and stop is not None and stop():
                break
            if it == 0 and init is not None:
                p = _initial(init, cfg.num_samples, dim, rng)
            else:
                noise = np.clip(mu + cfg.noise_std * rng.standard_normal((cfg.num_samples - 1, dim)), -1, 1)
                p = np.concatenate([mu[None], noise])  # the current mean is always evaluated
            c = _evaluate(cost_fn, p)
            all_p.append(p)
            all_c.append(c)
            ok = np.isfinite(c)
            if not ok.any():
                continue
            w = np.exp(-(c[ok] - c[ok].min()) / cfg.temperature)
            w /= w.sum()
            mu = np.clip((w[:, None] * p[ok]).sum(0), -1, 1)
        return _sorted(np.concatenate(all_p), np.concatenate(all_c), len(all_c), {"mean": mu})
