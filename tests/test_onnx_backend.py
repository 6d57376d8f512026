"""ONNX export + ONNX Runtime backend: graphs check, same rollouts as torch, clear errors."""

from __future__ import annotations

import json
import logging
import shutil

import onnx
import pytest
import torch
from torch import nn

from kinemask_ros.world_model.backends import BackendConfig, load_pipeline
from kinemask_ros.world_model.config import WorldModelConfig
from kinemask_ros.world_model.gpu import resolve_torch_device
from kinemask_ros.world_model.networks import TrackDenoiser, VideoDenoiser, video_cond_channels
from kinemask_ros.world_model.onnx_backend import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    GRAPH_FILES,
    META_WEIGHTS,
    META_WORLD_CONFIG,
    OnnxGraph,
    OnnxTrackDenoiser,
    checkpoint_weights_sha256,
    export_checkpoint,
    main,
    resolve_providers,
)

#: torch vs ONNX Runtime on the same inputs and generator seed (measured ~1e-6 on this machine).
ATOL_TRACKS_PX = 1e-4
ATOL_FRAMES = 1e-4

WORLD = WorldModelConfig(height=16, width=16, num_frames=8, video_frame_stride=2, max_objects=3, conditioning="both",
                         video_channels=(8, 16), track_dim=32, track_layers=1)


def _save_checkpoint(root, world=WORLD, seed=0):
    torch.manual_seed(seed)
    track = TrackDenoiser(height=world.height, width=world.width, num_frames=world.num_frames, max_objects=world.max_objects,
                          conditioning=world.conditioning, text_dim=world.text_dim, dim=world.track_dim, layers=world.track_layers)
    video = VideoDenoiser(max_objects=world.max_objects, cond_channels=video_cond_channels(world.max_objects, world.conditioning),
                          channels=tuple(world.video_channels), text_dim=world.text_dim)
    # the output layers are zero-initialised for training; give them weights so outputs are not trivially 0
    for lin in (track.head[1], video.out):
        nn.init.normal_(lin.weight, std=0.05)
        nn.init.normal_(lin.bias, std=0.05)
    root.mkdir(parents=True, exist_ok=True)
    world.save(root / "world_model_config.json")
    track.save_pretrained(root / "track")
    video.save_pretrained(root / "video")
    return root


def _inputs(B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = W = WORLD.height
    image = torch.rand(B, 3, H, W, generator=g)
    inst = torch.zeros(B, H, W, dtype=torch.long)
    inst[:, 2:7, 3:8] = 1
    inst[:, 9:14, 8:13] = 2  # slot 3 stays empty: exercises the padding mask
    vel = torch.zeros(B, WORLD.max_objects, 2)
    vel[:, 0] = torch.randn(B, 2, generator=g) * 2
    driver = torch.zeros(B, WORLD.num_frames, 1, H, W)
    driver[:, :3, :, 3:6, 0:3] = 1
    return image, inst, vel, driver


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = _save_checkpoint(tmp_path_factory.mktemp("ckpt"))
    report = export_checkpoint(root)
    return root, report


def test_export_writes_checked_graphs_with_metadata(exported):
    root, report = exported
    names = sorted(p.name for p in report.files)
    assert names == sorted([GRAPH_FILES["track_encode"], GRAPH_FILES["track_denoise"], GRAPH_FILES["video_denoise"],
                            "world_model_config.json"])
    for key in ("track_encode", "track_denoise", "video_denoise"):
        path = root / "onnx" / GRAPH_FILES[key]
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path))
        assert model.opset_import[0].version >= 17
        props = {p.key: p.value for p in model.metadata_props}
        assert json.loads(props[META_WORLD_CONFIG]) == WORLD.to_dict()
        sub = "video" if key.startswith("video") else "track"
        assert props[META_WEIGHTS] == checkpoint_weights_sha256(root / sub)
        batch_dims = [i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input]
        assert all(d == "batch" for d in batch_dims)
    assert max(report.max_abs_diff.values()) < 1e-4, report.max_abs_diff


def test_onnxruntime_pipeline_matches_torch(exported):
    root, _ = exported
    image, inst, vel, driver = _inputs(B=5)  # export used batch 2: the batch axis is dynamic
    pt = load_pipeline(root, backend="torch", device="cpu")
    ox = load_pipeline(root, backend="onnxruntime", device="cpu")
    assert isinstance(ox.track_model, OnnxTrackDenoiser) and ox.video_model is not None
    assert ox.device == torch.device("cpu")
    kw = dict(num_samples=2, num_inference_steps=4, return_video=True, video_inference_steps=3)
    a = pt(image, inst, vel, driver, generator=torch.Generator().manual_seed(7), **kw)
    b = ox(image, inst, vel, driver, generator=torch.Generator().manual_seed(7), **kw)
    assert a.tracks.shape == b.tracks.shape == (5, 2, 3, 8, 2)
    assert torch.equal(a.present, b.present) and not bool(a.present[:, 2].any())
    finite = torch.isfinite(a.tracks)
    assert torch.equal(finite, torch.isfinite(b.tracks))
    diff_tracks = (a.tracks[finite] - b.tracks[finite]).abs().max().item()
    diff_frames = (a.frames - b.frames).abs().max().item()
    assert (a.tracks[finite] - a.tracks[finite][:1]).abs().max() > 0.01  # the model really moved something
    assert diff_tracks < ATOL_TRACKS_PX, diff_tracks
    assert diff_frames < ATOL_FRAMES, diff_frames
    assert torch.equal(a.object_masks, b.object_masks)


