"""GPU execution helpers: device resolution with an explicit CPU fallback, and a chunked runner.

Planners ask for hundreds of rollouts per decision; on a GPU the batch that fits depends on the
card, the model and what else runs on it. :class:`BatchedRunner` splits a candidate batch into
chunks, and when CUDA runs out of memory it halves the chunk size and retries (one log line per
call), keeping the smaller size for later calls. Optional autocast (fp16/bf16) and
``torch.compile`` are options of :class:`GpuRunnerConfig`.

Example::

    pipe = load_pipeline("runs/wm", device="cuda")
    run = BatchedRunner(pipe, GpuRunnerConfig(device="cuda", chunk_size=256, precision="bf16"))
    out = run(image, instance_mask, velocities=vel, num_samples=4, generator=gen)   # a RolloutOutput

Note: with a ``generator``, chunked sampling draws its noise chunk by chunk, so results are
deterministic for a given chunk size but differ from an unchunked call (and change if an OOM
shrinks the chunk).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
MISSING_GPU_POLICIES = ("error", "fallback")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _check_device_string(device: str) -> None:
    if not isinstance(device, str) or not device:
        raise ValueError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:1', got {device!r}")
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"device {device!r} is not a torch device string ('auto', 'cpu', 'cuda', 'cuda:1', ...)") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only 'auto', 'cpu' and 'cuda[:N]' are supported")


def resolve_torch_device(device: str = "auto", on_missing_gpu: str = "error") -> torch.device:
    """``"auto"`` -> CUDA if present else CPU; ``"cuda[:N]"`` without CUDA -> ValueError or CPU.

    Args:
        device: "auto", "cpu", "cuda" or "cuda:N".
        on_missing_gpu: "error" raises ``ValueError`` when a GPU is requested but torch sees none;
            "fallback" logs one warning and returns the CPU.
    """
    _check_device_string(device)
    if on_missing_gpu not in MISSING_GPU_POLICIES:
        raise ValueError(f"on_missing_gpu must be one of {MISSING_GPU_POLICIES}, got {on_missing_gpu!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = dev.index or 0
        if index >= n:
            why = "no CUDA GPU is visible to torch" if n == 0 else f"only {n} CUDA GPU(s) are visible"
            if on_missing_gpu == "error":
                raise ValueError(f"device {device!r} was requested but {why}; use device='cpu' or 'auto', "
                                 "or on_missing_gpu='fallback' to run on the CPU")
            logger.warning("device %r was requested but %s; falling back to the CPU", device, why)
            return torch.device("cpu")
    return dev


def autocast_context(device: torch.device | str, precision: str = "fp32"):
    """``torch.autocast`` for fp16/bf16 on ``device``; a no-op context for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])


