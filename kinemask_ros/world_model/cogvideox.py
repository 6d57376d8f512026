"""Big-model path: a CogVideoX-class image-to-video backbone with a KineMask velocity-mask control branch.

KineMask conditions a pretrained image-to-video diffusion transformer on the velocity mask ``V``
through a ControlNet-style branch. diffusers 0.42 has no CogVideoX ControlNet, so this module adds
one on top of its blocks (:class:`KineMaskControlBranch`): a copy of the backbone's first ``N``
transformer blocks, fed with the backbone's patch tokens plus the patch-embedded velocity mask;
block ``i``'s output goes through a zero-initialised linear projection and is added to the
backbone's hidden states after block ``i``. Freshly initialised, the branch adds exactly zero.

A model directory (diffusers layout, loaded from a *local* path, nothing is downloaded)::

    MODEL/
      kinemask_config.json        CogVideoXKineMaskConfig: resolution, frames, K, v_max, conditioning
      transformer/                CogVideoXTransformer3DModel (I2V: in_channels = 2 x latent channels)
      vae/                        AutoencoderKLCogVideoX
      scheduler/                  CogVideoXDPMScheduler or CogVideoXDDIMScheduler config
      control_branch/             KineMaskControlBranch (the KineMask weights)

:class:`KineMaskCogVideoXPipeline` has the call interface of
:class:`~kinemask_ros.world_model.pipeline.KineMaskPipeline` (``image, instance_mask,
velocities, driver, ..., generator`` -> :class:`RolloutOutput`). It renders RGB frames; it does
not predict object tracks or masks (``tracks`` hold the measured frame-0 centroids and NaN after,
``object_masks`` is None): rank candidates with the track model, render the chosen ones here.
Supported backbones: CogVideoX 1.0 I2V layouts (``patch_size_t`` None, e.g. CogVideoX-5b-I2V);
CogVideoX 1.5 (``patch_size_t`` set) is refused with a ``ValueError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from kinemask_ros.world_model.draft import first_frame_velocity_mask
from kinemask_ros.world_model.pipeline import RolloutOutput

KINEMASK_CONFIG_NAME = "kinemask_config.json"
MODEL_TYPE = "kinemask-cogvideox-i2v"
SCHEDULERS = {"CogVideoXDPMScheduler": CogVideoXDPMScheduler, "CogVideoXDDIMScheduler": CogVideoXDDIMScheduler}
COMPONENT_CLASSES = {
    "transformer": ("CogVideoXTransformer3DModel",),
    "vae": ("AutoencoderKLCogVideoX",),
    "scheduler": tuple(SCHEDULERS),
    "control_branch": ("KineMaskControlBranch",),
}
CONDITIONINGS = ("velocity", "both")


# ----------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class CogVideoXKineMaskConfig:
    """``kinemask_config.json`` of a big-model directory.

    Attributes:
        height, width: pixel resolution the model generates at (multiple of VAE factor x patch size).
        num_frames: frames per clip, ``1 + temporal_compression * n`` (CogVideoX: 49).
        max_objects: object slots ``K`` (instance ids ``1..K``).
        v_max: velocity-mask normalisation [px/frame at this resolution] (DESIGN §3).
        conditioning: "velocity" (control input ``V``, 3 channels) or "both" (``V`` + driver, 4).
        model_type: must be ``"kinemask-cogvideox-i2v"``.
    """

    height: int = 480
    width: int = 720
    num_frames: int = 49
    max_objects: int = 8
    v_max: float = 8.0
    conditioning: str = "velocity"
    model_type: str = MODEL_TYPE

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 8 or v % 8:
                raise ValueError(f"CogVideoXKineMaskConfig.{name} must be an int >= 8 divisible by 8, got {v!r}")
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"CogVideoXKineMaskConfig.num_frames must be an int >= 1, got {self.num_frames!r}")
        if not isinstance(self.max_objects, int) or not 1 <= self.max_objects <= 254:
            raise ValueError(f"CogVideoXKineMaskConfig.max_objects must be in [1, 254], got {self.max_objects!r}")
        if not (isinstance(self.v_max, (int, float)) and math.isfinite(self.v_max) and self.v_max > 0):
            raise ValueError(f"CogVideoXKineMaskConfig.v_max must be > 0, got {self.v_max!r}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"CogVideoXKineMaskConfig.conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"CogVideoXKineMaskConfig.model_type must be {MODEL_TYPE!r}, got {self.model_type!r}")

    @property
    def control_channels(self) -> int:
        return 3 + (1 if self.conditioning == "both" else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CogVideoXKineMaskConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {KINEMASK_CONFIG_NAME} fields {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "CogVideoXKineMaskConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class CogVideoXSamplerConfig:
    """Sampler of the big model (CogVideoX: v-prediction DDIM / DPM-Solver, 25-50 steps).

    Attributes:
        num_inference_steps: denoising steps (CogVideoX recipes: 50; 25 is usable with DPM).
        guidance_scale: classifier-free guidance weight; 1 = off (one transformer pass per step).
        eta: DDIM/DPM stochasticity (0 = deterministic given the initial noise).
        scheduler: "checkpoint" (as saved in ``scheduler/``), "dpm" (CogVideoXDPMScheduler) or
            "ddim" (CogVideoXDDIMScheduler); the noise schedule always comes from the checkpoint.
        control_scale: multiplies the control residuals (0 = backbone only).
    """

    num_inference_steps: int = 50
    guidance_scale: float = 1.0
    eta: float = 0.0
    scheduler: str = "checkpoint"
    control_scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.num_inference_steps, int) or not 1 <= self.num_inference_steps <= 1000:
            raise ValueError(f"CogVideoXSamplerConfig.num_inference_steps must be an int in [1, 1000], got {self.num_inference_steps!r}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 1.0):
            raise ValueError(f"CogVideoXSamplerConfig.guidance_scale must be >= 1 (1 = no guidance), got {self.guidance_scale!r}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"CogVideoXSamplerConfig.eta must be in [0, 1], got {self.eta!r}")
        if self.scheduler not in ("checkpoint", "dpm", "ddim"):
            raise ValueError(f"CogVideoXSamplerConfig.scheduler must be checkpoint, dpm or ddim, got {self.scheduler!r}")
        if not math.isfinite(self.control_scale):
            raise ValueError(f"CogVideoXSamplerConfig.control_scale must be finite, got {self.control_scale!r}")


# ----------------------------------------------------------------------------- control branch
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, F, C, H, W)`` -> ``(B, F * H/p * W/p, C * p * p)`` in the token order of CogVideoXPatchEmbed."""
    B, Fr, C, H, W = x.shape
    x = x.reshape(B, Fr, C, H // p, p, W // p, p).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(B, Fr * (H // p) * (W // p), C * p * p)


class KineMaskControlBranch(ModelMixin, ConfigMixin):
    """Zero-initialised control branch over the first ``num_layers`` CogVideoX blocks.

    ``forward`` maps the backbone's video tokens ``(B, N, D)``, its text tokens, the time embedding
    and the latent-resolution control input ``(B, F, C, h, w)`` to ``num_layers`` residuals
    ``(B, N, D)``, one per backbone block.
    """

    @register_to_config
    def __init__(self, num_layers: int = 4, num_attention_heads: int = 30, attention_head_dim: int = 64,
                 time_embed_dim: int = 512, control_channels: int = 3, patch_size: int = 2, dropout: float = 0.0,
                 activation_fn: str = "gelu-approximate", attention_bias: bool = True,
                 norm_elementwise_affine: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.control_embed = nn.Linear(control_channels * patch_size * patch_size, dim)
        self.blocks = nn.ModuleList([
            CogVideoXBlock(dim=dim, num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
                           time_embed_dim=time_embed_dim, dropout=dropout, activation_fn=activation_fn,
                           attention_bias=attention_bias, norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps)
            for _ in range(num_layers)])
        self.out_projs = nn.ModuleList([nn.Linear(dim, dim) for _ in range(num_layers)])
        for lin in [self.control_embed, *self.out_projs]:  # ControlNet's zero convolutions
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    @classmethod
    def from_transformer(cls, transformer: CogVideoXTransformer3DModel, num_layers: int,
                         control_channels: int = 3) -> "KineMaskControlBranch":
        """A fresh branch whose blocks are copies of the backbone's first ``num_layers`` blocks."""
        c = transformer.config
        if not 1 <= num_layers <= c.num_layers:
            raise ValueError(f"num_layers must be in [1, {c.num_layers}] (the backbone's depth), got {num_layers}")
        branch = cls(num_layers=num_layers, num_attention_heads=c.num_attention_heads, attention_head_dim=c.attention_head_dim,
                     time_embed_dim=c.time_embed_dim, control_channels=control_channels, patch_size=c.patch_size,
                     dropout=c.dropout, activation_fn=c.activation_fn, attention_bias=c.attention_bias,
                     norm_elementwise_affine=c.norm_elementwise_affine, norm_eps=c.norm_eps)
        for mine, theirs in zip(branch.blocks, transformer.transformer_blocks):
            mine.load_state_dict(theirs.state_dict())
        branch.to(transformer.device)
        return branch if transformer.dtype == torch.float32 else branch.to(dtype=transformer.dtype)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb: torch.Tensor,
                control: torch.Tensor, image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[torch.Tensor]:
        h = hidden_states + self.control_embed(patchify(control.to(hidden_states.dtype), self.config.patch_size))
        e = encoder_hidden_states
        residuals = []
        for block, proj in zip(self.blocks, self.out_projs):
            h, e = block(hidden_states=h, encoder_hidden_states=e, temb=temb, image_rotary_emb=image_rotary_emb)
            residuals.append(proj(h))
        return residuals


def controlled_transformer_forward(transformer: CogVideoXTransformer3DModel, hidden_states: torch.Tensor,
                                   encoder_hidden_states: torch.Tensor, timestep: torch.Tensor,
                                   control_branch: KineMaskControlBranch | None = None, control: torch.Tensor | None = None,
                                   control_scale: float = 1.0, image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
                                   ofs: torch.Tensor | None = None) -> torch.Tensor:
    """``CogVideoXTransformer3DModel.forward`` (CogVideoX 1.0 path) with control residuals added after each block.

    ``hidden_states (B, F, C_in, h, w)``, ``encoder_hidden_states (B, L, text_embed_dim)``,
    ``timestep (B,)``, ``control (B, F, C_ctrl, h, w)`` -> noise prediction ``(B, F, C_out, h, w)``.
    """
    tr = transformer
    B, Fr, _, h, w = hidden_states.shape
    # 1. time embedding
    emb = tr.time_embedding(tr.time_proj(timestep).to(dtype=hidden_states.dtype), None)
    if tr.ofs_embedding is not None:
        emb = emb + tr.ofs_embedding(tr.ofs_proj(ofs).to(dtype=hidden_states.dtype))
    # 2. patch embedding (text tokens first)
    tokens = tr.embedding_dropout(tr.patch_embed(encoder_hidden_states, hidden_states))
    L = encoder_hidden_states.shape[1]
    enc, hid = tokens[:, :L], tokens[:, L:]
    # 3. control branch, then the backbone blocks with the residuals added
    residuals = []
    if control_branch is not None and control is not None and control_scale != 0:
        residuals = control_branch(hid, enc, emb, control, image_rotary_emb)
    for i, block in enumerate(tr.transformer_blocks):
        hid, enc = block(hidden_states=hid, encoder_hidden_states=enc, temb=emb, image_rotary_emb=image_rotary_emb)
        if i < len(residuals):
            hid = hid + control_scale * residuals[i]
    # 4. output head and 5. unpatchify
    hid = tr.proj_out(tr.norm_out(tr.norm_final(hid), temb=emb))
    p = tr.config.patch_size
    out = hid.reshape(B, Fr, h // p, w // p, -1, p, p)
    return out.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)


# ----------------------------------------------------------------------------- loading helpers
def _crop_region_for_grid(src: tuple[int, int], tgt_width: int, tgt_height: int):
    # as diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video.get_resize_crop_region_for_grid
    th, tw = tgt_height, tgt_width
    h, w = src
    if h / w > th / tw:
        rh, rw = th, int(round(th / h * w))
    else:
        rw, rh = tw, int(round(tw / w * h))
    top, left = int(round((th - rh) / 2.0)), int(round((tw - rw) / 2.0))
    return (top, left), (top + rh, left + rw)


def _read_class_name(directory: Path, component: str, config_name: str) -> str:
    path = directory / config_name
    if not path.is_file():
        raise ValueError(f"{directory.parent} is not a KineMask CogVideoX model directory: {component}/{config_name} is missing "
                         f"(expected {', '.join(COMPONENT_CLASSES)} in diffusers layout and {KINEMASK_CONFIG_NAME})")
    try:
        name = json.loads(path.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{path} is not a JSON object: {e}") from e
    if name not in COMPONENT_CLASSES[component]:
        raise ValueError(f"{path}: _class_name is {name!r}, expected one of {COMPONENT_CLASSES[component]}")
    return name


# ----------------------------------------------------------------------------- pipeline
class KineMaskCogVideoXPipeline:
    """Image + instance mask + planned velocities -> rendered clip, with a CogVideoX-class backbone."""

    def __init__(self, config: CogVideoXKineMaskConfig, transformer: CogVideoXTransformer3DModel, vae: AutoencoderKLCogVideoX,
                 scheduler: CogVideoXDPMScheduler | CogVideoXDDIMScheduler, control_branch: KineMaskControlBranch,
                 sampler: CogVideoXSamplerConfig | None = None):
        self.config = config
        self.transformer = transformer.eval()
        self.vae = vae.eval()
        self.scheduler = scheduler
        self.control_branch = control_branch.eval()
        self.sampler = sampler or CogVideoXSamplerConfig()
        tc, vc, bc = transformer.config, vae.config, control_branch.config
        self.vae_scale_spatial = 2 ** (len(vc.block_out_channels) - 1)
        self.vae_scale_temporal = int(vc.temporal_compression_ratio)
        problems = []
        if tc.patch_size_t is not None:
            problems.append(f"transformer patch_size_t={tc.patch_size_t} (CogVideoX 1.5) is not supported; use a CogVideoX 1.0 I2V backbone")
        if tc.in_channels != 2 * vc.latent_channels:
            problems.append(f"transformer in_channels={tc.in_channels} must be 2 x vae latent_channels={vc.latent_channels} "
                            "(an image-to-video backbone: noisy latents + first-frame latents)")
        if (tc.out_channels or tc.in_channels) != vc.latent_channels:
            problems.append(f"transformer out_channels={tc.out_channels} must equal vae latent_channels={vc.latent_channels}")
        inner = tc.num_attention_heads * tc.attention_head_dim
        if bc.num_attention_heads * bc.attention_head_dim != inner or bc.time_embed_dim != tc.time_embed_dim or bc.patch_size != tc.patch_size:
            problems.append("control_branch width/time embedding/patch size do not match the transformer")
        if bc.num_layers > tc.num_layers:
            problems.append(f"control_branch has {bc.num_layers} blocks but the transformer only {tc.num_layers}")
        if bc.control_channels != config.control_channels:
            problems.append(f"control_branch control_channels={bc.control_channels} but conditioning={config.conditioning!r} needs {config.control_channels}")
        f = self.vae_scale_spatial * tc.patch_size
        if config.height % f or config.width % f:
            problems.append(f"height/width {config.height}x{config.width} must be multiples of {f} (VAE factor x patch size)")
        if (config.num_frames - 1) % self.vae_scale_temporal:
            problems.append(f"num_frames={config.num_frames} must be 1 + a multiple of {self.vae_scale_temporal}")
        if problems:
            raise ValueError("inconsistent KineMask CogVideoX model: " + "; ".join(problems))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        sampler: CogVideoXSamplerConfig | None = None) -> "KineMaskCogVideoXPipeline":
        """Load from a local directory in the layout of the module docstring (no download)."""
        root = Path(path)
        if not root.exists():
            raise FileNotFoundError(f"KineMask CogVideoX model directory {root} not found; point at a local directory holding "
                                    f"{', '.join(COMPONENT_CLASSES)} and {KINEMASK_CONFIG_NAME} (see docs/deployment.md)")
        if not root.is_dir():
            raise ValueError(f"{root} is a file, not a KineMask CogVideoX model directory")
        _read_class_name(root / "transformer", "transformer", "config.json")
        _read_class_name(root / "vae", "vae", "config.json")
        sched_name = _read_class_name(root / "scheduler", "scheduler", "scheduler_config.json")
        _read_class_name(root / "control_branch", "control_branch", "config.json")
        if not (root / KINEMASK_CONFIG_NAME).is_file():
            raise ValueError(f"{root} is not a KineMask CogVideoX model directory: {KINEMASK_CONFIG_NAME} is missing")
        config = CogVideoXKineMaskConfig.load(root / KINEMASK_CONFIG_NAME)
        transformer = CogVideoXTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=dtype)
        vae = AutoencoderKLCogVideoX.from_pretrained(root / "vae", torch_dtype=dtype)
        scheduler = SCHEDULERS[sched_name].from_pretrained(root / "scheduler")
        branch = KineMaskControlBranch.from_pretrained(root / "control_branch", torch_dtype=dtype)
        return cls(config, transformer, vae, scheduler, branch, sampler).to(device)

    def save_pretrained(self, path: str | Path) -> None:
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        self.transformer.save_pretrained(root / "transformer")
        self.vae.save_pretrained(root / "vae")
        self.scheduler.save_pretrained(root / "scheduler")
        self.control_branch.save_pretrained(root / "control_branch")
        self.config.save(root / KINEMASK_CONFIG_NAME)

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def to(self, device: str | torch.device) -> "KineMaskCogVideoXPipeline":
        for m in (self.transformer, self.vae, self.control_branch):
            m.to(device)
        return self

    @property
    def latent_frames(self) -> int:
        return (self.config.num_frames - 1) // self.vae_scale_temporal + 1

    # ------------------------------------------------------------------ inputs
    def check_inputs(self, image: torch.Tensor, instance_mask: torch.Tensor, velocities: torch.Tensor,
                     driver: torch.Tensor | None, prompt_embeds: torch.Tensor | None) -> None:
        c = self.config
        H, W, K, T = c.height, c.width, c.max_objects, c.num_frames
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1:] != (3, H, W) or not image.is_floating_point():
            raise ValueError(f"image must be a float tensor (B, 3, {H}, {W}) in [0, 1], got {tuple(getattr(image, 'shape', ()))}")
        if not torch.isfinite(image).all() or image.min() < -1e-3 or image.max() > 1 + 1e-3:
            raise ValueError("image values must be finite and in [0, 1]")
        B = image.shape[0]
        if not isinstance(instance_mask, torch.Tensor) or instance_mask.shape != (B, H, W) or instance_mask.is_floating_point():
            raise ValueError(f"instance_mask must be an integer tensor (B, {H}, {W}) of ids 0..{K}, got {tuple(getattr(instance_mask, 'shape', ()))}")
        if velocities is None or velocities.shape != (B, K, 2) or not torch.isfinite(velocities).all():
            raise ValueError(f"velocities must be finite (B, {K}, 2) px/frame, got {None if velocities is None else tuple(velocities.shape)}")
        if c.conditioning == "both" and (driver is None or driver.shape != (B, T, 1, H, W)):
            raise ValueError(f"driver must be (B, {T}, 1, {H}, {W}) for conditioning='both', got {None if driver is None else tuple(driver.shape)}")
        tc = self.transformer.config
        if prompt_embeds is not None and (prompt_embeds.dim() != 3 or prompt_embeds.shape[0] != B or prompt_embeds.shape[2] != tc.text_embed_dim):
            raise ValueError(f"prompt_embeds must be (B, L, {tc.text_embed_dim}), got {tuple(prompt_embeds.shape)}")

    def velocity_mask(self, instance_mask: torch.Tensor, velocities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """KineMask inference mask ``(B, T, 3, H, W)``: frame 0 only (DESIGN §3), plus slot masks ``(B, K, H, W)``."""
        c = self.config
        ids = torch.arange(1, c.max_objects + 1, device=instance_mask.device).view(1, -1, 1, 1)
        slots = (instance_mask[:, None] == ids).float()
        v = torch.zeros(instance_mask.shape[0], c.num_frames, 3, c.height, c.width, device=instance_mask.device)
        v[:, 0] = first_frame_velocity_mask(slots, velocities, c.v_max)
        return v, slots

    def control_latents(self, vmask: torch.Tensor, driver: torch.Tensor | None) -> torch.Tensor:
        """Pixel-space ``(B, T, C, H, W)`` -> latent grid ``(B, F, C, h, w)``: area-pooled in space; in
        time frame 0 alone, then groups of ``temporal_compression`` frames (the causal VAE's grouping)."""
        x = vmask if driver is None else torch.cat([vmask, driver.float() * 2 - 1], 2)
        B, T, C, H, W = x.shape
        s, r = self.vae_scale_spatial, self.vae_scale_temporal
        x = F.avg_pool2d(x.reshape(B * T, C, H, W), s).reshape(B, T, C, H // s, W // s)
        rest = x[:, 1:].reshape(B, (T - 1) // r, r, C, H // s, W // s).mean(2)
        return torch.cat([x[:, :1], rest], 1)

    def _rotary(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        tc = self.transformer.config
        if not tc.use_rotary_positional_embeddings:
            return None
        gh = self.config.height // (self.vae_scale_spatial * tc.patch_size)
        gw = self.config.width // (self.vae_scale_spatial * tc.patch_size)
        crops = _crop_region_for_grid((gh, gw), tc.sample_width // tc.patch_size, tc.sample_height // tc.patch_size)
        return get_3d_rotary_pos_embed(embed_dim=tc.attention_head_dim, crops_coords=crops, grid_size=(gh, gw),
                                       temporal_size=self.latent_frames, device=device)

    def _scheduler(self):
        s = self.sampler.scheduler
        if s == "checkpoint":
            return SCHEDULERS[type(self.scheduler).__name__].from_config(self.scheduler.config)
        cls = CogVideoXDPMScheduler if s == "dpm" else CogVideoXDDIMScheduler
        return cls.from_config(self.scheduler.config)

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(self, image: torch.Tensor, instance_mask: torch.Tensor, velocities: torch.Tensor,
                 driver: torch.Tensor | None = None, prompt_embeds: torch.Tensor | None = None,
                 negative_prompt_embeds: torch.Tensor | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, control_scale: float | None = None,
                 generator: torch.Generator | None = None) -> RolloutOutput:
        """Render ``B`` pushes.

        Args:
            image: ``(B, 3, H, W)`` first frame in [0, 1].
            instance_mask: ``(B, H, W)`` int ids (0 background, 1..K objects).
            velocities: ``(B, K, 2)`` planned post-contact velocity [px/frame] per slot (0 = still).
            driver: ``(B, T, 1, H, W)`` pusher footprint (conditioning "both" only).
            prompt_embeds: ``(B, L, text_embed_dim)`` text-encoder states (T5 for CogVideoX, computed
                offline); default zeros of length ``max_text_seq_length``.
            negative_prompt_embeds: unconditional states for guidance (default zeros).
            num_inference_steps, guidance_scale, control_scale: override :attr:`sampler`.
            generator: ``torch.Generator`` for determinism.

        Returns:
            :class:`RolloutOutput` with ``frames (B, T, 3, H, W)`` in [0, 1] (frame 0 = the input),
            ``frame_indices = 0..T-1``, ``present (B, K)``, ``tracks (B, 1, K, T, 2)`` holding the
            measured frame-0 centroids and NaN afterwards, ``object_masks`` None.
        """
        c, tc = self.config, self.transformer.config
        steps = num_inference_steps if num_inference_steps is not None else self.sampler.num_inference_steps
        guidance = guidance_scale if guidance_scale is not None else self.sampler.guidance_scale
        cscale = control_scale if control_scale is not None else self.sampler.control_scale
        CogVideoXSamplerConfig(num_inference_steps=steps, guidance_scale=guidance, control_scale=cscale)  # validates
        dev, dtype = self.device, self.dtype
        # 1. check and move inputs
        image, instance_mask = image.to(dev), instance_mask.to(dev)
        velocities = velocities.to(dev) if velocities is not None else None
        driver = driver.to(dev) if driver is not None else None
        self.check_inputs(image, instance_mask, velocities, driver, prompt_embeds)
        B = image.shape[0]
        # 2. conditions: text states, control latents, first-frame latents
        if prompt_embeds is None:
            prompt_embeds = torch.zeros(B, tc.max_text_seq_length, tc.text_embed_dim, device=dev, dtype=dtype)
        prompt_embeds = prompt_embeds.to(dev, dtype)
        cfg = guidance > 1.0
        if cfg:
            neg = negative_prompt_embeds if negative_prompt_embeds is not None else torch.zeros_like(prompt_embeds)
            prompt_embeds = torch.cat([neg.to(dev, dtype), prompt_embeds])
        vmask, slots = self.velocity_mask(instance_mask, velocities)
        control = self.control_latents(vmask, driver[:, :, :1] if c.conditioning == "both" else None).to(dtype)
        Fl = self.latent_frames
        lc = self.vae.config.latent_channels
        h, w = c.height // self.vae_scale_spatial, c.width // self.vae_scale_spatial
        pixels = (image * 2 - 1).to(dtype).unsqueeze(2)  # (B, 3, 1, H, W)
        img_lat = torch.cat([self.vae.encode(x[None]).latent_dist.sample(generator) for x in pixels])
        img_lat = img_lat.permute(0, 2, 1, 3, 4)  # (B, 1, C, h, w)
        sf = self.vae.config.scaling_factor
        img_lat = img_lat / sf if self.vae.config.invert_scale_latents else img_lat * sf
        img_lat = torch.cat([img_lat, img_lat.new_zeros(B, Fl - 1, lc, h, w)], 1)
        # 3. sampler
        sched = self._scheduler()
        sched.set_timesteps(steps, device=dev)
        timesteps = sched.timesteps
        latents = randn_tensor((B, Fl, lc, h, w), generator=generator, device=dev, dtype=dtype) * sched.init_noise_sigma
        rotary = self._rotary(dev)
        ofs = latents.new_full((1,), 2.0) if tc.ofs_embed_dim else None
        if cfg:
            img_lat, control = torch.cat([img_lat] * 2), torch.cat([control] * 2)  # guidance on text; V in both
        old_pred = None
        for i, t in enumerate(timesteps):
            x = torch.cat([latents] * 2) if cfg else latents
            x = torch.cat([sched.scale_model_input(x, t), img_lat], 2)
            noise_pred = controlled_transformer_forward(self.transformer, x, prompt_embeds, t.expand(x.shape[0]),
                                                        self.control_branch, control, cscale, rotary, ofs).float()
            if cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance * (cond - uncond)
            if isinstance(sched, CogVideoXDPMScheduler):
                latents, old_pred = sched.step(noise_pred, old_pred, t, timesteps[i - 1] if i > 0 else None, latents,
                                               eta=self.sampler.eta, generator=generator, return_dict=False)
            else:
                latents = sched.step(noise_pred, t, latents, eta=self.sampler.eta, generator=generator, return_dict=False)[0]
            latents = latents.to(dtype)
        # 4. decode
        video = self.vae.decode(latents.permute(0, 2, 1, 3, 4) / sf).sample  # (B, 3, T, H, W) in [-1, 1]
        frames = ((video.float().transpose(1, 2) + 1) / 2).clamp(0, 1)
        frames[:, 0] = image.float()
        # 5. outputs in the RolloutOutput layout
        present = slots.flatten(2).amax(2) > 0
        vv, uu = torch.meshgrid(torch.arange(c.height, device=dev) + 0.5, torch.arange(c.width, device=dev) + 0.5, indexing="ij")
        area = slots.sum((-1, -2)).clamp_min(1)
        cent = torch.stack([(slots * uu).sum((-1, -2)), (slots * vv).sum((-1, -2))], -1) / area[..., None]
        tracks = torch.full((B, 1, c.max_objects, c.num_frames, 2), float("nan"), device=dev)
        tracks[:, 0, :, 0] = torch.where(present[..., None], cent, torch.full_like(cent, float("nan")))
        return RolloutOutput(tracks=tracks, present=present, frames=frames, object_masks=None,
                             frame_indices=list(range(c.num_frames)))
