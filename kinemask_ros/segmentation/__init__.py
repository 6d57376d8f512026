"""Segmentation: camera image -> instance ids (0 background, 1..K objects) for the velocity mask.

Backends (all behind :class:`Segmenter`, ``segment(image) -> Segmentation``):

* :class:`ClassicalSegmenter` — the embedded default: table-colour background model +
  colour-aware connected components; no weights, pure numpy.
* :class:`RgbSegmenter` — palette-free RGB: table colour/texture model (OKLab modes), colour
  components, neck splitting of touching same-colour objects.
* :class:`RgbdSegmenter` — RGB-D: height above the (refined) table plane from depth + calibration,
  pusher rule, depth/colour edges and footprint neck splitting; ``segment(image, depth, calibration)``.
* :class:`Sam2Segmenter` — SAM 2 from a local checkpoint (torch and ``sam2`` are imported only
  when one is built, so importing this package stays light).

:func:`make_segmenter` builds any of them by name (``"classical"``, ``"rgb"``, ``"rgbd"``,
``"sam2"``) from keyword config fields; colour names come from :func:`color_name` (:mod:`.colors`).

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
from kinemask_ros.segmentation.colors import COLOR_NAMES, color_name, color_names, normalize_color_word
from kinemask_ros.segmentation.matching import MatchResult, iou_matrix, linear_assignment, match_instances
from kinemask_ros.segmentation.rgb import RgbConfig, RgbSegmenter
from kinemask_ros.segmentation.rgbd import Calibration, InvalidDepthError, RgbdConfig, RgbdResult, RgbdSegmenter, TablePlane
from kinemask_ros.segmentation.sam2_backend import Sam2Config, Sam2Segmenter, build_sam2_model
from kinemask_ros.segmentation.targets import select_by_box, select_by_id, select_by_label, select_by_point, select_target
from kinemask_ros.segmentation.tracking import IdTracker, TrackedSegmenter, TrackerConfig
from kinemask_ros.segmentation.velocity import segmentation_velocity_mask, velocity_mask_inputs

#: Backend name -> (config class, segmenter class).
BACKENDS = {
    "classical": (ClassicalConfig, ClassicalSegmenter),
    "rgb": (RgbConfig, RgbSegmenter),
    "rgbd": (RgbdConfig, RgbdSegmenter),
    "sam2": (Sam2Config, Sam2Segmenter),
}


def backend_requires_depth(name: str) -> bool:
    """True for backends whose ``segment`` needs ``(image, depth, calibration)`` ("rgbd")."""
    return bool(getattr(_backend(name)[1], "requires_depth", False))


def _backend(name: str):
    key = str(name).strip().lower() if isinstance(name, str) else name
    if key not in BACKENDS:
        raise ValueError(f"unknown segmentation backend {name!r}: choose one of {sorted(BACKENDS)}")
    return BACKENDS[key]


def make_segmenter(name: str = "classical", *, calibration=None, track_ids: bool = False, tracker_config=None, **config):
    """Build a segmenter by backend name from keyword fields of its config dataclass.

    Args:
        name: "classical" (palette, embedded default), "rgb" (palette-free colour), "rgbd" (depth +
            calibration), "sam2" (local checkpoint; needs ``checkpoint=...``).
        calibration: only for "rgbd": an object/dict with ``K`` (3, 3) and ``T_cam_table`` (4, 4)
            (e.g. ``table_frame.CameraCalibration``); may also be given per frame to ``segment``.
        track_ids: wrap in a :class:`TrackedSegmenter` (stable ids over a stream). Not for "rgbd"
            (its ``segment`` takes depth): use ``IdTracker().update(seg.segment(rgb, depth))``.
        **config: fields of the backend's config (``ClassicalConfig``, ``RgbConfig``,
            ``RgbdConfig``, ``Sam2Config``); unknown names raise ``ValueError`` listing the valid ones.
    """
    import dataclasses

    cfg_cls, seg_cls = _backend(name)
    valid = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(config) - valid)
    if unknown:
        raise ValueError(f"{cfg_cls.__name__} has no field(s) {unknown}; valid fields: {sorted(valid)}")
    cfg = cfg_cls(**config)
    if seg_cls is RgbdSegmenter:
        if track_ids:
            raise ValueError("track_ids=True is not available for 'rgbd' (segment needs depth): use IdTracker().update(seg.segment(rgb, depth))")
        return RgbdSegmenter(cfg, calibration=calibration)
    if calibration is not None:
        raise ValueError(f"calibration is only used by the 'rgbd' backend, not {name!r}")
    seg = seg_cls(cfg)
    return TrackedSegmenter(seg, tracker_config) if track_ids else seg


__all__ = [
    "BACKENDS",
    "COLOR_NAMES",
    "Calibration",
    "ClassicalConfig",
    "ClassicalSegmenter",
    "DEFAULT_COLOR_NAMES",
    "DEFAULT_MAX_PIXELS",
    "IdTracker",
    "InvalidDepthError",
    "MAX_OBJECT_ID",
    "MatchResult",
    "PUSHER_COLOR",
    "RgbConfig",
    "RgbSegmenter",
    "RgbdConfig",
    "RgbdResult",
    "RgbdSegmenter",
    "Sam2Config",
    "Sam2Segmenter",
    "Segmentation",
    "Segmenter",
    "TablePlane",
    "TrackedSegmenter",
    "TrackerConfig",
    "backend_requires_depth",
    "box_mask",
    "build_sam2_model",
    "check_box",
    "check_point",
    "color_name",
    "color_names",
    "iou_matrix",
    "linear_assignment",
    "make_segmenter",
    "match_instances",
    "normalize_color_word",
    "prepare_image",
    "segmentation_velocity_mask",
    "select_by_box",
    "select_by_id",
    "select_by_label",
    "select_by_point",
    "select_target",
    "velocity_mask_inputs",
]

