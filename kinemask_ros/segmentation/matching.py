"""Instance matching: assignment (Hungarian via scipy, greedy fallback), IoU matrices, mask-IoU metric.

Used twice: to keep ids consistent over a stream (:mod:`.tracking`) and to score a segmentation
against the simulator's ground truth (benchmarks, tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:  # scipy ships with the project's text-embedding dependency; the fallback keeps the core pure numpy
    from scipy.optimize import linear_sum_assignment as _scipy_lsa
except ImportError:  # pragma: no cover - exercised by forcing USE_SCIPY = False in the tests
    _scipy_lsa = None

#: Set to False to force the numpy fallbacks (tests compare both paths).
USE_SCIPY = _scipy_lsa is not None


def linear_assignment(cost: np.ndarray, max_cost: float = np.inf) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one matching of rows to columns; pairs with cost > ``max_cost`` are dropped.

    Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) when scipy is available,
    otherwise greedy (cheapest pair first), which is optimal for the well-separated costs seen here.
    Entries may be ``inf`` (forbidden). Returns ``[(row, col), ...]`` sorted by row.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {c.shape}")
    if c.size == 0:
        return []
    if np.any(np.isnan(c)):
        raise ValueError("cost contains NaN")
    pairs: list[tuple[int, int]] = []
    if USE_SCIPY and _scipy_lsa is not None:
        finite = np.isfinite(c)
        big = (np.abs(c[finite]).max() + 1.0) * (c.shape[0] + c.shape[1] + 1) if finite.any() else 1.0
        rows, cols = _scipy_lsa(np.where(finite, c, big))
        pairs = [(int(r), int(k)) for r, k in zip(rows, cols) if finite[r, k]]
    else:
        order = np.argsort(c, axis=None, kind="stable")
        used_r, used_c = set(), set()
        for flat in order:
            r, k = divmod(int(flat), c.shape[1])
            if not np.isfinite(c[r, k]):
                break
            if r in used_r or k in used_c:
                continue
            used_r.add(r)
            used_c.add(k)
            pairs.append((r, k))
    return sorted((r, k) for r, k in pairs if c[r, k] <= max_cost)


def iou_matrix(pred_ids: np.ndarray, gt_ids: np.ndarray, pred_objects=None, gt_objects=None, ignore_ids=(255,)) -> np.ndarray:
    """IoU between every predicted and every ground-truth object of two ``(H, W)`` id maps.

    Args:
        pred_ids, gt_ids: integer maps (0 = background); ids in ``ignore_ids`` (the pusher) are
            treated as background.
        pred_objects, gt_objects: the ids to compare (default: every non-zero, non-ignored id present).

    Returns:
        ``(P, G)`` float64 IoU, rows/cols in the order of ``pred_objects`` / ``gt_objects``.
    """
    p = np.asarray(pred_ids).astype(np.int64)
    g = np.asarray(gt_ids).astype(np.int64)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"id maps must be (H, W) of equal shape, got {p.shape} and {g.shape}")
    if p.min() < 0 or g.min() < 0 or p.max() > 255 or g.max() > 255:
        raise ValueError("id maps must hold ids 0..255")
    for ig in ignore_ids:
        p[p == ig] = 0
        g[g == ig] = 0
    joint = np.bincount((p * 256 + g).reshape(-1), minlength=256 * 256).reshape(256, 256)
    ap, ag = joint.sum(1), joint.sum(0)
    po = np.nonzero(ap[1:])[0] + 1 if pred_objects is None else np.asarray(pred_objects, np.int64).reshape(-1)
    go = np.nonzero(ag[1:])[0] + 1 if gt_objects is None else np.asarray(gt_objects, np.int64).reshape(-1)
    inter = joint[np.ix_(po, go)].astype(np.float64)
    union = ap[po][:, None] + ag[go][None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


@dataclass
class MatchResult:
    """Predicted-to-ground-truth instance matching of one image.

    ``pairs`` holds ``(pred_id, gt_id, iou)`` with iou > 0; ``gt_iou`` maps every ground-truth id
    to the IoU of its match (0.0 when unmatched), so ``mean(gt_iou.values())`` is the mean mask IoU.
    """

    pairs: list[tuple[int, int, float]]
    unmatched_pred: list[int]
    unmatched_gt: list[int]
    gt_iou: dict[int, float]

    @property
    def mean_iou(self) -> float:
        """Mean IoU over ground-truth objects (NaN when there are none)."""
        return float(np.mean(list(self.gt_iou.values()))) if self.gt_iou else float("nan")


def match_instances(pred_ids: np.ndarray, gt_ids: np.ndarray, ignore_ids=(255,)) -> MatchResult:
    """Hungarian matching maximising IoU between predicted and ground-truth instances."""
    p = np.asarray(pred_ids)
    g = np.asarray(gt_ids)
    po = [int(i) for i in np.unique(p) if i != 0 and i not in ignore_ids]
    go = [int(i) for i in np.unique(g) if i != 0 and i not in ignore_ids]
    ious = iou_matrix(p, g, po, go, ignore_ids) if po and go else np.zeros((len(po), len(go)))
    pairs = [(po[r], go[c], float(ious[r, c])) for r, c in linear_assignment(-ious) if ious[r, c] > 0]
    mp = {a for a, _, _ in pairs}
    mg = {b: iou for _, b, iou in pairs}
    return MatchResult(pairs, [i for i in po if i not in mp], [i for i in go if i not in mg], {i: mg.get(i, 0.0) for i in go})
