"""Named scene set-ups for ``KineMaskPush-v0`` used by the demo and the benchmarks."""

from __future__ import annotations

import numpy as np


def blocked_scene_options(env, seed: int, goal_distance: float = 0.13) -> dict | None:
    """Reset options for ``env.reset(seed=seed, options=...)`` that rebuild the seed's scene with
    another object in the middle of the target's straight path to a goal ``goal_distance`` away.

    Returns None when the scene has a single object or no placement fits the table.
    """
    env.reset(seed=seed)
    u = env.unwrapped
    st = u.get_state()
    poses = np.asarray(st["poses"], float)
    if len(poses) < 2:
        return None
    rng = np.random.default_rng(seed)
    t = u.target - 1
    j = (t + 1) % len(poses)
    lim = u.config.scene.placement_half_extent
    for _ in range(50):
        th = rng.uniform(-np.pi, np.pi)
        d = np.array([np.cos(th), np.sin(th)])
        goal = poses[t, :2] + goal_distance * d
        mid = poses[t, :2] + 0.5 * goal_distance * d
        if np.any(np.abs(goal) > lim) or np.any(np.abs(mid) > lim):
            continue
        new = poses.copy()
        new[j, :2] = mid
        ok = all(np.linalg.norm(new[i, :2] - new[k, :2]) > u.objects[i].bounding_radius + u.objects[k].bounding_radius + 0.005
                 for i in range(len(new)) for k in range(i + 1, len(new)))
        ok = ok and all(np.linalg.norm(goal - new[i, :2]) > u.objects[i].bounding_radius + 0.01 for i in range(len(new)) if i != t)
        if ok:
            return {"objects": st["objects"], "poses": new.tolist(), "target": u.target, "goal": goal.tolist()}
    return None
