"""Named scene set-ups for ``KineMaskPush-v0`` used by the demo and the benchmarks."""

from __future__ import annotations

import dataclasses

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


#: object-count range of :func:`cluttered_scene_options` when ``num_objects`` is None
CLUTTER_OBJECTS = (6, 8)


def cluttered_scene_options(env, seed: int, num_objects: int | None = None, goal_distance: tuple[float, float] = (0.06, 0.12),
                            ring: float = 0.035, target_half_extent: float = 0.05, tries: int = 200) -> dict:
    """Reset options for ``env.reset(seed=seed, options=...)``: a cluttered scene of ``num_objects``
    objects (default: 6..8, drawn from ``seed``) packed around the target, and a reachable goal.

    * Object specs (shapes, sizes, masses, frictions, distinct colours) come from the scene's own
      sampler (``env.unwrapped.scene.sample_objects``); its poses are discarded.
    * The target is placed within ``target_half_extent`` of the table centre; every other object
      within ``ring`` [m] of touching the target (or the already placed neighbours, so the pack
      grows outwards), at least ``scene.min_clearance`` from every footprint's bounding circle
      and with its centre inside the placement square.
    * The goal lies ``goal_distance`` (range [m]) from the target, inside the placement square
      (so inside the workspace) and free: every other object's bounding circle is at least the
      target's bounding radius + 5 mm away, so the target fits there without overlapping anything.

    ``env`` must allow ``num_objects`` objects per scene (``scene.max_objects``), e.g.
    ``gym.make("KineMaskPush-v0", scene=SceneConfig(max_objects=8))``; raises ``ValueError`` if it
    does not, or ``RuntimeError`` when no layout fits in ``tries`` attempts (not seen in practice).
    """
    u = env.unwrapped
    cfg = u.config.scene
    rng = np.random.default_rng([seed, 0xC1])  # a stream of its own (independent of the env's seeding)
    k = int(rng.integers(CLUTTER_OBJECTS[0], CLUTTER_OBJECTS[1] + 1)) if num_objects is None else int(num_objects)
    if not 2 <= k <= cfg.max_objects:
        raise ValueError(f"num_objects must be in [2, scene.max_objects={cfg.max_objects}], got {k}; build the env with "
                         f"scene=SceneConfig(max_objects=8) for up to 8 objects")
    lim = cfg.placement_half_extent
    clr = cfg.min_clearance
    for _ in range(tries):
        specs, _poses = u.scene.sample_objects(rng, k)
        if len(specs) < k:  # the sampler's own placement ran out of room: draw again
            continue
        r = np.array([s.bounding_radius for s in specs])
        t = int(rng.integers(k))
        poses = np.zeros((k, 3))
        poses[:, 2] = rng.uniform(-np.pi, np.pi, k)
        poses[t, :2] = rng.uniform(-target_half_extent, target_half_extent, 2)
        goal = None
        for _g in range(200):
            th, d = rng.uniform(-np.pi, np.pi), rng.uniform(*goal_distance)
            g = poses[t, :2] + d * np.array([np.cos(th), np.sin(th)])
            if np.all(np.abs(g) <= lim - r[t] / 2):
                goal = g
                break
        if goal is None:
            continue
        placed = [t]
        ok = True
        for i in [i for i in range(k) if i != t]:
            for _p in range(300):
                a = placed[int(rng.integers(len(placed)))] if rng.random() < 0.3 else t  # mostly around the target
                th = rng.uniform(-np.pi, np.pi)
                q = poses[a, :2] + (r[a] + r[i] + clr + rng.uniform(0, ring)) * np.array([np.cos(th), np.sin(th)])
                if np.any(np.abs(q) > lim):
                    continue
                if any(np.linalg.norm(q - poses[j, :2]) <= r[i] + r[j] + clr for j in placed):
                    continue
                if np.linalg.norm(q - goal) <= r[i] + r[t] + 0.005:
                    continue
                poses[i, :2] = q
                placed.append(i)
                break
            else:
                ok = False
                break
        if not ok:
            continue
        return {"objects": [dataclasses.asdict(s) for s in specs], "poses": poses.tolist(), "target": t + 1,
                "goal": [float(v) for v in goal]}
    raise RuntimeError(f"no cluttered layout of {k} objects fits the table in {tries} tries (seed {seed})")
