"""Named scene set-ups for ``KineMaskPush-v0`` used by the demo and the benchmarks."""

from __future__ import annotations

import numpy as np


def blocked_scene_options(env, seed: int, goal_distance: float = 0.13, tries: int = 100) -> dict | None:
    """Reset options for ``env.reset(seed=seed, options=...)`` that rebuild the seed's scene with
    another object in the middle of the target's straight path to a goal ``goal_distance`` away
    (further for large objects, so the obstacle fits between target and goal).

    Objects that would overlap the moved obstacle, or sit on the goal, are taken off the table.
    Returns None when the scene has a single object or no placement fits the table.
    """
    env.reset(seed=seed)
    u = env.unwrapped
    st = u.get_state()
    poses = np.asarray(st["poses"], float)
    specs = u.objects
    if len(poses) < 2:
        return None
    rng = np.random.default_rng(seed)
    t = u.target - 1
    lim = u.config.scene.placement_half_extent
    goal_lim = u.config.scene.workspace_half_extent - 0.03
    r = [s.bounding_radius for s in specs]
    for _ in range(tries):
        th = rng.uniform(-np.pi, np.pi)
        d = np.array([np.cos(th), np.sin(th)])
        j = int(rng.choice([i for i in range(len(poses)) if i != t]))
        gd = max(goal_distance, 2 * (r[t] + r[j]) + 0.02)  # large objects need a longer path to block
        goal = poses[t, :2] + gd * d
        mid = poses[t, :2] + 0.5 * gd * d
        if np.any(np.abs(goal) > goal_lim) or np.any(np.abs(mid) > lim):
            continue
        keep = [t, j]
        for i in range(len(poses)):
            if i in keep:
                continue
            clear = (np.linalg.norm(poses[i, :2] - mid) > r[i] + r[j] + 0.005
                     and np.linalg.norm(poses[i, :2] - goal) > r[i] + r[t] + 0.01)
            if clear:
                keep.append(i)
        keep.sort()
        new = poses[keep].copy()
        new[keep.index(j), :2] = mid
        return {"objects": [st["objects"][i] for i in keep], "poses": new.tolist(), "target": keep.index(t) + 1,
                "goal": goal.tolist()}
    return None