def test_onnx_only_directory_loads(exported, tmp_path):
    root, _ = exported
    deploy = tmp_path / "deploy"
    shutil.copytree(root / "onnx", deploy)
    pipe = load_pipeline(deploy, backend="onnxruntime", device="cpu")
    image, inst, vel, driver = _inputs(B=1)
    out = pipe(image, inst, vel, driver, num_inference_steps=2)
    assert out.tracks.shape == (1, 1, 3, 8, 2)


def test_not_onnx_file_is_a_value_error_naming_it(exported, tmp_path):
    root, _ = exported
    bad = tmp_path / "bad"
    shutil.copytree(root / "onnx", bad)
    (bad / GRAPH_FILES["track_denoise"]).write_text("this is not an ONNX model\n")
    with pytest.raises(ValueError, match="track_denoise.onnx"):
        load_pipeline(bad, backend="onnxruntime", device="cpu")
    # a valid ONNX file that kinemask-export-onnx did not write
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8), str(foreign))
    with pytest.raises(ValueError, match="not one written by kinemask-export-onnx"):
        OnnxGraph(foreign)
    no_export = tmp_path / "no_export"
    no_export.mkdir()
    WORLD.save(no_export / "world_model_config.json")
    with pytest.raises(FileNotFoundError, match="kinemask-export-onnx"):
        load_pipeline(no_export, backend="onnxruntime")


