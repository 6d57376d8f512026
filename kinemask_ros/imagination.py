"""Imagine and score a given list of candidate pushes (the pure core of the ``ImagineOutcomes``
service), and turn imagined rollouts into frames for ``PredictedRollout`` messages.

No rclpy here: the world-model node only converts messages and calls :func:`imagine_candidates`
and :func:`rollout_frames`; the planner node calls :func:`rollout_frames` for its top candidates.

    imag = imagine_candidates(pipeline, contact, image, mask, strokes, goal_xy=(0.05, 0.0), target_id=2)
    imag.order          # valid candidates, best first
    imag.reasons[i]     # why candidate i is invalid ("" when valid)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kinemask_ros.admission import Deadline
from kinemask_ros.contact import ContactModel
from kinemask_ros.object_scene import object_ids  # noqa: F401  (re-exported: the nodes import it from here)
from kinemask_ros.planning import Imagined, WorldModelDynamics, make_dynamics, slot_limit
from kinemask_ros.push import PushBounds, PushStroke
from kinemask_ros.scoring import TERM_NAMES, Goal, ScoreConfig, score_tracks

STROKE_FIELDS = ("x", "y", "theta", "length", "speed")


def stroke_or_reason(values) -> tuple[PushStroke | None, str]:
    """``(x, y, theta, length, speed)`` -> ``(PushStroke, "")`` or ``(None, reason)`` (NaN/inf, length <= 0, ...)."""
    try:
        vals = [float(v) for v in values]
        if len(vals) != 5:
            return None, f"a stroke needs 5 values {STROKE_FIELDS}, got {len(vals)}"
        return PushStroke(*vals), ""
    except (TypeError, ValueError) as e:
        return None, f"invalid stroke: {e}"


def goal_from_table(contact: ContactModel, goal_xy, height: int, width: int, yaw: float | None = None) -> Goal:
    """Goal pixel of a table point ``(x, y)`` [m] at half the object height, optionally with a final
    ``yaw`` [rad] (``ValueError`` if outside the ``height x width`` image or not finite)."""
    g = Goal.from_table(contact.camera, goal_xy, contact.config.object_height / 2, yaw)
    g.check_inside(height, width)
    return g


@dataclass
class Imagination:
    """Scores of ``N`` requested candidates (same order as the request).

    Attributes:
        strokes: parsed strokes (None where the request's values were invalid).
        target_ids: ``(N,)`` object each candidate was scored for (0 = none: a miss or invalid).
        contact_ids: ``(N,)`` object the stroke touches first according to the contact model.
        total: ``(N,)`` total cost (inf for invalid candidates).
        terms: name -> ``(N,)`` unweighted term values (NaN for invalid candidates).
        weights: name -> weight used in ``total``.
        valid: ``(N,)`` bool; reasons: why each invalid candidate is invalid.
        tracks: ``(N, S, K, T, 2)`` imagined object centres [px] (NaN rows for invalid candidates).
        present: ``(K,)`` slots holding an object.
        order: indices of the valid candidates, best (lowest total) first.
        poses: ``(N, S, K, T, 3)`` imagined SE(2) poses ``(x, y, yaw)`` [m, rad] in the table frame
            (object model only; None for the raster model; NaN rows for invalid candidates).
    """

    strokes: list[PushStroke | None]
    target_ids: np.ndarray
    contact_ids: np.ndarray
    total: np.ndarray
    terms: dict[str, np.ndarray]
    weights: dict[str, float]
    valid: np.ndarray
    reasons: list[str]
    tracks: np.ndarray
    present: np.ndarray
    order: np.ndarray
    poses: np.ndarray | None = None


def imagine_candidates(pipeline, contact: ContactModel, image: np.ndarray, instance_mask: np.ndarray, strokes: list,
                       goal_xy, target_id: int = 0, num_samples: int = 2, num_inference_steps: int = 8,
                       score_config: ScoreConfig | None = None, generator: torch.Generator | None = None,
                       bounds: PushBounds | None = None, bounds_params: dict[str, str] | None = None,
                       deadline: Deadline | None = None, chunk: int = 64, goal_yaw: float | None = None) -> Imagination:
    """Imagine every candidate with the world model and score it against a goal.

    Args:
        pipeline: a :class:`~kinemask_ros.world_model.pipeline.KineMaskPipeline`.
        contact: contact model of the camera (strokes -> velocities / driver masks).
        image: ``(H, W, 3)`` uint8 at model resolution; instance_mask: ``(H, W)`` ids 1..K.
        strokes: ``N`` items of 5 numbers ``(x, y, theta, length, speed)`` or :class:`PushStroke`.
            Malformed ones (NaN, inf, length <= 0, ...) become invalid candidates with a reason.
        goal_xy: table point [m] the target should reach; ``goal_yaw`` its final yaw [rad]
            (scored by the ``goal_yaw`` term; None = any orientation).
        target_id: object to score for; 0 = the object each stroke touches first (a miss is
            then an invalid candidate).
        bounds: strokes outside this box are invalid candidates (never imagined: the model was
            not trained there); ``bounds_params`` names the parameters in the reason.
        deadline: time budget; candidates are imagined in batches of ``chunk`` and those not
            reached when it expires are invalid with the reason (the others are scored).

    Raises ``ValueError`` for request-level problems (no candidates, bad image, unknown target,
    goal outside the image, mask without objects).
    """
    cfg = pipeline.config
    H, W = instance_mask.shape
    if len(strokes) == 0:
        raise ValueError("no candidates in the request")
    present_ids = object_ids(instance_mask)
    if not present_ids:
        raise ValueError("the instance mask holds no object (ids 1..K): nothing to push")
    limit = slot_limit(pipeline)
    if max(present_ids) > limit:
        raise ValueError(f"the instance mask holds id {max(present_ids)} but the world model has {limit} object slots (ids 1..{limit})")
    K = max(present_ids) if getattr(pipeline, "object_model", None) is not None else cfg.max_objects
    if target_id and target_id not in present_ids:
        raise ValueError(f"target id {target_id} is not in the instance mask (ids present: {present_ids})")
    goal = goal_from_table(contact, goal_xy, H, W, goal_yaw)
    sc = score_config or ScoreConfig()
    N = len(strokes)
    parsed: list[PushStroke | None] = []
    reasons = [""] * N
    for i, s in enumerate(strokes):
        if isinstance(s, PushStroke):
            parsed.append(s)
            continue
        st, why = stroke_or_reason(s)
        parsed.append(st)
        reasons[i] = why
    if bounds is not None:
        for i, st in enumerate(parsed):
            why = bounds.violation(st, bounds_params) if st is not None else ""
            if why:
                parsed[i], reasons[i] = None, why
    ok = [i for i, s in enumerate(parsed) if s is not None]
    total = np.full(N, np.inf)
    terms = {k: np.full(N, np.nan) for k in TERM_NAMES}
    valid = np.zeros(N, bool)
    tids = np.zeros(N, np.int64)
    cids = np.zeros(N, np.int64)
    T = cfg.num_frames
    tracks = np.full((N, num_samples, K, T, 2), np.nan, np.float32)
    poses = None
    present = np.zeros(K, bool)
    present[[i - 1 for i in present_ids]] = True
    if ok:
        dyn = make_dynamics(pipeline, contact, image, instance_mask, num_samples, num_inference_steps, generator)
        parts: list[Imagined] = []
        done = 0
        while done < len(ok) and not (done and deadline is not None and deadline.expired):
            parts.append(dyn([parsed[i] for i in ok[done:done + chunk]]))
            done += len(parts[-1].target_ids)
        for i in ok[done:]:
            reasons[i] = (f"not imagined: the time budget of {deadline.budget_s:g} s ran out after {done} of {len(ok)} candidates "
                          f"(parameter time_budget_s)")
        ok = ok[:done]
        im = Imagined(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("tracks", "target_ids", "present")),
                      poses=np.concatenate([p.poses for p in parts]) if parts[0].poses is not None else None)
        tracks[ok] = im.tracks
        if im.poses is not None:
            poses = np.full((N, num_samples, K, T, 3), np.nan, np.float32)
            poses[ok] = im.poses
        cids[ok] = im.target_ids
        mpp = 1.0 / contact.camera.pixels_per_metre(contact.config.object_height / 2)
        want = np.where(np.asarray(im.target_ids) > 0, im.target_ids, 0) if not target_id else np.full(len(ok), target_id)
        for t in sorted(set(int(x) for x in want)):
            sel = [j for j in range(len(ok)) if want[j] == t]
            idx = [ok[j] for j in sel]
            if t == 0:
                for i in idx:
                    reasons[i] = "the stroke touches no object (a miss); set target_id to score misses"
                continue
            lengths = np.array([parsed[i].length for i in idx])
            s = score_tracks(im.tracks[sel], t, goal, mpp, (H, W), lengths, sc, im.present[sel],
                             im.poses[sel] if im.poses is not None else None)
            total[idx] = s.total
            for k in TERM_NAMES:
                terms[k][idx] = s.terms[k]
            valid[idx] = s.valid
            tids[idx] = t
            for i, r in zip(idx, s.reasons):
                reasons[i] = r
    total = np.where(valid, total, np.inf)
    key = np.where(valid, total, np.inf)
    order = np.array([i for i in np.argsort(key, kind="stable") if valid[i]], dtype=np.int64)
    weights = {k: float(sc.weights.get(k, 0.0)) for k in TERM_NAMES}
    return Imagination(parsed, tids, cids, total, terms, weights, valid, reasons, tracks, present, order, poses)


@dataclass
class RolloutFrames:
    """Frames of ``n`` imagined rollouts at the video model's frame times.

    Attributes:
        frames: ``(n, Tv, H, W, 3)`` uint8; frame 0 is the input image.
        masks: ``(n, Tv, H, W)`` uint8 instance ids (0 background, k = slot k).
        tracks: ``(n, K, Tv, 2)`` object centres [px] at those frames (NaN for absent slots).
        areas: ``(n, K, Tv)`` mask areas [px].
        frame_indices: which track frames ``0..T-1`` the video frames are.
        source: "video_model" (the checkpoint's video denoiser), "track_warp" (raster model without
            a video model: each object's pixels are shifted along its imagined track) or
            "se2_warp" (object model: each object's pixels moved rigidly along its imagined SE(2)
            pose track, uncovered table filled in; :mod:`kinemask_ros.preview`).
        poses: ``(n, K, Tv, 3)`` SE(2) poses ``(x, y, yaw)`` [m, rad] in the table frame at those
            frames (object model only, else None).
    """

    frames: np.ndarray
    masks: np.ndarray
    tracks: np.ndarray
    areas: np.ndarray
    frame_indices: list[int]
    source: str
    poses: np.ndarray | None = None


def warp_frames(image: np.ndarray, instance_mask: np.ndarray, tracks: np.ndarray, frame_indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Render frames without a video model: move each object's pixels by its imagined displacement.

    Args:
        image: ``(H, W, 3)`` uint8; instance_mask: ``(H, W)`` ids 1..K.
        tracks: ``(n, K, T, 2)`` object centres [px] (frame 0 = the measured centroids).
    Returns ``frames (n, Tv, H, W, 3)`` uint8 and ``masks (n, Tv, H, W)`` uint8. Vacated pixels
    get the dominant background colour; later slots are drawn over earlier ones.
    """
    img = np.asarray(image)
    m = np.asarray(instance_mask)
    H, W = m.shape
    n, K = tracks.shape[:2]
    bg_pixels = img[m == 0]
    bg = np.median(bg_pixels, axis=0).astype(np.uint8) if bg_pixels.size else np.zeros(3, np.uint8)
    frames = np.empty((n, len(frame_indices), H, W, 3), np.uint8)
    masks = np.zeros((n, len(frame_indices), H, W), np.uint8)
    objs = {k: np.nonzero(m == k) for k in range(1, K + 1)}
    base = img.copy()
    base[(m > 0)] = bg
    for b in range(n):
        for j, t in enumerate(frame_indices):
            f = base.copy()
            mk = masks[b, j]
            for k, (rows, cols) in objs.items():
                if rows.size == 0:
                    continue
                d = tracks[b, k - 1, t] - tracks[b, k - 1, 0]
                if not np.all(np.isfinite(d)):
                    continue
                r = rows + int(round(float(d[1])))
                c = cols + int(round(float(d[0])))
                inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
                f[r[inside], c[inside]] = img[rows[inside], cols[inside]]
                mk[r[inside], c[inside]] = k
            frames[b, j] = f
    return frames, masks


def rollout_frames(pipeline, contact: ContactModel, image: np.ndarray, instance_mask: np.ndarray, strokes: list[PushStroke],
                   tracks: np.ndarray | None = None, video_inference_steps: int = 10,
                   generator: torch.Generator | None = None, poses: np.ndarray | None = None,
                   draw_paths: bool = False) -> RolloutFrames:
    """Frames for ``n`` strokes: the checkpoint's video model when it has one, else a track warp.

    ``tracks (n, K, T, 2)`` (e.g. sample 0 of the scored rollouts) are used for the track-warp
    fallback and for the returned tracks; when None, the track model is run once more. With an
    object model (v2) the frames are always the SE(2) warp of its poses ``(n, K, T, 3)`` (given, or
    imagined once more), so that the pictures show the same motion that was scored, rotations
    included (the raster video model only knows ``K`` slots and its own raster tracks).
    ``draw_paths`` draws each stroke's pusher path on its frames.
    """
    from kinemask_ros.preview import CameraMapping, draw_path, warp_se2

    cfg = pipeline.config
    s = cfg.video_frame_stride
    idx = list(range(0, cfg.num_frames, s))
    dyn = make_dynamics(pipeline, contact, image, instance_mask, 1, 8, generator)
    mapping = CameraMapping.from_camera(contact.camera, contact.config.object_height / 2)
    pose_out = None
    if pipeline.video_model is not None and isinstance(dyn, WorldModelDynamics):
        inp = dyn.inputs(strokes)
        inp.pop("_targets")
        out = pipeline(**inp, num_samples=1, return_video=True, video_inference_steps=video_inference_steps, generator=generator)
        frames = (out.frames.permute(0, 1, 3, 4, 2).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        om = out.object_masks.cpu().numpy()  # (n, Tv, K, H, W) bool
        ids = np.arange(1, om.shape[2] + 1, dtype=np.uint8)[None, None, :, None, None]
        masks = (om * ids).max(2).astype(np.uint8)
        tr = out.tracks[:, 0].cpu().numpy() if tracks is None else np.asarray(tracks)
        source = "video_model"
    elif isinstance(dyn, WorldModelDynamics):
        tr = dyn(strokes).tracks[:, 0] if tracks is None else np.asarray(tracks)
        frames, masks = warp_frames(image, instance_mask, tr, idx)
        source = "track_warp"
    else:
        if poses is None:
            im = dyn(strokes)
            poses, tr = im.poses[:, 0], im.tracks[:, 0]
        else:
            poses = np.asarray(poses)
            tr = contact.camera.project_table(poses[..., :2], contact.config.object_height / 2).astype(np.float32)
        pose_out = poses[:, :, idx]
        frames, masks = warp_se2(image, instance_mask, pose_out, mapping)
        masks = masks.astype(np.uint8)
        source = "se2_warp"
    if draw_paths:
        for b, st in enumerate(strokes):
            draw_path(frames[b], st, mapping)
    K = np.asarray(tr).shape[1]
    areas = np.stack([(masks == k).sum((-1, -2)) for k in range(1, K + 1)], 1).astype(np.float32)  # (n, K, Tv)
    return RolloutFrames(frames, masks, np.asarray(tr)[:, :, idx], areas, idx, source, pose_out)
