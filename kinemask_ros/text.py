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