def test_config_mismatch_names_the_fields(exported, tmp_path):
    root, _ = exported
    other = tmp_path / "other"
    shutil.copytree(root / "onnx", other)
    d = WORLD.to_dict()
    d.update(v_max=6.0, track_scale=4.0)
    (other / "world_model_config.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"track_scale: onnx=8\.0 vs checkpoint=4\.0.*v_max: onnx=4\.0 vs checkpoint=6\.0"):
        load_pipeline(other, backend="onnxruntime", device="cpu")


def test_stale_export_is_refused(exported, tmp_path):
    root, _ = exported
    stale = tmp_path / "stale"
    shutil.copytree(root, stale)
    track = TrackDenoiser.from_pretrained(stale / "track")
    with torch.no_grad():
        track.head[1].bias.add_(0.1)  # "retrained" after the export
    track.save_pretrained(stale / "track")
    with pytest.raises(ValueError, match="stale"):
        load_pipeline(stale, backend="onnxruntime", device="cpu")
    assert load_pipeline(stale, backend="onnxruntime", device="cpu", verify_weights=False) is not None


def test_cli_export(exported, tmp_path, capsys):
    root, _ = exported
    assert main(["--checkpoint", str(root), "--out", str(tmp_path / "o"), "--no-video"]) == 0
    assert (tmp_path / "o" / GRAPH_FILES["track_encode"]).is_file()
    assert not (tmp_path / "o" / GRAPH_FILES["video_denoise"]).exists()
    assert "max |torch - onnxruntime|" in capsys.readouterr().out
    assert main(["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert "not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- providers / devices
def _ours(caplog):
    return [r for r in caplog.records if r.name.startswith("kinemask_ros.world_model")]


def test_cpu_fallback_logs_exactly_one_line(monkeypatch, caplog):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", CPU_PROVIDER])
    with caplog.at_level(logging.INFO):
        assert resolve_providers("auto") == [CPU_PROVIDER]
    recs = _ours(caplog)
    assert len(recs) == 1 and CPU_PROVIDER in recs[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert resolve_providers("cpu") == [CPU_PROVIDER]
    assert not _ours(caplog)


def test_gpu_providers_preferred_when_available(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER])
    assert resolve_providers("auto") == [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
    assert resolve_providers("cuda:1", use_tensorrt=True) == [
        ("TensorrtExecutionProvider", {"device_id": 1}), (CUDA_PROVIDER, {"device_id": 1}), CPU_PROVIDER]
    assert resolve_providers("cpu") == [CPU_PROVIDER]


def test_unavailable_provider(monkeypatch, caplog):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU_PROVIDER])
    with pytest.raises(ValueError, match="CUDAExecutionProvider.*not available"):
        resolve_providers(providers=[CUDA_PROVIDER], strict=True)
    with caplog.at_level(logging.INFO):
        assert resolve_providers(providers=[CUDA_PROVIDER]) == [CPU_PROVIDER]
    assert len(_ours(caplog)) == 1
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        resolve_providers("cuda")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert resolve_providers("cuda", on_missing_gpu="fallback") == [CPU_PROVIDER]
    assert len(_ours(caplog)) == 1 and _ours(caplog)[0].levelno == logging.WARNING
    with pytest.raises(ValueError, match="device"):
        resolve_providers("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU paths")
def test_torch_gpu_request_without_cuda(exported, caplog):
    root, _ = exported
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_torch_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_pipeline(root, backend="torch", device="cuda")
    with caplog.at_level(logging.WARNING):
        pipe = load_pipeline(root, backend="torch", device="cuda", on_missing_gpu="fallback")
    assert pipe.device == torch.device("cpu") and len(_ours(caplog)) == 1
    assert resolve_torch_device("auto") == torch.device("cpu")


def test_backend_config_validation():
    with pytest.raises(ValueError, match="backend"):
        BackendConfig(backend="tensorflow")
    with pytest.raises(ValueError, match="providers"):
        BackendConfig(backend="torch", providers=(CPU_PROVIDER,))
    with pytest.raises(ValueError, match="on_missing_gpu"):
        BackendConfig(on_missing_gpu="maybe")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_backend_on_gpu_matches_cpu(exported):
    root, _ = exported
    image, inst, vel, driver = _inputs(B=3)
    cpu = load_pipeline(root, backend="torch", device="cpu")
    gpu = load_pipeline(root, backend="torch", device="cuda")
    a = cpu(image, inst, vel, driver, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    noise_gen = torch.Generator(device="cuda").manual_seed(0)
    b = gpu(image, inst, vel, driver, num_inference_steps=4, generator=noise_gen)
    assert b.tracks.device.type == "cuda" and torch.isfinite(b.tracks[b.present[:, None, :, None, None].expand_as(b.tracks)]).all()
    assert a.tracks.shape == b.tracks.shape


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_onnxruntime_cuda_provider(exported):
    import onnxruntime as ort

    if CUDA_PROVIDER not in ort.get_available_providers():
        pytest.skip("onnxruntime build without CUDAExecutionProvider (install onnxruntime-gpu)")
    root, _ = exported
    pipe = load_pipeline(root, backend="onnxruntime", device="cuda")
    assert pipe.track_model.providers[0] == CUDA_PROVIDER
    image, inst, vel, driver = _inputs(B=2)
    out = pipe(image, inst, vel, driver, num_inference_steps=2)
    assert out.tracks.shape == (2, 1, 3, 8, 2)


def test_text_conditioned_model_exports_both_variants(tmp_path):
    world = WorldModelConfig(height=16, width=16, num_frames=8, video_frame_stride=2, max_objects=3, conditioning="velocity",
                             text_dim=8, video_channels=(8, 16), track_dim=32, track_layers=1)
    root = _save_checkpoint(tmp_path / "ckpt", world)
    report = export_checkpoint(root)
    assert {GRAPH_FILES[k] for k in ("track_encode", "track_encode_text", "video_denoise", "video_denoise_text")} <= set(report.max_abs_diff)
    pt = load_pipeline(root, backend="torch", device="cpu")
    ox = load_pipeline(root, backend="onnxruntime", device="cpu")
    image, inst, vel, _ = _inputs(B=2)
    text = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    for txt in (text, None):  # with text, and without (the torch model then skips its text projection)
        kw = dict(text=txt, num_inference_steps=3, return_video=True, video_inference_steps=2)
        a = pt(image, inst, vel, generator=torch.Generator().manual_seed(1), **kw)
        b = ox(image, inst, vel, generator=torch.Generator().manual_seed(1), **kw)
        f = torch.isfinite(a.tracks)
        assert (a.tracks[f] - b.tracks[f]).abs().max() < ATOL_TRACKS_PX
        assert (a.frames - b.frames).abs().max() < ATOL_FRAMES


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_gpu_provider_that_fails_to_start_falls_back_or_raises(exported, monkeypatch, caplog):
    """onnxruntime-gpu without a CUDA runtime lists CUDA but its sessions run on the CPU provider.

    Simulated here: the provider list claims CUDA, the CPU-only build then starts CPU sessions.
    """
    import onnxruntime as ort

    root, _ = exported
    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_PROVIDER, *real])
    with pytest.raises(ValueError, match="could not start CUDAExecutionProvider"):
        load_pipeline(root, backend="onnxruntime", device="cuda")
    with caplog.at_level(logging.INFO):
        pipe = load_pipeline(root, backend="onnxruntime", device="auto")
    assert [r.levelno for r in _ours(caplog)] == [logging.WARNING]
    assert pipe.device == torch.device("cpu") and pipe.track_model.providers == [CPU_PROVIDER]
