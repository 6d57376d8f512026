"""Temporally consistent object ids over an image stream.

:class:`IdTracker` re-labels each new :class:`Segmentation` so that an object keeps its id from
frame to frame: detections are matched to the live tracks by the Hungarian algorithm on a cost
``(1 - IoU) + centroid distance / max_distance + colour distance / max_color_distance``, gated by
``max_distance`` and ``max_color_distance`` (the pushed object can move further than its own size
between frames at 32x32, so IoU alone is not enough). Unmatched detections get the smallest free
id; a track survives ``max_missed`` frames without a match (e.g. hidden by the pusher) before its
id is released. :class:`TrackedSegmenter` wraps any segmenter with a tracker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinemask_ros.segmentation.classical import chromaticity
from kinemask_ros.segmentation.core import MAX_OBJECT_ID, Segmentation, Segmenter, check_float, check_positive_int
from kinemask_ros.segmentation.matching import iou_matrix, linear_assignment


@dataclass(frozen=True)
class TrackerConfig:
    """Matching parameters of :class:`IdTracker`.

    Attributes:
        max_distance: largest centroid jump between frames that may still be the same object [px].
        max_color_distance: largest chromaticity distance of the mean colours (<= 0 disables the
            colour term; it is skipped anyway for objects without a colour).
        max_missed: frames a track may go unmatched before its id is released (0 = immediately).
    """

    max_distance: float = 8.0
    max_color_distance: float = 0.08
    max_missed: int = 5

    def __post_init__(self) -> None:
        check_float("TrackerConfig", "max_distance", self.max_distance, 0.0, lo_open=True)
        check_float("TrackerConfig", "max_color_distance", self.max_color_distance, -np.inf)
        check_positive_int("TrackerConfig", "max_missed", self.max_missed, minimum=0)


@dataclass
class _Track:
    obj_id: int
    mask: np.ndarray
    centroid: np.ndarray
    chroma: np.ndarray
    missed: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))


class IdTracker:
    """Keeps object ids consistent across the frames of one stream (see module docstring)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._shape: tuple[int, int] | None = None

    def reset(self) -> None:
        """Forget every track (start of a new stream)."""
        self._tracks = []
        self._shape = None

    @property
    def active_ids(self) -> list[int]:
        return sorted(t.obj_id for t in self._tracks)

    def cost_matrix(self, seg: Segmentation) -> np.ndarray:
        """``(num_tracks, K)`` matching cost; ``inf`` where the gates forbid a match."""
        cfg = self.config
        n, k = len(self._tracks), seg.num_objects
        if n == 0 or k == 0:
            return np.zeros((n, k))
        prev = np.zeros(seg.shape, np.uint8)
        for i, t in enumerate(self._tracks):
            prev[t.mask] = i + 1
        iou = iou_matrix(prev, seg.instance_ids, np.arange(1, n + 1), seg.object_ids, ignore_ids=())
        pred = np.stack([t.centroid + t.velocity for t in self._tracks])  # constant-velocity guess
        dist = np.linalg.norm(pred[:, None] - seg.centroids()[None], axis=-1)
        cost = (1.0 - iou) + dist / cfg.max_distance
        allowed = (dist <= cfg.max_distance) | (iou > 0)
        if cfg.max_color_distance > 0:
            det_chroma = chromaticity(seg.colors)
            trk_chroma = np.stack([t.chroma for t in self._tracks])
            cd = np.linalg.norm(trk_chroma[:, None] - det_chroma[None], axis=-1)
            known = np.isfinite(cd)
            cd = np.where(known, cd, 0.0)
            cost = cost + cd / cfg.max_color_distance
            allowed &= cd <= cfg.max_color_distance
        return np.where(allowed, cost, np.inf)

    def update(self, seg: Segmentation) -> Segmentation:
        """Re-label ``seg`` with the stream's stable ids and update the tracks.

        A change of image size starts a new stream (the tracker resets itself).
        """
        if not isinstance(seg, Segmentation):
            raise ValueError(f"IdTracker.update needs a Segmentation, got {type(seg).__name__}")
        if self._shape is not None and self._shape != seg.shape:
            self.reset()
        self._shape = seg.shape
        pairs = linear_assignment(self.cost_matrix(seg))
        matched_tracks = {r for r, _ in pairs}
        track_of = {c: r for r, c in pairs}
        # tracks that go unmatched age; the ones too old release their ids
        survivors = []
        for i, t in enumerate(self._tracks):
            if i in matched_tracks:
                survivors.append(t)
            elif t.missed < self.config.max_missed:
                t.missed += 1
                survivors.append(t)
        used = {t.obj_id for t in survivors}
        mapping: dict[int, int] = {}
        new_tracks: list[_Track] = []
        for c, oid in enumerate(seg.object_ids):
            if c in track_of:
                mapping[int(oid)] = self._tracks[track_of[c]].obj_id
            else:
                free = next((i for i in range(1, MAX_OBJECT_ID + 1) if i not in used), None)
                if free is None:
                    raise ValueError(f"more than {MAX_OBJECT_ID} objects tracked at once")
                used.add(free)
                mapping[int(oid)] = free
        out = seg.relabel(mapping)
        cents = out.centroids()
        chroma = chromaticity(out.colors)
        by_id = {t.obj_id: t for t in survivors}
        for row, oid in enumerate(out.object_ids):
            t = by_id.get(int(oid))
            m = out.instance_ids == oid
            if t is None:
                new_tracks.append(_Track(int(oid), m, cents[row], chroma[row]))
            else:
                t.velocity = cents[row] - t.centroid
                t.mask, t.centroid, t.chroma, t.missed = m, cents[row], chroma[row], 0
        self._tracks = sorted(survivors + new_tracks, key=lambda t: t.obj_id)
        return out


class TrackedSegmenter:
    """A segmenter whose ids stay consistent over a stream: ``segment`` = backend + :class:`IdTracker`."""

    def __init__(self, segmenter: Segmenter, config: TrackerConfig | None = None) -> None:
        if not hasattr(segmenter, "segment"):
            raise ValueError(f"TrackedSegmenter needs an object with segment(image), got {type(segmenter).__name__}")
        self.segmenter = segmenter
        self.tracker = IdTracker(config)

    def reset(self) -> None:
        self.tracker.reset()

    def segment(self, image) -> Segmentation:
        return self.tracker.update(self.segmenter.segment(image))
