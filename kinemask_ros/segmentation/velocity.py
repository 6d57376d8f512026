"""Hand-off from a segmentation to the KineMask inference velocity mask (DESIGN §3).

At inference the model sees frame 0 only: the planned pushed object carries its post-contact
velocity [px/frame at model resolution], every other segmented object is marked still (ch2 = 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kinemask_ros.segmentation.core import Segmentation
from kinemask_ros.velocity_mask import encode_first_frame_velocity_mask


def velocity_mask_inputs(seg: Segmentation, velocities) -> tuple[np.ndarray, np.ndarray]:
    """Arguments for :func:`~kinemask_ros.velocity_mask.encode_first_frame_velocity_mask`.

    Args:
        seg: the first frame's segmentation.
        velocities: planned velocity ``(vu, vv)`` [px/frame] per object, either a mapping
            ``{object_id: (vu, vv)}`` (objects not listed are still) or a ``(K, 2)`` array aligned
            with ``seg.object_ids``.

    Returns:
        ``instance_mask (H, W)`` uint8 and ``velocities (max_id, 2)`` float32 indexed by id - 1, so
        ids with gaps (from a tracker) work too.
    """
    max_id = int(seg.object_ids.max()) if seg.num_objects else 0
    out = np.zeros((max_id, 2), np.float32)
    if isinstance(velocities, Mapping):
        for oid, v in velocities.items():
            if isinstance(oid, bool) or not isinstance(oid, (int, np.integer)):
                raise ValueError(f"velocity keys must be object ids (int), got {oid!r}")
            if int(oid) not in set(seg.object_ids.tolist()):
                raise ValueError(f"object id {oid} is not in the segmentation (ids {seg.object_ids.tolist()})")
            vv = np.asarray(v, dtype=np.float32).reshape(-1)
            if vv.shape != (2,) or not np.all(np.isfinite(vv)):
                raise ValueError(f"velocity of object {oid} must be 2 finite numbers (vu, vv), got {v!r}")
            out[int(oid) - 1] = vv
    else:
        arr = np.asarray(velocities, dtype=np.float32)
        if arr.shape != (seg.num_objects, 2):
            raise ValueError(f"velocities must be a mapping id -> (vu, vv) or a ({seg.num_objects}, 2) array, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("velocities contain NaN or inf")
        out[seg.object_ids - 1] = arr
    return seg.instance_ids, out


def segmentation_velocity_mask(seg: Segmentation, velocities, v_max: float, num_frames: int) -> np.ndarray:
    """``(T, 3, H, W)`` float32 inference velocity mask for ``seg`` and the planned ``velocities``."""
    mask, vel = velocity_mask_inputs(seg, velocities)
    return encode_first_frame_velocity_mask(mask, vel, v_max, num_frames)
