"""BatchedRunner: chunking, OOM halving (exercised on CPU with an injected OOM), autocast, config."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from kinemask_ros.world_model.config import WorldModelConfig
from kinemask_ros.world_model.gpu import BatchedRunner, GpuRunnerConfig, autocast_context, resolve_torch_device
from kinemask_ros.world_model.networks import TrackDenoiser
from kinemask_ros.world_model.pipeline import KineMaskPipeline, RolloutOutput


class OomAbove:
    """A stand-in for a GPU model whose memory runs out above ``limit`` items per call."""

    def __init__(self, limit: int):
        self.limit, self.calls = limit, []

    def __call__(self, x, scale=None):
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake: {x.shape[0]} > {self.limit})")
        return {"y": x * 2 if scale is None else x * scale, "n": x.shape[0] * 0}


def _records(caplog):
    return [r for r in caplog.records if r.name == "kinemask_ros.world_model.gpu"]


def test_oom_halves_chunk_and_retries_then_sticks(caplog):
    fn = OomAbove(limit=5)
    run = BatchedRunner(fn, GpuRunnerConfig(device="cpu", chunk_size=64))
    x = torch.arange(37.0)[:, None]
    with caplog.at_level(logging.INFO):
        out = run(x)
    assert torch.equal(out["y"], x * 2)
    assert fn.calls[:4] == [37, 18, 9, 4]  # halved on each OOM
    assert sum(c for c in fn.calls if c <= 5) == 37  # every item ran exactly once
    assert run.chunk_size == 4
    recs = _records(caplog)
    assert len(recs) == 1 and recs[0].levelno == logging.WARNING and "37" in recs[0].getMessage() and "4" in recs[0].getMessage()
    caplog.clear()
    fn.calls.clear()
    with caplog.at_level(logging.INFO):
        run(x)
    assert max(fn.calls) == 4 and not _records(caplog)  # the smaller chunk is kept, no new report


def test_oom_at_min_chunk_reraises():
    run = BatchedRunner(OomAbove(limit=0), GpuRunnerConfig(device="cpu", chunk_size=8, min_chunk_size=2))
    with pytest.raises(torch.cuda.OutOfMemoryError, match="even at chunk size 2"):
        run(torch.zeros(8, 3))


def test_keyword_tensors_split_only_when_batched():
    fn = OomAbove(limit=100)
    run = BatchedRunner(fn, GpuRunnerConfig(device="cpu", chunk_size=3))
    x = torch.arange(7.0)
    out = run(x, scale=torch.arange(7.0))  # batched keyword tensor: split with x
    assert torch.equal(out["y"], x * x) and fn.calls == [3, 3, 1]
    out = run(x, scale=torch.tensor(3.0))  # 0-dim: passed whole
    assert torch.equal(out["y"], x * 3)
    with pytest.raises(ValueError, match="positional tensor"):
        run(scale=x)


def test_dataclass_outputs_concatenate():
    @dataclass
    class Out:
        a: torch.Tensor
        b: torch.Tensor | None
        idx: list

    run = BatchedRunner(lambda x: Out(x + 1, None, [0, 2]), GpuRunnerConfig(device="cpu", chunk_size=2))
    out = run(torch.zeros(5, 2))
    assert out.a.shape == (5, 2) and out.b is None and out.idx == [0, 2]


def test_bf16_autocast_on_cpu_returns_float32():
    torch.manual_seed(0)
    lin = nn.Linear(8, 4)
    seen = []

    def fn(x):
        y = lin(x)
        seen.append(y.dtype)
        return y

    x = torch.randn(6, 8)
    out = BatchedRunner(fn, GpuRunnerConfig(device="cpu", chunk_size=4, precision="bf16"))(x)
    assert seen == [torch.bfloat16, torch.bfloat16] and out.dtype == torch.float32
    assert torch.allclose(out, lin(x), atol=0.05)
    with autocast_context("cpu", "fp32"):
        assert lin(x).dtype == torch.float32


def test_compile_option_wraps_the_networks_lazily():
    lin = nn.Linear(2, 2)
    BatchedRunner(lin, GpuRunnerConfig(device="cpu", compile=True))
    assert lin._compiled_call_impl is not None  # compiled at the first call, not here


def test_runner_over_a_pipeline_concatenates_rollouts():
    world = WorldModelConfig(height=16, width=16, num_frames=6, max_objects=2, track_dim=32, track_layers=1)
    torch.manual_seed(0)
    track = TrackDenoiser(height=16, width=16, num_frames=6, max_objects=2, dim=32, layers=1)
    nn.init.normal_(track.head[1].weight, std=0.1)
    pipe = KineMaskPipeline(world, track)
    B = 5
    image = torch.rand(B, 3, 16, 16)
    inst = torch.zeros(B, 16, 16, dtype=torch.long)
    inst[:, 2:6, 2:6] = 1
    inst[:, 9:13, 9:13] = 2
    vel = torch.randn(B, 2, 2)
    run = BatchedRunner(pipe, GpuRunnerConfig(device="cpu", chunk_size=2))
    out = run(image, inst, vel, num_samples=3, num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, RolloutOutput) and out.tracks.shape == (B, 3, 2, 6, 2) and out.present.shape == (B, 2)
    g = torch.Generator().manual_seed(1)
    ref = torch.cat([pipe(image[i:i + 2], inst[i:i + 2], vel[i:i + 2], num_samples=3, num_inference_steps=2, generator=g).tracks
                     for i in range(0, B, 2)])
    assert torch.equal(out.tracks, ref)


def test_config_validation():
    with pytest.raises(ValueError, match="chunk_size"):
        GpuRunnerConfig(chunk_size=0)
    with pytest.raises(ValueError, match="min_chunk_size"):
        GpuRunnerConfig(chunk_size=4, min_chunk_size=8)
    with pytest.raises(ValueError, match="precision"):
        GpuRunnerConfig(precision="int8")
    with pytest.raises(ValueError, match="device"):
        GpuRunnerConfig(device="gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU paths")
def test_missing_gpu_error_or_fallback(caplog):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        BatchedRunner(lambda x: x, GpuRunnerConfig(device="cuda"))
    with caplog.at_level(logging.WARNING):
        run = BatchedRunner(lambda x: x, GpuRunnerConfig(device="cuda:0", on_missing_gpu="fallback"))
    assert run.device == torch.device("cpu") and len(_records(caplog)) == 1
    assert resolve_torch_device("cpu") == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_runner():
    lin = nn.Linear(8, 4).cuda()
    out = BatchedRunner(lin, GpuRunnerConfig(device="cuda", chunk_size=16, precision="fp16"))(torch.randn(40, 8, device="cuda"))
    assert out.shape == (40, 4) and out.dtype == torch.float32 and out.device.type == "cuda"
