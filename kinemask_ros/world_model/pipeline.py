"""``KineMaskPipeline``: first frame + object masks + planned push -> imagined rollouts.

Reads like a diffusers pipeline: components in ``__init__``, ``check_inputs``, a
``@torch.no_grad()`` ``__call__`` in numbered steps, ``generator`` for determinism, a dataclass
output. Two stages (Mask2IV's decoupling):

1. the track denoiser samples object centroid tracks for every candidate (cheap: this is what
   planners score, ``num_samples`` stochastic samples per candidate give the disagreement term);
2. optionally the video denoiser renders RGB frames + object masks (KineMask inference: the
   velocity mask carries frame 0 only) - usually only for the top-k candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from kinemask_ros.world_model.config import WorldModelConfig
from kinemask_ros.world_model.draft import draft_video, first_frame_velocity_mask, mask_centroids, velocity_mask_from_draft
from kinemask_ros.world_model.networks import TrackDenoiser, VideoDenoiser, flow_match_sample, video_condition

VIDEO_MODES = ("refine", "draft", "generate")
#: The world model that ships inside the package.
EMBEDDED_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "kinemask_embedded"


@dataclass
class RolloutOutput:
    """Imagined rollouts for a batch of ``B`` candidates.

    Attributes:
        tracks: ``(B, S, K, T, 2)`` object centre positions (u, v) [px] for ``S`` samples; frame 0 is
            the measured centroid of each object's mask. Absent slots are NaN.
        present: ``(B, K)`` bool, which slots hold an object.
        frames: ``(B, Tv, 3, H, W)`` float32 in [0, 1] (frame 0 = the input) or None.
        object_masks: ``(B, Tv, K, H, W)`` bool or None.
        frame_indices: which of the ``T`` track frames the video frames correspond to.
    """

    tracks: torch.Tensor
    present: torch.Tensor
    frames: torch.Tensor | None = None
    object_masks: torch.Tensor | None = None
    frame_indices: list[int] | None = None

    @property
    def mean_tracks(self) -> torch.Tensor:
        """``(B, K, T, 2)`` mean over samples."""
        return self.tracks.mean(1)


def _check_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"world-model checkpoint {what} not found at {path}; pass the directory written by "
            "`kinemask-train --out DIR` (it holds world_model_config.json, track/ and video/), or omit the path "
            "to use the embedded checkpoint"
        )


class KineMaskPipeline:
    """Batched, few-step imagination of pushes. Build with :meth:`from_pretrained`."""

    def __init__(self, config: WorldModelConfig, track_model: TrackDenoiser, video_model: VideoDenoiser | None = None,
                 scheduler: FlowMatchEulerDiscreteScheduler | None = None, object_model=None, latent_video=None):
        self.config = config
        #: optional :class:`~kinemask_ros.world_model.latent.LatentVideoModel` (autoencoder + latent
        #: KineMask video denoiser at its own resolution, e.g. 64x64): :meth:`imagine_video`
        self.latent_video = latent_video
        #: optional :class:`~kinemask_ros.world_model.objects.ObjectWorldModel` (v2 track stage: object
        #: tokens, SE(2) tracks, any number of objects); when present the planners imagine with it
        self.object_model = object_model
        self.track_model = track_model.eval()
        self.video_model = video_model.eval() if video_model is not None else None
        self.scheduler = scheduler or FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        tc = track_model.config
        if (tc.height, tc.width, tc.num_frames, tc.max_objects, tc.conditioning) != (
            config.height, config.width, config.num_frames, config.max_objects, config.conditioning):
            raise ValueError(
                "the track model's config does not match world_model_config.json "
                f"(model: {tc.height}x{tc.width}, T={tc.num_frames}, K={tc.max_objects}, {tc.conditioning}; "
                f"world model: {config.height}x{config.width}, T={config.num_frames}, K={config.max_objects}, {config.conditioning}); "
                "the checkpoint directory mixes files from different training runs"
            )

    @property
    def device(self) -> torch.device:
        return self.track_model.device

    def to(self, device: str | torch.device) -> "KineMaskPipeline":
        self.track_model.to(device)
        if self.video_model is not None:
            self.video_model.to(device)
        if self.object_model is not None:
            self.object_model.denoiser.to(device)
        if self.latent_video is not None:
            self.latent_video.to(device)
        return self

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
                        load_video: bool = True, load_objects: bool = True, load_latent_video: bool = True) -> "KineMaskPipeline":
        """Load from a run/checkpoint directory (default: the embedded checkpoint).

        ``objects/`` (when present and ``load_objects``) is the object-token track model, which
        then replaces the raster track model for imagining candidates (``load_objects=False``
        keeps the raster one, e.g. for ablations). ``vae/`` + ``latent_video/`` (when present and
        ``load_latent_video``) are the latent video model used by :meth:`imagine_video`.
        """
        root = Path(path) if path is not None else EMBEDDED_CHECKPOINT
        _check_dir(root, "directory")
        cfg_path = root / "world_model_config.json"
        _check_dir(cfg_path, "config")
        config = WorldModelConfig.load(cfg_path)
        _check_dir(root / "track", "track model")
        track = TrackDenoiser.from_pretrained(root / "track", low_cpu_mem_usage=False)
        video = None
        if load_video and (root / "video").exists():
            video = VideoDenoiser.from_pretrained(root / "video", low_cpu_mem_usage=False)
        objects = None
        if load_objects and (root / "objects").exists():
            from kinemask_ros.world_model.objects import ObjectWorldModel

            objects = ObjectWorldModel.from_pretrained(root / "objects")
        latent = None
        if load_latent_video and (root / "latent_video").exists():
            from kinemask_ros.world_model.latent import LatentVideoModel

            latent = LatentVideoModel.from_pretrained(root)
        return cls(config, track, video, object_model=objects, latent_video=latent).to(device)

    def imagine_video(self, image: torch.Tensor, instance_mask: torch.Tensor, velocities: torch.Tensor | None = None,
                      driver: torch.Tensor | None = None, video_mode: str = "generate", **kwargs):
        """Videos + object masks from the latent video model, at *its* resolution (e.g. 64x64).

        ``video_mode``: ``"generate"`` (KineMask: first-frame velocity mask only), ``"refine"`` or
        ``"draft"`` (both from this pipeline's raster track model, run on down-sampled inputs).
        Shapes and the other arguments: :class:`~kinemask_ros.world_model.latent.LatentVideoPipeline`.
        Returns a :class:`~kinemask_ros.world_model.latent.LatentVideoOutput`.
        """
        if self.latent_video is None:
            raise ValueError("this checkpoint has no latent video model (vae/ + latent_video/); train one with "
                             "`kinemask-train-latent` or use __call__(return_video=True) for the raster video model")
        from kinemask_ros.world_model.latent import LatentVideoPipeline

        return LatentVideoPipeline(self.latent_video, track_pipeline=self)(image, instance_mask, velocities, driver,
                                                                           video_mode=video_mode, **kwargs)

    # ------------------------------------------------------------------ inputs
    def check_inputs(self, image: torch.Tensor, instance_mask: torch.Tensor, velocities: torch.Tensor | None,
                     driver: torch.Tensor | None, num_samples: int, num_inference_steps: int) -> None:
        cfg = self.config
        H, W, K, T = cfg.height, cfg.width, cfg.max_objects, cfg.num_frames
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1:] != (3, H, W):
            raise ValueError(f"image must be a float tensor (B, 3, {H}, {W}) in [0, 1], got {tuple(getattr(image, 'shape', ()))}")
        if not image.is_floating_point():
            raise ValueError(f"image must be floating point in [0, 1], got dtype {image.dtype}; divide uint8 images by 255")
        if not torch.isfinite(image).all():
            raise ValueError("image contains NaN or inf")
        if image.min() < -1e-3 or image.max() > 1 + 1e-3:
            raise ValueError(f"image values must be in [0, 1], got [{float(image.min()):.3g}, {float(image.max()):.3g}]")
        B = image.shape[0]
        if instance_mask.shape != (B, H, W) or instance_mask.is_floating_point():
            raise ValueError(f"instance_mask must be an integer tensor (B, {H}, {W}) of ids 0..{K}, got {tuple(instance_mask.shape)} {instance_mask.dtype}")
        ids = instance_mask[(instance_mask > 0) & (instance_mask != 255)]
        if ids.numel() and int(ids.max()) > K:
            raise ValueError(f"instance_mask holds id {int(ids.max())} but the model has only {K} object slots")
        empty = [b for b in range(B) if not bool(((instance_mask[b] > 0) & (instance_mask[b] <= K)).any())]
        if empty:
            raise ValueError(f"instance_mask of batch item(s) {empty} has no object: nothing to imagine (segment the image first)")
        if cfg.uses_velocity:
            if velocities is None or velocities.shape != (B, K, 2):
                raise ValueError(f"velocities must be (B, {K}, 2) px/frame for conditioning={cfg.conditioning!r}, got {None if velocities is None else tuple(velocities.shape)}")
            if not torch.isfinite(velocities).all():
                raise ValueError("velocities contain NaN or inf")
        if cfg.uses_driver:
            if driver is None or driver.shape != (B, T, 1, H, W):
                raise ValueError(f"driver must be (B, {T}, 1, {H}, {W}) for conditioning={cfg.conditioning!r}, got {None if driver is None else tuple(driver.shape)}")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        if not isinstance(num_inference_steps, int) or not 1 <= num_inference_steps <= 200:
            raise ValueError(f"num_inference_steps must be an int in [1, 200], got {num_inference_steps!r}")

    def _conditions(self, image: torch.Tensor, instance_mask: torch.Tensor, velocities: torch.Tensor | None):
        """Slot masks ``(B, K, H, W)``, first-frame velocity mask ``(B, 3, H, W)``, centroids ``(B, K, 2)``."""
        cfg = self.config
        K = cfg.max_objects
        ids = torch.arange(1, K + 1, device=instance_mask.device).view(1, K, 1, 1)
        slots = (instance_mask[:, None] == ids).float()
        v0 = first_frame_velocity_mask(slots, velocities, cfg.v_max)
        cent, present = mask_centroids(slots)
        return slots, v0, cent, present

    def _sample(self, fn, shape: tuple, num_inference_steps: int, generator, start: torch.Tensor | None = None,
                strength: float = 1.0) -> torch.Tensor:
        """Euler flow-matching sampler: ``fn(x, t) -> velocity``, from noise of ``shape`` to a sample.

        With ``start``, sampling begins at noise level ``strength`` from ``(1 - strength) * start +
        strength * noise`` (SDEdit) and runs ``num_inference_steps`` steps down to 0.
        """
        return flow_match_sample(self.scheduler, fn, shape, num_inference_steps, generator, self.device, start, strength)

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(self, image: torch.Tensor, instance_mask: torch.Tensor, velocities: torch.Tensor | None = None,
                 driver: torch.Tensor | None = None, text: torch.Tensor | None = None, num_samples: int = 1,
                 num_inference_steps: int = 8, return_video: bool = False, video_inference_steps: int = 10,
                 video_indices: list[int] | None = None, video_mode: str = "refine", video_strength: float = 0.3,
                 generator: torch.Generator | None = None) -> RolloutOutput:
        """Imagine ``B`` pushes.

        Args:
            image: ``(B, 3, H, W)`` first frame in [0, 1].
            instance_mask: ``(B, H, W)`` int ids (0 background, 1..K objects, 255 pusher ignored).
            velocities: ``(B, K, 2)`` planned post-contact velocity [px/frame] per slot (0 = still).
            driver: ``(B, T, 1, H, W)`` pusher footprint per frame (InterDyn conditioning).
            text: ``(B, text_dim)`` text embedding, if the model uses text.
            num_samples: stochastic track samples per candidate ``S``.
            num_inference_steps: Euler steps of the track sampler.
            return_video: also render frames + object masks with the video model.
            video_indices: batch items that get a video (default all); ``frames``/``object_masks``
                hold only these items, in this order (e.g. the planner's top-k).
            video_mode: ``"refine"`` (default): Mask2IV-style - a draft made by moving the objects
                along the sampled tracks is refined by the video denoiser from noise level
                ``video_strength``, with the velocity mask rebuilt on every frame from the draft.
                ``"draft"``: the draft alone (no diffusion; a baseline and a cheap preview).
                ``"generate"``: pure KineMask inference - generate from noise with the velocity
                mask on frame 0 only (measured: needs far more training than the embedded model
                had; see docs/world_model.md).
            video_strength: starting noise level in (0, 1] of the ``"refine"`` mode.
            generator: ``torch.Generator`` for determinism.
        """
        cfg = self.config
        # 1. check and move inputs
        dev = self.device
        image, instance_mask = image.to(dev), instance_mask.to(dev)
        velocities = velocities.to(dev).float() if velocities is not None else None
        driver = driver.to(dev).float() if driver is not None else None
        self.check_inputs(image, instance_mask, velocities, driver, num_samples, num_inference_steps)
        B, K, T = image.shape[0], cfg.max_objects, cfg.num_frames
        # 2. conditions
        slots, v0, cent, present = self._conditions(image, instance_mask, velocities)
        img = image * 2 - 1
        cond = self.track_model.encode(img, slots, v0 if cfg.uses_velocity else None,
                                       driver[:, :, 0] if cfg.uses_driver else None, text)
        if num_samples > 1:
            cond = {k: v.repeat_interleave(num_samples, 0) for k, v in cond.items()}
        # 3. sample tracks (B * S at once)
        x = self._sample(lambda s, t: self.track_model(s, t, cond), (B * num_samples, K, T - 1, 2),
                         num_inference_steps, generator)
        disp = torch.cat([torch.zeros(B * num_samples, K, 1, 2, device=dev), x * cfg.track_scale], 2)
        tracks = cent.repeat_interleave(num_samples, 0)[:, :, None] + disp
        tracks = tracks.view(B, num_samples, K, T, 2)
        tracks = torch.where(present[:, None, :, None, None], tracks, torch.full_like(tracks, float("nan")))
        out = RolloutOutput(tracks=tracks, present=present)
        # 4. optional video
        if return_video:
            if self.video_model is None and video_mode != "draft":
                raise ValueError("this checkpoint has no video model (video/ directory); call with return_video=False "
                                 "or video_mode='draft'")
            idx = list(range(B)) if video_indices is None else list(video_indices)
            if any(not 0 <= i < B for i in idx):
                raise ValueError(f"video_indices must be in [0, {B}), got {idx}")
            if video_mode not in VIDEO_MODES:
                raise ValueError(f"video_mode must be one of {VIDEO_MODES}, got {video_mode!r}")
            if not 0.0 < video_strength <= 1.0:
                raise ValueError(f"video_strength must be in (0, 1], got {video_strength!r}")
            Tv, s = cfg.video_frames, cfg.video_frame_stride
            txt = text[idx] if text is not None else None
            drv = driver[idx][:, ::s] if cfg.uses_driver else None
            shape = (len(idx), 3 + K, Tv, cfg.height, cfg.width)
            if video_mode == "generate":
                vel = None
                if cfg.uses_velocity:
                    vel = torch.zeros(len(idx), Tv, 3, cfg.height, cfg.width, device=dev)
                    vel[:, 0] = v0[idx]  # KineMask inference: frame 0 only
                vcond = video_condition(img[idx], slots[idx], vel, drv, Tv)
                xv = self._sample(lambda z, t: self.video_model(z, t, vcond, txt), shape, video_inference_steps, generator)
            else:
                mean = tracks[idx].mean(1)  # (n, K, T, 2)
                disp = (mean - mean[:, :, :1])[:, :, ::s]
                draft = draft_video(img[idx], slots[idx], disp)
                vel = None
                if cfg.uses_velocity:
                    step_v = torch.diff(mean, dim=2, append=mean[:, :, -1:])[:, :, ::s]  # px/frame at stride 1
                    vel = velocity_mask_from_draft((draft[:, 3:] > 0).float(), step_v, cfg.v_max)
                    vel[:, 0] = v0[idx]
                vcond = video_condition(img[idx], slots[idx], vel, drv, Tv)
                if video_mode == "draft":
                    xv = draft
                else:
                    xv = self._sample(lambda z, t: self.video_model(z, t, vcond, txt), shape, video_inference_steps, generator,
                                      start=draft, strength=video_strength)
            xv = xv.transpose(1, 2)  # (n, Tv, 3+K, H, W)
            frames = ((xv[:, :, :3] + 1) / 2).clamp(0, 1)
            frames[:, 0] = image[idx]
            out.frames = frames
            out.object_masks = xv[:, :, 3:] > 0
            out.object_masks[:, 0] = slots[idx] > 0
            out.frame_indices = list(range(0, T, s))
        return out
