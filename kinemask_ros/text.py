"""Scene descriptions (KineMask's high-level text condition) from events or predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass


def direction_word(vx: float, vy: float) -> str:
    """Planar table direction -> one of 8 words (x right, y forward)."""
    if math.hypot(vx, vy) < 1e-9:
        return "nowhere"
    ang = math.degrees(math.atan2(vy, vx)) % 360.0
    words = ["right", "forward-right", "forward", "forward-left", "left", "back-left", "back", "back-right"]
    return words[int(((ang + 22.5) % 360.0) // 45.0)]


@dataclass(frozen=True)
class ObjectMotion:
    """What one object did (or is predicted to do): name like "red box", displacement [m]."""

    name: str
    dx: float
    dy: float


def describe(pushed: ObjectMotion | None, hits: list[tuple[ObjectMotion, ObjectMotion]], min_move: float = 0.005) -> str:
    """Short description, e.g. "the red box slides right and hits the blue cylinder, which moves right".

    Args:
        pushed: the object the pusher touched first (None for a miss).
        hits: ``(hitter, hit)`` pairs in time order.
        min_move: displacement [m] below which an object "barely moves".
    """
    if pushed is None:
        return "the pusher misses every object; nothing moves"

    def motion(m: ObjectMotion, verb: str) -> str:
        if math.hypot(m.dx, m.dy) < min_move:
            return "barely moves"
        return f"{verb} {direction_word(m.dx, m.dy)}"

    text = f"the {pushed.name} {motion(pushed, 'slides')}"
    for hitter, hit in hits:
        lead = " and hits" if hitter.name == pushed.name else f", then the {hitter.name} hits"
        text += f"{lead} the {hit.name}, which {motion(hit, 'moves')}"
    return text


def predict_description(instance_mask, target_id: int, velocity_px, names: dict[int, str] | None = None,
                        travel_frames: float = 6.0) -> str:
    """Rule-based description of what a push will do (the text condition at inference).

    The target's mask is swept along its planned velocity for ``travel_frames`` frames; the first
    other object it overlaps is predicted to be hit and to move the same way.

    Args:
        instance_mask: ``(H, W)`` ids (0 background, 1..K objects, 255 pusher).
        target_id: the object the stroke touches first (0 = a miss).
        velocity_px: ``(2,)`` its post-contact velocity [px/frame] (image axes: v points down).
        names: id -> name such as "red box" (default "object N").
    """
    import numpy as np

    m = np.asarray(instance_mask)
    name = (names or {}).get

    def nm(i: int) -> str:
        return name(i) or f"object {i}"

    v = np.asarray(velocity_px, float)
    if target_id == 0 or not (m == target_id).any():
        return describe(None, [])
    speed = float(np.hypot(*v))
    # image axes -> table words: u right = +x, v down = -y
    pushed = ObjectMotion(nm(target_id), float(v[0]), float(-v[1]))
    if speed < 1e-6:
        return describe(ObjectMotion(nm(target_id), 0.0, 0.0), [])
    rows, cols = np.nonzero(m == target_id)
    H, W = m.shape
    step = v / speed * 0.5
    for k in range(1, int(speed * travel_frames / 0.5) + 1):
        r = np.round(rows + k * step[1]).astype(int)
        c = np.round(cols + k * step[0]).astype(int)
        ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        hit = m[r[ok], c[ok]]
        others = hit[(hit != 0) & (hit != 255) & (hit != target_id)]
        if others.size:
            j = int(np.bincount(others).argmax())
            return describe(pushed, [(pushed, ObjectMotion(nm(j), float(v[0]), float(-v[1])))])
    return describe(pushed, [])


def canonical_text(text: str) -> str:
    """The form of a description that is embedded: shape words become "object".

    Colours identify objects uniquely in a scene, while shapes cannot be told apart reliably from
    a 4-6 px mask at 32x32, so training texts (which know the shapes) and predicted texts (which
    do not) are embedded in the same vocabulary.
    """
    import re

    return re.sub(r"\b(box|cylinder)\b", "object", text)


def object_names(image, instance_mask, palette: dict[str, tuple[float, float, float]] | None = None) -> dict[int, str]:
    """Names like "red object" for every object id, from its mean colour (nearest palette colour
    by chromaticity)."""
    import numpy as np

    if palette is None:
        from kinemask_ros.palette import PALETTE as palette  # noqa: N811
    img = np.asarray(image, float) / 255.0
    m = np.asarray(instance_mask)
    names = {}
    cols = np.array(list(palette.values()))
    keys = list(palette)
    for i in np.unique(m):
        if i in (0, 255):
            continue
        sel = m == i
        rgb = img[sel].mean(0)
        # compare chromaticity so shading does not change the colour name
        chroma = rgb / max(rgb.sum(), 1e-6)
        pc = cols / cols.sum(1, keepdims=True)
        names[int(i)] = f"{keys[int(np.argmin(((pc - chroma) ** 2).sum(1)))]} object"
    return names
