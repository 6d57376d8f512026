"""PushT world model: the object-token denoiser (:class:`ObjectTrackDenoiser`) with the T as one token.

Same pipeline as the tabletop object model (``kinemask_ros.world_model.objects``): one token per
object, expressed in the frame of the stroke (origin at its start, x along the push), a
transformer velocity field trained with rectified flow (``flow_match_pair``) in the resumable
``_Run`` (EMA, warm-up + cosine, ``state_objects.pt``), exported with ``save_pretrained``, sampled
with diffusers' ``FlowMatchEulerDiscreteScheduler``. What differs is the feature function:

* the T is not symmetric: its yaw enters as ``cos phi, sin phi`` (full 2 pi), not ``2 phi``;
* its footprint is the T polygon: the token carries the T's 8 keypoints in the stroke frame, and
  the exact first touch of the agent disk along the stroke (fraction of the stroke, contact point
  in the T's body frame, push depth after contact, corridor clearance) from the T's signed
  distance function, not from a box;
* the agent is the driver (no token of its own): stroke length and speed are on the token.

Targets: per future frame (one per env step of the sweep, padded with the last), the T's centre
of gravity displacement in the stroke frame and its rotation, normalised.

    model = PushTWorldModel.from_pretrained()      # the shipped kinemask_ros/checkpoints/pusht/model
    poses = model.predict(pose, strokes, num_samples=1)     # (N, S, T, 3) body-origin x, y, yaw [px, rad]

Training (the object-model command): ``kinemask-train-objects --env pusht --data data/pusht --out runs/pusht``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from kinemask_ros.envs.pusht import AGENT_RADIUS, COG, KEYPOINTS_LOCAL, closest_local, cog_of, local_distance, rot, to_local, wrap
from kinemask_ros.push import PushStroke
from kinemask_ros.world_model.objects import ObjectTrackDenoiser

FEATURES = ("cog_x", "cog_y", "cos_phi", "sin_phi", *[f"kp{i}_{a}" for i in range(8) for a in "xy"], "length", "speed", "touch_at",
            "touched", "contact_x", "contact_y", "depth", "clearance")
#: feature scales (px -> O(1))
POS_SCALE, LEN_SCALE, SPEED_SCALE, CONTACT_SCALE, GAP_SCALE = 100.0, 100.0, 250.0, 60.0, 20.0
#: target scales: cog displacement [px], rotation [rad]
DISP_SCALE, YAW_SCALE = 50.0, 0.5
PATH_SAMPLES = 96
META = "pusht_model.json"


def stroke_frame(strokes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``strokes (N, 5)`` -> start ``(N, 2)`` and rotation ``(N, 2, 2)`` whose rows are the push direction and its normal."""
    st = np.asarray(strokes, float).reshape(-1, 5)
    c, s = np.cos(st[:, 2]), np.sin(st[:, 2])
    return st[:, :2], np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)


