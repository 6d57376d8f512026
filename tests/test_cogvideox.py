"""Big-model path with tiny random-init CogVideoX components built, saved and reloaded here (no download)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXTransformer3DModel

from kinemask_ros.world_model.cogvideox import (
    KINEMASK_CONFIG_NAME,
    CogVideoXKineMaskConfig,
    CogVideoXSamplerConfig,
    KineMaskCogVideoXPipeline,
    KineMaskControlBranch,
    controlled_transformer_forward,
)

H = W = 16
T = 9  # 1 + 4 * 2 -> 3 latent frames
K = 3


def _tiny_components(rotary: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16 if rotary else 8, in_channels=8, out_channels=4, time_embed_dim=16,
        text_embed_dim=16, num_layers=2, sample_width=W // 4, sample_height=H // 4, sample_frames=T, patch_size=2,
        max_text_seq_length=4, temporal_compression_ratio=4, use_rotary_positional_embeddings=rotary)
    vae = AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 3, up_block_types=("CogVideoXUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=4,
        temporal_compression_ratio=4, sample_height=H, sample_width=W)
    scheduler = CogVideoXDPMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction", clip_sample=False,
                                      rescale_betas_zero_snr=True, timestep_spacing="trailing", snr_shift_scale=1.0)
    branch = KineMaskControlBranch.from_transformer(transformer, num_layers=1, control_channels=3)
    config = CogVideoXKineMaskConfig(height=H, width=W, num_frames=T, max_objects=K, v_max=4.0)
    return config, transformer, vae, scheduler, branch


def _inputs(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(B, 3, H, W, generator=g)
    inst = torch.zeros(B, H, W, dtype=torch.long)
    inst[:, 2:7, 2:7] = 1
    inst[:, 9:14, 8:13] = 2
    vel = torch.zeros(B, K, 2)
    vel[:, 0] = torch.tensor([3.0, -1.0])
    return image, inst, vel


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cogvideox")
    KineMaskCogVideoXPipeline(*_tiny_components()).save_pretrained(root)
    return root


def test_save_load_roundtrip_and_call(model_dir):
    pipe = KineMaskCogVideoXPipeline.from_pretrained(model_dir, sampler=CogVideoXSamplerConfig(num_inference_steps=3))
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["control_branch", "kinemask_config.json", "scheduler", "transformer", "vae"])
    image, inst, vel = _inputs()
    out = pipe(image, inst, vel, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (2, T, 3, H, W) and out.frames.dtype == torch.float32
    assert float(out.frames.min()) >= 0 and float(out.frames.max()) <= 1
    assert torch.equal(out.frames[:, 0], image)
    assert out.frame_indices == list(range(T)) and out.object_masks is None
    assert out.present.tolist() == [[True, True, False]] * 2
    assert torch.allclose(out.tracks[0, 0, 0, 0], torch.tensor([4.5, 4.5]))  # centroid of rows/cols 2..6
    assert torch.isnan(out.tracks[:, :, :, 1:]).all() and torch.isnan(out.tracks[:, :, 2]).all()
    again = pipe(image, inst, vel, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.frames, again.frames)  # generator -> deterministic


def test_zero_init_branch_equals_backbone():
    config, transformer, vae, scheduler, branch = _tiny_components()
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, H // 4, W // 4)
    text = torch.randn(2, 4, 16)
    t = torch.tensor([999, 500])
    control = torch.randn(2, 3, 3, H // 4, W // 4)
    with torch.no_grad():
        ref = transformer(hidden_states=x, encoder_hidden_states=text, timestep=t, return_dict=False)[0]
        mine = controlled_transformer_forward(transformer, x, text, t)
        zero = controlled_transformer_forward(transformer, x, text, t, branch, control)
        assert torch.equal(mine, ref)  # the re-implemented forward is the backbone's
        assert torch.equal(zero, ref)  # fresh branch: exactly the backbone output
        for p in branch.out_projs.parameters():
            p.normal_(0, 0.1)
        branch.control_embed.weight.normal_(0, 0.1)
        moved = controlled_transformer_forward(transformer, x, text, t, branch, control)
        moved2 = controlled_transformer_forward(transformer, x, text, t, branch, control * 0.5)
    assert (moved - ref).abs().max() > 1e-3 and (moved - moved2).abs().max() > 1e-4  # wired in, and V matters


@pytest.mark.parametrize("scheduler", ["dpm", "ddim"])
def test_matches_diffusers_image_to_video_pipeline_when_branch_is_zero(scheduler):
    """With a fresh (zero) branch the sampler must reproduce diffusers' own CogVideoX I2V pipeline."""
    pytest.importorskip("transformers")
    from diffusers import CogVideoXImageToVideoPipeline

    config, transformer, vae, sched, branch = _tiny_components(rotary=True)
    if scheduler == "ddim":
        sched = CogVideoXDDIMScheduler.from_config(sched.config)
    mine = KineMaskCogVideoXPipeline(config, transformer, vae, sched, branch,
                                     CogVideoXSamplerConfig(num_inference_steps=3, guidance_scale=2.0))
    ref = CogVideoXImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer, scheduler=sched)
    image, inst, vel = _inputs(B=1)
    text = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(3))
    neg = torch.zeros_like(text)
    a = mine(image, inst, vel, prompt_embeds=text, negative_prompt_embeds=neg, generator=torch.Generator().manual_seed(5))
    b = ref(image=image, prompt_embeds=text, negative_prompt_embeds=neg, height=H, width=W, num_frames=T, num_inference_steps=3,
            guidance_scale=2.0, generator=torch.Generator().manual_seed(5), output_type="pt").frames
    assert b.shape == (1, T, 3, H, W)
    assert (a.frames[:, 1:] - b[:, 1:]).abs().max() < 1e-5


