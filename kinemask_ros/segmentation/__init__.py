"""Segmentation: camera image -> instance ids (0 background, 1..K objects) for the velocity mask.

Backends (all behind :class:`Segmenter`, ``segment(image) -> Segmentation``):

* :class:`ClassicalSegmenter` — the embedded default: table-colour background model +
  colour-aware connected components; no weights, pure numpy.
* :class:`Sam2Segmenter` — SAM 2 from a local checkpoint (torch and ``sam2`` are imported only
  when one is built, so importing this package stays light).

Plus target selection (:func:`select_target`), stable ids over a stream
(:class:`TrackedSegmenter`), instance matching/IoU (:func:`match_instances`) and the hand-off to
the velocity mask (:func:`segmentation_velocity_mask`). See ``docs/segmentation.md``.
"""

from kinemask_ros.segmentation.classical import ClassicalConfig, ClassicalSegmenter, DEFAULT_COLOR_NAMES, PUSHER_COLOR
from kinemask_ros.segmentation.core import (
    DEFAULT_MAX_PIXELS,
    MAX_OBJECT_ID,
    Segmentation,
    Segmenter,
    box_mask,
    check_box,
    check_point,
    prepare_image,
)
from kinemask_ros.segmentation.matching import MatchResult, iou_matrix, linear_assignment, match_instances
from kinemask_ros.segmentation.sam2_backend import Sam2Config, Sam2Segmenter, build_sam2_model
from kinemask_ros.segmentation.targets import select_by_box, select_by_id, select_by_label, select_by_point, select_target
from kinemask_ros.segmentation.tracking import IdTracker, TrackedSegmenter, TrackerConfig
from kinemask_ros.segmentation.velocity import segmentation_velocity_mask, velocity_mask_inputs

__all__ = [
    "ClassicalConfig",
    "ClassicalSegmenter",
    "DEFAULT_COLOR_NAMES",
    "DEFAULT_MAX_PIXELS",
    "IdTracker",
    "MAX_OBJECT_ID",
    "MatchResult",
    "PUSHER_COLOR",
    "Sam2Config",
    "Sam2Segmenter",
    "Segmentation",
    "Segmenter",
    "TrackedSegmenter",
    "TrackerConfig",
    "box_mask",
    "build_sam2_model",
    "check_box",
    "check_point",
    "iou_matrix",
    "linear_assignment",
    "match_instances",
    "prepare_image",
    "segmentation_velocity_mask",
    "select_by_box",
    "select_by_id",
    "select_by_label",
    "select_by_point",
    "select_target",
    "velocity_mask_inputs",
]

