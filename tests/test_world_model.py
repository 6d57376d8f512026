"""World model: config validation, networks, training loop (resume), pipeline inputs/outputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from kinemask_ros.world_model.config import WorldModelConfig
from kinemask_ros.world_model.data import EpisodeTensors, dihedral, morph_ids, slot_masks_from_ids
from kinemask_ros.world_model.networks import TrackDenoiser, VideoDenoiser, video_cond_channels
from kinemask_ros.world_model.pipeline import EMBEDDED_CHECKPOINT, KineMaskPipeline
from kinemask_ros.world_model.train import TrainConfig, flow_match_pair, train

TINY = WorldModelConfig(conditioning="both", video_channels=(8, 16), track_dim=32, track_layers=1)


def tiny_checkpoint(root: Path, cfg: WorldModelConfig = TINY, video: bool = True, seed: int = 0) -> Path:
    """A random-init checkpoint directory in the layout ``KineMaskPipeline.from_pretrained`` reads."""
    torch.manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    cfg.save(root / "world_model_config.json")
    TrackDenoiser(height=cfg.height, width=cfg.width, num_frames=cfg.num_frames, max_objects=cfg.max_objects,
                  conditioning=cfg.conditioning, dim=cfg.track_dim, layers=cfg.track_layers).save_pretrained(root / "track")
    if video:
        VideoDenoiser(max_objects=cfg.max_objects, cond_channels=video_cond_channels(cfg.max_objects, cfg.conditioning),
                      channels=cfg.video_channels).save_pretrained(root / "video")
    return root


def inputs(B: int = 3, cfg: WorldModelConfig = TINY) -> dict:
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(B, cfg.height, cfg.width, dtype=torch.int64)
    mask[:, 4:9, 4:9] = 1
    mask[:, 15:20, 15:21] = 2
    vel = torch.zeros(B, cfg.max_objects, 2)
    vel[:, 0] = torch.tensor([2.0, 0.5])
    return {"image": torch.rand(B, 3, cfg.height, cfg.width, generator=g), "instance_mask": mask, "velocities": vel,
            "driver": torch.zeros(B, cfg.num_frames, 1, cfg.height, cfg.width)}


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("field,value", [("height", 30), ("num_frames", 1), ("v_max", 0.0), ("v_max", float("nan")),
                                         ("conditioning", "text"), ("max_objects", 0), ("video_frame_stride", 16)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        replace(WorldModelConfig(), **{field: value})


def test_config_round_trip_and_unknown_fields(tmp_path):
    TINY.save(tmp_path / "c.json")
    assert WorldModelConfig.load(tmp_path / "c.json") == TINY
    d = TINY.to_dict()
    d["mystery"] = 1
    with pytest.raises(ValueError, match="mystery"):
        WorldModelConfig.from_dict(d)
    assert TINY.video_frames == 8


# ----------------------------------------------------------------------------- data helpers
def test_dihedral_maps_points_like_images():
    H = W = 8
    img = np.zeros((H, W), np.uint8)
    img[1, 5] = 1  # pixel centre (5.5, 1.5)
    for k in range(8):
        f_img, f_pts, f_vec = dihedral(k, H, W)
        out = f_img(img[None], 1)[0]
        r, c = np.argwhere(out == 1)[0]
        np.testing.assert_allclose(f_pts(np.array([5.5, 1.5])), [c + 0.5, r + 0.5])
        # a vector is the difference of two mapped points
        a, b = np.array([2.0, 3.0]), np.array([5.0, 1.0])
        np.testing.assert_allclose(f_vec(b - a), f_pts(b) - f_pts(a), atol=1e-6)


def test_morph_ids_dilate_and_erode():
    ids = np.zeros((7, 7), np.uint8)
    ids[2:5, 2:5] = 3
    assert (morph_ids(ids, dilate=True) == 3).sum() == 25
    assert (morph_ids(ids, dilate=False) == 3).sum() == 1
    s = slot_masks_from_ids(ids, 4)
    assert s.shape == (4, 7, 7) and s[2].sum() == 9 and s[[0, 1, 3]].sum() == 0


def test_flow_match_pair_interpolates():
    x0 = torch.randn(16, 3)
    xs, t, target = flow_match_pair(x0, torch.Generator().manual_seed(0))
    s = (t / 1000).view(-1, 1)
    noise = target + x0
    torch.testing.assert_close(xs, (1 - s) * x0 + s * noise)
    assert torch.all((t > 0) & (t < 1000))


# ----------------------------------------------------------------------------- pipeline
def test_pipeline_shapes_determinism_and_video(tmp_path):
    pipe = KineMaskPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck"))
    inp = inputs()
    a = pipe(**inp, num_samples=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    b = pipe(**inp, num_samples=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert a.tracks.shape == (3, 2, 4, 16, 2)
    torch.testing.assert_close(a.tracks, b.tracks, equal_nan=True)
    assert a.present[:, :2].all() and not a.present[:, 2:].any()
    assert torch.isnan(a.tracks[:, :, 2:]).all() and torch.isfinite(a.tracks[:, :, :2]).all()
    # frame 0 of the track is the mask centroid of each object
    torch.testing.assert_close(a.tracks[0, 0, 0, 0], torch.tensor([6.5, 6.5]))
    v = pipe(**inp, num_samples=1, num_inference_steps=2, return_video=True, video_inference_steps=2, video_indices=[2, 0],
             generator=torch.Generator().manual_seed(0))
    assert v.frames.shape == (2, 8, 3, 32, 32) and v.object_masks.shape == (2, 8, 4, 32, 32)
    assert float(v.frames.min()) >= 0 and float(v.frames.max()) <= 1
    torch.testing.assert_close(v.frames[0, 0], inp["image"][2])
    assert v.frame_indices == list(range(0, 16, 2))


def test_pipeline_bad_inputs(tmp_path):
    pipe = KineMaskPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck", video=False))
    ok = inputs()
    bad = [
        ({"image": ok["image"][:, :, :16]}, "image must be"),
        ({"image": (ok["image"] * 255).to(torch.uint8)}, "floating point"),
        ({"image": ok["image"] * float("nan")}, "NaN"),
        ({"image": ok["image"] * 3}, r"\[0, 1\]"),
        ({"instance_mask": torch.zeros_like(ok["instance_mask"])}, "no object"),
        ({"instance_mask": ok["instance_mask"] * 5}, "slots"),
        ({"velocities": ok["velocities"] * float("inf")}, "NaN or inf"),
        ({"velocities": None}, "velocities must be"),
        ({"driver": ok["driver"][:, :3]}, "driver must be"),
    ]
    for change, msg in bad:
        with pytest.raises(ValueError, match=msg):
            pipe(**{**ok, **change}, num_inference_steps=1)
    with pytest.raises(ValueError, match="num_samples"):
        pipe(**ok, num_samples=0)
    with pytest.raises(ValueError, match="no video model"):
        pipe(**ok, num_inference_steps=1, return_video=True)


def test_missing_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="kinemask-train"):
        KineMaskPipeline.from_pretrained(tmp_path / "nope")
    ck = tiny_checkpoint(tmp_path / "ck", video=False)
    other = replace(TINY, num_frames=8)
    other.save(ck / "world_model_config.json")
    with pytest.raises(ValueError, match="does not match"):
        KineMaskPipeline.from_pretrained(ck)
    (ck / "world_model_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="world_model_config.json"):
        KineMaskPipeline.from_pretrained(ck)


def test_embedded_checkpoint_loads_if_shipped():
    if not (EMBEDDED_CHECKPOINT / "world_model_config.json").exists():
        pytest.skip("no embedded checkpoint in this checkout")
    pipe = KineMaskPipeline.from_pretrained()
    assert pipe.video_model is not None
    card = (EMBEDDED_CHECKPOINT / "README.md").read_text()
    assert "kinemask-train" in card and "world_model_fidelity" in card
    size = sum(p.stat().st_size for p in EMBEDDED_CHECKPOINT.rglob("*") if p.is_file())
    assert size < 40e6


# ----------------------------------------------------------------------------- training
def test_training_runs_resumes_and_exports(tmp_path):
    from kinemask_ros.sim_bridge.dataset import GeneratorConfig, generate

    data = tmp_path / "data"
    generate(GeneratorConfig(num_episodes=6, episodes_per_shard=6, collision_fraction=0.5), data, progress=False, log=lambda *_: None)
    mc = TINY
    tc = TrainConfig(data=str(data), out=str(tmp_path / "run"), track_steps=4, video_stage1_steps=2, video_stage2_steps=2,
                     track_batch=4, video_batch=2, ckpt_every=2)
    train(tc, mc)
    run = tmp_path / "run"
    for sub in ("track", "video", "video_stage1"):
        assert (run / sub / "diffusion_pytorch_model.safetensors").exists(), sub
    assert (run / "training_curve.png").stat().st_size > 1000
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert {r["run"] for r in log} == {"track", "video"}
    assert {r.get("stage") for r in log if r["run"] == "video"} == {1, 2}
    st = torch.load(run / "state_track.pt", weights_only=False)
    assert st["step"] == 4 and len(st["losses"]) == 4
    # resume: more steps continue from the saved state instead of starting over
    train(replace(tc, track_steps=6, what="track"), mc)
    st = torch.load(run / "state_track.pt", weights_only=False)
    assert st["step"] == 6 and len(st["losses"]) == 6
    KineMaskPipeline.from_pretrained(run)  # the exported run directory is a loadable checkpoint
    with pytest.raises(ValueError, match="another model config"):
        train(tc, replace(mc, v_max=2.0))


def test_episode_tensors_shapes(tmp_path):
    from kinemask_ros.sim_bridge.dataset import GeneratorConfig, generate

    generate(GeneratorConfig(num_episodes=4, episodes_per_shard=4), tmp_path / "d", progress=False, log=lambda *_: None)
    et = EpisodeTensors.from_dir(tmp_path / "d", TINY)
    b = et.batch(np.arange(4), np.random.default_rng(0))
    assert b["frames"].shape == (4, 16, 3, 32, 32) and b["velocity"].shape == (4, 16, 3, 32, 32)
    assert b["tracks"].shape == (4, 4, 15, 2) and b["driver"].shape == (4, 16, 1, 32, 32)
    # ch2 of the velocity mask covers exactly the objects of the (un-augmented) first frame
    ids = et.data["masks"][0, 0]
    assert torch.equal(b["velocity"][0, 0, 2] > 0, torch.from_numpy((ids >= 1) & (ids <= 4)))
    with pytest.raises(ValueError, match="model config"):
        EpisodeTensors(et.data, replace(TINY, height=64, width=64))


def test_draft_video_moves_objects_along_tracks():
    from kinemask_ros.world_model.draft import draft_video, shift_image, velocity_mask_from_draft

    img = torch.full((1, 3, 16, 16), 0.2)
    slots = torch.zeros(1, 2, 16, 16)
    slots[0, 0, 2:4, 2:4] = 1
    img[0, :, 2:4, 2:4] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]
    disp = torch.zeros(1, 2, 3, 2)
    disp[0, 0, 1] = torch.tensor([3.0, 0.0])
    disp[0, 0, 2] = torch.tensor([3.0, 5.0])
    disp[0, 1] = float("nan")  # absent slot
    d = draft_video(img, slots, disp)
    assert d.shape == (1, 5, 3, 16, 16)
    assert torch.equal(d[0, 3, 2] > 0, shift_image(slots[0, 0], 3, 5) > 0)
    torch.testing.assert_close(d[0, :3, 2, 7, 5], torch.tensor([1.0, -1.0, -1.0]))
    torch.testing.assert_close(d[0, :3, 2, 2, 2], torch.full((3,), 0.2))  # the hole is filled with the table colour
    assert (d[0, 4] < 0).all()
    assert shift_image(slots[0, 0], 20, 0).sum() == 0
    v = velocity_mask_from_draft((d[:, 3:] > 0).float(), torch.ones(1, 2, 3, 2) * 2.0, v_max=4.0)
    assert v.shape == (1, 3, 3, 16, 16) and float(v[0, 1, 0].max()) == 0.5 and float(v[0, 1, 2].sum()) == 4


def test_pipeline_video_modes(tmp_path):
    pipe = KineMaskPipeline.from_pretrained(tiny_checkpoint(tmp_path / "ck"))
    inp = inputs(B=2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    draft = pipe(**inp, num_inference_steps=2, return_video=True, video_mode="draft", generator=g())
    refine = pipe(**inp, num_inference_steps=2, return_video=True, video_mode="refine", video_strength=0.3,
                  video_inference_steps=2, generator=g())
    gen = pipe(**inp, num_inference_steps=2, return_video=True, video_mode="generate", video_inference_steps=2, generator=g())
    for out in (draft, refine, gen):
        assert out.frames.shape == (2, 8, 3, 32, 32)
    # refining from noise level 0.3 stays near the draft; generating from pure noise does not
    d_ref = (refine.frames - draft.frames).abs().mean()
    d_gen = (gen.frames - draft.frames).abs().mean()
    assert d_ref < d_gen
    with pytest.raises(ValueError, match="video_mode"):
        pipe(**inp, num_inference_steps=1, return_video=True, video_mode="dream")
    with pytest.raises(ValueError, match="video_strength"):
        pipe(**inp, num_inference_steps=1, return_video=True, video_strength=0.0)
