"""Your own data: one executed push -> one training episode of the object dataset (pure logic, no rclpy).

``kinemask-record`` (:mod:`kinemask_ros.ros.recorder_node`) records pushes from a running graph;
this module does everything that is not message handling, so it is tested without ROS:

1. **First frame -> ``masks``.** The clip's first instance-id image (camera pixels) is rectified
   (nearest) through the table plane into the canonical top-down frame the object dataset uses:
   the ``mask_size`` x ``mask_size`` image of the default top-down camera
   (``CameraModel(CameraConfig(width=S, height=S))``: 1.5 m above the 0.40 m table). Objects
   are rectified at half their height (``object_height / 2``, the plane
   :meth:`~kinemask_ros.object_scene.ObjectScene.from_mask` reads masks at), with a
   :class:`~kinemask_ros.table_frame.TableFrame` whose raster on that plane *is* the canonical
   camera's pixel grid, so ``ObjectScene.from_mask(masks[e], CameraModel(CameraConfig(S, S)))``
   gives back the poses recorded in ``states[e, 0]``. Height approximation (as everywhere in the
   plugin): an oblique camera sees an object's sides and top behind its footprint, so rectified
   footprints are stretched along the viewing direction by about ``h/2 cot(elevation)`` on each
   side (1.5 cm at 45 deg for 3 cm objects); centroids stay unbiased. Fine-tuning on recordings
   teaches the model exactly this look of the user's camera.
2. **Every frame -> ``states``.** Each frame of the clip is rectified the same way and every
   object's SE(2) pose ``(x, y, yaw)`` [m, rad] is measured with ``ObjectScene.from_mask``;
   yaw is unwrapped across frames (elongated footprints: the major axis, modulo pi; near-square
   ones: the 4-fold orientation of the footprint, modulo pi/2; disks: not observable, kept at the
   first frame's 0). Velocities ``(vx, vy, wz)`` are finite differences (``np.gradient``, central
   inside the clip) over ``frame_dt_s``.
3. **Ids.** The clip's ids must be stable across frames (the simulator's ids on ``sim/outcome``,
   the tracker's on ``segmentation/objects``). Objects are the ids of the first frame (0 and 255,
   the pusher, excluded; specks below ``min_area_px`` canonical pixels are segmentation noise and
   removed, counted in ``RecordedEpisode.ignored_ids``), relabelled ``1..k`` in ascending order
   so that ``masks`` id ``j`` is ``states[:, :, j - 1]`` (what the trainer assumes).
4. **Rules that drop an episode** (:class:`EpisodeRejected`, with a short ``reason`` that the
   writer counts in ``manifest.json`` and the node logs; nothing is dropped silently):
   ``size_mismatch`` (a mask is not the calibration's size), ``no_objects``, ``too_many_objects``
   (more than the dataset's 8 slots), ``object_vanished`` (an object of the first frame is below
   ``min_area_px`` in a later frame: occluded, segmented away or pushed off the table),
   ``id_appeared`` (an id that is not in the first frame appears later: a tracker id switch or a
   new object), ``object_out_of_view`` (an object touches the border of the canonical frame or
   the part of it the camera does not see: its pose would be biased), ``clip_too_short`` (the
   clip does not cover ``num_frames`` frames at ``frame_dt_s``), and, in the node:
   ``no_calibration`` (no valid CameraInfo + table pose yet), ``bad_stroke`` / ``bad_message``
   (NaN stroke, undecodable mask), ``no_stroke`` (an outcome whose stroke the recorder did not
   hear), and for the camera source ``no_first_frame`` (no segmented frame just before the
   stroke), ``clip_timeout`` (the stream stopped before the clip's end), ``busy`` (a stroke while
   the previous clip is still being recorded).
5. **Pushed object** (``pushed``, 1-based, 0 = miss): among the objects that end up moved by more
   than ``move_m`` (5 mm), the one whose motion (> ``start_m`` = 2 mm) starts first; at a tie the
   stroke's geometric first touch (the planner's rule) if it is among them, else the one that moved
   most by that frame.
6. **Writer.** :class:`RecordingWriter` appends episodes to ``shard_XXXXX.npz`` files of the
   object dataset format (``masks (n, S, S)`` uint8, ``states (n, T, 8, 6)`` float32,
   ``strokes (n, 5)``, ``num_objects``, ``curriculum`` (:data:`RECORDED_CURRICULUM` = -1),
   ``pushed``, ``specs (n, 8, 5)`` (shape 0 box / 1 cylinder from the footprint, half extents
   ``a, b`` [m], mass and friction 0 = unknown), ``seeds`` (the running episode number)), so
   :func:`kinemask_ros.sim_bridge.object_dataset.load_episodes` and ``kinemask-train-objects``
   read them unchanged. A shard is written to ``tmp_shard_XXXXX.tmp.npz`` (which the loader's
   ``shard_*.npz`` glob never matches), fsynced and ``os.replace``-d into place; ``manifest.json``
   likewise. Shards are flushed every ``episodes_per_shard`` episodes and on :meth:`close`, so an
   interruption loses at most the unflushed episodes and never leaves a broken shard; reopening
   the directory appends after the last complete shard.

    rec = RecordingWriter("data/recorded", RecorderConfig(), calibration=calib)
    ep = episode_from_clip(masks, stroke, calib, RecorderConfig())   # masks (T, H, W) camera ids
    rec.add(ep); rec.close()
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.object_scene import IGNORED_IDS, ObjectScene
from kinemask_ros.push import PushStroke
from kinemask_ros.table_frame import CameraCalibration, Rectifier, TableFrame

#: the object dataset's format name / version (``sim_bridge/object_dataset.py``); recordings are the same format
FORMAT = "kinemask_ros.object_dataset"
FORMAT_VERSION = 1
#: object slots of the dataset (``states[:, :, :MAX_OBJECTS]``)
MAX_OBJECTS = 8
#: ``curriculum`` value of recorded episodes (generator curricula are 0..5)
RECORDED_CURRICULUM = -1
CLIP_SOURCES = ("outcome", "camera")
#: reasons an episode can be dropped for (the summary always lists all of them)
DROP_REASONS = ("size_mismatch", "no_objects", "too_many_objects", "object_vanished", "id_appeared", "object_out_of_view",
                "clip_too_short", "no_calibration", "no_first_frame", "clip_timeout", "busy", "bad_stroke", "bad_message", "no_stroke")
PUSHER_ID = 255


@dataclass(frozen=True)
class RecorderConfig:
    """``kinemask-record`` settings (every field is a ROS parameter of the node of the same name).

    Attributes:
        out: dataset directory (created; an existing recording there is appended to).
        max_episodes: stop (and exit) after this many recorded episodes in this run (0 = no limit).
        clip_source: "outcome" = the simulator's ``sim/outcome`` clip (PredictedRollout masks);
            "camera" = the segmented camera stream (``segmentation/objects``, tracker ids) during
            the stroke: the clip starts at the newest segmented frame before the stroke arrived.
        stroke_topic: executed strokes (kinemask_ros_interfaces/PushStroke), e.g.
            ``sim/execute_push`` or the topic your robot's push controller consumes.
        outcome_topic, objects_topic: the clip topics of the two sources.
        camera_info_topic, table_pose_topic: calibration (CameraInfo of the segmented images, and
            the table pose as geometry_msgs/TransformStamped; /tf_static is read too where tf2_msgs exists).
        table_frame_id: the table's TF frame.
        num_frames, frame_dt_s: the episode's clip: frames and their spacing [s] (the dataset's 16 / 0.08).
        episodes_per_shard: episodes per shard file (a shard is also flushed on shutdown).
        mask_size: canonical mask resolution ``S`` (the dataset's 128; training resamples to 32/64/128).
        object_height: objects' nominal height [m]; masks are rectified at half of it.
        min_area_px: canonical pixels below which an object counts as absent (vanished / speck).
        clip_timeout_s: "camera": give up on a clip whose frames have not all arrived this long after the stroke.
        first_frame_max_age_s: "camera": the first frame must be at most this old when the stroke arrives.
    """

    out: str = "data/recorded"
    max_episodes: int = 0
    clip_source: str = "outcome"
    stroke_topic: str = "sim/execute_push"
    outcome_topic: str = "sim/outcome"
    objects_topic: str = "segmentation/objects"
    camera_info_topic: str = "camera/camera_info"
    table_pose_topic: str = "camera/table_pose"
    table_frame_id: str = "table"
    num_frames: int = 16
    frame_dt_s: float = 0.08
    episodes_per_shard: int = 50
    mask_size: int = 128
    object_height: float = 0.03
    min_area_px: int = 4
    clip_timeout_s: float = 5.0
    first_frame_max_age_s: float = 0.5

    def __post_init__(self) -> None:
        n = type(self).__name__
        if not isinstance(self.out, str) or not self.out.strip():
            raise ValueError(f"{n}.out must be a directory path, got {self.out!r}")
        for name, lo, hi in (("max_episodes", 0, 10**9), ("num_frames", 2, 1000), ("episodes_per_shard", 1, 100000),
                             ("mask_size", 16, 1024), ("min_area_px", 1, 10**6)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{n}.{name} must be an int in [{lo}, {hi}], got {v!r}")
        if self.clip_source not in CLIP_SOURCES:
            raise ValueError(f"{n}.clip_source must be one of {CLIP_SOURCES} (outcome = sim/outcome, camera = segmentation/objects), "
                             f"got {self.clip_source!r}")
        for name in ("stroke_topic", "outcome_topic", "objects_topic", "camera_info_topic", "table_pose_topic", "table_frame_id"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{n}.{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name, lo, hi in (("frame_dt_s", 1e-3, 10.0), ("object_height", 0.0, 1.0), ("clip_timeout_s", 0.1, 600.0),
                             ("first_frame_max_age_s", 1e-3, 60.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                raise ValueError(f"{n}.{name} must be a number in [{lo:g}, {hi:g}], got {v!r}")

    @property
    def clip_duration_s(self) -> float:
        return (self.num_frames - 1) * self.frame_dt_s


class EpisodeRejected(ValueError):
    """An executed push that does not make an episode; ``reason`` is one of :data:`DROP_REASONS`."""

    def __init__(self, reason: str, detail: str):
        assert reason in DROP_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class RecordedEpisode:
    """One episode in the object dataset's layout (one row of each shard array).

    Attributes:
        mask: ``(S, S)`` uint8 canonical first-frame ids ``1..k`` (0 background).
        states: ``(T, 8, 6)`` float32 ``x, y, yaw, vx, vy, wz`` [m, rad, m/s, rad/s]; slot ``j - 1`` = mask id ``j``.
        stroke: ``(5,)`` float32 ``x, y, theta, length, speed``.
        num_objects: ``k``; pushed: 1-based id of the pushed object (0 = miss).
        specs: ``(8, 5)`` float32 shape (0 box, 1 cylinder), half extents a, b [m], mass, friction (0 = unknown).
        source_ids: the clip's original id of each slot (``source_ids[j - 1]`` is mask id ``j``).
        ignored_ids: first-frame ids removed as specks (< ``min_area_px``).
        stamp_ns: time of the first frame (0 when unknown).
    """

    mask: np.ndarray
    states: np.ndarray
    stroke: np.ndarray
    num_objects: int
    pushed: int
    specs: np.ndarray
    source_ids: list[int]
    ignored_ids: list[int] = field(default_factory=list)
    stamp_ns: int = 0


# ----------------------------------------------------------------------------- canonical frame
def canonical_camera(mask_size: int = 128) -> CameraModel:
    """The dataset's top-down camera at ``mask_size`` px (the default :class:`CameraConfig` geometry)."""
    return CameraModel(CameraConfig(width=int(mask_size), height=int(mask_size)))


def canonical_frame(mask_size: int = 128, object_height: float = 0.03) -> TableFrame:
    """The :class:`TableFrame` whose raster on the plane ``z = object_height / 2`` equals the canonical camera's pixels.

    A top-down pinhole maps a horizontal plane by a pure scaling, so the canonical camera's image
    of the plane at half the object height is a metric square of half extent
    ``0.20 * (1.5 - h/2) / 1.5`` m (0.198 m for 3 cm objects).
    """
    cam = canonical_camera(mask_size)
    z = object_height / 2
    corner = cam.unproject_table(np.array([0.0, 0.0]), z)
    centre = cam.unproject_table(np.array([mask_size / 2, mask_size / 2]), z)
    return TableFrame(half_extent=float(abs(corner[0] - centre[0])), resolution=int(mask_size))


class ClipRectifier:
    """Rectifies instance-id images of one calibrated camera into the canonical mask frame (built once per calibration).

    Attributes:
        calib: the camera; frame: :func:`canonical_frame`; valid: ``(S, S)`` bool, canonical pixels the camera sees.
    """

    def __init__(self, calib: CameraCalibration, mask_size: int = 128, object_height: float = 0.03):
        self.calib, self.mask_size, self.object_height = calib, int(mask_size), float(object_height)
        self.frame = canonical_frame(mask_size, object_height)
        self._r = Rectifier(calib, self.frame, plane_z=object_height / 2, supersample=1)
        self.valid = self._r.valid.copy()

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """``(H, W)`` camera ids -> ``(S, S)`` canonical ids (nearest; unseen pixels 0). ``EpisodeRejected('size_mismatch')``."""
        a = np.asarray(ids)
        if a.ndim != 2 or a.shape != (self.calib.height, self.calib.width):
            shape = f"{a.shape[1]}x{a.shape[0]}" if a.ndim == 2 else str(a.shape)
            raise EpisodeRejected("size_mismatch", f"an instance mask is {shape} but the CameraInfo says {self.calib.width}x"
                                  f"{self.calib.height}: segment the images of the camera whose camera_info the recorder reads "
                                  "(after any resize, publish a CameraInfo scaled with it)")
        return self._r(a, interpolation="nearest", fill=0)


# ----------------------------------------------------------------------------- clip -> episode
def resample_times(times_s: np.ndarray, num_frames: int, frame_dt_s: float) -> np.ndarray:
    """Indices ``(num_frames,)`` of the clip frames nearest to ``times_s[0] + k * frame_dt_s``.

    ``EpisodeRejected('clip_too_short')`` when a wanted time is more than half a frame from every
    clip frame (the clip ends early or has a gap).
    """
    t = np.asarray(times_s, float).reshape(-1)
    want = t[0] + np.arange(num_frames) * frame_dt_s
    idx = np.abs(t[None, :] - want[:, None]).argmin(1)
    err = np.abs(t[idx] - want)
    if np.any(err > frame_dt_s / 2 + 1e-9):
        k = int(np.argmax(err > frame_dt_s / 2 + 1e-9))
        raise EpisodeRejected("clip_too_short", f"no clip frame within {frame_dt_s / 2 * 1e3:.0f} ms of t = {want[k]:.3f} s "
                              f"(frame {k} of {num_frames}; the clip covers {t[-1] - t[0]:.3f} s in {t.size} frames)")
    return idx


def _orientation4(pts: np.ndarray) -> float:
    """4-fold orientation [rad, modulo pi/2] of a point set (a square's side direction)."""
    d = pts - pts.mean(0)
    z = d[:, 0] + 1j * d[:, 1]
    return float(np.angle(-np.sum(z**4)) / 4.0)


def _wrap(a: float, period: float) -> float:
    return (a + period / 2) % period - period / 2


def measure_poses(canon: np.ndarray, ids: list[int], camera: CameraModel, object_height: float) -> tuple[np.ndarray, ObjectScene]:
    """Poses ``(T, k, 3)`` and the first frame's scene of canonical clip ``canon (T, S, S)`` for objects ``ids``.

    Yaw is unwrapped across frames by the footprint's symmetry (module doc, point 2).
    """
    T = canon.shape[0]
    k = len(ids)
    z = object_height / 2
    out = np.zeros((T, k, 3))
    scenes = [ObjectScene.from_mask(np.where(np.isin(canon[t], ids), canon[t], 0), camera, object_height) for t in range(T)]
    s0 = scenes[0]
    row0 = {int(o): i for i, o in enumerate(s0.ids)}
    S = canon.shape[1]
    uu, vv = np.meshgrid(np.arange(S) + 0.5, np.arange(S) + 0.5)
    table = camera.unproject_table(np.stack([uu, vv], -1), z)  # (S, S, 2)
    for j, o in enumerate(ids):
        i0 = row0[o]
        disk = bool(s0.is_disk[i0])
        a, b = s0.extents[i0]
        elongated = (not disk) and a > 1.15 * b
        yaw = float(s0.poses[i0, 2])
        prev_sym = None
        for t in range(T):
            st = scenes[t]
            r = int(np.nonzero(st.ids == o)[0][0])
            out[t, j, :2] = st.poses[r, :2]
            if disk:
                out[t, j, 2] = yaw
                continue
            if elongated:
                sym, period = float(st.poses[r, 2]), math.pi
                if t == 0:
                    sym = yaw
            else:
                sym, period = _orientation4(table[canon[t] == o]), math.pi / 2
            if t == 0:
                out[t, j, 2], prev_sym = yaw, sym
                continue
            out[t, j, 2] = out[t - 1, j, 2] + _wrap(sym - prev_sym, period)
            prev_sym = sym
    return out, s0


def pushed_object(poses: np.ndarray, first_touch: int, move_m: float = 0.005, start_m: float = 0.002) -> int:
    """1-based index of the pushed object from measured poses ``(T, k, 3)`` (module doc, point 5); 0 = none moved."""
    disp = np.linalg.norm(poses[:, :, :2] - poses[:1, :, :2], axis=-1)  # (T, k)
    moved = np.nonzero(disp[-1] > move_m)[0]
    if moved.size == 0:
        return 0
    start = np.array([int(np.argmax(disp[:, j] > start_m)) if np.any(disp[:, j] > start_m) else disp.shape[0] for j in moved])
    first = moved[start == start.min()]
    if first_touch and (first_touch - 1) in first:
        return int(first_touch)
    t = int(start.min())
    return int(first[np.argmax(disp[t, first])] + 1)


def episode_from_canonical(canon: np.ndarray, stroke: PushStroke, cfg: RecorderConfig, valid: np.ndarray | None = None,
                           stamp_ns: int = 0, pusher_radius: float = 0.012) -> RecordedEpisode:
    """Canonical clip ``(num_frames, S, S)`` ids (already rectified and resampled in time) -> episode.

    ``valid`` ``(S, S)`` bool: canonical pixels the camera sees (None = all). Raises
    :class:`EpisodeRejected` by the rules of the module doc.
    """
    from kinemask_ros.world_model.objects import FEATURES, stroke_features

    canon = np.asarray(canon)
    T, S = canon.shape[0], cfg.mask_size
    if canon.shape[1:] != (S, S):
        raise EpisodeRejected("size_mismatch", f"canonical masks must be {S}x{S}, got {canon.shape[1:]}")
    if T != cfg.num_frames:
        raise EpisodeRejected("clip_too_short", f"the clip has {T} frames, the episode needs num_frames={cfg.num_frames}")
    skip = set(IGNORED_IDS) | {0}
    vals, counts = np.unique(canon[0], return_counts=True)
    area0 = {int(v): int(c) for v, c in zip(vals, counts) if int(v) not in skip}
    ids = sorted(o for o, c in area0.items() if c >= cfg.min_area_px)
    specks = sorted(o for o, c in area0.items() if c < cfg.min_area_px)
    if not ids:
        raise EpisodeRejected("no_objects", "the first frame has no object" + (f" (only specks {specks})" if specks else ""))
    if len(ids) > MAX_OBJECTS:
        raise EpisodeRejected("too_many_objects", f"{len(ids)} objects in the first frame, the dataset has {MAX_OBJECTS} slots")
    # touching the canonical image's border or the region the camera does not see = possibly cut
    unseen = np.zeros((S, S), bool)
    unseen[0, :] = unseen[-1, :] = unseen[:, 0] = unseen[:, -1] = True
    if valid is not None and not np.all(valid):
        from scipy.ndimage import binary_dilation

        unseen |= binary_dilation(~np.asarray(valid, bool))
    known = set(ids) | set(specks)
    for t in range(T):
        vals, counts = np.unique(canon[t], return_counts=True)
        area = {int(v): int(c) for v, c in zip(vals, counts) if int(v) not in skip}
        new = sorted(o for o, c in area.items() if o not in known and c >= cfg.min_area_px)
        if new:
            raise EpisodeRejected("id_appeared", f"ids {new} appear in frame {t} but are not in the first frame (a tracker id "
                                  f"switch or a new object); first-frame ids: {ids}")
        gone = [o for o in ids if area.get(o, 0) < cfg.min_area_px]
        if gone:
            raise EpisodeRejected("object_vanished", f"objects {gone} vanish in frame {t} (occluded, lost by the segmentation "
                                  f"or off the table)")
        cut = [o for o in ids if np.any(unseen & (canon[t] == o))]
        if cut:
            raise EpisodeRejected("object_out_of_view", f"objects {cut} touch the edge of the camera's view or of the "
                                  f"canonical frame in frame {t}")
    poses, s0 = measure_poses(canon, ids, canonical_camera(S), cfg.object_height)
    k = len(ids)
    f = stroke_features(s0, [stroke], pusher_radius)[0]
    ft = f[:, FEATURES.index("first_touch")] > 0
    first_touch = int(np.argmax(ft)) + 1 if ft.any() else 0  # s0 rows are ascending ids = slots 1..k
    states = np.zeros((T, MAX_OBJECTS, 6), np.float32)
    states[:, :k, :3] = poses
    states[:, :k, 3:] = np.gradient(poses, cfg.frame_dt_s, axis=0)
    mask = np.zeros((S, S), np.uint8)
    for j, o in enumerate(ids, start=1):
        mask[canon[0] == o] = j
    specs = np.zeros((MAX_OBJECTS, 5), np.float32)
    specs[:k, 0] = s0.is_disk.astype(np.float32)
    specs[:k, 1:3] = s0.extents
    return RecordedEpisode(mask=mask, states=states, stroke=stroke.as_array(), num_objects=k,
                           pushed=pushed_object(poses, first_touch), specs=specs, source_ids=list(ids), ignored_ids=specks,
                           stamp_ns=int(stamp_ns))


def episode_from_clip(masks, stroke: PushStroke, calib: CameraCalibration | ClipRectifier, cfg: RecorderConfig,
                      times_s: np.ndarray | None = None, stamp_ns: int = 0, pusher_radius: float = 0.012) -> RecordedEpisode:
    """A clip of camera-pixel instance-id images ``(n, H, W)`` + its stroke + calibration -> episode.

    ``times_s`` ``(n,)``: frame times [s] (None = ``frame_dt_s`` apart); the clip is resampled to
    ``num_frames`` frames at ``frame_dt_s`` (nearest frame). ``calib``: a
    :class:`CameraCalibration` or a prepared :class:`ClipRectifier` (reuse one per camera).
    """
    rect = calib if isinstance(calib, ClipRectifier) else ClipRectifier(calib, cfg.mask_size, cfg.object_height)
    if rect.mask_size != cfg.mask_size or rect.object_height != cfg.object_height:
        raise ValueError("the ClipRectifier was built for another mask_size / object_height than the RecorderConfig")
    masks = list(masks)
    if not masks:
        raise EpisodeRejected("clip_too_short", "the clip has no frames")
    t = np.arange(len(masks)) * cfg.frame_dt_s if times_s is None else np.asarray(times_s, float)
    if t.shape != (len(masks),):
        raise ValueError(f"times_s must have one time per mask ({len(masks)}), got shape {t.shape}")
    idx = resample_times(t, cfg.num_frames, cfg.frame_dt_s)
    canon = np.stack([rect(masks[i]) for i in idx])
    return episode_from_canonical(canon, stroke, cfg, rect.valid, stamp_ns, pusher_radius)


# ----------------------------------------------------------------------------- camera stream -> clip
class ClipBuffer:
    """The newest canonical masks of a segmented camera stream, for assembling clips by time ("camera" source).

    ``add(stamp_ns, canon)`` keeps frames for ``keep_s`` seconds; :meth:`clip` returns the
    ``num_frames`` frames nearest to ``t0 + k * frame_dt_s`` once the stream has passed the
    clip's end, where ``t0`` is the newest frame at or before the stroke's arrival.
    """

    def __init__(self, cfg: RecorderConfig, keep_s: float | None = None):
        self.cfg = cfg
        self.keep_ns = int(1e9 * (keep_s if keep_s is not None else cfg.clip_duration_s + cfg.clip_timeout_s + 2.0))
        self.stamps: list[int] = []
        self.frames: list[np.ndarray] = []

    def add(self, stamp_ns: int, canon: np.ndarray) -> None:
        if self.stamps and stamp_ns <= self.stamps[-1]:
            return  # out of order / repeated frame
        self.stamps.append(int(stamp_ns))
        self.frames.append(canon)
        cut = 0
        while cut < len(self.stamps) and self.stamps[-1] - self.stamps[cut] > self.keep_ns:
            cut += 1
        del self.stamps[:cut], self.frames[:cut]

    def first_frame(self, stroke_ns: int) -> int:
        """Stamp of the clip's first frame for a stroke that arrived at ``stroke_ns`` (``EpisodeRejected('no_first_frame')``)."""
        before = [s for s in self.stamps if s <= stroke_ns]
        if not before or stroke_ns - before[-1] > self.cfg.first_frame_max_age_s * 1e9:
            age = f"the newest is {(stroke_ns - before[-1]) / 1e9:.2f} s old" if before else "none received"
            raise EpisodeRejected("no_first_frame", f"no segmented frame within first_frame_max_age_s={self.cfg.first_frame_max_age_s:g} s "
                                  f"before the stroke ({age}): is the segmentation running on {self.cfg.objects_topic}?")
        return before[-1]

    def clip(self, t0_ns: int) -> np.ndarray | None:
        """``(num_frames, S, S)`` once frames past the clip's end have arrived, else None (wait)."""
        end = t0_ns + int(self.cfg.clip_duration_s * 1e9)
        if not self.stamps or self.stamps[-1] < end:
            return None
        i0 = self.stamps.index(t0_ns) if t0_ns in self.stamps else None
        if i0 is None:
            raise EpisodeRejected("no_first_frame", "the clip's first frame left the buffer (clip_timeout_s too long?)")
        st = np.array(self.stamps[i0:], float) / 1e9
        idx = resample_times(st, self.cfg.num_frames, self.cfg.frame_dt_s)
        return np.stack([self.frames[i0 + i] for i in idx])


# ----------------------------------------------------------------------------- writer
def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name("tmp_" + path.name.replace(".npz", ".tmp.npz") if path.suffix == ".npz" else "tmp_" + path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RecordingWriter:
    """Appends :class:`RecordedEpisode` s to an object dataset directory, atomically (module doc, point 6).

    Attributes:
        out: the directory; episodes: complete episodes on disk (earlier runs included);
        buffered: episodes not yet flushed; dropped: ``{reason: count}`` (this and earlier runs).
    """

    def __init__(self, out: str | Path, cfg: RecorderConfig, calibration: CameraCalibration | None = None, meta: dict | None = None):
        self.out, self.cfg = Path(out), cfg
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob("tmp_*"):  # an interrupted write: never a complete shard
            stale.unlink()
        self._buf: list[RecordedEpisode] = []
        self.manifest_path = self.out / "manifest.json"
        self.dropped = {r: 0 for r in DROP_REASONS}
        self.shards: list[dict] = []
        if self.manifest_path.exists():
            old = json.loads(self.manifest_path.read_text())
            if old.get("format") != FORMAT or old.get("version") != FORMAT_VERSION:
                raise ValueError(f"{self.out} holds {old.get('format')!r} v{old.get('version')}, not a {FORMAT} v{FORMAT_VERSION} "
                                 "recording: use another out directory")
            rc = old.get("recording", {})
            for key in ("mask_size", "num_frames", "frame_dt_s", "object_height"):
                if key in rc and rc[key] != getattr(cfg, key):
                    raise ValueError(f"{self.out} was recorded with {key}={rc[key]!r}, this recorder has {getattr(cfg, key)!r}: "
                                     "use another out directory (one dataset has one episode layout)")
            self.dropped.update({k: int(v) for k, v in old.get("dropped", {}).items()})
        present = sorted(self.out.glob("shard_*.npz"))
        self.shards = []
        self.episodes = 0
        for p in present:
            with np.load(p) as z:
                n = int(z["num_objects"].shape[0])
            self.shards.append({"file": p.name, "episodes": n})
            self.episodes += n
        self._next = (max(int(p.stem.split("_")[1]) for p in present) + 1) if present else 0
        self.meta = dict(meta or {})
        self.calibration = calibration
        self.recorded_this_run = 0
        self._write_manifest()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def set_calibration(self, calibration: CameraCalibration) -> None:
        self.calibration = calibration

    def add(self, ep: RecordedEpisode) -> None:
        """Buffer one episode; flushes a shard every ``episodes_per_shard``."""
        S, T = self.cfg.mask_size, self.cfg.num_frames
        if ep.mask.shape != (S, S) or ep.states.shape != (T, MAX_OBJECTS, 6):
            raise ValueError(f"episode shapes {ep.mask.shape} / {ep.states.shape} do not match this recording ({S}x{S}, {T} frames)")
        self._buf.append(ep)
        self.recorded_this_run += 1
        if len(self._buf) >= self.cfg.episodes_per_shard:
            self.flush()

    def drop(self, reason: str) -> None:
        """Count a dropped episode (one of :data:`DROP_REASONS`); the manifest is updated at once."""
        if reason not in self.dropped:
            raise ValueError(f"unknown drop reason {reason!r}; known: {DROP_REASONS}")
        self.dropped[reason] += 1
        self._write_manifest()

    def flush(self) -> Path | None:
        """Write the buffered episodes as one complete shard (tmp file + fsync + ``os.replace``); returns its path."""
        if not self._buf:
            self._write_manifest()
            return None
        eps, n = self._buf, len(self._buf)
        arrays = {"masks": np.stack([e.mask for e in eps]).astype(np.uint8),
                  "states": np.stack([e.states for e in eps]).astype(np.float32),
                  "strokes": np.stack([e.stroke for e in eps]).astype(np.float32),
                  "num_objects": np.array([e.num_objects for e in eps], np.int64),
                  "curriculum": np.full(n, RECORDED_CURRICULUM, np.int64),
                  "pushed": np.array([e.pushed for e in eps], np.int64),
                  "specs": np.stack([e.specs for e in eps]).astype(np.float32),
                  "seeds": np.arange(self.episodes, self.episodes + n, dtype=np.int64)}
        path = self.out / f"shard_{self._next:05d}.npz"
        _atomic_write_bytes(path, lambda f: np.savez_compressed(f, **arrays))
        self.shards.append({"file": path.name, "episodes": n, "first_stamp_ns": int(eps[0].stamp_ns), "last_stamp_ns": int(eps[-1].stamp_ns)})
        self._next += 1
        self.episodes += n
        self._buf = []
        self._write_manifest()
        return path

    def close(self) -> None:
        """Flush what is buffered and write the final manifest."""
        self.flush()

    def summary(self) -> dict:
        return {"episodes_on_disk": self.episodes, "buffered": len(self._buf), "recorded_this_run": self.recorded_this_run,
                "dropped": {k: v for k, v in self.dropped.items() if v}}

    def _write_manifest(self) -> None:
        c = self.calibration
        calib = None if c is None else {"K": np.asarray(c.K).tolist(), "D": np.asarray(c.D).tolist(), "width": c.width,
                                         "height": c.height, "T_cam_table": np.asarray(c.T_cam_table).tolist()}
        m = {"format": FORMAT, "version": FORMAT_VERSION, "source": "kinemask-record", "recording": asdict(self.cfg),
             "curriculum": {str(RECORDED_CURRICULUM): "recorded"}, "episodes": self.episodes, "shards": self.shards,
             "dropped": {k: v for k, v in self.dropped.items() if v}, "calibration": calib, **self.meta}
        _atomic_write_bytes(self.manifest_path, lambda f: f.write(json.dumps(m, indent=1).encode()))