def test_control_latents_keep_frame_zero_only():
    pipe = KineMaskCogVideoXPipeline(*_tiny_components())
    _, inst, vel = _inputs(B=1)
    vmask, slots = pipe.velocity_mask(inst, vel)
    assert vmask.shape == (1, T, 3, H, W) and vmask[:, 1:].abs().sum() == 0
    assert torch.allclose(vmask[0, 0, 0, 3, 3], torch.tensor(0.75)) and vmask[0, 0, 2].sum() == slots.sum()
    lat = pipe.control_latents(vmask, None)
    assert lat.shape == (1, 3, 3, H // 4, W // 4) and lat[:, 1:].abs().sum() == 0


def test_missing_directory_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        KineMaskCogVideoXPipeline.from_pretrained(tmp_path / "no_such_model")


def test_not_a_model_directory(model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="transformer/config.json is missing"):
        KineMaskCogVideoXPipeline.from_pretrained(empty)
    wrong = tmp_path / "wrong"
    shutil.copytree(model_dir, wrong)
    cfg = json.loads((wrong / "transformer" / "config.json").read_text())
    cfg["_class_name"] = "UNet2DConditionModel"
    (wrong / "transformer" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="UNet2DConditionModel"):
        KineMaskCogVideoXPipeline.from_pretrained(wrong)
    no_cfg = tmp_path / "no_cfg"
    shutil.copytree(model_dir, no_cfg)
    (no_cfg / KINEMASK_CONFIG_NAME).unlink()
    with pytest.raises(ValueError, match=KINEMASK_CONFIG_NAME):
        KineMaskCogVideoXPipeline.from_pretrained(no_cfg)


def test_inconsistent_components_and_inputs():
    config, transformer, vae, scheduler, branch = _tiny_components()
    bad_branch = KineMaskControlBranch.from_transformer(transformer, num_layers=1, control_channels=4)
    with pytest.raises(ValueError, match="control_channels=4"):
        KineMaskCogVideoXPipeline(config, transformer, vae, scheduler, bad_branch)
    with pytest.raises(ValueError, match="num_frames=8"):
        KineMaskCogVideoXPipeline(CogVideoXKineMaskConfig(height=H, width=W, num_frames=8, max_objects=K), transformer, vae, scheduler, branch)
    pipe = KineMaskCogVideoXPipeline(config, transformer, vae, scheduler, branch)
    image, inst, vel = _inputs(B=1)
    with pytest.raises(ValueError, match="velocities"):
        pipe(image, inst, vel[:, :2])
    with pytest.raises(ValueError, match="image"):
        pipe(image * 3, inst, vel)
    with pytest.raises(ValueError, match="guidance_scale"):
        CogVideoXSamplerConfig(guidance_scale=0.5)
    with pytest.raises(ValueError, match="conditioning"):
        CogVideoXKineMaskConfig(conditioning="driver")
