"""numpy <-> ``sensor_msgs/Image`` conversion as plain functions (no rclpy, no sensor_msgs).

A ROS image is described by six fields: ``height``, ``width``, ``encoding``, ``step`` (bytes per
row, may include padding), ``is_bigendian`` and ``data`` (``step * height`` bytes). The functions
here take exactly these fields, so they work on ``sensor_msgs.msg.Image``, on a message read from
a bag by ``rosbags``, or on plain values in tests. ``cv_bridge`` has no PyPI wheel for ROS 2;
this module replaces it for the encodings a push planner meets:

=========  ==========  =========================  ==================================
encoding   bytes/px    :func:`image_to_rgb`        :func:`image_to_ids`
=========  ==========  =========================  ==================================
rgb8       3           as is                      rejected (not an id map)
bgr8       3           channels swapped           rejected
rgba8      4           alpha dropped              rejected
bgra8      4           swapped, alpha dropped     rejected
mono8      1           grey replicated to RGB     ids 0..255
8UC1       1           grey replicated to RGB     ids 0..255
mono16     2           ``>> 8``, replicated        ids 0..65535
16UC1      2           ``>> 8``, replicated        ids 0..65535
32FC1      4           rejected (not a colour)    integral, finite, >= 0 values only
=========  ==========  =========================  ==================================

Every malformed input raises ``ValueError`` naming the problem: unsupported encoding, zero
size, ``step`` smaller than ``width * bytes_per_pixel``, ``data`` shorter (truncated) or longer
than ``step * height``, too many pixels, non-integral or negative ids in a float id map.
"""

from __future__ import annotations

import math

import numpy as np

#: encoding -> (channels, dtype of one channel)
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16UC1": (1, np.dtype(np.uint16)),
    "32FC1": (1, np.dtype(np.float32)),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1")
ID_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "32FC1")
#: Largest image accepted (pixels); protects nodes from absurd headers.
MAX_PIXELS = 8192 * 8192


def bytes_per_pixel(encoding: str) -> int:
    """Bytes of one pixel in ``encoding`` (``ValueError`` when unsupported)."""
    _check_encoding(encoding, tuple(ENCODINGS))
    ch, dt = ENCODINGS[encoding]
    return ch * dt.itemsize


def _check_encoding(encoding, allowed: tuple[str, ...], what: str = "image") -> None:
    if not isinstance(encoding, str) or encoding not in allowed:
        raise ValueError(f"unsupported {what} encoding {encoding!r}; supported: {', '.join(allowed)}")


def check_image(height: int, width: int, encoding: str, step: int, is_bigendian, data, allowed: tuple[str, ...] | None = None,
                what: str = "image") -> np.ndarray:
    """Validate the header of a ROS image against its data without decoding it (cheap enough for a
    subscription callback). Returns ``data`` as a flat uint8 array; ``ValueError`` names the problem."""
    _check_encoding(encoding, tuple(ENCODINGS) if allowed is None else allowed, what)
    for name, v in (("height", height), ("width", width), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"image {name} must be an int >= 0, got {v!r}")
    height, width, step = int(height), int(width), int(step)
    if height == 0 or width == 0:
        raise ValueError(f"image is empty ({width}x{height} pixels, width x height)")
    if height * width > MAX_PIXELS:
        raise ValueError(f"image of {width}x{height} pixels (width x height) exceeds the limit of {MAX_PIXELS} pixels")
    ch, dt = ENCODINGS[encoding]
    row = width * ch * dt.itemsize
    if step < row:
        raise ValueError(f"image step {step} is smaller than width * bytes_per_pixel = {width} * {ch * dt.itemsize} = {row} ({encoding})")
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"image data is not a byte buffer: {e}") from e
    need = step * height
    if buf.size < need:
        raise ValueError(f"image data is truncated: {buf.size} bytes, expected step * height = {step} * {height} = {need}")
    if buf.size > need:
        raise ValueError(f"image data is too long: {buf.size} bytes, expected step * height = {step} * {height} = {need}")
    return buf


def image_array(height: int, width: int, encoding: str, step: int, is_bigendian, data) -> np.ndarray:
    """The pixels of a ROS image as ``(H, W)`` or ``(H, W, C)`` in the encoding's dtype (native byte order).

    Honours row padding (``step > width * bytes_per_pixel``) and ``is_bigendian`` for 16/32-bit
    encodings. Returns a new contiguous array (never a view of ``data``).
    """
    buf = check_image(height, width, encoding, step, is_bigendian, data)
    height, width, step = int(height), int(width), int(step)
    ch, dt = ENCODINGS[encoding]
    row = width * ch * dt.itemsize
    rows = buf.reshape(height, step)[:, :row]
    order = ">" if is_bigendian else "<"
    arr = np.ascontiguousarray(rows).view(dt.newbyteorder(order) if dt.itemsize > 1 else dt)
    arr = arr.reshape(height, width, ch).astype(dt, copy=True)  # to native byte order
    return arr[..., 0] if ch == 1 else arr


