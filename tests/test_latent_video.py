"""Latent KineMask video model (issue #12): tiny random-init models built here, no checkpoint needed
except the embedded raster track model for the pipeline integration test."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from kinemask_ros.velocity_mask import stage2_dropout
from kinemask_ros.world_model.latent import (LATENT_CONFIG_NAME, LatentTrainConfig, LatentVideoConfig, LatentVideoModel,
                                             LatentVideoPipeline, build_autoencoder, build_denoiser, decode_masks,
                                             denoiser_loss, sample_noise_level, autoencoder_loss)
from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT, KineMaskPipeline

TINY = LatentVideoConfig(height=16, width=16, num_frames=6, video_frame_stride=2, max_objects=2, latent_channels=4,
                         ae_channels=(8, 8, 8), denoiser_channels=(8, 16))


def tiny_model(cfg: LatentVideoConfig = TINY, seed: int = 0) -> LatentVideoModel:
    torch.manual_seed(seed)
    return LatentVideoModel(cfg, build_autoencoder(cfg), build_denoiser(cfg, residual_std=0.5))


def scene(cfg: LatentVideoConfig, B: int = 2):
    """A first frame with two square objects, its ids, velocities and a driver mask."""
    H, W, K, T = cfg.height, cfg.width, cfg.max_objects, cfg.num_frames
    ids = torch.zeros(B, H, W, dtype=torch.int64)
    ids[:, 2:6, 2:6] = 1
    ids[:, 9:13, 8:12] = 2
    image = torch.full((B, 3, H, W), 0.6)
    image[:, 0][ids == 1] = 0.9
    image[:, 2][ids == 2] = 0.9
    vel = torch.zeros(B, K, 2)
    vel[:, 0] = torch.tensor([1.5, 1.0])
    driver = torch.zeros(B, T, 1, H, W)
    driver[:, :, 0, 1, 1] = 1
    return image, ids, vel, driver


def batch(cfg: LatentVideoConfig, model: LatentVideoModel, B: int = 2) -> dict:
    g = torch.Generator().manual_seed(1)
    C, F, h, w = cfg.latent_channels, cfg.video_frames - 1, cfg.latent_height, cfg.latent_width
    image, ids, vel, driver = scene(cfg, B)
    slots = (ids[:, None] == torch.arange(1, cfg.max_objects + 1).view(1, -1, 1, 1)).float()
    velocity = torch.rand(B, cfg.video_frames, 3, cfg.height, cfg.width, generator=g) * 2 - 1
    return {"z0": torch.randn(B, C, h, w, generator=g), "residual": torch.randn(B, C, F, h, w, generator=g),
            "first_slots": slots, "velocity": velocity, "driver": driver[:, ::cfg.video_frame_stride],
            "moving": (torch.rand(B, F, h, w, generator=g) > 0.7).float()}


def test_config_validation():
    with pytest.raises(ValueError, match="downscale"):
        LatentVideoConfig(downscale=3)
    with pytest.raises(ValueError, match="ae_channels"):
        LatentVideoConfig(ae_channels=(16, 32))
    with pytest.raises(ValueError, match="height"):
        LatentVideoConfig(height=66)
    assert LatentVideoConfig().latent_height == 16 and LatentVideoConfig().video_frames == 8


def test_encode_decode_shapes():
    m = tiny_model()
    x = torch.rand(5, 3, 16, 16)
    masks = (torch.rand(5, 2, 16, 16) > 0.5).float()
    z = m.encode(x, masks)
    assert z.shape == (5, 4, 4, 4)
    rgb, logits = m.decode(z)
    assert rgb.shape == (5, 3, 16, 16) and logits.shape == (5, 2, 16, 16)
    assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    zv = m.residual_to_latents(z[:2], torch.zeros(2, 4, 2, 4, 4))
    frames, lg = m.decode_video(zv)
    assert frames.shape == (2, 3, 3, 16, 16) and lg.shape == (2, 3, 2, 16, 16)


def test_decode_masks_one_slot_per_pixel():
    logits = torch.tensor([[[[2.0, -1.0]], [[3.0, -2.0]]]])  # (1, K=2, 1, 2)
    m = decode_masks(logits)
    assert m[0, :, 0, 0].tolist() == [False, True]  # the higher logit wins
    assert m[0, :, 0, 1].tolist() == [False, False]  # background


def test_noise_levels_reach_the_high_noise_end():
    g = torch.Generator().manual_seed(0)
    s = sample_noise_level(20000, g, logit_mean=0.5, uniform_fraction=0.25)
    plain = torch.sigmoid(torch.randn(20000, generator=torch.Generator().manual_seed(0)))
    assert float(s.min()) > 0 and float(s.max()) < 1
    assert float((s > 0.9).float().mean()) > 1.5 * float((plain > 0.9).float().mean())


def test_denoiser_training_step_lowers_loss_on_fixed_batch():
    cfg = TINY
    m = tiny_model()
    m.denoiser.train()
    b = batch(cfg, m)
    tc = LatentTrainConfig(data="", out="")
    opt = torch.optim.Adam(m.denoiser.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return denoiser_loss(m, b, torch.Generator().manual_seed(0), tc, None)

    with torch.no_grad():
        before = float(loss())
    for _ in range(40):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        after = float(loss())
    assert after < 0.8 * before


def test_autoencoder_training_step_lowers_loss():
    vae = build_autoencoder(TINY)
    x = torch.cat([torch.rand(4, 3, 16, 16) * 2 - 1, (torch.rand(4, 2, 16, 16) > 0.5).float() * 2 - 1], 1)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, parts = autoencoder_loss(vae, x, torch.Generator().manual_seed(0), 1e-6, 4.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(parts) == {"rgb", "bce", "dice", "kl"}
    assert losses[-1] < 0.7 * losses[0]


def test_stage2_dropping_keeps_frame0_everywhere_and_removes_future_masks():
    cfg = TINY
    m = tiny_model()
    b = batch(cfg, m)
    C, K = cfg.latent_channels, cfg.max_objects
    full = m.condition(b["z0"], b["first_slots"], b["velocity"], b["driver"])
    dropped = m.condition(b["z0"], b["first_slots"], stage2_dropout(b["velocity"], 0), b["driver"])
    assert full.shape == (2, cfg.cond_channels, cfg.video_frames - 1, 4, 4)
    v0 = slice(C + K, C + K + 3)
    vt = slice(C + K + 3, C + K + 6)
    assert torch.equal(full[:, v0], dropped[:, v0])  # frame 0's velocity mask reaches every frame
    assert float(full[:, v0].abs().sum()) > 0
    assert float(dropped[:, vt].abs().sum()) == 0  # future masks removed
    assert float(full[:, vt].abs().sum()) > 0
    keep1 = m.condition(b["z0"], b["first_slots"], stage2_dropout(b["velocity"], 1), b["driver"])
    assert float(keep1[:, vt][:, :, 0].abs().sum()) > 0 and float(keep1[:, vt][:, :, 1:].abs().sum()) == 0


def test_generate_sampling_shapes_and_determinism():
    cfg = TINY
    pipe = LatentVideoPipeline(tiny_model())
    image, ids, vel, driver = scene(cfg, 3)
    out = pipe(image, ids, vel, driver, video_mode="generate", num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (3, cfg.video_frames, 3, 16, 16)
    assert out.object_masks.shape == (3, cfg.video_frames, 2, 16, 16) and out.object_masks.dtype == torch.bool
    assert torch.equal(out.frames[:, 0], image)
    assert torch.equal(out.object_masks[:, 0, 0], ids == 1)
    assert out.frame_indices == [0, 2, 4]
    again = pipe(image, ids, vel, driver, video_mode="generate", num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.frames, again.frames)
    with pytest.raises(ValueError, match="needs tracks"):
        pipe(image, ids, vel, driver, video_mode="draft")


def test_mismatched_autoencoder_and_denoiser_are_refused():
    cfg = TINY
    other = replace(cfg, latent_channels=6)
    with pytest.raises(ValueError, match="latent channels.*autoencoder 6.*Fix"):
        LatentVideoModel(cfg, build_autoencoder(other), build_denoiser(cfg))
    big = replace(cfg, height=32, width=32)
    with pytest.raises(ValueError, match="resolution: autoencoder trained at 32px"):
        LatentVideoModel(cfg, build_autoencoder(big), build_denoiser(cfg))
    with pytest.raises(ValueError, match="object slots"):
        LatentVideoModel(cfg, build_autoencoder(replace(cfg, max_objects=3)), build_denoiser(cfg))


def test_bad_latents_and_frames_are_refused():
    m = tiny_model()
    with pytest.raises(ValueError, match=r"latents must be \(\.\.\., 4, 4, 4\)"):
        m.decode(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="latents must be"):
        m.decode(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"in \[0, 1\].*\(x \+ 1\) / 2"):
        m.encode(torch.rand(2, 3, 16, 16) * 2 - 1)
    with pytest.raises(ValueError, match="floating point"):
        m.encode(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="resolution"):
        m.encode(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="start must be"):
        m.sample(torch.zeros(1, TINY.cond_channels, 2, 4, 4), 2, start=torch.zeros(1, 4, 3, 4, 4))


def test_save_load_round_trip(tmp_path):
    m = tiny_model(seed=3)
    m.save_pretrained(tmp_path)
    assert (tmp_path / "vae" / "config.json").exists() and (tmp_path / "latent_video" / LATENT_CONFIG_NAME).exists()
    m2 = LatentVideoModel.from_pretrained(tmp_path)
    assert m2.config == m.config and m2.residual_std == m.residual_std
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(m.encode(x), m2.encode(x))
    cond = m.condition(m.encode(x), torch.zeros(2, 2, 16, 16), torch.zeros(2, 3, 3, 16, 16), torch.zeros(2, 3, 1, 16, 16))
    a = m.sample(cond, 2, torch.Generator().manual_seed(0))
    b = m2.sample(cond, 2, torch.Generator().manual_seed(0))
    assert torch.allclose(a, b)
    # a checkpoint whose vae/ comes from another run is refused with the fix
    build_autoencoder(replace(TINY, latent_channels=6)).save_pretrained(tmp_path / "vae")
    with pytest.raises(ValueError, match="export both from the same"):
        LatentVideoModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="latent_video_stage1"):
        LatentVideoModel.from_pretrained(tmp_path, denoiser_subfolder="latent_video_stage1")


def test_pipeline_integration_with_raster_track_model(tmp_path):
    """A checkpoint = the embedded raster model + a (tiny) 64x64 latent model: imagine_video in all modes."""
    for name in ("world_model_config.json", "track"):
        src = EMBEDDED_CHECKPOINT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    cfg = replace(TINY, height=64, width=64, num_frames=16, max_objects=4, ae_channels=(8, 8, 8), denoiser_channels=(8, 8))
    tiny_model(cfg).save_pretrained(tmp_path)
    pipe = KineMaskPipeline.from_pretrained(tmp_path)
    assert pipe.latent_video is not None and pipe.video_model is None
    image, ids, vel, driver = scene(cfg, 2)
    ids = torch.zeros(2, 64, 64, dtype=torch.int64)
    ids[:, 10:20, 10:20] = 1
    ids[:, 30:40, 22:32] = 2
    image = torch.rand(2, 3, 64, 64)
    vel = torch.zeros(2, 4, 2)
    vel[:, 0] = torch.tensor([3.0, 2.0])
    driver = torch.zeros(2, 16, 1, 64, 64)
    for mode in ("generate", "refine", "draft"):
        out = pipe.imagine_video(image, ids, vel, driver, video_mode=mode, num_inference_steps=2)
        assert out.frames.shape == (2, 8, 3, 64, 64) and out.object_masks.shape == (2, 8, 4, 64, 64)
        assert (out.tracks is None) == (mode == "generate")
    draft = pipe.imagine_video(image, ids, vel, driver, video_mode="draft")
    assert draft.tracks.shape == (2, 4, 16, 2)
    assert bool(draft.object_masks[:, -1, 0].any())  # the pushed object is still in the draft
    with pytest.raises(ValueError, match="velocities must be"):
        pipe.imagine_video(image, ids, None, driver)
    without = KineMaskPipeline.from_pretrained(tmp_path, load_latent_video=False)
    with pytest.raises(ValueError, match="no latent video model"):
        without.imagine_video(image, ids, vel, driver)


def test_training_command_runs_and_resumes(tmp_path):
    from kinemask_ros.sim_bridge.dataset import GeneratorConfig, generate
    from kinemask_ros.sim_bridge.scene import SceneConfig
    from kinemask_ros.world_model.latent import main

    base = SceneConfig()
    sc = replace(base, camera=replace(base.camera, width=16, height=16), num_frames=6, max_objects=2)
    generate(GeneratorConfig(num_episodes=6, seed=0, episodes_per_shard=6, scene=sc), tmp_path / "data", progress=False, log=lambda *a: None)
    common = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--ae-batch", "4", "--batch", "2",
              "--latent-channels", "4", "--denoiser-channels", "8", "16", "--ckpt-every", "2", "--device", "cpu"]
    common += ["--size", "16", "--num-frames", "6", "--max-objects", "2", "--ae-channels", "8", "8", "8"]
    assert main(common + ["--ae-steps", "2", "--stage1-steps", "2", "--stage2-steps", "2"]) == 0
    run = tmp_path / "run"
    for p in ("vae/config.json", "latent_video/config.json", f"latent_video/{LATENT_CONFIG_NAME}", "stage1/latent_video/config.json",
              "latents.npy", "state_ae.pt", "state_latent_video.pt"):
        assert (run / p).exists(), p
    assert main(common + ["--ae-steps", "2", "--stage1-steps", "2", "--stage2-steps", "4"]) == 0
    st = torch.load(run / "state_latent_video.pt", weights_only=False)
    assert st["step"] == 6 and len(st["losses"]) == 6  # resumed at 4, not restarted
    assert main(common + ["--latent-channels", "6", "--ae-steps", "2"]) == 2  # another model config is refused
    m = LatentVideoModel.from_pretrained(tmp_path / "run")
    assert np.isfinite(m.residual_std) and m.residual_std > 0
    # fine-tuning a model made without the push prior: autoencoder copied, denoiser grown, stage 2 only
    assert main(common + ["--out", str(tmp_path / "old"), "--no-push-prior", "--ae-steps", "2", "--stage1-steps", "2",
                          "--stage2-steps", "0"]) == 0
    assert main(common + ["--out", str(tmp_path / "ft"), "--what", "denoiser", "--init-from", str(tmp_path / "old"),
                          "--stage1-steps", "0", "--stage2-steps", "2", "--stage2-final-fraction", "0.5"]) == 0
    ft = LatentVideoModel.from_pretrained(tmp_path / "ft")
    old = LatentVideoModel.from_pretrained(tmp_path / "old")
    assert ft.config.push_prior and not old.config.push_prior
    assert ft.residual_std == old.residual_std  # the old model's statistics


def test_pushed_layout_carries_moving_objects_by_the_pushers_progress():
    from kinemask_ros.world_model.latent import carry_slots, pushed_displacement, pushed_layout

    H = W = 16
    slots = torch.zeros(1, 2, H, W)
    slots[0, 0, 4:7, 4:7] = 1  # pushed to the right (frame-0 velocity along +u)
    slots[0, 1, 10:13, 2:5] = 1  # still
    v0 = torch.zeros(1, 3, H, W)
    v0[0, 0][slots[0, 0] > 0] = 0.9  # speed does not matter, only the direction
    driver = torch.zeros(1, 4, 1, H, W)
    for t, (u, v) in enumerate([(2, 5), (4, 6), (6, 5), (6, 5)]):  # +2 px along u per frame (v wobbles), then stops
        driver[0, t, 0, v, u] = 1
    driver[0, 3] = 0  # out of view in the last frame: keeps the last position
    disp = pushed_displacement(slots, v0, driver)
    assert disp.shape == (1, 3, 2, 2)
    assert torch.allclose(disp[0, :, 0], torch.tensor([[2.0, 0.0], [4.0, 0.0], [4.0, 0.0]]))  # projected on the direction
    assert torch.equal(disp[0, :, 1], torch.zeros(3, 2))  # still objects stay
    out = pushed_layout(slots, v0, driver)
    assert torch.allclose(out[0, 1, 0], torch.roll(slots[0, 0], 4, 1), atol=1e-5)
    assert torch.allclose(out[0, :, 1], slots[0, 1].expand(3, H, W), atol=1e-5)
    gone = carry_slots(slots, torch.full((1, 1, 2, 2), 40.0))
    assert float(gone.sum()) < 1e-5  # carried off the image: gone, not wrapped
    assert float(out[0, 0, 0].sum()) == pytest.approx(9.0, abs=1e-4)  # area kept
    assert torch.equal(pushed_displacement(slots, v0, torch.zeros_like(driver)), torch.zeros(1, 3, 2, 2))  # no pusher: no push


def test_push_prior_uses_only_the_first_frame_velocity_mask_and_the_driver():
    cfg = replace(TINY, push_prior=True)
    assert cfg.cond_channels == TINY.cond_channels + cfg.max_objects
    with pytest.raises(ValueError, match="push_prior"):
        replace(TINY, conditioning="velocity", push_prior=True)
    m = tiny_model(cfg)
    b = batch(cfg, m)
    for t in range(cfg.video_frames):  # the pusher moves 1.5 px per video frame
        b["driver"][:, t] = 0
        b["driver"][:, t, 0, 1, 1 + int(1.5 * t)] = 1
    b["velocity"][:, 0, :2] = 0.5  # frame 0: everything moves diagonally
    full = m.condition(b["z0"], b["first_slots"], b["velocity"], b["driver"])
    dropped = m.condition(b["z0"], b["first_slots"], stage2_dropout(b["velocity"], 0), b["driver"])
    prior = slice(TINY.cond_channels, cfg.cond_channels)
    assert full.shape[1] == cfg.cond_channels
    assert torch.equal(full[:, prior], dropped[:, prior])  # future velocity masks do not enter the prior
    assert not torch.equal(full[:, prior][:, :, 0], full[:, prior][:, :, -1])  # it moves over time
    assert torch.equal(full[:, : TINY.cond_channels], tiny_model(TINY).condition(b["z0"], b["first_slots"], b["velocity"], b["driver"]))


def test_init_from_grows_the_input_layer_and_keeps_predictions(tmp_path):
    from kinemask_ros.world_model.latent import grow_denoiser_from

    old = tiny_model(TINY, seed=3)
    for prm in old.denoiser.parameters():  # a trained-looking model (the output layer starts at zero)
        prm.data.normal_(0, 0.1)
    old.save_pretrained(tmp_path / "ck")
    cfg = replace(TINY, push_prior=True)
    fresh = tiny_model(cfg, seed=5)
    grown = grow_denoiser_from(fresh.denoiser, tmp_path / "ck")
    assert grown.config.cond_channels == cfg.cond_channels and grown.config.residual_std == old.denoiser.config.residual_std
    g = torch.Generator().manual_seed(0)
    F_, h = cfg.video_frames - 1, cfg.latent_height
    x = torch.randn(2, cfg.latent_channels, F_, h, h, generator=g)
    cond = torch.randn(2, cfg.cond_channels, F_, h, h, generator=g)
    t = torch.tensor([500.0, 900.0])
    with torch.no_grad():
        assert torch.allclose(grown(x, t, cond), old.denoiser(x, t, cond[:, : TINY.cond_channels]), atol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        grow_denoiser_from(tiny_model(replace(TINY, denoiser_channels=(8, 8))).denoiser, tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="no latent denoiser"):
        grow_denoiser_from(fresh.denoiser, tmp_path)