@dataclass(frozen=True)
class GpuRunnerConfig:
    """Options of :class:`BatchedRunner`.

    Attributes:
        device: "auto", "cpu", "cuda" or "cuda:N" (used for autocast and the OOM cache flush).
        chunk_size: candidates per call of the wrapped function (the batch is split into chunks).
        min_chunk_size: the OOM back-off stops here and re-raises.
        precision: "fp32", "fp16" or "bf16" (autocast; floating outputs are returned as float32).
        compile: wrap the model(s) with ``torch.compile`` (compiles lazily at the first call).
        compile_mode: ``torch.compile`` mode.
        on_missing_gpu: "error" or "fallback" when ``device`` names a GPU that is not there.
    """

    device: str = "auto"
    chunk_size: int = 64
    min_chunk_size: int = 1
    precision: str = "fp32"
    compile: bool = False
    compile_mode: str = "default"
    on_missing_gpu: str = "error"

    def __post_init__(self) -> None:
        _check_device_string(self.device)
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"GpuRunnerConfig.chunk_size must be an int >= 1, got {self.chunk_size!r}")
        if not isinstance(self.min_chunk_size, int) or not 1 <= self.min_chunk_size <= self.chunk_size:
            raise ValueError(f"GpuRunnerConfig.min_chunk_size must be an int in [1, chunk_size={self.chunk_size}], got {self.min_chunk_size!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"GpuRunnerConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"GpuRunnerConfig.compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.on_missing_gpu not in MISSING_GPU_POLICIES:
            raise ValueError(f"GpuRunnerConfig.on_missing_gpu must be one of {MISSING_GPU_POLICIES}, got {self.on_missing_gpu!r}")


def _compile(fn: Callable, mode: str) -> Callable:
    """Compile the networks rather than the Python sampling loop around them."""
    models = [getattr(fn, name, None) for name in ("track_model", "video_model", "transformer", "control_branch")]
    models = [m for m in models if isinstance(m, torch.nn.Module)]
    if models:  # a pipeline: compile its networks in place (they keep their type, parameters, config)
        for m in models:
            m.compile(mode=mode)
        return fn
    if isinstance(fn, torch.nn.Module):
        fn.compile(mode=mode)
        return fn
    return torch.compile(fn, mode=mode)


def _concat(parts: list[Any]) -> Any:
    """Concatenate chunk outputs along dim 0: tensors, None, dicts, tuples/lists, dataclasses."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, 0)
    if first is None:
        return None
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)) and first and all(isinstance(x, torch.Tensor) or x is None for x in first):
        return type(first)(_concat([p[i] for p in parts]) for i in range(len(first)))
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        return dataclasses.replace(first, **{f.name: _concat([getattr(p, f.name) for p in parts])
                                             for f in dataclasses.fields(first) if f.init})
    if all(p == first for p in parts):  # per-call constants such as frame_indices
        return first
    return list(parts)


def _to_float32(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _to_float32(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to_float32(v) for v in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: _to_float32(getattr(x, f.name)) for f in dataclasses.fields(x) if f.init})
    return x


class BatchedRunner:
    """Call ``fn`` on a large candidate batch in chunks, halving the chunk on CUDA OOM.

    Positional tensor arguments are split along dim 0 (the first one fixes the batch size ``B``);
    keyword tensor arguments are split when their dim 0 equals ``B`` and passed whole otherwise
    (name keyword arguments that must never be split in ``unbatched``). Outputs of the chunks are
    concatenated along dim 0 (tensors, dicts, tuples and dataclasses such as ``RolloutOutput``).
    Keyword arguments that index the batch (``video_indices``) are not remapped: leave them None.
    """

    def __init__(self, fn: Callable[..., Any], config: GpuRunnerConfig | None = None, unbatched: tuple[str, ...] = ()):
        self.config = config or GpuRunnerConfig()
        self.device = resolve_torch_device(self.config.device, self.config.on_missing_gpu)
        self.fn = _compile(fn, self.config.compile_mode) if self.config.compile else fn
        self.chunk_size = self.config.chunk_size
        self.unbatched = set(unbatched)

    def _split(self, args: tuple, kwargs: dict, B: int, start: int, stop: int) -> tuple[tuple, dict]:
        a = tuple(x[start:stop] if isinstance(x, torch.Tensor) and x.dim() > 0 else x for x in args)
        k = {n: (v[start:stop] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == B and n not in self.unbatched else v)
             for n, v in kwargs.items()}
        return a, k

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        batched = [x for x in args if isinstance(x, torch.Tensor) and x.dim() > 0]
        if not batched:
            raise ValueError("BatchedRunner needs at least one positional tensor argument with a batch dimension")
        B = batched[0].shape[0]
        if any(x.shape[0] != B for x in batched):
            raise ValueError(f"positional tensor arguments disagree on the batch size: {[tuple(x.shape) for x in batched]}")
        if B == 0:
            raise ValueError("empty batch: nothing to run")
        outs: list[Any] = []
        chunk = min(self.chunk_size, B)
        start, first_oom = 0, None
        while start < B:
            n = min(chunk, B - start)
            a, k = self._split(args, kwargs, B, start, start + n)
            try:
                with autocast_context(self.device, self.config.precision):
                    out = self.fn(*a, **k)
            except torch.cuda.OutOfMemoryError as e:
                if n <= self.config.min_chunk_size:
                    raise torch.cuda.OutOfMemoryError(
                        f"CUDA out of memory even at chunk size {n} (min_chunk_size={self.config.min_chunk_size}); "
                        "lower the resolution, use precision='fp16'/'bf16', or free GPU memory") from e
                first_oom = n if first_oom is None else first_oom
                chunk = max(self.config.min_chunk_size, n // 2)
                del e
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            outs.append(out)
            start += n
        if first_oom is not None:
            logger.warning("CUDA out of memory at chunk size %d; halved to chunk size %d for this and later calls",
                           first_oom, chunk)
            self.chunk_size = chunk
        result = _concat(outs)
        return _to_float32(result) if self.config.precision != "fp32" else result