def image_to_rgb(height: int, width: int, encoding: str, step: int, is_bigendian, data) -> np.ndarray:
    """A colour or grey ROS image -> ``(H, W, 3)`` uint8 RGB."""
    _check_encoding(encoding, COLOR_ENCODINGS, "colour image")
    a = image_array(height, width, encoding, step, is_bigendian, data)
    if encoding in ("rgb8", "rgba8"):
        out = a[..., :3]
    elif encoding in ("bgr8", "bgra8"):
        out = a[..., 2::-1]
    elif a.dtype == np.uint16:
        out = np.repeat((a >> 8).astype(np.uint8)[..., None], 3, axis=2)
    else:
        out = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(out, dtype=np.uint8)


def image_to_ids(height: int, width: int, encoding: str, step: int, is_bigendian, data) -> np.ndarray:
    """An instance-id image -> ``(H, W)`` integer ids (uint8 for 8-bit, uint16 for 16-bit, int32 for 32FC1)."""
    _check_encoding(encoding, ID_ENCODINGS, "instance-id image")
    a = image_array(height, width, encoding, step, is_bigendian, data)
    if encoding == "32FC1":
        if not np.all(np.isfinite(a)):
            raise ValueError("32FC1 instance ids contain NaN or inf")
        if np.any(a < 0) or np.any(a != np.round(a)) or np.any(a > 65535):
            raise ValueError("32FC1 instance ids must be whole numbers in 0..65535")
        return a.astype(np.int32)
    return a


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8") -> dict:
    """``(H, W, 3)`` uint8 RGB -> the fields of a ROS image (``height, width, encoding, step, is_bigendian, data``)."""
    _check_encoding(encoding, ("rgb8", "bgr8"), "output colour image")
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"rgb must be a non-empty (H, W, 3) uint8 array, got {a.shape} {a.dtype}")
    if encoding == "bgr8":
        a = a[..., ::-1]
    h, w = a.shape[:2]
    return {"height": h, "width": w, "encoding": encoding, "step": w * 3, "is_bigendian": 0,
            "data": np.ascontiguousarray(a).tobytes()}


def ids_to_image(ids: np.ndarray, encoding: str | None = None) -> dict:
    """``(H, W)`` integer ids -> ROS image fields: mono8 when every id fits 0..255, else 16UC1."""
    a = np.asarray(ids)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"ids must be a non-empty (H, W) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer) and a.dtype != bool:
        raise ValueError(f"ids must be integers, got dtype {a.dtype}")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi > 65535:
        raise ValueError(f"ids must be in 0..65535, got [{lo}, {hi}]")
    if encoding is None:
        encoding = "mono8" if hi <= 255 else "16UC1"
    _check_encoding(encoding, ("mono8", "16UC1"), "output id image")
    if encoding == "mono8" and hi > 255:
        raise ValueError(f"id {hi} does not fit mono8; use 16UC1")
    dt = np.dtype("<u2") if encoding == "16UC1" else np.dtype(np.uint8)
    h, w = a.shape
    return {"height": h, "width": w, "encoding": encoding, "step": w * dt.itemsize, "is_bigendian": 0,
            "data": np.ascontiguousarray(a.astype(dt)).tobytes()}


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``(height, width, 3)``: box filter (area average) via Pillow."""
    a = np.asarray(rgb)
    if a.shape[:2] == (height, width):
        return a
    from PIL import Image as _PIL

    return np.asarray(_PIL.fromarray(a).resize((int(width), int(height)), _PIL.BOX), dtype=np.uint8)


def resize_ids(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an id map (pixel centres are sampled; ids are never mixed)."""
    a = np.asarray(ids)
    h, w = a.shape
    if (h, w) == (height, width):
        return a
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return a[rows[:, None], cols[None, :]]


def finite_or_reason(**values: float) -> str:
    """``""`` when every value is a finite number, else a reason naming the first bad one."""
    for k, v in values.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            return f"{k} is not a number ({v!r})"
        if not math.isfinite(f):
            return f"{k} is {f} (must be finite)"
    return ""