def pusht_features(pose: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    """``(N, 1, F)`` float32 token features of the T at ``pose`` (``(3,)`` or ``(N, 3)``, body origin) for ``strokes (N, 5)``.

    ``F = len(FEATURES)``; strokes are ``x, y, theta, length, speed`` in px / px/s.
    """
    st = np.asarray(strokes, float).reshape(-1, 5)
    N = len(st)
    pose = np.broadcast_to(np.asarray(pose, float), (N, 3))
    start, R = stroke_frame(st)
    L, v = st[:, 3], st[:, 4]
    cog = cog_of(pose)
    rel = np.einsum("nij,nj->ni", R, cog - start)
    phi = wrap(pose[:, 2] - st[:, 2])
    kp = np.einsum("nij,nmj->nmi", R, to_world_many(pose, KEYPOINTS_LOCAL) - start[:, None])  # (N, 8, 2)
    s = np.linspace(0.0, 1.0, PATH_SAMPLES)
    d = R[:, 0]  # push direction
    path = start[:, None] + (s[None, :, None] * L[:, None, None]) * d[:, None]  # (N, M, 2)
    local = to_local(pose, path)  # (N, M, 2)
    dist = local_distance(local) - AGENT_RADIUS  # (N, M)
    touch = dist <= 0
    touched = touch.any(1)
    first = np.where(touched, touch.argmax(1), dist.argmin(1))
    at = s[first]
    cpt = local[np.arange(N), first]  # agent centre at first touch, body frame
    contact = closest_local(cpt)  # the T's outline point nearest the pusher at first touch (body frame)
    depth = np.where(touched, (1.0 - at) * L, 0.0)
    f = np.zeros((N, 1, len(FEATURES)), np.float32)
    f[:, 0, 0:2] = rel / POS_SCALE
    f[:, 0, 2], f[:, 0, 3] = np.cos(phi), np.sin(phi)
    f[:, 0, 4:20] = kp.reshape(N, 16) / POS_SCALE
    f[:, 0, 20], f[:, 0, 21] = L / LEN_SCALE, v / SPEED_SCALE
    f[:, 0, 22], f[:, 0, 23] = at, touched
    f[:, 0, 24:26] = (contact - COG) / CONTACT_SCALE
    f[:, 0, 26] = depth / LEN_SCALE
    f[:, 0, 27] = np.clip(dist.min(1) / GAP_SCALE, -3.0, 5.0)
    return f


def to_world_many(pose: np.ndarray, local: np.ndarray) -> np.ndarray:
    return np.einsum("nij,mj->nmi", rot(pose[:, 2]), local) + pose[:, None, :2]


def pusht_targets(tracks: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    """True T tracks ``(N, T, 3)`` (body origin) -> ``(N, 1, (T - 1) * 3)`` normalised stroke-frame cog motion."""
    tr = np.asarray(tracks, float)
    N, T = tr.shape[:2]
    _, R = stroke_frame(strokes)
    cog = cog_of(tr.reshape(-1, 3)).reshape(N, T, 2)
    dxy = np.einsum("nij,ntj->nti", R, cog[:, 1:] - cog[:, :1]) / DISP_SCALE
    dyaw = np.unwrap(tr[..., 2], axis=1)
    dyaw = (dyaw[:, 1:] - dyaw[:, :1]) / YAW_SCALE
    return np.concatenate([dxy, dyaw[..., None]], -1).reshape(N, 1, -1).astype(np.float32)


def tracks_from_targets(pose: np.ndarray, strokes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pusht_targets`: ``y (N, S, (T - 1) * 3)`` -> body-origin tracks ``(N, S, T, 3)``."""
    st = np.asarray(strokes, float).reshape(-1, 5)
    N, S = y.shape[:2]
    T = y.shape[-1] // 3 + 1
    y = y.reshape(N, S, T - 1, 3)
    pose = np.broadcast_to(np.asarray(pose, float), (N, 3))
    _, R = stroke_frame(st)
    cog0 = cog_of(pose)  # (N, 2)
    dxy = np.einsum("nij,nsti->nstj", R, y[..., :2] * DISP_SCALE)
    cog = cog0[:, None, None] + dxy
    yaw = pose[:, None, None, 2] + y[..., 2] * YAW_SCALE
    origin = cog - np.einsum("nstij,j->nsti", rot(yaw), COG)
    out = np.zeros((N, S, T, 3))
    out[:, :, 0] = pose[:, None]
    out[:, :, 1:, :2] = origin
    out[:, :, 1:, 2] = yaw
    return out


class PushTWorldModel:
    """T pose + strokes -> T tracks with an :class:`ObjectTrackDenoiser` (one token; pure inference)."""

    def __init__(self, denoiser: ObjectTrackDenoiser, scheduler=None, device: str | torch.device = "cpu"):
        if denoiser.config.feature_dim != len(FEATURES):
            raise ValueError(f"this denoiser takes {denoiser.config.feature_dim} features, the PushT token has {len(FEATURES)}")
        self.denoiser = denoiser.eval().to(device)
        self.num_frames = int(denoiser.config.num_frames)
        self.scheduler = scheduler or FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> "PushTWorldModel":
        path = Path(path) if path is not None else default_checkpoint()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a PushT world model (no config.json); train one with "
                                    f"kinemask-train-objects --env pusht")
        meta = json.loads((path / META).read_text()) if (path / META).is_file() else {}
        if meta.get("features", list(FEATURES)) != list(FEATURES):
            raise ValueError(f"{path} was trained with other token features ({meta.get('features')}); retrain it")
        return cls(ObjectTrackDenoiser.from_pretrained(path), device=device)

    def save_pretrained(self, path: str | Path) -> None:
        self.denoiser.save_pretrained(path)
        write_meta(Path(path))

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @torch.no_grad()
    def predict(self, pose: np.ndarray, strokes: np.ndarray | list[PushStroke], num_samples: int = 1, num_inference_steps: int = 4,
                generator: torch.Generator | None = None) -> np.ndarray:
        """``(N, S, T, 3)`` predicted body-origin poses of the T; frame 0 = ``pose``.

        Args:
            pose: ``(3,)`` (or ``(N, 3)``) the T's pose (x, y, yaw) [px, rad], body origin as gym-pusht reports it.
            strokes: ``(N, 5)`` x, y, theta, length, speed [px, rad, px, px/s] or a list of :class:`PushStroke`.
        """
        st = np.array([s.as_array() for s in strokes], float) if isinstance(strokes, list) else np.asarray(strokes, float).reshape(-1, 5)
        N, S, T = len(st), int(num_samples), self.num_frames
        if N == 0:
            return np.zeros((0, S, T, 3))
        f = torch.from_numpy(np.repeat(pusht_features(pose, st), S, 0)).to(self.device)
        pad = torch.zeros(N * S, 1, dtype=torch.bool, device=self.device)
        shape = (N * S, 1, (T - 1) * 3)
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(num_inference_steps, device=self.device)
        x = torch.randn(shape, generator=generator, device=self.device)
        for t in sched.timesteps:
            v = self.denoiser(x, t.expand(shape[0]).to(self.device), f, pad)
            x = sched.step(v, t, x).prev_sample
        y = x.cpu().numpy().reshape(N, S, -1)
        return tracks_from_targets(pose if np.ndim(pose) == 1 else np.asarray(pose), st, y)


def default_checkpoint() -> Path:
    """The shipped PushT model: ``kinemask_ros/checkpoints/pusht/model`` (its card is ``checkpoints/pusht/README.md``)."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "pusht" / "model"


def write_meta(path: Path) -> None:
    (Path(path) / META).write_text(json.dumps({"env": "pusht", "features": list(FEATURES), "units": "px of the 512 world",
                                                "targets": "stroke-frame cog dx, dy / 50 px, dyaw / 0.5 rad per env step"}, indent=1))


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class PushTTrainConfig:
    """``kinemask-train-objects --env pusht`` settings (a resumable run in ``out``).

    Attributes:
        data: directory of ``kinemask-generate-objects --env pusht``; out: run directory.
        steps, batch, lr: optimisation (AdamW, warm-up + cosine, EMA, rectified flow: ``_Run``).
        dim, layers, heads: transformer size of the :class:`ObjectTrackDenoiser`.
        ckpt_every: steps between resumable checkpoints (``state_objects.pt``) and exports to ``out/model``.
        (the last ``min(2048, 5 %)`` strokes of the data are never trained on; the benchmark's
        fidelity uses strokes from held-out seeds >= 10,000,000 instead.)
        device: "cpu" or "cuda"; threads: torch CPU threads (0 = default).
    """

    data: str = "data/pusht"
    out: str = "runs/pusht"
    steps: int = 12000
    batch: int = 256
    lr: float = 1e-3
    dim: int = 128
    layers: int = 3
    heads: int = 4
    ckpt_every: int = 500
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    max_episodes: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "dim", "layers", "heads", "ckpt_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"PushTTrainConfig.{name} must be an int >= 1, got {v!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"PushTTrainConfig.lr must be > 0, got {self.lr!r}")


def train(tc: PushTTrainConfig) -> Path:
    """Run (or resume) training; exports the EMA model to ``out/model`` every ``ckpt_every`` steps."""
    from kinemask_ros.sim_bridge.pusht_dataset import load_pusht
    from kinemask_ros.world_model.train import _Run

    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(tc), indent=1))
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = torch.device(tc.device)
    shards = len(list(Path(tc.data).glob("shard_*.npz")))
    cache = out / f"tokens_{shards}shards_{tc.max_episodes}.npz"
    if cache.exists():
        tok = dict(np.load(cache))
    else:
        d = load_pusht(tc.data, tc.max_episodes or None)
        tok = {"features": pusht_features(d["poses0"], d["strokes"]), "targets": pusht_targets(d["tracks"], d["strokes"])}
        np.savez(cache, **tok)
    T = tok["targets"].shape[-1] // 3 + 1
    model = ObjectTrackDenoiser(num_frames=T, feature_dim=len(FEATURES), dim=tc.dim, layers=tc.layers, heads=tc.heads)
    run = _Run("objects", model, tc.lr, tc.steps, tc, device)
    if run.step:
        print(f"resumed at step {run.step}", file=sys.stderr)
    feats, targ = torch.from_numpy(tok["features"]), torch.from_numpy(tok["targets"])
    n = len(feats)
    n_val = min(2048, n // 20)
    n_tr = n - n_val
    from kinemask_ros.world_model.objects import fit_tokens

    return fit_tokens(run, model, feats[:n_tr], targ[:n_tr], torch.zeros(n_tr, feats.shape[1], dtype=torch.bool), tc, out,
                      "pusht model", lambda d: write_meta(d), {"train_episodes": n_tr})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kinemask-train-objects --env pusht", description=__doc__.split("\n\n")[0])
    for f in PushTTrainConfig.__dataclass_fields__.values():
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    a = vars(p.parse_args(argv))
    try:
        train(PushTTrainConfig(**a))
    except (ValueError, FileNotFoundError) as e:
        print(f"kinemask-train-objects --env pusht: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
