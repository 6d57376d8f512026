"""A small numpy ray caster for segmentation tests: RGB + instance ids + depth of boxes/cylinders on a table.

Independent of PyBullet: the camera comes from :class:`kinemask_ros.camera.CameraModel` (K and the
world->camera pose, world = table frame), every pixel's ray is intersected with the table plane
z = 0, upright boxes / cylinders standing on it and the pusher (a thin cylinder, id 255). Depth is
metres along the optical axis (z in the camera frame), like a registered RGB-D camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinemask_ros.camera import CameraConfig, CameraModel

PUSHER_ID = 255


@dataclass
class Obj:
    """An upright box (``size`` = half extents) or cylinder (``size = (r, r)``) at ``(x, y, yaw)``."""

    shape: str
    x: float
    y: float
    yaw: float
    size: tuple[float, float]
    height: float
    color: tuple[float, float, float]


def top_down_camera(size: int = 64) -> CameraModel:
    """The canonical simulator camera (1.5 m above the table, 0.40 m of table in view)."""
    return CameraModel(CameraConfig(width=size, height=size))


def oblique_camera(width: int = 640, height: int = 480, elevation_deg: float = 45.0, distance: float = 0.8, fov_deg: float = 45.0) -> CameraModel:
    """A camera ``distance`` from the table centre, ``elevation_deg`` above the table, looking at it."""
    el = math.radians(elevation_deg)
    eye = (0.0, -distance * math.cos(el), distance * math.sin(el))
    return CameraModel(CameraConfig(width=width, height=height, fov_deg=fov_deg, eye=eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0), near=0.05, far=5.0))


def t_cam_table(cam: CameraModel) -> np.ndarray:
    """``(4, 4)`` pose of the table in the camera frame (table points -> camera points)."""
    T = np.eye(4)
    T[:3, :3] = cam.R
    T[:3, 3] = cam.t
    return T


def _hit_box(C, d, o: Obj):
    c, s = math.cos(o.yaw), math.sin(o.yaw)
    Rz = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]])  # world -> box
    p = (C - np.array([o.x, o.y, 0.0])) @ Rz.T
    q = d @ Rz.T
    lo = np.array([-o.size[0], -o.size[1], 0.0])
    hi = np.array([o.size[0], o.size[1], o.height])
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - p) / q
        t2 = (hi - p) / q
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    tn = np.nanmax(tmin, axis=1)
    tf = np.nanmin(tmax, axis=1)
    hit = (tn <= tf) & (tf > 0) & (tn > 0)
    axis = np.nanargmax(tmin, axis=1)
    n_box = np.zeros_like(q)
    n_box[np.arange(len(q)), axis] = -np.sign(q[np.arange(len(q)), axis])
    normal = n_box @ Rz  # box -> world
    return np.where(hit, tn, np.inf), normal


def _hit_cylinder(C, d, o: Obj, r: float | None = None):
    r = o.size[0] if r is None else r
    p = C - np.array([o.x, o.y, 0.0])
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (p[0] * d[:, 0] + p[1] * d[:, 1])
    cc = p[0] ** 2 + p[1] ** 2 - r * r
    disc = b * b - 4 * a * cc
    with np.errstate(invalid="ignore", divide="ignore"):
        ts = (-b - np.sqrt(disc)) / (2 * a)
        zs = p[2] + ts * d[:, 2]
        side = (disc >= 0) & (ts > 0) & (zs >= 0) & (zs <= o.height)
        tt = (o.height - p[2]) / d[:, 2]
        xt, yt = p[0] + tt * d[:, 0], p[1] + tt * d[:, 1]
        top = (tt > 0) & (xt**2 + yt**2 <= r * r)
    t_side = np.where(side, ts, np.inf)
    t_top = np.where(top, tt, np.inf)
    t = np.minimum(t_side, t_top)
    normal = np.zeros_like(d)
    normal[:, 2] = 1.0
    use_side = t_side < t_top
    hx, hy = p[0] + ts * d[:, 0], p[1] + ts * d[:, 1]
    nn = np.stack([hx, hy, np.zeros_like(hx)], 1) / r
    normal[use_side] = nn[use_side]
    return t, normal


def render(cam: CameraModel, objects: list[Obj], *, pusher_xy=None, pusher_radius: float = 0.012, pusher_height: float = 0.05,
           table_rgb=(0.80, 0.77, 0.71), table_texture: str = "plain", light_dir=(0.3, -0.4, 1.0), ambient: float = 0.65,
           diffuse: float = 0.45, rgb_noise: float = 0.0, depth_noise: float = 0.0, rng: np.random.Generator | None = None):
    """``(rgb (H, W, 3) uint8, ids (H, W) uint8, depth (H, W) float32 m)``; ids 1..K in list order, 255 pusher."""
    rng = rng or np.random.default_rng(0)
    h, w = cam.height, cam.width
    v, u = np.mgrid[0:h, 0:w]
    uv1 = np.stack([u + 0.5, v + 0.5, np.ones_like(u, float)], -1).reshape(-1, 3)
    rays_cam = uv1 @ np.linalg.inv(cam.K).T  # z = 1
    d = rays_cam @ cam.R  # camera -> world directions (R^T applied to rows)
    C = -cam.R.T @ cam.t
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = np.where(d[:, 2] < 0, -C[2] / d[:, 2], np.inf)
    best = t_table.copy()
    ids = np.zeros(len(d), np.uint8)
    normal = np.tile([0.0, 0.0, 1.0], (len(d), 1))
    base = np.tile(np.asarray(table_rgb, float), (len(d), 1))
    hit_xy = C[:2] + t_table[:, None] * d[:, :2]
    if table_texture == "checker":
        chk = ((np.floor(hit_xy[:, 0] / 0.05) + np.floor(hit_xy[:, 1] / 0.05)) % 2).astype(bool)
        base[chk] *= 0.8
    elif table_texture == "grain":
        g = 0.06 * np.sin(hit_xy[:, 0] * 180.0 + 3 * np.sin(hit_xy[:, 1] * 40.0))
        base = np.clip(base * (1 + g[:, None]), 0, 1)
    things = [(i + 1, o, None) for i, o in enumerate(objects)]
    if pusher_xy is not None:
        things.append((PUSHER_ID, Obj("cylinder", pusher_xy[0], pusher_xy[1], 0.0, (pusher_radius, pusher_radius), pusher_height, (0.22, 0.22, 0.24)), None))
    for oid, o, _ in things:
        t, n = _hit_box(C, d, o) if o.shape == "box" else _hit_cylinder(C, d, o)
        closer = t < best
        best = np.where(closer, t, best)
        ids[closer] = oid
        normal[closer] = n[closer]
        base[closer] = o.color
    ld = np.asarray(light_dir, float)
    ld /= np.linalg.norm(ld)
    shade = ambient + diffuse * np.clip(normal @ ld, 0, None)
    rgb = np.clip(base * shade[:, None], 0, 1) * 255.0
    if rgb_noise > 0:
        rgb = rgb + rng.normal(0, rgb_noise, rgb.shape)
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(h, w, 3)
    depth = best.astype(np.float32)  # ray parameter = z in the camera frame (rays have z = 1)
    depth[~np.isfinite(depth)] = 0.0
    if depth_noise > 0:
        depth = depth + rng.normal(0, depth_noise, depth.shape).astype(np.float32) * (depth > 0)
    return rgb, ids.reshape(h, w), depth.reshape(h, w)


def random_objects(rng: np.random.Generator, n: int, touching_pair: bool = False, half: float = 0.12,
                   palette: list | None = None) -> list[Obj]:
    """``n`` non-overlapping random objects with random (continuous) colours; with ``touching_pair``
    the first two have the same colour and touch."""
    objs: list[Obj] = []

    def rand_color():
        if palette is not None:
            return tuple(palette[int(rng.integers(len(palette)))])
        hsv_h, s, v = rng.uniform(0, 1), rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0)
        i = int(hsv_h * 6) % 6
        f = hsv_h * 6 - int(hsv_h * 6)
        p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
        return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]

    def rand_obj(x, y, color):
        shape = "box" if rng.uniform() < 0.5 else "cylinder"
        if shape == "box":
            size = (float(rng.uniform(0.022, 0.034)), float(rng.uniform(0.022, 0.034)))
        else:
            r = float(rng.uniform(0.022, 0.034))
            size = (r, r)
        return Obj(shape, x, y, float(rng.uniform(-math.pi, math.pi)), size, 0.03, color)

    def radius(o):
        return math.hypot(*o.size) if o.shape == "box" else o.size[0]

    if touching_pair:
        c = rand_color()
        a = rand_obj(*rng.uniform(-half + 0.04, half - 0.04, 2), c)
        b = rand_obj(0, 0, c)
        ang = rng.uniform(-math.pi, math.pi)
        dirv = np.array([math.cos(ang), math.sin(ang)])
        # slide b in from far away until it touches a (footprint overlap test on a fine grid)
        for dist in np.linspace(radius(a) + radius(b), 0.0, 200):
            b.x, b.y = a.x + dist * dirv[0], a.y + dist * dirv[1]
            if _overlap(a, b):
                dist_prev = dist + (radius(a) + radius(b)) / 199
                b.x, b.y = a.x + dist_prev * dirv[0], a.y + dist_prev * dirv[1]
                break
        objs += [a, b]
    for _ in range(200):
        if len(objs) >= n:
            break
        o = rand_obj(*rng.uniform(-half, half, 2), rand_color())
        if all(math.hypot(o.x - p.x, o.y - p.y) > radius(o) + radius(p) + 0.012 for p in objs):
            objs.append(o)
    return objs


def footprint(o: Obj, xy: np.ndarray) -> np.ndarray:
    """Which of the table points ``xy (N, 2)`` lie in the footprint of ``o``."""
    p = xy - np.array([o.x, o.y])
    if o.shape == "cylinder":
        return (p**2).sum(1) <= o.size[0] ** 2
    c, s = math.cos(o.yaw), math.sin(o.yaw)
    lx, ly = c * p[:, 0] + s * p[:, 1], -s * p[:, 0] + c * p[:, 1]
    return (np.abs(lx) <= o.size[0]) & (np.abs(ly) <= o.size[1])


def _overlap(a: Obj, b: Obj) -> bool:
    g = np.linspace(-0.05, 0.05, 101)
    xy = np.stack(np.meshgrid(g + a.x, g + a.y), -1).reshape(-1, 2)
    return bool(np.any(footprint(a, xy) & footprint(b, xy)))
