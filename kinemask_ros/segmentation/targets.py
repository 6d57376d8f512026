"""Choosing the object to push from a segmentation: by pixel, box, id or label.

Every selector returns an object id, or 0 when nothing matches (a legal answer: the planner may
treat it as "no target"). Malformed requests (a point outside the image, an empty box, a bad id)
raise ``ValueError`` with the reason.
"""

from __future__ import annotations

import numpy as np

from kinemask_ros.segmentation.colors import normalize_color_word
from kinemask_ros.segmentation.core import MAX_OBJECT_ID, Segmentation, box_mask, check_point


def select_by_point(seg: Segmentation, point, nearest: bool = False) -> int:
    """Id of the object under pixel ``point = (u, v)``.

    With ``nearest=True`` a background point picks the object whose mask is closest to it.
    """
    u, v = check_point(point, seg.shape)
    obj = int(seg.instance_ids[int(v), int(u)])
    if obj or not nearest or seg.num_objects == 0:
        return obj
    rows, cols = np.nonzero(seg.instance_ids)
    d2 = (cols + 0.5 - u) ** 2 + (rows + 0.5 - v) ** 2
    i = int(np.argmin(d2))
    return int(seg.instance_ids[rows[i], cols[i]])


def select_by_box(seg: Segmentation, box, min_iou: float = 0.0) -> int:
    """Id of the object whose mask best overlaps ``box = (x0, y0, x1, y1)`` (IoU with the box's pixels).

    Returns 0 when the best IoU is not above ``min_iou``.
    """
    if not (0.0 <= min_iou < 1.0):
        raise ValueError(f"min_iou must be in [0, 1), got {min_iou!r}")
    bm = box_mask(box, seg.shape)
    if seg.num_objects == 0:
        return 0
    masks = seg.masks()
    inter = (masks & bm[None]).sum(axis=(1, 2))
    union = (masks | bm[None]).sum(axis=(1, 2))
    iou = inter / np.maximum(union, 1)
    i = int(np.argmax(iou))
    return int(seg.object_ids[i]) if iou[i] > min_iou else 0


def select_by_id(seg: Segmentation, obj_id: int) -> int:
    """``obj_id`` when the segmentation has it, else 0."""
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or not 1 <= obj_id <= MAX_OBJECT_ID:
        raise ValueError(f"object id must be an int in 1..{MAX_OBJECT_ID}, got {obj_id!r}")
    return int(obj_id) if int(obj_id) in set(seg.object_ids.tolist()) else 0


def select_by_label(seg: Segmentation, label: str) -> int:
    """Id of the object labelled ``label`` (case-insensitive).

    ``label`` may be a phrase: "the red box" matches an object labelled "red". Colour synonyms
    are folded onto the generic names of :mod:`.colors` on both sides ("the gray box" matches
    "grey", "violet" matches "purple"). When several objects match, the highest-scoring one is
    returned.
    """
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    query = " ".join(normalize_color_word(w) for w in label.replace(",", " ").split())
    words = set(query.split())
    best, best_score = 0, -np.inf
    for oid, lab, sc in zip(seg.object_ids, seg.labels, seg.scores):
        if lab is None:
            continue
        lab_l = normalize_color_word(lab)
        if (lab_l == query or lab_l in words or f" {lab_l} " in f" {query} ") and sc > best_score:
            best, best_score = int(oid), float(sc)
    return best


def select_target(seg: Segmentation, *, point=None, box=None, obj_id: int | None = None, label: str | None = None) -> int:
    """Dispatch to exactly one of the selectors above."""
    given = {k: v for k, v in (("point", point), ("box", box), ("obj_id", obj_id), ("label", label)) if v is not None}
    if len(given) != 1:
        raise ValueError(f"give exactly one of point, box, obj_id, label; got {sorted(given) or 'none'}")
    if point is not None:
        return select_by_point(seg, point)
    if box is not None:
        return select_by_box(seg, box)
    if obj_id is not None:
        return select_by_id(seg, obj_id)
    return select_by_label(seg, label)  # type: ignore[arg-type]
