"""Object-token world model (v2 track stage): one token per object, SE(2) tracks in table metres.

The raster track model sees a 32x32 image with 1.25 cm pixels and 4 object slots: mm-level gaps,
glancing contacts and clutter are invisible to it. This model gets each object's metric geometry
(:class:`~kinemask_ros.object_scene.ObjectScene`, estimated from the full-resolution mask) and
the stroke, and predicts every object's ``(x, y, yaw)`` over the clip:

* **Stroke frame.** Everything is expressed in the frame of the stroke (origin at its start, x
  along the push), so the model is invariant to where on the table and in which direction one
  pushes; predictions are rotated back.
* **Tokens.** Per object: position, orientation (``cos 2 phi, sin 2 phi``: footprints are
  symmetric), half extents, fill ratio / disk flag, border flag, and the exact geometric
  relation to the pusher's path: the clearance between the pusher disk's corridor and the
  footprint [m] (negative = overlap, so 1-4 mm near misses are a number, not a pixel), where
  along the stroke the first touch happens, and which object the pusher touches first, which
  carries the pusher's speed (KineMask's velocity conditioning, in token form). Stroke length
  and speed are on every token. Padding tokens are masked out.
* **Denoiser.** A transformer over the object tokens (objects interact through attention: chains,
  double hits), trained with rectified flow (the ``kinemask-train`` recipe) and sampled with
  diffusers' ``FlowMatchEulerDiscreteScheduler`` in a few steps.

    model = ObjectWorldModel.from_pretrained(path)
    scene = ObjectScene.from_mask(ids, camera)
    poses = model.predict(scene, strokes, num_samples=2)      # (N, S, K, T, 3) x, y, yaw [m, rad]

Training: ``kinemask-train-objects --data data/objects --out runs/objects`` (resumable).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from diffusers import ConfigMixin, FlowMatchEulerDiscreteScheduler, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from kinemask_ros.camera import CameraConfig, CameraModel
from kinemask_ros.object_scene import ObjectScene
from kinemask_ros.push import PushStroke

FEATURES = ("x", "y", "cos2phi", "sin2phi", "a", "b", "fill", "is_disk", "at_border", "clearance", "touch_at", "first_touch",
            "length", "speed", "cos4phi", "sin4phi")
#: features of models trained before ``cos4phi``/``sin4phi`` (the minimum-area-rectangle orientation, defined for squares)
FEATURES_V1 = FEATURES[:14]
#: feature scales (metres / m/s -> O(1) numbers)
POS_SCALE, SIZE_SCALE, GAP_SCALE, LEN_SCALE, SPEED_SCALE = 0.1, 0.03, 0.02, 0.1, 0.5
#: target scales: displacement [m], rotation [rad]
DISP_SCALE, YAW_SCALE = 0.05, 0.5
#: points sampled along a stroke for the clearance (2 mm apart for the longest trained stroke)
PATH_SAMPLES = 64


def stroke_features(scene: ObjectScene, strokes: list[PushStroke], pusher_radius: float = 0.012) -> np.ndarray:
    """``(N, K, F)`` float32 token features of every object for every stroke (``F = len(FEATURES)``)."""
    N, K = len(strokes), len(scene)
    st = np.array([[s.x, s.y, math.cos(s.theta), math.sin(s.theta), s.theta, s.length, s.speed] for s in strokes], float).reshape(N, 7)
    start, d, theta, L, v = st[:, :2], st[:, 2:4], st[:, 4], st[:, 5], st[:, 6]
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    rel = scene.poses[None, :, :2] - start[:, None]  # (N, K, 2)
    px = (rel * d[:, None]).sum(-1)
    py = (rel * n[:, None]).sum(-1)
    phi = scene.poses[None, :, 2] - theta[:, None]
    s = np.linspace(0.0, 1.0, PATH_SAMPLES)
    path = start[:, None] + (s[None, :, None] * L[:, None, None]) * d[:, None]  # (N, M, 2)
    dist = scene.distances(path) - pusher_radius  # (N, M, K)
    gap = dist.min(1)
    touch = dist <= 0
    first = np.where(touch.any(1), touch.argmax(1), dist.argmin(1)) / (PATH_SAMPLES - 1)  # (N, K)
    touched_at = np.where(touch.any(1), first, np.inf)
    first_flag = np.zeros((N, K))
    if K:
        j = touched_at.argmin(1)
        hit = np.isfinite(touched_at[np.arange(N), j])
        first_flag[np.arange(N)[hit], j[hit]] = 1.0
    f = np.zeros((N, K, len(FEATURES)), np.float32)
    f[..., 0], f[..., 1] = px / POS_SCALE, py / POS_SCALE
    oriented = ~scene.is_disk[None]  # a disk's yaw carries no information
    f[..., 2], f[..., 3] = np.cos(2 * phi) * oriented, np.sin(2 * phi) * oriented
    f[..., 4], f[..., 5] = scene.extents[None, :, 0] / SIZE_SCALE, scene.extents[None, :, 1] / SIZE_SCALE
    f[..., 6], f[..., 7], f[..., 8] = scene.fill[None], scene.is_disk[None], scene.at_border[None]
    f[..., 9] = np.clip(gap / GAP_SCALE, -3.0, 5.0)
    f[..., 10] = first
    f[..., 11] = first_flag * v[:, None] / SPEED_SCALE
    f[..., 12] = (L / LEN_SCALE)[:, None]
    f[..., 13] = (v / SPEED_SCALE)[:, None]
    q = scene.quarter_yaw[None, :] - theta[:, None]  # the footprint's rectangle, modulo pi/2: squares included
    f[..., 14], f[..., 15] = np.cos(4 * q) * oriented, np.sin(4 * q) * oriented
    return f


def stroke_frames(strokes: list[PushStroke]) -> np.ndarray:
    """``(N, 2, 2)`` rotation matrices whose rows are the stroke frame's axes (push direction, its normal)."""
    th = np.array([s.theta for s in strokes], float)
    c, s = np.cos(th), np.sin(th)
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], 1)


def targets_from_states(states: np.ndarray, strokes: list[PushStroke]) -> np.ndarray:
    """True ``(N, T, K, 6)`` states -> ``(N, K, (T - 1) * 3)`` normalised stroke-frame displacements and rotations."""
    R = stroke_frames(strokes)  # (N, 2, 2)
    dxy = states[:, 1:, :, :2] - states[:, :1, :, :2]  # (N, T-1, K, 2)
    local = np.einsum("nij,ntkj->ntki", R, dxy) / DISP_SCALE
    dyaw = (states[:, 1:, :, 2] - states[:, :1, :, 2] + math.pi) % (2 * math.pi) - math.pi
    out = np.concatenate([local, (dyaw / YAW_SCALE)[..., None]], -1)  # (N, T-1, K, 3)
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3).reshape(out.shape[0], out.shape[2], -1)).astype(np.float32)


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], -1)


class ObjectTrackDenoiser(ModelMixin, ConfigMixin):
    """Transformer velocity field over object tokens: ``(x_t (B, K, D), t (B,), features (B, K, F), pad (B, K))``.

    ``D = (num_frames - 1) * 3`` (stroke-frame dx, dy, dyaw per future frame, normalised);
    ``pad`` is True for padding tokens. Returns ``(B, K, D)``.
    """

    @register_to_config
    def __init__(self, num_frames: int = 16, feature_dim: int = len(FEATURES), dim: int = 128, layers: int = 4, heads: int = 4):
        super().__init__()
        D = (num_frames - 1) * 3
        self.inp = nn.Sequential(nn.Linear(feature_dim + D, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.temb = nn.Sequential(nn.Linear(64, dim), nn.SiLU(), nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, D))

    def forward(self, x: torch.Tensor, t: torch.Tensor, features: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([features, x], -1)) + self.temb(_timestep_embedding(t, 64))[:, None]
        h = self.blocks(h, src_key_padding_mask=pad)
        return self.out(h)


def expand_features(model: "ObjectTrackDenoiser") -> "ObjectTrackDenoiser":
    """The same function on all of :data:`FEATURES`: a model trained on a prefix of them gets zero
    input weights for the new ones (its predictions are unchanged until training uses them)."""
    old = int(model.config.feature_dim)
    c = model.config
    new = ObjectTrackDenoiser(num_frames=c.num_frames, feature_dim=len(FEATURES), dim=c.dim, layers=c.layers, heads=c.heads)
    sd = model.state_dict()
    w = sd["inp.0.weight"]  # (dim, old + D): features first, then x
    sd["inp.0.weight"] = torch.cat([w[:, :old], torch.zeros(w.shape[0], len(FEATURES) - old, dtype=w.dtype), w[:, old:]], 1)
    new.load_state_dict(sd)
    return new


def write_meta(path: Path, pusher_radius: float = 0.012, features: tuple[str, ...] = FEATURES) -> None:
    """``object_model.json`` beside the denoiser: what the features assume (pusher radius, feature names)."""
    (Path(path) / "object_model.json").write_text(json.dumps({"pusher_radius": float(pusher_radius), "features": list(features)}, indent=1))


class ObjectWorldModel:
    """Scene + strokes -> SE(2) tracks with an :class:`ObjectTrackDenoiser` (pure inference wrapper)."""

    def __init__(self, denoiser: ObjectTrackDenoiser, pusher_radius: float = 0.012, scheduler=None, device: str | torch.device = "cpu"):
        self.denoiser = denoiser.eval().to(device)
        self.pusher_radius = float(pusher_radius)
        self.num_frames = int(denoiser.config.num_frames)
        self.scheduler = scheduler or FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        #: the feature names the denoiser was trained on (a prefix of :data:`FEATURES` for older models)
        self.features = FEATURES[: int(denoiser.config.feature_dim)]

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "ObjectWorldModel":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not an object world model (no config.json); train one with kinemask-train-objects")
        meta = json.loads((path / "object_model.json").read_text()) if (path / "object_model.json").is_file() else {}
        model = cls(ObjectTrackDenoiser.from_pretrained(path), meta.get("pusher_radius", 0.012), device=device)
        model.features = tuple(meta.get("features", FEATURES_V1))[: int(model.denoiser.config.feature_dim)]
        unknown = sorted(set(model.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"{path} was trained with features {unknown} this version does not compute; use a matching kinemask_ros")
        return model

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.denoiser.save_pretrained(path)
        write_meta(path, self.pusher_radius, self.features)

    @torch.no_grad()
    def predict(self, scene: ObjectScene, strokes: list[PushStroke], num_samples: int = 2, num_inference_steps: int = 8,
                generator: torch.Generator | None = None, features: np.ndarray | None = None) -> np.ndarray:
        """``(N, S, K, T, 3)`` predicted poses ``(x, y, yaw)`` [m, rad] of every object; frame 0 = the scene's poses."""
        N, K, S, T = len(strokes), len(scene), int(num_samples), self.num_frames
        out = np.repeat(np.repeat(scene.poses[None, None, :, None, :], N, 0), S, 1).repeat(T, 3).astype(np.float64)
        if N == 0 or K == 0:
            return out
        f = stroke_features(scene, strokes, self.pusher_radius) if features is None else features
        if f.shape[-1] != len(self.features):  # a model trained on fewer features: give it those
            f = f[..., [FEATURES.index(n) for n in self.features]]
        dev = self.device
        feats = torch.from_numpy(np.repeat(f, S, 0)).to(dev)  # (N*S, K, F)
        pad = torch.zeros(N * S, K, dtype=torch.bool, device=dev)
        shape = (N * S, K, (T - 1) * 3)
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(num_inference_steps, device=dev)
        x = torch.randn(shape, generator=generator, device=dev)
        for t in sched.timesteps:
            v = self.denoiser(x, t.expand(shape[0]).to(dev), feats, pad)
            x = sched.step(v, t, x).prev_sample
        y = x.cpu().numpy().reshape(N, S, K, T - 1, 3)
        R = stroke_frames(strokes)  # rows: push direction, normal
        dxy = np.einsum("nij,nskti->nsktj", R, y[..., :2] * DISP_SCALE)  # back to the table frame: R^T y
        out[:, :, :, 1:, :2] += dxy
        out[:, :, :, 1:, 2] += y[..., 2] * YAW_SCALE
        return out


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class ObjectTrainConfig:
    """``kinemask-train-objects`` settings (a resumable run in ``out``).

    Attributes:
        data: dataset directory of ``kinemask-generate-objects``; out: run directory.
        steps, batch, lr: optimisation (AdamW, warm-up + cosine, EMA 0.999, rectified flow).
        resolutions: camera resolutions the object tokens are estimated at during training (a
            random one per episode, so the model sees the pose noise of coarse cameras too).
        dim, layers, heads: transformer size.
        ckpt_every: steps between resumable checkpoints (``state_objects.pt``) and exports.
        device: "cpu" or "cuda"; threads: torch CPU threads (0 = default).
        init_from: fine-tune: start from these weights (an object model directory, or a checkpoint
            directory with ``objects/``, e.g. the embedded one); its ``dim``/``layers``/``heads``
            are used. ``kinemask-train-objects --init-from`` without ``--lr`` uses ``FINETUNE_LR``.
            A resumed run (``state_objects.pt`` in ``out``) continues from its own state instead.
    """

    data: str = "data/objects"
    out: str = "runs/objects"
    steps: int = 6000
    batch: int = 128
    lr: float = 1e-3
    resolutions: tuple[int, ...] = (32, 64, 128)
    dim: int = 128
    layers: int = 4
    heads: int = 4
    ckpt_every: int = 250
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    max_episodes: int = 0
    init_from: str = ""

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "dim", "layers", "heads", "ckpt_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ObjectTrainConfig.{name} must be an int >= 1, got {v!r}")
        if not self.resolutions or any(r < 8 for r in self.resolutions):
            raise ValueError(f"ObjectTrainConfig.resolutions must be sizes >= 8, got {self.resolutions!r}")


def downsample_ids(ids: np.ndarray, size: int) -> np.ndarray:
    """Nearest (pixel-centre) resampling of a square id map to ``size x size`` (what a coarser camera sees)."""
    from kinemask_ros.ros_convert import resize_ids

    return resize_ids(ids, size, size)


def episode_tokens(data: dict[str, np.ndarray], resolutions: tuple[int, ...], pusher_radius: float = 0.012,
                   rng: np.random.Generator | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Features ``(E, Kmax, F)``, targets ``(E, Kmax, D)``, padding ``(E, Kmax)`` for every episode.

    Tokens come from the first-frame mask resampled to a resolution drawn per episode; an object
    whose mask vanishes at that resolution is padded (masked out of the loss and of attention).
    """
    from tqdm import tqdm

    rng = rng or np.random.default_rng(0)
    E, T, Kmax = data["states"].shape[:3]
    F, D = len(FEATURES), (T - 1) * 3
    feats = np.zeros((E, Kmax, F), np.float32)
    targ = np.zeros((E, Kmax, D), np.float32)
    pad = np.ones((E, Kmax), bool)
    cams = {r: CameraModel(CameraConfig(width=r, height=r)) for r in resolutions}
    for e in tqdm(range(E), desc="object tokens", disable=not progress, file=sys.stderr):
        k = int(data["num_objects"][e])
        r = int(rng.choice(resolutions))
        ids = downsample_ids(data["masks"][e], r)
        scene = ObjectScene.from_mask(ids, cams[r])
        if len(scene) == 0:
            continue
        stroke = PushStroke.from_array(data["strokes"][e])
        f = stroke_features(scene, [stroke], pusher_radius)[0]
        tg = targets_from_states(data["states"][e:e + 1, :, :k], [stroke])[0]  # (k, D)
        idx = scene.ids - 1
        feats[e, : len(scene)] = f
        targ[e, : len(scene)] = tg[idx]
        pad[e, : len(scene)] = False
    return {"features": feats, "targets": targ, "pad": pad}


#: default learning rate of ``kinemask-train-objects --init-from`` (fine-tuning; from scratch: ``ObjectTrainConfig.lr``)
FINETUNE_LR = 2e-4


def resolve_object_model(path: str | Path) -> Path:
    """An object model directory from itself or from a checkpoint directory holding ``objects/``."""
    p = Path(path)
    for c in (p, p / "objects", p / "model"):
        if (c / "config.json").is_file() and json.loads((c / "config.json").read_text()).get("_class_name") == "ObjectTrackDenoiser":
            return c
    raise FileNotFoundError(f"{p} is neither an object model directory (config.json of an ObjectTrackDenoiser) nor a checkpoint "
                            "with objects/ (e.g. kinemask_ros/checkpoints/kinemask_embedded) or a run with model/")


def train(tc: ObjectTrainConfig) -> Path:
    """Run (or resume) training; exports the EMA model to ``out/model`` every ``ckpt_every`` steps."""
    from kinemask_ros.sim_bridge.object_dataset import load_episodes
    from kinemask_ros.world_model.train import _Run

    init = resolve_object_model(tc.init_from) if tc.init_from else None
    if init is not None:  # fine-tuning: the architecture is the initial model's
        ic = json.loads((init / "config.json").read_text())
        tc = replace(tc, dim=int(ic["dim"]), layers=int(ic["layers"]), heads=int(ic["heads"]))
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(tc), indent=1))
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = torch.device(tc.device)
    shards = len(list(Path(tc.data).glob("shard_*.npz")))
    cache = out / f"tokens_{shards}shards_{tc.max_episodes}_f{len(FEATURES)}.npz"  # a grown dataset / new features get new tokens
    if cache.exists():
        tok = dict(np.load(cache))
    else:
        data = load_episodes(tc.data, tc.max_episodes or None)
        tok = episode_tokens(data, tc.resolutions, rng=np.random.default_rng(tc.seed))
        np.savez(cache, **tok)
    T = tok["targets"].shape[-1] // 3 + 1
    if init is not None:
        model = ObjectTrackDenoiser.from_pretrained(init)
        if int(model.config.num_frames) != T:
            raise ValueError(f"--init-from model predicts {model.config.num_frames} frames, the data has {T}")
        if int(model.config.feature_dim) < len(FEATURES):
            model = expand_features(model)
    else:
        model = ObjectTrackDenoiser(num_frames=T, dim=tc.dim, layers=tc.layers, heads=tc.heads)
    run = _Run("objects", model, tc.lr, tc.steps, tc, device)  # EMA, resumable state_objects.pt, warm-up + cosine
    if run.step:
        print(f"resumed at step {run.step}", file=sys.stderr)
    feats, targ, pad = (torch.from_numpy(tok[k]) for k in ("features", "targets", "pad"))
    keep = ~pad.all(1)
    return fit_tokens(run, model, feats[keep], targ[keep], pad[keep], tc, out, "object model", write_meta)


def fit_tokens(run, model: ObjectTrackDenoiser, feats: torch.Tensor, targ: torch.Tensor, pad: torch.Tensor, tc, out: Path, desc: str,
               write_meta_fn, extra: dict | None = None) -> Path:
    """The rectified-flow loop every object-token model trains with (tabletop, PushT).

    ``feats (N, K, F)``, ``targ (N, K, D)``, ``pad (N, K)`` (True = padding: out of attention and of
    the loss); token order is shuffled per batch, so the model cannot rely on slot positions.
    ``run`` is a resumable :class:`~kinemask_ros.world_model.train._Run`; every ``tc.ckpt_every``
    steps its state is saved and the EMA model exported to ``out/model`` (``write_meta_fn`` adds
    the model's meta file there), with ``losses.json`` (+ ``extra``).
    """
    from tqdm import tqdm

    from kinemask_ros.world_model.train import flow_match_pair

    device = next(model.parameters()).device
    n = len(feats)

    def save() -> None:
        run.save_state()
        run.export(out / "model")
        write_meta_fn(out / "model")
        (out / "losses.json").write_text(json.dumps({"step": run.step, "loss": run.losses[-200:],
                                                     "mean_last_200": float(np.mean(run.losses[-200:])), **(extra or {})}))

    bar = tqdm(total=tc.steps, initial=run.step, desc=desc, file=sys.stderr, mininterval=5)
    t0 = time.perf_counter()
    model.train()
    while run.step < tc.steps:
        idx = torch.from_numpy(run.rng.integers(0, n, tc.batch))
        f, x0, p = feats[idx].to(device), targ[idx].to(device), pad[idx].to(device)
        perm = torch.from_numpy(np.argsort(run.rng.random((tc.batch, f.shape[1])), 1)).to(device)
        f, x0 = (torch.gather(a, 1, perm[..., None].expand_as(a)) for a in (f, x0))
        p = torch.gather(p, 1, perm)
        x_s, t, target = flow_match_pair(x0, run.gen)
        w = (~p).float()[..., None]
        loss = (((model(x_s, t, f, p) - target) ** 2) * w).sum() / (w.sum() * x0.shape[-1]).clamp_min(1)
        run.update(loss)
        bar.update()
        if run.step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(run.losses[-50:]):.4f}")
        if run.step % tc.ckpt_every == 0 or run.step == tc.steps:
            save()
    bar.close()
    print(f"trained to step {run.step} in {time.perf_counter() - t0:.0f} s this run; model in {out / 'model'}", file=sys.stderr)
    return out / "model"


def main(argv: list[str] | None = None) -> int:
    from kinemask_ros.sim_bridge.pusht_dataset import ENVS, env_choice

    env, argv = env_choice(argv)
    if env == "pusht":  # same denoiser, loss and run machinery with the PushT token (world_model/pusht_model.py)
        from kinemask_ros.world_model.pusht_model import main as pusht_main

        return pusht_main(argv)
    p = argparse.ArgumentParser(prog="kinemask-train-objects", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", choices=ENVS, default="tabletop", help="tabletop (this trainer) or pusht (see --env pusht --help)")
    for f in ObjectTrainConfig.__dataclass_fields__.values():
        if f.name == "resolutions":
            p.add_argument("--resolutions", type=int, nargs="+", default=list(f.default))
        else:
            p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    a = vars(p.parse_args(argv))
    a.pop("env")
    a["resolutions"] = tuple(a["resolutions"])
    if a["init_from"] and not any(x == "--lr" or x.startswith("--lr=") for x in (sys.argv[1:] if argv is None else argv)):
        a["lr"] = FINETUNE_LR  # fine-tuning: a lower default learning rate
    try:
        train(ObjectTrainConfig(**a))
    except (ValueError, FileNotFoundError) as e:
        print(f"kinemask-train-objects: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
